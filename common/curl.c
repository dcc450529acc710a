/* SPDX-License-Identifier: MIT */
/*
 * curl.c - the one libcurl easy-handle layer, under the blocking transport
 * (transport.c: the CLI and PAM) and the nginx module's handle pool alike.
 *
 * All the libcurl discipline of the project lives here and in
 * curl_error.c (STYLE.md rule 9): every option is checked, timeouts are
 * always set, only https (and http when the config allowed it) may be
 * spoken, redirects are never followed, TLS verification is always on with
 * a CA bundle the environment cannot choose, bodies and headers are capped
 * in the callbacks, and the proxy never comes from the environment.
 * curl_global_init runs once per process (tg__curl_global_init) and is
 * never undone.
 */
#include "tg_curl.h"
#include "tg_http1.h"
#include "tg_internal.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A Date header value is ~29 bytes; longer values are not parsed. */
#define TG_CURL_DATE_MAX 128

static size_t tg_curl_write_cb(char *ptr, size_t size, size_t nmemb,
                               void *data);
static size_t tg_curl_header_cb(char *buf, size_t size, size_t nitems,
                                void *data);
static void tg_curl_global_init_once(void);
static tg_err_t tg_curl_method_reset(tg__curl_t *c);
static tg_err_t tg_curl_line(char *line, size_t size, const char *name,
                             const char *value, tg_diag_t *diag);

/* "Expect:" with no value turns 100-continue off: one round trip. */
static char tg_curl_expect[] = "Expect:";

static pthread_once_t tg_curl_global_once = PTHREAD_ONCE_INIT;
static CURLcode tg_curl_global_rc = CURLE_FAILED_INIT;

/*
 * Set one curl option or fail with TG_INTERNAL naming it.  Needs a local
 * "err" and an "out" label.
 */
