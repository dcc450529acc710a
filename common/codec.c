/* SPDX-License-Identifier: MIT */
/*
 * codec.c - the encodings libtokengate's other files share: strict UTF-8
 * checking, RFC 3986 percent-encoding and compact JSON text.  It calls only
 * error.c and secret.c, so protocol.c (the API calls) and embed.c (local
 * embed signing) can both use it without using each other.
 */
#include "tokengate.h"
#include "tg_internal.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static int is_unreserved(unsigned char c);

/* ---------------------------------------------------------------------- */
/* UTF-8                                                                  */
/* ---------------------------------------------------------------------- */

/* Strict UTF-8 (no overlongs, no surrogates, at most U+10FFFF): jansson
 * refuses anything else, and we want TG_INPUT for it, not TG_NOMEM. */
int
tg__utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *) s;
    size_t i = 0, n, k;
    unsigned long cp;

    while (i < len) {
        unsigned char c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (len - i <= n) {
            return 0;
        }
        for (k = 1; k <= n; k++) {
            if ((p[i + k] & 0xc0) != 0x80) {
                return 0;
            }
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) {
            return 0;
        }
        i += n + 1;
    }
    return 1;
}

/* ---------------------------------------------------------------------- */
/* Percent-encoding                                                       */
/* ---------------------------------------------------------------------- */

/* Form values are percent-encoded except the RFC 3986 unreserved set. */
static int
is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
           c == '~';
}

size_t
tg__pct_encoded_len(const char *s)
{
    size_t n = 0;

    for (; *s != '\0'; s++) {
        n += is_unreserved((unsigned char) *s) ? 1 : 3;
    }
    return n;
}

/* Write s percent-encoded at dst; returns the end (not NUL-terminated). */
char *
tg__pct_encode(char *dst, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";

    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char) *s;
        if (is_unreserved(c)) {
            *dst++ = (char) c;
        } else {
            *dst++ = '%';
            *dst++ = hex[c >> 4];
            *dst++ = hex[c & 0x0f];
        }
    }
    return dst;
}

/* ---------------------------------------------------------------------- */
/* JSON text                                                              */
/* ---------------------------------------------------------------------- */

/* Serialize into one exactly-sized buffer (json_dumpb, not json_dumps, so
 * that no reallocated copy of a secret is left behind in the heap). */
tg_err_t
tg__json_dump(const json_t *v, char **text, size_t *len, tg_diag_t *diag)
{
    const size_t flags = JSON_COMPACT | JSON_ENCODE_ANY;
    size_t size, n;
    char *buf;

    size = v != NULL ? json_dumpb(v, NULL, 0, flags) : 0;
    if (size == 0) {
        return tg__fail(diag, TG_NOMEM, "out of memory");
    }
    buf = malloc(size + 1);
    if (buf == NULL) {
        return tg__fail(diag, TG_NOMEM, "out of memory");
    }
    n = json_dumpb(v, buf, size, flags);
    if (n != size) {
        tg_secret_free_len(buf, size);
        return tg__fail(diag, TG_NOMEM, "out of memory");
    }
    buf[size] = '\0';
    *text = buf;
    if (len != NULL) {
        *len = size;
    }
    return TG_OK;
}

/* A JSON array of strings; NULL on allocation failure. */
json_t *
tg__json_string_list(const char *const *items, size_t n)
{
    json_t *list = json_array();
    size_t i;

    for (i = 0; list != NULL && i < n; i++) {
        if (json_array_append_new(list, json_string(items[i])) != 0) {
            json_decref(list);
            list = NULL;
        }
    }
    return list;
}
