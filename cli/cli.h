/* SPDX-License-Identifier: MIT */
/*
 * cli.h - what the files of the tokengate command line share: the run
 * state, the output helpers (output.c), option parsing (options.c), secret
 * input (input.c), the token store (store.c) and the commands (cmd_*.c).
 *
 * Exit codes are tg_err_t values (TG_OK = 0 ... TG_INTERNAL), plus
 * TG_EXIT_USAGE for a bad command line.
 */
#ifndef TG_CLI_H
#define TG_CLI_H

#include <getopt.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <time.h>

#include <jansson.h>

#include "tokengate.h"

#if defined(__GNUC__)
#define TG_CLI_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define TG_CLI_PRINTF(a, b)
#endif

/* The exit code of a usage error (sysexits EX_USAGE). */
#define TG_EXIT_USAGE 64

/* Room for a time printed as "2026-11-26 10:15:00 UTC". */
#define TG_CLI_TIME_SIZE 32

/* A path we build (token file, directories). */
#define TG_CLI_PATH_MAX 4096

/* Loaded when neither --config nor TOKENGATE_CONFIG names a file. */
#define TG_CLI_DEFAULT_CONFIG "/etc/tokengate.conf"

/* The most options one command (or the global level) takes; embed-url has
 * 15. */
#define TG_CLI_OPTIONS_MAX 32

/* Who takes an option: bits of tg_cli_option_t.commands and the one bit of
 * tg_cli_command_t.options. */
#define TG_CLI_IN_GLOBAL (1u << 0) /* before the command name */
#define TG_CLI_IN_LOGIN (1u << 1)
#define TG_CLI_IN_SESSION (1u << 2)
#define TG_CLI_IN_SUDO (1u << 3)
#define TG_CLI_IN_EMBED_URL (1u << 4)

/* What getopt_long() returns for an option: an option with a letter (-q)
 * its letter, the others a key from TG_OPT_LONG_ONLY up, past any letter. */
typedef enum tg_cli_opt {
    TG_OPT_HELP = 'h',
    TG_OPT_OVERRIDE = 'o',
    TG_OPT_QUIET = 'q',
    TG_OPT_VERSION = 'V',
    TG_OPT_LONG_ONLY = 256,
    TG_OPT_CONFIG = TG_OPT_LONG_ONLY,
    TG_OPT_URL,
    TG_OPT_API,
    TG_OPT_JSON,
    TG_OPT_CLIENT_ID,
    TG_OPT_SECRET_FILE,
    TG_OPT_SECRET_STDIN,
    TG_OPT_PRINT_TOKEN,
    TG_OPT_WORKSPACE,
    TG_OPT_OUTPUT,
    TG_OPT_HOST,
    TG_OPT_PATH,
    TG_OPT_USER_ID,
    TG_OPT_FIRST_NAME,
    TG_OPT_LAST_NAME,
    TG_OPT_TIMEZONE,
    TG_OPT_PERMISSION,
    TG_OPT_MODEL,
    TG_OPT_GROUP_ID,
    TG_OPT_EXTERNAL_GROUP_ID,
    TG_OPT_ATTR,
    TG_OPT_SESSION_LENGTH,
    TG_OPT_NO_FORCE_LOGOUT_LOGIN,
    TG_OPT_SERVER
} tg_cli_opt_t;

/* One option of the command line, as getopt_long() and the help see it. */
typedef struct tg_cli_option {
    tg_cli_opt_t key;  /* a letter: -x is accepted too */
    const char *name;  /* --name; NULL for a letter only (-o) */
    const char *arg;   /* the value in the help ("FILE"); NULL: a flag */
    unsigned commands; /* TG_CLI_IN_* bits */
    const char *help;  /* lines separated by '\n'; NULL: described
                          together with the next row */
} tg_cli_option_t;

/* getopt_long()'s arguments for the options of one command. */
typedef struct tg_cli_getopt {
    struct option longopts[TG_CLI_OPTIONS_MAX + 1];
    char shortopts[2 * TG_CLI_OPTIONS_MAX + 3];
} tg_cli_getopt_t;

/* One run of the command line. */
typedef struct tg_cli {
    const char *command;     /* "login", ...; names errors */
    tg_config_t *cfg;        /* validated config; NULL for help/version */
    const char *config_path; /* the file loaded, or NULL */
    tg_err_t config_err;     /* why the config is unusable (check shows it) */
    char config_msg[512];
    int url_missing;     /* config_err is "url is not set" (embed-url can do
                            without it) */
    int api_given;       /* a file, --api or -o api= chose the API */
    int json;            /* --json */
    int quiet;           /* --quiet */
    int human_to_stderr; /* --print-token: stdout is for the token */

    json_t *out; /* the JSON object under construction */
    int failed;  /* an error has been recorded */
    int exit_code;
    const char *error_name; /* "TG_REJECTED", or "TG_USAGE" */
    char message[768];      /* the error, ready for a human */
    tg_diag_t diag;         /* detail of the recorded error */
} tg_cli_t;

