/* SPDX-License-Identifier: MIT */
/*
 * test_rules.c - authorization rules (groups any/all, disabled, evaluation,
 * fail closed without a profile), binding an identity to a local user
 * (every attribute, hostile identities, the map file), and merging a
 * profile into an identity.  Each test is named by what it protects.
 */
#include "tokengate.h"
#include "tg_internal.h"

#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tg_test.h"

#define MAX_GROUPS 8

/* ---------------------------------------------------------------------- */
/* Helpers                                                                */
/* ---------------------------------------------------------------------- */

/* An identity the way a parser hands it over: every string owned, "" when
 * absent.  groups is a NULL-terminated list or NULL. */
static tg_identity_t *
ident(const char *id, const char *email, const char *name,
      const char *const *groups)
{
    tg_identity_t *x = calloc(1, sizeof(*x));
    size_t n = 0;

    assert_non_null(x);
    x->id = strdup(id != NULL ? id : "");
    x->email = strdup(email != NULL ? email : "");
    x->name = strdup(name != NULL ? name : "");
    x->display_name = strdup("");
    x->first_name = strdup("");
    x->last_name = strdup("");
    while (groups != NULL && groups[n] != NULL) {
        n++;
    }
    if (n > 0) {
        size_t i;
        x->groups = calloc(n, sizeof(*x->groups));
        for (i = 0; i < n; i++) {
            x->groups[i] = strdup(groups[i]);
        }
        x->n_groups = n;
    }
    return x;
}

static tg_config_t *
cfg_with(const char *const *kv)
{
    tg_config_t *cfg = tg_config_new();
    tg_diag_t d;

    assert_non_null(cfg);
    for (; kv != NULL && kv[0] != NULL; kv += 2) {
        tg_diag_clear(&d);
        if (tg_config_set(cfg, kv[0], kv[1], "test", &d) != TG_OK) {
            fail_msg("%s", d.message);
        }
    }
    return cfg;
}

/* ---------------------------------------------------------------------- */
/* Rules                                                                  */
/* ---------------------------------------------------------------------- */

typedef struct rule_case {
    const char *what;
    const char *require;            /* require_groups value */
    const char *mode;               /* any | all */
    const char *ci;                 /* case_insensitive */
    const char *deny_eval;          /* deny_evaluation */
    const char *deny_dis;           /* deny_disabled */
    const char *groups[MAX_GROUPS]; /* the user's groups */
    int has_profile, evaluation, disabled;
    tg_err_t expect;
    const char *contains;
} rule_case_t;

static const rule_case_t rule_cases[] = {
    {"no rules: anyone",
     "",
     "any",
     "no",
     "no",
     "no",
     {NULL},
     0,
     0,
     0,
     TG_OK,
     NULL},
    {"any: one of them",
     "admins ops",
     "any",
     "no",
     "no",
     "yes",
     {"dev", "ops", NULL},
     1,
     0,
     0,
     TG_OK,
     NULL},
    {"any: none of them",
     "admins ops",
     "any",
     "no",
     "no",
     "yes",
     {"dev", "qa", NULL},
     1,
     0,
     0,
     TG_FORBIDDEN,
     "user 42 is not in any of the required groups: admins, ops"},
    {"any: no groups at all",
     "admins",
     "any",
     "no",
     "no",
     "yes",
     {NULL},
     1,
     0,
     0,
     TG_FORBIDDEN,
     "not in any of the required groups: admins"},
    {"all: every one",
     "admins ops",
     "all",
     "no",
     "no",
     "yes",
     {"ops", "x", "admins", NULL},
     1,
     0,
     0,
     TG_OK,
     NULL},
    {"all: one missing",
     "admins ops dev",
     "all",
     "no",
     "no",
     "yes",
     {"ops", NULL},
     1,
     0,
     0,
     TG_FORBIDDEN,
     "user 42 is not in all of the required groups; missing: admins, dev"},
    {"case-sensitive by default",
     "Admins",
     "any",
     "no",
     "no",
     "yes",
     {"admins", NULL},
     1,
     0,
     0,
     TG_FORBIDDEN,
     "required groups: Admins"},
    {"no prefix match",
     "admin",
     "any",
     "no",
     "no",
     "yes",
     {"admins", "xadmin", NULL},
     1,
     0,
     0,
     TG_FORBIDDEN,
     "admin"},
    {"no substring of a longer required name",
     "admins",
     "any",
     "no",
     "no",
     "yes",
     {"admin", NULL},
     1,
     0,
     0,
     TG_FORBIDDEN,
     "admins"},
    {"case-insensitive when configured",
     "Admins OPS",
     "all",
     "yes",
     "no",
     "yes",
     {"admins", "ops", NULL},
     1,
     0,
     0,
     TG_OK,
     NULL},
    {"case-insensitive is ASCII only",
     "D\xc3\x89V",
     "any",
     "yes",
     "no",
     "yes",
     {"d\xc3\xa9v", NULL},
     1,
     0,
     0,
     TG_FORBIDDEN,
     "required groups"},
    {"disabled denied",
     "",
     "any",
     "no",
     "no",
     "yes",
     {NULL},
     0,
     0,
     1,
     TG_FORBIDDEN,
     "user 42 is disabled"},
    {"disabled allowed when not denied",
     "",
     "any",
     "no",
     "no",
     "no",
     {NULL},
     0,
     0,
     1,
     TG_OK,
     NULL},
    {"disabled wins over groups",
     "admins",
     "any",
     "no",
     "no",
     "yes",
     {"admins", NULL},
     1,
     0,
     1,
     TG_FORBIDDEN,
     "is disabled"},
    {"evaluation denied",
     "",
     "any",
     "no",
     "yes",
     "yes",
     {NULL},
     1,
     1,
     0,
     TG_FORBIDDEN,
     "user 42 is an evaluation user"},
    {"evaluation allowed by default",
     "",
     "any",
     "no",
     "no",
     "yes",
     {NULL},
     1,
     1,
     0,
     TG_OK,
     NULL},
    {"disabled unknown (server did not say) is denied",
     "",
     "any",
     "no",
     "no",
     "yes",
     {NULL},
     1,
     0,
     -1,
     TG_FORBIDDEN,
     "did not say whether the user is disabled"},
    {"disabled unknown is allowed when not denied",
     "",
     "any",
     "no",
     "no",
     "no",
     {NULL},
     1,
     0,
     -1,
     TG_OK,
     NULL},
    {"evaluation unknown (server did not say) is denied",
     "",
     "any",
     "no",
     "yes",
     "yes",
     {NULL},
     1,
     -1,
     0,
     TG_FORBIDDEN,
     "did not say whether this is an evaluation user"},
    {"evaluation unknown is allowed without deny_evaluation",
     "",
     "any",
     "no",
     "no",
     "yes",
     {NULL},
     1,
     -1,
     0,
     TG_OK,
     NULL},
    {"evaluation rule without profile fails closed",
     "",
     "any",
     "no",
     "yes",
     "yes",
     {NULL},
     0,
     0,
     0,
     TG_FORBIDDEN,
     "deny_evaluation needs the user's profile, which was not read"},
    {"group rule without profile fails closed",
     "admins",
     "any",
     "no",
     "no",
     "yes",
     {"admins", NULL},
     0,
     0,
     0,
     TG_FORBIDDEN,
     "group rules need the user's profile, which was not read"},
};

