# SPDX-License-Identifier: MIT
"""One fault, one error, in every front end (issue 12, item 4).

The same table of auth-server faults (the devserver's fault rules,
docs/devserver.md) is driven through the real CLI, the real PAM stack and a
real nginx.  For each row, every front end must log the same err= name
(the CLI on standard error, PAM through syslog, nginx in its error log) and
give its documented answer: the CLI exits with the error's value, PAM
returns the code its man page gives, nginx answers 503.  Before the one
map in common/curl_error.c, nginx said TG_UNAVAILABLE where the CLI and PAM
said TG_PROTOCOL (truncated, oversized, huge headers), and a header line
over libcurl's own limit was "out of memory" (CLI exit 13, PAM_BUF_ERR).

The table is documented in docs/nginx.md ("One fault, one error").
"""
import pytest

from conftest import EXIT, Cli, fetch_token, free_port
from nginxlib import protected, write_tg_conf
from pamlib import PAM, PamHarness

API = "insight"

# A header line over libcurl's own limit (CURL_MAX_HTTP_HEADER, 100 KiB):
# too big for the control API (64 KiB bodies), so it is a start-up rule.
GIANT = 110 * 1024

# What every front end must say: the error name, the PAM code, the nginx
# status.  The CLI's exit code is the error's value (EXIT).
UNAVAIL = "AUTHINFO_UNAVAIL"

# row: (fault rule, start-up --fault spec or None, extra settings
#       {key: value} for all three front ends, err name)
FAULTS = {
    "refused": (None, None, {}, "TG_UNAVAILABLE"),
    "malformed": ({"malformed": True}, None, {}, "TG_PROTOCOL"),
    "truncated": ({"truncate": True}, None, {}, "TG_PROTOCOL"),
    "oversize-known-length": ({"oversize": 1 << 20}, None, {},
                              "TG_PROTOCOL"),
    "oversize-unknown-length": ({"oversize_chunked": 1 << 20}, None, {},
                                "TG_PROTOCOL"),
    "huge-header": ({"raw": "HTTP/1.1 200 OK\r\nContent-Type: "
                     "application/json\r\nContent-Length: 2\r\nX-Big: "
                     + "a" * 40000 + "\r\n\r\n{}"}, None, {}, "TG_PROTOCOL"),
    "header-line-over-libcurl-limit": (
        None, "endpoint=validate,raw=HTTP/1.1 200 OK\\r\\nContent-Type: "
        "application/json\\r\\nContent-Length: 2\\r\\nX-Big: " + "a" * GIANT
        + "\\r\\n\\r\\n{}", {}, "TG_PROTOCOL"),
    "wrong-content-type": ({"content_type": "text/html"}, None, {},
                           "TG_PROTOCOL"),
    "redirect": ({"redirect": "http://127.0.0.1:9/steal"}, None, {},
                 "TG_PROTOCOL"),
    "close": ({"close": True}, None, {}, "TG_UNAVAILABLE"),
    "hang": ({"hang": True}, None, {"timeout": "1"}, "TG_TIMEOUT"),
    "429": ({"retry_after": "7"}, None, {}, "TG_RATE_LIMITED"),
    "500": ({"status": 500}, None, {}, "TG_UNAVAILABLE"),
    "503-no-body": ({"status": 503, "body": False}, None, {},
                    "TG_UNAVAILABLE"),
}

FRONT_ENDS = ["cli", "pam", "nginx"]


@pytest.fixture
def faulty(request, tmp_path, devserver_factory):
    """A devserver with the row's fault injected on the validation call,
    a fresh token of alice's, and the URL the front ends use."""
    rule, spec, extra, name = FAULTS[request.param]
    srv = devserver_factory(*(["--fault", spec] if spec else []))
    token = fetch_token(srv, API, "alice")
    url = srv.url
    if request.param == "refused":
        url = f"http://127.0.0.1:{free_port()}"
    if rule is not None:
        srv.fault(endpoint="validate", **rule)
    return url, token, extra, name


def run_cli(tmp_path, url, token, extra, nginx_factory):
    cli = Cli(tmp_path, url, API)
    cli.tokens.add(token)
    opts = []
    for k, v in extra.items():
        opts += ["-o", f"{k}={v}"]
    res = cli(*opts, "whoami", env={"TOKENGATE_TOKEN": token}, timeout=30)
    return res.err, res.rc


def run_pam(tmp_path, url, token, extra, nginx_factory):
    pam = PamHarness(tmp_path, None, API)
    pam.url = url
    pam.add_secret(token)
    pam.service(args=[f"{k}={v}" for k, v in extra.items()])
    res = pam.run("alice", token, timeout=30)
    return "\n".join(res.module_logs()), res.rc()


def run_nginx(tmp_path, url, token, extra, nginx_factory):
    nginx = nginx_factory()
    protected(nginx, write_tg_conf(tmp_path, API, url, **extra))
    r = nginx.get("/p/index.html", token)
    nginx.stop()             # checks the log: no [alert], no token
    return nginx.logs(), r


RUN = {"cli": run_cli, "pam": run_pam, "nginx": run_nginx}


@pytest.mark.parametrize("front", FRONT_ENDS)
@pytest.mark.parametrize("faulty", sorted(FAULTS), indirect=True)
def test_one_fault_one_error(tmp_path, faulty, front, nginx_factory):
    url, token, extra, name = faulty
    log, answer = RUN[front](tmp_path, url, token, extra, nginx_factory)
    assert f"err={name}" in log, log[-3000:]
    # Exactly one error name for the fault, not a second one beside it.
    names = [f"err=TG_{k}" for k in EXIT if k not in ("OK", "USAGE")]
    assert [n for n in names if n in log] == [f"err={name}"], log[-3000:]
    if front == "cli":
        assert answer == EXIT[name[3:]], log
    elif front == "pam":
        assert answer == PAM[UNAVAIL], log
    else:
        assert answer.status == 503, answer
        assert answer.header("WWW-Authenticate") is None
        if name == "TG_RATE_LIMITED":
            assert answer.header("Retry-After") == "7"
