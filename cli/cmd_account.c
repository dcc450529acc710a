/* SPDX-License-Identifier: MIT */
/*
 * cmd_account.c - the commands that exist in one API flavor only:
 * credentials (insight: show, renew or revoke the REST API client id and
 * secret), session and sudo (looker: the API session's workspace, and a
 * token acting as another user, written to a private file or stdout).
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The label column of "credentials": "credentials id:" and a space. */
#define TG_CREDS_LABEL_WIDTH 15

static void creds_field(tg_cli_t *cli, const char *key, const char *label,
                        const char *value);
static int write_token_output(tg_cli_t *cli, const char *path,
                              const char *token);

/* ---------------------------------------------------------------------- */
/* credentials (insight), session and sudo (looker)                       */
/* ---------------------------------------------------------------------- */

/* A "label: value" line of credentials, the values in one column after
 * the longest label ("credentials id:"); key, when set, is the JSON key. */
static void
creds_field(tg_cli_t *cli, const char *key, const char *label,
            const char *value)
{
    char shown[512];

    if (key != NULL) {
        cli_set_str(cli, key, value);
    }
    cli_say(cli, "%-*s %s", TG_CREDS_LABEL_WIDTH, label,
            cli_clean(shown, sizeof(shown), value));
    explicit_bzero(shown, sizeof(shown)); /* may be the new secret */
}

int
cmd_credentials(tg_cli_t *cli, int argc, char **argv)
{
    char when[TG_CLI_TIME_SIZE], arg[64], id[32];
    tg_credentials_t creds;
    tg_cli_token_t tok = {0};
    tg_client_t *cl = NULL;
    tg_creds_op_t op;
    tg_err_t err;
    time_t created;
    int rc = 0;

    memset(&creds, 0, sizeof(creds));
    if (cli_no_options(cli, argc, argv) != 0) {
        return cli->exit_code;
    }
    if (optind != argc - 1) {
        return cli_usage(cli, "credentials needs one of show, new, revoke");
    }
    if (strcmp(argv[optind], "show") == 0) {
        op = TG_CREDS_SHOW;
    } else if (strcmp(argv[optind], "new") == 0) {
        op = TG_CREDS_NEW;
    } else if (strcmp(argv[optind], "revoke") == 0) {
        op = TG_CREDS_REVOKE;
    } else {
        return cli_usage(cli,
                         "unknown credentials action %s (show, new, "
                         "revoke)",
                         cli_clean(arg, sizeof(arg), argv[optind]));
    }
    if (cli->cfg->api != TG_API_INSIGHT) {
        return cli_api_only(cli, "REST API credentials are");
    }
    rc = cli_token_client_open(cli, &tok, &cl);
    if (rc != 0) {
        goto out;
    }
    err = tg_client_credentials(cl, tok.value, op, &creds);
    if (err != TG_OK) {
        rc = cli_client_fail(cli, cl, err);
        goto out;
    }
    if (op == TG_CREDS_REVOKE) {
        cli_set_bool(cli, "revoked", 1);
        cli_say(cli, "REST API credentials revoked");
        goto out;
    }
    created = (time_t) (creds.created_ms / 1000);
    cli_set_int(cli, "credentials_id", (long long) creds.credentials_id);
    cli_set_int(cli, "created_ms", (long long) creds.created_ms);
    cli_set_str(cli, "created", cli_time(created, when));
    if (op == TG_CREDS_NEW) {
        creds_field(cli, "client_id", "client id:", creds.client_id);
        /* The one place a secret is printed: it cannot be read again. */
        creds_field(cli, "secret", "secret:", creds.secret);
        cli_warn(cli, "the secret is shown only this once; the previous "
                      "client id and secret are revoked");
    } else if (creds.client_id != NULL && creds.client_id[0] != '\0') {
        creds_field(cli, "client_id", "client id:", creds.client_id);
    }
    snprintf(id, sizeof(id), "%lld", (long long) creds.credentials_id);
    creds_field(cli, NULL, "credentials id:", id);
    creds_field(cli, NULL, "created:", when);
out:
    tg_credentials_clear(&creds);
    cli_token_release(&tok);
    tg_client_free(cl);
    return rc;
}

int
cmd_session(tg_cli_t *cli, int argc, char **argv)
{
    const char *workspace = NULL;
    tg_cli_token_t tok = {0};
    tg_client_t *cl = NULL;
    tg_session_t s;
    tg_cli_getopt_t g;
    tg_err_t err;
    int c, rc;

    memset(&s, 0, sizeof(s));
    cli_getopt_init(&g, TG_CLI_IN_SESSION);
    for (;;) {
        c = cli_getopt(&g, argc, argv);
        if (c == -1) {
            break;
        }
        if (c != TG_OPT_WORKSPACE) {
            return cli_opt_fail(cli, c, argv);
        }
        workspace = optarg;
    }
    rc = cli_no_more_args(cli, argc, argv);
    if (rc != 0) {
        return rc;
    }
    if (cli->cfg->api != TG_API_LOOKER) {
        return cli_api_only(cli, "API sessions are");
    }
    rc = cli_token_client_open(cli, &tok, &cl);
    if (rc != 0) {
        goto out;
    }
    err = tg_client_session(cl, tok.value, workspace, &s);
    if (err != TG_OK) {
        rc = cli_client_fail(cli, cl, err);
        goto out;
    }
    if (s.workspace_id != NULL && s.workspace_id[0] != '\0') {
        cli_field(cli, "workspace_id", "workspace", s.workspace_id);
    } else {
        cli_set_json(cli, "workspace_id", json_null());
        cli_say(cli, "%-14s %s", "workspace:", "(none)");
    }
    if (s.sudo_user_id != NULL && s.sudo_user_id[0] != '\0') {
        cli_field(cli, "sudo_user_id", "sudo user", s.sudo_user_id);
    } else {
        cli_set_json(cli, "sudo_user_id", json_null());
        cli_say(cli, "%-14s %s", "sudo user:", "(none)");
    }
out:
    tg_session_clear(&s);
    cli_token_release(&tok);
    tg_client_free(cl);
    return rc;
}

