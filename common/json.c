/* SPDX-License-Identifier: MIT */
/*
 * json.c - a strict one-pass JSON decoder that builds jansson values
 * (tg_json.h).  jansson's own json_loadb reads through a function call per
 * byte and buffers every token byte by byte: it was a third of the nginx
 * worker's cost per uncached request.  This one walks the buffer with
 * tables and hands jansson each string once.
 *
 * What it accepts, refuses and how it codes a refusal follow jansson 2.14's
 * src/load.c to the letter, including the order in which jansson finds
 * faults: its lexer reads a whole token (and one byte after a number or a
 * word) before its parser looks at it, so where we stop early on a wrong
 * token we still scan that token for the faults jansson's lexer reports
 * first (bad UTF-8, a cut string, a numeric overflow).  A raw NUL after a
 * number or a word is refused (tg_json.h says why).  The unit tests and
 * the fuzz_json target compare every input with jansson.
 *
 * It calls no other file of libtokengate: only jansson and libc.
 */
#include "tg_json.h"

#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Escaped strings are unescaped into a scratch buffer of this size on the
 * stack, and on the heap (wiped before it is freed) when longer. */
#define TG_JSON_SCRATCH_LOCAL 256
/* Number text is copied for strtod into a buffer of this size on the
 * stack; longer numbers (legal, if odd) into the heap. */
#define TG_JSON_NUMBER_LOCAL 64

/* Byte classes (tg_json_class). */
#define TG_JSON_PLAIN 1 /* a string byte needing no work: 0x20-0x7f but " \ */
#define TG_JSON_SPACE 2 /* JSON whitespace: space, tab, LF, CR */
#define TG_JSON_DIGIT 4
#define TG_JSON_ALPHA 8 /* a-z A-Z: jansson reads a whole word of these */

/* A scratch buffer: the stack one, or a heap one once a string needs more;
 * high is how much of it was ever written (what the end wipes). */
typedef struct tg_json_scratch {
    char *p;
    size_t cap;
    size_t high;
    char local[TG_JSON_SCRATCH_LOCAL];
} tg_json_scratch_t;

typedef struct tg_json_parser {
    const unsigned char *start;
    const unsigned char *cur;
    const unsigned char *end;
    int limit; /* containers nested at most, <= TG__JSON_DEPTH_JANSSON */
    int failed;
    json_error_t *error;
    tg_json_scratch_t key; /* an escaped object key */
    tg_json_scratch_t val; /* an escaped string value */
} tg_json_parser_t;

/* A scanned string: where its text starts and ends in the input (between
 * the quotes), and what the scan found in it. */
typedef struct tg_json_str {
    const unsigned char *text;
    const unsigned char *close; /* the closing quote */
    int escaped;
    int nul; /* a \u0000 */
} tg_json_str_t;

/* What a scan of a number or a word found. */
#define TG_JSON_TOKEN_OK 0
#define TG_JSON_TOKEN_BAD 1   /* not a token; no error recorded */
#define TG_JSON_TOKEN_ERROR 2 /* an error recorded (ps->failed) */

