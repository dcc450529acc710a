/* SPDX-License-Identifier: MIT */
/*
 * fuzz_parsers.c - libFuzzer targets for everything libtokengate reads from
 * outside: the response parsers of common/protocol.c and the config text
 * parser.  One source, built once per target with -DFUZZ_TARGET=FUZZ_TOKEN,
 * FUZZ_VALIDATE, FUZZ_PROFILE, FUZZ_CREDENTIALS, FUZZ_SESSION or FUZZ_CONFIG
 * (Makefile.am).
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
 */
#include "tokengate.h"
#include "tg_internal.h"

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

#if FUZZ_TARGET != FUZZ_CONFIG
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

#if FUZZ_TARGET != FUZZ_CONFIG

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

#endif /* FUZZ_TARGET != FUZZ_CONFIG */

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
