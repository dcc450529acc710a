/* SPDX-License-Identifier: MIT */
/*
 * main.c - tokengate-devserver: command line, listeners, the request
 * plumbing shared by both listeners (body collection, the log line; the
 * replies are built and sent in reply.c), and a clean stop on
 * SIGTERM/SIGINT.
 *
 * The API listener runs one thread per connection by default, so a delay
 * or hang fault holds only its own connection; with --threads N it runs a
 * pool of N threads and such faults suspend the connection instead (see
 * faults.c).  The control listener is a single polling thread.
 */
#include "devserver.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* Simultaneous connections on the API listener (the brief asks >= 1024). */
#define CONNECTION_LIMIT 2048
/* File descriptors kept for everything but API connections. */
#define FD_RESERVE 64
/* Pending connections the kernel queues before accept(). */
#define LISTEN_BACKLOG 1024
/* Idle keep-alive connections are closed after this many seconds. */
#define IDLE_TIMEOUT 120
/* Stack per connection thread: handlers are shallow; 1024 of them fit. */
#define THREAD_STACK (512 * 1024)
/* Largest --threads value. */
#define THREADS_MAX 256
/* Largest token lifetime accepted on the command line: one year. */
#define LIFETIME_MAX (366L * 24 * 3600)
/* Largest TLS certificate or key file read. */
#define TLS_FILE_MAX (1024 * 1024)
/* Bytes of a too large chunked body read and dropped before closing. */
#define DISCARD_MAX (16 * 1024 * 1024)
/* Longest libmicrohttpd message logged. */
#define MHD_LOG_MAX 300

enum listener_kind { LISTENER_API, LISTENER_CONTROL };

enum {
    OPT_LISTEN = 256,
    OPT_CONTROL,
    OPT_USERS,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_FAULT,
    OPT_TOKEN_FORMAT,
    OPT_MAX_AGE,
    OPT_LOOKER_LIFETIME,
    OPT_THREADS,
    OPT_ALLOW_REMOTE,
    OPT_PRINT_USERS,
    OPT_EMBED_SECRET_FILE
};

struct listener {
    int fd;
    int port;
    int family;
    int loopback;
    char host[INET6_ADDRSTRLEN + 3]; /* as printed, [v6] bracketed */
};

static void usage(FILE *f);
static int parse_args(int argc, char **argv, char ***faults, size_t *nfaults);
static int parse_long(const char *opt, const char *arg, long min, long max,
                      long *out);
static int open_listener(const char *spec, int loopback_only, int allow_remote,
                         const char *what, struct listener *l);
static char *read_small_file(const char *path, const char *what);
static void raise_fd_limit(void);
static struct MHD_Daemon *start_api(struct listener *l, const char *cert,
                                    const char *key, unsigned int limit);
static struct MHD_Daemon *start_control(struct listener *l);
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls);
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn);
static struct ds_request *request_new(struct MHD_Connection *conn, int control);
static void request_start(struct ds_request *req, const char *url,
                          const char *method);
static void request_free(struct ds_request *req);
static enum MHD_Result too_large(struct ds_request *req);
static int body_append(struct ds_request *req, const char *data, size_t n);
static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe);
static void on_connection(void *cls, struct MHD_Connection *conn,
                          void **socket_context,
                          enum MHD_ConnectionNotificationCode toe);
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
static int64_t mono_us(void);
static void sanitize_into(char *dst, size_t size, const char *src);

static const int kind_api = LISTENER_API;
static const int kind_control = LISTENER_CONTROL;

