/* SPDX-License-Identifier: MIT */
/*
 * devserver.h - tokengate-devserver, a local implementation of the FICO
 * Xpress Insight v1 and Looker API 4.0 authentication endpoints with fault
 * injection, used by the tests and the demo.  It is a peer of libtokengate,
 * not a user of it.  Names shared between the devserver's files start with
 * ds__ (types ds_); everything else is static.
 *
 * Threads: libmicrohttpd calls the handlers from many threads at once.  All
 * shared state lives in store.c (users, credentials, tokens, sessions,
 * clock), faults.c (rules, counters) and embed.c (embed users, sessions,
 * used nonces), each behind its own mutex; the functions below take the
 * lock themselves and return copies, never pointers into locked state
 * (ds_user records excepted: they are immutable after ds__users_load()).
 */
#ifndef DEVSERVER_H
#define DEVSERVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <jansson.h>
#include <microhttpd.h>

/*
 * Handler threads share the users' JSON values (json_pack "O"); that needs
 * atomic reference counts and a thread-safe json_dumps (jansson >= 2.11).
 */
#ifndef JANSSON_THREAD_SAFE_REFCOUNT
#error "jansson lacks thread-safe reference counts"
#endif

#define DS_PROG "tokengate-devserver"

/* Request bodies above this are refused with 413: no API call needs more. */
#define DS_BODY_MAX (64 * 1024)
/* Tokens kept at most (memory bound); expired ones go first, then oldest. */
#define DS_TOKENS_MAX 100000
/* Random bytes in a token: 256 bits, as unguessable as a session key. */
#define DS_TOKEN_RAW 32
/* Base64url of DS_TOKEN_RAW bytes, no padding, plus the NUL. */
#define DS_TOKEN_SIZE 44
/* Longest Authorization credential looked at; longer ones are just 401. */
#define DS_CREDENTIAL_MAX 4096
/* A hang fault gives up after this long (then closes the connection). */
#define DS_HANG_MS 60000
/* Looker's documentation_url in every Looker error body. */
#define DS_LOOKER_DOC_URL "https://cloud.google.com/looker/docs/r/api/support"

/* HMAC-SHA256: how tokens, secrets, nonces and cookies are kept (store.c). */
#define DS_MAC_SIZE 32
/* Longest form field name decoded; longer names match nothing. */
#define DS_FORM_NAME_SIZE 32

/* Exit codes. */
#define DS_EXIT_OK 0
#define DS_EXIT_FAILURE 1 /* could not start (bind, TLS, memory) */
#define DS_EXIT_USAGE 2   /* bad option, users file or fault spec */

/* What a request is about, for counters and fault rules. */
enum ds_endpoint {
    DS_EP_TOKEN,
    DS_EP_VALIDATE,
    DS_EP_PROFILE,
    DS_EP_CREDENTIALS,
    DS_EP_LOGOUT,
    DS_EP_SUDO,
    DS_EP_SESSION,
    DS_EP_EMBED_LOGIN, /* counted by outcome, see ds__count_embed_login */
    DS_EP_EMBED_PAGE,
    DS_EP_EMBED_SSO_URL,
    DS_EP_OTHER,
    DS_EP_COUNT
};

enum ds_flavor { DS_FLAVOR_INSIGHT, DS_FLAVOR_LOOKER };

/* Command line, after parsing; read-only once the daemons run. */
struct ds_options {
    const char *listen;            /* ADDR:PORT */
    const char *control;           /* ADDR:PORT, loopback only */
    const char *users_file;        /* NULL: the built-in demo users */
    const char *embed_secret_file; /* NULL: the built-in demo secret */
    const char *tls_cert;
    const char *tls_key;
    int insight_token_json; /* answer /auth/token with a JSON string */
    long insight_max_age;   /* seconds */
    long looker_lifetime;   /* seconds */
    long threads;           /* 0: one thread per connection */
    int quiet;
    int allow_remote;
    int tls; /* derived: tls_cert and tls_key given */
};

/*
 * A user from the users file.  Immutable after ds__users_load(); the json_t
 * pointers are borrowed from the normalized user object (obj), which holds
 * every key with its default filled in and no client_secret.
 */
struct ds_user {
    json_t *obj;
    json_t *id;
    json_t *looker_id;
    json_t *username;
    json_t *first_name;
    json_t *last_name;
    json_t *display_name;
    json_t *email;
    json_t *authorities;
    json_t *authority_groups;
    json_t *looker_group_ids;
    json_t *looker_role_ids;
    const char *looker_id_str; /* digits only */
    int evaluation;
    int disabled;
    int admin;
    int embed;
    size_t index;
};

