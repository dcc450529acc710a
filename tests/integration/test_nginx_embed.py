# SPDX-License-Identifier: MIT
"""tokengate_embed end to end: Debian's nginx loading the built module, the
real tokengate-devserver as the Looker server that verifies signed embed
URLs and signs them itself (POST /embed/sso_url).

Each test protects one behaviour of issue 7's nginx part: a 302 with
no-store to a URL the devserver accepts exactly once, for the identity
tokengate accepted and only for allowed paths; server signing with a kept
admin token and its failures (503/502, never 500); configuration mistakes
failing "nginx -t" with the directive named; no secret or signed URL in any
log; the documented example passing "nginx -t".
"""
import json
import os
import re
import socket
import subprocess
import time
import urllib.parse

import pytest

from conftest import DEMO, Response, free_port
from nginxlib import (DEMO_EMBED_SECRET, doc_blocks, fetch, looker_token,
                      statements, write_secret, write_tg_conf)


# ------------------------------------------------------------------ helpers

def looker_conf(tmp_path, srv, **extra):
    """tokengate.conf for the devserver's Looker flavor, with the demo embed
    secret and alice (an admin) as the API user for server signing."""
    secret = write_secret(tmp_path / "embed.secret", DEMO_EMBED_SECRET)
    client = write_secret(tmp_path / "client.secret",
                          DEMO["alice"]["secret"])
    keys = {"embed_secret_file": secret, "client_id": "alice-client",
            "client_secret_file": client}
    keys.update(extra)
    return write_tg_conf(tmp_path, "looker", srv.url, **keys)


ACCESS_LOG = """
    log_format tgembed '$remote_addr $remote_user "$request" $status '
                       '$tokengate_result $tokengate_user_id '
                       '"$sent_http_cache_control"';
"""


def embed_site(nginx, conf, srv, mode="local", extra="", server_extra="",
               allow="/embed/dashboards/42 /embed/dashboards/43", host=None):
    """/dash?d=N embeds /embed/dashboards/N; /p/ is a protected file."""
    nginx.server(f"""
        access_log {nginx.access_log} tgembed;
        tokengate_config {conf};
{server_extra}
        location /p/ {{ alias {nginx.html}/; tokengate "api"; }}
        location = /status {{ tokengate_status; }}
        location = /dash {{
            tokengate "looker";
            tokengate_embed {mode};
            tokengate_embed_host {host or f"http://127.0.0.1:{srv.port}"};
            tokengate_embed_path /embed/dashboards/$arg_d;
            tokengate_embed_allow {allow};
            tokengate_embed_permissions access_data see_user_dashboards;
            tokengate_embed_models thelook;
            tokengate_embed_external_user_id "portal-$tokengate_user_id";
{extra}
        }}
""", http_extra=ACCESS_LOG)
    nginx.secrets.update({DEMO_EMBED_SECRET, DEMO["alice"]["secret"]})
    return nginx.start()


def dashboard_42(srv):
    """Embed settings for one dashboard, with srv as Looker."""
    return f"""tokengate_embed_host http://127.0.0.1:{srv.port};
        tokengate_embed_path /embed/dashboards/42;
        tokengate_embed_permissions access_data;
        tokengate_embed_models thelook;"""


def signed(nginx, r):
    """Check a 302 to a signed URL and keep it (and its signature) out of
    the logs."""
    assert r.status == 302, r
    assert r.header("Cache-Control") == "no-store", r
    url = r.header("Location")
    assert url is not None and "/login/embed/" in url, r
    assert r.body == b""
    nginx.secrets.add(url)
    nginx.secrets.add(urllib.parse.urlsplit(url).query)
    sig = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["signature"]
    nginx.secrets.add(sig[0])
    return url


def open_embed(url):
    """Follow a signed URL as the browser does: the devserver's verifier
    answers 302 and a session cookie, then the embed page."""
    r = fetch(url)
    assert r.status == 302, r
    cookie = r.header("Set-Cookie")
    assert cookie and cookie.startswith("tg_embed_session="), r
    page = fetch(urllib.parse.urljoin(url, r.header("Location")),
                 {"Cookie": cookie.split(";", 1)[0]})
    return r, page


def status(nginx):
    return json.loads(nginx.get("/status").body)


