/* SPDX-License-Identifier: MIT */
/*
 * cmd_token.c - the commands around the logged-in user's own token:
 * login (exchange a client id and secret, validate, check the rules,
 * store), whoami and profile (show the identity the token stands for),
 * and logout (invalidate where the API can, remove the token file).
 */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A client call that returns the token's identity (validate, profile). */
typedef tg_err_t (*identity_call_fn)(tg_client_t *cl, const char *token,
                                     tg_identity_t **id);

static void show_identity(tg_cli_t *cli, const tg_identity_t *id, int full,
                          time_t expires_hint);
static int identity_command(tg_cli_t *cli, int argc, char **argv,
                            identity_call_fn call, int full, int check_rules);
static int show_rules(tg_cli_t *cli, const tg_identity_t *id);

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
        cli_clean(item, sizeof(item), id->groups[i]);
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
    cli_set_json(cli, "evaluation",
                 id->evaluation < 0 ? json_null()
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
    const char *client_id_opt = NULL, *secret_file = NULL;
    int secret_stdin = 0, print_token = 0, c, rc = 0;
    char path[TG_CLI_PATH_MAX], fp[TG_FINGERPRINT_SIZE];
    char name[256], email[256], when[TG_CLI_TIME_SIZE];
    char *client_id = NULL, *secret = NULL;
    tg_identity_t *id = NULL;
    tg_client_t *cl = NULL;
    tg_token_t tok = {NULL, 0};
    tg_diag_t diag;
    tg_err_t err;
    time_t expires;
    long requests = 0, connections = 0;
    tg_cli_getopt_t g;

    cli_getopt_init(&g, TG_CLI_IN_LOGIN);
    for (;;) {
        c = cli_getopt(&g, argc, argv);
        if (c == -1) {
            break;
        }
        switch (c) {
        case TG_OPT_CLIENT_ID:
            client_id_opt = optarg;
            break;
        case TG_OPT_SECRET_FILE:
            secret_file = optarg;
            break;
        case TG_OPT_SECRET_STDIN:
            secret_stdin = 1;
            break;
        case TG_OPT_PRINT_TOKEN:
            print_token = 1;
            break;
        default:
            return cli_opt_fail(cli, c, argv);
        }
    }
    if (cli_no_more_args(cli, argc, argv) != 0) {
        return cli->exit_code;
    }
    if (secret_file != NULL && secret_stdin) {
        return cli_usage(cli, "--secret-file and --secret-stdin exclude "
                              "each other");
    }
    cli->human_to_stderr = print_token;

    /* Both are checked before any network call (F14). */
    rc = cli_token_path(cli, path, sizeof(path), 1);
    if (rc == 0) {
        rc = cli_client_id(cli, client_id_opt, &client_id);
    }
    if (rc == 0) {
        rc = cli_client_secret(cli, secret_file, secret_stdin, &secret);
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

    rc = cli_client_open(cli, &cl);
    if (rc != 0) {
        goto out;
    }
    err = tg_client_token(cl, client_id, secret, &tok);
    tg_secret_free(secret);
    secret = NULL;
    if (err != TG_OK) {
        rc = cli_client_fail(cli, cl, err);
        goto out;
    }
    /* Prove the token works (same connection) and learn who it is. */
    err = tg_client_validate(cl, tok.value, &id);
    if (err != TG_OK) {
        rc = cli_client_fail(cli, cl, err);
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
    rc = cli_token_save(cli, path, tok.value, expires);
    if (rc != 0) {
        goto out;
    }

    cli_token_result(cli, id, tok.value, expires, fp);
    cli_clean(name, sizeof(name), cli_who(id));
    cli_clean(email, sizeof(email), id->email);
    cli_set_str(cli, "token_file", path);
    tg_client_stats(cl, &requests, &connections);
    cli_set_int(cli, "requests", requests);
    cli_set_int(cli, "connections", connections);
    cli_say(cli, "logged in as %s%s%s%s, token fp %s, expires %s", name,
            email[0] != '\0' ? " (" : "", email, email[0] != '\0' ? ")" : "",
            fp, cli_time(expires, when));
    if (print_token) {
        cli_print_token(cli, tok.value);
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

/*
 * whoami and profile: the stored token and a client, one call that returns
 * the identity, and the identity shown (full: every attribute, also the
 * empty ones).  With check_rules the configuration's rules are applied
 * and a denial is the exit code.
 */
static int
identity_command(tg_cli_t *cli, int argc, char **argv, identity_call_fn call,
                 int full, int check_rules)
{
    tg_cli_token_t tok = {0};
    tg_identity_t *id = NULL;
    tg_client_t *cl = NULL;
    tg_err_t err;
    int rc;

    if (cli_no_options(cli, argc, argv) != 0) {
        return cli->exit_code;
    }
    rc = cli_no_more_args(cli, argc, argv);
    if (rc == 0) {
        rc = cli_token_client_open(cli, &tok, &cl);
    }
    if (rc != 0) {
        goto out;
    }
    err = call(cl, tok.value, &id);
    if (err != TG_OK) {
        rc = cli_client_fail(cli, cl, err);
        goto out;
    }
    show_identity(cli, id, full, tok.expires_at);
    if (check_rules) {
        rc = show_rules(cli, id);
    }
out:
    cli_token_release(&tok);
    tg_identity_free(id);
    tg_client_free(cl);
    return rc;
}

/* The rules of the configuration on the identity, as a result line. */
static int
show_rules(tg_cli_t *cli, const tg_identity_t *id)
{
    char reason[sizeof(((tg_diag_t *) 0)->message)];
    tg_diag_t diag;
    tg_err_t err;

    tg_diag_clear(&diag);
    err = tg_rules_check(cli->cfg, id, &diag);
    if (err == TG_OK) {
        cli_field(cli, "authorization", "authorization", "allowed");
        return 0;
    }
    cli_clean(reason, sizeof(reason), diag.message);
    cli_set_str(cli, "authorization", "denied");
    cli_set_str(cli, "reason", reason);
    cli_say(cli, "%-14s denied: %s", "authorization:", reason);
    return cli_fail(cli, err, &diag);
}

int
cmd_whoami(tg_cli_t *cli, int argc, char **argv)
{
    return identity_command(cli, argc, argv, tg_client_validate, 0, 1);
}

int
cmd_profile(tg_cli_t *cli, int argc, char **argv)
{
    return identity_command(cli, argc, argv, tg_client_profile, 1, 0);
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

    if (cli_no_options(cli, argc, argv) != 0) {
        return cli->exit_code;
    }
    rc = cli_no_more_args(cli, argc, argv);
    if (rc != 0) {
        return rc;
    }
    /* Nothing stored and no TOKENGATE_TOKEN: already logged out. */
    if (getenv("TOKENGATE_TOKEN") == NULL) {
        rc = cli_token_path(cli, tok.path, sizeof(tok.path), 0);
        if (rc != 0) {
            return rc;
        }
        if (lstat(tok.path, &st) != 0 && errno == ENOENT) {
            cli_set_bool(cli, "logged_out", 1);
            cli_say(cli, "not logged in (no token file %s)",
                    cli_clean(shown, sizeof(shown), tok.path));
            return 0;
        }
    }
    rc = cli_token_load(cli, &tok, 1);
    if (rc != 0) {
        goto out;
    }
    tg_fingerprint(tok.value, strlen(tok.value), fp);
    cli_set_str(cli, "fingerprint", fp);
    expired = tok.expires_at > 0 && tok.expires_at <= time(NULL);

    if (cli->cfg->api == TG_API_LOOKER && !expired) {
        rc = cli_client_open(cli, &cl);
        if (rc != 0) {
            goto out;
        }
        err = tg_client_logout(cl, tok.value);
        if (err == TG_TOKEN_INVALID) {
            cli_say(cli, "token fp %s was already invalid", fp);
        } else if (err != TG_OK) {
            /* Keep the file: the user can retry when the server is back. */
            rc = cli_client_fail(cli, cl, err);
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
        cli_clean(shown, sizeof(shown), tok.path);
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
    cli_token_release(&tok);
    tg_client_free(cl);
    return rc;
}
