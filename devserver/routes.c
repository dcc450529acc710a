/* SPDX-License-Identifier: MIT */
/*
 * routes.c - the two APIs as specified in docs/api-spec.md: FICO Xpress
 * Insight v1 under /insightservices/rest/v1 (sections A.1-A.6) and Looker
 * under /api/4.0 and /api/3.1 (sections B.1-B.6), plus Looker's browser
 * paths for signed embedding, /login/embed/ and /embed/ (section C; the
 * handlers are in embed.c).  Each handler reads the
 * request and fills a ds_reply; faults.c decides whether a fault replaces
 * or alters it.
 */
#include "devserver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define INSIGHT_BASE "/insightservices/rest/v1"
#define LOOKER_BASE "/api/"
/* Length of a Looker version segment ("4.0", "3.1"). */
#define LOOKER_VERSION_LEN 3
/* Longest Looker user id in a path: 19 digits fit an int64. */
#define USER_ID_MAX 19

enum route {
    R_NONE,
    R_INS_TOKEN,
    R_INS_USER,
    R_INS_CURRENTUSER,
    R_INS_CREDENTIALS,
    R_LK_LOGIN,
    R_LK_SUDO,
    R_LK_USER,
    R_LK_LOGOUT,
    R_LK_SESSION,
    R_LK_SSO_URL,
    R_EMBED_LOGIN,
    R_EMBED_PAGE
};

struct route_def {
    enum route route;
    enum ds_flavor flavor;
    enum ds_endpoint ep;
    const char *path; /* after the base (and version); top: a prefix */
    const char *allow;
    int top; /* a browser path outside the API bases */
};

struct auth_header {
    int count;
    const char *value;
};

typedef void handler_fn(struct ds_request *req, const char *url,
                        const char *method, struct ds_reply *r);

static const struct route_def *route_find(enum route route);
static int method_allowed(const char *allow, const char *method);
static handler_fn ins_token;
static handler_fn ins_user;
static handler_fn ins_currentuser;
static handler_fn ins_credentials;
static handler_fn lk_login;
static handler_fn lk_sudo;
static handler_fn lk_user;
static handler_fn lk_logout;
static handler_fn lk_session;
static handler_fn lk_sso_url;
static int authenticate(struct ds_request *req, struct ds_reply *r,
                        struct ds_token_info *info, const char **token,
                        size_t *token_len);
static int authenticate_admin(struct ds_request *req, struct ds_reply *r,
                              struct ds_token_info *info);
static enum MHD_Result count_auth(void *cls, enum MHD_ValueKind kind,
                                  const char *key, const char *value);
static int is_b64token(const char *s, size_t len);
static int media_type_is(struct MHD_Connection *conn, const char *want);
static int form_get(const char *body, size_t len, const char *name, char **out,
                    size_t *out_len);
static void iso8601(int64_t t, char *buf, size_t size);
static json_t *looker_access_token(const char *token, int64_t lifetime);
static json_t *looker_session(const struct ds_token_info *info);
static void looker_validation_error(struct ds_reply *r, const char *field,
                                    const char *message);
static void secret_wipe(json_t *s);

