/* SPDX-License-Identifier: MIT */
/*
 * fuzz_parsers.c - libFuzzer targets for everything libtokengate reads from
 * outside: the response parsers of common/protocol.c and the config text
 * parser, the local signer of Looker embed URLs, the HTTP/1.1 answer
 * parser of common/http1.c and the JSON decoder of common/json.c.  One
 * source, built once per target with -DFUZZ_TARGET=FUZZ_TOKEN,
 * FUZZ_VALIDATE, FUZZ_PROFILE, FUZZ_CREDENTIALS, FUZZ_SESSION, FUZZ_CONFIG,
 * FUZZ_EMBED, FUZZ_HTTP1 or FUZZ_JSON (Makefile.am).
 *
 * Parser input: byte 0 picks the status (high nibble, from tg_statuses) and
 * the variant (low nibble: flavor, which, op); byte 1 picks the content type
 * (low 3 bits) and Retry-After (high nibble); the rest is the body, in a
 * buffer of exactly its size so that reading past body_len is caught.
 *
 * Beyond "no crash, no leak, no undefined behaviour", each run checks what
 * the callers rely on: on TG_OK every output string is set and passes the
 * same checks the parser promises (no control bytes, bounded sizes, a valid
 * bearer token); on failure the output is empty; the message is set exactly
 * on failure and is printable ASCII; Retry-After is clamped; and a 200
 * answer's token or secret is never quoted in the message.
 *
 * Embed input: byte 0 holds flags (bit 0 http, bit 1 force_logout_login,
 * bits 2-7 which optional strings are given), byte 1 the session length
 * (n * 11000 - 100000 s, so both ends of the range are crossed), byte 2
 * the time (0: now, else a fixed time); the rest is NUL-separated fields:
 * host, embed_path, external_user_id, first_name, last_name,
 * user_timezone, external_group_id, nonce, then permissions, models,
 * group_ids and user_attributes ("key=value") as lists split at 0x1e.
 * When tg_embed_sign succeeds the URL must have the exact shape of a
 * signed URL: every byte unreserved or %XX (upper-case hex), and ':', '/',
 * '?', '=', '&' only where the shape puts them.
 *
 * HTTP/1.1 input: byte 0 is where the bytes are split in two reads (n *
 * length / 255), byte 1 holds flags (bits 0-1: max_response_bytes 16, 256,
 * 4096 or 65536; bit 2: parse Date; bit 3: the server closes after the
 * bytes); the rest is what the server sends.  Fed whole and split, the
 * outcome must be the same; an answer must keep its promises (a final
 * status, the body within the cap, a clean Content-Type, Retry-After
 * clamped); the parser is then reset and fed again, as on a kept
 * connection.
 */
#include "tokengate.h"
#include "tg_http1.h"
#include "tg_internal.h"
#include "tg_json.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_TOKEN 1
#define FUZZ_VALIDATE 2
#define FUZZ_PROFILE 3
#define FUZZ_CREDENTIALS 4
#define FUZZ_SESSION 5
#define FUZZ_CONFIG 6
#define FUZZ_EMBED 7
#define FUZZ_HTTP1 8
#define FUZZ_JSON 9

#ifndef FUZZ_TARGET
#error "build with -DFUZZ_TARGET=FUZZ_TOKEN (or another FUZZ_* target)"
#endif

/* Bytes before the body: the selector and the content type. */
#define FUZZ_HEADER_LEN 2
/* A 200 answer's run of token bytes at least this long must never be
 * quoted (shorter runs match ordinary words of our messages). */
#define FUZZ_QUOTE_MIN 12
/* The limits protocol.c promises for identity strings and groups. */
#define FUZZ_STRING_MAX 1024
#define FUZZ_GROUPS_MAX 256
#define FUZZ_GROUP_LEN_MAX 256

/* Abort with a reason: libFuzzer saves the input that got here. */
#define FUZZ_CHECK(cond)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz check failed: %s (%s:%d)\n", #cond,          \
                    __FILE__, __LINE__);                                       \
            abort();                                                           \
        }                                                                      \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#if FUZZ_TARGET != FUZZ_CONFIG && FUZZ_TARGET != FUZZ_EMBED &&                 \
    FUZZ_TARGET != FUZZ_HTTP1 && FUZZ_TARGET != FUZZ_JSON
static int printable(const char *s);
static void check_diag(const tg_config_t *cfg, const tg_diag_t *diag,
                       tg_err_t err, long status);
static char *body_copy(const uint8_t *data, size_t len);
#endif
#if FUZZ_TARGET == FUZZ_VALIDATE || FUZZ_TARGET == FUZZ_PROFILE ||             \
    FUZZ_TARGET == FUZZ_SESSION
