/* SPDX-License-Identifier: MIT */
/*
 * pam_tokengate.c - the PAM module: gate logins on FICO Xpress Insight and
 * Looker tokens or API credentials (pam_tokengate(8)).
 *
 *   auth     the password is a bearer token or CLIENT_ID:SECRET; credentials
 *            are exchanged for a token, the token is validated (one client,
 *            one connection), the identity must bind to PAM_USER and pass the
 *            rules.  On success the identity goes to a root-only state file
 *            and, for this handle, to pam_set_data.
 *   account  the rules again, on the identity of this handle or of the state
 *            file (sshd runs account in another process than auth, and not
 *            after auth at all for public keys); no network call.
 *   session  optional TOKENGATE_TOKEN export and Looker workspace switch on
 *            open, optional Looker logout on close.
 *
 * Host-process rules (SECURITY.md 3.10): no per-login state in globals (only
 * pthread_once flags); libcurl is initialised once by libtokengate and never
 * cleaned up; jansson's hash seed is set once; no setlocale, no signals, no
 * stdio, no setenv; every copy of a password or token is wiped on every
 * path.  Logging goes through pam_syslog only, and never includes a token,
 * a secret or a hash: tokens appear as fp=<first 8 hex of SHA-256>.
 */
#include "pam_tokengate.h"

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include <security/pam_ext.h>
#include <security/pam_modules.h>

/* Longest password we look at: open-bastion's cap, twice misc_conv's. */
#define TG_PAM_PASSWORD_MAX 8192
/* Longest prompt= text. */
#define TG_PAM_PROMPT_MAX 256
/* offline_cache= at most a year; offline_max_failures= at most 1000. */
#define TG_PAM_OFFLINE_CACHE_MAX (366L * 86400L)
#define TG_PAM_OFFLINE_FAILURES_MAX 1000L
/* A Looker workspace id, as libtokengate checks it. */
#define TG_PAM_WORKSPACE_MAX 64
/* state_dir=, offline_dir=: a path, with room for a file name. */
#define TG_PAM_DIR_MAX 3800
/* How much of a user, service or id a log line shows. */
#define TG_PAM_SHOWN 65
/* Longer user names are not logged (they may be mistyped passwords). */
#define TG_PAM_USER_SHOWN_MAX 32
/* Room for a reason in a log line: a tg_diag_t message and a remark. */
#define TG_PAM_WHY 640

#define TG_PAM_DEFAULT_CONF "/etc/tokengate.conf"
#define TG_PAM_DEFAULT_PROMPT "Token or API credentials: "
#define TG_PAM_DEFAULT_STATE_DIR "/run/tokengate"
#define TG_PAM_DEFAULT_OFFLINE_DIR "/var/cache/tokengate"
#define TG_PAM_DEFAULT_OFFLINE_FAILURES 5L

/* The pam_set_data key of what auth leaves for account and session. */
#define TG_PAM_DATA_LOGIN "pam_tokengate_login"
/* The session environment variable export_token sets. */
#define TG_PAM_ENV_TOKEN "TOKENGATE_TOKEN"

/* The password sshd sends for an invalid or denied user, repeated to the
 * typed length (openssh-portable auth-pam.c fake_password()). */
#define TG_PAM_SSHD_JUNK "\b\n\r\177INCORRECT"
#define TG_PAM_SSHD_JUNK_HEAD "\b\n\r\177"

/* The only symbols the module exports (with the version script; the build
 * uses -fvisibility=hidden). */
#define TG_PAM_EXPORT __attribute__((visibility("default")))

/* ---------------------------------------------------------------------- */
/* Types                                                                  */
/* ---------------------------------------------------------------------- */

typedef enum tg_pam_phase {
    TG_PAM_AUTH = 0,
    TG_PAM_ACCOUNT,
    TG_PAM_SESSION,
    TG_PAM_PASSWORD
} tg_pam_phase_t;

typedef enum tg_pam_pwmode {
    TG_PAM_PW_AUTO = 0,
    TG_PAM_PW_TOKEN,
    TG_PAM_PW_CREDENTIALS
} tg_pam_pwmode_t;

/* The module's own arguments (strings borrowed from argv) and the
 * libtokengate config built from the file and the remaining arguments. */
typedef struct tg_pam_opts {
    tg_config_t *cfg;
    const char *conf;
    int conf_given;
    int url_given;
    int debug;
    int quiet;
    int use_first_pass;
    int try_first_pass;
    const char *prompt;
    tg_pam_pwmode_t password;
    int unavailable_ignore;
    const char *state_dir;
    int without_state_ignore;
    int export_token;
    const char *workspace;
    int logout_on_close;
    long offline_cache;
    const char *offline_dir;
    long offline_max_failures;
} tg_pam_opts_t;

/* One call of a pam_sm_* hook. */
typedef struct tg_pam_ctx {
    pam_handle_t *pamh;
    tg_pam_phase_t phase;
    int flags;
    tg_pam_opts_t opts;
    const char *user;          /* PAM_USER, borrowed from libpam */
    char ushown[TG_PAM_SHOWN]; /* sanitized for logs */
    char sshown[TG_PAM_SHOWN]; /* PAM_SERVICE, sanitized */
} tg_pam_ctx_t;

/* One of the module's own arguments: a flag (sets the int at flag in
 * tg_pam_opts_t) or name=VALUE (checked and stored by parse). */
typedef struct tg_pam_arg {
    const char *name;
    size_t flag;
    int (*parse)(tg_pam_ctx_t *c, const char *value);
} tg_pam_arg_t;

/* What auth leaves for account and session in this handle. */
typedef struct tg_pam_login {
    char *user;
    char *token;          /* secret; NULL after an offline login */
    int from_credentials; /* the module obtained the token itself */
    tg_identity_t *identity;
    time_t expires_at;
} tg_pam_login_t;

/* One auth attempt: the password taken apart, and what the server (or the
 * offline cache) said about it. */
typedef struct tg_pam_attempt {
    const char *password;         /* as typed; borrowed */
    char *copy;                   /* secret: the password, cut at the colon */
    int creds;                    /* CLIENT_ID:SECRET rather than a token */
    const char *cid;              /* into copy */
    const char *secret;           /* into copy */
    const char *token;            /* copy, or tok.value after the exchange */
    char fp[TG_FINGERPRINT_SIZE]; /* of a token the server took */
    char client_fp[TG_FINGERPRINT_SIZE]; /* of the client id */
    tg_client_t *cl;
    tg_token_t tok;    /* the exchange's token */
    tg_identity_t *id; /* the validation's, or the offline cache's */
    int offline;       /* the offline cache answered */
    time_t expires_at; /* the offline cache's expiry */
} tg_pam_attempt_t;

/* ---------------------------------------------------------------------- */
/* Prototypes of statics                                                  */
/* ---------------------------------------------------------------------- */

