/* SPDX-License-Identifier: MIT */
/*
 * faults.c - fault rules (SECURITY.md section 6), the request counters,
 * and the waits behind delay and hang faults.  The control endpoint
 * (control.c) shows and changes the rules and counters through the
 * ds__faults_* and ds__counters_* functions.
 *
 * A rule matches requests by endpoint; the first rule that matches a
 * request applies to it (and uses up one of its count, if it has one).
 * Rules are immutable and reference-counted: a request keeps the rule it
 * matched even if the rule is cleared meanwhile.
 *
 * Waits: with one thread per connection a delay waits in the connection's
 * thread, polling its socket in short steps, so a stop or a client hanging
 * up ends it at once; with a thread pool the connection is suspended and a
 * timer thread resumes it.
 */
#include "devserver.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Longest delay_ms: an hour is longer than any client timeout. */
#define DELAY_MAX_MS 3600000LL
/* Poll step while waiting in a connection thread: bounds stop latency. */
#define SLEEP_STEP_MS 20
/* Smallest oversize body: the JSON skeleton around the padding. */
#define OVERSIZE_MIN 20
/* Largest oversize body: 1 TiB is "endless" for any client. */
#define OVERSIZE_MAX (1LL << 40)
/* Longest header value a rule may set. */
#define HEADER_VALUE_MAX 4096
/* Block size for generated bodies. */
#define STREAM_BLOCK (32 * 1024)
/* Time allowed to write a raw answer. */
#define RAW_WRITE_MS 5000
/* Keys in a --fault spec or a control JSON object. */
#define SPEC_KEY_MAX 32

enum rule_key_type {
    T_ENDPOINT, /* a name from endpoint_names, or "*" */
    T_COUNT,    /* integer >= 0 */
    T_DELAY,    /* integer 0..DELAY_MAX_MS */
    T_STATUS,   /* integer 100..599 */
    T_BODY,     /* string, or false for no body */
    T_RETRY,    /* string (or integer), sent verbatim */
    T_BOOL,
    T_SIZE,   /* integer OVERSIZE_MIN..OVERSIZE_MAX */
    T_HEADER, /* non-empty printable string */
    T_RAW     /* non-empty string, plain HTTP only */
};

struct ds_rule {
    unsigned int id;
    int refs;            /* atomic */
    int endpoint;        /* enum ds_endpoint, or -1 for "*" */
    long long count;     /* 0: until cleared */
    long long remaining; /* under the faults lock */
    long long delay_ms;
    unsigned int status; /* 0: not set */
    int has_body;        /* body is set (possibly empty) */
    int no_body;         /* "body": false */
    char *body;
    size_t body_len;
    char *retry_after;
    int malformed;
    int truncate;
    int close;
    int hang;
    long long oversize;
    long long oversize_chunked;
    char *content_type;
    char *redirect;
    char *raw;
    size_t raw_len;
    json_t *spec; /* as given, for GET /faults */
    struct ds_rule *next;
};

/* A generated body: the first half of data, or an oversize body. */
struct stream {
    char *data;
    size_t len;
    size_t cut;
    uint64_t total;
};

static int rule_from_json(json_t *o, struct ds_rule **out, char *err,
                          size_t errlen);
static void rule_free(struct ds_rule *rule);
static json_t *rule_json(const struct ds_rule *rule);
static int spec_to_json(const char *spec, json_t **out, char *err,
                        size_t errlen);
static json_t *spec_value(enum rule_key_type type, const char *v, size_t len);
static int unescape(const char *s, size_t len, char *out, size_t *out_len);
static int header_value_ok(const char *s, size_t len);
static enum ds_fault_step wait_for(struct ds_request *req, int64_t ms);
static void *wait_main(void *arg);
static void send_raw(struct ds_request *req, const struct ds_rule *rule);
static enum MHD_Result queue_stream(struct ds_request *req, unsigned int status,
                                    uint64_t size,
                                    MHD_ContentReaderCallback reader,
                                    struct stream *s, const char *ctype);
static ssize_t read_truncated(void *cls, uint64_t pos, char *buf, size_t max);
static ssize_t read_oversize(void *cls, uint64_t pos, char *buf, size_t max);
static void stream_free(void *cls);

