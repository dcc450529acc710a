/* SPDX-License-Identifier: MIT */
/*
 * embed.c - Looker signed embedding, as docs/api-spec.md sections C and B.6
 * describe it: the verifier behind GET /login/embed/{PCT(path)}, the embed
 * users and their browser sessions, the "dashboard" behind GET /embed/...,
 * the server-side signer behind POST /api/{4.0,3.1}/embed/sso_url, and the
 * control listing.
 *
 * The verifier rebuilds the string-to-sign from the request exactly as it
 * arrived: line 1 the Host header, line 2 "/login/embed/" and the path
 * segment still percent-encoded, then the decoded query values byte for
 * byte (never a re-serialisation), the optional lines present exactly when
 * their parameter is.  Checks run in this order, so that a tampered URL
 * never uses up a nonce: parse and required parameters (400), signature
 * (401), time (401), nonce (401).  Only a fully valid URL records its nonce.
 *
 * Nothing secret is kept: used nonces and session cookies are stored as
 * HMAC-SHA256(per-process random key, value) (ds__mac, store.c; nonces in
 * a ds_mac_table like the tokens), compared with CRYPTO_memcmp.
 * The embed secret, signatures, cookies and URLs are wiped after use and
 * never logged.  One mutex guards the users, sessions and nonces.
 */
#include "devserver.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

/* The built-in embed secret: public, for demos and tests only. */
#define DEMO_SECRET "looker-embed-secret-DEMO-0001"
/* Largest embed secret file read (Looker's secrets are 64 hex digits). */
#define SECRET_FILE_MAX 4096
/* time must be within 5 minutes of the server clock (C.2). */
#define TIME_WINDOW 300
/* A nonce must not repeat within one hour (C.2): remembered this long. */
#define NONCE_TTL 3600
/* A nonce has fewer than 255 characters (C.2). */
#define NONCE_CHARS_MAX 254
/* session_length bounds (C.2, B.6) and sso_url's default. */
#define SESSION_LENGTH_MAX 2592000
#define SESSION_LENGTH_DEFAULT 300
/* external_group_id has at most 81 characters (C.2). */
#define EXTERNAL_GROUP_ID_MAX 81
/* Longest external_user_id, in bytes: bounds a user record.  Looker's own
 * limit is not documented: this is tokengate's signer's per-field limit
 * (TG_EMBED_FIELD_MAX), so every id it signs is verified here. */
#define EXTERNAL_USER_ID_MAX 1024
/* The same as text, for messages. */
#define EXTERNAL_USER_ID_MAX_TEXT TEXT(EXTERNAL_USER_ID_MAX)
#define TEXT(x) TEXT_(x)
#define TEXT_(x) #x
/* Embed users kept (memory bound); a full table evicts the stalest. */
#define USERS_MAX 4096
/* Used nonces kept; when all are still replayable, logins answer 503. */
#define NONCES_MAX 100000
/* Nonce hash buckets: a power of two above NONCES_MAX. */
#define NONCE_BUCKETS (1u << 17)
/* HMAC-SHA1 digest and its base64 text (always 28 characters). */
#define SHA1_SIZE 20
#define SIGNATURE_LEN 28
/* A session cookie: random bytes as base64url, made like a token. */
#define COOKIE_SIZE DS_TOKEN_SIZE
/* Random bytes in an sso_url nonce (hex, like tokengate's own signer). */
#define SSO_NONCE_RAW 16
/* Random bytes in a generated external_user_id (sso_url without one). */
#define SSO_USER_RAW 8
/* Embed user ids start above the users file's ids, and at least here. */
#define EMBED_ID_MIN 1000
/* Decimal digits of a uint64_t, plus the NUL. */
#define ID_SIZE 24

#define COOKIE_NAME "tg_embed_session"
/* The Set-Cookie value: name, cookie, attributes (Secure with TLS). */
#define SET_COOKIE_SIZE                                                        \
    (sizeof(COOKIE_NAME "=; Path=/; HttpOnly; SameSite=Lax; Secure") +         \
     COOKIE_SIZE)
#define LOGIN_PREFIX "/login/embed/"
#define EMBED_PREFIX "/embed/"

/* The query parameters of C.2, in string-to-sign and URL order. */
enum param {
    P_NONCE,
    P_TIME,
    P_SESSION_LENGTH,
    P_EXTERNAL_USER_ID,
    P_PERMISSIONS,
    P_MODELS,
    P_GROUP_IDS,
    P_EXTERNAL_GROUP_ID,
    P_USER_ATTRIBUTES,
    P_ACCESS_FILTERS,
    P_FIRST_NAME,
    P_LAST_NAME,
    P_USER_TIMEZONE,
    P_FORCE_LOGOUT_LOGIN,
    P_SIGNATURE,
    P_COUNT
};

enum value_type {
    V_STRING,  /* a JSON string */
    V_INTEGER, /* a JSON integer */
    V_STRINGS, /* a JSON array of strings */
    V_IDS,     /* a JSON array of strings or integers (group ids) */
    V_OBJECT,  /* a JSON object */
    V_NAME,    /* a JSON string or null */
    V_BOOL,    /* true or false */
    V_BASE64   /* not JSON: the signature */
};

enum line { L_NONE, L_ALWAYS, L_IF_SENT };

struct param_def {
    const char *name;
    enum value_type type;
    int required;
    enum line line;
};

/* The decoded query of a /login/embed request. */
struct query {
    char *val[P_COUNT]; /* NUL-terminated; NULL: not in the URL */
    size_t len[P_COUNT];
    json_t *json[P_COUNT];
};

enum query_result { Q_OK, Q_MALFORMED, Q_BAD_VALUE, Q_TWICE, Q_NOMEM };

/* A growing byte buffer, wiped when freed (it may hold a signed URL). */
struct buf {
    char *p;
    size_t len;
    size_t cap;
    int oom;
};

/* An embed user: one per external_user_id, with at most one session. */
struct euser {
    char *external_user_id;
    char id[ID_SIZE];
    json_t *grants; /* names, permissions, models, groups, attributes */
    int64_t created;
    int64_t last_login;
    int has_session;
    unsigned char session_mac[DS_MAC_SIZE];
    int64_t session_created;
    int64_t session_expires;
};

/* A used nonce, remembered by its MAC. */
struct nonce {
    struct ds_mac_entry e; /* first: the table's entry */
    int64_t expires;       /* forgotten after this (server clock) */
    int64_t replayable;    /* until then its URL would pass the time check */
};

/* The Host headers of a request: how many, and the last. */
struct host_count {
    int count;
    const char *value;
};

/* What the page handler needs of a session (a copy). */
struct session_view {
    char id[ID_SIZE];
    char *external_user_id;
};

static int secret_read(const char *path, char *err, size_t errlen);
static uint64_t first_user_id(void);
static int query_parse(const char *qs, size_t len, struct query *q,
                       const char **bad);