static int clean_string(const char *s, size_t max);
#endif
#if FUZZ_TARGET == FUZZ_VALIDATE || FUZZ_TARGET == FUZZ_PROFILE
static void check_identity(const tg_identity_t *id);
#endif
#if FUZZ_TARGET == FUZZ_TOKEN
static void check_token(const tg_token_t *tok, tg_err_t err);
#endif
#if FUZZ_TARGET == FUZZ_TOKEN || FUZZ_TARGET == FUZZ_CREDENTIALS
static size_t longest_token_run(const char *body, size_t len, size_t *start);
static void shift_token_bytes(char *p, size_t len);
static tg_err_t parse_secret_answer(const tg_config_t *cfg, tg_response_t *resp,
                                    int variant, char message[512]);
static void check_not_quoted(const tg_config_t *cfg, tg_response_t *resp,
                             int variant, const char *message);
#endif
#if FUZZ_TARGET == FUZZ_EMBED
static int embed_printable(const char *s);
static int is_unreserved(unsigned char c);
static int is_upper_hex(unsigned char c);
static const char *pct_run(const char *p);
static void check_embed_url(const tg_embed_params_t *p, const char *url);
static void check_string_to_sign(const tg_embed_params_t *p, const char *sts);
static size_t split(char *buf, size_t len, char sep, char **parts, size_t max);
#endif

#if FUZZ_TARGET != FUZZ_CONFIG && FUZZ_TARGET != FUZZ_EMBED &&                 \
    FUZZ_TARGET != FUZZ_HTTP1 && FUZZ_TARGET != FUZZ_JSON

static const long tg_statuses[16] = {200, 200, 200, 204, 401, 404, 422, 429,
                                     500, 503, 302, 400, 403, 201, 100, 0};
static const char *const tg_content_types[8] = {
    "application/json",
    "text/plain",
    "application/json; charset=utf-8",
    NULL,
    "text/html",
    "TEXT/PLAIN;charset=UTF-8",
    "application/jsonx",
    ""};

/* Printable ASCII only: every message is sanitized. */
static int
printable(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char) *s < 0x20 || (unsigned char) *s > 0x7e) {
            return 0;
        }
    }
    return 1;
}

#if FUZZ_TARGET == FUZZ_VALIDATE || FUZZ_TARGET == FUZZ_PROFILE ||             \
    FUZZ_TARGET == FUZZ_SESSION
/* What the parsers promise of a server string they hand on (F15). */
static int
clean_string(const char *s, size_t max)
{
    size_t len, i;

    if (s == NULL) {
        return 0;
    }
    len = strlen(s);
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char) s[i];
        if (c < 0x20 || c == 0x7f) {
            return 0;
        }
    }
    return len <= max;
}

#endif

static void
check_diag(const tg_config_t *cfg, const tg_diag_t *diag, tg_err_t err,
           long status)
{
    int i;

    FUZZ_CHECK(memchr(diag->message, '\0', sizeof(diag->message)) != NULL);
    FUZZ_CHECK((err == TG_OK) == (diag->message[0] == '\0'));
    FUZZ_CHECK(printable(diag->message));
    FUZZ_CHECK(diag->http_status == status);
    FUZZ_CHECK(diag->retry_after >= -1 &&
               diag->retry_after <= cfg->retry_after_max);
    FUZZ_CHECK(diag->n_fields >= 0 && diag->n_fields <= TG_FIELD_ERRORS_MAX);
    for (i = 0; i < diag->n_fields; i++) {
        FUZZ_CHECK(printable(diag->fields[i].field));
        FUZZ_CHECK(printable(diag->fields[i].code));
        FUZZ_CHECK(printable(diag->fields[i].message));
    }
}

#if FUZZ_TARGET == FUZZ_VALIDATE || FUZZ_TARGET == FUZZ_PROFILE
static void
check_identity(const tg_identity_t *id)
{
    size_t i;

    FUZZ_CHECK(id != NULL);
    FUZZ_CHECK(clean_string(id->id, FUZZ_STRING_MAX) && id->id[0] != '\0');
    FUZZ_CHECK(clean_string(id->name, FUZZ_STRING_MAX));
    FUZZ_CHECK(clean_string(id->email, FUZZ_STRING_MAX));
    FUZZ_CHECK(clean_string(id->display_name, FUZZ_STRING_MAX));
    FUZZ_CHECK(clean_string(id->first_name, FUZZ_STRING_MAX));
    FUZZ_CHECK(clean_string(id->last_name, FUZZ_STRING_MAX));
    FUZZ_CHECK(id->n_groups <= FUZZ_GROUPS_MAX);
    FUZZ_CHECK(id->n_groups == 0 || id->groups != NULL);
    for (i = 0; i < id->n_groups; i++) {
        FUZZ_CHECK(clean_string(id->groups[i], FUZZ_GROUP_LEN_MAX));
        FUZZ_CHECK(id->groups[i][0] != '\0');
    }
    FUZZ_CHECK(id->expires_at >= 0);
}

#endif

