/* SPDX-License-Identifier: MIT */
/*
 * commands.c - the commands of the tokengate command line, and what they
 * share: where secrets come from (never argv), the token store, the
 * terminal prompt, and the identity display.
 *
 * Tokens and secrets live in buffers from tg_secret_dup() and are released
 * with tg_secret_free(); they are printed only by explicit request
 * (--print-token, and the one-time secret of "credentials new").
 */
#include "cli.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

/* The token file is a small JSON object; anything bigger is not ours. */
#define TG_TOKEN_FILE_MAX 16384
/* A path we build (token file, directories). */
#define TG_PATH_MAX 4096
/* What "check" tolerates between the server's clock and ours. */
#define TG_SKEW_WARN 30
#define TG_SKEW_FAIL 300
/* The label column of "credentials": "credentials id:" and a space. */
#define TG_CREDS_LABEL_WIDTH 15
/* Addresses "check" lists after a DNS lookup. */
#define TG_CHECK_ADDRS_SHOWN 4
/* Where syslog(3) sends the messages of the PAM module (glibc's _PATH_LOG). */
#define TG_SYSLOG_PATH "/dev/log"
/* A dummy token for building the unauthenticated "check" request. */
#define TG_CHECK_DUMMY_TOKEN "tokengate-check"
/* Room for one embed parameter shown in JSON (the library caps them at
 * 1024 bytes; sanitizing never makes a string longer). */
#define TG_CLI_EMBED_SHOWN 1100

/* Where the token in use came from. */
typedef struct tg_cli_token {
    char *value; /* secret; tg_secret_free */
    int from_file;
    char path[TG_PATH_MAX]; /* the token file (also when absent) */
    time_t expires_at;      /* 0 when unknown or from the environment */
} tg_cli_token_t;

typedef enum tg_check_status {
    TG_CHECK_OK = 0,
    TG_CHECK_WARN,
    TG_CHECK_FAIL,
    TG_CHECK_SKIP
} tg_check_status_t;

/* The state of "check" across its steps. */
typedef struct tg_check {
    tg_cli_t *cli;
    json_t *steps;
    tg_err_t first_err; /* TG_OK until a step fails */
    char first_msg[1100];
} tg_check_t;

static int opt_fail(tg_cli_t *cli, int c, char **argv);
static int no_more_args(tg_cli_t *cli, int argc, char **argv);
static int no_options(tg_cli_t *cli, int argc, char **argv);
static const char *clean(char *buf, size_t size, const char *s);
static char *take_env(const char *name, int *present);
static int read_line_fd(int fd, size_t max, char **out);
static void tty_on_signal(int sig);
static int tty_prompt(tg_cli_t *cli, const char *prompt, int echo,
                      const char *what, const char *hint, char **out);
static int get_client_id(tg_cli_t *cli, const char *opt, char **out);
static int get_secret(tg_cli_t *cli, const char *secret_file, int secret_stdin,
                      char **out);
static int token_path(tg_cli_t *cli, char *path, size_t size, int create);
static int token_save(tg_cli_t *cli, const char *path, const char *token,
                      time_t expires_at);
static int token_load(tg_cli_t *cli, tg_cli_token_t *tok, int allow_expired);
static void token_release(tg_cli_token_t *tok);
static int write_token_output(tg_cli_t *cli, const char *path,
                              const char *token);
static int client_open(tg_cli_t *cli, tg_client_t **cl);
static int token_client_open(tg_cli_t *cli, tg_cli_token_t *tok,
                             tg_client_t **cl);
static int client_fail(tg_cli_t *cli, tg_client_t *cl, tg_err_t err);
static void show_identity(tg_cli_t *cli, const tg_identity_t *id, int full,
                          time_t expires_hint);
static void creds_field(tg_cli_t *cli, const char *key, const char *label,
                        const char *value);
static const char *who(const tg_identity_t *id);
static void check_step(tg_check_t *ck, tg_check_status_t status,
                       const char *name, tg_err_t err, const char *hint,
                       const char *fmt, ...) TG_CLI_PRINTF(6, 7);
static void proxy_shown(const char *proxy, char *dst, size_t size);
static int check_parse_url(const char *url, char *scheme, size_t scheme_size,
                           char *host, size_t host_size, char *port,
                           size_t port_size);
static int check_connect(const struct addrinfo *ai, long timeout_ms,
                         double *elapsed_ms, int *timed_out);
static double now_ms(void);
static void check_syslog(tg_check_t *ck);
static int embed_host(tg_cli_t *cli, const char *arg, tg_embed_params_t *p);
static int embed_session_length(tg_cli_t *cli, const char *arg, long *out);
static int embed_attr(tg_cli_t *cli, const char *arg, tg_embed_attr_t *attr);
static json_t *embed_list(const char *const *items, size_t n);
static void embed_set(tg_cli_t *cli, const char *key, const char *value);
static void embed_show(tg_cli_t *cli, const tg_embed_params_t *p,
                       const char *url, const char *sts, int server);
static int embed_secret(tg_cli_t *cli, int secret_stdin, char **out);

/* The terminal state to restore when a signal arrives during a prompt. */
static struct termios tg_tty_saved;
static volatile sig_atomic_t tg_tty_fd = -1;

/* ---------------------------------------------------------------------- */
/* Small helpers                                                          */
/* ---------------------------------------------------------------------- */

/* A usage error for what getopt_long() refused. */
static int
opt_fail(tg_cli_t *cli, int c, char **argv)
{
    char name[128];

    if (c == ':') {
        cli_option_name(name, sizeof(name), argv[optind - 1]);
        return cli_usage(cli, "option %s needs a value", name);
    }
    if (optopt != 0) {
        return cli_usage(cli, "unknown option -%c (see tokengate %s --help)",
                         optopt > 0x20 && optopt < 0x7f ? optopt : '?',
                         cli->command);
    }
    cli_option_name(name, sizeof(name), argv[optind - 1]);
    return cli_usage(cli, "unknown option %s (see tokengate %s --help)", name,
                     cli->command);
}

static int
no_more_args(tg_cli_t *cli, int argc, char **argv)
{
    char arg[64];

    if (optind < argc) {
        cli_sanitize(arg, sizeof(arg), argv[optind]);
        return cli_usage(cli,
                         "unexpected argument %s (see tokengate %s "
                         "--help)",
                         arg, cli->command);
    }
    return 0;
}

/* For commands without options: only --help, handled in main.c. */
static int
no_options(tg_cli_t *cli, int argc, char **argv)
{
    static const struct option none[] = {{NULL, 0, NULL, 0}};
    int c;

    c = getopt_long(argc, argv, ":", none, NULL);
    return c == -1 ? 0 : opt_fail(cli, c, argv);
}

static const char *
clean(char *buf, size_t size, const char *s)
{
    cli_sanitize(buf, size, s != NULL ? s : "");
    return buf;
}

/* Take a secret from the environment: copy it, wipe the original (it is
 * visible in /proc/PID/environ) and unset it.  NULL when absent. */
static char *
take_env(const char *name, int *present)
{
    char *value = getenv(name);
    char *copy;

    *present = value != NULL;
    if (value == NULL) {
        return NULL;
    }
    copy = tg_secret_dup(value);
    explicit_bzero(value, strlen(value));
    (void) unsetenv(name);
    return copy;
}

/* Read one line (without its newline) byte by byte, so nothing after it
 * is consumed and no stdio buffer keeps a copy.  Returns 0, -1 for a
 * read error, or -2 when the line is longer than max. */
static int
read_line_fd(int fd, size_t max, char **out)
{
    char *buf;
    size_t len = 0;
    ssize_t n;
    char c;
    int rc = 0;

    *out = NULL;
    buf = calloc(1, max + 2);
    if (buf == NULL) {
        return -1;
    }
    for (;;) {
        n = read(fd, &c, 1);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            rc = -1;
            break;
        }
        if (n == 0 || c == '\n') {
            break;
        }
        if (len > max) {
            rc = -2;
            continue; /* drain the rest of the line */
        }
        buf[len++] = c;
    }
    c = '\0';
    if (rc == 0 && len > 0 && buf[len - 1] == '\r') {
        buf[--len] = '\0';
    }
    if (rc != 0) {
        tg_secret_free_len(buf, max + 2);
        return rc;
    }
    *out = buf;
    return 0;
}

