/* SPDX-License-Identifier: MIT */
/*
 * test_protocol.c - the pure builders and parsers of common/protocol.c,
 * driven by data: every case of every .json file in $TG_TEST_CASES is one
 * cmocka test.
 *
 * A case file is {"kind": "build" | "parse", "cases": [CASE, ...]}; the
 * format is described in tests/unit/cases/README.md.  What every case
 * protects, beyond its own "expect":
 *   - a failing builder leaves the request all zero, a failing parser leaves
 *     its output empty (NULL identity, zeroed token/credentials/session);
 *   - a successful one fills every string (never NULL);
 *   - no message contains the token, the secret, or the case's "secrets";
 *   - the same call with a NULL diag returns the same code.
 * Unknown keys in a case are an error, so a typo cannot silently skip a
 * check.  Without TG_TEST_CASES the suite fails (exit 99), it never passes
 * with nothing run.  TG_TEST_VERBOSE=1 prints every case's code and message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "tokengate.h"
#include "tg_internal.h"

/* automake's "hard error": the suite could not run at all. */
#define HARD_ERROR 99
/* Inputs shorter than this are not searched for in messages: a one-letter
 * secret would match any message by accident. */
#define SECRET_MIN_LEN 6
/* Default request time of parse cases: 2023-11-14T22:13:20Z. */
#define DEFAULT_SENT_AT 1700000000

typedef struct tcase {
    char *name; /* "file.json: case name", owned */
    int is_build;
    json_t *c; /* the case object, borrowed from its file */
} tcase_t;

typedef struct bytes {
    char *p; /* NUL-terminated, owned; NULL when absent */
    size_t len;
} bytes_t;

/* Everything a parser may fill. */
typedef struct parse_out {
    tg_token_t token;
    tg_identity_t *identity;
    tg_credentials_t creds;
    tg_session_t session;
} parse_out_t;

static int hex_value(char c);
static int bytes_append(bytes_t *b, json_t *spec);
static bytes_t case_bytes(const tcase_t *tc, json_t *obj, const char *key);
static int key_allowed(const char *const *keys, const char *key);
static int check_keys(const char *where, json_t *obj, const char *const *keys);
static tg_err_t err_by_name(const tcase_t *tc, const char *name);
static tg_config_t *case_config(const tcase_t *tc);
static tg_insight_validate_t case_which(const tcase_t *tc);
static tg_creds_op_t case_op(const tcase_t *tc);
static void expect_str(const tcase_t *tc, const char *what, const char *got,
                       json_t *want);
static void expect_int(const tcase_t *tc, const char *what, long long got,
                       json_t *want);
static void expect_not_in(const tcase_t *tc, const char *message,
                          const char *needle, size_t len, const char *what);
static void expect_message(const tcase_t *tc, json_t *expect,
                           const char *message);
static void expect_err(const tcase_t *tc, tg_err_t got, tg_err_t want,
                       const tg_diag_t *diag);
static tg_err_t run_build(const tcase_t *tc, const tg_config_t *cfg,
                          const bytes_t *id, const bytes_t *secret,
                          const bytes_t *token, const bytes_t *user,
                          const bytes_t *ws, tg_request_t *req,
                          tg_diag_t *diag);
static void test_build_case(void **state);
static tg_err_t run_parse(const tcase_t *tc, const tg_config_t *cfg,
                          const tg_response_t *resp, time_t sent_at,
                          parse_out_t *out, tg_diag_t *diag);
static void parse_out_free(parse_out_t *out);
static void expect_identity(const tcase_t *tc, json_t *expect,
                            const tg_identity_t *id);
static void expect_groups(const tcase_t *tc, json_t *expect,
                          const tg_identity_t *id);
static void expect_fields(const tcase_t *tc, json_t *expect,
                          const tg_diag_t *diag);
static void test_parse_case(void **state);
static void test_clear_zeroed(void **state);
static void test_null_arguments(void **state);
static void test_first_error_wins(void **state);
static int is_case_file(const struct dirent *d);
static int load_file(const char *dir, const char *file, json_t **roots,
                     size_t n_roots, tcase_t **cases, size_t *n_cases);

static const char *const build_keys[] = {
    "name",  "comment", "api", "call",    "config",    "client_id", "secret",
    "token", "which",   "op",  "user_id", "workspace", "expect",    NULL};
static const char *const build_expect_keys[] = {
    "err",    "method", "url",     "authorization",    "content_type",
    "accept", "body",   "message", "message_contains", "message_not_contains",
    NULL};
static const char *const parse_keys[] = {
    "name",   "comment",      "api",    "call",      "which",       "op",
    "status", "content_type", "body",   "body_json", "retry_after", "sent_at",
    "config", "secrets",      "expect", NULL};
static const char *const parse_expect_keys[] = {"err",
                                                "id",
                                                "name",
                                                "email",
                                                "display_name",
                                                "first_name",
                                                "last_name",
                                                "groups",
                                                "n_groups",
                                                "expires_at",
                                                "evaluation",
                                                "disabled",
                                                "has_profile",
                                                "token",
                                                "retry_after",
                                                "fields",
                                                "message",
                                                "message_contains",
                                                "message_not_contains",
                                                "client_id",
                                                "secret",
                                                "created_ms",
                                                "credentials_id",
                                                "workspace_id",
                                                "sudo_user_id",
                                                NULL};
