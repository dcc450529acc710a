/* SPDX-License-Identifier: MIT */
/*
 * identity.c - the normalized identity, the authorization rules, and the
 * binding of an identity to a local user name.
 *
 * Everything here fails closed: a rule that cannot be evaluated denies, and
 * a binding that is not certain is no binding.  Comparisons are exact bytes
 * unless case_insensitive is set, and then ASCII-only (no locale, no
 * Unicode folding: SECURITY.md 3.8).  Messages name the user by its id,
 * sanitized and cut, and never quote an email or a name.
 */
#include "tokengate.h"
#include "tg_internal.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

/* How much of a user id a message shows. */
#define TG_LABEL_MAX 64
/* A local user name: useradd's default limit is 32. */
#define TG_LOCAL_NAME_MAX 32
/* The longest identity attribute we look at (an email is at most 254). */
#define TG_BIND_VALUE_MAX 1024
/* user_map_file: as small as a config file, lines as long. */
#define TG_MAP_FILE_MAX (1024 * 1024)
#define TG_MAP_LINE_MAX 4096
/* getpwnam_r buffer: start, and give up beyond (ERANGE doubles it). */
#define TG_PW_BUF_START 16384
#define TG_PW_BUF_MAX (1024 * 1024)
/* Room for a list of group names in a message. */
#define TG_GROUP_LIST_SHOWN 320

/* ---------------------------------------------------------------------- */
/* Prototypes of statics                                                  */
/* ---------------------------------------------------------------------- */

static unsigned char ascii_lower(unsigned char c);
static int name_eq(const char *a, size_t alen, const char *b, int ci);
static const char *id_label(char *buf, size_t size, const tg_identity_t *id);
static int has_group(const tg_identity_t *id, const char *group, int ci);
static int merge_flag(int a, int b);
static void list_append(char *buf, size_t size, const char *name);
static const char *attr_name(tg_bind_attr_t attr);
static tg_err_t attr_value(const tg_config_t *cfg, const tg_identity_t *id,
                           const char *label, char **out, tg_diag_t *diag);
static int local_name_ok(const char *name, size_t len);
static tg_err_t map_lookup(const tg_config_t *cfg, int by_local,
                           const char *value,
                           const char *label, char **out, tg_diag_t *diag);
static tg_err_t check_not_system(const tg_config_t *cfg, const char *name,
                                 const char *label, tg_diag_t *diag);


/* ---------------------------------------------------------------------- */
/* The identity                                                           */
/* ---------------------------------------------------------------------- */

void
tg_identity_free(tg_identity_t *id)
{
    size_t i;

    if (id == NULL) {
        return;
    }
    free(id->id);
    free(id->name);
    free(id->email);
    free(id->display_name);
    free(id->first_name);
    free(id->last_name);
    for (i = 0; i < id->n_groups; i++) {
        free(id->groups[i]);
    }
    free(id->groups);
    free(id);
}

const char *
tg_identity_user(const tg_config_t *cfg, const tg_identity_t *id)
{
    if (id == NULL) {
        return "";
    }
    if (cfg != NULL && cfg->api == TG_API_LOOKER && id->name != NULL &&
        id->name[0] != '\0') {
        return id->name;
    }
    if (id->email != NULL && id->email[0] != '\0') {
        return id->email;
    }
    return id->id != NULL ? id->id : "";
}

static unsigned char
ascii_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char) (c - 'A' + 'a') : c;
}

/* Is a (alen bytes) equal to the string b, exactly or ASCII-caselessly? */
static int
name_eq(const char *a, size_t alen, const char *b, int ci)
{
    size_t i;

    for (i = 0; i < alen; i++) {
        unsigned char x = (unsigned char) a[i], y = (unsigned char) b[i];
        if (y == '\0') {
            return 0;
        }
        if (ci ? ascii_lower(x) != ascii_lower(y) : x != y) {
            return 0;
        }
    }
    return b[alen] == '\0';
}

/* "42", or "(unknown)" when the identity has no id: for messages. */
static const char *
id_label(char *buf, size_t size, const tg_identity_t *id)
{
    if (id == NULL || id->id == NULL || id->id[0] == '\0') {
        snprintf(buf, size, "(unknown)");
    } else {
        tg__sanitize(buf, size, id->id, strlen(id->id));
    }
    return buf;
}

