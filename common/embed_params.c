/* SPDX-License-Identifier: MIT */
/*
 * embed_params.c - the parameters of a Looker signed embed URL
 * (api-spec.md C): their defaults and checks (what a URL may grant, and
 * that it fits), and the value text of each, produced once as compact JSON
 * from jansson.  Both ways of signing use it: embed.c signs locally, and
 * protocol.c asks the server (POST /embed/sso_url, B.6) after
 * tg_embed_params_check(); neither calls the other.
 */
#include "tokengate.h"
#include "tg_embed.h"
#include "tg_internal.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>

/* TG_EMBED_FIELD_MAX and TG_EMBED_PATH_MAX are public (tokengate.h). */
/* Entries of one list (permissions, models, group_ids, user_attributes). */
#define TG_EMBED_LIST_MAX 256
/* Characters of external_group_id: Looker names the group's folder
 * "Embed Shared Group " + the id, and folder names have 100 at most. */
#define TG_EMBED_GROUP_ID_CHARS_MAX 81
/* Characters of a nonce: Looker wants "less than 255". */
#define TG_EMBED_NONCE_CHARS_MAX 254
/* Bytes of a host: a 253-byte DNS name (or a bracketed IPv6 literal) and
 * ":65535". */
#define TG_EMBED_HOST_MAX 262
/* Bytes of the whole URL, signature included: servers commonly refuse a
 * request line above 8 KiB (nginx large_client_header_buffers). */
#define TG_EMBED_URL_MAX 8192
/* The signature's percent-encoding at worst ('+', '/', '=' take 3 bytes
 * each); the check counts this so that a URL it accepts always fits. */
#define TG_EMBED_SIG_PCT_MAX (3 * TG_EMBED_SIG_LEN)
/* Room for a quoted value in a message (sanitized, cut with "..."). */
#define TG_EMBED_QUOTE_MAX 48
/* Decimal digits of a 64-bit integer, sign and NUL. */
#define TG_EMBED_INT_TEXT_MAX 24

static const char *quote(char buf[TG_EMBED_QUOTE_MAX], const char *s);
static size_t utf8_chars(const char *s);
static tg_err_t check_text(const char *param, const char *s, int required,
                           tg_diag_t *diag);
static int is_loopback(const char *name, size_t len);
static int ends_in_number(const char *name, size_t len);
static void ipv6_text(const struct in6_addr *a, char out[INET6_ADDRSTRLEN]);
static tg_err_t check_port(const char *port, const char *scheme,
                           tg_diag_t *diag);
static tg_err_t check_host(const char *host, const char *scheme,
                           tg_diag_t *diag);
static tg_err_t check_embed_path(const char *path, tg_diag_t *diag);
static int permission_allowed(const char *name);
static tg_err_t check_list(const char *param, const char *const *items,
                           size_t n, int permissions, tg_diag_t *diag);
static tg_err_t check_attributes(const tg_embed_params_t *p, tg_diag_t *diag);
static tg_err_t string_value(const char *s, char **out, tg_diag_t *diag);
static tg_err_t list_value(const char *const *items, size_t n, char **out,
                           tg_diag_t *diag);
static tg_err_t attributes_value(const tg_embed_params_t *p, char **out,
                                 tg_diag_t *diag);
static tg_err_t int_value(long long v, char **out, tg_diag_t *diag);
static tg_err_t literal_value(const char *text, char **out, tg_diag_t *diag);

