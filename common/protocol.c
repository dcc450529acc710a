/* SPDX-License-Identifier: MIT */
/*
 * protocol.c - the pure half of every API call, for both flavors: build a
 * request from the config and the caller's inputs, and parse a response
 * into a result or a precise error.  Nothing here does I/O, so the blocking
 * client, the nginx module, the unit tests and the fuzzers share it.
 *
 * Parsers check, in this order: the status, the content type, the size, the
 * JSON syntax (json.c: jansson's grammar, nesting capped, duplicate keys
 * rejected), then the types of the fields (api-spec.md A, B; SECURITY.md
 * 3.5, 3.14).
 * Messages never quote a token or a secret; server text is sanitized.
 */
#include "tokengate.h"
#include "tg_internal.h"
#include "tg_json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

/* Seconds taken off every lifetime so a token is renewed before the server
 * drops it; Looker's SDK uses the same 10 s lag (api-spec.md 0). */
#define TG_EXPIRY_SKEW 10
/* Looker's lifetime when the answer has no expires_in (observed 3600 s). */
#define TG_LOOKER_LIFETIME 3600
/* Longest lifetime we believe; bounds caches and keeps sums from overflow. */
#define TG_LIFETIME_MAX (366L * 24 * 3600)
/* JSON nesting we accept; our answers nest 3 deep and the decoder
 * recurses (json.c stops at the first container too many). */
#define TG_JSON_DEPTH_MAX 32
/* Longest identity or session string we take from a server (F15). */
#define TG_IDENTITY_STRING_MAX 1024
/* Most groups in an identity, and the longest group name (F15). */
#define TG_GROUPS_MAX 256
#define TG_GROUP_LEN_MAX 256
/* Server text quoted in a message; enough for a sentence, not a page. */
#define TG_SERVER_TEXT_MAX 160
/* Longest plain-text error body we quote; longer ones are pages, not text. */
#define TG_SERVER_PLAIN_MAX 200
/* A Looker user id in the sudo path: digits only (SECURITY.md 3.6); an
 * unsigned 64-bit integer has at most 20 digits. */
#define TG_USER_ID_MAX 20
/* A Looker workspace id for PATCH /session ("production", "dev"). */
#define TG_WORKSPACE_MAX 64
/* Decimal digits of a 64-bit integer plus sign, prefix and NUL. */
#define TG_INT_TEXT_MAX 32
/* Longest signed embed URL we take from the server: twice the 8 KiB a
 * request line commonly gets, so a server's longer encoding still fits. */
#define TG_EMBED_ANSWER_URL_MAX 16384
/* Epoch values above this are milliseconds (1e11 s is the year 5138). */
#define TG_EPOCH_MS_MIN 100000000000LL
/* The last second we represent as an expiry: 9999-12-31T23:59:59Z. */
#define TG_EPOCH_MAX 253402300799LL
/* Longest expiry text we read ("2026-11-26T10:15:00.123456789+05:30"). */
#define TG_EXPIRY_TEXT_MAX 64

/* The calls, for the status mapping: a few statuses mean something else
 * for some calls (401 on the token call is a rejection, not a bad token). */
typedef enum tg_call {
    TG_CALL_TOKEN = 0,
    TG_CALL_VALIDATE,
    TG_CALL_PROFILE,
    TG_CALL_CREDS_SHOW,
    TG_CALL_CREDS_NEW,
    TG_CALL_CREDS_REVOKE,
    TG_CALL_LOGOUT,
    TG_CALL_SUDO,
    TG_CALL_SESSION,
    TG_CALL_EMBED_SSO_URL
} tg_call_t;

/* What a call accepts as success, and whether its answer holds a secret
 * (then the decoder's error text is not used, only fixed words). */
typedef struct tg_call_info {
    const char *name;
    long ok_status;
    long alt_status; /* also accepted; 0 for none */
    int secret_answer;
} tg_call_info_t;

static tg_err_t build_begin(const tg_config_t *cfg, tg_request_t *req,
                            tg_diag_t *diag);
static tg_err_t require_api(const tg_config_t *cfg, tg_api_t api,
                            const char *what, tg_diag_t *diag);
static tg_err_t check_url_part(const char *s, const char *key, tg_diag_t *diag);
static tg_err_t make_url(const tg_config_t *cfg, const char *path,
                         const char *tail, char **out, tg_diag_t *diag);
static tg_err_t set_authorization(const tg_config_t *cfg, const char *token,
                                  tg_request_t *req, tg_diag_t *diag);
static tg_err_t build_authed(const tg_config_t *cfg, const char *token,
                             const char *method, const char *path,
                             const char *tail, tg_request_t *req,
                             tg_diag_t *diag);
static void wipe_json_string(json_t *s);
static tg_err_t dump_body(const json_t *json, tg_request_t *req,
                          tg_diag_t *diag);
static tg_err_t build_insight_token(const tg_config_t *cfg,
                                    const char *client_id, const char *secret,
                                    tg_request_t *req, tg_diag_t *diag);
static tg_err_t build_looker_token(const tg_config_t *cfg,
                                   const char *client_id, const char *secret,
                                   tg_request_t *req, tg_diag_t *diag);
static int is_user_id(const char *s);
static int is_workspace(const char *s);

static tg_err_t parse_begin(const tg_config_t *cfg, const tg_response_t *resp,
                            const void *out, tg_diag_t *diag);
static int media_type_is(const char *ct, const char *want);
static int is_space(char c);
static void trim(const char **p, size_t *len);
static json_t *load_object(const char *p, size_t len);
static int is_json_scalar_or_array(const char *p, size_t len);
static void server_message(const tg_config_t *cfg, const tg_response_t *resp,
                           int allow_plain, char *dst, size_t size);
static long clamp_retry_after(const tg_config_t *cfg, long retry_after);
static tg_err_t fail_validation(const tg_config_t *cfg,
                                const tg_response_t *resp, const char *text,
                                tg_diag_t *diag);
static tg_err_t check_status(const tg_config_t *cfg, const tg_response_t *resp,
                             tg_call_t call, tg_diag_t *diag);
static tg_err_t check_size(const tg_config_t *cfg, const tg_response_t *resp,
                           tg_diag_t *diag);
static const char *json_error_text(const json_error_t *jerr, int secret);
static tg_err_t decode_json(const char *p, size_t len, size_t flags, int secret,
                            json_t **out, tg_diag_t *diag);
static tg_err_t load_json_answer(const tg_config_t *cfg,
                                 const tg_response_t *resp, tg_call_t call,
                                 json_t **out, tg_diag_t *diag);
static time_t expiry_from(time_t sent_at, long long lifetime);
static tg_err_t take_token(const char *p, size_t len, tg_token_t *out,
                           tg_diag_t *diag);
static tg_err_t take_json_token(json_t *v, const char *field, tg_token_t *out,
                                tg_diag_t *diag);
static tg_err_t parse_insight_token(const tg_config_t *cfg,
                                    const tg_response_t *resp, time_t sent_at,
                                    tg_token_t *out, tg_diag_t *diag);
static tg_err_t parse_access_token(const tg_config_t *cfg,
                                   const tg_response_t *resp, tg_call_t call,
                                   time_t sent_at, tg_token_t *out,
                                   tg_diag_t *diag);
static tg_err_t check_server_string(const char *field, const char *s,
                                    size_t len, size_t max, tg_diag_t *diag);
static tg_err_t get_string(json_t *obj, const char *key, const char **val,
                           size_t *len, tg_diag_t *diag);
static tg_err_t take_string(json_t *obj, const char *key, char **dst,
                            tg_diag_t *diag);
static tg_err_t get_flag(json_t *obj, const char *key, int *out,
                         tg_diag_t *diag);
static tg_err_t get_int(json_t *obj, const char *key, int64_t *out,
                        tg_diag_t *diag);
static tg_err_t take_id(json_t *obj, const char *key, int allow_int,
                        int required, char **dst, tg_diag_t *diag);
static size_t array_size(json_t *obj, const char *key);
static tg_err_t add_groups(tg_identity_t *id, json_t *obj, const char *key,
                           const char *prefix, int allow_int, tg_diag_t *diag);
static tg_err_t fill_empty(tg_identity_t *id, tg_diag_t *diag);
static int read_digits(const char *s, size_t len, size_t *pos, int n, int *out);
static long long days_from_civil(int y, int m, int d);
static time_t parse_iso8601(const char *s, size_t len);
static time_t parse_expiry(json_t *v);
static tg_err_t identity_new(tg_identity_t **out, tg_diag_t *diag);
static tg_err_t parse_insight_user(json_t *root, tg_identity_t *id,
                                   tg_diag_t *diag);
struct tg_profile_names;
static tg_err_t parse_profile_fields(json_t *root,
                                     const struct tg_profile_names *nm,
                                     tg_identity_t *id, tg_diag_t *diag);
static tg_err_t parse_identity(const tg_config_t *cfg,
                               const tg_response_t *resp, tg_call_t call,
                               int insight_user, tg_identity_t **out,
                               tg_diag_t *diag);
static tg_err_t take_credential(json_t *root, const char *key, const char *what,
                                char **dst, tg_diag_t *diag);
static tg_err_t check_empty_answer(const tg_config_t *cfg,
                                   const tg_response_t *resp, tg_call_t call,
                                   tg_diag_t *diag);
static int put(json_t *obj, const char *key, json_t *value);
static json_t *embed_sso_body(const tg_embed_params_t *p);
static tg_err_t take_embed_url(json_t *v, char **url, tg_diag_t *diag);

/* Indexed by tg_call_t: name, ok_status, alt_status, secret_answer. */
static const tg_call_info_t tg_calls[] = {
    [TG_CALL_TOKEN] = {"token", 200, 0, 1},
    [TG_CALL_VALIDATE] = {"validate", 200, 0, 0},
    [TG_CALL_PROFILE] = {"profile", 200, 0, 0},
    [TG_CALL_CREDS_SHOW] = {"credentials show", 200, 0, 0},
    [TG_CALL_CREDS_NEW] = {"credentials new", 200, 0, 1},
    [TG_CALL_CREDS_REVOKE] = {"credentials revoke", 204, 200, 0},
    [TG_CALL_LOGOUT] = {"logout", 204, 200, 0},
    [TG_CALL_SUDO] = {"sudo", 200, 0, 1},
    [TG_CALL_SESSION] = {"session", 200, 0, 0},
    [TG_CALL_EMBED_SSO_URL] = {"embed sso_url", 200, 0, 1},
};

