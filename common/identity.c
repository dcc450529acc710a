/* SPDX-License-Identifier: MIT */
/*
 * identity.c - the normalized identity, the authorization rules, and the
 * binding of an identity to a local user name.
 */
#include "tokengate.h"
#include "tg_internal.h"

#include <stdlib.h>
#include <string.h>

void
tg_identity_free(tg_identity_t *id)
{
    size_t i;

    if (id == NULL) {
        return;
    }
    free(id->id);
    free(id->name);
    free(id->email);
    free(id->display_name);
    free(id->first_name);
    free(id->last_name);
    for (i = 0; i < id->n_groups; i++) {
        free(id->groups[i]);
    }
    free(id->groups);
    free(id);
}