/* What a valid token stands for (a copy taken under the store lock). */
struct ds_token_info {
    const struct ds_user *user; /* the effective user (sudo: the target) */
    enum ds_flavor flavor;
    int64_t issued;  /* server clock, epoch seconds */
    int64_t expires; /* server clock, epoch seconds */
    int workspace_dev;
    int sudo;
};

/* Credentials of a user, as shown (never the secret). */
struct ds_cred_info {
    int present;
    char client_id[128];
    int64_t credentials_id;
    int64_t created_ms;
};

enum ds_login_result {
    DS_LOGIN_OK,
    DS_LOGIN_BAD,     /* unknown client id or wrong secret */
    DS_LOGIN_DISABLED /* right secret, disabled account */
};

/*
 * An answer being built.  body, own_location and set_cookie are malloc'd
 * and owned by the reply (wiped when cleared) until ds__reply_send() takes
 * them; body == NULL means no body at all.
 */
struct ds_reply {
    unsigned int status;
    char *body;
    size_t body_len;
    const char *content_type; /* static string */
    const char *allow;        /* static string, for 405 */
    const char *location;     /* borrowed, for redirects */
    char *own_location;       /* owned; location may point to it */
    char *set_cookie;         /* owned Set-Cookie value, or NULL */
    const char *retry_after;  /* borrowed, sent verbatim */
    int no_store;             /* Cache-Control: no-store */
};

/*
 * A table of records keyed by MAC (store.c): hash chains for lookup, an age
 * list (oldest first) for expiry and eviction.  The entry is the first
 * member of the record, which is calloc'd by the caller and owned by the
 * table once added; the caller holds its own lock around every call.
 */
struct ds_mac_entry {
    unsigned char mac[DS_MAC_SIZE];
    struct ds_mac_entry *hnext; /* bucket chain */
    struct ds_mac_entry *older; /* age list */
    struct ds_mac_entry *newer;
};

struct ds_mac_table {
    struct ds_mac_entry **buckets;
    size_t nbuckets;    /* a power of two */
    size_t record_size; /* bytes wiped when a record is removed */
    struct ds_mac_entry *oldest;
    struct ds_mac_entry *newest;
    size_t count;
};

/* One name=value pair of form-encoded text (a query or a form body). */
struct ds_form_pair {
    char name[DS_FORM_NAME_SIZE]; /* decoded; "" when too long or bad */
    size_t name_len;
    int name_bad;      /* the name has a bad %XX escape */
    const char *value; /* still encoded; empty without '=' */
    size_t value_len;
};

enum ds_form_result { DS_FORM_OK, DS_FORM_BAD, DS_FORM_NOMEM };

struct ds_rule; /* a fault rule, faults.c */

/* Per-request state (MHD's req_cls), created on the first handler call. */
struct ds_request {
    struct MHD_Connection *conn;
    int control;      /* on the control listener */
    int64_t start_us; /* monotonic, for the log line */
    enum ds_endpoint ep;
    enum ds_flavor flavor;
    int route;            /* routes.c */
    struct ds_rule *rule; /* the fault rule that matched, a reference */
    unsigned int rule_id;
    char *body; /* request body, wiped on free */
    size_t body_len;
    size_t body_cap;
    int too_large;       /* the body went over DS_BODY_MAX */
    size_t discarded;    /* bytes dropped since */
    int replied;         /* a response was queued */
    unsigned int status; /* the status queued, 0: none */
    int waited;          /* the rule's delay is over */
    int hung;            /* a hang is under way */
    int64_t wake_ms;     /* pool mode: when to resume */
    struct ds_request *wait_next;
    char *raw_uri; /* the request target as received (API listener) */
    int started;   /* the first handler call has been seen */
    char method[16];
    char path[160]; /* sanitized, for the log line */
};

/*
 * The files in layers: each calls (or reads) only files in the layers
 * below it, never one above or beside it, so no two files depend on each
 * other (tests/check-layers checks it):
 *   main.c
 *   routes.c, control.c
 *   embed.c
 *   faults.c
 *   form.c, store.c
 *   reply.c, process.c
 */

/* process.c: options, stop flag, clock, log, files */
extern struct ds_options ds__opt;
void ds__stop(void);
int ds__stopping(void);
int64_t ds__mono_ms(void);
void ds__log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int ds__file_read(const char *path, size_t max, int owner_only, char **out,
                  size_t *len, char *err, size_t errlen);

/* reply.c */
void ds__reply_clear(struct ds_reply *r);
int ds__reply_json(struct ds_reply *r, unsigned int status, json_t *v);
int ds__reply_text(struct ds_reply *r, unsigned int status, const char *ctype,
                   const char *text, size_t len);
enum MHD_Result ds__reply_send(struct ds_request *req, struct ds_reply *r,
                               const char *ctype_override);
void ds__reply_flavor_error(struct ds_reply *r, enum ds_flavor flavor,
                            unsigned int status, const char *message);
