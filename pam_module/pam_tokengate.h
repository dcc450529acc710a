/* SPDX-License-Identifier: MIT */
/*
 * pam_tokengate.h - what the two files of pam_tokengate.so share: the
 * per-user state file that lets "account" work without "auth" in the same
 * process, and the offline cache.
 *
 * Nothing here is exported from the module (the version script exports only
 * pam_sm_*, and the module is built with -fvisibility=hidden).  Nothing here
 * logs: every function reports what went wrong in a caller's buffer (why,
 * why_size), never quoting a token, a secret or a hash, and pam_tokengate.c
 * decides the log level.
 *
 * Files (pam_tokengate(8)):
 *   <state_dir>/<user>.json     identity + expiry, written by auth after an
 *                               online (or offline) success, read by account;
 *                               or a "denied" record (identity + reason)
 *                               written when auth's rules deny the user;
 *   <offline_dir>/<user>.cache  yescrypt verifier + identity + expiry +
 *                               failure counter, only with offline_cache > 0.
 * Both directories are created 0700 when missing; both files are written
 * 0600 through O_CREAT|O_EXCL|O_NOFOLLOW temporaries renamed into place,
 * and read back only when they are regular files (O_NOFOLLOW), owned by
 * root or the effective uid, with no group or other permission bits.
 */
#ifndef PAM_TOKENGATE_H
#define PAM_TOKENGATE_H

#include <stddef.h>
#include <time.h>

#include "tokengate.h"

/* The back-off file of a server: the prefix, 32 hex of the SHA-256 of
 * its url, TG_PAM_STATE_SUFFIX; and the longest connect-failure back-off. */
#define TG_PAM_BACKOFF_PREFIX "backoff-"
#define TG_PAM_BACKOFF_MAX 30

/* File name suffixes (the user name is the rest). */
#define TG_PAM_STATE_SUFFIX ".json"
#define TG_PAM_CACHE_SUFFIX ".cache"

/* What reading a per-user file found. */
typedef enum tg_pam_file {
    TG_PAM_FILE_OK = 0,
    TG_PAM_FILE_NONE,       /* no such file, or no such directory */
    TG_PAM_FILE_BAD,        /* unsafe owner/mode/type, unreadable, malformed */
    TG_PAM_FILE_UNSAFE_DIR, /* the directory itself is not safe (config) */
    TG_PAM_FILE_NOMEM
} tg_pam_file_t;

/* A state file as read back; strings and identity owned by it. */
typedef struct tg_pam_state {
    tg_identity_t *identity;
    char *user;
    char *url;
    tg_api_t api;
    time_t created;
    time_t expires_at;
    char *denied; /* non-NULL: a "denied" record, with the rules' reason */
} tg_pam_state_t;

/* What the offline cache said about a password. */
typedef enum tg_pam_offline {
    TG_PAM_OFFLINE_OK = 0,   /* verified: identity and expiry returned */
    TG_PAM_OFFLINE_NONE,     /* no usable entry (none, other server) */
    TG_PAM_OFFLINE_EXPIRED,  /* an entry, past its expiry */
    TG_PAM_OFFLINE_MISMATCH, /* wrong password; the counter was raised */
    TG_PAM_OFFLINE_LOCKED,   /* offline_max_failures reached */
    TG_PAM_OFFLINE_BAD,      /* unsafe or malformed entry or directory */
    TG_PAM_OFFLINE_NOMEM
} tg_pam_offline_t;

/*
 * Is user a name the module can have state for: ^[a-z0-9._-]{1,32}$, not
 * starting with '-', not "." or ".." (the names tg_identity_bind() can
 * return).  Only such names ever become file names.
 */
int tg_pam_user_name_ok(const char *user);

/* Copy text for a log line: bytes outside printable ASCII become '?', the
 * copy is cut at size - 1 (with "..." when cut).  src may be NULL. */
void tg_pam_sanitize(char *dst, size_t size, const char *src);

/*
 * Write <dir>/<user>.json for identity, valid until expires_at, bound to
 * cfg's api and url.  dir is created (0700) when missing.  TG_OK, TG_CONFIG
 * (unsafe directory), TG_NOMEM or TG_INTERNAL (I/O), with why filled.
 * denied non-NULL writes a "denied" record instead (auth's rules refused
 * this identity, for that reason): account refuses the user on it, whatever
 * its expiry, until a later successful auth replaces it.
 */
tg_err_t tg_pam_state_write(const char *dir, const char *user,
                            const tg_config_t *cfg, const tg_identity_t *id,
                            time_t expires_at, const char *denied, char *why,
                            size_t why_size);

