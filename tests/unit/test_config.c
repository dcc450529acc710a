/* SPDX-License-Identifier: MIT */
/*
 * test_config.c - the typed configuration: defaults, every key good and bad,
 * the key = value text, the file checks, module arguments, validation and
 * secret files.  Each test is named by what it protects.
 */
#include "tokengate.h"
#include "tg_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tg_test.h"

/* A valid sha256// pin: 43 base64 characters and '='. */
#define PIN1 "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
#define PIN2 "sha256//abcdefghijklmnopqrstuvwxyz+/0123456789ABCDE="

/* ---------------------------------------------------------------------- */
/* Helpers                                                                */
/* ---------------------------------------------------------------------- */

/* A path in the test directory (static buffer, one at a time per slot). */
static const char *
tpath(int slot, const char *name)
{
    static char buf[4][PATH_MAX];

    snprintf(buf[slot], sizeof(buf[slot]), "%s/%s", g_dir, name);
    return buf[slot];
}

static void
assert_no_ctl(const char *s)
{
    for (; *s != '\0'; s++) {
        assert_true((unsigned char) *s >= 0x20 && (unsigned char) *s < 0x7f);
    }
}

static tg_err_t
set1(tg_config_t *cfg, const char *key, const char *value, tg_diag_t *d)
{
    tg_diag_clear(d);
    return tg_config_set(cfg, key, value, "test.conf:7", d);
}

static tg_err_t
parse(tg_config_t *cfg, const char *text, tg_diag_t *d)
{
    tg_diag_clear(d);
    return tg__config_parse_text(cfg, text, strlen(text), "t.conf", d);
}

/* A config that validates: https URL, nothing else set. */
static tg_config_t *
valid_cfg(void)
{
    tg_config_t *cfg = tg_config_new();
    tg_diag_t d;

    assert_non_null(cfg);
    assert_int_equal(set1(cfg, "url", "https://bi.example.com", &d), TG_OK);
    return cfg;
}

static tg_err_t
validate(tg_config_t *cfg, tg_diag_t *d)
{
    tg_diag_clear(d);
    return tg_config_validate(cfg, d);
}

/* ---------------------------------------------------------------------- */
/* Defaults                                                               */
/* ---------------------------------------------------------------------- */

static void
defaults_are_the_documented_ones(void **state)
{
    tg_config_t *cfg = tg_config_new();

    (void) state;
    assert_non_null(cfg);
    assert_int_equal(cfg->api, TG_API_INSIGHT);
    assert_null(cfg->url);
    assert_string_equal(cfg->looker_api_version, "4.0");
    assert_string_equal(cfg->insight_base_path, "/insightservices/rest/v1");
    assert_int_equal(cfg->insight_validate, TG_INSIGHT_VALIDATE_AUTO);
    assert_int_equal(cfg->looker_auth_scheme, TG_LOOKER_SCHEME_TOKEN);
    assert_null(cfg->ca_file);
    assert_null(cfg->ca_path);
    assert_null(cfg->pinned_pubkey);
    assert_null(cfg->proxy);
    assert_int_equal(cfg->connect_timeout_ms, 5000);
    assert_int_equal(cfg->timeout_ms, 10000);
    assert_int_equal(cfg->max_response_bytes, 65536);
    assert_int_equal(cfg->token_max_age, 900);
    assert_int_equal(cfg->token_lifetime_max, 0);
    assert_int_equal(cfg->retry_after_max, 300);
    assert_int_equal(cfg->allow_insecure_http, 0);
    assert_null(cfg->require_groups);
    assert_int_equal(cfg->n_require_groups, 0);
    assert_int_equal(cfg->require_groups_mode, TG_GROUPS_ANY);
    assert_int_equal(cfg->deny_evaluation, 0);
    assert_int_equal(cfg->deny_disabled, 1);
    assert_int_equal(cfg->user_attribute, TG_BIND_EMAIL_LOCAL);
    assert_null(cfg->user_map_file);
    assert_int_equal(cfg->case_insensitive, 0);
    assert_null(cfg->client_id);
    assert_null(cfg->client_secret_file);
    assert_null(cfg->embed_secret_file);
    tg_config_free(cfg);
    tg_config_free(NULL);
}

/* ---------------------------------------------------------------------- */
/* Every key, good and bad (data-driven)                                  */
/* ---------------------------------------------------------------------- */

typedef struct set_case {
    const char *key;
    const char *value;
    tg_err_t expect;
    const char *contains; /* in the message, besides "bad value for KEY" */
} set_case_t;

