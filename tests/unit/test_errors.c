/* SPDX-License-Identifier: MIT */
/*
 * test_errors.c - the error list, diag, sanitizing, fingerprints, the local
 * token and credential checks, the clear functions that wipe secrets, and
 * the one map from a failed curl transfer to an error (curl_error.c), and
 * the request side of the one curl layer (curl.c).
 * Each test is named by what it protects.
 */
#include "tokengate.h"
#include "tg_curl.h"
#include "tg_internal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_test.h"

/* ---------------------------------------------------------------------- */
/* The error list                                                         */
/* ---------------------------------------------------------------------- */

static void
every_error_has_a_distinct_prefixed_name_and_a_message(void **state)
{
    int a, b;

    (void) state;
    for (a = 0; a < TG_ERR_MAX; a++) {
        const char *name = tg_err_name((tg_err_t) a);
        const char *msg = tg_strerror((tg_err_t) a);

        assert_non_null(name);
        assert_non_null(msg);
        assert_true(strncmp(name, "TG_", 3) == 0);
        assert_true(strlen(name) > 3);
        assert_true(msg[0] != '\0');
        for (b = 0; b < a; b++) {
            assert_string_not_equal(name, tg_err_name((tg_err_t) b));
            assert_string_not_equal(msg, tg_strerror((tg_err_t) b));
        }
    }
    assert_string_equal(tg_err_name(TG_OK), "TG_OK");
    assert_string_equal(tg_strerror(TG_OK), "success");
    assert_string_equal(tg_err_name(TG_TOKEN_INVALID), "TG_TOKEN_INVALID");
    assert_string_equal(tg_strerror(TG_TOKEN_INVALID),
                        "token invalid or expired");
}

static void
out_of_range_errors_never_give_null(void **state)
{
    (void) state;
    assert_string_equal(tg_err_name(TG_ERR_MAX), "TG_UNKNOWN");
    assert_string_equal(tg_err_name((tg_err_t) -1), "TG_UNKNOWN");
    assert_string_equal(tg_err_name((tg_err_t) 1000), "TG_UNKNOWN");
    assert_string_equal(tg_strerror(TG_ERR_MAX), "unknown error");
    assert_string_equal(tg_strerror((tg_err_t) -1), "unknown error");
}

/* The CLI exit code of an error is its value: append only. */
static void
error_values_are_the_cli_exit_codes(void **state)
{
    (void) state;
    assert_int_equal(TG_OK, 0);
    assert_int_equal(TG_CONFIG, 1);
    assert_int_equal(TG_INPUT, 2);
    assert_int_equal(TG_REJECTED, 3);
    assert_int_equal(TG_TOKEN_INVALID, 4);
    assert_int_equal(TG_FORBIDDEN, 5);
    assert_int_equal(TG_NOT_FOUND, 6);
    assert_int_equal(TG_IDENTITY, 7);
    assert_int_equal(TG_RATE_LIMITED, 8);
    assert_int_equal(TG_UNAVAILABLE, 9);
    assert_int_equal(TG_TIMEOUT, 10);
    assert_int_equal(TG_TLS, 11);
    assert_int_equal(TG_PROTOCOL, 12);
    assert_int_equal(TG_NOMEM, 13);
    assert_int_equal(TG_VALIDATION, 14);
    assert_int_equal(TG_INTERNAL, 15);
    assert_int_equal(TG_ERR_MAX, 16);
}

/* ---------------------------------------------------------------------- */
/* Diag                                                                   */
/* ---------------------------------------------------------------------- */

static void
diag_clear_resets_everything(void **state)
{
    tg_diag_t d;

    (void) state;
    memset(&d, 0x5a, sizeof(d));
    tg_diag_clear(&d);
    assert_string_equal(d.message, "");
    assert_int_equal(d.http_status, 0);
    assert_int_equal(d.retry_after, -1);
    assert_int_equal(d.n_fields, 0);
    assert_string_equal(d.fields[0].field, "");
    tg_diag_clear(NULL);
}