#if FUZZ_TARGET == FUZZ_TOKEN
static void
check_token(const tg_token_t *tok, tg_err_t err)
{
    if (err != TG_OK) {
        FUZZ_CHECK(tok->value == NULL && tok->expires_at == 0);
        return;
    }
    FUZZ_CHECK(tok->value != NULL);
    FUZZ_CHECK(tg_token_check(tok->value, NULL) == TG_OK);
}

#endif

#if FUZZ_TARGET == FUZZ_TOKEN || FUZZ_TARGET == FUZZ_CREDENTIALS
/* The longest run of bearer-token bytes in the body: [*start, +len). */
static size_t
longest_token_run(const char *body, size_t len, size_t *start)
{
    size_t i, run = 0, best = 0;

    *start = 0;
    for (i = 0; i < len; i++) {
        if (tg__is_b64token_char((unsigned char) body[i])) {
            run++;
            if (run > best) {
                best = run;
                *start = i + 1 - run;
            }
        } else {
            run = 0;
        }
    }
    return best;
}

/* Change every byte of a token run to another token byte. */
static void
shift_token_bytes(char *p, size_t len)
{
    static const char sym_from[] = "-._~+/";
    static const char sym_to[] = "._~+/-";
    const char *hit;
    size_t i;

    for (i = 0; i < len; i++) {
        char c = p[i];
        if (c == 'z' || c == 'Z') {
            p[i] = (char) (c - 25);
        } else if (c == '9') {
            p[i] = '0';
        } else if ((c >= 'a' && c < 'z') || (c >= 'A' && c < 'Z') ||
                   (c >= '0' && c < '9')) {
            p[i] = (char) (c + 1);
        } else {
            hit = strchr(sym_from, c);
            if (hit != NULL) {
                p[i] = sym_to[hit - sym_from];
            }
        }
    }
}

#endif

/* Copy of the body in a buffer of its exact size (NULL when empty). */
static char *
body_copy(const uint8_t *data, size_t len)
{
    char *p;

    if (len == 0) {
        return NULL;
    }
    p = malloc(len);
    if (p == NULL) {
        abort();
    }
    memcpy(p, data, len);
    return p;
}

#endif /* not FUZZ_CONFIG, FUZZ_EMBED, FUZZ_HTTP1 or FUZZ_JSON */

#if FUZZ_TARGET == FUZZ_TOKEN || FUZZ_TARGET == FUZZ_CREDENTIALS

/*
 * A 200 answer carries a token or a secret: if its longest token run shows
 * up in the message, parse again with that run changed; the changed run must
 * not show up in the new message (a fixed word of ours would not follow the
 * change, a quoted secret would).
 */
static void
check_not_quoted(const tg_config_t *cfg, tg_response_t *resp, int variant,
                 const char *message)
{
    char *body2, message2[512];
    size_t start, run;

    if (resp->status != 200 || resp->body_len == 0) {
        return;
    }
    run = longest_token_run(resp->body, resp->body_len, &start);
    if (run < FUZZ_QUOTE_MIN ||
        memmem(message, strlen(message), resp->body + start, run) == NULL) {
        return;
    }
    body2 = body_copy((const uint8_t *) resp->body, resp->body_len);
    shift_token_bytes(body2 + start, run);
    resp->body = body2;
    parse_secret_answer(cfg, resp, variant, message2);
    FUZZ_CHECK(memmem(message2, strlen(message2), body2 + start, run) == NULL);
    free(body2);
}

#endif

#if FUZZ_TARGET == FUZZ_TOKEN

/* variant bit 0: looker; bit 1 (looker): sudo instead of login. */
static tg_err_t
parse_secret_answer(const tg_config_t *cfg, tg_response_t *resp, int variant,
                    char message[512])
{
    tg_token_t tok;
    tg_diag_t diag;
    tg_err_t err;

    tg_diag_clear(&diag);
    if (cfg->api == TG_API_LOOKER && (variant & 2) != 0) {
        err = tg_parse_sudo(cfg, resp, 1700000000, &tok, &diag);
    } else {
        err = tg_parse_token(cfg, resp, 1700000000, &tok, &diag);
    }
    check_diag(cfg, &diag, err, resp->status);
    check_token(&tok, err);
    tg_token_clear(&tok);
    FUZZ_CHECK(tok.value == NULL);
    memcpy(message, diag.message, sizeof(diag.message));
    return err;
}

#elif FUZZ_TARGET == FUZZ_CREDENTIALS