/* Indexed by tg_embed_field_t. */
const tg_embed_field_info_t tg__embed_fields[TG_EF_COUNT] = {
    [TG_EF_NONCE] = {"nonce", 1},
    [TG_EF_TIME] = {"time", 1},
    [TG_EF_SESSION_LENGTH] = {"session_length", 1},
    [TG_EF_EXTERNAL_USER_ID] = {"external_user_id", 1},
    [TG_EF_PERMISSIONS] = {"permissions", 1},
    [TG_EF_MODELS] = {"models", 1},
    [TG_EF_GROUP_IDS] = {"group_ids", 1},
    [TG_EF_EXTERNAL_GROUP_ID] = {"external_group_id", 1},
    [TG_EF_USER_ATTRIBUTES] = {"user_attributes", 1},
    [TG_EF_ACCESS_FILTERS] = {"access_filters", 1},
    [TG_EF_FIRST_NAME] = {"first_name", 0},
    [TG_EF_LAST_NAME] = {"last_name", 0},
    [TG_EF_USER_TIMEZONE] = {"user_timezone", 0},
    [TG_EF_FORCE_LOGOUT_LOGIN] = {"force_logout_login", 0},
};

/*
 * The permissions Looker supports for signed embedding: "Permissions that
 * are not on the following list are not supported for signed embedding"
 * (Looker documentation, "Signed embedding", section "Permissions",
 * https://cloud.google.com/looker/docs/signed-embedding, last updated
 * 2025-07-22).
 */
static const char *const tg_embed_permissions[] = {
    "access_data",
    "see_lookml_dashboards",
    "see_looks",
    "see_user_dashboards",
    "explore",
    "create_table_calculations",
    "create_custom_fields",
    "can_create_forecast",
    "save_content",
    "send_outgoing_webhook",
    "send_to_s3",
    "send_to_sftp",
    "schedule_look_emails",
    "schedule_external_look_emails",
    "send_to_integration",
    "create_alerts",
    "download_with_limit",
    "download_without_limit",
    "see_sql",
    "clear_cache_refresh",
    "see_drill_overlay",
    "manage_spaces",
    "embed_browse_spaces",
    "embed_save_shared_space",
    NULL,
};

/* ---------------------------------------------------------------------- */
/* Parameters                                                             */
/* ---------------------------------------------------------------------- */

void
tg_embed_params_init(tg_embed_params_t *p)
{
    if (p == NULL) {
        return;
    }
    memset(p, 0, sizeof(*p));
    p->session_length = TG_EMBED_SESSION_DEFAULT;
    p->force_logout_login = 1;
}

/* A caller's value for a message: sanitized and short. */
static const char *
quote(char buf[TG_EMBED_QUOTE_MAX], const char *s)
{
    tg__sanitize(buf, TG_EMBED_QUOTE_MAX, s, strlen(s));
    return buf;
}

/* Characters (code points) of a valid UTF-8 string. */
static size_t
utf8_chars(const char *s)
{
    size_t n = 0;

    for (; *s != '\0'; s++) {
        if (((unsigned char) *s & 0xc0) != 0x80) {
            n++;
        }
    }
    return n;
}

/*
 * A string we send: present when required, at most TG_EMBED_FIELD_MAX
 * bytes, strict UTF-8, and no control character (C0, DEL, or C1
 * U+0080..U+009F): they would reach a signing line and a browser.
 */
static tg_err_t
check_text(const char *param, const char *s, int required, tg_diag_t *diag)
{
    size_t len, i;

    if (s == NULL || (required && s[0] == '\0')) {
        return tg__fail(diag, TG_INPUT, "%s: empty", param);
    }
    len = strnlen(s, TG_EMBED_FIELD_MAX + 1);
    if (len > TG_EMBED_FIELD_MAX) {
        return tg__fail(diag, TG_INPUT, "%s: longer than %d bytes", param,
                        TG_EMBED_FIELD_MAX);
    }
    if (!tg__utf8_valid(s, len)) {
        return tg__fail(diag, TG_INPUT, "%s: not UTF-8", param);
    }
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char) s[i];
        if (c < 0x20 || c == 0x7f ||
            (c == 0xc2 && (unsigned char) s[i + 1] >= 0x80 &&
             (unsigned char) s[i + 1] <= 0x9f)) {
            return tg__fail(diag, TG_INPUT,
                            "%s: a control character at offset %zu", param, i);
        }
    }
    return TG_OK;
}

/* Is this host name (no port) a loopback one: localhost, 127.0.0.0/8 in
 * dotted-quad form, or [::1]? */