static void fail(tg_json_parser_t *ps, const unsigned char *at,
                 enum json_error_code code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail_byte(tg_json_parser_t *ps, const unsigned char *at,
                      enum json_error_code code, const char *msg);
static void fail_token(tg_json_parser_t *ps, const unsigned char *at,
                       const char *msg);
static size_t utf8_sequence(const unsigned char *s, const unsigned char *end);
static int lex_check(tg_json_parser_t *ps, const unsigned char *at);
static void skip_space(tg_json_parser_t *ps);
static long hex4(tg_json_parser_t *ps, const unsigned char *q);
static int scan_string(tg_json_parser_t *ps, const unsigned char *s,
                       tg_json_str_t *str);
static char *unescape(tg_json_parser_t *ps, tg_json_scratch_t *sc,
                      const tg_json_str_t *str, size_t *len);
static inline int take_string(tg_json_parser_t *ps, tg_json_scratch_t *sc,
                              enum json_error_code nul_code, const char **text,
                              size_t *len);
static int scan_number(tg_json_parser_t *ps, const unsigned char *at,
                       json_t **out);
static json_t *real_value(tg_json_parser_t *ps, const unsigned char *at,
                          const unsigned char *stop);
static int scan_word(tg_json_parser_t *ps, const unsigned char *at,
                     json_t **out);
static int attach(tg_json_parser_t *ps, json_t *parent, const char *key,
                  size_t key_len, json_t *v, json_t **top);
static int parse_value(tg_json_parser_t *ps, json_t *parent, const char *key,
                       size_t key_len, int depth, json_t **top);
static int parse_object(tg_json_parser_t *ps, json_t *obj, int depth);
static int parse_array(tg_json_parser_t *ps, json_t *arr, int depth);
static inline int next_item(tg_json_parser_t *ps, unsigned char close);
static inline int take(tg_json_parser_t *ps, unsigned char c);
static void scratch_init(tg_json_scratch_t *sc);
static char *scratch_get(tg_json_scratch_t *sc, size_t n);
static void scratch_wipe(tg_json_scratch_t *sc);

/* clang-format off */
static const unsigned char tg_json_class[256] = {
    ['\t'] = TG_JSON_SPACE, ['\n'] = TG_JSON_SPACE, ['\r'] = TG_JSON_SPACE,
    [' '] = TG_JSON_SPACE | TG_JSON_PLAIN, ['!'] = TG_JSON_PLAIN,
    [0x23 ... 0x2f] = TG_JSON_PLAIN,
    [0x30 ... 0x39] = TG_JSON_PLAIN | TG_JSON_DIGIT,
    [0x3a ... 0x40] = TG_JSON_PLAIN,
    [0x41 ... 0x5a] = TG_JSON_PLAIN | TG_JSON_ALPHA,
    [0x5b] = TG_JSON_PLAIN, [0x5d ... 0x60] = TG_JSON_PLAIN,
    [0x61 ... 0x7a] = TG_JSON_PLAIN | TG_JSON_ALPHA,
    [0x7b ... 0x7f] = TG_JSON_PLAIN,
};
/* clang-format on */

#define IS(c, cls) ((tg_json_class[(unsigned char) (c)] & (cls)) != 0)

/* ---------------------------------------------------------------------- */
/* Errors                                                                 */
/* ---------------------------------------------------------------------- */

/*
 * Record the first error: code and the text (jansson's words, without the
 * input it quotes), with line, column (characters, as jansson counts them)
 * and position of the byte at (or of the end).
 */
static void
fail(tg_json_parser_t *ps, const unsigned char *at, enum json_error_code code,
     const char *fmt, ...)
{
    json_error_t *e = ps->error;
    va_list ap;
    const unsigned char *p, *stop;
    int line = 1, column = 0;

    if (ps->failed) {
        return;
    }
    ps->failed = 1;
    if (e == NULL) {
        return;
    }
    /* jansson has read the byte at fault when it reports it. */
    stop = at < ps->end ? at + 1 : at;
    for (p = ps->start; p < stop; p++) {
        if (*p == '\n') {
            line++;
            column = 0;
        } else if (*p < 0x80 || *p >= 0xc0) {
            column++;
        }
    }
    e->line = line;
    e->column = column;
    e->position = (int) (stop - ps->start);
    va_start(ap, fmt);
    vsnprintf(e->text, JSON_ERROR_TEXT_LENGTH - 1, fmt, ap);
    va_end(ap);
    e->text[JSON_ERROR_TEXT_LENGTH - 2] = '\0';
    e->text[JSON_ERROR_TEXT_LENGTH - 1] = (char) code;
}

/* fail() at a byte jansson's reader takes in: a byte that starts no valid
 * UTF-8 sequence is its reader's error before anything else. */
static void
fail_byte(tg_json_parser_t *ps, const unsigned char *at,
          enum json_error_code code, const char *msg)
{
    if (at < ps->end && *at >= 0x80 && utf8_sequence(at, ps->end) == 0) {
        fail(ps, at, json_error_invalid_utf8, "unable to decode byte 0x%x",
             *at);
        return;
    }
    fail(ps, at, code, "%s", msg);
}

/*
 * A wrong token at at, where the grammar wanted something else (msg).
 * jansson's lexer has read that whole token when its parser says so, and
 * reports the token's own fault first; a missing token (the end, or a raw
 * NUL, which jansson takes as an empty token) is a premature end.
 */
static void
fail_token(tg_json_parser_t *ps, const unsigned char *at, const char *msg)
{
    if (lex_check(ps, at)) {
        return;
    }
    if (at == ps->end || *at == '\0') {
        fail(ps, at, json_error_premature_end_of_input, "%s", msg);
        return;
    }
    fail(ps, at, json_error_invalid_syntax, "%s", msg);
}

/* ---------------------------------------------------------------------- */
/* Tokens                                                                 */
/* ---------------------------------------------------------------------- */

/*
 * The length of the valid UTF-8 sequence at s (s[0] >= 0x80), or 0: the
 * rules of jansson's utf8_check_first/utf8_check_full (no overlongs, no
 * surrogates, at most U+10FFFF), and a sequence cut by the end is invalid.
 */
static size_t
utf8_sequence(const unsigned char *s, const unsigned char *end)
{
    size_t left = (size_t) (end - s);
    unsigned char c = s[0], lo = 0x80, hi = 0xbf;

    if (c < 0xc2 || c > 0xf4) {
        return 0;
    }
    if (c < 0xe0) {
        return left >= 2 && s[1] >= 0x80 && s[1] <= 0xbf ? 2 : 0;
    }
    if (c == 0xe0) {
        lo = 0xa0;
    } else if (c == 0xed) {
        hi = 0x9f;
    } else if (c == 0xf0) {
        lo = 0x90;
    } else if (c == 0xf4) {
        hi = 0x8f;
    }
    if (left < 2 || s[1] < lo || s[1] > hi) {
        return 0;
    }
    if (c < 0xf0) {
        return left >= 3 && s[2] >= 0x80 && s[2] <= 0xbf ? 3 : 0;
    }
    return left >= 4 && s[2] >= 0x80 && s[2] <= 0xbf && s[3] >= 0x80 &&
                   s[3] <= 0xbf
               ? 4
               : 0;
}

/*
 * Scan the token at at as jansson's lexer would, only for the faults it
 * reports by itself: 1 when one was recorded, 0 when the token is whole or
 * merely not what the grammar wanted (the caller says so).
 */
static int
lex_check(tg_json_parser_t *ps, const unsigned char *at)
{
    tg_json_str_t str;

    if (at == ps->end) {
        return 0;
    }
    if (*at == '"') {
        return scan_string(ps, at, &str) != 0;
    }
    if (*at == '-' || IS(*at, TG_JSON_DIGIT)) {
        return scan_number(ps, at, NULL) == TG_JSON_TOKEN_ERROR;
    }
    if (IS(*at, TG_JSON_ALPHA)) {
        return scan_word(ps, at, NULL) == TG_JSON_TOKEN_ERROR;
    }
    if (*at >= 0x80 && utf8_sequence(at, ps->end) == 0) {
        fail(ps, at, json_error_invalid_utf8, "unable to decode byte 0x%x",
             *at);
        return 1;
    }
    return 0;
}

static void
skip_space(tg_json_parser_t *ps)
{
    const unsigned char *p = ps->cur, *end = ps->end;

    while (p < end && IS(*p, TG_JSON_SPACE)) {
        p++;
    }
    ps->cur = p;
}

/* The 4 hex digits of a \u escape at q; -1 (recorded) when one is not. */
static long
hex4(tg_json_parser_t *ps, const unsigned char *q)
{
    long v = 0;
    int i;

    for (i = 0; i < 4; i++) {
        unsigned char c;

        if (q + i >= ps->end) {
            fail(ps, q + i, json_error_invalid_syntax, "invalid escape");
            return -1;
        }
        c = q[i];
        if (c >= '0' && c <= '9') {
            v = v * 16 + (c - '0');
        } else if (c >= 'a' && c <= 'f') {
            v = v * 16 + (c - 'a' + 10);
        } else if (c >= 'A' && c <= 'F') {
            v = v * 16 + (c - 'A' + 10);
        } else {
            fail_byte(ps, q + i, json_error_invalid_syntax, "invalid escape");
            return -1;
        }
    }
    return v;
}

/*
 * Scan the string whose opening quote is at s: 0 with *str filled, or -1
 * (recorded).  jansson checks the surrogates of \u escapes only once the
 * whole string is read, so a fault later in the string (bad UTF-8, a
 * control byte, the end) is reported before them.
 */
static int
scan_string(tg_json_parser_t *ps, const unsigned char *s, tg_json_str_t *str)
{
    const unsigned char *p = s + 1, *end = ps->end, *bad = NULL;
    const char *bad_msg = NULL;
    long v, v2;
    size_t n;

    str->text = p;
    str->escaped = 0;
    str->nul = 0;
    for (;;) {
        /* Most string bytes are plain: four at a time, then one. */
        while (end - p >= 4 && IS(p[0], TG_JSON_PLAIN) &&
               IS(p[1], TG_JSON_PLAIN) && IS(p[2], TG_JSON_PLAIN) &&
               IS(p[3], TG_JSON_PLAIN)) {
            p += 4;
        }
        while (p < end && IS(*p, TG_JSON_PLAIN)) {
            p++;
        }
        if (p == end) {
            fail(ps, p, json_error_premature_end_of_input,
                 "premature end of input");
            return -1;
        }
        if (*p == '"') {
            break;
        }
        if (*p == '\\') {
            str->escaped = 1;
            if (p + 1 == end) {
                fail(ps, p + 1, json_error_invalid_syntax, "invalid escape");
                return -1;
            }
            if (p[1] != 'u') {
                if (strchr("\"\\/bfnrt", p[1]) == NULL || p[1] == '\0') {
                    fail_byte(ps, p + 1, json_error_invalid_syntax,
                              "invalid escape");
                    return -1;
                }
                p += 2;
                continue;
            }
            v = hex4(ps, p + 2);
            if (v < 0) {
                return -1;
            }
            p += 6;
            if (v == 0) {
                str->nul = 1;
            }
            if (v >= 0xd800 && v <= 0xdbff) {
                if (end - p >= 2 && p[0] == '\\' && p[1] == 'u') {
                    v2 = hex4(ps, p + 2);
                    if (v2 < 0) {
                        return -1;
                    }
                    p += 6;
                    if ((v2 < 0xdc00 || v2 > 0xdfff) && bad == NULL) {
                        bad = p;
                        bad_msg = "invalid Unicode surrogate pair";
                    }
                } else if (bad == NULL) {
                    bad = p;
                    bad_msg = "lone Unicode surrogate";
                }
            } else if (v >= 0xdc00 && v <= 0xdfff && bad == NULL) {
                bad = p;
                bad_msg = "lone Unicode surrogate";
            }
            continue;
        }
        if (*p < 0x20) {
            if (*p == '\n') {
                fail(ps, p, json_error_invalid_syntax, "unexpected newline");
            } else {
                fail(ps, p, json_error_invalid_syntax, "control character 0x%x",
                     *p);
            }
            return -1;
        }
        n = utf8_sequence(p, end);
        if (n == 0) {
            fail(ps, p, json_error_invalid_utf8, "unable to decode byte 0x%x",
                 *p);
            return -1;
        }
        p += n;
    }
    if (bad != NULL) {
        fail(ps, p, json_error_invalid_syntax, "%s", bad_msg);
        return -1;
    }
    str->close = p;
    return 0;
}

/*
 * The text of a scanned string with escapes, unescaped into sc (NULL on
 * allocation failure, recorded).  It is never longer than its source.
 */
static char *
unescape(tg_json_parser_t *ps, tg_json_scratch_t *sc, const tg_json_str_t *str,
         size_t *len)
{
    const unsigned char *p = str->text, *end = str->close, *hit;
    char *out, *o;
    long v, v2;

    out = scratch_get(sc, (size_t) (end - p));
    if (out == NULL) {
        fail(ps, p, json_error_out_of_memory, "out of memory");
        return NULL;
    }
    o = out;
    while (p < end) {
        hit = memchr(p, '\\', (size_t) (end - p));
        if (hit == NULL) {
            hit = end;
        }
        memcpy(o, p, (size_t) (hit - p));
        o += hit - p;
        p = hit;
        if (p == end) {
            break;
        }
        switch (p[1]) {
        case 'b':
            *o++ = '\b';
            break;
        case 'f':
            *o++ = '\f';
            break;
        case 'n':
            *o++ = '\n';
            break;
        case 'r':
            *o++ = '\r';
            break;
        case 't':
            *o++ = '\t';
            break;
        case 'u':
            break;
        default: /* " \ / */
            *o++ = (char) p[1];
            break;
        }
        if (p[1] != 'u') {
            p += 2;
            continue;
        }
        /* Scanned already: 4 hex digits, and a valid pair if a surrogate. */
        v = hex4(ps, p + 2);
        p += 6;
        if (v >= 0xd800 && v <= 0xdbff) {
            v2 = hex4(ps, p + 2);
            p += 6;
            v = ((v - 0xd800) << 10) + (v2 - 0xdc00) + 0x10000;
        }
        if (v < 0x80) {
            *o++ = (char) v;
        } else if (v < 0x800) {
            *o++ = (char) (0xc0 | (v >> 6));
            *o++ = (char) (0x80 | (v & 0x3f));
        } else if (v < 0x10000) {
            *o++ = (char) (0xe0 | (v >> 12));
            *o++ = (char) (0x80 | ((v >> 6) & 0x3f));
            *o++ = (char) (0x80 | (v & 0x3f));
        } else {
            *o++ = (char) (0xf0 | (v >> 18));
            *o++ = (char) (0x80 | ((v >> 12) & 0x3f));
            *o++ = (char) (0x80 | ((v >> 6) & 0x3f));
            *o++ = (char) (0x80 | (v & 0x3f));
        }
    }
    *len = (size_t) (o - out);
    return out;
}

/*
 * The string at ps->cur, stepped over: its text, in the input or unescaped
 * into sc, and its length.  -1 (recorded) when it is bad, or holds a
 * \\u0000 (refused with nul_code: jansson's for a value or for a key).
 */
static inline int
take_string(tg_json_parser_t *ps, tg_json_scratch_t *sc,
            enum json_error_code nul_code, const char **text, size_t *len)
{
    tg_json_str_t str;

    if (scan_string(ps, ps->cur, &str) != 0) {
        return -1;
    }
    ps->cur = str.close + 1;
    if (str.nul) {
        fail(ps, str.close, nul_code, "%s",
             nul_code == json_error_null_byte_in_key
                 ? "NUL byte in object key not supported"
                 : "\\u0000 is not allowed without JSON_ALLOW_NUL");
        return -1;
    }
    if (!str.escaped) {
        *text = (const char *) str.text;
        *len = (size_t) (str.close - str.text);
        return 0;
    }
    *text = unescape(ps, sc, &str, len);
    return *text != NULL ? 0 : -1;
}

/*
 * Scan the number at at (jansson's grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?
 * ([eE][+-]?[0-9]+)?).  With out, also make its value: json_integer when it
 * has no fraction and no exponent (a long long; beyond it an overflow),
 * else json_real by strtod (beyond a double an overflow; an underflow
 * gives strtod's 0 or subnormal, as in jansson).  Leaves ps->cur after it.
 */
static int
scan_number(tg_json_parser_t *ps, const unsigned char *at, json_t **out)
{
    const unsigned char *s = at, *end = ps->end;
    unsigned long long u = 0, limit = (unsigned long long) LLONG_MAX;
    int neg = 0, over = 0, is_int = 1;
    unsigned d;

    if (*s == '-') {
        neg = 1;
        limit += 1;
        s++;
    }
    if (s < end && *s == '0') {
        s++;
        if (s < end && IS(*s, TG_JSON_DIGIT)) {
            goto bad;
        }
    } else if (s < end && IS(*s, TG_JSON_DIGIT)) {
        do {
            d = (unsigned) (*s - '0');
            if (u > (limit - d) / 10) {
                over = 1;
            } else {
                u = u * 10 + d;
            }
            s++;
        } while (s < end && IS(*s, TG_JSON_DIGIT));
    } else {
        goto bad;
    }
    if (s < end && *s == '.') {
        is_int = 0;
        s++;
        if (s == end || !IS(*s, TG_JSON_DIGIT)) {
            goto bad;
        }
        while (s < end && IS(*s, TG_JSON_DIGIT)) {
            s++;
        }
    }
    if (s < end && (*s == 'e' || *s == 'E')) {
        is_int = 0;
        s++;
        if (s < end && (*s == '+' || *s == '-')) {
            s++;
        }
        if (s == end || !IS(*s, TG_JSON_DIGIT)) {
            goto bad;
        }
        while (s < end && IS(*s, TG_JSON_DIGIT)) {
            s++;
        }
    }
    /* jansson's lexer has read one byte past the number. */
    if (s < end && *s >= 0x80 && utf8_sequence(s, end) == 0) {
        fail(ps, s, json_error_invalid_utf8, "unable to decode byte 0x%x", *s);
        return TG_JSON_TOKEN_ERROR;
    }
    if (is_int && over) {
        fail(ps, s, json_error_numeric_overflow,
             neg ? "too big negative integer" : "too big integer");
        return TG_JSON_TOKEN_ERROR;
    }
    ps->cur = s;
    if (is_int) {
        if (out != NULL) {
            *out = json_integer(neg ? (json_int_t) (0ULL - u) : (json_int_t) u);
        }
        return TG_JSON_TOKEN_OK;
    }
    if (out == NULL) {
        /* jansson converts at once: an overflow is its lexer's fault. */
        json_t *v = real_value(ps, at, s);
        if (v == NULL) {
            return TG_JSON_TOKEN_ERROR;
        }
        json_decref(v);
        return TG_JSON_TOKEN_OK;
    }
    *out = real_value(ps, at, s);
    return *out != NULL ? TG_JSON_TOKEN_OK : TG_JSON_TOKEN_ERROR;

bad:
    if (s < end && *s >= 0x80 && utf8_sequence(s, end) == 0) {
        fail(ps, s, json_error_invalid_utf8, "unable to decode byte 0x%x", *s);
        return TG_JSON_TOKEN_ERROR;
    }
    ps->cur = s;
    return TG_JSON_TOKEN_BAD;
}

/*
 * json_real of the number text [at, stop), NULL (recorded) on overflow or
 * allocation failure.  strtod reads the decimal point of the C library's
 * locale: like jansson's jsonp_strtod, put that in place of the '.'.
 */
static json_t *
real_value(tg_json_parser_t *ps, const unsigned char *at,
           const unsigned char *stop)
{
    char local[TG_JSON_NUMBER_LOCAL], *buf = local, *dot, *endp;
    size_t n = (size_t) (stop - at);
    const char *point;
    double d;
    json_t *v;

    if (n >= sizeof(local)) {
        buf = malloc(n + 1);
        if (buf == NULL) {
            fail(ps, at, json_error_out_of_memory, "out of memory");
            return NULL;
        }
    }
    memcpy(buf, at, n);
    buf[n] = '\0';
    dot = memchr(buf, '.', n);
    if (dot != NULL) {
        point = localeconv()->decimal_point;
        if (point[0] != '.' && point[0] != '\0') {
            *dot = point[0];
        }
    }
    errno = 0;
    d = strtod(buf, &endp);
    if (buf != local) {
        free(buf);
    }
    if ((d == HUGE_VAL || d == -HUGE_VAL) && errno == ERANGE) {
        fail(ps, stop, json_error_numeric_overflow, "real number overflow");
        return NULL;
    }
    v = json_real(d);
    if (v == NULL) {
        fail(ps, at, json_error_out_of_memory, "out of memory");
    }
    return v;
}

/*
 * Scan the word of letters at at (true, false, null, or not a token), as
 * jansson reads a whole word and the byte after it.  With out, make its
 * value.  Leaves ps->cur after the word.
 */
static int
scan_word(tg_json_parser_t *ps, const unsigned char *at, json_t **out)
{
    const unsigned char *s = at, *end = ps->end;
    size_t n;

    while (s < end && IS(*s, TG_JSON_ALPHA)) {
        s++;
    }
    if (s < end && *s >= 0x80 && utf8_sequence(s, end) == 0) {
        fail(ps, s, json_error_invalid_utf8, "unable to decode byte 0x%x", *s);
        return TG_JSON_TOKEN_ERROR;
    }
    n = (size_t) (s - at);
    ps->cur = s;
    if (n == 4 && memcmp(at, "true", 4) == 0) {
        if (out != NULL) {
            *out = json_true();
        }
    } else if (n == 5 && memcmp(at, "false", 5) == 0) {
        if (out != NULL) {
            *out = json_false();
        }
    } else if (n == 4 && memcmp(at, "null", 4) == 0) {
        if (out != NULL) {
            *out = json_null();
        }
    } else {
        return TG_JSON_TOKEN_BAD;
    }
    return TG_JSON_TOKEN_OK;
}

/* ---------------------------------------------------------------------- */
/* Values                                                                 */
/* ---------------------------------------------------------------------- */

/* Put the new value v (stolen; NULL: allocation failed) into parent under
 * key (an object), at its end (an array), or in *top (no parent). */
static int
attach(tg_json_parser_t *ps, json_t *parent, const char *key, size_t key_len,
       json_t *v, json_t **top)
{
    int rc;

    if (v == NULL) {
        fail(ps, ps->cur, json_error_out_of_memory, "out of memory");
        return -1;
    }
    if (parent == NULL) {
        *top = v;
        return 0;
    }
    rc = key != NULL ? json_object_setn_new_nocheck(parent, key, key_len, v)
                     : json_array_append_new(parent, v);
    if (rc != 0) {
        fail(ps, ps->cur, json_error_out_of_memory, "out of memory");
        return -1;
    }
    return 0;
}

/*
 * The value at ps->cur (whitespace skipped), inside depth containers, into
 * parent (see attach).  A container is attached before it is filled, so
 * that its key need not outlive this call and an error frees everything
 * through the top value.
 */
static int
parse_value(tg_json_parser_t *ps, json_t *parent, const char *key,
            size_t key_len, int depth, json_t **top)
{
    const unsigned char *at = ps->cur;
    json_t *v = NULL;
    const char *text;
    size_t len;
    int rc;

    if (depth >= TG__JSON_DEPTH_JANSSON) {
        /* jansson counts every value, a scalar too, against its limit,
         * once its lexer has read the value's first token. */
        if (!lex_check(ps, at)) {
            fail(ps, at, json_error_stack_overflow,
                 "maximum parsing depth reached");
        }
        return -1;
    }
    if (at == ps->end) {
        fail(ps, at, json_error_premature_end_of_input, "unexpected token");
        return -1;
    }
    switch (*at) {
    case '{':
    case '[':
        if (depth + 1 > ps->limit) {
            fail(ps, at, json_error_stack_overflow,
                 "maximum parsing depth reached");
            return -1;
        }
        v = *at == '{' ? json_object() : json_array();
        if (attach(ps, parent, key, key_len, v, top) != 0) {
            return -1;
        }
        ps->cur = at + 1;
        return *at == '{' ? parse_object(ps, v, depth + 1)
                          : parse_array(ps, v, depth + 1);
    case '"':
        if (take_string(ps, &ps->val, json_error_null_character, &text, &len) !=
            0) {
            return -1;
        }
        v = json_stringn_nocheck(text, len);
        break;
    default:
        if (*at == '-' || IS(*at, TG_JSON_DIGIT)) {
            rc = scan_number(ps, at, &v);
        } else if (IS(*at, TG_JSON_ALPHA)) {
            rc = scan_word(ps, at, &v);
        } else {
            fail_token(ps, at, "unexpected token");
            return -1;
        }
        if (rc == TG_JSON_TOKEN_ERROR) {
            return -1;
        }
        if (rc == TG_JSON_TOKEN_BAD) {
            fail(ps, at, json_error_invalid_syntax, "invalid token");
            return -1;
        }
        break;
    }
    return attach(ps, parent, key, key_len, v, top);
}

/* The members of obj, ps->cur just after its '{', to its '}'. */
static int
parse_object(tg_json_parser_t *ps, json_t *obj, int depth)
{
    const char *key;
    size_t key_len;
    int rc;

    skip_space(ps);
    if (take(ps, '}')) {
        return 0;
    }
    for (;;) {
        if (ps->cur == ps->end || *ps->cur != '"') {
            fail_token(ps, ps->cur, "string or '}' expected");
            return -1;
        }
        if (take_string(ps, &ps->key, json_error_null_byte_in_key, &key,
                        &key_len) != 0) {
            return -1;
        }
        if (json_object_size(obj) > 0 &&
            json_object_getn(obj, key, key_len) != NULL) {
            fail(ps, ps->cur - 1, json_error_duplicate_key,
                 "duplicate object key");
            return -1;
        }
        skip_space(ps);
        if (!take(ps, ':')) {
            fail_token(ps, ps->cur, "':' expected");
            return -1;
        }
        skip_space(ps);
        if (parse_value(ps, obj, key, key_len, depth, NULL) != 0) {
            return -1;
        }
        rc = next_item(ps, '}');
        if (rc <= 0) {
            return rc;
        }
    }
}

/* The elements of arr, ps->cur just after its '[', to its ']'. */
static int
parse_array(tg_json_parser_t *ps, json_t *arr, int depth)
{
    int rc;

    skip_space(ps);
    if (take(ps, ']')) {
        return 0;
    }
    for (;;) {
        /* jansson looks for another element only while tokens come. */
        if (ps->cur == ps->end) {
            fail(ps, ps->cur, json_error_premature_end_of_input,
                 "']' expected");
            return -1;
        }
        if (parse_value(ps, arr, NULL, 0, depth, NULL) != 0) {
            return -1;
        }
        rc = next_item(ps, ']');
        if (rc <= 0) {
            return rc;
        }
    }
}

/* After a member or an element: 1 when a ',' says another follows, 0 when
 * close ends the container, -1 (recorded) on anything else. */
static inline int
next_item(tg_json_parser_t *ps, unsigned char close)
{
    skip_space(ps);
    if (take(ps, ',')) {
        skip_space(ps);
        return 1;
    }
    if (take(ps, close)) {
        return 0;
    }
    fail_token(ps, ps->cur, close == '}' ? "'}' expected" : "']' expected");
    return -1;
}

/* Step over the byte c if it comes next. */
static inline int
take(tg_json_parser_t *ps, unsigned char c)
{
    if (ps->cur < ps->end && *ps->cur == c) {
        ps->cur++;
        return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------------- */
/* Scratch buffers                                                        */
/* ---------------------------------------------------------------------- */

static void
scratch_init(tg_json_scratch_t *sc)
{
    sc->p = sc->local;
    sc->cap = sizeof(sc->local);
    sc->high = 0;
}

/* Room for n bytes (the old content is not kept); NULL when out of memory. */
static char *
scratch_get(tg_json_scratch_t *sc, size_t n)
{
    char *p;
    size_t cap;

    if (n > sc->cap) {
        cap = n > sc->cap * 2 ? n : sc->cap * 2;
        p = malloc(cap);
        if (p == NULL) {
            return NULL;
        }
        scratch_wipe(sc);
        sc->p = p;
        sc->cap = cap;
    }
    if (n > sc->high) {
        sc->high = n;
    }
    return sc->p;
}

/* Wipe what was written (it may be a token) and free a heap buffer. */
static void
scratch_wipe(tg_json_scratch_t *sc)
{
    if (sc->high > 0) {
        explicit_bzero(sc->p, sc->high);
    }
    if (sc->p != sc->local) {
        free(sc->p);
    }
    scratch_init(sc);
}

/* ---------------------------------------------------------------------- */
/* The decoder                                                            */
/* ---------------------------------------------------------------------- */

json_t *
tg__json_decode(const char *buf, size_t len, size_t flags, int depth_max,
                json_error_t *error)
{
    tg_json_parser_t ps;
    const unsigned char *at;
    json_t *root = NULL;

    if (error != NULL) {
        error->text[0] = '\0';
        error->line = -1;
        error->column = -1;
        error->position = 0;
        memcpy(error->source, "<buffer>", sizeof("<buffer>"));
    }
    ps.error = error;
    ps.failed = 0;
    if (buf == NULL ||
        (flags & ~(size_t) (JSON_DECODE_ANY | JSON_REJECT_DUPLICATES)) != 0) {
        if (error != NULL) {
            snprintf(error->text, JSON_ERROR_TEXT_LENGTH - 1, "%s",
                     "wrong arguments");
            error->text[JSON_ERROR_TEXT_LENGTH - 1] =
                (char) json_error_invalid_argument;
        }
        return NULL;
    }
    ps.start = (const unsigned char *) buf;
    ps.cur = ps.start;
    ps.end = ps.start + len;
    ps.limit = depth_max > 0 && depth_max < TG__JSON_DEPTH_JANSSON
                   ? depth_max
                   : TG__JSON_DEPTH_JANSSON;
    scratch_init(&ps.key);
    scratch_init(&ps.val);

    skip_space(&ps);
    if ((flags & JSON_DECODE_ANY) == 0 &&
        (ps.cur == ps.end || (*ps.cur != '[' && *ps.cur != '{'))) {
        fail_token(&ps, ps.cur, "'[' or '{' expected");
        goto out;
    }
    if (parse_value(&ps, NULL, NULL, 0, 0, &root) != 0) {
        goto out;
    }
    skip_space(&ps);
    at = ps.cur;
    if (at != ps.end) {
        if (!lex_check(&ps, at)) {
            fail(&ps, at, json_error_end_of_input_expected,
                 "end of file expected");
        }
        goto out;
    }
    if (error != NULL) {
        error->position = (int) len;
    }

out:
    scratch_wipe(&ps.key);
    scratch_wipe(&ps.val);
    if (ps.failed) {
        json_decref(root);
        root = NULL;
    }
    return root;
}