/* variant bits 0-1: show, new, revoke (3: an invalid op); bit 2: looker. */
static tg_err_t
parse_secret_answer(const tg_config_t *cfg, tg_response_t *resp, int variant,
                    char message[512])
{
    tg_creds_op_t op = (tg_creds_op_t) (variant & 3);
    tg_credentials_t creds;
    tg_diag_t diag;
    tg_err_t err;

    tg_diag_clear(&diag);
    err = tg_parse_credentials(
        cfg, resp, op,
        op == TG_CREDS_REVOKE && (variant & 8) != 0 ? NULL : &creds, &diag);
    check_diag(cfg, &diag, err, resp->status);
    if (op == TG_CREDS_REVOKE && (variant & 8) != 0) {
        memcpy(message, diag.message, sizeof(diag.message));
        return err;
    }
    if (err == TG_OK && op != TG_CREDS_REVOKE) {
        FUZZ_CHECK(creds.client_id != NULL && creds.secret != NULL);
        if (op == TG_CREDS_NEW) {
            FUZZ_CHECK(tg_credential_check(creds.client_id, "id", NULL) ==
                       TG_OK);
            FUZZ_CHECK(tg_credential_check(creds.secret, "secret", NULL) ==
                       TG_OK);
        }
    } else if (err != TG_OK) {
        FUZZ_CHECK(creds.client_id == NULL && creds.secret == NULL);
    }
    tg_credentials_clear(&creds);
    memcpy(message, diag.message, sizeof(diag.message));
    return err;
}

#endif

#if FUZZ_TARGET == FUZZ_CONFIG

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tg_config_t *cfg = tg_config_new();
    tg_diag_t diag;
    tg_err_t err;

    FUZZ_CHECK(cfg != NULL);
    tg_diag_clear(&diag);
    err = tg__config_parse_text(cfg, (const char *) data, size, "fuzz", &diag);
    FUZZ_CHECK(memchr(diag.message, '\0', sizeof(diag.message)) != NULL);
    FUZZ_CHECK((err == TG_OK) == (diag.message[0] == '\0'));
    tg_config_free(cfg);
    return 0;
}

#elif FUZZ_TARGET == FUZZ_JSON

/*
 * JSON input: byte 0 bit 0 asks for JSON_DECODE_ANY; the rest is the text,
 * in a buffer of exactly its size.  tg__json_decode must agree with
 * jansson's json_loadb (with JSON_REJECT_DUPLICATES): accept and refuse
 * alike, give json_equal values and the same json_error_code.  Decoded
 * with our limit at jansson's (depth_max 0), then with protocol.c's 32,
 * which may only refuse more, and then as a stack overflow.  The one
 * difference we chose (tg_json.h): jansson skips a raw NUL right after a
 * number or a word.  Where we refuse such a NUL, jansson must give the same
 * answer with a space in its place, and the comparison goes on so.
 */
static int fuzz_json_code(const json_error_t *e);
static int fuzz_json_same(json_t *a, const json_error_t *ea, json_t *b,
                          const json_error_t *eb);

static int
fuzz_json_code(const json_error_t *e)
{
    return (int) json_error_code(e);
}

/* Both accepted alike, or both refused with the same code. */
static int
fuzz_json_same(json_t *a, const json_error_t *ea, json_t *b,
               const json_error_t *eb)
{
    if (a != NULL || b != NULL) {
        return a != NULL && b != NULL && json_equal(a, b);
    }
    if (fuzz_json_code(ea) != fuzz_json_code(eb)) {
        fprintf(stderr, "jansson: %d %s / ours: %d %s\n", fuzz_json_code(ea),
                ea->text, fuzz_json_code(eb), eb->text);
        return 0;
    }
    return 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t jerr, merr, serr;
    json_t *j, *m, *s, *j2;
    size_t flags, len, at;
    char *buf;
    unsigned char prev;

    if (size < 1) {
        return 0;
    }
    flags = (data[0] & 1) != 0 ? JSON_DECODE_ANY : 0;
    len = size - 1;
    buf = malloc(len > 0 ? len : 1);
    FUZZ_CHECK(buf != NULL);
    memcpy(buf, data + 1, len);

    j = json_loadb(buf, len, JSON_REJECT_DUPLICATES | flags, &jerr);
    for (;;) {
        m = tg__json_decode(buf, len, flags, 0, &merr);
        if (m != NULL ||
            (fuzz_json_code(&merr) != json_error_premature_end_of_input &&
             fuzz_json_code(&merr) != json_error_end_of_input_expected) ||
            merr.position < 2 || (size_t) merr.position > len ||
            buf[merr.position - 1] != '\0') {
            break;
        }
        at = (size_t) merr.position - 1;
        prev = (unsigned char) buf[at - 1];
        if (!((prev >= '0' && prev <= '9') || (prev >= 'a' && prev <= 'z') ||
              (prev >= 'A' && prev <= 'Z'))) {
            break;
        }
        /* Our refusal of a NUL after a token: jansson must not care. */
        buf[at] = ' ';
        j2 = json_loadb(buf, len, JSON_REJECT_DUPLICATES | flags, &serr);
        FUZZ_CHECK(fuzz_json_same(j, &jerr, j2, &serr));
        json_decref(j2);
    }
    FUZZ_CHECK(fuzz_json_same(j, &jerr, m, &merr));
    /* protocol.c's limit refuses more, and only as too deep. */
    s = tg__json_decode(buf, len, flags, 32, &serr);
    if (s != NULL) {
        FUZZ_CHECK(m != NULL && json_equal(s, m));
    } else if (fuzz_json_code(&serr) != json_error_stack_overflow) {
        FUZZ_CHECK(m == NULL &&
                   fuzz_json_code(&serr) == fuzz_json_code(&merr));
    }
    json_decref(s);
    json_decref(j);
    json_decref(m);
    free(buf);
    return 0;
}