static int param_find(const char *name, size_t len);
static void query_free(struct query *q);
static char *embed_path_decode(const char *seg, size_t len);
static int embed_path_ok(const char *path, size_t len);
static const char *value_check(enum param p, const char *v, size_t len,
                               json_t **out);
static const char *range_check(enum param p, const json_t *v);
static const char *host_header(struct MHD_Connection *conn);
static enum MHD_Result count_host(void *cls, enum MHD_ValueKind kind,
                                  const char *key, const char *value);
static int signature_of(const char *host, size_t host_len, const char *seg,
                        size_t seg_len, char *const vals[P_COUNT],
                        const size_t lens[P_COUNT],
                        char out[SIGNATURE_LEN + 1]);
static int nonce_use(const char *nonce, size_t len, int64_t t, int64_t now);
static void nonces_forget(int64_t now, int thorough);
static int session_start(const struct query *q, int64_t now,
                         char cookie[COOKIE_SIZE]);
static size_t user_find(const char *external_user_id);
static size_t user_evict(int64_t now);
static void user_clear(struct euser *u);
static int session_find(const char *cookie, int64_t now,
                        struct session_view *view);
static json_t *grants_of(const struct query *q);
static int sso_target(const char *url, struct buf *scheme,
                      struct buf *authority, struct buf *path);
static const char *sso_fill(json_t *doc, char *vals[P_COUNT],
                            size_t lens[P_COUNT], const char **field);
static int json_text(json_t *v, char **out, size_t *len);
static void reply_page(struct ds_reply *r, const struct session_view *view,
                       const char *url);
static int random_hex(size_t raw, struct buf *out);
static size_t utf8_chars(const char *s, size_t len);
static void buf_add(struct buf *b, const char *s, size_t n);
static void buf_str(struct buf *b, const char *s);
static void buf_pct(struct buf *b, const char *s, size_t n);
static void buf_html(struct buf *b, const char *s, size_t n);
static char *buf_take(struct buf *b);
static void buf_free(struct buf *b);
static void wipe_free(char *p, size_t len);

static const struct param_def params[P_COUNT] = {
    [P_NONCE] = {"nonce", V_STRING, 1, L_ALWAYS},
    [P_TIME] = {"time", V_INTEGER, 1, L_ALWAYS},
    [P_SESSION_LENGTH] = {"session_length", V_INTEGER, 1, L_ALWAYS},
    [P_EXTERNAL_USER_ID] = {"external_user_id", V_STRING, 1, L_ALWAYS},
    [P_PERMISSIONS] = {"permissions", V_STRINGS, 1, L_ALWAYS},
    [P_MODELS] = {"models", V_STRINGS, 1, L_ALWAYS},
    [P_GROUP_IDS] = {"group_ids", V_IDS, 0, L_IF_SENT},
    [P_EXTERNAL_GROUP_ID] = {"external_group_id", V_STRING, 0, L_IF_SENT},
    [P_USER_ATTRIBUTES] = {"user_attributes", V_OBJECT, 0, L_IF_SENT},
    [P_ACCESS_FILTERS] = {"access_filters", V_OBJECT, 1, L_ALWAYS},
    [P_FIRST_NAME] = {"first_name", V_NAME, 0, L_NONE},
    [P_LAST_NAME] = {"last_name", V_NAME, 0, L_NONE},
    [P_USER_TIMEZONE] = {"user_timezone", V_NAME, 0, L_NONE},
    [P_FORCE_LOGOUT_LOGIN] = {"force_logout_login", V_BOOL, 1, L_NONE},
    [P_SIGNATURE] = {"signature", V_BASE64, 1, L_NONE},
};

/* What a value of each type must be, for the 400 message. */
static const char *const type_text[] = {
    [V_STRING] = "a JSON string",
    [V_INTEGER] = "a JSON integer",
    [V_STRINGS] = "a JSON array of strings",
    [V_IDS] = "a JSON array of strings or integers",
    [V_OBJECT] = "a JSON object",
    [V_NAME] = "a JSON string or null",
    [V_BOOL] = "true or false",
    [V_BASE64] = "base64 text",
};

static struct {
    pthread_mutex_t lock;
    char *secret; /* immutable after ds__embed_init() */
    size_t secret_len;
    struct euser *users; /* USERS_MAX slots, nusers used */
    size_t nusers;
    uint64_t next_id;
    struct ds_mac_table nonces; /* of struct nonce */
} es = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* ------------------------------------------------------------ verifier */

/*
 * GET /login/embed/{PCT(embed path)}?{query}: verify (C.3), then start an
 * embed session and redirect to the embed path.
 */
void
ds__embed_login(struct ds_request *req, const char *url, const char *method,
                struct ds_reply *r)
{
    struct query q;
    char sig[SIGNATURE_LEN + 1] = "";
    char cookie[COOKIE_SIZE] = "";
    char msg[160];
    const char *raw = req->raw_uri;
    const char *seg;
    const char *qs;
    const char *host;
    const char *bad = NULL;
    const char *why;
    char *path = NULL;
    size_t seg_len;
    size_t qs_len;
    int64_t now;
    int64_t t;
    int ok;
    int p;

    (void) url;
    (void) method;
    memset(&q, 0, sizeof(q));
    if (raw == NULL) {
        ds__reply_flavor_error(r, DS_FLAVOR_LOOKER,
                               MHD_HTTP_INTERNAL_SERVER_ERROR, NULL);
        goto out;
    }