static const char *const config_keys[] = {"url",
                                          "insight_base_path",
                                          "looker_api_version",
                                          "looker_auth_scheme",
                                          "token_max_age",
                                          "max_response_bytes",
                                          "retry_after_max",
                                          NULL};

/* ---------------------------------------------------------------------- */
/* Case data helpers                                                      */
/* ---------------------------------------------------------------------- */

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

/* Append a byte spec to *b.  A spec is a string (its bytes), or an object
 * {"text": S | "hex": H | "parts": [SPEC...], "repeat": N}. */
static int
bytes_append(bytes_t *b, json_t *spec)
{
    const char *src = NULL;
    char *chunk = NULL, *grown;
    size_t chunk_len = 0, i;
    json_int_t repeat = 1, r;
    json_t *v, *text, *hex, *parts, *part;
    bytes_t sub = {NULL, 0};

    if (json_is_string(spec)) {
        src = json_string_value(spec);
        chunk_len = json_string_length(spec);
    } else if (json_is_object(spec)) {
        v = json_object_get(spec, "repeat");
        if (v != NULL) {
            if (!json_is_integer(v) || json_integer_value(v) < 0) {
                return -1;
            }
            repeat = json_integer_value(v);
        }
        text = json_object_get(spec, "text");
        hex = json_object_get(spec, "hex");
        parts = json_object_get(spec, "parts");
        if (text != NULL) {
            if (!json_is_string(text)) {
                return -1;
            }
            src = json_string_value(text);
            chunk_len = json_string_length(text);
        } else if (hex != NULL) {
            const char *h = json_string_value(hex);
            if (h == NULL || strlen(h) % 2 != 0) {
                return -1;
            }
            chunk_len = strlen(h) / 2;
            chunk = malloc(chunk_len + 1);
            for (i = 0; i < chunk_len; i++) {
                int hi = hex_value(h[2 * i]), lo = hex_value(h[2 * i + 1]);
                if (hi < 0 || lo < 0) {
                    free(chunk);
                    return -1;
                }
                chunk[i] = (char) (hi * 16 + lo);
            }
            src = chunk;
        } else if (parts != NULL) {
            if (!json_is_array(parts)) {
                return -1;
            }
            json_array_foreach(parts, i, part)
            {
                if (bytes_append(&sub, part) != 0) {
                    free(sub.p);
                    return -1;
                }
            }
            src = sub.p != NULL ? sub.p : "";
            chunk_len = sub.len;
        } else {
            return -1;
        }
    } else {
        return -1;
    }
    /* Grow once: a realloc per repetition makes a 1 MB case take minutes
     * under ASan, whose quarantine keeps every freed block. */
    if (chunk_len != 0
        && (size_t) repeat > (SIZE_MAX - b->len - 1) / chunk_len) {
        abort();
    }
    grown = realloc(b->p, b->len + chunk_len * (size_t) repeat + 1);
    if (grown == NULL) {
        abort();
    }
    b->p = grown;
    for (r = 0; r < repeat; r++) {
        memcpy(b->p + b->len, src, chunk_len);
        b->len += chunk_len;
    }
    b->p[b->len] = '\0';
    if (b->p == NULL) {
        b->p = calloc(1, 1);
    }
    free(chunk);
    free(sub.p);
    return 0;
}

/* A case value as bytes: absent or null gives p == NULL. */
static bytes_t
case_bytes(const tcase_t *tc, json_t *obj, const char *key)
{
    bytes_t b = {NULL, 0};
    json_t *v = json_object_get(obj, key);

    if (v == NULL || json_is_null(v)) {
        return b;
    }
    if (bytes_append(&b, v) != 0) {
        print_error("%s: bad byte spec for %s\n", tc->name, key);
        fail();
    }
    return b;
}

static int
key_allowed(const char *const *keys, const char *key)
{
    for (; *keys != NULL; keys++) {
        if (strcmp(*keys, key) == 0) {
            return 1;
        }
    }
    return 0;
}

static int
check_keys(const char *where, json_t *obj, const char *const *keys)
{
    const char *key;
    json_t *v;

    if (!json_is_object(obj)) {
        fprintf(stderr, "%s: not a JSON object\n", where);
        return -1;
    }
    json_object_foreach(obj, key, v)
    {
        if (!key_allowed(keys, key)) {
            fprintf(stderr, "%s: unknown key \"%s\"\n", where, key);
            return -1;
        }
    }
    return 0;
}

static tg_err_t
err_by_name(const tcase_t *tc, const char *name)
{
    int e;

    for (e = 0; e < TG_ERR_MAX; e++) {
        if (name != NULL && strcmp(tg_err_name((tg_err_t) e), name) == 0) {
            return (tg_err_t) e;
        }
    }
    print_error("%s: unknown error name %s\n", tc->name,
                name != NULL ? name : "(none)");
    fail();
    return TG_INTERNAL;
}