#elif FUZZ_TARGET == FUZZ_EMBED

/* The fixed secret of every run. */
#define FUZZ_EMBED_SECRET "fuzz-embed-secret-0123456789abcdef"
/* Fields before the lists, and list entries we build at most. */
#define FUZZ_EMBED_FIELDS 12
#define FUZZ_EMBED_ITEMS 300
/* The URL cap embed.c promises (tokengate.h). */
#define FUZZ_EMBED_URL_MAX 8192

/* The parameters in URL order, and which of them must always be there. */
static const struct {
    const char *name;
    int required;
} fuzz_embed_names[] = {
    {"nonce", 1},           {"time", 1},
    {"session_length", 1},  {"external_user_id", 1},
    {"permissions", 1},     {"models", 1},
    {"group_ids", 0},       {"external_group_id", 0},
    {"user_attributes", 0}, {"access_filters", 1},
    {"first_name", 0},      {"last_name", 0},
    {"user_timezone", 0},   {"force_logout_login", 1},
    {"signature", 1},
};

static int
embed_printable(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char) *s < 0x20 || (unsigned char) *s > 0x7e) {
            return 0;
        }
    }
    return 1;
}

static int
is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
           c == '~';
}

static int
is_upper_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

/* A non-empty run of unreserved bytes and %XX; returns its end. */
static const char *
pct_run(const char *p)
{
    const char *start = p;

    for (;;) {
        if (is_unreserved((unsigned char) *p)) {
            p++;
        } else if (*p == '%') {
            FUZZ_CHECK(is_upper_hex((unsigned char) p[1]) &&
                       is_upper_hex((unsigned char) p[2]));
            p += 3;
        } else {
            break;
        }
    }
    FUZZ_CHECK(p > start);
    return p;
}

/* SCHEME://HOST/login/embed/RUN?name=RUN&...&signature=RUN, the names in
 * order, each once, the required ones all there. */
static void
check_embed_url(const tg_embed_params_t *p, const char *url)
{
    const char *scheme = p->scheme != NULL ? p->scheme : "https";
    size_t n = strlen(scheme), i, k = 0, names;
    const char *u = url, *end;

    FUZZ_CHECK(strlen(url) <= FUZZ_EMBED_URL_MAX);
    FUZZ_CHECK(strncmp(u, scheme, n) == 0 && strncmp(u + n, "://", 3) == 0);
    u += n + 3;
    /* The authority is the host as given: unreserved bytes, and ':' '['
     * ']' of a port and an IPv6 literal. */
    n = strlen(p->host);
    FUZZ_CHECK(n > 0 && strncmp(u, p->host, n) == 0);
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char) u[i];
        FUZZ_CHECK(is_unreserved(c) || c == ':' || c == '[' || c == ']');
    }
    u += n;
    FUZZ_CHECK(strncmp(u, "/login/embed/", 13) == 0);
    u = pct_run(u + 13);
    FUZZ_CHECK(*u == '?');
    u++;
    names = sizeof(fuzz_embed_names) / sizeof(fuzz_embed_names[0]);
    for (;;) {
        end = strchr(u, '=');
        FUZZ_CHECK(end != NULL);
        while (
            k < names &&
            (strlen(fuzz_embed_names[k].name) != (size_t) (end - u) ||
             strncmp(u, fuzz_embed_names[k].name, (size_t) (end - u)) != 0)) {
            FUZZ_CHECK(!fuzz_embed_names[k].required);
            k++;
        }
        FUZZ_CHECK(k < names);
        u = pct_run(end + 1);
        k++;
        if (*u == '\0') {
            break;
        }
        FUZZ_CHECK(*u == '&');
        u++;
    }
    FUZZ_CHECK(k == names); /* the signature came last */
}

/* HOST LF /login/embed/... LF values, no trailing LF. */
static void
check_string_to_sign(const tg_embed_params_t *p, const char *sts)
{
    size_t n = strlen(p->host), len = strlen(sts);

    FUZZ_CHECK(strncmp(sts, p->host, n) == 0 &&
               strncmp(sts + n, "\n/login/embed/", 14) == 0);
    FUZZ_CHECK(len > 0 && sts[len - 1] != '\n');
    FUZZ_CHECK(strchr(sts, '\r') == NULL);
}

