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

/* What embed-url collects from its command line. */
typedef struct tg_embed_cmd {
    tg_embed_params_t p; /* borrows argv and the arrays below */
    const char **perms, **models, **groups;
    tg_embed_attr_t *attrs; /* the keys are ours */
    size_t n_attrs;
    const char *host; /* --host as given */
    int server, secret_stdin, have_session_length;
} tg_embed_cmd_t;

static int embed_init(tg_cli_t *cli, tg_embed_cmd_t *e, int argc);
static int embed_once(tg_cli_t *cli, const char **slot, const char *name);
static int embed_parse_options(tg_cli_t *cli, tg_embed_cmd_t *e, int argc,
                               char **argv);
static int embed_check_usage(tg_cli_t *cli, const tg_embed_cmd_t *e, int argc);
static int embed_check_config(tg_cli_t *cli, const tg_embed_cmd_t *e);
static int embed_check_params(tg_cli_t *cli, const tg_embed_cmd_t *e);
static int embed_sign_by_server(tg_cli_t *cli, const tg_embed_cmd_t *e,
                                char **url);
static int embed_sign_locally(tg_cli_t *cli, const tg_embed_cmd_t *e,
                              char **url, char **sts);
static void embed_print(tg_cli_t *cli, const tg_embed_cmd_t *e, const char *url,
                        const char *sts);
static void embed_free(tg_embed_cmd_t *e);
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

    *out = NULL;
    if (secret_stdin) {
        return cli_secret_stdin(cli, "embed secret", out);
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
    tg_embed_cmd_t e;
    char *url = NULL, *sts = NULL;
    int rc;

    rc = embed_init(cli, &e, argc);
    if (rc == 0) {
        rc = embed_parse_options(cli, &e, argc, argv);
    }
    if (rc == 0) {
        rc = embed_check_usage(cli, &e, argc);
    }
    if (rc == 0) {
        rc = embed_check_config(cli, &e);
    }
    /* Every parameter is checked before a secret or a token is touched. */
    if (rc == 0) {
        rc = embed_check_params(cli, &e);
    }
    if (rc == 0) {
        rc = e.server ? embed_sign_by_server(cli, &e, &url)
                      : embed_sign_locally(cli, &e, &url, &sts);
    }
    if (rc == 0) {
        embed_print(cli, &e, url, sts);
    }
    tg_secret_free(url);
    tg_secret_free(sts);
    embed_free(&e);
    return rc;
}

/* The parameters, with room for every repeatable option (each occurs at
 * most argc times). */
static int
embed_init(tg_cli_t *cli, tg_embed_cmd_t *e, int argc)
{
    memset(e, 0, sizeof(*e));
    tg_embed_params_init(&e->p);
    e->perms = calloc((size_t) argc, sizeof(*e->perms));
    e->models = calloc((size_t) argc, sizeof(*e->models));
    e->groups = calloc((size_t) argc, sizeof(*e->groups));
    e->attrs = calloc((size_t) argc, sizeof(*e->attrs));
    if (e->perms == NULL || e->models == NULL || e->groups == NULL ||
        e->attrs == NULL) {
        return cli_failf(cli, TG_NOMEM, "out of memory");
    }
    e->p.permissions = e->perms;
    e->p.models = e->models;
    e->p.group_ids = e->groups;
    e->p.user_attributes = e->attrs;
    return 0;
}

/* A single-valued option: optarg, or a usage error the second time. */
static int
embed_once(tg_cli_t *cli, const char **slot, const char *name)
{
    if (*slot != NULL) {
        return cli_usage(cli, "--%s given twice", name);
    }
    *slot = optarg;
    return 0;
}

static int
embed_parse_options(tg_cli_t *cli, tg_embed_cmd_t *e, int argc, char **argv)
{
    tg_embed_params_t *p = &e->p;
    tg_cli_getopt_t g;
    int c, rc = 0;

    cli_getopt_init(&g, TG_CLI_IN_EMBED_URL);
    for (;;) {
        c = cli_getopt(&g, argc, argv);
        if (c == -1) {
            return 0;
        }
        switch (c) {
        case TG_OPT_HOST:
            rc = embed_once(cli, &e->host, "host");
            if (rc == 0) {
                rc = embed_host(cli, optarg, p);
            }
            break;
        case TG_OPT_PATH:
            rc = embed_once(cli, &p->embed_path, "path");
            break;
        case TG_OPT_USER_ID:
            rc = embed_once(cli, &p->external_user_id, "user-id");
            break;
        case TG_OPT_FIRST_NAME:
            rc = embed_once(cli, &p->first_name, "first-name");
            break;
        case TG_OPT_LAST_NAME:
            rc = embed_once(cli, &p->last_name, "last-name");
            break;
        case TG_OPT_PERMISSION:
            e->perms[p->n_permissions++] = optarg;
            break;
        case TG_OPT_MODEL:
            e->models[p->n_models++] = optarg;
            break;
        case TG_OPT_GROUP_ID:
            e->groups[p->n_group_ids++] = optarg;
            break;
        case TG_OPT_EXTERNAL_GROUP_ID:
            rc = embed_once(cli, &p->external_group_id, "external-group-id");
            break;
        case TG_OPT_ATTR:
            rc = embed_attr(cli, optarg, &e->attrs[e->n_attrs]);
            if (rc == 0) {
                p->n_user_attributes = ++e->n_attrs;
            }
            break;
        case TG_OPT_SESSION_LENGTH:
            rc = e->have_session_length
                     ? cli_usage(cli, "--session-length given twice")
                     : embed_session_length(cli, optarg, &p->session_length);
            e->have_session_length = 1;
            break;
        case TG_OPT_TIMEZONE:
            rc = embed_once(cli, &p->user_timezone, "timezone");
            break;
        case TG_OPT_NO_FORCE_LOGOUT_LOGIN:
            p->force_logout_login = 0;
            break;
        case TG_OPT_SECRET_STDIN:
            e->secret_stdin = 1;
            break;
        case TG_OPT_SERVER:
            e->server = 1;
            break;
        default:
            rc = cli_opt_fail(cli, c, argv);
            break;
        }
        if (rc != 0) {
            return rc;
        }
    }
}

