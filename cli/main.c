/* SPDX-License-Identifier: MIT */
/*
 * main.c - the tokengate command line: process hardening, global options,
 * the configuration, the command table and the help texts.
 *
 *   tokengate [--config FILE] [--url URL] [--api insight|looker]
 *             [-o KEY=VALUE]... [--json] [--quiet] COMMAND [ARGS]
 */
#include "cli.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

/* Where the help of the global options starts. */
#define TG_CLI_GLOBAL_HELP_COLUMN 22
/* -o options kept until the config file is loaded. */
#define TG_CLI_OVERRIDES_MAX 64
/* The allocation header of the wiping allocator: keeps max_align_t. */
#define TG_WIPE_HEADER 16

typedef struct tg_cli_options {
    const char *config;
    const char *url;
    const char *api;
    const char *overrides[TG_CLI_OVERRIDES_MAX];
    int n_overrides;
} tg_cli_options_t;

static void *tg_wipe_malloc(size_t n);
static void tg_wipe_free(void *p);
static void *tg_wipe_realloc(void *p, size_t n);
static void *tg_wipe_calloc(size_t nmemb, size_t size);
static char *tg_wipe_strdup(const char *s);
static void *tg_wipe_crypto_malloc(size_t n, const char *file, int line);
static void *tg_wipe_crypto_realloc(void *p, size_t n, const char *file,
                                    int line);
static void tg_wipe_crypto_free(void *p, const char *file, int line);
static void cli_harden(void);
static void cli_write_command_help(FILE *fp, const tg_cli_command_t *cmd);
static int cli_wants_help(int argc, char **argv);
static void cli_config_explain(tg_cli_t *cli, tg_diag_t *diag, const char *path,
                               const char *origin, int default_err);
static int cli_load_config(tg_cli_t *cli, const tg_cli_options_t *opts);

