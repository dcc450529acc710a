/* SPDX-License-Identifier: MIT */
/*
 * tokengate.h - the one public header of libtokengate.
 *
 * libtokengate talks to a BI platform's REST auth service, in one of two
 * flavors: FICO Xpress Insight 5 ("insight", insightservices REST v1) and
 * Looker API 4.0 ("looker").  Every API call is split in three parts:
 *
 *   tg_build_*()  pure: config + inputs -> a tg_request_t
 *   tg_parse_*()  pure: a tg_response_t -> a result or a precise error
 *   tg_client_*() the blocking curl transport, which runs build, perform,
 *                 parse on one kept-alive connection.
 *
 * The pure parts do no I/O, so the nginx module drives them from its own
 * event loop, and unit tests and fuzzers call them without a network.
 *
 * Conventions (STYLE.md):
 *   - every fallible function returns tg_err_t, TG_OK (0) on success;
 *   - functions named *_new or documented "caller owns" hand over memory that
 *     the caller frees with the matching *_free(), and *_free(NULL) is a no-op;
 *   - getters return borrowed pointers, valid until the owner is freed;
 *   - error detail goes to a tg_diag_t (may be NULL in pure calls), never
 *     containing a token or a secret.
 */
#ifndef TOKENGATE_H
#define TOKENGATE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define TG_API __attribute__((visibility("default")))
#else
#define TG_API
#endif

/* ---------------------------------------------------------------------- */
/* Errors                                                                 */
/* ---------------------------------------------------------------------- */

/*
 * The one error list: X(NAME, "message").  It generates tg_err_t,
 * tg_strerror() and tg_err_name().  The CLI exit code of an error is its
 * enum value (TG_OK = 0), so the order below is part of the CLI's contract:
 * append only.
 */
#define TG_ERRNO_MAP(X)                                                       \
    X(OK, "success")                                                          \
    X(CONFIG, "bad configuration")                                            \
    X(INPUT, "bad input")                                                     \
    X(REJECTED, "credentials rejected")                                       \
    X(TOKEN_INVALID, "token invalid or expired")                              \
    X(FORBIDDEN, "forbidden")                                                 \
    X(NOT_FOUND, "not found")                                                 \
    X(IDENTITY, "identity does not match")                                    \
    X(RATE_LIMITED, "rate limited by the server")                             \
    X(UNAVAILABLE, "server unavailable")                                      \
    X(TIMEOUT, "timed out")                                                   \
    X(TLS, "TLS failure")                                                     \
    X(PROTOCOL, "protocol violation by the server")                           \
    X(NOMEM, "out of memory")                                                 \
    X(VALIDATION, "request refused by the server as invalid")                 \
    X(INTERNAL, "internal error")

#define TG__ERR_ENUM(name, msg) TG_##name,
typedef enum tg_err { TG_ERRNO_MAP(TG__ERR_ENUM) TG_ERR_MAX } tg_err_t;
#undef TG__ERR_ENUM

/* The message of an error ("token invalid or expired"); never NULL. */
TG_API const char *tg_strerror(tg_err_t err);
/* The name of an error ("TG_TOKEN_INVALID"); never NULL. */
TG_API const char *tg_err_name(tg_err_t err);

/* A 422 field error, as Looker reports them in "errors[]". */
#define TG_FIELD_ERRORS_MAX 8
typedef struct tg_field_error {
    char field[64];
    char code[64];
    char message[160];
} tg_field_error_t;

/*
 * Error detail for one call.  The first error wins: later tg_diag_set()
 * calls do not overwrite the message.  Text coming from the server is
 * sanitized (control bytes replaced) before it is stored.
 */
typedef struct tg_diag {
    char message[512];      /* "" when no error was recorded */
    long http_status;       /* 0 when no HTTP response was received */
    long retry_after;       /* seconds from Retry-After, -1 when absent */
    int n_fields;           /* 422 field errors kept in fields[] */
    tg_field_error_t fields[TG_FIELD_ERRORS_MAX];
} tg_diag_t;