    /* 1. Parse: path, Host, query; every required param, of its type. */
    if (strncmp(raw, LOGIN_PREFIX, strlen(LOGIN_PREFIX)) != 0) {
        ds__reply_flavor_error(r, DS_FLAVOR_LOOKER, MHD_HTTP_BAD_REQUEST,
                               "The embed URL must be "
                               "/login/embed/{percent-encoded embed path}");
        goto out;
    }
    seg = raw + strlen(LOGIN_PREFIX);
    seg_len = strcspn(seg, "?#");
    qs = seg[seg_len] == '?' ? seg + seg_len + 1 : seg + seg_len;
    qs_len = strcspn(qs, "#");
    path = embed_path_decode(seg, seg_len);
    if (path == NULL) {
        ds__reply_flavor_error(r, DS_FLAVOR_LOOKER, MHD_HTTP_BAD_REQUEST,
                               "The embed path must be a percent-encoded "
                               "path starting with /embed/");
        goto out;
    }
    host = host_header(req->conn);
    if (host == NULL) {
        ds__reply_flavor_error(r, DS_FLAVOR_LOOKER, MHD_HTTP_BAD_REQUEST,
                               "Exactly one Host header is required");
        goto out;
    }
    switch (query_parse(qs, qs_len, &q, &bad)) {
    case Q_OK:
        break;
    case Q_MALFORMED:
        ds__reply_flavor_error(r, DS_FLAVOR_LOOKER, MHD_HTTP_BAD_REQUEST,
                               "Malformed query string");
        goto out;
    case Q_BAD_VALUE:
        snprintf(msg, sizeof(msg), "'%s' param is not properly encoded", bad);
        ds__reply_flavor_error(r, DS_FLAVOR_LOOKER, MHD_HTTP_BAD_REQUEST, msg);
        goto out;
    case Q_TWICE:
        snprintf(msg, sizeof(msg), "'%s' param is given more than once", bad);
        ds__reply_flavor_error(r, DS_FLAVOR_LOOKER, MHD_HTTP_BAD_REQUEST, msg);
        goto out;
    case Q_NOMEM:
        ds__reply_flavor_error(r, DS_FLAVOR_LOOKER,
                               MHD_HTTP_INTERNAL_SERVER_ERROR, NULL);
        goto out;
    }
    for (p = 0; p < P_COUNT; p++) {
        if (params[p].required && q.val[p] == NULL) {
            snprintf(msg, sizeof(msg), "'%s' param is required",
                     params[p].name);
            ds__reply_flavor_error(r, DS_FLAVOR_LOOKER, MHD_HTTP_BAD_REQUEST,
                                   msg);
            goto out;
        }
    }
    for (p = 0; p < P_COUNT; p++) {
        if (q.val[p] == NULL) {
            continue;
        }
        why = value_check((enum param) p, q.val[p], q.len[p], &q.json[p]);
        if (why == NULL) {
            why = range_check((enum param) p, q.json[p]);
        }
        if (why != NULL) {
            snprintf(msg, sizeof(msg), "'%s' param must be %s", params[p].name,
                     why);
            ds__reply_flavor_error(r, DS_FLAVOR_LOOKER, MHD_HTTP_BAD_REQUEST,
                                   msg);
            goto out;
        }
    }

    /* 2. Signature, over the values exactly as received. */
    if (signature_of(host, strlen(host), seg, seg_len, q.val, q.len, sig) !=
        0) {
        ds__reply_flavor_error(r, DS_FLAVOR_LOOKER,
                               MHD_HTTP_INTERNAL_SERVER_ERROR, NULL);
        goto out;
    }
    ok = q.len[P_SIGNATURE] == SIGNATURE_LEN &&
         CRYPTO_memcmp(q.val[P_SIGNATURE], sig, SIGNATURE_LEN) == 0;
    if (!ok) {
        ds__reply_flavor_error(r, DS_FLAVOR_LOOKER, MHD_HTTP_UNAUTHORIZED,
                               "'signature' param failed to authenticate");
        goto out;
    }

    /* 3. Time, by the server clock (control offset included). */
    now = ds__clock_now();
    t = json_integer_value(q.json[P_TIME]);
    if (t < now - TIME_WINDOW || t > now + TIME_WINDOW) {
        ds__reply_flavor_error(r, DS_FLAVOR_LOOKER, MHD_HTTP_UNAUTHORIZED,
                               "'time' param is not within 5 minutes of the "
                               "server's system time");
        goto out;
    }

    /* 4. Nonce: single use; checked and recorded in one step. */
    switch (nonce_use(json_string_value(q.json[P_NONCE]),
                      json_string_length(q.json[P_NONCE]), t, now)) {
    case 0:
        break;
    case 1:
        ds__reply_flavor_error(r, DS_FLAVOR_LOOKER, MHD_HTTP_UNAUTHORIZED,
                               "'nonce' param has already been used");
        goto out;
    case 2:
        ds__reply_flavor_error(r, DS_FLAVOR_LOOKER,
                               MHD_HTTP_SERVICE_UNAVAILABLE,
                               "Too many embed logins within the last hour");
        goto out;
    default:
        ds__reply_flavor_error(r, DS_FLAVOR_LOOKER,
                               MHD_HTTP_INTERNAL_SERVER_ERROR, NULL);
        goto out;
    }

    /* Valid: a new session for this external user, then the redirect. */
    if (session_start(&q, now, cookie) != 0) {
        ds__reply_flavor_error(r, DS_FLAVOR_LOOKER,
                               MHD_HTTP_INTERNAL_SERVER_ERROR, NULL);
        goto out;
    }
    ds__reply_clear(r);
    r->set_cookie = malloc(SET_COOKIE_SIZE);
    if (r->set_cookie == NULL) {
        ds__reply_flavor_error(r, DS_FLAVOR_LOOKER,
                               MHD_HTTP_INTERNAL_SERVER_ERROR, NULL);
        goto out;
    }
    snprintf(r->set_cookie, SET_COOKIE_SIZE,
             COOKIE_NAME "=%s; Path=/; HttpOnly; SameSite=Lax%s", cookie,
             ds__opt.tls ? "; Secure" : "");
    r->status = MHD_HTTP_FOUND;
    r->own_location = path;
    r->location = path;
    path = NULL;
    r->no_store = 1;

out:
    ds__count_embed_login(r->status == MHD_HTTP_FOUND);
    explicit_bzero(sig, sizeof(sig));
    explicit_bzero(cookie, sizeof(cookie));
    free(path);
    query_free(&q);
}

/*
 * Split the raw query into the parameters of C.2 and decode their values
 * (form rules: '+' is a space, %XX a byte).  Unknown parameters are
 * ignored.  *bad names the parameter of a Q_BAD_VALUE or Q_TWICE.
 */
static int
query_parse(const char *qs, size_t len, struct query *q, const char **bad)
{
    struct ds_form_pair pair;
    const char *p = qs;
    int idx;

    while (ds__form_next(&p, qs + len, &pair)) {
        if (pair.name_bad) {
            return Q_MALFORMED;
        }
        idx = param_find(pair.name, pair.name_len);
        if (idx < 0) {
            continue;
        }
        if (q->val[idx] != NULL) {
            *bad = params[idx].name;
            return Q_TWICE;
        }
        switch (ds__form_value(&pair, &q->val[idx], &q->len[idx])) {
        case DS_FORM_OK:
            break;
        case DS_FORM_BAD:
            *bad = params[idx].name;
            return Q_BAD_VALUE;
        case DS_FORM_NOMEM:
            return Q_NOMEM;
        }
    }
    return Q_OK;
}

static int
param_find(const char *name, size_t len)
{
    int p;

    for (p = 0; p < P_COUNT; p++) {
        if (strlen(params[p].name) == len &&
            memcmp(params[p].name, name, len) == 0) {
            return p;
        }
    }
    return -1;
}

static void
query_free(struct query *q)
{
    int p;

    for (p = 0; p < P_COUNT; p++) {
        if (q->val[p] != NULL) {
            wipe_free(q->val[p], q->len[p]);
        }
        json_decref(q->json[p]);
    }
    memset(q, 0, sizeof(*q));
}