static const struct option long_opts[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"control", required_argument, NULL, OPT_CONTROL},
    {"users", required_argument, NULL, OPT_USERS},
    {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
    {"tls-key", required_argument, NULL, OPT_TLS_KEY},
    {"fault", required_argument, NULL, OPT_FAULT},
    {"insight-token-format", required_argument, NULL, OPT_TOKEN_FORMAT},
    {"insight-max-age", required_argument, NULL, OPT_MAX_AGE},
    {"looker-token-lifetime", required_argument, NULL, OPT_LOOKER_LIFETIME},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"allow-remote", no_argument, NULL, OPT_ALLOW_REMOTE},
    {"print-demo-users", no_argument, NULL, OPT_PRINT_USERS},
    {"embed-secret-file", required_argument, NULL, OPT_EMBED_SECRET_FILE},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

int
main(int argc, char **argv)
{
    struct listener api = {.fd = -1};
    struct listener control = {.fd = -1};
    struct MHD_Daemon *api_d = NULL;
    struct MHD_Daemon *control_d = NULL;
    char **faults = NULL;
    size_t nfaults = 0;
    char *cert = NULL;
    char *key = NULL;
    char err[512];
    sigset_t sigs;
    struct rlimit rl;
    unsigned int limit = CONNECTION_LIMIT;
    int waiting = 0;
    int sig;
    int rc;
    size_t i;

    rc = parse_args(argc, argv, &faults, &nfaults);
    if (rc >= 0) {
        goto out;
    }
    rc = DS_EXIT_FAILURE;

    /*
     * Block the stop signals before any thread exists, so every thread
     * inherits the mask and only sigwait() below sees them.
     */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    json_object_seed(0); /* before any thread, as jansson advises */

    if (ds__store_init(err, sizeof(err)) != 0 || ds__faults_init() != 0) {
        fprintf(stderr, DS_PROG ": %s\n", err);
        goto out;
    }
    if (ds__users_load(ds__opt.users_file, err, sizeof(err)) != 0) {
        fprintf(stderr, DS_PROG ": bad users file: %s\n", err);
        rc = DS_EXIT_USAGE;
        goto out;
    }
    rc = ds__embed_init(ds__opt.embed_secret_file, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, DS_PROG ": --embed-secret-file: %s\n", err);
        goto out;
    }
    rc = DS_EXIT_FAILURE;
    for (i = 0; i < nfaults; i++) {
        if (ds__fault_add_spec(faults[i], err, sizeof(err)) != 0) {
            fprintf(stderr, DS_PROG ": --fault: %s\n", err);
            rc = DS_EXIT_USAGE;
            goto out;
        }
    }
    if (ds__opt.tls) {
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
            fprintf(stderr, DS_PROG ": libmicrohttpd lacks TLS support\n");
            goto out;
        }
        cert = read_small_file(ds__opt.tls_cert, "--tls-cert");
        key = read_small_file(ds__opt.tls_key, "--tls-key");
        if (cert == NULL || key == NULL) {
            rc = DS_EXIT_USAGE;
            goto out;
        }
    }
    rc = open_listener(ds__opt.listen, 0, ds__opt.allow_remote, "--listen",
                       &api);
    if (rc == 0) {
        rc = open_listener(ds__opt.control, 1, 0, "--control", &control);
    }
    if (rc != 0) {
        goto out;
    }
    rc = DS_EXIT_FAILURE;
    if (!api.loopback) {
        fprintf(stderr,
                DS_PROG ": warning: serving %s to other hosts "
                        "(--allow-remote); the demo credentials are public\n",
                api.host);
    }

    raise_fd_limit();
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur < (rlim_t) limit + FD_RESERVE) {
        limit = rl.rlim_cur > 2 * FD_RESERVE
                    ? (unsigned int) (rl.rlim_cur - FD_RESERVE)
                    : FD_RESERVE;
        fprintf(stderr, DS_PROG ": warning: only %u connections (files)\n",
                limit);
    }
    if (ds__opt.threads > 0) {
        if (ds__wait_start() != 0) {
            fprintf(stderr, DS_PROG ": cannot start the timer thread\n");
            goto out;
        }
        waiting = 1;
    }
    api_d = start_api(&api, cert, key, limit);
    if (api_d == NULL) {
        fprintf(stderr, DS_PROG ": cannot start the API listener on %s\n",
                ds__opt.listen);
        goto out;
    }
    api.fd = -1; /* libmicrohttpd owns it now */
    control_d = start_control(&control);
    if (control_d == NULL) {
        fprintf(stderr, DS_PROG ": cannot start the control listener\n");
        goto out;
    }
    control.fd = -1;

    printf(DS_PROG ": listening on %s://%s:%d\n",
           ds__opt.tls ? "https" : "http", api.host, api.port);
    printf(DS_PROG ": control on http://%s:%d\n", control.host, control.port);
    fflush(stdout);

    for (;;) {
        if (sigwait(&sigs, &sig) == 0) {
            break;
        }
    }
    if (!ds__opt.quiet) {
        fprintf(stderr, DS_PROG ": %s received, stopping\n",
                sig == SIGTERM ? "SIGTERM" : "SIGINT");
    }
    rc = DS_EXIT_OK;