static const set_case_t set_cases[] = {
    /* api */
    {"api", "insight", TG_OK, NULL},
    {"api", "looker", TG_OK, NULL},
    {"api", "Looker", TG_CONFIG, "expected one of insight | looker"},
    {"api", "", TG_CONFIG, "expected one of"},
    /* url */
    {"url", "https://bi.example.com", TG_OK, NULL},
    {"url", "http://127.0.0.1:8080/", TG_OK, NULL},
    {"url", "", TG_CONFIG, "must not be empty"},
    {"url", "not a url", TG_CONFIG, "no spaces"},
    {"url", "bi.example.com", TG_CONFIG, "not an absolute"},
    {"url", "https://bi.example.com\r\nX: y", TG_CONFIG, "control bytes"},
    /* looker_api_version */
    {"looker_api_version", "4.0", TG_OK, NULL},
    {"looker_api_version", "3.1", TG_OK, NULL},
    {"looker_api_version", "10.12", TG_OK, NULL},
    {"looker_api_version", "4", TG_CONFIG, "digits.digits"},
    {"looker_api_version", "4.", TG_CONFIG, "digits.digits"},
    {"looker_api_version", ".0", TG_CONFIG, "digits.digits"},
    {"looker_api_version", "v4.0", TG_CONFIG, "digits.digits"},
    {"looker_api_version", "4.0.1", TG_CONFIG, "digits.digits"},
    {"looker_api_version", "4.0/../x", TG_CONFIG, "digits.digits"},
    {"looker_api_version", "", TG_CONFIG, "must not be empty"},
    /* insight_base_path */
    {"insight_base_path", "/insightservices/rest/v1", TG_OK, NULL},
    {"insight_base_path", "/a", TG_OK, NULL},
    {"insight_base_path", "a/b", TG_CONFIG, "must start with '/'"},
    {"insight_base_path", "/a?b=c", TG_CONFIG, "no '?'"},
    {"insight_base_path", "/a#b", TG_CONFIG, "'#'"},
    {"insight_base_path", "/a b", TG_CONFIG, "spaces"},
    {"insight_base_path", "/a\x01", TG_CONFIG, "control bytes"},
    {"insight_base_path", "/a%2e%2e", TG_CONFIG, "'%'"},
    {"insight_base_path", "/a/", TG_CONFIG, "trailing '/'"},
    {"insight_base_path", "/", TG_CONFIG, "trailing '/'"},
    {"insight_base_path", "/a//b", TG_CONFIG, "empty"},
    {"insight_base_path", "/a/../b", TG_CONFIG, "'..'"},
    {"insight_base_path", "/a/./b", TG_CONFIG, "'.'"},
    {"insight_base_path", "/a/.b/c..", TG_OK, NULL},
    {"insight_base_path", "", TG_CONFIG, "must not be empty"},
    /* insight_validate */
    {"insight_validate", "auto", TG_OK, NULL},
    {"insight_validate", "user", TG_OK, NULL},
    {"insight_validate", "currentuser", TG_OK, NULL},
    {"insight_validate", "both", TG_OK, NULL},
    {"insight_validate", "all", TG_CONFIG, "auto | user | currentuser | both"},
    /* looker_auth_scheme */
    {"looker_auth_scheme", "token", TG_OK, NULL},
    {"looker_auth_scheme", "bearer", TG_OK, NULL},
    {"looker_auth_scheme", "Bearer", TG_CONFIG, "token | bearer"},
    /* files */
    {"ca_file", "/etc/ssl/certs/ca-certificates.crt", TG_OK, NULL},
    {"ca_file", "", TG_OK, NULL},
    {"ca_file", "/etc/x\n", TG_CONFIG, "control bytes"},
    {"ca_path", "/etc/ssl/certs", TG_OK, NULL},
    {"ca_path", "/x\x7f", TG_CONFIG, "control bytes"},
    {"user_map_file", "/etc/tokengate/users", TG_OK, NULL},
    {"user_map_file", "/x\x1b[31m", TG_CONFIG, "control bytes"},
    {"client_secret_file", "/etc/tokengate/secret", TG_OK, NULL},
    {"client_secret_file", "/x\ty", TG_CONFIG, "control bytes"},
    {"embed_secret_file", "/etc/tokengate/embed", TG_OK, NULL},
    {"embed_secret_file", "\x01", TG_CONFIG, "control bytes"},
    /* pinned_pubkey */
    {"pinned_pubkey", PIN1, TG_OK, NULL},
    {"pinned_pubkey", PIN1 ";" PIN2, TG_OK, NULL},
    {"pinned_pubkey", "/etc/tokengate/server.pub", TG_OK, NULL},
    {"pinned_pubkey", "sha256//short=", TG_CONFIG, "44 base64"},
    {"pinned_pubkey", PIN1 ";", TG_CONFIG, "expected sha256//"},
    {"pinned_pubkey", PIN1 ";x", TG_CONFIG, "expected sha256//"},
    {"pinned_pubkey", PIN1 "A", TG_CONFIG, "expected sha256//"},
    {"pinned_pubkey", "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA*=",
     TG_CONFIG, "44 base64"},
    /* proxy */
    {"proxy", "http://proxy.example.com:3128", TG_OK, NULL},
    {"proxy", "", TG_OK, NULL},
    {"proxy", "http://a b", TG_CONFIG, "no spaces"},
    /* connect_timeout: 0.1 .. 120 seconds */
    {"connect_timeout", "0.1", TG_OK, NULL},
    {"connect_timeout", "120", TG_OK, NULL},
    {"connect_timeout", "120.000", TG_OK, NULL},
    {"connect_timeout", "0.099", TG_CONFIG, "between 0.1 and 120 seconds"},
    {"connect_timeout", "120.001", TG_CONFIG, "between 0.1 and 120"},
    {"connect_timeout", "0", TG_CONFIG, "between 0.1 and 120"},
    {"connect_timeout", "1.2345", TG_CONFIG, "at most 3 decimals"},
    {"connect_timeout", "1.", TG_CONFIG, "not a number of seconds"},
    {"connect_timeout", ".5", TG_CONFIG, "not a number of seconds"},
    {"connect_timeout", "-1", TG_CONFIG, "not a number of seconds"},
    {"connect_timeout", "+1", TG_CONFIG, "not a number of seconds"},
    {"connect_timeout", " 1", TG_CONFIG, "not a number of seconds"},
    {"connect_timeout", "1 ", TG_CONFIG, "not a number of seconds"},
    {"connect_timeout", "1e2", TG_CONFIG, "not a number of seconds"},
    {"connect_timeout", "inf", TG_CONFIG, "not a number of seconds"},
    {"connect_timeout", "5s", TG_CONFIG, "not a number of seconds"},
    {"connect_timeout", "", TG_CONFIG, "not a number of seconds"},
    {"connect_timeout", "99999999999999999999999999", TG_CONFIG, "too large"},
    /* timeout: 0.1 .. 600 seconds */
    {"timeout", "0.5", TG_OK, NULL},
    {"timeout", "600", TG_OK, NULL},
    {"timeout", "600.001", TG_CONFIG, "between 0.1 and 600 seconds"},
    {"timeout", "0.09", TG_CONFIG, "between 0.1 and 600"},
    {"timeout", "ten", TG_CONFIG, "not a number of seconds"},
    {"timeout", "9223372036854775807", TG_CONFIG, "too large"},
    /* max_response_bytes: 1024 .. 16777216 */
    {"max_response_bytes", "1024", TG_OK, NULL},
    {"max_response_bytes", "16777216", TG_OK, NULL},
    {"max_response_bytes", "1023", TG_CONFIG, "between 1024 and 16777216"},
    {"max_response_bytes", "16777217", TG_CONFIG, "between 1024 and"},
    {"max_response_bytes", "64k", TG_CONFIG, "not a whole number"},
    {"max_response_bytes", "0x1000", TG_CONFIG, "not a whole number"},
    {"max_response_bytes", "1.5", TG_CONFIG, "not a whole number"},
    {"max_response_bytes", "", TG_CONFIG, "a number is required"},
    {"max_response_bytes", "9223372036854775808", TG_CONFIG, "too large"},
    {"max_response_bytes", "184467440737095516160", TG_CONFIG, "too large"},
    /* token_max_age: 1 .. 86400 */
    {"token_max_age", "1", TG_OK, NULL},
    {"token_max_age", "86400", TG_OK, NULL},
    {"token_max_age", "0", TG_CONFIG, "between 1 and 86400"},
    {"token_max_age", "86401", TG_CONFIG, "between 1 and 86400"},
    {"token_max_age", "-5", TG_CONFIG, "not a whole number"},
    /* token_lifetime_max: 0 (the flavor's) .. 86400 */
    {"token_lifetime_max", "0", TG_OK, NULL},
    {"token_lifetime_max", "86400", TG_OK, NULL},
    {"token_lifetime_max", "86401", TG_CONFIG, "between 0 and 86400"},
    {"token_lifetime_max", "-1", TG_CONFIG, "not a whole number"},
    {"token_lifetime_max", "1h", TG_CONFIG, "not a whole number"},
    {"token_lifetime_max", "", TG_CONFIG, "a number is required"},
    /* retry_after_max: 0 .. 86400 */
    {"retry_after_max", "0", TG_OK, NULL},
    {"retry_after_max", "86400", TG_OK, NULL},
    {"retry_after_max", "86401", TG_CONFIG, "between 0 and 86400"},
    {"retry_after_max", "1 0", TG_CONFIG, "not a whole number"},
    /* booleans */
    {"allow_insecure_http", "yes", TG_OK, NULL},
    {"allow_insecure_http", "maybe", TG_CONFIG,
     "expected yes|no|true|false|on|off|1|0"},
    {"allow_insecure_http", "YES", TG_CONFIG, "expected yes|no"},
    {"allow_insecure_http", "2", TG_CONFIG, "expected yes|no"},
    {"allow_insecure_http", "", TG_CONFIG, "expected yes|no"},
    {"deny_evaluation", "on", TG_OK, NULL},
    {"deny_evaluation", "y", TG_CONFIG, "expected yes|no"},
    {"deny_disabled", "off", TG_OK, NULL},
    {"deny_disabled", "nope", TG_CONFIG, "expected yes|no"},
    {"case_insensitive", "true", TG_OK, NULL},
    {"case_insensitive", "True", TG_CONFIG, "expected yes|no"},
    /* min_uid: 1 .. 2147483647 */
    {"min_uid", "1", TG_OK, NULL},
    {"min_uid", "2147483647", TG_OK, NULL},
    {"min_uid", "0", TG_CONFIG, "between 1 and 2147483647"},
    {"min_uid", "2147483648", TG_CONFIG, "between 1 and 2147483647"},
    {"min_uid", "-1", TG_CONFIG, "not a whole number"},
    {"min_uid", "0x3e8", TG_CONFIG, "not a whole number"},
    {"min_uid", "1000 ", TG_CONFIG, "not a whole number"},
    {"min_uid", "", TG_CONFIG, "a number is required"},
    {"min_uid", "99999999999999999999", TG_CONFIG, "too large"},
    /* require_groups */
    {"require_groups", "admins ops", TG_OK, NULL},
    {"require_groups", "", TG_OK, NULL},
    {"require_groups", "SYS_ADMIN role:12 42", TG_OK, NULL},
    {"require_groups", "a\x01", TG_CONFIG, "no control bytes"},
    {"require_groups_mode", "any", TG_OK, NULL},
    {"require_groups_mode", "all", TG_OK, NULL},
    {"require_groups_mode", "some", TG_CONFIG, "any | all"},
    /* user_attribute */
    {"user_attribute", "email_local", TG_OK, NULL},
    {"user_attribute", "email", TG_OK, NULL},
    {"user_attribute", "id", TG_OK, NULL},
    {"user_attribute", "cn", TG_OK, NULL},
    {"user_attribute", "uid", TG_CONFIG, "email_local | email | id | cn"},
    /* client_id */
    {"client_id", "my-client.id_01", TG_OK, NULL},
    {"client_id", "", TG_OK, NULL},
    {"client_id", "a b", TG_CONFIG, "without spaces"},
    {"client_id", "a\xc3\xa9", TG_CONFIG, "printable ASCII"},
};

static void
every_key_accepts_good_and_refuses_bad_values_naming_key_and_origin(
    void **state)
{
    size_t i;
    char expect[128];

    (void) state;
    for (i = 0; i < sizeof(set_cases) / sizeof(set_cases[0]); i++) {
        const set_case_t *c = &set_cases[i];
        tg_config_t *cfg = tg_config_new();
        tg_diag_t d;
        tg_err_t err;

        assert_non_null(cfg);
        err = set1(cfg, c->key, c->value, &d);
        if (err != c->expect) {
            fail_msg("case %zu: %s = \"%s\": got %s (%s), want %s", i, c->key,
                     c->value, tg_err_name(err), d.message,
                     tg_err_name(c->expect));
        }
        if (c->expect == TG_OK) {
            assert_string_equal(d.message, "");
        } else {
            snprintf(expect, sizeof(expect),
                     "test.conf:7: bad value for %s: ", c->key);
            if (strncmp(d.message, expect, strlen(expect)) != 0) {
                fail_msg("case %zu: message \"%s\" does not start with \"%s\"",
                         i, d.message, expect);
            }
            assert_contains(d.message, c->contains);
            assert_no_ctl(d.message);
        }
        tg_config_free(cfg);
    }
}