static void
tty_on_signal(int sig)
{
    if (tg_tty_fd >= 0) {
        (void) tcsetattr(tg_tty_fd, TCSAFLUSH, &tg_tty_saved);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

/*
 * Prompt on the controlling terminal (never stdout, which may be a pipe).
 * With echo off the terminal is restored on every path, including
 * SIGINT/SIGTERM/SIGHUP/SIGQUIT; Ctrl-Z is ignored during the prompt.
 * Only offered when stdin is a terminal, so scripts fail fast.
 */
static int
tty_prompt(tg_cli_t *cli, const char *prompt, int echo, const char *what,
           const char *hint, char **out)
{
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    struct sigaction sa, old[4], old_tstp;
    struct termios t;
    int fd = -1, rc = 0, r, i, installed = 0;

    *out = NULL;
    if (!isatty(STDIN_FILENO)) {
        return cli_failf(cli, TG_INPUT,
                         "no %s: standard input is not a terminal; %s", what,
                         hint);
    }
    fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        return cli_failf(cli, TG_INPUT, "no %s: no terminal to ask on; %s",
                         what, hint);
    }
    if (!echo) {
        if (tcgetattr(fd, &tg_tty_saved) != 0) {
            rc = cli_failf(cli, TG_INPUT,
                           "no %s: cannot set up the "
                           "terminal: %s; %s",
                           what, strerror(errno), hint);
            goto out;
        }
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = tty_on_signal;
        sigemptyset(&sa.sa_mask);
        for (i = 0; i < 4; i++) {
            (void) sigaction(sigs[i], &sa, &old[i]);
        }
        sa.sa_handler = SIG_IGN;
        (void) sigaction(SIGTSTP, &sa, &old_tstp);
        installed = 1;
        tg_tty_fd = fd;
        t = tg_tty_saved;
        t.c_lflag &= ~(tcflag_t) (ECHO | ECHOE | ECHOK);
        t.c_lflag |= ECHONL;
        if (tcsetattr(fd, TCSAFLUSH, &t) != 0) {
            rc = cli_failf(cli, TG_INPUT, "no %s: cannot turn off echo: %s",
                           what, strerror(errno));
            goto out;
        }
    }
    if (write(fd, prompt, strlen(prompt)) < 0) {
        rc = cli_failf(cli, TG_INPUT, "no %s: cannot write the prompt: %s",
                       what, strerror(errno));
        goto out;
    }
    r = read_line_fd(fd, TG_SECRET_MAX, out);
    if (r == -2) {
        rc = cli_failf(cli, TG_INPUT, "the %s is longer than %d bytes", what,
                       TG_SECRET_MAX);
    } else if (r != 0) {
        rc = cli_failf(cli, TG_INPUT, "cannot read the %s from the terminal",
                       what);
    }
out:
    if (installed) {
        (void) tcsetattr(fd, TCSAFLUSH, &tg_tty_saved);
        tg_tty_fd = -1;
        for (i = 0; i < 4; i++) {
            (void) sigaction(sigs[i], &old[i], NULL);
        }
        (void) sigaction(SIGTSTP, &old_tstp, NULL);
    }
    if (fd >= 0) {
        close(fd);
    }
    return rc;
}

/* The client id: --client-id, else client_id, else a prompt (echoed). */
static int
get_client_id(tg_cli_t *cli, const char *opt, char **out)
{
    const char *value = opt != NULL ? opt : cli->cfg->client_id;

    if (value != NULL && value[0] != '\0') {
        *out = tg_secret_dup(value);
        return *out != NULL ? 0 : cli_failf(cli, TG_NOMEM, "out of memory");
    }
    return tty_prompt(cli, "Client id: ", 1, "client id",
                      "use --client-id or set client_id in the "
                      "configuration",
                      out);
}

/*
 * The client secret, never from argv: TOKENGATE_SECRET, --secret-file,
 * --secret-stdin, client_secret_file, else a prompt without echo.  The
 * explicit options come before the configured file.
 */
static int
get_secret(tg_cli_t *cli, const char *secret_file, int secret_stdin, char **out)
{
    tg_diag_t diag;
    tg_err_t err;
    int present, r;

    *out = take_env("TOKENGATE_SECRET", &present);
    if (present) {
        return *out != NULL ? 0 : cli_failf(cli, TG_NOMEM, "out of memory");
    }
    tg_diag_clear(&diag);
    if (secret_file != NULL) {
        err = tg_secret_file_read(secret_file, "--secret-file", out, &diag);
        return err == TG_OK ? 0 : cli_fail(cli, err, &diag);
    }
    if (secret_stdin) {
        r = read_line_fd(STDIN_FILENO, TG_SECRET_MAX, out);
        if (r == -2) {
            return cli_failf(cli, TG_INPUT,
                             "the client secret on stdin is longer than %d "
                             "bytes",
                             TG_SECRET_MAX);
        }
        if (r != 0) {
            return cli_failf(cli, TG_INPUT,
                             "cannot read the client secret from stdin: %s",
                             strerror(errno));
        }
        return 0;
    }
    if (cli->cfg->client_secret_file != NULL &&
        cli->cfg->client_secret_file[0] != '\0') {
        err = tg_secret_file_read(cli->cfg->client_secret_file,
                                  "client_secret_file", out, &diag);
        return err == TG_OK ? 0 : cli_fail(cli, err, &diag);
    }
    return tty_prompt(cli, "Client secret: ", 0, "client secret",
                      "set TOKENGATE_SECRET, use --secret-file FILE or "
                      "--secret-stdin, or set client_secret_file",
                      out);
}

/* ---------------------------------------------------------------------- */
/* The token store                                                        */
/* ---------------------------------------------------------------------- */

/*
 * The token file: TOKENGATE_TOKEN_FILE, else $XDG_RUNTIME_DIR/tokengate/
 * token, else $HOME/.cache/tokengate/token.  With create, our directories
 * are made 0700; a tokengate directory must be ours and private.
 */
static int
token_path(tg_cli_t *cli, char *path, size_t size, int create)
{
    char dir[TG_PATH_MAX], shown[256];
    const char *env, *base;
    struct passwd *pw;
    struct stat st;
    int n;

    env = getenv("TOKENGATE_TOKEN_FILE");
    if (env != NULL && env[0] != '\0') {
        n = snprintf(path, size, "%s", env);
        if (n < 0 || (size_t) n >= size) {
            return cli_failf(cli, TG_INPUT,
                             "TOKENGATE_TOKEN_FILE is too "
                             "long");
        }
        return 0;
    }
    env = getenv("XDG_RUNTIME_DIR");
    if (env != NULL && env[0] == '/') {
        n = snprintf(dir, sizeof(dir), "%s/tokengate", env);
    } else {
        base = getenv("HOME");
        if (base == NULL || base[0] != '/') {
            pw = getpwuid(getuid());
            base = pw != NULL ? pw->pw_dir : NULL;
        }
        if (base == NULL || base[0] != '/') {
            return cli_failf(cli, TG_INPUT,
                             "no place for the token file: set "
                             "TOKENGATE_TOKEN_FILE, XDG_RUNTIME_DIR or HOME");
        }
        n = snprintf(dir, sizeof(dir), "%s/.cache", base);
        if (n < 0 || (size_t) n >= sizeof(dir)) {
            return cli_failf(cli, TG_INPUT, "HOME is too long");
        }
        if (create && mkdir(dir, 0700) != 0 && errno != EEXIST) {
            return cli_failf(cli, TG_INPUT, "cannot create %s: %s",
                             clean(shown, sizeof(shown), dir), strerror(errno));
        }
        n = snprintf(dir, sizeof(dir), "%s/.cache/tokengate", base);
    }
    if (n < 0 || (size_t) n >= sizeof(dir)) {
        return cli_failf(cli, TG_INPUT,
                         "the token directory path is too "
                         "long");
    }
    if (create && mkdir(dir, 0700) != 0 && errno != EEXIST) {
        return cli_failf(cli, TG_INPUT, "cannot create %s: %s",
                         clean(shown, sizeof(shown), dir), strerror(errno));
    }
    if (lstat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid()) {
            return cli_failf(cli, TG_INPUT,
                             "%s is not a directory of yours; refusing to "
                             "keep a token there",
                             clean(shown, sizeof(shown), dir));
        }
        if ((st.st_mode & 077) != 0 && chmod(dir, 0700) != 0) {
            return cli_failf(cli, TG_INPUT, "cannot make %s private: %s",
                             clean(shown, sizeof(shown), dir), strerror(errno));
        }
    }
    n = snprintf(path, size, "%s/token", dir);
    if (n < 0 || (size_t) n >= size) {
        return cli_failf(cli, TG_INPUT, "the token file path is too long");
    }
    return 0;
}

/* Write {"api","url","token","expires_at"} to a private temporary file
 * in the same directory, fsync it, and rename it over the token file. */
static int
token_save(tg_cli_t *cli, const char *path, const char *token,
           time_t expires_at)
{
    char tmp[TG_PATH_MAX + 16], shown[256], *dirend;
    char *buf = NULL;
    size_t cap = TG_TOKEN_FILE_MAX, len = 0, done = 0;
    json_t *doc = NULL;
    ssize_t w;
    int fd = -1, dfd, rc = 0, n, tmp_exists = 0;

    doc = json_pack("{s:s, s:s, s:s, s:I}", "api", cli_api_name(cli->cfg->api),
                    "url", cli->cfg->url, "token", token, "expires_at",
                    (json_int_t) expires_at);
    buf = malloc(cap);
    if (doc == NULL || buf == NULL) {
        rc = cli_failf(cli, TG_NOMEM, "cannot build the token file");
        goto out;
    }
    len = json_dumpb(doc, buf, cap - 1, JSON_COMPACT);
    if (len == 0 || len >= cap - 1) {
        rc = cli_failf(cli, TG_INTERNAL, "cannot build the token file");
        goto out;
    }
    buf[len++] = '\n';

    n = snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path);
    if (n < 0 || (size_t) n >= sizeof(tmp)) {
        rc = cli_failf(cli, TG_INPUT, "the token file path is too long");
        goto out;
    }
    fd = mkostemp(tmp, O_CLOEXEC);
    tmp_exists = fd >= 0;
    if (fd < 0) {
        rc = cli_failf(cli, TG_INPUT, "cannot create a file next to %s: %s",
                       clean(shown, sizeof(shown), path), strerror(errno));
        goto out;
    }
    if (fchmod(fd, 0600) != 0) {
        rc = cli_failf(cli, TG_INPUT, "cannot protect %s: %s",
                       clean(shown, sizeof(shown), tmp), strerror(errno));
        goto out;
    }
    while (done < len) {
        w = write(fd, buf + done, len - done);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            rc = cli_failf(cli, TG_INPUT, "cannot write %s: %s",
                           clean(shown, sizeof(shown), tmp), strerror(errno));
            goto out;
        }
        done += (size_t) w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        fd = -1;
        rc = cli_failf(cli, TG_INPUT, "cannot write %s: %s",
                       clean(shown, sizeof(shown), tmp), strerror(errno));
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        rc = cli_failf(cli, TG_INPUT, "cannot store the token in %s: %s",
                       clean(shown, sizeof(shown), path), strerror(errno));
        goto out;
    }
    tmp_exists = 0;
    /* Make the rename durable (best effort). */
    dirend = strrchr(path, '/');
    if (dirend != NULL) {
        char dir[TG_PATH_MAX];
        size_t dl = (size_t) (dirend - path);
        if (dl == 0) {
            dl = 1;
        }
        if (dl < sizeof(dir)) {
            memcpy(dir, path, dl);
            dir[dl] = '\0';
            dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (dfd >= 0) {
                (void) fsync(dfd);
                close(dfd);
            }
        }
    }
out:
    if (fd >= 0) {
        close(fd);
    }
    if (tmp_exists) {
        (void) unlink(tmp);
    }
    tg_secret_free_len(buf, cap);
    json_decref(doc);
    return rc;
}

/*
 * The token to use: TOKENGATE_TOKEN, else the token file, but only when
 * the file's api and url are the current config's (a token is never sent
 * to another server), and not expired (unless allow_expired).
 */
