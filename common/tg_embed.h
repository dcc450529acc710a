/* SPDX-License-Identifier: MIT */
/*
 * tg_embed.h - what embed_params.c (the parameters of a signed embed URL:
 * their checks, value texts and the URL's length) gives embed.c (local
 * signing).  Internal to libtokengate, like tg_internal.h; protocol.c needs
 * only the public tg_embed_params_check() from tokengate.h.
 */
#ifndef TG_EMBED_H
#define TG_EMBED_H

#include <stddef.h>
#include <time.h>

#include "tokengate.h"
#include "tg_internal.h"

/* The signature: base64 of a 20-byte SHA-1 digest, with padding. */
#define TG_EMBED_SIG_LEN (TG__HMAC_SHA1_B64_SIZE - 1)
/* Hex text of a fresh nonce. */
#define TG_EMBED_NONCE_HEX (2 * TG_EMBED_NONCE_BYTES)

/* The query parameters, in the order of the URL (which reproduces
 * api-spec.md C.4 vector 1 byte for byte); the signature comes last. */
typedef enum tg_embed_field {
    TG_EF_NONCE = 0,
    TG_EF_TIME,
    TG_EF_SESSION_LENGTH,
    TG_EF_EXTERNAL_USER_ID,
    TG_EF_PERMISSIONS,
    TG_EF_MODELS,
    TG_EF_GROUP_IDS,
    TG_EF_EXTERNAL_GROUP_ID,
    TG_EF_USER_ATTRIBUTES,
    TG_EF_ACCESS_FILTERS,
    TG_EF_FIRST_NAME,
    TG_EF_LAST_NAME,
    TG_EF_USER_TIMEZONE,
    TG_EF_FORCE_LOGOUT_LOGIN,
    TG_EF_COUNT
} tg_embed_field_t;

typedef struct tg_embed_field_info {
    const char *name;
    int is_signed; /* on the string-to-sign when sent */
} tg_embed_field_info_t;

/* The value text of every parameter; NULL when it is not sent. */
typedef struct tg_embed_values {
    char *text[TG_EF_COUNT];
} tg_embed_values_t;

/* Name and signing flag of each parameter, indexed by tg_embed_field_t. */
extern const tg_embed_field_info_t tg__embed_fields[TG_EF_COUNT];

/* Every check of tg_embed_params_check() but the total length; errors name
 * the parameter. */
tg_err_t tg__embed_check_fields(const tg_embed_params_t *p, tg_diag_t *diag);

/*
 * The text of every parameter that is sent (api-spec C.2), each compact
 * JSON in a buffer of its own, with nonce and now as the nonce and time.
 * On failure vals holds nothing; on success free it with
 * tg__embed_values_free() (it wipes: the nonce is in there).
 */
tg_err_t tg__embed_values_encode(const tg_embed_params_t *p, const char *nonce,
                                 time_t now, tg_embed_values_t *vals,
                                 tg_diag_t *diag);
void tg__embed_values_free(tg_embed_values_t *vals);

/* p->scheme, or "https" when it is not set. */
const char *tg__embed_scheme(const tg_embed_params_t *p);

/* Bytes of "SCHEME://HOST/login/embed/PCT(PATH)?name=PCT(value)&...
 * &signature=" plus sig_pct_len. */
size_t tg__embed_url_length(const tg_embed_params_t *p,
                            const tg_embed_values_t *vals, size_t sig_pct_len);

/* The whole URL within its limit, counting the signature at its longest,
 * so that signing never fails on length after the check. */
tg_err_t tg__embed_check_url_length(const tg_embed_params_t *p,
                                    const tg_embed_values_t *vals,
                                    tg_diag_t *diag);

#endif /* TG_EMBED_H */