static void
good_values_are_stored_typed(void **state)
{
    tg_config_t *cfg = tg_config_new();
    tg_diag_t d;

    (void) state;
    assert_int_equal(set1(cfg, "api", "looker", &d), TG_OK);
    assert_int_equal(cfg->api, TG_API_LOOKER);
    assert_int_equal(set1(cfg, "url", "https://x.example:8443", &d), TG_OK);
    assert_string_equal(cfg->url, "https://x.example:8443");
    assert_int_equal(set1(cfg, "looker_api_version", "3.1", &d), TG_OK);
    assert_string_equal(cfg->looker_api_version, "3.1");
    assert_int_equal(set1(cfg, "insight_base_path", "/x/y", &d), TG_OK);
    assert_string_equal(cfg->insight_base_path, "/x/y");
    assert_int_equal(set1(cfg, "insight_validate", "both", &d), TG_OK);
    assert_int_equal(cfg->insight_validate, TG_INSIGHT_VALIDATE_BOTH);
    assert_int_equal(set1(cfg, "looker_auth_scheme", "bearer", &d), TG_OK);
    assert_int_equal(cfg->looker_auth_scheme, TG_LOOKER_SCHEME_BEARER);
    assert_int_equal(set1(cfg, "ca_file", "/ca.pem", &d), TG_OK);
    assert_string_equal(cfg->ca_file, "/ca.pem");
    assert_int_equal(set1(cfg, "ca_path", "/ca", &d), TG_OK);
    assert_string_equal(cfg->ca_path, "/ca");
    assert_int_equal(set1(cfg, "pinned_pubkey", PIN1, &d), TG_OK);
    assert_string_equal(cfg->pinned_pubkey, PIN1);
    assert_int_equal(set1(cfg, "proxy", "http://p:3128", &d), TG_OK);
    assert_string_equal(cfg->proxy, "http://p:3128");
    assert_int_equal(set1(cfg, "connect_timeout", "0.5", &d), TG_OK);
    assert_int_equal(cfg->connect_timeout_ms, 500);
    assert_int_equal(set1(cfg, "connect_timeout", "1.25", &d), TG_OK);
    assert_int_equal(cfg->connect_timeout_ms, 1250);
    assert_int_equal(set1(cfg, "timeout", "30", &d), TG_OK);
    assert_int_equal(cfg->timeout_ms, 30000);
    assert_int_equal(set1(cfg, "timeout", "0.125", &d), TG_OK);
    assert_int_equal(cfg->timeout_ms, 125);
    assert_int_equal(set1(cfg, "max_response_bytes", "1048576", &d), TG_OK);
    assert_int_equal(cfg->max_response_bytes, 1048576);
    assert_int_equal(set1(cfg, "token_max_age", "3600", &d), TG_OK);
    assert_int_equal(cfg->token_max_age, 3600);
    assert_int_equal(set1(cfg, "token_lifetime_max", "7200", &d), TG_OK);
    assert_int_equal(cfg->token_lifetime_max, 7200);
    assert_int_equal(set1(cfg, "retry_after_max", "0", &d), TG_OK);
    assert_int_equal(cfg->retry_after_max, 0);
    assert_int_equal(set1(cfg, "require_groups_mode", "all", &d), TG_OK);
    assert_int_equal(cfg->require_groups_mode, TG_GROUPS_ALL);
    assert_int_equal(set1(cfg, "user_attribute", "cn", &d), TG_OK);
    assert_int_equal(cfg->user_attribute, TG_BIND_CN);
    assert_int_equal(set1(cfg, "user_map_file", "/m", &d), TG_OK);
    assert_string_equal(cfg->user_map_file, "/m");
    assert_int_equal(set1(cfg, "client_id", "cid", &d), TG_OK);
    assert_string_equal(cfg->client_id, "cid");
    assert_int_equal(set1(cfg, "client_secret_file", "/s", &d), TG_OK);
    assert_string_equal(cfg->client_secret_file, "/s");
    assert_int_equal(set1(cfg, "embed_secret_file", "/e", &d), TG_OK);
    assert_string_equal(cfg->embed_secret_file, "/e");

    /* An empty value unsets an optional string. */
    assert_int_equal(set1(cfg, "ca_file", "", &d), TG_OK);
    assert_null(cfg->ca_file);
    assert_int_equal(set1(cfg, "proxy", "", &d), TG_OK);
    assert_null(cfg->proxy);
    assert_int_equal(set1(cfg, "client_id", "", &d), TG_OK);
    assert_null(cfg->client_id);
    tg_config_free(cfg);
}

static void
booleans_accept_every_documented_spelling(void **state)
{
    static const struct {
        const char *value;
        int expect;
    } b[] = {{"yes", 1}, {"no", 0},  {"true", 1}, {"false", 0},
             {"on", 1},  {"off", 0}, {"1", 1},    {"0", 0}};
    static const char *const keys[] = {"allow_insecure_http", "deny_evaluation",
                                       "deny_disabled", "case_insensitive"};
    size_t i, k;

    (void) state;
    for (k = 0; k < 4; k++) {
        for (i = 0; i < sizeof(b) / sizeof(b[0]); i++) {
            tg_config_t *cfg = tg_config_new();
            tg_diag_t d;
            int got;

            assert_int_equal(set1(cfg, keys[k], b[i].value, &d), TG_OK);
            switch (k) {
            case 0:
                got = cfg->allow_insecure_http;
                break;
            case 1:
                got = cfg->deny_evaluation;
                break;
            case 2:
                got = cfg->deny_disabled;
                break;
            default:
                got = cfg->case_insensitive;
                break;
            }
            assert_int_equal(got, b[i].expect);
            tg_config_free(cfg);
        }
    }
}

static void
unknown_key_is_named_with_its_origin(void **state)
{
    tg_config_t *cfg = tg_config_new();
    tg_diag_t d;

    (void) state;
    assert_int_equal(set1(cfg, "foo", "1", &d), TG_CONFIG);
    assert_string_equal(d.message, "test.conf:7: unknown option foo");
    /* Keys are exact: no case folding, no stray blanks. */
    assert_int_equal(set1(cfg, "URL", "https://x", &d), TG_CONFIG);
    assert_string_equal(d.message, "test.conf:7: unknown option URL");
    assert_int_equal(set1(cfg, "url ", "https://x", &d), TG_CONFIG);
    /* A hostile key is sanitized in the message. */
    assert_int_equal(set1(cfg, "fo\x1b[2Jo", "1", &d), TG_CONFIG);
    assert_string_equal(d.message, "test.conf:7: unknown option fo?[2Jo");
    assert_int_equal(set1(cfg, NULL, "1", &d), TG_CONFIG);
    assert_contains(d.message, "unknown option");
    /* A NULL origin still gives a message. */
    tg_diag_clear(&d);
    assert_int_equal(tg_config_set(cfg, "foo", "1", NULL, &d), TG_CONFIG);
    assert_contains(d.message, "unknown option foo");
    /* A NULL diag is fine. */
    assert_int_equal(tg_config_set(cfg, "foo", "1", "x", NULL), TG_CONFIG);
    tg_config_free(cfg);
}

static void
bad_value_quote_is_sanitized_and_cut_at_80_bytes(void **state)
{
    tg_config_t *cfg = tg_config_new();
    char value[300];
    const char *q;
    tg_diag_t d;

    (void) state;
    memset(value, '7', sizeof(value) - 1);
    value[0] = 'x'; /* not a number */
    value[sizeof(value) - 1] = '\0';
    assert_int_equal(set1(cfg, "timeout", value, &d), TG_CONFIG);
    q = strstr(d.message, "(got \"");
    assert_non_null(q);
    q += strlen("(got \"");
    /* 77 bytes of the value, then "...", then the closing quote. */
    assert_int_equal(strcspn(q, "\""), 80);
    assert_memory_equal(q + 77, "...", 3);

    assert_int_equal(set1(cfg, "api", "a\r\nb\x1b", &d), TG_CONFIG);
    assert_contains(d.message, "(got \"a??b?\")");
    assert_no_ctl(d.message);
    tg_config_free(cfg);
}

static void
secret_file_keys_never_quote_their_value(void **state)
{
    tg_config_t *cfg = tg_config_new();
    tg_diag_t d;

    (void) state;
    /* Someone pasted the secret itself, with a newline, into the key. */
    assert_int_equal(set1(cfg, "client_secret_file", "hunter2hunter2\n", &d),
                     TG_CONFIG);
    assert_contains(d.message, "bad value for client_secret_file");
    assert_null(strstr(d.message, "hunter2"));
    assert_int_equal(set1(cfg, "embed_secret_file", "hunter2hunter2\n", &d),
                     TG_CONFIG);
    assert_null(strstr(d.message, "hunter2"));
    tg_config_free(cfg);
}

static void
value_null_or_too_long_is_refused(void **state)
{
    tg_config_t *cfg = tg_config_new();
    char *big = malloc(5000);
    tg_diag_t d;

    (void) state;
    assert_int_equal(set1(cfg, "url", NULL, &d), TG_CONFIG);
    assert_contains(d.message, "bad value for url: a value is required");
    memset(big, 'a', 4999);
    big[4999] = '\0';
    assert_int_equal(set1(cfg, "proxy", big, &d), TG_CONFIG);
    assert_contains(d.message, "bad value for proxy: longer than 4096");
    free(big);
    tg_config_free(cfg);
}

static void
failed_set_keeps_the_previous_value(void **state)
{
    tg_config_t *cfg = tg_config_new();
    tg_diag_t d;

    (void) state;
    assert_int_equal(set1(cfg, "timeout", "7", &d), TG_OK);
    assert_int_equal(set1(cfg, "timeout", "7x", &d), TG_CONFIG);
    assert_int_equal(cfg->timeout_ms, 7000);
    assert_int_equal(set1(cfg, "url", "https://a", &d), TG_OK);
    assert_int_equal(set1(cfg, "url", "https://a b", &d), TG_CONFIG);
    assert_string_equal(cfg->url, "https://a");
    assert_int_equal(set1(cfg, "require_groups", "a b", &d), TG_OK);
    assert_int_equal(set1(cfg, "require_groups", "c d\x01", &d), TG_CONFIG);
    assert_int_equal(cfg->n_require_groups, 2);
    assert_string_equal(cfg->require_groups[0], "a");
    tg_config_free(cfg);
}

/* ---------------------------------------------------------------------- */
/* Lists                                                                  */
/* ---------------------------------------------------------------------- */

static void
require_groups_splits_replaces_and_clears(void **state)
{
    tg_config_t *cfg = tg_config_new();
    tg_diag_t d;

    (void) state;
    assert_int_equal(set1(cfg, "require_groups", "  admins\t ops  ", &d),
                     TG_OK);
    assert_int_equal(cfg->n_require_groups, 2);
    assert_string_equal(cfg->require_groups[0], "admins");
    assert_string_equal(cfg->require_groups[1], "ops");
    /* A second list replaces the first, it does not append. */
    assert_int_equal(set1(cfg, "require_groups", "dev", &d), TG_OK);
    assert_int_equal(cfg->n_require_groups, 1);
    assert_string_equal(cfg->require_groups[0], "dev");
    /* Empty or blank clears. */
    assert_int_equal(set1(cfg, "require_groups", " \t ", &d), TG_OK);
    assert_int_equal(cfg->n_require_groups, 0);
    assert_null(cfg->require_groups);
    assert_int_equal(set1(cfg, "require_groups", "x", &d), TG_OK);
    assert_int_equal(set1(cfg, "require_groups", "", &d), TG_OK);
    assert_int_equal(cfg->n_require_groups, 0);
    tg_config_free(cfg);
}