static int
token_load(tg_cli_t *cli, tg_cli_token_t *tok, int allow_expired)
{
    char shown[256], url_shown[256], api_shown[32], when[TG_CLI_TIME_SIZE];
    char *buf = NULL;
    const char *api, *url, *value;
    json_t *doc = NULL, *exp;
    json_error_t jerr;
    struct stat st;
    tg_diag_t diag;
    size_t len = 0;
    ssize_t r;
    int fd = -1, present, rc = 0;

    memset(tok, 0, sizeof(*tok));
    tg_diag_clear(&diag);
    tok->value = take_env("TOKENGATE_TOKEN", &present);
    if (present) {
        if (tok->value == NULL) {
            return cli_failf(cli, TG_NOMEM, "out of memory");
        }
        if (tg_token_check(tok->value, &diag) != TG_OK) {
            rc = cli_failf(cli, TG_INPUT, "TOKENGATE_TOKEN: %s", diag.message);
            token_release(tok);
        }
        return rc;
    }
    rc = token_path(cli, tok->path, sizeof(tok->path), 0);
    if (rc != 0) {
        return rc;
    }
    clean(shown, sizeof(shown), tok->path);
    fd = open(tok->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
    if (fd < 0 && errno == ENOENT) {
        return cli_failf(cli, TG_INPUT,
                         "not logged in (no token file %s): run tokengate "
                         "login, or set TOKENGATE_TOKEN",
                         shown);
    }
    if (fd < 0 && errno == ELOOP) {
        return cli_failf(cli, TG_INPUT,
                         "the token file %s is a symbolic link; refusing it",
                         shown);
    }
    if (fd < 0) {
        return cli_failf(cli, TG_INPUT, "cannot open the token file %s: %s",
                         shown, strerror(errno));
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
        (st.st_mode & 077) != 0) {
        rc = cli_failf(cli, TG_INPUT,
                       "the token file %s is not a private file of yours "
                       "(mode 0600); remove it and run tokengate login",
                       shown);
        goto out;
    }
    if (st.st_size <= 0 || st.st_size > TG_TOKEN_FILE_MAX) {
        rc = cli_failf(cli, TG_INPUT,
                       "the token file %s has a bad size; remove it and run "
                       "tokengate login",
                       shown);
        goto out;
    }
    buf = malloc(TG_TOKEN_FILE_MAX);
    if (buf == NULL) {
        rc = cli_failf(cli, TG_NOMEM, "out of memory");
        goto out;
    }
    while (len < TG_TOKEN_FILE_MAX) {
        r = read(fd, buf + len, TG_TOKEN_FILE_MAX - len);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            rc = cli_failf(cli, TG_INPUT, "cannot read %s: %s", shown,
                           strerror(errno));
            goto out;
        }
        if (r == 0) {
            break;
        }
        len += (size_t) r;
    }
    doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    api = json_string_value(json_object_get(doc, "api"));
    url = json_string_value(json_object_get(doc, "url"));
    value = json_string_value(json_object_get(doc, "token"));
    exp = json_object_get(doc, "expires_at");
    if (doc == NULL || api == NULL || url == NULL || value == NULL ||
        (exp != NULL && !json_is_integer(exp))) {
        rc = cli_failf(cli, TG_INPUT,
                       "the token file %s is damaged; remove it and run "
                       "tokengate login",
                       shown);
        goto out;
    }
    if (strcmp(url, cli->cfg->url) != 0) {
        rc = cli_failf(cli, TG_INPUT,
                       "stored token is for %s (api %s), not this server; "
                       "run tokengate login",
                       clean(url_shown, sizeof(url_shown), url),
                       clean(api_shown, sizeof(api_shown), api));
        goto out;
    }
    if (strcmp(api, cli_api_name(cli->cfg->api)) != 0) {
        clean(api_shown, sizeof(api_shown), api);
        rc = cli_failf(cli, TG_INPUT,
                       "stored token is for the %s API of this server, not "
                       "the %s API; use --api %s, or run tokengate login "
                       "with api %s",
                       api_shown, cli_api_name(cli->cfg->api), api_shown,
                       cli_api_name(cli->cfg->api));
        goto out;
    }
    if (tg_token_check(value, &diag) != TG_OK) {
        rc = cli_failf(cli, TG_INPUT,
                       "the token in %s is malformed (%s); run tokengate "
                       "login",
                       shown, diag.message);
        goto out;
    }
    tok->expires_at = exp != NULL ? (time_t) json_integer_value(exp) : 0;
    tok->value = tg_secret_dup(value);
    tok->from_file = 1;
    if (tok->value == NULL) {
        rc = cli_failf(cli, TG_NOMEM, "out of memory");
        goto out;
    }
    if (!allow_expired && tok->expires_at > 0 &&
        tok->expires_at <= time(NULL)) {
        rc = cli_failf(cli, TG_TOKEN_INVALID,
                       "stored token expired at %s; run tokengate login",
                       cli_time(tok->expires_at, when));
        goto out;
    }
out:
    if (fd >= 0) {
        close(fd);
    }
    tg_secret_free_len(buf, TG_TOKEN_FILE_MAX);
    json_decref(doc);
    if (rc != 0) {
        token_release(tok);
    }
    return rc;
}

static void
token_release(tg_cli_token_t *tok)
{
    tg_secret_free(tok->value);
    tok->value = NULL;
}

/* sudo --output: a private file; never through a symbolic link. */
static int
write_token_output(tg_cli_t *cli, const char *path, const char *token)
{
    char shown[256];
    struct stat st;
    size_t len = strlen(token), done = 0;
    ssize_t w;
    int fd, rc = 0;

    clean(shown, sizeof(shown), path);
    fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY,
              0600);
    if (fd < 0 && errno == ELOOP) {
        return cli_failf(cli, TG_INPUT,
                         "%s is a symbolic link; refusing to write a token "
                         "through it",
                         shown);
    }
    if (fd < 0) {
        return cli_failf(cli, TG_INPUT, "cannot open %s: %s", shown,
                         strerror(errno));
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
        rc = cli_failf(cli, TG_INPUT,
                       "%s is not a regular file of yours; refusing to "
                       "write a token there",
                       shown);
        goto out;
    }
    if (fchmod(fd, 0600) != 0 || ftruncate(fd, 0) != 0) {
        rc = cli_failf(cli, TG_INPUT, "cannot prepare %s: %s", shown,
                       strerror(errno));
        goto out;
    }
    while (done < len) {
        w = write(fd, token + done, len - done);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            rc = cli_failf(cli, TG_INPUT, "cannot write %s: %s", shown,
                           strerror(errno));
            goto out;
        }
        done += (size_t) w;
    }
    if (write(fd, "\n", 1) != 1 || fsync(fd) != 0) {
        rc = cli_failf(cli, TG_INPUT, "cannot write %s: %s", shown,
                       strerror(errno));
    }
out:
    if (close(fd) != 0 && rc == 0) {
        rc = cli_failf(cli, TG_INPUT, "cannot write %s: %s", shown,
                       strerror(errno));
    }
    return rc;
}

/* ---------------------------------------------------------------------- */
/* Client and identity helpers                                            */
/* ---------------------------------------------------------------------- */

static int
client_open(tg_cli_t *cli, tg_client_t **cl)
{
    tg_diag_t diag;
    tg_err_t err;

    tg_diag_clear(&diag);
    err = tg_client_new(cli->cfg, cl, &diag);
    return err == TG_OK ? 0 : cli_fail(cli, err, &diag);
}

/* The stored (unexpired) token and a client to send it with: what every
 * command acting as the logged-in user starts with.  On failure the exit
 * code is set and *tok / *cl hold what the caller releases anyway. */
static int
token_client_open(tg_cli_t *cli, tg_cli_token_t *tok, tg_client_t **cl)
{
    int rc = token_load(cli, tok, 0);

    return rc != 0 ? rc : client_open(cli, cl);
}

static int
client_fail(tg_cli_t *cli, tg_client_t *cl, tg_err_t err)
{
    return cli_fail(cli, err, tg_client_diag(cl));
}

/* The short name of a user for messages (not sanitized). */
static const char *
who(const tg_identity_t *id)
{
    if (id->name != NULL && id->name[0] != '\0') {
        return id->name;
    }
    if (id->display_name != NULL && id->display_name[0] != '\0') {
        return id->display_name;
    }
    return id->id != NULL ? id->id : "?";
}

/* The identity: one "label: value" line per attribute, and flat keys in
 * the JSON object (id, name, email, ..., groups, expires_at, flags). */
static void
show_identity(tg_cli_t *cli, const tg_identity_t *id, int full,
              time_t expires_hint)
{
    char line[2048], item[256], when[TG_CLI_TIME_SIZE];
    json_t *groups = json_array();
    size_t i, n = 0;
    time_t expires = id->expires_at != 0 ? id->expires_at : expires_hint;
    long left;

    cli_field(cli, "id", "id", id->id);
    cli_field(cli, "name", "name", id->name);
    cli_field(cli, "email", "email", id->email);
    cli_field(cli, "display_name", "display name", id->display_name);
    if (full || (id->first_name != NULL && id->first_name[0] != '\0')) {
        cli_field(cli, "first_name", "first name", id->first_name);
    }
    if (full || (id->last_name != NULL && id->last_name[0] != '\0')) {
        cli_field(cli, "last_name", "last name", id->last_name);
    }

    line[0] = '\0';
    for (i = 0; i < id->n_groups; i++) {
        clean(item, sizeof(item), id->groups[i]);
        if (groups != NULL) {
            json_array_append_new(groups, json_string(item));
        }
        if (n < sizeof(line)) {
            n += (size_t) snprintf(line + n, sizeof(line) - n, "%s%s",
                                   i > 0 ? ", " : "", item);
        }
    }
    cli_set_json(cli, "groups", groups);
    cli_set_bool(cli, "has_profile", id->has_profile);
    cli_say(cli, "%-14s %s", "groups:",
            id->n_groups > 0  ? line
            : id->has_profile ? "(none)"
                              : "(not fetched: this API call does not "
                                "return groups)");

    cli_set_int(cli, "expires_at", (long long) expires);
    if (expires != 0) {
        cli_set_str(cli, "expires", cli_time(expires, when));
        left = (long) (expires - time(NULL));
        if (left > 0) {
            cli_say(cli, "%-14s %s (in %ld min)", "expires:", when,
                    (left + 59) / 60);
        } else {
            cli_say(cli, "%-14s %s (expired)", "expires:", when);
        }
    } else {
        cli_set_json(cli, "expires", json_null());
        cli_say(cli, "%-14s %s", "expires:", "unknown");
    }

    /* Flags are 1, 0 or -1 (the server did not say): JSON null, "unknown". */
    cli_set_json(cli, "evaluation", id->evaluation < 0
                                        ? json_null()
                                        : json_boolean(id->evaluation));
    cli_set_json(cli, "disabled",
                 id->disabled < 0 ? json_null() : json_boolean(id->disabled));
    snprintf(line, sizeof(line), "%s%s%s",
             id->evaluation > 0   ? "evaluation user"
             : id->evaluation < 0 ? "evaluation unknown"
                                  : "",
             id->evaluation != 0 && id->disabled != 0 ? ", " : "",
             id->disabled > 0   ? "disabled"
             : id->disabled < 0 ? "disabled unknown"
                                : "");
    cli_say(cli, "%-14s %s", "flags:", line[0] != '\0' ? line : "none");
}