def curl_h2(port, path, token, *args):
    """One request over HTTP/2 (prior knowledge) with curl: the Response,
    or None when none came."""
    out = subprocess.run(["curl", "-s", "-i", "--noproxy", "*",
                          "--http2-prior-knowledge", *args, "-H",
                          f"Authorization: Bearer {token}",
                          f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, timeout=30).stdout
    if not out.startswith(b"HTTP/2 "):
        return None
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    return Response(int(lines[0].split()[1]),
                    [tuple(ln.split(": ", 1)) for ln in lines[1:]], body)


# ------------------------------------------------------- local signing

def test_local_signing_end_to_end(tmp_path, devserver, nginx):
    embed_site(nginx, looker_conf(tmp_path, devserver), devserver)
    tok = looker_token(devserver)
    r = nginx.get("/dash?d=42", tok)
    url = signed(nginx, r)
    assert url.startswith(f"http://127.0.0.1:{devserver.port}/login/embed/"
                          "%2Fembed%2Fdashboards%2F42?")
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert q["external_user_id"] == ['"portal-1"']
    assert q["first_name"] == ['"Alice Smith"']
    assert json.loads(q["permissions"][0]) == ["access_data",
                                               "see_user_dashboards"]
    assert json.loads(q["models"][0]) == ["thelook"]
    assert q["session_length"] == ["300"]

    login, page = open_embed(url)
    assert login.header("Location") == "/embed/dashboards/42"
    assert page.status == 200, page
    assert b'<span id="external_user_id">portal-1</span>' in page.body

    # the URL works once
    assert fetch(url).status == 401
    c = devserver.counters()
    assert c["embed_login"] == 1 and c["embed_rejected"] == 1
    assert c["embed_page"] == 1 and c["embed_sso_url"] == 0

    # every request gets a fresh URL
    url2 = signed(nginx, nginx.get("/dash?d=43", tok))
    assert url2 != url
    assert open_embed(url2)[1].status == 200

    # the error log has the URL's fingerprint, never the URL
    assert re.search(r"tokengate_embed: signed URL [0-9a-f]{8} \(local "
                     r'signing\) for "/embed/dashboards/42"', nginx.logs())


def test_cookie_token_and_identity_directives(tmp_path, devserver, nginx):
    embed_site(nginx, looker_conf(tmp_path, devserver), devserver,
               extra="""
            tokengate_token $cookie_tg_session;
            tokengate_embed_first_name "$tokengate_user";
            tokengate_embed_last_name "(portal)";
            tokengate_embed_group_ids 7 "$arg_g";
            tokengate_embed_external_group_id acme;
            tokengate_embed_attribute email $tokengate_email;
            tokengate_embed_attribute tier gold;
            tokengate_embed_session_length 1h;
            tokengate_embed_force_logout_login off;
            tokengate_embed_query "embed_domain=http://127.0.0.1:1&sdk=2";
""")
    tok = looker_token(devserver, "bob")
    nginx.tokens.add(tok)
    r = nginx.request("/dash?d=43&g=8,,9", {"Cookie": f"tg_session={tok}"})
    url = signed(nginx, r)
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert q["external_user_id"] == ['"portal-2"']
    assert q["first_name"] == ['"Bob Jones"']
    assert q["last_name"] == ['"(portal)"']
    assert json.loads(q["group_ids"][0]) == ["7", "8", "9"]
    assert q["external_group_id"] == ['"acme"']
    assert json.loads(q["user_attributes"][0]) == {
        "email": "bob@example.com", "tier": "gold"}
    assert q["session_length"] == ["3600"]
    assert q["force_logout_login"] == ["false"]
    assert urllib.parse.unquote(urllib.parse.urlsplit(url).path).endswith(
        "/embed/dashboards/43?embed_domain=http://127.0.0.1:1&sdk=2")
    login, page = open_embed(url)
    assert page.status == 200
    assert b">portal-2<" in page.body


def test_unauthenticated_never_reaches_the_handler(tmp_path, devserver,
                                                   nginx):
    embed_site(nginx, looker_conf(tmp_path, devserver), devserver,
               extra="            tokengate_login_url /login;")
    r = nginx.get("/dash?d=42")
    assert r.status == 401
    assert r.header("WWW-Authenticate") == 'Bearer realm="looker"'
    assert r.header("Location") is None
    r = nginx.get("/dash?d=42", headers={"Accept": "text/html"})
    assert r.status == 302 and r.header("Location").endswith("/login")
    r = nginx.get("/dash?d=42", "never-issued-0123456789")
    assert r.status == 401 and "invalid_token" in r.header("WWW-Authenticate")
    assert devserver.counters()["embed_login"] == 0
    assert status(nginx)["embed"] == {"local": 0, "server": 0, "refused": 0,
                                      "failed": 0}


@pytest.mark.parametrize("query, code", [
    ("d=44", 403),                        # well formed, not allowed
    ("d=4", 403),
    ("d=42/../44", 400),                  # traversal
    ("d=..", 400),
    ("d=42%2F..%2F44", 400),              # encoded: '%' is never allowed
    ("d=42?embed_domain=https://evil", 400),
    ("d=", 400),                          # /embed/dashboards/
    ("", 400),
    ("d=42%0d%0aX:1", 400),
    ("d=42//43", 400),                    # empty segment
    ("d=42/", 400),
    ("d=./42", 400),
    ("d=42%23x", 400),
    ("d=42+x", 400),
    ("d=44&d=42", 403),                   # the first d is the one checked
])
def test_paths_outside_the_allow_list_are_refused(tmp_path, devserver, nginx,
                                                  query, code):
    embed_site(nginx, looker_conf(tmp_path, devserver), devserver)
    tok = looker_token(devserver)
    r = nginx.get("/dash?" + query, tok)
    assert r.status == code, r
    assert r.header("Location") is None
    assert r.header("Cache-Control") == "no-store"
    assert status(nginx)["embed"]["refused"] == 1


def test_prefix_allow_entry(tmp_path, devserver, nginx):
    embed_site(nginx, looker_conf(tmp_path, devserver), devserver,
               allow="/embed/dashboards/sales::*")
    tok = looker_token(devserver)
    url = signed(nginx, nginx.get("/dash?d=sales::q3", tok))
    assert open_embed(url)[1].status == 200
    assert nginx.get("/dash?d=sales::", tok).status == 403
    assert nginx.get("/dash?d=hr::pay", tok).status == 403


def test_no_identity_is_403_never_a_url(tmp_path, devserver, nginx):
    """satisfy any: allow lets the request through without tokengate's
    identity; the handler refuses instead of signing for nobody."""
    embed_site(nginx, looker_conf(tmp_path, devserver), devserver,
               extra="            satisfy any; allow 127.0.0.1; deny all;")
    r = nginx.get("/dash?d=42")
    assert r.status == 403 and r.header("Location") is None
    assert "has no identity accepted by" in nginx.logs()


def test_rules_of_the_location_apply(tmp_path, devserver, nginx):
    embed_site(nginx, looker_conf(tmp_path, devserver), devserver,
               extra="            tokengate_require_group 9;")
    assert nginx.get("/dash?d=42", looker_token(devserver, "bob")).status \
        == 403
    signed(nginx, nginx.get("/dash?d=42", looker_token(devserver)))


@pytest.mark.parametrize("mode", ["local", "server"])
def test_if_and_limit_except_blocks_keep_the_handler(tmp_path, devserver,
                                                     nginx, mode):
    """An "if" (or "limit_except") block keeps its location's content
    handler, so it must keep tokengate_embed: a request that took the "if"
    branch once crashed the worker (the block's conf had no secret and no
    admin login)."""
    embed_site(nginx, looker_conf(tmp_path, devserver), devserver, mode=mode,
               extra="""
            if ($arg_x) { add_header X-Branch if always; }
            limit_except GET { deny all; }
""")
    tok = looker_token(devserver)
    r = nginx.get("/dash?d=42&x=1", tok)
    url = signed(nginx, r)
    assert r.header("X-Branch") == "if"
    assert open_embed(url)[1].status == 200
    assert nginx.get("/dash?d=44&x=1", tok).status == 403
    r = nginx.get("/dash?d=42", tok, method="POST")
    assert r.status == 403 and r.header("Location") is None
    signed(nginx, nginx.get("/dash?d=43", tok))
    nginx.stop()          # check_log: no "[alert] ... exited on signal"


@pytest.mark.parametrize("mode", ["local", "server"])
def test_only_get(tmp_path, devserver, nginx, mode):
    """HEAD and POST get 405 before anything is signed: no URL, no call to
    Looker (not even the admin login), counted as refused only."""
    embed_site(nginx, looker_conf(tmp_path, devserver), devserver, mode=mode)
    tok = looker_token(devserver)
    before = devserver.counters()
    for method in ("HEAD", "POST"):
        r = nginx.get("/dash?d=42", tok, method=method)
        assert r.status == 405 and r.header("Allow") == "GET", r
        assert r.header("Location") is None
        assert r.header("Cache-Control") == "no-store"
    assert status(nginx)["embed"] == {"local": 0, "server": 0, "refused": 2,
                                      "failed": 0}
    c = devserver.counters()
    for name in ("token", "embed_sso_url", "embed_login"):
        assert c[name] == before[name], name
    assert "tokengate_embed: signed URL" not in nginx.logs()


def test_bad_identity_value_refused(tmp_path, devserver, nginx):
    """A first name that is not UTF-8 (a raw byte in a header here) never
    reaches a URL: 403 with the reason in the error log."""
    embed_site(nginx, looker_conf(tmp_path, devserver), devserver,
               extra='            tokengate_embed_first_name $http_x_name;')
    tok = looker_token(devserver)
    r = nginx.get("/dash?d=42", tok, headers={"X-Name": "Al\xffce"})
    assert r.status == 403 and r.header("Location") is None
    assert "first_name: not UTF-8" in nginx.logs()
    signed(nginx, nginx.get("/dash?d=42", tok, headers={"X-Name": "Al"}))


# ------------------------------------------------------ server signing

def test_server_signing_end_to_end(tmp_path, devserver, nginx):
    embed_site(nginx, looker_conf(tmp_path, devserver), devserver,
               mode="server")
    tok = looker_token(devserver)
    before = devserver.counters()
    url = signed(nginx, nginx.get("/dash?d=42", tok))
    assert url.startswith(f"http://127.0.0.1:{devserver.port}/login/embed/"
                          "%2Fembed%2Fdashboards%2F42?")
    c = devserver.counters()
    assert c["embed_sso_url"] == 1
    assert c["token"] == before["token"] + 1          # the admin login
    login, page = open_embed(url)
    assert page.status == 200
    assert b">portal-1<" in page.body
    assert fetch(url).status == 401                   # once only

    # the admin token is kept: no second login
    url2 = signed(nginx, nginx.get("/dash?d=43", tok))
    assert open_embed(url2)[1].status == 200
    c = devserver.counters()
    assert c["embed_sso_url"] == 2
    assert c["token"] == before["token"] + 1
    assert status(nginx)["embed"] == {"local": 0, "server": 2, "refused": 0,
                                      "failed": 0}
    assert re.search(r"tokengate_embed: admin token [0-9a-f]{8} from",
                     nginx.logs())


def test_server_signing_logs_in_again_after_401(tmp_path, devserver, nginx):
    embed_site(nginx, looker_conf(tmp_path, devserver), devserver,
               mode="server",
               server_extra="        tokengate_cache zone=tg:1m ttl=1h;")
    tok = looker_token(devserver)
    signed(nginx, nginx.get("/dash?d=42", tok))
    # Looker forgets every token (the user's is cached in nginx)
    devserver.advance_clock(2 * 3600)
    before = devserver.counters()
    url = signed(nginx, nginx.get("/dash?d=42", tok))
    c = devserver.counters()
    assert c["token"] == before["token"] + 1
    assert c["embed_sso_url"] == before["embed_sso_url"] + 2
    assert open_embed(url)[1].status == 200
    assert "the admin token was rejected, logging in again" in nginx.logs()


def test_concurrent_requests_share_one_admin_login(tmp_path, devserver,
                                                   nginx):
    import threading
    embed_site(nginx, looker_conf(tmp_path, devserver), devserver,
               mode="server")
    tok = looker_token(devserver)
    devserver.fault(endpoint="token", delay_ms=500, count=1)
    before = devserver.counters()["token"]
    out = []

    def one():
        out.append(nginx.get("/dash?d=42", tok))

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status for r in out] == [302] * 8
    assert len({r.header("Location") for r in out}) == 8
    for r in out:
        signed(nginx, r)
    assert devserver.counters()["token"] == before + 1