/* The embed path from its percent-encoded segment, or NULL if unusable. */
static char *
embed_path_decode(const char *seg, size_t len)
{
    char *path;
    size_t n;

    path = malloc(len + 1);
    if (path == NULL) {
        return NULL;
    }
    if (ds__pct_decode(seg, len, 0, path, &n) != 0 || !embed_path_ok(path, n)) {
        free(path);
        return NULL;
    }
    return path;
}

/*
 * Under /embed/ (so the redirect never leaves this host) and printable
 * ASCII without spaces (so it is a valid Location header as it stands).
 */
static int
embed_path_ok(const char *path, size_t len)
{
    size_t i;

    if (len <= strlen(EMBED_PREFIX) ||
        strncmp(path, EMBED_PREFIX, strlen(EMBED_PREFIX)) != 0) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        if ((unsigned char) path[i] <= 0x20 ||
            (unsigned char) path[i] >= 0x7f) {
            return 0;
        }
    }
    return 1;
}

/* Parse a value as the JSON type C.2 gives it; NULL or what it must be. */
static const char *
value_check(enum param p, const char *v, size_t len, json_t **out)
{
    json_error_t jerr;
    json_t *j;
    json_t *e;
    size_t i;
    int ok;

    if (params[p].type == V_BASE64) {
        return NULL; /* compared with the computed one, as it is */
    }
    j = json_loadb(v, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    switch (params[p].type) {
    case V_STRING:
        ok = json_is_string(j);
        break;
    case V_INTEGER:
        ok = json_is_integer(j);
        break;
    case V_STRINGS:
    case V_IDS:
        ok = json_is_array(j);
        json_array_foreach(j, i, e)
        {
            if (!json_is_string(e) &&
                !(params[p].type == V_IDS && json_is_integer(e))) {
                ok = 0;
            }
        }
        break;
    case V_OBJECT:
        ok = json_is_object(j);
        break;
    case V_NAME:
        ok = json_is_string(j) || json_is_null(j);
        break;
    case V_BOOL:
        ok = json_is_boolean(j);
        break;
    default:
        ok = 0;
        break;
    }
    if (!ok) {
        json_decref(j);
        return type_text[params[p].type];
    }
    *out = j;
    return NULL;
}

/* The limits of C.2 beyond the type; NULL or what the value must be. */
static const char *
range_check(enum param p, const json_t *v)
{
    size_t n;

    switch (p) {
    case P_NONCE:
        n = utf8_chars(json_string_value(v), json_string_length(v));
        return n >= 1 && n <= NONCE_CHARS_MAX
                   ? NULL
                   : "a JSON string of 1 to 254 characters";
    case P_SESSION_LENGTH:
        return json_integer_value(v) >= 0 &&
                       json_integer_value(v) <= SESSION_LENGTH_MAX
                   ? NULL
                   : "between 0 and 2592000";
    case P_EXTERNAL_USER_ID:
        n = json_string_length(v);
        return n >= 1 && n <= EXTERNAL_USER_ID_MAX
                   ? NULL
                   : "a non-empty JSON string of at "
                     "most " EXTERNAL_USER_ID_MAX_TEXT " bytes";
    case P_EXTERNAL_GROUP_ID:
        n = utf8_chars(json_string_value(v), json_string_length(v));
        return n <= EXTERNAL_GROUP_ID_MAX
                   ? NULL
                   : "a JSON string of at most 81 characters";
    default:
        return NULL;
    }
}

/* The Host header if there is exactly one, else NULL. */
static const char *
host_header(struct MHD_Connection *conn)
{
    struct host_count h = {0, NULL};

    MHD_get_connection_values(conn, MHD_HEADER_KIND, count_host, &h);
    return h.count == 1 && h.value[0] != '\0' ? h.value : NULL;
}

static enum MHD_Result
count_host(void *cls, enum MHD_ValueKind kind, const char *key,
           const char *value)
{
    struct host_count *h = cls;

    (void) kind;
    if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0) {
        h->count++;
        h->value = value != NULL ? value : "";
    }
    return MHD_YES;
}

/*
 * base64(HMAC-SHA1(secret, string-to-sign)) per C.3: host, then
 * "/login/embed/" + seg, then the signed values in order (an optional one
 * when present), joined by LF, no trailing LF.
 */
static int
signature_of(const char *host, size_t host_len, const char *seg, size_t seg_len,
             char *const vals[P_COUNT], const size_t lens[P_COUNT],
             char out[SIGNATURE_LEN + 1])
{
    struct buf b = {0};
    unsigned char md[SHA1_SIZE];
    unsigned int md_len = 0;
    int rc = -1;
    int p;

    buf_add(&b, host, host_len);
    buf_str(&b, "\n" LOGIN_PREFIX);
    buf_add(&b, seg, seg_len);
    for (p = 0; p < P_COUNT; p++) {
        if (params[p].line == L_ALWAYS ||
            (params[p].line == L_IF_SENT && vals[p] != NULL)) {
            buf_str(&b, "\n");
            buf_add(&b, vals[p], lens[p]);
        }
    }
    if (b.oom) {
        goto out;
    }
    if (HMAC(EVP_sha1(), es.secret, (int) es.secret_len,
             (const unsigned char *) b.p, b.len, md, &md_len) == NULL ||
        md_len != SHA1_SIZE) {
        goto out;
    }
    if (EVP_EncodeBlock((unsigned char *) out, md, SHA1_SIZE) !=
        SIGNATURE_LEN) {
        goto out;
    }
    rc = 0;

out:
    explicit_bzero(md, sizeof(md));
    buf_free(&b);
    return rc;
}

/* ---------------------------------------------------------------- nonces */

/*
 * Record a nonce as used.  0: recorded; 1: already used; 2: the table is
 * full of nonces whose URLs could still be replayed; -1: out of memory.
 */
static int
nonce_use(const char *nonce, size_t len, int64_t t, int64_t now)
{
    unsigned char mac[DS_MAC_SIZE];
    struct nonce *n;
    int rc = -1;

    ds__mac(nonce, len, mac);
    pthread_mutex_lock(&es.lock);
    nonces_forget(now, 0);
    if (ds__mac_table_find(&es.nonces, mac) != NULL) {
        rc = 1;
        goto out;
    }
    if (es.nonces.count >= NONCES_MAX) {
        nonces_forget(now, 1);
        if (es.nonces.count >= NONCES_MAX) {
            rc = 2;
            goto out;
        }
    }
    n = calloc(1, sizeof(*n));
    if (n == NULL) {
        goto out;
    }
    memcpy(n->e.mac, mac, DS_MAC_SIZE);
    n->expires = now + NONCE_TTL;
    n->replayable = t + TIME_WINDOW;
    ds__mac_table_add(&es.nonces, &n->e);
    rc = 0;

out:
    pthread_mutex_unlock(&es.lock);
    explicit_bzero(mac, sizeof(mac));
    return rc;
}