/* Reset a diag to "no error" (retry_after -1). */
TG_API void tg_diag_clear(tg_diag_t *diag);

/* ---------------------------------------------------------------------- */
/* Secrets and fingerprints                                               */
/* ---------------------------------------------------------------------- */

/* Duplicate a secret string; the caller owns it and frees it with
 * tg_secret_free().  Returns NULL on allocation failure. */
TG_API char *tg_secret_dup(const char *s);
/* Wipe (explicit_bzero) and free a NUL-terminated secret; NULL is a no-op. */
TG_API void tg_secret_free(char *s);
/* Wipe and free a buffer of known length; NULL is a no-op. */
TG_API void tg_secret_free_len(void *p, size_t len);

/* The short fingerprint of a token or secret for logs: the first 8 hex
 * characters of its SHA-256, written to out (at least TG_FINGERPRINT_SIZE). */
#define TG_FINGERPRINT_SIZE 9
TG_API void tg_fingerprint(const char *secret, size_t len,
                           char out[TG_FINGERPRINT_SIZE]);

/* Limits on what we accept, before any work is done. */
#define TG_TOKEN_MAX 4096    /* bytes of a bearer token */
#define TG_SECRET_MAX 1024   /* bytes of a client id or a client secret */

/*
 * Check a bearer token: 1..TG_TOKEN_MAX bytes of RFC 6750 b64token
 * (ALPHA DIGIT - . _ ~ + / then optional trailing '=').  Returns TG_OK or
 * TG_INPUT with the reason in diag (the token itself is never quoted).
 */
TG_API tg_err_t tg_token_check(const char *token, tg_diag_t *diag);
/* Check a client id or secret: 1..TG_SECRET_MAX printable bytes, no
 * control characters, no space.  what names it in the message. */
TG_API tg_err_t tg_credential_check(const char *value, const char *what,
                                    tg_diag_t *diag);

/* ---------------------------------------------------------------------- */
/* Configuration                                                          */
/* ---------------------------------------------------------------------- */

typedef enum tg_api { TG_API_INSIGHT = 0, TG_API_LOOKER = 1 } tg_api_t;

typedef enum tg_group_mode { TG_GROUPS_ANY = 0, TG_GROUPS_ALL = 1 } tg_group_mode_t;

/* Which identity attribute binds to a local user name. */
typedef enum tg_bind_attr {
    TG_BIND_EMAIL_LOCAL = 0, /* the local part of the email (default) */
    TG_BIND_EMAIL,           /* the whole email */
    TG_BIND_ID,              /* the user id */
    TG_BIND_CN               /* insight cn / looker display name */
} tg_bind_attr_t;

/* Which insight call validates a token (auto: both when a rule needs
 * authorities or the evaluation flag, user otherwise). */
typedef enum tg_insight_validate {
    TG_INSIGHT_VALIDATE_AUTO = 0,
    TG_INSIGHT_VALIDATE_USER,        /* GET .../auth/user */
    TG_INSIGHT_VALIDATE_CURRENTUSER, /* GET .../auth/currentuser */
    TG_INSIGHT_VALIDATE_BOTH         /* both, merged (two calls) */
} tg_insight_validate_t;

/* Looker's Authorization scheme: "token" (documented) or "Bearer" (SDKs). */
typedef enum tg_looker_scheme {
    TG_LOOKER_SCHEME_TOKEN = 0,
    TG_LOOKER_SCHEME_BEARER
} tg_looker_scheme_t;

/*
 * The configuration.  tg_config_new() fills every field with its default;
 * the parsers then override.  Strings are owned by the config.  Keys in the
 * file and in arguments have the same names as the fields below.
 */