def test_server_signing_with_the_server_down_503(tmp_path, devserver_factory,
                                                 nginx):
    srv = devserver_factory()
    embed_site(nginx, looker_conf(tmp_path, srv), srv, mode="server",
               server_extra="        tokengate_cache zone=tg:1m ttl=1h;")
    tok = looker_token(srv)
    assert nginx.get("/p/index.html", tok).status == 200   # cached now
    srv.stop()
    r = nginx.get("/dash?d=42", tok)
    assert r.status == 503, r
    assert r.header("Location") is None
    assert r.header("Cache-Control") == "no-store"
    assert "the admin login to" in nginx.logs()
    assert status(nginx)["embed"]["failed"] == 1


@pytest.mark.parametrize("rule, code, retry", [
    ({"endpoint": "embed_sso_url", "status": 429, "retry_after": "7"},
     503, "7"),
    ({"endpoint": "embed_sso_url", "status": 500}, 503, None),
    ({"endpoint": "embed_sso_url", "status": 403}, 502, None),
    ({"endpoint": "embed_sso_url", "status": 422}, 502, None),
    ({"endpoint": "embed_sso_url", "malformed": True}, 502, None),
    ({"endpoint": "token", "status": 404}, 502, None),
    ({"endpoint": "token", "status": 503, "retry_after": "3"}, 503, "3"),
])
def test_server_signing_failures(tmp_path, devserver, nginx, rule, code,
                                 retry):
    # the next request must reach Looker: no back-off after a 429/503
    embed_site(nginx, looker_conf(tmp_path, devserver), devserver,
               mode="server", extra="            tokengate_backoff off;")
    tok = looker_token(devserver)
    devserver.fault(count=1, **rule)
    r = nginx.get("/dash?d=42", tok)
    assert r.status == code, r
    assert r.header("Retry-After") == retry
    assert r.header("Location") is None
    assert "Looker did not sign" in nginx.logs() \
        or "the admin login to" in nginx.logs()
    # the next request works (nothing bad was kept)
    signed(nginx, nginx.get("/dash?d=42", tok))


