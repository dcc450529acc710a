# SPDX-License-Identifier: MIT
"""tokengate_logout and tokengate_purge (issue 14, "Logout that reaches the
cache"): a logged-out or purged token leaves the nginx cache at once, stale
mode included, instead of staying valid there up to the TTL.

Real nginx loading the built module, a real devserver: its counters say
whether Looker was asked (the "logout" endpoint) and whether a request was
decided from the cache (no new "validate" call).
"""
import base64
import http.client
import json
import time

import pytest

from conftest import DEMO, fetch_token
from nginxlib import CACHE_HEADERS, write_tg_conf


# ------------------------------------------------------------------ helpers

def site(nginx, conf, logout="tokengate_logout;", cache="zone=tg:1m",
         extra="", http_extra=""):
    """/a/ and /b/ behind tokengate, sharing one zone with different
    fingerprints (another max_response_bytes: entries of their own),
    /logout, /purge (loopback only) and /status."""
    conf_b = conf.with_name(conf.stem + "-b.conf")
    conf_b.write_text(conf.read_text() + "max_response_bytes = 100000\n")
    conf_b.chmod(0o600)
    nginx.server(f"""
        tokengate "api";
        tokengate_config {conf};
        tokengate_cache {cache};
{extra}
        location /a/ {{
            alias {nginx.html}/;
{CACHE_HEADERS}
        }}
        location /b/ {{
            alias {nginx.html}/;
            tokengate_config {conf_b};
{CACHE_HEADERS}
        }}
        location = /logout {{
            {logout}
        }}
        location = /purge {{
            tokengate off;
            tokengate_purge;
            allow 127.0.0.1;
            deny all;
        }}
        location = /status {{ tokengate off; tokengate_status; }}
""", http_extra=http_extra)
    return nginx.start()


def status(nginx):
    return json.loads(nginx.get("/status").body)


def hit(nginx, path, tok):
    r = nginx.get(path, tok)
    return r.status, r.header("X-Cache")


# ------------------------------------------------------------------ logout

@pytest.mark.parametrize("method", ["GET", "POST"])
def test_logout_reaches_looker_and_the_cache(tmp_path, devserver, nginx,
                                             method):
    conf = write_tg_conf(tmp_path, "looker", devserver.url)
    site(nginx, conf)
    tok = fetch_token(devserver, "looker")
    assert hit(nginx, "/a/index.html", tok) == (200, "MISS")
    assert hit(nginx, "/a/index.html", tok) == (200, "HIT")
    devserver.reset_counters()

    r = nginx.get("/logout", tok, method=method)
    assert r.status == 204, r
    assert r.header("Cache-Control") == "no-store"
    assert r.body == b""
    c = devserver.counters()
    assert c["logout"] == 1
    # the access check here was a cache hit: no validation
    assert c["validate"] == 0

    # the devserver revoked it: the next request asks again and gets 401
    r = nginx.get("/a/index.html", tok)
    assert r.status == 401, r
    assert 'error="invalid_token"' in r.header("WWW-Authenticate")
    assert devserver.counters()["validate"] == 1
    st = status(nginx)
    assert st["logout"]["server"] == 1
    assert st["logout"]["failed"] == 0


def test_logout_then_server_down_with_stale_mode_is_503(tmp_path, devserver,
                                                        nginx):
    conf = write_tg_conf(tmp_path, "looker", devserver.url)
    site(nginx, conf, cache="zone=tg:1m ttl=1s stale_ttl=1h",
         extra="        tokengate_on_unavailable stale;")
    tok = fetch_token(devserver, "looker")
    assert hit(nginx, "/a/index.html", tok) == (200, "MISS")
    time.sleep(1.5)
    # past ttl, within stale_ttl: an outage is answered from the entry
    devserver.fault(endpoint="validate", status=503)
    assert hit(nginx, "/a/index.html", tok) == (200, "STALE")
    devserver.clear_faults()
    assert nginx.get("/logout", tok).status == 204
    devserver.fault(endpoint="validate", status=503)
    # no stale entry revives the logged-out token
    for _ in range(3):
        r = nginx.get("/a/index.html", tok)
        assert r.status == 503, r
    devserver.clear_faults()
    assert nginx.get("/a/index.html", tok).status == 401