/*
 * Forget expired nonces (lock held): the oldest first, cheaply; thorough
 * also scans everything and forgets nonces whose URLs the time check
 * already rejects (the clock may have been moved back meanwhile).
 */
static void
nonces_forget(int64_t now, int thorough)
{
    struct ds_mac_entry *e;
    struct ds_mac_entry *newer;
    const struct nonce *n;

    /* The entry is the nonce's first member. */
    while (es.nonces.oldest != NULL &&
           ((const struct nonce *) es.nonces.oldest)->expires <= now) {
        ds__mac_table_remove(&es.nonces, es.nonces.oldest);
    }
    if (!thorough) {
        return;
    }
    for (e = es.nonces.oldest; e != NULL; e = newer) {
        newer = e->newer;
        n = (const struct nonce *) e;
        if (n->expires <= now || n->replayable < now) {
            ds__mac_table_remove(&es.nonces, e);
        }
    }
}

/* ------------------------------------------------------------- sessions */

/*
 * Create the embed user for q's external_user_id, or update it (same id,
 * new grants), and give it a new session: the previous one, if any, ends
 * now (B.6).  cookie receives the session's cookie value.
 */
static int
session_start(const struct query *q, int64_t now, char cookie[COOKIE_SIZE])
{
    unsigned char mac[DS_MAC_SIZE];
    const char *ext = json_string_value(q->json[P_EXTERNAL_USER_ID]);
    char *ext_copy = NULL;
    json_t *grants = NULL;
    struct euser *u;
    size_t i;
    int rc = -1;

    if (ds__random_b64url(cookie) != 0) {
        return -1;
    }
    ds__mac(cookie, strlen(cookie), mac);
    grants = grants_of(q);
    ext_copy = strdup(ext);
    if (grants == NULL || ext_copy == NULL) {
        goto out;
    }
    pthread_mutex_lock(&es.lock);
    i = user_find(ext);
    if (i == es.nusers) {
        if (es.nusers == USERS_MAX) {
            i = user_evict(now);
        } else {
            es.nusers++;
        }
        u = &es.users[i];
        u->external_user_id = ext_copy;
        ext_copy = NULL;
        snprintf(u->id, sizeof(u->id), "%llu",
                 (unsigned long long) es.next_id++);
        u->created = now;
    }
    u = &es.users[i];
    json_decref(u->grants);
    u->grants = grants;
    grants = NULL;
    u->last_login = now;
    u->has_session = 1;
    memcpy(u->session_mac, mac, DS_MAC_SIZE);
    u->session_created = now;
    u->session_expires =
        now + (int64_t) json_integer_value(q->json[P_SESSION_LENGTH]);
    pthread_mutex_unlock(&es.lock);
    rc = 0;

out:
    free(ext_copy);
    json_decref(grants);
    explicit_bzero(mac, sizeof(mac));
    if (rc != 0) {
        explicit_bzero(cookie, COOKIE_SIZE);
    }
    return rc;
}

/* The index of the user with this external id, or es.nusers (lock held). */
static size_t
user_find(const char *external_user_id)
{
    size_t i;

    for (i = 0; i < es.nusers; i++) {
        if (strcmp(es.users[i].external_user_id, external_user_id) == 0) {
            break;
        }
    }
    return i;
}

/*
 * Make room in a full table (lock held): the user whose latest login is
 * oldest among those without a live session, else the oldest of all.
 * Returns the freed slot.
 */
static size_t
user_evict(int64_t now)
{
    size_t best = 0;
    int best_dead = 0;
    size_t i;

    for (i = 0; i < es.nusers; i++) {
        const struct euser *u = &es.users[i];
        int dead = !u->has_session || u->session_expires <= now;

        if ((dead && !best_dead) ||
            (dead == best_dead && u->last_login < es.users[best].last_login)) {
            best = i;
            best_dead = dead;
        }
    }
    user_clear(&es.users[best]);
    return best;
}

static void
user_clear(struct euser *u)
{
    free(u->external_user_id);
    json_decref(u->grants);
    explicit_bzero(u, sizeof(*u));
}

/*
 * The session of a cookie, if live by the server clock: copies what the
 * page shows.  An expired session is ended.  0: found; -1: not.
 */
static int
session_find(const char *cookie, int64_t now, struct session_view *view)
{
    unsigned char mac[DS_MAC_SIZE];
    struct euser *u;
    size_t i;
    int rc = -1;

    if (strlen(cookie) != COOKIE_SIZE - 1) {
        return -1;
    }
    ds__mac(cookie, COOKIE_SIZE - 1, mac);
    pthread_mutex_lock(&es.lock);
    for (i = 0; i < es.nusers; i++) {
        u = &es.users[i];
        if (!u->has_session ||
            CRYPTO_memcmp(u->session_mac, mac, DS_MAC_SIZE) != 0) {
            continue;
        }
        if (u->session_expires <= now) {
            u->has_session = 0;
            explicit_bzero(u->session_mac, DS_MAC_SIZE);
            break;
        }
        view->external_user_id = strdup(u->external_user_id);
        if (view->external_user_id != NULL) {
            memcpy(view->id, u->id, sizeof(view->id));
            rc = 0;
        }
        break;
    }
    pthread_mutex_unlock(&es.lock);
    explicit_bzero(mac, sizeof(mac));
    return rc;
}

/* What the control listing shows of a login's grants (new reference). */
static json_t *
grants_of(const struct query *q)
{
    static const enum param shown[] = {P_FIRST_NAME,      P_LAST_NAME,
                                       P_PERMISSIONS,     P_MODELS,
                                       P_GROUP_IDS,       P_EXTERNAL_GROUP_ID,
                                       P_USER_ATTRIBUTES, P_USER_TIMEZONE,
                                       P_ACCESS_FILTERS,  P_FORCE_LOGOUT_LOGIN};
    json_t *o = json_object();
    size_t i;

    for (i = 0; o != NULL && i < sizeof(shown) / sizeof(shown[0]); i++) {
        json_t *v = q->json[shown[i]];

        if (json_object_set(o, params[shown[i]].name,
                            v != NULL ? v : json_null()) != 0) {
            json_decref(o);
            o = NULL;
        }
    }
    return o;
}

/* ------------------------------------------------------------------ page */

/*
 * GET /embed/...: a tiny "dashboard" for a live embed session, naming the
 * external user and the path; 401 without a live tg_embed_session cookie.
 */
void
ds__embed_page(struct ds_request *req, const char *url, const char *method,
               struct ds_reply *r)
{
    struct session_view view = {"", NULL};
    const char *cookie;

    (void) method;
    cookie =
        MHD_lookup_connection_value(req->conn, MHD_COOKIE_KIND, COOKIE_NAME);
    if (cookie == NULL || session_find(cookie, ds__clock_now(), &view) != 0) {
        ds__reply_flavor_error(r, DS_FLAVOR_LOOKER, MHD_HTTP_UNAUTHORIZED,
                               NULL);
        return;
    }
    reply_page(r, &view, url);
    free(view.external_user_id);
}

