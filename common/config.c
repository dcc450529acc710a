/* SPDX-License-Identifier: MIT */
/*
 * config.c - the typed configuration: defaults, the key = value file, module
 * arguments, and validation.
 *
 * Every key is set through tg_config_set(), whatever its origin (a file line
 * or a module argument), so a key has exactly one parser and one error
 * wording: "WHERE: unknown option KEY" or "WHERE: bad value for KEY: why".
 * A repeated key is not an error: the last one wins, in a file and across
 * layers (the file first, then module arguments), which is how module
 * arguments override the file.  require_groups is replaced, not appended to.
 * When a load fails, the config may hold part of what was read: discard it.
 */
#include "tokengate.h"
#include "tg_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

/* A config file is small; a bigger one is a mistake or an attack. */
#define TG_CONFIG_FILE_MAX (1024 * 1024)
/* One line (without its newline); a path or a group list fits easily. */
#define TG_CONFIG_LINE_MAX 4096
/* The longest value tg_config_set() accepts, from any origin. */
#define TG_CONFIG_VALUE_MAX 4096
/* How much of a bad value a message quotes (then "..."). */
#define TG_CONFIG_QUOTE_MAX 80
/* How much of a key or a file name a message shows. */
#define TG_CONFIG_NAME_SHOWN 256
/* require_groups: names per list and bytes per name. */
#define TG_CONFIG_GROUPS_MAX 256
#define TG_CONFIG_GROUP_LEN_MAX 256
/* looker_api_version: "4.0", "3.1"; more digits are not a real version. */
#define TG_CONFIG_API_VERSION_MAX 16
/* pinned_pubkey: "sha256//" then the base64 of 32 bytes (44 characters). */
#define TG_PIN_PREFIX "sha256//"
#define TG_PIN_B64_LEN 44
/* min_uid's default: UID_MIN of login.defs (what useradd calls the first
 * uid of a regular account), else Debian's and useradd's own 1000. */
#define TG_LOGIN_DEFS "/etc/login.defs"
#define TG_MIN_UID_FALLBACK 1000L
/* login.defs is about 12 KiB on Debian; a much bigger one is not read. */
#define TG_LOGIN_DEFS_MAX (256 * 1024)
/* The largest min_uid: uid_t is 32 bits, and (uid_t) -1 is no uid. */
#define TG_MIN_UID_MAX 2147483647L
/* Looker API tokens live one hour (expires_in 3600), not configurable. */
#define TG_LOOKER_TOKEN_LIFETIME 3600

/* ---------------------------------------------------------------------- */
/* Types                                                                  */
/* ---------------------------------------------------------------------- */

/* Every key, in the order of the fields of tg_config_t. */
typedef enum tg_key_id {
    KEY_API,
    KEY_URL,
    KEY_LOOKER_API_VERSION,
    KEY_INSIGHT_BASE_PATH,
    KEY_INSIGHT_VALIDATE,
    KEY_LOOKER_AUTH_SCHEME,
    KEY_CA_FILE,
    KEY_CA_PATH,
    KEY_PINNED_PUBKEY,
    KEY_PROXY,
    KEY_CONNECT_TIMEOUT,
    KEY_TIMEOUT,
    KEY_MAX_RESPONSE_BYTES,
    KEY_TOKEN_MAX_AGE,
    KEY_TOKEN_LIFETIME_MAX,
    KEY_RETRY_AFTER_MAX,
    KEY_ALLOW_INSECURE_HTTP,
    KEY_REQUIRE_GROUPS,
    KEY_REQUIRE_GROUPS_MODE,
    KEY_DENY_EVALUATION,
    KEY_DENY_DISABLED,
    KEY_USER_ATTRIBUTE,
    KEY_USER_MAP_FILE,
    KEY_EMAIL_DOMAIN,
    KEY_CASE_INSENSITIVE,
    KEY_MIN_UID,
    KEY_CLIENT_ID,
    KEY_CLIENT_SECRET_FILE,
    KEY_EMBED_SECRET_FILE
} tg_key_id_t;

/* How a value is parsed. */
typedef enum tg_key_kind {
    KIND_CHOICE,  /* one word of a fixed list */
    KIND_BOOL,    /* yes|no|true|false|on|off|1|0 */
    KIND_LONG,    /* a whole number in [lo, hi] */
    KIND_SECONDS, /* seconds with up to 3 decimals, stored in ms, [lo, hi] */
    KIND_STRING,  /* text checked by check(); "" unsets when optional */
    KIND_LIST     /* require_groups: a whitespace-separated list */
} tg_key_kind_t;

typedef struct tg_choice {
    const char *name;
    int value;
} tg_choice_t;

/* Returns NULL when the value is good, else why it is not. */
typedef const char *(*tg_check_fn)(const char *value);

typedef struct tg_key {
    const char *name;
    tg_key_id_t id;
    tg_key_kind_t kind;
    long lo, hi;                /* KIND_LONG, KIND_SECONDS (ms) */
    const tg_choice_t *choices; /* KIND_CHOICE, NULL-terminated */
    tg_check_fn check;          /* KIND_STRING */
    unsigned flags;
} tg_key_t;

/* KIND_STRING: an empty value unsets the key instead of being refused. */
#define KEY_OPTIONAL 0x1u
/* Never quote the value in a message (it may be a pasted secret). */
#define KEY_NO_QUOTE 0x2u

/* ---------------------------------------------------------------------- */
/* Prototypes of statics                                                  */
/* ---------------------------------------------------------------------- */

static const tg_key_t *key_find(const char *name);
static int has_ctl(const char *s);
static const char *check_url(const char *value);
static const char *check_api_version(const char *value);
static const char *check_base_path(const char *value);
static const char *check_path(const char *value);
static const char *check_pin(const char *value);
static const char *check_proxy(const char *value);
static const char *check_email_domain(const char *value);
static const char *check_client_id(const char *value);
static tg_err_t bad_value(const tg_key_t *k, const char *value,
                          const char *where, const char *why, tg_diag_t *diag);
static int parse_bool(const char *value, int *out);
static const char *parse_long(const char *value, long *out);
static const char *parse_ms(const char *value, long *out);
static tg_err_t parse_list(const tg_key_t *k, const char *value,
                           const char *where, char ***out, size_t *n_out,
                           tg_diag_t *diag);
static void free_list(char **list, size_t n);
static void store_string(tg_config_t *cfg, tg_key_id_t id, char *s);
static void store_int(tg_config_t *cfg, tg_key_id_t id, long v);
static const char *show_name(char *buf, size_t size, const char *s);
static tg_err_t open_checked(const char *path, const char *key,
                             unsigned forbidden, int *fd_out,
                             struct stat *st_out, tg_diag_t *diag);
static tg_err_t parse_line(tg_config_t *cfg, char *line, size_t len,
                           const char *where, tg_diag_t *diag);
static int is_loopback_host(const char *host);
static tg_err_t validate_url(const tg_config_t *cfg, tg_diag_t *diag);
static tg_err_t validate_range(const tg_config_t *cfg, tg_diag_t *diag);
static tg_err_t validate_exists(const char *path, const char *key, int dir,
                                tg_diag_t *diag);


/* ---------------------------------------------------------------------- */
/* Static tables                                                          */
/* ---------------------------------------------------------------------- */

static const tg_choice_t api_choices[] = {
    {"insight", TG_API_INSIGHT}, {"looker", TG_API_LOOKER}, {NULL, 0}};

