/* SPDX-License-Identifier: MIT */
/*
 * output.c - what the command line prints: human text by default (results
 * on stdout, errors on stderr as "tokengate: COMMAND: MESSAGE"), or one
 * JSON object on stdout with --json, for success and failure alike.
 * Also the pieces of output several commands share: a user's short name,
 * the fields of a new token and --print-token (login, sudo), and the
 * refusal of the other API flavor's features.
 *
 * Everything shown that comes from outside (the server, files, the
 * environment) goes through cli_sanitize() first.
 */
#include "cli.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A human line longer than this is cut (messages, one identity field). */
#define TG_CLI_LINE_MAX 2048

static void cli_vsay(FILE *fp, const char *fmt, va_list ap) TG_CLI_PRINTF(2, 0);
static void cli_compose_message(tg_cli_t *cli, tg_err_t err);
static int cli_contains(const char *haystack, const char *needle);
static json_t *cli_json_string(const char *value);
static json_t *cli_error_object(tg_cli_t *cli);
static size_t cli_utf8_char(const unsigned char *s, size_t len, uint32_t *cp);
static int cli_codepoint_unsafe(uint32_t cp);

/* ---------------------------------------------------------------------- */
/* The result object                                                      */
/* ---------------------------------------------------------------------- */

void
cli_out_init(tg_cli_t *cli)
{
    cli->out = json_object();
    cli->exit_code = 0;
    cli->failed = 0;
    tg_diag_clear(&cli->diag);
}

void
cli_out_free(tg_cli_t *cli)
{
    json_decref(cli->out);
    cli->out = NULL;
}

static void
cli_vsay(FILE *fp, const char *fmt, va_list ap)
{
    vfprintf(fp, fmt, ap);
    fputc('\n', fp);
}

void
cli_say(tg_cli_t *cli, const char *fmt, ...)
{
    va_list ap;

    if (cli->json || cli->quiet) {
        return;
    }
    va_start(ap, fmt);
    cli_vsay(cli->human_to_stderr ? stderr : stdout, fmt, ap);
    va_end(ap);
}

void
cli_warn(tg_cli_t *cli, const char *fmt, ...)
{
    char line[TG_CLI_LINE_MAX];
    json_t *list;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (!cli->json) {
        fprintf(stderr, "tokengate: %s: warning: %s\n",
                cli->command != NULL ? cli->command : "", line);
        return;
    }
    if (cli->out == NULL) {
        return;
    }
    list = json_object_get(cli->out, "warnings");
    if (list == NULL) {
        list = json_array();
        if (json_object_set_new(cli->out, "warnings", list) != 0) {
            return;
        }
    }
    (void) json_array_append_new(list, cli_json_string(line));
}

/* A sanitized JSON string (JSON null for NULL). */
static json_t *
cli_json_string(const char *value)
{
    json_t *s;
    char *clean;
    size_t len;

    if (value == NULL) {
        return json_null();
    }
    len = strlen(value);
    clean = malloc(len + 1);
    if (clean == NULL) {
        return json_null();
    }
    /* Replacing never makes the text longer, so nothing is cut. */
    cli_sanitize(clean, len + 1, value);
    s = json_string(clean);
    tg_secret_free(clean);
    return s != NULL ? s : json_null();
}

void
cli_set_str(tg_cli_t *cli, const char *key, const char *value)
{
    if (cli->out != NULL) {
        (void) json_object_set_new(cli->out, key, cli_json_string(value));
    }
}

void
cli_set_int(tg_cli_t *cli, const char *key, long long value)
{
    if (cli->out != NULL) {
        (void) json_object_set_new(cli->out, key,
                                   json_integer((json_int_t) value));
    }
}

void
cli_set_bool(tg_cli_t *cli, const char *key, int value)
{
    if (cli->out != NULL) {
        (void) json_object_set_new(cli->out, key, json_boolean(value));
    }
}

void
cli_set_json(tg_cli_t *cli, const char *key, json_t *value)
{
    if (cli->out != NULL && value != NULL) {
        (void) json_object_set_new(cli->out, key, value);
    } else {
        json_decref(value);
    }
}

void
cli_field(tg_cli_t *cli, const char *key, const char *label, const char *value)
{
    char clean[TG_CLI_LINE_MAX];
    char lab[64];

    if (key != NULL) {
        cli_set_str(cli, key, value);
    }
    cli_sanitize(clean, sizeof(clean), value != NULL ? value : "");
    snprintf(lab, sizeof(lab), "%s:", label);
    cli_say(cli, "%-14s %s", lab, clean);
}