static void curl_check_once(const tg_pam_ctx_t *c);
static void tg_pam_init_once(void);
static const char *phase_name(tg_pam_phase_t phase);
static const char *pam_code_name(int rc);
static int pam_code(const tg_pam_ctx_t *c, tg_err_t err);
static int err_is_outage(tg_err_t err);
static int err_allows_offline(tg_err_t err);
static void tg_log(const tg_pam_ctx_t *c, int prio, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void log_fail(const tg_pam_ctx_t *c, int prio, int rc, tg_err_t err,
                     const char *reason, const tg_diag_t *diag, const char *fp,
                     const char *client_fp);
static long us_since(const struct timespec *t0);
static const char *arg_value(const char *arg, const char *name);
static int parse_long(const char *s, long lo, long hi, long *out);
static int opt_error(tg_pam_ctx_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int opts_own(tg_pam_ctx_t *c, const char *arg, int *consumed);
static int arg_conf(tg_pam_ctx_t *c, const char *v);
static int arg_prompt(tg_pam_ctx_t *c, const char *v);
static int arg_password(tg_pam_ctx_t *c, const char *v);
static int arg_either(tg_pam_ctx_t *c, const char *name, const char *v,
                      const char *off, const char *on, int *out);
static int arg_on_unavailable(tg_pam_ctx_t *c, const char *v);
static int arg_dir(tg_pam_ctx_t *c, const char *name, const char *v,
                   const char **out);
static int arg_state_dir(tg_pam_ctx_t *c, const char *v);
static int arg_account_without_state(tg_pam_ctx_t *c, const char *v);
static int arg_workspace(tg_pam_ctx_t *c, const char *v);
static int arg_offline_cache(tg_pam_ctx_t *c, const char *v);
static int arg_offline_dir(tg_pam_ctx_t *c, const char *v);
static int arg_offline_max_failures(tg_pam_ctx_t *c, const char *v);
static int opts_load(tg_pam_ctx_t *c, int argc, const char **argv);
static int ctx_open(tg_pam_ctx_t *c, pam_handle_t *pamh, tg_pam_phase_t phase,
                    int flags, int argc, const char **argv);
static void ctx_close(tg_pam_ctx_t *c);
static int ctx_user(tg_pam_ctx_t *c, int prompt);
static int env_unsafe(void);
static int is_sshd_fake(const char *pw);
static void login_free(tg_pam_login_t *l);
static void login_cleanup(pam_handle_t *pamh, void *data, int error_status);
static tg_pam_login_t *login_get(const tg_pam_ctx_t *c);
static void id_label(char *buf, size_t size, const tg_identity_t *id);
static int check_password(tg_pam_ctx_t *c, const char *pw);
static int offline_try(tg_pam_ctx_t *c, const char *password,
                       tg_err_t online_err, const tg_diag_t *online_diag,
                       tg_identity_t **id_out, time_t *expires_out);
static int bind_and_rules(tg_pam_ctx_t *c, const tg_identity_t *id,
                          const char *fp, int forget_on_denial);
static void deny_user(tg_pam_ctx_t *c, const tg_identity_t *id,
                      const char *reason);
static int auth_finish(tg_pam_ctx_t *c, tg_identity_t **id, const char *token,
                       int from_credentials, int offline, time_t expires_at,
                       const char *password, const char *fp);
static int auth_once(tg_pam_ctx_t *c, const char *password);
static int split_password(tg_pam_ctx_t *c, tg_pam_attempt_t *a);
static int refuse_unsafe_env(tg_pam_ctx_t *c, const tg_pam_attempt_t *a);
static int backoff_gate(tg_pam_ctx_t *c, tg_pam_attempt_t *a);
static void backoff_note(tg_pam_ctx_t *c, const tg_pam_attempt_t *a,
                         tg_err_t err);
static int open_client(tg_pam_ctx_t *c, tg_pam_attempt_t *a);
static tg_err_t ask_server(tg_pam_ctx_t *c, tg_pam_attempt_t *a);
static int server_failed(tg_pam_ctx_t *c, tg_pam_attempt_t *a, tg_err_t err);
static void forget_refused_offline_entry(tg_pam_ctx_t *c, const char *password);
static time_t login_expiry(const tg_pam_ctx_t *c, const tg_pam_attempt_t *a);
static int account_without_state(tg_pam_ctx_t *c, int managed, const char *why);
static int account_config_broken(tg_pam_ctx_t *c);
static int session_env(tg_pam_ctx_t *c, const tg_pam_login_t *login,
                       const char *fp);
static int session_workspace(tg_pam_ctx_t *c, const tg_pam_login_t *login,
                             const char *fp);

/* The module's own arguments (pam_tokengate(8)); the others go to
 * libtokengate's configuration. */
static const tg_pam_arg_t tg_pam_args[] = {
    {"debug", offsetof(tg_pam_opts_t, debug), NULL},
    {"quiet", offsetof(tg_pam_opts_t, quiet), NULL},
    {"use_first_pass", offsetof(tg_pam_opts_t, use_first_pass), NULL},
    {"try_first_pass", offsetof(tg_pam_opts_t, try_first_pass), NULL},
    {"export_token", offsetof(tg_pam_opts_t, export_token), NULL},
    {"logout_on_close", offsetof(tg_pam_opts_t, logout_on_close), NULL},
    {"conf", 0, arg_conf},
    {"prompt", 0, arg_prompt},
    {"password", 0, arg_password},
    {"on_unavailable", 0, arg_on_unavailable},
    {"state_dir", 0, arg_state_dir},
    {"account_without_state", 0, arg_account_without_state},
    {"workspace", 0, arg_workspace},
    {"offline_cache", 0, arg_offline_cache},
    {"offline_dir", 0, arg_offline_dir},
    {"offline_max_failures", 0, arg_offline_max_failures},
    {NULL, 0, NULL},
};

static pthread_once_t tg_pam_once = PTHREAD_ONCE_INIT;
/* Set once the libcurl features were checked (and logged if lacking). */
static int tg_pam_curl_checked;

/* ---------------------------------------------------------------------- */
/* Process-wide, once                                                     */
/* ---------------------------------------------------------------------- */

/* Warn once per process when libcurl lacks what a host process needs. */
static void
curl_check_once(const tg_pam_ctx_t *c)
{
    const curl_version_info_data *v;

    if (__atomic_exchange_n(&tg_pam_curl_checked, 1, __ATOMIC_SEQ_CST) != 0) {
        return;
    }
    v = curl_version_info(CURLVERSION_NOW);
    if (v == NULL) {
        return;
    }
#ifdef CURL_VERSION_THREADSAFE
    if ((v->features & CURL_VERSION_THREADSAFE) == 0) {
        pam_syslog(c->pamh, LOG_WARNING,
                   "libcurl %s: curl_global_init is not thread-safe in this "
                   "build; threaded hosts may race it",
                   v->version);
    }
#endif
    if ((v->features & CURL_VERSION_ASYNCHDNS) == 0) {
        pam_syslog(c->pamh, LOG_WARNING,
                   "libcurl %s has no asynchronous resolver: with no signals "
                   "(CURLOPT_NOSIGNAL), name lookups are not bounded by "
                   "connect_timeout",
                   v->version);
    }
}

static void
tg_pam_init_once(void)
{
    /* jansson seeds its hash function on first use, racing other threads
     * of a threaded host; seed it once here, before any JSON work.  Never
     * json_set_alloc_funcs() or setlocale(): those belong to the host. */
    json_object_seed(0);
}

/* ---------------------------------------------------------------------- */
/* Errors and logging                                                     */
/* ---------------------------------------------------------------------- */

static const char *
phase_name(tg_pam_phase_t phase)
{
    switch (phase) {
    case TG_PAM_AUTH:
        return "auth";
    case TG_PAM_ACCOUNT:
        return "account";
    case TG_PAM_SESSION:
        return "session";
    case TG_PAM_PASSWORD:
        return "password";
    }
    return "?";
}

static const char *
pam_code_name(int rc)
{
    switch (rc) {
    case PAM_SUCCESS:
        return "PAM_SUCCESS";
    case PAM_AUTH_ERR:
        return "PAM_AUTH_ERR";
    case PAM_AUTHINFO_UNAVAIL:
        return "PAM_AUTHINFO_UNAVAIL";
    case PAM_IGNORE:
        return "PAM_IGNORE";
    case PAM_PERM_DENIED:
        return "PAM_PERM_DENIED";
    case PAM_USER_UNKNOWN:
        return "PAM_USER_UNKNOWN";
    case PAM_ACCT_EXPIRED:
        return "PAM_ACCT_EXPIRED";
    case PAM_SERVICE_ERR:
        return "PAM_SERVICE_ERR";
    case PAM_BUF_ERR:
        return "PAM_BUF_ERR";
    case PAM_CONV_ERR:
        return "PAM_CONV_ERR";
    case PAM_MAXTRIES:
        return "PAM_MAXTRIES";
    case PAM_SESSION_ERR:
        return "PAM_SESSION_ERR";
    case PAM_SYSTEM_ERR:
        return "PAM_SYSTEM_ERR";
    default:
        return "PAM_?";
    }
}

/*
 * The one mapping of libtokengate errors to PAM codes (pam_tokengate(8),
 * RETURN VALUES).  A definitive answer of the server that is not a success
 * (401, 404, 422, a rejected input, an identity that does not bind) is an
 * authentication failure; 403 and the rules are a denial; only outages
 * (unreachable, timeout, TLS, protocol violation, 429) may become PAM_IGNORE,
 * and only with on_unavailable=ignore.  Never PAM_SUCCESS for an error.
 */
static int
pam_code(const tg_pam_ctx_t *c, tg_err_t err)
{
    switch (err) {
    case TG_OK:
        return PAM_SUCCESS;
    case TG_CONFIG:
    case TG_INTERNAL:
        return PAM_SERVICE_ERR;
    case TG_NOMEM:
        return PAM_BUF_ERR;
    default:
        break;
    }
    if (c->phase == TG_PAM_SESSION) {
        return PAM_SESSION_ERR;
    }
    switch (err) {
    case TG_FORBIDDEN:
        return PAM_PERM_DENIED;
    case TG_INPUT:
    case TG_REJECTED:
    case TG_TOKEN_INVALID:
    case TG_IDENTITY:
    case TG_NOT_FOUND:
    case TG_VALIDATION:
        return c->phase == TG_PAM_ACCOUNT ? PAM_PERM_DENIED : PAM_AUTH_ERR;
    case TG_RATE_LIMITED:
    case TG_UNAVAILABLE:
    case TG_TIMEOUT:
    case TG_TLS:
    case TG_PROTOCOL:
        return c->opts.unavailable_ignore ? PAM_IGNORE : PAM_AUTHINFO_UNAVAIL;
    default:
        return PAM_SERVICE_ERR;
    }
}

/* The errors on_unavailable applies to. */
static int
err_is_outage(tg_err_t err)
{
    return err == TG_RATE_LIMITED || err == TG_UNAVAILABLE ||
           err == TG_TIMEOUT || err == TG_TLS || err == TG_PROTOCOL;
}

/* The errors after which the offline cache may be used: the server could
 * not be reached at all.  Never after an answer, whatever it was. */
static int
err_allows_offline(tg_err_t err)
{
    return err == TG_UNAVAILABLE || err == TG_TIMEOUT || err == TG_TLS;
}

/* pam_syslog, minus LOG_DEBUG without "debug" and LOG_INFO with "quiet". */
static void
tg_log(const tg_pam_ctx_t *c, int prio, const char *fmt, ...)
{
    va_list ap;

    if (prio == LOG_DEBUG && !c->opts.debug) {
        return;
    }
    if (prio == LOG_INFO && c->opts.quiet) {
        return;
    }
    va_start(ap, fmt);
    pam_vsyslog(c->pamh, prio, fmt, ap);
    va_end(ap);
}

/*
 * The failure line: "<phase> failed: user=U service=S err=TG_X
 * reason="..." [http=N] [retry_after=Ns] [fp=F] [client_fp=F] result=PAM_X".
 */
static void
log_fail(const tg_pam_ctx_t *c, int prio, int rc, tg_err_t err,
         const char *reason, const tg_diag_t *diag, const char *fp,
         const char *client_fp)
{
    char why[TG_PAM_WHY];
    char http[32] = "", retry[40] = "", f1[24] = "", f2[32] = "";

    tg_pam_sanitize(why, sizeof(why),
                    reason != NULL && reason[0] != '\0' ? reason
                                                        : tg_strerror(err));
    if (diag != NULL && diag->http_status > 0) {
        snprintf(http, sizeof(http), " http=%ld", diag->http_status);
    }
    if (diag != NULL && diag->retry_after >= 0 && err == TG_RATE_LIMITED) {
        snprintf(retry, sizeof(retry), " retry_after=%lds", diag->retry_after);
    }
    if (fp != NULL && fp[0] != '\0') {
        snprintf(f1, sizeof(f1), " fp=%s", fp);
    }
    if (client_fp != NULL && client_fp[0] != '\0') {
        snprintf(f2, sizeof(f2), " client_fp=%s", client_fp);
    }
    pam_syslog(c->pamh, prio,
               "%s failed: user=%s service=%s err=%s reason=\"%s\"%s%s%s%s "
               "result=%s",
               phase_name(c->phase), c->ushown, c->sshown,
               err == TG_OK ? "-" : tg_err_name(err), why, http, retry, f1, f2,
               pam_code_name(rc));
}

/* Microseconds since t0 (CLOCK_MONOTONIC), for the debug timings. */
static long
us_since(const struct timespec *t0)
{
    struct timespec t1;

    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (long) (t1.tv_sec - t0->tv_sec) * 1000000L +
           (long) (t1.tv_nsec - t0->tv_nsec) / 1000L;
}

/* ---------------------------------------------------------------------- */
/* Arguments and configuration                                            */
/* ---------------------------------------------------------------------- */

/* "name=value" -> "value"; NULL when arg is not name=... */
static const char *
arg_value(const char *arg, const char *name)
{
    size_t n = strlen(name);

    if (strncmp(arg, name, n) == 0 && arg[n] == '=') {
        return arg + n + 1;
    }
    return NULL;
}

/* A whole decimal number in [lo, hi]; 0 or -1. */
static int
parse_long(const char *s, long lo, long hi, long *out)
{
    char *end = NULL;
    long v;

    if (s[0] < '0' || s[0] > '9') {
        return -1;
    }
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        return -1;
    }
    *out = v;
    return 0;
}

/* Log a configuration error and return PAM_SERVICE_ERR. */
static int
opt_error(tg_pam_ctx_t *c, const char *fmt, ...)
{
    char why[TG_PAM_WHY];
    char shown[TG_PAM_WHY];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    tg_pam_sanitize(shown, sizeof(shown), why);
    pam_syslog(c->pamh, LOG_ERR,
               "configuration error: service=%s err=TG_CONFIG reason=\"%s\" "
               "result=PAM_SERVICE_ERR",
               c->sshown, shown);
    return PAM_SERVICE_ERR;
}

/*
 * One of the module's own arguments?  *consumed says whether it was; the
 * return is PAM_SUCCESS or PAM_SERVICE_ERR for a bad value.  A flag of
 * ours given a value, or a valued argument of ours given none, is named
 * here rather than called unknown by libtokengate.
 */
static int
opts_own(tg_pam_ctx_t *c, const char *arg, int *consumed)
{
    const tg_pam_arg_t *a;
    const char *eq = strchr(arg, '=');
    size_t nlen = eq != NULL ? (size_t) (eq - arg) : strlen(arg);

    *consumed = 1;
    for (a = tg_pam_args; a->name != NULL; a++) {
        if (strlen(a->name) != nlen || strncmp(arg, a->name, nlen) != 0) {
            continue;
        }
        if (a->parse == NULL && eq != NULL) {
            return opt_error(c, "argument: bad value for %s: it takes no value",
                             a->name);
        }
        if (a->parse == NULL) {
            *(int *) ((char *) &c->opts + a->flag) = 1;
            return PAM_SUCCESS;
        }
        if (eq == NULL) {
            return opt_error(c,
                             "argument: bad value for %s: a value is "
                             "required (%s=VALUE)",
                             a->name, a->name);
        }
        return a->parse(c, eq + 1);
    }
    *consumed = 0;
    return PAM_SUCCESS;
}

static int
arg_conf(tg_pam_ctx_t *c, const char *v)
{
    if (v[0] != '/') {
        return opt_error(c, "argument: bad value for conf: an absolute "
                            "path is required");
    }
    c->opts.conf = v;
    c->opts.conf_given = 1;
    return PAM_SUCCESS;
}

static int
arg_prompt(tg_pam_ctx_t *c, const char *v)
{
    size_t n = strnlen(v, TG_PAM_PROMPT_MAX + 1), i;

    if (n == 0 || n > TG_PAM_PROMPT_MAX) {
        return opt_error(c,
                         "argument: bad value for prompt: 1 to %d "
                         "bytes",
                         TG_PAM_PROMPT_MAX);
    }
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char) v[i];
        if (ch < 0x20 || ch == 0x7f) {
            return opt_error(c, "argument: bad value for prompt: "
                                "control byte");
        }
    }
    c->opts.prompt = v;
    return PAM_SUCCESS;
}