/* The config of a case: defaults, the api, then "config" overrides. */
static tg_config_t *
case_config(const tcase_t *tc)
{
    tg_config_t *cfg = tg_config_new();
    const char *api = json_string_value(json_object_get(tc->c, "api"));
    json_t *over = json_object_get(tc->c, "config"), *v;
    char **strs[3];
    const char *names[3] = {"url", "insight_base_path", "looker_api_version"};
    long *nums[3];
    const char *num_names[3] = {"token_max_age", "max_response_bytes",
                                "retry_after_max"};
    int i;

    assert_non_null(cfg);
    if (api == NULL ||
        (strcmp(api, "insight") != 0 && strcmp(api, "looker") != 0)) {
        print_error("%s: api must be insight or looker\n", tc->name);
        fail();
    }
    cfg->api = strcmp(api, "looker") == 0 ? TG_API_LOOKER : TG_API_INSIGHT;
    cfg->url =
        strdup(cfg->api == TG_API_LOOKER ? "https://looker.example.com:19999"
                                         : "https://insight.example.com");
    strs[0] = &cfg->url;
    strs[1] = &cfg->insight_base_path;
    strs[2] = &cfg->looker_api_version;
    nums[0] = &cfg->token_max_age;
    nums[1] = &cfg->max_response_bytes;
    nums[2] = &cfg->retry_after_max;
    if (over == NULL) {
        return cfg;
    }
    for (i = 0; i < 3; i++) {
        v = json_object_get(over, names[i]);
        if (v != NULL) {
            free(*strs[i]);
            *strs[i] = json_is_string(v) ? strdup(json_string_value(v)) : NULL;
        }
        v = json_object_get(over, num_names[i]);
        if (v != NULL) {
            *nums[i] = (long) json_integer_value(v);
        }
    }
    v = json_object_get(over, "looker_auth_scheme");
    if (v != NULL) {
        cfg->looker_auth_scheme = strcmp(json_string_value(v), "bearer") == 0
                                      ? TG_LOOKER_SCHEME_BEARER
                                      : TG_LOOKER_SCHEME_TOKEN;
    }
    return cfg;
}

static tg_insight_validate_t
case_which(const tcase_t *tc)
{
    const char *w = json_string_value(json_object_get(tc->c, "which"));

    if (w == NULL || strcmp(w, "user") == 0) {
        return TG_INSIGHT_VALIDATE_USER;
    }
    if (strcmp(w, "currentuser") == 0) {
        return TG_INSIGHT_VALIDATE_CURRENTUSER;
    }
    if (strcmp(w, "auto") == 0) {
        return TG_INSIGHT_VALIDATE_AUTO;
    }
    if (strcmp(w, "both") == 0) {
        return TG_INSIGHT_VALIDATE_BOTH;
    }
    print_error("%s: bad which %s\n", tc->name, w);
    fail();
    return TG_INSIGHT_VALIDATE_AUTO;
}

static tg_creds_op_t
case_op(const tcase_t *tc)
{
    const char *o = json_string_value(json_object_get(tc->c, "op"));

    if (o == NULL || strcmp(o, "show") == 0) {
        return TG_CREDS_SHOW;
    }
    if (strcmp(o, "new") == 0) {
        return TG_CREDS_NEW;
    }
    if (strcmp(o, "revoke") == 0) {
        return TG_CREDS_REVOKE;
    }
    if (strcmp(o, "bogus") == 0) {
        return (tg_creds_op_t) 42;
    }
    print_error("%s: bad op %s\n", tc->name, o);
    fail();
    return TG_CREDS_SHOW;
}

/* ---------------------------------------------------------------------- */
/* Assertions with the case named                                         */
/* ---------------------------------------------------------------------- */

static void
expect_str(const tcase_t *tc, const char *what, const char *got, json_t *want)
{
    if (want == NULL) {
        return;
    }
    if (json_is_null(want)) {
        if (got != NULL) {
            print_error("%s: %s: got \"%s\", want NULL\n", tc->name, what, got);
            fail();
        }
        return;
    }
    if (got == NULL || strcmp(got, json_string_value(want)) != 0) {
        print_error("%s: %s: got \"%s\", want \"%s\"\n", tc->name, what,
                    got != NULL ? got : "(NULL)", json_string_value(want));
        fail();
    }
}

static void
expect_int(const tcase_t *tc, const char *what, long long got, json_t *want)
{
    if (want == NULL) {
        return;
    }
    if (got != (long long) json_integer_value(want)) {
        print_error("%s: %s: got %lld, want %lld\n", tc->name, what, got,
                    (long long) json_integer_value(want));
        fail();
    }
}

static void
expect_not_in(const tcase_t *tc, const char *message, const char *needle,
              size_t len, const char *what)
{
    if (needle == NULL || len < SECRET_MIN_LEN) {
        return;
    }
    if (memmem(message, strlen(message), needle, len) != NULL) {
        print_error("%s: the message quotes %s: \"%s\"\n", tc->name, what,
                    message);
        fail();
    }
}

/* message_contains (a string or an array), message_not_contains (array),
 * message (exact). */