static int
is_loopback(const char *name, size_t len)
{
    char buf[INET_ADDRSTRLEN];
    struct in_addr a4;

    if (len == 9 && strncasecmp(name, "localhost", 9) == 0) {
        return 1;
    }
    if (len == 5 && memcmp(name, "[::1]", 5) == 0) {
        return 1;
    }
    if (len >= sizeof(buf)) {
        return 0;
    }
    memcpy(buf, name, len);
    buf[len] = '\0';
    return inet_pton(AF_INET, buf, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

/* ":PORT": 1 to 65535 without leading zeros, and not the scheme's default
 * (the browser leaves it out of the Host it sends, so line 1 would differ
 * from what the server signs). */
static tg_err_t
check_port(const char *port, const char *scheme, tg_diag_t *diag)
{
    long v = 0;
    size_t i;

    for (i = 0; port[i] != '\0'; i++) {
        if (port[i] < '0' || port[i] > '9' || i >= 5) {
            return tg__fail(diag, TG_INPUT,
                            "host: the port must be 1 to 65535");
        }
        v = v * 10 + (port[i] - '0');
    }
    if (i == 0 || port[0] == '0' || v > 65535) {
        return tg__fail(diag, TG_INPUT, "host: the port must be 1 to 65535");
    }
    if ((v == 443 && strcmp(scheme, "https") == 0) ||
        (v == 80 && strcmp(scheme, "http") == 0)) {
        return tg__fail(diag, TG_INPUT,
                        "host: leave out the default port %ld (browsers do, "
                        "and the signature covers the host as they send it)",
                        v);
    }
    return TG_OK;
}

/*
 * WHATWG URL's "ends in a number": a host whose last label is all digits,
 * or 0x and hex digits, is parsed by browsers as an IPv4 address (and sent
 * in dotted-quad form), not as a name.
 */
static int
ends_in_number(const char *name, size_t len)
{
    size_t start = len, i;

    while (start > 0 && name[start - 1] != '.') {
        start--;
    }
    if (start == len) {
        return 0;
    }
    if (len - start >= 2 && name[start] == '0' && name[start + 1] == 'x') {
        for (i = start + 2; i < len; i++) {
            if (!((name[i] >= '0' && name[i] <= '9') ||
                  (name[i] >= 'a' && name[i] <= 'f'))) {
                return 0;
            }
        }
        return 1;
    }
    for (i = start; i < len; i++) {
        if (name[i] < '0' || name[i] > '9') {
            return 0;
        }
    }
    return 1;
}

/*
 * An IPv6 address as browsers write it in Host (WHATWG URL "IPv6
 * serializer"): lower-case hex pieces without leading zeros, the first
 * longest run of two or more zero pieces as "::", never a dotted quad.
 */
static void
ipv6_text(const struct in6_addr *a, char out[INET6_ADDRSTRLEN])
{
    unsigned int piece[8];
    int i, run, best = -1, best_len = 1, ignore0 = 0;
    char *w = out;

    for (i = 0; i < 8; i++) {
        piece[i] =
            (unsigned int) a->s6_addr[2 * i] << 8 | a->s6_addr[2 * i + 1];
    }
    for (i = 0; i < 8; i++) {
        run = 0;
        while (i + run < 8 && piece[i + run] == 0) {
            run++;
        }
        if (run > best_len) {
            best = i;
            best_len = run;
        }
    }
    for (i = 0; i < 8; i++) {
        if (ignore0 && piece[i] == 0) {
            continue;
        }
        ignore0 = 0;
        if (i == best) {
            w += sprintf(w, "%s", i == 0 ? "::" : ":");
            ignore0 = 1;
            continue;
        }
        w += sprintf(w, "%x%s", piece[i], i != 7 ? ":" : "");
    }
    *w = '\0';
}

/*
 * HOST[:PORT] exactly as the browser sends it in Host: a lower-case DNS
 * name (letters, digits, '-', '_', '.', no empty label), a dotted-quad
 * IPv4 address, or a bracketed IPv6 literal in the browser's form.  No
 * scheme, user, path or query: it is the first signing line and the URL's
 * authority, so any other spelling of the same host (upper case, 0x7f.1,
 * [0:0::1]) would be signed as one text and verified as another.  http
 * only for a loopback host.
 */
static tg_err_t
check_host(const char *host, const char *scheme, tg_diag_t *diag)
{
    char buf[INET6_ADDRSTRLEN + 1], canon[INET6_ADDRSTRLEN];
    struct in6_addr a6;
    struct in_addr a4;
    const char *port = NULL;
    size_t len, name_len, i;

    if (host == NULL || host[0] == '\0') {
        return tg__fail(diag, TG_INPUT, "host: empty");
    }
    len = strnlen(host, TG_EMBED_HOST_MAX + 1);
    if (len > TG_EMBED_HOST_MAX) {
        return tg__fail(diag, TG_INPUT, "host: longer than %d bytes",
                        TG_EMBED_HOST_MAX);
    }
    if (strstr(host, "://") != NULL) {
        return tg__fail(diag, TG_INPUT,
                        "host: want HOST or HOST:PORT, without a scheme "
                        "(the scheme is its own parameter)");
    }
    if (host[0] == '[') {
        const char *end = strchr(host, ']');
        name_len = end != NULL ? (size_t) (end - host) + 1 : 0;
        if (end == NULL || name_len - 2 >= sizeof(buf) || name_len < 4) {
            return tg__fail(diag, TG_INPUT,
                            "host: a bad IPv6 literal (want [ADDRESS])");
        }
        memcpy(buf, host + 1, name_len - 2);
        buf[name_len - 2] = '\0';
        if (strspn(buf, "0123456789abcdefABCDEF:.") != name_len - 2 ||
            inet_pton(AF_INET6, buf, &a6) != 1) {
            return tg__fail(diag, TG_INPUT,
                            "host: a bad IPv6 literal (want [ADDRESS])");
        }
        ipv6_text(&a6, canon);
        if (strcmp(buf, canon) != 0) {
            return tg__fail(diag, TG_INPUT,
                            "host: write the IPv6 literal as browsers send "
                            "it: [%s]",
                            canon);
        }
    } else {
        name_len = strcspn(host, ":");
        for (i = 0; i < name_len; i++) {
            unsigned char c = (unsigned char) host[i];
            int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9');
            if (!alnum && c != '-' && c != '_' && c != '.') {
                return tg__fail(diag, TG_INPUT,
                                "host: want HOST or HOST:PORT without a "
                                "scheme or path (bad byte at offset %zu)",
                                i);
            }
            if (c == '.' && (i == 0 || host[i - 1] == '.')) {
                return tg__fail(diag, TG_INPUT, "host: an empty label");
            }
            if (c >= 'A' && c <= 'Z') {
                return tg__fail(diag, TG_INPUT,
                                "host: an upper-case letter at offset %zu "
                                "(browsers send the host in lower case, and "
                                "the signature covers it as they send it)",
                                i);
            }
        }
        if (name_len == 0) {
            return tg__fail(diag, TG_INPUT, "host: no name before the port");
        }
        if (host[name_len - 1] == '.') {
            return tg__fail(diag, TG_INPUT, "host: an empty label");
        }
        if (ends_in_number(host, name_len)) {
            /* inet_pton takes a.b.c.d only, without leading zeros. */
            int quad = name_len < sizeof(buf);
            if (quad) {
                memcpy(buf, host, name_len);
                buf[name_len] = '\0';
                quad = inet_pton(AF_INET, buf, &a4) == 1;
            }
            if (!quad) {
                return tg__fail(diag, TG_INPUT,
                                "host: a numeric host must be a dotted-quad "
                                "IPv4 address (a.b.c.d in decimal, no "
                                "leading zeros), as browsers send it");
            }
        }
    }
    if (host[name_len] == ':') {
        port = host + name_len + 1;
    } else if (host[name_len] != '\0') {
        return tg__fail(diag, TG_INPUT,
                        "host: want HOST or HOST:PORT without a scheme or "
                        "path");
    }
    if (port != NULL && port[strcspn(port, "/?#")] != '\0') {
        return tg__fail(diag, TG_INPUT,
                        "host: want HOST or HOST:PORT without a scheme or "
                        "path");
    }
    if (port != NULL) {
        tg_err_t err = check_port(port, scheme, diag);
        if (err != TG_OK) {
            return err;
        }
    }
    if (strcmp(scheme, "http") == 0 && !is_loopback(host, name_len)) {
        return tg__fail(diag, TG_INPUT,
                        "scheme: http only for a loopback host (127.0.0.0/8, "
                        "localhost, [::1]); use https");
    }
    return TG_OK;
}

/* "/embed/...", printable ASCII without space: it is percent-encoded
 * whole, but a browser would have encoded anything else before Looker
 * saw it, so the signed path would not be the one served. */
static tg_err_t
check_embed_path(const char *path, tg_diag_t *diag)
{
    size_t len, i;

    if (path == NULL || path[0] == '\0') {
        return tg__fail(diag, TG_INPUT, "embed_path: empty");
    }
    len = strnlen(path, TG_EMBED_PATH_MAX + 1);
    if (len > TG_EMBED_PATH_MAX) {
        return tg__fail(diag, TG_INPUT, "embed_path: longer than %d bytes",
                        TG_EMBED_PATH_MAX);
    }
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char) path[i];
        if (c <= 0x20 || c >= 0x7f) {
            return tg__fail(diag, TG_INPUT,
                            "embed_path: a control byte, space or non-ASCII "
                            "byte at offset %zu (percent-encode it)",
                            i);
        }
    }
    if (strncmp(path, "/embed/", 7) != 0 || len == 7) {
        return tg__fail(diag, TG_INPUT,
                        "embed_path: must be /embed/ and what to embed "
                        "(e.g. /embed/dashboards/42)");
    }
    return TG_OK;
}

