# SPDX-License-Identifier: MIT
"""ngx_http_tokengate_module end to end: Debian's nginx loading the built
module, a real tokengate-devserver, static files behind the access phase.

Each test protects one behaviour of issue 6 (milestone 1): RFC 6750 answers,
both flavors, group rules, variables, directive validation, the order after
allow/deny and auth_basic, satisfy/error_page, non-blocking I/O, and the
nginx side of the fault matrix.
"""
import json
import os
import socket
import threading
import time

import pytest

from conftest import DEMO, fetch_token, free_port
from nginxlib import (ADMIN_GROUP, CACHE_HEADERS, IDENTITY_HEADERS, doc_blocks,
                      protected, statements, status_json, status_site,
                      write_tg_conf)


# ------------------------------------------------------------------ helpers

def validations(srv):
    """Validation calls: auth/user and looker /user count as "validate",
    insight auth/currentuser as "profile"."""
    c = srv.counters()
    return c["validate"] + c["profile"]


# ------------------------------------------------------------ RFC 6750

def test_valid_token_serves_the_file_with_identity(tmp_path, devserver,
                                                     nginx, api):
    conf = write_tg_conf(tmp_path, api, devserver.url)
    protected(nginx, conf, IDENTITY_HEADERS)
    tok = fetch_token(devserver, api)
    r = nginx.get("/p/index.html", tok)
    assert r.status == 200, r
    assert r.body == b"static index.html\n"
    assert r.header("X-TG-Result") == "valid"
    assert r.header("X-TG-Email") == "alice@example.com"
    assert r.header("X-TG-Id")
    assert r.header("X-TG-User")
    assert r.header("X-Remote-User") == r.header("X-TG-User")
    if api == "looker":
        assert ADMIN_GROUP[api] in r.header("X-TG-Groups").split(",")
    assert r.header("WWW-Authenticate") is None


def test_no_credentials_401_without_error_code(tmp_path, devserver, nginx,
                                               api):
    protected(nginx, write_tg_conf(tmp_path, api, devserver.url))
    r = nginx.get("/p/index.html")
    assert r.status == 401
    assert r.header("WWW-Authenticate") == 'Bearer realm="api"'
    assert validations(devserver) == 0


@pytest.mark.parametrize("value", [
    "Basic YWxpY2U6c2VjcmV0",       # another scheme
    "Bearer",                       # no token
    "Bearer abc$def",               # not b64token
    "Bearer a=b",                   # '=' only at the end
    "Bearer " + "a" * 4097,         # longer than TG_TOKEN_MAX
])
def test_malformed_authorization_400_invalid_request(tmp_path, devserver,
                                                     nginx, value):
    protected(nginx, write_tg_conf(tmp_path, "insight", devserver.url))
    r = nginx.request("/p/index.html", {"Authorization": value})
    assert r.status == 400, r
    assert r.header("WWW-Authenticate") == \
        'Bearer realm="api", error="invalid_request"'
    assert validations(devserver) == 0


def test_invalid_token_401_invalid_token(tmp_path, devserver, nginx, api):
    protected(nginx, write_tg_conf(tmp_path, api, devserver.url),
              IDENTITY_HEADERS)
    r = nginx.get("/p/index.html", "not-a-real-token-0123456789")
    assert r.status == 401
    assert r.header("WWW-Authenticate") == \
        'Bearer realm="api", error="invalid_token"'
    # denied requests carry no identity
    assert r.header("X-TG-User") is None
    assert r.header("X-TG-Email") is None
    assert validations(devserver) == 1


def test_realm_is_escaped(tmp_path, devserver, nginx):
    protected(nginx, write_tg_conf(tmp_path, "insight", devserver.url),
              realm='my \\"realm\\"')
    r = nginx.get("/p/index.html")
    assert r.header("WWW-Authenticate") == 'Bearer realm="my \\"realm\\""'


# ------------------------------------------------------------ group rules

def test_require_group_any(tmp_path, devserver, nginx, api):
    g = ADMIN_GROUP[api]
    protected(nginx, write_tg_conf(tmp_path, api, devserver.url),
              f"tokengate_require_group nosuchgroup {g};")
    assert nginx.get("/p/index.html",
                     fetch_token(devserver, api)).status == 200
    r = nginx.get("/p/index.html", fetch_token(devserver, api, "bob"))
    assert r.status == 403
    assert r.header("WWW-Authenticate") == \
        'Bearer realm="api", error="insufficient_scope"'


def test_require_group_all(tmp_path, devserver, nginx):
    protected(nginx, write_tg_conf(tmp_path, "insight", devserver.url),
              "tokengate_require_group analysts admins all;")
    assert nginx.get("/p/index.html",
                     fetch_token(devserver, "insight")).status == 200
    # carol is in analysts only
    r = nginx.get("/p/index.html", fetch_token(devserver, "insight", "carol"))
    assert r.status == 403


def test_config_file_rules_apply(tmp_path, devserver, nginx):
    conf = write_tg_conf(tmp_path, "insight", devserver.url,
                         deny_evaluation="yes")
    protected(nginx, conf)
    assert nginx.get("/p/index.html",
                     fetch_token(devserver, "insight")).status == 200
    # carol is an evaluation user
    assert nginx.get("/p/index.html",
                     fetch_token(devserver, "insight", "carol")).status == 403


# ------------------------------------------------------------ variables

def test_variables_in_access_log(tmp_path, devserver, nginx):
    conf = write_tg_conf(tmp_path, "looker", devserver.url)
    log = nginx.dir / "logs" / "tg.log"
    protected(nginx, conf, f"access_log {log} tg;", http_extra=(
        "log_format tg '$status|$remote_user|$tokengate_user|"
        "$tokengate_user_id|$tokengate_email|$tokengate_groups|"
        "$tokengate_result';"))
    tok = fetch_token(devserver, "looker")
    assert nginx.get("/p/index.html", tok).status == 200
    assert nginx.get("/p/index.html", "bad-token-0123456789").status == 401
    assert nginx.get("/p/index.html").status == 401
    nginx.stop()
    lines = log.read_text().splitlines()
    ok = lines[0].split("|")
    assert ok[0] == "200"
    assert ok[1] == ok[2] and ok[1] not in ("", "-")
    assert ok[3] == "1"                          # alice's looker id
    assert ok[4] == "alice@example.com"
    assert "7" in ok[5].split(",") and "9" in ok[5].split(",")
    assert ok[6] == "valid"
    assert lines[1].split("|") == ["401", "-", "-", "-", "-", "-", "invalid"]
    assert lines[2].split("|") == ["401", "-", "-", "-", "-", "-", "missing"]
    assert tok not in log.read_text()


