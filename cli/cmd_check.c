/* SPDX-License-Identifier: MIT */
/*
 * cmd_check.c - check: diagnose the configuration and the way to the
 * server, one line per step (config, DNS, TCP, TLS, HTTP, clock, syslog),
 * sending no token and no secret.  The first FAIL decides the exit code.
 */
#include "cli.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* What "check" tolerates between the server's clock and ours. */
#define TG_SKEW_WARN 30
#define TG_SKEW_FAIL 300
/* Addresses "check" lists after a DNS lookup. */
#define TG_CHECK_ADDRS_SHOWN 4
/* Where syslog(3) sends the messages of the PAM module (glibc's _PATH_LOG). */
#define TG_SYSLOG_PATH "/dev/log"
/* A dummy token for building the unauthenticated "check" request. */
#define TG_CHECK_DUMMY_TOKEN "tokengate-check"

typedef enum tg_check_status {
    TG_CHECK_OK = 0,
    TG_CHECK_WARN,
    TG_CHECK_FAIL,
    TG_CHECK_SKIP
} tg_check_status_t;

/* The state of "check" across its steps. */
typedef struct tg_check {
    tg_cli_t *cli;
    json_t *steps;
    tg_err_t first_err; /* TG_OK until a step fails */
    char first_msg[1100];
    int rc; /* an exit code recorded outside the steps (no client) */

    char scheme[16], host[256], port[16]; /* of the configured url */
    int https;
    struct addrinfo *addrs; /* check_dns(); NULL through a proxy */
    tg_client_t *cl;        /* check_probe()'s */
    tg_request_t built;     /* the validation request the probe is made of */
    long status;            /* the probe's answer */
    time_t server_date;     /* its Date header; 0 when absent */
    time_t answered_at;     /* our clock when it came */
} tg_check_t;

static void check_step(tg_check_t *ck, tg_check_status_t status,
                       const char *name, tg_err_t err, const char *hint,
                       const char *fmt, ...) TG_CLI_PRINTF(6, 7);
static int check_parse_url(const char *url, char *scheme, size_t scheme_size,
                           char *host, size_t host_size, char *port,
                           size_t port_size);
static double now_ms(void);
static int check_connect(const struct addrinfo *ai, long timeout_ms,
                         double *elapsed_ms, int *timed_out);
static void check_syslog(tg_check_t *ck);
static void proxy_shown(const char *proxy, char *dst, size_t size);
static void check_init(tg_check_t *ck, tg_cli_t *cli);
static int check_config(tg_check_t *ck);
static int check_network(tg_check_t *ck);
static const char *addr_text(const struct addrinfo *ai, char *buf, size_t size);
static int check_dns(tg_check_t *ck);
static int check_tcp(tg_check_t *ck);
static int check_probe(tg_check_t *ck);
static void check_http(tg_check_t *ck);
static void check_clock(tg_check_t *ck);
static int check_finish(tg_check_t *ck);

/* ---------------------------------------------------------------------- */
/* check                                                                  */
/* ---------------------------------------------------------------------- */

static const char *const tg_check_names[] = {"OK", "WARN", "FAIL", "SKIP"};

/* One line per step (and a hint line for WARN/FAIL); the first FAIL
 * decides the exit code. */
static void
check_step(tg_check_t *ck, tg_check_status_t status, const char *name,
           tg_err_t err, const char *hint, const char *fmt, ...)
{
    char raw[1024], msg[1024];
    json_t *step;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    cli_sanitize(msg, sizeof(msg), raw);
    cli_say(ck->cli, "%-4s  %-6s %s", tg_check_names[status], name, msg);
    if (hint != NULL && (status == TG_CHECK_WARN || status == TG_CHECK_FAIL)) {
        cli_say(ck->cli, "              hint: %s", hint);
    }
    step = json_pack("{s:s, s:s, s:s}", "step", name, "status",
                     tg_check_names[status], "message", msg);
    if (step != NULL && hint != NULL &&
        (status == TG_CHECK_WARN || status == TG_CHECK_FAIL)) {
        json_object_set_new(step, "hint", json_string(hint));
    }
    if (step != NULL && status == TG_CHECK_FAIL) {
        json_object_set_new(step, "error", json_string(tg_err_name(err)));
    }
    if (step != NULL) {
        json_array_append_new(ck->steps, step);
    }
    if (status == TG_CHECK_FAIL && ck->first_err == TG_OK) {
        ck->first_err = err != TG_OK ? err : TG_INTERNAL;
        snprintf(ck->first_msg, sizeof(ck->first_msg), "%s: %s", name, msg);
    }
}