static const tg_choice_t validate_choices[] = {
    {"auto", TG_INSIGHT_VALIDATE_AUTO},
    {"user", TG_INSIGHT_VALIDATE_USER},
    {"currentuser", TG_INSIGHT_VALIDATE_CURRENTUSER},
    {"both", TG_INSIGHT_VALIDATE_BOTH},
    {NULL, 0}};

static const tg_choice_t scheme_choices[] = {
    {"token", TG_LOOKER_SCHEME_TOKEN},
    {"bearer", TG_LOOKER_SCHEME_BEARER},
    {NULL, 0}};

static const tg_choice_t mode_choices[] = {
    {"any", TG_GROUPS_ANY}, {"all", TG_GROUPS_ALL}, {NULL, 0}};

static const tg_choice_t attr_choices[] = {{"email_local", TG_BIND_EMAIL_LOCAL},
                                           {"email", TG_BIND_EMAIL},
                                           {"id", TG_BIND_ID},
                                           {"cn", TG_BIND_CN},
                                           {NULL, 0}};

static const tg_choice_t bool_choices[] = {{"yes", 1},   {"no", 0}, {"true", 1},
                                           {"false", 0}, {"on", 1}, {"off", 0},
                                           {"1", 1},     {"0", 0},  {NULL, 0}};

static const tg_key_t tg_keys[] = {
    {"api", KEY_API, KIND_CHOICE, 0, 0, api_choices, NULL, 0},
    {"url", KEY_URL, KIND_STRING, 0, 0, NULL, check_url, 0},
    {"looker_api_version", KEY_LOOKER_API_VERSION, KIND_STRING, 0, 0, NULL,
     check_api_version, 0},
    {"insight_base_path", KEY_INSIGHT_BASE_PATH, KIND_STRING, 0, 0, NULL,
     check_base_path, 0},
    {"insight_validate", KEY_INSIGHT_VALIDATE, KIND_CHOICE, 0, 0,
     validate_choices, NULL, 0},
    {"looker_auth_scheme", KEY_LOOKER_AUTH_SCHEME, KIND_CHOICE, 0, 0,
     scheme_choices, NULL, 0},
    {"ca_file", KEY_CA_FILE, KIND_STRING, 0, 0, NULL, check_path, KEY_OPTIONAL},
    {"ca_path", KEY_CA_PATH, KIND_STRING, 0, 0, NULL, check_path, KEY_OPTIONAL},
    {"pinned_pubkey", KEY_PINNED_PUBKEY, KIND_STRING, 0, 0, NULL, check_pin,
     KEY_OPTIONAL},
    {"proxy", KEY_PROXY, KIND_STRING, 0, 0, NULL, check_proxy,
     KEY_OPTIONAL | KEY_NO_QUOTE},
    {"connect_timeout", KEY_CONNECT_TIMEOUT, KIND_SECONDS, 100, 120000, NULL,
     NULL, 0},
    {"timeout", KEY_TIMEOUT, KIND_SECONDS, 100, 600000, NULL, NULL, 0},
    {"max_response_bytes", KEY_MAX_RESPONSE_BYTES, KIND_LONG, 1024, 16777216,
     NULL, NULL, 0},
    {"token_max_age", KEY_TOKEN_MAX_AGE, KIND_LONG, 1, 86400, NULL, NULL, 0},
    {"token_lifetime_max", KEY_TOKEN_LIFETIME_MAX, KIND_LONG, 0, 86400, NULL,
     NULL, 0},
    {"retry_after_max", KEY_RETRY_AFTER_MAX, KIND_LONG, 0, 86400, NULL, NULL,
     0},
    {"allow_insecure_http", KEY_ALLOW_INSECURE_HTTP, KIND_BOOL, 0, 0, NULL,
     NULL, 0},
    {"require_groups", KEY_REQUIRE_GROUPS, KIND_LIST, 0, 0, NULL, NULL, 0},
    {"require_groups_mode", KEY_REQUIRE_GROUPS_MODE, KIND_CHOICE, 0, 0,
     mode_choices, NULL, 0},
    {"deny_evaluation", KEY_DENY_EVALUATION, KIND_BOOL, 0, 0, NULL, NULL, 0},
    {"deny_disabled", KEY_DENY_DISABLED, KIND_BOOL, 0, 0, NULL, NULL, 0},
    {"user_attribute", KEY_USER_ATTRIBUTE, KIND_CHOICE, 0, 0, attr_choices,
     NULL, 0},
    {"user_map_file", KEY_USER_MAP_FILE, KIND_STRING, 0, 0, NULL, check_path,
     KEY_OPTIONAL},
    {"email_domain", KEY_EMAIL_DOMAIN, KIND_STRING, 0, 0, NULL,
     check_email_domain, KEY_OPTIONAL},
    {"case_insensitive", KEY_CASE_INSENSITIVE, KIND_BOOL, 0, 0, NULL, NULL, 0},
    {"min_uid", KEY_MIN_UID, KIND_LONG, 1, TG_MIN_UID_MAX, NULL, NULL, 0},
    {"client_id", KEY_CLIENT_ID, KIND_STRING, 0, 0, NULL, check_client_id,
     KEY_OPTIONAL},
    {"client_secret_file", KEY_CLIENT_SECRET_FILE, KIND_STRING, 0, 0, NULL,
     check_path, KEY_OPTIONAL | KEY_NO_QUOTE},
    {"embed_secret_file", KEY_EMBED_SECRET_FILE, KIND_STRING, 0, 0, NULL,
     check_path, KEY_OPTIONAL | KEY_NO_QUOTE},
};

#define TG_N_KEYS (sizeof(tg_keys) / sizeof(tg_keys[0]))

/* ---------------------------------------------------------------------- */
/* Defaults                                                               */
/* ---------------------------------------------------------------------- */

tg_config_t *
tg_config_new(void)
{
    tg_config_t *cfg = calloc(1, sizeof(*cfg));

    if (cfg == NULL) {
        return NULL;
    }
    cfg->api = TG_API_INSIGHT;
    cfg->looker_api_version = strdup("4.0");
    cfg->insight_base_path = strdup("/insightservices/rest/v1");
    cfg->insight_validate = TG_INSIGHT_VALIDATE_AUTO;
    cfg->looker_auth_scheme = TG_LOOKER_SCHEME_TOKEN;
    cfg->connect_timeout_ms = 5000;
    cfg->timeout_ms = 10000;
    cfg->max_response_bytes = 65536;
    cfg->token_max_age = 900;
    cfg->token_lifetime_max = 0; /* the flavor's */
    cfg->retry_after_max = 300;
    cfg->require_groups_mode = TG_GROUPS_ANY;
    cfg->deny_disabled = 1;
    cfg->user_attribute = TG_BIND_EMAIL_LOCAL;
    cfg->min_uid = tg__login_defs_uid_min(TG_LOGIN_DEFS);
    if (cfg->looker_api_version == NULL || cfg->insight_base_path == NULL) {
        tg_config_free(cfg);
        return NULL;
    }
    return cfg;
}