def test_token_from_variable(tmp_path, devserver, nginx):
    protected(nginx, write_tg_conf(tmp_path, "insight", devserver.url),
              "tokengate_token $cookie_tg;")
    tok = fetch_token(devserver, "insight")
    nginx.tokens.add(tok)
    assert nginx.request("/p/index.html",
                         {"Cookie": f"tg={tok}"}).status == 200
    r = nginx.request("/p/index.html", {"Authorization": f"Bearer {tok}"})
    assert r.status == 401
    assert r.header("WWW-Authenticate") == 'Bearer realm="api"'


def test_off_by_map_and_nested_off(tmp_path, devserver, nginx):
    conf = write_tg_conf(tmp_path, "insight", devserver.url)
    nginx.server(f"""
        tokengate_config {conf};
        location /p/ {{
            alias {nginx.html}/;
            tokengate $tg_realm;
            location /p/open.html {{ tokengate off; }}
        }}
""", http_extra="""
    map $request_method $tg_realm { OPTIONS off; default "api"; }
""")
    nginx.start()
    assert nginx.get("/p/index.html").status == 401
    assert nginx.get("/p/open.html").status == 200
    assert nginx.get("/p/index.html", method="OPTIONS").status != 401


def test_url_and_api_override(tmp_path, devserver, nginx):
    # the file points at a closed port and the wrong flavor
    conf = write_tg_conf(tmp_path, "insight",
                         f"http://127.0.0.1:{free_port()}")
    protected(nginx, conf, f"tokengate_url {devserver.url};\n"
                           "tokengate_api looker;")
    assert nginx.get("/p/index.html",
                     fetch_token(devserver, "looker")).status == 200


# ------------------------------------------------------------ nginx -t

@pytest.mark.parametrize("directive,needle", [
    ("tokengate_timeout 0;", '"tokengate_timeout" directive must be'),
    ("tokengate_timeout abc;", '"tokengate_timeout" directive invalid'),
    ("tokengate_connect_timeout -1;", '"tokengate_connect_timeout"'),
    ("tokengate_api metabase;", '"tokengate_api"'),
    ("tokengate_require_group any;", "tokengate_require_group"),
    ("tokengate_require_group a,b;", "tokengate_require_group"),
    ("tokengate_config /nonexistent/tokengate.conf;",
     "/nonexistent/tokengate.conf"),
    ("tokengate_url ftp://127.0.0.1/;", "tokengate_url"),
    ("tokengate_url http://example.com/;", "tokengate"),
    ("tokengate_token $a $b;", '"tokengate_token"'),
    ("tokengate_api looker; tokengate_api looker;", "is duplicate"),
])
def test_bad_directives_fail_nginx_t(tmp_path, devserver, nginx, directive,
                                     needle):
    conf = write_tg_conf(tmp_path, "insight", devserver.url)
    nginx.server(f"""
        tokengate_config {conf};
        location /p/ {{
            tokengate "api";
            {directive}
        }}
""")
    r = nginx.test_config()
    assert r.returncode != 0
    assert "[emerg]" in r.stderr and needle in r.stderr, r.stderr
    assert r.stderr.count("[emerg]") == 1


def test_tokengate_without_server_fails_nginx_t(nginx):
    nginx.server('location /p/ { tokengate "api"; }')
    r = nginx.test_config()
    assert r.returncode != 0 and "tokengate_config" in r.stderr


def test_bad_config_file_names_the_file(tmp_path, nginx):
    conf = tmp_path / "bad.conf"
    conf.write_text("api = insight\nurl = http://127.0.0.1:1\nbogus = 1\n")
    os.chmod(conf, 0o600)
    nginx.server(f'location /p/ {{ tokengate "api"; '
                 f'tokengate_config {conf}; }}')
    r = nginx.test_config()
    assert r.returncode != 0
    assert str(conf) in r.stderr and "bogus" in r.stderr, r.stderr


def test_good_config_passes_nginx_t(tmp_path, devserver, nginx):
    conf = write_tg_conf(tmp_path, "insight", devserver.url)
    nginx.server(f"""
        tokengate_config {conf};
        tokengate_timeout 2s;
        tokengate_connect_timeout 500ms;
        location /p/ {{
            tokengate "api";
            tokengate_token $http_x_token;
            tokengate_require_group a b all;
        }}
""")
    r = nginx.test_config()
    assert r.returncode == 0, r.stderr


# ------------------------------------------------- order, satisfy, error_page

def test_deny_runs_first_without_auth_calls(tmp_path, devserver, nginx):
    protected(nginx, write_tg_conf(tmp_path, "insight", devserver.url),
              "deny all;")
    r = nginx.get("/p/index.html", fetch_token(devserver, "insight"))
    assert r.status == 403
    assert r.header("WWW-Authenticate") is None
    assert validations(devserver) == 0


def test_auth_basic_runs_first(tmp_path, devserver, nginx):
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("u:{PLAIN}p\n")
    protected(nginx, write_tg_conf(tmp_path, "insight", devserver.url),
              f'auth_basic "basic"; auth_basic_user_file {htpasswd};')
    r = nginx.get("/p/index.html", fetch_token(devserver, "insight"))
    assert r.status == 401
    assert r.header("WWW-Authenticate") == 'Basic realm="basic"'
    assert validations(devserver) == 0


def test_satisfy_any_with_allow(tmp_path, devserver, nginx):
    conf = write_tg_conf(tmp_path, "insight", devserver.url)
    nginx.server(f"""
        tokengate_config {conf};
        location /lan/ {{
            alias {nginx.html}/;
            satisfy any; allow 127.0.0.1; deny all; tokengate "api";
        }}
        location /wan/ {{
            alias {nginx.html}/;
            satisfy any; deny all; tokengate "api";
        }}
""")
    nginx.start()
    assert nginx.get("/lan/index.html").status == 200
    assert validations(devserver) == 0
    assert nginx.get("/wan/index.html",
                     fetch_token(devserver, "insight")).status == 200
    r = nginx.get("/wan/index.html")
    assert r.status == 401
    assert r.header("WWW-Authenticate") == 'Bearer realm="api"'