/* ---------------------------------------------------------------------- */
/* Errors                                                                 */
/* ---------------------------------------------------------------------- */

static int
cli_contains(const char *haystack, const char *needle)
{
    return strcasestr(haystack, needle) != NULL;
}

/* The human message: the library's detail, prefixed with the kind of
 * error when the detail does not say it, and the HTTP status when there
 * was one. */
static void
cli_compose_message(tg_cli_t *cli, tg_err_t err)
{
    const char *kind = tg_strerror(err);
    const char *detail =
        cli->diag.message[0] != '\0' ? cli->diag.message : kind;
    char text[sizeof(cli->message)];
    char num[32];
    size_t n;

    if (err == TG_RATE_LIMITED) {
        if (cli->diag.retry_after >= 0) {
            snprintf(text, sizeof(text),
                     "rate limited by the server; retry after %ld s",
                     cli->diag.retry_after);
        } else {
            snprintf(text, sizeof(text),
                     "rate limited by the server; retry later");
        }
        cli_sanitize(cli->message, sizeof(cli->message), text);
        return;
    }
    /* "bad input: ..." says nothing the detail does not. */
    if (err == TG_INPUT || cli_contains(detail, kind)) {
        snprintf(text, sizeof(text), "%s", detail);
    } else {
        snprintf(text, sizeof(text), "%s: %s", kind, detail);
    }
    n = strlen(text);
    if (cli->diag.http_status != 0 && n < sizeof(text)) {
        snprintf(num, sizeof(num), "%ld", cli->diag.http_status);
        if (cli->diag.http_status >= 300 && cli->diag.http_status < 400 &&
            !cli_contains(text, "redirect")) {
            snprintf(text + n, sizeof(text) - n,
                     " (HTTP %ld redirect, not followed)",
                     cli->diag.http_status);
        } else if (strstr(text, num) == NULL) {
            snprintf(text + n, sizeof(text) - n, " (HTTP %ld)",
                     cli->diag.http_status);
        }
    }
    /* A 503 with Retry-After: the wait the server asked for. */
    n = strlen(text);
    if (cli->diag.http_status == 503 && cli->diag.retry_after > 0 &&
        n < sizeof(text)) {
        snprintf(text + n, sizeof(text) - n, "; server busy: retry in %ld s",
                 cli->diag.retry_after);
    }
    cli_sanitize(cli->message, sizeof(cli->message), text);
}

int
cli_fail(tg_cli_t *cli, tg_err_t err, const tg_diag_t *diag)
{
    if (cli->failed) {
        return cli->exit_code;
    }
    if (err == TG_OK) {
        err = TG_INTERNAL;
    }
    cli->failed = 1;
    cli->exit_code = (int) err;
    cli->error_name = tg_err_name(err);
    if (diag != NULL) {
        cli->diag = *diag;
    } else {
        tg_diag_clear(&cli->diag);
    }
    cli_compose_message(cli, err);
    return cli->exit_code;
}

int
cli_failf(tg_cli_t *cli, tg_err_t err, const char *fmt, ...)
{
    tg_diag_t diag;
    va_list ap;

    tg_diag_clear(&diag);
    va_start(ap, fmt);
    vsnprintf(diag.message, sizeof(diag.message), fmt, ap);
    va_end(ap);
    return cli_fail(cli, err, &diag);
}

int
cli_usage(tg_cli_t *cli, const char *fmt, ...)
{
    char text[sizeof(cli->message)];
    va_list ap;

    if (cli->failed) {
        return cli->exit_code;
    }
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    cli->failed = 1;
    cli->exit_code = TG_EXIT_USAGE;
    cli->error_name = "TG_USAGE";
    tg_diag_clear(&cli->diag);
    cli_sanitize(cli->message, sizeof(cli->message), text);
    return cli->exit_code;
}

