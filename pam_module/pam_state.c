/* SPDX-License-Identifier: MIT */
/*
 * pam_state.c - the files pam_tokengate.so keeps between processes: the
 * per-user state file (identity + expiry, so "account" works when "auth"
 * ran in another process or not at all), the optional offline cache (a
 * yescrypt verifier + identity + failure counter).  Which users the module
 * manages is libtokengate's tg_user_map_has_local().
 *
 * Trust rules, for every file read here: opened O_NOFOLLOW relative to a
 * directory that was itself opened O_NOFOLLOW|O_DIRECTORY and checked
 * (owned by root or the effective uid, not group/world-writable); then
 * fstat'ed: a regular file, owned by root or the effective uid, and with no
 * group/other bits (state and cache) or no group/other write bits (the map
 * file).  Anything else is refused, never repaired.  Writes go to an
 * O_CREAT|O_EXCL|O_NOFOLLOW 0600 temporary in the same directory, fsync'ed,
 * then renamed over the old file, so a reader sees the old or the new file,
 * never half of one.
 */
#include "pam_tokengate.h"
#include "tg_json.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <crypt.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

/* A state or cache file: an identity with its groups; far below this. */
#define TG_PAM_FILE_MAX (1024 * 1024)
/* A local user name (useradd's limit), as tg_identity_bind() returns. */
#define TG_PAM_USER_MAX 32
/* The file format; a reader refuses any other version. */
#define TG_PAM_FILE_VERSION 1
/* Random bytes in a temporary file name (hex-encoded). */
#define TG_PAM_TMP_RANDOM 8
/* "<user>.cache.tmp-<16 hex>" fits easily. */
#define TG_PAM_NAME_MAX 96
/* Times in the files: after 1970, before the year 36812. */
#define TG_PAM_TIME_MAX ((json_int_t) 1 << 40)
/* The failure counter never grows past this. */
#define TG_PAM_FAILURES_MAX 1000000
/* yescrypt phrase: the hex SHA-256 of the password (64 + NUL). */
#define TG_PAM_PHRASE_SIZE (2 * 32 + 1)

/* ---------------------------------------------------------------------- */
/* Prototypes of statics                                                  */
/* ---------------------------------------------------------------------- */

static void set_why(char *why, size_t why_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int file_name(char *buf, size_t size, const char *user,
                     const char *suffix);
static tg_pam_file_t dir_open(const char *dir, int create, int *fd_out,
                              char *why, size_t why_size);
static tg_pam_file_t read_checked(int dirfd, const char *name,
                                  const char *shown, unsigned forbidden,
                                  size_t max, char **text, size_t *len,
                                  char *why, size_t why_size);
static tg_err_t write_atomic(int dirfd, const char *name, const char *data,
                             size_t len, char *why, size_t why_size);
static int remove_file(const char *dir, const char *user, const char *suffix,
                       char *why, size_t why_size);
static const char *api_name(tg_api_t api);
static int flag_of(int v);
static json_t *identity_to_json(const tg_identity_t *id);
static int json_flag(json_t *obj, const char *key, int *out);
static char *json_str_dup(json_t *obj, const char *key, int *bad);
static int json_time(json_t *obj, const char *key, time_t *out);
static tg_identity_t *identity_from_json(json_t *obj, int *nomem);
static json_t *file_header(const char *kind, const char *user,
                           const tg_config_t *cfg, time_t expires_at);
static tg_pam_file_t file_load(const char *dir, const char *user,
                               const char *suffix, const char *kind,
                               int dirfd_in, json_t **root_out, char *why,
                               size_t why_size);
static int same_server(json_t *root, const tg_config_t *cfg);
static int phrase_of(const char *password, char out[TG_PAM_PHRASE_SIZE]);
static tg_err_t dump_and_write(int dirfd, const char *name, json_t *root,
                               char *why, size_t why_size);

/* ---------------------------------------------------------------------- */
/* Small helpers                                                          */
/* ---------------------------------------------------------------------- */

static void
set_why(char *why, size_t why_size, const char *fmt, ...)
{
    va_list ap;

    if (why == NULL || why_size == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(why, why_size, fmt, ap);
    va_end(ap);
}

int
tg_pam_user_name_ok(const char *user)
{
    size_t len, i;

    if (user == NULL) {
        return 0;
    }
    len = strnlen(user, TG_PAM_USER_MAX + 1);
    if (len == 0 || len > TG_PAM_USER_MAX || user[0] == '-') {
        return 0;
    }
    if (strcmp(user, ".") == 0 || strcmp(user, "..") == 0) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        char c = user[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '-')) {
            return 0;
        }
    }
    return 1;
}

void
tg_pam_sanitize(char *dst, size_t size, const char *src)
{
    size_t i, len;

    if (dst == NULL || size == 0) {
        return;
    }
    if (src == NULL) {
        src = "(null)";
    }
    len = strlen(src);
    for (i = 0; i < len && i + 1 < size; i++) {
        unsigned char c = (unsigned char) src[i];
        dst[i] = (c >= 0x20 && c < 0x7f) ? (char) c : '?';
    }
    dst[i] = '\0';
    if (i < len && size > 4) {
        memcpy(dst + size - 4, "...", 4);
    }
}

/* "<user><suffix>"; 0, or -1 for a name we refuse or that does not fit. */
static int
file_name(char *buf, size_t size, const char *user, const char *suffix)
{
    int n;

    if (!tg_pam_user_name_ok(user)) {
        return -1;
    }
    n = snprintf(buf, size, "%s%s", user, suffix);
    return (n < 0 || (size_t) n >= size) ? -1 : 0;
}

/*
 * Open a directory we keep files in, creating it 0700 when asked.  Refuses
 * a symbolic link, a non-directory, another owner, group/world write.
 */