static void
require_groups_limits_name_length_and_count(void **state)
{
    tg_config_t *cfg = tg_config_new();
    char name[300];
    char *many = malloc(257 * 4 + 1);
    size_t i;
    tg_diag_t d;

    (void) state;
    memset(name, 'g', 256);
    name[256] = '\0';
    assert_int_equal(set1(cfg, "require_groups", name, &d), TG_OK);
    assert_int_equal(strlen(cfg->require_groups[0]), 256);
    name[256] = 'g';
    name[257] = '\0';
    assert_int_equal(set1(cfg, "require_groups", name, &d), TG_CONFIG);
    assert_contains(d.message, "bad value for require_groups: a group name "
                               "is longer than 256 bytes");

    /* 256 names fit, 257 do not ("g00 g01 ..."). */
    many[0] = '\0';
    for (i = 0; i < 256; i++) {
        sprintf(many + strlen(many), "%03zx ", i);
    }
    assert_int_equal(set1(cfg, "require_groups", many, &d), TG_OK);
    assert_int_equal(cfg->n_require_groups, 256);
    strcat(many, "zzz");
    assert_int_equal(set1(cfg, "require_groups", many, &d), TG_CONFIG);
    assert_contains(d.message, "more than 256 groups");
    /* UTF-8 names are kept as bytes. */
    assert_int_equal(set1(cfg, "require_groups", "D\xc3\xa9v", &d), TG_OK);
    assert_string_equal(cfg->require_groups[0], "D\xc3\xa9v");
    free(many);
    tg_config_free(cfg);
}

/* ---------------------------------------------------------------------- */
/* The key = value text                                                   */
/* ---------------------------------------------------------------------- */

static void
text_comments_blanks_and_spacing(void **state)
{
    tg_config_t *cfg = tg_config_new();
    tg_diag_t d;

    (void) state;
    assert_int_equal(parse(cfg,
                           "# a comment\n"
                           "\n"
                           "   \t\n"
                           "   # an indented comment\n"
                           "url=https://a.example\n"
                           "  timeout   =   3   \n"
                           "proxy = http://p:1#not-a-comment\n"
                           "client_id = abc # a comment\n"
                           "require_groups = a#b\tc #d\n"
                           "ca_file = #all comment\n",
                           &d),
                     TG_OK);
    assert_string_equal(d.message, "");
    assert_string_equal(cfg->url, "https://a.example");
    assert_int_equal(cfg->timeout_ms, 3000);
    assert_string_equal(cfg->proxy, "http://p:1#not-a-comment");
    assert_string_equal(cfg->client_id, "abc");
    assert_int_equal(cfg->n_require_groups, 2);
    assert_string_equal(cfg->require_groups[0], "a#b");
    assert_string_equal(cfg->require_groups[1], "c");
    assert_null(cfg->ca_file);
    tg_config_free(cfg);
}

static void
text_quotes_and_escapes(void **state)
{
    tg_config_t *cfg = tg_config_new();
    tg_diag_t d;

    (void) state;
    assert_int_equal(parse(cfg,
                           "client_id = \"a#b\"  # comment after quotes\n"
                           "require_groups = \"x\\\"y z\\\\w\"\n"
                           "ca_file = \"\"\n",
                           &d),
                     TG_OK);
    assert_string_equal(cfg->client_id, "a#b");
    assert_int_equal(cfg->n_require_groups, 2);
    assert_string_equal(cfg->require_groups[0], "x\"y");
    assert_string_equal(cfg->require_groups[1], "z\\w");
    assert_null(cfg->ca_file);

    /* Quotes keep blanks that the unquoted form would trim. */
    assert_int_equal(parse(cfg, "proxy = \" http://p \"\n", &d), TG_CONFIG);
    assert_contains(d.message, "t.conf:1: bad value for proxy");

    assert_int_equal(parse(cfg, "url = \"https://a\n", &d), TG_CONFIG);
    assert_string_equal(d.message, "t.conf:1: url: unterminated quoted value");
    assert_int_equal(parse(cfg, "url = \"https://a\\\"\n", &d), TG_CONFIG);
    assert_contains(d.message, "unterminated quoted value");
    assert_int_equal(parse(cfg, "\nurl = \"a\\nb\"\n", &d), TG_CONFIG);
    assert_contains(d.message, "t.conf:2: url: only \\\" and \\\\ are escapes");
    assert_int_equal(parse(cfg, "url = \"a\\", &d), TG_CONFIG);
    assert_contains(d.message, "escapes");
    assert_int_equal(parse(cfg, "url = \"https://a\" x\n", &d), TG_CONFIG);
    assert_contains(d.message, "t.conf:1: url: unexpected text after the "
                               "quoted value");
    assert_int_equal(parse(cfg, "url = \"https://a\"#x\n", &d), TG_CONFIG);
    assert_contains(d.message, "unexpected text");
    /* An empty quoted value for a required key is refused like "". */
    assert_int_equal(parse(cfg, "url = \"\"\n", &d), TG_CONFIG);
    assert_contains(d.message, "t.conf:1: bad value for url: must not be "
                               "empty");
    tg_config_free(cfg);
}

static void
text_line_without_equals_names_file_and_line(void **state)
{
    tg_config_t *cfg = tg_config_new();
    tg_diag_t d;

    (void) state;
    assert_int_equal(parse(cfg, "# c\n\nurl https://a\n", &d), TG_CONFIG);
    assert_string_equal(d.message, "t.conf:3: expected key = value");
    assert_int_equal(parse(cfg, "  = x\n", &d), TG_CONFIG);
    assert_string_equal(d.message, "t.conf:1: expected key = value");
    assert_int_equal(parse(cfg, "url=https://a\nfoo = 1\n", &d), TG_CONFIG);
    assert_string_equal(d.message, "t.conf:2: unknown option foo");
    assert_int_equal(parse(cfg, "\n\n\n\ntimeout = 0\n", &d), TG_CONFIG);
    assert_contains(d.message, "t.conf:5: bad value for timeout");
    tg_config_free(cfg);
}

static void
text_long_lines_are_refused_at_4096(void **state)
{
    tg_config_t *cfg = tg_config_new();
    char *text = malloc(5000);
    tg_diag_t d;

    (void) state;
    /* A 4096-byte comment line is fine, with LF or CRLF. */
    text[0] = '#';
    memset(text + 1, 'x', 4095);
    strcpy(text + 4096, "\r\nurl = https://a\n");
    assert_int_equal(parse(cfg, text, &d), TG_OK);
    assert_string_equal(cfg->url, "https://a");
    /* 4097 bytes is not. */
    text[4096] = 'x';
    strcpy(text + 4097, "\nurl = https://a\n");
    assert_int_equal(parse(cfg, text, &d), TG_CONFIG);
    assert_string_equal(d.message, "t.conf:1: line longer than 4096 bytes");
    free(text);
    tg_config_free(cfg);
}

static void
text_nul_byte_is_refused_with_its_line(void **state)
{
    static const char text[] = "url = https://a\nproxy = x\0y\n";
    tg_config_t *cfg = tg_config_new();
    tg_diag_t d;

    (void) state;
    tg_diag_clear(&d);
    assert_int_equal(
        tg__config_parse_text(cfg, text, sizeof(text) - 1, "t.conf", &d),
        TG_CONFIG);
    assert_string_equal(d.message, "t.conf:2: NUL byte in the line");
    assert_null(cfg->proxy);
    tg_config_free(cfg);
}

static void
text_crlf_and_missing_final_newline(void **state)
{
    tg_config_t *cfg = tg_config_new();
    tg_diag_t d;

    (void) state;
    assert_int_equal(
        parse(cfg, "url = https://a\r\ntimeout = 2\r\nproxy = p", &d), TG_OK);
    assert_string_equal(cfg->url, "https://a");
    assert_int_equal(cfg->timeout_ms, 2000);
    assert_string_equal(cfg->proxy, "p");
    /* A lone CR inside a line is a control byte, not a line end. */
    assert_int_equal(parse(cfg, "proxy = a\rb\n", &d), TG_CONFIG);
    assert_contains(d.message, "t.conf:1: bad value for proxy: control bytes");
    tg_config_free(cfg);
}

static void
text_repeated_key_last_wins(void **state)
{
    tg_config_t *cfg = tg_config_new();
    tg_diag_t d;

    (void) state;
    assert_int_equal(parse(cfg,
                           "timeout = 1\ntimeout = 2\n"
                           "require_groups = a b\nrequire_groups = c\n",
                           &d),
                     TG_OK);
    assert_int_equal(cfg->timeout_ms, 2000);
    assert_int_equal(cfg->n_require_groups, 1);
    assert_string_equal(cfg->require_groups[0], "c");
    tg_config_free(cfg);
}

static void
text_larger_than_1mib_is_refused(void **state)
{
    size_t max = 1024 * 1024;
    char *text = malloc(max + 1);
    tg_config_t *cfg = tg_config_new();
    tg_diag_t d;

    (void) state;
    memset(text, '\n', max + 1);
    tg_diag_clear(&d);
    assert_int_equal(tg__config_parse_text(cfg, text, max, "t.conf", &d),
                     TG_OK);
    assert_int_equal(tg__config_parse_text(cfg, text, max + 1, "t.conf", &d),
                     TG_CONFIG);
    assert_string_equal(d.message, "t.conf: larger than 1048576 bytes");
    free(text);
    tg_config_free(cfg);
}