static const struct route_def routes[] = {
    {R_INS_TOKEN, DS_FLAVOR_INSIGHT, DS_EP_TOKEN, "/auth/token", "POST", 0},
    {R_INS_USER, DS_FLAVOR_INSIGHT, DS_EP_VALIDATE, "/auth/user", "GET", 0},
    {R_INS_CURRENTUSER, DS_FLAVOR_INSIGHT, DS_EP_PROFILE, "/auth/currentuser",
     "GET", 0},
    {R_INS_CREDENTIALS, DS_FLAVOR_INSIGHT, DS_EP_CREDENTIALS,
     "/auth/currentuser/credentials", "GET, POST, DELETE", 0},
    {R_LK_LOGIN, DS_FLAVOR_LOOKER, DS_EP_TOKEN, "/login", "POST", 0},
    {R_LK_SUDO, DS_FLAVOR_LOOKER, DS_EP_SUDO, "/login/", "POST", 0},
    {R_LK_USER, DS_FLAVOR_LOOKER, DS_EP_VALIDATE, "/user", "GET", 0},
    {R_LK_LOGOUT, DS_FLAVOR_LOOKER, DS_EP_LOGOUT, "/logout", "DELETE", 0},
    {R_LK_SESSION, DS_FLAVOR_LOOKER, DS_EP_SESSION, "/session", "GET, PATCH",
     0},
    {R_LK_SSO_URL, DS_FLAVOR_LOOKER, DS_EP_EMBED_SSO_URL, "/embed/sso_url",
     "POST", 0},
    {R_EMBED_LOGIN, DS_FLAVOR_LOOKER, DS_EP_EMBED_LOGIN, "/login/embed/", "GET",
     1},
    {R_EMBED_PAGE, DS_FLAVOR_LOOKER, DS_EP_EMBED_PAGE, "/embed/", "GET", 1},
};

#define N_ROUTES (sizeof(routes) / sizeof(routes[0]))

static handler_fn *const handlers[] = {
    [R_INS_TOKEN] = ins_token,
    [R_INS_USER] = ins_user,
    [R_INS_CURRENTUSER] = ins_currentuser,
    [R_INS_CREDENTIALS] = ins_credentials,
    [R_LK_LOGIN] = lk_login,
    [R_LK_SUDO] = lk_sudo,
    [R_LK_USER] = lk_user,
    [R_LK_LOGOUT] = lk_logout,
    [R_LK_SESSION] = lk_session,
    [R_LK_SSO_URL] = lk_sso_url,
    [R_EMBED_LOGIN] = ds__embed_login,
    [R_EMBED_PAGE] = ds__embed_page,
};

/*
 * Set req->route, ->ep and ->flavor from the path (already %-decoded by
 * libmicrohttpd, without the query).  Paths under neither base nor a
 * browser path answer in the Insight error format.
 */
void
ds__route_classify(struct ds_request *req, const char *url)
{
    const char *rest = NULL;
    size_t i;

    req->route = R_NONE;
    req->ep = DS_EP_OTHER;
    req->flavor = DS_FLAVOR_INSIGHT;
    for (i = 0; i < N_ROUTES; i++) {
        if (routes[i].top &&
            strncmp(url, routes[i].path, strlen(routes[i].path)) == 0) {
            req->route = routes[i].route;
            req->ep = routes[i].ep;
            req->flavor = routes[i].flavor;
            return;
        }
    }
    if (strncmp(url, INSIGHT_BASE "/", strlen(INSIGHT_BASE "/")) == 0) {
        rest = url + strlen(INSIGHT_BASE);
    } else if (strncmp(url, LOOKER_BASE, strlen(LOOKER_BASE)) == 0) {
        req->flavor = DS_FLAVOR_LOOKER;
        rest = url + strlen(LOOKER_BASE);
        if ((strncmp(rest, "4.0/", 4) != 0 && strncmp(rest, "3.1/", 4) != 0)) {
            return; /* other versions do not exist here: 404 */
        }
        rest += LOOKER_VERSION_LEN;
    }
    if (rest == NULL) {
        return;
    }
    for (i = 0; i < N_ROUTES; i++) {
        const struct route_def *d = &routes[i];

        if (d->flavor != req->flavor || d->top) {
            continue;
        }
        if (d->route == R_LK_SUDO) {
            /* /login/{user_id}: one non-empty segment. */
            if (strncmp(rest, d->path, strlen(d->path)) == 0 &&
                rest[strlen(d->path)] != '\0' &&
                strchr(rest + strlen(d->path), '/') == NULL) {
                break;
            }
        } else if (strcmp(rest, d->path) == 0) {
            break;
        }
    }
    if (i < N_ROUTES) {
        req->route = routes[i].route;
        req->ep = routes[i].ep;
    }
}