/* ---------------------------------------------------------------------- */
/* Requests                                                               */
/* ---------------------------------------------------------------------- */

void
tg_request_clear(tg_request_t *req)
{
    if (req == NULL) {
        return;
    }
    free(req->url);
    tg_secret_free(req->authorization);
    tg_secret_free_len(req->body, req->body_len);
    memset(req, 0, sizeof(*req));
}

/* Zero the request first, so that it is zeroed whatever happens next. */
static tg_err_t
build_begin(const tg_config_t *cfg, tg_request_t *req, tg_diag_t *diag)
{
    if (req == NULL) {
        return tg__fail(diag, TG_INPUT, "no request to build");
    }
    memset(req, 0, sizeof(*req));
    if (cfg == NULL) {
        return tg__fail(diag, TG_CONFIG, "no configuration");
    }
    if (cfg->api != TG_API_INSIGHT && cfg->api != TG_API_LOOKER) {
        return tg__fail(diag, TG_CONFIG, "unknown api flavor %d",
                        (int) cfg->api);
    }
    return TG_OK;
}

static tg_err_t
require_api(const tg_config_t *cfg, tg_api_t api, const char *what,
            tg_diag_t *diag)
{
    if (cfg->api == api) {
        return TG_OK;
    }
    return tg__fail(diag, TG_INPUT, "%s not supported by the %s API", what,
                    cfg->api == TG_API_INSIGHT ? "insight" : "looker");
}

/* A configured URL part must not smuggle a header or a second request. */
static tg_err_t
check_url_part(const char *s, const char *key, tg_diag_t *diag)
{
    size_t i;

    for (i = 0; s[i] != '\0'; i++) {
        unsigned char c = (unsigned char) s[i];
        if (c <= 0x20 || c >= 0x7f) {
            return tg__fail(diag, TG_CONFIG,
                            "bad value for %s: a control, space or non-ASCII "
                            "byte at offset %zu",
                            key, i);
        }
    }
    return TG_OK;
}

/*
 * The full URL of a call: url (trailing '/' stripped), then the flavor's
 * prefix (insight_base_path, or "/api/" looker_api_version), then path and
 * tail (tail is a checked path segment or NULL).
 */
static tg_err_t
make_url(const tg_config_t *cfg, const char *path, const char *tail, char **out,
         tg_diag_t *diag)
{
    const char *base, *prefix, *mid;
    size_t base_len, mid_len, len;
    char *url = NULL;
    tg_err_t err;

    *out = NULL;
    base = cfg->url;
    if (base == NULL || base[0] == '\0') {
        return tg__fail(diag, TG_CONFIG, "url is not set");
    }
    err = check_url_part(base, "url", diag);
    if (err != TG_OK) {
        return err;
    }
    base_len = strlen(base);
    while (base_len > 0 && base[base_len - 1] == '/') {
        base_len--;
    }
    if (base_len == 0) {
        return tg__fail(diag, TG_CONFIG, "bad value for url: no host");
    }

    if (cfg->api == TG_API_INSIGHT) {
        mid = cfg->insight_base_path != NULL ? cfg->insight_base_path : "";
        err = check_url_part(mid, "insight_base_path", diag);
        if (err != TG_OK) {
            return err;
        }
        mid_len = strlen(mid);
        while (mid_len > 0 && mid[mid_len - 1] == '/') {
            mid_len--;
        }
        prefix = (mid_len > 0 && mid[0] != '/') ? "/" : "";
    } else {
        mid = cfg->looker_api_version;
        if (mid == NULL || mid[0] == '\0' || strchr(mid, '/') != NULL) {
            return tg__fail(diag, TG_CONFIG,
                            "bad value for looker_api_version: need a "
                            "version such as 4.0");
        }
        err = check_url_part(mid, "looker_api_version", diag);
        if (err != TG_OK) {
            return err;
        }
        mid_len = strlen(mid);
        prefix = "/api/";
    }
    if (tail == NULL) {
        tail = "";
    }

    {
        /* base, prefix, mid, path, tail: copied, not printed (this runs
         * for every validation nginx makes) */
        const char *part[] = {base, prefix, mid, path, tail};
        size_t n[] = {base_len, strlen(prefix), mid_len, strlen(path),
                      strlen(tail)};
        size_t i;
        char *p;

        len = n[0] + n[1] + n[2] + n[3] + n[4];
        url = malloc(len + 1);
        if (url == NULL) {
            return tg__fail(diag, TG_NOMEM, "out of memory");
        }
        for (p = url, i = 0; i < sizeof(n) / sizeof(n[0]); i++) {
            memcpy(p, part[i], n[i]);
            p += n[i];
        }
        *p = '\0';
    }
    *out = url;
    return TG_OK;
}

/* The Authorization header value; the token is checked first (F14). */
static tg_err_t
set_authorization(const tg_config_t *cfg, const char *token, tg_request_t *req,
                  tg_diag_t *diag)
{
    const char *scheme;
    size_t scheme_len, token_len;
    tg_err_t err;

    err = tg_token_check(token, diag);
    if (err != TG_OK) {
        return err;
    }
    scheme = "Bearer ";
    if (cfg->api == TG_API_LOOKER &&
        cfg->looker_auth_scheme == TG_LOOKER_SCHEME_TOKEN) {
        scheme = "token ";
    }
    scheme_len = strlen(scheme);
    token_len = strlen(token);
    req->authorization = malloc(scheme_len + token_len + 1);
    if (req->authorization == NULL) {
        return tg__fail(diag, TG_NOMEM, "out of memory");
    }
    memcpy(req->authorization, scheme, scheme_len);
    memcpy(req->authorization + scheme_len, token, token_len + 1);
    return TG_OK;
}

/* The common part of every call that sends a token. */
static tg_err_t
build_authed(const tg_config_t *cfg, const char *token, const char *method,
             const char *path, const char *tail, tg_request_t *req,
             tg_diag_t *diag)
{
    tg_err_t err;

    err = set_authorization(cfg, token, req, diag);
    if (err != TG_OK) {
        return err;
    }
    err = make_url(cfg, path, tail, &req->url, diag);
    if (err != TG_OK) {
        return err;
    }
    req->method = method;
    req->accept = "application/json";
    return TG_OK;
}

/* jansson frees without wiping; we own the only reference to this string,
 * so wipe its copy of the secret before it is released. */
static void
wipe_json_string(json_t *s)
{
    if (json_is_string(s)) {
        explicit_bzero((char *) json_string_value(s), json_string_length(s));
    }
}

/* The JSON body of a request. */
static tg_err_t
dump_body(const json_t *json, tg_request_t *req, tg_diag_t *diag)
{
    tg_err_t err = tg__json_dump(json, &req->body, &req->body_len, diag);

    if (err == TG_OK) {
        req->content_type = "application/json";
    }
    return err;
}

/* insight: POST auth/token, JSON {clientId, secret, maxAge} (A.5). */
static tg_err_t
build_insight_token(const tg_config_t *cfg, const char *client_id,
                    const char *secret, tg_request_t *req, tg_diag_t *diag)
{
    json_t *body = NULL, *jsecret = NULL;
    tg_err_t err;

    if (!tg__utf8_valid(client_id, strlen(client_id))) {
        return tg__fail(diag, TG_INPUT, "the client id is not valid UTF-8");
    }
    if (!tg__utf8_valid(secret, strlen(secret))) {
        return tg__fail(diag, TG_INPUT, "the client secret is not valid UTF-8");
    }
    if (cfg->token_max_age <= 0) {
        return tg__fail(diag, TG_CONFIG,
                        "bad value for token_max_age: must be positive");
    }
    err = make_url(cfg, "/auth/token", NULL, &req->url, diag);
    if (err != TG_OK) {
        return err;
    }

    body = json_object();
    jsecret = json_string(secret);
    if (body == NULL || jsecret == NULL ||
        json_object_set_new(body, "clientId", json_string(client_id)) != 0 ||
        json_object_set(body, "secret", jsecret) != 0 ||
        json_object_set_new(body, "maxAge",
                            json_integer((json_int_t) cfg->token_max_age)) !=
            0) {
        err = tg__fail(diag, TG_NOMEM, "out of memory");
        goto out;
    }
    err = dump_body(body, req, diag);
    if (err != TG_OK) {
        goto out;
    }
    req->method = "POST";
    req->accept = "application/json, text/plain;q=0.9";

out:
    wipe_json_string(jsecret);
    json_decref(jsecret);
    json_decref(body);
    return err;
}

/* looker: POST /login, form client_id & client_secret (B.2). */
static tg_err_t
build_looker_token(const tg_config_t *cfg, const char *client_id,
                   const char *secret, tg_request_t *req, tg_diag_t *diag)
{
    static const char k_id[] = "client_id=";
    static const char k_secret[] = "&client_secret=";
    size_t len;
    char *body, *p;
    tg_err_t err;

    err = make_url(cfg, "/login", NULL, &req->url, diag);
    if (err != TG_OK) {
        return err;
    }
    len = strlen(k_id) + tg__pct_encoded_len(client_id) + strlen(k_secret) +
          tg__pct_encoded_len(secret);
    body = malloc(len + 1);
    if (body == NULL) {
        return tg__fail(diag, TG_NOMEM, "out of memory");
    }
    p = body;
    memcpy(p, k_id, strlen(k_id));
    p = tg__pct_encode(p + strlen(k_id), client_id);
    memcpy(p, k_secret, strlen(k_secret));
    p = tg__pct_encode(p + strlen(k_secret), secret);
    *p = '\0';
    req->body = body;
    req->body_len = len;
    req->method = "POST";
    req->content_type = "application/x-www-form-urlencoded";
    req->accept = "application/json";
    return TG_OK;
}

tg_err_t
tg_build_token(const tg_config_t *cfg, const char *client_id,
               const char *secret, tg_request_t *req, tg_diag_t *diag)
{
    tg_err_t err;

    err = build_begin(cfg, req, diag);
    if (err != TG_OK) {
        return err;
    }
    err = tg_credential_check(client_id, "client id", diag);
    if (err != TG_OK) {
        goto out;
    }
    err = tg_credential_check(secret, "client secret", diag);
    if (err != TG_OK) {
        goto out;
    }
    if (cfg->api == TG_API_INSIGHT) {
        err = build_insight_token(cfg, client_id, secret, req, diag);
    } else {
        err = build_looker_token(cfg, client_id, secret, req, diag);
    }

out:
    if (err != TG_OK) {
        tg_request_clear(req);
    }
    return err;
}