/* sudo --output: a private file; never through a symbolic link. */
static int
write_token_output(tg_cli_t *cli, const char *path, const char *token)
{
    char shown[256];
    struct stat st;
    int fd, rc = 0;

    cli_clean(shown, sizeof(shown), path);
    fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY,
              0600);
    if (fd < 0 && errno == ELOOP) {
        return cli_failf(cli, TG_INPUT,
                         "%s is a symbolic link; refusing to write a token "
                         "through it",
                         shown);
    }
    if (fd < 0) {
        return cli_failf(cli, TG_INPUT, "cannot open %s: %s", shown,
                         strerror(errno));
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
        rc = cli_failf(cli, TG_INPUT,
                       "%s is not a regular file of yours; refusing to "
                       "write a token there",
                       shown);
        goto out;
    }
    if (fchmod(fd, 0600) != 0 || ftruncate(fd, 0) != 0) {
        rc = cli_failf(cli, TG_INPUT, "cannot prepare %s: %s", shown,
                       strerror(errno));
        goto out;
    }
    if (cli_write_all(fd, token, strlen(token)) != 0 ||
        cli_write_all(fd, "\n", 1) != 0 || fsync(fd) != 0) {
        rc = cli_failf(cli, TG_INPUT, "cannot write %s: %s", shown,
                       strerror(errno));
    }
out:
    if (close(fd) != 0 && rc == 0) {
        rc = cli_failf(cli, TG_INPUT, "cannot write %s: %s", shown,
                       strerror(errno));
    }
    return rc;
}

int
cmd_sudo(tg_cli_t *cli, int argc, char **argv)
{
    const char *output = NULL, *user_id;
    char name[256], email[256], uid[128], shown[256];
    char when[TG_CLI_TIME_SIZE], fp[TG_FINGERPRINT_SIZE];
    tg_cli_token_t admin = {0};
    tg_token_t stok = {NULL, 0};
    tg_identity_t *id = NULL;
    tg_client_t *cl = NULL;
    struct stat st;
    tg_err_t err;
    time_t expires;
    int c, rc = 0, print_token = 0;
    tg_cli_getopt_t g;

    cli_getopt_init(&g, TG_CLI_IN_SUDO);
    for (;;) {
        c = cli_getopt(&g, argc, argv);
        if (c == -1) {
            break;
        }
        switch (c) {
        case TG_OPT_OUTPUT:
            output = optarg;
            break;
        case TG_OPT_PRINT_TOKEN:
            print_token = 1;
            break;
        default:
            return cli_opt_fail(cli, c, argv);
        }
    }
    if (optind != argc - 1) {
        return cli_usage(cli, "sudo needs exactly one USER_ID");
    }
    user_id = argv[optind];
    if (output == NULL && !print_token) {
        return cli_usage(cli, "sudo needs --output FILE or --print-token");
    }
    cli->human_to_stderr = print_token;
    if (cli->cfg->api != TG_API_LOOKER) {
        return cli_api_only(cli, "sudo is");
    }
    /* Refuse a bad --output before a token is minted for nothing. */
    if (output != NULL && lstat(output, &st) == 0 &&
        (!S_ISREG(st.st_mode) || st.st_uid != geteuid())) {
        return cli_failf(cli, TG_INPUT,
                         "%s is %s; refusing to write a token there",
                         cli_clean(shown, sizeof(shown), output),
                         S_ISLNK(st.st_mode) ? "a symbolic link"
                                             : "not a regular file of yours");
    }
    rc = cli_token_client_open(cli, &admin, &cl);
    if (rc != 0) {
        goto out;
    }
    err = tg_client_sudo(cl, admin.value, user_id, &stok);
    if (err != TG_OK) {
        rc = cli_client_fail(cli, cl, err);
        goto out;
    }
    err = tg_client_validate(cl, stok.value, &id);
    if (err != TG_OK) {
        rc = cli_client_fail(cli, cl, err);
        goto out;
    }
    if (output != NULL) {
        rc = write_token_output(cli, output, stok.value);
        if (rc != 0) {
            goto out;
        }
        cli_set_str(cli, "output", output);
    }
    expires = stok.expires_at != 0 ? stok.expires_at : id->expires_at;
    cli_token_result(cli, id, stok.value, expires, fp);
    cli_clean(name, sizeof(name), cli_who(id));
    cli_clean(email, sizeof(email), id->email);
    cli_clean(uid, sizeof(uid), id->id);
    cli_say(cli,
            "sudo token for %s (%s%suser id %s), token fp %s, "
            "expires %s%s%s",
            name, email, email[0] != '\0' ? ", " : "", uid, fp,
            cli_time(expires, when), output != NULL ? ", written to " : "",
            output != NULL ? cli_clean(shown, sizeof(shown), output) : "");
    if (print_token) {
        cli_print_token(cli, stok.value);
    }
out:
    cli_token_release(&admin);
    tg_token_clear(&stok);
    tg_identity_free(id);
    tg_client_free(cl);
    return rc;
}