static void
rules_groups_flags_and_missing_profile(void **state)
{
    size_t i;

    (void) state;
    for (i = 0; i < sizeof(rule_cases) / sizeof(rule_cases[0]); i++) {
        const rule_case_t *c = &rule_cases[i];
        const char *kv[] = {"require_groups",
                            c->require,
                            "require_groups_mode",
                            c->mode,
                            "case_insensitive",
                            c->ci,
                            "deny_evaluation",
                            c->deny_eval,
                            "deny_disabled",
                            c->deny_dis,
                            NULL};
        tg_config_t *cfg = cfg_with(kv);
        tg_identity_t *id = ident("42", "a@x", "A", c->groups);
        tg_diag_t d;
        tg_err_t err;

        id->has_profile = c->has_profile;
        id->evaluation = c->evaluation;
        id->disabled = c->disabled;
        tg_diag_clear(&d);
        err = tg_rules_check(cfg, id, &d);
        if (err != c->expect) {
            fail_msg("case \"%s\": got %s (%s)", c->what, tg_err_name(err),
                     d.message);
        }
        if (c->contains != NULL) {
            assert_contains(d.message, c->contains);
        } else {
            assert_string_equal(d.message, "");
        }
        tg_identity_free(id);
        tg_config_free(cfg);
    }
}

static void
rules_message_sanitizes_hostile_id_and_groups(void **state)
{
    const char *kv[] = {"require_groups", "admins", NULL};
    tg_config_t *cfg = cfg_with(kv);
    tg_identity_t *id = ident("4\r\n2\x1b[0m", "", "", NULL);
    tg_diag_t d;
    const char *p;

    (void) state;
    id->has_profile = 1;
    tg_diag_clear(&d);
    assert_int_equal(tg_rules_check(cfg, id, &d), TG_FORBIDDEN);
    for (p = d.message; *p != '\0'; p++) {
        assert_true((unsigned char) *p >= 0x20 && (unsigned char) *p < 0x7f);
    }
    assert_contains(d.message, "user 4??2?[0m is not in any");
    tg_identity_free(id);
    tg_config_free(cfg);
}

static void
rules_message_with_many_groups_is_cut_not_overflowed(void **state)
{
    tg_config_t *cfg = tg_config_new();
    tg_identity_t *id = ident("7", "", "", NULL);
    char *list = malloc(256 * 40);
    size_t i;
    tg_diag_t d;

    (void) state;
    list[0] = '\0';
    for (i = 0; i < 256; i++) {
        sprintf(list + strlen(list), "grp-%03zu-xxxxxx ", i);
    }
    tg_diag_clear(&d);
    assert_int_equal(tg_config_set(cfg, "require_groups", list, "t", &d),
                     TG_OK);
    id->has_profile = 1;
    assert_int_equal(tg_rules_check(cfg, id, &d), TG_FORBIDDEN);
    assert_true(strlen(d.message) < sizeof(d.message));
    assert_contains(d.message, "grp-000-xxxxxx, grp-001-xxxxxx, ");
    assert_contains(d.message, "...");
    free(list);
    tg_identity_free(id);
    tg_config_free(cfg);
}

static void
rules_refuse_null_inputs(void **state)
{
    tg_config_t *cfg = tg_config_new();
    tg_identity_t *id = ident("1", "", "", NULL);

    (void) state;
    assert_int_not_equal(tg_rules_check(NULL, id, NULL), TG_OK);
    assert_int_not_equal(tg_rules_check(cfg, NULL, NULL), TG_OK);
    tg_identity_free(id);
    tg_config_free(cfg);
}

static void
rules_need_profile_only_for_groups_or_evaluation(void **state)
{
    const char *g[] = {"require_groups", "a", NULL};
    const char *e[] = {"deny_evaluation", "yes", NULL};
    const char *n[] = {"deny_disabled", "yes", NULL};
    tg_config_t *cg = cfg_with(g), *ce = cfg_with(e), *cn = cfg_with(n);

    (void) state;
    assert_true(tg__rules_need_profile(cg));
    assert_true(tg__rules_need_profile(ce));
    assert_false(tg__rules_need_profile(cn));
    assert_false(tg__rules_need_profile(NULL));
    tg_config_free(cg);
    tg_config_free(ce);
    tg_config_free(cn);
}

/* ---------------------------------------------------------------------- */
/* Binding                                                                */
/* ---------------------------------------------------------------------- */