/* ---------------------------------------------------------------------- */
/* Authorization rules                                                    */
/* ---------------------------------------------------------------------- */

int
tg__rules_need_profile(const tg_config_t *cfg)
{
    return cfg != NULL && (cfg->n_require_groups > 0 || cfg->deny_evaluation);
}

tg_insight_validate_t
tg_validate_which(const tg_config_t *cfg, int extra_rules)
{
    if (cfg == NULL || cfg->api == TG_API_LOOKER) {
        return TG_INSIGHT_VALIDATE_USER;
    }
    if (cfg->insight_validate != TG_INSIGHT_VALIDATE_AUTO) {
        return cfg->insight_validate;
    }
    /* currentuser alone has the groups and flags, but neither the login
     * name nor the expiry that auth/user gives without rules: both calls,
     * so that rules never change who a token is or when it ends. */
    return extra_rules || tg__rules_need_profile(cfg)
               ? TG_INSIGHT_VALIDATE_BOTH
               : TG_INSIGHT_VALIDATE_USER;
}


static int
has_group(const tg_identity_t *id, const char *group, int ci)
{
    size_t i;

    if (group == NULL || id->groups == NULL) {
        return 0;
    }
    for (i = 0; i < id->n_groups; i++) {
        if (id->groups[i] != NULL &&
            name_eq(id->groups[i], strlen(id->groups[i]), group, ci)) {
            return 1;
        }
    }
    return 0;
}

/* Append ", name" (sanitized) to a list, ending it with "..." when full. */
static void
list_append(char *buf, size_t size, const char *name)
{
    char shown[TG_LABEL_MAX + 1];
    size_t used = strlen(buf);

    if (used >= 3 && strcmp(buf + used - 3, "...") == 0) {
        return;
    }
    tg__sanitize(shown, sizeof(shown), name, strlen(name));
    if (used + strlen(shown) + 2 + 4 >= size) {
        snprintf(buf + used, size - used, "%s...", used > 0 ? ", " : "");
        return;
    }
    snprintf(buf + used, size - used, "%s%s", used > 0 ? ", " : "", shown);
}

tg_err_t
tg_rules_check(const tg_config_t *cfg, const tg_identity_t *id, tg_diag_t *diag)
{
    char label[TG_LABEL_MAX + 1];
    char list[TG_GROUP_LIST_SHOWN] = "";
    int ci;
    size_t i, missing = 0;

    if (cfg == NULL || id == NULL) {
        return tg__fail(diag, TG_INTERNAL,
                        "the rules need a config and an identity");
    }
    /* the label is only for the message: none without a diag */
    if (diag != NULL) {
        id_label(label, sizeof(label), id);
    } else {
        label[0] = '\0';
    }
    ci = cfg->case_insensitive;

    /* Flags are 1, 0 or -1 (the server did not say): a deny rule passes
     * only on a definite 0. */
    if (cfg->deny_disabled && id->disabled != 0) {
        return tg__fail(diag, TG_FORBIDDEN,
                        id->disabled > 0
                            ? "user %s is disabled"
                            : "user %s: the server did not say whether the "
                              "user is disabled (deny_disabled)",
                        label);
    }
    if (tg__rules_need_profile(cfg) && !id->has_profile) {
        return tg__fail(diag, TG_FORBIDDEN,
                        "user %s: %s need%s the user's profile, which was "
                        "not read",
                        label,
                        cfg->n_require_groups > 0 ? "group rules"
                                                  : "deny_evaluation",
                        cfg->n_require_groups > 0 ? "" : "s");
    }
    if (cfg->deny_evaluation && id->evaluation != 0) {
        return tg__fail(diag, TG_FORBIDDEN,
                        id->evaluation > 0
                            ? "user %s is an evaluation user (deny_evaluation)"
                            : "user %s: the server did not say whether this "
                              "is an evaluation user (deny_evaluation)",
                        label);
    }
    if (cfg->n_require_groups == 0) {
        return TG_OK;
    }
    if (cfg->require_groups == NULL) {
        return tg__fail(diag, TG_INTERNAL, "require_groups is not set up");
    }

    for (i = 0; i < cfg->n_require_groups; i++) {
        const char *g = cfg->require_groups[i];
        if (has_group(id, g, ci)) {
            if (cfg->require_groups_mode == TG_GROUPS_ANY) {
                return TG_OK;
            }
            continue;
        }
        missing++;
        list_append(list, sizeof(list), g != NULL ? g : "");
    }
    if (cfg->require_groups_mode == TG_GROUPS_ANY) {
        return tg__fail(diag, TG_FORBIDDEN,
                        "user %s is not in any of the required groups: %s",
                        label, list);
    }
    if (missing > 0) {
        return tg__fail(diag, TG_FORBIDDEN,
                        "user %s is not in all of the required groups; "
                        "missing: %s",
                        label, list);
    }
    return TG_OK;
}

