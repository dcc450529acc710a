/* SPDX-License-Identifier: MIT */
/*
 * transport.c - the blocking curl transport (one easy handle per client,
 * kept alive across calls) and the composite tg_client_* calls that run
 * build, perform and parse.
 *
 * All the libcurl discipline of the project lives here (STYLE.md rule 9):
 * every option is checked, timeouts are always set, only https (and http
 * when the config allowed it) may be spoken, redirects are never followed,
 * TLS verification is always on, bodies and headers are capped in the
 * callbacks, and the proxy never comes from the environment.
 */
#include "tokengate.h"
#include "tg_curl.h"
#include "tg_internal.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

/* Response headers are small (a status line, a date, a type, a length);
 * anything past these limits is a hostile or broken server (F10). */
#define TG_HEADER_BYTES_MAX 16384
#define TG_HEADER_COUNT_MAX 100
/* A Date header value is ~29 bytes; longer values are not parsed. */
#define TG_DATE_MAX 128
/* The first allocation for a response body; it doubles up to the cap. */
#define TG_BODY_INITIAL 4096
/* A certificate is only checked at connect: do not reuse a connection
 * for longer than this (SECURITY.md 3.4). */
#define TG_MAXLIFETIME_CONN 300L
/* A header line we build: "Authorization: " + a token or scheme. */
#define TG_HEADER_LINE_MAX (TG_TOKEN_MAX + 64)

struct tg_client {
    const tg_config_t *cfg; /* borrowed; outlives the client */
    CURL *curl;
    tg_diag_t diag;
    char errbuf[CURL_ERROR_SIZE];

    /* The response of the last perform; the body is wiped before reuse. */
    char *body;
    size_t body_len;
    size_t body_cap;
    size_t body_max;
    int body_overflow;
    size_t header_bytes;
    int header_count;
    int header_overflow;
    time_t server_date;

    long requests;
    long connections;
};

static void tg_global_init_once(void);
static size_t tg_write_cb(char *ptr, size_t size, size_t nmemb, void *data);
static size_t tg_header_cb(char *buf, size_t size, size_t nitems, void *data);
static void tg_response_reset(tg_client_t *cl);
static int tg_url_is_http(const char *url);
static tg_err_t tg_client_setup(tg_client_t *cl, const tg_request_t *req);
static tg_err_t tg_headers_add(tg_client_t *cl, struct curl_slist **list,
                               const char *name, const char *value);
static void tg_headers_free(struct curl_slist *list);
static tg_err_t tg_map_curl_error(tg_client_t *cl, CURLcode rc);
static tg_err_t tg_perform(tg_client_t *cl, const tg_request_t *req,
                           tg_response_t *resp, time_t *sent_at);
static void tg_call_begin(tg_client_t *cl, tg_request_t *req,
                          tg_response_t *resp);
static tg_err_t tg_call_end(tg_client_t *cl, tg_request_t *req,
                            const tg_response_t *resp, tg_err_t err);

static pthread_once_t tg_global_once = PTHREAD_ONCE_INIT;
static CURLcode tg_global_rc = CURLE_FAILED_INIT;

/* tg_client_diag() on a NULL client: "never NULL". */
static const tg_diag_t tg_empty_diag = {.retry_after = -1};

/*
 * Set one curl option or fail the call with TG_INTERNAL naming it.  Needs a
 * local "err" and an "out" label.
 */