static int
arg_password(tg_pam_ctx_t *c, const char *v)
{
    if (strcmp(v, "auto") == 0) {
        c->opts.password = TG_PAM_PW_AUTO;
    } else if (strcmp(v, "token") == 0) {
        c->opts.password = TG_PAM_PW_TOKEN;
    } else if (strcmp(v, "credentials") == 0) {
        c->opts.password = TG_PAM_PW_CREDENTIALS;
    } else {
        return opt_error(c, "argument: bad value for password: expected "
                            "auto, token or credentials");
    }
    return PAM_SUCCESS;
}

/* One of two words: 0 for off, 1 for on. */
static int
arg_either(tg_pam_ctx_t *c, const char *name, const char *v, const char *off,
           const char *on, int *out)
{
    if (strcmp(v, off) == 0) {
        *out = 0;
    } else if (strcmp(v, on) == 0) {
        *out = 1;
    } else {
        return opt_error(c, "argument: bad value for %s: expected %s or %s",
                         name, off, on);
    }
    return PAM_SUCCESS;
}

static int
arg_on_unavailable(tg_pam_ctx_t *c, const char *v)
{
    return arg_either(c, "on_unavailable", v, "fail", "ignore",
                      &c->opts.unavailable_ignore);
}

/* An absolute path with room for a file name in it. */
static int
arg_dir(tg_pam_ctx_t *c, const char *name, const char *v, const char **out)
{
    if (v[0] != '/' || strlen(v) >= TG_PAM_DIR_MAX) {
        return opt_error(c,
                         "argument: bad value for %s: an absolute path is "
                         "required",
                         name);
    }
    *out = v;
    return PAM_SUCCESS;
}

static int
arg_state_dir(tg_pam_ctx_t *c, const char *v)
{
    return arg_dir(c, "state_dir", v, &c->opts.state_dir);
}

static int
arg_account_without_state(tg_pam_ctx_t *c, const char *v)
{
    return arg_either(c, "account_without_state", v, "deny", "ignore",
                      &c->opts.without_state_ignore);
}

static int
arg_workspace(tg_pam_ctx_t *c, const char *v)
{
    size_t n = strlen(v);

    if (n == 0 || n > TG_PAM_WORKSPACE_MAX ||
        strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                  "0123456789_-") != n) {
        return opt_error(c,
                         "argument: bad value for workspace: 1 to %d "
                         "letters, digits, '_' or '-'",
                         TG_PAM_WORKSPACE_MAX);
    }
    c->opts.workspace = v;
    return PAM_SUCCESS;
}

static int
arg_offline_cache(tg_pam_ctx_t *c, const char *v)
{
    if (parse_long(v, 0, TG_PAM_OFFLINE_CACHE_MAX, &c->opts.offline_cache) !=
        0) {
        return opt_error(c,
                         "argument: bad value for offline_cache: "
                         "seconds, 0 to %ld",
                         TG_PAM_OFFLINE_CACHE_MAX);
    }
    return PAM_SUCCESS;
}

static int
arg_offline_dir(tg_pam_ctx_t *c, const char *v)
{
    return arg_dir(c, "offline_dir", v, &c->opts.offline_dir);
}

static int
arg_offline_max_failures(tg_pam_ctx_t *c, const char *v)
{
    if (parse_long(v, 1, TG_PAM_OFFLINE_FAILURES_MAX,
                   &c->opts.offline_max_failures) != 0) {
        return opt_error(c,
                         "argument: bad value for "
                         "offline_max_failures: 1 to %ld",
                         TG_PAM_OFFLINE_FAILURES_MAX);
    }
    return PAM_SUCCESS;
}

/*
 * Our arguments first; then the config file (conf=, or the default, which
 * may be missing only when url= is an argument); then every other argument
 * through tg_config_load_args(), which refuses unknown keys; then
 * tg_config_validate().  Any failure is PAM_SERVICE_ERR (PAM_BUF_ERR when
 * out of memory), logged with the key or the file named.
 */
static int
opts_load(tg_pam_ctx_t *c, int argc, const char **argv)
{
    tg_pam_opts_t *o = &c->opts;
    const char **rest = NULL;
    const char *path;
    struct stat st;
    tg_diag_t diag;
    tg_err_t err = TG_OK;
    int nrest = 0, i, consumed, rc = PAM_SUCCESS;

    tg_diag_clear(&diag);
    o->conf = TG_PAM_DEFAULT_CONF;
    o->prompt = TG_PAM_DEFAULT_PROMPT;
    o->state_dir = TG_PAM_DEFAULT_STATE_DIR;
    o->offline_dir = TG_PAM_DEFAULT_OFFLINE_DIR;
    o->offline_max_failures = TG_PAM_DEFAULT_OFFLINE_FAILURES;
    o->password = TG_PAM_PW_AUTO;

    if (argc < 0 || (argc > 0 && argv == NULL)) {
        return opt_error(c, "argument: bad argument vector");
    }
    rest = calloc((size_t) argc + 1, sizeof(*rest));
    if (rest == NULL) {
        rc = PAM_BUF_ERR;
        goto out;
    }
    for (i = 0; i < argc; i++) {
        if (argv[i] == NULL) {
            rc = opt_error(c, "argument: missing argument");
            goto out;
        }
        rc = opts_own(c, argv[i], &consumed);
        if (rc != PAM_SUCCESS) {
            goto out;
        }
        if (!consumed) {
            if (arg_value(argv[i], "url") != NULL) {
                o->url_given = 1;
            }
            rest[nrest++] = argv[i];
        }
    }

    o->cfg = tg_config_new();
    if (o->cfg == NULL) {
        rc = PAM_BUF_ERR;
        goto out;
    }
    path = o->conf;
    if (o->conf_given || !o->url_given || lstat(path, &st) == 0 ||
        errno != ENOENT) {
        err = tg_config_load_file(o->cfg, path, &diag);
        if (err != TG_OK) {
            goto out;
        }
    } else {
        tg_log(c, LOG_DEBUG, "no %s; using the module arguments only", path);
    }
    err = tg_config_load_args(o->cfg, nrest, rest, &diag);
    if (err != TG_OK) {
        goto out;
    }
    err = tg_config_validate(o->cfg, &diag);
    if (err != TG_OK) {
        goto out;
    }
    if ((o->workspace != NULL || o->logout_on_close) &&
        o->cfg->api != TG_API_LOOKER) {
        rc = opt_error(c, "argument: %s needs api=looker",
                       o->workspace != NULL ? "workspace" : "logout_on_close");
        goto out;
    }
out:
    if (err != TG_OK) {
        if (err == TG_NOMEM) {
            rc = PAM_BUF_ERR;
            pam_syslog(c->pamh, LOG_CRIT,
                       "configuration error: service=%s err=TG_NOMEM "
                       "reason=\"out of memory\" result=PAM_BUF_ERR",
                       c->sshown);
        } else {
            rc = opt_error(c, "%s",
                           diag.message[0] != '\0' ? diag.message
                                                   : tg_strerror(err));
        }
    }
    free(rest);
    return rc;
}

