/* SPDX-License-Identifier: MIT */
/*
 * cmd_embed.c - embed-url: a signed Looker embed URL, signed here with the
 * embed secret (which never comes from the command line) or by the server
 * with an admin's stored token; the option parsing, the secret, and the
 * --json display of every parameter.
 */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Room for one embed parameter shown in JSON (the library caps them at
 * 1024 bytes; sanitizing never makes a string longer). */
#define TG_CLI_EMBED_SHOWN 1100

static int embed_host(tg_cli_t *cli, const char *arg, tg_embed_params_t *p);
static int embed_session_length(tg_cli_t *cli, const char *arg, long *out);
static int embed_attr(tg_cli_t *cli, const char *arg, tg_embed_attr_t *attr);
static json_t *embed_list(const char *const *items, size_t n);
static void embed_set(tg_cli_t *cli, const char *key, const char *value);
static void embed_show(tg_cli_t *cli, const tg_embed_params_t *p,
                       const char *url, const char *sts, int server);
static int embed_secret(tg_cli_t *cli, int secret_stdin, char **out);

/* ---------------------------------------------------------------------- */
/* embed-url (looker signed embedding)                                    */
/* ---------------------------------------------------------------------- */

/* --host: HOST[:PORT] (https), or an origin https://HOST[:PORT] or
 * http://HOST:PORT (the library allows http for loopback hosts only). */
static int
embed_host(tg_cli_t *cli, const char *arg, tg_embed_params_t *p)
{
    if (strncmp(arg, "https://", 8) == 0) {
        p->scheme = "https";
        p->host = arg + 8;
    } else if (strncmp(arg, "http://", 7) == 0) {
        p->scheme = "http";
        p->host = arg + 7;
    } else if (strstr(arg, "://") != NULL) {
        return cli_usage(cli, "--host: want HOST[:PORT], https://HOST[:PORT] "
                              "or http://HOST:PORT (loopback only)");
    } else {
        p->host = arg;
    }
    return 0;
}

/* --session-length: a decimal number of seconds (the range is checked
 * with the other parameters, so the message names session_length). */
static int
embed_session_length(tg_cli_t *cli, const char *arg, long *out)
{
    char *end = NULL;
    long v;

    errno = 0;
    v = strtol(arg, &end, 10);
    if (arg[0] == '\0' || *end != '\0' || errno != 0 ||
        !((arg[0] >= '0' && arg[0] <= '9') || arg[0] == '-')) {
        return cli_usage(cli,
                         "--session-length needs a number of seconds "
                         "(0 to %d)",
                         TG_EMBED_SESSION_MAX);
    }
    *out = v;
    return 0;
}

/* --attr KEY=VALUE: the key is copied (the value stays in argv). */
static int
embed_attr(tg_cli_t *cli, const char *arg, tg_embed_attr_t *attr)
{
    const char *eq = strchr(arg, '=');

    if (eq == NULL) {
        return cli_usage(cli, "--attr needs KEY=VALUE");
    }
    attr->key = strndup(arg, (size_t) (eq - arg));
    attr->value = eq + 1;
    return attr->key != NULL ? 0 : cli_failf(cli, TG_NOMEM, "out of memory");
}

/* A JSON array of the display form of strings. */
static json_t *
embed_list(const char *const *items, size_t n)
{
    char item[TG_CLI_EMBED_SHOWN];
    json_t *list = json_array();
    size_t i;

    for (i = 0; list != NULL && i < n; i++) {
        json_array_append_new(
            list, json_string(cli_clean(item, sizeof(item), items[i])));
    }
    return list;
}

/* A string parameter in the JSON object, null when not given. */
static void
embed_set(tg_cli_t *cli, const char *key, const char *value)
{
    if (value != NULL) {
        cli_set_str(cli, key, value);
    } else {
        cli_set_json(cli, key, json_null());
    }
}