/* ---------------------------------------------------------------------- */
/* Merge (insight validate = both)                                        */
/* ---------------------------------------------------------------------- */

/* Merge two tri-state flags (1, 0, -1 unknown): 1 wins, then 0. */
static int
merge_flag(int a, int b)
{
    if (a > 0 || b > 0) {
        return 1;
    }
    return (a == 0 || b == 0) ? 0 : -1;
}

tg_err_t
tg_identity_merge(tg_identity_t *id, const tg_identity_t *profile,
                  tg_diag_t *diag)
{
    char **groups = NULL;
    size_t n_groups = 0, i;
    char **dst[5];
    const char *src[5];
    char *fill[5] = {NULL, NULL, NULL, NULL, NULL};
    tg_err_t err = TG_OK;

    if (id == NULL || profile == NULL) {
        return tg__fail(diag, TG_INTERNAL, "nothing to merge");
    }
    if (id->id == NULL || profile->id == NULL || id->id[0] == '\0' ||
        strcmp(id->id, profile->id) != 0) {
        return tg__fail(diag, TG_PROTOCOL,
                        "profile id does not match the token's user");
    }
    if (profile->n_groups > 0 && profile->groups == NULL) {
        return tg__fail(diag, TG_INTERNAL, "profile groups are not set up");
    }

    /* Allocate everything first, so that a failure changes nothing. */
    if (profile->n_groups > 0) {
        groups = calloc(profile->n_groups, sizeof(*groups));
        if (groups == NULL) {
            err = tg__fail(diag, TG_NOMEM, "out of memory");
            goto out;
        }
        for (n_groups = 0; n_groups < profile->n_groups; n_groups++) {
            groups[n_groups] = tg__strdup(profile->groups[n_groups]);
            if (groups[n_groups] == NULL) {
                err = tg__fail(diag, TG_NOMEM, "out of memory");
                goto out;
            }
        }
    }
    dst[0] = &id->name;
    src[0] = profile->name;
    dst[1] = &id->email;
    src[1] = profile->email;
    dst[2] = &id->display_name;
    src[2] = profile->display_name;
    dst[3] = &id->first_name;
    src[3] = profile->first_name;
    dst[4] = &id->last_name;
    src[4] = profile->last_name;
    for (i = 0; i < 5; i++) {
        if ((*dst[i] == NULL || (*dst[i])[0] == '\0') && src[i] != NULL &&
            src[i][0] != '\0') {
            fill[i] = strdup(src[i]);
            if (fill[i] == NULL) {
                err = tg__fail(diag, TG_NOMEM, "out of memory");
                goto out;
            }
        }
    }

    /* Commit. */
    for (i = 0; i < id->n_groups; i++) {
        free(id->groups[i]);
    }
    free(id->groups);
    id->groups = groups;
    id->n_groups = n_groups;
    groups = NULL;
    n_groups = 0;
    for (i = 0; i < 5; i++) {
        if (fill[i] != NULL) {
            free(*dst[i]);
            *dst[i] = fill[i];
            fill[i] = NULL;
        }
    }
    /* A flag set by either answer stays set (the merge never lifts a
     * restriction); it is 0 only when one says 0 and none says 1. */
    id->evaluation = merge_flag(id->evaluation, profile->evaluation);
    id->disabled = merge_flag(id->disabled, profile->disabled);
    if (id->expires_at == 0) {
        id->expires_at = profile->expires_at;
    }
    id->has_profile = 1;
out:
    for (i = 0; i < n_groups; i++) {
        free(groups[i]);
    }
    free(groups);
    for (i = 0; i < 5; i++) {
        free(fill[i]);
    }
    return err;
}