def test_error_page_401(tmp_path, devserver, nginx):
    conf = write_tg_conf(tmp_path, "insight", devserver.url)
    nginx.server(f"""
        location /p/ {{
            alias {nginx.html}/;
            tokengate "api"; tokengate_config {conf};
            error_page 401 = @login;
        }}
        location @login {{ return 302 /login; }}
""")
    nginx.start()
    r = nginx.get("/p/index.html")
    assert r.status == 302
    assert r.header("Location").endswith("/login")


# ------------------------------------------------------- non-blocking

def test_slow_auth_server_does_not_block_the_worker(tmp_path, devserver,
                                                    nginx):
    protected(nginx, write_tg_conf(tmp_path, "insight", devserver.url))
    # distinct tokens: twenty transfers, not one coalesced call
    toks = [fetch_token(devserver, "insight") for _ in range(20)]
    devserver.fault(endpoint="validate", delay_ms=1000, count=100)
    results = []

    def one(tok):
        results.append(nginx.get("/p/index.html", tok).status)

    threads = [threading.Thread(target=one, args=(t,)) for t in toks]
    start = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    r = nginx.get("/open.html")
    unprotected = time.monotonic() - t0
    for t in threads:
        t.join(30)
    total = time.monotonic() - start
    assert r.status == 200
    assert unprotected < 0.5, unprotected
    assert results == [200] * 20
    # all twenty ran concurrently, not one after another
    assert total < 4, total
    assert validations(devserver) == 20


def test_client_disconnect_mid_auth(tmp_path, devserver, nginx):
    protected(nginx, write_tg_conf(tmp_path, "insight", devserver.url))
    tok = fetch_token(devserver, "insight")
    nginx.tokens.add(tok)
    workers = nginx.worker_pids()
    devserver.fault(endpoint="validate", delay_ms=800, count=5)
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", nginx.port))
        s.sendall(f"GET /p/index.html HTTP/1.1\r\nHost: x\r\n"
                  f"Authorization: Bearer {tok}\r\n\r\n".encode())
        time.sleep(0.05)
        s.close()
    time.sleep(1.5)
    assert nginx.worker_pids() == workers
    devserver.clear_faults()
    assert nginx.get("/p/index.html", tok).status == 200
    assert nginx.get("/open.html").status == 200


def test_client_disconnect_cancels_the_validation(tmp_path, devserver,
                                                  nginx):
    """A client that leaves mid-auth ends its request and cancels the
    transfer well before the auth server would have answered (5 s), so
    nothing is decided, logged or proxied for a departed client."""
    protected(nginx, write_tg_conf(tmp_path, "insight", devserver.url))
    tok = fetch_token(devserver, "insight")
    nginx.tokens.add(tok)
    devserver.fault(endpoint="validate", delay_ms=5000, count=1)
    s = socket.create_connection(("127.0.0.1", nginx.port))
    s.sendall(f"GET /p/index.html HTTP/1.1\r\nHost: x\r\n"
              f"Authorization: Bearer {tok}\r\n\r\n".encode())
    time.sleep(0.3)
    s.close()
    deadline = time.monotonic() + 3
    while (time.monotonic() < deadline
           and "validation cancelled" not in nginx.logs()):
        time.sleep(0.05)
    assert "validation cancelled" in nginx.logs()
    devserver.clear_faults()
    assert nginx.get("/p/index.html", tok).status == 200


def test_realm_from_variables_cannot_split_headers(tmp_path, devserver,
                                                   nginx):
    """$uri is decoded: %0d%0a in it must not start a new header."""
    protected(nginx, write_tg_conf(tmp_path, "insight", devserver.url),
              realm="api$uri")
    r = nginx.get("/p/%0d%0aSet-Cookie:%20injected=1")
    assert r.status == 401
    assert r.header("Set-Cookie") is None
    challenge = r.header("WWW-Authenticate")
    assert challenge.startswith('Bearer realm="api/p/??Set-Cookie: injected=1')


def test_login_url_with_control_bytes_keeps_the_401(tmp_path, devserver,
                                                    nginx):
    protected(nginx, write_tg_conf(tmp_path, "insight", devserver.url),
              extra="            tokengate_login_url /login?next=$uri;")
    r = nginx.get("/p/%0d%0aX-Injected:%201",
                  headers={"Accept": "text/html"})
    assert r.status == 401
    assert r.header("X-Injected") is None
    r = nginx.get("/p/page", headers={"Accept": "text/html"})
    assert r.status == 302
    assert r.header("Location").endswith("/login?next=/p/page")


def test_keepalive_to_auth_server(tmp_path, devserver, nginx):
    protected(nginx, write_tg_conf(tmp_path, "insight", devserver.url))
    tok = fetch_token(devserver, "insight")
    devserver.reset_counters()
    for _ in range(10):
        assert nginx.get("/p/index.html", tok).status == 200
    c = devserver.counters()
    assert c["validate"] == 10
    assert c["connections"] <= 2, c


# ------------------------------------------------------------ curl handles

def curl_handles(nginx):
    st = status_json(nginx)
    return st["curl_handles"], st["auth_calls"]


def test_validations_reuse_one_curl_handle(tmp_path, devserver, nginx):
    """Sequential validations, accepted and rejected, Bearer and a Basic
    exchange (a POST, then the GET), all run on the one easy handle the
    worker keeps, each with its own token and answer."""
    status_site(nginx, write_tg_conf(tmp_path, "insight", devserver.url),
                     "            tokengate_basic on;")
    users = ["alice", "bob", "carol"]
    toks = {u: fetch_token(devserver, "insight", u) for u in users}
    devserver.reset_counters()
    for i in range(24):
        u = users[i % 3]
        r = nginx.get("/p/index.html", toks[u])
        assert r.status == 200, r
        assert r.header("X-TG-Email") == f"{u}@example.com"
        if i % 6 == 5:
            r = nginx.get("/p/index.html", f"never-issued-{i}-0123456789")
            assert r.status == 401
            assert r.header("WWW-Authenticate") == \
                'Bearer realm="api", error="invalid_token"'
    r = nginx.request("/p/index.html", basic("bob"))
    assert r.status == 200 and r.header("X-TG-Email") == "bob@example.com"
    r = nginx.get("/p/index.html", toks["carol"])
    assert r.status == 200 and r.header("X-TG-Email") == "carol@example.com"
    handles, calls = curl_handles(nginx)
    # 24 + 4 validations, a Basic exchange (one call, two transfers: the
    # token call and its validation), one more: 31 transfers on one handle
    assert calls == 30
    assert handles == {"created": 1, "reused": 30}, handles
    c = devserver.counters()
    assert c["validate"] == 24 + 4 + 2 and c["token"] == 1, c
    assert c["connections"] <= 2, c