/* scheme://[userinfo@]host[:port][/...]; host without brackets. */
static int
check_parse_url(const char *url, char *scheme, size_t scheme_size, char *host,
                size_t host_size, char *port, size_t port_size)
{
    const char *p, *auth, *end, *at, *h, *hend, *colon = NULL;
    size_t n;

    p = strstr(url, "://");
    if (p == NULL || (size_t) (p - url) >= scheme_size) {
        return -1;
    }
    memcpy(scheme, url, (size_t) (p - url));
    scheme[p - url] = '\0';
    auth = p + 3;
    end = auth + strcspn(auth, "/?#");
    at = NULL;
    for (h = auth; h < end; h++) {
        if (*h == '@') {
            at = h;
        }
    }
    h = at != NULL ? at + 1 : auth;
    if (*h == '[') {
        hend = memchr(h, ']', (size_t) (end - h));
        if (hend == NULL) {
            return -1;
        }
        h++;
        if (hend + 1 < end && hend[1] == ':') {
            colon = hend + 1;
        }
    } else {
        hend = memchr(h, ':', (size_t) (end - h));
        if (hend == NULL) {
            hend = end;
        } else {
            colon = hend;
        }
    }
    n = (size_t) (hend - h);
    if (n == 0 || n >= host_size) {
        return -1;
    }
    memcpy(host, h, n);
    host[n] = '\0';
    if (colon != NULL && colon + 1 < end) {
        n = (size_t) (end - colon - 1);
        if (n >= port_size) {
            return -1;
        }
        memcpy(port, colon + 1, n);
        port[n] = '\0';
    } else {
        snprintf(port, port_size, "%s",
                 strcasecmp(scheme, "https") == 0 ? "443" : "80");
    }
    return 0;
}

static double
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec * 1000.0 + (double) ts.tv_nsec / 1e6;
}

/* A TCP connect with a timeout; returns 0 or an errno. */
static int
check_connect(const struct addrinfo *ai, long timeout_ms, double *elapsed_ms,
              int *timed_out)
{
    struct pollfd pfd;
    socklen_t len = sizeof(int);
    double start = now_ms();
    int fd, rc = 0, soerr = 0, r;

    *timed_out = 0;
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                ai->ai_protocol);
    if (fd < 0) {
        return errno;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) {
            rc = errno;
            goto out;
        }
        pfd.fd = fd;
        pfd.events = POLLOUT;
        do {
            r = poll(&pfd, 1, (int) timeout_ms);
        } while (r < 0 && errno == EINTR);
        if (r == 0) {
            *timed_out = 1;
            rc = ETIMEDOUT;
            goto out;
        }
        if (r < 0) {
            rc = errno;
            goto out;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0) {
            rc = errno;
        } else {
            rc = soerr;
        }
    }
out:
    *elapsed_ms = now_ms() - start;
    close(fd);
    return rc;
}

/*
 * The PAM module logs only through syslog(3), which writes to /dev/log and
 * drops the message when nothing listens there: connect as glibc does (a
 * datagram socket, else a stream one).  A WARN, not a FAIL: the CLI itself
 * does not need syslog.
 */
static void
check_syslog(tg_check_t *ck)
{
    struct sockaddr_un sa;
    int fd, e;

    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", TG_SYSLOG_PATH);
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    e = fd < 0 ? errno : 0;
    if (fd >= 0 && connect(fd, (struct sockaddr *) &sa, sizeof(sa)) != 0) {
        e = errno;
        if (e == EPROTOTYPE) {
            close(fd);
            fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            e = fd < 0 ? errno : 0;
            if (fd >= 0 &&
                connect(fd, (struct sockaddr *) &sa, sizeof(sa)) != 0) {
                e = errno;
            }
        }
    }
    if (fd >= 0) {
        close(fd);
    }
    if (e == 0) {
        check_step(ck, TG_CHECK_OK, "syslog", TG_OK, NULL,
                   "%s accepts messages (the PAM module logs there)",
                   TG_SYSLOG_PATH);
    } else {
        check_step(ck, TG_CHECK_WARN, "syslog", TG_OK,
                   "run a syslog daemon (rsyslog) or systemd-journald; the "
                   "PAM module's messages are then in journalctl or "
                   "/var/log/auth.log",
                   "cannot connect to %s: %s: the PAM module's log messages "
                   "would be lost",
                   TG_SYSLOG_PATH, strerror(e));
    }
}