typedef struct tg_config {
    tg_api_t api;                 /* api = insight | looker */
    char *url;                    /* url = base URL, no path for looker */
    char *looker_api_version;     /* looker_api_version = 4.0 */
    char *insight_base_path;      /* insight_base_path =
                                     /insightservices/rest/v1 */
    tg_insight_validate_t insight_validate;
    tg_looker_scheme_t looker_auth_scheme;
    char *ca_file;                /* ca_file */
    char *ca_path;                /* ca_path */
    char *pinned_pubkey;          /* pinned_pubkey = sha256//... or file */
    char *proxy;                  /* proxy; never taken from environment */
    long connect_timeout_ms;      /* connect_timeout = seconds (decimals ok) */
    long timeout_ms;              /* timeout = seconds, total per call */
    long max_response_bytes;      /* max_response_bytes = 65536 */
    long token_max_age;           /* token_max_age = 900 seconds */
    long token_lifetime_max;      /* token_lifetime_max = seconds; 0: the
                                     flavor's (tg_config_token_lifetime_max) */
    long retry_after_max;         /* retry_after_max = 300 seconds */
    int allow_insecure_http;      /* allow_insecure_http = no */

    /* Authorization rules (DESIGN.md). */
    char **require_groups;        /* require_groups = a b c (space list) */
    size_t n_require_groups;
    tg_group_mode_t require_groups_mode; /* require_groups_mode = any|all */
    int deny_evaluation;          /* deny_evaluation = no */
    int deny_disabled;            /* deny_disabled = yes */
    tg_bind_attr_t user_attribute; /* user_attribute = email_local|email|id|cn */
    char *user_map_file;          /* user_map_file: "identity localuser" */
    char *email_domain;           /* email_domain: when set, email bindings
                                     need exactly this domain (ASCII case
                                     ignored), so alice@other.example cannot
                                     become local alice */
    int case_insensitive;         /* case_insensitive = no */
    long min_uid;                 /* min_uid = UID_MIN of /etc/login.defs,
                                     else 1000: a local account with a
                                     lower uid (a system account) is bound
                                     only by a user_map_file entry */

    /* Client credentials and secrets for the CLI and later modules. */
    char *client_id;              /* client_id */
    char *client_secret_file;     /* client_secret_file (root/owner-only) */
    char *embed_secret_file;      /* embed_secret_file (root/owner-only) */
} tg_config_t;

/* A config with every default; caller owns, NULL on allocation failure. */
TG_API tg_config_t *tg_config_new(void);
TG_API void tg_config_free(tg_config_t *cfg);

/*
 * Set one key from a string value, strictly.  where names the origin for
 * messages ("/etc/tokengate.conf:12" or "argument"); an unknown key is
 * "unknown option KEY", a bad value "bad value for KEY: why".
 */
TG_API tg_err_t tg_config_set(tg_config_t *cfg, const char *key,
                              const char *value, const char *where,
                              tg_diag_t *diag);

/*
 * Parse a "key = value" file ('#' comments, blank lines).  The file must be
 * a regular file, not a symlink, owned by root or by the caller, and not
 * group/world-writable.  Errors name the file, the line and the key.
 */
TG_API tg_err_t tg_config_load_file(tg_config_t *cfg, const char *path,
                                    tg_diag_t *diag);

/* Parse "key=value" arguments (PAM module arguments); errors name the key. */
TG_API tg_err_t tg_config_load_args(tg_config_t *cfg, int argc,
                                    const char **argv, tg_diag_t *diag);

/*
 * Check the whole config once it is complete: url set, http:// only for a
 * loopback host or with allow_insecure_http, timeouts sane, files that hold
 * secrets safely owned.  Call it after the last load.
 */
TG_API tg_err_t tg_config_validate(const tg_config_t *cfg, tg_diag_t *diag);

/*
 * The longest life of a token of cfg's server, in seconds: token_lifetime_max
 * when set, else the flavor's own (Looker: 3600, the life of an API token;
 * Insight: token_max_age).  Bounds how long an answer that carries no expiry
 * (Looker GET /user, Insight auth/currentuser) may be trusted after the
 * token's first successful validation.
 */