void
tg_config_free(tg_config_t *cfg)
{
    if (cfg == NULL) {
        return;
    }
    free(cfg->url);
    free(cfg->looker_api_version);
    free(cfg->insight_base_path);
    free(cfg->ca_file);
    free(cfg->ca_path);
    free(cfg->pinned_pubkey);
    free(cfg->proxy);
    free_list(cfg->require_groups, cfg->n_require_groups);
    free(cfg->user_map_file);
    free(cfg->email_domain);
    free(cfg->client_id);
    free(cfg->client_secret_file);
    free(cfg->embed_secret_file);
    free(cfg);
}

/*
 * UID_MIN of a login.defs file ("NAME VALUE" lines, '#' comments), read as
 * strictly as a config file: a root-owned (or the caller's) regular file,
 * not group/world-writable, of plain "UID_MIN DIGITS" lines with a value in
 * 1..TG_MIN_UID_MAX; the last such line wins, as in useradd.  Anything
 * else (no file, an unsafe one, a NUL byte, a quoted, signed, octal, hex
 * or out-of-range value, trailing words) gives TG_MIN_UID_FALLBACK: a file
 * that cannot be read with certainty never lowers the bar.
 */
long
tg__login_defs_uid_min(const char *path)
{
    char *text = NULL;
    size_t len = 0, off = 0;
    long found = TG_MIN_UID_FALLBACK, v;

    if (path == NULL ||
        tg__file_read_checked(path, "login.defs", 022u, TG_LOGIN_DEFS_MAX,
                              &text, &len, NULL) != TG_OK) {
        return TG_MIN_UID_FALLBACK;
    }
    if (memchr(text, '\0', len) != NULL) {
        found = TG_MIN_UID_FALLBACK;
        goto out;
    }
    while (off < len) {
        char *line = text + off;
        char *nl = memchr(line, '\n', len - off);
        size_t n = nl != NULL ? (size_t) (nl - line) : len - off;
        size_t i = 0, name, name_len, value, value_len;

        off += n + (nl != NULL ? 1 : 0);
        if (n > 0 && line[n - 1] == '\r') {
            n--;
        }
        while (i < n && (line[i] == ' ' || line[i] == '\t')) {
            i++;
        }
        if (i == n || line[i] == '#') {
            continue;
        }
        name = i;
        while (i < n && line[i] != ' ' && line[i] != '\t') {
            i++;
        }
        name_len = i - name;
        if (name_len != strlen("UID_MIN") ||
            memcmp(line + name, "UID_MIN", name_len) != 0) {
            continue;
        }
        while (i < n && (line[i] == ' ' || line[i] == '\t')) {
            i++;
        }
        value = i;
        while (i < n && line[i] != ' ' && line[i] != '\t') {
            i++;
        }
        value_len = i - value;
        while (i < n && (line[i] == ' ' || line[i] == '\t')) {
            i++;
        }
        /* A leading 0 is octal to useradd (strtoul base 0): refuse it. */
        if (i != n || value_len == 0 || value_len > 10 || line[value] == '0') {
            found = TG_MIN_UID_FALLBACK;
            goto out;
        }
        line[value + value_len] = '\0';
        if (parse_long(line + value, &v) != NULL || v < 1 ||
            v > TG_MIN_UID_MAX) {
            found = TG_MIN_UID_FALLBACK;
            goto out;
        }
        found = v;
    }
out:
    free(text);
    return found;
}

/* ---------------------------------------------------------------------- */
/* Values                                                                 */
/* ---------------------------------------------------------------------- */

static const tg_key_t *
key_find(const char *name)
{
    size_t i;

    for (i = 0; i < TG_N_KEYS; i++) {
        if (strcmp(tg_keys[i].name, name) == 0) {
            return &tg_keys[i];
        }
    }
    return NULL;
}

/* Any C0 control byte or DEL? */
static int
has_ctl(const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char) *s;
        if (c < 0x20 || c == 0x7f) {
            return 1;
        }
    }
    return 0;
}

static const char *
check_url(const char *value)
{
    CURLU *u;
    CURLUcode rc;

    if (strpbrk(value, " \t") != NULL) {
        return "a URL has no spaces";
    }
    u = curl_url();
    if (u == NULL) {
        return "out of memory";
    }
    rc = curl_url_set(u, CURLUPART_URL, value, 0);
    curl_url_cleanup(u);
    if (rc != CURLUE_OK) {
        return "not an absolute http:// or https:// URL";
    }
    return NULL;
}

static const char *
check_api_version(const char *value)
{
    const char *p = value;
    size_t n;

    if (strlen(value) > TG_CONFIG_API_VERSION_MAX) {
        return "too long for a version";
    }
    n = strspn(p, "0123456789");
    if (n == 0 || p[n] != '.') {
        return "expected digits.digits, like 4.0 or 3.1";
    }
    p += n + 1;
    n = strspn(p, "0123456789");
    if (n == 0 || p[n] != '\0') {
        return "expected digits.digits, like 4.0 or 3.1";
    }
    return NULL;
}

/*
 * The base path is pasted in front of every insight call, so it is held to
 * plain path characters (RFC 3986 pchar without '%'), no empty, "." or ".."
 * segment (which curl would squash), and no trailing '/'.
 */
static const char *
check_base_path(const char *value)
{
    static const char allowed[] = "abcdefghijklmnopqrstuvwxyz"
                                  "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                  "0123456789-._~!$&'()*+,;=:@/";
    const char *seg;

    if (value[0] != '/') {
        return "must start with '/'";
    }
    if (value[strspn(value, allowed)] != '\0') {
        return "only letters, digits, '/' and -._~!$&'()*+,;=:@ are allowed "
               "(no '?', '#', '%', spaces or control bytes)";
    }
    for (seg = value; seg != NULL && *seg != '\0'; seg = strchr(seg + 1, '/')) {
        size_t len = strcspn(seg + 1, "/");
        if (len == 0 || (len == 1 && seg[1] == '.') ||
            (len == 2 && seg[1] == '.' && seg[2] == '.')) {
            return "no empty, '.' or '..' segment and no trailing '/'";
        }
    }
    return NULL;
}

static const char *
check_path(const char *value)
{
    if (strlen(value) >= PATH_MAX) {
        return "longer than PATH_MAX";
    }
    return NULL;
}

/* sha256//B64[;sha256//B64...] (curl's CURLOPT_PINNEDPUBLICKEY), or a
 * file holding the public key. */
static const char *
check_pin(const char *value)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                              "abcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *p = value;
    size_t plen = strlen(TG_PIN_PREFIX);

    if (strncmp(value, TG_PIN_PREFIX, plen) != 0) {
        return check_path(value);
    }
    for (;;) {
        if (strncmp(p, TG_PIN_PREFIX, plen) != 0) {
            return "expected sha256//BASE64[;sha256//BASE64...]";
        }
        p += plen;
        if (strspn(p, b64) != TG_PIN_B64_LEN - 1 ||
            p[TG_PIN_B64_LEN - 1] != '=') {
            return "a sha256// pin is 44 base64 characters (43 and '=')";
        }
        p += TG_PIN_B64_LEN;
        if (*p == '\0') {
            return NULL;
        }
        if (*p != ';') {
            return "expected sha256//BASE64[;sha256//BASE64...]";
        }
        p++;
    }
}

static const char *
check_proxy(const char *value)
{
    if (strpbrk(value, " \t") != NULL) {
        return "a proxy URL has no spaces";
    }
    return NULL;
}