def test_server_signing_timeout_503(tmp_path, devserver, nginx):
    embed_site(nginx, looker_conf(tmp_path, devserver), devserver,
               mode="server", extra="            tokengate_timeout 1s;")
    tok = looker_token(devserver)
    devserver.fault(endpoint="embed_sso_url", delay_ms=5000, count=1)
    r = nginx.get("/dash?d=42", tok)
    assert r.status == 503
    assert r.header("Location") is None and r.header("Retry-After") is None
    assert re.search(r'Looker did not sign "/embed/dashboards/42" '
                     r'\(TG_TIMEOUT\): ', nginx.logs()), nginx.logs()[-2000:]
    assert status(nginx)["embed"] == {"local": 0, "server": 0, "refused": 0,
                                      "failed": 1}


def test_admin_login_uses_the_timeouts_of_its_location(tmp_path, devserver,
                                                       nginx):
    """Two locations share one tokengate.conf (one admin login per
    worker): the login started by a request of /short times out after
    /short's tokengate_timeout, not /long's (the first location's)."""
    conf = looker_conf(tmp_path, devserver)
    nginx.server(f"""
        tokengate_config {conf};
        {dashboard_42(devserver)}
        tokengate "looker";
        tokengate_backoff off;      # /long must call after /short's timeout
        location = /status {{ tokengate off; tokengate_status; }}
        location = /long {{ tokengate_embed server; tokengate_timeout 20s; }}
        location = /short {{ tokengate_embed server; tokengate_timeout 1s; }}
""")
    nginx.secrets.update({DEMO_EMBED_SECRET, DEMO["alice"]["secret"]})
    nginx.start()
    tok = looker_token(devserver)
    devserver.fault(endpoint="token", delay_ms=6000, count=1)
    r = nginx.get("/short", tok)
    assert r.status == 503, r               # with /long's: 302 after 6 s
    assert re.search(r"the admin login to \S+ failed \(TG_TIMEOUT\)",
                     nginx.logs()), nginx.logs()[-2000:]
    signed(nginx, nginx.get("/long", tok))
    assert status(nginx)["embed"] == {"local": 0, "server": 1, "refused": 0,
                                      "failed": 1}


def cancel_sso_url(nginx, devserver, tok):
    """A client leaves while Looker (slowed down) signs its URL: wait until
    the call reached Looker, close, and wait for the call's cancellation."""
    devserver.fault(endpoint="embed_sso_url", delay_ms=3000, count=1)
    calls = devserver.counters()["embed_sso_url"]
    nginx.tokens.add(tok)
    s = socket.create_connection(("127.0.0.1", nginx.port))
    s.sendall(b"GET /dash?d=42 HTTP/1.1\r\nHost: x\r\n"
              b"Authorization: Bearer " + tok.encode() + b"\r\n\r\n")
    deadline = time.monotonic() + 30           # the call reached Looker
    while devserver.counters()["embed_sso_url"] == calls:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    s.close()
    deadline = time.monotonic() + 30
    while "signing cancelled" not in nginx.logs():
        assert time.monotonic() < deadline, nginx.logs()[-2000:]
        time.sleep(0.1)