TG_API long tg_config_token_lifetime_max(const tg_config_t *cfg);

/*
 * Check that a file holding a secret is a regular file (not a symlink),
 * owned by root or the caller, and not readable or writable by group or
 * others.  key names the config key in the message.
 */
TG_API tg_err_t tg_secret_file_check(const char *path, const char *key,
                                     tg_diag_t *diag);

/* Read a secret from a file checked as above; trailing newline stripped.
 * The caller owns *out (tg_secret_free). */
TG_API tg_err_t tg_secret_file_read(const char *path, const char *key,
                                    char **out, tg_diag_t *diag);

/* ---------------------------------------------------------------------- */
/* Identity and authorization rules                                       */
/* ---------------------------------------------------------------------- */

/*
 * A normalized identity; all strings owned by it, "" when not given.  Each
 * field means the same whichever call filled it, so one token is one
 * identity: insight auth/user and auth/currentuser agree on id and email,
 * and a field a call does not carry is "" (or 0), never another field
 * standing in for it.  tg_identity_merge() joins the two insight answers.
 */
typedef struct tg_identity {
    char *id;             /* insight uid (auth/user) = id (currentuser);
                             looker id */
    char *name;           /* the login name: insight cn (auth/user only;
                             "" from currentuser alone); looker has none,
                             its display_name stands in */
    char *email;          /* insight mail (auth/user) = email
                             (currentuser); looker email */
    char *display_name;   /* the human name: insight displayName
                             (currentuser only; "" from auth/user alone);
                             looker display_name */
    char *first_name;
    char *last_name;
    char **groups;        /* insight authorities + authorityGroups;
                             looker group ids and "role:<id>" */
    size_t n_groups;
    time_t expires_at;    /* the token's expiry: insight auth/user's
                             access_token_expiration_time; 0 (unknown) from
                             currentuser alone and from looker GET /user */
    int evaluation;       /* insight evaluationUser: 1, 0, or -1 when the
                             server did not say (deny rules then deny) */
    int disabled;         /* looker is_disabled: 1, 0 or -1 likewise */
    int has_profile;      /* groups/evaluation were read from the server */
} tg_identity_t;

TG_API void tg_identity_free(tg_identity_t *id);

/*
 * The user name front ends show ($tokengate_user, $remote_user): the same
 * for one token whichever validation call ran.  Insight: the email, else
 * the id (the only attributes both auth/user and auth/currentuser carry;
 * the login name is in auth/user only, the display name in currentuser
 * only).  Looker (one call): the display name, else the email, else the
 * id.  Borrowed from id; never NULL ("" for a NULL id).
 */
TG_API const char *tg_identity_user(const tg_config_t *cfg,
                                    const tg_identity_t *id);

/*
 * Which validation call(s) cfg makes for a token: TG_INSIGHT_VALIDATE_USER,
 * _CURRENTUSER or _BOTH, never _AUTO.  Looker: always USER (GET /user has
 * the groups).  Insight auto: BOTH (auth/user for the login name and the
 * expiry, currentuser for the authorities and the evaluation flag, merged)
 * when a rule of cfg needs the profile or extra_rules says the caller has
 * group rules of its own (nginx locations), else USER.  A caller that makes
 * one call only (nginx) uses CURRENTUSER for BOTH, and shows only the
 * attributes both calls carry (tg_identity_user).
 */
TG_API tg_insight_validate_t tg_validate_which(const tg_config_t *cfg,
                                               int extra_rules);

/* Apply the authorization rules: deny disabled/evaluation users as
 * configured, then groups any/all.  TG_OK or TG_FORBIDDEN with the reason
 * (which group, which flag) in diag. */
TG_API tg_err_t tg_rules_check(const tg_config_t *cfg,
                               const tg_identity_t *id, tg_diag_t *diag);

