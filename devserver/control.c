/* SPDX-License-Identifier: MIT */
/*
 * control.c - the control endpoint (docs/devserver.md, "Control API"):
 * health, fault rules, counters, the clock offset, users, tokens
 * and the embed state, on the loopback control listener.  It reads and
 * changes the state that faults.c, store.c and embed.c keep, through their
 * functions; none of them calls it.
 */
#include "devserver.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Largest clock offset: ten years either way. */
#define CLOCK_OFFSET_MAX (10LL * 366 * 24 * 3600)

struct control_route {
    const char *path;
    const char *allow;
    void (*fn)(struct ds_request *req, const char *method, struct ds_reply *r);
};

static void ctl_health(struct ds_request *req, const char *method,
                       struct ds_reply *r);
static void ctl_faults(struct ds_request *req, const char *method,
                       struct ds_reply *r);
static void ctl_counters(struct ds_request *req, const char *method,
                         struct ds_reply *r);
static void ctl_clock(struct ds_request *req, const char *method,
                      struct ds_reply *r);
static void ctl_users(struct ds_request *req, const char *method,
                      struct ds_reply *r);
static void ctl_tokens(struct ds_request *req, const char *method,
                       struct ds_reply *r);
static void ctl_embed(struct ds_request *req, const char *method,
                      struct ds_reply *r);
static void ctl_error(struct ds_reply *r, unsigned int status, const char *fmt,
                      ...) __attribute__((format(printf, 3, 4)));
static json_t *ctl_body(struct ds_request *req, struct ds_reply *r);

static const struct control_route control_routes[] = {
    {"/health", "GET", ctl_health},
    {"/faults", "GET, POST, DELETE", ctl_faults},
    {"/counters", "GET, DELETE", ctl_counters},
    {"/clock", "GET, POST", ctl_clock},
    {"/users", "GET", ctl_users},
    {"/tokens", "GET, DELETE", ctl_tokens},
    {"/embed", "GET", ctl_embed},
};

/* The last handler call of a control request. */
enum MHD_Result
ds__control_answer(struct ds_request *req, const char *url, const char *method)
{
    struct ds_reply r = {0};
    size_t i;

    for (i = 0; i < sizeof(control_routes) / sizeof(control_routes[0]); i++) {
        const struct control_route *cr = &control_routes[i];
        const char *p = cr->allow;
        size_t n = strlen(method);
        int allowed = 0;

        if (strcmp(url, cr->path) != 0) {
            continue;
        }
        while (p != NULL) {
            if (strncmp(p, method, n) == 0 && (p[n] == ',' || p[n] == '\0')) {
                allowed = 1;
            }
            p = strchr(p, ',');
            if (p != NULL) {
                p += strspn(p, ", ");
            }
        }
        if (!allowed) {
            ctl_error(&r, MHD_HTTP_METHOD_NOT_ALLOWED, "use %s", cr->allow);
            r.allow = cr->allow;
        } else {
            cr->fn(req, method, &r);
        }
        return ds__reply_send(req, &r, NULL);
    }
    ctl_error(&r, MHD_HTTP_NOT_FOUND, "no such control resource");
    return ds__reply_send(req, &r, NULL);
}

static void
ctl_health(struct ds_request *req, const char *method, struct ds_reply *r)
{
    (void) req;
    (void) method;
    ds__reply_json(r, MHD_HTTP_OK, json_pack("{ss}", "status", "ok"));
}

static void
ctl_faults(struct ds_request *req, const char *method, struct ds_reply *r)
{
    json_t *o;
    json_t *shown = NULL;
    char err[256];

    if (strcmp(method, "GET") == 0) {
        ds__reply_json(r, MHD_HTTP_OK,
                       json_pack("{so}", "faults", ds__faults_json()));
    } else if (strcmp(method, "POST") == 0) {
        o = ctl_body(req, r);
        if (o == NULL) {
            return;
        }
        if (ds__fault_add(o, &shown, err, sizeof(err)) != 0) {
            ctl_error(r, MHD_HTTP_BAD_REQUEST, "%s", err);
        } else {
            ds__reply_json(r, MHD_HTTP_CREATED, shown);
        }
        json_decref(o);
    } else {
        ds__faults_clear();
        r->status = MHD_HTTP_NO_CONTENT;
    }
}