/* --json: the URL and every parameter (never the secret). */
static void
embed_show(tg_cli_t *cli, const tg_embed_params_t *p, const char *url,
           const char *sts, int server)
{
    char key[TG_CLI_EMBED_SHOWN], value[TG_CLI_EMBED_SHOWN];
    json_t *attrs = json_object();
    size_t i;

    cli_set_str(cli, "url", url);
    cli_set_str(cli, "signed_by", server ? "server" : "local");
    cli_set_str(cli, "scheme", p->scheme != NULL ? p->scheme : "https");
    cli_set_str(cli, "host", p->host);
    cli_set_str(cli, "embed_path", p->embed_path);
    cli_set_str(cli, "external_user_id", p->external_user_id);
    embed_set(cli, "first_name", p->first_name);
    embed_set(cli, "last_name", p->last_name);
    embed_set(cli, "user_timezone", p->user_timezone);
    cli_set_json(cli, "permissions",
                 embed_list(p->permissions, p->n_permissions));
    cli_set_json(cli, "models", embed_list(p->models, p->n_models));
    cli_set_json(cli, "group_ids", embed_list(p->group_ids, p->n_group_ids));
    embed_set(cli, "external_group_id", p->external_group_id);
    for (i = 0; attrs != NULL && i < p->n_user_attributes; i++) {
        json_object_set_new(
            attrs, cli_clean(key, sizeof(key), p->user_attributes[i].key),
            json_string(
                cli_clean(value, sizeof(value), p->user_attributes[i].value)));
    }
    cli_set_json(cli, "user_attributes", attrs);
    cli_set_int(cli, "session_length", p->session_length);
    cli_set_bool(cli, "force_logout_login", p->force_logout_login);
    /* Our own text (UTF-8 without control characters but its LFs): shown
     * as it was signed, to compare with Looker's Embed URI Validator. */
    if (sts != NULL) {
        cli_set_json(cli, "string_to_sign", json_string(sts));
    }
}

/*
 * The embed secret, never from argv: --secret-stdin (first line of
 * stdin), else embed_secret_file (owner-only, checked on read).
 */
static int
embed_secret(tg_cli_t *cli, int secret_stdin, char **out)
{
    tg_diag_t diag;
    tg_err_t err;
    int r;

    *out = NULL;
    if (secret_stdin) {
        r = cli_read_line(STDIN_FILENO, TG_SECRET_MAX, out);
        if (r == -2) {
            return cli_failf(cli, TG_INPUT,
                             "the embed secret on stdin is longer than %d "
                             "bytes",
                             TG_SECRET_MAX);
        }
        if (r != 0) {
            return cli_failf(cli, TG_INPUT,
                             "cannot read the embed secret from stdin: %s",
                             strerror(errno));
        }
        return 0;
    }
    if (cli->cfg->embed_secret_file == NULL ||
        cli->cfg->embed_secret_file[0] == '\0') {
        return cli_failf(cli, TG_CONFIG,
                         "no embed secret: set embed_secret_file in the "
                         "configuration, or use --secret-stdin (or "
                         "--server to have Looker sign)");
    }
    tg_diag_clear(&diag);
    err = tg_secret_file_read(cli->cfg->embed_secret_file, "embed_secret_file",
                              out, &diag);
    return err == TG_OK ? 0 : cli_fail(cli, err, &diag);
}