/*
 * Bind an identity to a local user name: by user_map_file when set (lines
 * "identity-value local-user", compared with the configured attribute),
 * else by the configured attribute.  Local names are [a-z0-9._-] only; an
 * email needs exactly one '@' and no '+' or '%' in its local part; "root",
 * and any existing local account whose uid is 0 or below min_uid (a system
 * account: daemon, bin, www-data...), is bound only by an explicit map
 * entry.  *local is caller-owned (free()).  TG_IDENTITY when there is no
 * binding.
 */
TG_API tg_err_t tg_identity_bind(const tg_config_t *cfg,
                                 const tg_identity_t *id, char **local,
                                 tg_diag_t *diag);

/*
 * Is local the local user of some line of user_map_file?  TG_OK yes,
 * TG_IDENTITY no (or no map is set), TG_CONFIG when the file is unsafe or
 * malformed (the message names the line), as tg_identity_bind reads it.
 * PAM's account uses it to tell the users it manages.
 */
TG_API tg_err_t tg_user_map_has_local(const tg_config_t *cfg,
                                      const char *local, tg_diag_t *diag);

/* ---------------------------------------------------------------------- */
/* Pure protocol: requests and responses                                  */
/* ---------------------------------------------------------------------- */

/* A request to send.  Fields that may hold secrets are wiped by
 * tg_request_clear(). */
typedef struct tg_request {
    const char *method;         /* static: "GET", "POST", "DELETE", "PATCH" */
    char *url;                  /* full URL */
    char *authorization;        /* full header value or NULL (secret) */
    const char *content_type;   /* static or NULL when no body */
    const char *accept;         /* static */
    char *body;                 /* NULL when no body (may be secret) */
    size_t body_len;
} tg_request_t;

/* Wipe and free what a request holds and zero it; safe to call twice. */
TG_API void tg_request_clear(tg_request_t *req);

/* A received response; all pointers borrowed from the transport. */
typedef struct tg_response {
    long status;
    const char *content_type;   /* NULL when absent */
    const char *body;           /* not NUL-terminated; may be NULL if 0 */
    size_t body_len;
    long retry_after;           /* seconds, -1 when absent */
    time_t server_date;         /* the Date header, 0 when absent */
} tg_response_t;

/* A token and its expiry. */
typedef struct tg_token {
    char *value;          /* secret, NUL-terminated */
    time_t expires_at;    /* 0 when unknown */
} tg_token_t;

/* Wipe and free the token value; the struct itself is the caller's. */
TG_API void tg_token_clear(tg_token_t *tok);

/* insight REST API credentials (A.2, A.3). */
typedef struct tg_credentials {
    char *client_id;      /* "" for "show" */
    char *secret;         /* secret; "" for "show" */
    int64_t created_ms;   /* createdDate, epoch milliseconds */
    int64_t credentials_id;
} tg_credentials_t;

TG_API void tg_credentials_clear(tg_credentials_t *c);

/* looker API session (B.5). */
typedef struct tg_session {
    char *workspace_id;   /* "" when null */
    char *sudo_user_id;   /* "" when null */
} tg_session_t;

TG_API void tg_session_clear(tg_session_t *s);

/*
 * Builders.  token: insight POST auth/token (JSON clientId, secret, maxAge
 * = token_max_age) / looker POST /login (form).  The authenticated ones
 * take the token to send.  sudo takes a looker user id (digits only).
 * session_set takes a workspace ("production" or "dev" for looker, checked
 * by the server).  Calls that do not exist in a flavor return TG_INPUT
 * ("not supported by the insight API").
 */
TG_API tg_err_t tg_build_token(const tg_config_t *cfg, const char *client_id,
                               const char *secret, tg_request_t *req,
                               tg_diag_t *diag);
/* which: TG_INSIGHT_VALIDATE_USER or _CURRENTUSER for insight; ignored for
 * looker (GET /user). */
TG_API tg_err_t tg_build_validate(const tg_config_t *cfg, const char *token,
                                  tg_insight_validate_t which,
                                  tg_request_t *req, tg_diag_t *diag);