static void
expect_message(const tcase_t *tc, json_t *expect, const char *message)
{
    json_t *v, *item;
    size_t i;

    expect_str(tc, "message", message, json_object_get(expect, "message"));
    v = json_object_get(expect, "message_contains");
    if (json_is_string(v)) {
        if (strstr(message, json_string_value(v)) == NULL) {
            print_error("%s: message \"%s\" lacks \"%s\"\n", tc->name, message,
                        json_string_value(v));
            fail();
        }
    }
    json_array_foreach(v, i, item)
    {
        if (strstr(message, json_string_value(item)) == NULL) {
            print_error("%s: message \"%s\" lacks \"%s\"\n", tc->name, message,
                        json_string_value(item));
            fail();
        }
    }
    v = json_object_get(expect, "message_not_contains");
    json_array_foreach(v, i, item)
    {
        if (strstr(message, json_string_value(item)) != NULL) {
            print_error("%s: message \"%s\" has \"%s\"\n", tc->name, message,
                        json_string_value(item));
            fail();
        }
    }
}

static void
expect_err(const tcase_t *tc, tg_err_t got, tg_err_t want,
           const tg_diag_t *diag)
{
    if (getenv("TG_TEST_VERBOSE") != NULL) {
        print_message("%s: %s \"%s\"\n", tc->name, tg_err_name(got),
                      diag->message);
    }
    if (got != want) {
        print_error("%s: got %s (\"%s\"), want %s\n", tc->name,
                    tg_err_name(got), diag->message, tg_err_name(want));
        fail();
    }
    if (want == TG_OK && diag->message[0] != '\0') {
        print_error("%s: success with a message \"%s\"\n", tc->name,
                    diag->message);
        fail();
    }
    if (want != TG_OK && diag->message[0] == '\0') {
        print_error("%s: %s without a message\n", tc->name, tg_err_name(got));
        fail();
    }
}

/* ---------------------------------------------------------------------- */
/* Build cases                                                            */
/* ---------------------------------------------------------------------- */

static tg_err_t
run_build(const tcase_t *tc, const tg_config_t *cfg, const bytes_t *id,
          const bytes_t *secret, const bytes_t *token, const bytes_t *user,
          const bytes_t *ws, tg_request_t *req, tg_diag_t *diag)
{
    const char *call = json_string_value(json_object_get(tc->c, "call"));

    if (call == NULL) {
        print_error("%s: no call\n", tc->name);
        fail();
    } else if (strcmp(call, "token") == 0) {
        return tg_build_token(cfg, id->p, secret->p, req, diag);
    } else if (strcmp(call, "validate") == 0) {
        return tg_build_validate(cfg, token->p, case_which(tc), req, diag);
    } else if (strcmp(call, "profile") == 0) {
        return tg_build_profile(cfg, token->p, req, diag);
    } else if (strcmp(call, "credentials") == 0) {
        return tg_build_credentials(cfg, token->p, case_op(tc), req, diag);
    } else if (strcmp(call, "logout") == 0) {
        return tg_build_logout(cfg, token->p, req, diag);
    } else if (strcmp(call, "sudo") == 0) {
        return tg_build_sudo(cfg, token->p, user->p, req, diag);
    } else if (strcmp(call, "session") == 0) {
        return tg_build_session(cfg, token->p, ws->p, req, diag);
    }
    print_error("%s: unknown call %s\n", tc->name, call);
    fail();
    return TG_INTERNAL;
}

static void
test_build_case(void **state)
{
    const tcase_t *tc = *state;
    json_t *expect = json_object_get(tc->c, "expect");
    tg_config_t *cfg = case_config(tc);
    bytes_t id = case_bytes(tc, tc->c, "client_id");
    bytes_t secret = case_bytes(tc, tc->c, "secret");
    bytes_t token = case_bytes(tc, tc->c, "token");
    bytes_t user = case_bytes(tc, tc->c, "user_id");
    bytes_t ws = case_bytes(tc, tc->c, "workspace");
    tg_err_t want, got, got_nodiag;
    tg_request_t req, zero;
    tg_diag_t diag;

    want = err_by_name(tc, json_string_value(json_object_get(expect, "err")));
    memset(&zero, 0, sizeof(zero));
    /* The builder must zero the request itself, whatever it held. */
    memset(&req, 0xa5, sizeof(req));
    tg_diag_clear(&diag);
    got = run_build(tc, cfg, &id, &secret, &token, &user, &ws, &req, &diag);
    expect_err(tc, got, want, &diag);
    expect_message(tc, expect, diag.message);
    expect_not_in(tc, diag.message, token.p, token.len, "the token");
    expect_not_in(tc, diag.message, secret.p, secret.len, "the secret");

    if (got != TG_OK) {
        if (memcmp(&req, &zero, sizeof(req)) != 0) {
            print_error("%s: failed build left the request non-zero\n",
                        tc->name);
            fail();
        }
    } else {
        assert_non_null(req.method);
        assert_non_null(req.url);
        assert_non_null(req.accept);
        if (req.body != NULL) {
            assert_int_equal(req.body_len, strlen(req.body));
            assert_non_null(req.content_type);
        } else {
            assert_int_equal(req.body_len, 0);
            assert_null(req.content_type);
        }
        expect_str(tc, "method", req.method, json_object_get(expect, "method"));
        expect_str(tc, "url", req.url, json_object_get(expect, "url"));
        expect_str(tc, "authorization", req.authorization,
                   json_object_get(expect, "authorization"));
        expect_str(tc, "content_type", req.content_type,
                   json_object_get(expect, "content_type"));
        expect_str(tc, "accept", req.accept, json_object_get(expect, "accept"));
        expect_str(tc, "body", req.body, json_object_get(expect, "body"));
    }
    tg_request_clear(&req);
    assert_memory_equal(&req, &zero, sizeof(req));
    tg_request_clear(&req); /* twice is fine */

    /* The same call without a diag gives the same answer. */
    memset(&req, 0xa5, sizeof(req));
    got_nodiag =
        run_build(tc, cfg, &id, &secret, &token, &user, &ws, &req, NULL);
    assert_int_equal(got_nodiag, got);
    tg_request_clear(&req);

    free(id.p);
    free(secret.p);
    free(token.p);
    free(user.p);
    free(ws.p);
    tg_config_free(cfg);
}

