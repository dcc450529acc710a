/* SPDX-License-Identifier: MIT */
/*
 * config.c - the typed configuration: defaults, the key = value file, module
 * arguments, and validation.
 */
#include "tokengate.h"
#include "tg_internal.h"

#include <stdlib.h>
#include <string.h>

tg_config_t *
tg_config_new(void)
{
    tg_config_t *cfg = calloc(1, sizeof(*cfg));

    if (cfg == NULL) {
        return NULL;
    }
    cfg->api = TG_API_INSIGHT;
    cfg->looker_api_version = strdup("4.0");
    cfg->insight_base_path = strdup("/insightservices/rest/v1");
    cfg->insight_validate = TG_INSIGHT_VALIDATE_AUTO;
    cfg->looker_auth_scheme = TG_LOOKER_SCHEME_TOKEN;
    cfg->connect_timeout_ms = 5000;
    cfg->timeout_ms = 10000;
    cfg->max_response_bytes = 65536;
    cfg->token_max_age = 900;
    cfg->retry_after_max = 300;
    cfg->require_groups_mode = TG_GROUPS_ANY;
    cfg->deny_disabled = 1;
    cfg->user_attribute = TG_BIND_EMAIL_LOCAL;
    if (cfg->looker_api_version == NULL || cfg->insight_base_path == NULL) {
        tg_config_free(cfg);
        return NULL;
    }
    return cfg;
}

void
tg_config_free(tg_config_t *cfg)
{
    size_t i;

    if (cfg == NULL) {
        return;
    }
    free(cfg->url);
    free(cfg->looker_api_version);
    free(cfg->insight_base_path);
    free(cfg->ca_file);
    free(cfg->ca_path);
    free(cfg->pinned_pubkey);
    free(cfg->proxy);
    for (i = 0; i < cfg->n_require_groups; i++) {
        free(cfg->require_groups[i]);
    }
    free(cfg->require_groups);
    free(cfg->user_map_file);
    free(cfg->client_id);
    free(cfg->client_secret_file);
    free(cfg->embed_secret_file);
    free(cfg);
}