/* The last handler call of an API request: faults, then the route. */
enum MHD_Result
ds__route_answer(struct ds_request *req, const char *url, const char *method)
{
    struct ds_reply r = {0};
    const struct route_def *d;
    enum MHD_Result res = MHD_NO;

    if (req->rule != NULL) {
        switch (ds__fault_before(req, &res)) {
        case DS_FAULT_PASS:
            break;
        case DS_FAULT_QUEUED:
            return res;
        case DS_FAULT_SUSPENDED:
            return MHD_YES;
        case DS_FAULT_CLOSE:
            return MHD_NO;
        }
    }
    d = route_find(req->route);
    if (d == NULL) {
        ds__reply_flavor_error(&r, req->flavor, MHD_HTTP_NOT_FOUND, NULL);
    } else if (!method_allowed(d->allow, method)) {
        ds__reply_flavor_error(&r, req->flavor, MHD_HTTP_METHOD_NOT_ALLOWED,
                               NULL);
        r.allow = d->allow;
    } else {
        handlers[d->route](req, url, method, &r);
    }
    return ds__fault_reply(req, &r);
}

static const struct route_def *
route_find(enum route route)
{
    size_t i;

    for (i = 0; i < N_ROUTES; i++) {
        if (routes[i].route == route) {
            return &routes[i];
        }
    }
    return NULL;
}

/* Is method in allow ("GET, POST")?  Exact, case-sensitive (RFC 9110). */
static int
method_allowed(const char *allow, const char *method)
{
    size_t n = strlen(method);
    const char *p = allow;

    while (p != NULL && *p != '\0') {
        if (strncmp(p, method, n) == 0 && (p[n] == ',' || p[n] == '\0')) {
            return 1;
        }
        p = strchr(p, ',');
        if (p != NULL) {
            p += strspn(p, ", ");
        }
    }
    return 0;
}

/* ------------------------------------------------------------- Insight */

/* A.5: POST /auth/token {clientId, secret, maxAge} -> the raw token. */
static void
ins_token(struct ds_request *req, const char *url, const char *method,
          struct ds_reply *r)
{
    const struct ds_user *user = NULL;
    char token[DS_TOKEN_SIZE] = "";
    json_t *doc = NULL;
    json_t *cid;
    json_t *secret = NULL;
    json_t *age;
    int64_t lifetime = ds__opt.insight_max_age;
    int64_t expires;
    enum ds_login_result lr;

    (void) url;
    (void) method;
    if (!media_type_is(req->conn, "application/json")) {
        ds__reply_flavor_error(r, DS_FLAVOR_INSIGHT,
                               MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
                               "Content-Type must be application/json");
        goto out;
    }
    doc = ds__json_body(req, DS_FLAVOR_INSIGHT, r);
    if (doc == NULL) {
        goto out;
    }
    cid = json_object_get(doc, "clientId");
    secret = json_object_get(doc, "secret");
    age = json_object_get(doc, "maxAge");
    if (!json_is_string(cid) || !json_is_string(secret)) {
        ds__reply_flavor_error(r, DS_FLAVOR_INSIGHT, MHD_HTTP_BAD_REQUEST,
                               "clientId and secret must be strings");
        goto out;
    }
    if (age != NULL && !json_is_null(age)) {
        if (!json_is_integer(age) || json_integer_value(age) <= 0) {
            ds__reply_flavor_error(r, DS_FLAVOR_INSIGHT, MHD_HTTP_BAD_REQUEST,
                                   "maxAge must be a positive integer");
            goto out;
        }
        if (json_integer_value(age) < lifetime) {
            lifetime = json_integer_value(age);
        }
    }
    lr =
        ds__login(json_string_value(cid), json_string_length(cid),
                  json_string_value(secret), json_string_length(secret), &user);
    if (lr != DS_LOGIN_OK) {
        ds__reply_flavor_error(r, DS_FLAVOR_INSIGHT, MHD_HTTP_UNAUTHORIZED,
                               lr == DS_LOGIN_DISABLED
                                   ? "Account is disabled"
                                   : "Invalid client credentials");
        goto out;
    }
    if (ds__token_issue(user, DS_FLAVOR_INSIGHT, lifetime, 0, token,
                        &expires) != 0) {
        ds__reply_flavor_error(r, DS_FLAVOR_INSIGHT,
                               MHD_HTTP_INTERNAL_SERVER_ERROR,
                               "Cannot issue a token");
        goto out;
    }
    if (ds__opt.insight_token_json) {
        ds__reply_json(r, MHD_HTTP_OK, json_string(token));
    } else {
        ds__reply_text(r, MHD_HTTP_OK, "text/plain", token, strlen(token));
    }
    r->no_store = 1;

out:
    explicit_bzero(token, sizeof(token));
    secret_wipe(secret);
    json_decref(doc);
}