static void
reply_page(struct ds_reply *r, const struct session_view *view, const char *url)
{
    struct buf b = {0};
    char *text;
    size_t len;

    buf_str(&b, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
                "<title>Embedded content</title></head>\n<body>\n"
                "<h1>Embedded dashboard</h1>\n"
                "<p>Embed user <span id=\"external_user_id\">");
    buf_html(&b, view->external_user_id, strlen(view->external_user_id));
    buf_str(&b, "</span> (user id <span id=\"user_id\">");
    buf_str(&b, view->id);
    buf_str(&b, "</span>)</p>\n<p>Path <code id=\"path\">");
    buf_html(&b, url, strlen(url));
    buf_str(&b, "</code></p>\n</body></html>\n");
    len = b.len;
    text = buf_take(&b);
    if (text == NULL) {
        ds__reply_flavor_error(r, DS_FLAVOR_LOOKER,
                               MHD_HTTP_INTERNAL_SERVER_ERROR, NULL);
        return;
    }
    ds__reply_text(r, MHD_HTTP_OK, "text/html; charset=utf-8", text, len);
    r->no_store = 1;
    free(text);
}

/* --------------------------------------------------------------- sso_url */

/*
 * POST /embed/sso_url (B.6), for an admin (routes.c checked the token):
 * the body's EmbedSsoParams signed into a single-use URL for target_url's
 * host, with a fresh nonce and the server clock.
 */
void
ds__embed_sso_url(struct ds_request *req, struct ds_reply *r)
{
    struct buf scheme = {0};
    struct buf authority = {0};
    struct buf path = {0};
    struct buf seg = {0};
    struct buf url = {0};
    char *vals[P_COUNT] = {0};
    size_t lens[P_COUNT] = {0};
    char sig[SIGNATURE_LEN + 1] = "";
    json_t *doc = NULL;
    json_t *target;
    json_t *u = NULL;
    const char *why;
    const char *field = NULL;
    int p;

    doc = ds__json_body(req, DS_FLAVOR_LOOKER, r);
    if (doc == NULL) {
        goto out;
    }
    target = json_object_get(doc, "target_url");
    if (target == NULL || json_is_null(target)) {
        ds__reply_validation(r, "target_url", "missing",
                             "This field is required.");
        goto out;
    }
    if (!json_is_string(target) ||
        sso_target(json_string_value(target), &scheme, &authority, &path) !=
            0) {
        ds__reply_validation(r, "target_url", "invalid",
                             "must be an http or https URL with a host and "
                             "a path");
        goto out;
    }
    why = sso_fill(doc, vals, lens, &field);
    if (why != NULL) {
        if (field == NULL) {
            ds__reply_flavor_error(r, DS_FLAVOR_LOOKER,
                                   MHD_HTTP_INTERNAL_SERVER_ERROR, NULL);
        } else {
            ds__reply_validation(r, field, "invalid", why);
        }
        goto out;
    }
    buf_pct(&seg, path.p, path.len);
    if (seg.oom || authority.oom ||
        signature_of(authority.p, authority.len, seg.p, seg.len, vals, lens,
                     sig) != 0) {
        ds__reply_flavor_error(r, DS_FLAVOR_LOOKER,
                               MHD_HTTP_INTERNAL_SERVER_ERROR, NULL);
        goto out;
    }
    buf_add(&url, scheme.p, scheme.len);
    buf_str(&url, "://");
    buf_add(&url, authority.p, authority.len);
    buf_str(&url, LOGIN_PREFIX);
    buf_add(&url, seg.p, seg.len);
    for (p = 0; p < P_SIGNATURE; p++) {
        if (vals[p] == NULL) {
            continue;
        }
        buf_str(&url, p == 0 ? "?" : "&");
        buf_str(&url, params[p].name);
        buf_str(&url, "=");
        buf_pct(&url, vals[p], lens[p]);
    }
    buf_str(&url, "&signature=");
    buf_pct(&url, sig, SIGNATURE_LEN);
    u = url.oom ? NULL : json_string(url.p);
    if (u == NULL) {
        ds__reply_flavor_error(r, DS_FLAVOR_LOOKER,
                               MHD_HTTP_INTERNAL_SERVER_ERROR, NULL);
        goto out;
    }
    ds__reply_json(r, MHD_HTTP_OK, json_pack("{sO}", "url", u));
    r->no_store = 1;

out:
    if (u != NULL) {
        explicit_bzero((char *) json_string_value(u), json_string_length(u));
        json_decref(u);
    }
    for (p = 0; p < P_COUNT; p++) {
        if (vals[p] != NULL) {
            wipe_free(vals[p], lens[p]);
        }
    }
    explicit_bzero(sig, sizeof(sig));
    buf_free(&scheme);
    buf_free(&authority);
    buf_free(&path);
    buf_free(&seg);
    buf_free(&url);
    json_decref(doc);
}

/*
 * Split target_url: scheme http or https (lower-cased), an authority
 * without userinfo (host lower-cased, the scheme's default port dropped,
 * as a browser sends Host), and the embed path: the URL's path and query,
 * under /embed/ (a Looker UI path such as /dashboards/34 becomes
 * /embed/dashboards/34).  Printable ASCII only; the authority holds host
 * name, IP literal and port characters only.
 */
static int
sso_target(const char *url, struct buf *scheme, struct buf *authority,
           struct buf *path)
{
    const char *p;
    const char *auth;
    size_t auth_len;
    size_t path_len;
    size_t i;
    int https;

    for (i = 0; url[i] != '\0'; i++) {
        if ((unsigned char) url[i] <= 0x20 || (unsigned char) url[i] >= 0x7f) {
            return -1;
        }
    }
    if (strncasecmp(url, "https://", 8) == 0) {
        https = 1;
        p = url + 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        https = 0;
        p = url + 7;
    } else {
        return -1;
    }
    buf_str(scheme, https ? "https" : "http");
    auth = p;
    auth_len = strcspn(auth, "/?#");
    if (auth_len == 0 || memchr(auth, '@', auth_len) != NULL ||
        auth[auth_len] != '/') {
        return -1;
    }
    if (auth_len > 4 && https && strncmp(auth + auth_len - 4, ":443", 4) == 0) {
        auth_len -= 4;
    } else if (auth_len > 3 && !https &&
               strncmp(auth + auth_len - 3, ":80", 3) == 0) {
        auth_len -= 3;
    }
    for (i = 0; i < auth_len; i++) {
        char c = auth[i];

        if (c >= 'A' && c <= 'Z') {
            c = (char) (c - 'A' + 'a');
        } else if (!(c >= 'a' && c <= 'z') && !(c >= '0' && c <= '9') &&
                   strchr(".-_~:[]", c) == NULL) {
            return -1; /* a host name, an IP literal and a port only */
        }
        buf_add(authority, &c, 1);
    }
    p = auth + strcspn(auth, "/?#");
    path_len = strcspn(p, "#");
    if (path_len <= 1 || p[1] == '?') {
        return -1; /* no path beyond "/" */
    }
    if (strncmp(p, EMBED_PREFIX, strlen(EMBED_PREFIX)) != 0) {
        buf_str(path, "/embed");
    }
    buf_add(path, p, path_len);
    if (scheme->oom || authority->oom || path->oom ||
        !embed_path_ok(path->p, path->len)) {
        return -1;
    }
    return 0;
}