def test_handle_of_a_cancelled_transfer_serves_the_next(tmp_path, devserver,
                                                       nginx):
    """A client leaves mid-auth: its transfer is removed from curl's multi
    and its handle wiped and kept; the next requests, with other tokens,
    run on it and get their own answers."""
    status_site(nginx, write_tg_conf(tmp_path, "insight", devserver.url))
    alice = fetch_token(devserver, "insight", "alice")
    bob = fetch_token(devserver, "insight", "bob")
    nginx.tokens.add(alice)
    devserver.fault(endpoint="validate", delay_ms=5000, count=1)
    s = socket.create_connection(("127.0.0.1", nginx.port))
    s.sendall(f"GET /p/index.html HTTP/1.1\r\nHost: x\r\n"
              f"Authorization: Bearer {alice}\r\n\r\n".encode())
    time.sleep(0.3)
    s.close()
    deadline = time.monotonic() + 3
    while (time.monotonic() < deadline
           and "validation cancelled" not in nginx.logs()):
        time.sleep(0.05)
    assert "validation cancelled" in nginx.logs()
    devserver.clear_faults()
    r = nginx.get("/p/index.html", bob)
    assert r.status == 200 and r.header("X-TG-Email") == "bob@example.com"
    r = nginx.get("/p/index.html", "never-issued-after-cancel-0123")
    assert r.status == 401
    r = nginx.get("/p/index.html", alice)
    assert r.status == 200 and r.header("X-TG-Email") == "alice@example.com"
    handles, calls = curl_handles(nginx)
    assert calls == 4
    assert handles == {"created": 1, "reused": 3}, handles


def test_kept_handle_takes_each_locations_options(tmp_path, devserver,
                                                  nginx):
    """A kept handle is reused only with the options it was set up with:
    locations sharing a handle but differing in tokengate_timeout or in
    tokengate.conf (a proxy) each get their own timeout and proxy, whatever
    ran on the handle before."""
    conf = write_tg_conf(tmp_path, "insight", devserver.url)
    proxied = write_tg_conf(tmp_path, "insight", devserver.url,
                            proxy=f"http://127.0.0.1:{free_port()}")
    # one server behind all three: no back-off after /fast/'s timeout
    nginx.server(f"""
        location = /status {{ tokengate_status; }}
        tokengate_config {conf};
        tokengate_backoff off;
        location /p/ {{
            alias {nginx.html}/;
            tokengate "api";
            add_header X-TG-Email $tokengate_email always;
        }}
        location /fast/ {{
            alias {nginx.html}/;
            tokengate "api";
            tokengate_timeout 300ms;
        }}
        location /proxied/ {{
            alias {nginx.html}/;
            tokengate "api";
            tokengate_config {proxied};
        }}
""")
    nginx.start()
    alice = fetch_token(devserver, "insight", "alice")
    devserver.fault(endpoint="validate", delay_ms=800, count=5)
    for path, status in [("/p/", 200), ("/fast/", 503), ("/p/", 200),
                         ("/proxied/", 503), ("/p/", 200),
                         ("/fast/", 503)]:
        r = nginx.get(path + "index.html", alice)
        assert r.status == status, (path, r)
        if status == 200:
            assert r.header("X-TG-Email") == "alice@example.com"
    logs = nginx.logs()
    assert logs.count("timed out") >= 2, logs
    handles, calls = curl_handles(nginx)
    assert calls == 6
    assert handles == {"created": 1, "reused": 5}, handles


def test_log_lines_of_cache_hits_name_the_token(tmp_path, devserver, nginx):
    """The fingerprint is computed only for requests that log: a rejected
    or forbidden hit, and tokengate_require failing after the token was
    wiped, still name their token."""
    import hashlib
    cached(nginx, write_tg_conf(tmp_path, "insight", devserver.url),
           extra="            tokengate_require $arg_ok;")

    def fp(tok):
        return hashlib.sha256(tok.encode()).hexdigest()[:8]

    bad = "never-issued-fingerprint-0123"
    assert nginx.get("/p/index.html", bad).status == 401
    r = nginx.get("/p/index.html", bad)
    assert r.status == 401 and r.header("X-Cache") == "HIT"
    assert f"token {fp(bad)} rejected (cached)" in nginx.logs()
    bob = fetch_token(devserver, "insight", "bob")
    assert nginx.get("/admin/index.html", bob).status == 403
    r = nginx.get("/admin/index.html", bob)
    assert r.status == 403 and r.header("X-Cache") == "HIT"
    assert nginx.logs().count(f"token {fp(bob)} forbidden") == 2
    alice = fetch_token(devserver, "insight", "alice")
    assert nginx.get("/p/index.html?ok=1", alice).status == 200
    r = nginx.get("/p/index.html", alice)
    assert r.status == 403 and r.header("X-Cache") == "HIT"
    assert f"token {fp(alice)}: tokengate_require not satisfied" \
        in nginx.logs()
    assert "????????" not in nginx.logs()


# ------------------------------------------------------------ faults

def test_server_refused_503(tmp_path, nginx):
    protected(nginx, write_tg_conf(tmp_path, "insight",
                                   f"http://127.0.0.1:{free_port()}"))
    r = nginx.get("/p/index.html", "some-token-0123456789")
    assert r.status == 503
    assert r.header("WWW-Authenticate") is None