static const char *const endpoint_names[DS_EP_COUNT] = {
    [DS_EP_TOKEN] = "token",           [DS_EP_VALIDATE] = "validate",
    [DS_EP_PROFILE] = "profile",       [DS_EP_CREDENTIALS] = "credentials",
    [DS_EP_LOGOUT] = "logout",         [DS_EP_SUDO] = "sudo",
    [DS_EP_SESSION] = "session",       [DS_EP_EMBED_LOGIN] = "embed_login",
    [DS_EP_EMBED_PAGE] = "embed_page", [DS_EP_EMBED_SSO_URL] = "embed_sso_url",
    [DS_EP_OTHER] = "other",
};

static const struct {
    const char *name;
    enum rule_key_type type;
} rule_keys[] = {
    {"endpoint", T_ENDPOINT},
    {"count", T_COUNT},
    {"delay_ms", T_DELAY},
    {"status", T_STATUS},
    {"body", T_BODY},
    {"retry_after", T_RETRY},
    {"malformed", T_BOOL},
    {"truncate", T_BOOL},
    {"oversize", T_SIZE},
    {"oversize_chunked", T_SIZE},
    {"content_type", T_HEADER},
    {"redirect", T_HEADER},
    {"close", T_BOOL},
    {"hang", T_BOOL},
    {"raw", T_RAW},
};

#define N_RULE_KEYS (sizeof(rule_keys) / sizeof(rule_keys[0]))

/* The body of the malformed fault: JSON cut off after a member. */
static const char malformed_body[] = "{\"uid\": \"x\", ";
/* Oversize bodies: prefix, 'a' padding, suffix. */
static const char oversize_prefix[] = "{\"uid\":\"x\",\"pad\":\"";
static const char oversize_suffix[] = "\"}";
/* What a truncate fault cuts when the normal answer has no 2xx body. */
static const char truncate_body[] =
    "{\"uid\":\"x\",\"mail\":\"x@example.com\",\"cn\":\"x\","
    "\"access_token_expiration_time\":\"2030-01-01T00:00:00Z\"}";

static struct {
    pthread_mutex_t lock;
    struct ds_rule *rules;
    unsigned int next_id;
    uint64_t counts[DS_EP_COUNT];
    uint64_t embed_rejected;
    uint64_t connections;
} fs = {.lock = PTHREAD_MUTEX_INITIALIZER, .next_id = 1};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread;
    int running;
    int stop;
    struct ds_request *list;
} ws = {.lock = PTHREAD_MUTEX_INITIALIZER};

int
ds__faults_init(void)
{
    return 0;
}

void
ds__faults_free(void)
{
    ds__faults_clear();
}

/* ---------------------------------------------------------------- rules */

/* Add a rule from --fault SPEC ("key=value,key=value"). */
int
ds__fault_add_spec(const char *spec, char *err, size_t errlen)
{
    json_t *o = NULL;
    int rc;

    rc = spec_to_json(spec, &o, err, errlen);
    if (rc == 0) {
        rc = ds__fault_add(o, NULL, err, errlen);
    }
    json_decref(o);
    return rc;
}

/* Validate o and append it as a rule; *shown (if not NULL) lists it. */
int
ds__fault_add(json_t *o, json_t **shown, char *err, size_t errlen)
{
    struct ds_rule *rule = NULL;
    struct ds_rule **pp;

    if (rule_from_json(o, &rule, err, errlen) != 0) {
        return -1;
    }
    pthread_mutex_lock(&fs.lock);
    rule->id = fs.next_id++;
    for (pp = &fs.rules; *pp != NULL; pp = &(*pp)->next) {
    }
    *pp = rule;
    if (shown != NULL) {
        *shown = rule_json(rule);
    }
    pthread_mutex_unlock(&fs.lock);
    return 0;
}

/* Drop every rule (requests keep the rules they matched). */
void
ds__faults_clear(void)
{
    struct ds_rule *rule;
    struct ds_rule *next;

    pthread_mutex_lock(&fs.lock);
    rule = fs.rules;
    fs.rules = NULL;
    pthread_mutex_unlock(&fs.lock);
    for (; rule != NULL; rule = next) {
        next = rule->next;
        ds__rule_unref(rule);
    }
}

/* The rules as given, in order: a new JSON array (NULL without memory). */
json_t *
ds__faults_json(void)
{
    struct ds_rule *rule;
    json_t *arr = json_array();

    pthread_mutex_lock(&fs.lock);
    for (rule = fs.rules; rule != NULL && arr != NULL; rule = rule->next) {
        json_array_append_new(arr, rule_json(rule));
    }
    pthread_mutex_unlock(&fs.lock);
    return arr;
}