const tg_cli_command_t tg_cli_commands[] = {
    {"login", cmd_login, TG_CLI_CONFIG_VALID,
     "get a token for a client id and secret, and store it",
     "Usage: tokengate login [--client-id ID] [--secret-file FILE]\n"
     "                       [--secret-stdin] [--print-token]\n"
     "\n"
     "Exchange a client id and secret for a token, validate it, check the\n"
     "authorization rules and store it in the token file.\n",
     TG_CLI_IN_LOGIN, 22,
     "The secret is taken from TOKENGATE_SECRET, --secret-file, "
     "--secret-stdin,\n"
     "client_secret_file, or a prompt on the terminal, in that order; "
     "never\n"
     "from the command line.\n"},
    {"whoami", cmd_whoami, TG_CLI_CONFIG_VALID,
     "validate the token, show its identity and check the rules",
     "Usage: tokengate whoami\n"
     "\n"
     "Validate the token (TOKENGATE_TOKEN or the token file), show who it\n"
     "belongs to, and apply the authorization rules of the configuration.\n"
     "Exits with 5 (forbidden) when the rules deny the user.\n",
     0, 0, NULL},
    {"profile", cmd_profile, TG_CLI_CONFIG_VALID,
     "show the full profile of the token's user",
     "Usage: tokengate profile\n"
     "\n"
     "Show the full profile of the token's user (insight: auth/currentuser,\n"
     "with authorities; looker: GET /user).\n",
     0, 0, NULL},
    {"logout", cmd_logout, TG_CLI_CONFIG_VALID,
     "invalidate the token (looker) and remove the token file",
     "Usage: tokengate logout\n"
     "\n"
     "looker: invalidate the token on the server, then remove the token\n"
     "file.  insight has no logout call: the token file is removed and the\n"
     "token stays valid until it expires.\n",
     0, 0, NULL},
    {"credentials", cmd_credentials, TG_CLI_CONFIG_VALID,
     "show, renew or revoke your REST API credentials (insight)",
     "Usage: tokengate credentials show|new|revoke\n"
     "\n"
     "insight only.  show: the id and creation date of your current REST\n"
     "API credentials.  new: generate a new client id and secret, printed\n"
     "once (the previous pair is revoked).  revoke: revoke them.\n",
     0, 0, NULL},
    {"session", cmd_session, TG_CLI_CONFIG_VALID,
     "show or switch the API session workspace (looker)",
     "Usage: tokengate session [--workspace NAME]\n"
     "\n"
     "looker only.  Show the API session of the token, or switch its\n"
     "workspace (production or dev) with --workspace.\n",
     TG_CLI_IN_SESSION, 20, NULL},
    {"sudo", cmd_sudo, TG_CLI_CONFIG_VALID,
     "get a token acting as another user (looker)",
     "Usage: tokengate sudo USER_ID (--output FILE | --print-token)\n"
     "\n"
     "looker only, for admins.  Get a token that acts as the user USER_ID\n"
     "(digits), show that user, and write the token to FILE (mode 0600;\n"
     "a symbolic link is refused) or print it on stdout.\n",
     TG_CLI_IN_SUDO, 18, NULL},
    {"embed-url", cmd_embed_url, TG_CLI_CONFIG_OWN,
     "sign a Looker embed URL, locally or by the server (looker)",
     "Usage: tokengate embed-url --host HOST --path /embed/... --user-id ID\n"
     "           [--first-name NAME] [--last-name NAME] [--permission P]...\n"
     "           [--model M]... [--group-id G]... [--external-group-id G]\n"
     "           [--attr KEY=VALUE]... [--session-length S] [--timezone Z]\n"
     "           [--no-force-logout-login] [--secret-stdin | --server]\n"
     "\n"
     "looker only.  Print a signed embed URL for an iframe: it logs the\n"
     "external user ID in with the given grants, works once, and only\n"
     "within 5 minutes.  Treat it like a password.\n",
     TG_CLI_IN_EMBED_URL, 23,
     "Needs group ids, or models and permissions.  The secret is never\n"
     "taken from the command line.  With --json: the URL and every\n"
     "parameter, and the signed text when signed locally.\n"},
    {"check", cmd_check, TG_CLI_CONFIG_OWN,
     "diagnose the configuration and the way to the server",
     "Usage: tokengate check\n"
     "\n"
     "Check, one line per step: the configuration, DNS, the TCP "
     "connection,\n"
     "TLS, the HTTP API (an unauthenticated request that must answer 401),\n"
     "the clock skew, and whether syslog (/dev/log, where the PAM module\n"
     "logs) accepts messages.  Sends no token and no secret.  Exits 0 when\n"
     "every step is OK or WARN, else with the code of the first FAIL.\n",
     0, 0, NULL},
    {"help", cmd_help, TG_CLI_CONFIG_NONE, "show help for a command",
     "Usage: tokengate help [COMMAND]\n", 0, 0, NULL},
    {"version", cmd_version, TG_CLI_CONFIG_NONE, "show the version",
     "Usage: tokengate version\n", 0, 0, NULL},
    {NULL, NULL, TG_CLI_CONFIG_NONE, NULL, NULL, 0, 0, NULL},
};

/* ---------------------------------------------------------------------- */
/* A wiping allocator for the libraries we use                            */
/* ---------------------------------------------------------------------- */

/*
 * jansson, libcurl and OpenSSL keep copies of tokens and secrets (decoded
 * JSON, header lines, TLS records) and free them without wiping.  In our
 * own process we may replace their allocators (never in a host process):
 * each block remembers its size and is wiped when freed.
 */
static void *
tg_wipe_malloc(size_t n)
{
    unsigned char *p;

    if (n > SIZE_MAX - TG_WIPE_HEADER) {
        return NULL;
    }
    p = malloc(n + TG_WIPE_HEADER);
    if (p == NULL) {
        return NULL;
    }
    memcpy(p, &n, sizeof(n));
    return p + TG_WIPE_HEADER;
}