/* ---------------------------------------------------------------------- */
/* login                                                                  */
/* ---------------------------------------------------------------------- */

int
cmd_login(tg_cli_t *cli, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"client-id", required_argument, NULL, 'i'},
        {"secret-file", required_argument, NULL, 'f'},
        {"secret-stdin", no_argument, NULL, 's'},
        {"print-token", no_argument, NULL, 'p'},
        {NULL, 0, NULL, 0},
    };
    const char *client_id_opt = NULL, *secret_file = NULL;
    int secret_stdin = 0, print_token = 0, c, rc = 0;
    char path[TG_PATH_MAX], fp[TG_FINGERPRINT_SIZE];
    char name[256], email[256], when[TG_CLI_TIME_SIZE];
    char *client_id = NULL, *secret = NULL;
    tg_identity_t *id = NULL;
    tg_client_t *cl = NULL;
    tg_token_t tok = {NULL, 0};
    tg_diag_t diag;
    tg_err_t err;
    time_t expires;
    long requests = 0, connections = 0;

    for (;;) {
        c = getopt_long(argc, argv, ":", longopts, NULL);
        if (c == -1) {
            break;
        }
        switch (c) {
        case 'i':
            client_id_opt = optarg;
            break;
        case 'f':
            secret_file = optarg;
            break;
        case 's':
            secret_stdin = 1;
            break;
        case 'p':
            print_token = 1;
            break;
        default:
            return opt_fail(cli, c, argv);
        }
    }
    if (no_more_args(cli, argc, argv) != 0) {
        return cli->exit_code;
    }
    if (secret_file != NULL && secret_stdin) {
        return cli_usage(cli, "--secret-file and --secret-stdin exclude "
                              "each other");
    }
    cli->human_to_stderr = print_token;

    /* Both are checked before any network call (F14). */
    rc = token_path(cli, path, sizeof(path), 1);
    if (rc == 0) {
        rc = get_client_id(cli, client_id_opt, &client_id);
    }
    if (rc == 0) {
        rc = get_secret(cli, secret_file, secret_stdin, &secret);
    }
    if (rc != 0) {
        goto out;
    }
    tg_diag_clear(&diag);
    err = tg_credential_check(client_id, "client id", &diag);
    if (err == TG_OK) {
        err = tg_credential_check(secret, "client secret", &diag);
    }
    if (err != TG_OK) {
        rc = cli_fail(cli, err, &diag);
        goto out;
    }

    rc = client_open(cli, &cl);
    if (rc != 0) {
        goto out;
    }
    err = tg_client_token(cl, client_id, secret, &tok);
    tg_secret_free(secret);
    secret = NULL;
    if (err != TG_OK) {
        rc = client_fail(cli, cl, err);
        goto out;
    }
    /* Prove the token works (same connection) and learn who it is. */
    err = tg_client_validate(cl, tok.value, &id);
    if (err != TG_OK) {
        rc = client_fail(cli, cl, err);
        goto out;
    }
    tg_diag_clear(&diag);
    err = tg_rules_check(cli->cfg, id, &diag);
    if (err != TG_OK) {
        /* Nothing is stored, so leave no live token behind where the API
         * can end it (best effort: the denial is what gets reported). */
        if (cli->cfg->api == TG_API_LOOKER) {
            (void) tg_client_logout(cl, tok.value);
        }
        cli_set_str(cli, "authorization", "denied");
        cli_set_str(cli, "reason", diag.message);
        rc = cli_fail(cli, err, &diag);
        goto out;
    }
    expires = tok.expires_at != 0 ? tok.expires_at : id->expires_at;
    rc = token_save(cli, path, tok.value, expires);
    if (rc != 0) {
        goto out;
    }

    tg_fingerprint(tok.value, strlen(tok.value), fp);
    clean(name, sizeof(name), who(id));
    clean(email, sizeof(email), id->email);
    cli_set_str(cli, "user", who(id));
    cli_set_str(cli, "id", id->id);
    cli_set_str(cli, "email", id->email);
    cli_set_str(cli, "fingerprint", fp);
    cli_set_int(cli, "expires_at", (long long) expires);
    cli_set_str(cli, "token_file", path);
    tg_client_stats(cl, &requests, &connections);
    cli_set_int(cli, "requests", requests);
    cli_set_int(cli, "connections", connections);
    cli_say(cli, "logged in as %s%s%s%s, token fp %s, expires %s", name,
            email[0] != '\0' ? " (" : "", email, email[0] != '\0' ? ")" : "",
            fp, cli_time(expires, when));
    if (print_token) {
        if (cli->json) {
            cli_set_str(cli, "token", tok.value);
        } else {
            fputs(tok.value, stdout);
            fputc('\n', stdout);
        }
    }
out:
    tg_secret_free(client_id);
    tg_secret_free(secret);
    tg_token_clear(&tok);
    tg_identity_free(id);
    tg_client_free(cl);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* whoami, profile                                                        */
/* ---------------------------------------------------------------------- */

int
cmd_whoami(tg_cli_t *cli, int argc, char **argv)
{
    tg_cli_token_t tok = {0};
    tg_identity_t *id = NULL;
    tg_client_t *cl = NULL;
    char reason[sizeof(((tg_diag_t *) 0)->message)];
    tg_diag_t diag;
    tg_err_t err;
    int rc;

    if (no_options(cli, argc, argv) != 0) {
        return cli->exit_code;
    }
    rc = no_more_args(cli, argc, argv);
    if (rc == 0) {
        rc = token_client_open(cli, &tok, &cl);
    }
    if (rc != 0) {
        goto out;
    }
    err = tg_client_validate(cl, tok.value, &id);
    if (err != TG_OK) {
        rc = client_fail(cli, cl, err);
        goto out;
    }
    show_identity(cli, id, 0, tok.expires_at);
    tg_diag_clear(&diag);
    err = tg_rules_check(cli->cfg, id, &diag);
    if (err == TG_OK) {
        cli_field(cli, "authorization", "authorization", "allowed");
    } else {
        clean(reason, sizeof(reason), diag.message);
        cli_set_str(cli, "authorization", "denied");
        cli_set_str(cli, "reason", reason);
        cli_say(cli, "%-14s denied: %s", "authorization:", reason);
        rc = cli_fail(cli, err, &diag);
    }
out:
    token_release(&tok);
    tg_identity_free(id);
    tg_client_free(cl);
    return rc;
}