def test_client_gone_cancels_server_signing(tmp_path, devserver, nginx):
    embed_site(nginx, looker_conf(tmp_path, devserver), devserver,
               mode="server")
    tok = looker_token(devserver)
    signed(nginx, nginx.get("/dash?d=42", tok))       # admin token kept
    cancel_sso_url(nginx, devserver, tok)
    # the worker is fine
    signed(nginx, nginx.get("/dash?d=43", tok))


def test_server_signing_runs_on_the_kept_curl_handles(tmp_path, devserver,
                                                      nginx):
    """The admin login and the sso_url calls take their curl handle from the
    worker's free list like validations: sequential requests run every
    transfer (GET validations, POST login and sso_url) on the handles the
    worker keeps, and the handle of a cancelled sso_url call serves the
    next ones.  Two handles: the login's handler starts the sso_url call
    while the login still holds its handle (its answer is borrowed)."""
    embed_site(nginx, looker_conf(tmp_path, devserver), devserver,
               mode="server")
    tok = looker_token(devserver)
    before = devserver.counters()
    signed(nginx, nginx.get("/dash?d=42", tok))   # validate, login, sso_url
    signed(nginx, nginx.get("/dash?d=43", tok))   # validate, sso_url
    assert nginx.get("/p/index.html", tok).status == 200
    c = devserver.counters()
    assert c["token"] == before["token"] + 1
    assert c["embed_sso_url"] == before["embed_sso_url"] + 2
    st = status(nginx)
    assert st["curl_handles"] == {"created": 2, "reused": 4}, st

    cancel_sso_url(nginx, devserver, tok)
    devserver.clear_faults()
    url = signed(nginx, nginx.get("/dash?d=43", tok))
    assert open_embed(url)[1].status == 200
    assert nginx.get("/p/index.html", tok).status == 200
    st = status(nginx)
    assert st["curl_handles"] == {"created": 2, "reused": 9}, st
    assert st["embed"] == {"local": 0, "server": 3, "refused": 0,
                           "failed": 0}, st


def test_clients_gone_during_the_admin_login(tmp_path, devserver, nginx):
    """Requests waiting for the worker's admin login go away (one, then
    all but one): the login still ends and keeps its token, the one left
    gets its URL, nothing hangs and the worker does not crash."""
    embed_site(nginx, looker_conf(tmp_path, devserver), devserver,
               mode="server")
    tok = looker_token(devserver)
    nginx.tokens.add(tok)
    before = devserver.counters()["token"]
    devserver.fault(endpoint="token", delay_ms=1500, count=1)
    req = (b"GET /dash?d=42 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
           b"Authorization: Bearer " + tok.encode() + b"\r\n\r\n")
    socks = []
    for _ in range(4):
        s = socket.create_connection(("127.0.0.1", nginx.port))
        s.sendall(req)
        socks.append(s)
    deadline = time.monotonic() + 30           # the login reached Looker
    while devserver.counters()["token"] == before:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    for s in socks[1:]:
        s.close()
    socks[0].settimeout(10)
    data = b""
    while True:
        chunk = socks[0].recv(65536)
        if not chunk:
            break
        data += chunk
    socks[0].close()
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    assert head.startswith("HTTP/1.1 302"), head
    loc = [ln.split(": ", 1)[1] for ln in head.split("\r\n")
           if ln.lower().startswith("location: ")][0]
    nginx.secrets.add(loc)
    assert open_embed(loc)[1].status == 200
    # one login for all of them, and its token is kept
    signed(nginx, nginx.get("/dash?d=43", tok))
    assert devserver.counters()["token"] == before + 1
    log = nginx.logs()        # the three went while the login ran
    assert log.count("client prematurely closed connection") == 3, log
    assert log.rindex("client prematurely closed connection") \
        < log.index("tokengate_embed: admin token ")
    nginx.stop()


def test_runtime_off_and_internal_redirect_never_sign(tmp_path, devserver,
                                                      nginx):
    """"tokengate $v" that evaluates to off for a request, and an internal
    redirect (error_page) into the embed location from a location that let
    the request through without tokengate, both give 403, never a URL."""
    conf = looker_conf(tmp_path, devserver)
    nginx.server(f"""
        tokengate_config {conf};
        {dashboard_42(devserver)}
        location = /dash {{
            tokengate $realm;
            tokengate_embed local;
        }}
        location = /open {{ error_page 404 = /dash; return 404; }}
        location = /off {{ error_page 404 = /dash?off=1; return 404; }}
""", http_extra="""
    map $arg_off $realm { default "looker"; 1 off; }
""")
    nginx.secrets.add(DEMO_EMBED_SECRET)
    nginx.start()
    tok = looker_token(devserver)
    r = nginx.get("/dash?off=1", tok)
    assert r.status == 403 and r.header("Location") is None
    r = nginx.get("/off", tok)
    assert r.status == 403 and r.header("Location") is None
    r = nginx.get("/open")
    assert r.status == 401 and r.header("Location") is None
    signed(nginx, nginx.get("/open", tok))      # tokengate ran in /dash
    # error_page makes a POST a GET (docs/nginx.md says so)
    signed(nginx, nginx.get("/open", tok, method="POST"))
    signed(nginx, nginx.get("/dash", tok))


def test_url_on_another_host_is_not_followed(tmp_path, devserver, nginx):
    """Looker's answer must be on tokengate_embed_host: a URL for another
    host gives 502, never a redirect."""
    embed_site(nginx, looker_conf(tmp_path, devserver), devserver,
               mode="server")
    tok = looker_token(devserver)
    devserver.fault(endpoint="embed_sso_url", status=200,
                    body='{"url":"http://127.0.0.2:1/login/embed/x"}',
                    count=1)
    r = nginx.get("/dash?d=42", tok)
    assert r.status == 502 and r.header("Location") is None
    assert "is not on \"tokengate_embed_host\"" in nginx.logs()