TG_API tg_err_t tg_build_profile(const tg_config_t *cfg, const char *token,
                                 tg_request_t *req, tg_diag_t *diag);
typedef enum tg_creds_op {
    TG_CREDS_SHOW = 0,
    TG_CREDS_NEW,
    TG_CREDS_REVOKE
} tg_creds_op_t;
TG_API tg_err_t tg_build_credentials(const tg_config_t *cfg, const char *token,
                                     tg_creds_op_t op, tg_request_t *req,
                                     tg_diag_t *diag);
TG_API tg_err_t tg_build_logout(const tg_config_t *cfg, const char *token,
                                tg_request_t *req, tg_diag_t *diag);
TG_API tg_err_t tg_build_sudo(const tg_config_t *cfg, const char *token,
                              const char *user_id, tg_request_t *req,
                              tg_diag_t *diag);
TG_API tg_err_t tg_build_session(const tg_config_t *cfg, const char *token,
                                 const char *workspace /* NULL = GET */,
                                 tg_request_t *req, tg_diag_t *diag);

/*
 * Parsers.  Each checks the status first: 2xx expected codes go on to the
 * body; 401 -> TG_TOKEN_INVALID (TG_REJECTED for the token call), 403 ->
 * TG_FORBIDDEN, 404 -> TG_NOT_FOUND (TG_REJECTED for looker login), 422 ->
 * TG_VALIDATION with the field errors, 429 -> TG_RATE_LIMITED with
 * retry_after, 5xx -> TG_UNAVAILABLE, anything else -> TG_PROTOCOL.
 * Bodies are size-checked, decoded with JSON_REJECT_DUPLICATES, and typed
 * strictly.  sent_at is when the request was sent (expiry is computed
 * from it).
 */
TG_API tg_err_t tg_parse_token(const tg_config_t *cfg,
                               const tg_response_t *resp, time_t sent_at,
                               tg_token_t *out, tg_diag_t *diag);
/* Parse a validation answer into *out (caller owns, tg_identity_free).
 * which as for tg_build_validate. */
TG_API tg_err_t tg_parse_validate(const tg_config_t *cfg,
                                  const tg_response_t *resp,
                                  tg_insight_validate_t which,
                                  tg_identity_t **out, tg_diag_t *diag);
/* Parse a profile (insight currentuser, looker user) into *out. */
TG_API tg_err_t tg_parse_profile(const tg_config_t *cfg,
                                 const tg_response_t *resp,
                                 tg_identity_t **out, tg_diag_t *diag);
/* Merge a profile into an identity (insight validate=both): the ids must
 * match (TG_PROTOCOL otherwise); groups and flags are taken from it. */
TG_API tg_err_t tg_identity_merge(tg_identity_t *id,
                                  const tg_identity_t *profile,
                                  tg_diag_t *diag);
/* show: 200 info or 404 -> TG_NOT_FOUND; new: 200 with secret;
 * revoke: 204 (out may be NULL). */
TG_API tg_err_t tg_parse_credentials(const tg_config_t *cfg,
                                     const tg_response_t *resp,
                                     tg_creds_op_t op, tg_credentials_t *out,
                                     tg_diag_t *diag);
TG_API tg_err_t tg_parse_logout(const tg_config_t *cfg,
                                const tg_response_t *resp, tg_diag_t *diag);
TG_API tg_err_t tg_parse_sudo(const tg_config_t *cfg,
                              const tg_response_t *resp, time_t sent_at,
                              tg_token_t *out, tg_diag_t *diag);
TG_API tg_err_t tg_parse_session(const tg_config_t *cfg,
                                 const tg_response_t *resp, tg_session_t *out,
                                 tg_diag_t *diag);

/* ---------------------------------------------------------------------- */
/* Looker signed embedding (api-spec.md C: local signing; B.6: server)    */
/* ---------------------------------------------------------------------- */