/* A DNS domain: letters, digits, '-' and '.', no leading or trailing dot. */
static const char *
check_email_domain(const char *value)
{
    const char *p;

    if (strlen(value) > 253 || value[0] == '.' ||
        value[strlen(value) - 1] == '.') {
        return "not a domain name";
    }
    for (p = value; *p != '\0'; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || *p == '-' || *p == '.')) {
            return "a domain has only letters, digits, '-' and '.'";
        }
    }
    return NULL;
}

static const char *
check_client_id(const char *value)
{
    const unsigned char *p;

    if (strlen(value) > TG_SECRET_MAX) {
        return "longer than 1024 bytes";
    }
    for (p = (const unsigned char *) value; *p != '\0'; p++) {
        if (*p <= 0x20 || *p >= 0x7f) {
            return "only printable ASCII without spaces is allowed";
        }
    }
    return NULL;
}

static tg_err_t
bad_value(const tg_key_t *k, const char *value, const char *where,
          const char *why, tg_diag_t *diag)
{
    char shown[TG_CONFIG_QUOTE_MAX + 1];

    if ((k->flags & KEY_NO_QUOTE) != 0 || value == NULL) {
        return tg__fail(diag, TG_CONFIG, "%s: bad value for %s: %s", where,
                        k->name, why);
    }
    tg__sanitize(shown, sizeof(shown), value, strlen(value));
    return tg__fail(diag, TG_CONFIG, "%s: bad value for %s: %s (got \"%s\")",
                    where, k->name, why, shown);
}

static int
parse_bool(const char *value, int *out)
{
    size_t i;

    for (i = 0; bool_choices[i].name != NULL; i++) {
        if (strcmp(bool_choices[i].name, value) == 0) {
            *out = bool_choices[i].value;
            return 1;
        }
    }
    return 0;
}

/* A whole number: ASCII digits only (no sign, no spaces), no overflow. */
static const char *
parse_long(const char *value, long *out)
{
    const char *p;
    long v = 0;

    if (*value == '\0') {
        return "a number is required";
    }
    for (p = value; *p != '\0'; p++) {
        int d;
        if (*p < '0' || *p > '9') {
            return "not a whole number";
        }
        d = *p - '0';
        if (v > (LONG_MAX - d) / 10) {
            return "number too large";
        }
        v = v * 10 + d;
    }
    *out = v;
    return NULL;
}

/* Seconds as digits[.digits], at most 3 decimals, into milliseconds. */
static const char *
parse_ms(const char *value, long *out)
{
    const char *p = value;
    long sec = 0, frac = 0;
    int nfrac = 0;

    if (*p < '0' || *p > '9') {
        return "not a number of seconds";
    }
    for (; *p >= '0' && *p <= '9'; p++) {
        if (sec > (LONG_MAX / 1000 - 1 - (*p - '0')) / 10) {
            return "number too large";
        }
        sec = sec * 10 + (*p - '0');
    }
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9') {
            return "not a number of seconds";
        }
        for (; *p >= '0' && *p <= '9'; p++) {
            if (++nfrac > 3) {
                return "at most 3 decimals (milliseconds)";
            }
            frac = frac * 10 + (*p - '0');
        }
        for (; nfrac < 3; nfrac++) {
            frac *= 10;
        }
    }
    if (*p != '\0') {
        return "not a number of seconds";
    }
    *out = sec * 1000 + frac;
    return NULL;
}

/* Split a group list on spaces and tabs into a new array (all or nothing). */
static tg_err_t
parse_list(const tg_key_t *k, const char *value, const char *where, char ***out,
           size_t *n_out, tg_diag_t *diag)
{
    char **list = NULL;
    size_t n = 0;
    const char *p = value;
    tg_err_t err = TG_OK;

    for (;;) {
        size_t len, i;
        p += strspn(p, " \t");
        if (*p == '\0') {
            break;
        }
        len = strcspn(p, " \t");
        for (i = 0; i < len; i++) {
            unsigned char c = (unsigned char) p[i];
            if (c < 0x21 || c == 0x7f) {
                err = bad_value(k, value, where,
                                "group names have no control bytes", diag);
                goto out;
            }
        }
        if (len > TG_CONFIG_GROUP_LEN_MAX) {
            err = bad_value(k, value, where,
                            "a group name is longer than 256 bytes", diag);
            goto out;
        }
        if (n == TG_CONFIG_GROUPS_MAX) {
            err = bad_value(k, value, where, "more than 256 groups", diag);
            goto out;
        }
        if (list == NULL) {
            list = calloc(TG_CONFIG_GROUPS_MAX, sizeof(*list));
            if (list == NULL) {
                err = tg__fail(diag, TG_NOMEM, "%s: out of memory", where);
                goto out;
            }
        }
        list[n] = strndup(p, len);
        if (list[n] == NULL) {
            err = tg__fail(diag, TG_NOMEM, "%s: out of memory", where);
            goto out;
        }
        n++;
        p += len;
    }
    *out = list;
    *n_out = n;
    list = NULL;
    n = 0;
out:
    free_list(list, n);
    return err;
}

static void
free_list(char **list, size_t n)
{
    size_t i;

    if (list == NULL) {
        return;
    }
    for (i = 0; i < n; i++) {
        free(list[i]);
    }
    free(list);
}

/* Store a string (owned, may be NULL to unset) into its field. */
static void
store_string(tg_config_t *cfg, tg_key_id_t id, char *s)
{
    char **field = NULL;

    switch (id) {
    case KEY_URL:
        field = &cfg->url;
        break;
    case KEY_LOOKER_API_VERSION:
        field = &cfg->looker_api_version;
        break;
    case KEY_INSIGHT_BASE_PATH:
        field = &cfg->insight_base_path;
        break;
    case KEY_CA_FILE:
        field = &cfg->ca_file;
        break;
    case KEY_CA_PATH:
        field = &cfg->ca_path;
        break;
    case KEY_PINNED_PUBKEY:
        field = &cfg->pinned_pubkey;
        break;
    case KEY_PROXY:
        field = &cfg->proxy;
        break;
    case KEY_USER_MAP_FILE:
        field = &cfg->user_map_file;
        break;
    case KEY_EMAIL_DOMAIN:
        field = &cfg->email_domain;
        break;
    case KEY_CLIENT_ID:
        field = &cfg->client_id;
        break;
    case KEY_CLIENT_SECRET_FILE:
        field = &cfg->client_secret_file;
        break;
    case KEY_EMBED_SECRET_FILE:
        field = &cfg->embed_secret_file;
        break;
    default:
        break;
    }
    if (field == NULL) {
        free(s);
        return;
    }
    free(*field);
    *field = s;
}

