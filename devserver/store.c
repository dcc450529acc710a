/* SPDX-License-Identifier: MIT */
/*
 * store.c - the devserver's state: the users (from the users file, then
 * immutable), their API credentials (mutable), the tokens with their API
 * sessions, and the server clock.  One mutex guards all of it.
 *
 * Neither tokens nor client secrets are kept: the token table is keyed by
 * HMAC-SHA256(per-process random key, token) and secrets are kept as the
 * same MAC; keys are compared with CRYPTO_memcmp, so the timing of a lookup
 * tells an attacker nothing and a memory dump holds no usable credential.
 */
#include "devserver.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

/* Token hash buckets: a power of two above DS_TOKENS_MAX. */
#define TOKEN_BUCKETS (1u << 17)
/* Tokens left after evicting live ones from a full table. */
#define TOKENS_LOW (DS_TOKENS_MAX - DS_TOKENS_MAX / 10)
/* Longest looker_id: 19 digits always fit an int64. */
#define LOOKER_ID_MAX 19
/* Longest client_id (the credentials info keeps a copy). */
#define CLIENT_ID_MAX 127
/* Random bytes in a generated client id (hex encoded). */
#define GEN_CLIENT_ID_RAW 16

struct token {
    struct ds_mac_entry e; /* first: the table's entry */
    const struct ds_user *user;
    enum ds_flavor flavor;
    int64_t issued;
    int64_t expires;
    int workspace_dev;
    int sudo;
};

struct cred {
    int present;
    char client_id[CLIENT_ID_MAX + 1];
    size_t client_id_len;
    unsigned char secret_mac[DS_MAC_SIZE];
    int64_t id;
    int64_t created_ms;
};

enum key_type {
    K_STRING,   /* any string, may be empty */
    K_NONEMPTY, /* a non-empty string */
    K_DIGITS,   /* 1..LOOKER_ID_MAX ASCII digits */
    K_STRINGS,  /* an array of strings */
    K_BOOL
};

struct user_key {
    const char *name;
    enum key_type type;
    int required;
};

static int user_parse(json_t *in, size_t i, const char *src, json_t *out,
                      char *err, size_t errlen);
static int users_check_unique(json_t *list, const char *src, char *err,
                              size_t errlen);
static json_t *default_display_name(json_t *first, json_t *last,
                                    json_t *username);
static void sanitize(char *dst, size_t size, const char *src, size_t len);
static void hex(const unsigned char *in, size_t len, char *out);
static int64_t now_ms(void);
static struct token *token_find(const unsigned char mac[DS_MAC_SIZE]);
static unsigned int bucket_of(const struct ds_mac_table *t,
                              const unsigned char mac[DS_MAC_SIZE]);
static void tokens_make_room(int64_t now);
static int token_alive(const struct token *t, int64_t now);

static const struct user_key user_keys[] = {
    {"id", K_NONEMPTY, 1},
    {"looker_id", K_DIGITS, 1},
    {"username", K_NONEMPTY, 1},
    {"first_name", K_STRING, 0},
    {"last_name", K_STRING, 0},
    {"display_name", K_STRING, 0},
    {"email", K_STRING, 0},
    {"client_id", K_NONEMPTY, 0},
    {"client_secret", K_NONEMPTY, 0},
    {"authorities", K_STRINGS, 0},
    {"authority_groups", K_STRINGS, 0},
    {"looker_group_ids", K_STRINGS, 0},
    {"looker_role_ids", K_STRINGS, 0},
    {"evaluation", K_BOOL, 0},
    {"disabled", K_BOOL, 0},
    {"admin", K_BOOL, 0},
    {"embed", K_BOOL, 0},
};

#define N_USER_KEYS (sizeof(user_keys) / sizeof(user_keys[0]))

