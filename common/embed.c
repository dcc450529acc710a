/* SPDX-License-Identifier: MIT */
/*
 * embed.c - Looker signed embedding, signed locally (api-spec.md C): build
 * the URL
 *
 *   SCHEME://HOST/login/embed/PCT(EMBED_PATH)?nonce=...&signature=...
 *
 * Every parameter value is produced once, as compact JSON text
 * (embed_params.c), and that same text goes on its signing line and,
 * strictly percent-encoded, into the query.  The string-to-sign is HOST,
 * then "/login/embed/" PCT(EMBED_PATH), then the signed values, joined with
 * LF (no trailing LF); the signature is base64(HMAC-SHA1(secret, it)).
 *
 * The checks of the parameters are in embed_params.c; server signing
 * (POST /embed/sso_url, B.6) lives with the other calls in protocol.c.
 */
#include "tokengate.h"
#include "tg_embed.h"
#include "tg_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

static tg_err_t fresh_nonce(char out[TG_EMBED_NONCE_HEX + 1], tg_diag_t *diag);
static tg_err_t build_string_to_sign(const tg_embed_params_t *p,
                                     const tg_embed_values_t *vals, char **out,
                                     size_t *out_len, tg_diag_t *diag);
static tg_err_t build_url(const tg_embed_params_t *p,
                          const tg_embed_values_t *vals, const char *sig,
                          char **out, tg_diag_t *diag);

/* ---------------------------------------------------------------------- */
/* Signing                                                                */
/* ---------------------------------------------------------------------- */

/* TG_EMBED_NONCE_BYTES from the kernel's CSPRNG, as lower-case hex. */
static tg_err_t
fresh_nonce(char out[TG_EMBED_NONCE_HEX + 1], tg_diag_t *diag)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char rnd[TG_EMBED_NONCE_BYTES];
    size_t got = 0;
    ssize_t n;
    int i;

    while (got < sizeof(rnd)) {
        /* Never wait for the pool at early boot: an nginx worker signs
         * here, and a URL can wait; the event loop cannot. */
        n = getrandom(rnd + got, sizeof(rnd) - got, GRND_NONBLOCK);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            explicit_bzero(rnd, sizeof(rnd));
            return tg__fail(diag, TG_UNAVAILABLE, "getrandom: the kernel's "
                            "random pool is not ready yet, try again");
        }
        if (n <= 0) {
            /* 0 sets no errno: whatever it holds is not this call's. */
            explicit_bzero(rnd, sizeof(rnd));
            return tg__fail(diag, TG_INTERNAL, "getrandom failed: %s",
                            n < 0 ? strerror(errno) : "short read");
        }
        got += (size_t) n;
    }
    for (i = 0; i < TG_EMBED_NONCE_BYTES; i++) {
        out[2 * i] = hex[rnd[i] >> 4];
        out[2 * i + 1] = hex[rnd[i] & 0x0f];
    }
    out[TG_EMBED_NONCE_HEX] = '\0';
    explicit_bzero(rnd, sizeof(rnd));
    return TG_OK;
}

/* HOST LF /login/embed/PCT(PATH) LF each signed value that is sent, in
 * order, LF-joined, no trailing LF (api-spec C.3). */
static tg_err_t
build_string_to_sign(const tg_embed_params_t *p, const tg_embed_values_t *vals,
                     char **out, size_t *out_len, tg_diag_t *diag)
{
    static const char login[] = "/login/embed/";
    size_t len, n;
    char *text, *w;
    int i;

    len = strlen(p->host) + 1 + strlen(login) +
          tg__pct_encoded_len(p->embed_path);
    for (i = 0; i < TG_EF_COUNT; i++) {
        if (tg__embed_fields[i].is_signed && vals->text[i] != NULL) {
            len += 1 + strlen(vals->text[i]);
        }
    }
    text = malloc(len + 1);
    if (text == NULL) {
        return tg__fail(diag, TG_NOMEM, "out of memory");
    }
    n = strlen(p->host);
    memcpy(text, p->host, n);
    w = text + n;
    *w++ = '\n';
    memcpy(w, login, strlen(login));
    w = tg__pct_encode(w + strlen(login), p->embed_path);
    for (i = 0; i < TG_EF_COUNT; i++) {
        if (tg__embed_fields[i].is_signed && vals->text[i] != NULL) {
            n = strlen(vals->text[i]);
            *w++ = '\n';
            memcpy(w, vals->text[i], n);
            w += n;
        }
    }
    *w = '\0';
    *out = text;
    *out_len = len;
    return TG_OK;
}