static json_t *
cli_error_object(tg_cli_t *cli)
{
    json_t *obj = json_object(), *fields = json_array(), *f;
    int i;

    if (obj == NULL || fields == NULL) {
        json_decref(obj);
        json_decref(fields);
        return NULL;
    }
    for (i = 0; i < cli->diag.n_fields && i < TG_FIELD_ERRORS_MAX; i++) {
        f = json_object();
        if (f == NULL) {
            continue;
        }
        json_object_set_new(f, "field",
                            cli_json_string(cli->diag.fields[i].field));
        json_object_set_new(f, "code",
                            cli_json_string(cli->diag.fields[i].code));
        json_object_set_new(f, "message",
                            cli_json_string(cli->diag.fields[i].message));
        json_array_append_new(fields, f);
    }
    json_object_set_new(obj, "error", json_string(cli->error_name));
    json_object_set_new(obj, "message", cli_json_string(cli->message));
    json_object_set_new(obj, "http_status",
                        json_integer(cli->diag.http_status));
    json_object_set_new(obj, "retry_after",
                        json_integer(cli->diag.retry_after));
    json_object_set_new(obj, "fields", fields);
    return obj;
}

int
cli_finish(tg_cli_t *cli, int rc)
{
    json_t *doc, *err;
    int i;

    if (rc != 0 && !cli->failed) {
        (void) cli_fail(cli, rc < TG_ERR_MAX ? (tg_err_t) rc : TG_INTERNAL,
                        NULL);
    }
    if (cli->failed) {
        rc = cli->exit_code;
    }
    if (cli->json) {
        doc = json_object();
        if (doc != NULL) {
            json_object_set_new(doc, "ok", json_boolean(!cli->failed));
            if (cli->command != NULL) {
                json_object_set_new(doc, "command",
                                    cli_json_string(cli->command));
            }
            if (cli->failed) {
                err = cli_error_object(cli);
                if (err != NULL) {
                    json_object_update(doc, err);
                    json_decref(err);
                }
            }
            if (cli->out != NULL) {
                /* Result fields never replace the error fields. */
                json_object_update_missing(doc, cli->out);
            }
            json_dumpf(doc, stdout, JSON_COMPACT | JSON_ENSURE_ASCII);
            fputc('\n', stdout);
            json_decref(doc);
        } else {
            fputs("{\"ok\":false,\"error\":\"TG_NOMEM\"}\n", stdout);
            rc = TG_NOMEM;
        }
    } else if (cli->failed) {
        if (cli->command != NULL) {
            fprintf(stderr, "tokengate: %s: %s (err=%s)\n", cli->command,
                    cli->message, cli->error_name);
        } else {
            fprintf(stderr, "tokengate: %s (err=%s)\n", cli->message,
                    cli->error_name);
        }
        for (i = 0; i < cli->diag.n_fields && i < TG_FIELD_ERRORS_MAX; i++) {
            char f[80], c[80], m[200];
            cli_sanitize(f, sizeof(f), cli->diag.fields[i].field);
            cli_sanitize(c, sizeof(c), cli->diag.fields[i].code);
            cli_sanitize(m, sizeof(m), cli->diag.fields[i].message);
            fprintf(stderr, "  %s: %s%s%s\n", f[0] != '\0' ? f : "(request)", c,
                    c[0] != '\0' && m[0] != '\0' ? ": " : "", m);
        }
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "tokengate: cannot write to standard output\n");
        if (rc == 0) {
            rc = TG_INTERNAL;
        }
    }
    return rc;
}

/* ---------------------------------------------------------------------- */
/* Text helpers                                                           */
/* ---------------------------------------------------------------------- */

/* Decode one UTF-8 character; 0 when the bytes are not valid UTF-8
 * (truncated, overlong, surrogate, beyond U+10FFFF). */
static size_t
cli_utf8_char(const unsigned char *s, size_t len, uint32_t *cp)
{
    size_t n, k;
    uint32_t v;

    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    if ((s[0] & 0xe0) == 0xc0) {
        n = 2;
        v = s[0] & 0x1f;
    } else if ((s[0] & 0xf0) == 0xe0) {
        n = 3;
        v = s[0] & 0x0f;
    } else if ((s[0] & 0xf8) == 0xf0) {
        n = 4;
        v = s[0] & 0x07;
    } else {
        return 0;
    }
    if (n > len) {
        return 0;
    }
    for (k = 1; k < n; k++) {
        if ((s[k] & 0xc0) != 0x80) {
            return 0;
        }
        v = (v << 6) | (s[k] & 0x3f);
    }
    if ((n == 2 && v < 0x80) || (n == 3 && v < 0x800) ||
        (n == 4 && (v < 0x10000 || v > 0x10ffff)) ||
        (v >= 0xd800 && v <= 0xdfff)) {
        return 0;
    }
    *cp = v;
    return n;
}