/* The proxy URL for display, without user name and password (the config
 * may hold "http://user:secret@proxy:3128"). */
static void
proxy_shown(const char *proxy, char *dst, size_t size)
{
    CURLU *u = curl_url();
    char *text = NULL;

    snprintf(dst, size, "(unparsable proxy url)");
    if (u == NULL) {
        return;
    }
    if (curl_url_set(u, CURLUPART_URL, proxy, CURLU_GUESS_SCHEME) ==
            CURLUE_OK &&
        curl_url_set(u, CURLUPART_USER, NULL, 0) == CURLUE_OK &&
        curl_url_set(u, CURLUPART_PASSWORD, NULL, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_URL, &text, 0) == CURLUE_OK) {
        snprintf(dst, size, "%s", text);
    }
    curl_free(text);
    curl_url_cleanup(u);
}

int
cmd_check(tg_cli_t *cli, int argc, char **argv)
{
    tg_check_t ck;
    int rc;

    if (cli_no_options(cli, argc, argv) != 0) {
        return cli->exit_code;
    }
    rc = cli_no_more_args(cli, argc, argv);
    if (rc != 0) {
        return rc;
    }
    check_init(&ck, cli);
    if (check_config(&ck) && check_network(&ck) && check_probe(&ck)) {
        check_http(&ck);
        check_clock(&ck);
    }
    /* Independent of the server: also after a failed step. */
    check_syslog(&ck);
    return check_finish(&ck);
}

static void
check_init(tg_check_t *ck, tg_cli_t *cli)
{
    memset(ck, 0, sizeof(*ck));
    ck->cli = cli;
    ck->steps = json_array();
}

/* The configuration is valid and its url parses; plain http is a WARN
 * except for this machine.  0 stops the check. */
static int
check_config(tg_check_t *ck)
{
    tg_cli_t *cli = ck->cli;

    if (cli->config_err != TG_OK) {
        check_step(ck, TG_CHECK_FAIL, "config", cli->config_err,
                   "fix the configuration file or the options (see "
                   "tokengate(1), CONFIGURATION)",
                   "%s", cli->config_msg);
        return 0;
    }
    check_step(ck, TG_CHECK_OK, "config", TG_OK, NULL, "%s%s: api %s, url %s",
               cli->config_path != NULL ? "" : "no file, ",
               cli->config_path != NULL ? cli->config_path
                                        : "command line only",
               cli_api_name(cli->cfg->api), cli->cfg->url);
    if (check_parse_url(cli->cfg->url, ck->scheme, sizeof(ck->scheme), ck->host,
                        sizeof(ck->host), ck->port, sizeof(ck->port)) != 0) {
        check_step(ck, TG_CHECK_FAIL, "url", TG_CONFIG,
                   "url must look like https://host[:port]",
                   "cannot parse the url %s", cli->cfg->url);
        return 0;
    }
    ck->https = strcasecmp(ck->scheme, "https") == 0;
    if (!ck->https && strcasecmp(ck->host, "localhost") != 0 &&
        strncmp(ck->host, "127.", 4) != 0 && strcmp(ck->host, "::1") != 0) {
        check_step(ck, TG_CHECK_WARN, "config", TG_OK,
                   "use https:// except for a server on this machine",
                   "plain http: tokens and secrets travel unencrypted");
    }
    return 1;
}

/* DNS and TCP, or two SKIP lines when a proxy is in between. */
static int
check_network(tg_check_t *ck)
{
    const char *proxy = ck->cli->cfg->proxy;
    char shown[256];

    if (proxy != NULL && proxy[0] != '\0') {
        proxy_shown(proxy, shown, sizeof(shown));
        check_step(ck, TG_CHECK_SKIP, "dns", TG_OK, NULL,
                   "through the proxy %s", shown);
        check_step(ck, TG_CHECK_SKIP, "tcp", TG_OK, NULL, "through the proxy");
        return 1;
    }
    return check_dns(ck) && check_tcp(ck);
}

/* The address of ai as text, or NULL. */
static const char *
addr_text(const struct addrinfo *ai, char *buf, size_t size)
{
    const void *a =
        ai->ai_family == AF_INET6
            ? (const void *) &((struct sockaddr_in6 *) ai->ai_addr)->sin6_addr
            : (const void *) &((struct sockaddr_in *) ai->ai_addr)->sin_addr;

    return inet_ntop(ai->ai_family, a, buf, (socklen_t) size);
}

