/* SPDX-License-Identifier: MIT */
/*
 * curl_error.c - the one map from a failed libcurl transfer to a tg_err_t,
 * used by the blocking transport (transport.c) and by the nginx module.
 *
 * Before it there were three maps that disagreed: the same oversized or
 * truncated answer was TG_PROTOCOL for the CLI and PAM and TG_UNAVAILABLE
 * in nginx, and a header line over libcurl's own limit was "out of memory"
 * (CLI exit 13, PAM_BUF_ERR).  The rules are in tg_curl.h.
 */
#include "tg_curl.h"
#include "tg_internal.h"

#include <stdio.h>
#include <string.h>

/* libcurl's own limit on one response header line (CURL_MAX_HTTP_HEADER):
 * a longer line ends the transfer with CURLE_OUT_OF_MEMORY. */
#define TG_CURL_HEADER_LINE_MAX_KIB 100

void
tg__curl_result_read(CURL *easy, tg__curl_result_t *res)
{
    long status = 0, os_errno = 0;
    curl_off_t pretransfer_us = 0;

    if (curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK) {
        res->status = status;
    }
    if (curl_easy_getinfo(easy, CURLINFO_OS_ERRNO, &os_errno) == CURLE_OK) {
        res->os_errno = os_errno;
    }
    /* Nothing sent means the connection (TCP or TLS) was not up: CONNECT
     * time alone is 0 on a reused connection too. */
    if (curl_easy_getinfo(easy, CURLINFO_PRETRANSFER_TIME_T, &pretransfer_us) ==
        CURLE_OK) {
        res->sent = pretransfer_us > 0;
    }
}

tg_err_t
tg__curl_error(const tg__curl_result_t *res, tg_diag_t *diag)
{
    char why[CURL_ERROR_SIZE];
    const char *errbuf = res->errbuf != NULL ? res->errbuf : "";
    long limit_ms;

    /* curl's text may quote server bytes; it never holds a token, since
     * tokens are never in URLs. */
    if (errbuf[0] != '\0') {
        tg__sanitize(why, sizeof(why), errbuf, strlen(errbuf));
    } else {
        snprintf(why, sizeof(why), "%s", curl_easy_strerror(res->rc));
    }

    /* TLS can also fail after the handshake (a TLS 1.3 certificate_required
     * alert, an unclean shutdown): curl reports a send or receive error,
     * with the TLS library's reason.  Before any HTTP status that is a TLS
     * failure, not a broken answer or an unreachable server. */
    if ((res->rc == CURLE_RECV_ERROR || res->rc == CURLE_SEND_ERROR) &&
        res->https && res->status == 0 &&
        (strstr(errbuf, "SSL") != NULL || strstr(errbuf, "TLS") != NULL)) {
        return tg__fail(diag, TG_TLS, "TLS failure: %s", why);
    }

    switch (res->rc) {
    case CURLE_COULDNT_CONNECT:
        /* curl's text lacks the system's reason ("Connection refused"). */
        if (res->os_errno != 0) {
            return tg__fail(diag, TG_UNAVAILABLE, "cannot connect: %s (%s)",
                            strerror((int) res->os_errno), why);
        }
        return tg__fail(diag, TG_UNAVAILABLE, "cannot connect: %s", why);
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return tg__fail(diag, TG_UNAVAILABLE, "cannot resolve: %s", why);
    case CURLE_GOT_NOTHING:
        return tg__fail(diag, TG_UNAVAILABLE,
                        "the server closed the connection without answering "
                        "(%s)",
                        why);
    case CURLE_SEND_ERROR:
        return tg__fail(diag, TG_UNAVAILABLE, "cannot send the request: %s",
                        why);
    case CURLE_OPERATION_TIMEDOUT:
        if (!res->sent) {
            limit_ms = res->connect_timeout_ms < res->timeout_ms
                           ? res->connect_timeout_ms
                           : res->timeout_ms;
            return tg__fail(diag, TG_TIMEOUT,
                            "could not connect within %.1f s (%s)",
                            (double) limit_ms / 1000.0, why);
        }
        return tg__fail(diag, TG_TIMEOUT, "no answer within %.1f s (%s)",
                        (double) res->timeout_ms / 1000.0, why);
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CLIENTCERT:
    case CURLE_USE_SSL_FAILED:
        return tg__fail(diag, TG_TLS, "TLS failure: %s", why);
    case CURLE_WRITE_ERROR:
        /* Our callbacks refuse for size; anything else they refuse for is
         * an allocation failure of ours. */
        if (res->body_overflow) {
            return tg__fail(diag, TG_PROTOCOL,
                            "response larger than max_response_bytes (%ld)",
                            res->body_max);
        }
        if (res->header_overflow) {
            return tg__fail(diag, TG_PROTOCOL,
                            "response headers too large (more than %ld bytes "
                            "or %ld lines)",
                            res->header_bytes_max, res->header_lines_max);
        }
        return tg__fail(diag, TG_NOMEM,
                        "cannot store the response: out of memory");
    case CURLE_FILESIZE_EXCEEDED:
        return tg__fail(diag, TG_PROTOCOL,
                        "response larger than max_response_bytes (%ld)",
                        res->body_max);
    case CURLE_PARTIAL_FILE:
        return tg__fail(diag, TG_PROTOCOL, "truncated answer: %s", why);
    case CURLE_RECV_ERROR:
        if (res->status == 0) {
            return tg__fail(diag, TG_UNAVAILABLE,
                            "connection broken before an answer: %s", why);
        }
        return tg__fail(diag, TG_PROTOCOL,
                        "connection broken while reading the answer: %s", why);
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return tg__fail(diag, TG_PROTOCOL, "malformed answer: %s", why);
    case CURLE_BAD_CONTENT_ENCODING:
        return tg__fail(diag, TG_PROTOCOL, "bad content encoding: %s", why);
    case CURLE_UNSUPPORTED_PROTOCOL:
        return tg__fail(diag, TG_CONFIG, "protocol not allowed: %s", why);
    case CURLE_URL_MALFORMAT:
        return tg__fail(diag, TG_CONFIG, "bad URL: %s", why);
    case CURLE_OUT_OF_MEMORY:
        /* libcurl says "out of memory" for a header line over its own
         * limit too: after a status line that is the server's doing (and
         * curl's "Out of memory" would only mislead). */
        if (res->status != 0) {
            return tg__fail(diag, TG_PROTOCOL,
                            "an answer header line is larger than libcurl "
                            "accepts (about %d KiB)",
                            TG_CURL_HEADER_LINE_MAX_KIB);
        }
        return tg__fail(diag, TG_NOMEM, "out of memory (%s)", why);
    default:
        return tg__fail(diag, TG_UNAVAILABLE, "%s", why);
    }
}