@pytest.mark.parametrize("rule", [
    {"status": 500}, {"status": 502}, {"malformed": True},
    {"truncate": True}, {"close": True}, {"oversize": 1 << 20},
    {"status": 200, "body": "{}"},
])
def test_server_faults_503(tmp_path, devserver, nginx, api, rule):
    # the next request must reach the server: no back-off after "close"
    protected(nginx, write_tg_conf(tmp_path, api, devserver.url),
              IDENTITY_HEADERS + "tokengate_backoff off;")
    tok = fetch_token(devserver, api)
    devserver.fault(endpoint="validate", count=1, **rule)
    r = nginx.get("/p/index.html", tok)
    assert r.status == 503, (rule, r)
    assert r.header("X-TG-User") is None
    devserver.clear_faults()
    assert nginx.get("/p/index.html", tok).status == 200


def test_rate_limited_503_with_retry_after(tmp_path, devserver, nginx):
    protected(nginx, write_tg_conf(tmp_path, "insight", devserver.url))
    tok = fetch_token(devserver, "insight")
    devserver.fault(endpoint="validate", status=429, retry_after=7, count=1)
    r = nginx.get("/p/index.html", tok)
    assert r.status == 503
    assert r.header("Retry-After") == "7"


def test_timeout_503(tmp_path, devserver, nginx):
    protected(nginx, write_tg_conf(tmp_path, "insight", devserver.url),
              "tokengate_timeout 500ms;")
    tok = fetch_token(devserver, "insight")
    devserver.fault(endpoint="validate", delay_ms=3000, count=1)
    t0 = time.monotonic()
    r = nginx.get("/p/index.html", tok)
    assert r.status == 503
    assert time.monotonic() - t0 < 2.5


def test_graceful_stop_waits_for_in_flight(tmp_path, devserver, nginx):
    protected(nginx, write_tg_conf(tmp_path, "insight", devserver.url))
    tok = fetch_token(devserver, "insight")
    devserver.fault(endpoint="validate", delay_ms=700, count=1)
    out = []
    t = threading.Thread(target=lambda: out.append(
        nginx.get("/p/index.html", tok).status))
    t.start()
    time.sleep(0.3)
    nginx.stop()
    t.join(10)
    assert out == [200]


# ------------------------------------------------------- HTTP/2, reload

def curl(*args):
    import subprocess
    return subprocess.run(["curl", "-s", "-o", "/dev/null", "-D", "-",
                           "--noproxy", "*", *args],
                          capture_output=True, text=True, timeout=30)


def test_http2_answers_and_abort(tmp_path, devserver, nginx):
    conf = write_tg_conf(tmp_path, "insight", devserver.url)
    nginx.configure(f"""
    server {{
        listen 127.0.0.1:{nginx.port} http2;
        root {nginx.html};
        location / {{ }}
        location /p/ {{
            alias {nginx.html}/;
            tokengate "api"; tokengate_config {conf};
        }}
    }}
""")
    nginx.start()
    base = f"http://127.0.0.1:{nginx.port}"
    tok = fetch_token(devserver, "insight")
    nginx.tokens.add(tok)
    r = curl("--http2-prior-knowledge", base + "/p/index.html")
    assert r.stdout.startswith("HTTP/2 401"), r
    assert 'www-authenticate: Bearer realm="api"' in r.stdout
    r = curl("--http2-prior-knowledge", "-H", f"Authorization: Bearer {tok}",
             base + "/p/index.html")
    assert r.stdout.startswith("HTTP/2 200"), r
    # the client gives up (RST_STREAM / close) while the auth call runs
    devserver.fault(endpoint="validate", delay_ms=800, count=3)
    workers = nginx.worker_pids()
    for _ in range(3):
        curl("--http2-prior-knowledge", "--max-time", "0.2", "-H",
             f"Authorization: Bearer {tok}", base + "/p/index.html")
    time.sleep(1.2)
    assert nginx.worker_pids() == workers
    devserver.clear_faults()
    r = curl("--http2-prior-knowledge", "-H", f"Authorization: Bearer {tok}",
             base + "/p/index.html")
    assert r.stdout.startswith("HTTP/2 200"), r


def test_reload_keeps_working(tmp_path, devserver, nginx):
    import signal
    protected(nginx, write_tg_conf(tmp_path, "insight", devserver.url))
    tok = fetch_token(devserver, "insight")
    old = nginx.worker_pids()
    nginx.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and nginx.worker_pids() == old:
        time.sleep(0.1)
    assert nginx.worker_pids() != old
    assert nginx.get("/p/index.html", tok).status == 200
    assert nginx.get("/p/index.html").status == 401


def test_reload_under_traffic(tmp_path, devserver, nginx):
    """nginx -s reload while clients keep asking: every request gets its
    answer (200 with a token, 401 without), none is dropped or 5xx, and
    the cache zone carries over (no new validation after the reload)."""
    import signal
    import threading
    cached(nginx, write_tg_conf(tmp_path, "insight", devserver.url))
    tok = fetch_token(devserver, "insight")
    assert nginx.get("/p/index.html", tok).status == 200
    stop = threading.Event()
    seen = []

    def client():
        while not stop.is_set():
            try:
                seen.append(nginx.get("/p/index.html", tok, timeout=10).status)
                seen.append(nginx.get("/p/index.html", timeout=10).status)
            except OSError as e:
                seen.append(repr(e))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    old = nginx.worker_pids()
    for _ in range(3):
        nginx.proc.send_signal(signal.SIGHUP)
        time.sleep(0.4)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and nginx.worker_pids() == old:
        time.sleep(0.1)
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join(timeout=15)
    assert nginx.worker_pids() != old
    assert len(seen) > 20
    assert set(seen) <= {200, 401}, [x for x in seen if x not in (200, 401)]
    assert validations(devserver) == 1


def test_cache_ttl_ends_at_the_tokens_expiry(tmp_path, devserver_factory,
                                             nginx):
    """A cached identity lives ttl (300 s here) but never past the token's
    own expiry (2 s): after it, the token is checked again and refused."""
    srv = devserver_factory("--insight-max-age", "2")
    cached(nginx, write_tg_conf(tmp_path, "insight", srv.url),
           cache="zone=tg:1m ttl=300s")
    tok = fetch_token(srv, "insight")
    nginx.tokens.add(tok)
    assert nginx.get("/p/index.html", tok).status == 200
    r = nginx.get("/p/index.html", tok)
    assert (r.status, r.header("X-Cache")) == (200, "HIT")
    time.sleep(3)
    r = nginx.get("/p/index.html", tok)
    assert r.status == 401, r
    assert 'error="invalid_token"' in r.header("WWW-Authenticate")
    assert validations(srv) == 2