tg_err_t
tg_build_validate(const tg_config_t *cfg, const char *token,
                  tg_insight_validate_t which, tg_request_t *req,
                  tg_diag_t *diag)
{
    const char *path;
    tg_err_t err;

    err = build_begin(cfg, req, diag);
    if (err != TG_OK) {
        return err;
    }
    if (cfg->api == TG_API_LOOKER) {
        path = "/user";
    } else if (which == TG_INSIGHT_VALIDATE_USER) {
        path = "/auth/user";
    } else if (which == TG_INSIGHT_VALIDATE_CURRENTUSER) {
        path = "/auth/currentuser";
    } else {
        err = tg__fail(diag, TG_INPUT,
                       "validate needs which = user or currentuser "
                       "(the client resolves auto and both)");
        goto out;
    }
    err = build_authed(cfg, token, "GET", path, NULL, req, diag);

out:
    if (err != TG_OK) {
        tg_request_clear(req);
    }
    return err;
}

tg_err_t
tg_build_profile(const tg_config_t *cfg, const char *token, tg_request_t *req,
                 tg_diag_t *diag)
{
    tg_err_t err;

    err = build_begin(cfg, req, diag);
    if (err != TG_OK) {
        return err;
    }
    err =
        build_authed(cfg, token, "GET",
                     cfg->api == TG_API_INSIGHT ? "/auth/currentuser" : "/user",
                     NULL, req, diag);
    if (err != TG_OK) {
        tg_request_clear(req);
    }
    return err;
}

tg_err_t
tg_build_credentials(const tg_config_t *cfg, const char *token,
                     tg_creds_op_t op, tg_request_t *req, tg_diag_t *diag)
{
    static const char *const path = "/auth/currentuser/credentials";
    tg_err_t err;

    err = build_begin(cfg, req, diag);
    if (err != TG_OK) {
        return err;
    }
    err = require_api(cfg, TG_API_INSIGHT, "credentials are", diag);
    if (err != TG_OK) {
        goto out;
    }
    switch (op) {
    case TG_CREDS_SHOW:
        err = build_authed(cfg, token, "GET", path, NULL, req, diag);
        break;
    case TG_CREDS_NEW:
        /* A.3 documents a JSON body without a schema: send an empty object. */
        err = build_authed(cfg, token, "POST", path, NULL, req, diag);
        if (err != TG_OK) {
            break;
        }
        req->body = tg__strdup("{}");
        if (req->body == NULL) {
            err = tg__fail(diag, TG_NOMEM, "out of memory");
            break;
        }
        req->body_len = 2;
        req->content_type = "application/json";
        break;
    case TG_CREDS_REVOKE:
        err = build_authed(cfg, token, "DELETE", path, NULL, req, diag);
        break;
    default:
        err = tg__fail(diag, TG_INPUT, "unknown credentials operation %d",
                       (int) op);
        break;
    }

out:
    if (err != TG_OK) {
        tg_request_clear(req);
    }
    return err;
}

tg_err_t
tg_build_logout(const tg_config_t *cfg, const char *token, tg_request_t *req,
                tg_diag_t *diag)
{
    tg_err_t err;

    err = build_begin(cfg, req, diag);
    if (err != TG_OK) {
        return err;
    }
    err = require_api(cfg, TG_API_LOOKER, "logout is", diag);
    if (err == TG_OK) {
        err = build_authed(cfg, token, "DELETE", "/logout", NULL, req, diag);
    }
    if (err != TG_OK) {
        tg_request_clear(req);
    }
    return err;
}

/* ^[0-9]{1,20}$: the only user ids we put in a path (SECURITY.md 3.6). */
static int
is_user_id(const char *s)
{
    size_t i;

    if (s == NULL) {
        return 0;
    }
    for (i = 0; s[i] != '\0'; i++) {
        if (s[i] < '0' || s[i] > '9' || i >= TG_USER_ID_MAX) {
            return 0;
        }
    }
    return i > 0;
}

tg_err_t
tg_build_sudo(const tg_config_t *cfg, const char *token, const char *user_id,
              tg_request_t *req, tg_diag_t *diag)
{
    tg_err_t err;

    err = build_begin(cfg, req, diag);
    if (err != TG_OK) {
        return err;
    }
    err = require_api(cfg, TG_API_LOOKER, "sudo is", diag);
    if (err != TG_OK) {
        goto out;
    }
    err = tg_token_check(token, diag);
    if (err != TG_OK) {
        goto out;
    }
    if (!is_user_id(user_id)) {
        err = tg__fail(diag, TG_INPUT, "the user id must be 1 to %d digits",
                       TG_USER_ID_MAX);
        goto out;
    }
    err = build_authed(cfg, token, "POST", "/login/", user_id, req, diag);

out:
    if (err != TG_OK) {
        tg_request_clear(req);
    }
    return err;
}

/* 1..64 bytes of [A-Za-z0-9_-]. */
static int
is_workspace(const char *s)
{
    size_t i;

    for (i = 0; s[i] != '\0'; i++) {
        unsigned char c = (unsigned char) s[i];
        if (i >= TG_WORKSPACE_MAX ||
            !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '-')) {
            return 0;
        }
    }
    return i > 0;
}

tg_err_t
tg_build_session(const tg_config_t *cfg, const char *token,
                 const char *workspace, tg_request_t *req, tg_diag_t *diag)
{
    json_t *body = NULL;
    tg_err_t err;

    err = build_begin(cfg, req, diag);
    if (err != TG_OK) {
        return err;
    }
    err = require_api(cfg, TG_API_LOOKER, "sessions are", diag);
    if (err != TG_OK) {
        goto out;
    }
    if (workspace == NULL) {
        err = build_authed(cfg, token, "GET", "/session", NULL, req, diag);
        goto out;
    }
    err = tg_token_check(token, diag);
    if (err != TG_OK) {
        goto out;
    }
    if (!is_workspace(workspace)) {
        err = tg__fail(diag, TG_INPUT,
                       "the workspace must be 1 to %d letters, digits, '_' "
                       "or '-'",
                       TG_WORKSPACE_MAX);
        goto out;
    }
    err = build_authed(cfg, token, "PATCH", "/session", NULL, req, diag);
    if (err != TG_OK) {
        goto out;
    }
    body = json_pack("{s:s}", "workspace_id", workspace);
    if (body == NULL) {
        err = tg__fail(diag, TG_NOMEM, "out of memory");
        goto out;
    }
    err = dump_body(body, req, diag);

out:
    json_decref(body);
    if (err != TG_OK) {
        tg_request_clear(req);
    }
    return err;
}

/* ---------------------------------------------------------------------- */
/* Responses: status, content type, size, JSON                            */
/* ---------------------------------------------------------------------- */

static tg_err_t
parse_begin(const tg_config_t *cfg, const tg_response_t *resp, const void *out,
            tg_diag_t *diag)
{
    if (cfg == NULL || resp == NULL || out == NULL) {
        return tg__fail(diag, TG_INPUT, "missing argument");
    }
    if (diag != NULL) {
        diag->http_status = resp->status;
    }
    if (cfg->api != TG_API_INSIGHT && cfg->api != TG_API_LOOKER) {
        return tg__fail(diag, TG_CONFIG, "unknown api flavor %d",
                        (int) cfg->api);
    }
    if (resp->body == NULL && resp->body_len > 0) {
        return tg__fail(diag, TG_INTERNAL, "response body missing");
    }
    return TG_OK;
}

/* Is the media type of ct (parameters allowed) want, case-insensitively? */
static int
media_type_is(const char *ct, const char *want)
{
    size_t n = strlen(want);

    if (ct == NULL) {
        return 0;
    }
    while (*ct == ' ' || *ct == '\t') {
        ct++;
    }
    if (strncasecmp(ct, want, n) != 0) {
        return 0;
    }
    ct += n;
    while (*ct == ' ' || *ct == '\t') {
        ct++;
    }
    return *ct == '\0' || *ct == ';';
}

static int
is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Trim surrounding whitespace (space, tab, CR, LF). */
static void
trim(const char **p, size_t *len)
{
    while (*len > 0 && is_space((*p)[0])) {
        (*p)++;
        (*len)--;
    }
    while (*len > 0 && is_space((*p)[*len - 1])) {
        (*len)--;
    }
}

/* Best effort decode of an error body; NULL when it is not a JSON object. */
static json_t *
load_object(const char *p, size_t len)
{
    json_t *root;

    if (len == 0 || p[0] != '{') {
        return NULL;
    }
    root = tg__json_decode(p, len, 0, TG_JSON_DEPTH_MAX, NULL);
    if (root != NULL && !json_is_object(root)) {
        json_decref(root);
        root = NULL;
    }
    return root;
}

/* The server's own words about an error, sanitized: Looker {"message"},
 * FICO v2 {"error":{"message"}}, OAuth {"error_description"}, or, when
 * allow_plain, a short plain-text body.  "" when there is nothing usable. */
static void
server_message(const tg_config_t *cfg, const tg_response_t *resp,
               int allow_plain, char *dst, size_t size)
{
    const char *p = resp->body;
    size_t len = resp->body_len;
    json_t *root, *v, *e;

    dst[0] = '\0';
    if (p == NULL || len == 0 || (long long) len > cfg->max_response_bytes) {
        return;
    }
    trim(&p, &len);
    if (len == 0) {
        return;
    }
    root = load_object(p, len);
    if (root != NULL) {
        v = json_object_get(root, "message");
        e = json_object_get(root, "error");
        if (!json_is_string(v) && json_is_object(e)) {
            v = json_object_get(e, "message");
        }
        if (!json_is_string(v)) {
            v = json_object_get(root, "error_description");
        }
        if (!json_is_string(v) && json_is_string(e)) {
            v = e;
        }
        if (json_is_string(v)) {
            tg__sanitize(dst, size, json_string_value(v),
                         json_string_length(v));
        }
        json_decref(root);
        return;
    }
    if (allow_plain &&
        (resp->content_type == NULL ||
         media_type_is(resp->content_type, "text/plain")) &&
        len <= TG_SERVER_PLAIN_MAX && p[0] != '<' && p[0] != '{') {
        tg__sanitize(dst, size, p, len);
    }
}