typedef struct bind_case {
    const char *what;
    const char *attr; /* user_attribute */
    const char *ci;   /* case_insensitive */
    const char *map;  /* user_map_file content, or NULL for no map */
    const char *id, *email, *name;
    tg_err_t expect;
    const char *text; /* the local user when TG_OK, else in the message */
} bind_case_t;

static const bind_case_t bind_cases[] = {
    /* every attribute */
    {"email local part", "email_local", "no", NULL, "42", "alice@x.example",
     "Alice", TG_OK, "alice"},
    {"id", "id", "no", NULL, "42", "alice@x", "Alice", TG_OK, "42"},
    {"cn", "cn", "no", NULL, "42", "alice@x", "alice.smith", TG_OK,
     "alice.smith"},
    {"whole email cannot be a local name", "email", "no", NULL, "42", "alice@x",
     "", TG_IDENTITY, "is not a valid local user name"},
    {"whole email through a map", "email", "no", "alice@x.example alice\n",
     "42", "alice@x.example", "", TG_OK, "alice"},
    {"cn with a space", "cn", "no", NULL, "42", "", "Alice Smith", TG_IDENTITY,
     "spaces or control bytes"},
    {"empty email", "email_local", "no", NULL, "42", "", "", TG_IDENTITY,
     "user 42 has no email"},
    {"empty cn", "cn", "no", NULL, "42", "a@x", "", TG_IDENTITY,
     "user 42 has no cn"},
    {"empty id", "id", "no", NULL, "", "a@x", "", TG_IDENTITY, "has no id"},
    {"local names allow . _ -", "email_local", "no", NULL, "1", "a.b_c-d9@x",
     "", TG_OK, "a.b_c-d9"},
    /* hostile identities */
    {"upper case is no match by default", "email_local", "no", NULL, "1",
     "Root@x", "", TG_IDENTITY, "not a valid local user name"},
    {"upper case folds to root, still refused", "email_local", "yes", NULL, "1",
     "Root@x", "", TG_IDENTITY, "would bind to root"},
    {"case-insensitive lowers ASCII", "email_local", "yes", NULL, "1",
     "ALICE@x", "", TG_OK, "alice"},
    {"root without a map", "email_local", "no", NULL, "1", "root@x", "",
     TG_IDENTITY,
     "user 1 would bind to root, which only an explicit user_map_file entry "
     "may do"},
    {"root by id without a map", "cn", "no", NULL, "1", "", "root", TG_IDENTITY,
     "would bind to root"},
    {"two @", "email_local", "no", NULL, "1", "root@x@y", "", TG_IDENTITY,
     "exactly one '@'"},
    {"no @", "email_local", "no", NULL, "1", "alice", "", TG_IDENTITY,
     "exactly one '@'"},
    {"empty local part", "email_local", "no", NULL, "1", "@x", "", TG_IDENTITY,
     "exactly one '@'"},
    {"empty domain", "email_local", "no", NULL, "1", "alice@", "", TG_IDENTITY,
     "exactly one '@'"},
    {"subaddress", "email_local", "no", NULL, "1", "a+b@x", "", TG_IDENTITY,
     "'+', '%', a quote or a backslash"},
    {"source route", "email_local", "no", NULL, "1", "a%b@x", "", TG_IDENTITY,
     "'+', '%'"},
    {"quoted local part", "email_local", "no", NULL, "1", "\"a\"@x", "",
     TG_IDENTITY, "a quote"},
    {"backslash", "email_local", "no", NULL, "1", "a\\b@x", "", TG_IDENTITY,
     "backslash"},
    {"'+' in a whole email too", "email", "no", "a+b@x alice\n", "1", "a+b@x",
     "", TG_IDENTITY, "'+'"},
    {"unicode look-alike", "email_local", "yes", NULL, "1",
     "\xe1\xb4\xae\xe1\xb4\xb5\xe1\xb4\xb3@x", "", TG_IDENTITY,
     "not a valid local user name"},
    {"leading dash", "email_local", "no", NULL, "1", "-rf@x", "", TG_IDENTITY,
     "not a valid local user name"},
    {"dot dot", "email_local", "no", NULL, "1", "..@x", "", TG_IDENTITY,
     "not a valid local user name"},
    {"dot", "email_local", "no", NULL, "1", ".@x", "", TG_IDENTITY,
     "not a valid local user name"},
    {"slash", "cn", "no", NULL, "1", "", "../etc", TG_IDENTITY,
     "not a valid local user name"},
    {"CR LF", "email_local", "no", NULL, "1", "a\r\nb@x", "", TG_IDENTITY,
     "spaces or control bytes"},
    {"escape", "email_local", "no", NULL, "1", "a\x1b[31m@x", "", TG_IDENTITY,
     "spaces or control bytes"},
    {"DEL", "cn", "no", NULL, "1", "", "a\x7f", TG_IDENTITY, "control bytes"},
    {"space", "email_local", "no", NULL, "1", "a b@x", "", TG_IDENTITY,
     "spaces"},
    {"32 bytes is the limit", "email_local", "no", NULL, "1",
     "abcdefghijklmnopqrstuvwxyz012345@x", "", TG_OK,
     "abcdefghijklmnopqrstuvwxyz012345"},
    {"33 bytes is too long", "email_local", "no", NULL, "1",
     "abcdefghijklmnopqrstuvwxyz0123456@x", "", TG_IDENTITY,
     "not a valid local user name"},
    /* the map */
    {"map gives root explicitly", "email_local", "no", "root root\n", "1",
     "root@x", "", TG_OK, "root"},
    {"map maps someone to root", "email", "no", "admin@x.example root\n", "1",
     "admin@x.example", "", TG_OK, "root"},
    {"map match", "email_local", "no",
     "# users\n\n  bob   robert  # trailing comment\nalice\tal\n", "1",
     "alice@x", "", TG_OK, "al"},
    {"map first match wins", "id", "no", "42 first\n42 second\n", "42", "", "",
     TG_OK, "first"},
    {"map no match", "email_local", "no", "bob robert\n", "1", "alice@x", "",
     TG_IDENTITY,
     "user 1: no entry for their email local part in "
     "user_map_file"},
    {"map no fallback to the attribute", "email_local", "no", "bob bob\n", "1",
     "alice@x", "", TG_IDENTITY, "no entry"},
    {"map is case-sensitive by default", "email", "no",
     "Alice@Example.com alice\n", "1", "alice@example.com", "", TG_IDENTITY,
     "no entry"},
    {"map case-insensitive", "email", "yes", "Alice@Example.COM alice\n", "1",
     "ALICE@example.com", "", TG_OK, "alice"},
    {"map commented line does not match", "email_local", "no", "#alice alice\n",
     "1", "alice@x", "", TG_IDENTITY, "no entry"},
    {"map '#' inside a field is data", "id", "no", "a#b bob\n", "a#b", "", "",
     TG_OK, "bob"},
    {"map CRLF", "id", "no", "7 seven\r\n8 eight\r\n", "8", "", "", TG_OK,
     "eight"},
    {"map line with one field", "id", "no", "7 seven\n8\n", "7", "", "",
     TG_CONFIG, ":2: expected \"identity local-user\""},
    {"map line with three fields", "id", "no", "7 seven extra\n", "7", "", "",
     TG_CONFIG, ":1: expected"},
    {"map bad local name anywhere", "id", "no", "7 seven\n8 Eight\n", "7", "",
     "", TG_CONFIG, ":2: the local user is not a valid name"},
    {"map hostile local name", "id", "no", "7 -rf\n", "7", "", "", TG_CONFIG,
     "not a valid name"},
    {"map value does not skip the email checks", "email_local", "no",
     "a root\n", "1", "a@x@y", "", TG_IDENTITY, "exactly one '@'"},
};

