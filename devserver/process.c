/* SPDX-License-Identifier: MIT */
/*
 * process.c - what every other file of the devserver may use and which
 * uses none of them: the options, the stop flag, the monotonic clock, the
 * log line, and reading a file.  main.c fills the options and raises the
 * stop flag; the others only read them.
 */
#include "devserver.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct ds_options ds__opt = {
    .listen = "127.0.0.1:0",
    .control = "127.0.0.1:0",
    .insight_max_age = 3600,
    .looker_lifetime = 3600,
};

static int stopping;

/* From main.c, once: the daemons are stopping (waits end at once). */
void
ds__stop(void)
{
    __atomic_store_n(&stopping, 1, __ATOMIC_SEQ_CST);
}

int
ds__stopping(void)
{
    return __atomic_load_n(&stopping, __ATOMIC_SEQ_CST);
}

int64_t
ds__mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A log line on stderr, written with one call so lines never mix. */
void
ds__log(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    int n;

    if (ds__opt.quiet) {
        return;
    }
    n = snprintf(line, sizeof(line), DS_PROG ": ");
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t) n - 1, fmt, ap);
    va_end(ap);
    strcat(line, "\n");
    fputs(line, stderr);
}

/*
 * Read a whole regular file of at most max bytes into *out (malloc'd,
 * NUL-terminated after its *len bytes; the caller frees it, wiped when it
 * holds a secret).  owner_only, for a file holding a secret: refuse a
 * symbolic link, and want the file owned by root or by us and readable by
 * its owner only.  -1 with err set ("PATH: why"), the buffer wiped.
 */
int
ds__file_read(const char *path, size_t max, int owner_only, char **out,
              size_t *len, char *err, size_t errlen)
{
    struct stat sb;
    char *buf = NULL;
    size_t size = 0;
    size_t n = 0;
    ssize_t got;
    unsigned int mode;
    int fd;
    int rc = -1;

    *out = NULL;
    *len = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK |
                        (owner_only ? O_NOFOLLOW : 0));
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s%s", path, strerror(errno),
                 owner_only && errno == ELOOP ? " (a symbolic link is refused)"
                                              : "");
        goto out;
    }
    if (fstat(fd, &sb) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        goto out;
    }
    if (owner_only && sb.st_uid != 0 && sb.st_uid != geteuid()) {
        snprintf(err, errlen, "%s: must be owned by root or by uid %lu", path,
                 (unsigned long) geteuid());
        goto out;
    }
    mode = (unsigned int) sb.st_mode & 07777u;
    if (owner_only && (mode & 077u) != 0) {
        snprintf(err, errlen,
                 "%s: must be readable by its owner only (mode %04o); "
                 "chmod 600 %s",
                 path, mode, path);
        goto out;
    }
    if (sb.st_size < 0 || (uintmax_t) sb.st_size > max) {
        snprintf(err, errlen, "%s: larger than %zu bytes", path, max);
        goto out;
    }
    size = (size_t) sb.st_size + 1;
    buf = malloc(size);
    if (buf == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    while (n < size - 1) {
        got = read(fd, buf + n, size - 1 - n);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            snprintf(err, errlen, "%s: short read", path);
            goto out;
        }
        n += (size_t) got;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    buf = NULL;
    rc = 0;

out:
    if (buf != NULL) {
        explicit_bzero(buf, size);
        free(buf);
    }
    if (fd >= 0) {
        close(fd);
    }
    return rc;
}