static int
ctx_open(tg_pam_ctx_t *c, pam_handle_t *pamh, tg_pam_phase_t phase, int flags,
         int argc, const char **argv)
{
    const void *item = NULL;

    memset(c, 0, sizeof(*c));
    c->pamh = pamh;
    c->phase = phase;
    c->flags = flags;
    snprintf(c->ushown, sizeof(c->ushown), "(none)");
    (void) pthread_once(&tg_pam_once, tg_pam_init_once);
    if (pam_get_item(pamh, PAM_SERVICE, &item) != PAM_SUCCESS) {
        item = NULL;
    }
    tg_pam_sanitize(c->sshown, sizeof(c->sshown),
                    item != NULL ? (const char *) item : "(none)");
    return opts_load(c, argc, argv);
}

static void
ctx_close(tg_pam_ctx_t *c)
{
    tg_config_free(c->opts.cfg);
    c->opts.cfg = NULL;
}

/*
 * PAM_USER: non-NULL and non-empty (SECURITY.md 3.8), else
 * PAM_USER_UNKNOWN.  prompt: pam_get_user (auth), else pam_get_item.
 */
static int
ctx_user(tg_pam_ctx_t *c, int prompt)
{
    const void *item = NULL;
    const char *user = NULL;
    int rc;

    if (prompt) {
        rc = pam_get_user(c->pamh, &user, NULL);
    } else {
        rc = pam_get_item(c->pamh, PAM_USER, &item);
        user = item;
    }
    if (rc != PAM_SUCCESS || user == NULL || user[0] == '\0') {
        int out = rc == PAM_BUF_ERR    ? PAM_BUF_ERR
                  : rc == PAM_CONV_ERR ? PAM_CONV_ERR
                                       : PAM_USER_UNKNOWN;
        log_fail(c, LOG_NOTICE, out, TG_OK,
                 rc != PAM_SUCCESS ? pam_strerror(c->pamh, rc)
                                   : "no user name (PAM_USER is unset or "
                                     "empty)",
                 NULL, NULL, NULL);
        return out;
    }
    c->user = user;
    /* A long "user name" is often a password typed at the login prompt:
     * do not log it. */
    if (strlen(user) > TG_PAM_USER_SHOWN_MAX) {
        snprintf(c->ushown, sizeof(c->ushown), "(a name of %zu bytes)",
                 strlen(user));
    } else {
        tg_pam_sanitize(c->ushown, sizeof(c->ushown), user);
    }
    return PAM_SUCCESS;
}

/*
 * libcurl opens $SSLKEYLOGFILE at init and appends TLS secrets to it.  In
 * a setuid/setgid caller (su, sudo) the environment is the caller's: refuse
 * rather than let a user make root write key material where they choose.
 */
static int
env_unsafe(void)
{
    if (getauxval(AT_SECURE) == 0 && getuid() == geteuid() &&
        getgid() == getegid()) {
        return 0;
    }
    return getenv("SSLKEYLOGFILE") != NULL;
}

/* sshd's dummy password: "\b\n\r\177INCORRECT" cut or repeated to the
 * typed length, or anything that starts like it. */
static int
is_sshd_fake(const char *pw)
{
    static const char junk[] = TG_PAM_SSHD_JUNK;
    const size_t n = sizeof(junk) - 1;
    size_t i;

    if (strncmp(pw, TG_PAM_SSHD_JUNK_HEAD, strlen(TG_PAM_SSHD_JUNK_HEAD)) ==
        0) {
        return 1;
    }
    if (pw[0] == '\0') {
        return 0;
    }
    for (i = 0; pw[i] != '\0'; i++) {
        if (pw[i] != junk[i % n]) {
            return 0;
        }
    }
    return 1;
}

/* ---------------------------------------------------------------------- */
/* What auth leaves for account and session                               */
/* ---------------------------------------------------------------------- */

static void
login_free(tg_pam_login_t *l)
{
    if (l == NULL) {
        return;
    }
    tg_secret_free(l->token);
    free(l->user);
    tg_identity_free(l->identity);
    explicit_bzero(l, sizeof(*l));
    free(l);
}

/* pam_set_data cleanup: called at pam_end or on replacement; wipes. */
static void
login_cleanup(pam_handle_t *pamh, void *data, int error_status)
{
    (void) pamh;
    (void) error_status;
    login_free(data);
}

/* The login of this handle, if it was for the current PAM_USER. */
static tg_pam_login_t *
login_get(const tg_pam_ctx_t *c)
{
    const void *data = NULL;
    const tg_pam_login_t *l;

    if (c->user == NULL ||
        pam_get_data(c->pamh, TG_PAM_DATA_LOGIN, &data) != PAM_SUCCESS ||
        data == NULL) {
        return NULL;
    }
    l = data;
    if (l->user == NULL || strcmp(l->user, c->user) != 0) {
        return NULL;
    }
    return (tg_pam_login_t *) l;
}

static void
id_label(char *buf, size_t size, const tg_identity_t *id)
{
    tg_pam_sanitize(buf, size,
                    id != NULL && id->id != NULL && id->id[0] != '\0'
                        ? id->id
                        : "(unknown)");
}

/* ---------------------------------------------------------------------- */
/* auth                                                                   */
/* ---------------------------------------------------------------------- */

/* Refusals with no network call (SECURITY.md 3.6): PAM_SUCCESS to go on. */
static int
check_password(tg_pam_ctx_t *c, const char *pw)
{
    char why[TG_PAM_WHY];
    size_t len, i;

    if (is_sshd_fake(pw)) {
        log_fail(c, LOG_NOTICE, PAM_AUTH_ERR, TG_INPUT,
                 "sshd's dummy password for an invalid or denied user; "
                 "refused without a server call",
                 NULL, NULL, NULL);
        return PAM_AUTH_ERR;
    }
    len = strnlen(pw, TG_PAM_PASSWORD_MAX + 1);
    if (len == 0) {
        log_fail(c, LOG_NOTICE, PAM_AUTH_ERR, TG_INPUT,
                 "empty password; refused without a server call", NULL, NULL,
                 NULL);
        return PAM_AUTH_ERR;
    }
    if (len > TG_PAM_PASSWORD_MAX) {
        snprintf(why, sizeof(why),
                 "password longer than %d bytes; refused without a server "
                 "call",
                 TG_PAM_PASSWORD_MAX);
        log_fail(c, LOG_NOTICE, PAM_AUTH_ERR, TG_INPUT, why, NULL, NULL, NULL);
        return PAM_AUTH_ERR;
    }
    for (i = 0; i < len; i++) {
        unsigned char ch = (unsigned char) pw[i];
        if (ch < 0x20 || ch == 0x7f) {
            snprintf(why, sizeof(why),
                     "password has a control byte at offset %zu; refused "
                     "without a server call",
                     i);
            log_fail(c, LOG_NOTICE, PAM_AUTH_ERR, TG_INPUT, why, NULL, NULL,
                     NULL);
            return PAM_AUTH_ERR;
        }
    }
    if (!tg_pam_user_name_ok(c->user)) {
        log_fail(c, LOG_NOTICE, PAM_USER_UNKNOWN, TG_IDENTITY,
                 "the user name is not one tokengate binds ([a-z0-9._-], 1 to "
                 "32, no leading '-'); refused without a server call",
                 NULL, NULL, NULL);
        return PAM_USER_UNKNOWN;
    }
    return PAM_SUCCESS;
}

/*
 * The server could not be reached: try the offline cache.  PAM_SUCCESS
 * with *id_out, a failing PAM code, or -1 when the cache has nothing to
 * say (the caller then reports the outage).
 */