/* Characters that could move the cursor, recolor the terminal or reorder
 * what the user reads. */
static int
cli_codepoint_unsafe(uint32_t cp)
{
    return cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f) ||
           cp == 0x200e || cp == 0x200f || (cp >= 0x202a && cp <= 0x202e) ||
           (cp >= 0x2066 && cp <= 0x2069) || cp == 0xfeff;
}

void
cli_sanitize(char *dst, size_t size, const char *src)
{
    const unsigned char *s = (const unsigned char *) src;
    size_t len, i = 0, o = 0, n;
    uint32_t cp = 0;
    int cut = 0;

    if (size == 0) {
        return;
    }
    if (src == NULL) {
        dst[0] = '\0';
        return;
    }
    len = strlen(src);
    while (i < len) {
        n = cli_utf8_char(s + i, len - i, &cp);
        if (n == 0 || cli_codepoint_unsafe(cp)) {
            if (o + 1 > size - 1) {
                cut = 1;
                break;
            }
            dst[o++] = '?';
            i += n == 0 ? 1 : n;
            continue;
        }
        if (o + n > size - 1) {
            cut = 1;
            break;
        }
        memcpy(dst + o, s + i, n);
        o += n;
        i += n;
    }
    if (cut && size > 4) {
        /* Make room for "..." without splitting a character. */
        if (o > size - 4) {
            o = size - 4;
            while (o > 0 && ((unsigned char) dst[o] & 0xc0) == 0x80) {
                o--;
            }
        }
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = '\0';
}

const char *
cli_clean(char *buf, size_t size, const char *s)
{
    cli_sanitize(buf, size, s != NULL ? s : "");
    return buf;
}

/* An option as typed, without any "=value" (which could be a secret). */
void
cli_option_name(char *dst, size_t size, const char *arg)
{
    char name[128];
    size_t n = strcspn(arg, "=");

    if (n >= sizeof(name)) {
        n = sizeof(name) - 1;
    }
    memcpy(name, arg, n);
    name[n] = '\0';
    cli_sanitize(dst, size, name);
}

const char *
cli_time(time_t t, char buf[TG_CLI_TIME_SIZE])
{
    struct tm tm;

    if (t == 0 || gmtime_r(&t, &tm) == NULL ||
        strftime(buf, TG_CLI_TIME_SIZE, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0) {
        snprintf(buf, TG_CLI_TIME_SIZE, "unknown");
    }
    return buf;
}

const char *
cli_api_name(tg_api_t api)
{
    return api == TG_API_LOOKER ? "looker" : "insight";
}

/* The short name of a user for messages (not sanitized). */
const char *
cli_who(const tg_identity_t *id)
{
    if (id->name != NULL && id->name[0] != '\0') {
        return id->name;
    }
    if (id->display_name != NULL && id->display_name[0] != '\0') {
        return id->display_name;
    }
    return id->id != NULL ? id->id : "?";
}

/* The fields of a token just obtained (login, sudo): who it is for, its
 * fingerprint (also into fp) and its expiry. */
void
cli_token_result(tg_cli_t *cli, const tg_identity_t *id, const char *token,
                 time_t expires, char fp[TG_FINGERPRINT_SIZE])
{
    tg_fingerprint(token, strlen(token), fp);
    cli_set_str(cli, "user", cli_who(id));
    cli_set_str(cli, "id", id->id);
    cli_set_str(cli, "email", id->email);
    cli_set_str(cli, "fingerprint", fp);
    cli_set_int(cli, "expires_at", (long long) expires);
}

/* --print-token: the token alone on stdout (the human text went to
 * stderr), or "token" in the JSON object. */
void
cli_print_token(tg_cli_t *cli, const char *token)
{
    if (cli->json) {
        cli_set_str(cli, "token", token);
    } else {
        fputs(token, stdout);
        fputc('\n', stdout);
    }
}

/* A feature of the other API flavor than the configured one. */
int
cli_api_only(tg_cli_t *cli, const char *what_is)
{
    tg_api_t other =
        cli->cfg->api == TG_API_LOOKER ? TG_API_INSIGHT : TG_API_LOOKER;

    return cli_failf(cli, TG_INPUT,
                     "%s %s %s feature; the %s API has none "
                     "(api = %s)",
                     what_is, other == TG_API_INSIGHT ? "an" : "a",
                     cli_api_name(other), cli_api_name(cli->cfg->api),
                     cli_api_name(cli->cfg->api));
}