/*
 * The query values (compact JSON) from EmbedSsoParams with B.6's defaults:
 * a fresh nonce and the server clock.  NULL, or what field must be (field
 * NULL: out of memory).
 */
static const char *
sso_fill(json_t *doc, char *vals[P_COUNT], size_t lens[P_COUNT],
         const char **field)
{
    struct buf nonce = {0};
    struct buf ext = {0};
    json_t *given[P_COUNT] = {0};
    json_t *made[P_COUNT] = {0};
    const char *why = NULL;
    json_t *v;
    json_t *e;
    size_t i;
    int p;

    for (p = 0; p < P_SIGNATURE; p++) {
        v = json_object_get(doc, params[p].name);
        given[p] = json_is_null(v) ? NULL : v;
    }
    /* Never taken from the body: the server makes them. */
    given[P_NONCE] = given[P_TIME] = given[P_ACCESS_FILTERS] = NULL;
    for (p = 0; p < P_SIGNATURE && why == NULL; p++) {
        v = given[p];
        if (v == NULL) {
            continue;
        }
        *field = params[p].name;
        switch (p) {
        case P_SESSION_LENGTH:
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                json_integer_value(v) > SESSION_LENGTH_MAX) {
                why = "must be an integer from 0 to 2592000";
            }
            break;
        case P_EXTERNAL_USER_ID:
            if (!json_is_string(v) || json_string_length(v) == 0 ||
                json_string_length(v) > EXTERNAL_USER_ID_MAX) {
                why = "must be a non-empty string of at "
                      "most " EXTERNAL_USER_ID_MAX_TEXT " bytes";
            }
            break;
        case P_EXTERNAL_GROUP_ID:
            if (!json_is_string(v) ||
                utf8_chars(json_string_value(v), json_string_length(v)) >
                    EXTERNAL_GROUP_ID_MAX) {
                why = "must be a string of at most 81 characters";
            }
            break;
        case P_FIRST_NAME:
        case P_LAST_NAME:
        case P_USER_TIMEZONE:
            if (!json_is_string(v)) {
                why = "must be a string";
            }
            break;
        case P_PERMISSIONS:
        case P_MODELS:
        case P_GROUP_IDS:
            if (!json_is_array(v)) {
                why = "must be an array of strings";
            }
            json_array_foreach(v, i, e)
            {
                if (!json_is_string(e) &&
                    !(p == P_GROUP_IDS && json_is_integer(e))) {
                    why = "must be an array of strings";
                }
            }
            break;
        case P_USER_ATTRIBUTES:
            if (!json_is_object(v)) {
                why = "must be an object";
            }
            break;
        case P_FORCE_LOGOUT_LOGIN:
            if (!json_is_boolean(v)) {
                why = "must be true or false";
            }
            break;
        default:
            break;
        }
    }
    if (why != NULL) {
        goto out;
    }
    *field = NULL;
    why = "out of memory";
    if (random_hex(SSO_NONCE_RAW, &nonce) != 0) {
        goto out;
    }
    made[P_NONCE] = json_string(nonce.p);
    made[P_TIME] = json_integer((json_int_t) ds__clock_now());
    made[P_SESSION_LENGTH] = json_integer(SESSION_LENGTH_DEFAULT);
    if (given[P_EXTERNAL_USER_ID] == NULL) {
        buf_str(&ext, "embed-");
        if (random_hex(SSO_USER_RAW, &ext) != 0) {
            goto out;
        }
        made[P_EXTERNAL_USER_ID] = json_string(ext.p);
    }
    made[P_PERMISSIONS] = json_array();
    made[P_MODELS] = json_array();
    made[P_ACCESS_FILTERS] = json_object();
    made[P_FIRST_NAME] = json_string("Embed");
    made[P_LAST_NAME] = json_string("User");
    made[P_FORCE_LOGOUT_LOGIN] = json_true();
    for (p = 0; p < P_SIGNATURE; p++) {
        v = given[p] != NULL ? given[p] : made[p];
        if (v == NULL) {
            if (params[p].required || p == P_FIRST_NAME || p == P_LAST_NAME) {
                goto out; /* a default that could not be made */
            }
            continue; /* optional and not given: not sent */
        }
        if (json_text(v, &vals[p], &lens[p]) != 0) {
            goto out;
        }
    }
    why = NULL;

out:
    for (p = 0; p < P_COUNT; p++) {
        json_decref(made[p]);
    }
    buf_free(&nonce);
    buf_free(&ext);
    return why;
}

/* v as compact JSON text, UTF-8 as it is (as C.2's values are). */
static int
json_text(json_t *v, char **out, size_t *len)
{
    *out = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (*out == NULL) {
        return -1;
    }
    *len = strlen(*out);
    return 0;
}

/* --------------------------------------------------------------- control */

/*
 * GET {control}/embed: the embed users with their grants and sessions,
 * and the number of remembered nonces.  Never a cookie or a nonce.
 */
json_t *
ds__embed_json(void)
{
    json_t *users = json_array();
    json_t *sessions = json_array();
    json_t *o = NULL;
    int64_t now = ds__clock_now();
    size_t i;

    if (users == NULL || sessions == NULL) {
        goto out;
    }
    pthread_mutex_lock(&es.lock);
    for (i = 0; i < es.nusers; i++) {
        const struct euser *u = &es.users[i];
        int live = u->has_session && u->session_expires > now;
        json_t *user;

        user = json_pack(
            "{sssssIsIso}", "id", u->id, "external_user_id",
            u->external_user_id, "created", (json_int_t) u->created,
            "last_login", (json_int_t) u->last_login, "expires",
            live ? json_integer((json_int_t) u->session_expires) : json_null());
        if (user != NULL) {
            json_object_update(user, u->grants);
        }
        json_array_append_new(users, user);
        if (live) {
            json_array_append_new(
                sessions,
                json_pack("{sssssIsI}", "user_id", u->id, "external_user_id",
                          u->external_user_id, "created",
                          (json_int_t) u->session_created, "expires",
                          (json_int_t) u->session_expires));
        }
    }
    o = json_pack("{sOsOsI}", "users", users, "sessions", sessions, "nonces",
                  (json_int_t) es.nonces.count);
    pthread_mutex_unlock(&es.lock);

out:
    json_decref(users);
    json_decref(sessions);
    return o;
}