static long
clamp_retry_after(const tg_config_t *cfg, long retry_after)
{
    if (retry_after < 0) {
        return -1;
    }
    if (retry_after > cfg->retry_after_max) {
        return cfg->retry_after_max < 0 ? 0 : cfg->retry_after_max;
    }
    return retry_after;
}

/* 422: Looker's errors[] go to diag->fields and into the message. */
static tg_err_t
fail_validation(const tg_config_t *cfg, const tg_response_t *resp,
                const char *text, tg_diag_t *diag)
{
    char list[320];
    const char *p = resp->body;
    size_t used = 0, len = resp->body_len, i;
    json_t *root = NULL, *errors, *item, *v;
    const char *const keys[3] = {"field", "code", "message"};
    tg_field_error_t *fe;
    int k;

    list[0] = '\0';
    if (diag == NULL || diag->message[0] != '\0' || resp->body == NULL ||
        (long long) resp->body_len > cfg->max_response_bytes) {
        goto out;
    }
    trim(&p, &len);
    root = load_object(p, len);
    errors = json_object_get(root, "errors");
    if (!json_is_array(errors)) {
        goto out;
    }
    diag->n_fields = 0;
    json_array_foreach(errors, i, item)
    {
        if (diag->n_fields >= TG_FIELD_ERRORS_MAX) {
            break;
        }
        if (!json_is_object(item)) {
            continue;
        }
        fe = &diag->fields[diag->n_fields];
        memset(fe, 0, sizeof(*fe));
        for (k = 0; k < 3; k++) {
            char *dst = k == 0 ? fe->field : k == 1 ? fe->code : fe->message;
            size_t dsize = k == 0   ? sizeof(fe->field)
                           : k == 1 ? sizeof(fe->code)
                                    : sizeof(fe->message);
            v = json_object_get(item, keys[k]);
            if (json_is_string(v)) {
                tg__sanitize(dst, dsize, json_string_value(v),
                             json_string_length(v));
            }
        }
        diag->n_fields++;
        if (used < sizeof(list)) {
            /* "field: code message", leaving out what is empty. */
            int has_field = fe->field[0] != '\0';
            int has_code = fe->code[0] != '\0';
            int has_msg = fe->message[0] != '\0';
            int n =
                snprintf(list + used, sizeof(list) - used, "%s%s%s%s%s%s",
                         used > 0 ? "; " : "", fe->field,
                         has_field && (has_code || has_msg) ? ": " : "",
                         fe->code, has_code && has_msg ? " " : "", fe->message);
            used += n > 0 ? (size_t) n : 0;
        }
    }

out:
    json_decref(root);
    return tg__fail(diag, TG_VALIDATION,
                    "request refused by the server as invalid (%s)%s%s", text,
                    list[0] != '\0' ? ": " : "", list);
}

/*
 * The one status mapping (tokengate.h, "Parsers").  TG_OK only for the
 * call's expected 2xx statuses; every other status is an error that names
 * the status and quotes what the server said about it.
 */
static tg_err_t
check_status(const tg_config_t *cfg, const tg_response_t *resp, tg_call_t call,
             tg_diag_t *diag)
{
    const tg_call_info_t *ci = &tg_calls[call];
    char msg[TG_SERVER_TEXT_MAX], text[TG_SERVER_TEXT_MAX + 32];
    long st = resp->status, ra;

    if (st == ci->ok_status || (ci->alt_status != 0 && st == ci->alt_status)) {
        return TG_OK;
    }
    if (st >= 300 && st < 400) {
        return tg__fail(diag, TG_PROTOCOL, "redirect (HTTP %ld) not followed",
                        st);
    }
    /* A 2xx body is an answer, not an error text: for the token, sudo and
     * credentials calls it is the secret itself, so it is never quoted.  A
     * plain-text body may echo the request (and its credentials), so only
     * server errors of calls whose answer holds no secret quote one. */
    msg[0] = '\0';
    if (st < 200 || st >= 300) {
        server_message(cfg, resp, st >= 500 && !ci->secret_answer, msg,
                       sizeof(msg));
    }
    snprintf(text, sizeof(text), "HTTP %ld%s%s", st, msg[0] != '\0' ? ": " : "",
             msg);

    switch (st) {
    case 400:
        if (call == TG_CALL_TOKEN) {
            return tg__fail(diag, TG_REJECTED,
                            "credentials rejected by the server (%s)", text);
        }
        return tg__fail(diag, TG_VALIDATION,
                        "request refused by the server as invalid (%s)", text);
    case 401:
        if (call == TG_CALL_TOKEN) {
            return tg__fail(diag, TG_REJECTED,
                            "credentials rejected by the server (%s)", text);
        }
        return tg__fail(diag, TG_TOKEN_INVALID,
                        "token rejected by the server (%s)", text);
    case 403:
        return tg__fail(diag, TG_FORBIDDEN, "forbidden by the server (%s)",
                        text);
    case 404:
        if (call == TG_CALL_TOKEN && cfg->api == TG_API_LOOKER) {
            /* Looker answers bad credentials with 404 (api-spec B.2). */
            return tg__fail(diag, TG_REJECTED,
                            "credentials rejected by the server (%s)", text);
        }
        if (call == TG_CALL_CREDS_SHOW) {
            return tg__fail(diag, TG_NOT_FOUND,
                            "no REST API credentials for the current user "
                            "(%s)",
                            text);
        }
        return tg__fail(diag, TG_NOT_FOUND, "not found on the server (%s)",
                        text);
    case 409:
        /* Looker's "Resource Already Exists" (api-spec B.6). */
        return tg__fail(diag, TG_VALIDATION,
                        "request refused by the server as a conflict (%s)",
                        text);
    case 422:
        return fail_validation(cfg, resp, text, diag);
    case 429:
        ra = clamp_retry_after(cfg, resp->retry_after);
        if (diag != NULL) {
            diag->retry_after = ra;
        }
        if (ra >= 0) {
            return tg__fail(diag, TG_RATE_LIMITED,
                            "rate limited by the server (%s); retry after "
                            "%ld s",
                            text, ra);
        }
        return tg__fail(diag, TG_RATE_LIMITED,
                        "rate limited by the server (%s)", text);
    default:
        break;
    }
    if (st >= 500 && st < 600) {
        /* 503 may carry Retry-After too (RFC 9110 10.2.3). */
        if (st == 503 && diag != NULL) {
            diag->retry_after = clamp_retry_after(cfg, resp->retry_after);
        }
        return tg__fail(diag, TG_UNAVAILABLE, "server error (%s)", text);
    }
    if (st >= 200 && st < 300) {
        return tg__fail(diag, TG_PROTOCOL,
                        "unexpected answer to the %s call (%s)", ci->name,
                        text);
    }
    return tg__fail(diag, TG_PROTOCOL, "unexpected HTTP status (%s)", text);
}

static tg_err_t
check_size(const tg_config_t *cfg, const tg_response_t *resp, tg_diag_t *diag)
{
    if ((long long) resp->body_len > cfg->max_response_bytes) {
        return tg__fail(diag, TG_PROTOCOL,
                        "the answer is larger than %ld bytes "
                        "(max_response_bytes)",
                        cfg->max_response_bytes);
    }
    return TG_OK;
}

/* Why the decoder refused a body.  For answers that hold a secret we use
 * these fixed words whatever the decoder's text says (json.c quotes no
 * input, but a secret answer's message must not depend on that). */
static const char *
json_error_text(const json_error_t *jerr, int secret)
{
    if (!secret) {
        return jerr->text;
    }
    switch (json_error_code(jerr)) {
    case json_error_invalid_utf8:
        return "invalid UTF-8";
    case json_error_premature_end_of_input:
        return "premature end of input";
    case json_error_end_of_input_expected:
        return "end of input expected";
    case json_error_null_character:
        return "\\u0000 in a string";
    case json_error_duplicate_key:
        return "duplicate object key";
    case json_error_numeric_overflow:
        return "numeric overflow";
    case json_error_stack_overflow:
        return "nested too deeply";
    default:
        return "invalid syntax";
    }
}

static tg_err_t
decode_json(const char *p, size_t len, size_t flags, int secret, json_t **out,
            tg_diag_t *diag)
{
    json_error_t jerr;
    char why[sizeof(jerr.text)];
    const char *text;

    *out = tg__json_decode(p, len, flags, TG_JSON_DEPTH_MAX, &jerr);
    if (*out != NULL) {
        return TG_OK;
    }
    if (json_error_code(&jerr) == json_error_out_of_memory) {
        return tg__fail(diag, TG_NOMEM, "out of memory");
    }
    if (json_error_code(&jerr) == json_error_stack_overflow) {
        return tg__fail(diag, TG_PROTOCOL,
                        "the answer's JSON is nested deeper than %d levels",
                        TG_JSON_DEPTH_MAX);
    }
    text = json_error_text(&jerr, secret);
    tg__sanitize(why, sizeof(why), text, strlen(text));
    return tg__fail(diag, TG_PROTOCOL,
                    "the answer is not valid JSON (line %d, column %d: %s)",
                    jerr.line, jerr.column, why);
}

/* Status, content type application/json, size, then a JSON object. */
static tg_err_t
load_json_answer(const tg_config_t *cfg, const tg_response_t *resp,
                 tg_call_t call, json_t **out, tg_diag_t *diag)
{
    char ct[64];
    tg_err_t err;

    *out = NULL;
    err = check_status(cfg, resp, call, diag);
    if (err != TG_OK) {
        return err;
    }
    if (resp->content_type == NULL) {
        return tg__fail(diag, TG_PROTOCOL,
                        "no content type in the answer (expected "
                        "application/json)");
    }
    if (!media_type_is(resp->content_type, "application/json")) {
        tg__sanitize(ct, sizeof(ct), resp->content_type,
                     strlen(resp->content_type));
        return tg__fail(diag, TG_PROTOCOL,
                        "unexpected content type %s (expected "
                        "application/json)",
                        ct);
    }
    err = check_size(cfg, resp, diag);
    if (err != TG_OK) {
        return err;
    }
    if (resp->body_len == 0) {
        return tg__fail(diag, TG_PROTOCOL,
                        "the answer is empty (expected a JSON object)");
    }
    err = decode_json(resp->body, resp->body_len, 0,
                      tg_calls[call].secret_answer, out, diag);
    if (err != TG_OK) {
        return err;
    }
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return tg__fail(diag, TG_PROTOCOL, "the answer is not a JSON object");
    }
    return TG_OK;
}