# ------------------------------------------------------- docs examples

@pytest.mark.parametrize("index", range(len(doc_blocks())))
def test_doc_examples_pass_nginx_t(tmp_path, devserver, nginx, index):
    conf = write_tg_conf(tmp_path, "insight", devserver.url)
    block = doc_blocks()[index]
    if "tokengate_embed" in block:
        # Looker embedding: an embed secret and an API user in the config
        secret = tmp_path / "embed.secret"
        secret.write_text("doc-example-secret\n")
        os.chmod(secret, 0o600)
        conf = write_tg_conf(tmp_path, "looker", devserver.url,
                             embed_secret_file=secret,
                             client_id="alice-client",
                             client_secret_file=secret)
    block = block.replace("/etc/tokengate.conf", str(conf))
    block = block.replace("listen 443 ssl;",
                          f"listen 127.0.0.1:{nginx.port};")
    block = block.replace("http://backend", "http://127.0.0.1:9")
    if block.startswith("load_module"):
        r = nginx.test_config() if nginx.configure("") is None else None
        assert r.returncode == 0, r.stderr
        return
    if block.lstrip().startswith("http {"):
        inner = block.strip()[len("http {"):-1]
        nginx.configure(inner)
    else:
        http, server = [], []
        for st in statements(block):
            (http if st.split()[0] in ("map", "log_format") else
             server).append(st)
        nginx.configure("tokengate_config %s;\n%s\nserver {\n"
                        "listen 127.0.0.1:%d;\n%s\n}\n" % (
                            conf, "\n".join(http), nginx.port,
                            "\n".join(server)))
    r = nginx.test_config()
    assert r.returncode == 0, (block, r.stderr)


# ------------------------------------------------- cache and coalescing


def cached(nginx, conf, cache="zone=tg:1m", extra=""):
    nginx.server(f"""
        tokengate_config {conf};
        tokengate_cache {cache};
        location / {{ }}
        location /p/ {{
            alias {nginx.html}/;
            tokengate "api";
{CACHE_HEADERS}
{extra}
        }}
        location /admin/ {{
            alias {nginx.html}/;
            tokengate "api";
            tokengate_require_group admins;
{CACHE_HEADERS}
        }}
""")
    return nginx.start()


def test_cache_hit(tmp_path, devserver, nginx, api):
    cached(nginx, write_tg_conf(tmp_path, api, devserver.url))
    tok = fetch_token(devserver, api)
    r1 = nginx.get("/p/index.html", tok)
    r2 = nginx.get("/p/index.html", tok)
    assert (r1.status, r2.status) == (200, 200)
    assert r1.header("X-Cache") == "MISS"
    assert r2.header("X-Cache") == "HIT"
    # the cached entry holds the identity
    assert r2.header("X-TG-Email") == r1.header("X-TG-Email")
    assert r2.header("X-TG-Id") == r1.header("X-TG-Id")
    assert r2.header("X-Remote-User") == r1.header("X-Remote-User")
    assert validations(devserver) == 1


def test_negative_cache(tmp_path, devserver, nginx):
    cached(nginx, write_tg_conf(tmp_path, "insight", devserver.url))
    for _ in range(3):
        r = nginx.get("/p/index.html", "never-issued-token-0123")
        assert r.status == 401
        assert r.header("WWW-Authenticate") == \
            'Bearer realm="api", error="invalid_token"'
        assert r.header("X-TG-User") is None
    assert validations(devserver) == 1


def test_negative_ttl_zero_caches_nothing(tmp_path, devserver, nginx):
    cached(nginx, write_tg_conf(tmp_path, "insight", devserver.url),
           "zone=tg:1m negative_ttl=0")
    for _ in range(2):
        assert nginx.get("/p/index.html", "never-issued-0123").status == 401
    assert validations(devserver) == 2


def test_errors_are_not_cached(tmp_path, devserver, nginx):
    cached(nginx, write_tg_conf(tmp_path, "insight", devserver.url))
    tok = fetch_token(devserver, "insight")
    devserver.fault(endpoint="validate", status=500, count=1)
    assert nginx.get("/p/index.html", tok).status == 503
    r = nginx.get("/p/index.html", tok)
    assert r.status == 200 and r.header("X-Cache") == "MISS"
    assert nginx.get("/p/index.html", tok).header("X-Cache") == "HIT"
    assert validations(devserver) == 2


def test_rules_apply_on_hits(tmp_path, devserver, nginx):
    cached(nginx, write_tg_conf(tmp_path, "insight", devserver.url))
    bob = fetch_token(devserver, "insight", "bob")
    alice = fetch_token(devserver, "insight", "alice")
    # insight group rules need currentuser: the zone holds that identity
    assert nginx.get("/admin/index.html", alice).status == 200
    r = nginx.get("/admin/index.html", bob)
    assert r.status == 403
    r = nginx.get("/admin/index.html", bob)
    assert r.status == 403 and r.header("X-Cache") == "HIT"
    assert r.header("WWW-Authenticate") == \
        'Bearer realm="api", error="insufficient_scope"'
    assert validations(devserver) == 2
    # /p/ asks auth/user, /admin/ auth/currentuser: separate entries
    assert nginx.get("/p/index.html", bob).header("X-Cache") == "MISS"
    assert nginx.get("/admin/index.html", bob).header("X-Cache") == "HIT"
    assert validations(devserver) == 3


def test_cache_entries_belong_to_their_own_token(tmp_path, devserver, nginx,
                                                 api):
    """Many tokens of two users, interleaved: every hit carries the
    identity of its own token (the key is a MAC of the whole token)."""
    cached(nginx, write_tg_conf(tmp_path, api, devserver.url))
    toks = [(u, fetch_token(devserver, api, u)) for u in ("alice", "bob") * 5]
    for user, tok in toks * 3:
        r = nginx.get("/p/index.html", tok)
        assert r.status == 200
        assert r.header("X-TG-Email") == f"{user}@example.com", (user, r)
    assert validations(devserver) == len(toks)


def test_cache_ttl(tmp_path, devserver, nginx):
    cached(nginx, write_tg_conf(tmp_path, "insight", devserver.url),
           "zone=tg:1m ttl=1s")
    tok = fetch_token(devserver, "insight")
    assert nginx.get("/p/index.html", tok).header("X-Cache") == "MISS"
    assert nginx.get("/p/index.html", tok).header("X-Cache") == "HIT"
    time.sleep(2.1)
    assert nginx.get("/p/index.html", tok).header("X-Cache") == "MISS"
    assert validations(devserver) == 2


