/* SPDX-License-Identifier: MIT */
/*
 * transport.c - the blocking curl transport (one easy handle per client,
 * kept alive across calls) and the composite tg_client_* calls that run
 * build, perform and parse.
 *
 * The libcurl discipline of the project (STYLE.md rule 9: every option,
 * limit and callback, and the error map) lives in the layer this file
 * shares with the nginx module: curl.c and curl_error.c (tg_curl.h).  What
 * is left here is the blocking part: curl_global_init once per process,
 * one easy handle per client, curl_easy_perform.
 */
#include "tokengate.h"
#include "tg_curl.h"
#include "tg_internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

/* A client keeps its response buffer, however large, for its next call
 * (it is wiped after each). */
#define TG_BODY_KEEP SIZE_MAX

struct tg_client {
    const tg_config_t *cfg; /* borrowed; outlives the client */
    tg_diag_t diag;
    /* The easy handle, its buffers and the response of the last perform
     * (the body is wiped before reuse). */
    tg__curl_t cu;

    long requests;
    long connections;
};

static int tg_url_is_http(const char *url);
static tg_err_t tg_perform(tg_client_t *cl, const tg_request_t *req,
                           tg_response_t *resp, time_t *sent_at);
static void tg_call_begin(tg_client_t *cl, tg_request_t *req,
                          tg_response_t *resp);
static tg_err_t tg_call_end(tg_client_t *cl, tg_request_t *req,
                            const tg_response_t *resp, tg_err_t err);

/* tg_client_diag() on a NULL client: "never NULL". */
static const tg_diag_t tg_empty_diag = {.retry_after = -1};

/* ---------------------------------------------------------------------- */
/* Global init and the client object                                      */
/* ---------------------------------------------------------------------- */

tg_err_t
tg_client_new(const tg_config_t *cfg, tg_client_t **out, tg_diag_t *diag)
{
    tg_client_t *cl = NULL;
    tg_err_t err = TG_OK;
    CURLcode rc;

    if (out == NULL) {
        return tg__fail(diag, TG_INTERNAL, "tg_client_new: out is NULL");
    }
    *out = NULL;
    if (cfg == NULL) {
        return tg__fail(diag, TG_CONFIG, "no configuration");
    }
    rc = tg__curl_global_init();
    if (rc != CURLE_OK) {
        return tg__fail(diag, TG_INTERNAL, "curl_global_init failed: %s",
                        curl_easy_strerror(rc));
    }
    if (cfg->max_response_bytes <= 0) {
        return tg__fail(diag, TG_CONFIG,
                        "bad value for max_response_bytes: must be positive");
    }
    cl = calloc(1, sizeof(*cl));
    if (cl == NULL) {
        err = tg__fail(diag, TG_NOMEM, "out of memory");
        goto out;
    }
    cl->cfg = cfg;
    cl->cu.cfg = cfg;
    cl->cu.want_date = 1;
    tg_diag_clear(&cl->diag);
    cl->cu.easy = curl_easy_init();
    if (cl->cu.easy == NULL) {
        err = tg__fail(diag, TG_NOMEM, "curl_easy_init failed");
        goto out;
    }
    *out = cl;
    cl = NULL;
out:
    tg_client_free(cl);
    return err;
}

void
tg_client_free(tg_client_t *cl)
{
    if (cl == NULL) {
        return;
    }
    tg__curl_free(&cl->cu);
    explicit_bzero(cl, sizeof(*cl));
    free(cl);
}

const tg_diag_t *
tg_client_diag(const tg_client_t *cl)
{
    return cl != NULL ? &cl->diag : &tg_empty_diag;
}

const char *
tg_client_error(const tg_client_t *cl)
{
    return cl != NULL ? cl->diag.message : "";
}

void
tg_client_stats(const tg_client_t *cl, long *requests, long *connections)
{
    if (requests != NULL) {
        *requests = cl != NULL ? cl->requests : 0;
    }
    if (connections != NULL) {
        *connections = cl != NULL ? cl->connections : 0;
    }
}

/* ---------------------------------------------------------------------- */
/* Perform                                                                */
/* ---------------------------------------------------------------------- */

static int
tg_url_is_http(const char *url)
{
    return strncasecmp(url, "http://", 7) == 0;
}