#define TG_EMBED_SESSION_DEFAULT 300     /* seconds, Looker's default */
#define TG_EMBED_SESSION_MAX 2592000     /* 30 days, Looker's maximum */
#define TG_EMBED_NONCE_BYTES 16          /* random bytes, hex-encoded */
/* Bytes of any one string the signer sends (an external user id, a name,
 * a model, an attribute value): far above real values, far below what a
 * URL can carry.  Looker's own limits are not documented. */
#define TG_EMBED_FIELD_MAX 1024
/* Bytes of an embed path, before percent-encoding. */
#define TG_EMBED_PATH_MAX 1024

/* One user attribute: name and string value. */
typedef struct tg_embed_attr {
    const char *key;
    const char *value;
} tg_embed_attr_t;

/*
 * What an embed URL grants.  All strings are borrowed UTF-8.  The optional
 * signed parameters are sent (and signed) exactly when given: group_ids
 * when n_group_ids > 0, external_group_id when not NULL, user_attributes
 * when n_user_attributes > 0.  Unsigned ones (first_name, last_name,
 * user_timezone) are sent when not NULL; force_logout_login always.
 */
typedef struct tg_embed_params {
    const char *scheme;            /* "https" (NULL) or "http" (loopback
                                      hosts only: the devserver) */
    const char *host;              /* authority the browser uses, no scheme:
                                      "looker.example.com[:port]" */
    const char *embed_path;        /* "/embed/dashboards/42", may carry its
                                      own query (?embed_domain=...&sdk=2) */
    const char *external_user_id;  /* required, non-empty */
    const char *first_name;
    const char *last_name;
    const char *user_timezone;
    const char *const *permissions; /* embed-allowed names only */
    size_t n_permissions;
    const char *const *models;
    size_t n_models;
    const char *const *group_ids;
    size_t n_group_ids;
    const char *external_group_id;
    const tg_embed_attr_t *user_attributes;
    size_t n_user_attributes;
    long session_length;           /* 0..TG_EMBED_SESSION_MAX seconds */
    int force_logout_login;        /* 1 true, 0 false */
    /* For tests only: a fixed nonce (sent as a JSON string) and time.
     * NULL / 0 mean fresh random bytes from getrandom() and time(NULL). */
    const char *nonce;
    time_t time;
} tg_embed_params_t;

/* Fill p with the defaults (session 300 s, force_logout_login true). */
TG_API void tg_embed_params_init(tg_embed_params_t *p);

/*
 * Check p: every error names the parameter ("permissions: 'admin' is not
 * allowed for embedding", "external_user_id: empty", "first_name: not
 * UTF-8", "session_length: 2592001 is above 2592000").  TG_INPUT on error.
 * The rules: host is HOST[:PORT] without a scheme, path or default port,
 * written in lower case (an IP address in its browser form), as browsers
 * send it in Host: the first signing line is that Host; scheme http only
 * for 127.0.0.0/8, localhost and [::1]; embed_path starts with /embed/, is
 * printable ASCII without space (percent-encode anything else) and at most
 * TG_EMBED_PATH_MAX bytes; permissions are on Looker's embed list;
 * group_ids, or else models and permissions, are given; every string is
 * UTF-8 without control characters and at most TG_EMBED_FIELD_MAX bytes;
 * lists have at most 256 entries; user attribute keys are non-empty and
 * unique; external_group_id has at most 81 characters, a fixed nonce at
 * most 254; and the signed URL, counting the signature at its longest,
 * fits in 8192 bytes.
 */
TG_API tg_err_t tg_embed_params_check(const tg_embed_params_t *p,
                                      tg_diag_t *diag);

/*
 * Sign p locally with the embed secret (its bytes as-is, 1..TG_SECRET_MAX
 * of them) and return the URL
 * "SCHEME://HOST/login/embed/PCT(PATH)?...&signature=..." in *url
 * (caller owns; it works once, like a password: tg_secret_free it).
 * string_to_sign, when not NULL, receives the exact signed text (caller
 * owns, tg_secret_free) for --json and tests.  Runs the checks of
 * tg_embed_params_check() first; on any error *url (and *string_to_sign)
 * are NULL.
 */