static int
offline_try(tg_pam_ctx_t *c, const char *password, tg_err_t online_err,
            const tg_diag_t *online_diag, tg_identity_t **id_out,
            time_t *expires_out)
{
    char why[TG_PAM_WHY];
    char reason[2 * TG_PAM_WHY];
    long failures = 0;
    tg_pam_offline_t r;

    why[0] = '\0';
    r = tg_pam_offline_check(c->opts.offline_dir, c->user, c->opts.cfg,
                             password, c->opts.offline_max_failures, id_out,
                             expires_out, &failures, why, sizeof(why));
    switch (r) {
    case TG_PAM_OFFLINE_OK:
        tg_log(c, LOG_NOTICE,
               "auth: user=%s service=%s: server unreachable (%s: %s); "
               "password verified by the offline cache",
               c->ushown, c->sshown, tg_err_name(online_err),
               online_diag->message);
        return PAM_SUCCESS;
    case TG_PAM_OFFLINE_MISMATCH:
        snprintf(reason, sizeof(reason),
                 "%s; offline cache: wrong password (failure %ld of %ld)",
                 online_diag->message, failures, c->opts.offline_max_failures);
        log_fail(c, LOG_NOTICE, PAM_AUTH_ERR, online_err, reason, NULL, NULL,
                 NULL);
        return PAM_AUTH_ERR;
    case TG_PAM_OFFLINE_LOCKED:
        snprintf(reason, sizeof(reason),
                 "%s; offline cache locked after %ld failures (an online "
                 "login unlocks it)",
                 online_diag->message, failures);
        log_fail(c, LOG_NOTICE, PAM_MAXTRIES, online_err, reason, NULL, NULL,
                 NULL);
        return PAM_MAXTRIES;
    case TG_PAM_OFFLINE_NOMEM:
        log_fail(c, LOG_CRIT, PAM_BUF_ERR, TG_NOMEM, why, NULL, NULL, NULL);
        return PAM_BUF_ERR;
    case TG_PAM_OFFLINE_BAD:
        tg_log(c, LOG_ERR,
               "auth: user=%s service=%s: offline cache not usable: %s",
               c->ushown, c->sshown, why);
        return -1;
    case TG_PAM_OFFLINE_NONE:
    case TG_PAM_OFFLINE_EXPIRED:
        tg_log(c, LOG_INFO, "auth: user=%s service=%s: no offline login: %s",
               c->ushown, c->sshown, why);
        return -1;
    }
    return -1;
}

/*
 * auth's rules deny the (fresh, bound) identity of c->user: replace the
 * state file by a "denied" record, which account turns into
 * PAM_PERM_DENIED until a later successful auth replaces it, and remove the
 * offline entry.  Never deny by deleting the state file: a user without one
 * may be "not ours" (PAM_USER_UNKNOWN), which [user_unknown=ignore] stacks
 * let through.  Errors are logged only.
 */
static void
deny_user(tg_pam_ctx_t *c, const tg_identity_t *id, const char *reason)
{
    char why[TG_PAM_WHY];
    char shown[TG_PAM_WHY];
    time_t expires_at;
    tg_err_t err;

    tg_pam_sanitize(
        shown, sizeof(shown),
        reason != NULL && reason[0] != '\0' ? reason : "denied by the rules");
    expires_at = id->expires_at > 0 ? id->expires_at
                                    : time(NULL) + c->opts.cfg->token_max_age;
    err = tg_pam_state_write(c->opts.state_dir, c->user, c->opts.cfg, id,
                             expires_at, shown, why, sizeof(why));
    if (err != TG_OK) {
        tg_log(c, LOG_ERR,
               "%s: user=%s: cannot write the denied record (%s): %s; "
               "emptying the state file",
               phase_name(c->phase), c->ushown, tg_err_name(err), why);
        /* Neither a state that lets account pass, nor no state (which makes
         * the user "not ours"): an empty file, which account refuses.
         * Truncating needs no free space. */
        if (tg_pam_state_poison(c->opts.state_dir, c->user, why,
                                sizeof(why)) != 0) {
            tg_log(c, LOG_CRIT, "%s: user=%s: cannot empty the state file: %s",
                   phase_name(c->phase), c->ushown, why);
        }
    }
    if (c->opts.offline_cache > 0 &&
        tg_pam_offline_remove(c->opts.offline_dir, c->user, why, sizeof(why)) !=
            0) {
        tg_log(c, LOG_ERR, "%s: user=%s: cannot remove the offline entry: %s",
               phase_name(c->phase), c->ushown, why);
    }
}

/*
 * The identity must bind to PAM_USER exactly (tg_identity_bind), then pass
 * the rules.  PAM_SUCCESS or the failing code, logged.
 */
static int
bind_and_rules(tg_pam_ctx_t *c, const tg_identity_t *id, const char *fp,
               int forget_on_denial)
{
    char label[TG_PAM_SHOWN];
    char why[TG_PAM_WHY];
    char *local = NULL;
    tg_diag_t diag;
    tg_err_t err;
    int rc;

    tg_diag_clear(&diag);
    id_label(label, sizeof(label), id);
    err = tg_identity_bind(c->opts.cfg, id, &local, &diag);
    if (err != TG_OK) {
        rc = pam_code(c, err);
        log_fail(c, err == TG_IDENTITY ? LOG_NOTICE : LOG_ERR, rc, err,
                 diag.message, NULL, fp, NULL);
        goto out;
    }
    if (strcmp(local, c->user) != 0) {
        char lshown[TG_PAM_SHOWN];
        tg_pam_sanitize(lshown, sizeof(lshown), local);
        snprintf(why, sizeof(why), "identity %s maps to %s, not PAM user %s",
                 label, lshown, c->ushown);
        rc = pam_code(c, TG_IDENTITY);
        log_fail(c, LOG_NOTICE, rc, TG_IDENTITY, why, NULL, fp, NULL);
        goto out;
    }
    err = tg_rules_check(c->opts.cfg, id, &diag);
    if (err != TG_OK) {
        rc = pam_code(c, err);
        log_fail(c, err == TG_FORBIDDEN ? LOG_NOTICE : LOG_ERR, rc, err,
                 diag.message, NULL, fp, NULL);
        if (err == TG_FORBIDDEN && forget_on_denial) {
            deny_user(c, id, diag.message);
        }
        goto out;
    }
    rc = PAM_SUCCESS;
out:
    free(local);
    return rc;
}

/*
 * After an online or offline success: the state file, the offline entry
 * (online only), the handle's data (takes *id), and the success line.
 */
static int
auth_finish(tg_pam_ctx_t *c, tg_identity_t **id, const char *token,
            int from_credentials, int offline, time_t expires_at,
            const char *password, const char *fp)
{
    char why[TG_PAM_WHY];
    char label[TG_PAM_SHOWN];
    tg_pam_login_t *login = NULL;
    const tg_identity_t *ident;
    time_t now = time(NULL), cache_until;
    tg_err_t err;
    int rc;

    id_label(label, sizeof(label), *id);
    /* The handle's data first, the files last: a failure here must not
     * leave a state file that lets account pass in another process. */
    login = calloc(1, sizeof(*login));
    if (login == NULL) {
        rc = PAM_BUF_ERR;
        goto out;
    }
    login->user = strdup(c->user);
    if (login->user == NULL) {
        rc = PAM_BUF_ERR;
        goto out;
    }
    if (token != NULL) {
        login->token = tg_secret_dup(token);
        if (login->token == NULL) {
            rc = PAM_BUF_ERR;
            goto out;
        }
    }
    login->from_credentials = from_credentials;
    login->expires_at = expires_at;
    login->identity = *id;
    *id = NULL;
    ident = login->identity;
    rc = pam_set_data(c->pamh, TG_PAM_DATA_LOGIN, login, login_cleanup);
    if (rc != PAM_SUCCESS) {
        goto out;
    }
    login = NULL;

    err = tg_pam_state_write(c->opts.state_dir, c->user, c->opts.cfg, ident,
                             expires_at, NULL, why, sizeof(why));
    if (err != TG_OK) {
        /* Auth itself succeeded; account in another process will not find
         * a (new) state and applies account_without_state (deny by
         * default), or an older denied record. */
        tg_log(c, LOG_ERR,
               "auth: user=%s service=%s: cannot write the state file (%s): "
               "%s",
               c->ushown, c->sshown, tg_err_name(err), why);
    }
    /* Offline logins are for API credentials only: a bearer token is
     * short-lived and would outlive its own expiry in the cache. */
    if (!offline && from_credentials && c->opts.offline_cache > 0) {
        cache_until = now + c->opts.offline_cache;
        err = tg_pam_offline_store(c->opts.offline_dir, c->user, c->opts.cfg,
                                   password, ident, cache_until, why,
                                   sizeof(why));
        if (err != TG_OK) {
            tg_log(c, LOG_ERR,
                   "auth: user=%s service=%s: cannot write the offline entry "
                   "(%s): %s",
                   c->ushown, c->sshown, tg_err_name(err), why);
        }
    }
    tg_log(c, LOG_INFO,
           "auth ok: user=%s service=%s identity=%s via=%s%s%s expires_in=%lds",
           c->ushown, c->sshown, label,
           offline ? "offline-cache"
                   : (from_credentials ? "credentials" : "token"),
           fp != NULL && fp[0] != '\0' ? " fp=" : "", fp != NULL ? fp : "",
           (long) (expires_at - now));
out:
    if (rc != PAM_SUCCESS) {
        log_fail(c, LOG_CRIT, rc, TG_NOMEM, "cannot keep the login data", NULL,
                 fp, NULL);
    }
    login_free(login);
    return rc;
}

/*
 * One attempt with one password (auth, try_first_pass's second try):
 * refusals without a network call, the server's answer (or the offline
 * cache when it cannot be reached), the binding and the rules, and what a
 * success leaves behind.
 */
static int
auth_once(tg_pam_ctx_t *c, const char *password)
{
    tg_pam_attempt_t a;
    tg_err_t err;
    int rc;

    memset(&a, 0, sizeof(a));
    a.password = password;
    rc = check_password(c, password);
    if (rc == PAM_SUCCESS) {
        rc = split_password(c, &a);
    }
    if (rc == PAM_SUCCESS) {
        rc = refuse_unsafe_env(c, &a);
    }
    if (rc == PAM_SUCCESS) {
        rc = backoff_gate(c, &a);
    }
    if (rc == PAM_SUCCESS && !a.offline) {
        rc = open_client(c, &a);
    }
    if (rc == PAM_SUCCESS && !a.offline) {
        err = ask_server(c, &a);
        backoff_note(c, &a, err);
        if (err != TG_OK) {
            rc = server_failed(c, &a, err);
        }
    }
    if (rc == PAM_SUCCESS) {
        rc = bind_and_rules(c, a.id, a.fp, !a.offline);
    }
    if (rc == PAM_SUCCESS) {
        rc = auth_finish(c, &a.id, a.offline ? NULL : a.token,
                         a.creds && !a.offline, a.offline, login_expiry(c, &a),
                         password, a.fp);
    }
    tg_token_clear(&a.tok);
    tg_secret_free(a.copy);
    tg_identity_free(a.id);
    tg_client_free(a.cl);
    return rc;
}

