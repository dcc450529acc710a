/* SPDX-License-Identifier: MIT */
/*
 * secret.c - secret buffers (wiped on free), fingerprints for logs, and the
 * local checks a token or credential passes before any network call.
 */
#include "tokengate.h"
#include "tg_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

char *
tg_secret_dup(const char *s)
{
    return tg__strdup(s);
}

void
tg_secret_free(char *s)
{
    if (s == NULL) {
        return;
    }
    explicit_bzero(s, strlen(s));
    free(s);
}

void
tg_secret_free_len(void *p, size_t len)
{
    if (p == NULL) {
        return;
    }
    explicit_bzero(p, len);
    free(p);
}

static pthread_once_t tg_sha256_once = PTHREAD_ONCE_INIT;
static EVP_MD *tg_sha256; /* never freed: lives as long as the process */

static void
tg_sha256_fetch(void)
{
    tg_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

void
tg_fingerprint(const char *secret, size_t len, char out[TG_FINGERPRINT_SIZE])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    int i;

    /* SHA-256 fetched once per process: EVP_sha256() is fetched again
     * from the provider on every digest (a third of its cost for a
     * token, measured in the nginx worker). */
    (void) pthread_once(&tg_sha256_once, tg_sha256_fetch);

    if (secret == NULL ||
        EVP_Digest(secret, len, md, &md_len,
                   tg_sha256 != NULL ? tg_sha256 : EVP_sha256(), NULL) != 1 ||
        md_len < 4) {
        memcpy(out, "????????", TG_FINGERPRINT_SIZE);
        return;
    }
    for (i = 0; i < 4; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 0x0f];
    }
    out[8] = '\0';
    explicit_bzero(md, sizeof(md));
}

tg_err_t
tg_token_check(const char *token, tg_diag_t *diag)
{
    size_t len, i;

    if (token == NULL || token[0] == '\0') {
        return tg__fail(diag, TG_INPUT, "the token is empty");
    }
    len = strnlen(token, TG_TOKEN_MAX + 1);
    if (len > TG_TOKEN_MAX) {
        return tg__fail(diag, TG_INPUT, "the token is longer than %d bytes",
                        TG_TOKEN_MAX);
    }
    /* b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" )
     * *"=" (RFC 6750 section 2.1). */
    for (i = 0; i < len && tg__is_b64token_char((unsigned char) token[i]);
         i++) {
    }
    if (i == 0) {
        return tg__fail(diag, TG_INPUT,
                        "the token does not start with a token character");
    }
    for (; i < len && token[i] == '='; i++) {
    }
    if (i != len) {
        return tg__fail(diag, TG_INPUT,
                        "the token has a byte that is not allowed in a bearer "
                        "token at offset %zu",
                        i);
    }
    return TG_OK;
}

tg_err_t
tg_credential_check(const char *value, const char *what, tg_diag_t *diag)
{
    size_t len, i;

    if (value == NULL || value[0] == '\0') {
        return tg__fail(diag, TG_INPUT, "the %s is empty", what);
    }
    len = strnlen(value, TG_SECRET_MAX + 1);
    if (len > TG_SECRET_MAX) {
        return tg__fail(diag, TG_INPUT, "the %s is longer than %d bytes",
                        what, TG_SECRET_MAX);
    }
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char) value[i];
        if (c <= 0x20 || c == 0x7f) {
            return tg__fail(diag, TG_INPUT,
                            "the %s has a control character or space at "
                            "offset %zu",
                            what, i);
        }
    }
    return TG_OK;
}