int
cmd_profile(tg_cli_t *cli, int argc, char **argv)
{
    tg_cli_token_t tok = {0};
    tg_identity_t *id = NULL;
    tg_client_t *cl = NULL;
    tg_err_t err;
    int rc;

    if (no_options(cli, argc, argv) != 0) {
        return cli->exit_code;
    }
    rc = no_more_args(cli, argc, argv);
    if (rc == 0) {
        rc = token_client_open(cli, &tok, &cl);
    }
    if (rc != 0) {
        goto out;
    }
    err = tg_client_profile(cl, tok.value, &id);
    if (err != TG_OK) {
        rc = client_fail(cli, cl, err);
        goto out;
    }
    show_identity(cli, id, 1, tok.expires_at);
out:
    token_release(&tok);
    tg_identity_free(id);
    tg_client_free(cl);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* logout                                                                 */
/* ---------------------------------------------------------------------- */

int
cmd_logout(tg_cli_t *cli, int argc, char **argv)
{
    char shown[256], when[TG_CLI_TIME_SIZE], fp[TG_FINGERPRINT_SIZE];
    tg_cli_token_t tok = {0};
    tg_client_t *cl = NULL;
    struct stat st;
    tg_err_t err;
    int rc, expired;

    if (no_options(cli, argc, argv) != 0) {
        return cli->exit_code;
    }
    rc = no_more_args(cli, argc, argv);
    if (rc != 0) {
        return rc;
    }
    /* Nothing stored and no TOKENGATE_TOKEN: already logged out. */
    if (getenv("TOKENGATE_TOKEN") == NULL) {
        rc = token_path(cli, tok.path, sizeof(tok.path), 0);
        if (rc != 0) {
            return rc;
        }
        if (lstat(tok.path, &st) != 0 && errno == ENOENT) {
            cli_set_bool(cli, "logged_out", 1);
            cli_say(cli, "not logged in (no token file %s)",
                    clean(shown, sizeof(shown), tok.path));
            return 0;
        }
    }
    rc = token_load(cli, &tok, 1);
    if (rc != 0) {
        goto out;
    }
    tg_fingerprint(tok.value, strlen(tok.value), fp);
    cli_set_str(cli, "fingerprint", fp);
    expired = tok.expires_at > 0 && tok.expires_at <= time(NULL);

    if (cli->cfg->api == TG_API_LOOKER && !expired) {
        rc = client_open(cli, &cl);
        if (rc != 0) {
            goto out;
        }
        err = tg_client_logout(cl, tok.value);
        if (err == TG_TOKEN_INVALID) {
            cli_say(cli, "token fp %s was already invalid", fp);
        } else if (err != TG_OK) {
            /* Keep the file: the user can retry when the server is back. */
            rc = client_fail(cli, cl, err);
            goto out;
        } else {
            cli_say(cli, "logged out: token fp %s invalidated", fp);
        }
        cli_set_bool(cli, "invalidated", 1);
    } else if (expired) {
        cli_say(cli, "token fp %s had expired at %s", fp,
                cli_time(tok.expires_at, when));
    }
    if (tok.from_file) {
        clean(shown, sizeof(shown), tok.path);
        if (unlink(tok.path) != 0 && errno != ENOENT) {
            rc = cli_failf(cli, TG_INPUT, "cannot remove %s: %s", shown,
                           strerror(errno));
            goto out;
        }
        cli_set_str(cli, "removed", tok.path);
        cli_say(cli, "removed %s", shown);
    }
    if (cli->cfg->api == TG_API_INSIGHT && !expired) {
        cli_set_bool(cli, "invalidated", 0);
        if (tok.expires_at != 0) {
            cli_say(cli,
                    "note: insight has no logout call; the token stays "
                    "valid until it expires at %s",
                    cli_time(tok.expires_at, when));
        } else {
            cli_say(cli, "note: insight has no logout call; the token stays "
                         "valid until it expires");
        }
    }
    cli_set_bool(cli, "logged_out", 1);
out:
    token_release(&tok);
    tg_client_free(cl);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* credentials (insight), session and sudo (looker)                       */
/* ---------------------------------------------------------------------- */

/* A "label: value" line of credentials, the values in one column after
 * the longest label ("credentials id:"); key, when set, is the JSON key. */
static void
creds_field(tg_cli_t *cli, const char *key, const char *label,
            const char *value)
{
    char shown[512];

    if (key != NULL) {
        cli_set_str(cli, key, value);
    }
    cli_say(cli, "%-*s %s", TG_CREDS_LABEL_WIDTH, label,
            clean(shown, sizeof(shown), value));
    explicit_bzero(shown, sizeof(shown)); /* may be the new secret */
}

int
cmd_credentials(tg_cli_t *cli, int argc, char **argv)
{
    char when[TG_CLI_TIME_SIZE], arg[64], id[32];
    tg_credentials_t creds;
    tg_cli_token_t tok = {0};
    tg_client_t *cl = NULL;
    tg_creds_op_t op;
    tg_err_t err;
    time_t created;
    int rc = 0;

    memset(&creds, 0, sizeof(creds));
    if (no_options(cli, argc, argv) != 0) {
        return cli->exit_code;
    }
    if (optind != argc - 1) {
        return cli_usage(cli, "credentials needs one of show, new, revoke");
    }
    if (strcmp(argv[optind], "show") == 0) {
        op = TG_CREDS_SHOW;
    } else if (strcmp(argv[optind], "new") == 0) {
        op = TG_CREDS_NEW;
    } else if (strcmp(argv[optind], "revoke") == 0) {
        op = TG_CREDS_REVOKE;
    } else {
        return cli_usage(cli,
                         "unknown credentials action %s (show, new, "
                         "revoke)",
                         clean(arg, sizeof(arg), argv[optind]));
    }
    if (cli->cfg->api != TG_API_INSIGHT) {
        return cli_failf(cli, TG_INPUT,
                         "REST API credentials are an insight feature; the "
                         "looker API has none (api = looker)");
    }
    rc = token_client_open(cli, &tok, &cl);
    if (rc != 0) {
        goto out;
    }
    err = tg_client_credentials(cl, tok.value, op, &creds);
    if (err != TG_OK) {
        rc = client_fail(cli, cl, err);
        goto out;
    }
    if (op == TG_CREDS_REVOKE) {
        cli_set_bool(cli, "revoked", 1);
        cli_say(cli, "REST API credentials revoked");
        goto out;
    }
    created = (time_t) (creds.created_ms / 1000);
    cli_set_int(cli, "credentials_id", (long long) creds.credentials_id);
    cli_set_int(cli, "created_ms", (long long) creds.created_ms);
    cli_set_str(cli, "created", cli_time(created, when));
    if (op == TG_CREDS_NEW) {
        creds_field(cli, "client_id", "client id:", creds.client_id);
        /* The one place a secret is printed: it cannot be read again. */
        creds_field(cli, "secret", "secret:", creds.secret);
        cli_warn(cli, "the secret is shown only this once; the previous "
                      "client id and secret are revoked");
    } else if (creds.client_id != NULL && creds.client_id[0] != '\0') {
        creds_field(cli, "client_id", "client id:", creds.client_id);
    }
    snprintf(id, sizeof(id), "%lld", (long long) creds.credentials_id);
    creds_field(cli, NULL, "credentials id:", id);
    creds_field(cli, NULL, "created:", when);
out:
    tg_credentials_clear(&creds);
    token_release(&tok);
    tg_client_free(cl);
    return rc;
}

int
cmd_session(tg_cli_t *cli, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"workspace", required_argument, NULL, 'w'},
        {NULL, 0, NULL, 0},
    };
    const char *workspace = NULL;
    tg_cli_token_t tok = {0};
    tg_client_t *cl = NULL;
    tg_session_t s;
    tg_err_t err;
    int c, rc;

    memset(&s, 0, sizeof(s));
    for (;;) {
        c = getopt_long(argc, argv, ":", longopts, NULL);
        if (c == -1) {
            break;
        }
        if (c != 'w') {
            return opt_fail(cli, c, argv);
        }
        workspace = optarg;
    }
    rc = no_more_args(cli, argc, argv);
    if (rc != 0) {
        return rc;
    }
    if (cli->cfg->api != TG_API_LOOKER) {
        return cli_failf(cli, TG_INPUT,
                         "API sessions are a looker feature; "
                         "the insight API has none "
                         "(api = insight)");
    }
    rc = token_client_open(cli, &tok, &cl);
    if (rc != 0) {
        goto out;
    }
    err = tg_client_session(cl, tok.value, workspace, &s);
    if (err != TG_OK) {
        rc = client_fail(cli, cl, err);
        goto out;
    }
    if (s.workspace_id != NULL && s.workspace_id[0] != '\0') {
        cli_field(cli, "workspace_id", "workspace", s.workspace_id);
    } else {
        cli_set_json(cli, "workspace_id", json_null());
        cli_say(cli, "%-14s %s", "workspace:", "(none)");
    }
    if (s.sudo_user_id != NULL && s.sudo_user_id[0] != '\0') {
        cli_field(cli, "sudo_user_id", "sudo user", s.sudo_user_id);
    } else {
        cli_set_json(cli, "sudo_user_id", json_null());
        cli_say(cli, "%-14s %s", "sudo user:", "(none)");
    }
out:
    tg_session_clear(&s);
    token_release(&tok);
    tg_client_free(cl);
    return rc;
}

int
cmd_sudo(tg_cli_t *cli, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"output", required_argument, NULL, 'o'},
        {"print-token", no_argument, NULL, 'p'},
        {NULL, 0, NULL, 0},
    };
    const char *output = NULL, *user_id;
    char name[256], email[256], uid[128], shown[256];
    char when[TG_CLI_TIME_SIZE], fp[TG_FINGERPRINT_SIZE];
    tg_cli_token_t admin = {0};
    tg_token_t stok = {NULL, 0};
    tg_identity_t *id = NULL;
    tg_client_t *cl = NULL;
    struct stat st;
    tg_err_t err;
    time_t expires;
    int c, rc = 0, print_token = 0;

    for (;;) {
        c = getopt_long(argc, argv, ":", longopts, NULL);
        if (c == -1) {
            break;
        }
        switch (c) {
        case 'o':
            output = optarg;
            break;
        case 'p':
            print_token = 1;
            break;
        default:
            return opt_fail(cli, c, argv);
        }
    }
    if (optind != argc - 1) {
        return cli_usage(cli, "sudo needs exactly one USER_ID");
    }
    user_id = argv[optind];
    if (output == NULL && !print_token) {
        return cli_usage(cli, "sudo needs --output FILE or --print-token");
    }
    cli->human_to_stderr = print_token;
    if (cli->cfg->api != TG_API_LOOKER) {
        return cli_failf(cli, TG_INPUT,
                         "sudo is a looker feature; the "
                         "insight API has none "
                         "(api = insight)");
    }
    /* Refuse a bad --output before a token is minted for nothing. */
    if (output != NULL && lstat(output, &st) == 0 &&
        (!S_ISREG(st.st_mode) || st.st_uid != geteuid())) {
        return cli_failf(cli, TG_INPUT,
                         "%s is %s; refusing to write a token there",
                         clean(shown, sizeof(shown), output),
                         S_ISLNK(st.st_mode) ? "a symbolic link"
                                             : "not a regular file of yours");
    }
    rc = token_load(cli, &admin, 0);
    if (rc == 0) {
        rc = client_open(cli, &cl);
    }
    if (rc != 0) {
        goto out;
    }
    err = tg_client_sudo(cl, admin.value, user_id, &stok);
    if (err != TG_OK) {
        rc = client_fail(cli, cl, err);
        goto out;
    }
    err = tg_client_validate(cl, stok.value, &id);
    if (err != TG_OK) {
        rc = client_fail(cli, cl, err);
        goto out;
    }
    if (output != NULL) {
        rc = write_token_output(cli, output, stok.value);
        if (rc != 0) {
            goto out;
        }
        cli_set_str(cli, "output", output);
    }
    expires = stok.expires_at != 0 ? stok.expires_at : id->expires_at;
    tg_fingerprint(stok.value, strlen(stok.value), fp);
    cli_set_str(cli, "user", who(id));
    cli_set_str(cli, "id", id->id);
    cli_set_str(cli, "email", id->email);
    cli_set_str(cli, "fingerprint", fp);
    cli_set_int(cli, "expires_at", (long long) expires);
    clean(name, sizeof(name), who(id));
    clean(email, sizeof(email), id->email);
    clean(uid, sizeof(uid), id->id);
    cli_say(cli,
            "sudo token for %s (%s%suser id %s), token fp %s, "
            "expires %s%s%s",
            name, email, email[0] != '\0' ? ", " : "", uid, fp,
            cli_time(expires, when), output != NULL ? ", written to " : "",
            output != NULL ? clean(shown, sizeof(shown), output) : "");
    if (print_token) {
        if (cli->json) {
            cli_set_str(cli, "token", stok.value);
        } else {
            fputs(stok.value, stdout);
            fputc('\n', stdout);
        }
    }
out:
    token_release(&admin);
    tg_token_clear(&stok);
    tg_identity_free(id);
    tg_client_free(cl);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* embed-url (looker signed embedding)                                    */
/* ---------------------------------------------------------------------- */

/* --host: HOST[:PORT] (https), or an origin https://HOST[:PORT] or
 * http://HOST:PORT (the library allows http for loopback hosts only). */