/*
 * A token, or CLIENT_ID:SECRET (password=, or a colon in auto mode), of a
 * shape the server could accept: checked here, without a network call.
 */
static int
split_password(tg_pam_ctx_t *c, tg_pam_attempt_t *a)
{
    char why[TG_PAM_WHY];
    char *colon;
    tg_diag_t diag;
    tg_err_t err;
    int rc = PAM_SUCCESS;

    tg_diag_clear(&diag);
    a->copy = tg_secret_dup(a->password);
    if (a->copy == NULL) {
        log_fail(c, LOG_CRIT, PAM_BUF_ERR, TG_NOMEM, "out of memory", NULL,
                 NULL, NULL);
        return PAM_BUF_ERR;
    }
    colon = strchr(a->copy, ':');
    switch (c->opts.password) {
    case TG_PAM_PW_AUTO:
        a->creds = colon != NULL;
        break;
    case TG_PAM_PW_TOKEN:
        a->creds = 0;
        break;
    case TG_PAM_PW_CREDENTIALS:
        a->creds = 1;
        break;
    }
    if (a->creds) {
        if (colon == NULL) {
            err = TG_INPUT;
            snprintf(diag.message, sizeof(diag.message),
                     "password=credentials: expected CLIENT_ID:SECRET");
        } else {
            *colon = '\0';
            a->cid = a->copy;
            a->secret = colon + 1;
            tg_fingerprint(a->cid, strlen(a->cid), a->client_fp);
            err = tg_credential_check(a->cid, "client id", &diag);
            if (err == TG_OK) {
                err = tg_credential_check(a->secret, "client secret", &diag);
            }
        }
    } else {
        /* No fingerprint yet: the input may be a mistyped Unix password.
         * fp= is computed only for a token the server accepted (after the
         * validation, or issued by the exchange). */
        a->token = a->copy;
        err = tg_token_check(a->token, &diag);
    }
    if (err != TG_OK) {
        rc = pam_code(c, err);
        snprintf(why, sizeof(why), "%s; refused without a server call",
                 diag.message);
        log_fail(c, LOG_NOTICE, rc, err, why, NULL, NULL, NULL);
    }
    explicit_bzero(&diag, sizeof(diag));
    return rc;
}

/* A setuid/setgid caller with SSLKEYLOGFILE set would have libcurl write
 * the TLS keys where the caller chooses. */
static int
refuse_unsafe_env(tg_pam_ctx_t *c, const tg_pam_attempt_t *a)
{
    int rc;

    if (!env_unsafe()) {
        return PAM_SUCCESS;
    }
    rc = pam_code(c, TG_CONFIG);
    log_fail(c, LOG_ERR, rc, TG_CONFIG,
             "SSLKEYLOGFILE is set in the environment of a setuid/setgid "
             "caller; refusing to start TLS",
             NULL, a->fp, a->client_fp);
    return rc;
}

/*
 * The node-wide back-off (state_dir/backoff-<hash>.json): during a window
 * no server call; the offline cache may answer (a->offline), else the
 * outage's PAM code at once.  A bad file is logged and ignored.
 */
static int
backoff_gate(tg_pam_ctx_t *c, tg_pam_attempt_t *a)
{
    char why[TG_PAM_WHY];
    tg_pam_backoff_t seen;
    tg_diag_t diag;
    long wait;
    int probe = 0, rc;

    wait = tg_pam_backoff_check(c->opts.state_dir, c->opts.cfg,
                                2 * (c->opts.cfg->timeout_ms / 1000) + 2,
                                &probe, &seen, why, sizeof(why));
    if (wait < 0) {
        tg_log(c, LOG_WARNING,
               "auth: user=%s service=%s: back-off file ignored: %s",
               c->ushown, c->sshown, why);
        return PAM_SUCCESS;
    }
    if (probe) {
        tg_log(c, LOG_NOTICE,
               "auth: user=%s service=%s: server unreachable %ld times; "
               "this login probes it",
               c->ushown, c->sshown, seen.failures);
    }
    if (wait == 0) {
        return PAM_SUCCESS;
    }
    tg_diag_clear(&diag);
    snprintf(diag.message, sizeof(diag.message),
             "backing off from the server: no call for %ld s", wait);
    diag.retry_after = wait;
    if (c->opts.offline_cache > 0 && a->creds) {
        rc = offline_try(c, a->password, TG_RATE_LIMITED, &diag, &a->id,
                         &a->expires_at);
        if (rc == PAM_SUCCESS) {
            a->offline = 1;
            return PAM_SUCCESS;
        }
        if (rc != -1) {
            return rc;
        }
    }
    rc = pam_code(c, TG_RATE_LIMITED);
    log_fail(c, LOG_ERR, rc, TG_RATE_LIMITED, diag.message, &diag, a->fp,
             a->client_fp);
    return rc;
}

/* After a server call: the back-off file learns what happened. */
static void
backoff_note(tg_pam_ctx_t *c, const tg_pam_attempt_t *a, tg_err_t err)
{
    char why[TG_PAM_WHY];
    long delay = 0, failures = 0;

    if (tg_pam_backoff_record(c->opts.state_dir, c->opts.cfg, err,
                              tg_client_diag(a->cl), &delay, &failures, why,
                              sizeof(why)) != TG_OK) {
        tg_log(c, LOG_ERR,
               "auth: user=%s service=%s: cannot keep the back-off file: %s",
               c->ushown, c->sshown, why);
    } else if (delay > 0) {
        tg_log(c, LOG_WARNING,
               "auth: user=%s service=%s: backing off from the server for "
               "%ld s (%s, failures %ld)",
               c->ushown, c->sshown, delay, tg_err_name(err), failures);
    }
}

/* One client for the exchange and the validation (one connection). */
static int
open_client(tg_pam_ctx_t *c, tg_pam_attempt_t *a)
{
    tg_diag_t diag;
    tg_err_t err;
    int rc = PAM_SUCCESS;

    tg_diag_clear(&diag);
    curl_check_once(c);
    err = tg_client_new(c->opts.cfg, &a->cl, &diag);
    if (err != TG_OK) {
        rc = pam_code(c, err);
        log_fail(c, LOG_ERR, rc, err, diag.message, NULL, a->fp, a->client_fp);
    }
    explicit_bzero(&diag, sizeof(diag));
    return rc;
}

/*
 * Credentials are exchanged for a token, then the token is validated:
 * a->id and a->fp on success.  The timing of both goes to the debug log;
 * the error detail stays on the client.
 */
static tg_err_t
ask_server(tg_pam_ctx_t *c, tg_pam_attempt_t *a)
{
    struct timespec t0;
    long us_token = 0, us_validate = 0, requests = 0, connections = 0;
    tg_err_t err = TG_OK;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (a->creds) {
        err = tg_client_token(a->cl, a->cid, a->secret, &a->tok);
        us_token = us_since(&t0);
        if (err == TG_OK) {
            a->token = a->tok.value;
            tg_fingerprint(a->token, strlen(a->token), a->fp);
            clock_gettime(CLOCK_MONOTONIC, &t0);
        }
    }
    if (err == TG_OK) {
        err = tg_client_validate(a->cl, a->token, &a->id);
        us_validate = us_since(&t0);
        if (err == TG_OK && a->fp[0] == '\0') {
            tg_fingerprint(a->token, strlen(a->token), a->fp);
        }
    }
    tg_client_stats(a->cl, &requests, &connections);
    tg_log(c, LOG_DEBUG,
           "auth timing: user=%s service=%s token=%ld.%03ldms "
           "validate=%ld.%03ldms requests=%ld connections=%ld",
           c->ushown, c->sshown, us_token / 1000, us_token % 1000,
           us_validate / 1000, us_validate % 1000, requests, connections);
    return err;
}

/*
 * The server said no, or could not be reached.  An outage with
 * credentials may be answered by the offline cache (PAM_SUCCESS with
 * a->offline, a->id and a->expires_at); otherwise the failure is logged
 * and returned, and a refusal of the very credentials the offline entry
 * holds removes that entry.
 */
static int
server_failed(tg_pam_ctx_t *c, tg_pam_attempt_t *a, tg_err_t err)
{
    const tg_diag_t *d = tg_client_diag(a->cl);
    int rc;

    if (c->opts.offline_cache > 0 && a->creds && err_allows_offline(err)) {
        rc = offline_try(c, a->password, err, d, &a->id, &a->expires_at);
        if (rc == PAM_SUCCESS) {
            a->offline = 1;
            return PAM_SUCCESS;
        }
        if (rc != -1) {
            return rc;
        }
    }
    rc = pam_code(c, err);
    log_fail(c, err_is_outage(err) ? LOG_ERR : LOG_NOTICE, rc, err, d->message,
             d, a->fp, a->client_fp);
    /* Anyone can type someone else's user name with a wrong pair; that
     * must not remove her entry.  A 403 is treated the same way: it is
     * tied to the user only through the secret. */
    if (c->opts.offline_cache > 0 && a->creds &&
        (err == TG_REJECTED || err == TG_TOKEN_INVALID ||
         err == TG_FORBIDDEN)) {
        forget_refused_offline_entry(c, a->password);
    }
    return rc;
}

/* The server refused these credentials: the offline entry must not
 * outlive that answer, but only when they are the ones it holds. */
