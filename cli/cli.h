/* SPDX-License-Identifier: MIT */
/*
 * cli.h - what the files of the tokengate command line share: the run
 * state, the output helpers (output.c) and the commands (commands.c).
 *
 * Exit codes are tg_err_t values (TG_OK = 0 ... TG_INTERNAL), plus
 * TG_EXIT_USAGE for a bad command line.
 */
#ifndef TG_CLI_H
#define TG_CLI_H

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

typedef struct tg_cli_command {
    const char *name;
    tg_cli_cmd_fn run;
    tg_cli_config_use_t config;
    const char *summary; /* one line for the command list */
    const char *usage;   /* the full help of the command */
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
/* "2026-11-26 10:15:00 UTC", or "unknown" for 0. */
const char *cli_time(time_t t, char buf[TG_CLI_TIME_SIZE]);
/* The name of a flavor, "insight" or "looker". */
const char *cli_api_name(tg_api_t api);

/* commands.c */
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
