/* SPDX-License-Identifier: MIT */
/*
 * tg_internal.h - helpers shared by the files of libtokengate (tg__ names).
 * Not installed; never included by code outside common/ except the unit
 * tests, which link the same convenience library.
 */
#ifndef TG_INTERNAL_H
#define TG_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>

#include "tokengate.h"

struct json_t; /* jansson's, for the JSON helpers below */

#if defined(__GNUC__)
#define TG__PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define TG__PRINTF(a, b)
#endif

/*
 * Record an error in diag (NULL is fine) and return err.  The first error
 * wins: a diag that already holds a message keeps it.  Never pass a token or
 * a secret in the format arguments.
 */
tg_err_t tg__fail(tg_diag_t *diag, tg_err_t err, const char *fmt, ...)
    TG__PRINTF(3, 4);

/*
 * Copy server-supplied text into dst (size > 0) for messages: bytes outside
 * printable ASCII become '?', and the copy is cut at size - 1 with "...".
 */
void tg__sanitize(char *dst, size_t size, const char *src, size_t len);

/* strdup() that treats NULL as "" ; NULL only on allocation failure. */
char *tg__strdup(const char *s);

/* Is this byte allowed in an RFC 6750 b64token (ignoring trailing '=')?
 * Inline: tg_token_check calls it for each byte of every token (the nginx
 * module checks each request's token before its cache lookup). */
static inline int
tg__is_b64token_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
           || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'
           || c == '~' || c == '+' || c == '/';
}

/*
 * Parse config text ("key = value" lines) from memory; name is used in
 * messages as the file name ("name:LINE: ...").  tg_config_load_file() is
 * this plus the file checks; the config fuzzer calls it directly.
 */
tg_err_t tg__config_parse_text(tg_config_t *cfg, const char *text, size_t len,
                               const char *name, tg_diag_t *diag);

/*
 * Read a whole file that must be a regular file (opened O_NOFOLLOW), owned
 * by root or the caller, with none of the mode bits in forbidden (022: not
 * group/world-writable; 077: owner-only), and at most max bytes.
 * key names the config key in messages (NULL for the config file itself).
 * *text is caller-owned (NUL-terminated; free it with tg_secret_free_len
 * when it may hold a secret).
 */
tg_err_t tg__file_read_checked(const char *path, const char *key,
                               unsigned forbidden, size_t max, char **text,
                               size_t *len, tg_diag_t *diag);

/*
 * UID_MIN of the login.defs file at path (config.c: min_uid's default), or
 * 1000 when the file is missing, unsafe or odd in any way; never fails.
 */
long tg__login_defs_uid_min(const char *path);

/* Does a rule in cfg need the profile (groups or the evaluation flag)? */
int tg__rules_need_profile(const tg_config_t *cfg);

/* Is s[0..len) strict UTF-8 (no overlongs, no surrogates, <= U+10FFFF)?
 * (codec.c) */
int tg__utf8_valid(const char *s, size_t len);

/*
 * Strict percent-encoding (codec.c): every byte except the RFC 3986
 * unreserved set A-Z a-z 0-9 - _ . ~ becomes %XX with upper-case hex.
 * tg__pct_encoded_len() is the length of the encoding of s;
 * tg__pct_encode() writes it at dst and returns its end (no NUL).
 */
size_t tg__pct_encoded_len(const char *s);
char *tg__pct_encode(char *dst, const char *s);

/*
 * JSON helpers (codec.c), for request bodies and embed values.
 * tg__json_dump(): compact JSON text of v (any value; NULL fails as out of
 * memory) in one exactly sized buffer (json_dumpb: no reallocated copy of
 * a secret is left in the heap).  *text is caller-owned (tg_secret_free),
 * NUL-terminated; *len (may be NULL) its length.  Set only on success.
 * tg__json_string_list(): a new JSON array of the n strings (a new
 * reference), NULL on allocation failure.
 */
tg_err_t tg__json_dump(const struct json_t *v, char **text, size_t *len,
                       tg_diag_t *diag);
struct json_t *tg__json_string_list(const char *const *items, size_t n);

/*
 * The embed signature primitive (embed.c): base64 (standard alphabet, '='
 * padding) of HMAC-SHA1 with key's bytes as-is, written to out as 28
 * characters and a NUL.  key_len at most TG_SECRET_MAX.  The unit tests
 * check it against RFC 2202.
 */
#define TG__HMAC_SHA1_B64_SIZE 29
tg_err_t tg__hmac_sha1_base64(const char *key, size_t key_len, const char *text,
                              size_t text_len, char out[TG__HMAC_SHA1_B64_SIZE],
                              tg_diag_t *diag);

#endif /* TG_INTERNAL_H */