static tg_pam_file_t
dir_open(const char *dir, int create, int *fd_out, char *why, size_t why_size)
{
    char ebuf[128];
    struct stat st;
    int fd;

    *fd_out = -1;
    if (dir == NULL || dir[0] != '/') {
        set_why(why, why_size, "directory is not an absolute path");
        return TG_PAM_FILE_UNSAFE_DIR;
    }
    if (create && mkdir(dir, 0700) != 0 && errno != EEXIST) {
        set_why(why, why_size, "%s: cannot create: %s", dir,
                strerror_r(errno, ebuf, sizeof(ebuf)));
        return errno == ENOMEM ? TG_PAM_FILE_NOMEM : TG_PAM_FILE_BAD;
    }
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT) {
            set_why(why, why_size, "%s: no such directory", dir);
            return TG_PAM_FILE_NONE;
        }
        set_why(why, why_size, "%s: %s", dir,
                e == ELOOP ? "is a symbolic link, which is refused"
                           : strerror_r(e, ebuf, sizeof(ebuf)));
        return e == ENOMEM ? TG_PAM_FILE_NOMEM : TG_PAM_FILE_UNSAFE_DIR;
    }
    if (fstat(fd, &st) != 0) {
        set_why(why, why_size, "%s: %s", dir,
                strerror_r(errno, ebuf, sizeof(ebuf)));
        close(fd);
        return TG_PAM_FILE_BAD;
    }
    if (st.st_uid != 0 && st.st_uid != geteuid()) {
        set_why(why, why_size,
                "%s: must be owned by root or uid %lu (owner is uid %lu)", dir,
                (unsigned long) geteuid(), (unsigned long) st.st_uid);
        close(fd);
        return TG_PAM_FILE_UNSAFE_DIR;
    }
    if ((st.st_mode & 022) != 0) {
        set_why(why, why_size,
                "%s: must not be writable by group or others (mode %04o)", dir,
                (unsigned) st.st_mode & 07777u);
        close(fd);
        return TG_PAM_FILE_UNSAFE_DIR;
    }
    *fd_out = fd;
    return TG_PAM_FILE_OK;
}

/*
 * Read a whole file below dirfd (AT_FDCWD for an absolute path) that must
 * be a regular file, not a symlink, owned by root or us, with none of the
 * mode bits in forbidden, and at most max bytes.  *text is NUL-terminated,
 * caller-owned; wipe it when it may hold something sensitive.
 */
static tg_pam_file_t
read_checked(int dirfd, const char *name, const char *shown, unsigned forbidden,
             size_t max, char **text, size_t *len, char *why, size_t why_size)
{
    char ebuf[128];
    struct stat st;
    char *buf = NULL;
    size_t n = 0, cap;
    int fd = -1;
    tg_pam_file_t res = TG_PAM_FILE_BAD;

    *text = NULL;
    *len = 0;
    fd = openat(dirfd, name,
                O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT) {
            set_why(why, why_size, "%s: no such file", shown);
            res = TG_PAM_FILE_NONE;
        } else if (e == ELOOP) {
            set_why(why, why_size, "%s: is a symbolic link, which is refused",
                    shown);
        } else {
            set_why(why, why_size, "%s: %s", shown,
                    strerror_r(e, ebuf, sizeof(ebuf)));
            if (e == ENOMEM) {
                res = TG_PAM_FILE_NOMEM;
            }
        }
        goto out;
    }
    if (fstat(fd, &st) != 0) {
        set_why(why, why_size, "%s: %s", shown,
                strerror_r(errno, ebuf, sizeof(ebuf)));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        set_why(why, why_size, "%s: is not a regular file", shown);
        goto out;
    }
    if (st.st_uid != 0 && st.st_uid != geteuid()) {
        set_why(why, why_size,
                "%s: must be owned by root or uid %lu (owner is uid %lu)",
                shown, (unsigned long) geteuid(), (unsigned long) st.st_uid);
        goto out;
    }
    if (((unsigned) st.st_mode & forbidden) != 0) {
        set_why(why, why_size,
                "%s: mode %04o is too open (must have none of "
                "%03o)",
                shown, (unsigned) st.st_mode & 07777u, forbidden);
        goto out;
    }
    if (st.st_size < 0 || (unsigned long long) st.st_size > max) {
        set_why(why, why_size, "%s: larger than %zu bytes", shown, max);
        goto out;
    }
    cap = (size_t) st.st_size + 1;
    buf = malloc(cap + 1);
    if (buf == NULL) {
        set_why(why, why_size, "%s: out of memory", shown);
        res = TG_PAM_FILE_NOMEM;
        goto out;
    }
    while (n < cap) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            set_why(why, why_size, "%s: %s", shown,
                    strerror_r(errno, ebuf, sizeof(ebuf)));
            goto out;
        }
        if (r == 0) {
            break;
        }
        n += (size_t) r;
    }
    if (n == cap) {
        set_why(why, why_size, "%s: changed while it was read", shown);
        goto out;
    }
    buf[n] = '\0';
    *text = buf;
    *len = n;
    buf = NULL;
    res = TG_PAM_FILE_OK;
out:
    if (buf != NULL) {
        explicit_bzero(buf, n);
        free(buf);
    }
    if (fd >= 0) {
        close(fd);
    }
    return res;
}

/* Write data to dirfd/name through a fresh 0600 temporary and a rename. */
static tg_err_t
write_atomic(int dirfd, const char *name, const char *data, size_t len,
             char *why, size_t why_size)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char rnd[TG_PAM_TMP_RANDOM];
    char tmp[TG_PAM_NAME_MAX + 2 * TG_PAM_TMP_RANDOM + 8];
    char ebuf[128];
    size_t off = 0, i;
    int fd = -1, n, created = 0;
    tg_err_t err = TG_INTERNAL;

    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t) sizeof(rnd)) {
        set_why(why, why_size, "%s: getrandom: %s", name,
                strerror_r(errno, ebuf, sizeof(ebuf)));
        goto out;
    }
    n = snprintf(tmp, sizeof(tmp), "%s.tmp-", name);
    if (n < 0 || (size_t) n + 2 * sizeof(rnd) >= sizeof(tmp)) {
        set_why(why, why_size, "%s: name too long", name);
        goto out;
    }
    for (i = 0; i < sizeof(rnd); i++) {
        tmp[n + 2 * (int) i] = hex[rnd[i] >> 4];
        tmp[n + 2 * (int) i + 1] = hex[rnd[i] & 0x0f];
    }
    tmp[n + 2 * (int) sizeof(rnd)] = '\0';

    fd = openat(dirfd, tmp,
                O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY,
                0600);
    if (fd < 0) {
        set_why(why, why_size, "%s: cannot create: %s", tmp,
                strerror_r(errno, ebuf, sizeof(ebuf)));
        err = errno == ENOMEM ? TG_NOMEM : TG_INTERNAL;
        goto out;
    }
    created = 1;
    /* The umask may have taken bits away; make it exactly 0600. */
    if (fchmod(fd, 0600) != 0) {
        set_why(why, why_size, "%s: chmod: %s", tmp,
                strerror_r(errno, ebuf, sizeof(ebuf)));
        goto out;
    }
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            set_why(why, why_size, "%s: write: %s", tmp,
                    w < 0 ? strerror_r(errno, ebuf, sizeof(ebuf))
                          : "no progress");
            goto out;
        }
        off += (size_t) w;
    }
    if (fsync(fd) != 0) {
        set_why(why, why_size, "%s: fsync: %s", tmp,
                strerror_r(errno, ebuf, sizeof(ebuf)));
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        set_why(why, why_size, "%s: close: %s", tmp,
                strerror_r(errno, ebuf, sizeof(ebuf)));
        goto out;
    }
    fd = -1;
    if (renameat(dirfd, tmp, dirfd, name) != 0) {
        set_why(why, why_size, "%s: rename: %s", name,
                strerror_r(errno, ebuf, sizeof(ebuf)));
        goto out;
    }
    created = 0;
    /* The rename itself must survive a crash: fsync the directory. */
    if (fsync(dirfd) != 0) {
        set_why(why, why_size, "%s: fsync of the directory: %s", name,
                strerror_r(errno, ebuf, sizeof(ebuf)));
        goto out;
    }
    err = TG_OK;
