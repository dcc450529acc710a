/* SPDX-License-Identifier: MIT */
/*
 * options.c - every option of the command line in one table, and what is
 * made from it: getopt_long()'s long options and short-option string, the
 * option lines of the help, and which commands take each option.  Also the
 * usage errors for what getopt_long() refuses and for stray operands.
 * (--help after a command is handled in main.c before the command runs.)
 */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

/* The width of a help line. */
#define TG_CLI_HELP_WIDTH 80
/* Room for the option part of a help line ("--first-name NAME, ..."). */
#define TG_CLI_SPEC_MAX 256

static size_t option_spec(const tg_cli_option_t *o, char *buf, size_t size);

/*
 * Rows in the order of the help.  An option that two commands take with
 * different help has a row for each.  TG_CLI_IN_GLOBAL options come before
 * the command name; a letter key (-o) makes a short option.
 */
const tg_cli_option_t tg_cli_options[] = {
    {TG_OPT_CONFIG, "config", "FILE", TG_CLI_IN_GLOBAL,
     "the configuration file (default: $TOKENGATE_CONFIG,\n"
     "else " TG_CLI_DEFAULT_CONFIG " when it exists)"},
    {TG_OPT_URL, "url", "URL", TG_CLI_IN_GLOBAL,
     "the server's base URL (config key url)"},
    {TG_OPT_API, "api", "insight|looker", TG_CLI_IN_GLOBAL,
     "the API flavor (config key api)"},
    {TG_OPT_OVERRIDE, NULL, "KEY=VALUE", TG_CLI_IN_GLOBAL,
     "set any configuration key; repeatable"},
    {TG_OPT_JSON, "json", NULL, TG_CLI_IN_GLOBAL,
     "print one JSON object on stdout"},
    {TG_OPT_QUIET, "quiet", NULL, TG_CLI_IN_GLOBAL, "print nothing on success"},
    {TG_OPT_HELP, "help", NULL, TG_CLI_IN_GLOBAL,
     "show this help (also COMMAND --help)"},
    {TG_OPT_VERSION, "version", NULL, TG_CLI_IN_GLOBAL, "show the version"},

    {TG_OPT_CLIENT_ID, "client-id", "ID", TG_CLI_IN_LOGIN,
     "the client id (default: client_id, else a prompt)"},
    {TG_OPT_SECRET_FILE, "secret-file", "FILE", TG_CLI_IN_LOGIN,
     "read the secret from FILE (owner-only)"},
    {TG_OPT_SECRET_STDIN, "secret-stdin", NULL, TG_CLI_IN_LOGIN,
     "read the secret from the first line of stdin"},
    {TG_OPT_PRINT_TOKEN, "print-token", NULL, TG_CLI_IN_LOGIN,
     "also print the raw token alone on stdout\n"
     "(the other text then goes to stderr)"},

    {TG_OPT_WORKSPACE, "workspace", "NAME", TG_CLI_IN_SESSION,
     "switch the session to this workspace (production or dev)"},

    {TG_OPT_OUTPUT, "output", "FILE", TG_CLI_IN_SUDO,
     "write the token to FILE"},
    {TG_OPT_PRINT_TOKEN, "print-token", NULL, TG_CLI_IN_SUDO,
     "print the token alone on stdout"},

    {TG_OPT_HOST, "host", "HOST", TG_CLI_IN_EMBED_URL,
     "HOST[:PORT] as the browser sees Looker (https),\n"
     "or https://HOST[:PORT], or http://HOST:PORT\n"
     "for a loopback host (the devserver)"},
    {TG_OPT_PATH, "path", "PATH", TG_CLI_IN_EMBED_URL,
     "what to embed: /embed/dashboards/42, may carry\n"
     "?embed_domain=...&sdk=2"},
    {TG_OPT_USER_ID, "user-id", "ID", TG_CLI_IN_EMBED_URL,
     "the external user id (unique per user)"},
    {TG_OPT_FIRST_NAME, "first-name", "NAME", TG_CLI_IN_EMBED_URL, NULL},
    {TG_OPT_LAST_NAME, "last-name", "NAME", TG_CLI_IN_EMBED_URL, NULL},
    {TG_OPT_TIMEZONE, "timezone", "ZONE", TG_CLI_IN_EMBED_URL,
     "shown by Looker (not signed)"},
    {TG_OPT_PERMISSION, "permission", "P", TG_CLI_IN_EMBED_URL,
     "an embed permission (access_data, see_looks,\n"
     "...); repeatable"},
    {TG_OPT_MODEL, "model", "M", TG_CLI_IN_EMBED_URL,
     "a LookML model; repeatable"},
    {TG_OPT_GROUP_ID, "group-id", "G", TG_CLI_IN_EMBED_URL,
     "a Looker group id; repeatable"},
    {TG_OPT_EXTERNAL_GROUP_ID, "external-group-id", "G", TG_CLI_IN_EMBED_URL,
     "the user's group in your application"},
    {TG_OPT_ATTR, "attr", "KEY=VALUE", TG_CLI_IN_EMBED_URL,
     "a user attribute; repeatable"},
    {TG_OPT_SESSION_LENGTH, "session-length", "S", TG_CLI_IN_EMBED_URL,
     "seconds, 0 to 2592000 (default 300)"},
    {TG_OPT_NO_FORCE_LOGOUT_LOGIN, "no-force-logout-login", NULL,
     TG_CLI_IN_EMBED_URL, "keep a Looker user already logged in"},
    {TG_OPT_SECRET_STDIN, "secret-stdin", NULL, TG_CLI_IN_EMBED_URL,
     "read the embed secret from the first line of\n"
     "stdin (default: embed_secret_file)"},
    {TG_OPT_SERVER, "server", NULL, TG_CLI_IN_EMBED_URL,
     "have Looker sign (POST /embed/sso_url) with the\n"
     "stored token of an admin (see login); no secret"},

    {0, NULL, NULL, 0, NULL},
};