out:
    ds__stop();
    if (waiting) {
        ds__wait_stop(); /* resume suspended connections first */
    }
    if (api_d != NULL) {
        MHD_stop_daemon(api_d);
    }
    if (control_d != NULL) {
        MHD_stop_daemon(control_d);
    }
    if (api.fd >= 0) {
        close(api.fd);
    }
    if (control.fd >= 0) {
        close(control.fd);
    }
    ds__faults_free();
    ds__embed_free();
    ds__store_free();
    if (key != NULL) {
        explicit_bzero(key, strlen(key));
    }
    free(key);
    free(cert);
    free(faults);
    return rc;
}

static void
usage(FILE *f)
{
    fprintf(
        f,
        "Usage: " DS_PROG " [OPTION]...\n"
        "A local FICO Xpress Insight v1 and Looker API 4.0 auth server with "
        "fault\n"
        "injection, for tests and demos.  Loopback only unless "
        "--allow-remote.\n"
        "\n"
        "  --listen ADDR:PORT        API listener (default 127.0.0.1:0; 0 = "
        "any\n"
        "                            free port; IPv6 as [::1]:PORT)\n"
        "  --control ADDR:PORT       control listener, loopback only\n"
        "                            (default 127.0.0.1:0)\n"
        "  --allow-remote            allow a non-loopback --listen address\n"
        "  --users FILE              users file (JSON; default: built-in demo "
        "users)\n"
        "  --print-demo-users        print the built-in users file and exit\n"
        "  --tls-cert FILE           serve HTTPS with this PEM certificate...\n"
        "  --tls-key FILE            ...and this PEM private key\n"
        "  --fault SPEC              add a fault rule, e.g.\n"
        "                            'endpoint=validate,status=503,count=2'\n"
        "                            (repeatable)\n"
        "  --insight-token-format raw|json-string\n"
        "                            body of POST /auth/token (default raw)\n"
        "  --insight-max-age SECONDS largest Insight maxAge (default 3600)\n"
        "  --looker-token-lifetime SECONDS\n"
        "                            Looker expires_in (default 3600)\n"
        "  --embed-secret-file FILE  Looker signed-embed secret, owner-only "
        "file\n"
        "                            (default: the public demo secret)\n"
        "  --threads N               0: a thread per connection (default);\n"
        "                            N: a pool of N threads\n"
        "  -q, --quiet               no request log on stderr\n"
        "  -h, --help                show this help and exit\n"
        "  -V, --version             show the version and exit\n"
        "\n"
        "On start it prints two lines to stdout:\n"
        "  " DS_PROG ": listening on http://127.0.0.1:PORT\n"
        "  " DS_PROG ": control on http://127.0.0.1:CPORT\n"
        "Exit status: 0 stopped by SIGTERM/SIGINT, 1 could not start, 2 bad "
        "usage,\n"
        "users file or fault spec.  See " DS_PROG "(1).\n");
}