static void
bind_attributes_hostile_identities_and_map(void **state)
{
    char map[PATH_MAX];
    size_t i;

    (void) state;
    snprintf(map, sizeof(map), "%s/users.map", g_dir);
    for (i = 0; i < sizeof(bind_cases) / sizeof(bind_cases[0]); i++) {
        const bind_case_t *c = &bind_cases[i];
        const char *kv[] = {"user_attribute",
                            c->attr,
                            "case_insensitive",
                            c->ci,
                            "user_map_file",
                            c->map != NULL ? map : "",
                            NULL};
        tg_config_t *cfg;
        tg_identity_t *id = ident(c->id, c->email, c->name, NULL);
        char *local = (char *) 1;
        tg_diag_t d;
        tg_err_t err;

        if (c->map != NULL) {
            write_text(map, c->map, 0644);
        }
        cfg = cfg_with(kv);
        tg_diag_clear(&d);
        err = tg_identity_bind(cfg, id, &local, &d);
        if (err != c->expect) {
            fail_msg("case \"%s\": got %s (%s)", c->what, tg_err_name(err),
                     d.message);
        }
        if (c->expect == TG_OK) {
            assert_string_equal(local, c->text);
            assert_string_equal(d.message, "");
            free(local);
        } else {
            assert_null(local);
            assert_contains(d.message, c->text);
            /* Messages name the user by id, never by email. */
            if (c->email[0] != '\0' && strchr(c->email, '@') != NULL) {
                assert_null(strstr(d.message, c->email));
            }
        }
        tg_identity_free(id);
        tg_config_free(cfg);
    }
}

static void
bind_map_file_must_be_safe(void **state)
{
    char map[PATH_MAX], link[PATH_MAX];
    const char *kv[] = {"user_map_file", map, NULL};
    tg_config_t *cfg;
    tg_identity_t *id = ident("1", "alice@x", "", NULL);
    char *local = NULL;
    tg_diag_t d;

    (void) state;
    snprintf(map, sizeof(map), "%s/unsafe.map", g_dir);
    snprintf(link, sizeof(link), "%s/link.map", g_dir);
    write_text(map, "alice root\n", 0666);
    cfg = cfg_with(kv);
    tg_diag_clear(&d);
    assert_int_equal(tg_identity_bind(cfg, id, &local, &d), TG_CONFIG);
    assert_contains(d.message, "user_map_file: ");
    assert_contains(d.message, "must not be writable by group or others");
    assert_null(local);

    assert_int_equal(chmod(map, 0644), 0);
    unlink(link);
    assert_int_equal(symlink(map, link), 0);
    tg_diag_clear(&d);
    assert_int_equal(tg_config_set(cfg, "user_map_file", link, "t", &d), TG_OK);
    assert_int_equal(tg_identity_bind(cfg, id, &local, &d), TG_CONFIG);
    assert_contains(d.message, "symbolic link");
    assert_null(local);

    tg_diag_clear(&d);
    assert_int_equal(tg_config_set(cfg, "user_map_file", g_dir, "t", &d),
                     TG_OK);
    assert_int_equal(tg_identity_bind(cfg, id, &local, &d), TG_CONFIG);
    assert_null(local);

    /* And the safe one works. */
    tg_diag_clear(&d);
    assert_int_equal(tg_config_set(cfg, "user_map_file", map, "t", &d), TG_OK);
    assert_int_equal(tg_identity_bind(cfg, id, &local, &d), TG_OK);
    assert_string_equal(local, "root");
    free(local);
    tg_identity_free(id);
    tg_config_free(cfg);
}