static int
embed_host(tg_cli_t *cli, const char *arg, tg_embed_params_t *p)
{
    if (strncmp(arg, "https://", 8) == 0) {
        p->scheme = "https";
        p->host = arg + 8;
    } else if (strncmp(arg, "http://", 7) == 0) {
        p->scheme = "http";
        p->host = arg + 7;
    } else if (strstr(arg, "://") != NULL) {
        return cli_usage(cli, "--host: want HOST[:PORT], https://HOST[:PORT] "
                              "or http://HOST:PORT (loopback only)");
    } else {
        p->host = arg;
    }
    return 0;
}

/* --session-length: a decimal number of seconds (the range is checked
 * with the other parameters, so the message names session_length). */
static int
embed_session_length(tg_cli_t *cli, const char *arg, long *out)
{
    char *end = NULL;
    long v;

    errno = 0;
    v = strtol(arg, &end, 10);
    if (arg[0] == '\0' || *end != '\0' || errno != 0 ||
        !((arg[0] >= '0' && arg[0] <= '9') || arg[0] == '-')) {
        return cli_usage(cli,
                         "--session-length needs a number of seconds "
                         "(0 to %d)",
                         TG_EMBED_SESSION_MAX);
    }
    *out = v;
    return 0;
}

/* --attr KEY=VALUE: the key is copied (the value stays in argv). */
static int
embed_attr(tg_cli_t *cli, const char *arg, tg_embed_attr_t *attr)
{
    const char *eq = strchr(arg, '=');

    if (eq == NULL) {
        return cli_usage(cli, "--attr needs KEY=VALUE");
    }
    attr->key = strndup(arg, (size_t) (eq - arg));
    attr->value = eq + 1;
    return attr->key != NULL ? 0 : cli_failf(cli, TG_NOMEM, "out of memory");
}

/* A JSON array of the display form of strings. */
static json_t *
embed_list(const char *const *items, size_t n)
{
    char item[TG_CLI_EMBED_SHOWN];
    json_t *list = json_array();
    size_t i;

    for (i = 0; list != NULL && i < n; i++) {
        json_array_append_new(list,
                              json_string(clean(item, sizeof(item), items[i])));
    }
    return list;
}

/* A string parameter in the JSON object, null when not given. */
static void
embed_set(tg_cli_t *cli, const char *key, const char *value)
{
    if (value != NULL) {
        cli_set_str(cli, key, value);
    } else {
        cli_set_json(cli, key, json_null());
    }
}

/* --json: the URL and every parameter (never the secret). */
static void
embed_show(tg_cli_t *cli, const tg_embed_params_t *p, const char *url,
           const char *sts, int server)
{
    char key[TG_CLI_EMBED_SHOWN], value[TG_CLI_EMBED_SHOWN];
    json_t *attrs = json_object();
    size_t i;

    cli_set_str(cli, "url", url);
    cli_set_str(cli, "signed_by", server ? "server" : "local");
    cli_set_str(cli, "scheme", p->scheme != NULL ? p->scheme : "https");
    cli_set_str(cli, "host", p->host);
    cli_set_str(cli, "embed_path", p->embed_path);
    cli_set_str(cli, "external_user_id", p->external_user_id);
    embed_set(cli, "first_name", p->first_name);
    embed_set(cli, "last_name", p->last_name);
    embed_set(cli, "user_timezone", p->user_timezone);
    cli_set_json(cli, "permissions",
                 embed_list(p->permissions, p->n_permissions));
    cli_set_json(cli, "models", embed_list(p->models, p->n_models));
    cli_set_json(cli, "group_ids", embed_list(p->group_ids, p->n_group_ids));
    embed_set(cli, "external_group_id", p->external_group_id);
    for (i = 0; attrs != NULL && i < p->n_user_attributes; i++) {
        json_object_set_new(attrs,
                            clean(key, sizeof(key), p->user_attributes[i].key),
                            json_string(clean(value, sizeof(value),
                                              p->user_attributes[i].value)));
    }
    cli_set_json(cli, "user_attributes", attrs);
    cli_set_int(cli, "session_length", p->session_length);
    cli_set_bool(cli, "force_logout_login", p->force_logout_login);
    /* Our own text (UTF-8 without control characters but its LFs): shown
     * as it was signed, to compare with Looker's Embed URI Validator. */
    if (sts != NULL) {
        cli_set_json(cli, "string_to_sign", json_string(sts));
    }
}

/*
 * The embed secret, never from argv: --secret-stdin (first line of
 * stdin), else embed_secret_file (owner-only, checked on read).
 */
static int
embed_secret(tg_cli_t *cli, int secret_stdin, char **out)
{
    tg_diag_t diag;
    tg_err_t err;
    int r;

    *out = NULL;
    if (secret_stdin) {
        r = read_line_fd(STDIN_FILENO, TG_SECRET_MAX, out);
        if (r == -2) {
            return cli_failf(cli, TG_INPUT,
                             "the embed secret on stdin is longer than %d "
                             "bytes",
                             TG_SECRET_MAX);
        }
        if (r != 0) {
            return cli_failf(cli, TG_INPUT,
                             "cannot read the embed secret from stdin: %s",
                             strerror(errno));
        }
        return 0;
    }
    if (cli->cfg->embed_secret_file == NULL ||
        cli->cfg->embed_secret_file[0] == '\0') {
        return cli_failf(cli, TG_CONFIG,
                         "no embed secret: set embed_secret_file in the "
                         "configuration, or use --secret-stdin (or "
                         "--server to have Looker sign)");
    }
    tg_diag_clear(&diag);
    err = tg_secret_file_read(cli->cfg->embed_secret_file, "embed_secret_file",
                              out, &diag);
    return err == TG_OK ? 0 : cli_fail(cli, err, &diag);
}

int
cmd_embed_url(tg_cli_t *cli, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"host", required_argument, NULL, 'H'},
        {"path", required_argument, NULL, 'P'},
        {"user-id", required_argument, NULL, 'u'},
        {"first-name", required_argument, NULL, 'f'},
        {"last-name", required_argument, NULL, 'l'},
        {"permission", required_argument, NULL, 'p'},
        {"model", required_argument, NULL, 'm'},
        {"group-id", required_argument, NULL, 'g'},
        {"external-group-id", required_argument, NULL, 'G'},
        {"attr", required_argument, NULL, 'a'},
        {"session-length", required_argument, NULL, 's'},
        {"timezone", required_argument, NULL, 'z'},
        {"no-force-logout-login", no_argument, NULL, 'n'},
        {"secret-stdin", no_argument, NULL, 'S'},
        {"server", no_argument, NULL, 'r'},
        {NULL, 0, NULL, 0},
    };
    const char **perms = NULL, **models = NULL, **groups = NULL;
    tg_embed_attr_t *attrs = NULL;
    const char *host = NULL;
    char *secret = NULL, *url = NULL, *sts = NULL;
    tg_cli_token_t tok = {0};
    tg_client_t *cl = NULL;
    tg_embed_params_t p;
    tg_diag_t diag;
    tg_err_t err;
    size_t i, n_attrs = 0;
    int c, rc = 0, server = 0, secret_stdin = 0, have_session_length = 0;

    tg_embed_params_init(&p);
    /* Each repeatable option occurs at most argc times. */
    perms = calloc((size_t) argc, sizeof(*perms));
    models = calloc((size_t) argc, sizeof(*models));
    groups = calloc((size_t) argc, sizeof(*groups));
    attrs = calloc((size_t) argc, sizeof(*attrs));
    if (perms == NULL || models == NULL || groups == NULL || attrs == NULL) {
        rc = cli_failf(cli, TG_NOMEM, "out of memory");
        goto out;
    }
    p.permissions = perms;
    p.models = models;
    p.group_ids = groups;
    p.user_attributes = attrs;
    for (;;) {
        c = getopt_long(argc, argv, ":", longopts, NULL);
        if (c == -1) {
            break;
        }
        switch (c) {
        case 'H':
            if (host != NULL) {
                rc = cli_usage(cli, "--host given twice");
                goto out;
            }
            host = optarg;
            rc = embed_host(cli, optarg, &p);
            break;
        case 'P':
            rc =
                p.embed_path != NULL ? cli_usage(cli, "--path given twice") : 0;
            p.embed_path = optarg;
            break;
        case 'u':
            rc = p.external_user_id != NULL
                     ? cli_usage(cli, "--user-id given twice")
                     : 0;
            p.external_user_id = optarg;
            break;
        case 'f':
            rc = p.first_name != NULL
                     ? cli_usage(cli, "--first-name given twice")
                     : 0;
            p.first_name = optarg;
            break;
        case 'l':
            rc = p.last_name != NULL ? cli_usage(cli, "--last-name given twice")
                                     : 0;
            p.last_name = optarg;
            break;
        case 'p':
            perms[p.n_permissions++] = optarg;
            break;
        case 'm':
            models[p.n_models++] = optarg;
            break;
        case 'g':
            groups[p.n_group_ids++] = optarg;
            break;
        case 'G':
            rc = p.external_group_id != NULL
                     ? cli_usage(cli, "--external-group-id given twice")
                     : 0;
            p.external_group_id = optarg;
            break;
        case 'a':
            rc = embed_attr(cli, optarg, &attrs[n_attrs]);
            if (rc == 0) {
                p.n_user_attributes = ++n_attrs;
            }
            break;
        case 's':
            rc = have_session_length
                     ? cli_usage(cli, "--session-length given twice")
                     : embed_session_length(cli, optarg, &p.session_length);
            have_session_length = 1;
            break;
        case 'z':
            rc = p.user_timezone != NULL
                     ? cli_usage(cli, "--timezone given twice")
                     : 0;
            p.user_timezone = optarg;
            break;
        case 'n':
            p.force_logout_login = 0;
            break;
        case 'S':
            secret_stdin = 1;
            break;
        case 'r':
            server = 1;
            break;
        default:
            rc = opt_fail(cli, c, argv);
            break;
        }
        if (rc != 0) {
            goto out;
        }
    }
    /* Not quoted: "--secret VALUE" would be read as an abbreviation of
     * --secret-stdin followed by the secret itself. */
    if (optind < argc) {
        rc = cli_usage(cli,
                       "unexpected argument %d (embed-url takes options "
                       "only; the secret is never taken from the "
                       "command line)",
                       optind);
        goto out;
    }
    if (host == NULL || p.embed_path == NULL || p.external_user_id == NULL) {
        rc = cli_usage(cli, "missing %s (see tokengate embed-url --help)",
                       host == NULL           ? "--host HOST"
                       : p.embed_path == NULL ? "--path /embed/..."
                                              : "--user-id ID");
        goto out;
    }
    if (server && secret_stdin) {
        rc = cli_usage(cli, "--server and --secret-stdin exclude each other "
                            "(the server signs with its own secret)");
        goto out;
    }
    /* Signing locally talks to no server: it needs no url, and no api
     * unless one was chosen (then it must be looker). */
    if (cli->config_err != TG_OK && (server || !cli->url_missing)) {
        rc = cli_failf(cli, cli->config_err, "%s", cli->config_msg);
        goto out;
    }
    if (cli->cfg->api != TG_API_LOOKER && (server || cli->api_given)) {
        rc = cli_failf(cli, TG_INPUT,
                       "signed embedding is a looker feature; the insight "
                       "API has none (api = insight)");
        goto out;
    }
    /* Every parameter is checked before a secret or a token is touched. */
    tg_diag_clear(&diag);
    err = tg_embed_params_check(&p, &diag);
    if (err != TG_OK) {
        rc = cli_fail(cli, err, &diag);
        goto out;
    }

    if (server) {
        rc = token_client_open(cli, &tok, &cl);
        if (rc != 0) {
            goto out;
        }
        err = tg_client_embed_sso_url(cl, tok.value, &p, &url);
        if (err != TG_OK) {
            rc = client_fail(cli, cl, err);
            goto out;
        }
    } else {
        rc = embed_secret(cli, secret_stdin, &secret);
        if (rc != 0) {
            goto out;
        }
        tg_diag_clear(&diag);
        err = tg_embed_sign(&p, secret, strlen(secret), &url, &sts, &diag);
        tg_secret_free(secret);
        secret = NULL;
        if (err != TG_OK) {
            rc = cli_fail(cli, err, &diag);
            goto out;
        }
    }
    /* The URL is the result: printed even with --quiet, alone on stdout.
     * It works once, within minutes; it is never logged. */
    if (cli->json) {
        embed_show(cli, &p, url, sts, server);
    } else {
        fputs(url, stdout);
        fputc('\n', stdout);
    }