/* Split buf[0..len) at sep in place; parts[] get NUL-terminated pieces. */
static size_t
split(char *buf, size_t len, char sep, char **parts, size_t max)
{
    size_t n = 0, i, start = 0;

    for (i = 0; i <= len && n < max; i++) {
        if (i == len || buf[i] == sep) {
            buf[i] = '\0';
            parts[n++] = buf + start;
            start = i + 1;
        }
    }
    return n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *fields[FUZZ_EMBED_FIELDS] = {NULL};
    char *perms[FUZZ_EMBED_ITEMS], *models[FUZZ_EMBED_ITEMS];
    char *groups[FUZZ_EMBED_ITEMS], *attr_text[FUZZ_EMBED_ITEMS];
    tg_embed_attr_t attrs[FUZZ_EMBED_ITEMS];
    tg_embed_params_t p;
    tg_diag_t diag, cdiag;
    char *buf, *url = NULL, *sts = NULL, *eq;
    size_t n, i;
    tg_err_t err, cerr;
    int flags;

    if (size < 3) {
        return 0;
    }
    flags = data[0];
    /* One byte more than the input: split() may write a NUL at its end. */
    buf = malloc(size - 3 + 1);
    FUZZ_CHECK(buf != NULL);
    memcpy(buf, data + 3, size - 3);
    n = split(buf, size - 3, '\0', fields, FUZZ_EMBED_FIELDS);

    tg_embed_params_init(&p);
    p.scheme = (flags & 1) != 0 ? "http" : NULL;
    p.force_logout_login = (flags & 2) != 0;
    p.session_length = (long) data[1] * 11000 - 100000;
    p.time = data[2] == 0 ? 0 : 1700000000 + (time_t) data[2] * 1000;
    p.host = n > 0 ? fields[0] : NULL;
    p.embed_path = n > 1 ? fields[1] : NULL;
    p.external_user_id = n > 2 ? fields[2] : NULL;
    p.first_name = (flags & 4) != 0 && n > 3 ? fields[3] : NULL;
    p.last_name = (flags & 8) != 0 && n > 4 ? fields[4] : NULL;
    p.user_timezone = (flags & 16) != 0 && n > 5 ? fields[5] : NULL;
    p.external_group_id = (flags & 32) != 0 && n > 6 ? fields[6] : NULL;
    p.nonce = (flags & 64) != 0 && n > 7 ? fields[7] : NULL;
    if (n > 8) {
        p.n_permissions = split(fields[8], strlen(fields[8]), '\x1e', perms,
                                FUZZ_EMBED_ITEMS);
        p.permissions = (const char *const *) perms;
    }
    if (n > 9) {
        p.n_models = split(fields[9], strlen(fields[9]), '\x1e', models,
                           FUZZ_EMBED_ITEMS);
        p.models = (const char *const *) models;
    }
    if (n > 10 && fields[10][0] != '\0') {
        p.n_group_ids = split(fields[10], strlen(fields[10]), '\x1e', groups,
                              FUZZ_EMBED_ITEMS);
        p.group_ids = (const char *const *) groups;
    }
    if (n > 11 && fields[11][0] != '\0') {
        p.n_user_attributes = split(fields[11], strlen(fields[11]), '\x1e',
                                    attr_text, FUZZ_EMBED_ITEMS);
        for (i = 0; i < p.n_user_attributes; i++) {
            eq = strchr(attr_text[i], '=');
            attrs[i].key = attr_text[i];
            attrs[i].value = "";
            if (eq != NULL) {
                *eq = '\0';
                attrs[i].value = eq + 1;
            }
        }
        p.user_attributes = attrs;
    }
    /* A first byte with bit 7 set gives an empty permission list. */
    if ((flags & 128) != 0) {
        p.n_permissions = 0;
    }

    tg_diag_clear(&cdiag);
    cerr = tg_embed_params_check(&p, &cdiag);
    tg_diag_clear(&diag);
    err = tg_embed_sign(&p, FUZZ_EMBED_SECRET, strlen(FUZZ_EMBED_SECRET), &url,
                        &sts, &diag);
    FUZZ_CHECK(memchr(diag.message, '\0', sizeof(diag.message)) != NULL);
    FUZZ_CHECK((err == TG_OK) == (diag.message[0] == '\0'));
    FUZZ_CHECK(embed_printable(diag.message) && embed_printable(cdiag.message));
    /* The secret is never quoted (unless the input carries it as a value,
     * which messages may quote). */
    FUZZ_CHECK(strstr(diag.message, FUZZ_EMBED_SECRET) == NULL ||
               memmem(data, size, FUZZ_EMBED_SECRET,
                      strlen(FUZZ_EMBED_SECRET)) != NULL);
    /* The check promises what signing needs, length included. */
    FUZZ_CHECK((cerr == TG_OK) == (err == TG_OK));
    if (err == TG_OK) {
        FUZZ_CHECK(url != NULL && sts != NULL);
        check_embed_url(&p, url);
        check_string_to_sign(&p, sts);
    } else {
        FUZZ_CHECK(err == TG_INPUT);
        FUZZ_CHECK(url == NULL && sts == NULL);
    }
    tg_secret_free(url);
    tg_secret_free(sts);
    free(buf);
    return 0;
}