static void
tg_wipe_free(void *ptr)
{
    unsigned char *p;
    size_t n;

    if (ptr == NULL) {
        return;
    }
    p = (unsigned char *) ptr - TG_WIPE_HEADER;
    memcpy(&n, p, sizeof(n));
    explicit_bzero(p, n + TG_WIPE_HEADER);
    free(p);
}

static void *
tg_wipe_realloc(void *ptr, size_t n)
{
    unsigned char *old;
    size_t old_n;
    void *grown;

    if (ptr == NULL) {
        return tg_wipe_malloc(n);
    }
    old = (unsigned char *) ptr - TG_WIPE_HEADER;
    memcpy(&old_n, old, sizeof(old_n));
    grown = tg_wipe_malloc(n);
    if (grown == NULL) {
        return NULL;
    }
    memcpy(grown, ptr, old_n < n ? old_n : n);
    tg_wipe_free(ptr);
    return grown;
}

static void *
tg_wipe_calloc(size_t nmemb, size_t size)
{
    void *p;

    if (size != 0 && nmemb > SIZE_MAX / size) {
        return NULL;
    }
    p = tg_wipe_malloc(nmemb * size);
    if (p != NULL) {
        memset(p, 0, nmemb * size);
    }
    return p;
}

static char *
tg_wipe_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = tg_wipe_malloc(n);

    if (p != NULL) {
        memcpy(p, s, n);
    }
    return p;
}

static void *
tg_wipe_crypto_malloc(size_t n, const char *file, int line)
{
    (void) file;
    (void) line;
    return tg_wipe_malloc(n);
}

static void *
tg_wipe_crypto_realloc(void *p, size_t n, const char *file, int line)
{
    (void) file;
    (void) line;
    return tg_wipe_realloc(p, n);
}

static void
tg_wipe_crypto_free(void *p, const char *file, int line)
{
    (void) file;
    (void) line;
    tg_wipe_free(p);
}

/* Before any other work: no core dumps (they would hold the token), files
 * we create are ours only, a closed pipe is an error not a signal, and
 * library allocations are wiped. */
static void
cli_harden(void)
{
    (void) prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    umask(077);
    /* libcurl would write the TLS session keys there, which decrypt the
     * tokens and secrets on the wire; it reads it at global init. */
    (void) unsetenv("SSLKEYLOGFILE");
    signal(SIGPIPE, SIG_IGN);
    (void) CRYPTO_set_mem_functions(
        tg_wipe_crypto_malloc, tg_wipe_crypto_realloc, tg_wipe_crypto_free);
    json_set_alloc_funcs(tg_wipe_malloc, tg_wipe_free);
    /* Runs before libtokengate's own curl_global_init (which then only
     * counts a reference), so curl uses the wiping allocator too. */
    (void) curl_global_init_mem(CURL_GLOBAL_DEFAULT, tg_wipe_malloc,
                                tg_wipe_free, tg_wipe_realloc, tg_wipe_strdup,
                                tg_wipe_calloc);
}

/* ---------------------------------------------------------------------- */
/* Commands and help                                                      */
/* ---------------------------------------------------------------------- */

const tg_cli_command_t *
cli_find_command(const char *name)
{
    const tg_cli_command_t *c;

    for (c = tg_cli_commands; c->name != NULL; c++) {
        if (strcmp(c->name, name) == 0) {
            return c;
        }
    }
    return NULL;
}

void
cli_print_global_help(FILE *fp)
{
    const tg_cli_command_t *c;
    int e;

    fprintf(fp,
            "Usage: tokengate [--config FILE] [--url URL] "
            "[--api insight|looker]\n"
            "                 [-o KEY=VALUE]... [--json] [--quiet] "
            "COMMAND [ARGS]\n"
            "\n"
            "Log in to an Xpress Insight or Looker authentication service,\n"
            "inspect tokens and diagnose the connection.\n"
            "\n"
            "Global options:\n");
    cli_print_options(fp, TG_CLI_IN_GLOBAL, TG_CLI_GLOBAL_HELP_COLUMN);
    fprintf(fp, "\nCommands:\n");
    for (c = tg_cli_commands; c->name != NULL; c++) {
        fprintf(fp, "  %-12s %s\n", c->name, c->summary);
    }
    fprintf(fp, "\nExit status:\n");
    for (e = 0; e < TG_ERR_MAX; e++) {
        fprintf(fp, "  %2d  %-17s %s\n", e, tg_err_name((tg_err_t) e),
                tg_strerror((tg_err_t) e));
    }
    fprintf(fp, "  %2d  %-17s %s\n", TG_EXIT_USAGE, "usage",
            "bad command or option");
    fprintf(fp, "\nSee tokengate(1).\n");
}