TG_API tg_err_t tg_embed_sign(const tg_embed_params_t *p, const char *secret,
                              size_t secret_len, char **url,
                              char **string_to_sign, tg_diag_t *diag);

/*
 * Server signing (looker only): POST {api}/embed/sso_url with an admin
 * token; target_url is SCHEME://HOST + embed_path, p is checked by
 * tg_embed_params_check() and the optional fields are sent when given.
 * The parser returns the single-use URL (an http(s) URL of printable
 * ASCII, never quoted in messages) in *url (caller owns, tg_secret_free);
 * 400, 403, 404, 422 and 429 map as for every parser, and 409 ("Resource
 * Already Exists") to TG_VALIDATION.
 */
TG_API tg_err_t tg_build_embed_sso_url(const tg_config_t *cfg,
                                       const char *token,
                                       const tg_embed_params_t *p,
                                       tg_request_t *req, tg_diag_t *diag);
TG_API tg_err_t tg_parse_embed_sso_url(const tg_config_t *cfg,
                                       const tg_response_t *resp, char **url,
                                       tg_diag_t *diag);

/* ---------------------------------------------------------------------- */
/* The blocking client (curl easy, one kept-alive connection)             */
/* ---------------------------------------------------------------------- */

typedef struct tg_client tg_client_t;

/*
 * Create a client from a validated config (the client keeps a borrowed
 * pointer: cfg must outlive it).  curl_global_init runs once per process
 * (pthread_once) and is never cleaned up.  Does no network I/O.
 */
TG_API tg_err_t tg_client_new(const tg_config_t *cfg, tg_client_t **out,
                              tg_diag_t *diag);
TG_API void tg_client_free(tg_client_t *cl);

/* The detail of the last failed call on this client; never NULL. */
TG_API const tg_diag_t *tg_client_diag(const tg_client_t *cl);
/* The message of the last failed call ("" if none); never NULL. */
TG_API const char *tg_client_error(const tg_client_t *cl);
/* How many HTTP requests and new connections this client has made. */
TG_API void tg_client_stats(const tg_client_t *cl, long *requests,
                            long *connections);

/* Send a built request and receive the response.  The response stays
 * valid until the next call on this client.  Transport errors map to
 * TG_UNAVAILABLE, TG_TIMEOUT, TG_TLS or TG_PROTOCOL (size cap, redirect). */
TG_API tg_err_t tg_client_perform(tg_client_t *cl, const tg_request_t *req,
                                  tg_response_t *resp, time_t *sent_at);

/* Composite calls: build, perform, parse. */
TG_API tg_err_t tg_client_token(tg_client_t *cl, const char *client_id,
                                const char *secret, tg_token_t *out);
/* Validate a token and return its identity (per insight_validate). */
TG_API tg_err_t tg_client_validate(tg_client_t *cl, const char *token,
                                   tg_identity_t **out);
TG_API tg_err_t tg_client_profile(tg_client_t *cl, const char *token,
                                  tg_identity_t **out);
TG_API tg_err_t tg_client_credentials(tg_client_t *cl, const char *token,
                                      tg_creds_op_t op,
                                      tg_credentials_t *out);
TG_API tg_err_t tg_client_logout(tg_client_t *cl, const char *token);
TG_API tg_err_t tg_client_sudo(tg_client_t *cl, const char *token,
                               const char *user_id, tg_token_t *out);
TG_API tg_err_t tg_client_session(tg_client_t *cl, const char *token,
                                  const char *workspace, tg_session_t *out);
/* Ask Looker to sign an embed URL (tg_build/parse_embed_sso_url). */
TG_API tg_err_t tg_client_embed_sso_url(tg_client_t *cl, const char *token,
                                        const tg_embed_params_t *p,
                                        char **url);

#ifdef __cplusplus
}
#endif

#endif /* TOKENGATE_H */