/* Store a parsed number, flag or choice into its typed field. */
static void
store_int(tg_config_t *cfg, tg_key_id_t id, long v)
{
    switch (id) {
    case KEY_API:
        cfg->api = (tg_api_t) v;
        break;
    case KEY_INSIGHT_VALIDATE:
        cfg->insight_validate = (tg_insight_validate_t) v;
        break;
    case KEY_LOOKER_AUTH_SCHEME:
        cfg->looker_auth_scheme = (tg_looker_scheme_t) v;
        break;
    case KEY_CONNECT_TIMEOUT:
        cfg->connect_timeout_ms = v;
        break;
    case KEY_TIMEOUT:
        cfg->timeout_ms = v;
        break;
    case KEY_MAX_RESPONSE_BYTES:
        cfg->max_response_bytes = v;
        break;
    case KEY_TOKEN_MAX_AGE:
        cfg->token_max_age = v;
        break;
    case KEY_TOKEN_LIFETIME_MAX:
        cfg->token_lifetime_max = v;
        break;
    case KEY_RETRY_AFTER_MAX:
        cfg->retry_after_max = v;
        break;
    case KEY_ALLOW_INSECURE_HTTP:
        cfg->allow_insecure_http = (int) v;
        break;
    case KEY_REQUIRE_GROUPS_MODE:
        cfg->require_groups_mode = (tg_group_mode_t) v;
        break;
    case KEY_DENY_EVALUATION:
        cfg->deny_evaluation = (int) v;
        break;
    case KEY_DENY_DISABLED:
        cfg->deny_disabled = (int) v;
        break;
    case KEY_USER_ATTRIBUTE:
        cfg->user_attribute = (tg_bind_attr_t) v;
        break;
    case KEY_CASE_INSENSITIVE:
        cfg->case_insensitive = (int) v;
        break;
    case KEY_MIN_UID:
        cfg->min_uid = v;
        break;
    default:
        break;
    }
}

/* A key or file name for a message: sanitized and cut. */
static const char *
show_name(char *buf, size_t size, const char *s)
{
    tg__sanitize(buf, size, s != NULL ? s : "(none)",
                 s != NULL ? strlen(s) : strlen("(none)"));
    return buf;
}

tg_err_t
tg_config_set(tg_config_t *cfg, const char *key, const char *value,
              const char *where, tg_diag_t *diag)
{
    const tg_key_t *k;
    char shown[TG_CONFIG_NAME_SHOWN + 1];
    char why[128];
    const char *reason;
    char *s = NULL;
    char **list = NULL;
    size_t n_list = 0;
    long v = 0;
    int b = 0;
    size_t i;
    tg_err_t err = TG_OK;

    if (where == NULL) {
        where = "config";
    }
    if (cfg == NULL) {
        return tg__fail(diag, TG_INTERNAL, "%s: no config to set", where);
    }
    k = key != NULL ? key_find(key) : NULL;
    if (k == NULL) {
        return tg__fail(diag, TG_CONFIG, "%s: unknown option %s", where,
                        show_name(shown, sizeof(shown), key));
    }
    if (value == NULL) {
        return bad_value(k, NULL, where, "a value is required", diag);
    }
    if (strnlen(value, TG_CONFIG_VALUE_MAX + 1) > TG_CONFIG_VALUE_MAX) {
        return bad_value(k, value, where, "longer than 4096 bytes", diag);
    }

    switch (k->kind) {
    case KIND_CHOICE:
        for (i = 0; k->choices[i].name != NULL; i++) {
            if (strcmp(k->choices[i].name, value) == 0) {
                break;
            }
        }
        if (k->choices[i].name == NULL) {
            size_t off = 0;
            off += (size_t) snprintf(why, sizeof(why), "expected one of");
            for (i = 0; k->choices[i].name != NULL && off < sizeof(why); i++) {
                off +=
                    (size_t) snprintf(why + off, sizeof(why) - off, "%s %s",
                                      i == 0 ? "" : " |", k->choices[i].name);
            }
            return bad_value(k, value, where, why, diag);
        }
        store_int(cfg, k->id, k->choices[i].value);
        break;

    case KIND_BOOL:
        if (!parse_bool(value, &b)) {
            return bad_value(k, value, where,
                             "expected yes|no|true|false|on|off|1|0", diag);
        }
        store_int(cfg, k->id, b);
        break;

    case KIND_LONG:
    case KIND_SECONDS:
        reason =
            k->kind == KIND_LONG ? parse_long(value, &v) : parse_ms(value, &v);
        if (reason != NULL) {
            return bad_value(k, value, where, reason, diag);
        }
        if (v < k->lo || v > k->hi) {
            if (k->kind == KIND_LONG) {
                snprintf(why, sizeof(why), "must be between %ld and %ld", k->lo,
                         k->hi);
            } else {
                snprintf(why, sizeof(why), "must be between %g and %g seconds",
                         (double) k->lo / 1000.0, (double) k->hi / 1000.0);
            }
            return bad_value(k, value, where, why, diag);
        }
        store_int(cfg, k->id, v);
        break;

    case KIND_STRING:
        if (value[0] == '\0') {
            if ((k->flags & KEY_OPTIONAL) == 0) {
                return bad_value(k, value, where, "must not be empty", diag);
            }
            store_string(cfg, k->id, NULL);
            break;
        }
        if (has_ctl(value)) {
            return bad_value(k, value, where, "control bytes are not allowed",
                             diag);
        }
        reason = k->check != NULL ? k->check(value) : NULL;
        if (reason != NULL) {
            return bad_value(k, value, where, reason, diag);
        }
        s = strdup(value);
        if (s == NULL) {
            return tg__fail(diag, TG_NOMEM, "%s: out of memory", where);
        }
        store_string(cfg, k->id, s);
        break;

    case KIND_LIST:
        err = parse_list(k, value, where, &list, &n_list, diag);
        if (err != TG_OK) {
            return err;
        }
        free_list(cfg->require_groups, cfg->n_require_groups);
        cfg->require_groups = list;
        cfg->n_require_groups = n_list;
        break;
    }
    return TG_OK;
}

/* ---------------------------------------------------------------------- */
/* Files                                                                  */
/* ---------------------------------------------------------------------- */

/*
 * Open a file we are about to trust, and check what we opened (fstat, so
 * there is no race with a rename): not a symlink (O_NOFOLLOW), a regular
 * file, owned by root or by us, and no mode bit in forbidden (022 for
 * files that steer us, 077 for files that hold secrets).  Messages start
 * with "KEY: FILE" or just "FILE" when key is NULL.  O_NONBLOCK keeps a
 * FIFO from blocking the open; it does nothing to a regular file.
 */
static tg_err_t
open_checked(const char *path, const char *key, unsigned forbidden, int *fd_out,
             struct stat *st_out, tg_diag_t *diag)
{
    char file[TG_CONFIG_NAME_SHOWN + 1];
    char prefix[2 * TG_CONFIG_NAME_SHOWN + 8];
    char ebuf[128];
    struct stat st;
    int fd = -1;
    unsigned mode;
    tg_err_t err = TG_OK;

    show_name(file, sizeof(file), path);
    if (key != NULL) {
        snprintf(prefix, sizeof(prefix), "%s: %s", key, file);
    } else {
        snprintf(prefix, sizeof(prefix), "%s", file);
    }
    if (path == NULL || path[0] == '\0') {
        err = tg__fail(diag, TG_CONFIG, "%s: no file name", prefix);
        goto out;
    }
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        if (e == ELOOP && lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
            err = tg__fail(diag, TG_CONFIG,
                           "%s: is a symbolic link, which is refused; name "
                           "the file itself",
                           prefix);
        } else if (e == ENOMEM) {
            err = tg__fail(diag, TG_NOMEM, "%s: out of memory", prefix);
        } else {
            err = tg__fail(diag, TG_CONFIG, "%s: %s", prefix,
                           strerror_r(e, ebuf, sizeof(ebuf)));
        }
        goto out;
    }
    if (fstat(fd, &st) != 0) {
        err = tg__fail(diag, TG_CONFIG, "%s: %s", prefix,
                       strerror_r(errno, ebuf, sizeof(ebuf)));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        err = tg__fail(diag, TG_CONFIG, "%s: is not a regular file", prefix);
        goto out;
    }
    if (st.st_uid != 0 && st.st_uid != geteuid()) {
        err = tg__fail(diag, TG_CONFIG,
                       "%s: must be owned by root or by uid %lu (owner is "
                       "uid %lu)",
                       prefix, (unsigned long) geteuid(),
                       (unsigned long) st.st_uid);
        goto out;
    }
    mode = (unsigned) st.st_mode & 07777u;
    if ((mode & forbidden) != 0) {
        if ((forbidden & 044u) != 0) {
            err = tg__fail(diag, TG_CONFIG,
                           "%s must be readable by its owner only (mode "
                           "%04o); chmod 600 %s",
                           prefix, mode, file);
        } else {
            err = tg__fail(diag, TG_CONFIG,
                           "%s: must not be writable by group or others "
                           "(mode %04o)",
                           prefix, mode);
        }
        goto out;
    }
    *fd_out = fd;
    fd = -1;
    if (st_out != NULL) {
        *st_out = st;
    }