/* A command: run with argv[0] = the command name; returns an exit code
 * after recording any error through cli_fail*(). */
typedef int (*tg_cli_cmd_fn)(tg_cli_t *cli, int argc, char **argv);

/* What a command needs of the configuration. */
typedef enum tg_cli_config_use {
    TG_CLI_CONFIG_NONE = 0, /* help, version: not loaded */
    TG_CLI_CONFIG_VALID,    /* loaded; the command runs only if it is valid */
    TG_CLI_CONFIG_OWN       /* loaded; the command runs anyway and decides
                               about cli->config_err (check, embed-url) */
} tg_cli_config_use_t;

/* Where the token in use came from. */
typedef struct tg_cli_token {
    char *value; /* secret; tg_secret_free */
    int from_file;
    char path[TG_CLI_PATH_MAX]; /* the token file (also when absent) */
    time_t expires_at;          /* 0 when unknown or from the environment */
} tg_cli_token_t;

typedef struct tg_cli_command {
    const char *name;
    tg_cli_cmd_fn run;
    tg_cli_config_use_t config;
    const char *summary; /* one line for the command list */
    const char *usage;   /* the help before the list of options */
    unsigned options;    /* its bit in tg_cli_options[].commands, or 0 */
    int help_column;     /* where the options' help starts */
    const char *notes;   /* the help after the list of options, or NULL */
} tg_cli_command_t;

/* main.c */
extern const tg_cli_command_t tg_cli_commands[];
const tg_cli_command_t *cli_find_command(const char *name);
void cli_print_global_help(FILE *fp);
int cli_print_command_help(tg_cli_t *cli, const tg_cli_command_t *cmd);

/* output.c: the result object and the human text. */
void cli_out_init(tg_cli_t *cli);
void cli_out_free(tg_cli_t *cli);
/* A line of human text (stdout, or stderr under --print-token); nothing
 * with --json or --quiet.  Callers pass sanitized strings. */
void cli_say(tg_cli_t *cli, const char *fmt, ...) TG_CLI_PRINTF(2, 3);
/* A warning on stderr (also under --quiet); in JSON, a "warnings" entry. */
void cli_warn(tg_cli_t *cli, const char *fmt, ...) TG_CLI_PRINTF(2, 3);
/* Result fields of the JSON object; strings are sanitized here. */
void cli_set_str(tg_cli_t *cli, const char *key, const char *value);
void cli_set_int(tg_cli_t *cli, const char *key, long long value);
void cli_set_bool(tg_cli_t *cli, const char *key, int value);
void cli_set_json(tg_cli_t *cli, const char *key, json_t *value); /* steals */
/* "label: value" for humans and key = value in JSON. */
void cli_field(tg_cli_t *cli, const char *key, const char *label,
               const char *value);
/* Record an error (the first one wins) and return its exit code. */
int cli_fail(tg_cli_t *cli, tg_err_t err, const tg_diag_t *diag);
int cli_failf(tg_cli_t *cli, tg_err_t err, const char *fmt, ...)
    TG_CLI_PRINTF(3, 4);
int cli_usage(tg_cli_t *cli, const char *fmt, ...) TG_CLI_PRINTF(2, 3);
/* Print the JSON object or the error; returns the exit code. */
int cli_finish(tg_cli_t *cli, int rc);

/* Copy text from outside (server, files, environment) for display: valid
 * UTF-8 is kept, control characters, bidi overrides and invalid bytes
 * become '?', and the copy is cut at size - 1 bytes with "...". */
void cli_sanitize(char *dst, size_t size, const char *src);
/* An option as typed, cut before any "=value" (it could be a secret). */
void cli_option_name(char *dst, size_t size, const char *arg);
/* cli_sanitize() into buf (NULL shows as ""); returns buf. */
const char *cli_clean(char *buf, size_t size, const char *s);
/* "2026-11-26 10:15:00 UTC", or "unknown" for 0. */
const char *cli_time(time_t t, char buf[TG_CLI_TIME_SIZE]);
/* The name of a flavor, "insight" or "looker". */
const char *cli_api_name(tg_api_t api);
/* The short name of a user for messages (not sanitized). */
const char *cli_who(const tg_identity_t *id);
/* The result fields of a token just obtained (login, sudo): user, id,
 * email, fingerprint (also written to fp) and expires_at. */