out:
    if (fd >= 0) {
        close(fd);
    }
    if (created) {
        (void) unlinkat(dirfd, tmp, 0);
    }
    return err;
}

static int
remove_file(const char *dir, const char *user, const char *suffix, char *why,
            size_t why_size)
{
    char name[TG_PAM_NAME_MAX];
    char ebuf[128];
    int dirfd = -1, rc = -1;
    tg_pam_file_t res;

    if (file_name(name, sizeof(name), user, suffix) != 0) {
        set_why(why, why_size, "not a user name tokengate keeps files for");
        return -1;
    }
    res = dir_open(dir, 0, &dirfd, why, why_size);
    if (res == TG_PAM_FILE_NONE) {
        return 0;
    }
    if (res != TG_PAM_FILE_OK) {
        return -1;
    }
    (void) flock(dirfd, LOCK_EX);
    if (unlinkat(dirfd, name, 0) != 0 && errno != ENOENT) {
        set_why(why, why_size, "%s/%s: %s", dir, name,
                strerror_r(errno, ebuf, sizeof(ebuf)));
        goto out;
    }
    rc = 0;
out:
    close(dirfd);
    return rc;
}

/*
 * Leave an empty <dir>/<user><suffix> in place of whatever was there: an
 * empty state file is unparsable, which account refuses (PAM_PERM_DENIED).
 * This is the fallback when a denied record cannot be written: truncating
 * needs no free blocks, and deleting would make the user "not ours".
 */
int
tg_pam_state_poison(const char *dir, const char *user, char *why,
                    size_t why_size)
{
    char name[TG_PAM_NAME_MAX];
    char ebuf[128];
    int dirfd = -1, fd = -1, rc = -1;

    if (file_name(name, sizeof(name), user, TG_PAM_STATE_SUFFIX) != 0) {
        set_why(why, why_size, "not a user name tokengate keeps files for");
        return -1;
    }
    if (dir_open(dir, 1, &dirfd, why, why_size) != TG_PAM_FILE_OK) {
        return -1;
    }
    (void) flock(dirfd, LOCK_EX);
    fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
                0600);
    if (fd < 0 || ftruncate(fd, 0) != 0 || fsync(fd) != 0) {
        set_why(why, why_size, "%s/%s: %s", dir, name,
                strerror_r(errno, ebuf, sizeof(ebuf)));
        goto out;
    }
    rc = 0;
out:
    if (fd >= 0) {
        close(fd);
    }
    close(dirfd);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* JSON                                                                   */
/* ---------------------------------------------------------------------- */

static const char *
api_name(tg_api_t api)
{
    return api == TG_API_LOOKER ? "looker" : "insight";
}

/* Flags as stored: -1 (unknown), 0 or 1; anything else counts as set. */
static int
flag_of(int v)
{
    return v < 0 ? -1 : (v > 0 ? 1 : 0);
}

static json_t *
identity_to_json(const tg_identity_t *id)
{
    json_t *obj = NULL, *groups = NULL;
    size_t i;

    groups = json_array();
    if (groups == NULL) {
        goto fail;
    }
    for (i = 0; i < id->n_groups; i++) {
        if (json_array_append_new(
                groups,
                json_string(id->groups[i] != NULL ? id->groups[i] : "")) != 0) {
            goto fail;
        }
    }
    /* The flags are -1 (unknown), 0 or 1: kept as integers. */
    obj = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:s, s:O, s:I, s:i, s:i, s:i}", "id",
        id->id != NULL ? id->id : "", "name", id->name != NULL ? id->name : "",
        "email", id->email != NULL ? id->email : "", "display_name",
        id->display_name != NULL ? id->display_name : "", "first_name",
        id->first_name != NULL ? id->first_name : "", "last_name",
        id->last_name != NULL ? id->last_name : "", "groups", groups,
        "expires_at", (json_int_t) id->expires_at, "evaluation",
        flag_of(id->evaluation), "disabled", flag_of(id->disabled),
        "has_profile", flag_of(id->has_profile));
    json_decref(groups);
    return obj;
fail:
    json_decref(groups);
    json_decref(obj);
    return NULL;
}

/* A string member as a new string; *bad set when absent or not a string. */
static char *
json_str_dup(json_t *obj, const char *key, int *bad)
{
    json_t *v = json_object_get(obj, key);
    char *s;

    if (!json_is_string(v)) {
        *bad = 1;
        return NULL;
    }
    s = strdup(json_string_value(v));
    if (s == NULL) {
        *bad = 2;
    }
    return s;
}

/* A time member in [0, TG_PAM_TIME_MAX]; 0 on success. */
static int
json_time(json_t *obj, const char *key, time_t *out)
{
    json_t *v = json_object_get(obj, key);
    json_int_t t;

    if (!json_is_integer(v)) {
        return -1;
    }
    t = json_integer_value(v);
    if (t < 0 || t > TG_PAM_TIME_MAX) {
        return -1;
    }
    *out = (time_t) t;
    return 0;
}

/* A flag member: an integer -1 (unknown), 0 or 1; 0 on success. */
static int
json_flag(json_t *obj, const char *key, int *out)
{
    json_t *v = json_object_get(obj, key);

    if (!json_is_integer(v) || json_integer_value(v) < -1 ||
        json_integer_value(v) > 1) {
        return -1;
    }
    *out = (int) json_integer_value(v);
    return 0;
}

