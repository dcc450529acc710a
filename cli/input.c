/* SPDX-License-Identifier: MIT */
/*
 * input.c - where the CLI's secrets come from, never argv: the environment
 * (copied, wiped and unset), a line of stdin or of a file descriptor (read
 * byte by byte, so no stdio buffer keeps a copy), and the terminal prompt
 * (echo off, restored on every path, signals included).  Also the client id
 * and client secret of login, in their documented order.
 *
 * Secrets are returned in tg_secret_dup() buffers; the caller releases them
 * with tg_secret_free().
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

static void tty_on_signal(int sig);
static int tty_prompt(tg_cli_t *cli, const char *prompt, int echo,
                      const char *what, const char *hint, char **out);

/* The terminal state to restore when a signal arrives during a prompt. */
static struct termios tg_tty_saved;
static volatile sig_atomic_t tg_tty_fd = -1;

/* Take a secret from the environment: copy it, wipe the original (it is
 * visible in /proc/PID/environ) and unset it.  NULL when absent. */
char *
cli_take_env(const char *name, int *present)
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
int
cli_read_line(int fd, size_t max, char **out)
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

/* A secret from the first line of stdin; what names it in errors. */
int
cli_secret_stdin(tg_cli_t *cli, const char *what, char **out)
{
    int r = cli_read_line(STDIN_FILENO, TG_SECRET_MAX, out);

    if (r == -2) {
        return cli_failf(cli, TG_INPUT,
                         "the %s on stdin is longer than %d bytes", what,
                         TG_SECRET_MAX);
    }
    if (r != 0) {
        return cli_failf(cli, TG_INPUT, "cannot read the %s from stdin: %s",
                         what, strerror(errno));
    }
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
    r = cli_read_line(fd, TG_SECRET_MAX, out);
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
int
cli_client_id(tg_cli_t *cli, const char *opt, char **out)
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
int
cli_client_secret(tg_cli_t *cli, const char *secret_file, int secret_stdin,
                  char **out)
{
    tg_diag_t diag;
    tg_err_t err;
    int present;

    *out = cli_take_env("TOKENGATE_SECRET", &present);
    if (present) {
        return *out != NULL ? 0 : cli_failf(cli, TG_NOMEM, "out of memory");
    }
    tg_diag_clear(&diag);
    if (secret_file != NULL) {
        err = tg_secret_file_read(secret_file, "--secret-file", out, &diag);
        return err == TG_OK ? 0 : cli_fail(cli, err, &diag);
    }
    if (secret_stdin) {
        return cli_secret_stdin(cli, "client secret", out);
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
