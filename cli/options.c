/* SPDX-License-Identifier: MIT */
/*
 * options.c - the commands' own options: the usage errors for what
 * getopt_long() refuses, and the checks for commands that take no options
 * or no operands.  (--help is handled in main.c before a command runs.)
 */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>

/* A usage error for what getopt_long() refused. */
int
cli_opt_fail(tg_cli_t *cli, int c, char **argv)
{
    char name[128];

    if (c == ':') {
        cli_option_name(name, sizeof(name), argv[optind - 1]);
        return cli_usage(cli, "option %s needs a value", name);
    }
    if (optopt != 0) {
        return cli_usage(cli, "unknown option -%c (see tokengate %s --help)",
                         optopt > 0x20 && optopt < 0x7f ? optopt : '?',
                         cli->command);
    }
    cli_option_name(name, sizeof(name), argv[optind - 1]);
    return cli_usage(cli, "unknown option %s (see tokengate %s --help)", name,
                     cli->command);
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
    static const struct option none[] = {{NULL, 0, NULL, 0}};
    int c;

    c = getopt_long(argc, argv, ":", none, NULL);
    return c == -1 ? 0 : cli_opt_fail(cli, c, argv);
}