/* The usage, the command's options from the option table, the notes. */
static void
cli_write_command_help(FILE *fp, const tg_cli_command_t *cmd)
{
    fputs(cmd->usage, fp);
    if (cmd->options != 0) {
        fputc('\n', fp);
        cli_print_options(fp, cmd->options, cmd->help_column);
    }
    if (cmd->notes != NULL) {
        fputc('\n', fp);
        fputs(cmd->notes, fp);
    }
}

int
cli_print_command_help(tg_cli_t *cli, const tg_cli_command_t *cmd)
{
    char *text = NULL;
    size_t len = 0;
    FILE *fp;

    if (!cli->json) {
        cli_write_command_help(stdout, cmd);
        return 0;
    }
    fp = open_memstream(&text, &len);
    if (fp == NULL) {
        return cli_failf(cli, TG_NOMEM, "out of memory");
    }
    cli_write_command_help(fp, cmd);
    fclose(fp);
    cli_set_str(cli, "help", text);
    free(text);
    return 0;
}

int
cmd_help(tg_cli_t *cli, int argc, char **argv)
{
    const tg_cli_command_t *cmd;
    char name[64];
    char *text = NULL;
    size_t len = 0;
    FILE *fp;

    if (argc > 2) {
        return cli_usage(cli, "help takes at most one command");
    }
    if (argc == 2) {
        cmd = cli_find_command(argv[1]);
        if (cmd == NULL) {
            cli_sanitize(name, sizeof(name), argv[1]);
            return cli_usage(cli, "unknown command %s (see tokengate help)",
                             name);
        }
        return cli_print_command_help(cli, cmd);
    }
    if (!cli->json) {
        cli_print_global_help(stdout);
        return 0;
    }
    fp = open_memstream(&text, &len);
    if (fp == NULL) {
        return cli_failf(cli, TG_NOMEM, "out of memory");
    }
    cli_print_global_help(fp);
    fclose(fp);
    cli_set_str(cli, "help", text);
    free(text);
    return 0;
}

int
cmd_version(tg_cli_t *cli, int argc, char **argv)
{
    curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);

    (void) argv;
    if (argc > 1) {
        return cli_usage(cli, "version takes no arguments");
    }
    cli_set_str(cli, "version", PACKAGE_VERSION);
    cli_set_str(cli, "libcurl", v != NULL ? v->version : "");
    cli_set_str(cli, "jansson", JANSSON_VERSION);
    cli_say(cli, "tokengate %s (libcurl %s, jansson %s)", PACKAGE_VERSION,
            v != NULL ? v->version : "?", JANSSON_VERSION);
    return 0;
}

/* Is --help or -h among the command's arguments (before "--")? */
static int
cli_wants_help(int argc, char **argv)
{
    int i;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            return 0;
        }
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            return 1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------- */
/* Configuration                                                          */
/* ---------------------------------------------------------------------- */

/*
 * Say where the configuration came from when it is unusable: which file was
 * read (and by which option), or why none was, and what to do.  default_err
 * is why TG_CLI_DEFAULT_CONFIG was not read (ENOENT: there is none; 0: it
 * was, or it was not looked for).
 */