out:
    tg_secret_free(secret);
    tg_secret_free(url);
    tg_secret_free(sts);
    token_release(&tok);
    tg_client_free(cl);
    for (i = 0; attrs != NULL && i < n_attrs; i++) {
        free((char *) attrs[i].key);
    }
    free(attrs);
    free(groups);
    free(models);
    free(perms);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* check                                                                  */
/* ---------------------------------------------------------------------- */

static const char *const tg_check_names[] = {"OK", "WARN", "FAIL", "SKIP"};

/* One line per step (and a hint line for WARN/FAIL); the first FAIL
 * decides the exit code. */
static void
check_step(tg_check_t *ck, tg_check_status_t status, const char *name,
           tg_err_t err, const char *hint, const char *fmt, ...)
{
    char raw[1024], msg[1024];
    json_t *step;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    cli_sanitize(msg, sizeof(msg), raw);
    cli_say(ck->cli, "%-4s  %-6s %s", tg_check_names[status], name, msg);
    if (hint != NULL && (status == TG_CHECK_WARN || status == TG_CHECK_FAIL)) {
        cli_say(ck->cli, "              hint: %s", hint);
    }
    step = json_pack("{s:s, s:s, s:s}", "step", name, "status",
                     tg_check_names[status], "message", msg);
    if (step != NULL && hint != NULL &&
        (status == TG_CHECK_WARN || status == TG_CHECK_FAIL)) {
        json_object_set_new(step, "hint", json_string(hint));
    }
    if (step != NULL && status == TG_CHECK_FAIL) {
        json_object_set_new(step, "error", json_string(tg_err_name(err)));
    }
    if (step != NULL) {
        json_array_append_new(ck->steps, step);
    }
    if (status == TG_CHECK_FAIL && ck->first_err == TG_OK) {
        ck->first_err = err != TG_OK ? err : TG_INTERNAL;
        snprintf(ck->first_msg, sizeof(ck->first_msg), "%s: %s", name, msg);
    }
}

/* scheme://[userinfo@]host[:port][/...]; host without brackets. */
static int
check_parse_url(const char *url, char *scheme, size_t scheme_size, char *host,
                size_t host_size, char *port, size_t port_size)
{
    const char *p, *auth, *end, *at, *h, *hend, *colon = NULL;
    size_t n;

    p = strstr(url, "://");
    if (p == NULL || (size_t) (p - url) >= scheme_size) {
        return -1;
    }
    memcpy(scheme, url, (size_t) (p - url));
    scheme[p - url] = '\0';
    auth = p + 3;
    end = auth + strcspn(auth, "/?#");
    at = NULL;
    for (h = auth; h < end; h++) {
        if (*h == '@') {
            at = h;
        }
    }
    h = at != NULL ? at + 1 : auth;
    if (*h == '[') {
        hend = memchr(h, ']', (size_t) (end - h));
        if (hend == NULL) {
            return -1;
        }
        h++;
        if (hend + 1 < end && hend[1] == ':') {
            colon = hend + 1;
        }
    } else {
        hend = memchr(h, ':', (size_t) (end - h));
        if (hend == NULL) {
            hend = end;
        } else {
            colon = hend;
        }
    }
    n = (size_t) (hend - h);
    if (n == 0 || n >= host_size) {
        return -1;
    }
    memcpy(host, h, n);
    host[n] = '\0';
    if (colon != NULL && colon + 1 < end) {
        n = (size_t) (end - colon - 1);
        if (n >= port_size) {
            return -1;
        }
        memcpy(port, colon + 1, n);
        port[n] = '\0';
    } else {
        snprintf(port, port_size, "%s",
                 strcasecmp(scheme, "https") == 0 ? "443" : "80");
    }
    return 0;
}

static double
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec * 1000.0 + (double) ts.tv_nsec / 1e6;
}

/* A TCP connect with a timeout; returns 0 or an errno. */
static int
check_connect(const struct addrinfo *ai, long timeout_ms, double *elapsed_ms,
              int *timed_out)
{
    struct pollfd pfd;
    socklen_t len = sizeof(int);
    double start = now_ms();
    int fd, rc = 0, soerr = 0, r;

    *timed_out = 0;
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                ai->ai_protocol);
    if (fd < 0) {
        return errno;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) {
            rc = errno;
            goto out;
        }
        pfd.fd = fd;
        pfd.events = POLLOUT;
        do {
            r = poll(&pfd, 1, (int) timeout_ms);
        } while (r < 0 && errno == EINTR);
        if (r == 0) {
            *timed_out = 1;
            rc = ETIMEDOUT;
            goto out;
        }
        if (r < 0) {
            rc = errno;
            goto out;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0) {
            rc = errno;
        } else {
            rc = soerr;
        }
    }
out:
    *elapsed_ms = now_ms() - start;
    close(fd);
    return rc;
}

/*
 * The PAM module logs only through syslog(3), which writes to /dev/log and
 * drops the message when nothing listens there: connect as glibc does (a
 * datagram socket, else a stream one).  A WARN, not a FAIL: the CLI itself
 * does not need syslog.
 */
static void
check_syslog(tg_check_t *ck)
{
    struct sockaddr_un sa;
    int fd, e;

    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", TG_SYSLOG_PATH);
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    e = fd < 0 ? errno : 0;
    if (fd >= 0 && connect(fd, (struct sockaddr *) &sa, sizeof(sa)) != 0) {
        e = errno;
        if (e == EPROTOTYPE) {
            close(fd);
            fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            e = fd < 0 ? errno : 0;
            if (fd >= 0 &&
                connect(fd, (struct sockaddr *) &sa, sizeof(sa)) != 0) {
                e = errno;
            }
        }
    }
    if (fd >= 0) {
        close(fd);
    }
    if (e == 0) {
        check_step(ck, TG_CHECK_OK, "syslog", TG_OK, NULL,
                   "%s accepts messages (the PAM module logs there)",
                   TG_SYSLOG_PATH);
    } else {
        check_step(ck, TG_CHECK_WARN, "syslog", TG_OK,
                   "run a syslog daemon (rsyslog) or systemd-journald; the "
                   "PAM module's messages are then in journalctl or "
                   "/var/log/auth.log",
                   "cannot connect to %s: %s: the PAM module's log messages "
                   "would be lost",
                   TG_SYSLOG_PATH, strerror(e));
    }
}

/* The proxy URL for display, without user name and password (the config
 * may hold "http://user:secret@proxy:3128"). */
static void
proxy_shown(const char *proxy, char *dst, size_t size)
{
    CURLU *u = curl_url();
    char *text = NULL;

    snprintf(dst, size, "(unparsable proxy url)");
    if (u == NULL) {
        return;
    }
    if (curl_url_set(u, CURLUPART_URL, proxy, CURLU_GUESS_SCHEME) == CURLUE_OK
        && curl_url_set(u, CURLUPART_USER, NULL, 0) == CURLUE_OK
        && curl_url_set(u, CURLUPART_PASSWORD, NULL, 0) == CURLUE_OK
        && curl_url_get(u, CURLUPART_URL, &text, 0) == CURLUE_OK) {
        snprintf(dst, size, "%s", text);
    }
    curl_free(text);
    curl_url_cleanup(u);
}