/* ---------------------------------------------------------------------- */
/* Parse cases                                                            */
/* ---------------------------------------------------------------------- */

static tg_err_t
run_parse(const tcase_t *tc, const tg_config_t *cfg, const tg_response_t *resp,
          time_t sent_at, parse_out_t *out, tg_diag_t *diag)
{
    const char *call = json_string_value(json_object_get(tc->c, "call"));

    if (call == NULL) {
        print_error("%s: no call\n", tc->name);
        fail();
    } else if (strcmp(call, "token") == 0) {
        return tg_parse_token(cfg, resp, sent_at, &out->token, diag);
    } else if (strcmp(call, "sudo") == 0) {
        return tg_parse_sudo(cfg, resp, sent_at, &out->token, diag);
    } else if (strcmp(call, "validate") == 0) {
        return tg_parse_validate(cfg, resp, case_which(tc), &out->identity,
                                 diag);
    } else if (strcmp(call, "profile") == 0) {
        return tg_parse_profile(cfg, resp, &out->identity, diag);
    } else if (strcmp(call, "credentials") == 0) {
        return tg_parse_credentials(cfg, resp, case_op(tc), &out->creds, diag);
    } else if (strcmp(call, "logout") == 0) {
        return tg_parse_logout(cfg, resp, diag);
    } else if (strcmp(call, "session") == 0) {
        return tg_parse_session(cfg, resp, &out->session, diag);
    }
    print_error("%s: unknown call %s\n", tc->name, call);
    fail();
    return TG_INTERNAL;
}

static void
parse_out_free(parse_out_t *out)
{
    tg_token_clear(&out->token);
    tg_identity_free(out->identity);
    out->identity = NULL;
    tg_credentials_clear(&out->creds);
    tg_session_clear(&out->session);
}

static void
expect_identity(const tcase_t *tc, json_t *expect, const tg_identity_t *id)
{
    size_t i;

    assert_non_null(id);
    /* Every string is set on success. */
    assert_non_null(id->id);
    assert_non_null(id->name);
    assert_non_null(id->email);
    assert_non_null(id->display_name);
    assert_non_null(id->first_name);
    assert_non_null(id->last_name);
    assert_true(id->id[0] != '\0');
    for (i = 0; i < id->n_groups; i++) {
        assert_non_null(id->groups[i]);
    }
    expect_str(tc, "id", id->id, json_object_get(expect, "id"));
    expect_str(tc, "name", id->name, json_object_get(expect, "name"));
    expect_str(tc, "email", id->email, json_object_get(expect, "email"));
    expect_str(tc, "display_name", id->display_name,
               json_object_get(expect, "display_name"));
    expect_str(tc, "first_name", id->first_name,
               json_object_get(expect, "first_name"));
    expect_str(tc, "last_name", id->last_name,
               json_object_get(expect, "last_name"));
    expect_int(tc, "expires_at", (long long) id->expires_at,
               json_object_get(expect, "expires_at"));
    expect_int(tc, "evaluation", id->evaluation,
               json_object_get(expect, "evaluation"));
    expect_int(tc, "disabled", id->disabled,
               json_object_get(expect, "disabled"));
    expect_int(tc, "has_profile", id->has_profile,
               json_object_get(expect, "has_profile"));
    expect_int(tc, "n_groups", (long long) id->n_groups,
               json_object_get(expect, "n_groups"));
}

static void
expect_groups(const tcase_t *tc, json_t *expect, const tg_identity_t *id)
{
    json_t *groups = json_object_get(expect, "groups"), *g;
    size_t i;

    if (groups == NULL) {
        return;
    }
    if (id->n_groups != json_array_size(groups)) {
        print_error("%s: %zu groups, want %zu\n", tc->name, id->n_groups,
                    json_array_size(groups));
        fail();
    }
    json_array_foreach(groups, i, g)
    {
        if (strcmp(id->groups[i], json_string_value(g)) != 0) {
            print_error("%s: group %zu is \"%s\", want \"%s\"\n", tc->name, i,
                        id->groups[i], json_string_value(g));
            fail();
        }
    }
}

static void
expect_fields(const tcase_t *tc, json_t *expect, const tg_diag_t *diag)
{
    json_t *fields = json_object_get(expect, "fields"), *f;
    size_t i;

    if (fields == NULL) {
        if (diag->n_fields != 0) {
            print_error("%s: %d unexpected field errors\n", tc->name,
                        diag->n_fields);
            fail();
        }
        return;
    }
    if ((size_t) diag->n_fields != json_array_size(fields)) {
        print_error("%s: %d field errors, want %zu\n", tc->name, diag->n_fields,
                    json_array_size(fields));
        fail();
    }
    json_array_foreach(fields, i, f)
    {
        expect_str(tc, "field", diag->fields[i].field,
                   json_object_get(f, "field"));
        expect_str(tc, "code", diag->fields[i].code,
                   json_object_get(f, "code"));
        expect_str(tc, "field message", diag->fields[i].message,
                   json_object_get(f, "message"));
    }
}