/* ---------------------------------------------------------------------- */
/* Tokens                                                                 */
/* ---------------------------------------------------------------------- */

void
tg_token_clear(tg_token_t *tok)
{
    if (tok == NULL) {
        return;
    }
    tg_secret_free(tok->value);
    memset(tok, 0, sizeof(*tok));
}

/* sent_at + lifetime - skew (the skew only when the lifetime exceeds it);
 * 0 (unknown) without a usable time or lifetime. */
static time_t
expiry_from(time_t sent_at, long long lifetime)
{
    if (sent_at <= 0 || (long long) sent_at > TG_EPOCH_MAX || lifetime <= 0) {
        return 0;
    }
    if (lifetime > TG_LIFETIME_MAX) {
        lifetime = TG_LIFETIME_MAX;
    }
    if (lifetime > TG_EXPIRY_SKEW) {
        lifetime -= TG_EXPIRY_SKEW;
    }
    return sent_at + (time_t) lifetime;
}

/* Copy a server's token into out->value and check it as a bearer token;
 * the message never quotes it. */
static tg_err_t
take_token(const char *p, size_t len, tg_token_t *out, tg_diag_t *diag)
{
    char *value;

    if (len == 0) {
        return tg__fail(diag, TG_PROTOCOL, "the server's token is empty");
    }
    if (len > TG_TOKEN_MAX) {
        return tg__fail(diag, TG_PROTOCOL,
                        "the server's token is longer than %d bytes",
                        TG_TOKEN_MAX);
    }
    if (memchr(p, '\0', len) != NULL) {
        return tg__fail(diag, TG_PROTOCOL,
                        "the server's token has invalid bytes");
    }
    value = malloc(len + 1);
    if (value == NULL) {
        return tg__fail(diag, TG_NOMEM, "out of memory");
    }
    memcpy(value, p, len);
    value[len] = '\0';
    if (tg_token_check(value, NULL) != TG_OK) {
        tg_secret_free(value);
        return tg__fail(diag, TG_PROTOCOL,
                        "the server's token has invalid bytes");
    }
    out->value = value;
    return TG_OK;
}

/* A token held in a JSON value: it must be a string; its jansson copy is
 * wiped once taken. */
static tg_err_t
take_json_token(json_t *v, const char *field, tg_token_t *out, tg_diag_t *diag)
{
    tg_err_t err;

    if (v == NULL || json_is_null(v)) {
        return tg__fail(diag, TG_PROTOCOL, "no %s in the answer", field);
    }
    if (!json_is_string(v)) {
        return tg__fail(diag, TG_PROTOCOL, "%s in the answer is not a string",
                        field);
    }
    err = take_token(json_string_value(v), json_string_length(v), out, diag);
    wipe_json_string(v);
    return err;
}

/* Is this body a JSON literal, number or array (what a raw token can never
 * be confused with when the server says application/json)? */
static int
is_json_scalar_or_array(const char *p, size_t len)
{
    size_t i;

    if (p[0] == '[' || (len == 4 && memcmp(p, "null", 4) == 0) ||
        (len == 4 && memcmp(p, "true", 4) == 0) ||
        (len == 5 && memcmp(p, "false", 5) == 0)) {
        return 1;
    }
    for (i = 0; i < len; i++) {
        if (!((p[i] >= '0' && p[i] <= '9') || p[i] == '-' || p[i] == '+' ||
              p[i] == '.' || p[i] == 'e' || p[i] == 'E')) {
            return 0;
        }
    }
    return 1;
}

/*
 * insight (A.5): the form of the token is unspecified.  Trimmed, a body
 * starting with '"' is a JSON string, one starting with '{' an object with
 * "access_token" or "token", anything else the raw token.
 */
static tg_err_t
parse_insight_token(const tg_config_t *cfg, const tg_response_t *resp,
                    time_t sent_at, tg_token_t *out, tg_diag_t *diag)
{
    const char *p;
    size_t len;
    json_t *root = NULL, *v;
    char ct[64];
    tg_err_t err;

    err = check_status(cfg, resp, TG_CALL_TOKEN, diag);
    if (err != TG_OK) {
        return err;
    }
    if (!media_type_is(resp->content_type, "application/json") &&
        !media_type_is(resp->content_type, "text/plain")) {
        if (resp->content_type == NULL) {
            return tg__fail(diag, TG_PROTOCOL,
                            "no content type in the answer (expected "
                            "application/json or text/plain)");
        }
        tg__sanitize(ct, sizeof(ct), resp->content_type,
                     strlen(resp->content_type));
        return tg__fail(diag, TG_PROTOCOL,
                        "unexpected content type %s (expected "
                        "application/json or text/plain)",
                        ct);
    }
    err = check_size(cfg, resp, diag);
    if (err != TG_OK) {
        return err;
    }
    p = resp->body != NULL ? resp->body : "";
    len = resp->body_len;
    trim(&p, &len);
    if (len == 0) {
        return tg__fail(diag, TG_PROTOCOL, "no token in the answer");
    }

    if (p[0] == '"') {
        err = decode_json(p, len, JSON_DECODE_ANY, 1, &root, diag);
        if (err != TG_OK) {
            goto out;
        }
        err = take_json_token(root, "token", out, diag);
    } else if (p[0] == '{') {
        err = decode_json(p, len, 0, 1, &root, diag);
        if (err != TG_OK) {
            goto out;
        }
        v = json_object_get(root, "access_token");
        if (v == NULL || json_is_null(v)) {
            v = json_object_get(root, "token");
        }
        err = take_json_token(v, "access_token or token", out, diag);
    } else if (media_type_is(resp->content_type, "application/json") &&
               is_json_scalar_or_array(p, len)) {
        /* A raw token labelled application/json is plausible (api-spec
         * A.5); null, true, 42 or [...] are JSON values, not tokens. */
        err = tg__fail(diag, TG_PROTOCOL,
                       "the answer is a JSON value where a token was "
                       "expected");
    } else {
        err = take_token(p, len, out, diag);
    }
    if (err == TG_OK) {
        out->expires_at = expiry_from(sent_at, cfg->token_max_age);
    }

out:
    /* Wipe jansson's copies, taken or rejected. */
    if (json_is_string(root)) {
        wipe_json_string(root);
    } else if (root != NULL) {
        wipe_json_string(json_object_get(root, "access_token"));
        wipe_json_string(json_object_get(root, "token"));
    }
    json_decref(root);
    return err;
}

/* looker login and sudo (B.2, B.3): {access_token, token_type, expires_in}. */
static tg_err_t
parse_access_token(const tg_config_t *cfg, const tg_response_t *resp,
                   tg_call_t call, time_t sent_at, tg_token_t *out,
                   tg_diag_t *diag)
{
    json_t *root = NULL, *at, *tt, *ei;
    long long lifetime = TG_LOOKER_LIFETIME;
    tg_err_t err;

    err = load_json_answer(cfg, resp, call, &root, diag);
    if (err != TG_OK) {
        goto out;
    }
    at = json_object_get(root, "access_token");
    tt = json_object_get(root, "token_type");
    ei = json_object_get(root, "expires_in");
    if (tt != NULL && !json_is_null(tt)) {
        if (!json_is_string(tt)) {
            err = tg__fail(diag, TG_PROTOCOL,
                           "token_type in the answer is not a string");
            goto out;
        }
        /* Not quoted: nothing of an answer that holds a token is. */
        if (strcasecmp(json_string_value(tt), "Bearer") != 0) {
            err = tg__fail(diag, TG_PROTOCOL,
                           "token_type in the answer is not Bearer");
            goto out;
        }
    }
    if (ei != NULL && !json_is_null(ei)) {
        if (!json_is_integer(ei) || json_integer_value(ei) <= 0) {
            err = tg__fail(diag, TG_PROTOCOL,
                           "expires_in in the answer is not a positive "
                           "integer");
            goto out;
        }
        lifetime = json_integer_value(ei);
    }
    err = take_json_token(at, "access_token", out, diag);
    if (err != TG_OK) {
        goto out;
    }
    out->expires_at = expiry_from(sent_at, lifetime);

out:
    if (root != NULL) {
        wipe_json_string(json_object_get(root, "access_token"));
        wipe_json_string(json_object_get(root, "refresh_token"));
    }
    json_decref(root);
    return err;
}

tg_err_t
tg_parse_token(const tg_config_t *cfg, const tg_response_t *resp,
               time_t sent_at, tg_token_t *out, tg_diag_t *diag)
{
    tg_err_t err;

    if (out != NULL) {
        memset(out, 0, sizeof(*out));
    }
    err = parse_begin(cfg, resp, out, diag);
    if (err != TG_OK) {
        return err;
    }
    if (cfg->api == TG_API_INSIGHT) {
        err = parse_insight_token(cfg, resp, sent_at, out, diag);
    } else {
        err = parse_access_token(cfg, resp, TG_CALL_TOKEN, sent_at, out, diag);
    }
    if (err != TG_OK) {
        tg_token_clear(out);
    }
    return err;
}

tg_err_t
tg_parse_sudo(const tg_config_t *cfg, const tg_response_t *resp, time_t sent_at,
              tg_token_t *out, tg_diag_t *diag)
{
    tg_err_t err;

    if (out != NULL) {
        memset(out, 0, sizeof(*out));
    }
    err = parse_begin(cfg, resp, out, diag);
    if (err != TG_OK) {
        return err;
    }
    err = require_api(cfg, TG_API_LOOKER, "sudo is", diag);
    if (err == TG_OK) {
        err = parse_access_token(cfg, resp, TG_CALL_SUDO, sent_at, out, diag);
    }
    if (err != TG_OK) {
        tg_token_clear(out);
    }
    return err;
}

/* ---------------------------------------------------------------------- */
/* Identities                                                             */
/* ---------------------------------------------------------------------- */

/* A string from the server that we hand on (F15): bounded, no NUL, no C0
 * control byte or DEL, and no C1 control (U+0080..U+009F in UTF-8). */