static void
text_empty_and_hostile_name(void **state)
{
    tg_config_t *cfg = tg_config_new();
    tg_diag_t d;

    (void) state;
    tg_diag_clear(&d);
    assert_int_equal(tg__config_parse_text(cfg, "", 0, "t.conf", &d), TG_OK);
    assert_int_equal(tg__config_parse_text(cfg, NULL, 0, "t.conf", &d), TG_OK);
    assert_int_equal(tg__config_parse_text(cfg, "x\n", 2, "a\nb", &d),
                     TG_CONFIG);
    assert_string_equal(d.message, "a?b:1: expected key = value");
    tg_config_free(cfg);
}

/* A small deterministic fuzz: random bytes biased toward the syntax must
 * never crash, leak or succeed with an error half-recorded. */
static void
text_parser_survives_arbitrary_bytes(void **state)
{
    static const char alphabet[] = "url=timeout \t#\"\\\r\n\0\x01\xff"
                                   "require_groups proxy 0.5 yes api";
    uint32_t seed = 12345;
    char buf[512];
    int round;

    (void) state;
    for (round = 0; round < 20000; round++) {
        tg_config_t *cfg = tg_config_new();
        size_t len, i;
        tg_diag_t d;
        tg_err_t err;

        seed = seed * 1103515245u + 12345u;
        len = (seed >> 16) % sizeof(buf);
        for (i = 0; i < len; i++) {
            seed = seed * 1103515245u + 12345u;
            if ((seed >> 30) == 0) {
                buf[i] = (char) (seed >> 8);
            } else {
                buf[i] = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
            }
        }
        tg_diag_clear(&d);
        err = tg__config_parse_text(cfg, buf, len, "fuzz", &d);
        assert_true(err == TG_OK || err == TG_CONFIG);
        assert_true((err == TG_OK) == (d.message[0] == '\0'));
        assert_no_ctl(d.message);
        tg_config_free(cfg);
    }
}

/* ---------------------------------------------------------------------- */
/* Loading a file                                                         */
/* ---------------------------------------------------------------------- */

static tg_err_t
load(tg_config_t *cfg, const char *path, tg_diag_t *d)
{
    tg_diag_clear(d);
    return tg_config_load_file(cfg, path, d);
}

static void
load_file_good_file(void **state)
{
    const char *p = tpath(0, "good.conf");
    tg_config_t *cfg = tg_config_new();
    tg_diag_t d;

    (void) state;
    write_text(p, "api = looker\nurl = https://a\ntimeout = 4\n", 0644);
    assert_int_equal(load(cfg, p, &d), TG_OK);
    assert_int_equal(cfg->api, TG_API_LOOKER);
    assert_string_equal(cfg->url, "https://a");
    assert_int_equal(cfg->timeout_ms, 4000);
    write_text(p, "url = https://b\n", 0600);
    assert_int_equal(load(cfg, p, &d), TG_OK);
    assert_string_equal(cfg->url, "https://b");
    tg_config_free(cfg);
}

static void
load_file_error_names_file_line_and_key(void **state)
{
    const char *p = tpath(0, "bad.conf");
    char expect[PATH_MAX + 64];
    tg_config_t *cfg = tg_config_new();
    tg_diag_t d;

    (void) state;
    write_text(p, "url = https://a\nfoo = 1\n", 0600);
    assert_int_equal(load(cfg, p, &d), TG_CONFIG);
    snprintf(expect, sizeof(expect), "%s:2: unknown option foo", p);
    assert_string_equal(d.message, expect);
    write_text(p, "\ntimeout = x\n", 0600);
    assert_int_equal(load(cfg, p, &d), TG_CONFIG);
    snprintf(expect, sizeof(expect), "%s:2: bad value for timeout:", p);
    assert_contains(d.message, expect);
    tg_config_free(cfg);
}

static void
load_file_missing_is_refused(void **state)
{
    const char *p = tpath(0, "missing.conf");
    char expect[PATH_MAX + 64];
    tg_config_t *cfg = tg_config_new();
    tg_diag_t d;

    (void) state;
    assert_int_equal(load(cfg, p, &d), TG_CONFIG);
    snprintf(expect, sizeof(expect), "%s: No such file or directory", p);
    assert_string_equal(d.message, expect);
    assert_int_equal(load(cfg, "", &d), TG_CONFIG);
    assert_int_equal(load(cfg, NULL, &d), TG_CONFIG);
    tg_config_free(cfg);
}

static void
load_file_symlink_is_refused(void **state)
{
    const char *target = tpath(0, "target.conf");
    const char *link = tpath(1, "link.conf");
    tg_config_t *cfg = tg_config_new();
    tg_diag_t d;

    (void) state;
    write_text(target, "url = https://a\n", 0600);
    unlink(link);
    assert_int_equal(symlink(target, link), 0);
    assert_int_equal(load(cfg, link, &d), TG_CONFIG);
    assert_contains(d.message, link);
    assert_contains(d.message, "symbolic link");
    assert_null(cfg->url);
    tg_config_free(cfg);
}

static void
load_file_group_or_world_writable_is_refused(void **state)
{
    static const mode_t modes[] = {0666, 0620, 0602, 0660, 0622};
    const char *p = tpath(0, "w.conf");
    char expect[PATH_MAX + 80];
    tg_config_t *cfg = tg_config_new();
    size_t i;
    tg_diag_t d;

    (void) state;
    for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        write_text(p, "url = https://a\n", modes[i]);
        assert_int_equal(load(cfg, p, &d), TG_CONFIG);
        snprintf(expect, sizeof(expect),
                 "%s: must not be writable by group or others (mode %04o)", p,
                 (unsigned) modes[i]);
        assert_string_equal(d.message, expect);
        assert_null(cfg->url);
    }
    /* Readable by all is fine: the config holds no secret. */
    write_text(p, "url = https://a\n", 0644);
    assert_int_equal(load(cfg, p, &d), TG_OK);
    tg_config_free(cfg);
}

