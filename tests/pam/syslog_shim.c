/* SPDX-License-Identifier: MIT */
/*
 * syslog_shim.c - an LD_PRELOAD library that captures syslog(3) for tests.
 *
 * The test machines have no /dev/log, and the PAM module logs through
 * pam_syslog(), which ends in syslog(3) (or __syslog_chk: Debian builds
 * libpam with _FORTIFY_SOURCE).  This library defines openlog, closelog,
 * syslog, vsyslog, __syslog_chk and __vsyslog_chk, and appends each message
 * as one line
 *
 *     <PRIORITY> IDENT: MESSAGE
 *
 * to the file named by $TG_SYSLOG_FILE (opened O_APPEND for every message
 * and written with one write(2), so lines from several threads or
 * processes never interleave).  Newlines and other control bytes inside a
 * message are shown as \xHH so that one message stays one line.  When
 * $TG_SYSLOG_FILE is unset (now and at start-up: sshd empties the
 * environment of its PAM child), messages are dropped.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

/* A syslog message longer than this is cut (rsyslog's default is 8 KiB). */
#define SHIM_LINE_MAX 8192
#define SHIM_IDENT_MAX 64

#define SHIM_EXPORT __attribute__((visibility("default")))

extern char *program_invocation_short_name;

SHIM_EXPORT void openlog(const char *ident, int option, int facility);
SHIM_EXPORT void closelog(void);
SHIM_EXPORT void syslog(int priority, const char *format, ...)
    __attribute__((format(printf, 2, 3)));
SHIM_EXPORT void vsyslog(int priority, const char *format, va_list ap)
    __attribute__((format(printf, 2, 0)));
SHIM_EXPORT void __syslog_chk(int priority, int flag, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
SHIM_EXPORT void __vsyslog_chk(int priority, int flag, const char *format,
                               va_list ap)
    __attribute__((format(printf, 3, 0)));

static void shim_log(int priority, const char *format, va_list ap)
    __attribute__((format(printf, 2, 0)));
static void expand_m(char *out, size_t size, const char *format, int err);

static void shim_init(void) __attribute__((constructor));

static pthread_mutex_t shim_lock = PTHREAD_MUTEX_INITIALIZER;
/* $TG_SYSLOG_FILE as it was at start-up: sshd clears the environment of
 * the child that runs the PAM conversation for keyboard-interactive. */
static char shim_file[4096];
static char shim_ident[SHIM_IDENT_MAX];
static int shim_facility = LOG_USER;

/* ---------------------------------------------------------------------- */

static void
shim_init(void)
{
    const char *file = getenv("TG_SYSLOG_FILE");

    if (file != NULL && strlen(file) < sizeof(shim_file)) {
        memcpy(shim_file, file, strlen(file) + 1);
    }
}

/* Copy format to out with "%m" replaced by strerror(err) ("%%" kept). */
static void
expand_m(char *out, size_t size, const char *format, int err)
{
    char ebuf[128];
    const char *msg;
    size_t o = 0;
    const char *p;

    msg = strerror_r(err, ebuf, sizeof(ebuf));
    for (p = format; *p != '\0' && o + 1 < size; p++) {
        if (p[0] == '%' && p[1] == '%') {
            if (o + 2 >= size) {
                break;
            }
            out[o++] = '%';
            out[o++] = '%';
            p++;
        } else if (p[0] == '%' && p[1] == 'm') {
            const char *q;
            for (q = msg; *q != '\0' && o + 2 < size; q++) {
                /* A '%' in the error text must not become a conversion. */
                if (*q == '%') {
                    out[o++] = '%';
                }
                out[o++] = *q;
            }
            p++;
        } else {
            out[o++] = *p;
        }
    }
    out[o] = '\0';
}

static void
shim_log(int priority, const char *format, va_list ap)
{
    char fmt[SHIM_LINE_MAX];
    char msg[SHIM_LINE_MAX];
    char line[SHIM_LINE_MAX * 4 + SHIM_IDENT_MAX + 32];
    char ident[SHIM_IDENT_MAX];
    const char *file = getenv("TG_SYSLOG_FILE");
    int saved = errno;
    size_t len, i;
    int n, fd;

    if (file == NULL || file[0] == '\0') {
        file = shim_file;
    }
    if (file[0] == '\0' || format == NULL) {
        return;
    }
    expand_m(fmt, sizeof(fmt), format, saved);
    /* The format is the caller's: this is what syslog(3) does too. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    n = vsnprintf(msg, sizeof(msg), fmt, ap);
#pragma GCC diagnostic pop
    if (n < 0) {
        errno = saved;
        return;
    }
    pthread_mutex_lock(&shim_lock);
    if (shim_ident[0] != '\0') {
        memcpy(ident, shim_ident, sizeof(ident));
    } else {
        snprintf(ident, sizeof(ident), "%s",
                 program_invocation_short_name != NULL
                     ? program_invocation_short_name
                     : "?");
    }
    if ((priority & LOG_FACMASK) == 0) {
        priority |= shim_facility;
    }
    pthread_mutex_unlock(&shim_lock);

    /* syslogd drops one trailing newline; so do we. */
    if (n > 0 && (size_t) n < sizeof(msg) && msg[n - 1] == '\n') {
        msg[n - 1] = '\0';
    }
    n = snprintf(line, sizeof(line), "<%d> %s[%ld]: ", priority, ident,
                 (long) getpid());
    len = n > 0 ? (size_t) n : 0;
    for (i = 0; msg[i] != '\0' && len + 5 < sizeof(line); i++) {
        unsigned char c = (unsigned char) msg[i];
        if (c < 0x20 || c == 0x7f) {
            len +=
                (size_t) snprintf(line + len, sizeof(line) - len, "\\x%02x", c);
        } else {
            line[len++] = (char) c;
        }
    }
    line[len++] = '\n';

    fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
              0600);
    if (fd >= 0) {
        ssize_t w;
        do {
            w = write(fd, line, len);
        } while (w < 0 && errno == EINTR);
        close(fd);
    }
    errno = saved;
}

/* ---------------------------------------------------------------------- */
/* The interposed functions                                               */
/* ---------------------------------------------------------------------- */

void
openlog(const char *ident, int option, int facility)
{
    (void) option;
    pthread_mutex_lock(&shim_lock);
    if (ident != NULL) {
        snprintf(shim_ident, sizeof(shim_ident), "%s", ident);
    }
    if (facility != 0) {
        shim_facility = facility;
    }
    pthread_mutex_unlock(&shim_lock);
}

void
closelog(void)
{
    pthread_mutex_lock(&shim_lock);
    shim_ident[0] = '\0';
    shim_facility = LOG_USER;
    pthread_mutex_unlock(&shim_lock);
}

void
syslog(int priority, const char *format, ...)
{
    va_list ap;

    va_start(ap, format);
    shim_log(priority, format, ap);
    va_end(ap);
}

void
vsyslog(int priority, const char *format, va_list ap)
{
    shim_log(priority, format, ap);
}

void
__syslog_chk(int priority, int flag, const char *format, ...)
{
    va_list ap;

    (void) flag;
    va_start(ap, format);
    shim_log(priority, format, ap);
    va_end(ap);
}

void
__vsyslog_chk(int priority, int flag, const char *format, va_list ap)
{
    (void) flag;
    shim_log(priority, format, ap);
}