/*
 * Read <dir>/<user>.json into *out (tg_pam_state_clear() it).  The user in
 * the file must be user.  Does not check the expiry or the server: the
 * caller does, so that it can log which one failed.
 */
tg_pam_file_t tg_pam_state_read(const char *dir, const char *user,
                                tg_pam_state_t *out, char *why,
                                size_t why_size);
void tg_pam_state_clear(tg_pam_state_t *st);

/* Truncate (or create empty) <dir>/<user>.json, which account refuses as
 * unparsable: the fallback when a denied record cannot be written.  0 or
 * -1. */
int tg_pam_state_poison(const char *dir, const char *user, char *why,
                        size_t why_size);

/* Remove <dir>/<user>.json (no error when it is absent).  0 or -1. */
int tg_pam_state_remove(const char *dir, const char *user, char *why,
                        size_t why_size);

/*
 * Store a salted yescrypt verifier of password (pre-hashed with SHA-256,
 * since yescrypt takes at most 512 bytes) with identity, valid until
 * expires_at, failure counter 0, in <dir>/<user>.cache.
 */
tg_err_t tg_pam_offline_store(const char *dir, const char *user,
                              const tg_config_t *cfg, const char *password,
                              const tg_identity_t *id, time_t expires_at,
                              char *why, size_t why_size);

/*
 * Check password against <dir>/<user>.cache under an exclusive lock.  The
 * counter is raised and written (fsync, rename, directory fsync) BEFORE the
 * password is hashed; when that write fails the password is not checked at
 * all (TG_PAM_OFFLINE_BAD).  On TG_PAM_OFFLINE_OK, *id_out (caller owns) and
 * *expires_out are set and the counter is reset to 0.  *failures_out is the
 * counter after the call (may be NULL).  An entry for another api/url is
 * TG_PAM_OFFLINE_NONE.
 */
tg_pam_offline_t tg_pam_offline_check(const char *dir, const char *user,
                                      const tg_config_t *cfg,
                                      const char *password, long max_failures,
                                      tg_identity_t **id_out,
                                      time_t *expires_out, long *failures_out,
                                      char *why, size_t why_size);

/*
 * Remove <dir>/<user>.cache only when password matches its verifier (the
 * server really rejected the secret the entry holds), under the lock.  1
 * removed, 0 kept (no entry, other server, another password), -1 error.
 * The failure counter is not touched.
 */
int tg_pam_offline_remove_if(const char *dir, const char *user,
                             const tg_config_t *cfg, const char *password,
                             char *why, size_t why_size);

/* Remove <dir>/<user>.cache (no error when it is absent).  0 or -1. */
int tg_pam_offline_remove(const char *dir, const char *user, char *why,
                          size_t why_size);

/* A server's back-off as kept in its file. */
typedef struct tg_pam_backoff {
    time_t until;       /* no server call before */
    time_t probe_until; /* a probe login is on its way until then */
    long failures;      /* consecutive connect failures / timeouts */
} tg_pam_backoff_t;

/*
 * The node-wide back-off of cfg's server, in <dir>/backoff-<hash>.json
 * (pam_tokengate(8)), under an exclusive lock on dir.  Before a server
 * call: the seconds to wait (> 0: no call), 0 the call may go (*probe set
 * when it is the one probe after connect failures: the file then says so
 * for probe_life seconds), or -1 when the file is unsafe or malformed (why
 * says so; the call may go: a bad file never locks anyone out).  *seen is
 * what the file held.  A deadline beyond now + max(retry_after_max,
 * TG_PAM_BACKOFF_MAX) is refused as bad.
 */
long tg_pam_backoff_check(const char *dir, const tg_config_t *cfg,
                          long probe_life, int *probe, tg_pam_backoff_t *seen,
                          char *why, size_t why_size);

/*
 * After a server call (err and the client's diag): a 429/503 with
 * Retry-After sets the deadline; a connect failure or timeout before any
 * status line doubles the back-off (1 s to TG_PAM_BACKOFF_MAX); any other
 * answer removes the file (but for a Retry-After deadline still running);
 * other errors leave it.  *delay is the new
 * back-off (0 when none), *failures the count.
 */
tg_err_t tg_pam_backoff_record(const char *dir, const tg_config_t *cfg,
                               tg_err_t err, const tg_diag_t *diag,
                               long *delay, long *failures, char *why,
                               size_t why_size);

#endif /* PAM_TOKENGATE_H */