out:
    if (fd >= 0) {
        close(fd);
    }
    return err;
}

tg_err_t
tg__file_read_checked(const char *path, const char *key, unsigned forbidden,
                      size_t max, char **text, size_t *len, tg_diag_t *diag)
{
    char file[TG_CONFIG_NAME_SHOWN + 1];
    char ebuf[128];
    struct stat st;
    char *buf = NULL;
    size_t n = 0, cap;
    int fd = -1;
    tg_err_t err;

    err = open_checked(path, key, forbidden, &fd, &st, diag);
    if (err != TG_OK) {
        goto out;
    }
    show_name(file, sizeof(file), path);
    if (st.st_size < 0 || (unsigned long long) st.st_size > max) {
        err = tg__fail(diag, TG_CONFIG, "%s%s%s: larger than %zu bytes",
                       key != NULL ? key : "", key != NULL ? ": " : "", file,
                       max);
        goto out;
    }
    /* Read what fstat promised and one byte more, to see a growing file. */
    cap = (size_t) st.st_size + 1;
    buf = malloc(cap + 1);
    if (buf == NULL) {
        err = tg__fail(diag, TG_NOMEM, "%s: out of memory", file);
        goto out;
    }
    while (n < cap) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            err = tg__fail(diag, TG_CONFIG, "%s: %s", file,
                           strerror_r(errno, ebuf, sizeof(ebuf)));
            goto out;
        }
        if (r == 0) {
            break;
        }
        n += (size_t) r;
    }
    if (n > max || n == cap) {
        err = tg__fail(diag, TG_CONFIG, "%s: changed while it was read", file);
        goto out;
    }
    buf[n] = '\0';
    *text = buf;
    *len = n;
    buf = NULL;
out:
    free(buf);
    if (fd >= 0) {
        close(fd);
    }
    return err;
}

/* ---------------------------------------------------------------------- */
/* Secret files                                                           */
/* ---------------------------------------------------------------------- */

tg_err_t
tg_secret_file_check(const char *path, const char *key, tg_diag_t *diag)
{
    int fd = -1;
    tg_err_t err;

    err = open_checked(path, key != NULL ? key : "secret file", 077u, &fd, NULL,
                       diag);
    if (fd >= 0) {
        close(fd);
    }
    return err;
}

tg_err_t
tg_secret_file_read(const char *path, const char *key, char **out,
                    tg_diag_t *diag)
{
    /* The secret, its "\r\n", and one byte to see that it is too long. */
    char buf[TG_SECRET_MAX + 3];
    char file[TG_CONFIG_NAME_SHOWN + 1];
    char ebuf[128];
    size_t n = 0, i;
    int fd = -1;
    tg_err_t err;

    if (key == NULL) {
        key = "secret file";
    }
    if (out == NULL) {
        return tg__fail(diag, TG_INTERNAL, "%s: nowhere to put the secret",
                        key);
    }
    *out = NULL;
    show_name(file, sizeof(file), path);
    err = open_checked(path, key, 077u, &fd, NULL, diag);
    if (err != TG_OK) {
        goto out;
    }
    while (n < sizeof(buf)) {
        ssize_t r = read(fd, buf + n, sizeof(buf) - n);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            err = tg__fail(diag, TG_CONFIG, "%s: %s: %s", key, file,
                           strerror_r(errno, ebuf, sizeof(ebuf)));
            goto out;
        }
        if (r == 0) {
            break;
        }
        n += (size_t) r;
    }
    if (n > 0 && buf[n - 1] == '\n') {
        n--;
        if (n > 0 && buf[n - 1] == '\r') {
            n--;
        }
    }
    if (n == 0) {
        err = tg__fail(diag, TG_CONFIG, "%s: %s is empty", key, file);
        goto out;
    }
    if (n > TG_SECRET_MAX) {
        err = tg__fail(diag, TG_CONFIG,
                       "%s: %s: the secret is longer than %d bytes", key, file,
                       TG_SECRET_MAX);
        goto out;
    }
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char) buf[i];
        if (c < 0x20 || c == 0x7f) {
            err = tg__fail(diag, TG_CONFIG,
                           "%s: %s: the secret has a control byte at offset "
                           "%zu",
                           key, file, i);
            goto out;
        }
    }
    *out = malloc(n + 1);
    if (*out == NULL) {
        err = tg__fail(diag, TG_NOMEM, "%s: out of memory", key);
        goto out;
    }
    memcpy(*out, buf, n);
    (*out)[n] = '\0';
out:
    explicit_bzero(buf, sizeof(buf));
    if (fd >= 0) {
        close(fd);
    }
    return err;
}

/* ---------------------------------------------------------------------- */
/* The key = value text                                                   */
/* ---------------------------------------------------------------------- */

/*
 * One line, NUL-free, without its newline, in a buffer we may rewrite
 * (the unquoted value is shorter than its quoted form).
 */
static tg_err_t
parse_line(tg_config_t *cfg, char *line, size_t len, const char *where,
           tg_diag_t *diag)
{
    char shown[TG_CONFIG_NAME_SHOWN + 1];
    char *end = line + len;
    char *p = line, *key, *key_end, *eq, *val, *w;

    while (p < end && (*p == ' ' || *p == '\t')) {
        p++;
    }
    if (p == end || *p == '#') {
        return TG_OK;
    }
    eq = memchr(p, '=', (size_t) (end - p));
    if (eq == NULL) {
        return tg__fail(diag, TG_CONFIG, "%s: expected key = value", where);
    }
    key = p;
    key_end = eq;
    while (key_end > key && (key_end[-1] == ' ' || key_end[-1] == '\t')) {
        key_end--;
    }
    if (key_end == key) {
        return tg__fail(diag, TG_CONFIG, "%s: expected key = value", where);
    }
    *key_end = '\0';
    show_name(shown, sizeof(shown), key);

    p = eq + 1;
    while (p < end && (*p == ' ' || *p == '\t')) {
        p++;
    }
    val = p;
    if (p < end && *p == '"') {
        /* A quoted value: \" and \\ are the only escapes. */
        w = val;
        p++;
        for (;;) {
            if (p == end) {
                return tg__fail(diag, TG_CONFIG,
                                "%s: %s: unterminated quoted value", where,
                                shown);
            }
            if (*p == '"') {
                p++;
                break;
            }
            if (*p == '\\') {
                if (p + 1 == end || (p[1] != '"' && p[1] != '\\')) {
                    return tg__fail(diag, TG_CONFIG,
                                    "%s: %s: only \\\" and \\\\ are escapes "
                                    "in a quoted value",
                                    where, shown);
                }
                p++;
            }
            *w++ = *p++;
        }
        *w = '\0';
        /* After the closing quote: blanks, then maybe a comment. */
        while (p < end && (*p == ' ' || *p == '\t')) {
            p++;
        }
        if (p < end && !(*p == '#' && (p[-1] == ' ' || p[-1] == '\t'))) {
            return tg__fail(diag, TG_CONFIG,
                            "%s: %s: unexpected text after the quoted value",
                            where, shown);
        }
    } else {
        /* '#' starts a comment only after a blank (p[-1] is at least '='). */
        for (w = val; w < end; w++) {
            if (*w == '#' && (w[-1] == ' ' || w[-1] == '\t')) {
                break;
            }
        }
        while (w > val && (w[-1] == ' ' || w[-1] == '\t')) {
            w--;
        }
        *w = '\0';
    }
    return tg_config_set(cfg, key, val, where, diag);
}