static void
cli_config_explain(tg_cli_t *cli, tg_diag_t *diag, const char *path,
                   const char *origin, int default_err)
{
    size_t n = strlen(diag->message);
    char *end = diag->message + n;
    size_t room = sizeof(diag->message) - n;

    if (!cli->url_missing) {
        if (default_err != 0 && default_err != ENOENT) {
            snprintf(end, room,
                     " (" TG_CLI_DEFAULT_CONFIG " is not readable by you; "
                     "give your own with --config FILE or TOKENGATE_CONFIG, "
                     "or --url)");
        }
        return;
    }
    if (path != NULL) {
        snprintf(end, room,
                 ": %s%s%s%s has no url line; add one (url = https://HOST) "
                 "or use --url URL",
                 path, origin != NULL ? " (named by " : "",
                 origin != NULL ? origin : "", origin != NULL ? ")" : "");
    } else if (default_err != ENOENT) {
        snprintf(end, room,
                 ": " TG_CLI_DEFAULT_CONFIG " is not readable by you (%s); "
                 "give your own file with --config FILE or "
                 "TOKENGATE_CONFIG, or use --url URL",
                 strerror(default_err));
    } else {
        snprintf(end, room,
                 ": no configuration file was read (no --config, no "
                 "TOKENGATE_CONFIG, and " TG_CLI_DEFAULT_CONFIG
                 " does not exist); use --url URL (and --api looker for "
                 "Looker), or --config FILE");
    }
}

/* Load the file, apply the command line, validate.  Errors are kept in
 * cli->config_err / config_msg (check reports them as a step). */
static int
cli_load_config(tg_cli_t *cli, const tg_cli_options_t *opts)
{
    tg_diag_t diag;
    const char *path = opts->config, *origin = "--config";
    struct stat st;
    tg_err_t err = TG_OK;
    char key[128];
    const char *eq;
    size_t n;
    int i, default_err = 0;

    tg_diag_clear(&diag);
    cli->cfg = tg_config_new();
    if (cli->cfg == NULL) {
        err = TG_NOMEM;
        snprintf(diag.message, sizeof(diag.message), "out of memory");
        goto out;
    }
    if (path == NULL) {
        path = getenv("TOKENGATE_CONFIG");
        origin = "TOKENGATE_CONFIG";
        if (path != NULL && path[0] == '\0') {
            path = NULL;
        }
    }
    if (path == NULL) {
        /* The packaged file is root-only (0600): other users run with
         * their own file or options, and are told so if that falls short. */
        origin = NULL;
        if (lstat(TG_CLI_DEFAULT_CONFIG, &st) != 0) {
            default_err = errno;
        } else if (access(TG_CLI_DEFAULT_CONFIG, R_OK) == 0) {
            path = TG_CLI_DEFAULT_CONFIG;
        } else {
            default_err = errno;
        }
    }
    if (path != NULL) {
        cli->config_path = path;
        err = tg_config_load_file(cli->cfg, path, &diag);
        if (err != TG_OK) {
            n = strlen(diag.message);
            if (origin != NULL) {
                snprintf(diag.message + n, sizeof(diag.message) - n,
                         " (the file named by %s)", origin);
            }
            goto out;
        }
        cli->api_given = 1;
    }
    if (opts->api != NULL) {
        cli->api_given = 1;
        err = tg_config_set(cli->cfg, "api", opts->api, "command line", &diag);
        if (err != TG_OK) {
            goto out;
        }
    }
    if (opts->url != NULL) {
        err = tg_config_set(cli->cfg, "url", opts->url, "command line", &diag);
        if (err != TG_OK) {
            goto out;
        }
    }
    for (i = 0; i < opts->n_overrides; i++) {
        eq = strchr(opts->overrides[i], '=');
        n = (size_t) (eq - opts->overrides[i]);
        if (n >= sizeof(key)) {
            n = sizeof(key) - 1;
        }
        memcpy(key, opts->overrides[i], n);
        key[n] = '\0';
        if (strcmp(key, "api") == 0) {
            cli->api_given = 1;
        }
        err = tg_config_set(cli->cfg, key, eq + 1, "command line", &diag);
        if (err != TG_OK) {
            goto out;
        }
    }
    err = tg_config_validate(cli->cfg, &diag);
    if (err != TG_OK) {
        cli->url_missing = cli->cfg->url == NULL || cli->cfg->url[0] == '\0';
        cli_config_explain(cli, &diag, path, origin, default_err);
    }
out:
    if (err != TG_OK) {
        if (diag.message[0] == '\0') {
            snprintf(diag.message, sizeof(diag.message), "%s",
                     tg_strerror(err));
        }
        cli->config_err = err;
        cli_sanitize(cli->config_msg, sizeof(cli->config_msg), diag.message);
    }
    return err;
}