static tg_identity_t *
identity_from_json(json_t *obj, int *nomem)
{
    tg_identity_t *id = NULL;
    json_t *groups, *g;
    size_t i;
    int bad = 0;

    *nomem = 0;
    if (!json_is_object(obj)) {
        return NULL;
    }
    id = calloc(1, sizeof(*id));
    if (id == NULL) {
        *nomem = 1;
        return NULL;
    }
    id->id = json_str_dup(obj, "id", &bad);
    id->name = json_str_dup(obj, "name", &bad);
    id->email = json_str_dup(obj, "email", &bad);
    id->display_name = json_str_dup(obj, "display_name", &bad);
    id->first_name = json_str_dup(obj, "first_name", &bad);
    id->last_name = json_str_dup(obj, "last_name", &bad);
    if (bad != 0) {
        goto fail;
    }
    if (id->id[0] == '\0' ||
        json_time(obj, "expires_at", &id->expires_at) != 0) {
        goto fail;
    }
    if (json_flag(obj, "evaluation", &id->evaluation) != 0 ||
        json_flag(obj, "disabled", &id->disabled) != 0 ||
        json_flag(obj, "has_profile", &id->has_profile) != 0) {
        goto fail;
    }
    groups = json_object_get(obj, "groups");
    if (!json_is_array(groups)) {
        goto fail;
    }
    if (json_array_size(groups) > 0) {
        id->groups = calloc(json_array_size(groups), sizeof(*id->groups));
        if (id->groups == NULL) {
            bad = 2;
            goto fail;
        }
    }
    json_array_foreach(groups, i, g)
    {
        if (!json_is_string(g)) {
            goto fail;
        }
        id->groups[i] = strdup(json_string_value(g));
        if (id->groups[i] == NULL) {
            bad = 2;
            goto fail;
        }
        id->n_groups = i + 1;
    }
    return id;
fail:
    *nomem = bad == 2;
    tg_identity_free(id);
    return NULL;
}

/* The members every file has. */
static json_t *
file_header(const char *kind, const char *user, const tg_config_t *cfg,
            time_t expires_at)
{
    return json_pack(
        "{s:i, s:s, s:s, s:s, s:s, s:I, s:I}", "version", TG_PAM_FILE_VERSION,
        "kind", kind, "user", user, "api", api_name(cfg->api), "url",
        cfg->url != NULL ? cfg->url : "", "created", (json_int_t) time(NULL),
        "expires_at", (json_int_t) expires_at);
}

/*
 * Read below dirfd the file name (shown in messages) and decode it,
 * checking its version and kind: the JSON in *root_out.
 */
static tg_pam_file_t
json_load(int dirfd, const char *name, const char *shown, const char *kind,
          size_t max, json_t **root_out, char *why, size_t why_size)
{
    char *text = NULL;
    size_t len = 0;
    json_t *root = NULL, *v;
    json_error_t jerr;
    tg_pam_file_t res;

    *root_out = NULL;
    res = read_checked(dirfd, name, shown, 077u, max, &text, &len, why,
                       why_size);
    if (res != TG_PAM_FILE_OK) {
        return res;
    }
    res = TG_PAM_FILE_BAD;
    root = tg__json_decode(text, len, 0, 0, &jerr);
    if (root == NULL) {
        set_why(why, why_size, "%s: not valid JSON (line %d)", shown,
                jerr.line);
        goto out;
    }
    v = json_object_get(root, "version");
    if (!json_is_integer(v) || json_integer_value(v) != TG_PAM_FILE_VERSION) {
        set_why(why, why_size, "%s: unknown format version", shown);
        goto out;
    }
    v = json_object_get(root, "kind");
    if (!json_is_string(v) || strcmp(json_string_value(v), kind) != 0) {
        set_why(why, why_size, "%s: not a %s file", shown, kind);
        goto out;
    }
    *root_out = root;
    root = NULL;
    res = TG_PAM_FILE_OK;
out:
    json_decref(root);
    explicit_bzero(text, len);
    free(text);
    return res;
}

/*
 * Read and decode <dir>/<user><suffix>, checking version, kind and user.
 * dirfd_in >= 0 reuses an open directory (dir is then only for messages).
 */
static tg_pam_file_t
file_load(const char *dir, const char *user, const char *suffix,
          const char *kind, int dirfd_in, json_t **root_out, char *why,
          size_t why_size)
{
    char name[TG_PAM_NAME_MAX];
    char shown[TG_PAM_NAME_MAX + 4096];
    json_t *root = NULL, *v;
    int dirfd = dirfd_in;
    tg_pam_file_t res;

    *root_out = NULL;
    if (file_name(name, sizeof(name), user, suffix) != 0) {
        set_why(why, why_size, "not a user name tokengate keeps files for");
        return TG_PAM_FILE_NONE;
    }
    snprintf(shown, sizeof(shown), "%s/%s", dir, name);
    if (dirfd < 0) {
        res = dir_open(dir, 0, &dirfd, why, why_size);
        if (res != TG_PAM_FILE_OK) {
            return res;
        }
    }
    res = json_load(dirfd, name, shown, kind, TG_PAM_FILE_MAX, &root, why,
                    why_size);
    if (res != TG_PAM_FILE_OK) {
        goto out;
    }
    v = json_object_get(root, "user");
    if (!json_is_string(v) || strcmp(json_string_value(v), user) != 0) {
        set_why(why, why_size, "%s: written for another user", shown);
        res = TG_PAM_FILE_BAD;
        goto out;
    }
    *root_out = root;
    root = NULL;
out:
    json_decref(root);
    if (dirfd_in < 0 && dirfd >= 0) {
        close(dirfd);
    }
    return res;
}

/* Was the file written for the server this config talks to? */
static int
same_server(json_t *root, const tg_config_t *cfg)
{
    json_t *api = json_object_get(root, "api");
    json_t *url = json_object_get(root, "url");

    return json_is_string(api) && json_is_string(url) &&
           strcmp(json_string_value(api), api_name(cfg->api)) == 0 &&
           strcmp(json_string_value(url), cfg->url != NULL ? cfg->url : "") ==
               0;
}

static tg_err_t
dump_and_write(int dirfd, const char *name, json_t *root, char *why,
               size_t why_size)
{
    char *text;
    size_t len;
    tg_err_t err;

    text = json_dumps(root, JSON_COMPACT);
    if (text == NULL) {
        set_why(why, why_size, "%s: out of memory", name);
        return TG_NOMEM;
    }
    len = strlen(text);
    if (len > TG_PAM_FILE_MAX - 1) {
        set_why(why, why_size, "%s: would be larger than %d bytes", name,
                TG_PAM_FILE_MAX);
        err = TG_INTERNAL;
    } else {
        err = write_atomic(dirfd, name, text, len, why, why_size);
    }
    explicit_bzero(text, len);
    free(text);
    return err;
}

/* ---------------------------------------------------------------------- */
/* The state file                                                         */
/* ---------------------------------------------------------------------- */

