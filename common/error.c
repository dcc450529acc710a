/* SPDX-License-Identifier: MIT */
/*
 * error.c - the error list (TG_ERRNO_MAP) turned into names and messages,
 * and the diag helpers every other file reports through.
 */
#include "tokengate.h"
#include "tg_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TG__ERR_MSG(name, msg) msg,
static const char *const tg_err_messages[] = {TG_ERRNO_MAP(TG__ERR_MSG)};
#undef TG__ERR_MSG

#define TG__ERR_NAME(name, msg) "TG_" #name,
static const char *const tg_err_names[] = {TG_ERRNO_MAP(TG__ERR_NAME)};
#undef TG__ERR_NAME

const char *
tg_strerror(tg_err_t err)
{
    if ((unsigned) err >= TG_ERR_MAX) {
        return "unknown error";
    }
    return tg_err_messages[err];
}

const char *
tg_err_name(tg_err_t err)
{
    if ((unsigned) err >= TG_ERR_MAX) {
        return "TG_UNKNOWN";
    }
    return tg_err_names[err];
}

void
tg_diag_clear(tg_diag_t *diag)
{
    size_t i;

    if (diag == NULL) {
        return;
    }
    /* Every string emptied and every number reset, but not the whole
     * 2.8 KB: the strings count only up to their NUL, and none ever holds
     * a secret.  (nginx clears diags on every validation.) */
    diag->message[0] = '\0';
    diag->http_status = 0;
    diag->retry_after = -1;
    diag->n_fields = 0;
    for (i = 0; i < TG_FIELD_ERRORS_MAX; i++) {
        diag->fields[i].field[0] = '\0';
        diag->fields[i].code[0] = '\0';
        diag->fields[i].message[0] = '\0';
    }
}

tg_err_t
tg__fail(tg_diag_t *diag, tg_err_t err, const char *fmt, ...)
{
    va_list ap;

    if (diag == NULL || diag->message[0] != '\0') {
        return err;
    }
    va_start(ap, fmt);
    vsnprintf(diag->message, sizeof(diag->message), fmt, ap);
    va_end(ap);
    if (diag->message[0] == '\0') {
        snprintf(diag->message, sizeof(diag->message), "%s",
                 tg_strerror(err));
    }
    return err;
}

void
tg__sanitize(char *dst, size_t size, const char *src, size_t len)
{
    size_t i, n;

    if (size == 0) {
        return;
    }
    if (src == NULL) {
        dst[0] = '\0';
        return;
    }
    n = len < size - 1 ? len : size - 1;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char) src[i];
        dst[i] = (c >= 0x20 && c < 0x7f) ? (char) c : '?';
    }
    dst[n] = '\0';
    if (len > size - 1 && size > 4) {
        memcpy(dst + size - 4, "...", 4);
    }
}

char *
tg__strdup(const char *s)
{
    return strdup(s != NULL ? s : "");
}