/*
 * The rule for a new request on endpoint ep, or NULL.  The caller owns a
 * reference (ds__rule_unref).  A rule with a count is used up here.
 */
struct ds_rule *
ds__fault_match(enum ds_endpoint ep, unsigned int *id)
{
    struct ds_rule **pp;
    struct ds_rule *rule = NULL;

    pthread_mutex_lock(&fs.lock);
    for (pp = &fs.rules; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->endpoint < 0 || (*pp)->endpoint == (int) ep) {
            rule = *pp;
            break;
        }
    }
    if (rule != NULL) {
        __atomic_add_fetch(&rule->refs, 1, __ATOMIC_SEQ_CST);
        *id = rule->id;
        if (rule->count > 0 && --rule->remaining == 0) {
            *pp = rule->next; /* used up: the list's reference goes */
            rule->next = NULL;
            __atomic_sub_fetch(&rule->refs, 1, __ATOMIC_SEQ_CST);
        }
    }
    pthread_mutex_unlock(&fs.lock);
    return rule;
}

void
ds__rule_unref(struct ds_rule *rule)
{
    if (rule != NULL &&
        __atomic_sub_fetch(&rule->refs, 1, __ATOMIC_SEQ_CST) == 0) {
        rule_free(rule);
    }
}

static void
rule_free(struct ds_rule *rule)
{
    free(rule->body);
    free(rule->retry_after);
    free(rule->content_type);
    free(rule->redirect);
    free(rule->raw);
    json_decref(rule->spec);
    free(rule);
}