static void
bind_map_with_nul_byte_is_refused(void **state)
{
    static const char text[] = "alice al\0ice\n";
    char map[PATH_MAX];
    const char *kv[] = {"user_map_file", map, NULL};
    tg_config_t *cfg;
    tg_identity_t *id = ident("1", "alice@x", "", NULL);
    char *local = NULL;
    tg_diag_t d;
    int fd;

    (void) state;
    snprintf(map, sizeof(map), "%s/nul.map", g_dir);
    unlink(map);
    fd = open(map, O_WRONLY | O_CREAT | O_EXCL, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, sizeof(text) - 1),
                     (ssize_t) sizeof(text) - 1);
    close(fd);
    cfg = cfg_with(kv);
    tg_diag_clear(&d);
    assert_int_equal(tg_identity_bind(cfg, id, &local, &d), TG_CONFIG);
    assert_contains(d.message, ":1: line too long or has a NUL byte");
    assert_null(local);
    tg_identity_free(id);
    tg_config_free(cfg);
}

static void
bind_refuses_null_inputs(void **state)
{
    tg_config_t *cfg = tg_config_new();
    tg_identity_t *id = ident("1", "alice@x", "", NULL);
    char *local = (char *) 1;

    (void) state;
    assert_int_not_equal(tg_identity_bind(cfg, id, NULL, NULL), TG_OK);
    assert_int_not_equal(tg_identity_bind(NULL, id, &local, NULL), TG_OK);
    assert_null(local);
    local = (char *) 1;
    assert_int_not_equal(tg_identity_bind(cfg, NULL, &local, NULL), TG_OK);
    assert_null(local);
    tg_identity_free(id);
    tg_config_free(cfg);
}

/* ---------------------------------------------------------------------- */
/* Merge                                                                  */
/* ---------------------------------------------------------------------- */

static void
merge_takes_groups_and_flags_and_fills_blanks(void **state)
{
    static const char *const old_groups[] = {"stale", NULL};
    static const char *const new_groups[] = {"admins", "ops", NULL};
    tg_identity_t *id = ident("42", "", "", old_groups);
    tg_identity_t *prof = ident("42", "a@x", "alice", new_groups);
    tg_diag_t d;

    (void) state;
    free(id->display_name);
    id->display_name = strdup("Kept Name");
    free(prof->display_name);
    prof->display_name = strdup("Other Name");
    free(prof->first_name);
    prof->first_name = strdup("Alice");
    id->expires_at = 1000;
    prof->expires_at = 2000;
    prof->evaluation = 1;

    tg_diag_clear(&d);
    assert_int_equal(tg_identity_merge(id, prof, &d), TG_OK);
    assert_int_equal(id->n_groups, 2);
    assert_string_equal(id->groups[0], "admins");
    assert_string_equal(id->groups[1], "ops");
    assert_int_equal(id->has_profile, 1);
    assert_int_equal(id->evaluation, 1);
    assert_int_equal(id->disabled, 0);
    assert_string_equal(id->email, "a@x");
    assert_string_equal(id->name, "alice");
    assert_string_equal(id->display_name, "Kept Name");
    assert_string_equal(id->first_name, "Alice");
    assert_string_equal(id->last_name, "");
    assert_int_equal(id->expires_at, 1000);
    /* The profile is untouched and still owns its own copies. */
    assert_string_equal(prof->groups[0], "admins");
    assert_true(prof->groups[0] != id->groups[0]);
    tg_identity_free(prof);

    /* A second profile with no groups replaces them with none. */
    prof = ident("42", "", "", NULL);
    assert_int_equal(tg_identity_merge(id, prof, &d), TG_OK);
    assert_int_equal(id->n_groups, 0);
    assert_null(id->groups);
    /* A flag once set is not cleared by a later answer. */
    assert_int_equal(id->evaluation, 1);
    tg_identity_free(prof);

    /* Unknown (-1) is replaced by a profile's definite 0, but a definite 0
     * never hides a 1, and two unknowns stay unknown. */
    id->evaluation = -1;
    id->disabled = -1;
    prof = ident("42", "", "", NULL);
    prof->evaluation = 0;
    prof->disabled = -1;
    assert_int_equal(tg_identity_merge(id, prof, &d), TG_OK);
    assert_int_equal(id->evaluation, 0);
    assert_int_equal(id->disabled, -1);
    tg_identity_free(prof);
    tg_identity_free(id);
}

static void
merge_refuses_a_profile_of_someone_else(void **state)
{
    static const char *const g[] = {"admins", NULL};
    tg_identity_t *id = ident("42", "a@x", "", NULL);
    tg_identity_t *prof = ident("43", "b@x", "", g);
    tg_identity_t *pref = ident("4", "b@x", "", g);
    tg_identity_t *empty = ident("", "", "", g);
    tg_diag_t d;

    (void) state;
    tg_diag_clear(&d);
    assert_int_equal(tg_identity_merge(id, prof, &d), TG_PROTOCOL);
    assert_string_equal(d.message,
                        "profile id does not match the token's user");
    assert_int_equal(tg_identity_merge(id, pref, NULL), TG_PROTOCOL);
    assert_int_equal(tg_identity_merge(id, empty, NULL), TG_PROTOCOL);
    assert_int_equal(tg_identity_merge(empty, empty, NULL), TG_PROTOCOL);
    /* Nothing changed. */
    assert_int_equal(id->n_groups, 0);
    assert_int_equal(id->has_profile, 0);
    assert_string_equal(id->email, "a@x");
    assert_int_not_equal(tg_identity_merge(NULL, prof, NULL), TG_OK);
    assert_int_not_equal(tg_identity_merge(id, NULL, NULL), TG_OK);
    tg_identity_free(id);
    tg_identity_free(prof);
    tg_identity_free(pref);
    tg_identity_free(empty);
    tg_identity_free(NULL);
}

/* A 200 application/json answer to parse. */
static tg_identity_t *
parse_answer(const tg_config_t *cfg, tg_insight_validate_t which,
             const char *body)
{
    tg_response_t resp;
    tg_identity_t *id = NULL;
    tg_diag_t d;

    memset(&resp, 0, sizeof(resp));
    resp.status = 200;
    resp.content_type = "application/json";
    resp.body = body;
    resp.body_len = strlen(body);
    resp.retry_after = -1;
    tg_diag_clear(&d);
    if (tg_parse_validate(cfg, &resp, which, &id, &d) != TG_OK) {
        fail_msg("%s", d.message);
    }
    return id;
}