static struct {
    pthread_mutex_t lock;
    unsigned char key[DS_MAC_SIZE];
    json_t *users_list; /* array of normalized user objects */
    struct ds_user *users;
    struct cred *creds;
    size_t nusers;
    struct ds_mac_table tokens; /* of struct token */
    int64_t offset;             /* clock offset, seconds; atomic access */
} st = {.lock = PTHREAD_MUTEX_INITIALIZER};

int
ds__store_init(char *err, size_t errlen)
{
    if (RAND_bytes(st.key, sizeof(st.key)) != 1) {
        snprintf(err, errlen, "RAND_bytes failed");
        return -1;
    }
    if (ds__mac_table_init(&st.tokens, TOKEN_BUCKETS, sizeof(struct token)) !=
        0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/*
 * Load and validate the users (path NULL: the built-in demo users).  On
 * failure err names the file and the problem.  Called once, before any
 * thread runs.
 */
int
ds__users_load(const char *path, char *err, size_t errlen)
{
    const char *src = path != NULL ? path : "built-in demo users";
    size_t flags = JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL;
    json_error_t jerr;
    json_t *doc = NULL;
    json_t *in;
    json_t *list = NULL;
    json_t *secret;
    const char *key;
    json_t *value;
    size_t i;
    size_t n;
    int64_t created = now_ms();
    int rc = -1;

    if (path != NULL) {
        doc = json_load_file(path, flags, &jerr);
    } else {
        doc = json_loads(ds__demo_users_json, flags, &jerr);
    }
    if (doc == NULL) {
        if (jerr.line > 0) {
            snprintf(err, errlen, "%s:%d:%d: %s", src, jerr.line, jerr.column,
                     jerr.text);
        } else {
            snprintf(err, errlen, "%s: %s", src, jerr.text);
        }
        goto out;
    }
    if (!json_is_object(doc)) {
        snprintf(err, errlen,
                 "%s: the top level must be an object "
                 "{\"users\": [...]}",
                 src);
        goto out;
    }
    json_object_foreach(doc, key, value)
    {
        if (strcmp(key, "users") != 0) {
            char name[64];

            sanitize(name, sizeof(name), key, strlen(key));
            snprintf(err, errlen, "%s: unknown key \"%s\" at the top level",
                     src, name);
            goto out;
        }
    }
    in = json_object_get(doc, "users");
    if (!json_is_array(in)) {
        snprintf(err, errlen, "%s: \"users\" is missing or not an array", src);
        goto out;
    }
    list = json_array();
    if (list == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    n = json_array_size(in);
    for (i = 0; i < n; i++) {
        json_t *u = json_object();

        if (u == NULL || json_array_append_new(list, u) != 0) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        if (user_parse(json_array_get(in, i), i, src, u, err, errlen) != 0) {
            goto out;
        }
    }
    if (users_check_unique(list, src, err, errlen) != 0) {
        goto out;
    }

    st.users = calloc(n > 0 ? n : 1, sizeof(*st.users));
    st.creds = calloc(n > 0 ? n : 1, sizeof(*st.creds));
    if (st.users == NULL || st.creds == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    for (i = 0; i < n; i++) {
        json_t *o = json_array_get(list, i);
        struct ds_user *u = &st.users[i];
        struct cred *c = &st.creds[i];
        json_t *cid = json_object_get(o, "client_id");

        u->obj = o;
        u->index = i;
        u->id = json_object_get(o, "id");
        u->looker_id = json_object_get(o, "looker_id");
        u->looker_id_str = json_string_value(u->looker_id);
        u->username = json_object_get(o, "username");
        u->first_name = json_object_get(o, "first_name");
        u->last_name = json_object_get(o, "last_name");
        u->display_name = json_object_get(o, "display_name");
        u->email = json_object_get(o, "email");
        u->authorities = json_object_get(o, "authorities");
        u->authority_groups = json_object_get(o, "authority_groups");
        u->looker_group_ids = json_object_get(o, "looker_group_ids");
        u->looker_role_ids = json_object_get(o, "looker_role_ids");
        u->evaluation = json_is_true(json_object_get(o, "evaluation"));
        u->disabled = json_is_true(json_object_get(o, "disabled"));
        u->admin = json_is_true(json_object_get(o, "admin"));
        u->embed = json_is_true(json_object_get(o, "embed"));

        secret = json_object_get(json_array_get(in, i), "client_secret");
        if (json_is_string(cid) && json_is_string(secret)) {
            c->present = 1;
            c->client_id_len = json_string_length(cid);
            memcpy(c->client_id, json_string_value(cid), c->client_id_len);
            ds__mac(json_string_value(secret), json_string_length(secret),
                    c->secret_mac);
            c->id = 1;
            c->created_ms = created;
        }
        if (json_is_string(secret)) {
            /* Wipe the secret from the parsed document before it goes. */
            explicit_bzero((char *) json_string_value(secret),
                           json_string_length(secret));
        }
    }
    st.nusers = n;
    st.users_list = list;
    list = NULL;
    rc = 0;

out:
    if (rc != 0) {
        free(st.users);
        free(st.creds);
        st.users = NULL;
        st.creds = NULL;
    }
    json_decref(list);
    json_decref(doc);
    return rc;
}

/* Check one user object and fill out with its normalized form. */
static int
user_parse(json_t *in, size_t i, const char *src, json_t *out, char *err,
           size_t errlen)
{
    const char *key;
    json_t *value;
    json_t *v;
    size_t k;
    size_t j;

    if (!json_is_object(in)) {
        snprintf(err, errlen, "%s: users[%zu]: not an object", src, i);
        return -1;
    }
    json_object_foreach(in, key, value)
    {
        for (k = 0; k < N_USER_KEYS; k++) {
            if (strcmp(key, user_keys[k].name) == 0) {
                break;
            }
        }
        if (k == N_USER_KEYS) {
            char name[64];

            sanitize(name, sizeof(name), key, strlen(key));
            snprintf(err, errlen, "%s: users[%zu]: unknown key \"%s\"", src, i,
                     name);
            return -1;
        }
    }
    for (k = 0; k < N_USER_KEYS; k++) {
        const struct user_key *uk = &user_keys[k];
        const char *why = NULL;

        v = json_object_get(in, uk->name);
        if (v == NULL) {
            if (uk->required) {
                snprintf(err, errlen,
                         "%s: users[%zu]: required key \"%s\" "
                         "is missing",
                         src, i, uk->name);
                return -1;
            }
            continue;
        }
        switch (uk->type) {
        case K_STRING:
            if (!json_is_string(v)) {
                why = "must be a string";
            }
            break;
        case K_NONEMPTY:
            if (!json_is_string(v) || json_string_length(v) == 0) {
                why = "must be a non-empty string";
            }
            break;
        case K_DIGITS:
            if (!json_is_string(v) || json_string_length(v) == 0 ||
                json_string_length(v) > LOOKER_ID_MAX ||
                strspn(json_string_value(v), "0123456789") !=
                    json_string_length(v)) {
                why = "must be a string of 1 to 19 digits";
            }
            break;
        case K_STRINGS:
            if (!json_is_array(v)) {
                why = "must be an array of strings";
                break;
            }
            for (j = 0; j < json_array_size(v); j++) {
                if (!json_is_string(json_array_get(v, j))) {
                    why = "must be an array of strings";
                }
            }
            break;
        case K_BOOL:
            if (!json_is_boolean(v)) {
                why = "must be true or false";
            }
            break;
        }
        if (why != NULL) {
            snprintf(err, errlen, "%s: users[%zu]: \"%s\" %s", src, i, uk->name,
                     why);
            return -1;
        }
        if (strcmp(uk->name, "client_secret") == 0) {
            continue; /* never part of the normalized (shown) user */
        }
        if (json_object_set_new(out, uk->name, json_deep_copy(v)) != 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }

    if ((json_object_get(in, "client_id") == NULL) !=
        (json_object_get(in, "client_secret") == NULL)) {
        snprintf(err, errlen,
                 "%s: users[%zu]: \"client_id\" and "
                 "\"client_secret\" go together (give both or neither)",
                 src, i);
        return -1;
    }
    v = json_object_get(in, "client_id");
    if (v != NULL && (json_string_length(v) > CLIENT_ID_MAX ||
                      strlen(json_string_value(v)) != json_string_length(v))) {
        snprintf(err, errlen,
                 "%s: users[%zu]: \"client_id\" must be at most "
                 "%d bytes without NUL",
                 src, i, CLIENT_ID_MAX);
        return -1;
    }

    /* Defaults for what was left out. */
    for (k = 0; k < N_USER_KEYS; k++) {
        const struct user_key *uk = &user_keys[k];
        json_t *def = NULL;

        if (json_object_get(out, uk->name) != NULL ||
            strcmp(uk->name, "client_secret") == 0 ||
            strcmp(uk->name, "display_name") == 0) {
            continue;
        }
        switch (uk->type) {
        case K_STRING:
            def = json_string("");
            break;
        case K_NONEMPTY:
        case K_DIGITS:
            def = json_null(); /* only client_id can be absent */
            break;
        case K_STRINGS:
            def = json_array();
            break;
        case K_BOOL:
            def = json_false();
            break;
        }
        if (json_object_set_new(out, uk->name, def) != 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    if (json_object_get(out, "display_name") == NULL) {
        v = default_display_name(json_object_get(out, "first_name"),
                                 json_object_get(out, "last_name"),
                                 json_object_get(out, "username"));
        if (json_object_set_new(out, "display_name", v) != 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    return 0;
}

/* "First Last", or the one that is set, or the username. */
static json_t *
default_display_name(json_t *first, json_t *last, json_t *username)
{
    size_t fl = json_string_length(first);
    size_t ll = json_string_length(last);
    char *buf;
    json_t *v;

    if (fl == 0 && ll == 0) {
        return json_deep_copy(username);
    }
    if (fl == 0) {
        return json_deep_copy(last);
    }
    if (ll == 0) {
        return json_deep_copy(first);
    }
    buf = malloc(fl + ll + 1);
    if (buf == NULL) {
        return NULL;
    }
    memcpy(buf, json_string_value(first), fl);
    buf[fl] = ' ';
    memcpy(buf + fl + 1, json_string_value(last), ll);
    v = json_stringn(buf, fl + ll + 1);
    free(buf);
    return v;
}

/* id, looker_id, username and client_id must each be unique. */
static int
users_check_unique(json_t *list, const char *src, char *err, size_t errlen)
{
    static const char *const keys[] = {"id", "looker_id", "username",
                                       "client_id"};
    size_t n = json_array_size(list);
    size_t i;
    size_t j;
    size_t k;

    for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
        for (i = 0; i < n; i++) {
            json_t *a = json_object_get(json_array_get(list, i), keys[k]);

            if (!json_is_string(a)) {
                continue;
            }
            for (j = i + 1; j < n; j++) {
                json_t *b = json_object_get(json_array_get(list, j), keys[k]);

                if (json_equal(a, b)) {
                    snprintf(err, errlen,
                             "%s: users[%zu]: \"%s\" is not "
                             "unique (same as users[%zu])",
                             src, j, keys[k], i);
                    return -1;
                }
            }
        }
    }
    return 0;
}

void
ds__store_free(void)
{
    ds__mac_table_free(&st.tokens);
    if (st.creds != NULL) {
        explicit_bzero(st.creds, st.nusers * sizeof(*st.creds));
    }
    free(st.creds);
    free(st.users);
    st.creds = NULL;
    st.users = NULL;
    st.nusers = 0;
    json_decref(st.users_list);
    st.users_list = NULL;
    explicit_bzero(st.key, sizeof(st.key));
}

size_t
ds__users_count(void)
{
    return st.nusers;
}

const struct ds_user *
ds__user_at(size_t i)
{
    return i < st.nusers ? &st.users[i] : NULL;
}

const struct ds_user *
ds__user_by_looker_id(const char *id)
{
    size_t i;

    for (i = 0; i < st.nusers; i++) {
        if (strcmp(st.users[i].looker_id_str, id) == 0) {
            return &st.users[i];
        }
    }
    return NULL;
}

/* ---------------------------------------------------------------- clock */

int64_t
ds__clock_now(void)
{
    return (int64_t) time(NULL) + __atomic_load_n(&st.offset, __ATOMIC_SEQ_CST);
}

int64_t
ds__clock_offset(void)
{
    return __atomic_load_n(&st.offset, __ATOMIC_SEQ_CST);
}

void
ds__clock_set_offset(int64_t offset)
{
    __atomic_store_n(&st.offset, offset, __ATOMIC_SEQ_CST);
}

/* Server clock in epoch milliseconds. */
static int64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return ((int64_t) ts.tv_sec + ds__clock_offset()) * 1000 +
           ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------- credentials */

/*
 * Check a client id and secret.  The secret's MAC is compared in constant
 * time, also when the client id is unknown, and the disabled flag is only
 * looked at once the secret is right.
 */
enum ds_login_result
ds__login(const char *client_id, size_t client_id_len, const char *secret,
          size_t secret_len, const struct ds_user **user)
{
    unsigned char mac[DS_MAC_SIZE];
    static const unsigned char dummy[DS_MAC_SIZE];
    const unsigned char *want = dummy;
    const struct ds_user *found = NULL;
    enum ds_login_result rc = DS_LOGIN_BAD;
    size_t i;

    *user = NULL;
    ds__mac(secret, secret_len, mac);
    pthread_mutex_lock(&st.lock);
    for (i = 0; i < st.nusers; i++) {
        const struct cred *c = &st.creds[i];

        if (c->present && c->client_id_len == client_id_len &&
            memcmp(c->client_id, client_id, client_id_len) == 0) {
            want = c->secret_mac;
            found = &st.users[i];
            break;
        }
    }
    if (CRYPTO_memcmp(mac, want, DS_MAC_SIZE) == 0 && found != NULL) {
        rc = found->disabled ? DS_LOGIN_DISABLED : DS_LOGIN_OK;
        *user = found;
    }
    pthread_mutex_unlock(&st.lock);
    explicit_bzero(mac, sizeof(mac));
    return rc;
}

void
ds__cred_get(const struct ds_user *user, struct ds_cred_info *info)
{
    const struct cred *c = &st.creds[user->index];

    memset(info, 0, sizeof(*info));
    pthread_mutex_lock(&st.lock);
    if (c->present) {
        info->present = 1;
        memcpy(info->client_id, c->client_id, c->client_id_len);
        info->client_id[c->client_id_len] = '\0';
        info->credentials_id = c->id;
        info->created_ms = c->created_ms;
    }
    pthread_mutex_unlock(&st.lock);
}

/*
 * Generate a new client id and secret for user, replacing (revoking) the
 * previous pair; tokens already issued stay valid.  The secret goes to the
 * caller only (secret_size >= 44); the store keeps its MAC.
 */
int
ds__cred_generate(const struct ds_user *user, struct ds_cred_info *info,
                  char *secret, size_t secret_size)
{
    unsigned char raw_id[GEN_CLIENT_ID_RAW];
    char id_text[2 * GEN_CLIENT_ID_RAW + 1];
    struct cred *c = &st.creds[user->index];
    int rc = -1;

    if (secret_size < DS_TOKEN_SIZE ||
        RAND_bytes(raw_id, sizeof(raw_id)) != 1 ||
        ds__random_b64url(secret) != 0) {
        goto out;
    }
    hex(raw_id, sizeof(raw_id), id_text);
    pthread_mutex_lock(&st.lock);
    c->present = 1;
    c->client_id_len = strlen(id_text);
    memcpy(c->client_id, id_text, c->client_id_len + 1);
    ds__mac(secret, strlen(secret), c->secret_mac);
    c->id++;
    c->created_ms = now_ms();
    pthread_mutex_unlock(&st.lock);
    ds__cred_get(user, info);
    rc = 0;

out:
    return rc;
}

/* Remove a user's credentials; 0 if there were some. */
int
ds__cred_delete(const struct ds_user *user)
{
    struct cred *c = &st.creds[user->index];
    int rc;

    pthread_mutex_lock(&st.lock);
    rc = c->present ? 0 : -1;
    c->present = 0;
    explicit_bzero(c->secret_mac, sizeof(c->secret_mac));
    pthread_mutex_unlock(&st.lock);
    return rc;
}

/* The users for the control endpoint: no secrets, current client ids. */
json_t *
ds__users_json(void)
{
    json_t *arr = json_array();
    size_t i;

    if (arr == NULL) {
        return NULL;
    }
    for (i = 0; i < st.nusers; i++) {
        struct ds_cred_info ci;
        json_t *o = json_deep_copy(st.users[i].obj);

        ds__cred_get(&st.users[i], &ci);
        if (o == NULL) {
            json_decref(arr);
            return NULL;
        }
        json_object_set_new(o, "client_id",
                            ci.present ? json_string(ci.client_id)
                                       : json_null());
        json_object_set_new(o, "credentials_id",
                            ci.present ? json_integer(ci.credentials_id)
                                       : json_null());
        json_array_append_new(arr, o);
    }
    return json_pack("{so}", "users", arr);
}

/* --------------------------------------------------------------- tokens */

/*
 * Issue a token for user.  sudo marks a Looker sudo session (user is then
 * the target).  Writes the token (NUL-terminated) and its expiry.
 */
int
ds__token_issue(const struct ds_user *user, enum ds_flavor flavor,
                int64_t lifetime, int sudo, char token[DS_TOKEN_SIZE],
                int64_t *expires)
{
    struct token *t = NULL;
    int64_t now;
    int rc = -1;

    if (ds__random_b64url(token) != 0) {
        goto out;
    }
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        goto out;
    }
    ds__mac(token, strlen(token), t->e.mac);
    t->user = user;
    t->flavor = flavor;
    t->sudo = sudo;

    pthread_mutex_lock(&st.lock);
    now = ds__clock_now();
    t->issued = now;
    t->expires = now + lifetime;
    tokens_make_room(now);
    ds__mac_table_add(&st.tokens, &t->e);
    *expires = t->expires;
    pthread_mutex_unlock(&st.lock);
    t = NULL;
    rc = 0;

out:
    free(t);
    return rc;
}

/* Find a token by MAC; the caller holds the lock. */
static struct token *
token_find(const unsigned char mac[DS_MAC_SIZE])
{
    /* The entry is the token's first member. */
    return (struct token *) ds__mac_table_find(&st.tokens, mac);
}

static int
token_alive(const struct token *t, int64_t now)
{
    return now < t->expires && !t->user->disabled;
}

/*
 * Keep the table under DS_TOKENS_MAX: once full, drop the dead tokens, then
 * the oldest live ones down to TOKENS_LOW, so the walk over the table is
 * paid once per DS_TOKENS_MAX - TOKENS_LOW tokens issued, not each time.
 */
static void
tokens_make_room(int64_t now)
{
    struct ds_mac_entry *e;
    struct ds_mac_entry *next;

    if (st.tokens.count < DS_TOKENS_MAX) {
        return;
    }
    for (e = st.tokens.oldest; e != NULL; e = next) {
        next = e->newer;
        if (!token_alive((const struct token *) e, now)) {
            ds__mac_table_remove(&st.tokens, e);
        }
    }
    while (st.tokens.count > TOKENS_LOW && st.tokens.oldest != NULL) {
        ds__mac_table_remove(&st.tokens, st.tokens.oldest);
    }
}

/* 0 and info filled if token is live and of this flavor; -1 otherwise. */
int
ds__token_lookup(const char *token, size_t len, enum ds_flavor flavor,
                 struct ds_token_info *info)
{
    unsigned char mac[DS_MAC_SIZE];
    struct token *t;
    int rc = -1;

    ds__mac(token, len, mac);
    pthread_mutex_lock(&st.lock);
    t = token_find(mac);
    if (t != NULL && t->flavor == flavor && token_alive(t, ds__clock_now())) {
        info->user = t->user;
        info->flavor = t->flavor;
        info->issued = t->issued;
        info->expires = t->expires;
        info->workspace_dev = t->workspace_dev;
        info->sudo = t->sudo;
        rc = 0;
    }
    pthread_mutex_unlock(&st.lock);
    return rc;
}

/* Forget a token (logout); 0 if it was there. */
int
ds__token_revoke(const char *token, size_t len)
{
    unsigned char mac[DS_MAC_SIZE];
    struct token *t;
    int rc = -1;

    ds__mac(token, len, mac);
    pthread_mutex_lock(&st.lock);
    t = token_find(mac);
    if (t != NULL) {
        ds__mac_table_remove(&st.tokens, &t->e);
        rc = 0;
    }
    pthread_mutex_unlock(&st.lock);
    return rc;
}

/* Set the session workspace of a token; 0 if it was there. */
int
ds__token_set_workspace(const char *token, size_t len, int dev)
{
    unsigned char mac[DS_MAC_SIZE];
    struct token *t;
    int rc = -1;

    ds__mac(token, len, mac);
    pthread_mutex_lock(&st.lock);
    t = token_find(mac);
    if (t != NULL) {
        t->workspace_dev = dev;
        rc = 0;
    }
    pthread_mutex_unlock(&st.lock);
    return rc;
}

size_t
ds__tokens_live(void)
{
    const struct ds_mac_entry *e;
    size_t n = 0;
    int64_t now;

    pthread_mutex_lock(&st.lock);
    now = ds__clock_now();
    for (e = st.tokens.oldest; e != NULL; e = e->newer) {
        if (token_alive((const struct token *) e, now)) {
            n++;
        }
    }
    pthread_mutex_unlock(&st.lock);
    return n;
}

void
ds__tokens_clear(void)
{
    pthread_mutex_lock(&st.lock);
    while (st.tokens.oldest != NULL) {
        ds__mac_table_remove(&st.tokens, st.tokens.oldest);
    }
    pthread_mutex_unlock(&st.lock);
}

/* ----------------------------------------------------------- MAC tables */

/* Allocate nbuckets (a power of two) empty chains; 0 or -1. */
int
ds__mac_table_init(struct ds_mac_table *t, size_t nbuckets, size_t record_size)
{
    memset(t, 0, sizeof(*t));
    t->buckets = calloc(nbuckets, sizeof(*t->buckets));
    if (t->buckets == NULL) {
        return -1;
    }
    t->nbuckets = nbuckets;
    t->record_size = record_size;
    return 0;
}

static unsigned int
bucket_of(const struct ds_mac_table *t, const unsigned char mac[DS_MAC_SIZE])
{
    /* The MAC key is secret, so its bytes are as good as random. */
    return ((unsigned int) mac[0] | (unsigned int) mac[1] << 8 |
            (unsigned int) mac[2] << 16) &
           (unsigned int) (t->nbuckets - 1);
}

/* The entry with this MAC (compared in constant time), or NULL. */
struct ds_mac_entry *
ds__mac_table_find(const struct ds_mac_table *t,
                   const unsigned char mac[DS_MAC_SIZE])
{
    struct ds_mac_entry *e;

    for (e = t->buckets[bucket_of(t, mac)]; e != NULL; e = e->hnext) {
        if (CRYPTO_memcmp(e->mac, mac, DS_MAC_SIZE) == 0) {
            return e;
        }
    }
    return NULL;
}

/* Add e (its mac set) as the newest entry; the table owns its record. */
void
ds__mac_table_add(struct ds_mac_table *t, struct ds_mac_entry *e)
{
    unsigned int b = bucket_of(t, e->mac);

    e->hnext = t->buckets[b];
    t->buckets[b] = e;
    e->newer = NULL;
    e->older = t->newest;
    if (t->newest != NULL) {
        t->newest->newer = e;
    } else {
        t->oldest = e;
    }
    t->newest = e;
    t->count++;
}

/* Unlink e, then wipe and free its record. */
void
ds__mac_table_remove(struct ds_mac_table *t, struct ds_mac_entry *e)
{
    struct ds_mac_entry **pp = &t->buckets[bucket_of(t, e->mac)];

    while (*pp != NULL && *pp != e) {
        pp = &(*pp)->hnext;
    }
    if (*pp == e) {
        *pp = e->hnext;
    }
    if (e->older != NULL) {
        e->older->newer = e->newer;
    } else {
        t->oldest = e->newer;
    }
    if (e->newer != NULL) {
        e->newer->older = e->older;
    } else {
        t->newest = e->older;
    }
    t->count--;
    explicit_bzero(e, t->record_size);
    free(e);
}

/* Wipe and free every record and the chains; t is left empty. */
void
ds__mac_table_free(struct ds_mac_table *t)
{
    struct ds_mac_entry *e;
    struct ds_mac_entry *next;

    for (e = t->oldest; e != NULL; e = next) {
        next = e->newer;
        explicit_bzero(e, t->record_size);
        free(e);
    }
    free(t->buckets);
    memset(t, 0, sizeof(*t));
}

/* -------------------------------------------------------------- helpers */

/*
 * HMAC-SHA256 of data under the per-process random key: what the
 * devserver keeps instead of a token, secret, nonce or cookie.
 */
void
ds__mac(const void *data, size_t len, unsigned char mac[DS_MAC_SIZE])
{
    unsigned int mac_len = DS_MAC_SIZE;

    if (HMAC(EVP_sha256(), st.key, sizeof(st.key), data, len, mac, &mac_len) ==
        NULL) {
        /* Cannot happen with SHA-256; fail closed with an unusable MAC. */
        RAND_bytes(mac, DS_MAC_SIZE);
    }
}

/*
 * DS_TOKEN_RAW random bytes as base64url without padding (43 characters
 * and a NUL): tokens, client secrets and embed session cookies.
 */
int
ds__random_b64url(char out[DS_TOKEN_SIZE])
{
    unsigned char raw[DS_TOKEN_RAW];
    unsigned char b64[4 * ((DS_TOKEN_RAW + 2) / 3) + 1];
    size_t i;
    int rc = -1;

    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        goto out;
    }
    EVP_EncodeBlock(b64, raw, sizeof(raw));
    for (i = 0; i < DS_TOKEN_SIZE - 1; i++) {
        out[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : (char) b64[i];
    }
    out[DS_TOKEN_SIZE - 1] = '\0';
    rc = 0;

out:
    explicit_bzero(raw, sizeof(raw));
    explicit_bzero(b64, sizeof(b64));
    return rc;
}

static void
hex(const unsigned char *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0f];
    }
    out[2 * len] = '\0';
}

/* Copy a name for a message: non-printable bytes become '?', cut at 63. */
static void
sanitize(char *dst, size_t size, const char *src, size_t len)
{
    size_t i;

    for (i = 0; i < len && i + 1 < size; i++) {
        unsigned char c = (unsigned char) src[i];

        dst[i] = (c >= 0x20 && c < 0x7f && c != '"') ? (char) c : '?';
    }
    dst[i] = '\0';
}
