/* SPDX-License-Identifier: MIT */
/*
 * reply.c - building an answer (struct ds_reply) and queueing it with
 * libmicrohttpd, and the error bodies of the two APIs (api-spec.md A, B).
 * The API handlers (routes.c, embed.c), the faults and the control
 * endpoint all answer through here; it calls none of them.
 */
#include "devserver.h"

#include <stdlib.h>
#include <string.h>

/* A body handed to libmicrohttpd, wiped when it is done with it. */
struct owned_body {
    char *data;
    size_t len;
};

static void wipe_free(void *cls);
static const char *insight_code(unsigned int status);
static const char *looker_message(unsigned int status);

void
ds__reply_clear(struct ds_reply *r)
{
    if (r->body != NULL) {
        explicit_bzero(r->body, r->body_len);
        free(r->body);
    }
    if (r->own_location != NULL) {
        explicit_bzero(r->own_location, strlen(r->own_location));
        free(r->own_location);
    }
    if (r->set_cookie != NULL) {
        explicit_bzero(r->set_cookie, strlen(r->set_cookie));
        free(r->set_cookie);
    }
    memset(r, 0, sizeof(*r));
}

/* Set a JSON reply (v is stolen; NULL means out of memory: 500). */
int
ds__reply_json(struct ds_reply *r, unsigned int status, json_t *v)
{
    char *text = NULL;

    if (v != NULL) {
        text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(v);
    }
    if (text == NULL) {
        return ds__reply_text(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "text/plain",
                              "out of memory\n", 14);
    }
    ds__reply_clear(r);
    r->status = status;
    r->body = text;
    r->body_len = strlen(text);
    r->content_type = "application/json";
    return 0;
}

int
ds__reply_text(struct ds_reply *r, unsigned int status, const char *ctype,
               const char *text, size_t len)
{
    ds__reply_clear(r);
    r->status = status;
    r->content_type = ctype;
    r->body = malloc(len + 1);
    if (r->body == NULL) {
        r->status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        return -1;
    }
    memcpy(r->body, text, len);
    r->body[len] = '\0';
    r->body_len = len;
    return 0;
}

/*
 * Queue r (its body is taken over and wiped once sent).  ctype_override,
 * if not NULL, replaces the Content-Type.  Records the status for the log.
 */
enum MHD_Result
ds__reply_send(struct ds_request *req, struct ds_reply *r,
               const char *ctype_override)
{
    struct MHD_Response *resp = NULL;
    struct owned_body *ob = NULL;
    const char *ctype;
    enum MHD_Result res = MHD_NO;

    if (r->body != NULL) {
        ob = malloc(sizeof(*ob));
        if (ob == NULL) {
            goto out;
        }
        ob->data = r->body;
        ob->len = r->body_len;
        resp = MHD_create_response_from_buffer_with_free_callback_cls(
            r->body_len, r->body, wipe_free, ob);
        if (resp == NULL) {
            goto out;
        }
        r->body = NULL; /* libmicrohttpd owns it now */
        ob = NULL;
        ctype = ctype_override != NULL ? ctype_override : r->content_type;
        if (ctype != NULL) {
            MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
        }
    } else {
        resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        if (resp == NULL) {
            goto out;
        }
    }
    if (r->allow != NULL) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
    }
    if (r->location != NULL) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, r->location);
    }
    if (r->retry_after != NULL) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER,
                                r->retry_after);
    }
    if (r->set_cookie != NULL) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_SET_COOKIE,
                                r->set_cookie);
    }
    if (r->no_store) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL,
                                "no-store");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_PRAGMA, "no-cache");
    }
    res = MHD_queue_response(req->conn, r->status, resp);
    if (res == MHD_YES) {
        req->replied = 1;
        req->status = r->status;
    }

out:
    if (resp != NULL) {
        MHD_destroy_response(resp);
    }
    free(ob);
    ds__reply_clear(r);
    return res;
}

static void
wipe_free(void *cls)
{
    struct owned_body *ob = cls;

    explicit_bzero(ob->data, ob->len);
    free(ob->data);
    free(ob);
}

/*
 * An error in the flavor's format.  message NULL: the flavor's usual text
 * for the status.  Insight (v1 is undocumented, so the v2 form):
 * {"error":{"code","message"}}.  Looker: {"message","documentation_url"},
 * and for 422 the ValidationError form.
 */
void
ds__reply_flavor_error(struct ds_reply *r, enum ds_flavor flavor,
                       unsigned int status, const char *message)
{
    const char *reason = MHD_get_reason_phrase_for(status);

    if (reason == NULL || reason[0] == '\0') {
        reason = "Error";
    }
    if (flavor == DS_FLAVOR_INSIGHT) {
        ds__reply_json(r, status,
                       json_pack("{s{ssss}}", "error", "code",
                                 insight_code(status), "message",
                                 message != NULL ? message : reason));
        return;
    }
    if (status == MHD_HTTP_UNPROCESSABLE_CONTENT && message == NULL) {
        ds__reply_validation(r, "workspace_id", "invalid",
                             "must be one of production, dev");
        return;
    }
    if (message == NULL) {
        message = looker_message(status);
    }
    ds__reply_json(r, status,
                   json_pack("{ssss}", "message",
                             message != NULL ? message : reason,
                             "documentation_url", DS_LOOKER_DOC_URL));
}

/* A Looker 422 ValidationError with one detail (code: invalid, missing). */
void
ds__reply_validation(struct ds_reply *r, const char *field, const char *code,
                     const char *message)
{
    /* clang-format off */
    ds__reply_json(r, MHD_HTTP_UNPROCESSABLE_CONTENT,
                   json_pack("{ss s[{ssssssss}] ss}",
                             "message", "Validation Failed",
                             "errors",
                                 "field", field,
                                 "code", code,
                                 "message", message,
                                 "documentation_url", DS_LOOKER_DOC_URL,
                             "documentation_url", DS_LOOKER_DOC_URL));
    /* clang-format on */
}

static const char *
insight_code(unsigned int status)
{
    static const struct {
        unsigned int status;
        const char *code;
    } codes[] = {
        {400, "BAD_REQUEST"},
        {401, "UNAUTHORIZED"},
        {403, "FORBIDDEN"},
        {404, "NOT_FOUND"},
        {405, "METHOD_NOT_ALLOWED"},
        {406, "NOT_ACCEPTABLE"},
        {409, "CONFLICT"},
        {413, "PAYLOAD_TOO_LARGE"},
        {415, "UNSUPPORTED_MEDIA_TYPE"},
        {422, "UNPROCESSABLE_ENTITY"},
        {429, "TOO_MANY_REQUESTS"},
        {500, "INTERNAL_SERVER_ERROR"},
        {501, "NOT_IMPLEMENTED"},
        {502, "BAD_GATEWAY"},
        {503, "SERVICE_UNAVAILABLE"},
        {504, "GATEWAY_TIMEOUT"},
    };
    size_t i;

    for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        if (codes[i].status == status) {
            return codes[i].code;
        }
    }
    return "ERROR";
}

static const char *
looker_message(unsigned int status)
{
    switch (status) {
    case 401:
        return "Requires authentication.";
    case 404:
        return "Not found";
    case 409:
        return "Resource Already Exists";
    default:
        return NULL; /* the reason phrase */
    }
}