/*
 * One token, one identity (issue 12): the devserver's answers for alice to
 * insight auth/user (no rules) and auth/currentuser (group rules) agree on
 * the id, the email and the user front ends show; neither puts another
 * field in place of one it lacks; merged (validate = both, what the CLI
 * and PAM now do when a rule needs the profile) they carry auth/user's
 * login name and expiry and currentuser's display name and groups, so a
 * cn binding means the same with and without rules.
 */
static void
insight_calls_give_one_identity(void **state)
{
    static const char *const by_cn[] = {"user_attribute", "cn", NULL};
    static const char user_body[] =
        "{\"uid\":\"8cf6406a-6e43-402b-95eb-c0a47f8791cc\","
        "\"mail\":\"alice@example.com\",\"cn\":\"alice\","
        "\"access_token_expiration_time\":\"2026-11-26T10:15:00Z\"}";
    static const char cu_body[] =
        "{\"objectType\":\"USER_PROFILE\","
        "\"id\":\"8cf6406a-6e43-402b-95eb-c0a47f8791cc\","
        "\"firstName\":\"Alice\",\"lastName\":\"Smith\","
        "\"displayName\":\"Alice Smith\","
        "\"authorities\":[\"SYS_USER\",\"SYS_ADMIN\"],"
        "\"url\":\"/insightservices/rest/v1/auth/currentuser\","
        "\"email\":\"alice@example.com\","
        "\"authorityGroups\":[\"analysts\",\"admins\"],"
        "\"evaluationUser\":false}";
    static const char lk_body[] =
        "{\"id\":\"1\",\"first_name\":\"Alice\",\"last_name\":\"Smith\","
        "\"display_name\":\"Alice Smith\",\"email\":\"alice@example.com\","
        "\"is_disabled\":false,\"group_ids\":[\"7\",\"9\"]}";
    tg_config_t *cfg = cfg_with(by_cn);
    tg_identity_t *u, *c, *lk;
    char *local = NULL;
    tg_diag_t d;

    (void) state;
    u = parse_answer(cfg, TG_INSIGHT_VALIDATE_USER, user_body);
    c = parse_answer(cfg, TG_INSIGHT_VALIDATE_CURRENTUSER, cu_body);

    /* what both calls carry is the same, and so is what nginx shows */
    assert_string_equal(u->id, c->id);
    assert_string_equal(u->email, c->email);
    assert_string_equal(tg_identity_user(cfg, u), "alice@example.com");
    assert_string_equal(tg_identity_user(cfg, c), "alice@example.com");

    /* what one call lacks is unknown, not another field */
    assert_string_equal(u->name, "alice");
    assert_string_equal(u->display_name, "");
    assert_true(u->expires_at == 1795688100);
    assert_string_equal(c->name, "");
    assert_string_equal(c->display_name, "Alice Smith");
    assert_true(c->expires_at == 0);

    /* a cn binding never takes the display name: currentuser alone binds
     * nobody (fail closed) */
    tg_diag_clear(&d);
    assert_int_equal(tg_identity_bind(cfg, u, &local, &d), TG_OK);
    assert_string_equal(local, "alice");
    free(local);
    local = NULL;
    tg_diag_clear(&d);
    assert_int_equal(tg_identity_bind(cfg, c, &local, &d), TG_IDENTITY);
    assert_contains(d.message, "has no cn");
    assert_null(local);

    /* both, merged: the same name, expiry and binding as without rules */
    tg_diag_clear(&d);
    assert_int_equal(tg_identity_merge(u, c, &d), TG_OK);
    assert_string_equal(u->name, "alice");
    assert_string_equal(u->display_name, "Alice Smith");
    assert_string_equal(u->first_name, "Alice");
    assert_true(u->expires_at == 1795688100);
    assert_int_equal(u->n_groups, 4);
    assert_int_equal(u->has_profile, 1);
    assert_string_equal(tg_identity_user(cfg, u), "alice@example.com");
    tg_diag_clear(&d);
    assert_int_equal(tg_identity_bind(cfg, u, &local, &d), TG_OK);
    assert_string_equal(local, "alice");
    free(local);

    /* looker (one call): its display name stands in for the login name */
    assert_int_equal(tg_config_set(cfg, "api", "looker", "t", &d), TG_OK);
    lk = parse_answer(cfg, TG_INSIGHT_VALIDATE_USER, lk_body);
    assert_string_equal(lk->name, "Alice Smith");
    assert_string_equal(tg_identity_user(cfg, lk), "Alice Smith");
    free(lk->name);
    lk->name = strdup("");
    assert_string_equal(tg_identity_user(cfg, lk), "alice@example.com");
    free(lk->email);
    lk->email = strdup("");
    assert_string_equal(tg_identity_user(cfg, lk), "1");
    assert_string_equal(tg_identity_user(cfg, NULL), "");

    tg_identity_free(u);
    tg_identity_free(c);
    tg_identity_free(lk);
    tg_config_free(cfg);
}

static void
merged_profile_feeds_the_rules(void **state)
{
    static const char *const g[] = {"admins", NULL};
    const char *kv[] = {"require_groups", "admins", NULL};
    tg_config_t *cfg = cfg_with(kv);
    tg_identity_t *id = ident("42", "a@x", "", NULL);
    tg_identity_t *prof = ident("42", "", "", g);
    tg_diag_t d;

    (void) state;
    tg_diag_clear(&d);
    assert_int_equal(tg_rules_check(cfg, id, &d), TG_FORBIDDEN);
    assert_int_equal(tg_identity_merge(id, prof, NULL), TG_OK);
    tg_diag_clear(&d);
    assert_int_equal(tg_rules_check(cfg, id, &d), TG_OK);
    tg_identity_free(id);
    tg_identity_free(prof);
    tg_config_free(cfg);
}