/*
 * Fill ds__opt.  Returns -1 to go on, or an exit status (help, version,
 * errors).  *faults is an array of pointers into argv.
 */
static int
parse_args(int argc, char **argv, char ***faults, size_t *nfaults)
{
    char **list;
    int c;

    list = calloc((size_t) argc + 1, sizeof(*list));
    if (list == NULL) {
        fprintf(stderr, DS_PROG ": out of memory\n");
        return DS_EXIT_FAILURE;
    }
    *faults = list;
    *nfaults = 0;
    opterr = 0;
    for (;;) {
        c = getopt_long(argc, argv, ":qhV", long_opts, NULL);
        if (c == -1) {
            break;
        }
        switch (c) {
        case OPT_LISTEN:
            ds__opt.listen = optarg;
            break;
        case OPT_CONTROL:
            ds__opt.control = optarg;
            break;
        case OPT_USERS:
            ds__opt.users_file = optarg;
            break;
        case OPT_TLS_CERT:
            ds__opt.tls_cert = optarg;
            break;
        case OPT_TLS_KEY:
            ds__opt.tls_key = optarg;
            break;
        case OPT_FAULT:
            list[(*nfaults)++] = optarg;
            break;
        case OPT_TOKEN_FORMAT:
            if (strcmp(optarg, "raw") == 0) {
                ds__opt.insight_token_json = 0;
            } else if (strcmp(optarg, "json-string") == 0) {
                ds__opt.insight_token_json = 1;
            } else {
                fprintf(stderr,
                        DS_PROG ": bad value for "
                                "--insight-token-format: \"%s\" (raw or "
                                "json-string)\n",
                        optarg);
                return DS_EXIT_USAGE;
            }
            break;
        case OPT_MAX_AGE:
            if (parse_long("--insight-max-age", optarg, 1, LIFETIME_MAX,
                           &ds__opt.insight_max_age) != 0) {
                return DS_EXIT_USAGE;
            }
            break;
        case OPT_LOOKER_LIFETIME:
            if (parse_long("--looker-token-lifetime", optarg, 1, LIFETIME_MAX,
                           &ds__opt.looker_lifetime) != 0) {
                return DS_EXIT_USAGE;
            }
            break;
        case OPT_THREADS:
            if (parse_long("--threads", optarg, 0, THREADS_MAX,
                           &ds__opt.threads) != 0) {
                return DS_EXIT_USAGE;
            }
            break;
        case OPT_ALLOW_REMOTE:
            ds__opt.allow_remote = 1;
            break;
        case OPT_EMBED_SECRET_FILE:
            ds__opt.embed_secret_file = optarg;
            break;
        case OPT_PRINT_USERS:
            fputs(ds__demo_users_json, stdout);
            return fflush(stdout) == 0 ? DS_EXIT_OK : DS_EXIT_FAILURE;
        case 'q':
            ds__opt.quiet = 1;
            break;
        case 'h':
            usage(stdout);
            return DS_EXIT_OK;
        case 'V':
            printf(DS_PROG " (tokengate) %s, libmicrohttpd %s\n",
                   PACKAGE_VERSION, MHD_get_version());
            return DS_EXIT_OK;
        case ':':
            fprintf(stderr, DS_PROG ": option %s needs a value\n",
                    argv[optind - 1]);
            fprintf(stderr, "Try '" DS_PROG " --help'.\n");
            return DS_EXIT_USAGE;
        default:
            fprintf(stderr, DS_PROG ": unknown option %s\n", argv[optind - 1]);
            fprintf(stderr, "Try '" DS_PROG " --help'.\n");
            return DS_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, DS_PROG ": unexpected argument \"%s\"\n", argv[optind]);
        return DS_EXIT_USAGE;
    }
    if ((ds__opt.tls_cert == NULL) != (ds__opt.tls_key == NULL)) {
        fprintf(stderr, DS_PROG ": --tls-cert and --tls-key go together\n");
        return DS_EXIT_USAGE;
    }
    ds__opt.tls = ds__opt.tls_cert != NULL;
    return -1;
}