/* Send one request; the caller clears the diag. */
static tg_err_t
tg_perform(tg_client_t *cl, const tg_request_t *req, tg_response_t *resp,
           time_t *sent_at)
{
    tg_err_t err = TG_OK;
    CURLcode rc;
    long status = 0, connects = 0;
    time_t now;

    if (resp != NULL) {
        memset(resp, 0, sizeof(*resp));
        resp->retry_after = -1;
    }
    if (sent_at != NULL) {
        *sent_at = 0;
    }
    if (req == NULL || resp == NULL || req->method == NULL ||
        req->url == NULL) {
        return tg__fail(&cl->diag, TG_INTERNAL, "incomplete request");
    }

    /* Every option, every call: the handle is reused for keep-alive, so
     * no option of an earlier request may leak into this one. */
    cl->cu.connect_timeout_ms = cl->cfg->connect_timeout_ms;
    cl->cu.timeout_ms = cl->cfg->timeout_ms;
    cl->cu.http = tg_url_is_http(req->url);
    err = tg__curl_setup(&cl->cu, &cl->diag);
    if (err == TG_OK) {
        err = tg__curl_request(&cl->cu, req, &cl->diag);
    }
    if (err != TG_OK) {
        goto out;
    }

    now = time(NULL);
    if (sent_at != NULL) {
        *sent_at = now;
    }
    rc = curl_easy_perform(cl->cu.easy);
    cl->requests++;
    if (curl_easy_getinfo(cl->cu.easy, CURLINFO_NUM_CONNECTS, &connects) ==
            CURLE_OK &&
        connects > 0) {
        cl->connections += connects;
    }
    if (rc != CURLE_OK) {
        err = tg__curl_failed(&cl->cu, rc, &cl->diag);
        /* A status may have arrived before the failure (a 200 whose body
         * was too large): keep it for the message. */
        if (curl_easy_getinfo(cl->cu.easy, CURLINFO_RESPONSE_CODE, &status) ==
                CURLE_OK &&
            status != 0) {
            cl->diag.http_status = status;
        }
        goto out;
    }
    err = tg__curl_response(&cl->cu, resp, &cl->diag);

out:
    /* The header lines may hold the token; the body stays for the
     * parser until tg_call_end (or the next call). */
    tg__curl_wipe_request(&cl->cu);
    return err;
}

tg_err_t
tg_client_perform(tg_client_t *cl, const tg_request_t *req, tg_response_t *resp,
                  time_t *sent_at)
{
    tg_err_t err;

    if (cl == NULL) {
        return TG_INTERNAL;
    }
    tg_diag_clear(&cl->diag);
    err = tg_perform(cl, req, resp, sent_at);
    if (err == TG_OK) {
        cl->diag.http_status = resp->status;
        cl->diag.retry_after = resp->retry_after;
    }
    return err;
}

/* ---------------------------------------------------------------------- */
/* Composite calls                                                        */
/* ---------------------------------------------------------------------- */

static void
tg_call_begin(tg_client_t *cl, tg_request_t *req, tg_response_t *resp)
{
    tg_diag_clear(&cl->diag);
    memset(req, 0, sizeof(*req));
    memset(resp, 0, sizeof(*resp));
    resp->retry_after = -1;
}

/* Fill the diag from the response, then wipe the request and the body:
 * both may carry tokens and secrets. */
static tg_err_t
tg_call_end(tg_client_t *cl, tg_request_t *req, const tg_response_t *resp,
            tg_err_t err)
{
    if (err != TG_OK) {
        if (cl->diag.http_status == 0) {
            cl->diag.http_status = resp->status;
        }
        if (cl->diag.retry_after < 0) {
            cl->diag.retry_after = resp->retry_after;
        }
        if (cl->diag.message[0] == '\0') {
            (void) tg__fail(&cl->diag, err, "%s", tg_strerror(err));
        }
    }
    tg_request_clear(req);
    (void) tg__curl_end(&cl->cu, TG_BODY_KEEP);
    return err;
}

tg_err_t
tg_client_token(tg_client_t *cl, const char *client_id, const char *secret,
                tg_token_t *out)
{
    tg_request_t req;
    tg_response_t resp;
    time_t sent_at = 0;
    tg_err_t err;

    if (cl == NULL) {
        return TG_INTERNAL;
    }
    tg_call_begin(cl, &req, &resp);
    err = tg_build_token(cl->cfg, client_id, secret, &req, &cl->diag);
    if (err == TG_OK) {
        err = tg_perform(cl, &req, &resp, &sent_at);
    }
    if (err == TG_OK) {
        err = tg_parse_token(cl->cfg, &resp, sent_at, out, &cl->diag);
    }
    return tg_call_end(cl, &req, &resp, err);
}

/* One validation call of the given kind. */
static tg_err_t
tg_validate_one(tg_client_t *cl, const char *token, tg_insight_validate_t which,
                tg_identity_t **out)
{
    tg_request_t req;
    tg_response_t resp;
    time_t sent_at = 0;
    tg_err_t err;

    memset(&req, 0, sizeof(req));
    memset(&resp, 0, sizeof(resp));
    resp.retry_after = -1;
    err = tg_build_validate(cl->cfg, token, which, &req, &cl->diag);
    if (err == TG_OK) {
        err = tg_perform(cl, &req, &resp, &sent_at);
    }
    if (err == TG_OK) {
        err = tg_parse_validate(cl->cfg, &resp, which, out, &cl->diag);
    }
    return tg_call_end(cl, &req, &resp, err);
}