/* email_domain pins the domain of email bindings: without it, any domain's
 * "alice@..." would become local alice. */
static void
bind_email_domain_is_enforced(void **state)
{
    static const struct {
        const char *attr, *email;
        tg_err_t expect;
        const char *text;
    } cases[] = {
        {"email_local", "alice@corp.example", TG_OK, "alice"},
        {"email_local", "alice@CORP.Example", TG_OK, "alice"},
        {"email_local", "alice@evil.example", TG_IDENTITY, "email_domain"},
        {"email_local", "alice@corp.example.evil", TG_IDENTITY,
         "email_domain"},
        {"email_local", "alice@sub.corp.example", TG_IDENTITY,
         "email_domain"},
    };
    size_t i;

    (void) state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tg_config_t *cfg = tg_config_new();
        tg_identity_t *id = ident("42", cases[i].email, "", NULL);
        tg_diag_t d;
        char *local = NULL;

        assert_non_null(cfg);
        tg_diag_clear(&d);
        assert_int_equal(tg_config_set(cfg, "user_attribute", cases[i].attr,
                                       "test", &d),
                         TG_OK);
        assert_int_equal(tg_config_set(cfg, "email_domain", "corp.example",
                                       "test", &d),
                         TG_OK);
        assert_int_equal(tg_identity_bind(cfg, id, &local, &d),
                         cases[i].expect);
        if (cases[i].expect == TG_OK) {
            assert_string_equal(local, cases[i].text);
        } else {
            assert_null(local);
            assert_non_null(strstr(d.message, cases[i].text));
        }
        free(local);
        tg_identity_free(id);
        tg_config_free(cfg);
    }
}

/*
 * A local account below min_uid (a system account: daemon, uid 1 on
 * Debian) is bound only by an explicit map line, like root: an identity
 * daemon@corp.example inside email_domain must not log in as daemon.
 */
static void
bind_system_accounts_only_through_the_map(void **state)
{
    static const char *const attr_email[] = {"user_attribute", "email", NULL};
    struct passwd *pw = getpwnam("daemon");
    char map[PATH_MAX], min[32], above[32], line[128];
    tg_identity_t *id = ident("7", "daemon@corp.example", "daemon", NULL);
    tg_config_t *cfg;
    char *local = NULL;
    tg_diag_t d;

    (void) state;
    if (pw == NULL || pw->pw_uid == 0 || pw->pw_uid >= 1000) {
        fail_msg("this test needs the system account daemon (uid 1..999)");
    }
    snprintf(min, sizeof(min), "%lu", (unsigned long) pw->pw_uid);
    snprintf(above, sizeof(above), "%lu", (unsigned long) pw->pw_uid + 1);

    /* The default (UID_MIN, at least above daemon's uid) refuses it, by
     * every attribute that yields "daemon". */
    cfg = cfg_with(NULL);
    assert_true(cfg->min_uid > (long) pw->pw_uid);
    assert_int_equal(tg_config_set(cfg, "email_domain", "corp.example", "t",
                                   &d),
                     TG_OK);
    tg_diag_clear(&d);
    assert_int_equal(tg_identity_bind(cfg, id, &local, &d), TG_IDENTITY);
    assert_null(local);
    assert_contains(d.message, "user 7 would bind to a system account (uid ");
    assert_contains(d.message, "which only an explicit user_map_file entry");
    assert_null(strstr(d.message, "daemon@corp.example"));
    tg_diag_clear(&d);
    assert_int_equal(tg_config_set(cfg, "user_attribute", "cn", "t", &d),
                     TG_OK);
    assert_int_equal(tg_identity_bind(cfg, id, &local, &d), TG_IDENTITY);
    assert_null(local);

    /* min_uid just above its uid refuses, at its uid binds. */
    tg_diag_clear(&d);
    assert_int_equal(tg_config_set(cfg, "min_uid", above, "t", &d), TG_OK);
    assert_int_equal(tg_identity_bind(cfg, id, &local, &d), TG_IDENTITY);
    assert_null(local);
    tg_diag_clear(&d);
    assert_int_equal(tg_config_set(cfg, "min_uid", min, "t", &d), TG_OK);
    assert_int_equal(tg_identity_bind(cfg, id, &local, &d), TG_OK);
    assert_string_equal(local, "daemon");
    free(local);
    local = NULL;
    tg_config_free(cfg);

    /* min_uid = 1 never opens root. */
    cfg = cfg_with(NULL);
    tg_diag_clear(&d);
    assert_int_equal(tg_config_set(cfg, "min_uid", "1", "t", &d), TG_OK);
    tg_identity_free(id);
    id = ident("8", "root@corp.example", "", NULL);
    assert_int_equal(tg_identity_bind(cfg, id, &local, &d), TG_IDENTITY);
    assert_contains(d.message, "would bind to root");
    assert_null(local);
    tg_config_free(cfg);
    tg_identity_free(id);

    /* An explicit map line binds it, whatever min_uid says. */
    id = ident("7", "daemon@corp.example", "daemon", NULL);
    snprintf(map, sizeof(map), "%s/system.map", g_dir);
    snprintf(line, sizeof(line), "daemon@corp.example daemon\n");
    write_text(map, line, 0644);
    cfg = cfg_with(attr_email);
    tg_diag_clear(&d);
    assert_int_equal(tg_config_set(cfg, "user_map_file", map, "t", &d), TG_OK);
    assert_int_equal(tg_identity_bind(cfg, id, &local, &d), TG_OK);
    assert_string_equal(local, "daemon");
    free(local);
    tg_config_free(cfg);
    tg_identity_free(id);
}