/* ---------------------------------------------------------------------- */
/* Parsing                                                                */
/* ---------------------------------------------------------------------- */

/* The global options stop at the command name ("+"); a command's options
 * may come after its operands.  ':' first: a missing value is ':'. */
void
cli_getopt_init(tg_cli_getopt_t *g, unsigned who)
{
    const tg_cli_option_t *o;
    size_t n = 0, s = 0;

    memset(g, 0, sizeof(*g));
    if (who == TG_CLI_IN_GLOBAL) {
        g->shortopts[s++] = '+';
    }
    g->shortopts[s++] = ':';
    for (o = tg_cli_options; o->key != 0 && n < TG_CLI_OPTIONS_MAX; o++) {
        if ((o->commands & who) == 0) {
            continue;
        }
        if (o->name != NULL) {
            g->longopts[n].name = o->name;
            g->longopts[n].has_arg =
                o->arg != NULL ? required_argument : no_argument;
            g->longopts[n].val = (int) o->key;
            n++;
        }
        if (o->key < TG_OPT_LONG_ONLY) {
            g->shortopts[s++] = (char) o->key;
            if (o->arg != NULL) {
                g->shortopts[s++] = ':';
            }
        }
    }
}

int
cli_getopt(tg_cli_getopt_t *g, int argc, char **argv)
{
    return getopt_long(argc, argv, g->shortopts, g->longopts, NULL);
}

/* A usage error for what getopt_long() refused.  Before the command name
 * (cli->command still NULL) the hint is the global help. */