#define TG_SETOPT(cl, opt, val)                                                \
    do {                                                                       \
        if (curl_easy_setopt((cl)->curl, opt, val) != CURLE_OK) {              \
            err = tg__fail(&(cl)->diag, TG_INTERNAL, "curl option %s failed",  \
                           #opt);                                              \
            goto out;                                                          \
        }                                                                      \
    } while (0)

/* ---------------------------------------------------------------------- */
/* Global init and the client object                                      */
/* ---------------------------------------------------------------------- */

static void
tg_global_init_once(void)
{
    /* Once per process, never cleaned up: we may live inside a host
     * process (sshd, nginx) that also uses libcurl (SECURITY.md 3.10). */
    tg_global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

tg_err_t
tg_client_new(const tg_config_t *cfg, tg_client_t **out, tg_diag_t *diag)
{
    tg_client_t *cl = NULL;
    tg_err_t err = TG_OK;

    if (out == NULL) {
        return tg__fail(diag, TG_INTERNAL, "tg_client_new: out is NULL");
    }
    *out = NULL;
    if (cfg == NULL) {
        return tg__fail(diag, TG_CONFIG, "no configuration");
    }
    if (pthread_once(&tg_global_once, tg_global_init_once) != 0 ||
        tg_global_rc != CURLE_OK) {
        return tg__fail(diag, TG_INTERNAL, "curl_global_init failed: %s",
                        curl_easy_strerror(tg_global_rc));
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
    cl->body_max = (size_t) cfg->max_response_bytes;
    tg_diag_clear(&cl->diag);
    cl->curl = curl_easy_init();
    if (cl->curl == NULL) {
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
    if (cl->curl != NULL) {
        curl_easy_cleanup(cl->curl);
    }
    tg_secret_free_len(cl->body, cl->body_cap);
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
/* Callbacks                                                              */
/* ---------------------------------------------------------------------- */

/* Append body bytes, refusing anything past max_response_bytes.  The
 * buffer never moves by realloc: a grown copy is made and the old one
 * wiped, because bodies carry tokens and secrets. */
static size_t
tg_write_cb(char *ptr, size_t size, size_t nmemb, void *data)
{
    tg_client_t *cl = data;
    size_t n, cap;
    char *grown;

    if (size != 0 && nmemb > SIZE_MAX / size) {
        cl->body_overflow = 1;
        return 0;
    }
    n = size * nmemb;
    /* body_len <= body_max always holds, so this cannot wrap. */
    if (n > cl->body_max - cl->body_len) {
        cl->body_overflow = 1;
        return 0;
    }
    if (n > cl->body_cap - cl->body_len) {
        cap = cl->body_cap != 0 ? cl->body_cap : TG_BODY_INITIAL;
        while (cap < cl->body_len + n && cap < cl->body_max) {
            cap = cap > cl->body_max / 2 ? cl->body_max : cap * 2;
        }
        if (cap < cl->body_len + n) {
            cap = cl->body_len + n;
        }
        grown = malloc(cap);
        if (grown == NULL) {
            return 0;
        }
        if (cl->body_len != 0) {
            memcpy(grown, cl->body, cl->body_len);
        }
        tg_secret_free_len(cl->body, cl->body_cap);
        cl->body = grown;
        cl->body_cap = cap;
    }
    memcpy(cl->body + cl->body_len, ptr, n);
    cl->body_len += n;
    return n;
}

/* Count and cap the header bytes and lines; remember the Date. */
static size_t
tg_header_cb(char *buf, size_t size, size_t nitems, void *data)
{
    tg_client_t *cl = data;
    char value[TG_DATE_MAX];
    size_t n, i, j;
    time_t t;

    if (size != 0 && nitems > SIZE_MAX / size) {
        cl->header_overflow = 1;
        return 0;
    }
    n = size * nitems;
    if (n > TG_HEADER_BYTES_MAX - cl->header_bytes ||
        cl->header_count >= TG_HEADER_COUNT_MAX) {
        cl->header_overflow = 1;
        return 0;
    }
    cl->header_bytes += n;
    cl->header_count++;

    if (n >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        /* A new response (after a 1xx): forget the previous one's date. */
        cl->server_date = 0;
    } else if (n > 5 && strncasecmp(buf, "date:", 5) == 0) {
        for (i = 5; i < n && (buf[i] == ' ' || buf[i] == '\t'); i++) {
        }
        for (j = n; j > i && (buf[j - 1] == '\r' || buf[j - 1] == '\n' ||
                              buf[j - 1] == ' ' || buf[j - 1] == '\t');
             j--) {
        }
        if (j - i > 0 && j - i < sizeof(value)) {
            memcpy(value, buf + i, j - i);
            value[j - i] = '\0';
            t = curl_getdate(value, NULL);
            cl->server_date = t > 0 ? t : 0;
        }
    }
    return n;
}

/* ---------------------------------------------------------------------- */
/* Perform                                                                */
/* ---------------------------------------------------------------------- */

static void
tg_response_reset(tg_client_t *cl)
{
    if (cl->body != NULL) {
        explicit_bzero(cl->body, cl->body_cap);
    }
    cl->body_len = 0;
    cl->body_overflow = 0;
    cl->header_bytes = 0;
    cl->header_count = 0;
    cl->header_overflow = 0;
    cl->server_date = 0;
    cl->errbuf[0] = '\0';
}

static int
tg_url_is_http(const char *url)
{
    return strncasecmp(url, "http://", 7) == 0;
}

/* Every option, every call: the handle is reused for keep-alive, so no
 * option of an earlier request may leak into this one. */
static tg_err_t
tg_client_setup(tg_client_t *cl, const tg_request_t *req)
{
    const tg_config_t *cfg = cl->cfg;
    tg_err_t err = TG_OK;

    TG_SETOPT(cl, CURLOPT_NOSIGNAL, 1L);
    TG_SETOPT(cl, CURLOPT_ERRORBUFFER, cl->errbuf);
    TG_SETOPT(cl, CURLOPT_URL, req->url);
    /* http only when the URL is http, which tg_config_validate allowed
     * for loopback or with allow_insecure_http. */
#if LIBCURL_VERSION_NUM >= 0x075700
    /* A transfer that ends (timeout) must not wait for a hung resolver
     * thread: that would stretch a PAM login past its timeout. */
    TG_SETOPT(cl, CURLOPT_QUICK_EXIT, 1L);
#endif
    TG_SETOPT(cl, CURLOPT_PROTOCOLS_STR,
              tg_url_is_http(req->url) ? "https,http" : "https");
    /* Redirects are never followed; they go to the parser as a 3xx.  The
     * redirect list cannot be empty in libcurl, so it repeats the list
     * above (it only matters with FOLLOWLOCATION, which is off). */
    TG_SETOPT(cl, CURLOPT_FOLLOWLOCATION, 0L);
    TG_SETOPT(cl, CURLOPT_REDIR_PROTOCOLS_STR, "https");
    TG_SETOPT(cl, CURLOPT_SSL_VERIFYPEER, 1L);
    TG_SETOPT(cl, CURLOPT_SSL_VERIFYHOST, 2L);
    TG_SETOPT(cl, CURLOPT_SSLVERSION, (long) CURL_SSLVERSION_TLSv1_2);
    /* Set only when configured: a NULL here would remove libcurl's
     * built-in CA bundle rather than restore it. */
    if (cfg->ca_file != NULL && cfg->ca_file[0] != '\0') {
        TG_SETOPT(cl, CURLOPT_CAINFO, cfg->ca_file);
    }
    if (cfg->ca_path != NULL && cfg->ca_path[0] != '\0') {
        TG_SETOPT(cl, CURLOPT_CAPATH, cfg->ca_path);
    }
    /* With neither configured, pin libcurl's own built-in bundle and path
     * explicitly: a libcurl built with CA fallback would otherwise let
     * OpenSSL's SSL_CERT_FILE / SSL_CERT_DIR, taken from the caller's
     * environment (su, sudo), choose what we trust. */
    if ((cfg->ca_file == NULL || cfg->ca_file[0] == '\0') &&
        (cfg->ca_path == NULL || cfg->ca_path[0] == '\0')) {
        const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);

        if (v != NULL && v->cainfo != NULL) {
            TG_SETOPT(cl, CURLOPT_CAINFO, v->cainfo);
        }
        if (v != NULL && v->capath != NULL) {
            TG_SETOPT(cl, CURLOPT_CAPATH, v->capath);
        }
    }
    if (cfg->pinned_pubkey != NULL && cfg->pinned_pubkey[0] != '\0') {
        TG_SETOPT(cl, CURLOPT_PINNEDPUBLICKEY, cfg->pinned_pubkey);
    }
    /* "" disables the proxy environment variables (SECURITY.md 3.4). */
    TG_SETOPT(cl, CURLOPT_PROXY, cfg->proxy != NULL ? cfg->proxy : "");
    TG_SETOPT(cl, CURLOPT_CONNECTTIMEOUT_MS, cfg->connect_timeout_ms);
    TG_SETOPT(cl, CURLOPT_TIMEOUT_MS, cfg->timeout_ms);
    TG_SETOPT(cl, CURLOPT_MAXFILESIZE_LARGE,
              (curl_off_t) cfg->max_response_bytes);
    TG_SETOPT(cl, CURLOPT_WRITEFUNCTION, tg_write_cb);
    TG_SETOPT(cl, CURLOPT_WRITEDATA, cl);
    TG_SETOPT(cl, CURLOPT_HEADERFUNCTION, tg_header_cb);
    TG_SETOPT(cl, CURLOPT_HEADERDATA, cl);
    TG_SETOPT(cl, CURLOPT_USERAGENT, "tokengate/" PACKAGE_VERSION);
#if LIBCURL_VERSION_NUM >= 0x075000
    TG_SETOPT(cl, CURLOPT_MAXLIFETIME_CONN, TG_MAXLIFETIME_CONN);
#endif

    /* The method.  CUSTOMREQUEST persists across calls, so reset it. */
    TG_SETOPT(cl, CURLOPT_CUSTOMREQUEST, (char *) NULL);
    if (strcmp(req->method, "GET") == 0) {
        TG_SETOPT(cl, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(req->method, "POST") == 0 ||
               strcmp(req->method, "PATCH") == 0 ||
               (strcmp(req->method, "DELETE") == 0 && req->body != NULL)) {
        TG_SETOPT(cl, CURLOPT_POSTFIELDSIZE_LARGE,
                  (curl_off_t) (req->body != NULL ? req->body_len : 0));
        TG_SETOPT(cl, CURLOPT_POSTFIELDS, req->body != NULL ? req->body : "");
        if (strcmp(req->method, "POST") != 0) {
            TG_SETOPT(cl, CURLOPT_CUSTOMREQUEST, req->method);
        }
    } else if (strcmp(req->method, "DELETE") == 0) {
        TG_SETOPT(cl, CURLOPT_HTTPGET, 1L);
        TG_SETOPT(cl, CURLOPT_CUSTOMREQUEST, "DELETE");
    } else {
        err = tg__fail(&cl->diag, TG_INTERNAL, "unsupported method %s",
                       req->method);
    }
out:
    return err;
}

/* Append "Name: value"; the line is built in a local buffer that is wiped
 * (it may hold the token), and curl_slist_append copies it. */
static tg_err_t
tg_headers_add(tg_client_t *cl, struct curl_slist **list, const char *name,
               const char *value)
{
    char line[TG_HEADER_LINE_MAX];
    struct curl_slist *grown;
    int n;

    n = snprintf(line, sizeof(line), "%s: %s", name, value);
    if (n < 0 || (size_t) n >= sizeof(line)) {
        explicit_bzero(line, sizeof(line));
        return tg__fail(&cl->diag, TG_INPUT, "the %s header is too long", name);
    }
    grown = curl_slist_append(*list, line);
    explicit_bzero(line, sizeof(line));
    if (grown == NULL) {
        return tg__fail(&cl->diag, TG_NOMEM, "out of memory");
    }
    *list = grown;
    return TG_OK;
}

/* Wipe every header line (the Authorization one holds the token). */
static void
tg_headers_free(struct curl_slist *list)
{
    struct curl_slist *p;

    for (p = list; p != NULL; p = p->next) {
        if (p->data != NULL) {
            explicit_bzero(p->data, strlen(p->data));
        }
    }
    curl_slist_free_all(list);
}

/* A failed transfer to a tg_err_t, through the map all transports share
 * (curl_error.c). */
static tg_err_t
tg_map_curl_error(tg_client_t *cl, CURLcode rc)
{
    tg__curl_result_t res;

    memset(&res, 0, sizeof(res));
    res.rc = rc;
    res.errbuf = cl->errbuf;
    tg__curl_result_read(cl->curl, &res);
    res.https = strncasecmp(cl->cfg->url, "https://", 8) == 0;
    res.body_overflow = cl->body_overflow;
    res.header_overflow = cl->header_overflow;
    res.body_max = cl->cfg->max_response_bytes;
    res.header_bytes_max = TG_HEADER_BYTES_MAX;
    res.header_lines_max = TG_HEADER_COUNT_MAX;
    res.connect_timeout_ms = cl->cfg->connect_timeout_ms;
    res.timeout_ms = cl->cfg->timeout_ms;
    return tg__curl_error(&res, &cl->diag);
}

/* Send one request; the caller clears the diag. */
static tg_err_t
tg_perform(tg_client_t *cl, const tg_request_t *req, tg_response_t *resp,
           time_t *sent_at)
{
    struct curl_slist *headers = NULL;
    tg_err_t err = TG_OK;
    CURLcode rc;
    long status = 0, connects = 0;
    curl_off_t retry = 0;
    char *ctype = NULL;
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
    tg_response_reset(cl);

    err = tg_client_setup(cl, req);
    if (err != TG_OK) {
        goto out;
    }
    /* "Expect:" turns off 100-continue: one round trip per call. */
    err = tg_headers_add(cl, &headers, "Accept",
                         req->accept != NULL ? req->accept : "*/*");
    if (err == TG_OK && req->content_type != NULL) {
        err = tg_headers_add(cl, &headers, "Content-Type", req->content_type);
    }
    if (err == TG_OK && req->authorization != NULL) {
        err = tg_headers_add(cl, &headers, "Authorization", req->authorization);
    }
    if (err == TG_OK) {
        err = tg_headers_add(cl, &headers, "Expect", "");
    }
    if (err != TG_OK) {
        goto out;
    }
    TG_SETOPT(cl, CURLOPT_HTTPHEADER, headers);

    now = time(NULL);
    if (sent_at != NULL) {
        *sent_at = now;
    }
    rc = curl_easy_perform(cl->curl);
    cl->requests++;
    if (curl_easy_getinfo(cl->curl, CURLINFO_NUM_CONNECTS, &connects) ==
            CURLE_OK &&
        connects > 0) {
        cl->connections += connects;
    }
    if (rc != CURLE_OK) {
        err = tg_map_curl_error(cl, rc);
        /* A status may have arrived before the failure (a 200 whose body
         * was too large): keep it for the message. */
        if (curl_easy_getinfo(cl->curl, CURLINFO_RESPONSE_CODE, &status) ==
                CURLE_OK &&
            status != 0) {
            cl->diag.http_status = status;
        }
        goto out;
    }

    if (curl_easy_getinfo(cl->curl, CURLINFO_RESPONSE_CODE, &status) !=
            CURLE_OK ||
        curl_easy_getinfo(cl->curl, CURLINFO_CONTENT_TYPE, &ctype) !=
            CURLE_OK ||
        curl_easy_getinfo(cl->curl, CURLINFO_RETRY_AFTER, &retry) != CURLE_OK) {
        err = tg__fail(&cl->diag, TG_INTERNAL, "curl_easy_getinfo failed");
        goto out;
    }
    resp->status = status;
    resp->content_type = ctype;
    resp->body = cl->body_len != 0 ? cl->body : NULL;
    resp->body_len = cl->body_len;
    /* libcurl returns 0 for "absent or unparseable" and, before 8.12, a
     * negative value for a date in the past: both are "no advice". */
    if (retry > 0) {
        if (cl->cfg->retry_after_max > 0 &&
            retry > (curl_off_t) cl->cfg->retry_after_max) {
            retry = (curl_off_t) cl->cfg->retry_after_max;
        }
        resp->retry_after = (long) retry;
    }
    resp->server_date = cl->server_date;

out:
    /* Drop curl's pointer to the list before the list goes away. */
    (void) curl_easy_setopt(cl->curl, CURLOPT_HTTPHEADER,
                            (struct curl_slist *) NULL);
    tg_headers_free(headers);
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
    tg_response_reset(cl);
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