static int
parse_long(const char *opt, const char *arg, long min, long max, long *out)
{
    char *end = NULL;
    long v;

    errno = 0;
    v = strtol(arg, &end, 10);
    if (arg[0] < '0' || arg[0] > '9' || errno != 0 || *end != '\0' || v < min ||
        v > max) {
        fprintf(stderr,
                DS_PROG ": bad value for %s: \"%s\" (an integer "
                        "from %ld to %ld)\n",
                opt, arg, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

/*
 * Parse ADDR:PORT (IPv4, [IPv6] or localhost), refuse non-loopback
 * addresses unless allowed, and bind and listen.  Returns 0 or an exit
 * status, with the message printed.
 */
static int
open_listener(const char *spec, int loopback_only, int allow_remote,
              const char *what, struct listener *l)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *sin = (struct sockaddr_in *) &ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *) &ss;
    socklen_t len;
    char host[INET6_ADDRSTRLEN + 1];
    const char *colon;
    const char *port_text;
    size_t host_len;
    long port;
    int loopback;
    int one = 1;
    int fd = -1;
    int rc = DS_EXIT_USAGE;

    memset(&ss, 0, sizeof(ss));
    if (spec[0] == '[') {
        colon = strstr(spec, "]:");
        if (colon == NULL) {
            goto bad;
        }
        host_len = (size_t) (colon - spec - 1);
        port_text = colon + 2;
        if (host_len == 0 || host_len >= sizeof(host)) {
            goto bad;
        }
        memcpy(host, spec + 1, host_len);
        host[host_len] = '\0';
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
            goto bad;
        }
        sin6->sin6_family = AF_INET6;
        len = sizeof(*sin6);
    } else {
        colon = strrchr(spec, ':');
        if (colon == NULL) {
            goto bad;
        }
        host_len = (size_t) (colon - spec);
        port_text = colon + 1;
        if (host_len == 0 || host_len >= sizeof(host)) {
            goto bad;
        }
        memcpy(host, spec, host_len);
        host[host_len] = '\0';
        if (strcmp(host, "localhost") == 0) {
            strcpy(host, "127.0.0.1");
        }
        if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
            goto bad;
        }
        sin->sin_family = AF_INET;
        len = sizeof(*sin);
    }
    if (parse_long(what, port_text, 0, 65535, &port) != 0) {
        return DS_EXIT_USAGE;
    }
    if (ss.ss_family == AF_INET) {
        sin->sin_port = htons((uint16_t) port);
        loopback = (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
        snprintf(l->host, sizeof(l->host), "%s", host);
    } else {
        sin6->sin6_port = htons((uint16_t) port);
        loopback = IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr) ||
                   (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr) &&
                    sin6->sin6_addr.s6_addr[12] == 127);
        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
        snprintf(l->host, sizeof(l->host), "[%s]", host);
    }
    if (!loopback && (loopback_only || !allow_remote)) {
        fprintf(stderr,
                DS_PROG ": refusing %s %s: not a loopback address "
                        "(%s)\n",
                what, spec,
                loopback_only ? "the control listener is loopback only"
                              : "add --allow-remote to serve other hosts");
        return DS_EXIT_USAGE;
    }

    rc = DS_EXIT_FAILURE;
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, DS_PROG ": %s %s: socket: %s\n", what, spec,
                strerror(errno));
        goto out;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ss.ss_family == AF_INET6) {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    }
    if (bind(fd, (struct sockaddr *) &ss, len) != 0) {
        fprintf(stderr, DS_PROG ": %s %s: bind: %s\n", what, spec,
                strerror(errno));
        goto out;
    }
    if (listen(fd, LISTEN_BACKLOG) != 0) {
        fprintf(stderr, DS_PROG ": %s %s: listen: %s\n", what, spec,
                strerror(errno));
        goto out;
    }
    len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *) &ss, &len) != 0) {
        fprintf(stderr, DS_PROG ": %s %s: getsockname: %s\n", what, spec,
                strerror(errno));
        goto out;
    }
    l->port = ntohs(ss.ss_family == AF_INET ? sin->sin_port : sin6->sin6_port);
    l->family = ss.ss_family;
    l->loopback = loopback;
    l->fd = fd;
    fd = -1;
    rc = 0;