/* ---------------------------------------------------------------------- */
/* Binding to a local user name                                           */
/* ---------------------------------------------------------------------- */

static const char *
attr_name(tg_bind_attr_t attr)
{
    switch (attr) {
    case TG_BIND_EMAIL_LOCAL:
        return "email local part";
    case TG_BIND_EMAIL:
        return "email";
    case TG_BIND_ID:
        return "id";
    case TG_BIND_CN:
        return "cn";
    }
    return "attribute";
}

/*
 * The configured attribute of the identity, as a new string.  An email
 * must have exactly one '@' between a non-empty local part and domain,
 * and a local part with no '+', '%', quote or backslash (subaddressing,
 * source routing and quoting all let two spellings reach one mailbox).
 */
static tg_err_t
attr_value(const tg_config_t *cfg, const tg_identity_t *id, const char *label,
           char **out, tg_diag_t *diag)
{
    const char *attr = attr_name(cfg->user_attribute);
    const char *v, *at, *p;
    size_t len;

    switch (cfg->user_attribute) {
    case TG_BIND_EMAIL_LOCAL:
    case TG_BIND_EMAIL:
        v = id->email;
        break;
    case TG_BIND_ID:
        v = id->id;
        break;
    case TG_BIND_CN:
        v = id->name;
        break;
    default:
        return tg__fail(diag, TG_IDENTITY, "user %s: unknown user_attribute",
                        label);
    }
    if (v == NULL || v[0] == '\0') {
        return tg__fail(diag, TG_IDENTITY, "user %s has no %s", label,
                        cfg->user_attribute == TG_BIND_EMAIL_LOCAL ? "email"
                                                                   : attr);
    }
    len = strnlen(v, TG_BIND_VALUE_MAX + 1);
    if (len > TG_BIND_VALUE_MAX) {
        return tg__fail(diag, TG_IDENTITY, "user %s: the %s is too long", label,
                        attr);
    }
    for (p = v; *p != '\0'; p++) {
        unsigned char c = (unsigned char) *p;
        if (c <= 0x20 || c == 0x7f) {
            return tg__fail(diag, TG_IDENTITY,
                            "user %s: the %s has spaces or control bytes",
                            label, attr);
        }
    }
    if (cfg->user_attribute == TG_BIND_EMAIL_LOCAL ||
        cfg->user_attribute == TG_BIND_EMAIL) {
        at = strchr(v, '@');
        if (at == NULL || strchr(at + 1, '@') != NULL || at == v ||
            at[1] == '\0') {
            return tg__fail(diag, TG_IDENTITY,
                            "user %s: the email does not have exactly one "
                            "'@' between a local part and a domain",
                            label);
        }
        if (strcspn(v, "+%\"\\") < (size_t) (at - v)) {
            return tg__fail(diag, TG_IDENTITY,
                            "user %s: the email local part has '+', '%%', a "
                            "quote or a backslash",
                            label);
        }
        if (cfg->email_domain != NULL && cfg->email_domain[0] != '\0' &&
            strcasecmp(at + 1, cfg->email_domain) != 0) {
            return tg__fail(diag, TG_IDENTITY,
                            "user %s: the email domain is not email_domain "
                            "(%s)",
                            label, cfg->email_domain);
        }
        if (cfg->user_attribute == TG_BIND_EMAIL_LOCAL) {
            len = (size_t) (at - v);
        }
    }
    *out = strndup(v, len);
    if (*out == NULL) {
        return tg__fail(diag, TG_NOMEM, "out of memory");
    }
    return TG_OK;
}

/* ^[a-z0-9._-]{1,32}$, not starting with '-', not "." or "..". */
static int
local_name_ok(const char *name, size_t len)
{
    size_t i;

    if (len == 0 || len > TG_LOCAL_NAME_MAX || name[0] == '-') {
        return 0;
    }
    if ((len == 1 && name[0] == '.') ||
        (len == 2 && name[0] == '.' && name[1] == '.')) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '-')) {
            return 0;
        }
    }
    return 1;
}