/* Build a rule from a JSON object; err names the offending key. */
static int
rule_from_json(json_t *o, struct ds_rule **out, char *err, size_t errlen)
{
    struct ds_rule *rule = NULL;
    const char *key;
    json_t *v;
    json_int_t n;
    size_t k;
    size_t len;
    int rc = -1;

    if (!json_is_object(o)) {
        snprintf(err, errlen, "a fault rule must be a JSON object");
        goto out;
    }
    rule = calloc(1, sizeof(*rule));
    if (rule == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    rule->refs = 1;
    rule->endpoint = -1;
    json_object_foreach(o, key, v)
    {
        const char *why = NULL;

        for (k = 0; k < N_RULE_KEYS; k++) {
            if (strcmp(key, rule_keys[k].name) == 0) {
                break;
            }
        }
        if (k == N_RULE_KEYS) {
            char name[SPEC_KEY_MAX + 1];
            size_t i;

            for (i = 0; key[i] != '\0' && i < SPEC_KEY_MAX; i++) {
                name[i] = (key[i] >= 0x20 && key[i] < 0x7f) ? key[i] : '?';
            }
            name[i] = '\0';
            snprintf(err, errlen, "unknown key \"%s\"", name);
            goto out;
        }
        n = json_integer_value(v);
        switch (rule_keys[k].type) {
        case T_ENDPOINT:
            why = "must be one of token, validate, profile, credentials, "
                  "logout, sudo, session, embed_login, embed_page, "
                  "embed_sso_url, other, *";
            if (!json_is_string(v)) {
                break;
            }
            if (strcmp(json_string_value(v), "*") == 0) {
                rule->endpoint = -1;
                why = NULL;
            }
            for (n = 0; n < DS_EP_COUNT; n++) {
                if (strcmp(json_string_value(v), endpoint_names[n]) == 0) {
                    rule->endpoint = (int) n;
                    why = NULL;
                }
            }
            break;
        case T_COUNT:
            if (!json_is_integer(v) || n < 0) {
                why = "must be an integer >= 0";
            }
            rule->count = n;
            rule->remaining = n;
            break;
        case T_DELAY:
            if (!json_is_integer(v) || n < 0 || n > DELAY_MAX_MS) {
                why = "must be an integer from 0 to 3600000";
            }
            rule->delay_ms = n;
            break;
        case T_STATUS:
            if (!json_is_integer(v) || n < 100 || n > 599) {
                why = "must be an integer from 100 to 599";
            }
            rule->status = (unsigned int) n;
            break;
        case T_BODY:
            if (json_is_false(v)) {
                rule->no_body = 1;
            } else if (json_is_string(v)) {
                rule->has_body = 1;
                rule->body_len = json_string_length(v);
                rule->body = malloc(rule->body_len + 1);
                if (rule->body == NULL) {
                    why = "out of memory";
                    break;
                }
                memcpy(rule->body, json_string_value(v), rule->body_len + 1);
            } else {
                why = "must be a string, or false for no body";
            }
            break;
        case T_RETRY:
            if (json_is_integer(v)) {
                char num[32];

                snprintf(num, sizeof(num), "%lld", (long long) n);
                rule->retry_after = strdup(num);
            } else if (json_is_string(v) &&
                       header_value_ok(json_string_value(v),
                                       json_string_length(v))) {
                rule->retry_after = strdup(json_string_value(v));
            } else {
                why = "must be an integer or a printable string";
                break;
            }
            if (rule->retry_after == NULL) {
                why = "out of memory";
            }
            break;
        case T_BOOL:
            if (!json_is_boolean(v)) {
                why = "must be true or false";
                break;
            }
            if (strcmp(key, "malformed") == 0) {
                rule->malformed = json_is_true(v);
            } else if (strcmp(key, "truncate") == 0) {
                rule->truncate = json_is_true(v);
            } else if (strcmp(key, "close") == 0) {
                rule->close = json_is_true(v);
            } else {
                rule->hang = json_is_true(v);
            }
            break;
        case T_SIZE:
            if (!json_is_integer(v) || n < OVERSIZE_MIN || n > OVERSIZE_MAX) {
                why = "must be an integer from 20 to 2^40";
                break;
            }
            if (strcmp(key, "oversize") == 0) {
                rule->oversize = n;
            } else {
                rule->oversize_chunked = n;
            }
            break;
        case T_HEADER:
            if (!json_is_string(v) || json_string_length(v) == 0 ||
                !header_value_ok(json_string_value(v), json_string_length(v))) {
                why = "must be a non-empty printable string";
                break;
            }
            if (strcmp(key, "content_type") == 0) {
                rule->content_type = strdup(json_string_value(v));
            } else {
                rule->redirect = strdup(json_string_value(v));
            }
            break;
        case T_RAW:
            if (!json_is_string(v) || json_string_length(v) == 0) {
                why = "must be a non-empty string";
                break;
            }
            if (ds__opt.tls) {
                why = "is not available with TLS";
                break;
            }
            len = json_string_length(v);
            rule->raw = malloc(len);
            if (rule->raw == NULL) {
                why = "out of memory";
                break;
            }
            memcpy(rule->raw, json_string_value(v), len);
            rule->raw_len = len;
            break;
        }
        if (why != NULL) {
            snprintf(err, errlen, "\"%s\" %s", key, why);
            goto out;
        }
    }
    rule->spec = json_deep_copy(o);
    if (rule->spec == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    *out = rule;
    rule = NULL;
    rc = 0;

out:
    if (rule != NULL) {
        rule_free(rule);
    }
    return rc;
}

/* A rule as listed by GET /faults: what was given, plus id and remaining. */
static json_t *
rule_json(const struct ds_rule *rule)
{
    json_t *o = json_deep_copy(rule->spec);

    if (o == NULL) {
        return NULL;
    }
    json_object_set_new(o, "id", json_integer(rule->id));
    json_object_set_new(o, "remaining",
                        rule->count > 0 ? json_integer(rule->remaining)
                                        : json_null());
    return o;
}

/*
 * "key=value,key=value" to a JSON object with the types rule_from_json()
 * wants.  A bare key means key=true.  In values, "\," is a comma, "\\" a
 * backslash, "\n", "\r", "\t" and "\xHH" what they are in C.
 */
static int
spec_to_json(const char *spec, json_t **out, char *err, size_t errlen)
{
    json_t *o = json_object();
    const char *p = spec;
    char *item = NULL;
    size_t item_len;
    const char *end;
    char *eq;
    size_t k;
    int rc = -1;

    if (o == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    item = malloc(strlen(spec) + 1);
    if (item == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    while (*p != '\0') {
        /* Find the end of this item: a comma not escaped. */
        for (end = p; *end != '\0' && *end != ','; end++) {
            if (end[0] == '\\' && end[1] != '\0') {
                end++;
            }
        }
        memcpy(item, p, (size_t) (end - p));
        item[end - p] = '\0';
        p = *end == ',' ? end + 1 : end;
        if (item[0] == '\0') {
            continue;
        }
        eq = strchr(item, '=');
        if (eq != NULL) {
            *eq = '\0';
        }
        for (k = 0; k < N_RULE_KEYS; k++) {
            if (strcmp(item, rule_keys[k].name) == 0) {
                break;
            }
        }
        if (k == N_RULE_KEYS) {
            snprintf(err, errlen, "unknown key \"%.*s\"", SPEC_KEY_MAX, item);
            goto out;
        }
        if (json_object_get(o, item) != NULL) {
            snprintf(err, errlen, "key \"%s\" given twice", item);
            goto out;
        }
        if (eq == NULL) {
            if (json_object_set_new(o, item, json_true()) != 0) {
                snprintf(err, errlen, "out of memory");
                goto out;
            }
            continue;
        }
        if (unescape(eq + 1, strlen(eq + 1), eq + 1, &item_len) != 0) {
            snprintf(err, errlen, "\"%s\": bad backslash escape", item);
            goto out;
        }
        if (json_object_set_new(
                o, item, spec_value(rule_keys[k].type, eq + 1, item_len)) !=
            0) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
    }
    *out = o;
    o = NULL;
    rc = 0;

out:
    free(item);
    json_decref(o);
    return rc;
}

/* A spec value as JSON: integers and booleans where the key wants them. */
static json_t *
spec_value(enum rule_key_type type, const char *v, size_t len)
{
    char *end = NULL;
    long long n;

    switch (type) {
    case T_COUNT:
    case T_DELAY:
    case T_STATUS:
    case T_SIZE:
        errno = 0;
        n = strtoll(v, &end, 10);
        if (len > 0 && errno == 0 && end == v + len) {
            return json_integer(n);
        }
        break;
    case T_BOOL:
        if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0 ||
            strcmp(v, "yes") == 0) {
            return json_true();
        }
        if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0 ||
            strcmp(v, "no") == 0) {
            return json_false();
        }
        break;
    case T_BODY:
        if (len == 5 && strcmp(v, "false") == 0) {
            return json_false();
        }
        break;
    default:
        break;
    }
    return json_stringn(v, len); /* rule_from_json() judges the type */
}

/* Undo the spec escapes in place (out may be s); the result may hold NULs. */
static int
unescape(const char *s, size_t len, char *out, size_t *out_len)
{
    size_t i;
    size_t n = 0;
    char hexbuf[3] = {0, 0, 0};

    for (i = 0; i < len; i++) {
        if (s[i] != '\\') {
            out[n++] = s[i];
            continue;
        }
        if (++i >= len) {
            return -1;
        }
        switch (s[i]) {
        case ',':
        case '\\':
            out[n++] = s[i];
            break;
        case 'n':
            out[n++] = '\n';
            break;
        case 'r':
            out[n++] = '\r';
            break;
        case 't':
            out[n++] = '\t';
            break;
        case 'x':
            if (i + 2 >= len) {
                return -1;
            }
            hexbuf[0] = s[i + 1];
            hexbuf[1] = s[i + 2];
            if (strspn(hexbuf, "0123456789abcdefABCDEF") != 2) {
                return -1;
            }
            out[n++] = (char) strtol(hexbuf, NULL, 16);
            i += 2;
            break;
        default:
            return -1;
        }
    }
    out[n] = '\0';
    *out_len = n;
    return 0;
}

/* Printable ASCII (and tab) only: no header injection through a rule. */
static int
header_value_ok(const char *s, size_t len)
{
    size_t i;

    if (len > HEADER_VALUE_MAX) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char) s[i];

        if ((c < 0x20 && c != '\t') || c >= 0x7f) {
            return 0;
        }
    }
    return 1;
}