static void
test_parse_case(void **state)
{
    const tcase_t *tc = *state;
    json_t *expect = json_object_get(tc->c, "expect"), *v, *item;
    const char *call = json_string_value(json_object_get(tc->c, "call"));
    tg_config_t *cfg = case_config(tc);
    bytes_t body = case_bytes(tc, tc->c, "body");
    tg_response_t resp;
    parse_out_t out, zero;
    tg_err_t want, got, got_nodiag;
    tg_diag_t diag;
    time_t sent_at = DEFAULT_SENT_AT;
    long want_retry;
    size_t i;

    want = err_by_name(tc, json_string_value(json_object_get(expect, "err")));
    v = json_object_get(tc->c, "body_json");
    if (v != NULL) {
        assert_null(body.p);
        body.p = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        assert_non_null(body.p);
        body.len = strlen(body.p);
    }
    memset(&resp, 0, sizeof(resp));
    v = json_object_get(tc->c, "status");
    if (!json_is_integer(v)) {
        print_error("%s: no status\n", tc->name);
        fail();
    }
    resp.status = (long) json_integer_value(v);
    v = json_object_get(tc->c, "content_type");
    resp.content_type = v == NULL ? "application/json" : json_string_value(v);
    resp.body = body.p;
    resp.body_len = body.len;
    v = json_object_get(tc->c, "retry_after");
    resp.retry_after = v != NULL ? (long) json_integer_value(v) : -1;
    v = json_object_get(tc->c, "sent_at");
    if (v != NULL) {
        sent_at = (time_t) json_integer_value(v);
    }

    memset(&zero, 0, sizeof(zero));
    memset(&out, 0, sizeof(out));
    tg_diag_clear(&diag);
    got = run_parse(tc, cfg, &resp, sent_at, &out, &diag);
    expect_err(tc, got, want, &diag);
    expect_message(tc, expect, diag.message);
    json_array_foreach(json_object_get(tc->c, "secrets"), i, item)
    {
        expect_not_in(tc, diag.message, json_string_value(item),
                      json_string_length(item), "a secret");
    }
    if (out.token.value != NULL) {
        expect_not_in(tc, diag.message, out.token.value,
                      strlen(out.token.value), "the token");
    }
    if (diag.http_status != resp.status) {
        print_error("%s: http_status %ld, want %ld\n", tc->name,
                    diag.http_status, resp.status);
        fail();
    }
    v = json_object_get(expect, "retry_after");
    want_retry = v != NULL ? (long) json_integer_value(v) : -1;
    if (diag.retry_after != want_retry) {
        print_error("%s: retry_after %ld, want %ld\n", tc->name,
                    diag.retry_after, want_retry);
        fail();
    }
    expect_fields(tc, expect, &diag);

    if (got != TG_OK) {
        if (memcmp(&out, &zero, sizeof(out)) != 0) {
            print_error("%s: failed parse left output behind\n", tc->name);
            fail();
        }
    } else if (strcmp(call, "token") == 0 || strcmp(call, "sudo") == 0) {
        assert_non_null(out.token.value);
        assert_int_equal(tg_token_check(out.token.value, NULL), TG_OK);
        expect_str(tc, "token", out.token.value,
                   json_object_get(expect, "token"));
        expect_int(tc, "expires_at", (long long) out.token.expires_at,
                   json_object_get(expect, "expires_at"));
    } else if (strcmp(call, "validate") == 0 || strcmp(call, "profile") == 0) {
        expect_identity(tc, expect, out.identity);
        expect_groups(tc, expect, out.identity);
    } else if (strcmp(call, "credentials") == 0 &&
               case_op(tc) != TG_CREDS_REVOKE) {
        assert_non_null(out.creds.client_id);
        assert_non_null(out.creds.secret);
        expect_str(tc, "client_id", out.creds.client_id,
                   json_object_get(expect, "client_id"));
        expect_str(tc, "secret", out.creds.secret,
                   json_object_get(expect, "secret"));
        expect_int(tc, "created_ms", out.creds.created_ms,
                   json_object_get(expect, "created_ms"));
        expect_int(tc, "credentials_id", out.creds.credentials_id,
                   json_object_get(expect, "credentials_id"));
    } else if (strcmp(call, "session") == 0) {
        assert_non_null(out.session.workspace_id);
        assert_non_null(out.session.sudo_user_id);
        expect_str(tc, "workspace_id", out.session.workspace_id,
                   json_object_get(expect, "workspace_id"));
        expect_str(tc, "sudo_user_id", out.session.sudo_user_id,
                   json_object_get(expect, "sudo_user_id"));
    }
    parse_out_free(&out);
    assert_memory_equal(&out, &zero, sizeof(out));
    parse_out_free(&out); /* clearing twice is fine */

    /* The same call without a diag gives the same answer. */
    got_nodiag = run_parse(tc, cfg, &resp, sent_at, &out, NULL);
    assert_int_equal(got_nodiag, got);
    parse_out_free(&out);

    free(body.p);
    tg_config_free(cfg);
}