/* --------------------------------------------------------------- helpers */

/* raw random bytes as lower-case hex, appended to out (NUL-terminated). */
static int
random_hex(size_t raw, struct buf *out)
{
    static const char hexdigits[] = "0123456789abcdef";
    unsigned char bytes[32];
    size_t i;

    if (raw > sizeof(bytes) || RAND_bytes(bytes, (int) raw) != 1) {
        return -1;
    }
    for (i = 0; i < raw; i++) {
        buf_add(out, &hexdigits[bytes[i] >> 4], 1);
        buf_add(out, &hexdigits[bytes[i] & 0x0f], 1);
    }
    explicit_bzero(bytes, sizeof(bytes));
    return out->oom ? -1 : 0;
}

/* Characters (code points) in UTF-8 text jansson has validated. */
static size_t
utf8_chars(const char *s, size_t len)
{
    size_t n = 0;
    size_t i;

    for (i = 0; i < len; i++) {
        if (((unsigned char) s[i] & 0xc0) != 0x80) {
            n++;
        }
    }
    return n;
}

static void
buf_add(struct buf *b, const char *s, size_t n)
{
    size_t cap;
    char *p;

    if (b->oom) {
        return;
    }
    if (n > SIZE_MAX / 2 - b->len) {
        b->oom = 1;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        cap = b->cap == 0 ? 256 : b->cap;
        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        p = malloc(cap);
        if (p == NULL) {
            b->oom = 1;
            return;
        }
        if (b->p != NULL) {
            memcpy(p, b->p, b->len);
            wipe_free(b->p, b->cap);
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void
buf_str(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

/* Percent-encode every byte but A-Z a-z 0-9 - _ . ~ (C.1), upper-case hex. */
static void
buf_pct(struct buf *b, const char *s, size_t n)
{
    static const char hexdigits[] = "0123456789ABCDEF";
    char enc[3] = {'%', 0, 0};
    size_t i;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char) s[i];

        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
            (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
            c == '~') {
            buf_add(b, &s[i], 1);
        } else {
            enc[1] = hexdigits[c >> 4];
            enc[2] = hexdigits[c & 0x0f];
            buf_add(b, enc, 3);
        }
    }
}

/* HTML text: & < > " ' escaped, control bytes shown as '?'. */
static void
buf_html(struct buf *b, const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        switch (s[i]) {
        case '&':
            buf_str(b, "&amp;");
            break;
        case '<':
            buf_str(b, "&lt;");
            break;
        case '>':
            buf_str(b, "&gt;");
            break;
        case '"':
            buf_str(b, "&quot;");
            break;
        case '\'':
            buf_str(b, "&#39;");
            break;
        default:
            if ((unsigned char) s[i] < 0x20 || s[i] == 0x7f) {
                buf_str(b, "?");
            } else {
                buf_add(b, &s[i], 1);
            }
            break;
        }
    }
}

/* The text (caller frees), or NULL when out of memory; b is emptied. */
static char *
buf_take(struct buf *b)
{
    char *p = NULL;

    if (!b->oom && b->p != NULL) {
        p = b->p;
        b->p = NULL;
    }
    buf_free(b);
    return p;
}

static void
buf_free(struct buf *b)
{
    if (b->p != NULL) {
        wipe_free(b->p, b->cap);
    }
    memset(b, 0, sizeof(*b));
}

static void
wipe_free(char *p, size_t len)
{
    explicit_bzero(p, len);
    free(p);
}

/* ---------------------------------------------------------------- setup */

/*
 * Load the embed secret (path NULL: the demo secret) and set up the
 * tables.  Returns 0, or an exit status with err set (never the secret).
 */
int
ds__embed_init(const char *path, char *err, size_t errlen)
{
    es.users = calloc(USERS_MAX, sizeof(*es.users));
    if (es.users == NULL || ds__mac_table_init(&es.nonces, NONCE_BUCKETS,
                                               sizeof(struct nonce)) != 0) {
        snprintf(err, errlen, "out of memory");
        return DS_EXIT_FAILURE;
    }
    es.next_id = first_user_id();
    if (path == NULL) {
        es.secret = strdup(DEMO_SECRET);
        if (es.secret == NULL) {
            snprintf(err, errlen, "out of memory");
            return DS_EXIT_FAILURE;
        }
        es.secret_len = strlen(DEMO_SECRET);
        return 0;
    }
    return secret_read(path, err, errlen) == 0 ? 0 : DS_EXIT_USAGE;
}

void
ds__embed_free(void)
{
    size_t i;

    pthread_mutex_lock(&es.lock);
    for (i = 0; es.users != NULL && i < es.nusers; i++) {
        user_clear(&es.users[i]);
    }
    free(es.users);
    es.users = NULL;
    es.nusers = 0;
    ds__mac_table_free(&es.nonces);
    pthread_mutex_unlock(&es.lock);
    if (es.secret != NULL) {
        wipe_free(es.secret, es.secret_len);
    }
    es.secret = NULL;
    es.secret_len = 0;
}

/*
 * Read --embed-secret-file: a regular file (not a symlink) owned by root
 * or by us and readable by its owner only, 1 byte to 4 KiB, one trailing
 * newline (LF or CRLF) stripped.  The secret is the remaining bytes as-is.
 */
static int
secret_read(const char *path, char *err, size_t errlen)
{
    char *buf = NULL;
    size_t size = 0;
    size_t n = 0;
    int rc = -1;

    if (ds__file_read(path, SECRET_FILE_MAX, 1, &buf, &size, err, errlen) !=
        0) {
        goto out;
    }
    n = size;
    if (n > 0 && buf[n - 1] == '\n') {
        n--;
        if (n > 0 && buf[n - 1] == '\r') {
            n--;
        }
    }
    buf[n] = '\0';
    if (n == 0) {
        snprintf(err, errlen, "%s: the secret is empty", path);
        goto out;
    }
    if (memchr(buf, '\0', n) != NULL) {
        snprintf(err, errlen, "%s: the secret holds a NUL byte", path);
        goto out;
    }
    es.secret = buf;
    es.secret_len = n;
    buf = NULL;
    rc = 0;

out:
    if (buf != NULL) {
        wipe_free(buf, size + 1);
    }
    return rc;
}

/* Embed user ids never collide with the users file's looker_id values. */
static uint64_t
first_user_id(void)
{
    const struct ds_user *u;
    uint64_t max = 0;
    uint64_t v;
    size_t i;

    for (i = 0; i < ds__users_count(); i++) {
        u = ds__user_at(i);
        v = strtoull(u->looker_id_str, NULL, 10); /* 19 digits fit */
        if (v > max) {
            max = v;
        }
    }
    return max + 1 < EMBED_ID_MIN ? EMBED_ID_MIN : max + 1;
}