/* ------------------------------------------------------------- counters */

/*
 * A request on ep, counted when its headers arrive.  embed_login is the
 * exception: it counts successful verifications, ds__count_embed_login().
 */
void
ds__count_request(enum ds_endpoint ep)
{
    if (ep == DS_EP_EMBED_LOGIN) {
        return;
    }
    pthread_mutex_lock(&fs.lock);
    fs.counts[ep]++;
    pthread_mutex_unlock(&fs.lock);
}

/* The embed verifier's outcome: embed_login or embed_rejected. */
void
ds__count_embed_login(int accepted)
{
    pthread_mutex_lock(&fs.lock);
    if (accepted) {
        fs.counts[DS_EP_EMBED_LOGIN]++;
    } else {
        fs.embed_rejected++;
    }
    pthread_mutex_unlock(&fs.lock);
}

void
ds__count_connection(void)
{
    pthread_mutex_lock(&fs.lock);
    fs.connections++;
    pthread_mutex_unlock(&fs.lock);
}

/* The counters by name, and connections: a new JSON object (NULL without
 * memory). */
json_t *
ds__counters_json(void)
{
    json_t *o = json_object();
    size_t i;

    pthread_mutex_lock(&fs.lock);
    for (i = 0; i < DS_EP_COUNT && o != NULL; i++) {
        json_object_set_new(o, endpoint_names[i],
                            json_integer((json_int_t) fs.counts[i]));
    }
    if (o != NULL) {
        json_object_set_new(o, "embed_rejected",
                            json_integer((json_int_t) fs.embed_rejected));
        json_object_set_new(o, "connections",
                            json_integer((json_int_t) fs.connections));
    }
    pthread_mutex_unlock(&fs.lock);
    return o;
}