/* A domain with other characters is refused when configured. */
static void
email_domain_value_is_checked(void **state)
{
    tg_config_t *cfg = tg_config_new();
    tg_diag_t d;

    (void) state;
    tg_diag_clear(&d);
    assert_int_equal(tg_config_set(cfg, "email_domain", "corp example",
                                   "test", &d),
                     TG_CONFIG);
    assert_non_null(strstr(d.message, "email_domain"));
    tg_config_free(cfg);
}

/* Which validation call a config makes: looker always GET /user; insight
 * explicit choices pass through; auto asks for the profile (with auth/user:
 * both) only when a rule (the config's or the caller's) needs it. */
static void
validate_which_follows_the_rules(void **state)
{
    tg_config_t *cfg = tg_config_new();
    tg_diag_t d;

    (void) state;
    tg_diag_clear(&d);
    assert_int_equal(tg_validate_which(NULL, 1), TG_INSIGHT_VALIDATE_USER);
    assert_int_equal(tg_validate_which(cfg, 0), TG_INSIGHT_VALIDATE_USER);
    /* with rules, both calls: currentuser alone lacks the login name and
     * the expiry, so the rules would change who the token is (issue 12) */
    assert_int_equal(tg_validate_which(cfg, 1), TG_INSIGHT_VALIDATE_BOTH);
    assert_int_equal(tg_config_set(cfg, "deny_evaluation", "yes", "t", &d),
                     TG_OK);
    assert_int_equal(tg_validate_which(cfg, 0), TG_INSIGHT_VALIDATE_BOTH);
    assert_int_equal(tg_config_set(cfg, "deny_evaluation", "no", "t", &d),
                     TG_OK);
    assert_int_equal(tg_config_set(cfg, "require_groups", "admins", "t", &d),
                     TG_OK);
    assert_int_equal(tg_validate_which(cfg, 0), TG_INSIGHT_VALIDATE_BOTH);
    assert_int_equal(tg_config_set(cfg, "insight_validate", "currentuser",
                                   "t", &d),
                     TG_OK);
    assert_int_equal(tg_validate_which(cfg, 0),
                     TG_INSIGHT_VALIDATE_CURRENTUSER);
    assert_int_equal(tg_config_set(cfg, "insight_validate", "user", "t", &d),
                     TG_OK);
    assert_int_equal(tg_validate_which(cfg, 1), TG_INSIGHT_VALIDATE_USER);
    assert_int_equal(tg_config_set(cfg, "insight_validate", "both", "t", &d),
                     TG_OK);
    assert_int_equal(tg_validate_which(cfg, 0), TG_INSIGHT_VALIDATE_BOTH);
    assert_int_equal(tg_config_set(cfg, "api", "looker", "t", &d), TG_OK);
    assert_int_equal(tg_validate_which(cfg, 1), TG_INSIGHT_VALIDATE_USER);
    tg_config_free(cfg);
}

/* The users a map manages, by their local name (PAM's account uses it):
 * exact second-column match, the same file checks as binding. */
static void
user_map_has_local_reads_the_second_column(void **state)
{
    char map[PATH_MAX];
    const char *kv[] = {"user_map_file", map, NULL};
    tg_config_t *cfg;
    tg_diag_t d;

    (void) state;
    snprintf(map, sizeof(map), "%s/local.map", g_dir);
    write_text(map, "# comment\nalice@x.example alice\nbob@x.example ops\n",
              0644);
    cfg = cfg_with(kv);
    tg_diag_clear(&d);
    assert_int_equal(tg_user_map_has_local(cfg, "alice", &d), TG_OK);
    assert_int_equal(tg_user_map_has_local(cfg, "ops", &d), TG_OK);
    tg_diag_clear(&d);
    assert_int_equal(tg_user_map_has_local(cfg, "bob", &d), TG_IDENTITY);
    tg_diag_clear(&d);
    assert_int_equal(tg_user_map_has_local(cfg, "Alice", &d), TG_IDENTITY);

    write_text(map, "alice@x.example alice\nbroken-line\n", 0644);
    tg_diag_clear(&d);
    assert_int_equal(tg_user_map_has_local(cfg, "alice", &d), TG_CONFIG);
    assert_contains(d.message, ":2: expected");

    assert_int_equal(chmod(map, 0666), 0);
    tg_diag_clear(&d);
    assert_int_equal(tg_user_map_has_local(cfg, "alice", &d), TG_CONFIG);
    assert_contains(d.message, "must not be writable by group or others");
    tg_config_free(cfg);

    cfg = tg_config_new();
    tg_diag_clear(&d);
    assert_int_equal(tg_user_map_has_local(cfg, "alice", &d), TG_IDENTITY);
    tg_config_free(cfg);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rules_groups_flags_and_missing_profile),
        cmocka_unit_test(rules_message_sanitizes_hostile_id_and_groups),
        cmocka_unit_test(rules_message_with_many_groups_is_cut_not_overflowed),
        cmocka_unit_test(rules_refuse_null_inputs),
        cmocka_unit_test(rules_need_profile_only_for_groups_or_evaluation),
        cmocka_unit_test(bind_attributes_hostile_identities_and_map),
        cmocka_unit_test(bind_map_file_must_be_safe),
        cmocka_unit_test(bind_map_with_nul_byte_is_refused),
        cmocka_unit_test(bind_refuses_null_inputs),
        cmocka_unit_test(bind_email_domain_is_enforced),
        cmocka_unit_test(email_domain_value_is_checked),
        cmocka_unit_test(bind_system_accounts_only_through_the_map),
        cmocka_unit_test(merge_takes_groups_and_flags_and_fills_blanks),
        cmocka_unit_test(merge_refuses_a_profile_of_someone_else),
        cmocka_unit_test(merged_profile_feeds_the_rules),
        cmocka_unit_test(insight_calls_give_one_identity),
        cmocka_unit_test(validate_which_follows_the_rules),
        cmocka_unit_test(user_map_has_local_reads_the_second_column),
    };

    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