tg_err_t
tg_pam_state_write(const char *dir, const char *user, const tg_config_t *cfg,
                   const tg_identity_t *id, time_t expires_at,
                   const char *denied, char *why, size_t why_size)
{
    char name[TG_PAM_NAME_MAX];
    json_t *root = NULL, *ident = NULL;
    int dirfd = -1;
    tg_pam_file_t res;
    tg_err_t err = TG_INTERNAL;

    if (file_name(name, sizeof(name), user, TG_PAM_STATE_SUFFIX) != 0) {
        set_why(why, why_size, "not a user name tokengate keeps files for");
        return TG_INTERNAL;
    }
    res = dir_open(dir, 1, &dirfd, why, why_size);
    if (res != TG_PAM_FILE_OK) {
        return res == TG_PAM_FILE_UNSAFE_DIR ? TG_CONFIG
               : res == TG_PAM_FILE_NOMEM    ? TG_NOMEM
                                             : TG_INTERNAL;
    }
    root = file_header("tokengate-state", user, cfg, expires_at);
    ident = identity_to_json(id);
    if (root == NULL || ident == NULL ||
        json_object_set_new(root, "identity", ident) != 0) {
        ident = NULL;
        set_why(why, why_size, "%s: out of memory", name);
        err = TG_NOMEM;
        goto out;
    }
    ident = NULL;
    if (denied != NULL &&
        json_object_set_new(
            root, "denied",
            json_string(denied[0] != '\0' ? denied : "denied")) != 0) {
        /* json_string() refuses invalid UTF-8: say so without the text. */
        if (json_object_set_new(root, "denied",
                                json_string("denied by the rules")) != 0) {
            set_why(why, why_size, "%s: out of memory", name);
            err = TG_NOMEM;
            goto out;
        }
    }
    err = dump_and_write(dirfd, name, root, why, why_size);
out:
    json_decref(ident);
    json_decref(root);
    close(dirfd);
    return err;
}

tg_pam_file_t
tg_pam_state_read(const char *dir, const char *user, tg_pam_state_t *out,
                  char *why, size_t why_size)
{
    json_t *root = NULL, *v;
    int bad = 0, nomem = 0;
    tg_pam_file_t res;

    memset(out, 0, sizeof(*out));
    res = file_load(dir, user, TG_PAM_STATE_SUFFIX, "tokengate-state", -1,
                    &root, why, why_size);
    if (res != TG_PAM_FILE_OK) {
        return res;
    }
    res = TG_PAM_FILE_BAD;
    out->user = json_str_dup(root, "user", &bad);
    out->url = json_str_dup(root, "url", &bad);
    if (bad == 2) {
        res = TG_PAM_FILE_NOMEM;
        goto out;
    }
    v = json_object_get(root, "api");
    if (bad != 0 || !json_is_string(v) ||
        json_time(root, "created", &out->created) != 0 ||
        json_time(root, "expires_at", &out->expires_at) != 0) {
        set_why(why, why_size, "%s/%s%s: malformed", dir, user,
                TG_PAM_STATE_SUFFIX);
        goto out;
    }
    out->api = strcmp(json_string_value(v), "looker") == 0 ? TG_API_LOOKER
                                                           : TG_API_INSIGHT;
    v = json_object_get(root, "denied");
    if (v != NULL) {
        if (!json_is_string(v)) {
            set_why(why, why_size, "%s/%s%s: malformed denied record", dir,
                    user, TG_PAM_STATE_SUFFIX);
            goto out;
        }
        out->denied = strdup(json_string_value(v));
        if (out->denied == NULL) {
            res = TG_PAM_FILE_NOMEM;
            goto out;
        }
    }
    out->identity =
        identity_from_json(json_object_get(root, "identity"), &nomem);
    if (out->identity == NULL) {
        set_why(why, why_size, "%s/%s%s: %s", dir, user, TG_PAM_STATE_SUFFIX,
                nomem ? "out of memory" : "malformed identity");
        res = nomem ? TG_PAM_FILE_NOMEM : TG_PAM_FILE_BAD;
        goto out;
    }
    res = TG_PAM_FILE_OK;
out:
    json_decref(root);
    if (res != TG_PAM_FILE_OK) {
        tg_pam_state_clear(out);
    }
    return res;
}

void
tg_pam_state_clear(tg_pam_state_t *st)
{
    if (st == NULL) {
        return;
    }
    tg_identity_free(st->identity);
    free(st->user);
    free(st->url);
    free(st->denied);
    memset(st, 0, sizeof(*st));
}

int
tg_pam_state_remove(const char *dir, const char *user, char *why,
                    size_t why_size)
{
    return remove_file(dir, user, TG_PAM_STATE_SUFFIX, why, why_size);
}

/* ---------------------------------------------------------------------- */
/* The offline cache                                                      */
/* ---------------------------------------------------------------------- */

/* yescrypt takes at most CRYPT_MAX_PASSPHRASE_SIZE bytes; a password may
 * be 8 KiB.  Hash it first: hex(SHA-256(password)). */
static int
phrase_of(const char *password, char out[TG_PAM_PHRASE_SIZE])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0, i;
    int rc = -1;

    if (EVP_Digest(password, strlen(password), md, &md_len, EVP_sha256(),
                   NULL) != 1 ||
        md_len != 32) {
        goto out;
    }
    for (i = 0; i < md_len; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 0x0f];
    }
    out[2 * md_len] = '\0';
    rc = 0;
out:
    explicit_bzero(md, sizeof(md));
    return rc;
}