void
ds__counters_reset(void)
{
    pthread_mutex_lock(&fs.lock);
    memset(fs.counts, 0, sizeof(fs.counts));
    fs.embed_rejected = 0;
    fs.connections = 0;
    pthread_mutex_unlock(&fs.lock);
}

/* ------------------------------------------------------ applying a rule */

/*
 * Apply the request's rule before the route runs.  Order: delay, then the
 * first of hang, close, raw, redirect, truncate (after the route),
 * oversize, oversize_chunked, malformed, body, and status / retry_after /
 * "body": false; content_type changes whatever is sent.
 */
enum ds_fault_step
ds__fault_before(struct ds_request *req, enum MHD_Result *res)
{
    const struct ds_rule *f = req->rule;
    struct ds_reply r = {0};
    struct stream *s;
    enum ds_fault_step step;
    unsigned int status;

    if (f->delay_ms > 0 && !req->waited) {
        step = wait_for(req, f->delay_ms);
        if (step != DS_FAULT_PASS) {
            return step;
        }
    }
    if (f->hang) {
        if (req->hung) {
            return DS_FAULT_CLOSE; /* resumed after the hang */
        }
        req->hung = 1;
        step = wait_for(req, DS_HANG_MS);
        return step == DS_FAULT_SUSPENDED ? step : DS_FAULT_CLOSE;
    }
    if (f->close) {
        return DS_FAULT_CLOSE;
    }
    if (f->raw != NULL) {
        send_raw(req, f);
        return DS_FAULT_CLOSE;
    }
    if (f->redirect != NULL) {
        r.status =
            f->status >= 300 && f->status < 400 ? f->status : MHD_HTTP_FOUND;
        r.location = f->redirect;
        *res = ds__reply_send(req, &r, NULL);
        return DS_FAULT_QUEUED;
    }
    if (f->truncate) {
        return DS_FAULT_PASS;
    }
    status = f->status != 0 ? f->status : MHD_HTTP_OK;
    if (f->oversize > 0 || f->oversize_chunked > 0) {
        s = calloc(1, sizeof(*s));
        if (s == NULL) {
            return DS_FAULT_CLOSE;
        }
        s->total =
            (uint64_t) (f->oversize > 0 ? f->oversize : f->oversize_chunked);
        *res = queue_stream(
            req, status, f->oversize > 0 ? s->total : MHD_SIZE_UNKNOWN,
            read_oversize, s,
            f->content_type != NULL ? f->content_type : "application/json");
        return DS_FAULT_QUEUED;
    }
    if (f->malformed) {
        ds__reply_text(&r, status, "application/json", malformed_body,
                       strlen(malformed_body));
    } else if (f->has_body) {
        ds__reply_text(&r, status, "application/json", f->body, f->body_len);
    } else if (f->status != 0 || f->retry_after != NULL || f->no_body) {
        if (f->status == 0) {
            status = f->retry_after != NULL ? MHD_HTTP_TOO_MANY_REQUESTS
                                            : MHD_HTTP_OK;
        }
        if (f->no_body) {
            r.status = status;
        } else {
            ds__reply_flavor_error(&r, req->flavor, status, NULL);
        }
    } else {
        return DS_FAULT_PASS;
    }
    r.retry_after = f->retry_after;
    *res = ds__reply_send(req, &r, f->content_type);
    return DS_FAULT_QUEUED;
}