/* Resolve the url's host into ck->addrs; list the first few addresses. */
static int
check_dns(tg_check_t *ck)
{
    char addrs[512], addr[INET6_ADDRSTRLEN];
    struct addrinfo hints, *ai;
    int gai, shown_n = 0;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    gai = getaddrinfo(ck->host, ck->port, &hints, &ck->addrs);
    if (gai != 0) {
        ck->addrs = NULL;
        check_step(ck, TG_CHECK_FAIL, "dns", TG_UNAVAILABLE,
                   "check the host name in url, /etc/hosts and "
                   "/etc/resolv.conf",
                   "cannot resolve %s: %s", ck->host, gai_strerror(gai));
        return 0;
    }
    addrs[0] = '\0';
    for (ai = ck->addrs; ai != NULL; ai = ai->ai_next) {
        if (addr_text(ai, addr, sizeof(addr)) == NULL ||
            strstr(addrs, addr) != NULL) {
            continue;
        }
        if (shown_n++ < TG_CHECK_ADDRS_SHOWN) {
            size_t l = strlen(addrs);
            snprintf(addrs + l, sizeof(addrs) - l, "%s%s", l > 0 ? ", " : "",
                     addr);
        }
    }
    check_step(ck, TG_CHECK_OK, "dns", TG_OK, NULL, "%s -> %s%s", ck->host,
               addrs, shown_n > TG_CHECK_ADDRS_SHOWN ? ", ..." : "");
    return 1;
}

/* Connect to the addresses in turn until one answers. */
static int
check_tcp(tg_check_t *ck)
{
    char last_addr[INET6_ADDRSTRLEN] = "";
    const struct addrinfo *ai;
    long timeout_ms = ck->cli->cfg->connect_timeout_ms;
    double ms = 0;
    int e = 0, timed_out = 0, any_timeout = 0, connected = 0;

    for (ai = ck->addrs; ai != NULL && !connected; ai = ai->ai_next) {
        if (addr_text(ai, last_addr, sizeof(last_addr)) == NULL) {
            snprintf(last_addr, sizeof(last_addr), "?");
        }
        e = check_connect(ai, timeout_ms, &ms, &timed_out);
        any_timeout |= timed_out;
        connected = e == 0;
    }
    if (!connected && any_timeout) {
        check_step(ck, TG_CHECK_FAIL, "tcp", TG_TIMEOUT,
                   "a firewall may drop the packets; check the port "
                   "and the network path, or raise connect_timeout",
                   "no connection to %s port %s within %.1f s", ck->host,
                   ck->port, (double) timeout_ms / 1000.0);
        return 0;
    }
    if (!connected) {
        check_step(ck, TG_CHECK_FAIL, "tcp", TG_UNAVAILABLE,
                   "is the server running and listening on that port? "
                   "check the port in url",
                   "cannot connect to %s port %s: %s", last_addr, ck->port,
                   strerror(e));
        return 0;
    }
    check_step(ck, TG_CHECK_OK, "tcp", TG_OK, NULL,
               "connected to %s port %s in %.1f ms", last_addr, ck->port, ms);
    return 1;
}

/*
 * TLS, through one unauthenticated GET of the validation endpoint (which
 * must answer 401).  The request is built by the library (with a dummy
 * token), then sent without Authorization.  Keeps the status and the Date
 * header for check_http() and check_clock().
 */
static int
check_probe(tg_check_t *ck)
{
    tg_cli_t *cli = ck->cli;
    tg_request_t req;
    tg_response_t resp;
    tg_diag_t diag;
    tg_err_t err;
    time_t sent_at = 0;

    tg_diag_clear(&diag);
    err = tg_build_validate(cli->cfg, TG_CHECK_DUMMY_TOKEN,
                            TG_INSIGHT_VALIDATE_USER, &ck->built, &diag);
    if (err != TG_OK) {
        check_step(ck, TG_CHECK_FAIL, "http", err, NULL, "%s", diag.message);
        return 0;
    }
    memset(&req, 0, sizeof(req));
    req.method = "GET";
    req.url = ck->built.url;
    req.accept = ck->built.accept;
    ck->rc = cli_client_open(cli, &ck->cl);
    if (ck->rc != 0) {
        return 0;
    }
    err = tg_client_perform(ck->cl, &req, &resp, &sent_at);
    ck->answered_at = time(NULL);
    if (err == TG_TLS) {
        check_step(ck, TG_CHECK_FAIL, "tls", err,
                   "set ca_file or ca_path to the CA of the server "
                   "certificate; the url host must match the certificate; "
                   "check pinned_pubkey",
                   "%s", tg_client_error(ck->cl));
        return 0;
    }
    if (err != TG_OK) {
        if (ck->https) {
            check_step(ck, TG_CHECK_SKIP, "tls", TG_OK, NULL,
                       "not checked (no answer)");
        }
        check_step(ck, TG_CHECK_FAIL, "http", err,
                   err == TG_TIMEOUT ? "the server accepts connections but "
                                       "does not answer in time; raise "
                                       "timeout or check the server"
                                     : "check the url and the server",
                   "GET %s: %s", req.url, tg_client_error(ck->cl));
        return 0;
    }
    if (ck->https) {
        check_step(ck, TG_CHECK_OK, "tls", TG_OK, NULL,
                   "handshake and certificate verification OK (TLS 1.2 or "
                   "later)");
    } else {
        check_step(ck, TG_CHECK_SKIP, "tls", TG_OK, NULL,
                   "plain http (url is http://)");
    }
    ck->status = resp.status;
    ck->server_date = resp.server_date;
    return 1;
}