void ds__reply_validation(struct ds_reply *r, const char *field,
                          const char *code, const char *message);

/* form.c */
json_t *ds__json_body(struct ds_request *req, enum ds_flavor flavor,
                      struct ds_reply *r);
int ds__pct_decode(const char *s, size_t len, int plus, char *out,
                   size_t *out_len);
int ds__form_next(const char **p, const char *end, struct ds_form_pair *pair);
enum ds_form_result ds__form_value(const struct ds_form_pair *pair, char **out,
                                   size_t *out_len);

/* store.c */
extern const char ds__demo_users_json[];
int ds__store_init(char *err, size_t errlen);
int ds__users_load(const char *path, char *err, size_t errlen);
void ds__store_free(void);
size_t ds__users_count(void);
const struct ds_user *ds__user_at(size_t i);
const struct ds_user *ds__user_by_looker_id(const char *id);
int64_t ds__clock_now(void);
int64_t ds__clock_offset(void);
void ds__clock_set_offset(int64_t offset);
enum ds_login_result ds__login(const char *client_id, size_t client_id_len,
                               const char *secret, size_t secret_len,
                               const struct ds_user **user);
int ds__token_issue(const struct ds_user *user, enum ds_flavor flavor,
                    int64_t lifetime, int sudo, char token[DS_TOKEN_SIZE],
                    int64_t *expires);
int ds__token_lookup(const char *token, size_t len, enum ds_flavor flavor,
                     struct ds_token_info *info);
int ds__token_revoke(const char *token, size_t len);
int ds__token_set_workspace(const char *token, size_t len, int dev);
size_t ds__tokens_live(void);
void ds__tokens_clear(void);
void ds__cred_get(const struct ds_user *user, struct ds_cred_info *info);
int ds__cred_generate(const struct ds_user *user, struct ds_cred_info *info,
                      char *secret, size_t secret_size);
int ds__cred_delete(const struct ds_user *user);
json_t *ds__users_json(void);
void ds__mac(const void *data, size_t len, unsigned char mac[DS_MAC_SIZE]);
int ds__random_b64url(char out[DS_TOKEN_SIZE]);
int ds__mac_table_init(struct ds_mac_table *t, size_t nbuckets,
                       size_t record_size);
struct ds_mac_entry *ds__mac_table_find(const struct ds_mac_table *t,
                                        const unsigned char mac[DS_MAC_SIZE]);
void ds__mac_table_add(struct ds_mac_table *t, struct ds_mac_entry *e);
void ds__mac_table_remove(struct ds_mac_table *t, struct ds_mac_entry *e);
void ds__mac_table_free(struct ds_mac_table *t);

/* faults.c */
int ds__faults_init(void);
void ds__faults_free(void);
int ds__fault_add_spec(const char *spec, char *err, size_t errlen);
struct ds_rule *ds__fault_match(enum ds_endpoint ep, unsigned int *id);
void ds__rule_unref(struct ds_rule *rule);
void ds__count_request(enum ds_endpoint ep);
void ds__count_connection(void);
void ds__count_embed_login(int accepted);
json_t *ds__counters_json(void);
void ds__counters_reset(void);
int ds__fault_add(json_t *o, json_t **shown, char *err, size_t errlen);
void ds__faults_clear(void);
json_t *ds__faults_json(void);
int ds__wait_start(void);
void ds__wait_stop(void);

/* What ds__fault_before() decided. */
enum ds_fault_step {
    DS_FAULT_PASS,      /* answer normally (then ds__fault_reply) */
    DS_FAULT_QUEUED,    /* a response was queued; *res is the result */
    DS_FAULT_SUSPENDED, /* connection suspended; return MHD_YES */
    DS_FAULT_CLOSE      /* close without an answer; return MHD_NO */
};

enum ds_fault_step ds__fault_before(struct ds_request *req,
                                    enum MHD_Result *res);
enum MHD_Result ds__fault_reply(struct ds_request *req, struct ds_reply *r);

/* embed.c */
int ds__embed_init(const char *secret_file, char *err, size_t errlen);
void ds__embed_free(void);
void ds__embed_login(struct ds_request *req, const char *url,
                     const char *method, struct ds_reply *r);
void ds__embed_page(struct ds_request *req, const char *url, const char *method,
                    struct ds_reply *r);
void ds__embed_sso_url(struct ds_request *req, struct ds_reply *r);
json_t *ds__embed_json(void);

/* routes.c */
void ds__route_classify(struct ds_request *req, const char *url);
enum MHD_Result ds__route_answer(struct ds_request *req, const char *url,
                                 const char *method);

/* control.c */
enum MHD_Result ds__control_answer(struct ds_request *req, const char *url,
                                   const char *method);

#endif /* DEVSERVER_H */