static void
load_file_not_regular_is_refused(void **state)
{
    const char *dir = tpath(0, "a-dir");
    const char *fifo = tpath(1, "a-fifo");
    tg_config_t *cfg = tg_config_new();
    tg_diag_t d;

    (void) state;
    rmdir(dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    assert_int_equal(load(cfg, dir, &d), TG_CONFIG);
    assert_contains(d.message, "is not a regular file");
    /* A FIFO neither blocks the open nor passes. */
    unlink(fifo);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(load(cfg, fifo, &d), TG_CONFIG);
    assert_contains(d.message, "is not a regular file");
    assert_int_equal(load(cfg, "/dev/null", &d), TG_CONFIG);
    assert_contains(d.message, "/dev/null: is not a regular file");
    tg_config_free(cfg);
}

static void
load_file_owned_by_someone_else_is_refused(void **state)
{
    const char *p = tpath(0, "other.conf");
    tg_config_t *cfg = tg_config_new();
    tg_diag_t d;

    (void) state;
    if (geteuid() != 0) {
        tg_config_free(cfg);
        skip(); /* only root can give a file away; reported as skipped */
    }
    write_text(p, "url = https://a\n", 0644);
    assert_int_equal(chown(p, 65534, 65534), 0);
    assert_int_equal(load(cfg, p, &d), TG_CONFIG);
    assert_contains(d.message, "must be owned by root or by uid 0 (owner is "
                               "uid 65534)");
    tg_config_free(cfg);
}

static void
load_file_larger_than_1mib_is_refused(void **state)
{
    const char *p = tpath(0, "big.conf");
    size_t n = 1024 * 1024 + 1;
    char *text = malloc(n);
    tg_config_t *cfg = tg_config_new();
    tg_diag_t d;

    (void) state;
    memset(text, '\n', n);
    write_file(p, text, n, 0600);
    assert_int_equal(load(cfg, p, &d), TG_CONFIG);
    assert_contains(d.message, "larger than 1048576 bytes");
    free(text);
    tg_config_free(cfg);
}

/* ---------------------------------------------------------------------- */
/* Module arguments                                                       */
/* ---------------------------------------------------------------------- */

static void
load_args_sets_keys_and_overrides_the_file(void **state)
{
    const char *p = tpath(0, "args.conf");
    const char *argv[] = {"url=https://b", "timeout=2.5", "api=looker",
                          "require_groups=a b"};
    tg_config_t *cfg = tg_config_new();
    tg_diag_t d;

    (void) state;
    write_text(p, "url = https://a\ntimeout = 9\n", 0600);
    assert_int_equal(load(cfg, p, &d), TG_OK);
    tg_diag_clear(&d);
    assert_int_equal(tg_config_load_args(cfg, 4, argv, &d), TG_OK);
    assert_string_equal(cfg->url, "https://b");
    assert_int_equal(cfg->timeout_ms, 2500);
    assert_int_equal(cfg->api, TG_API_LOOKER);
    assert_int_equal(cfg->n_require_groups, 2);
    assert_int_equal(tg_config_load_args(cfg, 0, NULL, &d), TG_OK);
    tg_config_free(cfg);
}

static void
load_args_unknown_and_bad_values_name_the_key(void **state)
{
    const char *a1[] = {"url=https://a", "foo=1"};
    const char *a2[] = {"timeout=abc"};
    const char *a3[] = {"url"};
    const char *a4[] = {"=x"};
    const char *a5[] = {"bogus"};
    const char *a6[] = {NULL};
    tg_config_t *cfg = tg_config_new();
    tg_diag_t d;

    (void) state;
    tg_diag_clear(&d);
    assert_int_equal(tg_config_load_args(cfg, 2, a1, &d), TG_CONFIG);
    assert_string_equal(d.message, "argument: unknown option foo");
    tg_diag_clear(&d);
    assert_int_equal(tg_config_load_args(cfg, 1, a2, &d), TG_CONFIG);
    assert_contains(d.message, "argument: bad value for timeout: not a number");
    tg_diag_clear(&d);
    assert_int_equal(tg_config_load_args(cfg, 1, a3, &d), TG_CONFIG);
    assert_contains(d.message, "argument: bad value for url: a value is "
                               "required");
    tg_diag_clear(&d);
    assert_int_equal(tg_config_load_args(cfg, 1, a4, &d), TG_CONFIG);
    assert_contains(d.message, "argument: unknown option");
    tg_diag_clear(&d);
    assert_int_equal(tg_config_load_args(cfg, 1, a5, &d), TG_CONFIG);
    assert_string_equal(d.message, "argument: unknown option bogus");
    tg_diag_clear(&d);
    assert_int_equal(tg_config_load_args(cfg, 1, a6, &d), TG_CONFIG);
    tg_config_free(cfg);
}

static void
load_args_bare_boolean_means_yes(void **state)
{
    const char *argv[] = {"allow_insecure_http", "deny_evaluation",
                          "case_insensitive", "deny_disabled=no"};
    tg_config_t *cfg = tg_config_new();
    tg_diag_t d;

    (void) state;
    tg_diag_clear(&d);
    assert_int_equal(tg_config_load_args(cfg, 4, argv, &d), TG_OK);
    assert_int_equal(cfg->allow_insecure_http, 1);
    assert_int_equal(cfg->deny_evaluation, 1);
    assert_int_equal(cfg->case_insensitive, 1);
    assert_int_equal(cfg->deny_disabled, 0);
    tg_config_free(cfg);
}

/* ---------------------------------------------------------------------- */
/* Validation                                                             */
/* ---------------------------------------------------------------------- */

typedef struct url_case {
    const char *url;
    tg_api_t api;
    int allow_insecure_http;
    tg_err_t expect;
    const char *contains;
} url_case_t;

static const url_case_t url_cases[] = {
    {"https://bi.example.com", TG_API_INSIGHT, 0, TG_OK, NULL},
    {"https://bi.example.com/", TG_API_LOOKER, 0, TG_OK, NULL},
    {"https://bi.example.com:19999", TG_API_LOOKER, 0, TG_OK, NULL},
    {"HTTPS://bi.example.com", TG_API_INSIGHT, 0, TG_OK, NULL},
    {"https://[2001:db8::1]:443", TG_API_INSIGHT, 0, TG_OK, NULL},
    /* plain http: loopback only, unless allowed */
    {"http://bi.example.com", TG_API_INSIGHT, 0, TG_CONFIG,
     "url: plain http:// is refused for a non-loopback host; use https:// "
     "or set allow_insecure_http = yes"},
    {"http://bi.example.com", TG_API_INSIGHT, 1, TG_OK, NULL},
    {"http://127.0.0.1:8080", TG_API_INSIGHT, 0, TG_OK, NULL},
    {"http://127.1.2.3", TG_API_LOOKER, 0, TG_OK, NULL},
    {"http://[::1]:8080", TG_API_INSIGHT, 0, TG_OK, NULL},
    {"http://localhost:8080/", TG_API_INSIGHT, 0, TG_OK, NULL},
    {"http://128.0.0.1", TG_API_INSIGHT, 0, TG_CONFIG, "plain http://"},
    {"http://10.0.0.1", TG_API_INSIGHT, 0, TG_CONFIG, "plain http://"},
    {"http://[::2]", TG_API_INSIGHT, 0, TG_CONFIG, "plain http://"},
    {"http://[::ffff:127.0.0.1]", TG_API_INSIGHT, 0, TG_CONFIG,
     "plain http://"},
    {"http://localhost.evil.example", TG_API_INSIGHT, 0, TG_CONFIG,
     "plain http://"},
    {"http://127.0.0.1.nip.io", TG_API_INSIGHT, 0, TG_CONFIG, "plain http://"},
    {"http://0.0.0.0", TG_API_INSIGHT, 0, TG_CONFIG, "plain http://"},
    /* other schemes */
    {"ftp://bi.example.com", TG_API_INSIGHT, 1, TG_CONFIG,
     "url: the scheme must be https://"},
    {"file:///etc/passwd", TG_API_INSIGHT, 1, TG_CONFIG, "url:"},
    /* user info, query, fragment */
    {"https://user:pw@bi.example.com", TG_API_INSIGHT, 0, TG_CONFIG,
     "url: must not contain a user name or a password"},
    {"https://user@bi.example.com", TG_API_INSIGHT, 0, TG_CONFIG,
     "user name or a password"},
    {"https://:pw@bi.example.com", TG_API_INSIGHT, 0, TG_CONFIG,
     "user name or a password"},
    {"https://bi.example.com/?a=b", TG_API_INSIGHT, 0, TG_CONFIG,
     "url: must not have a query or a fragment"},
    {"https://bi.example.com?", TG_API_INSIGHT, 0, TG_CONFIG, "query"},
    {"https://bi.example.com/#x", TG_API_INSIGHT, 0, TG_CONFIG, "fragment"},
    {"https://bi.example.com#", TG_API_INSIGHT, 0, TG_CONFIG, "fragment"},
    /* paths */
    {"https://bi.example.com/api", TG_API_LOOKER, 0, TG_CONFIG,
     "url: must have no path (only scheme, host and port); the API path "
     "comes from looker_api_version"},
    {"https://bi.example.com/api/4.0", TG_API_LOOKER, 0, TG_CONFIG,
     "must have no path"},
    {"https://bi.example.com/insightservices", TG_API_INSIGHT, 0, TG_CONFIG,
     "insight_base_path"},
    {"https://bi.example.com//", TG_API_INSIGHT, 0, TG_CONFIG,
     "must have no path"},
};

static void
validate_url_policy(void **state)
{
    size_t i;

    (void) state;
    for (i = 0; i < sizeof(url_cases) / sizeof(url_cases[0]); i++) {
        const url_case_t *c = &url_cases[i];
        tg_config_t *cfg = tg_config_new();
        tg_diag_t d;
        tg_err_t err;

        /* Set the field directly: validate must not trust set's checks. */
        cfg->url = strdup(c->url);
        cfg->api = c->api;
        cfg->allow_insecure_http = c->allow_insecure_http;
        err = validate(cfg, &d);
        if (err != c->expect) {
            fail_msg("case %zu: %s: got %s (%s), want %s", i, c->url,
                     tg_err_name(err), d.message, tg_err_name(c->expect));
        }
        if (c->contains != NULL) {
            assert_contains(d.message, c->contains);
        }
        tg_config_free(cfg);
    }
}

static void
validate_requires_url(void **state)
{
    tg_config_t *cfg = tg_config_new();
    tg_diag_t d;

    (void) state;
    assert_int_equal(validate(cfg, &d), TG_CONFIG);
    assert_string_equal(d.message, "url is not set");
    assert_int_equal(tg_config_validate(NULL, &d), TG_INTERNAL);
    tg_config_free(cfg);
}

/* The total timeout bounds the connect phase too, so a short "timeout"
 * alone is a valid config whatever connect_timeout says. */
static void
validate_connect_timeout_above_timeout_is_bounded(void **state)
{
    tg_config_t *cfg = valid_cfg();
    tg_diag_t d;

    (void) state;
    assert_int_equal(set1(cfg, "connect_timeout", "20", &d), TG_OK);
    assert_int_equal(set1(cfg, "timeout", "1", &d), TG_OK);
    assert_int_equal(validate(cfg, &d), TG_OK);
    assert_int_equal(cfg->connect_timeout_ms, 20000);
    assert_int_equal(cfg->timeout_ms, 1000);
    tg_config_free(cfg);
}

/* 0 is the flavor's longest token life: Looker's fixed hour, Insight's
 * token_max_age (the maxAge tokengate asks for); a set value wins. */
static void
token_lifetime_max_defaults_by_flavor(void **state)
{
    tg_config_t *cfg = tg_config_new();
    tg_diag_t d;

    (void) state;
    assert_non_null(cfg);
    assert_int_equal(tg_config_token_lifetime_max(cfg), 900);
    assert_int_equal(set1(cfg, "token_max_age", "120", &d), TG_OK);
    assert_int_equal(tg_config_token_lifetime_max(cfg), 120);
    assert_int_equal(set1(cfg, "api", "looker", &d), TG_OK);
    assert_int_equal(tg_config_token_lifetime_max(cfg), 3600);
    assert_int_equal(set1(cfg, "token_lifetime_max", "60", &d), TG_OK);
    assert_int_equal(tg_config_token_lifetime_max(cfg), 60);
    assert_int_equal(set1(cfg, "api", "insight", &d), TG_OK);
    assert_int_equal(tg_config_token_lifetime_max(cfg), 60);
    assert_int_equal(set1(cfg, "token_lifetime_max", "0", &d), TG_OK);
    assert_int_equal(tg_config_token_lifetime_max(cfg), 120);
    tg_config_free(cfg);
}

static void
validate_rechecks_fields_set_by_code(void **state)
{
    tg_config_t *cfg = valid_cfg();
    tg_diag_t d;

    (void) state;
    cfg->timeout_ms = 0;
    assert_int_equal(validate(cfg, &d), TG_CONFIG);
    assert_contains(d.message, "timeout is out of range");
    cfg->timeout_ms = 10000;
    cfg->token_lifetime_max = -1;
    assert_int_equal(validate(cfg, &d), TG_CONFIG);
    assert_contains(d.message, "token_lifetime_max is out of range");
    cfg->token_lifetime_max = 86401;
    assert_int_equal(validate(cfg, &d), TG_CONFIG);
    cfg->token_lifetime_max = 0;
    cfg->max_response_bytes = -1;
    assert_int_equal(validate(cfg, &d), TG_CONFIG);
    assert_contains(d.message, "max_response_bytes");
    cfg->max_response_bytes = 65536;
    cfg->api = (tg_api_t) 7;
    assert_int_equal(validate(cfg, &d), TG_CONFIG);
    cfg->api = TG_API_INSIGHT;
    free(cfg->insight_base_path);
    cfg->insight_base_path = strdup("/a?x");
    assert_int_equal(validate(cfg, &d), TG_CONFIG);
    assert_contains(d.message, "insight_base_path");
    tg_config_free(cfg);
}

static void
validate_secret_file_modes(void **state)
{
    static const struct {
        mode_t mode;
        tg_err_t expect;
    } m[] = {{0600, TG_OK},     {0400, TG_OK},     {0640, TG_CONFIG},
             {0644, TG_CONFIG}, {0604, TG_CONFIG}, {0610, TG_CONFIG},
             {0601, TG_CONFIG}};
    static const char *const keys[] = {"client_secret_file",
                                       "embed_secret_file"};
    const char *p = tpath(0, "secret");
    char expect[3 * PATH_MAX];
    size_t i, k;

    (void) state;
    for (k = 0; k < 2; k++) {
        for (i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
            tg_config_t *cfg = valid_cfg();
            tg_diag_t d;

            write_text(p, "s3cret\n", m[i].mode);
            assert_int_equal(set1(cfg, keys[k], p, &d), TG_OK);
            assert_int_equal(validate(cfg, &d), m[i].expect);
            if (m[i].expect != TG_OK) {
                snprintf(expect, sizeof(expect),
                         "%s: %s must be readable by its owner only (mode "
                         "%04o); chmod 600 %s",
                         keys[k], p, (unsigned) m[i].mode, p);
                assert_string_equal(d.message, expect);
            }
            tg_config_free(cfg);
        }
    }
}

static void
validate_secret_file_symlink_or_missing_is_refused(void **state)
{
    const char *target = tpath(0, "secret-target");
    const char *link = tpath(1, "secret-link");
    tg_config_t *cfg = valid_cfg();
    tg_diag_t d;

    (void) state;
    write_text(target, "s3cret\n", 0600);
    unlink(link);
    assert_int_equal(symlink(target, link), 0);
    assert_int_equal(set1(cfg, "client_secret_file", link, &d), TG_OK);
    assert_int_equal(validate(cfg, &d), TG_CONFIG);
    assert_contains(d.message, "client_secret_file: ");
    assert_contains(d.message, "symbolic link");
    assert_int_equal(set1(cfg, "client_secret_file", tpath(2, "nope"), &d),
                     TG_OK);
    assert_int_equal(validate(cfg, &d), TG_CONFIG);
    assert_contains(d.message, "No such file or directory");
    tg_config_free(cfg);
}

static void
validate_user_map_file_and_ca_files(void **state)
{
    const char *map = tpath(0, "users.map");
    const char *ca = tpath(1, "ca.pem");
    tg_config_t *cfg = valid_cfg();
    tg_diag_t d;

    (void) state;
    write_text(map, "a@x alice\n", 0666);
    assert_int_equal(set1(cfg, "user_map_file", map, &d), TG_OK);
    assert_int_equal(validate(cfg, &d), TG_CONFIG);
    assert_contains(d.message, "user_map_file: ");
    assert_contains(d.message, "must not be writable by group or others "
                               "(mode 0666)");
    assert_int_equal(chmod(map, 0644), 0);
    assert_int_equal(validate(cfg, &d), TG_OK);

    assert_int_equal(set1(cfg, "ca_file", tpath(2, "no-ca.pem"), &d), TG_OK);
    assert_int_equal(validate(cfg, &d), TG_CONFIG);
    assert_contains(d.message, "ca_file: ");
    assert_contains(d.message, "No such file or directory");
    write_text(ca, "not really a CA\n", 0644);
    assert_int_equal(set1(cfg, "ca_file", ca, &d), TG_OK);
    assert_int_equal(validate(cfg, &d), TG_OK);

    assert_int_equal(set1(cfg, "ca_path", ca, &d), TG_OK);
    assert_int_equal(validate(cfg, &d), TG_CONFIG);
    assert_contains(d.message, "ca_path: ");
    assert_contains(d.message, "is not a directory");
    assert_int_equal(set1(cfg, "ca_path", g_dir, &d), TG_OK);
    assert_int_equal(validate(cfg, &d), TG_OK);

    assert_int_equal(set1(cfg, "pinned_pubkey", tpath(2, "no.pub"), &d), TG_OK);
    assert_int_equal(validate(cfg, &d), TG_CONFIG);
    assert_contains(d.message, "pinned_pubkey: ");
    assert_int_equal(set1(cfg, "pinned_pubkey", PIN1, &d), TG_OK);
    assert_int_equal(validate(cfg, &d), TG_OK);
    tg_config_free(cfg);
}

/* ---------------------------------------------------------------------- */
/* Secret files                                                           */
/* ---------------------------------------------------------------------- */

typedef struct secret_case {
    const char *content;
    size_t len;
    tg_err_t expect;
    const char *value;    /* expected secret when TG_OK */
    const char *contains; /* expected in the message otherwise */
} secret_case_t;

#define S(x) x, sizeof(x) - 1

static const secret_case_t secret_cases[] = {
    {S("Zq9xKt"), TG_OK, "Zq9xKt", NULL},
    {S("Zq9xKt\n"), TG_OK, "Zq9xKt", NULL},
    {S("Zq9xKt\r\n"), TG_OK, "Zq9xKt", NULL},
    {S("Zq9 xKt\n"), TG_OK, "Zq9 xKt", NULL},
    {S(""), TG_CONFIG, NULL, "is empty"},
    {S("\n"), TG_CONFIG, NULL, "is empty"},
    {S("\r\n"), TG_CONFIG, NULL, "is empty"},
    {S("Zq9xKt\n\n"), TG_CONFIG, NULL, "control byte at offset 6"},
    {S("Zq9xKt\r"), TG_CONFIG, NULL, "control byte at offset 6"},
    {S("Zq\x01"
       "9xKt"),
     TG_CONFIG, NULL, "control byte at offset 2"},
    {S("Zq\0"
       "9xKt"),
     TG_CONFIG, NULL, "control byte at offset 2"},
    {S("Zq9\txKt"), TG_CONFIG, NULL, "control byte"},
    {S("Zq9xKt\x7f"), TG_CONFIG, NULL, "control byte"},
    {S("Zq9xK\nline2\n"), TG_CONFIG, NULL, "control byte at offset 5"},
};

static tg_err_t
read_secret(const char *p, char **out, tg_diag_t *d)
{
    tg_diag_clear(d);
    return tg_secret_file_read(p, "client_secret_file", out, d);
}

static void
secret_read_strips_one_newline_and_refuses_empty_or_control(void **state)
{
    const char *p = tpath(0, "s");
    size_t i;

    (void) state;
    for (i = 0; i < sizeof(secret_cases) / sizeof(secret_cases[0]); i++) {
        const secret_case_t *c = &secret_cases[i];
        char *out = (char *) 1;
        tg_diag_t d;
        tg_err_t err;

        write_file(p, c->content, c->len, 0600);
        err = read_secret(p, &out, &d);
        if (err != c->expect) {
            fail_msg("case %zu: got %s (%s)", i, tg_err_name(err), d.message);
        }
        if (c->expect == TG_OK) {
            assert_string_equal(out, c->value);
            tg_secret_free(out);
        } else {
            assert_null(out);
            assert_contains(d.message, "client_secret_file: ");
            assert_contains(d.message, c->contains);
            assert_null(strstr(d.message, "Zq9"));
            assert_null(strstr(d.message, "xKt"));
        }
    }
}

static void
secret_read_length_limit(void **state)
{
    const char *p = tpath(0, "s-long");
    char buf[TG_SECRET_MAX + 8];
    char *out = NULL;
    tg_diag_t d;

    (void) state;
    memset(buf, 'k', sizeof(buf));
    write_file(p, buf, TG_SECRET_MAX, 0600);
    assert_int_equal(read_secret(p, &out, &d), TG_OK);
    assert_int_equal(strlen(out), TG_SECRET_MAX);
    tg_secret_free(out);

    memcpy(buf + TG_SECRET_MAX, "\r\n", 2);
    write_file(p, buf, TG_SECRET_MAX + 2, 0600);
    assert_int_equal(read_secret(p, &out, &d), TG_OK);
    assert_int_equal(strlen(out), TG_SECRET_MAX);
    tg_secret_free(out);

    memset(buf, 'k', sizeof(buf));
    write_file(p, buf, TG_SECRET_MAX + 1, 0600);
    assert_int_equal(read_secret(p, &out, &d), TG_CONFIG);
    assert_contains(d.message, "longer than 1024 bytes");
    assert_null(out);
    write_file(p, buf, sizeof(buf), 0600);
    assert_int_equal(read_secret(p, &out, &d), TG_CONFIG);
    assert_null(out);
}

static void
secret_read_refuses_bad_mode_symlink_and_missing(void **state)
{
    const char *p = tpath(0, "s-mode");
    const char *link = tpath(1, "s-link");
    char *out = (char *) 1;
    tg_diag_t d;

    (void) state;
    write_text(p, "s3cret\n", 0644);
    assert_int_equal(read_secret(p, &out, &d), TG_CONFIG);
    assert_null(out);
    assert_contains(d.message, "must be readable by its owner only (mode "
                               "0644); chmod 600");
    assert_int_equal(chmod(p, 0600), 0);
    unlink(link);
    assert_int_equal(symlink(p, link), 0);
    assert_int_equal(read_secret(link, &out, &d), TG_CONFIG);
    assert_contains(d.message, "symbolic link");
    assert_int_equal(read_secret(tpath(2, "none"), &out, &d), TG_CONFIG);
    assert_contains(d.message, "No such file or directory");
    assert_int_equal(read_secret(g_dir, &out, &d), TG_CONFIG);
    assert_contains(d.message, "is not a regular file");
    tg_diag_clear(&d);
    assert_int_equal(tg_secret_file_read(p, "k", NULL, &d), TG_INTERNAL);
}

/* ---------------------------------------------------------------------- */
/* min_uid and login.defs                                                 */
/* ---------------------------------------------------------------------- */

/* min_uid (its values are in set_cases) is stored as given; validation
 * re-checks a value set by code. */
static void
min_uid_is_range_checked_and_stored(void **state)
{
    tg_config_t *cfg = valid_cfg();
    tg_diag_t d;

    (void) state;
    assert_int_equal(set1(cfg, "min_uid", "500", &d), TG_OK);
    assert_int_equal(cfg->min_uid, 500);
    /* a failed set keeps the value */
    assert_int_equal(set1(cfg, "min_uid", "0", &d), TG_CONFIG);
    assert_int_equal(cfg->min_uid, 500);
    assert_int_equal(validate(cfg, &d), TG_OK);
    cfg->min_uid = 0;
    assert_int_equal(validate(cfg, &d), TG_CONFIG);
    assert_contains(d.message, "min_uid is out of range");
    cfg->min_uid = 2147483648L;
    assert_int_equal(validate(cfg, &d), TG_CONFIG);
    tg_config_free(cfg);
}

/* The default is this machine's UID_MIN, read by the same strict reader. */
static void
min_uid_default_is_uid_min_of_login_defs(void **state)
{
    tg_config_t *cfg = tg_config_new();

    (void) state;
    assert_non_null(cfg);
    assert_int_equal(cfg->min_uid, tg__login_defs_uid_min("/etc/login.defs"));
    assert_true(cfg->min_uid >= 1);
    tg_config_free(cfg);
    assert_int_equal(tg__login_defs_uid_min(NULL), 1000);
    assert_int_equal(tg__login_defs_uid_min(tpath(0, "no-such-login.defs")),
                     1000);
}

/* UID_MIN is taken only from a plain "UID_MIN DIGITS" line of a safe file;
 * anything doubtful gives 1000, never a lower bar. */
static void
login_defs_uid_min_is_read_strictly(void **state)
{
    static const struct {
        const char *text;
        long expect;
    } cases[] = {
        {"UID_MIN 1000\n", 1000},
        {"# comment\n\n  UID_MIN\t\t 500  \nUID_MAX 60000\n", 500},
        {"UID_MIN 500", 500},                    /* no final newline */
        {"UID_MIN 500\r\nUID_MAX 60000\r\n", 500}, /* CRLF */
        {"UID_MIN 500\nUID_MIN 2000\n", 2000},   /* the last wins */
        {"UID_MIN 2147483647\n", 2147483647L},
        {"", 1000},
        {"UID_MAX 60000\n", 1000},
        {"#UID_MIN 500\n", 1000},
        {"UID_MINX 500\n", 1000},
        {"XUID_MIN 500\n", 1000},
        {"SYS_UID_MIN 100\n", 1000},
        {"UID_MIN\n", 1000},
        {"UID_MIN 0\n", 1000},
        {"UID_MIN 0500\n", 1000},               /* octal to useradd */
        {"UID_MIN 0x1f4\n", 1000},
        {"UID_MIN -5\n", 1000},
        {"UID_MIN +500\n", 1000},
        {"UID_MIN \"500\"\n", 1000},
        {"UID_MIN 500 600\n", 1000},
        {"UID_MIN 500 # low\n", 1000},
        {"UID_MIN 500x\n", 1000},
        {"UID_MIN 2147483648\n", 1000},
        {"UID_MIN 99999999999999999999\n", 1000},
        {"UID_MIN 500\nUID_MIN bad\n", 1000},    /* an odd line spoils all */
    };
    const char *p = tpath(0, "login.defs");
    const char *link = tpath(1, "login.defs.link");
    static const char nul[] = "UID_MIN 500\n\0\n";
    char *big;
    size_t i, n = 300 * 1024;

    (void) state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        long got;
        write_text(p, cases[i].text, 0644);
        got = tg__login_defs_uid_min(p);
        if (got != cases[i].expect) {
            fail_msg("case %zu \"%s\": got %ld, want %ld", i, cases[i].text,
                     got, cases[i].expect);
        }
    }

    /* a NUL byte */
    write_file(p, nul, sizeof(nul) - 1, 0644);
    assert_int_equal(tg__login_defs_uid_min(p), 1000);

    /* an unsafe file: group or world writable, a symlink, a directory */
    write_text(p, "UID_MIN 500\n", 0664);
    assert_int_equal(tg__login_defs_uid_min(p), 1000);
    write_text(p, "UID_MIN 500\n", 0646);
    assert_int_equal(tg__login_defs_uid_min(p), 1000);
    write_text(p, "UID_MIN 500\n", 0644);
    assert_int_equal(tg__login_defs_uid_min(p), 500);
    unlink(link);
    assert_int_equal(symlink(p, link), 0);
    assert_int_equal(tg__login_defs_uid_min(link), 1000);
    assert_int_equal(tg__login_defs_uid_min(g_dir), 1000);

    /* larger than 256 KiB */
    big = malloc(n + 1);
    assert_non_null(big);
    memset(big, '#', n);
    memcpy(big, "UID_MIN 500\n", 12);
    big[n - 1] = '\n';
    write_file(p, big, n, 0644);
    free(big);
    assert_int_equal(tg__login_defs_uid_min(p), 1000);
    unlink(link);
    unlink(p);
}