static void
forget_refused_offline_entry(tg_pam_ctx_t *c, const char *password)
{
    char why[TG_PAM_WHY];
    int r;

    r = tg_pam_offline_remove_if(c->opts.offline_dir, c->user, c->opts.cfg,
                                 password, why, sizeof(why));
    if (r < 0) {
        tg_log(c, LOG_ERR, "auth: user=%s: cannot remove the offline entry: %s",
               c->ushown, why);
    } else if (r > 0) {
        tg_log(c, LOG_NOTICE,
               "auth: user=%s service=%s: the server refused the credentials "
               "the offline entry holds; entry removed",
               c->ushown, c->sshown);
    }
}

/*
 * Until when account accepts this login.  Online: the earliest expiry
 * anyone reported, the exchange's (insight computes it from the maxAge
 * asked, which the server may clamp) and the validation's (the server's
 * own); token_max_age when neither is known.  Offline: the cache's, but
 * token_max_age at most.
 */
static time_t
login_expiry(const tg_pam_ctx_t *c, const tg_pam_attempt_t *a)
{
    time_t now = time(NULL), expires_at;

    if (a->offline) {
        if (a->expires_at > now + c->opts.cfg->token_max_age) {
            return now + c->opts.cfg->token_max_age;
        }
        return a->expires_at;
    }
    expires_at = a->creds ? a->tok.expires_at : 0;
    if (a->id->expires_at > 0 &&
        (expires_at == 0 || a->id->expires_at < expires_at)) {
        expires_at = a->id->expires_at;
    }
    if (expires_at == 0) {
        expires_at = now + c->opts.cfg->token_max_age;
    }
    return expires_at;
}

TG_PAM_EXPORT int
pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    tg_pam_ctx_t c;
    const void *prev = NULL, *old = NULL;
    const char *pw = NULL;
    char *again = NULL;
    int rc, r2;

    rc = ctx_open(&c, pamh, TG_PAM_AUTH, flags, argc, argv);
    if (rc != PAM_SUCCESS) {
        goto out;
    }
    rc = ctx_user(&c, 1);
    if (rc != PAM_SUCCESS) {
        goto out;
    }
    /* A failed attempt must not leave an earlier login's data behind. */
    if (pam_get_data(pamh, TG_PAM_DATA_LOGIN, &old) == PAM_SUCCESS &&
        old != NULL) {
        (void) pam_set_data(pamh, TG_PAM_DATA_LOGIN, NULL, NULL);
    }
    if (pam_get_item(pamh, PAM_AUTHTOK, &prev) != PAM_SUCCESS) {
        prev = NULL;
    }
    /* pam_get_authtok reads use_first_pass itself and reuses PAM_AUTHTOK
     * when an earlier module set it. */
    rc = pam_get_authtok(pamh, PAM_AUTHTOK, &pw, c.opts.prompt);
    if (rc != PAM_SUCCESS || pw == NULL) {
        int out = rc == PAM_BUF_ERR                           ? PAM_BUF_ERR
                  : (rc == PAM_AUTH_ERR || rc == PAM_SUCCESS) ? PAM_AUTH_ERR
                                                              : PAM_CONV_ERR;
        log_fail(&c, LOG_NOTICE, out, TG_INPUT,
                 c.opts.use_first_pass && prev == NULL
                     ? "use_first_pass: no password from an earlier module"
                     : "no password from the conversation",
                 NULL, NULL, NULL);
        rc = out;
        goto out;
    }
    rc = auth_once(&c, pw);
    if (rc == PAM_AUTH_ERR && prev != NULL && c.opts.try_first_pass &&
        !c.opts.use_first_pass) {
        /* try_first_pass: the earlier module's password failed; ask. */
        tg_log(&c, LOG_DEBUG,
               "auth: user=%s: try_first_pass: the earlier password failed; "
               "prompting",
               c.ushown);
        r2 = pam_prompt(pamh, PAM_PROMPT_ECHO_OFF, &again, "%s", c.opts.prompt);
        if (r2 == PAM_SUCCESS && again != NULL) {
            rc = auth_once(&c, again);
        }
    }
out:
    if (again != NULL) {
        explicit_bzero(again, strlen(again));
        free(again);
    }
    ctx_close(&c);
    return rc;
}