/* A.6: GET /auth/user -> UserTokenInfoV1. */
static void
ins_user(struct ds_request *req, const char *url, const char *method,
         struct ds_reply *r)
{
    struct ds_token_info info;
    char when[32];

    (void) url;
    (void) method;
    if (authenticate(req, r, &info, NULL, NULL) != 0) {
        return;
    }
    iso8601(info.expires, when, sizeof(when));
    /* clang-format off */
    ds__reply_json(r, MHD_HTTP_OK,
                   json_pack("{sOsOsOss}",
                             "uid", info.user->id,
                             "mail", info.user->email,
                             "cn", info.user->username,
                             "access_token_expiration_time", when));
    /* clang-format on */
}

/* A.1: GET /auth/currentuser -> UserProfileV1. */
static void
ins_currentuser(struct ds_request *req, const char *url, const char *method,
                struct ds_reply *r)
{
    struct ds_token_info info;
    const struct ds_user *u;

    (void) url;
    (void) method;
    if (authenticate(req, r, &info, NULL, NULL) != 0) {
        return;
    }
    u = info.user;
    /* clang-format off */
    ds__reply_json(r, MHD_HTTP_OK,
                   json_pack("{sssOsOsOsOsOsssOsOsb}",
                             "objectType", "USER_PROFILE",
                             "id", u->id,
                             "firstName", u->first_name,
                             "lastName", u->last_name,
                             "displayName", u->display_name,
                             "authorities", u->authorities,
                             "url", INSIGHT_BASE "/auth/currentuser",
                             "email", u->email,
                             "authorityGroups", u->authority_groups,
                             "evaluationUser", u->evaluation));
    /* clang-format on */
}

/* A.2-A.4: GET, POST, DELETE /auth/currentuser/credentials. */
static void
ins_credentials(struct ds_request *req, const char *url, const char *method,
                struct ds_reply *r)
{
    struct ds_token_info info;
    struct ds_cred_info ci;
    char secret[DS_TOKEN_SIZE] = "";
    json_t *s = NULL;

    (void) url;
    if (authenticate(req, r, &info, NULL, NULL) != 0) {
        return;
    }
    if (strcmp(method, "GET") == 0) {
        ds__cred_get(info.user, &ci);
        if (!ci.present) {
            ds__reply_flavor_error(r, DS_FLAVOR_INSIGHT, MHD_HTTP_NOT_FOUND,
                                   "The current user has no REST API "
                                   "credentials");
            return;
        }
        ds__reply_json(r, MHD_HTTP_OK,
                       json_pack("{sIsI}", "createdDate",
                                 (json_int_t) ci.created_ms, "credentialsId",
                                 (json_int_t) ci.credentials_id));
    } else if (strcmp(method, "POST") == 0) {
        if (ds__cred_generate(info.user, &ci, secret, sizeof(secret)) != 0) {
            ds__reply_flavor_error(r, DS_FLAVOR_INSIGHT,
                                   MHD_HTTP_INTERNAL_SERVER_ERROR,
                                   "Cannot generate credentials");
            return;
        }
        s = json_string(secret);
        explicit_bzero(secret, sizeof(secret));
        /* clang-format off */
        ds__reply_json(r, MHD_HTTP_OK,
                       json_pack("{sssIsIsO}",
                                 "clientId", ci.client_id,
                                 "createdDate", (json_int_t) ci.created_ms,
                                 "credentialsId",
                                 (json_int_t) ci.credentials_id,
                                 "secret", s));
        /* clang-format on */
        r->no_store = 1;
        secret_wipe(s);
        json_decref(s);
    } else {
        ds__cred_delete(info.user);
        ds__reply_clear(r);
        r->status = MHD_HTTP_NO_CONTENT;
    }
}