/*
 * Find value in user_map_file ("identity-value local-user" lines, '#'
 * comments at line start or after a blank): in the first column (the
 * configured attribute's value; *out gets the local user), or with by_local
 * in the second, compared exactly (*out gets a copy of it).  The whole file
 * is checked, not just up to the match, so a broken line is reported
 * whoever logs in; the first matching line wins.  No match: TG_IDENTITY.
 */
static tg_err_t
map_lookup(const tg_config_t *cfg, int by_local, const char *value,
           const char *label, char **out, tg_diag_t *diag)
{
    char file[TG_LABEL_MAX * 4 + 1];
    char *text = NULL;
    const char *match = NULL;
    size_t match_len = 0, len = 0, off = 0;
    unsigned long lineno = 0;
    tg_err_t err;

    tg__sanitize(file, sizeof(file), cfg->user_map_file,
                 strlen(cfg->user_map_file));
    err = tg__file_read_checked(cfg->user_map_file, "user_map_file", 022u,
                                TG_MAP_FILE_MAX, &text, &len, diag);
    if (err != TG_OK) {
        goto out;
    }
    while (off < len) {
        const char *line = text + off;
        const char *nl = memchr(line, '\n', len - off);
        size_t n = nl != NULL ? (size_t) (nl - line) : len - off;
        const char *f[3];
        size_t flen[3], nf = 0, i = 0;

        off += n + (nl != NULL ? 1 : 0);
        lineno++;
        if (n > 0 && line[n - 1] == '\r') {
            n--;
        }
        if (n > TG_MAP_LINE_MAX || memchr(line, '\0', n) != NULL) {
            err = tg__fail(diag, TG_CONFIG,
                           "user_map_file: %s:%lu: line too long or has a "
                           "NUL byte",
                           file, lineno);
            goto out;
        }
        /* Split on blanks, stopping at a comment. */
        while (i < n) {
            size_t start;
            while (i < n && (line[i] == ' ' || line[i] == '\t')) {
                i++;
            }
            if (i == n || line[i] == '#') {
                break;
            }
            start = i;
            while (i < n && line[i] != ' ' && line[i] != '\t') {
                i++;
            }
            if (nf == 3) {
                break;
            }
            f[nf] = line + start;
            flen[nf] = i - start;
            nf++;
        }
        if (nf == 0) {
            continue;
        }
        if (nf != 2) {
            err = tg__fail(diag, TG_CONFIG,
                           "user_map_file: %s:%lu: expected \"identity "
                           "local-user\"",
                           file, lineno);
            goto out;
        }
        if (!local_name_ok(f[1], flen[1])) {
            err = tg__fail(diag, TG_CONFIG,
                           "user_map_file: %s:%lu: the local user is not a "
                           "valid name ([a-z0-9._-], 1..32, no leading '-')",
                           file, lineno);
            goto out;
        }
        if (match == NULL &&
            (by_local ? flen[1] == strlen(value) &&
                            memcmp(f[1], value, flen[1]) == 0
                      : name_eq(f[0], flen[0], value, cfg->case_insensitive))) {
            match = f[1];
            match_len = flen[1];
        }
    }
    if (match == NULL) {
        err = tg__fail(diag, TG_IDENTITY,
                       "user %s: no entry for their %s in user_map_file", label,
                       by_local ? "local name" : attr_name(cfg->user_attribute));
        goto out;
    }
    *out = strndup(match, match_len);
    if (*out == NULL) {
        err = tg__fail(diag, TG_NOMEM, "out of memory");
        goto out;
    }
out:
    free(text);
    return err;
}

/*
 * Refuse a name that resolves to uid 0 (root under another name) or to a
 * uid below min_uid (a system account: daemon, bin, www-data...), unless
 * it came from the map.  A lookup error denies too: we cannot tell.  A
 * name with no local account is not refused here: it logs in nowhere.
 */