/* ---------------------------------------------------------------------- */
/* Fixed tests                                                            */
/* ---------------------------------------------------------------------- */

/* Clear functions accept zeroed structs and NULL, and may run twice. */
static void
test_clear_zeroed(void **state)
{
    tg_request_t req;
    tg_token_t tok;
    tg_credentials_t creds;
    tg_session_t sess;

    (void) state;
    /* Filled structs are freed and left zeroed, so a second clear (and a
     * clear of NULL) is harmless. */
    memset(&req, 0, sizeof(req));
    req.url = strdup("https://x.example/u");
    req.authorization = strdup("Bearer abc");
    req.body = strdup("{}");
    req.body_len = 2;
    req.method = "GET";
    tg_request_clear(&req);
    assert_null(req.url);
    assert_null(req.authorization);
    assert_null(req.body);
    assert_int_equal(req.body_len, 0);
    assert_null(req.method);
    tg_request_clear(&req);
    tg_request_clear(NULL);

    memset(&tok, 0, sizeof(tok));
    tok.value = strdup("abc");
    tok.expires_at = 42;
    tg_token_clear(&tok);
    assert_null(tok.value);
    assert_int_equal(tok.expires_at, 0);
    tg_token_clear(&tok);
    tg_token_clear(NULL);

    memset(&creds, 0, sizeof(creds));
    creds.client_id = strdup("id");
    creds.secret = strdup("secret");
    creds.credentials_id = 7;
    tg_credentials_clear(&creds);
    assert_null(creds.client_id);
    assert_null(creds.secret);
    assert_int_equal(creds.credentials_id, 0);
    tg_credentials_clear(&creds);
    tg_credentials_clear(NULL);

    memset(&sess, 0, sizeof(sess));
    sess.workspace_id = strdup("dev");
    sess.sudo_user_id = strdup("2");
    tg_session_clear(&sess);
    assert_null(sess.workspace_id);
    assert_null(sess.sudo_user_id);
    tg_session_clear(&sess);
    tg_session_clear(NULL);
}

/* Missing arguments are refused, never dereferenced. */
static void
test_null_arguments(void **state)
{
    tg_config_t *cfg = tg_config_new();
    tg_response_t resp = {200, "application/json", "{}", 2, -1, 0};
    tg_request_t req;
    tg_token_t tok;
    tg_identity_t *id = NULL;
    tg_diag_t diag;

    (void) state;
    assert_non_null(cfg);
    cfg->url = strdup("https://insight.example.com");
    tg_diag_clear(&diag);
    assert_int_equal(tg_build_token(NULL, "id-123", "secret", &req, &diag),
                     TG_CONFIG);
    assert_int_equal(tg_build_token(cfg, "id-123", "secret", NULL, &diag),
                     TG_INPUT);
    assert_int_equal(
        tg_build_validate(cfg, NULL, TG_INSIGHT_VALIDATE_USER, &req, NULL),
        TG_INPUT);
    assert_int_equal(tg_parse_token(NULL, &resp, 0, &tok, NULL), TG_INPUT);
    assert_int_equal(tg_parse_token(cfg, NULL, 0, &tok, NULL), TG_INPUT);
    assert_int_equal(tg_parse_token(cfg, &resp, 0, NULL, NULL), TG_INPUT);
    assert_int_equal(tg_parse_profile(cfg, &resp, NULL, NULL), TG_INPUT);
    assert_int_equal(
        tg_parse_validate(cfg, NULL, TG_INSIGHT_VALIDATE_USER, &id, NULL),
        TG_INPUT);
    assert_null(id);
    assert_int_equal(
        tg_parse_credentials(cfg, &resp, TG_CREDS_SHOW, NULL, NULL), TG_INPUT);
    assert_int_equal(tg_parse_logout(cfg, NULL, NULL), TG_INPUT);
    assert_int_equal(tg_parse_session(cfg, &resp, NULL, NULL), TG_INPUT);
    /* revoke has no output: out may be NULL. */
    resp.status = 204;
    resp.body = NULL;
    resp.body_len = 0;
    assert_int_equal(
        tg_parse_credentials(cfg, &resp, TG_CREDS_REVOKE, NULL, NULL), TG_OK);
    /* A body pointer missing with a length is the transport's bug. */
    resp.status = 200;
    resp.body_len = 5;
    assert_int_equal(tg_parse_profile(cfg, &resp, &id, NULL), TG_INTERNAL);
    tg_config_free(cfg);
}

/* The first error wins: a parser does not overwrite an earlier message. */
static void
test_first_error_wins(void **state)
{
    tg_config_t *cfg = tg_config_new();
    tg_response_t resp = {401, "application/json", "{}", 2, -1, 0};
    tg_identity_t *id = NULL;
    tg_diag_t diag;

    (void) state;
    assert_non_null(cfg);
    tg_diag_clear(&diag);
    snprintf(diag.message, sizeof(diag.message), "earlier");
    assert_int_equal(tg_parse_profile(cfg, &resp, &id, &diag),
                     TG_TOKEN_INVALID);
    assert_string_equal(diag.message, "earlier");
    assert_int_equal(diag.http_status, 401);
    tg_config_free(cfg);
}