#elif FUZZ_TARGET == FUZZ_HTTP1

/* What one parse gave, to compare the ways of feeding it. */
struct fuzz_h1 {
    tg_err_t err;
    char message[sizeof(((tg_diag_t *) 0)->message)];
    int done, keepalive;
    size_t used;
    tg_response_t resp;
};

static const size_t fuzz_h1_body_max[4] = {16, 256, 4096, 65536};

/* Feed data[0..len) in two reads, cut at cut, then the close if asked. */
static void
fuzz_h1_feed(tg__http1_t *p, const char *data, size_t len, size_t cut, int eof,
             struct fuzz_h1 *o)
{
    tg_diag_t diag;
    size_t used, i;

    memset(o, 0, sizeof(*o));
    tg_diag_clear(&diag);
    o->err = tg__http1_parse(p, data, cut, &used, &diag);
    FUZZ_CHECK(used <= cut && (o->err == TG_OK || used == cut));
    o->used = used;
    if (o->err == TG_OK && used == cut && cut < len) {
        o->err = tg__http1_parse(p, data + cut, len - cut, &used, &diag);
        FUZZ_CHECK(used <= len - cut);
        o->used += used;
    }
    if (o->err == TG_OK && !tg__http1_done(p)) {
        FUZZ_CHECK(o->used == len);
        if (eof) {
            o->err = tg__http1_eof(p, &diag);
        }
    }
    FUZZ_CHECK(o->err == TG_OK || o->err == TG_PROTOCOL ||
               o->err == TG_UNAVAILABLE || o->err == TG_NOMEM);
    FUZZ_CHECK((o->err == TG_OK) == (diag.message[0] == '\0'));
    for (i = 0; diag.message[i] != '\0'; i++) {
        FUZZ_CHECK(diag.message[i] >= 0x20 && diag.message[i] < 0x7f);
    }
    memcpy(o->message, diag.message, sizeof(o->message));
    o->done = tg__http1_done(p);
    o->keepalive = tg__http1_keepalive(p);
    FUZZ_CHECK(!o->keepalive || o->done);
    if (o->err != TG_OK || !o->done) {
        return;
    }
    /* The promises of an answer. */
    tg__http1_response(p, &o->resp, 300);
    FUZZ_CHECK(o->resp.status >= 200 && o->resp.status <= 999);
    FUZZ_CHECK(o->resp.body_len <= p->body_max);
    FUZZ_CHECK((o->resp.body == NULL) == (o->resp.body_len == 0));
    FUZZ_CHECK(o->resp.retry_after == -1 ||
               (o->resp.retry_after >= 1 && o->resp.retry_after <= 300));
    FUZZ_CHECK(o->resp.server_date >= 0);
    if (o->resp.content_type != NULL) {
        FUZZ_CHECK(strlen(o->resp.content_type) <= TG__HTTP1_CONTENT_TYPE_MAX);
        FUZZ_CHECK(strpbrk(o->resp.content_type, "\r\n") == NULL);
    }
    FUZZ_CHECK(o->used <= len);
    FUZZ_CHECK(o->used == len || !o->keepalive);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_h1 whole, split;
    tg__http1_t a, b;
    size_t len, cut, body_max;
    char *bytes;
    int eof, want_date;

    if (size < 2) {
        return 0;
    }
    len = size - 2;
    cut = (size_t) data[0] * len / 255;
    body_max = fuzz_h1_body_max[data[1] & 3];
    want_date = (data[1] & 4) != 0;
    eof = (data[1] & 8) != 0;
    /* A buffer of exactly the bytes: a read past them is caught. */
    bytes = malloc(len != 0 ? len : 1);
    FUZZ_CHECK(bytes != NULL);
    memcpy(bytes, data + 2, len);

    tg__http1_init(&a, body_max, want_date);
    tg__http1_init(&b, body_max, want_date);
    fuzz_h1_feed(&a, bytes, len, len, eof, &whole);
    fuzz_h1_feed(&b, bytes, len, cut, eof, &split);
    FUZZ_CHECK(whole.err == split.err);
    FUZZ_CHECK(strcmp(whole.message, split.message) == 0);
    FUZZ_CHECK(whole.done == split.done && whole.keepalive == split.keepalive);
    FUZZ_CHECK(whole.err != TG_OK || whole.used == split.used);
    FUZZ_CHECK(whole.resp.status == split.resp.status);
    FUZZ_CHECK(whole.resp.body_len == split.resp.body_len);
    FUZZ_CHECK(whole.resp.body_len == 0 ||
               memcmp(whole.resp.body, split.resp.body, whole.resp.body_len) ==
                   0);
    FUZZ_CHECK((whole.resp.content_type == NULL) ==
               (split.resp.content_type == NULL));
    FUZZ_CHECK(whole.resp.content_type == NULL ||
               strcmp(whole.resp.content_type, split.resp.content_type) == 0);

