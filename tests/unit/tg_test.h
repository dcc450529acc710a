/* SPDX-License-Identifier: MIT */
/*
 * tg_test.h - helpers the cmocka unit tests share, written once: a scratch
 * directory per test program (setup_dir and teardown_dir, cmocka group
 * fixtures; g_dir is its path), files written with a given mode, and
 * assert_contains().  Header-only and static inline, so each test program
 * stays one source file and a helper it does not use costs no warning.
 * Include it after tokengate.h; it includes cmocka.h and what that needs.
 */
#ifndef TG_TEST_H
#define TG_TEST_H

#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

/* The test program's scratch directory, made by setup_dir(). */
static char g_dir[512];

/* nftw() callback: remove one entry (children first, FTW_DEPTH). */
static inline int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st;
    (void) flag;
    (void) ftw;
    return remove(path);
}

/* A fresh g_dir under $TMPDIR (or /tmp), mode 0700 whatever the umask:
 * the directory's own mode must not matter to the file checks. */
static inline int
setup_dir(void **state)
{
    const char *tmp = getenv("TMPDIR");

    (void) state;
    snprintf(g_dir, sizeof(g_dir), "%s/tg-test-XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (mkdtemp(g_dir) == NULL) {
        return -1;
    }
    return chmod(g_dir, 0700);
}

/* Remove g_dir and everything in it. */
static inline int
teardown_dir(void **state)
{
    (void) state;
    return nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Write a new file at path (replacing any) holding data, with mode. */
static inline void
write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd;

    unlink(path);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t) len);
    assert_int_equal(fchmod(fd, mode), 0);
    assert_int_equal(close(fd), 0);
}

static inline void
write_text(const char *path, const char *text, mode_t mode)
{
    write_file(path, text, strlen(text), mode);
}

/* Fail, quoting both, unless needle is in haystack. */
static inline void
assert_contains(const char *haystack, const char *needle)
{
    if (strstr(haystack, needle) == NULL) {
        fail_msg("\"%s\" does not contain \"%s\"", haystack, needle);
    }
}

#endif /* TG_TEST_H */