def test_logout_redirect(tmp_path, devserver, nginx):
    conf = write_tg_conf(tmp_path, "looker", devserver.url)
    site(nginx, conf, logout="tokengate_logout redirect=/bye.html;")
    tok = fetch_token(devserver, "looker")
    r = nginx.get("/logout", tok)
    assert r.status == 302, r
    assert r.header("Location").endswith("/bye.html")
    assert r.header("Cache-Control") == "no-store"
    assert devserver.counters()["logout"] == 1


def test_logout_without_token_or_with_a_bad_one_is_401(tmp_path, devserver,
                                                       nginx):
    conf = write_tg_conf(tmp_path, "looker", devserver.url)
    site(nginx, conf)
    r = nginx.get("/logout")
    assert r.status == 401, r
    assert r.header("WWW-Authenticate") == 'Bearer realm="api"'
    r = nginx.get("/logout", "never-issued-0123")
    assert r.status == 401, r
    assert 'error="invalid_token"' in r.header("WWW-Authenticate")
    assert devserver.counters()["logout"] == 0


def test_logout_with_the_access_check_off_checks_the_token_itself(
        tmp_path, devserver, nginx):
    """Without the access check, the handler takes the token the same way
    and Looker's answer to the logout decides."""
    conf = write_tg_conf(tmp_path, "looker", devserver.url)
    site(nginx, conf, logout="tokengate off; tokengate_logout;")
    r = nginx.get("/logout")
    assert r.status == 401 and r.header("Cache-Control") == "no-store"
    assert nginx.get("/logout",
                     headers={"Authorization": "Bearer a b"}).status == 400
    r = nginx.get("/logout", "never-issued-0123")
    assert r.status == 401, r
    assert 'error="invalid_token"' in r.header("WWW-Authenticate")
    assert devserver.counters()["logout"] == 1
    tok = fetch_token(devserver, "looker")
    assert hit(nginx, "/a/index.html", tok) == (200, "MISS")
    assert nginx.get("/logout", tok).status == 204
    assert nginx.get("/a/index.html", tok).status == 401
    assert status(nginx)["logout"]["refused"] == 3


def test_logout_only_get_and_post(tmp_path, devserver, nginx):
    conf = write_tg_conf(tmp_path, "looker", devserver.url)
    site(nginx, conf)
    tok = fetch_token(devserver, "looker")
    for method in ("PUT", "DELETE"):
        r = nginx.get("/logout", tok, method=method)
        assert r.status == 405, r
        assert r.header("Allow") == "GET, POST"
    assert devserver.counters()["logout"] == 0


@pytest.mark.parametrize("rule", [{"status": 503}, {"close": True}])
def test_logout_server_down_removes_entries_and_answers_503(
        tmp_path, devserver, nginx, rule):
    conf = write_tg_conf(tmp_path, "looker", devserver.url)
    # a closed connection starts the node-wide back-off (test_nginx_backoff):
    # off here, so that the validations below reach the server at once
    site(nginx, conf, extra="        tokengate_backoff off;")
    tok = fetch_token(devserver, "looker")
    assert hit(nginx, "/a/index.html", tok) == (200, "MISS")
    assert hit(nginx, "/b/index.html", tok) == (200, "MISS")
    devserver.fault(endpoint="logout", **rule)
    r = nginx.get("/logout", tok)
    assert r.status == 503, r
    assert r.header("Cache-Control") == "no-store"
    devserver.clear_faults()
    # the entries are gone all the same, at both locations
    assert hit(nginx, "/a/index.html", tok) == (200, "MISS")
    assert hit(nginx, "/b/index.html", tok) == (200, "MISS")
    assert status(nginx)["logout"]["failed"] == 1


def test_logout_insight_removes_the_entries_only(tmp_path, devserver, nginx):
    conf = write_tg_conf(tmp_path, "insight", devserver.url)
    site(nginx, conf)
    tok = fetch_token(devserver, "insight")
    assert hit(nginx, "/a/index.html", tok) == (200, "MISS")
    assert hit(nginx, "/a/index.html", tok) == (200, "HIT")
    r = nginx.get("/logout", tok)
    assert r.status == 204, r
    assert devserver.counters()["logout"] == 0
    # Insight has no logout: the token is still valid at the server
    assert hit(nginx, "/a/index.html", tok) == (200, "MISS")
    assert status(nginx)["logout"]["local"] == 1
    assert "Insight has no logout call" in nginx.logs()