out:
    if (fd >= 0) {
        close(fd);
    }
    return rc;

bad:
    fprintf(stderr,
            DS_PROG ": bad address for %s: \"%s\" (want "
                    "IPV4:PORT, [IPV6]:PORT or localhost:PORT)\n",
            what, spec);
    return DS_EXIT_USAGE;
}

/* Read a PEM file into a NUL-terminated string; NULL with a message. */
static char *
read_small_file(const char *path, const char *what)
{
    char err[PATH_MAX + 128];
    char *text = NULL;
    size_t len = 0;

    if (ds__file_read(path, TLS_FILE_MAX, 0, &text, &len, err, sizeof(err)) !=
        0) {
        fprintf(stderr, DS_PROG ": %s %s\n", what, err);
        return NULL;
    }
    if (len == 0) {
        fprintf(stderr, DS_PROG ": %s %s: empty\n", what, path);
        free(text);
        return NULL;
    }
    return text;
}

/* One descriptor per connection (and one thread): lift the soft limit. */
static void
raise_fd_limit(void)
{
    struct rlimit rl;
    rlim_t want = CONNECTION_LIMIT + FD_RESERVE;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want) {
        return;
    }
    rl.rlim_cur =
        rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
}

static struct MHD_Daemon *
start_api(struct listener *l, const char *cert, const char *key,
          unsigned int limit)
{
    struct MHD_OptionItem opts[16];
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    size_t n = 0;

    /* The logger goes first, or early messages take the default path. */
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER,
                                        (intptr_t) on_mhd_log, NULL};
    if (ds__opt.threads == 0) {
        flags |= MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL;
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_STACK_SIZE,
                                            THREAD_STACK, NULL};
    } else {
        /* poll, not epoll: with epoll the pool now and then left every
         * connection of one worker unanswered (about 1 run in 30 of 1100
         * simultaneous connections), in the old code as in the new. */
        flags |= MHD_USE_POLL | MHD_ALLOW_SUSPEND_RESUME;
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE,
                                            ds__opt.threads, NULL};
    }
    if (l->family == AF_INET6) {
        flags |= MHD_USE_IPv6;
    }
    if (cert != NULL) {
        flags |= MHD_USE_TLS;
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0,
                                            (void *) cert};
        opts[n++] =
            (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, (void *) key};
    }
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_LISTEN_SOCKET, l->fd, NULL};
    opts[n++] =
        (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, limit, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT,
                                        IDLE_TIMEOUT, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED,
                                        (intptr_t) on_completed, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_URI_LOG_CALLBACK,
                                        (intptr_t) on_uri, NULL};
    opts[n++] =
        (struct MHD_OptionItem){MHD_OPTION_NOTIFY_CONNECTION,
                                (intptr_t) on_connection, (void *) &kind_api};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    return MHD_start_daemon(flags, 0, NULL, NULL, on_request,
                            (void *) &kind_api, MHD_OPTION_ARRAY, opts,
                            MHD_OPTION_END);
}

static struct MHD_Daemon *
start_control(struct listener *l)
{
    unsigned int flags =
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ERROR_LOG;

    if (l->family == AF_INET6) {
        flags |= MHD_USE_IPv6;
    }
    return MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, (void *) &kind_control,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL, MHD_OPTION_LISTEN_SOCKET,
        l->fd, MHD_OPTION_CONNECTION_LIMIT, 64, MHD_OPTION_CONNECTION_TIMEOUT,
        IDLE_TIMEOUT, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
        MHD_OPTION_END);
}