TG_PAM_EXPORT int
pam_sm_setcred(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    tg_pam_ctx_t c;
    int rc;

    /* No credentials to establish: tokens are not Unix credentials.  The
     * arguments are still checked, as in every other phase: an unknown
     * one or an unsafe configuration is PAM_SERVICE_ERR. */
    rc = ctx_open(&c, pamh, TG_PAM_AUTH, flags, argc, argv);
    ctx_close(&c);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* account                                                                */
/* ---------------------------------------------------------------------- */

/*
 * No identity to check.  A user we manage (a local name in user_map_file,
 * or one with a state file for another server) gets account_without_state;
 * anyone else is not ours: PAM_USER_UNKNOWN.
 */
static int
account_without_state(tg_pam_ctx_t *c, int managed, const char *why)
{
    char mwhy[TG_PAM_WHY];
    char reason[2 * TG_PAM_WHY];
    tg_diag_t diag;
    tg_err_t err;

    if (!managed && c->opts.cfg->user_map_file != NULL) {
        tg_diag_clear(&diag);
        err = tg_user_map_has_local(c->opts.cfg, c->user, &diag);
        if (err != TG_OK && err != TG_IDENTITY) {
            tg_pam_sanitize(mwhy, sizeof(mwhy), diag.message);
            log_fail(c, LOG_ERR, PAM_SERVICE_ERR, err, mwhy, NULL, NULL, NULL);
            return PAM_SERVICE_ERR;
        }
        managed = err == TG_OK;
    }
    if (!managed) {
        tg_log(c, LOG_DEBUG,
               "account: user=%s service=%s: not a user tokengate manages "
               "(%s); PAM_USER_UNKNOWN",
               c->ushown, c->sshown, why);
        return PAM_USER_UNKNOWN;
    }
    if (c->opts.without_state_ignore) {
        tg_log(c, LOG_INFO,
               "account: user=%s service=%s: no login state (%s); "
               "account_without_state=ignore: PAM_IGNORE",
               c->ushown, c->sshown, why);
        return PAM_IGNORE;
    }
    snprintf(reason, sizeof(reason),
             "no login state (%s): no recent tokengate login for this user; "
             "account_without_state=deny",
             why);
    log_fail(c, LOG_NOTICE, PAM_PERM_DENIED, TG_OK, reason, NULL, NULL, NULL);
    return PAM_PERM_DENIED;
}

/*
 * Account with a configuration that does not load (a typo, no url yet): no
 * rule can be read, the user map included.  A user with a state file is
 * one tokengate logged in, and stays refused (PAM_SERVICE_ERR).  Any other
 * user is not known to be ours: PAM_USER_UNKNOWN, which the
 * [user_unknown=ignore] stacks let through, so a broken tokengate.conf
 * does not lock root and every key-based login out of the machine.
 */
static int
account_config_broken(tg_pam_ctx_t *c)
{
    char why[TG_PAM_WHY];
    tg_pam_state_t st;
    tg_pam_file_t fr;

    if (ctx_user(c, 0) != PAM_SUCCESS || !tg_pam_user_name_ok(c->user)) {
        return PAM_SERVICE_ERR;
    }
    memset(&st, 0, sizeof(st));
    fr = tg_pam_state_read(c->opts.state_dir, c->user, &st, why, sizeof(why));
    tg_pam_state_clear(&st);
    if (fr != TG_PAM_FILE_NONE) {
        return PAM_SERVICE_ERR;
    }
    pam_syslog(c->pamh, LOG_ERR,
               "account: user=%s service=%s: the configuration does not "
               "load and tokengate has no login state for this user (%s); "
               "PAM_USER_UNKNOWN",
               c->ushown, c->sshown, why);
    return PAM_USER_UNKNOWN;
}

TG_PAM_EXPORT int
pam_sm_acct_mgmt(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    char why[TG_PAM_WHY];
    char label[TG_PAM_SHOWN];
    tg_pam_ctx_t c;
    tg_pam_state_t st;
    tg_pam_login_t *login;
    const tg_identity_t *id = NULL;
    const char *source = "this login";
    time_t expires_at = 0, now;
    tg_pam_file_t fr;
    int rc;

    memset(&st, 0, sizeof(st));
    why[0] = '\0';
    rc = ctx_open(&c, pamh, TG_PAM_ACCOUNT, flags, argc, argv);
    if (rc == PAM_SERVICE_ERR) {
        rc = account_config_broken(&c);
        goto out;
    }
    if (rc != PAM_SUCCESS) {
        goto out;
    }
    rc = ctx_user(&c, 0);
    if (rc != PAM_SUCCESS) {
        goto out;
    }
    if (!tg_pam_user_name_ok(c.user)) {
        tg_log(&c, LOG_DEBUG,
               "account: user=%s service=%s: not a name tokengate binds; "
               "PAM_USER_UNKNOWN",
               c.ushown, c.sshown);
        rc = PAM_USER_UNKNOWN;
        goto out;
    }
    login = login_get(&c);
    if (login != NULL) {
        id = login->identity;
        expires_at = login->expires_at;
    } else {
        source = "state file";
        fr = tg_pam_state_read(c.opts.state_dir, c.user, &st, why, sizeof(why));
        switch (fr) {
        case TG_PAM_FILE_OK:
            if (st.denied != NULL) {
                /* auth's rules denied this user: refused until a later
                 * successful auth replaces the record (never "not ours"). */
                char dshown[TG_PAM_WHY];
                char dwhy[2 * TG_PAM_WHY];
                id_label(label, sizeof(label), st.identity);
                tg_pam_sanitize(dshown, sizeof(dshown), st.denied);
                snprintf(dwhy, sizeof(dwhy),
                         "identity %s was denied at its last login: %s "
                         "(denied record in the state file)",
                         label, dshown);
                rc = PAM_PERM_DENIED;
                log_fail(&c, LOG_NOTICE, rc, TG_FORBIDDEN, dwhy, NULL, NULL,
                         NULL);
                goto out;
            }
            if (st.api != c.opts.cfg->api ||
                strcmp(st.url, c.opts.cfg->url) != 0) {
                rc = account_without_state(&c, 1,
                                           "the state file is for another "
                                           "server");
                goto out;
            }
            id = st.identity;
            expires_at = st.expires_at;
            break;
        case TG_PAM_FILE_NONE:
            rc = account_without_state(&c, 0, why);
            goto out;
        case TG_PAM_FILE_NOMEM:
            rc = PAM_BUF_ERR;
            log_fail(&c, LOG_CRIT, rc, TG_NOMEM, why, NULL, NULL, NULL);
            goto out;
        case TG_PAM_FILE_UNSAFE_DIR:
            rc = PAM_SERVICE_ERR;
            log_fail(&c, LOG_ERR, rc, TG_CONFIG, why, NULL, NULL, NULL);
            goto out;
        case TG_PAM_FILE_BAD:
            rc = PAM_PERM_DENIED;
            log_fail(&c, LOG_ERR, rc, TG_INTERNAL, why, NULL, NULL, NULL);
            goto out;
        }
    }

    now = time(NULL);
    id_label(label, sizeof(label), id);
    if (expires_at <= now) {
        snprintf(why, sizeof(why),
                 "authorization of identity %s expired %lds ago (%s); log in "
                 "again with a token or API credentials",
                 label, (long) (now - expires_at), source);
        rc = PAM_ACCT_EXPIRED;
        log_fail(&c, LOG_NOTICE, rc, TG_TOKEN_INVALID, why, NULL, NULL, NULL);
        if ((flags & PAM_SILENT) == 0) {
            (void) pam_info(pamh,
                            "Your tokengate login has expired; log in again "
                            "with a token or API credentials.");
        }
        goto out;
    }
    rc = bind_and_rules(&c, id, NULL, 0);
    if (rc != PAM_SUCCESS) {
        goto out;
    }
    tg_log(&c, LOG_INFO,
           "account ok: user=%s service=%s identity=%s source=%s "
           "expires_in=%lds",
           c.ushown, c.sshown, label, source, (long) (expires_at - now));
out:
    tg_pam_state_clear(&st);
    ctx_close(&c);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* session                                                                */
/* ---------------------------------------------------------------------- */

/* export_token: TOKENGATE_TOKEN=<token> in the PAM environment. */
static int
session_env(tg_pam_ctx_t *c, const tg_pam_login_t *login, const char *fp)
{
    size_t n = strlen(TG_PAM_ENV_TOKEN) + 1 + strlen(login->token) + 1;
    char *buf;
    int rc;

    buf = malloc(n);
    if (buf == NULL) {
        log_fail(c, LOG_CRIT, PAM_BUF_ERR, TG_NOMEM, "out of memory", NULL, fp,
                 NULL);
        return PAM_BUF_ERR;
    }
    snprintf(buf, n, "%s=%s", TG_PAM_ENV_TOKEN, login->token);
    rc = pam_putenv(c->pamh, buf);
    explicit_bzero(buf, n);
    free(buf);
    if (rc != PAM_SUCCESS) {
        rc = rc == PAM_BUF_ERR ? PAM_BUF_ERR : PAM_SESSION_ERR;
        log_fail(c, LOG_ERR, rc, TG_INTERNAL,
                 "pam_putenv(" TG_PAM_ENV_TOKEN ") failed", NULL, fp, NULL);
        return rc;
    }
    tg_log(c, LOG_INFO, "session: user=%s service=%s: exported %s fp=%s",
           c->ushown, c->sshown, TG_PAM_ENV_TOKEN, fp);
    return PAM_SUCCESS;
}

/* workspace=: Looker PATCH /session with the login's token. */
static int
session_workspace(tg_pam_ctx_t *c, const tg_pam_login_t *login, const char *fp)
{
    tg_client_t *cl = NULL;
    tg_session_t sess = {NULL, NULL};
    tg_diag_t diag;
    struct timespec t0;
    long us;
    tg_err_t err;
    int rc;

    tg_diag_clear(&diag);
    if (env_unsafe()) {
        rc = pam_code(c, TG_CONFIG);
        log_fail(c, LOG_ERR, rc, TG_CONFIG,
                 "SSLKEYLOGFILE is set in the environment of a setuid/setgid "
                 "caller; refusing to start TLS",
                 NULL, fp, NULL);
        return rc;
    }
    err = tg_client_new(c->opts.cfg, &cl, &diag);
    if (err != TG_OK) {
        rc = pam_code(c, err);
        log_fail(c, LOG_ERR, rc, err, diag.message, NULL, fp, NULL);
        goto out;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    err = tg_client_session(cl, login->token, c->opts.workspace, &sess);
    us = us_since(&t0);
    tg_log(c, LOG_DEBUG, "session timing: user=%s workspace=%ld.%03ldms",
           c->ushown, us / 1000, us % 1000);
    if (err != TG_OK) {
        const tg_diag_t *d = tg_client_diag(cl);
        rc = pam_code(c, err);
        log_fail(c, err_is_outage(err) ? LOG_ERR : LOG_NOTICE, rc, err,
                 d->message, d, fp, NULL);
        goto out;
    }
    tg_log(c, LOG_INFO, "session: user=%s service=%s: workspace %s fp=%s",
           c->ushown, c->sshown, c->opts.workspace, fp);
    rc = PAM_SUCCESS;
out:
    tg_session_clear(&sess);
    tg_client_free(cl);
    return rc;
}

TG_PAM_EXPORT int
pam_sm_open_session(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    char fp[TG_FINGERPRINT_SIZE] = "";
    tg_pam_ctx_t c;
    tg_pam_login_t *login;
    int rc;

    rc = ctx_open(&c, pamh, TG_PAM_SESSION, flags, argc, argv);
    if (rc != PAM_SUCCESS) {
        goto out;
    }
    if (!c.opts.export_token && c.opts.workspace == NULL) {
        goto out;
    }
    rc = ctx_user(&c, 0);
    if (rc != PAM_SUCCESS) {
        rc = rc == PAM_BUF_ERR ? PAM_BUF_ERR : PAM_SESSION_ERR;
        goto out;
    }
    login = login_get(&c);
    if (login == NULL || login->token == NULL) {
        /* auth ran in another process, offline, or not at all (public
         * key): there is no token to export or to switch. */
        tg_log(&c, LOG_INFO,
               "session: user=%s service=%s: no token from auth in this "
               "process; nothing to export or switch",
               c.ushown, c.sshown);
        goto out;
    }
    tg_fingerprint(login->token, strlen(login->token), fp);
    if (c.opts.export_token) {
        rc = session_env(&c, login, fp);
        if (rc != PAM_SUCCESS) {
            goto out;
        }
    }
    if (c.opts.workspace != NULL) {
        rc = session_workspace(&c, login, fp);
    }
out:
    ctx_close(&c);
    return rc;
}

TG_PAM_EXPORT int
pam_sm_close_session(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    char fp[TG_FINGERPRINT_SIZE] = "";
    tg_pam_ctx_t c;
    tg_pam_login_t *login;
    tg_client_t *cl = NULL;
    tg_diag_t diag;
    tg_err_t err;
    int rc;

    tg_diag_clear(&diag);
    rc = ctx_open(&c, pamh, TG_PAM_SESSION, flags, argc, argv);
    if (rc != PAM_SUCCESS) {
        goto out;
    }
    if (c.opts.export_token && pam_getenv(pamh, TG_PAM_ENV_TOKEN) != NULL) {
        (void) pam_putenv(pamh, TG_PAM_ENV_TOKEN);
    }
    if (!c.opts.logout_on_close) {
        goto out;
    }
    if (ctx_user(&c, 0) != PAM_SUCCESS) {
        goto out;
    }
    login = login_get(&c);
    if (login == NULL || login->token == NULL || !login->from_credentials) {
        tg_log(&c, LOG_DEBUG,
               "session: user=%s: no token this module obtained; nothing to "
               "log out",
               c.ushown);
        goto out;
    }
    tg_fingerprint(login->token, strlen(login->token), fp);
    /* Errors below are logged only: the session is over either way, and
     * the token expires on its own. */
    if (env_unsafe()) {
        log_fail(&c, LOG_ERR, PAM_SUCCESS, TG_CONFIG,
                 "SSLKEYLOGFILE is set in the environment of a setuid/setgid "
                 "caller; not logging out",
                 NULL, fp, NULL);
        goto out;
    }
    err = tg_client_new(c.opts.cfg, &cl, &diag);
    if (err == TG_OK) {
        err = tg_client_logout(cl, login->token);
    }
    if (err != TG_OK) {
        const tg_diag_t *d = cl != NULL ? tg_client_diag(cl) : &diag;
        log_fail(&c, err_is_outage(err) ? LOG_ERR : LOG_NOTICE, PAM_SUCCESS,
                 err, d->message, d, fp, NULL);
    } else {
        tg_log(&c, LOG_INFO,
               "session: user=%s service=%s: logged out of Looker fp=%s",
               c.ushown, c.sshown, fp);
    }
    tg_secret_free(login->token);
    login->token = NULL;
out:
    tg_client_free(cl);
    ctx_close(&c);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* password                                                               */
/* ---------------------------------------------------------------------- */

TG_PAM_EXPORT int
pam_sm_chauthtok(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    tg_pam_ctx_t c;
    int rc;

    /* Changing a BI password from Linux is not supported; PAM_IGNORE (in
     * both PAM_PRELIM_CHECK and PAM_UPDATE_AUTHTOK) leaves the decision to
     * the other password modules of the stack.  The arguments are checked
     * first: an unknown one or an unsafe configuration is
     * PAM_SERVICE_ERR (PAM_BUF_ERR out of memory). */
    rc = ctx_open(&c, pamh, TG_PAM_PASSWORD, flags, argc, argv);
    ctx_close(&c);
    return rc == PAM_SUCCESS ? PAM_IGNORE : rc;
}