    /* The next answer on the same connection starts afresh. */
    tg__http1_reset(&a, 4096);
    FUZZ_CHECK(!tg__http1_done(&a) && !tg__http1_received(&a));
    FUZZ_CHECK(a.body_len == 0);
    fuzz_h1_feed(&a, bytes, len, cut, eof, &split);
    FUZZ_CHECK(whole.err == split.err &&
               (whole.err != TG_OK || whole.used == split.used));
    tg__http1_free(&a);
    tg__http1_free(&b);
    free(bytes);
    return 0;
}

#else

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static tg_config_t *cfg_insight, *cfg_looker;
    const tg_config_t *cfg;
    tg_response_t resp;
    int variant;
    char *body;
    tg_err_t err;
    tg_diag_t diag;
#if FUZZ_TARGET == FUZZ_TOKEN || FUZZ_TARGET == FUZZ_CREDENTIALS
    char message[512];
#endif

    if (cfg_insight == NULL) {
        cfg_insight = tg_config_new();
        cfg_looker = tg_config_new();
        FUZZ_CHECK(cfg_insight != NULL && cfg_looker != NULL);
        cfg_insight->url = strdup("https://insight.example.com");
        cfg_looker->url = strdup("https://looker.example.com");
        cfg_looker->api = TG_API_LOOKER;
    }
    if (size < FUZZ_HEADER_LEN) {
        return 0;
    }
    variant = data[0] & 0x0f;
    memset(&resp, 0, sizeof(resp));
    resp.status = tg_statuses[data[0] >> 4];
    resp.content_type = tg_content_types[data[1] & 7];
    resp.retry_after = (long) (data[1] >> 4) * 100 - 100;
    body = body_copy(data + FUZZ_HEADER_LEN, size - FUZZ_HEADER_LEN);
    resp.body = body;
    resp.body_len = size - FUZZ_HEADER_LEN;
    tg_diag_clear(&diag);

#if FUZZ_TARGET == FUZZ_TOKEN
    (void) diag;
    (void) err;
    cfg = (variant & 1) != 0 ? cfg_looker : cfg_insight;
    parse_secret_answer(cfg, &resp, variant, message);
    check_not_quoted(cfg, &resp, variant, message);
#elif FUZZ_TARGET == FUZZ_CREDENTIALS
    (void) diag;
    (void) err;
    cfg = (variant & 4) != 0 ? cfg_looker : cfg_insight;
    parse_secret_answer(cfg, &resp, variant, message);
    if ((variant & 3) == TG_CREDS_NEW) {
        check_not_quoted(cfg, &resp, variant, message);
    }
#elif FUZZ_TARGET == FUZZ_VALIDATE || FUZZ_TARGET == FUZZ_PROFILE
    {
        tg_identity_t *id = NULL;

        cfg = (variant & 1) != 0 ? cfg_looker : cfg_insight;
#if FUZZ_TARGET == FUZZ_VALIDATE
        err = tg_parse_validate(cfg, &resp,
                                (variant & 2) != 0
                                    ? TG_INSIGHT_VALIDATE_CURRENTUSER
                                    : TG_INSIGHT_VALIDATE_USER,
                                &id, &diag);
#else
        err = tg_parse_profile(cfg, &resp, &id, &diag);
#endif
        check_diag(cfg, &diag, err, resp.status);
        if (err == TG_OK) {
            check_identity(id);
        } else {
            FUZZ_CHECK(id == NULL);
        }
        tg_identity_free(id);
    }
#elif FUZZ_TARGET == FUZZ_SESSION
    {
        tg_session_t sess;

        /* variant bit 0: logout instead of session; bit 1: insight. */
        cfg = (variant & 2) != 0 ? cfg_insight : cfg_looker;
        if ((variant & 1) != 0) {
            err = tg_parse_logout(cfg, &resp, &diag);
            check_diag(cfg, &diag, err, resp.status);
        } else {
            err = tg_parse_session(cfg, &resp, &sess, &diag);
            check_diag(cfg, &diag, err, resp.status);
            if (err == TG_OK) {
                FUZZ_CHECK(clean_string(sess.workspace_id, FUZZ_STRING_MAX));
                FUZZ_CHECK(clean_string(sess.sudo_user_id, FUZZ_STRING_MAX));
            } else {
                FUZZ_CHECK(sess.workspace_id == NULL &&
                           sess.sudo_user_id == NULL);
            }
            tg_session_clear(&sess);
        }
    }
#else
#error "unknown FUZZ_TARGET"
#endif

    free(body);
    return 0;
}

#endif /* FUZZ_TARGET == FUZZ_CONFIG */