tg_err_t
tg_client_validate(tg_client_t *cl, const char *token, tg_identity_t **out)
{
    tg_identity_t *id = NULL, *profile = NULL;
    tg_insight_validate_t which;
    tg_err_t err;

    if (cl == NULL) {
        return TG_INTERNAL;
    }
    tg_diag_clear(&cl->diag);
    if (out == NULL) {
        return tg__fail(&cl->diag, TG_INTERNAL, "validate: out is NULL");
    }
    *out = NULL;
    which = tg_validate_which(cl->cfg, 0);
    if (which != TG_INSIGHT_VALIDATE_BOTH) {
        return tg_validate_one(cl, token, which, out);
    }

    err = tg_validate_one(cl, token, TG_INSIGHT_VALIDATE_USER, &id);
    if (err == TG_OK) {
        err = tg_validate_one(cl, token, TG_INSIGHT_VALIDATE_CURRENTUSER,
                              &profile);
    }
    if (err == TG_OK) {
        err = tg_identity_merge(id, profile, &cl->diag);
    }
    if (err == TG_OK) {
        *out = id;
        id = NULL;
    }
    tg_identity_free(id);
    tg_identity_free(profile);
    return err;
}

tg_err_t
tg_client_profile(tg_client_t *cl, const char *token, tg_identity_t **out)
{
    tg_request_t req;
    tg_response_t resp;
    time_t sent_at = 0;
    tg_err_t err;

    if (cl == NULL) {
        return TG_INTERNAL;
    }
    tg_call_begin(cl, &req, &resp);
    err = tg_build_profile(cl->cfg, token, &req, &cl->diag);
    if (err == TG_OK) {
        err = tg_perform(cl, &req, &resp, &sent_at);
    }
    if (err == TG_OK) {
        err = tg_parse_profile(cl->cfg, &resp, out, &cl->diag);
    }
    return tg_call_end(cl, &req, &resp, err);
}

tg_err_t
tg_client_credentials(tg_client_t *cl, const char *token, tg_creds_op_t op,
                      tg_credentials_t *out)
{
    tg_request_t req;
    tg_response_t resp;
    time_t sent_at = 0;
    tg_err_t err;

    if (cl == NULL) {
        return TG_INTERNAL;
    }
    tg_call_begin(cl, &req, &resp);
    err = tg_build_credentials(cl->cfg, token, op, &req, &cl->diag);
    if (err == TG_OK) {
        err = tg_perform(cl, &req, &resp, &sent_at);
    }
    if (err == TG_OK) {
        err = tg_parse_credentials(cl->cfg, &resp, op, out, &cl->diag);
    }
    return tg_call_end(cl, &req, &resp, err);
}

tg_err_t
tg_client_logout(tg_client_t *cl, const char *token)
{
    tg_request_t req;
    tg_response_t resp;
    time_t sent_at = 0;
    tg_err_t err;

    if (cl == NULL) {
        return TG_INTERNAL;
    }
    tg_call_begin(cl, &req, &resp);
    err = tg_build_logout(cl->cfg, token, &req, &cl->diag);
    if (err == TG_OK) {
        err = tg_perform(cl, &req, &resp, &sent_at);
    }
    if (err == TG_OK) {
        err = tg_parse_logout(cl->cfg, &resp, &cl->diag);
    }
    return tg_call_end(cl, &req, &resp, err);
}

tg_err_t
tg_client_sudo(tg_client_t *cl, const char *token, const char *user_id,
               tg_token_t *out)
{
    tg_request_t req;
    tg_response_t resp;
    time_t sent_at = 0;
    tg_err_t err;

    if (cl == NULL) {
        return TG_INTERNAL;
    }
    tg_call_begin(cl, &req, &resp);
    err = tg_build_sudo(cl->cfg, token, user_id, &req, &cl->diag);
    if (err == TG_OK) {
        err = tg_perform(cl, &req, &resp, &sent_at);
    }
    if (err == TG_OK) {
        err = tg_parse_sudo(cl->cfg, &resp, sent_at, out, &cl->diag);
    }
    return tg_call_end(cl, &req, &resp, err);
}

tg_err_t
tg_client_session(tg_client_t *cl, const char *token, const char *workspace,
                  tg_session_t *out)
{
    tg_request_t req;
    tg_response_t resp;
    time_t sent_at = 0;
    tg_err_t err;

    if (cl == NULL) {
        return TG_INTERNAL;
    }
    tg_call_begin(cl, &req, &resp);
    err = tg_build_session(cl->cfg, token, workspace, &req, &cl->diag);
    if (err == TG_OK) {
        err = tg_perform(cl, &req, &resp, &sent_at);
    }
    if (err == TG_OK) {
        err = tg_parse_session(cl->cfg, &resp, out, &cl->diag);
    }
    return tg_call_end(cl, &req, &resp, err);
}

tg_err_t
tg_client_embed_sso_url(tg_client_t *cl, const char *token,
                        const tg_embed_params_t *p, char **url)
{
    tg_request_t req;
    tg_response_t resp;
    time_t sent_at = 0;
    tg_err_t err;

    if (cl == NULL) {
        return TG_INTERNAL;
    }
    tg_call_begin(cl, &req, &resp);
    err = tg_build_embed_sso_url(cl->cfg, token, p, &req, &cl->diag);
    if (err == TG_OK) {
        err = tg_perform(cl, &req, &resp, &sent_at);
    }
    if (err == TG_OK) {
        err = tg_parse_embed_sso_url(cl->cfg, &resp, url, &cl->diag);
    }
    return tg_call_end(cl, &req, &resp, err);
}