static void
secret_check_names_key_and_file(void **state)
{
    const char *p = tpath(0, "s-check");
    tg_diag_t d;

    (void) state;
    write_text(p, "x\n", 0640);
    tg_diag_clear(&d);
    assert_int_equal(tg_secret_file_check(p, "embed_secret_file", &d),
                     TG_CONFIG);
    assert_true(strncmp(d.message, "embed_secret_file: ", 19) == 0);
    assert_contains(d.message, p);
    assert_int_equal(chmod(p, 0600), 0);
    tg_diag_clear(&d);
    assert_int_equal(tg_secret_file_check(p, "embed_secret_file", &d), TG_OK);
    assert_string_equal(d.message, "");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_are_the_documented_ones),
        cmocka_unit_test(
            every_key_accepts_good_and_refuses_bad_values_naming_key_and_origin),
        cmocka_unit_test(good_values_are_stored_typed),
        cmocka_unit_test(booleans_accept_every_documented_spelling),
        cmocka_unit_test(unknown_key_is_named_with_its_origin),
        cmocka_unit_test(bad_value_quote_is_sanitized_and_cut_at_80_bytes),
        cmocka_unit_test(secret_file_keys_never_quote_their_value),
        cmocka_unit_test(value_null_or_too_long_is_refused),
        cmocka_unit_test(failed_set_keeps_the_previous_value),
        cmocka_unit_test(require_groups_splits_replaces_and_clears),
        cmocka_unit_test(require_groups_limits_name_length_and_count),
        cmocka_unit_test(text_comments_blanks_and_spacing),
        cmocka_unit_test(text_quotes_and_escapes),
        cmocka_unit_test(text_line_without_equals_names_file_and_line),
        cmocka_unit_test(text_long_lines_are_refused_at_4096),
        cmocka_unit_test(text_nul_byte_is_refused_with_its_line),
        cmocka_unit_test(text_crlf_and_missing_final_newline),
        cmocka_unit_test(text_repeated_key_last_wins),
        cmocka_unit_test(text_larger_than_1mib_is_refused),
        cmocka_unit_test(text_empty_and_hostile_name),
        cmocka_unit_test(text_parser_survives_arbitrary_bytes),
        cmocka_unit_test(load_file_good_file),
        cmocka_unit_test(load_file_error_names_file_line_and_key),
        cmocka_unit_test(load_file_missing_is_refused),
        cmocka_unit_test(load_file_symlink_is_refused),
        cmocka_unit_test(load_file_group_or_world_writable_is_refused),
        cmocka_unit_test(load_file_not_regular_is_refused),
        cmocka_unit_test(load_file_owned_by_someone_else_is_refused),
        cmocka_unit_test(load_file_larger_than_1mib_is_refused),
        cmocka_unit_test(load_args_sets_keys_and_overrides_the_file),
        cmocka_unit_test(load_args_unknown_and_bad_values_name_the_key),
        cmocka_unit_test(load_args_bare_boolean_means_yes),
        cmocka_unit_test(validate_url_policy),
        cmocka_unit_test(validate_requires_url),
        cmocka_unit_test(validate_connect_timeout_above_timeout_is_bounded),
        cmocka_unit_test(token_lifetime_max_defaults_by_flavor),
        cmocka_unit_test(validate_rechecks_fields_set_by_code),
        cmocka_unit_test(validate_secret_file_modes),
        cmocka_unit_test(validate_secret_file_symlink_or_missing_is_refused),
        cmocka_unit_test(validate_user_map_file_and_ca_files),
        cmocka_unit_test(
            secret_read_strips_one_newline_and_refuses_empty_or_control),
        cmocka_unit_test(secret_read_length_limit),
        cmocka_unit_test(secret_read_refuses_bad_mode_symlink_and_missing),
        cmocka_unit_test(secret_check_names_key_and_file),
        cmocka_unit_test(min_uid_is_range_checked_and_stored),
        cmocka_unit_test(min_uid_default_is_uid_min_of_login_defs),
        cmocka_unit_test(login_defs_uid_min_is_read_strictly),
    };

    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
