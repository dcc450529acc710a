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

/* Does a rule in cfg need the profile (groups or the evaluation flag)? */
int tg__rules_need_profile(const tg_config_t *cfg);

#endif /* TG_INTERNAL_H */