static tg_err_t
check_server_string(const char *field, const char *s, size_t len, size_t max,
                    tg_diag_t *diag)
{
    size_t i;

    if (len > max) {
        return tg__fail(diag, TG_PROTOCOL,
                        "%s in the answer is longer than %zu bytes", field,
                        max);
    }
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char) s[i];
        if (c < 0x20 || c == 0x7f ||
            (c == 0xc2 && i + 1 < len && (unsigned char) s[i + 1] >= 0x80 &&
             (unsigned char) s[i + 1] <= 0x9f)) {
            return tg__fail(diag, TG_PROTOCOL,
                            "%s in the answer has a control character", field);
        }
    }
    return TG_OK;
}

/* An optional string: absent or null gives NULL; any other type is an
 * error naming the field. */
static tg_err_t
get_string(json_t *obj, const char *key, const char **val, size_t *len,
           tg_diag_t *diag)
{
    json_t *v = json_object_get(obj, key);

    *val = NULL;
    *len = 0;
    if (v == NULL || json_is_null(v)) {
        return TG_OK;
    }
    if (!json_is_string(v)) {
        return tg__fail(diag, TG_PROTOCOL, "%s in the answer is not a string",
                        key);
    }
    *val = json_string_value(v);
    *len = json_string_length(v);
    return check_server_string(key, *val, *len, TG_IDENTITY_STRING_MAX, diag);
}

/* An optional string stored into *dst ("" when absent). */
static tg_err_t
take_string(json_t *obj, const char *key, char **dst, tg_diag_t *diag)
{
    const char *val;
    size_t len;
    tg_err_t err;

    err = get_string(obj, key, &val, &len, diag);
    if (err != TG_OK) {
        return err;
    }
    free(*dst);
    *dst = tg__strdup(val);
    if (*dst == NULL) {
        return tg__fail(diag, TG_NOMEM, "out of memory");
    }
    return TG_OK;
}

/* An optional boolean flag: 1 or 0, or -1 when the answer does not say
 * (absent or null), so that a deny rule never passes on missing data. */
static tg_err_t
get_flag(json_t *obj, const char *key, int *out, tg_diag_t *diag)
{
    json_t *v = json_object_get(obj, key);

    *out = -1;
    if (v == NULL || json_is_null(v)) {
        return TG_OK;
    }
    if (!json_is_boolean(v)) {
        return tg__fail(diag, TG_PROTOCOL, "%s in the answer is not a boolean",
                        key);
    }
    *out = json_is_true(v);
    return TG_OK;
}

/* An optional integer (absent or null: 0). */
static tg_err_t
get_int(json_t *obj, const char *key, int64_t *out, tg_diag_t *diag)
{
    json_t *v = json_object_get(obj, key);

    *out = 0;
    if (v == NULL || json_is_null(v)) {
        return TG_OK;
    }
    if (!json_is_integer(v)) {
        return tg__fail(diag, TG_PROTOCOL, "%s in the answer is not an integer",
                        key);
    }
    *out = (int64_t) json_integer_value(v);
    return TG_OK;
}

/* An id: a string, or (allow_int) a non-negative integer in decimal. */
static tg_err_t
take_id(json_t *obj, const char *key, int allow_int, int required, char **dst,
        tg_diag_t *diag)
{
    json_t *v = json_object_get(obj, key);
    char num[TG_INT_TEXT_MAX];
    const char *val = NULL;
    size_t len = 0;
    tg_err_t err;

    if (allow_int && json_is_integer(v)) {
        if (json_integer_value(v) < 0) {
            return tg__fail(diag, TG_PROTOCOL, "%s in the answer is negative",
                            key);
        }
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
                 json_integer_value(v));
        val = num;
        len = strlen(num);
    } else {
        err = get_string(obj, key, &val, &len, diag);
        if (err != TG_OK) {
            return err;
        }
    }
    if (required && len == 0) {
        return tg__fail(diag, TG_PROTOCOL, "no user id in the answer");
    }
    free(*dst);
    *dst = tg__strdup(val);
    if (*dst == NULL) {
        return tg__fail(diag, TG_NOMEM, "out of memory");
    }
    return TG_OK;
}

/* How many entries a group array has (0 when absent or not an array; the
 * type error is reported by add_groups). */
static size_t
array_size(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);

    return json_is_array(v) ? json_array_size(v) : 0;
}

/*
 * Append obj[key] (an array of strings, or of ids when allow_int) to the
 * identity's groups, each with prefix.  id->groups has room for every entry
 * (the caller sized it); null and empty entries are skipped.
 */
static tg_err_t
add_groups(tg_identity_t *id, json_t *obj, const char *key, const char *prefix,
           int allow_int, tg_diag_t *diag)
{
    json_t *arr = json_object_get(obj, key), *v;
    char num[TG_INT_TEXT_MAX];
    const char *s;
    size_t i, len, plen = strlen(prefix);
    char *g;
    tg_err_t err;

    if (arr == NULL || json_is_null(arr)) {
        return TG_OK;
    }
    if (!json_is_array(arr)) {
        return tg__fail(diag, TG_PROTOCOL, "%s in the answer is not an array",
                        key);
    }
    json_array_foreach(arr, i, v)
    {
        if (json_is_null(v)) {
            continue;
        }
        if (json_is_string(v)) {
            s = json_string_value(v);
            len = json_string_length(v);
        } else if (allow_int && json_is_integer(v) &&
                   json_integer_value(v) >= 0) {
            snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
                     json_integer_value(v));
            s = num;
            len = strlen(num);
        } else {
            return tg__fail(diag, TG_PROTOCOL,
                            "%s[%zu] in the answer is not %s", key, i,
                            allow_int ? "an id" : "a string");
        }
        if (len == 0) {
            continue;
        }
        err = check_server_string(key, s, len, TG_GROUP_LEN_MAX - plen, diag);
        if (err != TG_OK) {
            return err;
        }
        g = malloc(plen + len + 1);
        if (g == NULL) {
            return tg__fail(diag, TG_NOMEM, "out of memory");
        }
        memcpy(g, prefix, plen);
        memcpy(g + plen, s, len + 1);
        id->groups[id->n_groups++] = g;
    }
    return TG_OK;
}

/* Every string of a returned identity is non-NULL. */
static tg_err_t
fill_empty(tg_identity_t *id, tg_diag_t *diag)
{
    char **fields[] = {&id->id,           &id->name,       &id->email,
                       &id->display_name, &id->first_name, &id->last_name};
    size_t i;

    for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        if (*fields[i] == NULL) {
            *fields[i] = tg__strdup("");
            if (*fields[i] == NULL) {
                return tg__fail(diag, TG_NOMEM, "out of memory");
            }
        }
    }
    return TG_OK;
}