/* ---------------------------------------------------------------------- */
/* Loading the cases                                                      */
/* ---------------------------------------------------------------------- */

static int
is_case_file(const struct dirent *d)
{
    size_t n = strlen(d->d_name);

    return d->d_name[0] != '.' && n > 5 &&
           strcmp(d->d_name + n - 5, ".json") == 0;
}

/* Load every case of one file into *cases (grown); -1 on any error. */
static int
load_file(const char *dir, const char *file, json_t **roots, size_t n_roots,
          tcase_t **cases, size_t *n_cases)
{
    char path[4096], where[512];
    json_error_t jerr;
    json_t *root, *list, *c;
    const char *kind, *name;
    size_t i;
    int is_build;

    snprintf(path, sizeof(path), "%s/%s", dir, file);
    /* NUL is allowed in case files: a body may need one. */
    root = json_load_file(path, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (root == NULL) {
        fprintf(stderr, "%s:%d:%d: %s\n", path, jerr.line, jerr.column,
                jerr.text);
        return -1;
    }
    roots[n_roots] = root;
    kind = json_string_value(json_object_get(root, "kind"));
    list = json_object_get(root, "cases");
    if (kind == NULL || !json_is_array(list) || json_array_size(list) == 0) {
        fprintf(stderr, "%s: need {\"kind\": ..., \"cases\": [...]}\n", path);
        return -1;
    }
    if (strcmp(kind, "build") != 0 && strcmp(kind, "parse") != 0) {
        fprintf(stderr, "%s: kind must be build or parse\n", path);
        return -1;
    }
    is_build = strcmp(kind, "build") == 0;
    json_array_foreach(list, i, c)
    {
        name = json_string_value(json_object_get(c, "name"));
        snprintf(where, sizeof(where), "%.255s: case %zu (%.200s)", file, i,
                 name != NULL ? name : "no name");
        if (name == NULL ||
            check_keys(where, c, is_build ? build_keys : parse_keys) != 0 ||
            check_keys(where, json_object_get(c, "expect"),
                       is_build ? build_expect_keys : parse_expect_keys) != 0 ||
            (json_object_get(c, "config") != NULL &&
             check_keys(where, json_object_get(c, "config"), config_keys) !=
                 0) ||
            !json_is_string(
                json_object_get(json_object_get(c, "expect"), "err"))) {
            fprintf(stderr,
                    "%s: invalid case (it needs a name, an expect "
                    "with err, and only known keys)\n",
                    where);
            return -1;
        }
        *cases = realloc(*cases, (*n_cases + 1) * sizeof(**cases));
        if (*cases == NULL) {
            abort();
        }
        (*cases)[*n_cases].name = malloc(strlen(file) + strlen(name) + 3);
        sprintf((*cases)[*n_cases].name, "%s: %s", file, name);
        (*cases)[*n_cases].is_build = is_build;
        (*cases)[*n_cases].c = c;
        (*n_cases)++;
    }
    return 0;
}

int
main(void)
{
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_clear_zeroed),
        cmocka_unit_test(test_null_arguments),
        cmocka_unit_test(test_first_error_wins),
    };
    const char *dir = getenv("TG_TEST_CASES");
    struct dirent **files = NULL;
    json_t **roots = NULL;
    tcase_t *cases = NULL;
    struct CMUnitTest *tests;
    size_t n_cases = 0, n_tests, i;
    int n_files, f, rc;

    if (dir == NULL || dir[0] == '\0') {
        fprintf(stderr, "test_protocol: TG_TEST_CASES is not set (make check "
                        "sets it to tests/unit/cases)\n");
        return HARD_ERROR;
    }
    n_files = scandir(dir, &files, is_case_file, alphasort);
    if (n_files <= 0) {
        fprintf(stderr, "test_protocol: no case files in %s\n", dir);
        return HARD_ERROR;
    }
    roots = calloc((size_t) n_files, sizeof(*roots));
    for (f = 0; f < n_files; f++) {
        if (load_file(dir, files[f]->d_name, roots, (size_t) f, &cases,
                      &n_cases) != 0) {
            return HARD_ERROR;
        }
    }

    n_tests = n_cases + sizeof(fixed) / sizeof(fixed[0]);
    tests = calloc(n_tests, sizeof(*tests));
    for (i = 0; i < n_cases; i++) {
        tests[i].name = cases[i].name;
        tests[i].test_func =
            cases[i].is_build ? test_build_case : test_parse_case;
        tests[i].initial_state = &cases[i];
    }
    memcpy(&tests[n_cases], fixed, sizeof(fixed));
    printf("test_protocol: %zu cases from %d files in %s\n", n_cases, n_files,
           dir);
    fflush(stdout);

    rc = _cmocka_run_group_tests("protocol", tests, n_tests, NULL, NULL);

    for (i = 0; i < n_cases; i++) {
        free(cases[i].name);
    }
    for (f = 0; f < n_files; f++) {
        json_decref(roots[f]);
        free(files[f]);
    }
    free(files);
    free(roots);
    free(cases);
    free(tests);
    return rc;
}