/* -------------------------------------------------------------- Looker */

/* B.2: POST /login, form body client_id, client_secret. */
static void
lk_login(struct ds_request *req, const char *url, const char *method,
         struct ds_reply *r)
{
    const struct ds_user *user = NULL;
    char token[DS_TOKEN_SIZE] = "";
    char *id = NULL;
    char *secret = NULL;
    size_t id_len = 0;
    size_t secret_len = 0;
    int64_t expires;
    enum ds_login_result lr;
    int a = 1;
    int b = 1;

    (void) url;
    (void) method;
    if (media_type_is(req->conn, "application/x-www-form-urlencoded")) {
        a = form_get(req->body, req->body_len, "client_id", &id, &id_len);
        b = form_get(req->body, req->body_len, "client_secret", &secret,
                     &secret_len);
    }
    if (a < 0 || b < 0) {
        ds__reply_flavor_error(r, DS_FLAVOR_LOOKER, MHD_HTTP_BAD_REQUEST,
                               "Malformed form body");
        goto out;
    }
    if (a != 0 || b != 0) {
        ds__reply_flavor_error(r, DS_FLAVOR_LOOKER, MHD_HTTP_BAD_REQUEST,
                               "client_id and client_secret are required "
                               "form parameters");
        goto out;
    }
    lr = ds__login(id, id_len, secret, secret_len, &user);
    if (lr == DS_LOGIN_BAD) {
        ds__reply_flavor_error(r, DS_FLAVOR_LOOKER, MHD_HTTP_NOT_FOUND, NULL);
        goto out;
    }
    if (lr == DS_LOGIN_DISABLED) {
        ds__reply_flavor_error(r, DS_FLAVOR_LOOKER, MHD_HTTP_FORBIDDEN,
                               "Account is disabled");
        goto out;
    }
    if (ds__token_issue(user, DS_FLAVOR_LOOKER, ds__opt.looker_lifetime, 0,
                        token, &expires) != 0) {
        ds__reply_flavor_error(r, DS_FLAVOR_LOOKER,
                               MHD_HTTP_INTERNAL_SERVER_ERROR, NULL);
        goto out;
    }
    ds__reply_json(r, MHD_HTTP_OK,
                   looker_access_token(token, ds__opt.looker_lifetime));
    r->no_store = 1;

out:
    explicit_bzero(token, sizeof(token));
    if (secret != NULL) {
        explicit_bzero(secret, secret_len);
    }
    free(secret);
    free(id);
}

/* B.3: POST /login/{user_id}, admins only: a token acting as the user. */
static void
lk_sudo(struct ds_request *req, const char *url, const char *method,
        struct ds_reply *r)
{
    struct ds_token_info info;
    const struct ds_user *target;
    const char *id = strrchr(url, '/') + 1;
    char token[DS_TOKEN_SIZE] = "";
    int64_t expires;