/* base64(HMAC-SHA1(key, text)), 28 characters and a NUL (tg_internal.h). */
tg_err_t
tg__hmac_sha1_base64(const char *key, size_t key_len, const char *text,
                     size_t text_len, char out[TG__HMAC_SHA1_B64_SIZE],
                     tg_diag_t *diag)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    int n;

    out[0] = '\0';
    if (key == NULL || key_len > TG_SECRET_MAX) {
        return tg__fail(diag, TG_INPUT, "HMAC key missing or too long");
    }
    if (HMAC(EVP_sha1(), key, (int) key_len, (const unsigned char *) text,
             text_len, md, &md_len) == NULL ||
        md_len != 20) {
        explicit_bzero(md, sizeof(md));
        return tg__fail(diag, TG_INTERNAL, "HMAC-SHA1 failed");
    }
    n = EVP_EncodeBlock((unsigned char *) out, md, (int) md_len);
    explicit_bzero(md, sizeof(md));
    if (n != TG_EMBED_SIG_LEN) {
        explicit_bzero(out, TG__HMAC_SHA1_B64_SIZE);
        return tg__fail(diag, TG_INTERNAL, "base64 encoding failed");
    }
    return TG_OK;
}

static tg_err_t
build_url(const tg_embed_params_t *p, const tg_embed_values_t *vals,
          const char *sig, char **out, tg_diag_t *diag)
{
    static const char login[] = "/login/embed/";
    const char *scheme = tg__embed_scheme(p);
    size_t len, n;
    char *url, *w;
    int i;

    len = tg__embed_url_length(p, vals, tg__pct_encoded_len(sig));
    url = malloc(len + 1);
    if (url == NULL) {
        return tg__fail(diag, TG_NOMEM, "out of memory");
    }
    w = url;
    n = strlen(scheme);
    memcpy(w, scheme, n);
    memcpy(w + n, "://", 3);
    w += n + 3;
    n = strlen(p->host);
    memcpy(w, p->host, n);
    w += n;
    memcpy(w, login, strlen(login));
    w = tg__pct_encode(w + strlen(login), p->embed_path);
    *w++ = '?';
    for (i = 0; i < TG_EF_COUNT; i++) {
        if (vals->text[i] == NULL) {
            continue;
        }
        n = strlen(tg__embed_fields[i].name);
        memcpy(w, tg__embed_fields[i].name, n);
        w += n;
        *w++ = '=';
        w = tg__pct_encode(w, vals->text[i]);
        *w++ = '&';
    }
    memcpy(w, "signature=", 10);
    w = tg__pct_encode(w + 10, sig);
    *w = '\0';
    if ((size_t) (w - url) != len) {
        tg_secret_free_len(url, len + 1);
        return tg__fail(diag, TG_INTERNAL, "embed URL length mismatch");
    }
    *out = url;
    return TG_OK;
}

tg_err_t
tg_embed_sign(const tg_embed_params_t *p, const char *secret, size_t secret_len,
              char **url, char **string_to_sign, tg_diag_t *diag)
{
    char nonce[TG_EMBED_NONCE_HEX + 1], sig[TG__HMAC_SHA1_B64_SIZE];
    tg_embed_values_t vals;
    char *sts = NULL;
    size_t sts_len = 0;
    tg_err_t err;

    memset(&vals, 0, sizeof(vals));
    nonce[0] = '\0';
    sig[0] = '\0';
    if (url == NULL) {
        return tg__fail(diag, TG_INPUT, "no place for the URL");
    }
    *url = NULL;
    if (string_to_sign != NULL) {
        *string_to_sign = NULL;
    }
    err = tg__embed_check_fields(p, diag);
    if (err != TG_OK) {
        return err;
    }
    if (secret == NULL || secret_len == 0) {
        return tg__fail(diag, TG_INPUT, "secret: empty");
    }
    if (secret_len > TG_SECRET_MAX) {
        return tg__fail(diag, TG_INPUT, "secret: longer than %d bytes",
                        TG_SECRET_MAX);
    }
    if (p->nonce == NULL) {
        err = fresh_nonce(nonce, diag);
        if (err != TG_OK) {
            goto out;
        }
    }
    err = tg__embed_values_encode(p, p->nonce != NULL ? p->nonce : nonce,
                        p->time != 0 ? p->time : time(NULL), &vals, diag);
    if (err == TG_OK) {
        err = tg__embed_check_url_length(p, &vals, diag);
    }
    if (err == TG_OK) {
        err = build_string_to_sign(p, &vals, &sts, &sts_len, diag);
    }
    if (err == TG_OK) {
        err = tg__hmac_sha1_base64(secret, secret_len, sts, sts_len, sig, diag);
    }
    if (err == TG_OK) {
        err = build_url(p, &vals, sig, url, diag);
    }
    if (err == TG_OK && string_to_sign != NULL) {
        *string_to_sign = sts;
        sts = NULL;
    }

out:
    if (err != TG_OK && *url != NULL) {
        tg_secret_free(*url);
        *url = NULL;
    }
    tg_secret_free_len(sts, sts_len + 1);
    tg__embed_values_free(&vals);
    explicit_bzero(nonce, sizeof(nonce));
    explicit_bzero(sig, sizeof(sig));
    return err;
}
