/* SPDX-License-Identifier: MIT */
/*
 * test_json.c - the JSON decoder (common/json.c) against jansson 2.14's
 * json_loadb with JSON_REJECT_DUPLICATES, which it replaces: every case is
 * decoded by both, and both must accept it (json_equal values) or refuse it
 * (the same json_error_code), besides the outcome the case names.  The
 * one chosen difference (a raw NUL after a number or a word, tg_json.h) has
 * its own test.  Each test is named by what it protects.
 */
#include "tokengate.h"
#include "tg_json.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "tg_test.h"

/* A case's outcome: accepted, or refused with this json_error_code. */
#define OK (-1)
#define PREMATURE json_error_premature_end_of_input
#define SYNTAX json_error_invalid_syntax
#define UTF8 json_error_invalid_utf8
#define END json_error_end_of_input_expected
#define NULCHAR json_error_null_character
#define NULKEY json_error_null_byte_in_key
#define DUP json_error_duplicate_key
#define OVERFLOW json_error_numeric_overflow
#define STACK json_error_stack_overflow
#define ANY JSON_DECODE_ANY

/* protocol.c's limit. */
#define DEPTH 32

typedef struct json_case {
    const char *text;
    size_t len;
    size_t flags;
    int outcome;
    const char *value; /* accepted: the value as jansson reads this text */
} json_case_t;

/* A case from a string literal (NULs inside are kept). */
#define C(t, f, o)                                                             \
    {                                                                          \
        t, sizeof(t) - 1, f, o, NULL                                           \
    }
#define V(t, f, v)                                                             \
    {                                                                          \
        t, sizeof(t) - 1, f, OK, v                                             \
    }

static json_t *decode(const char *text, size_t len, size_t flags, int depth,
                      json_error_t *err);
static void check_case(const char *text, size_t len, size_t flags, int depth,
                       int outcome, const char *value);
static void check_cases(const json_case_t *cases, size_t n);
static char *nested(int n, const char *open, const char *inner,
                    const char *close, size_t *len);
static void check_nested(int n, const char *open, const char *inner,
                         const char *close, int depth, int outcome);

static json_t *
decode(const char *text, size_t len, size_t flags, int depth, json_error_t *err)
{
    char *copy = malloc(len > 0 ? len : 1);
    json_t *v;

    /* A buffer of exactly len bytes: a read past it is a sanitizer fault. */
    assert_non_null(copy);
    memcpy(copy, text, len);
    v = tg__json_decode(copy, len, flags, depth, err);
    free(copy);
    return v;
}

/*
 * Decode text with both decoders: the outcome must be the case's and
 * jansson's (depth 0: jansson's own limit; a smaller depth only when the
 * text nests no deeper, since jansson has no such limit).
 */
static void
check_case(const char *text, size_t len, size_t flags, int depth, int outcome,
           const char *value)
{
    json_error_t jerr, merr;
    json_t *j, *m, *want;

    j = json_loadb(text, len, JSON_REJECT_DUPLICATES | flags, &jerr);
    m = decode(text, len, flags, depth, &merr);
    if ((outcome == OK) != (m != NULL) ||
        (outcome != OK && (int) json_error_code(&merr) != outcome)) {
        print_error("case %.*s: want %d, got %s (%d: %s)\n", (int) len, text,
                    outcome, m != NULL ? "accepted" : "refused",
                    m != NULL ? -1 : (int) json_error_code(&merr),
                    m != NULL ? "" : merr.text);
        fail();
    }
    if (outcome != STACK || depth == 0) {
        /* The differential check. */
        assert_true((j != NULL) == (m != NULL));
        if (m != NULL) {
            assert_true(json_equal(j, m));
        } else {
            assert_int_equal(json_error_code(&jerr), json_error_code(&merr));
        }
    }
    if (value != NULL) {
        want = json_loads(value, JSON_DECODE_ANY, NULL);
        assert_non_null(want);
        assert_true(json_equal(want, m));
        json_decref(want);
    }
    if (m == NULL) {
        /* Our words, never the input's (answers hold tokens). */
        assert_true(merr.text[0] != '\0');
        assert_true(merr.line >= 1 && merr.column >= 0);
        assert_true(merr.position >= 0 && (size_t) merr.position <= len);
    }
    json_decref(j);
    json_decref(m);
}