int
cmd_embed_url(tg_cli_t *cli, int argc, char **argv)
{
    const char **perms = NULL, **models = NULL, **groups = NULL;
    tg_embed_attr_t *attrs = NULL;
    const char *host = NULL;
    char *secret = NULL, *url = NULL, *sts = NULL;
    tg_cli_token_t tok = {0};
    tg_client_t *cl = NULL;
    tg_embed_params_t p;
    tg_cli_getopt_t g;
    tg_diag_t diag;
    tg_err_t err;
    size_t i, n_attrs = 0;
    int c, rc = 0, server = 0, secret_stdin = 0, have_session_length = 0;

    tg_embed_params_init(&p);
    /* Each repeatable option occurs at most argc times. */
    perms = calloc((size_t) argc, sizeof(*perms));
    models = calloc((size_t) argc, sizeof(*models));
    groups = calloc((size_t) argc, sizeof(*groups));
    attrs = calloc((size_t) argc, sizeof(*attrs));
    if (perms == NULL || models == NULL || groups == NULL || attrs == NULL) {
        rc = cli_failf(cli, TG_NOMEM, "out of memory");
        goto out;
    }
    p.permissions = perms;
    p.models = models;
    p.group_ids = groups;
    p.user_attributes = attrs;
    cli_getopt_init(&g, TG_CLI_IN_EMBED_URL);
    for (;;) {
        c = cli_getopt(&g, argc, argv);
        if (c == -1) {
            break;
        }
        switch (c) {
        case TG_OPT_HOST:
            if (host != NULL) {
                rc = cli_usage(cli, "--host given twice");
                goto out;
            }
            host = optarg;
            rc = embed_host(cli, optarg, &p);
            break;
        case TG_OPT_PATH:
            rc =
                p.embed_path != NULL ? cli_usage(cli, "--path given twice") : 0;
            p.embed_path = optarg;
            break;
        case TG_OPT_USER_ID:
            rc = p.external_user_id != NULL
                     ? cli_usage(cli, "--user-id given twice")
                     : 0;
            p.external_user_id = optarg;
            break;
        case TG_OPT_FIRST_NAME:
            rc = p.first_name != NULL
                     ? cli_usage(cli, "--first-name given twice")
                     : 0;
            p.first_name = optarg;
            break;
        case TG_OPT_LAST_NAME:
            rc = p.last_name != NULL ? cli_usage(cli, "--last-name given twice")
                                     : 0;
            p.last_name = optarg;
            break;
        case TG_OPT_PERMISSION:
            perms[p.n_permissions++] = optarg;
            break;
        case TG_OPT_MODEL:
            models[p.n_models++] = optarg;
            break;
        case TG_OPT_GROUP_ID:
            groups[p.n_group_ids++] = optarg;
            break;
        case TG_OPT_EXTERNAL_GROUP_ID:
            rc = p.external_group_id != NULL
                     ? cli_usage(cli, "--external-group-id given twice")
                     : 0;
            p.external_group_id = optarg;
            break;
        case TG_OPT_ATTR:
            rc = embed_attr(cli, optarg, &attrs[n_attrs]);
            if (rc == 0) {
                p.n_user_attributes = ++n_attrs;
            }
            break;
        case TG_OPT_SESSION_LENGTH:
            rc = have_session_length
                     ? cli_usage(cli, "--session-length given twice")
                     : embed_session_length(cli, optarg, &p.session_length);
            have_session_length = 1;
            break;
        case TG_OPT_TIMEZONE:
            rc = p.user_timezone != NULL
                     ? cli_usage(cli, "--timezone given twice")
                     : 0;
            p.user_timezone = optarg;
            break;
        case TG_OPT_NO_FORCE_LOGOUT_LOGIN:
            p.force_logout_login = 0;
            break;
        case TG_OPT_SECRET_STDIN:
            secret_stdin = 1;
            break;
        case TG_OPT_SERVER:
            server = 1;
            break;
        default:
            rc = cli_opt_fail(cli, c, argv);
            break;
        }
        if (rc != 0) {
            goto out;
        }
    }
    /* Not quoted: "--secret VALUE" would be read as an abbreviation of
     * --secret-stdin followed by the secret itself. */
    if (optind < argc) {
        rc = cli_usage(cli,
                       "unexpected argument %d (embed-url takes options "
                       "only; the secret is never taken from the "
                       "command line)",
                       optind);
        goto out;
    }
    if (host == NULL || p.embed_path == NULL || p.external_user_id == NULL) {
        rc = cli_usage(cli, "missing %s (see tokengate embed-url --help)",
                       host == NULL           ? "--host HOST"
                       : p.embed_path == NULL ? "--path /embed/..."
                                              : "--user-id ID");
        goto out;
    }
    if (server && secret_stdin) {
        rc = cli_usage(cli, "--server and --secret-stdin exclude each other "
                            "(the server signs with its own secret)");
        goto out;
    }
    /* Signing locally talks to no server: it needs no url, and no api
     * unless one was chosen (then it must be looker). */
    if (cli->config_err != TG_OK && (server || !cli->url_missing)) {
        rc = cli_failf(cli, cli->config_err, "%s", cli->config_msg);
        goto out;
    }
    if (cli->cfg->api != TG_API_LOOKER && (server || cli->api_given)) {
        rc = cli_failf(cli, TG_INPUT,
                       "signed embedding is a looker feature; the insight "
                       "API has none (api = insight)");
        goto out;
    }
    /* Every parameter is checked before a secret or a token is touched. */
    tg_diag_clear(&diag);
    err = tg_embed_params_check(&p, &diag);
    if (err != TG_OK) {
        rc = cli_fail(cli, err, &diag);
        goto out;
    }

    if (server) {
        rc = cli_token_client_open(cli, &tok, &cl);
        if (rc != 0) {
            goto out;
        }
        err = tg_client_embed_sso_url(cl, tok.value, &p, &url);
        if (err != TG_OK) {
            rc = cli_client_fail(cli, cl, err);
            goto out;
        }
    } else {
        rc = embed_secret(cli, secret_stdin, &secret);
        if (rc != 0) {
            goto out;
        }
        tg_diag_clear(&diag);
        err = tg_embed_sign(&p, secret, strlen(secret), &url, &sts, &diag);
        tg_secret_free(secret);
        secret = NULL;
        if (err != TG_OK) {
            rc = cli_fail(cli, err, &diag);
            goto out;
        }
    }
    /* The URL is the result: printed even with --quiet, alone on stdout.
     * It works once, within minutes; it is never logged. */
    if (cli->json) {
        embed_show(cli, &p, url, sts, server);
    } else {
        fputs(url, stdout);
        fputc('\n', stdout);
    }
out:
    tg_secret_free(secret);
    tg_secret_free(url);
    tg_secret_free(sts);
    cli_token_release(&tok);
    tg_client_free(cl);
    for (i = 0; attrs != NULL && i < n_attrs; i++) {
        free((char *) attrs[i].key);
    }
    free(attrs);
    free(groups);
    free(models);
    free(perms);
    return rc;
}