def test_logout_basic_credentials_removes_the_entries_only(tmp_path,
                                                          devserver, nginx):
    """Client credentials have no session to end: their entries go, no
    logout call."""
    conf = write_tg_conf(tmp_path, "looker", devserver.url)
    site(nginx, conf, extra="        tokengate_basic on;")
    creds = base64.b64encode(
        f"{DEMO['alice']['client_id']}:{DEMO['alice']['secret']}".encode())
    h = {"Authorization": "Basic " + creds.decode()}
    assert nginx.get("/a/index.html", headers=h).header("X-Cache") == "MISS"
    assert nginx.get("/a/index.html", headers=h).header("X-Cache") == "HIT"
    r = nginx.get("/logout", headers=h, method="POST")
    assert r.status == 204, r
    assert devserver.counters()["logout"] == 0
    assert nginx.get("/a/index.html", headers=h).header("X-Cache") == "MISS"
    assert status(nginx)["logout"]["local"] == 1
    assert "Basic client credentials have no session" in nginx.logs()


# ------------------------------------------------------------------ purge

def test_purge_one_token_everywhere(tmp_path, devserver, nginx):
    conf = write_tg_conf(tmp_path, "looker", devserver.url)
    site(nginx, conf)
    alice = fetch_token(devserver, "looker")
    bob = fetch_token(devserver, "looker", "bob")
    for tok in (alice, bob):
        assert hit(nginx, "/a/index.html", tok)[1] == "MISS"
        nginx.get("/b/index.html", tok)
    r = nginx.get("/purge", alice)
    assert r.status == 200, r
    assert r.header("Cache-Control") == "no-store"
    assert r.header("Content-Type") == "application/json"
    assert json.loads(r.body) == {"removed": 2}
    assert devserver.counters()["logout"] == 0
    # alice's entries at both locations are gone, bob's stay
    assert hit(nginx, "/a/index.html", alice) == (200, "MISS")
    assert hit(nginx, "/b/index.html", alice) == (200, "MISS")
    assert hit(nginx, "/a/index.html", bob) == (200, "HIT")
    assert json.loads(nginx.get("/purge", "never-cached-0123").body) == \
        {"removed": 0}
    st = status(nginx)
    assert st["purge"] == {"token": 2, "all": 0, "entries": 2}


def test_purge_all(tmp_path, devserver, nginx):
    conf = write_tg_conf(tmp_path, "looker", devserver.url)
    site(nginx, conf)
    toks = [fetch_token(devserver, "looker", u) for u in ("alice", "bob")]
    for tok in toks:
        assert hit(nginx, "/a/index.html", tok)[1] == "MISS"
    assert nginx.get("/a/index.html", "never-issued-0123").status == 401
    r = nginx.get("/purge?all=1", method="POST")
    assert r.status == 200, r
    assert json.loads(r.body) == {"removed": 3}
    for tok in toks:
        assert hit(nginx, "/a/index.html", tok) == (200, "MISS")
    assert nginx.get("/purge").status == 400
    assert nginx.get("/purge?all=yes").status == 400
    assert nginx.get("/purge?all=1", method="PUT").status == 405
    assert status(nginx)["purge"]["all"] == 1


def test_purge_named_zone_leaves_the_others(tmp_path, devserver, nginx):
    conf = write_tg_conf(tmp_path, "looker", devserver.url)
    nginx.server(f"""
        tokengate "api";
        tokengate_config {conf};
        location /a/ {{
            alias {nginx.html}/;
            tokengate_cache zone=one:1m;
{CACHE_HEADERS}
        }}
        location /b/ {{
            alias {nginx.html}/;
            tokengate_cache zone=two:1m;
{CACHE_HEADERS}
        }}
        location = /purge {{ tokengate off; tokengate_purge zone=one; }}
""")
    nginx.start()
    tok = fetch_token(devserver, "looker")
    assert hit(nginx, "/a/index.html", tok)[1] == "MISS"
    assert hit(nginx, "/b/index.html", tok)[1] == "MISS"
    assert json.loads(nginx.get("/purge", tok).body) == {"removed": 1}
    assert hit(nginx, "/a/index.html", tok) == (200, "MISS")
    assert hit(nginx, "/b/index.html", tok) == (200, "HIT")
    assert json.loads(nginx.get("/purge?all=1").body) == {"removed": 1}
    assert hit(nginx, "/b/index.html", tok) == (200, "HIT")