tg_err_t
tg_pam_offline_store(const char *dir, const char *user, const tg_config_t *cfg,
                     const char *password, const tg_identity_t *id,
                     time_t expires_at, char *why, size_t why_size)
{
    char name[TG_PAM_NAME_MAX];
    char phrase[TG_PAM_PHRASE_SIZE];
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    struct crypt_data *cd = NULL;
    const char *hash;
    json_t *root = NULL, *ident = NULL;
    int dirfd = -1;
    tg_pam_file_t res;
    tg_err_t err = TG_INTERNAL;

    memset(phrase, 0, sizeof(phrase));
    if (file_name(name, sizeof(name), user, TG_PAM_CACHE_SUFFIX) != 0) {
        set_why(why, why_size, "not a user name tokengate keeps files for");
        goto out;
    }
    cd = calloc(1, sizeof(*cd));
    if (cd == NULL) {
        set_why(why, why_size, "out of memory");
        err = TG_NOMEM;
        goto out;
    }
    if (phrase_of(password, phrase) != 0) {
        set_why(why, why_size, "SHA-256 failed");
        goto out;
    }
    /* NULL random bytes: libxcrypt draws the salt from the kernel. */
    if (crypt_gensalt_rn("$y$", 0, NULL, 0, setting, sizeof(setting)) == NULL) {
        char ebuf[128];
        set_why(why, why_size, "crypt_gensalt_rn($y$) failed: %s",
                strerror_r(errno, ebuf, sizeof(ebuf)));
        goto out;
    }
    /* crypt_rn, not crypt_r: the same function, NULL on failure, and not
     * intercepted by sanitizers (whose crypt_r hook breaks when libcrypt
     * arrives with a dlopen'ed module). */
    hash = crypt_rn(phrase, setting, cd, (int) sizeof(*cd));
    if (hash == NULL || hash[0] != '$') {
        set_why(why, why_size, "yescrypt failed");
        goto out;
    }
    root = file_header("tokengate-offline", user, cfg, expires_at);
    ident = identity_to_json(id);
    if (root == NULL || ident == NULL ||
        json_object_set_new(root, "identity", ident) != 0) {
        ident = NULL;
        set_why(why, why_size, "out of memory");
        err = TG_NOMEM;
        goto out;
    }
    ident = NULL;
    if (json_object_set_new(root, "hash", json_string(hash)) != 0 ||
        json_object_set_new(root, "failures", json_integer(0)) != 0) {
        set_why(why, why_size, "out of memory");
        err = TG_NOMEM;
        goto out;
    }
    res = dir_open(dir, 1, &dirfd, why, why_size);
    if (res != TG_PAM_FILE_OK) {
        err = res == TG_PAM_FILE_UNSAFE_DIR ? TG_CONFIG
              : res == TG_PAM_FILE_NOMEM    ? TG_NOMEM
                                            : TG_INTERNAL;
        goto out;
    }
    (void) flock(dirfd, LOCK_EX);
    err = dump_and_write(dirfd, name, root, why, why_size);
out:
    if (dirfd >= 0) {
        close(dirfd);
    }
    json_decref(ident);
    json_decref(root);
    explicit_bzero(phrase, sizeof(phrase));
    explicit_bzero(setting, sizeof(setting));
    if (cd != NULL) {
        explicit_bzero(cd, sizeof(*cd));
        free(cd);
    }
    return err;
}

tg_pam_offline_t
tg_pam_offline_check(const char *dir, const char *user, const tg_config_t *cfg,
                     const char *password, long max_failures,
                     tg_identity_t **id_out, time_t *expires_out,
                     long *failures_out, char *why, size_t why_size)
{
    char name[TG_PAM_NAME_MAX];
    char phrase[TG_PAM_PHRASE_SIZE];
    struct crypt_data *cd = NULL;
    const char *stored, *computed;
    json_t *root = NULL, *v;
    json_int_t failures;
    time_t expires_at = 0;
    size_t slen;
    int dirfd = -1, nomem = 0, match;
    tg_pam_file_t res;
    tg_pam_offline_t out = TG_PAM_OFFLINE_BAD;

    *id_out = NULL;
    *expires_out = 0;
    if (failures_out != NULL) {
        *failures_out = 0;
    }
    memset(phrase, 0, sizeof(phrase));
    if (file_name(name, sizeof(name), user, TG_PAM_CACHE_SUFFIX) != 0) {
        set_why(why, why_size, "not a user name tokengate keeps files for");
        out = TG_PAM_OFFLINE_NONE;
        goto out;
    }
    res = dir_open(dir, 0, &dirfd, why, why_size);
    if (res == TG_PAM_FILE_NONE) {
        out = TG_PAM_OFFLINE_NONE;
        goto out;
    }
    if (res != TG_PAM_FILE_OK) {
        out = res == TG_PAM_FILE_NOMEM ? TG_PAM_OFFLINE_NOMEM
                                       : TG_PAM_OFFLINE_BAD;
        goto out;
    }
    /* One reader-writer at a time: the counter is read, then written. */
    if (flock(dirfd, LOCK_EX) != 0) {
        char ebuf[128];
        set_why(why, why_size, "%s: cannot lock: %s", dir,
                strerror_r(errno, ebuf, sizeof(ebuf)));
        goto out;
    }
    res = file_load(dir, user, TG_PAM_CACHE_SUFFIX, "tokengate-offline", dirfd,
                    &root, why, why_size);
    if (res != TG_PAM_FILE_OK) {
        out = res == TG_PAM_FILE_NONE    ? TG_PAM_OFFLINE_NONE
              : res == TG_PAM_FILE_NOMEM ? TG_PAM_OFFLINE_NOMEM
                                         : TG_PAM_OFFLINE_BAD;
        goto out;
    }
    if (!same_server(root, cfg)) {
        set_why(why, why_size, "%s/%s: written for another server", dir, name);
        out = TG_PAM_OFFLINE_NONE;
        goto out;
    }
    v = json_object_get(root, "failures");
    stored = json_string_value(json_object_get(root, "hash"));
    if (json_time(root, "expires_at", &expires_at) != 0 ||
        !json_is_integer(v) || json_integer_value(v) < 0 || stored == NULL ||
        strncmp(stored, "$y$", 3) != 0) {
        set_why(why, why_size, "%s/%s: malformed", dir, name);
        goto out;
    }
    failures = json_integer_value(v);
    if (failures_out != NULL) {
        *failures_out = (long) failures;
    }
    if (expires_at <= time(NULL)) {
        set_why(why, why_size, "%s/%s: expired", dir, name);
        out = TG_PAM_OFFLINE_EXPIRED;
        goto out;
    }
    if (failures >= max_failures) {
        set_why(why, why_size, "%s/%s: locked after %lld failures", dir, name,
                (long long) failures);
        out = TG_PAM_OFFLINE_LOCKED;
        goto out;
    }

    cd = calloc(1, sizeof(*cd));
    if (cd == NULL) {
        set_why(why, why_size, "out of memory");
        out = TG_PAM_OFFLINE_NOMEM;
        goto out;
    }
    /* Count the guess BEFORE checking it, durably: a right guess is then
     * reset below, a wrong one stays counted even if this process is
     * killed or cannot write afterwards.  A guess that cannot be counted
     * is not checked at all. */
    if (json_object_set_new(root, "failures",
                            json_integer(failures < TG_PAM_FAILURES_MAX
                                             ? failures + 1
                                             : failures)) != 0) {
        set_why(why, why_size, "out of memory");
        out = TG_PAM_OFFLINE_NOMEM;
        goto out;
    }
    if (dump_and_write(dirfd, name, root, why, why_size) != TG_OK) {
        out = TG_PAM_OFFLINE_BAD;
        goto out;
    }
    failures = failures < TG_PAM_FAILURES_MAX ? failures + 1 : failures;
    if (failures_out != NULL) {
        *failures_out = (long) failures;
    }
    if (phrase_of(password, phrase) != 0) {
        set_why(why, why_size, "SHA-256 failed");
        goto out;
    }
    computed = crypt_rn(phrase, stored, cd, (int) sizeof(*cd));
    slen = strlen(stored);
    match = computed != NULL && computed[0] == '$' &&
            strlen(computed) == slen &&
            CRYPTO_memcmp(computed, stored, slen) == 0;

    if (!match) {
        set_why(why, why_size, "wrong password");
        out = TG_PAM_OFFLINE_MISMATCH;
        goto out;
    }

    *id_out = identity_from_json(json_object_get(root, "identity"), &nomem);
    if (*id_out == NULL) {
        set_why(why, why_size, "%s/%s: %s", dir, name,
                nomem ? "out of memory" : "malformed identity");
        out = nomem ? TG_PAM_OFFLINE_NOMEM : TG_PAM_OFFLINE_BAD;
        goto out;
    }
    /* A right password resets the count of wrong ones in a row.  When
     * that write fails the guess stays counted (fail-safe), and the
     * password was right: the login goes on. */
    if (json_object_set_new(root, "failures", json_integer(0)) == 0 &&
        dump_and_write(dirfd, name, root, why, why_size) == TG_OK &&
        failures_out != NULL) {
        *failures_out = 0;
    }
    *expires_out = expires_at;
    out = TG_PAM_OFFLINE_OK;
out:
    json_decref(root);
    explicit_bzero(phrase, sizeof(phrase));
    if (cd != NULL) {
        explicit_bzero(cd, sizeof(*cd));
        free(cd);
    }
    if (dirfd >= 0) {
        close(dirfd);
    }
    return out;
}