static int
permission_allowed(const char *name)
{
    size_t i;

    for (i = 0; tg_embed_permissions[i] != NULL; i++) {
        if (strcmp(name, tg_embed_permissions[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

/* A list of names: bounded, each a non-empty clean string; permissions
 * must be on Looker's embed list. */
static tg_err_t
check_list(const char *param, const char *const *items, size_t n,
           int permissions, tg_diag_t *diag)
{
    char q[TG_EMBED_QUOTE_MAX];
    size_t i;
    tg_err_t err;

    if (n > TG_EMBED_LIST_MAX) {
        return tg__fail(diag, TG_INPUT, "%s: more than %d entries", param,
                        TG_EMBED_LIST_MAX);
    }
    if (n > 0 && items == NULL) {
        return tg__fail(diag, TG_INPUT, "%s: %zu entries but no list", param,
                        n);
    }
    for (i = 0; i < n; i++) {
        if (items[i] == NULL || items[i][0] == '\0') {
            return tg__fail(diag, TG_INPUT, "%s: entry %zu is empty", param,
                            i + 1);
        }
        err = check_text(param, items[i], 1, diag);
        if (err != TG_OK) {
            return err;
        }
        if (permissions && !permission_allowed(items[i])) {
            return tg__fail(diag, TG_INPUT,
                            "%s: '%s' is not allowed for embedding", param,
                            quote(q, items[i]));
        }
    }
    return TG_OK;
}

/* user_attributes: non-empty unique keys, clean strings. */
static tg_err_t
check_attributes(const tg_embed_params_t *p, tg_diag_t *diag)
{
    const tg_embed_attr_t *a = p->user_attributes;
    char q[TG_EMBED_QUOTE_MAX];
    size_t i, j;
    tg_err_t err;

    if (p->n_user_attributes > TG_EMBED_LIST_MAX) {
        return tg__fail(diag, TG_INPUT, "user_attributes: more than %d entries",
                        TG_EMBED_LIST_MAX);
    }
    if (p->n_user_attributes > 0 && a == NULL) {
        return tg__fail(diag, TG_INPUT,
                        "user_attributes: %zu entries but no list",
                        p->n_user_attributes);
    }
    for (i = 0; i < p->n_user_attributes; i++) {
        if (a[i].key == NULL || a[i].key[0] == '\0') {
            return tg__fail(diag, TG_INPUT,
                            "user_attributes: entry %zu has "
                            "an empty key",
                            i + 1);
        }
        err = check_text("user_attributes", a[i].key, 1, diag);
        if (err == TG_OK) {
            err = check_text("user_attributes", a[i].value, 0, diag);
        }
        if (err != TG_OK) {
            return err;
        }
        for (j = 0; j < i; j++) {
            if (strcmp(a[i].key, a[j].key) == 0) {
                return tg__fail(diag, TG_INPUT,
                                "user_attributes: '%s' is given twice",
                                quote(q, a[i].key));
            }
        }
    }
    return TG_OK;
}

/* Everything but the total length; errors name the parameter. */
tg_err_t
tg__embed_check_fields(const tg_embed_params_t *p, tg_diag_t *diag)
{
    const char *scheme;
    tg_err_t err;

    if (p == NULL) {
        return tg__fail(diag, TG_INPUT, "no embed parameters");
    }
    if (p->scheme != NULL && strcmp(p->scheme, "https") != 0 &&
        strcmp(p->scheme, "http") != 0) {
        return tg__fail(diag, TG_INPUT, "scheme: must be https or http");
    }
    scheme = tg__embed_scheme(p);
    err = check_host(p->host, scheme, diag);
    if (err == TG_OK) {
        err = check_embed_path(p->embed_path, diag);
    }
    if (err == TG_OK) {
        err = check_text("external_user_id", p->external_user_id, 1, diag);
    }
    if (err != TG_OK) {
        return err;
    }
    if (p->first_name != NULL) {
        err = check_text("first_name", p->first_name, 0, diag);
    }
    if (err == TG_OK && p->last_name != NULL) {
        err = check_text("last_name", p->last_name, 0, diag);
    }
    if (err == TG_OK && p->user_timezone != NULL) {
        err = check_text("user_timezone", p->user_timezone, 1, diag);
    }
    if (err == TG_OK && p->external_group_id != NULL) {
        err = check_text("external_group_id", p->external_group_id, 0, diag);
        if (err == TG_OK &&
            utf8_chars(p->external_group_id) > TG_EMBED_GROUP_ID_CHARS_MAX) {
            err = tg__fail(diag, TG_INPUT,
                           "external_group_id: longer than %d characters",
                           TG_EMBED_GROUP_ID_CHARS_MAX);
        }
    }
    if (err == TG_OK) {
        err = check_list("permissions", p->permissions, p->n_permissions, 1,
                         diag);
    }
    if (err == TG_OK) {
        err = check_list("models", p->models, p->n_models, 0, diag);
    }
    if (err == TG_OK) {
        err = check_list("group_ids", p->group_ids, p->n_group_ids, 0, diag);
    }
    if (err == TG_OK) {
        err = check_attributes(p, diag);
    }
    if (err != TG_OK) {
        return err;
    }
    /* Looker needs group_ids, or models and permissions (api-spec B.6):
     * without them the embed user can see nothing. */
    if (p->n_group_ids == 0 && p->n_models == 0) {
        return tg__fail(diag, TG_INPUT,
                        "models: none given (Looker needs models and "
                        "permissions, or group_ids)");
    }
    if (p->n_group_ids == 0 && p->n_permissions == 0) {
        return tg__fail(diag, TG_INPUT,
                        "permissions: none given (Looker needs models and "
                        "permissions, or group_ids)");
    }
    if (p->session_length < 0 || p->session_length > TG_EMBED_SESSION_MAX) {
        return tg__fail(diag, TG_INPUT, "session_length: %ld is %s %d",
                        p->session_length,
                        p->session_length < 0 ? "below" : "above",
                        p->session_length < 0 ? 0 : TG_EMBED_SESSION_MAX);
    }
    if (p->nonce != NULL) {
        err = check_text("nonce", p->nonce, 1, diag);
        if (err == TG_OK && utf8_chars(p->nonce) > TG_EMBED_NONCE_CHARS_MAX) {
            err = tg__fail(diag, TG_INPUT, "nonce: longer than %d characters",
                           TG_EMBED_NONCE_CHARS_MAX);
        }
        if (err != TG_OK) {
            return err;
        }
    }
    if (p->time < 0) {
        return tg__fail(diag, TG_INPUT, "time: negative");
    }
    return TG_OK;
}

/* ---------------------------------------------------------------------- */
/* Values: JSON text, produced once                                       */
/* ---------------------------------------------------------------------- */

/* Each value is compact JSON text in an exactly sized buffer of ours
 * (tg__json_dump), never in memory from jansson's allocator. */
static tg_err_t
string_value(const char *s, char **out, tg_diag_t *diag)
{
    json_t *v = json_string(s);
    tg_err_t err = tg__json_dump(v, out, NULL, diag);

    json_decref(v);
    return err;
}

static tg_err_t
list_value(const char *const *items, size_t n, char **out, tg_diag_t *diag)
{
    json_t *v = tg__json_string_list(items, n);
    tg_err_t err = tg__json_dump(v, out, NULL, diag);

    json_decref(v);
    return err;
}

/* An object in the caller's order (jansson keeps insertion order). */
static tg_err_t
attributes_value(const tg_embed_params_t *p, char **out, tg_diag_t *diag)
{
    json_t *v = json_object();
    size_t i;
    tg_err_t err;

    for (i = 0; v != NULL && i < p->n_user_attributes; i++) {
        if (json_object_set_new(v, p->user_attributes[i].key,
                                json_string(p->user_attributes[i].value)) !=
            0) {
            json_decref(v);
            v = NULL;
        }
    }
    err = tg__json_dump(v, out, NULL, diag);
    json_decref(v);
    return err;
}

static tg_err_t
int_value(long long v, char **out, tg_diag_t *diag)
{
    char buf[TG_EMBED_INT_TEXT_MAX];

    snprintf(buf, sizeof(buf), "%lld", v);
    return literal_value(buf, out, diag);
}

static tg_err_t
literal_value(const char *text, char **out, tg_diag_t *diag)
{
    *out = tg__strdup(text);
    return *out != NULL ? TG_OK : tg__fail(diag, TG_NOMEM, "out of memory");
}

/* The text of every parameter that is sent (api-spec C.2). */
tg_err_t
tg__embed_values_encode(const tg_embed_params_t *p, const char *nonce,
                        time_t now, tg_embed_values_t *vals, tg_diag_t *diag)
{
    char **t = vals->text;
    tg_err_t err;

    memset(vals, 0, sizeof(*vals));
    err = string_value(nonce, &t[TG_EF_NONCE], diag);
    if (err == TG_OK) {
        err = int_value((long long) now, &t[TG_EF_TIME], diag);
    }
    if (err == TG_OK) {
        err = int_value(p->session_length, &t[TG_EF_SESSION_LENGTH], diag);
    }
    if (err == TG_OK) {
        err =
            string_value(p->external_user_id, &t[TG_EF_EXTERNAL_USER_ID], diag);
    }
    if (err == TG_OK) {
        err = list_value(p->permissions, p->n_permissions,
                         &t[TG_EF_PERMISSIONS], diag);
    }
    if (err == TG_OK) {
        err = list_value(p->models, p->n_models, &t[TG_EF_MODELS], diag);
    }
    if (err == TG_OK && p->n_group_ids > 0) {
        err =
            list_value(p->group_ids, p->n_group_ids, &t[TG_EF_GROUP_IDS], diag);
    }
    if (err == TG_OK && p->external_group_id != NULL) {
        err = string_value(p->external_group_id, &t[TG_EF_EXTERNAL_GROUP_ID],
                           diag);
    }
    if (err == TG_OK && p->n_user_attributes > 0) {
        err = attributes_value(p, &t[TG_EF_USER_ATTRIBUTES], diag);
    }
    if (err == TG_OK) {
        /* A removed feature whose empty placeholder is still required. */
        err = literal_value("{}", &t[TG_EF_ACCESS_FILTERS], diag);
    }
    if (err == TG_OK && p->first_name != NULL) {
        err = string_value(p->first_name, &t[TG_EF_FIRST_NAME], diag);
    }
    if (err == TG_OK && p->last_name != NULL) {
        err = string_value(p->last_name, &t[TG_EF_LAST_NAME], diag);
    }
    if (err == TG_OK && p->user_timezone != NULL) {
        err = string_value(p->user_timezone, &t[TG_EF_USER_TIMEZONE], diag);
    }
    if (err == TG_OK) {
        err = literal_value(p->force_logout_login ? "true" : "false",
                            &t[TG_EF_FORCE_LOGOUT_LOGIN], diag);
    }
    if (err != TG_OK) {
        tg__embed_values_free(vals);
    }
    return err;
}

/* The nonce is in here: wipe it with the rest. */
void
tg__embed_values_free(tg_embed_values_t *vals)
{
    int i;

    for (i = 0; i < TG_EF_COUNT; i++) {
        tg_secret_free(vals->text[i]);
        vals->text[i] = NULL;
    }
}

/* ---------------------------------------------------------------------- */
/* The URL and its length                                                 */
/* ---------------------------------------------------------------------- */

const char *
tg__embed_scheme(const tg_embed_params_t *p)
{
    return p->scheme != NULL ? p->scheme : "https";
}

/* Bytes of "SCHEME://HOST/login/embed/PCT(PATH)?name=PCT(value)&...
 * &signature=" plus sig_pct_len. */
size_t
tg__embed_url_length(const tg_embed_params_t *p, const tg_embed_values_t *vals,
                     size_t sig_pct_len)
{
    size_t len;
    int i;

    len = strlen(tg__embed_scheme(p)) + strlen("://") + strlen(p->host) +
          strlen("/login/embed/") + tg__pct_encoded_len(p->embed_path) + 1;
    for (i = 0; i < TG_EF_COUNT; i++) {
        if (vals->text[i] != NULL) {
            len += strlen(tg__embed_fields[i].name) + 1 +
                   tg__pct_encoded_len(vals->text[i]) + 1;
        }
    }
    return len + strlen("signature=") + sig_pct_len;
}

/* The whole URL within TG_EMBED_URL_MAX, counting the signature at its
 * longest, so that signing never fails on length after the check. */
tg_err_t
tg__embed_check_url_length(const tg_embed_params_t *p,
                           const tg_embed_values_t *vals, tg_diag_t *diag)
{
    size_t len = tg__embed_url_length(p, vals, TG_EMBED_SIG_PCT_MAX);

    if (len > TG_EMBED_URL_MAX) {
        return tg__fail(diag, TG_INPUT,
                        "url: the signed URL would be %zu bytes, above %d "
                        "(fewer or shorter parameters)",
                        len, TG_EMBED_URL_MAX);
    }
    return TG_OK;
}

tg_err_t
tg_embed_params_check(const tg_embed_params_t *p, tg_diag_t *diag)
{
    char placeholder[TG_EMBED_NONCE_HEX + 1];
    tg_embed_values_t vals;
    tg_err_t err;

    err = tg__embed_check_fields(p, diag);
    if (err != TG_OK) {
        return err;
    }
    /* The length with a nonce of the size a fresh one has. */
    memset(placeholder, '0', TG_EMBED_NONCE_HEX);
    placeholder[TG_EMBED_NONCE_HEX] = '\0';
    err = tg__embed_values_encode(p, p->nonce != NULL ? p->nonce : placeholder,
                        p->time != 0 ? p->time : time(NULL), &vals, diag);
    if (err != TG_OK) {
        return err;
    }
    err = tg__embed_check_url_length(p, &vals, diag);
    tg__embed_values_free(&vals);
    return err;
}