/* No operands, the three required options, --server or --secret-stdin. */
static int
embed_check_usage(tg_cli_t *cli, const tg_embed_cmd_t *e, int argc)
{
    const tg_embed_params_t *p = &e->p;

    /* Not quoted: "--secret VALUE" would be read as an abbreviation of
     * --secret-stdin followed by the secret itself. */
    if (optind < argc) {
        return cli_usage(cli,
                         "unexpected argument %d (embed-url takes options "
                         "only; the secret is never taken from the "
                         "command line)",
                         optind);
    }
    if (e->host == NULL || p->embed_path == NULL ||
        p->external_user_id == NULL) {
        return cli_usage(cli, "missing %s (see tokengate embed-url --help)",
                         e->host == NULL         ? "--host HOST"
                         : p->embed_path == NULL ? "--path /embed/..."
                                                 : "--user-id ID");
    }
    if (e->server && e->secret_stdin) {
        return cli_usage(cli, "--server and --secret-stdin exclude each other "
                              "(the server signs with its own secret)");
    }
    return 0;
}

/* Signing locally talks to no server: it needs no url, and no api unless
 * one was chosen (then it must be looker). */
static int
embed_check_config(tg_cli_t *cli, const tg_embed_cmd_t *e)
{
    if (cli->config_err != TG_OK && (e->server || !cli->url_missing)) {
        return cli_failf(cli, cli->config_err, "%s", cli->config_msg);
    }
    if (cli->cfg->api != TG_API_LOOKER && (e->server || cli->api_given)) {
        return cli_api_only(cli, "signed embedding is");
    }
    return 0;
}

static int
embed_check_params(tg_cli_t *cli, const tg_embed_cmd_t *e)
{
    tg_diag_t diag;
    tg_err_t err;

    tg_diag_clear(&diag);
    err = tg_embed_params_check(&e->p, &diag);
    return err == TG_OK ? 0 : cli_fail(cli, err, &diag);
}

/* Looker signs (POST /embed/sso_url) with the stored token of an admin. */
static int
embed_sign_by_server(tg_cli_t *cli, const tg_embed_cmd_t *e, char **url)
{
    tg_cli_token_t tok = {0};
    tg_client_t *cl = NULL;
    tg_err_t err;
    int rc;

    rc = cli_token_client_open(cli, &tok, &cl);
    if (rc == 0) {
        err = tg_client_embed_sso_url(cl, tok.value, &e->p, url);
        if (err != TG_OK) {
            rc = cli_client_fail(cli, cl, err);
        }
    }
    cli_token_release(&tok);
    tg_client_free(cl);
    return rc;
}

/* Signed here with the embed secret; *sts is the text that was signed. */
static int
embed_sign_locally(tg_cli_t *cli, const tg_embed_cmd_t *e, char **url,
                   char **sts)
{
    char *secret = NULL;
    tg_diag_t diag;
    tg_err_t err;
    int rc;

    rc = embed_secret(cli, e->secret_stdin, &secret);
    if (rc != 0) {
        return rc;
    }
    tg_diag_clear(&diag);
    err = tg_embed_sign(&e->p, secret, strlen(secret), url, sts, &diag);
    tg_secret_free(secret);
    return err == TG_OK ? 0 : cli_fail(cli, err, &diag);
}

/* The URL is the result: printed even with --quiet, alone on stdout.  It
 * works once, within minutes; it is never logged. */
static void
embed_print(tg_cli_t *cli, const tg_embed_cmd_t *e, const char *url,
            const char *sts)
{
    if (cli->json) {
        embed_show(cli, &e->p, url, sts, e->server);
    } else {
        fputs(url, stdout);
        fputc('\n', stdout);
    }
}

static void
embed_free(tg_embed_cmd_t *e)
{
    size_t i;

    for (i = 0; e->attrs != NULL && i < e->n_attrs; i++) {
        free((char *) e->attrs[i].key);
    }
    free(e->attrs);
    free(e->groups);
    free(e->models);
    free(e->perms);
}