static void
check_cases(const json_case_t *cases, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        check_case(cases[i].text, cases[i].len, cases[i].flags, 0,
                   cases[i].outcome, cases[i].value);
        /* Nothing here nests deeper than protocol.c's limit. */
        check_case(cases[i].text, cases[i].len, cases[i].flags, DEPTH,
                   cases[i].outcome, cases[i].value);
    }
}

/* open x n, inner, close x n: a new string (free it), its length in len. */
static char *
nested(int n, const char *open, const char *inner, const char *close,
       size_t *len)
{
    size_t lo = strlen(open), li = strlen(inner), lc = strlen(close);
    char *s = malloc((size_t) n * (lo + lc) + li + 1), *p;
    int i;

    assert_non_null(s);
    p = s;
    for (i = 0; i < n; i++) {
        memcpy(p, open, lo);
        p += lo;
    }
    memcpy(p, inner, li);
    p += li;
    for (i = 0; i < n; i++) {
        memcpy(p, close, lc);
        p += lc;
    }
    *p = '\0';
    *len = (size_t) (p - s);
    return s;
}

/* ---------------------------------------------------------------------- */
/* Grammar                                                                */
/* ---------------------------------------------------------------------- */

static void
grammar_matches_jansson(void **state)
{
    static const json_case_t cases[] = {
        V("{}", 0, "{}"),
        V("[]", 0, "[]"),
        V(" \t\r\n{ \"a\" : [ 1 , true , false , null ] }\n ", 0,
          "{\"a\":[1,true,false,null]}"),
        V("{\"uid\":\"u-alice\",\"mail\":\"alice@example.com\",\"cn\":"
          "\"alice\",\"access_token_expiration_time\":"
          "\"2026-12-06T13:15:00Z\"}",
          0, NULL),
        V("[{},[],{\"a\":{\"b\":[{}]}}]", 0, NULL),
        C("{\"a\":1,}", 0, SYNTAX),
        C("[1,]", 0, SYNTAX),
        C("[,1]", 0, SYNTAX),
        C("[1 2]", 0, SYNTAX),
        C("{\"a\" 1}", 0, SYNTAX),
        C("{\"a\":1 \"b\":2}", 0, SYNTAX),
        C("{1:2}", 0, SYNTAX),
        C("{'a':1}", 0, SYNTAX),
        C("{\"a\"::1}", 0, SYNTAX),
        C("[}", 0, SYNTAX),
        C("{]", 0, SYNTAX),
        C("[:]", 0, SYNTAX),
        C("[tru]", 0, SYNTAX),
        C("[truex]", 0, SYNTAX),
        C("[True]", 0, SYNTAX),
        C("[nul]", 0, SYNTAX),
        C("[NaN]", 0, SYNTAX),
        C("[Infinity]", 0, SYNTAX),
        C("[true1]", 0, SYNTAX),
        C("[#]", 0, SYNTAX),
        C("[\xc3\xa9]", 0, SYNTAX),
        C("[\xff]", 0, UTF8),
        C("[tru\xff]", 0, UTF8),
        C("[trux\xff]", 0, UTF8),
        C("[true\xff]", 0, UTF8),
        /* Only space, tab, LF and CR are whitespace. */
        C("\f{}", 0, SYNTAX),
        C("{}\v", 0, END),
        C("\xc2\xa0{}", 0, SYNTAX),
        /* The end. */
        C("", 0, PREMATURE),
        C("", ANY, PREMATURE),
        C("  \n", 0, PREMATURE),
        C("{", 0, PREMATURE),
        C("[", 0, PREMATURE),
        C("[1", 0, PREMATURE),
        C("[1,", 0, PREMATURE),
        C("{\"a\"", 0, PREMATURE),
        C("{\"a\":", 0, PREMATURE),
        C("{\"a\":1", 0, PREMATURE),
        C("{\"a\":1,", 0, PREMATURE),
        C("[{\"a\":[1,{", 0, PREMATURE),
        /* Trailing text: jansson's lexer reads the next token first. */
        C("{}x", 0, END),
        C("{} {}", 0, END),
        C("[]]", 0, END),
        C("{}\"abc", 0, PREMATURE),
        C("{}\"abc\"", 0, END),
        C("{} 1e999", 0, OVERFLOW),
        C("{} 1", 0, END),
        C("{}\xff", 0, UTF8),
        C("{}\0", 0, END),
        C("[1]\0", 0, END),
        /* Top level: an object or an array, unless JSON_DECODE_ANY. */
        C("1", 0, SYNTAX),
        V("1", ANY, "1"),
        C("\"a\"", 0, SYNTAX),
        V("\"a\"", ANY, "\"a\""),
        V(" null ", ANY, "null"),
        V("-2.5", ANY, "-2.5"),
        C("\"abc", 0, PREMATURE),
        C("\"\\u0000\"", 0, SYNTAX),
        C("\"\\u0000\"", ANY, NULCHAR),
        C("\"\\ud800\"", 0, SYNTAX),
        C("1e999", 0, OVERFLOW),
        C("-", 0, SYNTAX),
        C("-\xff", 0, UTF8),
        C("\"a\" x", ANY, END),
        C("\"a\",", ANY, END),
        C("x", ANY, SYNTAX),
        C("\0", 0, PREMATURE),
        C("{\0}", 0, PREMATURE),
    };

    (void) state;
    check_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

/* ---------------------------------------------------------------------- */
/* Strings                                                                */
/* ---------------------------------------------------------------------- */

static void
escapes_and_surrogate_pairs_match_jansson(void **state)
{
    static const json_case_t cases[] = {
        V("[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"]", 0,
          "[\"\\\"\\\\/\\b\\f\\n\\r\\t\"]"),
        V("[\"\\u0041\\u00e9\\u20AC\\ud83d\\ude00\"]", 0,
          "[\"A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"]"),
        V("[\"\\uDBFF\\uDFFF\"]", 0, "[\"\xf4\x8f\xbf\xbf\"]"),
        V("[\"\\u007f\\u0080\\u07ff\\u0800\\uffff\"]", 0,
          "[\"\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf\"]"),
        V("[\"a\\nb\",\"plain\"]", 0, NULL),
        V("[\"\x7f\"]", 0, NULL),
        V("[\"\"]", 0, "[\"\"]"),
        /* Surrogates: pairs only. */
        C("[\"\\ud83d\"]", 0, SYNTAX),
        C("[\"\\ude00\"]", 0, SYNTAX),
        C("[\"\\ud83d\\u0041\"]", 0, SYNTAX),
        C("[\"\\ud83dx\"]", 0, SYNTAX),
        C("[\"\\ud83d\\ud83d\"]", 0, SYNTAX),
        C("[\"\\ud83d\\n\"]", 0, SYNTAX),
        C("[\"\\ude00\\ud83d\"]", 0, SYNTAX),
        /* jansson checks surrogates after reading the string. */
        C("[\"\\ud800\xff\"]", 0, UTF8),
        C("[\"\\ud800", 0, PREMATURE),
        C("[\"\\ud800\x01\"]", 0, SYNTAX),
        /* Bad escapes. */
        C("[\"\\u00\"]", 0, SYNTAX),
        C("[\"\\u12G4\"]", 0, SYNTAX),
        C("[\"\\u12\xff\"]", 0, UTF8),
        C("[\"\\x\"]", 0, SYNTAX),
        C("[\"\\'\"]", 0, SYNTAX),
        C("[\"\\\xff\"]", 0, UTF8),
        C("[\"\\", 0, SYNTAX),
        C("[\"\\u12", 0, SYNTAX),
        C("[\"\\ud83d\\u12", 0, SYNTAX),
        /* \u0000: refused in values and keys. */
        C("[\"\\u0000\"]", 0, NULCHAR),
        C("[\"a\\u0000b\"]", 0, NULCHAR),
        C("{\"\\u0000\":1}", 0, NULKEY),
        C("{\"a\\u0000b\":1}", 0, NULKEY),
        /* Control bytes. */
        C("[\"a\x01\"]", 0, SYNTAX),
        C("[\"a\nb\"]", 0, SYNTAX),
        C("[\"a\tb\"]", 0, SYNTAX),
        C("[\"a\0b\"]", 0, SYNTAX),
        C("[\"abc", 0, PREMATURE),
        C("[\"abc\\\"", 0, PREMATURE),
    };

    (void) state;
    check_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void
utf8_is_checked_like_jansson(void **state)
{
    static const struct {
        const char *bytes;
        int valid;
    } table[] = {
        {"\x7f", 1},
        {"\xc2\x80", 1},
        {"\xdf\xbf", 1},
        {"\xe0\xa0\x80", 1},
        {"\xed\x9f\xbf", 1},
        {"\xee\x80\x80", 1},
        {"\xef\xbf\xbf", 1},
        {"\xf0\x90\x80\x80", 1},
        {"\xf3\xbf\xbf\xbf", 1},
        {"\xf4\x8f\xbf\xbf", 1},
        {"\x80", 0}, /* a lone continuation byte */
        {"\xbf", 0},
        {"\xc0\x80", 0}, /* overlong */
        {"\xc1\xbf", 0},
        {"\xe0\x80\x80", 0},
        {"\xe0\x9f\xbf", 0},
        {"\xf0\x80\x80\x80", 0},
        {"\xf0\x8f\xbf\xbf", 0},
        {"\xed\xa0\x80", 0}, /* UTF-16 surrogates */
        {"\xed\xbf\xbf", 0},
        {"\xf4\x90\x80\x80", 0}, /* above U+10FFFF */
        {"\xf5\x80\x80\x80", 0},
        {"\xf8\x88\x80\x80\x80", 0},
        {"\xfe", 0},
        {"\xff", 0},
        {"\xc2", 0}, /* cut short */
        {"\xe0\xa0", 0},
        {"\xf0\x90\x80", 0},
        {"\xc2\x41", 0},
        {"\xe2\x82\x41", 0},
    };
    char text[32], value[32];
    size_t i, n;

    (void) state;
    for (i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        n = (size_t) snprintf(text, sizeof(text), "[\"a%sz\"]", table[i].bytes);
        snprintf(value, sizeof(value), "[\"a%sz\"]", table[i].bytes);
        check_case(text, n, 0, 0, table[i].valid ? OK : UTF8,
                   table[i].valid ? value : NULL);
        /* As a key too. */
        n = (size_t) snprintf(text, sizeof(text), "{\"%s\":1}", table[i].bytes);
        check_case(text, n, 0, 0, table[i].valid ? OK : UTF8, NULL);
        /* Cut by the end of the input. */
        n = (size_t) snprintf(text, sizeof(text), "[\"%s", table[i].bytes);
        check_case(text, n, 0, 0, table[i].valid ? PREMATURE : UTF8, NULL);
    }
}

static void
long_escaped_strings_round_trip(void **state)
{
    /* Longer than the stack scratch: the heap one, wiped and freed. */
    size_t n = 5000, i, len;
    char *text = malloc(n * 6 + 16), *p;
    json_t *v;
    json_error_t err;

    (void) state;
    assert_non_null(text);
    p = text;
    p += sprintf(p, "{\"");
    for (i = 0; i < n; i++) {
        p += sprintf(p, i % 2 ? "\\u00e9" : "\\n");
    }
    p += sprintf(p, "\":\"");
    for (i = 0; i < n; i++) {
        p += sprintf(p, i % 3 ? "x" : "\\t");
    }
    p += sprintf(p, "\"}");
    len = (size_t) (p - text);
    check_case(text, len, 0, 0, OK, NULL);
    v = decode(text, len, 0, 0, &err);
    assert_non_null(v);
    assert_int_equal(json_object_size(v), 1);
    json_decref(v);
    free(text);
}

/* ---------------------------------------------------------------------- */
/* Numbers                                                                */
/* ---------------------------------------------------------------------- */

static void
numbers_match_jansson(void **state)
{
    static const json_case_t cases[] = {
        V("[0]", 0, "[0]"),
        V("[-0]", 0, "[0]"),
        V("[-0.0]", 0, "[-0.0]"),
        V("[9223372036854775807]", 0, "[9223372036854775807]"),
        V("[-9223372036854775808]", 0, "[-9223372036854775808]"),
        C("[9223372036854775808]", 0, OVERFLOW),
        C("[-9223372036854775809]", 0, OVERFLOW),
        C("[123456789012345678901234567890]", 0, OVERFLOW),
        C("[1e400]", 0, OVERFLOW),
        C("[-1e400]", 0, OVERFLOW),
        C("[1.7976931348623159e308]", 0, OVERFLOW),
        V("[1.7976931348623157e308]", 0, NULL),
        V("[1e-400]", 0, "[0.0]"),
        V("[4.9e-324]", 0, NULL),
        V("[2.2250738585072011e-308]", 0, NULL),
        V("[1E5,1e+5,1e-5,0.5,10.25e2,-3E-2]", 0, NULL),
        V("[0.1000000000000000000000000000000000000000000000000000000000000"
          "000000000000000000000000000000000000000000000000000001]",
          0, NULL),
        V("[12345678901234567890.5]", 0, NULL),
        C("[00]", 0, SYNTAX),
        C("[01]", 0, SYNTAX),
        C("[-01]", 0, SYNTAX),
        C("[+1]", 0, SYNTAX),
        C("[-]", 0, SYNTAX),
        C("[- 1]", 0, SYNTAX),
        C("[1.]", 0, SYNTAX),
        C("[.5]", 0, SYNTAX),
        C("[1.e5]", 0, SYNTAX),
        C("[1e]", 0, SYNTAX),
        C("[1e+]", 0, SYNTAX),
        C("[1E-]", 0, SYNTAX),
        C("[0x10]", 0, SYNTAX),
        C("[1.5e3.2]", 0, SYNTAX),
        C("[1.5.2]", 0, SYNTAX),
        C("[--1]", 0, SYNTAX),
        C("[1-2]", 0, SYNTAX),
        C("[1\xff]", 0, UTF8),
        C("[1.\xff]", 0, UTF8),
        C("[1e999\xff]", 0, UTF8),
        C("[1", 0, PREMATURE),
        C("[1.", 0, SYNTAX),
        C("[-", 0, SYNTAX),
    };
    json_error_t err;
    json_t *v;

    (void) state;
    check_cases(cases, sizeof(cases) / sizeof(cases[0]));
    /* Integers stay integers, the rest are reals, as in jansson. */
    v = decode("[1,1.0,1e2,-0]", 14, 0, 0, &err);
    assert_non_null(v);
    assert_true(json_is_integer(json_array_get(v, 0)));
    assert_true(json_is_real(json_array_get(v, 1)));
    assert_true(json_is_real(json_array_get(v, 2)));
    assert_true(json_is_integer(json_array_get(v, 3)));
    json_decref(v);
}

/* ---------------------------------------------------------------------- */
/* Objects                                                                */
/* ---------------------------------------------------------------------- */

static void
duplicate_keys_are_refused_like_jansson(void **state)
{
    static const json_case_t cases[] = {
        C("{\"uid\":\"alice\",\"uid\":\"root\"}", 0, DUP),
        C("{\"a\":1,\"\\u0061\":2}", 0, DUP),
        C("{\"a\":{\"b\":1,\"b\":2}}", 0, DUP),
        C("[{\"a\":1},{\"b\":1,\"c\":2,\"b\":3}]", 0, DUP),
        /* jansson refuses at the key, before its value. */
        C("{\"a\":1,\"a\":x}", 0, DUP),
        C("{\"a\":1,\"a\"", 0, DUP),
        C("{\"a\":1,\"a\" 2}", 0, DUP),
        V("{\"a\":1,\"b\":{\"a\":2},\"A\":3,\"a \":4}", 0, NULL),
        V("{\"\":1}", 0, "{\"\":1}"),
    };

    (void) state;
    check_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

/* ---------------------------------------------------------------------- */
/* Nesting                                                                */
/* ---------------------------------------------------------------------- */

/* check_case() of open x n, inner, close x n. */
static void
check_nested(int n, const char *open, const char *inner, const char *close,
             int depth, int outcome)
{
    size_t len;
    char *s = nested(n, open, inner, close, &len);

    check_case(s, len, 0, depth, outcome, NULL);
    free(s);
}

static void
depth_limit_holds_at_the_limit_and_refuses_one_more(void **state)
{
    const int jansson = TG__JSON_DEPTH_JANSSON;

    (void) state;
    /* protocol.c's 32: containers only, as its old pre-scan counted. */
    check_nested(DEPTH, "[", "1", "]", DEPTH, OK);
    check_nested(DEPTH + 1, "[", "", "]", DEPTH, STACK);
    check_nested(DEPTH, "{\"a\":", "{}", "}", DEPTH, STACK);
    check_nested(DEPTH - 1, "{\"a\":", "{}", "}", DEPTH, OK);
    /* Refused as soon as the one too many opens, whatever follows. */
    check_nested(DEPTH + 1, "[", "", "", DEPTH, STACK);
    /* jansson's 2048 counts scalars too: an empty array at 2048 is fine,
     * one holding a value is not. */
    check_nested(jansson, "[", "", "]", 0, OK);
    check_nested(jansson, "[", "1", "]", 0, STACK);
    check_nested(jansson - 1, "[", "1", "]", 0, OK);
    check_nested(jansson + 1, "[", "", "]", 0, STACK);
    /* ... once its lexer has read the token, and not at the end of an
     * array. */
    check_nested(jansson, "[", "\"abc", "", 0, PREMATURE);
    check_nested(jansson, "[", "1,", "", 0, STACK);
    check_nested(jansson - 1, "[", "[1,", "", 0, STACK);
    check_nested(jansson, "[", "", "", 0, PREMATURE);
    check_nested(jansson, "[", "[", "", 0, STACK);
    check_nested(jansson - 1, "[", "{\"a\":", "", 0, STACK);
    /* A depth above jansson's is jansson's. */
    check_nested(jansson + 1, "[", "", "]", 100000, STACK);
}

/* ---------------------------------------------------------------------- */
/* The difference we chose, and the error report                          */
/* ---------------------------------------------------------------------- */

static void
raw_nul_after_a_number_or_word_is_refused_unlike_jansson(void **state)
{
    static const struct {
        const char *text;
        size_t len;
        size_t flags;
        int code;
    } cases[] = {
        {"[1\0]", 4, 0, PREMATURE},
        {"[true\0]", 7, 0, PREMATURE},
        {"{\"a\":1.5\0}", 10, 0, PREMATURE},
        {"1\0", 2, ANY, END},
        {"null\0", 5, ANY, END},
    };
    json_error_t err;
    json_t *j, *m;
    size_t i;

    (void) state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        j = json_loadb(cases[i].text, cases[i].len,
                       JSON_REJECT_DUPLICATES | cases[i].flags, NULL);
        assert_non_null(j); /* jansson 2.14 skips the NUL */
        m = decode(cases[i].text, cases[i].len, cases[i].flags, 0, &err);
        assert_null(m);
        assert_int_equal(json_error_code(&err), cases[i].code);
        assert_int_equal(cases[i].text[err.position - 1], '\0');
        json_decref(j);
    }
}

static void
errors_are_reported_like_jansson_without_quoting_the_input(void **state)
{
    json_error_t jerr, merr;
    json_t *v;

    (void) state;
    /* Line and column of the fault, as jansson counts them. */
    assert_null(json_loadb("[1,\n2,x]", 8, JSON_REJECT_DUPLICATES, &jerr));
    assert_null(decode("[1,\n2,x]", 8, 0, 0, &merr));
    assert_int_equal(merr.line, jerr.line);
    assert_int_equal(merr.column, jerr.column);
    assert_string_equal(merr.source, "<buffer>");
    /* A token in the input never shows up in the text. */
    assert_null(
        decode("{\"access_token\":\"SECRETTOKEN1234\" x}", 36, 0, 0, &merr));
    assert_null(strstr(merr.text, "SECRET"));
    assert_null(decode("[\"SECRETTOKEN1234\\ud800\"]", 25, 0, 0, &merr));
    assert_null(strstr(merr.text, "SECRET"));
    /* error may be NULL; success sets the position. */
    assert_null(tg__json_decode("[", 1, 0, 0, NULL));
    v = tg__json_decode("[1] ", 4, 0, 0, NULL);
    assert_non_null(v);
    json_decref(v);
    v = decode("[1] ", 4, 0, 0, &merr);
    assert_non_null(v);
    assert_int_equal(merr.position, 4);
    json_decref(v);
    /* Flags we do not implement, and no buffer, are wrong arguments. */
    assert_null(tg__json_decode("[]", 2, JSON_ALLOW_NUL, 0, &merr));
    assert_int_equal(json_error_code(&merr), json_error_invalid_argument);
    assert_null(tg__json_decode("[]", 2, JSON_DISABLE_EOF_CHECK, 0, &merr));
    assert_int_equal(json_error_code(&merr), json_error_invalid_argument);
    assert_null(tg__json_decode(NULL, 0, 0, 0, &merr));
    assert_int_equal(json_error_code(&merr), json_error_invalid_argument);
    /* JSON_REJECT_DUPLICATES is implied and may be passed. */
    v = tg__json_decode("[]", 2, JSON_REJECT_DUPLICATES, 0, &merr);
    assert_non_null(v);
    json_decref(v);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(grammar_matches_jansson),
        cmocka_unit_test(escapes_and_surrogate_pairs_match_jansson),
        cmocka_unit_test(utf8_is_checked_like_jansson),
        cmocka_unit_test(long_escaped_strings_round_trip),
        cmocka_unit_test(numbers_match_jansson),
        cmocka_unit_test(duplicate_keys_are_refused_like_jansson),
        cmocka_unit_test(depth_limit_holds_at_the_limit_and_refuses_one_more),
        cmocka_unit_test(
            raw_nul_after_a_number_or_word_is_refused_unlike_jansson),
        cmocka_unit_test(
            errors_are_reported_like_jansson_without_quoting_the_input),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