/* ------------------------------------------------------------ requests */

/*
 * libmicrohttpd calls this at least twice per request: first with the
 * headers only, then once per piece of body, then a last time with
 * *upload_data_size == 0 when the request is complete.
 */
static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url,
           const char *method, const char *version, const char *upload_data,
           size_t *upload_data_size, void **req_cls)
{
    const int *kind = cls;
    struct ds_request *req = *req_cls;
    const char *cl;
    size_t n;

    (void) version;
    if (req == NULL || !req->started) {
        if (req == NULL) {
            req = request_new(conn, *kind == LISTENER_CONTROL);
            if (req == NULL) {
                return MHD_NO;
            }
            *req_cls = req;
        }
        request_start(req, url, method);
        if (!req->control) {
            ds__route_classify(req, url);
            ds__count_request(req->ep);
            req->rule = ds__fault_match(req->ep, &req->rule_id);
        }
        cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                         MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl != NULL && strtoull(cl, NULL, 10) > DS_BODY_MAX) {
            return too_large(req); /* before reading any of it */
        }
        return MHD_YES;
    }
    if (req->replied) {
        *upload_data_size = 0; /* a 413 went out; drop the rest */
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        /*
         * libmicrohttpd cannot answer in the middle of an upload, so a
         * body that grows too large (chunked) is read and dropped, up to
         * DISCARD_MAX, and answered with 413 at the end.
         */
        n = *upload_data_size;
        *upload_data_size = 0;
        if (req->too_large || body_append(req, upload_data, n) != 0) {
            req->too_large = 1;
            req->discarded += n;
            if (req->discarded > DISCARD_MAX) {
                return MHD_NO;
            }
        }
        return MHD_YES;
    }
    if (ds__stopping()) {
        return MHD_NO;
    }
    if (req->too_large) {
        return too_large(req);
    }
    if (req->control) {
        return ds__control_answer(req, url, method);
    }
    return ds__route_answer(req, url, method);
}

/*
 * The API listener's first look at a request, before libmicrohttpd splits
 * off the query and decodes the path: keep the request target as it came
 * (the embed verifier signs it as received).  The returned request becomes
 * *req_cls; on_completed() frees it even if the handler never runs.
 */
static void *
on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct ds_request *req;

    (void) cls;
    req = request_new(conn, 0);
    if (req != NULL) {
        req->raw_uri = strdup(uri); /* NULL: the embed verifier says 500 */
    }
    return req;
}

static struct ds_request *
request_new(struct MHD_Connection *conn, int control)
{
    struct ds_request *req = calloc(1, sizeof(*req));

    if (req == NULL) {
        return NULL;
    }
    req->conn = conn;
    req->control = control;
    req->start_us = mono_us();
    req->ep = DS_EP_OTHER;
    return req;
}

/* The first handler call: method and (decoded) path, for the log line. */
static void
request_start(struct ds_request *req, const char *url, const char *method)
{
    req->started = 1;
    sanitize_into(req->method, sizeof(req->method), method);
    sanitize_into(req->path, sizeof(req->path), url);
}

static void
request_free(struct ds_request *req)
{
    if (req->body != NULL) {
        explicit_bzero(req->body, req->body_cap);
        free(req->body);
    }
    if (req->raw_uri != NULL) {
        explicit_bzero(req->raw_uri, strlen(req->raw_uri));
        free(req->raw_uri);
    }
    ds__rule_unref(req->rule);
    free(req);
}