/* ---------------------------------------------------------------------- */
/* main                                                                   */
/* ---------------------------------------------------------------------- */

int
main(int argc, char **argv)
{
    tg_cli_options_t opts;
    tg_cli_getopt_t g;
    tg_cli_t cli;
    const tg_cli_command_t *cmd;
    char name[128];
    int c, rc = 0, version = 0, help = 0;

    cli_harden();
    memset(&opts, 0, sizeof(opts));
    memset(&cli, 0, sizeof(cli));
    cli_out_init(&cli);

    opterr = 0;
    cli_getopt_init(&g, TG_CLI_IN_GLOBAL);
    for (;;) {
        c = cli_getopt(&g, argc, argv);
        if (c == -1) {
            break;
        }
        switch (c) {
        case TG_OPT_CONFIG:
            opts.config = optarg;
            break;
        case TG_OPT_URL:
            opts.url = optarg;
            break;
        case TG_OPT_API:
            opts.api = optarg;
            break;
        case TG_OPT_OVERRIDE:
            if (strchr(optarg, '=') == NULL || optarg[0] == '=') {
                rc = cli_usage(&cli, "-o needs KEY=VALUE");
                goto out;
            }
            if (opts.n_overrides >= TG_CLI_OVERRIDES_MAX) {
                rc = cli_usage(&cli, "too many -o options (at most %d)",
                               TG_CLI_OVERRIDES_MAX);
                goto out;
            }
            opts.overrides[opts.n_overrides++] = optarg;
            break;
        case TG_OPT_JSON:
            cli.json = 1;
            break;
        case TG_OPT_QUIET:
            cli.quiet = 1;
            break;
        case TG_OPT_HELP:
            help = 1;
            break;
        case TG_OPT_VERSION:
            version = 1;
            break;
        default:
            rc = cli_opt_fail(&cli, c, argv);
            goto out;
        }
    }
    if (help) {
        rc = cmd_help(&cli, 1, argv);
        goto out;
    }
    if (version) {
        cli.command = "version";
        rc = cmd_version(&cli, 1, argv);
        goto out;
    }
    if (optind >= argc) {
        if (!cli.json) {
            cli_print_global_help(stderr);
        }
        rc = cli_usage(&cli, "no command given (see tokengate help)");
        goto out;
    }
    cmd = cli_find_command(argv[optind]);
    if (cmd == NULL) {
        cli_sanitize(name, sizeof(name), argv[optind]);
        rc = cli_usage(&cli, "unknown command %s (see tokengate help)", name);
        goto out;
    }
    cli.command = cmd->name;
    argc -= optind;
    argv += optind;
    if (cli_wants_help(argc, argv)) {
        rc = cli_print_command_help(&cli, cmd);
        goto out;
    }
    if (cmd->config != TG_CLI_CONFIG_NONE &&
        cli_load_config(&cli, &opts) != TG_OK &&
        cmd->config != TG_CLI_CONFIG_OWN) {
        rc = cli_failf(&cli, cli.config_err, "%s", cli.config_msg);
        goto out;
    }
    optind = 0; /* glibc: restart getopt for the command's own options */
    rc = cmd->run(&cli, argc, argv);
out:
    rc = cli_finish(&cli, rc);
    cli_out_free(&cli);
    tg_config_free(cli.cfg);
    return rc;
}