static tg_err_t
check_not_system(const tg_config_t *cfg, const char *name, const char *label,
                 tg_diag_t *diag)
{
    struct passwd pw, *res = NULL;
    char ebuf[128];
    char *buf = NULL;
    size_t size = TG_PW_BUF_START;
    int rc;
    tg_err_t err = TG_OK;

    for (;;) {
        buf = malloc(size);
        if (buf == NULL) {
            err = tg__fail(diag, TG_NOMEM, "out of memory");
            goto out;
        }
        rc = getpwnam_r(name, &pw, buf, size, &res);
        if (rc != ERANGE || size >= TG_PW_BUF_MAX) {
            break;
        }
        free(buf);
        buf = NULL;
        size *= 2;
    }
    if (rc == 0 && res != NULL && res->pw_uid == 0) {
        err = tg__fail(diag, TG_IDENTITY,
                       "user %s would bind to a uid 0 account, which only "
                       "an explicit user_map_file entry may do",
                       label);
    } else if (rc == 0 && res != NULL && cfg->min_uid > 0 &&
               (unsigned long) res->pw_uid < (unsigned long) cfg->min_uid) {
        err = tg__fail(diag, TG_IDENTITY,
                       "user %s would bind to a system account (uid %lu, "
                       "below min_uid %ld), which only an explicit "
                       "user_map_file entry may do",
                       label, (unsigned long) res->pw_uid, cfg->min_uid);
    } else if (rc != 0 && rc != ENOENT && rc != ESRCH && rc != EBADF &&
               rc != EPERM) {
        err = tg__fail(diag, TG_IDENTITY,
                       "user %s: cannot look up the local user (%s)", label,
                       strerror_r(rc, ebuf, sizeof(ebuf)));
    }
out:
    free(buf);
    return err;
}

tg_err_t
tg_identity_bind(const tg_config_t *cfg, const tg_identity_t *id, char **local,
                 tg_diag_t *diag)
{
    char label[TG_LABEL_MAX + 1];
    char *value = NULL, *name = NULL;
    unsigned char *p;
    int from_map = 0;
    tg_err_t err;

    if (local == NULL) {
        return tg__fail(diag, TG_INTERNAL, "nowhere to put the local user");
    }
    *local = NULL;
    if (cfg == NULL || id == NULL) {
        return tg__fail(diag, TG_INTERNAL,
                        "binding needs a config and an identity");
    }
    id_label(label, sizeof(label), id);
    err = attr_value(cfg, id, label, &value, diag);
    if (err != TG_OK) {
        goto out;
    }
    if (cfg->case_insensitive) {
        for (p = (unsigned char *) value; *p != '\0'; p++) {
            *p = ascii_lower(*p);
        }
    }
    if (cfg->user_map_file != NULL) {
        err = map_lookup(cfg, 0, value, label, &name, diag);
        if (err != TG_OK) {
            goto out;
        }
        from_map = 1;
    } else {
        name = value;
        value = NULL;
    }
    if (!local_name_ok(name, strlen(name))) {
        err = tg__fail(diag, TG_IDENTITY,
                       "user %s: their %s is not a valid local user name "
                       "([a-z0-9._-], 1..32, no leading '-', not . or ..)",
                       label, attr_name(cfg->user_attribute));
        goto out;
    }
    if (!from_map) {
        if (strcmp(name, "root") == 0) {
            err = tg__fail(diag, TG_IDENTITY,
                           "user %s would bind to root, which only an "
                           "explicit user_map_file entry may do",
                           label);
            goto out;
        }
        err = check_not_system(cfg, name, label, diag);
        if (err != TG_OK) {
            goto out;
        }
    }
    *local = name;
    name = NULL;
out:
    free(value);
    free(name);
    return err;
}

tg_err_t
tg_user_map_has_local(const tg_config_t *cfg, const char *local,
                      tg_diag_t *diag)
{
    char label[TG_LABEL_MAX + 1];
    char *found = NULL;
    tg_err_t err;

    if (cfg == NULL || local == NULL) {
        return tg__fail(diag, TG_INTERNAL, "user map: no config or user");
    }
    if (cfg->user_map_file == NULL || cfg->user_map_file[0] == '\0') {
        return tg__fail(diag, TG_IDENTITY, "no user_map_file is set");
    }
    tg__sanitize(label, sizeof(label), local, strlen(local));
    err = map_lookup(cfg, 1, local, label, &found, diag);
    free(found);
    return err;
}