    (void) method;
    if (authenticate_admin(req, r, &info) != 0) {
        return;
    }
    target = NULL;
    if (strlen(id) <= USER_ID_MAX && strspn(id, "0123456789") == strlen(id)) {
        target = ds__user_by_looker_id(id);
    }
    if (target == NULL) {
        ds__reply_flavor_error(r, DS_FLAVOR_LOOKER, MHD_HTTP_NOT_FOUND, NULL);
        return;
    }
    if (target->disabled) {
        ds__reply_flavor_error(r, DS_FLAVOR_LOOKER, MHD_HTTP_FORBIDDEN,
                               "Account is disabled");
        return;
    }
    if (ds__token_issue(target, DS_FLAVOR_LOOKER, ds__opt.looker_lifetime, 1,
                        token, &expires) != 0) {
        ds__reply_flavor_error(r, DS_FLAVOR_LOOKER,
                               MHD_HTTP_INTERNAL_SERVER_ERROR, NULL);
        return;
    }
    ds__reply_json(r, MHD_HTTP_OK,
                   looker_access_token(token, ds__opt.looker_lifetime));
    r->no_store = 1;
    explicit_bzero(token, sizeof(token));
}

/* GET /user: the current (effective) user, never a secret. */
static void
lk_user(struct ds_request *req, const char *url, const char *method,
        struct ds_reply *r)
{
    struct ds_token_info info;
    struct ds_cred_info ci;
    const struct ds_user *u;
    char self[64];
    json_t *creds;

    (void) method;
    if (authenticate(req, r, &info, NULL, NULL) != 0) {
        return;
    }
    u = info.user;
    ds__cred_get(u, &ci);
    snprintf(self, sizeof(self), "/api/%.3s/users/%s",
             url + strlen(LOOKER_BASE), u->looker_id_str);
    creds = ci.present ? json_pack("[{ss}]", "client_id", ci.client_id)
                       : json_array();
    /* clang-format off */
    ds__reply_json(r, MHD_HTTP_OK,
                   json_pack("{sOsOsOsOsOsbsOsOsosss{}}",
                             "id", u->looker_id,
                             "first_name", u->first_name,
                             "last_name", u->last_name,
                             "display_name", u->display_name,
                             "email", u->email,
                             "is_disabled", u->disabled,
                             "group_ids", u->looker_group_ids,
                             "role_ids", u->looker_role_ids,
                             "credentials_api3", creds,
                             "url", self,
                             "can"));
    /* clang-format on */
}

/* B.4: DELETE /logout: the token (only this one) stops working. */
static void
lk_logout(struct ds_request *req, const char *url, const char *method,
          struct ds_reply *r)
{
    struct ds_token_info info;
    const char *token;
    size_t len;

    (void) url;
    (void) method;
    if (authenticate(req, r, &info, &token, &len) != 0) {
        return;
    }
    ds__token_revoke(token, len);
    ds__reply_clear(r);
    r->status = MHD_HTTP_NO_CONTENT;
}

/* B.5: GET and PATCH /session (workspace production or dev). */
static void
lk_session(struct ds_request *req, const char *url, const char *method,
           struct ds_reply *r)
{
    struct ds_token_info info;
    json_t *doc = NULL;
    json_t *ws;
    json_t *sudo;
    json_t *current = NULL;
    const char *token;
    size_t len;
    int dev;