# ---------------------------------------------------------------- HTTP/2

def test_http2(tmp_path, devserver, nginx):
    """The handler over HTTP/2: local and server signing, two requests
    waiting for one admin login, 405 for HEAD, and a stream reset while
    Looker signs (the call is cancelled, the worker lives on)."""
    port = free_port()
    conf = looker_conf(tmp_path, devserver)
    embed_site(nginx, conf, devserver, mode="server",
               server_extra=f"""
        listen 127.0.0.1:{port} http2;
        location = /local {{
            tokengate "looker";
            tokengate_embed local;
            {dashboard_42(devserver)}
        }}
""")
    tok = looker_token(devserver)
    nginx.tokens.add(tok)

    assert open_embed(signed(nginx, curl_h2(port, "/local", tok)))[1] \
        .status == 200

    # two requests waiting for one admin login (on two connections:
    # curl 7.88 fails to multiplex --parallel with prior knowledge)
    before = devserver.counters()["token"]
    devserver.fault(endpoint="token", delay_ms=500, count=1)
    base = f"http://127.0.0.1:{port}/dash?d="
    out = subprocess.run(["curl", "-s", "--noproxy", "*",
                          "--http2-prior-knowledge", "--parallel",
                          "--parallel-immediate", "-H",
                          f"Authorization: Bearer {tok}", "-w",
                          "%{http_version} %{http_code} %{redirect_url}\n",
                          "-o", "/dev/null", base + "42",
                          "-o", "/dev/null", base + "43"],
                         capture_output=True, text=True, timeout=30).stdout
    answers = [ln.split() for ln in out.splitlines()]
    assert sorted(a[:2] for a in answers) == [["2", "302"]] * 2, out
    for a in answers:
        nginx.secrets.add(a[2])
        assert open_embed(a[2])[1].status == 200
    assert answers[0][2] != answers[1][2]
    assert devserver.counters()["token"] == before + 1

    r = curl_h2(port, "/dash?d=42", tok, "-I")
    assert r.status == 405 and r.header("allow") == "GET", r
    assert r.header("location") is None

    # the client resets the stream while Looker signs
    devserver.fault(endpoint="embed_sso_url", delay_ms=2000, count=1)
    workers = nginx.worker_pids()
    assert curl_h2(port, "/dash?d=42", tok, "--max-time", "0.5") is None
    deadline = time.monotonic() + 30
    while "signing cancelled" not in nginx.logs():
        assert time.monotonic() < deadline, nginx.logs()[-2000:]
        time.sleep(0.1)
    assert nginx.worker_pids() == workers
    signed(nginx, curl_h2(port, "/dash?d=43", tok))
    assert status(nginx)["embed"] == {"local": 1, "server": 3, "refused": 1,
                                      "failed": 0}
    nginx.stop()


# ---------------------------------------------------------- status page

def test_status_counts_embed_answers(tmp_path, devserver, nginx):
    embed_site(nginx, looker_conf(tmp_path, devserver), devserver)
    tok = looker_token(devserver)
    signed(nginx, nginx.get("/dash?d=42", tok))
    assert nginx.get("/dash?d=44", tok).status == 403
    st = status(nginx)
    assert st["embed"] == {"local": 1, "server": 0, "refused": 1,
                           "failed": 0}
    text = nginx.get("/status?format=prometheus").body.decode()
    assert 'tokengate_embed_total{result="local"} 1\n' in text
    assert 'tokengate_embed_total{result="refused"} 1\n' in text


# ------------------------------------------------------------- secrets

def test_no_secret_or_url_in_any_log(tmp_path, devserver, nginx):
    """Both modes (tokengate and the embed settings inherited from the
    server level), info logging: the error log and the access log never
    show the embed secret, the client secret, a signed URL or its
    signature (Nginx.check_log at stop)."""
    conf = looker_conf(tmp_path, devserver)
    nginx.server(f"""
        access_log {nginx.access_log} tgembed;
        tokengate_config {conf};
        {dashboard_42(devserver)}
        tokengate "site";
        location = /local {{ tokengate_embed local; }}
        location = /server {{ tokengate_embed server; }}
""", http_extra=ACCESS_LOG)
    nginx.secrets.update({DEMO_EMBED_SECRET, DEMO["alice"]["secret"]})
    nginx.start()
    tok = looker_token(devserver)
    for path in ("/local", "/server", "/local", "/server"):
        url = signed(nginx, nginx.get(path, tok))
        assert open_embed(url)[1].status == 200
    log = nginx.logs() + nginx.access_log.read_text()
    assert log.count("tokengate_embed: signed URL ") == 4
    assert '"GET /server HTTP/1.1" 302 valid 1' in log
    nginx.stop()      # check_log: none of nginx.secrets in either log


# ------------------------------------------------------- configuration

def bad_site(nginx, tmp_path, srv, location):
    conf = looker_conf(tmp_path, srv)
    nginx.server(f"""
        tokengate_config {conf};
        location = /dash {{
            tokengate "looker";
{location}
        }}
""")
    return nginx.test_config()


GOOD = """
            tokengate_embed local;
            tokengate_embed_host https://looker.example.com;
            tokengate_embed_path /embed/dashboards/$arg_d;
            tokengate_embed_allow /embed/dashboards/*;
            tokengate_embed_permissions access_data;
            tokengate_embed_models thelook;
"""