/* Send the route's answer, cut short (truncate) or relabelled if asked. */
enum MHD_Result
ds__fault_reply(struct ds_request *req, struct ds_reply *r)
{
    const struct ds_rule *f = req->rule;
    struct stream *s;
    const char *ctype;
    unsigned int status = MHD_HTTP_OK;
    enum MHD_Result res;

    if (f == NULL || !f->truncate) {
        return ds__reply_send(req, r, f != NULL ? f->content_type : NULL);
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        ds__reply_clear(r);
        return MHD_NO;
    }
    if (r->status >= 200 && r->status < 300 && r->body != NULL &&
        r->body_len >= 2) {
        status = r->status;
        ctype = r->content_type;
        s->data = r->body;
        s->len = r->body_len;
        r->body = NULL;
    } else {
        ctype = "application/json";
        s->len = strlen(truncate_body);
        s->data = strdup(truncate_body);
    }
    s->cut = s->len / 2;
    ds__reply_clear(r);
    if (s->data == NULL) {
        stream_free(s);
        return MHD_NO;
    }
    res = queue_stream(req, status, s->len, read_truncated, s,
                       f->content_type != NULL ? f->content_type : ctype);
    return res;
}

/* Queue a generated body; s is taken over in all cases. */
static enum MHD_Result
queue_stream(struct ds_request *req, unsigned int status, uint64_t size,
             MHD_ContentReaderCallback reader, struct stream *s,
             const char *ctype)
{
    struct MHD_Response *resp;
    enum MHD_Result res;

    resp = MHD_create_response_from_callback(size, STREAM_BLOCK, reader, s,
                                             stream_free);
    if (resp == NULL) {
        stream_free(s);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    res = MHD_queue_response(req->conn, status, resp);
    MHD_destroy_response(resp);
    if (res == MHD_YES) {
        req->replied = 1;
        req->status = status;
    }
    return res;
}

/* The first half of the body, then an error: libmicrohttpd closes. */
static ssize_t
read_truncated(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct stream *s = cls;
    size_t n;

    if (pos >= s->cut) {
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    n = s->cut - (size_t) pos;
    if (n > max) {
        n = max;
    }
    memcpy(buf, s->data + pos, n);
    return (ssize_t) n;
}

/* {"uid":"x","pad":"aaaa...a"} of exactly s->total bytes. */
static ssize_t
read_oversize(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct stream *s = cls;
    uint64_t pre = sizeof(oversize_prefix) - 1;
    uint64_t suf = sizeof(oversize_suffix) - 1;
    size_t n = 0;

    if (pos >= s->total) {
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    while (n < max && pos < s->total) {
        if (pos < pre) {
            buf[n++] = oversize_prefix[pos++];
        } else if (pos >= s->total - suf) {
            buf[n++] = oversize_suffix[pos - (s->total - suf)];
            pos++;
        } else {
            uint64_t run = s->total - suf - pos;

            if (run > max - n) {
                run = max - n;
            }
            memset(buf + n, 'a', (size_t) run);
            n += (size_t) run;
            pos += run;
        }
    }
    return (ssize_t) n;
}

static void
stream_free(void *cls)
{
    struct stream *s = cls;

    if (s->data != NULL) {
        explicit_bzero(s->data, s->len);
    }
    free(s->data);
    free(s);
}

/* Write the rule's bytes as the whole answer (the caller then closes). */
static void
send_raw(struct ds_request *req, const struct ds_rule *rule)
{
    const union MHD_ConnectionInfo *ci;
    struct pollfd pfd;
    int64_t deadline = ds__mono_ms() + RAW_WRITE_MS;
    size_t done = 0;
    ssize_t n;

    ci = MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci == NULL) {
        return;
    }
    pfd.fd = ci->connect_fd;
    pfd.events = POLLOUT;
    while (done < rule->raw_len && !ds__stopping() &&
           ds__mono_ms() < deadline) {
        n = send(pfd.fd, rule->raw + done, rule->raw_len - done, MSG_NOSIGNAL);
        if (n > 0) {
            done += (size_t) n;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK ||
                             errno == EINTR)) {
            poll(&pfd, 1, SLEEP_STEP_MS * 5);
        } else {
            break;
        }
    }
    req->status = 0;
}

/* ---------------------------------------------------------------- waits */

/*
 * Wait ms before going on.  One thread per connection: sleep here, in
 * steps, and give up (CLOSE) if the server stops.  Thread pool: suspend
 * the connection; the timer thread resumes it and libmicrohttpd calls the
 * handler again (SUSPENDED).
 */
static enum ds_fault_step
wait_for(struct ds_request *req, int64_t ms)
{
    const union MHD_ConnectionInfo *ci;
    struct pollfd pfd = {.fd = -1, .events = POLLRDHUP};
    int64_t until = ds__mono_ms() + ms;
    int64_t left;

    req->waited = 1;
    if (ds__opt.threads == 0) {
        /*
         * Poll the socket rather than sleep: a client that hangs up ends
         * the wait (and frees this thread) at once.  fd -1 just sleeps.
         */
        ci = MHD_get_connection_info(req->conn,
                                     MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci != NULL) {
            pfd.fd = ci->connect_fd;
        }
        for (;;) {
            left = until - ds__mono_ms();
            if (ds__stopping()) {
                return DS_FAULT_CLOSE;
            }
            if (left <= 0) {
                return DS_FAULT_PASS;
            }
            if (left > SLEEP_STEP_MS) {
                left = SLEEP_STEP_MS;
            }
            pfd.revents = 0;
            if (poll(&pfd, 1, (int) left) > 0 &&
                (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0) {
                return DS_FAULT_CLOSE; /* the client is gone */
            }
        }
    }
    pthread_mutex_lock(&ws.lock);
    if (ws.stop) {
        pthread_mutex_unlock(&ws.lock);
        return DS_FAULT_CLOSE;
    }
    req->wake_ms = until;
    req->wait_next = ws.list;
    ws.list = req;
    /* Under the lock, so the timer cannot resume it before this. */
    MHD_suspend_connection(req->conn);
    pthread_cond_signal(&ws.cond);
    pthread_mutex_unlock(&ws.lock);
    return DS_FAULT_SUSPENDED;
}

int
ds__wait_start(void)
{
    pthread_condattr_t attr;

    if (pthread_condattr_init(&attr) != 0) {
        return -1;
    }
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (pthread_cond_init(&ws.cond, &attr) != 0) {
        pthread_condattr_destroy(&attr);
        return -1;
    }
    pthread_condattr_destroy(&attr);
    if (pthread_create(&ws.thread, NULL, wait_main, NULL) != 0) {
        pthread_cond_destroy(&ws.cond);
        return -1;
    }
    ws.running = 1;
    return 0;
}

/* Resume every suspended connection (they then close) and stop the timer. */
void
ds__wait_stop(void)
{
    if (!ws.running) {
        return;
    }
    pthread_mutex_lock(&ws.lock);
    ws.stop = 1;
    pthread_cond_signal(&ws.cond);
    pthread_mutex_unlock(&ws.lock);
    pthread_join(ws.thread, NULL);
    pthread_cond_destroy(&ws.cond);
    ws.running = 0;
}

static void *
wait_main(void *arg)
{
    struct ds_request *due;
    struct ds_request **pp;
    struct ds_request *req;
    struct timespec ts;
    int64_t now;
    int64_t next;

    (void) arg;
    pthread_mutex_lock(&ws.lock);
    for (;;) {
        now = ds__mono_ms();
        due = NULL;
        next = INT64_MAX;
        pp = &ws.list;
        while (*pp != NULL) {
            req = *pp;
            if (ws.stop || req->wake_ms <= now) {
                *pp = req->wait_next;
                req->wait_next = due;
                due = req;
            } else {
                if (req->wake_ms < next) {
                    next = req->wake_ms;
                }
                pp = &req->wait_next;
            }
        }
        if (due != NULL) {
            /*
             * A listed connection is suspended and cannot finish, so it
             * can be resumed outside the lock.
             */
            pthread_mutex_unlock(&ws.lock);
            while (due != NULL) {
                req = due;
                due = req->wait_next;
                req->wait_next = NULL;
                MHD_resume_connection(req->conn);
            }
            pthread_mutex_lock(&ws.lock);
            continue;
        }
        if (ws.stop) {
            break;
        }
        if (next == INT64_MAX) {
            pthread_cond_wait(&ws.cond, &ws.lock);
        } else {
            ts.tv_sec = (time_t) (next / 1000);
            ts.tv_nsec = (long) (next % 1000) * 1000000L;
            pthread_cond_timedwait(&ws.cond, &ws.lock, &ts);
        }
    }
    pthread_mutex_unlock(&ws.lock);
    return NULL;
}
