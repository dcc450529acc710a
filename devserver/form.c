/* SPDX-License-Identifier: MIT */
/*
 * form.c - reading a request body or query: percent-decoding, the
 * name=value pairs of form encoding, and a JSON object body.  Used by the
 * API handlers (routes.c, embed.c); it calls only reply.c.
 */
#include "devserver.h"

#include <stdlib.h>
#include <string.h>

static int hex_value(char c);

/*
 * The request body as a JSON object (a new reference), or NULL with r set
 * to a 400 in the flavor's format.
 */
json_t *
ds__json_body(struct ds_request *req, enum ds_flavor flavor, struct ds_reply *r)
{
    json_error_t jerr;
    json_t *doc;

    doc = json_loadb(req->body != NULL ? req->body : "", req->body_len,
                     JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(doc)) {
        json_decref(doc);
        ds__reply_flavor_error(r, flavor, MHD_HTTP_BAD_REQUEST,
                               "Malformed JSON request body");
        return NULL;
    }
    return doc;
}

/*
 * Split the next name=value pair off form-encoded text at *p (up to end),
 * decoding its name, and move *p past it.  0 when no pair is left.
 */
int
ds__form_next(const char **p, const char *end, struct ds_form_pair *pair)
{
    const char *amp;
    const char *eq;

    if (*p >= end) {
        return 0;
    }
    amp = memchr(*p, '&', (size_t) (end - *p));
    if (amp == NULL) {
        amp = end;
    }
    eq = memchr(*p, '=', (size_t) (amp - *p));
    if (eq == NULL) {
        eq = amp;
    }
    pair->name[0] = '\0';
    pair->name_len = 0;
    pair->name_bad = 0;
    if ((size_t) (eq - *p) < sizeof(pair->name) &&
        ds__pct_decode(*p, (size_t) (eq - *p), 1, pair->name,
                       &pair->name_len) != 0) {
        pair->name[0] = '\0';
        pair->name_len = 0;
        pair->name_bad = 1;
    }
    pair->value = eq < amp ? eq + 1 : amp;
    pair->value_len = (size_t) (amp - pair->value);
    *p = amp + 1;
    return 1;
}

/*
 * The decoded value of a pair: *out is malloc'd (NUL-terminated, may hold
 * NULs; the caller wipes *out_len bytes and frees it).  On failure *out is
 * NULL, and a partly decoded copy has been wiped whole and freed.
 */
enum ds_form_result
ds__form_value(const struct ds_form_pair *pair, char **out, size_t *out_len)
{
    size_t size = pair->value_len + 1;

    *out = malloc(size);
    if (*out == NULL) {
        return DS_FORM_NOMEM;
    }
    if (ds__pct_decode(pair->value, pair->value_len, 1, *out, out_len) != 0) {
        explicit_bzero(*out, size);
        free(*out);
        *out = NULL;
        return DS_FORM_BAD;
    }
    return DS_FORM_OK;
}

/*
 * Percent-decoding into out (len + 1 bytes, NUL-terminated); plus: '+' is
 * a space (form encoding).  A '%' without two hex digits is an error.
 */
int
ds__pct_decode(const char *s, size_t len, int plus, char *out, size_t *out_len)
{
    size_t i;
    size_t n = 0;
    int hi;
    int lo;

    for (i = 0; i < len; i++) {
        if (s[i] == '%') {
            if (i + 2 >= len) {
                return -1;
            }
            hi = hex_value(s[i + 1]);
            lo = hex_value(s[i + 2]);
            if (hi < 0 || lo < 0) {
                return -1;
            }
            out[n++] = (char) (hi << 4 | lo);
            i += 2;
        } else if (plus && s[i] == '+') {
            out[n++] = ' ';
        } else {
            out[n++] = s[i];
        }
    }
    out[n] = '\0';
    *out_len = n;
    return 0;
}

/* The value of a hex digit (either case), or -1. */
static int
hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}