#define TG_CURL_SETOPT(c, opt, val)                                            \
    do {                                                                       \
        if (curl_easy_setopt((c)->easy, opt, val) != CURLE_OK) {               \
            err = tg__fail(diag, TG_INTERNAL, "curl option %s failed", #opt);  \
            goto out;                                                          \
        }                                                                      \
    } while (0)

static void
tg_curl_global_init_once(void)
{
    /* Once per process, never cleaned up: we may live inside a host
     * process (sshd, nginx) that also uses libcurl (SECURITY.md 3.10). */
    tg_curl_global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

CURLcode
tg__curl_global_init(void)
{
    if (pthread_once(&tg_curl_global_once, tg_curl_global_init_once) != 0) {
        return CURLE_FAILED_INIT;
    }
    return tg_curl_global_rc;
}

tg_err_t
tg__curl_setup(tg__curl_t *c, tg_diag_t *diag)
{
    const tg_config_t *cfg = c->cfg;
    const curl_version_info_data *v;
    tg_err_t err = TG_OK;

    /* tg_config_validate keeps it positive; 0 would refuse every body. */
    c->body_max =
        cfg->max_response_bytes > 0 ? (size_t) cfg->max_response_bytes : 0;

    TG_CURL_SETOPT(c, CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075700
    /* A transfer that ends (timeout, a cancelled nginx request) must not
     * wait for a hung resolver thread: that would stretch a PAM login past
     * its timeout, or block an nginx worker. */
    TG_CURL_SETOPT(c, CURLOPT_QUICK_EXIT, 1L);
#endif
    TG_CURL_SETOPT(c, CURLOPT_ERRORBUFFER, c->errbuf);
    /* http only when the URL is http, which tg_config_validate allowed
     * for loopback or with allow_insecure_http. */
    TG_CURL_SETOPT(c, CURLOPT_PROTOCOLS_STR, c->http ? "https,http" : "https");
    /* Redirects are never followed; they go to the parser as a 3xx.  The
     * redirect list cannot be empty in libcurl, so it names https (it only
     * matters with FOLLOWLOCATION, which is off). */
    TG_CURL_SETOPT(c, CURLOPT_FOLLOWLOCATION, 0L);
    TG_CURL_SETOPT(c, CURLOPT_REDIR_PROTOCOLS_STR, "https");
    TG_CURL_SETOPT(c, CURLOPT_SSL_VERIFYPEER, 1L);
    TG_CURL_SETOPT(c, CURLOPT_SSL_VERIFYHOST, 2L);
    TG_CURL_SETOPT(c, CURLOPT_SSLVERSION, (long) CURL_SSLVERSION_TLSv1_2);
    /* Set only when configured: a NULL here would remove libcurl's
     * built-in CA bundle rather than restore it. */
    if (cfg->ca_file != NULL && cfg->ca_file[0] != '\0') {
        TG_CURL_SETOPT(c, CURLOPT_CAINFO, cfg->ca_file);
    }
    if (cfg->ca_path != NULL && cfg->ca_path[0] != '\0') {
        TG_CURL_SETOPT(c, CURLOPT_CAPATH, cfg->ca_path);
    }
    /* With neither configured, pin libcurl's own built-in bundle and path
     * explicitly: a libcurl built with CA fallback would otherwise let
     * OpenSSL's SSL_CERT_FILE / SSL_CERT_DIR, taken from the caller's
     * environment (su, sudo, nginx's env directive), choose what we
     * trust. */
    if ((cfg->ca_file == NULL || cfg->ca_file[0] == '\0') &&
        (cfg->ca_path == NULL || cfg->ca_path[0] == '\0')) {
        v = curl_version_info(CURLVERSION_NOW);
        if (v != NULL && v->cainfo != NULL) {
            TG_CURL_SETOPT(c, CURLOPT_CAINFO, v->cainfo);
        }
        if (v != NULL && v->capath != NULL) {
            TG_CURL_SETOPT(c, CURLOPT_CAPATH, v->capath);
        }
    }
    if (cfg->pinned_pubkey != NULL && cfg->pinned_pubkey[0] != '\0') {
        TG_CURL_SETOPT(c, CURLOPT_PINNEDPUBLICKEY, cfg->pinned_pubkey);
    }
    /* "" disables the proxy environment variables (SECURITY.md 3.4). */
    TG_CURL_SETOPT(c, CURLOPT_PROXY, cfg->proxy != NULL ? cfg->proxy : "");
    TG_CURL_SETOPT(c, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
    TG_CURL_SETOPT(c, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    TG_CURL_SETOPT(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) c->body_max);
    TG_CURL_SETOPT(c, CURLOPT_WRITEFUNCTION, tg_curl_write_cb);
    TG_CURL_SETOPT(c, CURLOPT_WRITEDATA, c);
    TG_CURL_SETOPT(c, CURLOPT_HEADERFUNCTION, tg_curl_header_cb);
    TG_CURL_SETOPT(c, CURLOPT_HEADERDATA, c);
    TG_CURL_SETOPT(c, CURLOPT_USERAGENT, "tokengate/" PACKAGE_VERSION);
#if LIBCURL_VERSION_NUM >= 0x075000
    TG_CURL_SETOPT(c, CURLOPT_MAXLIFETIME_CONN, TG__CURL_MAXLIFETIME_CONN);
#endif
    /* The list's head is always "Expect:"; tg__curl_request links the
     * rest for each transfer. */
    c->lines[0].data = tg_curl_expect;
    c->lines[0].next = NULL;
    TG_CURL_SETOPT(c, CURLOPT_HTTPHEADER, &c->lines[0]);
out:
    return err;
}

/* "Name: value" into a fixed line buffer; the value may be a token. */
static tg_err_t
tg_curl_line(char *line, size_t size, const char *name, const char *value,
             tg_diag_t *diag)
{
    int n;

    /* Bytes past a line's NUL are always zero (see
     * tg__curl_wipe_request): wiping an earlier line takes its length. */
    explicit_bzero(line, strnlen(line, size));
    n = snprintf(line, size, "%s: %s", name, value);
    if (n < 0 || (size_t) n >= size) {
        explicit_bzero(line, size);
        return tg__fail(diag, TG_INPUT, "the %s header is too long", name);
    }
    return TG_OK;
}

tg_err_t
tg__curl_request(tg__curl_t *c, const tg_request_t *req, tg_diag_t *diag)
{
    tg_err_t err = TG_OK;
    size_t i, n;

    if (c->body_len != 0) {
        explicit_bzero(c->body, c->body_len);
        c->body_len = 0;
    }
    c->body_overflow = 0;
    c->header_bytes = 0;
    c->header_lines = 0;
    c->header_overflow = 0;
    c->server_date = 0;
    c->errbuf[0] = '\0';

    if (req == NULL || req->url == NULL || req->method == NULL) {
        return tg__fail(diag, TG_INTERNAL, "incomplete request");
    }
    TG_CURL_SETOPT(c, CURLOPT_URL, req->url);
    if (tg_curl_method_reset(c) != TG_OK) {
        return tg__fail(diag, TG_INTERNAL, "curl option reset failed");
    }

    /* The method.  A handle is reused, so POSTFIELDS and CUSTOMREQUEST of
     * an earlier transfer are reset (tg__curl_end, and here). */
    if (strcmp(req->method, "GET") == 0) {
        TG_CURL_SETOPT(c, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(req->method, "POST") == 0 ||
               strcmp(req->method, "PATCH") == 0 ||
               (strcmp(req->method, "DELETE") == 0 && req->body != NULL)) {
        c->post = 1;
        TG_CURL_SETOPT(c, CURLOPT_POSTFIELDSIZE_LARGE,
                       (curl_off_t) (req->body != NULL ? req->body_len : 0));
        TG_CURL_SETOPT(c, CURLOPT_POSTFIELDS,
                       req->body != NULL ? req->body : "");
        if (strcmp(req->method, "POST") != 0) {
            c->custom = 1;
            TG_CURL_SETOPT(c, CURLOPT_CUSTOMREQUEST, req->method);
        }
    } else if (strcmp(req->method, "DELETE") == 0) {
        TG_CURL_SETOPT(c, CURLOPT_HTTPGET, 1L);
        c->custom = 1;
        TG_CURL_SETOPT(c, CURLOPT_CUSTOMREQUEST, "DELETE");
    } else {
        return tg__fail(diag, TG_INTERNAL, "unsupported method %s",
                        req->method);
    }

    /* The header lines after "Expect:", in order; a NULL value is not
     * sent. */
    {
        const char *name[] = {"Accept", "Content-Type", "Authorization"};
        const char *value[] = {req->accept != NULL ? req->accept : "*/*",
                               req->content_type, req->authorization};
        char *line[] = {c->accept, c->content_type, c->authorization};
        size_t size[] = {sizeof(c->accept), sizeof(c->content_type),
                         sizeof(c->authorization)};

        n = 1;
        for (i = 0; i < sizeof(name) / sizeof(name[0]); i++) {
            if (value[i] == NULL) {
                continue;
            }
            err = tg_curl_line(line[i], size[i], name[i], value[i], diag);
            if (err != TG_OK) {
                goto out;
            }
            c->lines[n++].data = line[i];
        }
    }
    for (i = 0; i + 1 < n; i++) {
        c->lines[i].next = &c->lines[i + 1];
    }
    c->lines[n - 1].next = NULL;
out:
    return err;
}

tg_err_t
tg__curl_response(tg__curl_t *c, tg_response_t *resp, tg_diag_t *diag)
{
    long status = 0;
    char *ctype = NULL;
    curl_off_t retry = 0;

    memset(resp, 0, sizeof(*resp));
    resp->retry_after = -1;
    if (curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status) !=
            CURLE_OK ||
        curl_easy_getinfo(c->easy, CURLINFO_CONTENT_TYPE, &ctype) != CURLE_OK ||
        curl_easy_getinfo(c->easy, CURLINFO_RETRY_AFTER, &retry) != CURLE_OK) {
        return tg__fail(diag, TG_INTERNAL, "curl_easy_getinfo failed");
    }
    resp->status = status;
    resp->content_type = ctype;
    resp->body = c->body_len != 0 ? c->body : NULL;
    resp->body_len = c->body_len;
    /* libcurl returns 0 for "absent or unparseable" and, before 8.12, a
     * negative value for a date in the past: both are "no advice". */
    if (retry > 0) {
        if (c->cfg->retry_after_max > 0 &&
            retry > (curl_off_t) c->cfg->retry_after_max) {
            retry = (curl_off_t) c->cfg->retry_after_max;
        }
        resp->retry_after = (long) retry;
    }
    resp->server_date = c->server_date;
    return TG_OK;
}

tg_err_t
tg__curl_failed(tg__curl_t *c, CURLcode rc, tg_diag_t *diag)
{
    tg__curl_result_t res;

    memset(&res, 0, sizeof(res));
    res.rc = rc;
    res.errbuf = c->errbuf;
    tg__curl_result_read(c->easy, &res);
    res.https = !c->http;
    res.body_overflow = c->body_overflow;
    res.header_overflow = c->header_overflow;
    res.body_max = (long) c->body_max;
    res.header_bytes_max = TG__CURL_HEADER_BYTES_MAX;
    res.header_lines_max = TG__CURL_HEADER_LINES_MAX;
    res.connect_timeout_ms = c->connect_timeout_ms;
    res.timeout_ms = c->timeout_ms;
    return tg__curl_error(&res, diag);
}

void
tg__curl_wipe_request(tg__curl_t *c)
{
    /* The buffers start zeroed (the handle is calloc'd) and a line is
     * only ever written by tg_curl_line, which wipes the earlier one first
     * (or the whole buffer when it does not fit): nothing past the first
     * NUL is left to wipe.  The token line has room for 4 KiB; a token
     * is often ~100 bytes. */
    explicit_bzero(c->accept, strnlen(c->accept, sizeof(c->accept)));
    explicit_bzero(c->content_type,
                   strnlen(c->content_type, sizeof(c->content_type)));
    explicit_bzero(c->authorization,
                   strnlen(c->authorization, sizeof(c->authorization)));
}

int
tg__curl_end(tg__curl_t *c, size_t keep)
{
    int ok = 0;

    tg__curl_wipe_request(c);
    if (c->body != NULL) {
        explicit_bzero(c->body, c->body_len);
        c->body_len = 0;
        if (c->body_cap > keep) {
            tg_secret_free_len(c->body, c->body_cap);
            c->body = NULL;
            c->body_cap = 0;
        }
    }
    if (tg_curl_method_reset(c) != TG_OK) {
        ok = -1;
    }
    return ok;
}

/* Undo what the last request's method set beyond a GET. */
static tg_err_t
tg_curl_method_reset(tg__curl_t *c)
{
    tg_err_t ok = TG_OK;

    if (c->post) {
        /* The body pointer belongs to the request, which goes away. */
        c->post = 0;
        if (curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, (char *) NULL) !=
                CURLE_OK ||
            curl_easy_setopt(c->easy, CURLOPT_POSTFIELDSIZE_LARGE,
                             (curl_off_t) -1) != CURLE_OK) {
            ok = TG_INTERNAL;
        }
    }
    if (c->custom) {
        c->custom = 0;
        if (curl_easy_setopt(c->easy, CURLOPT_CUSTOMREQUEST, (char *) NULL) !=
            CURLE_OK) {
            ok = TG_INTERNAL;
        }
    }
    return ok;
}

void
tg__curl_free(tg__curl_t *c)
{
    if (c->easy != NULL) {
        curl_easy_cleanup(c->easy);
        c->easy = NULL;
    }
    tg__curl_wipe_request(c);
    tg_secret_free_len(c->body, c->body_cap);
    c->body = NULL;
    c->body_len = 0;
    c->body_cap = 0;
}

/* ---------------------------------------------------------------------- */
/* Callbacks                                                              */
/* ---------------------------------------------------------------------- */

/* Append body bytes, refusing anything past max_response_bytes, in the
 * capped buffer the native transport's parser uses too (it never moves by
 * realloc: bodies carry tokens and secrets). */
static size_t
tg_curl_write_cb(char *ptr, size_t size, size_t nmemb, void *data)
{
    tg__curl_t *c = data;
    size_t n;
    tg_err_t err;

    if (size != 0 && nmemb > SIZE_MAX / size) {
        c->body_overflow = 1;
        return 0;
    }
    n = size * nmemb;
    err = tg__http1_body_append(&c->body, &c->body_len, &c->body_cap,
                                c->body_max, ptr, n);
    if (err == TG_PROTOCOL) {
        c->body_overflow = 1;
    }
    return err == TG_OK ? n : 0;
}

/* Count and cap the header bytes and lines; remember the Date when
 * asked to. */
static size_t
tg_curl_header_cb(char *buf, size_t size, size_t nitems, void *data)
{
    tg__curl_t *c = data;
    char value[TG_CURL_DATE_MAX];
    size_t n, i, j;
    time_t t;

    if (size != 0 && nitems > SIZE_MAX / size) {
        c->header_overflow = 1;
        return 0;
    }
    n = size * nitems;
    if (n > TG__CURL_HEADER_BYTES_MAX - c->header_bytes ||
        c->header_lines >= TG__CURL_HEADER_LINES_MAX) {
        c->header_overflow = 1;
        return 0;
    }
    c->header_bytes += n;
    c->header_lines++;

    if (!c->want_date) {
        return n;
    }
    if (n >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        /* A new response (after a 1xx): forget the previous one's date. */
        c->server_date = 0;
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
            c->server_date = t > 0 ? t : 0;
        }
    }
    return n;
}