tg_err_t
tg__config_parse_text(tg_config_t *cfg, const char *text, size_t len,
                      const char *name, tg_diag_t *diag)
{
    char shown[TG_CONFIG_NAME_SHOWN + 1];
    char where[TG_CONFIG_NAME_SHOWN + 32];
    char *line = NULL;
    size_t off = 0;
    unsigned long lineno = 0;
    tg_err_t err = TG_OK;

    show_name(shown, sizeof(shown), name != NULL ? name : "config");
    if (cfg == NULL || (text == NULL && len > 0)) {
        err = tg__fail(diag, TG_INTERNAL, "%s: nothing to parse", shown);
        goto out;
    }
    if (len > TG_CONFIG_FILE_MAX) {
        err = tg__fail(diag, TG_CONFIG, "%s: larger than %d bytes", shown,
                       TG_CONFIG_FILE_MAX);
        goto out;
    }
    line = malloc(TG_CONFIG_LINE_MAX + 1);
    if (line == NULL) {
        err = tg__fail(diag, TG_NOMEM, "%s: out of memory", shown);
        goto out;
    }
    while (off < len) {
        const char *start = text + off;
        const char *nl = memchr(start, '\n', len - off);
        size_t n = nl != NULL ? (size_t) (nl - start) : len - off;

        off += n + (nl != NULL ? 1 : 0);
        lineno++;
        snprintf(where, sizeof(where), "%s:%lu", shown, lineno);
        if (n > 0 && start[n - 1] == '\r') {
            n--;
        }
        if (n > TG_CONFIG_LINE_MAX) {
            err = tg__fail(diag, TG_CONFIG, "%s: line longer than %d bytes",
                           where, TG_CONFIG_LINE_MAX);
            goto out;
        }
        if (memchr(start, '\0', n) != NULL) {
            err = tg__fail(diag, TG_CONFIG, "%s: NUL byte in the line", where);
            goto out;
        }
        memcpy(line, start, n);
        line[n] = '\0';
        err = parse_line(cfg, line, n, where, diag);
        if (err != TG_OK) {
            goto out;
        }
    }
out:
    free(line);
    return err;
}

tg_err_t
tg_config_load_file(tg_config_t *cfg, const char *path, tg_diag_t *diag)
{
    char *text = NULL;
    size_t len = 0;
    tg_err_t err;

    if (cfg == NULL) {
        return tg__fail(diag, TG_INTERNAL, "no config to load into");
    }
    err = tg__file_read_checked(path, NULL, 022u, TG_CONFIG_FILE_MAX, &text,
                                &len, diag);
    if (err != TG_OK) {
        goto out;
    }
    err = tg__config_parse_text(cfg, text, len, path, diag);
out:
    free(text);
    return err;
}

/*
 * "key=value", or a bare boolean key meaning yes (PAM style "debug").  The
 * value is taken as is: libpam has already split the line, and a value
 * with spaces comes from a [bracketed] argument.
 */
tg_err_t
tg_config_load_args(tg_config_t *cfg, int argc, const char **argv,
                    tg_diag_t *diag)
{
    char shown[TG_CONFIG_NAME_SHOWN + 1];
    char *key = NULL;
    const tg_key_t *k;
    int i;
    tg_err_t err = TG_OK;

    if (cfg == NULL || (argc > 0 && argv == NULL)) {
        return tg__fail(diag, TG_INTERNAL, "argument: nothing to parse");
    }
    for (i = 0; i < argc; i++) {
        const char *arg = argv[i];
        const char *eq;

        if (arg == NULL) {
            err = tg__fail(diag, TG_CONFIG, "argument: missing argument");
            goto out;
        }
        eq = strchr(arg, '=');
        if (eq == NULL) {
            k = key_find(arg);
            if (k != NULL && k->kind == KIND_BOOL) {
                err = tg_config_set(cfg, arg, "yes", "argument", diag);
            } else if (k != NULL) {
                err = tg__fail(diag, TG_CONFIG,
                               "argument: bad value for %s: a value is "
                               "required (%s=VALUE)",
                               k->name, k->name);
            } else {
                err = tg__fail(diag, TG_CONFIG, "argument: unknown option %s",
                               show_name(shown, sizeof(shown), arg));
            }
        } else {
            key = strndup(arg, (size_t) (eq - arg));
            if (key == NULL) {
                err = tg__fail(diag, TG_NOMEM, "argument: out of memory");
                goto out;
            }
            err = tg_config_set(cfg, key, eq + 1, "argument", diag);
            free(key);
            key = NULL;
        }
        if (err != TG_OK) {
            goto out;
        }
    }
out:
    free(key);
    return err;
}

/* ---------------------------------------------------------------------- */
/* Validation                                                             */
/* ---------------------------------------------------------------------- */

/* 127.0.0.0/8, ::1 (curl gives it as "[::1]") or localhost, which curl
 * resolves to loopback itself. */