void cli_token_result(tg_cli_t *cli, const tg_identity_t *id, const char *token,
                      time_t expires, char fp[TG_FINGERPRINT_SIZE]);
/* --print-token: the token alone on stdout, or "token" in JSON. */
void cli_print_token(tg_cli_t *cli, const char *token);
/* The usage error for a feature of the other API flavor; what_is:
 * "sudo is", "REST API credentials are". */
int cli_api_only(tg_cli_t *cli, const char *what_is);

/* options.c: every option, and a command's own options and operands. */
extern const tg_cli_option_t tg_cli_options[];
/* The options `who` (one TG_CLI_IN_* bit) takes, for getopt_long(). */
void cli_getopt_init(tg_cli_getopt_t *g, unsigned who);
/* getopt_long() over them: the key of an option, ':' or '?' (then
 * cli_opt_fail()), or -1 after the last option. */
int cli_getopt(tg_cli_getopt_t *g, int argc, char **argv);
/* The help lines of the options `who` takes, their help at column. */
void cli_print_options(FILE *fp, unsigned who, int column);
/* A usage error for what getopt_long() returned (':' or '?'). */
int cli_opt_fail(tg_cli_t *cli, int c, char **argv);
/* A usage error when operands remain after the options. */
int cli_no_more_args(tg_cli_t *cli, int argc, char **argv);
/* For commands without options: a usage error for any option. */
int cli_no_options(tg_cli_t *cli, int argc, char **argv);

/* input.c: secrets, never from argv. */
/* Copy the variable, wipe and unset the original; NULL when absent (or
 * out of memory: *present tells them apart). */
char *cli_take_env(const char *name, int *present);
/* One line of fd without its newline; 0, -1 (read error) or -2 (longer
 * than max).  *out is a secret buffer. */
int cli_read_line(int fd, size_t max, char **out);
/* A secret from the first line of stdin; `what` names it in errors. */
int cli_secret_stdin(tg_cli_t *cli, const char *what, char **out);
/* login's client id and client secret, in their documented order. */
int cli_client_id(tg_cli_t *cli, const char *opt, char **out);
int cli_client_secret(tg_cli_t *cli, const char *secret_file, int secret_stdin,
                      char **out);

/* store.c: the token file and the client the token is sent with.  All
 * return 0 or an exit code recorded through cli_fail*(). */
int cli_token_path(tg_cli_t *cli, char *path, size_t size, int create);
int cli_token_save(tg_cli_t *cli, const char *path, const char *token,
                   time_t expires_at);
/* All of buf, through short writes and EINTR: 0, or -1 with errno. */
int cli_write_all(int fd, const char *buf, size_t len);
/* TOKENGATE_TOKEN, else the token file of this server and API; an expired
 * one only with allow_expired.  Release with cli_token_release(). */
int cli_token_load(tg_cli_t *cli, tg_cli_token_t *tok, int allow_expired);
void cli_token_release(tg_cli_token_t *tok);
int cli_client_open(tg_cli_t *cli, tg_client_t **cl);
/* cli_token_load() then cli_client_open(): what every command acting as
 * the logged-in user starts with; the caller releases both on any path. */
int cli_token_client_open(tg_cli_t *cli, tg_cli_token_t *tok, tg_client_t **cl);
/* Record the client's error detail. */
int cli_client_fail(tg_cli_t *cli, tg_client_t *cl, tg_err_t err);

/* The commands: cmd_token.c, cmd_account.c, cmd_embed.c, cmd_check.c;
 * help and version in main.c. */
int cmd_login(tg_cli_t *cli, int argc, char **argv);
int cmd_whoami(tg_cli_t *cli, int argc, char **argv);
int cmd_profile(tg_cli_t *cli, int argc, char **argv);
int cmd_logout(tg_cli_t *cli, int argc, char **argv);
int cmd_credentials(tg_cli_t *cli, int argc, char **argv);
int cmd_session(tg_cli_t *cli, int argc, char **argv);
int cmd_sudo(tg_cli_t *cli, int argc, char **argv);
int cmd_embed_url(tg_cli_t *cli, int argc, char **argv);
int cmd_check(tg_cli_t *cli, int argc, char **argv);
int cmd_help(tg_cli_t *cli, int argc, char **argv);
int cmd_version(tg_cli_t *cli, int argc, char **argv);

#endif /* TG_CLI_H */