int
tg_pam_offline_remove_if(const char *dir, const char *user,
                         const tg_config_t *cfg, const char *password,
                         char *why, size_t why_size)
{
    char name[TG_PAM_NAME_MAX];
    char phrase[TG_PAM_PHRASE_SIZE];
    char ebuf[128];
    struct crypt_data *cd = NULL;
    const char *stored, *computed;
    json_t *root = NULL;
    size_t slen;
    int dirfd = -1, rc = -1;
    tg_pam_file_t res;

    memset(phrase, 0, sizeof(phrase));
    if (file_name(name, sizeof(name), user, TG_PAM_CACHE_SUFFIX) != 0) {
        return 0;
    }
    res = dir_open(dir, 0, &dirfd, why, why_size);
    if (res == TG_PAM_FILE_NONE) {
        return 0;
    }
    if (res != TG_PAM_FILE_OK) {
        return -1;
    }
    if (flock(dirfd, LOCK_EX) != 0) {
        set_why(why, why_size, "%s: cannot lock: %s", dir,
                strerror_r(errno, ebuf, sizeof(ebuf)));
        goto out;
    }
    res = file_load(dir, user, TG_PAM_CACHE_SUFFIX, "tokengate-offline", dirfd,
                    &root, why, why_size);
    if (res == TG_PAM_FILE_NONE) {
        rc = 0;
        goto out;
    }
    if (res != TG_PAM_FILE_OK) {
        goto out;
    }
    if (!same_server(root, cfg)) {
        rc = 0;
        goto out;
    }
    stored = json_string_value(json_object_get(root, "hash"));
    if (stored == NULL || strncmp(stored, "$y$", 3) != 0) {
        set_why(why, why_size, "%s/%s: malformed", dir, name);
        goto out;
    }
    cd = calloc(1, sizeof(*cd));
    if (cd == NULL) {
        set_why(why, why_size, "out of memory");
        goto out;
    }
    if (phrase_of(password, phrase) != 0) {
        set_why(why, why_size, "SHA-256 failed");
        goto out;
    }
    computed = crypt_rn(phrase, stored, cd, (int) sizeof(*cd));
    slen = strlen(stored);
    if (computed == NULL || computed[0] != '$' || strlen(computed) != slen ||
        CRYPTO_memcmp(computed, stored, slen) != 0) {
        rc = 0;
        goto out;
    }
    if (unlinkat(dirfd, name, 0) != 0 && errno != ENOENT) {
        set_why(why, why_size, "%s/%s: %s", dir, name,
                strerror_r(errno, ebuf, sizeof(ebuf)));
        goto out;
    }
    rc = 1;
out:
    json_decref(root);
    explicit_bzero(phrase, sizeof(phrase));
    if (cd != NULL) {
        explicit_bzero(cd, sizeof(*cd));
        free(cd);
    }
    if (dirfd >= 0) {
        close(dirfd);
    }
    return rc;
}

int
tg_pam_offline_remove(const char *dir, const char *user, char *why,
                      size_t why_size)
{
    return remove_file(dir, user, TG_PAM_CACHE_SUFFIX, why, why_size);
}

/* ---------------------------------------------------------------------- */
/* The back-off file                                                      */
/* ---------------------------------------------------------------------- */

/* "backoff-<32 hex of the SHA-256 of the url>.json": one per server. */
static int
backoff_name(char *buf, size_t size, const tg_config_t *cfg)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0, i;
    const char *url = cfg->url != NULL ? cfg->url : "";
    char *p;

    if (size < sizeof(TG_PAM_BACKOFF_PREFIX) + 32 +
                   sizeof(TG_PAM_STATE_SUFFIX) ||
        EVP_Digest(url, strlen(url), md, &mdlen, EVP_sha256(), NULL) != 1 ||
        mdlen < 16) {
        return -1;
    }
    p = buf + snprintf(buf, size, "%s", TG_PAM_BACKOFF_PREFIX);
    for (i = 0; i < 16; i++) {
        *p++ = hex[md[i] >> 4];
        *p++ = hex[md[i] & 0x0f];
    }
    memcpy(p, TG_PAM_STATE_SUFFIX, sizeof(TG_PAM_STATE_SUFFIX));
    return 0;
}

/*
 * Read the back-off of cfg's server below the open dirfd into *b (zeroed
 * when there is none).  A file that is unsafe, malformed, for another
 * server, or whose times lie beyond the cap (now + max(retry_after_max,
 * TG_PAM_BACKOFF_MAX)) is BAD: the caller ignores it (a login is never
 * kept waiting longer than that cap by what a file says).
 */