static int
is_loopback_host(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    char buf[INET6_ADDRSTRLEN + 2];
    size_t len = strlen(host);

    if (strcmp(host, "localhost") == 0) {
        return 1;
    }
    if (inet_pton(AF_INET, host, &a4) == 1) {
        return (ntohl(a4.s_addr) >> 24) == 127;
    }
    if (len > 2 && len < sizeof(buf) && host[0] == '[' &&
        host[len - 1] == ']') {
        memcpy(buf, host + 1, len - 2);
        buf[len - 2] = '\0';
        return inet_pton(AF_INET6, buf, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
    }
    return 0;
}

static tg_err_t
validate_url(const tg_config_t *cfg, tg_diag_t *diag)
{
    CURLU *u = NULL;
    char *scheme = NULL, *host = NULL, *path = NULL, *part = NULL;
    CURLUcode rc;
    tg_err_t err = TG_OK;

    if (cfg->url == NULL || cfg->url[0] == '\0') {
        err = tg__fail(diag, TG_CONFIG, "url is not set");
        goto out;
    }
    /* curl drops an empty "?" or "#"; we refuse them all the same. */
    if (strpbrk(cfg->url, "?#") != NULL) {
        err = tg__fail(diag, TG_CONFIG,
                       "url: must not have a query or a fragment");
        goto out;
    }
    if (has_ctl(cfg->url) || strpbrk(cfg->url, " \t") != NULL) {
        err = tg__fail(diag, TG_CONFIG, "url: has spaces or control bytes");
        goto out;
    }
    u = curl_url();
    if (u == NULL) {
        err = tg__fail(diag, TG_NOMEM, "url: out of memory");
        goto out;
    }
    rc = curl_url_set(u, CURLUPART_URL, cfg->url, 0);
    if (rc != CURLUE_OK) {
        err = tg__fail(diag, TG_CONFIG, "url: %s", curl_url_strerror(rc));
        goto out;
    }
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK) {
        err = tg__fail(diag, TG_CONFIG, "url: needs a scheme and a host");
        goto out;
    }
    if (curl_url_get(u, CURLUPART_USER, &part, 0) == CURLUE_OK ||
        curl_url_get(u, CURLUPART_PASSWORD, &part, 0) == CURLUE_OK ||
        curl_url_get(u, CURLUPART_OPTIONS, &part, 0) == CURLUE_OK) {
        err = tg__fail(diag, TG_CONFIG,
                       "url: must not contain a user name or a password");
        goto out;
    }
    if (strcmp(scheme, "https") == 0) {
        /* Always fine. */
    } else if (strcmp(scheme, "http") == 0) {
        if (!is_loopback_host(host) && !cfg->allow_insecure_http) {
            err = tg__fail(diag, TG_CONFIG,
                           "url: plain http:// is refused for a non-loopback "
                           "host; use https:// or set allow_insecure_http = "
                           "yes");
            goto out;
        }
    } else {
        err = tg__fail(diag, TG_CONFIG,
                       "url: the scheme must be https:// (or http:// on "
                       "loopback)");
        goto out;
    }
    if (strcmp(path, "/") != 0 && path[0] != '\0') {
        err = tg__fail(diag, TG_CONFIG,
                       "url: must have no path (only scheme, host and port); "
                       "%s",
                       cfg->api == TG_API_LOOKER
                           ? "the API path comes from looker_api_version"
                           : "the API path comes from insight_base_path");
        goto out;
    }
out:
    curl_free(part);
    curl_free(path);
    curl_free(host);
    curl_free(scheme);
    curl_url_cleanup(u);
    return err;
}

/* The struct may have been filled by code rather than tg_config_set():
 * check every range and string again. */
static tg_err_t
validate_range(const tg_config_t *cfg, tg_diag_t *diag)
{
    const struct {
        const char *key;
        long value;
    } nums[] = {
        {"connect_timeout", cfg->connect_timeout_ms},
        {"timeout", cfg->timeout_ms},
        {"max_response_bytes", cfg->max_response_bytes},
        {"token_max_age", cfg->token_max_age},
        {"token_lifetime_max", cfg->token_lifetime_max},
        {"retry_after_max", cfg->retry_after_max},
    };
    size_t i;

    for (i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
        const tg_key_t *k = key_find(nums[i].key);
        if (nums[i].value < k->lo || nums[i].value > k->hi) {
            return tg__fail(diag, TG_CONFIG, "%s is out of range", k->name);
        }
    }
    if ((unsigned) cfg->api > TG_API_LOOKER ||
        (unsigned) cfg->insight_validate > TG_INSIGHT_VALIDATE_BOTH ||
        (unsigned) cfg->looker_auth_scheme > TG_LOOKER_SCHEME_BEARER ||
        (unsigned) cfg->require_groups_mode > TG_GROUPS_ALL ||
        (unsigned) cfg->user_attribute > TG_BIND_CN) {
        return tg__fail(diag, TG_CONFIG, "a choice field is out of range");
    }
    if (cfg->looker_api_version == NULL ||
        check_api_version(cfg->looker_api_version) != NULL) {
        return tg__fail(diag, TG_CONFIG, "looker_api_version is not valid");
    }
    if (cfg->insight_base_path == NULL ||
        check_base_path(cfg->insight_base_path) != NULL) {
        return tg__fail(diag, TG_CONFIG, "insight_base_path is not valid");
    }
    if (cfg->n_require_groups > 0 && cfg->require_groups == NULL) {
        return tg__fail(diag, TG_CONFIG, "require_groups is not valid");
    }
    if (cfg->min_uid < 1 || cfg->min_uid > TG_MIN_UID_MAX) {
        return tg__fail(diag, TG_CONFIG, "min_uid is out of range");
    }
    /* connect_timeout above timeout is allowed: the total timeout bounds
     * the connect phase too (libcurl applies the smaller of the two), so a
     * one-off "-o timeout=1" needs no matching connect_timeout. */
    return TG_OK;
}

static tg_err_t
validate_exists(const char *path, const char *key, int dir, tg_diag_t *diag)
{
    char file[TG_CONFIG_NAME_SHOWN + 1];
    char ebuf[128];
    struct stat st;

    show_name(file, sizeof(file), path);
    if (stat(path, &st) != 0) {
        return tg__fail(diag, TG_CONFIG, "%s: %s: %s", key, file,
                        strerror_r(errno, ebuf, sizeof(ebuf)));
    }
    if (dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)) {
        return tg__fail(diag, TG_CONFIG, "%s: %s: is not a %s", key, file,
                        dir ? "directory" : "regular file");
    }
    return TG_OK;
}

tg_err_t
tg_config_validate(const tg_config_t *cfg, tg_diag_t *diag)
{
    int fd = -1;
    tg_err_t err;

    if (cfg == NULL) {
        return tg__fail(diag, TG_INTERNAL, "no config to validate");
    }
    err = validate_url(cfg, diag);
    if (err != TG_OK) {
        goto out;
    }
    err = validate_range(cfg, diag);
    if (err != TG_OK) {
        goto out;
    }
    if (cfg->ca_file != NULL) {
        err = validate_exists(cfg->ca_file, "ca_file", 0, diag);
        if (err != TG_OK) {
            goto out;
        }
    }
    if (cfg->ca_path != NULL) {
        err = validate_exists(cfg->ca_path, "ca_path", 1, diag);
        if (err != TG_OK) {
            goto out;
        }
    }
    if (cfg->pinned_pubkey != NULL && strncmp(cfg->pinned_pubkey, TG_PIN_PREFIX,
                                              strlen(TG_PIN_PREFIX)) != 0) {
        err = validate_exists(cfg->pinned_pubkey, "pinned_pubkey", 0, diag);
        if (err != TG_OK) {
            goto out;
        }
    }
    if (cfg->user_map_file != NULL) {
        err = open_checked(cfg->user_map_file, "user_map_file", 022u, &fd, NULL,
                           diag);
        if (err != TG_OK) {
            goto out;
        }
    }
    if (cfg->client_secret_file != NULL) {
        err = tg_secret_file_check(cfg->client_secret_file,
                                   "client_secret_file", diag);
        if (err != TG_OK) {
            goto out;
        }
    }
    if (cfg->embed_secret_file != NULL) {
        err = tg_secret_file_check(cfg->embed_secret_file, "embed_secret_file",
                                   diag);
        if (err != TG_OK) {
            goto out;
        }
    }
out:
    if (fd >= 0) {
        close(fd);
    }
    return err;
}

long
tg_config_token_lifetime_max(const tg_config_t *cfg)
{
    if (cfg->token_lifetime_max > 0) {
        return cfg->token_lifetime_max;
    }
    return cfg->api == TG_API_LOOKER ? TG_LOOKER_TOKEN_LIFETIME
                                     : cfg->token_max_age;
}