/* What the probe's status says about the url and the server. */
static void
check_http(tg_check_t *ck)
{
    const char *url = ck->built.url;
    long status = ck->status;

    cli_set_int(ck->cli, "http_status_probe", status);
    if (status == 401) {
        check_step(ck, TG_CHECK_OK, "http", TG_OK, NULL,
                   "server reachable; API answered 401 as expected without "
                   "a token (GET %s)",
                   url);
    } else if (status == 404) {
        check_step(ck, TG_CHECK_FAIL, "http", TG_NOT_FOUND,
                   ck->cli->cfg->api == TG_API_LOOKER
                       ? "check url (no path) and looker_api_version"
                       : "check url and insight_base_path",
                   "GET %s answered 404: wrong url, base path or API "
                   "version",
                   url);
    } else if (status >= 300 && status < 400) {
        check_step(ck, TG_CHECK_FAIL, "http", TG_PROTOCOL,
                   "set url to the address the server redirects to "
                   "(often https:// or another path); tokengate never "
                   "follows redirects",
                   "GET %s answered %ld (a redirect)", url, status);
    } else if (status >= 500) {
        check_step(ck, TG_CHECK_FAIL, "http", TG_UNAVAILABLE,
                   "the server is up but failing; see its logs",
                   "GET %s answered %ld", url, status);
    } else if (status == 429) {
        check_step(ck, TG_CHECK_WARN, "http", TG_OK, "wait before retrying",
                   "GET %s answered 429: rate limited by the server", url);
    } else {
        check_step(ck, TG_CHECK_WARN, "http", TG_OK,
                   "is this the right server and API flavor (api)?",
                   "GET %s answered %ld without a token (expected 401)", url,
                   status);
    }
}

/* The clock skew, from the probe's Date header. */
static void
check_clock(tg_check_t *ck)
{
    long skew;

    if (ck->server_date == 0) {
        check_step(ck, TG_CHECK_WARN, "clock", TG_OK,
                   "make sure this machine's clock is synchronized (NTP)",
                   "the server sent no Date header; cannot check the clock");
        return;
    }
    skew = (long) (ck->server_date - ck->answered_at);
    cli_set_int(ck->cli, "clock_skew", skew);
    if (labs(skew) > TG_SKEW_FAIL) {
        check_step(ck, TG_CHECK_FAIL, "clock", TG_CONFIG,
                   "synchronize the clocks (NTP): token expiry is "
                   "computed from them",
                   "the server's clock is %ld s %s ours", labs(skew),
                   skew > 0 ? "ahead of" : "behind");
    } else if (labs(skew) > TG_SKEW_WARN) {
        check_step(ck, TG_CHECK_WARN, "clock", TG_OK,
                   "synchronize the clocks (NTP)",
                   "the server's clock is %ld s %s ours", labs(skew),
                   skew > 0 ? "ahead of" : "behind");
    } else {
        check_step(ck, TG_CHECK_OK, "clock", TG_OK, NULL,
                   "server clock within %ld s of ours", labs(skew));
    }
}

/* Release what the steps kept; the steps and the first FAIL decide the
 * result. */
static int
check_finish(tg_check_t *ck)
{
    if (ck->addrs != NULL) {
        freeaddrinfo(ck->addrs);
    }
    tg_client_free(ck->cl);
    tg_request_clear(&ck->built);
    cli_set_json(ck->cli, "steps", ck->steps);
    if (ck->first_err != TG_OK) {
        return cli_failf(ck->cli, ck->first_err, "%s", ck->first_msg);
    }
    return ck->rc;
}