def test_small_zone_evicts_lru(tmp_path, devserver, nginx):
    cached(nginx, write_tg_conf(tmp_path, "insight", devserver.url),
           "zone=tg:32k negative_ttl=60s")
    first = "distinct-token-00000"
    assert nginx.get("/p/index.html", first).status == 401
    for i in range(1, 600):
        assert nginx.get("/p/index.html",
                         f"distinct-token-{i:05d}").status == 401
    calls = validations(devserver)
    assert calls == 600
    # the most recent is still there, the oldest was evicted
    nginx.get("/p/index.html", "distinct-token-00599")
    assert validations(devserver) == calls
    nginx.get("/p/index.html", first)
    assert validations(devserver) == calls + 1


@pytest.mark.parametrize("cache", ["off", "zone=tg:1m"])
def test_coalescing_one_call_for_100_requests(tmp_path, devserver, nginx,
                                               cache):
    cached(nginx, write_tg_conf(tmp_path, "insight", devserver.url), cache)
    tok = fetch_token(devserver, "insight")
    devserver.fault(endpoint="validate", delay_ms=500, count=100)
    out = []

    def one():
        r = nginx.get("/p/index.html", tok)
        out.append((r.status, r.header("X-Cache")))

    threads = [threading.Thread(target=one) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [s for s, _ in out] == [200] * 100
    assert validations(devserver) == 1
    if cache != "off":
        kinds = {c for _, c in out}
        assert kinds <= {"MISS", "HIT", "COALESCED"}
        assert sum(1 for _, c in out if c == "MISS") == 1


def test_coalesced_failure_reaches_every_waiter(tmp_path, devserver, nginx):
    cached(nginx, write_tg_conf(tmp_path, "insight", devserver.url))
    tok = fetch_token(devserver, "insight")
    devserver.fault(endpoint="validate", delay_ms=300, status=429,
                    retry_after=3, count=1)
    out = []
    threads = [threading.Thread(target=lambda: out.append(
        nginx.get("/p/index.html", tok))) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [r.status for r in out] == [503] * 10
    assert all(r.header("Retry-After") == "3" for r in out)
    assert validations(devserver) == 1


def test_cache_survives_reload(tmp_path, devserver, nginx):
    import signal
    cached(nginx, write_tg_conf(tmp_path, "insight", devserver.url))
    tok = fetch_token(devserver, "insight")
    assert nginx.get("/p/index.html", tok).header("X-Cache") == "MISS"
    old = nginx.worker_pids()
    nginx.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and nginx.worker_pids() == old:
        time.sleep(0.1)
    assert nginx.get("/p/index.html", tok).header("X-Cache") == "HIT"
    assert validations(devserver) == 1


@pytest.mark.parametrize("value,needle", [
    ("ttl=5s", 'must have a "zone" parameter'),
    ("zone=tg:1k", "is too small"),
    ("zone=tg:1m foo=1", 'invalid parameter "foo=1"'),
    ("zone=tg:1m ttl=0", 'invalid "ttl=0"'),
    ("zone=tg:abc", "invalid zone size"),
])
def test_bad_cache_directive(tmp_path, devserver, nginx, value, needle):
    conf = write_tg_conf(tmp_path, "insight", devserver.url)
    nginx.server(f"""
        tokengate_config {conf};
        location /p/ {{ tokengate "api"; tokengate_cache {value}; }}
""")
    r = nginx.test_config()
    assert r.returncode != 0
    assert "[emerg]" in r.stderr and needle in r.stderr, r.stderr
    assert "tokengate_cache" in r.stderr


# ------------------------------------------------------------ login URL

def test_login_url_only_for_browsers(tmp_path, devserver, nginx):
    protected(nginx, write_tg_conf(tmp_path, "insight", devserver.url),
              'tokengate_login_url "https://login.example/?next=$uri";')
    html = {"Accept": "text/html,application/xhtml+xml;q=0.9"}
    r = nginx.get("/p/index.html", headers=html)
    assert r.status == 302
    assert r.header("Location") == \
        "https://login.example/?next=/p/index.html"
    r = nginx.get("/p/index.html", "never-issued-0123", headers=html)
    assert r.status == 302
    # API clients, and browsers' non-GET requests, keep the 401
    r = nginx.get("/p/index.html", headers={"Accept": "application/json"})
    assert r.status == 401
    assert r.header("WWW-Authenticate") == 'Bearer realm="api"'
    r = nginx.get("/p/index.html", headers=html, method="POST")
    assert r.status == 401
    # 400 and 403 are not redirected
    r = nginx.request("/p/index.html", {"Authorization": "Basic eA==",
                                        **html})
    assert r.status == 400
    tok = fetch_token(devserver, "insight")
    assert nginx.get("/p/index.html", tok, headers=html).status == 200


# ------------------------------------------------------- tokengate_require

@pytest.mark.parametrize("error,status,code", [
    ("", 403, "insufficient_scope"), ("error=401", 401, "invalid_token")])
def test_require_variables(tmp_path, devserver, nginx, error, status, code):
    protected(nginx, write_tg_conf(tmp_path, "looker", devserver.url),
              f"tokengate_require $is_alice {error};" + IDENTITY_HEADERS,
              http_extra="""
    map $tokengate_email $is_alice { alice@example.com 1; default 0; }
""")
    assert nginx.get("/p/index.html",
                     fetch_token(devserver, "looker")).status == 200
    r = nginx.get("/p/index.html", fetch_token(devserver, "looker", "bob"))
    assert r.status == status
    assert r.header("WWW-Authenticate") == \
        f'Bearer realm="api", error="{code}"'
    assert r.header("X-TG-Email") is None
    assert r.header("X-Remote-User") is None


@pytest.mark.parametrize("value,needle", [
    ("$a error=500", '"error=500"'),
    ("error=403", "needs at least one value"),
])
def test_bad_require_directive(tmp_path, devserver, nginx, value, needle):
    conf = write_tg_conf(tmp_path, "insight", devserver.url)
    nginx.server(f"""
        tokengate_config {conf};
        location /p/ {{ tokengate "api"; tokengate_require {value}; }}
""")
    r = nginx.test_config()
    assert r.returncode != 0
    assert "[emerg]" in r.stderr and needle in r.stderr, r.stderr


# ------------------------------------------------------- tokengate_status

def test_status_counters_json_and_prometheus(tmp_path, devserver, nginx):
    conf = write_tg_conf(tmp_path, "insight", devserver.url)
    nginx.server(f"""
        tokengate_config {conf};
        tokengate_cache zone=tg:1m;
        location = /status {{ tokengate_status; allow 127.0.0.1; deny all; }}
        location /p/ {{ alias {nginx.html}/; tokengate "api"; }}
""")
    nginx.start()
    tok = fetch_token(devserver, "insight")
    assert nginx.get("/p/index.html", tok).status == 200
    assert nginx.get("/p/index.html", tok).status == 200
    assert nginx.get("/p/index.html").status == 401
    assert nginx.get("/p/index.html", "never-issued-0123").status == 401
    r = nginx.get("/status")
    assert r.status == 200 and r.header("Content-Type") == "application/json"
    st = json.loads(r.body)
    assert st["requests"] == {"valid": 2, "missing": 1, "malformed": 0,
                              "invalid": 1, "forbidden": 0,
                              "unavailable": 0, "limited": 0}
    assert st["cache"] == {"hit": 1, "miss": 2, "coalesced": 0, "stale": 0}
    assert st["auth_calls"] == 2
    r = nginx.get("/status?format=prometheus")
    text = r.body.decode()
    assert r.header("Content-Type").startswith("text/plain")
    assert 'tokengate_requests_total{result="valid"} 2\n' in text
    assert 'tokengate_cache_total{status="hit"} 1\n' in text
    assert "tokengate_auth_calls_total 2\n" in text
    assert "# TYPE tokengate_requests_total counter" in text



# ------------------------------------------------- on_unavailable stale

def test_stale_identity_when_the_server_is_down(tmp_path, devserver, nginx):
    conf = write_tg_conf(tmp_path, "insight", devserver.url)
    nginx.server(f"""
        tokengate_config {conf};
        tokengate_cache zone=tg:1m ttl=1s negative_ttl=1s stale_ttl=60s;
        location /stale/ {{
            alias {nginx.html}/;
            tokengate "api";
            tokengate_on_unavailable stale;
{CACHE_HEADERS}
        }}
        location /deny/ {{
            alias {nginx.html}/;
            tokengate "api";
{CACHE_HEADERS}
        }}
""")
    nginx.start()
    tok = fetch_token(devserver, "insight")
    r = nginx.get("/stale/index.html", tok)
    assert r.status == 200 and r.header("X-Cache") == "MISS"
    assert nginx.get("/stale/index.html",
                     "never-valid-0123").status == 401
    time.sleep(1.6)
    devserver.fault(endpoint="validate", status=503, count=100)
    r = nginx.get("/stale/index.html", tok)
    assert r.status == 200, r
    assert r.header("X-Cache") == "STALE"
    assert r.header("X-TG-Email") == "alice@example.com"
    # only where configured
    assert nginx.get("/deny/index.html", tok).status == 503
    # never for a token never seen valid, nor a rejected one
    assert nginx.get("/stale/index.html",
                     "never-valid-0123").status == 503
    assert nginx.get("/stale/index.html", "other-token-0123").status == 503
    devserver.clear_faults()
    # a rejection is not overridden by a stale entry
    r = nginx.get("/stale/index.html", tok)
    assert r.status == 200 and r.header("X-Cache") == "MISS"


def test_stale_needs_a_cache_with_stale_ttl(tmp_path, devserver, nginx):
    conf = write_tg_conf(tmp_path, "insight", devserver.url)
    nginx.server(f"""
        tokengate_config {conf};
        tokengate_cache zone=tg:1m;
        location /p/ {{ tokengate "api"; tokengate_on_unavailable stale; }}
""")
    r = nginx.test_config()
    assert r.returncode != 0 and "stale_ttl" in r.stderr, r.stderr
    nginx.server(f"""
        tokengate_config {conf};
        location /p/ {{ tokengate "api"; tokengate_on_unavailable maybe; }}
""")
    r = nginx.test_config()
    assert r.returncode != 0
    assert 'invalid value "maybe" in "tokengate_on_unavailable"' in r.stderr


# ------------------------------------------------------- tokengate_basic

def basic(user, secret=None):
    import base64
    raw = f"{DEMO[user]['client_id']}:{secret or DEMO[user]['secret']}"
    return {"Authorization": "Basic " + base64.b64encode(raw.encode())
            .decode()}


def test_basic_exchange(tmp_path, devserver, nginx, api):
    cached(nginx, write_tg_conf(tmp_path, api, devserver.url),
           extra="tokengate_basic on;")
    r = nginx.request("/p/index.html", basic("alice"))
    assert r.status == 200, r
    assert r.header("X-TG-Email") == "alice@example.com"
    assert r.header("X-Cache") == "MISS"
    r = nginx.request("/p/index.html", basic("alice"))
    assert r.status == 200 and r.header("X-Cache") == "HIT"
    c = devserver.counters()
    assert c["token"] == 1
    r = nginx.request("/p/index.html", basic("alice", "wrong-secret"))
    assert r.status == 401
    assert r.header("WWW-Authenticate") == \
        'Bearer realm="api", error="invalid_token"'
    r = nginx.request("/p/index.html",
                      {"Authorization": "Basic bm8tY29sb24="})  # no-colon
    assert r.status == 400
    # bearer tokens keep working next to Basic
    assert nginx.get("/p/index.html",
                     fetch_token(devserver, api)).status == 200


def test_basic_off_by_default_is_400(tmp_path, devserver, nginx):
    protected(nginx, write_tg_conf(tmp_path, "insight", devserver.url))
    assert nginx.request("/p/index.html", basic("alice")).status == 400
    assert devserver.counters()["token"] == 0


def test_basic_token_server_down_503(tmp_path, devserver, nginx):
    cached(nginx, write_tg_conf(tmp_path, "insight", devserver.url),
           extra="tokengate_basic on;")
    devserver.fault(endpoint="token", status=500, count=1)
    assert nginx.request("/p/index.html", basic("bob")).status == 503
    assert nginx.request("/p/index.html", basic("bob")).status == 200