int
cli_opt_fail(tg_cli_t *cli, int c, char **argv)
{
    char name[128], see[96];

    snprintf(see, sizeof(see), "see tokengate %s%s--help",
             cli->command != NULL ? cli->command : "",
             cli->command != NULL ? " " : "");
    /* argv[optind - 1] is the option as typed for a long option and for a
     * short one that ends its argument ("-o" without a value). */
    cli_option_name(name, sizeof(name), argv[optind - 1]);
    if (c == ':') {
        return cli_usage(cli, "option %s needs a value", name);
    }
    /* Only a long option given "=VALUE" it does not take sets optopt to a
     * key past the letters: there is no letter to show. */
    if (optopt >= TG_OPT_LONG_ONLY) {
        return cli_usage(cli, "option %s takes no value (%s)", name, see);
    }
    if (optopt != 0) {
        return cli_usage(cli, "unknown option -%c (%s)",
                         optopt > 0x20 && optopt < 0x7f ? optopt : '?', see);
    }
    return cli_usage(cli, "unknown option %s (%s)", name, see);
}

int
cli_no_more_args(tg_cli_t *cli, int argc, char **argv)
{
    char arg[64];

    if (optind < argc) {
        cli_sanitize(arg, sizeof(arg), argv[optind]);
        return cli_usage(cli,
                         "unexpected argument %s (see tokengate %s "
                         "--help)",
                         arg, cli->command);
    }
    return 0;
}

/* For commands without options: only --help, handled in main.c. */
int
cli_no_options(tg_cli_t *cli, int argc, char **argv)
{
    tg_cli_getopt_t g;
    int c;

    cli_getopt_init(&g, 0);
    c = cli_getopt(&g, argc, argv);
    return c == -1 ? 0 : cli_opt_fail(cli, c, argv);
}

/* ---------------------------------------------------------------------- */
/* Help                                                                   */
/* ---------------------------------------------------------------------- */

/* "-q, --quiet", "--config FILE", "-o KEY=VALUE"; returns its length. */
static size_t
option_spec(const tg_cli_option_t *o, char *buf, size_t size)
{
    int n;

    if (o->key < TG_OPT_LONG_ONLY && o->name != NULL) {
        n = snprintf(buf, size, "-%c, --%s", (char) o->key, o->name);
    } else if (o->key < TG_OPT_LONG_ONLY) {
        n = snprintf(buf, size, "-%c", (char) o->key);
    } else {
        n = snprintf(buf, size, "--%s", o->name);
    }
    if (n >= 0 && (size_t) n < size && o->arg != NULL) {
        n += snprintf(buf + n, size - (size_t) n, " %s", o->arg);
    }
    return n < 0 ? 0 : strnlen(buf, size);
}

/*
 * "  --option ARG" and its help from column on; when the option reaches
 * the column, the help follows two spaces after it if its first line still
 * fits the width, else on the next line.  Rows without help are listed
 * with the next row ("--first-name NAME, --last-name NAME, ...").
 */
void
cli_print_options(FILE *fp, unsigned who, int column)
{
    const tg_cli_option_t *o;
    const char *line, *nl;
    char spec[TG_CLI_SPEC_MAX];
    size_t len = 0, first;

    for (o = tg_cli_options; o->key != 0; o++) {
        if ((o->commands & who) == 0) {
            continue;
        }
        if (len > 0 && len < sizeof(spec) - 2) {
            memcpy(spec + len, ", ", 3);
            len += 2;
        }
        len += option_spec(o, spec + len, sizeof(spec) - len);
        if (o->help == NULL) {
            continue;
        }
        first = strcspn(o->help, "\n");
        if (2 + len + 2 <= (size_t) column) {
            fprintf(fp, "  %-*s", column - 2, spec);
        } else if (2 + len + 2 + first <= TG_CLI_HELP_WIDTH) {
            fprintf(fp, "  %s  ", spec);
        } else {
            fprintf(fp, "  %s\n%*s", spec, column, "");
        }
        for (line = o->help;; line = nl + 1) {
            nl = strchr(line, '\n');
            if (nl == NULL) {
                fprintf(fp, "%s\n", line);
                break;
            }
            fprintf(fp, "%.*s\n%*s", (int) (nl - line), line, column, "");
        }
        len = 0;
    }
}
