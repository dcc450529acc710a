/* SPDX-License-Identifier: MIT */
/*
 * store.c - the stored token and the client it is sent with: where the
 * token file lives (private directories), writing it atomically, loading
 * it only for the server and API it was issued by, and the client every
 * command acting as the logged-in user opens.  cli_write_all() also
 * serves sudo --output.
 */
#include "cli.h"
#include "tg_json.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* The token file is a small JSON object; anything bigger is not ours. */
#define TG_TOKEN_FILE_MAX 16384

/* ---------------------------------------------------------------------- */
/* The token store                                                        */
/* ---------------------------------------------------------------------- */

/*
 * The token file: TOKENGATE_TOKEN_FILE, else $XDG_RUNTIME_DIR/tokengate/
 * token, else $HOME/.cache/tokengate/token.  With create, our directories
 * are made 0700; a tokengate directory must be ours and private.
 */
int
cli_token_path(tg_cli_t *cli, char *path, size_t size, int create)
{
    char dir[TG_CLI_PATH_MAX], shown[256];
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
                             cli_clean(shown, sizeof(shown), dir),
                             strerror(errno));
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
                         cli_clean(shown, sizeof(shown), dir), strerror(errno));
    }
    if (lstat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid()) {
            return cli_failf(cli, TG_INPUT,
                             "%s is not a directory of yours; refusing to "
                             "keep a token there",
                             cli_clean(shown, sizeof(shown), dir));
        }
        if ((st.st_mode & 077) != 0 && chmod(dir, 0700) != 0) {
            return cli_failf(cli, TG_INPUT, "cannot make %s private: %s",
                             cli_clean(shown, sizeof(shown), dir),
                             strerror(errno));
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
int
cli_token_save(tg_cli_t *cli, const char *path, const char *token,
               time_t expires_at)
{
    char tmp[TG_CLI_PATH_MAX + 16], shown[256], *dirend;
    char *buf = NULL;
    size_t cap = TG_TOKEN_FILE_MAX, len = 0;
    json_t *doc = NULL;
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
                       cli_clean(shown, sizeof(shown), path), strerror(errno));
        goto out;
    }
    if (fchmod(fd, 0600) != 0) {
        rc = cli_failf(cli, TG_INPUT, "cannot protect %s: %s",
                       cli_clean(shown, sizeof(shown), tmp), strerror(errno));
        goto out;
    }
    if (cli_write_all(fd, buf, len) != 0) {
        rc = cli_failf(cli, TG_INPUT, "cannot write %s: %s",
                       cli_clean(shown, sizeof(shown), tmp), strerror(errno));
        goto out;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        fd = -1;
        rc = cli_failf(cli, TG_INPUT, "cannot write %s: %s",
                       cli_clean(shown, sizeof(shown), tmp), strerror(errno));
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        rc = cli_failf(cli, TG_INPUT, "cannot store the token in %s: %s",
                       cli_clean(shown, sizeof(shown), path), strerror(errno));
        goto out;
    }
    tmp_exists = 0;
    /* Make the rename durable (best effort). */
    dirend = strrchr(path, '/');
    if (dirend != NULL) {
        char dir[TG_CLI_PATH_MAX];
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

/* All of buf, through short writes and EINTR; 0, or -1 with errno. */
int
cli_write_all(int fd, const char *buf, size_t len)
{
    size_t done = 0;
    ssize_t w;

    while (done < len) {
        w = write(fd, buf + done, len - done);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0) {
            return -1;
        }
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        done += (size_t) w;
    }
    return 0;
}

/*
 * The token to use: TOKENGATE_TOKEN, else the token file, but only when
 * the file's api and url are the current config's (a token is never sent
 * to another server), and not expired (unless allow_expired).
 */
int
cli_token_load(tg_cli_t *cli, tg_cli_token_t *tok, int allow_expired)
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
    tok->value = cli_take_env("TOKENGATE_TOKEN", &present);
    if (present) {
        if (tok->value == NULL) {
            return cli_failf(cli, TG_NOMEM, "out of memory");
        }
        if (tg_token_check(tok->value, &diag) != TG_OK) {
            rc = cli_failf(cli, TG_INPUT, "TOKENGATE_TOKEN: %s", diag.message);
            cli_token_release(tok);
        }
        return rc;
    }
    rc = cli_token_path(cli, tok->path, sizeof(tok->path), 0);
    if (rc != 0) {
        return rc;
    }
    cli_clean(shown, sizeof(shown), tok->path);
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
    doc = tg__json_decode(buf, len, 0, 0, &jerr);
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
                       cli_clean(url_shown, sizeof(url_shown), url),
                       cli_clean(api_shown, sizeof(api_shown), api));
        goto out;
    }
    if (strcmp(api, cli_api_name(cli->cfg->api)) != 0) {
        cli_clean(api_shown, sizeof(api_shown), api);
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
        cli_token_release(tok);
    }
    return rc;
}

void
cli_token_release(tg_cli_token_t *tok)
{
    tg_secret_free(tok->value);
    tok->value = NULL;
}

/* ---------------------------------------------------------------------- */
/* Client and identity helpers                                            */
/* ---------------------------------------------------------------------- */

int
cli_client_open(tg_cli_t *cli, tg_client_t **cl)
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
int
cli_token_client_open(tg_cli_t *cli, tg_cli_token_t *tok, tg_client_t **cl)
{
    int rc = cli_token_load(cli, tok, 0);

    return rc != 0 ? rc : cli_client_open(cli, cl);
}

int
cli_client_fail(tg_cli_t *cli, tg_client_t *cl, tg_err_t err)
{
    return cli_fail(cli, err, tg_client_diag(cl));
}