static void
diag_first_error_wins_until_cleared(void **state)
{
    tg_diag_t d;

    (void) state;
    tg_diag_clear(&d);
    assert_int_equal(tg__fail(&d, TG_TIMEOUT, "first %d", 1), TG_TIMEOUT);
    assert_int_equal(tg__fail(&d, TG_CONFIG, "second"), TG_CONFIG);
    assert_string_equal(d.message, "first 1");
    tg_diag_clear(&d);
    assert_int_equal(tg__fail(&d, TG_CONFIG, "second"), TG_CONFIG);
    assert_string_equal(d.message, "second");
    /* No diag: the code still comes back. */
    assert_int_equal(tg__fail(NULL, TG_TLS, "x"), TG_TLS);
}

static void
diag_empty_message_falls_back_to_strerror(void **state)
{
    tg_diag_t d;

    (void) state;
    tg_diag_clear(&d);
    assert_int_equal(tg__fail(&d, TG_TIMEOUT, "%s", ""), TG_TIMEOUT);
    assert_string_equal(d.message, "timed out");
}

static void
diag_long_message_is_cut_and_terminated(void **state)
{
    char big[2000];
    tg_diag_t d;

    (void) state;
    memset(big, 'm', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    tg_diag_clear(&d);
    tg__fail(&d, TG_PROTOCOL, "%s", big);
    assert_int_equal(strlen(d.message), sizeof(d.message) - 1);
}

/* ---------------------------------------------------------------------- */
/* Sanitize                                                               */
/* ---------------------------------------------------------------------- */

static void
sanitize_replaces_control_and_non_ascii_bytes(void **state)
{
    static const char in[] = "a\r\nb\x1b[31mc\x7f\xc3\xa9\td\0e";
    char out[64];

    (void) state;
    tg__sanitize(out, sizeof(out), in, sizeof(in) - 1);
    assert_string_equal(out, "a??b?[31mc????d?e");
}

static void
sanitize_cuts_with_ellipsis(void **state)
{
    char out[8];

    (void) state;
    tg__sanitize(out, sizeof(out), "abcdefghij", 10);
    assert_string_equal(out, "abcd...");
    /* An exact fit is not cut. */
    tg__sanitize(out, sizeof(out), "abcdefg", 7);
    assert_string_equal(out, "abcdefg");
    /* Only len bytes are read. */
    tg__sanitize(out, sizeof(out), "abcdefghij", 3);
    assert_string_equal(out, "abc");
    tg__sanitize(out, 1, "abc", 3);
    assert_string_equal(out, "");
    tg__sanitize(out, sizeof(out), NULL, 3);
    assert_string_equal(out, "");
}

/* ---------------------------------------------------------------------- */
/* Fingerprints                                                           */
/* ---------------------------------------------------------------------- */

static void
fingerprint_is_the_sha256_prefix(void **state)
{
    char fp[TG_FINGERPRINT_SIZE], fp2[TG_FINGERPRINT_SIZE];

    (void) state;
    /* SHA-256("abc") = ba7816bf 8f01cfea ... (FIPS 180-2 example). */
    tg_fingerprint("abc", 3, fp);
    assert_string_equal(fp, "ba7816bf");
    assert_int_equal(strlen(fp), 8);
    /* The length is what counts, not the NUL. */
    tg_fingerprint("abcdef", 3, fp2);
    assert_string_equal(fp2, "ba7816bf");
    /* SHA-256("") = e3b0c442 ... */
    tg_fingerprint("", 0, fp);
    assert_string_equal(fp, "e3b0c442");
    tg_fingerprint("abd", 3, fp2);
    assert_string_not_equal(fp2, "ba7816bf");
    tg_fingerprint(NULL, 3, fp);
    assert_string_equal(fp, "????????");
}

/* ---------------------------------------------------------------------- */
/* Token and credential checks                                            */
/* ---------------------------------------------------------------------- */

typedef struct check_case {
    const char *what;
    const char *input;
    tg_err_t expect;
} check_case_t;

/* "Zq9" marks each input, to check that no message quotes it. */
static const check_case_t token_cases[] = {
    {"plain", "Zq9abcDEF012", TG_OK},
    {"every token character", "Zq9AZaz09-._~+/", TG_OK},
    {"trailing =", "Zq9abc=", TG_OK},
    {"trailing ==", "Zq9abc==", TG_OK},
    {"= in the middle", "Zq9ab=c", TG_INPUT},
    {"= only", "=", TG_INPUT},
    {"leading =", "=Zq9abc", TG_INPUT},
    {"empty", "", TG_INPUT},
    {"CR", "Zq9abc\rdef", TG_INPUT},
    {"LF", "Zq9abc\ndef", TG_INPUT},
    {"CRLF header injection", "Zq9abc\r\nX-Admin: 1", TG_INPUT},
    {"space", "Zq9abc def", TG_INPUT},
    {"tab", "Zq9abc\tdef", TG_INPUT},
    {"colon (client:secret form)", "Zq9abc:def", TG_INPUT},
    {"double quote", "Zq9abc\"def", TG_INPUT},
    {"comma", "Zq9abc,def", TG_INPUT},
    {"backslash", "Zq9abc\\def", TG_INPUT},
    {"DEL", "Zq9abc\x7f", TG_INPUT},
    {"ESC", "Zq9abc\x1b[0m", TG_INPUT},
    {"non-ASCII", "Zq9abc\xc3\xa9", TG_INPUT},
    {"sshd fake password", "\b\n\r\177INCORRECT", TG_INPUT},
};

static void
token_check_accepts_b64token_only(void **state)
{
    size_t i;

    (void) state;
    for (i = 0; i < sizeof(token_cases) / sizeof(token_cases[0]); i++) {
        const check_case_t *c = &token_cases[i];
        tg_diag_t d;
        tg_err_t err;

        tg_diag_clear(&d);
        err = tg_token_check(c->input, &d);
        if (err != c->expect) {
            fail_msg("case \"%s\": got %s (%s)", c->what, tg_err_name(err),
                     d.message);
        }
        if (err == TG_OK) {
            assert_string_equal(d.message, "");
        } else {
            assert_true(d.message[0] != '\0');
            assert_null(strstr(d.message, "Zq9"));
            assert_null(strstr(d.message, "INCORRECT"));
        }
    }
    assert_int_equal(tg_token_check(NULL, NULL), TG_INPUT);
}

static void
token_check_stops_at_nul(void **state)
{
    static const char buf[] = "Zq9abc\0\r\nX: y";
    tg_diag_t d;

    (void) state;
    /* A C string ends at its NUL: what follows is never sent. */
    tg_diag_clear(&d);
    assert_int_equal(tg_token_check(buf, &d), TG_OK);
}

static void
token_check_length_limit(void **state)
{
    char *tok = malloc(TG_TOKEN_MAX + 2);
    tg_diag_t d;

    (void) state;
    memset(tok, 'a', TG_TOKEN_MAX + 1);
    tok[TG_TOKEN_MAX] = '\0';
    tg_diag_clear(&d);
    assert_int_equal(tg_token_check(tok, &d), TG_OK);
    tok[TG_TOKEN_MAX] = 'a';
    tok[TG_TOKEN_MAX + 1] = '\0';
    assert_int_equal(tg_token_check(tok, &d), TG_INPUT);
    assert_contains(d.message, "longer than 4096 bytes");
    assert_null(strstr(d.message, "aaaa"));
    free(tok);
}

static void
token_check_one_megabyte_is_refused(void **state)
{
    size_t n = 1024 * 1024;
    char *tok = malloc(n + 1);
    tg_diag_t d;

    (void) state;
    memset(tok, 'a', n);
    tok[n] = '\0';
    tg_diag_clear(&d);
    assert_int_equal(tg_token_check(tok, &d), TG_INPUT);
    free(tok);
}

static const check_case_t cred_cases[] = {
    {"plain", "Zq9-client.id_01", TG_OK},
    {"printable punctuation", "Zq9!#$%&'()*+,./:;<=>?@[]^`{|}~", TG_OK},
    {"empty", "", TG_INPUT},
    {"space", "Zq9 x", TG_INPUT},
    {"tab", "Zq9\tx", TG_INPUT},
    {"CR", "Zq9\rx", TG_INPUT},
    {"LF", "Zq9\nx", TG_INPUT},
    {"ESC", "Zq9\x1bx", TG_INPUT},
    {"DEL", "Zq9\x7fx", TG_INPUT},
    {"sshd fake password", "\b\n\r\177INCORRECT", TG_INPUT},
};

static void
credential_check_refuses_control_and_space(void **state)
{
    size_t i;

    (void) state;
    for (i = 0; i < sizeof(cred_cases) / sizeof(cred_cases[0]); i++) {
        const check_case_t *c = &cred_cases[i];
        tg_diag_t d;
        tg_err_t err;

        tg_diag_clear(&d);
        err = tg_credential_check(c->input, "client secret", &d);
        if (err != c->expect) {
            fail_msg("case \"%s\": got %s (%s)", c->what, tg_err_name(err),
                     d.message);
        }
        if (err != TG_OK) {
            assert_contains(d.message, "client secret");
            assert_null(strstr(d.message, "Zq9"));
            assert_null(strstr(d.message, "INCORRECT"));
        }
    }
    assert_int_equal(tg_credential_check(NULL, "client id", NULL), TG_INPUT);
}

static void
credential_check_length_limit(void **state)
{
    char *v = malloc(TG_SECRET_MAX + 2);
    tg_diag_t d;

    (void) state;
    memset(v, 's', TG_SECRET_MAX + 1);
    v[TG_SECRET_MAX] = '\0';
    tg_diag_clear(&d);
    assert_int_equal(tg_credential_check(v, "client secret", &d), TG_OK);
    v[TG_SECRET_MAX] = 's';
    v[TG_SECRET_MAX + 1] = '\0';
    assert_int_equal(tg_credential_check(v, "client secret", &d), TG_INPUT);
    assert_contains(d.message, "the client secret is longer than 1024 bytes");
    assert_null(strstr(d.message, "ssss"));
    free(v);
}

/* ---------------------------------------------------------------------- */
/* Secrets and clearing                                                   */
/* ---------------------------------------------------------------------- */

static void
secret_dup_copies_and_free_accepts_null(void **state)
{
    char src[] = "s3cret";
    char *s = tg_secret_dup(src);

    (void) state;
    assert_non_null(s);
    assert_string_equal(s, "s3cret");
    assert_true(s != src);
    tg_secret_free(s);
    s = tg_secret_dup(NULL);
    assert_string_equal(s, "");
    tg_secret_free(s);
    tg_secret_free(NULL);
    tg_secret_free_len(NULL, 16);
    s = malloc(16);
    memset(s, 'x', 16);
    tg_secret_free_len(s, 16);
}

static void
request_clear_frees_and_zeroes_and_is_idempotent(void **state)
{
    tg_request_t req;

    (void) state;
    memset(&req, 0, sizeof(req));
    req.method = "POST";
    req.url = strdup("https://x/login");
    req.authorization = strdup("Bearer Zq9secret");
    req.content_type = "application/json";
    req.accept = "application/json";
    req.body = strdup("{\"secret\":\"Zq9\"}");
    req.body_len = strlen(req.body);
    tg_request_clear(&req);
    assert_null(req.method);
    assert_null(req.url);
    assert_null(req.authorization);
    assert_null(req.content_type);
    assert_null(req.accept);
    assert_null(req.body);
    assert_int_equal(req.body_len, 0);
    tg_request_clear(&req);
}

static void
token_credentials_session_clear_leave_nothing(void **state)
{
    tg_token_t tok;
    tg_credentials_t cr;
    tg_session_t se;

    (void) state;
    tok.value = strdup("Zq9token");
    tok.expires_at = 1234;
    tg_token_clear(&tok);
    assert_null(tok.value);
    assert_int_equal(tok.expires_at, 0);
    tg_token_clear(&tok);

    cr.client_id = strdup("cid");
    cr.secret = strdup("Zq9secret");
    cr.created_ms = 5;
    cr.credentials_id = 6;
    tg_credentials_clear(&cr);
    assert_null(cr.client_id);
    assert_null(cr.secret);
    tg_credentials_clear(&cr);

    se.workspace_id = strdup("dev");
    se.sudo_user_id = strdup("7");
    tg_session_clear(&se);
    assert_null(se.workspace_id);
    assert_null(se.sudo_user_id);
    tg_session_clear(&se);
}

/* ---------------------------------------------------------------------- */
/* The CURLcode map (curl_error.c): one fault, one error, every front end */
/* ---------------------------------------------------------------------- */

/* One failed transfer as a transport sees it, and the error it must be. */
struct curl_case {
    const char *what;
    CURLcode rc;
    long status; /* 0: no status line arrived */
    int sent;    /* the request went out */
    int body_overflow, header_overflow;
    int https;
    const char *errbuf;
    tg_err_t want;
    const char *says; /* in the message */
};

static const struct curl_case curl_cases[] = {
    {"refused", CURLE_COULDNT_CONNECT, 0, 0, 0, 0, 0, "", TG_UNAVAILABLE,
     "cannot connect"},
    {"no such host", CURLE_COULDNT_RESOLVE_HOST, 0, 0, 0, 0, 0, "",
     TG_UNAVAILABLE, "cannot resolve"},
    {"closed without an answer", CURLE_GOT_NOTHING, 0, 1, 0, 0, 0, "",
     TG_UNAVAILABLE, "without answering"},
    {"reset before any answer", CURLE_RECV_ERROR, 0, 1, 0, 0, 0,
     "Connection reset by peer", TG_UNAVAILABLE, "before an answer"},
    {"reset mid-answer", CURLE_RECV_ERROR, 200, 1, 0, 0, 0,
     "Connection reset by peer", TG_PROTOCOL, "while reading"},
    {"connect timeout", CURLE_OPERATION_TIMEDOUT, 0, 0, 0, 0, 0, "", TG_TIMEOUT,
     "could not connect within 2.0 s"},
    {"answer timeout", CURLE_OPERATION_TIMEDOUT, 0, 1, 0, 0, 0, "", TG_TIMEOUT,
     "no answer within 5.0 s"},
    {"bad certificate", CURLE_PEER_FAILED_VERIFICATION, 0, 0, 0, 0, 1, "",
     TG_TLS, "TLS failure"},
    {"TLS alert after the handshake", CURLE_RECV_ERROR, 0, 1, 0, 0, 1,
     "OpenSSL SSL_read: tlsv13 alert certificate required", TG_TLS,
     "TLS failure"},
    {"truncated body", CURLE_PARTIAL_FILE, 200, 1, 0, 0, 0, "", TG_PROTOCOL,
     "truncated"},
    {"oversize, known length", CURLE_FILESIZE_EXCEEDED, 200, 1, 0, 0, 0, "",
     TG_PROTOCOL, "max_response_bytes (65536)"},
    {"oversize, unknown length", CURLE_WRITE_ERROR, 200, 1, 1, 0, 0, "",
     TG_PROTOCOL, "max_response_bytes (65536)"},
    {"headers over our caps", CURLE_WRITE_ERROR, 200, 1, 0, 1, 0, "",
     TG_PROTOCOL, "headers too large (more than 16384 bytes or 100 lines)"},
    {"our own allocation failed", CURLE_WRITE_ERROR, 200, 1, 0, 0, 0, "",
     TG_NOMEM, "out of memory"},
    {"header line over libcurl's limit", CURLE_OUT_OF_MEMORY, 200, 1, 0, 0, 0,
     "Avoided giant realloc for header (max is 102400)!", TG_PROTOCOL,
     "larger than libcurl accepts"},
    {"out of memory before any answer", CURLE_OUT_OF_MEMORY, 0, 0, 0, 0, 0, "",
     TG_NOMEM, "out of memory"},
    {"malformed status line", CURLE_WEIRD_SERVER_REPLY, 0, 1, 0, 0, 0, "",
     TG_PROTOCOL, "malformed answer"},
    {"file:// redirect target", CURLE_UNSUPPORTED_PROTOCOL, 0, 0, 0, 0, 0, "",
     TG_CONFIG, "protocol not allowed"},
    {"anything else", CURLE_TOO_MANY_REDIRECTS, 0, 1, 0, 0, 0, "",
     TG_UNAVAILABLE, "redirects"},
};

static void
curl_errors_map_to_one_error_per_fault(void **state)
{
    size_t i;

    (void) state;
    for (i = 0; i < sizeof(curl_cases) / sizeof(curl_cases[0]); i++) {
        const struct curl_case *c = &curl_cases[i];
        tg__curl_result_t res;
        tg_diag_t diag;
        tg_err_t err;

        memset(&res, 0, sizeof(res));
        res.rc = c->rc;
        res.errbuf = c->errbuf;
        res.status = c->status;
        res.sent = c->sent;
        res.https = c->https;
        res.body_overflow = c->body_overflow;
        res.header_overflow = c->header_overflow;
        res.body_max = 65536;
        res.header_bytes_max = 16384;
        res.header_lines_max = 100;
        res.connect_timeout_ms = 2000;
        res.timeout_ms = 5000;
        tg_diag_clear(&diag);
        err = tg__curl_error(&res, &diag);
        if (err != c->want) {
            fail_msg("%s: %s, want %s (%s)", c->what, tg_err_name(err),
                     tg_err_name(c->want), diag.message);
        }
        assert_contains(diag.message, c->says);
    }
}

/* curl's text may quote the server: control bytes never reach a log. */
static void
curl_error_message_is_sanitized_and_diag_may_be_null(void **state)
{
    tg__curl_result_t res;
    tg_diag_t diag;

    (void) state;
    memset(&res, 0, sizeof(res));
    res.rc = CURLE_WEIRD_SERVER_REPLY;
    res.errbuf = "bad\r\nX-Injected: 1\x1b[31m";
    tg_diag_clear(&diag);
    assert_int_equal(tg__curl_error(&res, &diag), TG_PROTOCOL);
    assert_null(strchr(diag.message, '\r'));
    assert_null(strchr(diag.message, '\n'));
    assert_null(strchr(diag.message, '\x1b'));
    assert_int_equal(tg__curl_error(&res, NULL), TG_PROTOCOL);
}

/* ---------------------------------------------------------------------- */
/* The curl layer (curl.c): what it sends, and that it wipes it            */
/* ---------------------------------------------------------------------- */

static void
curl_layer_builds_header_lines_and_wipes_the_token(void **state)
{
    tg__curl_t c;
    tg_config_t *cfg;
    tg_request_t req;
    tg_diag_t diag;
    char url[] = "https://bi.example/api/user";
    char auth[] = "Bearer abc.def";
    size_t i;

    (void) state;
    cfg = tg_config_new();
    assert_non_null(cfg);
    memset(&c, 0, sizeof(c));
    c.cfg = cfg;
    c.connect_timeout_ms = 1000;
    c.timeout_ms = 2000;
    c.easy = curl_easy_init();
    assert_non_null(c.easy);
    tg_diag_clear(&diag);
    assert_int_equal(tg__curl_setup(&c, &diag), TG_OK);
    assert_int_equal(c.body_max, (size_t) cfg->max_response_bytes);

    memset(&req, 0, sizeof(req));
    req.method = "GET";
    req.url = url;
    req.authorization = auth;
    assert_int_equal(tg__curl_request(&c, &req, &diag), TG_OK);
    /* "Expect:" first (no 100-continue), the default Accept, no
     * Content-Type without one, then the token. */
    assert_string_equal(c.lines[0].data, "Expect:");
    assert_string_equal(c.lines[1].data, "Accept: */*");
    assert_string_equal(c.lines[2].data, "Authorization: Bearer abc.def");
    assert_null(c.lines[2].next);

    assert_int_equal(tg__curl_end(&c, 0), 0);
    for (i = 0; i < sizeof(c.authorization); i++) {
        assert_int_equal(c.authorization[i], 0);
    }

    tg__curl_free(&c);
    assert_null(c.easy);
    tg_config_free(cfg);
}

static void
curl_layer_refuses_a_header_line_longer_than_its_buffer(void **state)
{
    tg__curl_t c;
    tg_config_t *cfg;
    tg_request_t req;
    tg_diag_t diag;
    char url[] = "https://bi.example/api/user";
    char type[TG__CURL_TYPE_LINE_MAX + 1];

    (void) state;
    cfg = tg_config_new();
    assert_non_null(cfg);
    memset(&c, 0, sizeof(c));
    c.cfg = cfg;
    c.easy = curl_easy_init();
    assert_non_null(c.easy);
    memset(type, 'a', sizeof(type) - 1);
    type[sizeof(type) - 1] = '\0';
    memset(&req, 0, sizeof(req));
    req.method = "GET";
    req.url = url;
    req.accept = type;
    tg_diag_clear(&diag);
    assert_int_equal(tg__curl_request(&c, &req, &diag), TG_INPUT);
    assert_contains(diag.message, "the Accept header is too long");
    tg__curl_free(&c);
    tg_config_free(cfg);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            every_error_has_a_distinct_prefixed_name_and_a_message),
        cmocka_unit_test(out_of_range_errors_never_give_null),
        cmocka_unit_test(error_values_are_the_cli_exit_codes),
        cmocka_unit_test(diag_clear_resets_everything),
        cmocka_unit_test(diag_first_error_wins_until_cleared),
        cmocka_unit_test(diag_empty_message_falls_back_to_strerror),
        cmocka_unit_test(diag_long_message_is_cut_and_terminated),
        cmocka_unit_test(sanitize_replaces_control_and_non_ascii_bytes),
        cmocka_unit_test(sanitize_cuts_with_ellipsis),
        cmocka_unit_test(fingerprint_is_the_sha256_prefix),
        cmocka_unit_test(token_check_accepts_b64token_only),
        cmocka_unit_test(token_check_stops_at_nul),
        cmocka_unit_test(token_check_length_limit),
        cmocka_unit_test(token_check_one_megabyte_is_refused),
        cmocka_unit_test(credential_check_refuses_control_and_space),
        cmocka_unit_test(credential_check_length_limit),
        cmocka_unit_test(secret_dup_copies_and_free_accepts_null),
        cmocka_unit_test(request_clear_frees_and_zeroes_and_is_idempotent),
        cmocka_unit_test(token_credentials_session_clear_leave_nothing),
        cmocka_unit_test(curl_errors_map_to_one_error_per_fault),
        cmocka_unit_test(curl_error_message_is_sanitized_and_diag_may_be_null),
        cmocka_unit_test(curl_layer_builds_header_lines_and_wipes_the_token),
        cmocka_unit_test(
            curl_layer_refuses_a_header_line_longer_than_its_buffer),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