def test_default_port_is_dropped(tmp_path, devserver, nginx):
    """https://HOST:443 signs for HOST, as the browser sends Host: the
    devserver accepts the URL with "Host: HOST" and not with HOST:443."""
    embed_site(nginx, looker_conf(tmp_path, devserver), devserver,
               host="https://looker.example.com:443/")
    tok = looker_token(devserver)
    for host, code in (("looker.example.com:443", 401),
                       ("looker.example.com", 302)):
        url = signed(nginx, nginx.get("/dash?d=42", tok))
        assert url.startswith("https://looker.example.com/login/embed/"), url
        u = urllib.parse.urlsplit(url)
        r = fetch(f"http://127.0.0.1:{devserver.port}{u.path}?{u.query}",
                  {"Host": host})
        assert r.status == code, (host, r)


def test_good_config_passes_nginx_t(tmp_path, devserver, nginx):
    r = bad_site(nginx, tmp_path, devserver, GOOD)
    assert r.returncode == 0, r.stderr
    assert "[emerg]" not in r.stderr and "[warn]" not in r.stderr


@pytest.mark.parametrize("change, needle", [
    (("tokengate_embed local;", "tokengate_embed remote;"),
     'invalid value "remote" in "tokengate_embed"'),
    (("https://looker.example.com", "looker.example.com"),
     '"tokengate_embed_host" "looker.example.com": it must start with'),
    (("https://looker.example.com", "https://looker.example.com/x"),
     '"tokengate_embed_host" in location "/dash": host: want HOST or '
     'HOST:PORT without a scheme or path'),
    (("https://looker.example.com", "https://looker.example.com:0"),
     '"tokengate_embed_host" in location "/dash": host: the port must be'),
    (("https://looker.example.com", "https://Looker.example.com"),
     '"tokengate_embed_host" in location "/dash": host: an upper-case'),
    (("https://looker.example.com", "http://looker.example.com"),
     '"tokengate_embed_host"'),
    (("/embed/dashboards/*;", "/dashboards/*;"),
     'invalid "tokengate_embed_allow" entry "/dashboards/*"'),
    (("/embed/dashboards/*;", "/embed/dashboards/*/x;"),
     'invalid "tokengate_embed_allow" entry'),
    (("tokengate_embed_permissions access_data;",
      "tokengate_embed_permissions access_data admin;"),
     "\"tokengate_embed_permissions\" in location \"/dash\": permissions: "
     "'admin' is not allowed"),
    (("tokengate_embed_models thelook;", ""),
     'needs "tokengate_embed_permissions" and "tokengate_embed_models"'),
    (("tokengate_embed_allow /embed/dashboards/*;", ""),
     '"tokengate_embed_path" with variables in location "/dash" needs '
     '"tokengate_embed_allow"'),
    (("$arg_d;", "42?x=1;"), 'invalid "tokengate_embed_path"'),
    (("$arg_d;", "../42;"), 'invalid "tokengate_embed_path"'),
    (("$arg_d;", "42;\n tokengate_embed_allow /embed/dashboards/43;"),
     '"tokengate_embed_allow" directive is duplicate'),
    (("tokengate_embed local;", "tokengate_embed local;\n"
      "tokengate_embed_session_length 31d;"),
     '"tokengate_embed_session_length" directive must be between 0 and 30d'),
    (("tokengate_embed local;", "tokengate_embed local;\n"
      "tokengate_embed_attribute Bad-Name x;"),
     'invalid attribute name "Bad-Name"'),
    (("tokengate_embed local;", "tokengate_embed local;\n"
      'tokengate_embed_query "a b";'),
     'invalid "tokengate_embed_query"'),
    (("tokengate_embed local;", "tokengate_embed local;\n"
      'tokengate_embed_external_user_id "";'),
     '"tokengate_embed_external_user_id" in location "/dash": '
     "external_user_id: empty"),
    (("tokengate_embed local;", "tokengate_embed server;"),
     '"tokengate_embed server" in location "/dash" needs api = looker'),
    (("tokengate_embed local;", "tokengate_embed local;\n"
      'tokengate_embed_last_name "Smith\0x";'),
     'a "tokengate_embed_*" value in location "/dash" has a NUL byte'),
])
def test_bad_directives_fail_nginx_t(tmp_path, devserver, nginx, change,
                                     needle):
    location = GOOD.replace(*change)
    if "api = looker" in needle:
        # server signing with an insight tokengate.conf
        conf = write_tg_conf(tmp_path, "insight", devserver.url)
        location += f"            tokengate_config {conf};\n"
    r = bad_site(nginx, tmp_path, devserver, location)
    assert r.returncode != 0
    assert "[emerg]" in r.stderr and needle in r.stderr, r.stderr


def test_embed_without_tokengate_fails_nginx_t(tmp_path, devserver, nginx):
    conf = looker_conf(tmp_path, devserver)
    nginx.server(f"""
        tokengate_config {conf};
        location = /dash {{
{GOOD}
        }}
""")
    r = nginx.test_config()
    assert r.returncode != 0
    assert '"tokengate_embed" in location "/dash" needs "tokengate" (not ' \
        'off) in the same location' in r.stderr, r.stderr