int
cmd_check(tg_cli_t *cli, int argc, char **argv)
{
    char scheme[16], host[256], port[16], addrs[512], addr[INET6_ADDRSTRLEN];
    char last_addr[INET6_ADDRSTRLEN] = "";
    struct addrinfo hints, *res = NULL, *ai;
    tg_request_t breq, req;
    tg_response_t resp;
    tg_client_t *cl = NULL;
    tg_diag_t diag;
    tg_check_t ck;
    tg_err_t err;
    double ms = 0;
    time_t sent_at = 0, now;
    long skew, status;
    int rc, shown_n = 0, gai, e = 0, timed_out = 0, any_timeout = 0;
    int https, connected = 0;

    memset(&ck, 0, sizeof(ck));
    memset(&breq, 0, sizeof(breq));
    ck.cli = cli;
    ck.steps = json_array();
    if (no_options(cli, argc, argv) != 0) {
        json_decref(ck.steps);
        return cli->exit_code;
    }
    rc = no_more_args(cli, argc, argv);
    if (rc != 0) {
        json_decref(ck.steps);
        return rc;
    }

    /* 1. configuration */
    if (cli->config_err != TG_OK) {
        check_step(&ck, TG_CHECK_FAIL, "config", cli->config_err,
                   "fix the configuration file or the options (see "
                   "tokengate(1), CONFIGURATION)",
                   "%s", cli->config_msg);
        goto done;
    }
    check_step(&ck, TG_CHECK_OK, "config", TG_OK, NULL, "%s%s: api %s, url %s",
               cli->config_path != NULL ? "" : "no file, ",
               cli->config_path != NULL ? cli->config_path
                                        : "command line only",
               cli_api_name(cli->cfg->api), cli->cfg->url);
    if (check_parse_url(cli->cfg->url, scheme, sizeof(scheme), host,
                        sizeof(host), port, sizeof(port)) != 0) {
        check_step(&ck, TG_CHECK_FAIL, "url", TG_CONFIG,
                   "url must look like https://host[:port]",
                   "cannot parse the url %s", cli->cfg->url);
        goto done;
    }
    https = strcasecmp(scheme, "https") == 0;
    if (!https && strcasecmp(host, "localhost") != 0 &&
        strncmp(host, "127.", 4) != 0 && strcmp(host, "::1") != 0) {
        check_step(&ck, TG_CHECK_WARN, "config", TG_OK,
                   "use https:// except for a server on this machine",
                   "plain http: tokens and secrets travel unencrypted");
    }

    /* 2-3. DNS and TCP (when there is no proxy in between). */
    if (cli->cfg->proxy != NULL && cli->cfg->proxy[0] != '\0') {
        char shown[256];

        proxy_shown(cli->cfg->proxy, shown, sizeof(shown));
        check_step(&ck, TG_CHECK_SKIP, "dns", TG_OK, NULL,
                   "through the proxy %s", shown);
        check_step(&ck, TG_CHECK_SKIP, "tcp", TG_OK, NULL, "through the proxy");
    } else {
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        gai = getaddrinfo(host, port, &hints, &res);
        if (gai != 0) {
            check_step(&ck, TG_CHECK_FAIL, "dns", TG_UNAVAILABLE,
                       "check the host name in url, /etc/hosts and "
                       "/etc/resolv.conf",
                       "cannot resolve %s: %s", host, gai_strerror(gai));
            goto done;
        }
        addrs[0] = '\0';
        for (ai = res; ai != NULL; ai = ai->ai_next) {
            const void *a =
                ai->ai_family == AF_INET6
                    ? (const void *) &((struct sockaddr_in6 *) ai->ai_addr)
                          ->sin6_addr
                    : (const void *) &((struct sockaddr_in *) ai->ai_addr)
                          ->sin_addr;
            if (inet_ntop(ai->ai_family, a, addr, sizeof(addr)) == NULL ||
                strstr(addrs, addr) != NULL) {
                continue;
            }
            if (shown_n++ < TG_CHECK_ADDRS_SHOWN) {
                size_t l = strlen(addrs);
                snprintf(addrs + l, sizeof(addrs) - l, "%s%s",
                         l > 0 ? ", " : "", addr);
            }
        }
        check_step(&ck, TG_CHECK_OK, "dns", TG_OK, NULL, "%s -> %s%s", host,
                   addrs, shown_n > TG_CHECK_ADDRS_SHOWN ? ", ..." : "");

        for (ai = res; ai != NULL && !connected; ai = ai->ai_next) {
            const void *a =
                ai->ai_family == AF_INET6
                    ? (const void *) &((struct sockaddr_in6 *) ai->ai_addr)
                          ->sin6_addr
                    : (const void *) &((struct sockaddr_in *) ai->ai_addr)
                          ->sin_addr;
            if (inet_ntop(ai->ai_family, a, last_addr, sizeof(last_addr)) ==
                NULL) {
                snprintf(last_addr, sizeof(last_addr), "?");
            }
            e = check_connect(ai, cli->cfg->connect_timeout_ms, &ms,
                              &timed_out);
            any_timeout |= timed_out;
            connected = e == 0;
        }
        if (!connected && any_timeout) {
            check_step(&ck, TG_CHECK_FAIL, "tcp", TG_TIMEOUT,
                       "a firewall may drop the packets; check the port "
                       "and the network path, or raise connect_timeout",
                       "no connection to %s port %s within %.1f s", host, port,
                       (double) cli->cfg->connect_timeout_ms / 1000.0);
            goto done;
        }
        if (!connected) {
            check_step(&ck, TG_CHECK_FAIL, "tcp", TG_UNAVAILABLE,
                       "is the server running and listening on that port? "
                       "check the port in url",
                       "cannot connect to %s port %s: %s", last_addr, port,
                       strerror(e));
            goto done;
        }
        check_step(&ck, TG_CHECK_OK, "tcp", TG_OK, NULL,
                   "connected to %s port %s in %.1f ms", last_addr, port, ms);
    }

    /* 4-5. TLS and HTTP: one unauthenticated GET of the validation
     * endpoint, which must answer 401.  The request is built by the
     * library (with a dummy token), then sent without Authorization. */
    tg_diag_clear(&diag);
    err = tg_build_validate(cli->cfg, TG_CHECK_DUMMY_TOKEN,
                            TG_INSIGHT_VALIDATE_USER, &breq, &diag);
    if (err != TG_OK) {
        check_step(&ck, TG_CHECK_FAIL, "http", err, NULL, "%s", diag.message);
        goto done;
    }
    memset(&req, 0, sizeof(req));
    req.method = "GET";
    req.url = breq.url;
    req.accept = breq.accept;
    rc = client_open(cli, &cl);
    if (rc != 0) {
        goto done;
    }
    err = tg_client_perform(cl, &req, &resp, &sent_at);
    now = time(NULL);
    if (err == TG_TLS) {
        check_step(&ck, TG_CHECK_FAIL, "tls", err,
                   "set ca_file or ca_path to the CA of the server "
                   "certificate; the url host must match the certificate; "
                   "check pinned_pubkey",
                   "%s", tg_client_error(cl));
        goto done;
    }
    if (err != TG_OK) {
        if (https) {
            check_step(&ck, TG_CHECK_SKIP, "tls", TG_OK, NULL,
                       "not checked (no answer)");
        }
        check_step(&ck, TG_CHECK_FAIL, "http", err,
                   err == TG_TIMEOUT ? "the server accepts connections but "
                                       "does not answer in time; raise "
                                       "timeout or check the server"
                                     : "check the url and the server",
                   "GET %s: %s", req.url, tg_client_error(cl));
        goto done;
    }
    if (https) {
        check_step(&ck, TG_CHECK_OK, "tls", TG_OK, NULL,
                   "handshake and certificate verification OK (TLS 1.2 or "
                   "later)");
    } else {
        check_step(&ck, TG_CHECK_SKIP, "tls", TG_OK, NULL,
                   "plain http (url is http://)");
    }
    status = resp.status;
    cli_set_int(cli, "http_status_probe", status);
    if (status == 401) {
        check_step(&ck, TG_CHECK_OK, "http", TG_OK, NULL,
                   "server reachable; API answered 401 as expected without "
                   "a token (GET %s)",
                   req.url);
    } else if (status == 404) {
        check_step(&ck, TG_CHECK_FAIL, "http", TG_NOT_FOUND,
                   cli->cfg->api == TG_API_LOOKER
                       ? "check url (no path) and looker_api_version"
                       : "check url and insight_base_path",
                   "GET %s answered 404: wrong url, base path or API "
                   "version",
                   req.url);
    } else if (status >= 300 && status < 400) {
        check_step(&ck, TG_CHECK_FAIL, "http", TG_PROTOCOL,
                   "set url to the address the server redirects to "
                   "(often https:// or another path); tokengate never "
                   "follows redirects",
                   "GET %s answered %ld (a redirect)", req.url, status);
    } else if (status >= 500) {
        check_step(&ck, TG_CHECK_FAIL, "http", TG_UNAVAILABLE,
                   "the server is up but failing; see its logs",
                   "GET %s answered %ld", req.url, status);
    } else if (status == 429) {
        check_step(&ck, TG_CHECK_WARN, "http", TG_OK, "wait before retrying",
                   "GET %s answered 429: rate limited by the server", req.url);
    } else {
        check_step(&ck, TG_CHECK_WARN, "http", TG_OK,
                   "is this the right server and API flavor (api)?",
                   "GET %s answered %ld without a token (expected 401)",
                   req.url, status);
    }

    /* 6. clock skew, from the Date header. */
    if (resp.server_date == 0) {
        check_step(&ck, TG_CHECK_WARN, "clock", TG_OK,
                   "make sure this machine's clock is synchronized (NTP)",
                   "the server sent no Date header; cannot check the clock");
    } else {
        skew = (long) (resp.server_date - now);
        cli_set_int(cli, "clock_skew", skew);
        if (labs(skew) > TG_SKEW_FAIL) {
            check_step(&ck, TG_CHECK_FAIL, "clock", TG_CONFIG,
                       "synchronize the clocks (NTP): token expiry is "
                       "computed from them",
                       "the server's clock is %ld s %s ours", labs(skew),
                       skew > 0 ? "ahead of" : "behind");
        } else if (labs(skew) > TG_SKEW_WARN) {
            check_step(&ck, TG_CHECK_WARN, "clock", TG_OK,
                       "synchronize the clocks (NTP)",
                       "the server's clock is %ld s %s ours", labs(skew),
                       skew > 0 ? "ahead of" : "behind");
        } else {
            check_step(&ck, TG_CHECK_OK, "clock", TG_OK, NULL,
                       "server clock within %ld s of ours", labs(skew));
        }
    }

done:
    /* Independent of the server: also after a failed step. */
    check_syslog(&ck);
    if (res != NULL) {
        freeaddrinfo(res);
    }
    tg_client_free(cl);
    tg_request_clear(&breq);
    cli_set_json(cli, "steps", ck.steps);
    if (ck.first_err != TG_OK) {
        return cli_failf(cli, ck.first_err, "%s", ck.first_msg);
    }
    return rc;
}