/* 413 in the listener's error format; the connection is then closed. */
static enum MHD_Result
too_large(struct ds_request *req)
{
    struct ds_reply r = {0};
    json_t *v;

    if (req->control) {
        v = json_pack("{ss}", "error", "request body larger than 64 KiB");
        ds__reply_json(&r, MHD_HTTP_CONTENT_TOO_LARGE, v);
    } else {
        ds__reply_flavor_error(&r, req->flavor, MHD_HTTP_CONTENT_TOO_LARGE,
                               "Request body larger than 64 KiB");
    }
    return ds__reply_send(req, &r, NULL);
}

static int
body_append(struct ds_request *req, const char *data, size_t n)
{
    char *p;
    size_t cap;

    if (n > DS_BODY_MAX || req->body_len + n > DS_BODY_MAX) {
        return -1;
    }
    if (req->body_len + n + 1 > req->body_cap) {
        cap = DS_BODY_MAX + 1;
        p = malloc(cap);
        if (p == NULL) {
            return -1;
        }
        if (req->body != NULL) {
            memcpy(p, req->body, req->body_len);
            explicit_bzero(req->body, req->body_cap);
            free(req->body);
        }
        req->body = p;
        req->body_cap = cap;
    }
    memcpy(req->body + req->body_len, data, n);
    req->body_len += n;
    req->body[req->body_len] = '\0';
    return 0;
}

/* The one log line per request: never a header, body, token or secret. */
static void
on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
             enum MHD_RequestTerminationCode toe)
{
    struct ds_request *req = *req_cls;
    char status[16] = "-";
    char fault[24] = "";
    const char *how = "";
    int64_t us;

    (void) cls;
    (void) conn;
    if (req == NULL) {
        return;
    }
    *req_cls = NULL;
    /* Not started: libmicrohttpd refused the request before the handler. */
    if (!ds__opt.quiet && req->started) {
        us = mono_us() - req->start_us;
        if (req->status != 0) {
            snprintf(status, sizeof(status), "%u", req->status);
        }
        if (req->rule != NULL) {
            snprintf(fault, sizeof(fault), " fault=%u", req->rule_id);
        }
        switch (toe) {
        case MHD_REQUEST_TERMINATED_COMPLETED_OK:
            break;
        case MHD_REQUEST_TERMINATED_WITH_ERROR:
            how = " (closed)";
            break;
        case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED:
            how = " (timeout)";
            break;
        case MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN:
            how = " (shutdown)";
            break;
        default:
            how = " (client gone)";
            break;
        }
        ds__log("%s%s %s %s %lld.%03lldms%s%s", req->control ? "control " : "",
                req->method, req->path, status, (long long) (us / 1000),
                (long long) (us % 1000), fault, how);
    }
    request_free(req);
}

static void
on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
              enum MHD_ConnectionNotificationCode toe)
{
    (void) cls;
    (void) conn;
    (void) socket_context;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        ds__count_connection();
    }
}

static void
on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[MHD_LOG_MAX];
    char clean[MHD_LOG_MAX];
    size_t len;

    (void) cls;
    if (ds__opt.quiet) {
        return;
    }
    vsnprintf(msg, sizeof(msg), fmt, ap);
    len = strlen(msg);
    while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == '\r')) {
        msg[--len] = '\0';
    }
    if (strncmp(msg, "Application reported internal error", 35) == 0) {
        return; /* a close or hang fault: the request line says so */
    }
    sanitize_into(clean, sizeof(clean), msg);
    ds__log("libmicrohttpd: %s", clean);
}

/* -------------------------------------------------------------- helpers */

static int64_t
mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Printable ASCII only (others become '?'), cut to fit. */
static void
sanitize_into(char *dst, size_t size, const char *src)
{
    size_t i;

    if (src == NULL) {
        src = "";
    }
    for (i = 0; src[i] != '\0' && i + 1 < size; i++) {
        unsigned char c = (unsigned char) src[i];

        dst[i] = (c >= 0x20 && c < 0x7f) ? (char) c : '?';
    }
    dst[i] = '\0';
}