def test_purge_basic_credentials(tmp_path, devserver, nginx):
    conf = write_tg_conf(tmp_path, "looker", devserver.url)
    site(nginx, conf, extra="        tokengate_basic on;")
    creds = base64.b64encode(
        f"{DEMO['alice']['client_id']}:{DEMO['alice']['secret']}".encode())
    h = {"Authorization": "Basic " + creds.decode()}
    assert nginx.get("/a/index.html", headers=h).header("X-Cache") == "MISS"
    assert nginx.get("/a/index.html", headers=h).header("X-Cache") == "HIT"
    assert json.loads(nginx.get("/purge", headers=h).body) == {"removed": 1}
    assert nginx.get("/a/index.html", headers=h).header("X-Cache") == "MISS"


def test_purge_allow_deny_only_loopback(tmp_path, devserver, nginx):
    """allow 127.0.0.1; deny all: another address (127.0.0.2, still
    loopback traffic) is refused before anything is removed."""
    conf = write_tg_conf(tmp_path, "looker", devserver.url)
    nginx.server(f"""
        tokengate "api";
        tokengate_config {conf};
        tokengate_cache zone=tg:1m;
        location /a/ {{
            alias {nginx.html}/;
{CACHE_HEADERS}
        }}
        location = /purge {{
            tokengate off;
            tokengate_purge;
            allow 127.0.0.1;
            deny all;
        }}
""")
    # a second loopback address on the same port
    text = nginx.conf.read_text().replace(
        f"listen 127.0.0.1:{nginx.port};",
        f"listen 127.0.0.1:{nginx.port}; listen 127.0.0.2:{nginx.port};")
    nginx.conf.write_text(text)
    nginx.start()
    tok = fetch_token(devserver, "looker")
    assert hit(nginx, "/a/index.html", tok)[1] == "MISS"
    c = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=10,
                                   source_address=("127.0.0.2", 0))
    try:
        c.request("GET", "/purge?all=1")
        assert c.getresponse().status == 403
    finally:
        c.close()
    assert hit(nginx, "/a/index.html", tok) == (200, "HIT")
    assert json.loads(nginx.get("/purge?all=1").body) == {"removed": 1}


# ------------------------------------------------------------ directives

@pytest.mark.parametrize("directive,needle", [
    ("tokengate_logout redirect=;", '"tokengate_logout"'),
    ("tokengate_logout redirect=//evil.example/;", '"tokengate_logout"'),
    ("tokengate_logout redirect=ftp://x/;", '"tokengate_logout"'),
    ("tokengate_logout redirect=/$arg_next;", '"tokengate_logout"'),
    ("tokengate_logout to=/;", '"tokengate_logout"'),
    ("tokengate_logout /a /b;", '"tokengate_logout"'),
    ("tokengate_logout; tokengate_logout;", "is duplicate"),
    ("tokengate_purge zone=;", '"tokengate_purge"'),
    ("tokengate_purge all;", '"tokengate_purge"'),
    ("tokengate_purge zone=nosuch;", '"tokengate_purge"'),
    ("tokengate_purge;", '"tokengate_purge"'),
])
def test_bad_directives_fail_nginx_t(tmp_path, devserver, nginx, directive,
                                     needle):
    conf = write_tg_conf(tmp_path, "looker", devserver.url)
    nginx.server(f"""
        tokengate_config {conf};
        tokengate_cache zone=tg:1m;
        location /x {{
            tokengate "api";
            {directive}
        }}
""")
    r = nginx.test_config()
    assert r.returncode != 0
    assert "[emerg]" in r.stderr and needle in r.stderr, r.stderr


def test_logout_needs_a_server(nginx):
    nginx.server("location /x { tokengate_logout; }")
    r = nginx.test_config()
    assert r.returncode != 0
    assert '"tokengate_logout" needs "tokengate_config"' in r.stderr


def test_good_directives_pass_nginx_t(tmp_path, devserver, nginx):
    conf = write_tg_conf(tmp_path, "looker", devserver.url)
    nginx.server(f"""
        tokengate_config {conf};
        location /p/ {{ tokengate "api"; tokengate_cache zone=tg:1m; }}
        location /l1 {{ tokengate "api"; tokengate_logout; }}
        location /l2 {{ tokengate_logout redirect=/; }}
        location /l3 {{ tokengate_logout redirect=https://example.com/x; }}
        location /p1 {{ tokengate_purge zone=tg; }}
        location /p2 {{ tokengate_purge; allow 127.0.0.1; deny all; }}
""")
    r = nginx.test_config()
    assert r.returncode == 0, r.stderr