static void
ctl_counters(struct ds_request *req, const char *method, struct ds_reply *r)
{
    (void) req;
    if (strcmp(method, "DELETE") == 0) {
        ds__counters_reset();
        r->status = MHD_HTTP_NO_CONTENT;
        return;
    }
    ds__reply_json(r, MHD_HTTP_OK, ds__counters_json());
}

static void
ctl_clock(struct ds_request *req, const char *method, struct ds_reply *r)
{
    json_t *o;
    json_t *adv;
    json_t *off;
    int64_t offset = ds__clock_offset();

    if (strcmp(method, "POST") == 0) {
        o = ctl_body(req, r);
        if (o == NULL) {
            return;
        }
        adv = json_object_get(o, "advance");
        off = json_object_get(o, "offset");
        if (json_object_size(o) != 1 || (adv == NULL && off == NULL)) {
            ctl_error(r, MHD_HTTP_BAD_REQUEST,
                      "give exactly one of "
                      "\"advance\" (seconds >= 0) or \"offset\" (seconds)");
        } else if (adv != NULL &&
                   (!json_is_integer(adv) || json_integer_value(adv) < 0 ||
                    json_integer_value(adv) > CLOCK_OFFSET_MAX)) {
            ctl_error(r, MHD_HTTP_BAD_REQUEST,
                      "\"advance\" must be an "
                      "integer from 0 to %lld",
                      CLOCK_OFFSET_MAX);
        } else if (off != NULL &&
                   (!json_is_integer(off) ||
                    json_integer_value(off) > CLOCK_OFFSET_MAX ||
                    json_integer_value(off) < -CLOCK_OFFSET_MAX)) {
            ctl_error(r, MHD_HTTP_BAD_REQUEST,
                      "\"offset\" must be an "
                      "integer from -%lld to %lld",
                      CLOCK_OFFSET_MAX, CLOCK_OFFSET_MAX);
        } else {
            offset = adv != NULL ? offset + json_integer_value(adv)
                                 : json_integer_value(off);
            if (offset > CLOCK_OFFSET_MAX) {
                offset = CLOCK_OFFSET_MAX;
            }
            ds__clock_set_offset(offset);
        }
        json_decref(o);
        if (r->status != 0) {
            return;
        }
    }
    ds__reply_json(r, MHD_HTTP_OK,
                   json_pack("{sIsI}", "now", (json_int_t) ds__clock_now(),
                             "offset", (json_int_t) ds__clock_offset()));
}

static void
ctl_users(struct ds_request *req, const char *method, struct ds_reply *r)
{
    (void) req;
    (void) method;
    ds__reply_json(r, MHD_HTTP_OK, ds__users_json());
}

static void
ctl_tokens(struct ds_request *req, const char *method, struct ds_reply *r)
{
    (void) req;
    if (strcmp(method, "DELETE") == 0) {
        ds__tokens_clear();
        r->status = MHD_HTTP_NO_CONTENT;
        return;
    }
    ds__reply_json(r, MHD_HTTP_OK,
                   json_pack("{sI}", "live", (json_int_t) ds__tokens_live()));
}

static void
ctl_embed(struct ds_request *req, const char *method, struct ds_reply *r)
{
    (void) req;
    (void) method;
    ds__reply_json(r, MHD_HTTP_OK, ds__embed_json());
}

/* The request body as a JSON object, or NULL with r set to a 400. */
static json_t *
ctl_body(struct ds_request *req, struct ds_reply *r)
{
    json_error_t jerr;
    json_t *o;

    o = json_loadb(req->body != NULL ? req->body : "", req->body_len,
                   JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (o == NULL) {
        ctl_error(r, MHD_HTTP_BAD_REQUEST, "bad JSON: %s", jerr.text);
        return NULL;
    }
    if (!json_is_object(o)) {
        json_decref(o);
        ctl_error(r, MHD_HTTP_BAD_REQUEST, "the body must be a JSON object");
        return NULL;
    }
    return o;
}

static void
ctl_error(struct ds_reply *r, unsigned int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ds__reply_json(r, status, json_pack("{ss}", "error", msg));
}