static tg_pam_file_t
backoff_load(int dirfd, const char *dir, const char *name,
             const tg_config_t *cfg, time_t now, tg_pam_backoff_t *b,
             char *why, size_t why_size)
{
    char shown[TG_PAM_NAME_MAX + 4096];
    json_t *root = NULL, *v;
    time_t cap;
    tg_pam_file_t res;

    memset(b, 0, sizeof(*b));
    cap = now + (cfg->retry_after_max > TG_PAM_BACKOFF_MAX
                     ? cfg->retry_after_max
                     : TG_PAM_BACKOFF_MAX);
    snprintf(shown, sizeof(shown), "%s/%s", dir, name);
    res = json_load(dirfd, name, shown, "backoff", 4096, &root, why,
                    why_size);
    if (res != TG_PAM_FILE_OK) {
        return res;
    }
    res = TG_PAM_FILE_BAD;
    if (!same_server(root, cfg)) {
        set_why(why, why_size, "%s: written for another server", shown);
        goto out;
    }
    v = json_object_get(root, "failures");
    if (json_time(root, "until", &b->until) != 0 ||
        json_time(root, "probe_until", &b->probe_until) != 0 ||
        !json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) > 1000000) {
        set_why(why, why_size, "%s: malformed back-off record", shown);
        memset(b, 0, sizeof(*b));
        goto out;
    }
    b->failures = (long) json_integer_value(v);
    if (b->until > cap || b->probe_until > cap) {
        set_why(why, why_size,
                "%s: deadline %lld s ahead, beyond the cap of %lld s", shown,
                (long long) (b->until - now), (long long) (cap - now));
        memset(b, 0, sizeof(*b));
        goto out;
    }
    res = TG_PAM_FILE_OK;
out:
    json_decref(root);
    return res;
}

static tg_err_t
backoff_store(int dirfd, const char *name, const tg_config_t *cfg,
              const tg_pam_backoff_t *b, char *why, size_t why_size)
{
    json_t *root;
    tg_err_t err;

    root = json_pack("{s:i, s:s, s:s, s:s, s:I, s:I, s:I, s:I}", "version",
                     TG_PAM_FILE_VERSION, "kind", "backoff", "api",
                     api_name(cfg->api), "url",
                     cfg->url != NULL ? cfg->url : "", "created",
                     (json_int_t) time(NULL), "until", (json_int_t) b->until,
                     "probe_until", (json_int_t) b->probe_until, "failures",
                     (json_int_t) b->failures);
    if (root == NULL) {
        set_why(why, why_size, "%s: out of memory", name);
        return TG_NOMEM;
    }
    err = dump_and_write(dirfd, name, root, why, why_size);
    json_decref(root);
    return err;
}

long
tg_pam_backoff_check(const char *dir, const tg_config_t *cfg, long probe_life,
                     int *probe, tg_pam_backoff_t *seen, char *why,
                     size_t why_size)
{
    char name[TG_PAM_NAME_MAX];
    tg_pam_backoff_t b;
    time_t now = time(NULL);
    int dirfd = -1;
    long wait = 0;
    tg_pam_file_t res;

    *probe = 0;
    memset(seen, 0, sizeof(*seen));
    why[0] = '\0';
    if (backoff_name(name, sizeof(name), cfg) != 0) {
        set_why(why, why_size, "cannot name the back-off file");
        return -1;
    }
    res = dir_open(dir, 0, &dirfd, why, why_size);
    if (res == TG_PAM_FILE_NONE) {
        why[0] = '\0';
        return 0;
    }
    if (res != TG_PAM_FILE_OK) {
        return -1;
    }
    (void) flock(dirfd, LOCK_EX);
    res = backoff_load(dirfd, dir, name, cfg, now, &b, why, why_size);
    if (res == TG_PAM_FILE_NONE) {
        why[0] = '\0';
    } else if (res != TG_PAM_FILE_OK) {
        wait = -1;
    } else if (b.until > now) {
        wait = (long) (b.until - now);
    } else if (b.failures > 0 && b.probe_until > now) {
        wait = 1; /* another login is the probe */
    } else if (b.failures > 0) {
        b.probe_until = now + probe_life;
        if (backoff_store(dirfd, name, cfg, &b, why, why_size) == TG_OK) {
            *probe = 1;
        }
    }
    *seen = b;
    close(dirfd);
    return wait;
}

tg_err_t
tg_pam_backoff_record(const char *dir, const tg_config_t *cfg, tg_err_t err,
                      const tg_diag_t *diag, long *delay, long *failures,
                      char *why, size_t why_size)
{
    char name[TG_PAM_NAME_MAX];
    char ebuf[128];
    tg_pam_backoff_t b;
    time_t now = time(NULL);
    int dirfd = -1, answered, limited, unreachable;
    tg_err_t rc = TG_OK;
    tg_pam_file_t res;

    *delay = 0;
    *failures = 0;
    why[0] = '\0';
    answered = diag != NULL && diag->http_status > 0;
    limited = answered &&
              (diag->http_status == 429 || diag->http_status == 503) &&
              diag->retry_after > 0;
    unreachable = !answered && (err == TG_UNAVAILABLE || err == TG_TIMEOUT);
    if (!answered && !unreachable && err != TG_OK) {
        return TG_OK; /* TLS, protocol, ...: nothing learnt */
    }
    if (backoff_name(name, sizeof(name), cfg) != 0) {
        set_why(why, why_size, "cannot name the back-off file");
        return TG_INTERNAL;
    }
    res = dir_open(dir, limited || unreachable, &dirfd, why, why_size);
    if (res == TG_PAM_FILE_NONE && !limited && !unreachable) {
        why[0] = '\0';
        return TG_OK;
    }
    if (res != TG_PAM_FILE_OK) {
        return res == TG_PAM_FILE_UNSAFE_DIR ? TG_CONFIG : TG_INTERNAL;
    }
    (void) flock(dirfd, LOCK_EX);
    if (!limited && !unreachable) {
        /* the server answered: the back-off ends, but a Retry-After
         * deadline still running stays (this answer may have been on its
         * way before the server asked for it) */
        if (backoff_load(dirfd, dir, name, cfg, now, &b, why, why_size) ==
                TG_PAM_FILE_OK &&
            b.failures == 0 && b.until > now) {
            close(dirfd);
            why[0] = '\0';
            return TG_OK;
        }
        why[0] = '\0';
        if (unlinkat(dirfd, name, 0) != 0 && errno != ENOENT) {
            set_why(why, why_size, "%s/%s: %s", dir, name,
                    strerror_r(errno, ebuf, sizeof(ebuf)));
            rc = TG_INTERNAL;
        }
        close(dirfd);
        return rc;
    }
    /* a bad file is replaced: it is never trusted */
    if (backoff_load(dirfd, dir, name, cfg, now, &b, why, why_size) !=
        TG_PAM_FILE_OK) {
        memset(&b, 0, sizeof(b));
    }
    why[0] = '\0';
    b.probe_until = 0;
    if (limited) {
        b.failures = 0;
        if (now + diag->retry_after > b.until) {
            b.until = now + diag->retry_after;
            *delay = diag->retry_after;
        }
    } else {
        b.failures++;
        *delay = b.failures > 5 ? TG_PAM_BACKOFF_MAX : 1L << (b.failures - 1);
        if (now + *delay > b.until) {
            b.until = now + *delay;
        }
    }
    *failures = b.failures;
    rc = backoff_store(dirfd, name, cfg, &b, why, why_size);
    close(dirfd);
    return rc;
}