@pytest.mark.parametrize("how, needle", [
    ("missing", "tokengate_embed_secret_file: "),
    ("world", "tokengate_embed_secret_file: "),
    ("group", "tokengate_embed_secret_file: "),
    ("empty", "tokengate_embed_secret_file: "),
    ("conf-missing", "embed_secret_file"),
    ("none", 'needs an embed secret: "tokengate_embed_secret_file", or '
             'embed_secret_file in "tokengate_config"'),
])
def test_bad_secret_file_fails_nginx_t(tmp_path, devserver, nginx, how,
                                       needle):
    path = tmp_path / "bad.secret"
    directive = f"tokengate_embed_secret_file {path};"
    conf = write_tg_conf(tmp_path, "looker", devserver.url)
    if how == "world":
        write_secret(path, DEMO_EMBED_SECRET, 0o644)
    elif how == "group":
        write_secret(path, DEMO_EMBED_SECRET, 0o640)
    elif how == "empty":
        write_secret(path, "")
    elif how == "conf-missing":
        conf = write_tg_conf(tmp_path, "looker", devserver.url,
                             embed_secret_file=path)
        directive = ""
    elif how == "none":
        directive = ""
    nginx.server(f"""
        tokengate_config {conf};
        location = /dash {{
            tokengate "looker";
            {directive}
{GOOD}
        }}
""")
    r = nginx.test_config()
    assert r.returncode != 0
    assert "[emerg]" in r.stderr and needle in r.stderr, r.stderr
    assert DEMO_EMBED_SECRET not in r.stderr


def test_server_signing_needs_client_credentials(tmp_path, devserver, nginx):
    conf = write_tg_conf(tmp_path, "looker", devserver.url)
    nginx.server(f"""
        tokengate_config {conf};
        location = /dash {{
            tokengate "looker";
{GOOD.replace("tokengate_embed local;", "tokengate_embed server;")}
        }}
""")
    r = nginx.test_config()
    assert r.returncode != 0
    assert "needs client_id and client_secret_file" in r.stderr, r.stderr


def test_secret_file_checked_at_its_line_even_unused(tmp_path, devserver,
                                                     nginx):
    path = write_secret(tmp_path / "open.secret", "x", 0o644)
    conf = looker_conf(tmp_path, devserver)
    nginx.server(f"""
        tokengate_config {conf};
        tokengate_embed_secret_file {path};
        location / {{ }}
""")
    r = nginx.test_config()
    assert r.returncode != 0
    assert "tokengate_embed_secret_file: " in r.stderr, r.stderr
    assert "nginx.conf:" in r.stderr


def test_each_location_signs_with_its_secret_file(tmp_path, devserver,
                                                  nginx):
    """A secret file is read once for all the locations that name it (by
    tokengate_embed_secret_file or embed_secret_file): each location still
    signs with its own file's secret."""
    conf = looker_conf(tmp_path, devserver)
    good = tmp_path / "embed.secret"             # looker_conf's, the demo
    wrong = write_secret(tmp_path / "wrong.secret",
                         "another-embed-secret-0123456789")
    nginx.server(f"""
        tokengate_config {conf};
        tokengate "looker";
        {dashboard_42(devserver)}
        location = /a {{ tokengate_embed local; }}
        location = /b {{
            tokengate_embed local;
            tokengate_embed_secret_file {wrong};
        }}
        location = /c {{
            tokengate_embed local;
            tokengate_embed_secret_file {good};
        }}
        location = /d {{
            tokengate_embed local;
            tokengate_embed_secret_file {wrong};
        }}
""")
    nginx.secrets.update({DEMO_EMBED_SECRET,
                          "another-embed-secret-0123456789"})
    nginx.start()
    tok = looker_token(devserver)
    for path, code in (("/a", 302), ("/b", 401), ("/c", 302), ("/d", 401)):
        assert fetch(signed(nginx, nginx.get(path, tok))).status == code, \
            path


def test_reload_reads_the_secret_again(tmp_path, devserver_factory, nginx):
    """The secret lives in memory from the configuration: a reload with a
    new secret file signs with the new secret."""
    other = "another-embed-secret-0123456789"
    path = tmp_path / "other.secret"
    write_secret(path, other)
    srv = devserver_factory("--embed-secret-file", str(path))
    conf = looker_conf(tmp_path, srv)           # the demo secret: wrong
    embed_site(nginx, conf, srv)
    nginx.secrets.add(other)
    tok = looker_token(srv)
    assert fetch(signed(nginx, nginx.get("/dash?d=42", tok))).status == 401
    conf.write_text(conf.read_text().replace(
        str(tmp_path / "embed.secret"), str(path)))
    os.chmod(conf, 0o600)
    os.kill(nginx.proc.pid, 1)                   # SIGHUP
    deadline = time.monotonic() + 30
    while True:
        url = signed(nginx, nginx.get("/dash?d=42", tok))
        if fetch(url).status == 302:
            break
        assert time.monotonic() < deadline, nginx.logs()[-2000:]
        time.sleep(0.2)


# ---------------------------------------------------------- docs example

def doc_embed_examples():
    return [b for b in doc_blocks() if "tokengate_embed" in b]


def test_docs_have_embed_examples():
    assert len(doc_embed_examples()) >= 2


@pytest.mark.parametrize("index", range(len(doc_embed_examples())))
def test_doc_embed_examples_pass_nginx_t(tmp_path, devserver, nginx, index):
    conf = looker_conf(tmp_path, devserver)
    block = doc_embed_examples()[index]
    block = block.replace("/etc/tokengate.conf", str(conf))
    block = block.replace("listen 443 ssl;",
                          f"listen 127.0.0.1:{nginx.port};")
    http, server = [], []
    for st in statements(block):
        (http if st.split()[0] in ("map", "log_format", "server",
                                   "tokengate_config") else
         server).append(st)
    if "tokengate_config" not in block:
        http.insert(0, f"tokengate_config {conf};")
    nginx.configure("%s\nserver {\nlisten 127.0.0.1:%d;\n%s\n}\n" % (
        "\n".join(http), free_port(), "\n".join(server)))
    r = nginx.test_config()
    assert r.returncode == 0, (block, r.stderr)