    (void) url;
    if (authenticate(req, r, &info, &token, &len) != 0) {
        return;
    }
    if (strcmp(method, "GET") == 0) {
        ds__reply_json(r, MHD_HTTP_OK, looker_session(&info));
        return;
    }
    doc = ds__json_body(req, DS_FLAVOR_LOOKER, r);
    if (doc == NULL) {
        goto out;
    }
    /* sudo_user_id is read-only: only its current value may be echoed. */
    sudo = json_object_get(doc, "sudo_user_id");
    current = info.sudo ? json_string(info.user->looker_id_str) : json_null();
    if (sudo != NULL && !json_equal(sudo, current)) {
        looker_validation_error(r, "sudo_user_id", "is read-only");
        goto out;
    }
    ws = json_object_get(doc, "workspace_id");
    dev = info.workspace_dev;
    if (ws != NULL) {
        if (json_is_string(ws) && strcmp(json_string_value(ws), "dev") == 0 &&
            json_string_length(ws) == 3) {
            dev = 1;
        } else if (json_is_string(ws) &&
                   strcmp(json_string_value(ws), "production") == 0 &&
                   json_string_length(ws) == 10) {
            dev = 0;
        } else {
            looker_validation_error(r, "workspace_id",
                                    "must be one of production, dev");
            goto out;
        }
    }
    if (ds__token_set_workspace(token, len, dev) != 0) {
        /* Logged out in the meantime. */
        ds__reply_flavor_error(r, DS_FLAVOR_LOOKER, MHD_HTTP_UNAUTHORIZED,
                               NULL);
        goto out;
    }
    info.workspace_dev = dev;
    ds__reply_json(r, MHD_HTTP_OK, looker_session(&info));

out:
    json_decref(current);
    json_decref(doc);
}

/*
 * B.6: POST /embed/sso_url, admins only: a signed single-use embed URL
 * (embed.c reads the EmbedSsoParams body).
 */
static void
lk_sso_url(struct ds_request *req, const char *url, const char *method,
           struct ds_reply *r)
{
    struct ds_token_info info;

    (void) url;
    (void) method;
    if (authenticate_admin(req, r, &info) != 0) {
        return;
    }
    ds__embed_sso_url(req, r);
}

static json_t *
looker_access_token(const char *token, int64_t lifetime)
{
    /* clang-format off */
    return json_pack("{sssssIsn}",
                     "access_token", token,
                     "token_type", "Bearer",
                     "expires_in", (json_int_t) lifetime,
                     "refresh_token");
    /* clang-format on */
}

static json_t *
looker_session(const struct ds_token_info *info)
{
    /* clang-format off */
    return json_pack("{s{}ssso}",
                     "can",
                     "workspace_id", info->workspace_dev ? "dev"
                                                         : "production",
                     "sudo_user_id", info->sudo
                         ? json_string(info->user->looker_id_str)
                         : json_null());
    /* clang-format on */
}

static void
looker_validation_error(struct ds_reply *r, const char *field,
                        const char *message)
{
    ds__reply_validation(r, field, "invalid", message);
}

/* ---------------------------------------------------------------- auth */

/*
 * Check the request's Authorization header (exactly one; "Bearer", and
 * for Looker also "token", any case) against the store.  On failure r is a
 * 401 in the flavor's format.  token/token_len, if not NULL, receive the
 * credential (borrowed from the request headers).
 */
static int
authenticate(struct ds_request *req, struct ds_reply *r,
             struct ds_token_info *info, const char **token, size_t *token_len)
{
    struct auth_header ah = {0, NULL};
    const char *v;
    size_t skip = 0;
    size_t len;
    const char *missing = "Full authentication is required to access this "
                          "resource";
    const char *invalid = "Invalid or expired bearer token";

    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, count_auth, &ah);
    v = ah.value;
    if (ah.count != 1 || v == NULL) {
        ds__reply_flavor_error(r, req->flavor, MHD_HTTP_UNAUTHORIZED,
                               req->flavor == DS_FLAVOR_INSIGHT ? missing
                                                                : NULL);
        return -1;
    }
    if (strncasecmp(v, "Bearer ", 7) == 0) {
        skip = 7;
    } else if (req->flavor == DS_FLAVOR_LOOKER &&
               strncasecmp(v, "token ", 6) == 0) {
        skip = 6;
    }
    if (skip != 0) {
        v += skip;
        v += strspn(v, " ");
    }
    len = strlen(v);
    /* Whitespace around a field value is not part of it (RFC 9110 5.5);
     * libmicrohttpd leaves the trailing part in place. */
    while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t')) {
        len--;
    }
    if (skip == 0 || len == 0 || len > DS_CREDENTIAL_MAX ||
        !is_b64token(v, len) ||
        ds__token_lookup(v, len, req->flavor, info) != 0) {
        ds__reply_flavor_error(r, req->flavor, MHD_HTTP_UNAUTHORIZED,
                               req->flavor == DS_FLAVOR_INSIGHT ? invalid
                                                                : NULL);
        return -1;
    }
    if (token != NULL) {
        *token = v;
        *token_len = len;
    }
    return 0;
}