/* n fixed digits at *pos. */
static int
read_digits(const char *s, size_t len, size_t *pos, int n, int *out)
{
    int v = 0, k;

    if (len - *pos < (size_t) n) {
        return 0;
    }
    for (k = 0; k < n; k++) {
        char c = s[*pos + (size_t) k];
        if (c < '0' || c > '9') {
            return 0;
        }
        v = v * 10 + (c - '0');
    }
    *pos += (size_t) n;
    *out = v;
    return 1;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static long long
days_from_civil(int y, int m, int d)
{
    long long era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/*
 * ISO-8601 / RFC 3339: YYYY-MM-DD[T ]HH:MM[:SS[.frac]][Z | +HH:MM | +HHMM |
 * +HH]; no offset is read as UTC.  0 when it does not parse.
 */
static time_t
parse_iso8601(const char *s, size_t len)
{
    static const int mdays[12] = {31, 29, 31, 30, 31, 30,
                                  31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, sec = 0, oh = 0, om = 0, sign = 0;
    size_t pos = 0;
    long long t;

    if (!read_digits(s, len, &pos, 4, &y) || pos >= len || s[pos++] != '-' ||
        !read_digits(s, len, &pos, 2, &mo) || pos >= len || s[pos++] != '-' ||
        !read_digits(s, len, &pos, 2, &d) || pos >= len ||
        (s[pos] != 'T' && s[pos] != 't' && s[pos] != ' ')) {
        return 0;
    }
    pos++;
    if (!read_digits(s, len, &pos, 2, &h) || pos >= len || s[pos++] != ':' ||
        !read_digits(s, len, &pos, 2, &mi)) {
        return 0;
    }
    if (pos < len && s[pos] == ':') {
        pos++;
        if (!read_digits(s, len, &pos, 2, &sec)) {
            return 0;
        }
        if (pos < len && (s[pos] == '.' || s[pos] == ',')) {
            pos++;
            if (pos >= len || s[pos] < '0' || s[pos] > '9') {
                return 0;
            }
            while (pos < len && s[pos] >= '0' && s[pos] <= '9') {
                pos++;
            }
        }
    }
    if (pos < len && (s[pos] == 'Z' || s[pos] == 'z')) {
        pos++;
    } else if (pos < len && (s[pos] == '+' || s[pos] == '-')) {
        sign = s[pos] == '+' ? 1 : -1;
        pos++;
        if (!read_digits(s, len, &pos, 2, &oh)) {
            return 0;
        }
        if (pos < len && s[pos] == ':') {
            pos++;
            if (!read_digits(s, len, &pos, 2, &om)) {
                return 0;
            }
        } else if (pos < len && !read_digits(s, len, &pos, 2, &om)) {
            return 0;
        }
    }
    if (pos != len || y < 1970 || mo < 1 || mo > 12 || d < 1 ||
        d > mdays[mo - 1] || h > 23 || mi > 59 || sec > 60 || oh > 23 ||
        om > 59) {
        return 0;
    }
    if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) {
        return 0;
    }
    if (sec == 60) {
        sec = 59; /* a leap second: as good as the second before */
    }
    t = days_from_civil(y, mo, d) * 86400LL + h * 3600LL + mi * 60LL + sec;
    t -= sign * (oh * 3600LL + om * 60LL);
    return (t > 0 && t <= TG_EPOCH_MAX) ? (time_t) t : 0;
}

/*
 * access_token_expiration_time: its format is not documented (api-spec A.6),
 * so we read ISO-8601, or epoch seconds (milliseconds above 1e11) as a
 * number or a digit string.  Anything else is "unknown" (0), not an error.
 */
static time_t
parse_expiry(json_t *v)
{
    long long t = 0;
    const char *s;
    size_t len, i;

    if (json_is_integer(v)) {
        t = json_integer_value(v);
    } else if (json_is_real(v)) {
        double r = json_real_value(v);
        if (!isfinite(r) || r <= 0 || r > 1e15) {
            return 0;
        }
        t = (long long) r;
    } else if (json_is_string(v)) {
        s = json_string_value(v);
        len = json_string_length(v);
        if (len == 0 || len > TG_EXPIRY_TEXT_MAX) {
            return 0;
        }
        for (i = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        }
        if (i < len) {
            return parse_iso8601(s, len);
        }
        if (len > 15) {
            return 0;
        }
        for (i = 0; i < len; i++) {
            t = t * 10 + (s[i] - '0');
        }
    } else {
        return 0;
    }
    if (t >= TG_EPOCH_MS_MIN) {
        t /= 1000;
    }
    return (t > 0 && t <= TG_EPOCH_MAX) ? (time_t) t : 0;
}

static tg_err_t
identity_new(tg_identity_t **out, tg_diag_t *diag)
{
    *out = calloc(1, sizeof(**out));
    if (*out == NULL) {
        return tg__fail(diag, TG_NOMEM, "out of memory");
    }
    return TG_OK;
}

/*
 * insight GET auth/user, UserTokenInfoV1 {uid, mail, cn,
 * access_token_expiration_time} (A.6).  One token must give one identity
 * whichever insight call validated it, so each field takes the meaning it
 * has in auth/currentuser: id = uid (required, as currentuser's id is: an
 * email or a name standing in for it would change $tokengate_user_id and
 * an id binding with the call), email = mail, name = cn (the login name;
 * currentuser has none), expiry; no display name (this call carries no
 * human name, currentuser's displayName is it).
 */
static tg_err_t
parse_insight_user(json_t *root, tg_identity_t *id, tg_diag_t *diag)
{
    tg_err_t err;

    err = take_id(root, "uid", 0, 1, &id->id, diag);
    if (err == TG_OK) {
        err = take_string(root, "mail", &id->email, diag);
    }
    if (err == TG_OK) {
        err = take_string(root, "cn", &id->name, diag);
    }
    if (err != TG_OK) {
        return err;
    }
    id->expires_at =
        parse_expiry(json_object_get(root, "access_token_expiration_time"));
    return TG_OK;
}

/*
 * How a flavor names its user profile's fields: insight GET
 * auth/currentuser, UserProfileV1 (A.1), and looker GET /user, User (B).
 */
typedef struct tg_profile_names {
    int numeric;              /* ids may be JSON integers (looker) */
    int name_is_display;      /* no login name: the display name stands in
                                 for it (looker); else name stays "" */
    const char *first_name;
    const char *last_name;
    const char *display_name;
    const char *flag;         /* the evaluation or the disabled flag */
    int flag_is_disabled;
    const char *groups;       /* copied as they are */
    const char *groups2;      /* copied with prefix2 */
    const char *prefix2;
} tg_profile_names_t;

static const tg_profile_names_t tg_insight_profile = {
    0, 0, "firstName", "lastName", "displayName", "evaluationUser", 0,
    "authorities", "authorityGroups", ""};
static const tg_profile_names_t tg_looker_user = {
    1, 1, "first_name", "last_name", "display_name", "is_disabled", 1,
    "group_ids", "role_ids", "role:"};

/* A user profile of either flavor into id (has_profile set). */
static tg_err_t
parse_profile_fields(json_t *root, const tg_profile_names_t *nm,
                     tg_identity_t *id, tg_diag_t *diag)
{
    size_t n;
    tg_err_t err;

    err = take_id(root, "id", nm->numeric, 1, &id->id, diag);
    if (err == TG_OK) {
        err = take_string(root, nm->first_name, &id->first_name, diag);
    }
    if (err == TG_OK) {
        err = take_string(root, nm->last_name, &id->last_name, diag);
    }
    if (err == TG_OK) {
        err = take_string(root, nm->display_name, &id->display_name, diag);
    }
    if (err == TG_OK) {
        err = take_string(root, "email", &id->email, diag);
    }
    if (err == TG_OK) {
        err = get_flag(root, nm->flag,
                       nm->flag_is_disabled ? &id->disabled : &id->evaluation,
                       diag);
    }
    if (err != TG_OK) {
        return err;
    }
    /* Insight's profile has no login name (auth/user's cn is it): "" says
     * unknown, rather than a display name that would make the name, and a
     * cn binding, depend on which call validated the token. */
    id->name = tg__strdup(nm->name_is_display ? id->display_name : "");
    if (id->name == NULL) {
        return tg__fail(diag, TG_NOMEM, "out of memory");
    }
    n = array_size(root, nm->groups) + array_size(root, nm->groups2);
    if (n > TG_GROUPS_MAX) {
        return tg__fail(diag, TG_PROTOCOL, "more than %d groups in the answer",
                        TG_GROUPS_MAX);
    }
    if (n > 0) {
        id->groups = calloc(n, sizeof(*id->groups));
        if (id->groups == NULL) {
            return tg__fail(diag, TG_NOMEM, "out of memory");
        }
    }
    err = add_groups(id, root, nm->groups, "", nm->numeric, diag);
    if (err == TG_OK) {
        err = add_groups(id, root, nm->groups2, nm->prefix2, nm->numeric,
                         diag);
    }
    id->has_profile = 1;
    return err;
}

/* Decode an identity answer into a new identity; *out only on success. */
static tg_err_t
parse_identity(const tg_config_t *cfg, const tg_response_t *resp,
               tg_call_t call, int insight_user, tg_identity_t **out,
               tg_diag_t *diag)
{
    json_t *root = NULL;
    tg_identity_t *id = NULL;
    tg_err_t err;

    err = load_json_answer(cfg, resp, call, &root, diag);
    if (err != TG_OK) {
        goto out;
    }
    err = identity_new(&id, diag);
    if (err != TG_OK) {
        goto out;
    }
    /* Flags a flavor has no notion of are known to be 0: Looker has no
     * evaluation users, and insight has no disabled flag (a disabled user
     * cannot obtain or use a token).  GET auth/user says nothing about
     * evaluation: unknown (-1) until a profile is merged. */
    if (cfg->api == TG_API_LOOKER) {
        id->evaluation = 0;
        err = parse_profile_fields(root, &tg_looker_user, id, diag);
    } else if (insight_user) {
        id->evaluation = -1;
        id->disabled = 0;
        err = parse_insight_user(root, id, diag);
    } else {
        id->disabled = 0;
        err = parse_profile_fields(root, &tg_insight_profile, id, diag);
    }
    if (err == TG_OK) {
        err = fill_empty(id, diag);
    }
    if (err == TG_OK) {
        *out = id;
        id = NULL;
    }

out:
    tg_identity_free(id);
    json_decref(root);
    return err;
}

tg_err_t
tg_parse_validate(const tg_config_t *cfg, const tg_response_t *resp,
                  tg_insight_validate_t which, tg_identity_t **out,
                  tg_diag_t *diag)
{
    tg_err_t err;

    if (out != NULL) {
        *out = NULL;
    }
    err = parse_begin(cfg, resp, out, diag);
    if (err != TG_OK) {
        return err;
    }
    if (cfg->api == TG_API_INSIGHT && which != TG_INSIGHT_VALIDATE_USER &&
        which != TG_INSIGHT_VALIDATE_CURRENTUSER) {
        return tg__fail(diag, TG_INPUT,
                        "validate needs which = user or currentuser");
    }
    return parse_identity(cfg, resp, TG_CALL_VALIDATE,
                          which == TG_INSIGHT_VALIDATE_USER, out, diag);
}

tg_err_t
tg_parse_profile(const tg_config_t *cfg, const tg_response_t *resp,
                 tg_identity_t **out, tg_diag_t *diag)
{
    tg_err_t err;

    if (out != NULL) {
        *out = NULL;
    }
    err = parse_begin(cfg, resp, out, diag);
    if (err != TG_OK) {
        return err;
    }
    return parse_identity(cfg, resp, TG_CALL_PROFILE, 0, out, diag);
}

/* ---------------------------------------------------------------------- */
/* Credentials, logout, session                                           */
/* ---------------------------------------------------------------------- */

void
tg_credentials_clear(tg_credentials_t *c)
{
    if (c == NULL) {
        return;
    }
    free(c->client_id);
    tg_secret_free(c->secret);
    memset(c, 0, sizeof(*c));
}

void
tg_session_clear(tg_session_t *s)
{
    if (s == NULL) {
        return;
    }
    free(s->workspace_id);
    free(s->sudo_user_id);
    memset(s, 0, sizeof(*s));
}

/* An answer with nothing to read (204, or a tolerated 200): a 204 must
 * have no body, and any body must fit the size cap. */
static tg_err_t
check_empty_answer(const tg_config_t *cfg, const tg_response_t *resp,
                   tg_call_t call, tg_diag_t *diag)
{
    tg_err_t err;

    err = check_status(cfg, resp, call, diag);
    if (err != TG_OK) {
        return err;
    }
    if (resp->status == 204 && resp->body_len > 0) {
        return tg__fail(diag, TG_PROTOCOL, "HTTP 204 with a body");
    }
    return check_size(cfg, resp, diag);
}

/* A credential from the server: a string that passes tg_credential_check;
 * stored as a secret (wiped on free). */
static tg_err_t
take_credential(json_t *root, const char *key, const char *what, char **dst,
                tg_diag_t *diag)
{
    json_t *v = json_object_get(root, key);

    if (v == NULL || json_is_null(v)) {
        return tg__fail(diag, TG_PROTOCOL, "no %s in the answer", key);
    }
    if (!json_is_string(v)) {
        return tg__fail(diag, TG_PROTOCOL, "%s in the answer is not a string",
                        key);
    }
    if (strlen(json_string_value(v)) != json_string_length(v) ||
        tg_credential_check(json_string_value(v), what, NULL) != TG_OK) {
        return tg__fail(diag, TG_PROTOCOL,
                        "the server's %s is empty, too long or has invalid "
                        "bytes",
                        what);
    }
    *dst = tg_secret_dup(json_string_value(v));
    if (*dst == NULL) {
        return tg__fail(diag, TG_NOMEM, "out of memory");
    }
    return TG_OK;
}

tg_err_t
tg_parse_credentials(const tg_config_t *cfg, const tg_response_t *resp,
                     tg_creds_op_t op, tg_credentials_t *out, tg_diag_t *diag)
{
    static const tg_credentials_t none;
    json_t *root = NULL;
    tg_call_t call;
    tg_err_t err;

    if (out != NULL) {
        memset(out, 0, sizeof(*out));
    }
    /* revoke has nothing to return, so out may be NULL there. */
    err = parse_begin(cfg, resp, op == TG_CREDS_REVOKE ? &none : out, diag);
    if (err != TG_OK) {
        return err;
    }
    err = require_api(cfg, TG_API_INSIGHT, "credentials are", diag);
    if (err != TG_OK) {
        goto out;
    }
    switch (op) {
    case TG_CREDS_SHOW:
        call = TG_CALL_CREDS_SHOW;
        break;
    case TG_CREDS_NEW:
        call = TG_CALL_CREDS_NEW;
        break;
    case TG_CREDS_REVOKE:
        err = check_empty_answer(cfg, resp, TG_CALL_CREDS_REVOKE, diag);
        goto out;
    default:
        err = tg__fail(diag, TG_INPUT, "unknown credentials operation %d",
                       (int) op);
        goto out;
    }

    err = load_json_answer(cfg, resp, call, &root, diag);
    if (err == TG_OK) {
        err = get_int(root, "createdDate", &out->created_ms, diag);
    }
    if (err == TG_OK) {
        err = get_int(root, "credentialsId", &out->credentials_id, diag);
    }
    if (err != TG_OK) {
        goto out;
    }
    if (op == TG_CREDS_SHOW) {
        out->client_id = tg__strdup("");
        out->secret = tg__strdup("");
        if (out->client_id == NULL || out->secret == NULL) {
            err = tg__fail(diag, TG_NOMEM, "out of memory");
        }
        goto out;
    }

    /* new: clientId and secret, checked like the ones we send (F14),
     * and never quoted. */
    err = take_credential(root, "clientId", "client id", &out->client_id, diag);
    if (err == TG_OK) {
        err = take_credential(root, "secret", "secret", &out->secret, diag);
    }

out:
    if (root != NULL) {
        wipe_json_string(json_object_get(root, "secret"));
    }
    json_decref(root);
    if (err != TG_OK) {
        tg_credentials_clear(out);
    }
    return err;
}

tg_err_t
tg_parse_logout(const tg_config_t *cfg, const tg_response_t *resp,
                tg_diag_t *diag)
{
    tg_err_t err;

    err = parse_begin(cfg, resp, resp, diag);
    if (err != TG_OK) {
        return err;
    }
    err = require_api(cfg, TG_API_LOOKER, "logout is", diag);
    if (err != TG_OK) {
        return err;
    }
    return check_empty_answer(cfg, resp, TG_CALL_LOGOUT, diag);
}

tg_err_t
tg_parse_session(const tg_config_t *cfg, const tg_response_t *resp,
                 tg_session_t *out, tg_diag_t *diag)
{
    json_t *root = NULL, *can;
    tg_err_t err;

    if (out != NULL) {
        memset(out, 0, sizeof(*out));
    }
    err = parse_begin(cfg, resp, out, diag);
    if (err != TG_OK) {
        return err;
    }
    err = require_api(cfg, TG_API_LOOKER, "sessions are", diag);
    if (err == TG_OK) {
        err = load_json_answer(cfg, resp, TG_CALL_SESSION, &root, diag);
    }
    if (err != TG_OK) {
        goto out;
    }
    can = json_object_get(root, "can");
    if (can != NULL && !json_is_null(can) && !json_is_object(can)) {
        err = tg__fail(diag, TG_PROTOCOL, "can in the answer is not an object");
        goto out;
    }
    err = take_string(root, "workspace_id", &out->workspace_id, diag);
    if (err == TG_OK) {
        err = take_id(root, "sudo_user_id", 1, 0, &out->sudo_user_id, diag);
    }

out:
    json_decref(root);
    if (err != TG_OK) {
        tg_session_clear(out);
    }
    return err;
}

/* ---------------------------------------------------------------------- */
/* Looker signed embedding, signed by the server (B.6)                    */
/* ---------------------------------------------------------------------- */

/* Set key to value (stolen, may be NULL); 0 on failure. */
static int
put(json_t *obj, const char *key, json_t *value)
{
    return json_object_set_new(obj, key, value) == 0;
}

/*
 * EmbedSsoParams: target_url = SCHEME://HOST + embed_path, and the grants
 * as given; the optional ones only when given, as in a local signature
 * (tokengate.h).  NULL on allocation failure.
 */
static json_t *
embed_sso_body(const tg_embed_params_t *p)
{
    const char *scheme = p->scheme != NULL ? p->scheme : "https";
    json_t *body = json_object(), *attrs = NULL;
    const tg_embed_attr_t *a = p->user_attributes;
    char *target;
    size_t len, i;
    int ok;

    len = strlen(scheme) + 3 + strlen(p->host) + strlen(p->embed_path);
    target = malloc(len + 1);
    ok = body != NULL && target != NULL;
    if (ok) {
        snprintf(target, len + 1, "%s://%s%s", scheme, p->host, p->embed_path);
    }
    ok = ok && put(body, "target_url", json_string(target));
    ok = ok && put(body, "session_length", json_integer(p->session_length));
    ok = ok &&
         put(body, "force_logout_login", json_boolean(p->force_logout_login));
    ok = ok && put(body, "external_user_id", json_string(p->external_user_id));
    ok = ok && put(body, "permissions",
                   tg__json_string_list(p->permissions, p->n_permissions));
    ok =
        ok && put(body, "models", tg__json_string_list(p->models, p->n_models));
    if (ok && p->first_name != NULL) {
        ok = put(body, "first_name", json_string(p->first_name));
    }
    if (ok && p->last_name != NULL) {
        ok = put(body, "last_name", json_string(p->last_name));
    }
    if (ok && p->user_timezone != NULL) {
        ok = put(body, "user_timezone", json_string(p->user_timezone));
    }
    if (ok && p->n_group_ids > 0) {
        ok = put(body, "group_ids",
                 tg__json_string_list(p->group_ids, p->n_group_ids));
    }
    if (ok && p->external_group_id != NULL) {
        ok = put(body, "external_group_id", json_string(p->external_group_id));
    }
    if (ok && p->n_user_attributes > 0) {
        attrs = json_object();
        ok = put(body, "user_attributes", attrs);
        for (i = 0; ok && i < p->n_user_attributes; i++) {
            ok = put(attrs, a[i].key, json_string(a[i].value));
        }
    }
    free(target);
    if (!ok) {
        json_decref(body);
        return NULL;
    }
    return body;
}

tg_err_t
tg_build_embed_sso_url(const tg_config_t *cfg, const char *token,
                       const tg_embed_params_t *p, tg_request_t *req,
                       tg_diag_t *diag)
{
    json_t *body = NULL;
    tg_err_t err;

    err = build_begin(cfg, req, diag);
    if (err != TG_OK) {
        return err;
    }
    err = require_api(cfg, TG_API_LOOKER, "signed embedding is", diag);
    if (err == TG_OK) {
        err = tg_token_check(token, diag);
    }
    if (err == TG_OK) {
        err = tg_embed_params_check(p, diag);
    }
    if (err == TG_OK) {
        err =
            build_authed(cfg, token, "POST", "/embed/sso_url", NULL, req, diag);
    }
    if (err != TG_OK) {
        goto out;
    }
    body = embed_sso_body(p);
    if (body == NULL) {
        err = tg__fail(diag, TG_NOMEM, "out of memory");
        goto out;
    }
    err = dump_body(body, req, diag);

out:
    json_decref(body);
    if (err != TG_OK) {
        tg_request_clear(req);
    }
    return err;
}

/* The signed URL: an absolute http(s) URL of printable ASCII, bounded.
 * It works once, like a password: never quoted, kept as a secret. */
static tg_err_t
take_embed_url(json_t *v, char **url, tg_diag_t *diag)
{
    const char *s;
    size_t len, i;

    if (v == NULL || json_is_null(v)) {
        return tg__fail(diag, TG_PROTOCOL, "no url in the answer");
    }
    if (!json_is_string(v)) {
        return tg__fail(diag, TG_PROTOCOL, "url in the answer is not a string");
    }
    s = json_string_value(v);
    len = json_string_length(v);
    if (len > TG_EMBED_ANSWER_URL_MAX) {
        return tg__fail(diag, TG_PROTOCOL,
                        "url in the answer is longer than %d bytes",
                        TG_EMBED_ANSWER_URL_MAX);
    }
    for (i = 0; i < len; i++) {
        if ((unsigned char) s[i] <= 0x20 || (unsigned char) s[i] >= 0x7f) {
            return tg__fail(diag, TG_PROTOCOL,
                            "url in the answer has a byte that is not "
                            "printable ASCII at offset %zu",
                            i);
        }
    }
    if (strncasecmp(s, "https://", 8) != 0 &&
        strncasecmp(s, "http://", 7) != 0) {
        return tg__fail(diag, TG_PROTOCOL,
                        "url in the answer is not an http(s) URL");
    }
    *url = tg_secret_dup(s);
    if (*url == NULL) {
        return tg__fail(diag, TG_NOMEM, "out of memory");
    }
    return TG_OK;
}

tg_err_t
tg_parse_embed_sso_url(const tg_config_t *cfg, const tg_response_t *resp,
                       char **url, tg_diag_t *diag)
{
    json_t *root = NULL;
    tg_err_t err;

    if (url != NULL) {
        *url = NULL;
    }
    err = parse_begin(cfg, resp, url, diag);
    if (err != TG_OK) {
        return err;
    }
    err = require_api(cfg, TG_API_LOOKER, "signed embedding is", diag);
    if (err == TG_OK) {
        err = load_json_answer(cfg, resp, TG_CALL_EMBED_SSO_URL, &root, diag);
    }
    if (err == TG_OK) {
        err = take_embed_url(json_object_get(root, "url"), url, diag);
    }
    if (root != NULL) {
        wipe_json_string(json_object_get(root, "url"));
    }
    json_decref(root);
    return err;
}