/* authenticate(), then a Looker admin only: else r is a 403. */
static int
authenticate_admin(struct ds_request *req, struct ds_reply *r,
                   struct ds_token_info *info)
{
    if (authenticate(req, r, info, NULL, NULL) != 0) {
        return -1;
    }
    if (!info->user->admin) {
        ds__reply_flavor_error(r, DS_FLAVOR_LOOKER, MHD_HTTP_FORBIDDEN,
                               "Permission Denied");
        return -1;
    }
    return 0;
}

static enum MHD_Result
count_auth(void *cls, enum MHD_ValueKind kind, const char *key,
           const char *value)
{
    struct auth_header *ah = cls;

    (void) kind;
    if (strcasecmp(key, MHD_HTTP_HEADER_AUTHORIZATION) == 0) {
        ah->count++;
        ah->value = value;
    }
    return MHD_YES;
}

/* RFC 6750 b64token: 1*( ALPHA / DIGIT / "-._~+/" ) *"=" */
static int
is_b64token(const char *s, size_t len)
{
    static const char extra[] = "-._~+/";
    size_t i = 0;

    while (i < len &&
           ((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
            (s[i] >= '0' && s[i] <= '9') ||
            (s[i] != '\0' && strchr(extra, s[i]) != NULL))) {
        i++;
    }
    if (i == 0) {
        return 0;
    }
    while (i < len && s[i] == '=') {
        i++;
    }
    return i == len;
}

/* ------------------------------------------------------------- helpers */

/* Is the Content-Type want (any case), optionally with parameters? */
static int
media_type_is(struct MHD_Connection *conn, const char *want)
{
    const char *v;
    size_t n = strlen(want);

    v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                    MHD_HTTP_HEADER_CONTENT_TYPE);
    if (v == NULL) {
        return 0;
    }
    v += strspn(v, " \t");
    if (strncasecmp(v, want, n) != 0) {
        return 0;
    }
    v += n;
    v += strspn(v, " \t");
    return *v == '\0' || *v == ';';
}

/*
 * Find name in an application/x-www-form-urlencoded body.  0: found, *out
 * is a malloc'd decoded copy (NUL-terminated, may hold NULs); 1: absent;
 * -1: malformed or given twice.
 */
static int
form_get(const char *body, size_t len, const char *name, char **out,
         size_t *out_len)
{
    struct ds_form_pair pair;
    size_t name_len = strlen(name);
    const char *p = body;
    int rc = 1;

    *out = NULL;
    while (p != NULL && ds__form_next(&p, body + len, &pair)) {
        if (pair.name_len != name_len ||
            memcmp(pair.name, name, name_len) != 0) {
            continue;
        }
        if (*out != NULL) {
            rc = -1; /* given twice */
            goto out;
        }
        if (ds__form_value(&pair, out, out_len) != DS_FORM_OK) {
            rc = -1;
            goto out;
        }
        rc = 0;
    }

out:
    if (rc < 0 && *out != NULL) {
        explicit_bzero(*out, *out_len);
        free(*out);
        *out = NULL;
    }
    return rc;
}

static void
iso8601(int64_t t, char *buf, size_t size)
{
    time_t tt = (time_t) t;
    struct tm tm;

    if (gmtime_r(&tt, &tm) == NULL ||
        strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        snprintf(buf, size, "1970-01-01T00:00:00Z");
    }
}

/* Wipe a secret held in a jansson string before it is freed. */
static void
secret_wipe(json_t *s)
{
    if (json_is_string(s)) {
        explicit_bzero((char *) json_string_value(s), json_string_length(s));
    }
}
