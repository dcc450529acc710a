# SPDX-License-Identifier: MIT
"""The nginx cache never mixes up servers, never revives a refused token and
never trusts an answer past the token's life (issue 12, items 1 and 2).

Real nginx loading the built module, real devservers.  Item 1: locations
that would ask different questions (another Insight base path, another
Looker API version, another trust setting) share one zone but never an
answer.  Item 2: one test per row of the table in docs/nginx.md ("Which
entry answers"): what a token's entry answers when it is fresh, expired,
within or past its stale window, after a refusal, with the server up or
unavailable.
"""
import base64
import hashlib
import subprocess
import threading
import time
import urllib.request

import pytest

from conftest import fetch_token
from nginxlib import CACHE_HEADERS, INS, write_tg_conf
from pamlib import make_pki


# ------------------------------------------------------------------ helpers

def front(nginx_factory, routes):
    """One host in front of several servers, as a reverse proxy in front of
    two BI tenants would be: an nginx that sends each path prefix to a
    devserver path.  Returns its base URL (scheme, host and port)."""
    proxy = nginx_factory()
    proxy.server("".join(f"        location {prefix} {{ proxy_pass {to}; }}\n"
                         for prefix, to in routes.items()))
    proxy.start()
    return f"http://127.0.0.1:{proxy.port}"


def two_locations(nginx, conf_a, conf_b, cache="zone=tg:1m"):
    """/a/ and /b/, each with its own tokengate.conf, sharing one zone."""
    nginx.server(f"""
        tokengate_cache {cache};
        location /a/ {{
            alias {nginx.html}/;
            tokengate "A";
            tokengate_config {conf_a};
{CACHE_HEADERS}
        }}
        location /b/ {{
            alias {nginx.html}/;
            tokengate "B";
            tokengate_config {conf_b};
{CACHE_HEADERS}
        }}
""")
    return nginx.start()


def answer(r):
    return r.status, r.header("X-Cache")


# Two tenants behind one host, per setting: the setting's value in a.conf
# and b.conf, the path the host serves it under, and where the host sends
# that path (each tenant is its own devserver).
TENANTS = {
    "insight_base_path": ("insight", [("/tenantA", "/tenantA/", INS + "/"),
                                      ("/tenantB", "/tenantB/", INS + "/")]),
    "looker_api_version": ("looker", [("4.0", "/api/4.0/", "/api/4.0/"),
                                      ("3.1", "/api/3.1/", "/api/3.1/")]),
}


def tenants(tmp_path, devserver_factory, nginx_factory, key):
    """The devservers of two tenants and a.conf, b.conf, which differ in
    key only."""
    api, tenant = TENANTS[key]
    servers = [devserver_factory() for _ in tenant]
    url = front(nginx_factory, {prefix: srv.url + to for srv, (_, prefix, to)
                                in zip(servers, tenant)})
    confs = [write_tg_conf(tmp_path, api, url, **{key: value})
             for value, _, _ in tenant]
    return api, servers, confs


# ------------------------------------------ item 1: the key covers it all

@pytest.mark.parametrize("issuer", [0, 1])
@pytest.mark.parametrize("key", sorted(TENANTS))
def test_tenant_setting_is_in_the_key(tmp_path, devserver_factory,
                                      nginx_factory, key, issuer):
    """/a/ then /b/, twice, with a token of one tenant: its own tenant
    accepts it, the other is asked too and refuses it.  No answer is taken
    from the other location's entry: an acceptance at /a/ is no hit at
    /b/, a refusal at /a/ does not refuse at /b/."""
    api, servers, confs = tenants(tmp_path, devserver_factory, nginx_factory,
                                  key)
    nginx = two_locations(nginx_factory(), *confs)
    tok = fetch_token(servers[issuer], api)
    nginx.tokens.add(tok)
    for status in ("MISS", "HIT"):
        for i, loc in enumerate(("/a/", "/b/")):
            r = nginx.get(loc + "index.html", tok)
            want = 200 if i == issuer else 401
            assert answer(r) == (want, status), (loc, r)
            assert (r.header("X-TG-Email") == "alice@example.com") \
                == (want == 200)
    # each tenant was asked once, by its own location
    for srv in servers:
        assert srv.counters()["validate"] == 1


def test_coalescing_keeps_tenants_apart(tmp_path, devserver_factory,
                                        nginx_factory):
    """Requests for /a/ and /b/ with one token while validations are in
    flight: each waits on its own location's call, never the other's."""
    api, servers, confs = tenants(tmp_path, devserver_factory, nginx_factory,
                                  "insight_base_path")
    nginx = two_locations(nginx_factory(), *confs, cache="off")
    tok = fetch_token(servers[0], api)
    nginx.tokens.add(tok)
    for srv in servers:
        srv.fault(endpoint="validate", delay_ms=1000, count=1)
    out = {}

    def one(path):
        out[path] = nginx.get(path, tok).status

    threads = [threading.Thread(target=one, args=(p,))
               for p in ("/a/index.html", "/b/index.html")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert out == {"/a/index.html": 200, "/b/index.html": 401}
    for srv in servers:
        assert srv.counters()["validate"] == 1


def spki_pin(cert):
    """curl's sha256// pin of a certificate's public key."""
    pub = subprocess.run(["openssl", "x509", "-in", str(cert), "-pubkey",
                          "-noout"], check=True, capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"],
                         input=pub, check=True, capture_output=True).stdout
    return "sha256//" + base64.b64encode(hashlib.sha256(der).digest()).decode()


def test_pinned_and_unpinned_locations_share_no_answer(
        tmp_path, devserver_factory, nginx_factory, monkeypatch):
    """One TLS server, one zone; /a/ trusts the CA, /b/ also pins a key the
    server does not have.  An answer /a/ trusts is not one /b/ trusts: /b/
    connects, refuses the server's key and answers 503.  A location pinned
    to the right key gets its own answer."""
    pki = make_pki(tmp_path)
    srv = devserver_factory("--tls-cert", str(pki / "good.pem"),
                            "--tls-key", str(pki / "good.key"))
    assert srv.url.startswith("https://127.0.0.1:")
    with monkeypatch.context() as m:     # for token_for's urllib only
        m.setenv("SSL_CERT_FILE", str(pki / "ca.pem"))
        tok = fetch_token(srv, "insight")
    ca = pki / "ca.pem"
    wrong = "sha256//" + base64.b64encode(b"\0" * 32).decode()
    conf_a = write_tg_conf(tmp_path, "insight", srv.url, ca_file=ca)
    conf_b = write_tg_conf(tmp_path, "insight", srv.url, ca_file=ca,
                           pinned_pubkey=wrong)
    conf_c = write_tg_conf(tmp_path, "insight", srv.url, ca_file=ca,
                           pinned_pubkey=spki_pin(pki / "good.pem"))
    nginx = nginx_factory()
    nginx.server(f"""
        tokengate_cache zone=tg:1m;
        location /a/ {{ alias {nginx.html}/; tokengate "A";
                       tokengate_config {conf_a}; {CACHE_HEADERS} }}
        location /b/ {{ alias {nginx.html}/; tokengate "B";
                       tokengate_config {conf_b}; {CACHE_HEADERS} }}
        location /c/ {{ alias {nginx.html}/; tokengate "C";
                       tokengate_config {conf_c}; {CACHE_HEADERS} }}
""")
    nginx.start()
    nginx.tokens.add(tok)
    assert answer(nginx.get("/a/index.html", tok)) == (200, "MISS")
    r = nginx.get("/b/index.html", tok)
    assert answer(r) == (503, "MISS"), r
    assert r.header("X-TG-User") is None
    assert answer(nginx.get("/c/index.html", tok)) == (200, "MISS")
    assert answer(nginx.get("/c/index.html", tok)) == (200, "HIT")
    assert srv.counters()["validate"] == 2


# ------------------------- item 2: which entry answers (docs/nginx.md)

def stale_site(nginx, conf, cache, extra=""):
    """/stale/ (tokengate_on_unavailable stale) and /deny/ (the default)
    on one zone; extra goes into /stale/."""
    nginx.server(f"""
        tokengate_config {conf};
        tokengate_cache {cache};
        location /stale/ {{
            alias {nginx.html}/;
            tokengate "api";
            tokengate_on_unavailable stale;
{extra}
{CACHE_HEADERS}
        }}
        location /deny/ {{
            alias {nginx.html}/;
            tokengate "api";
{CACHE_HEADERS}
        }}
""")
    return nginx.start()


def outage(srv):
    """Every validation answers 503 from now on (Looker GET /user, Insight
    auth/user and auth/currentuser)."""
    srv.fault(endpoint="validate", status=503)
    srv.fault(endpoint="profile", status=503)


def calls(srv):
    c = srv.counters()
    return c["validate"] + c["profile"]


def looker_logout(srv, tok):
    """DELETE /logout: the server revokes this token."""
    req = urllib.request.Request(srv.url + "/api/4.0/logout",
                                 method="DELETE")
    req.add_header("Authorization", f"token {tok}")
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 204


CACHE = "zone=tg:1m ttl=1s negative_ttl=0 stale_ttl=1h"


def test_row_no_entry(tmp_path, devserver, nginx):
    """No entry: the server decides (MISS); in an outage, 503 even where
    stale is allowed."""
    stale_site(nginx, write_tg_conf(tmp_path, "looker", devserver.url), CACHE)
    tok = fetch_token(devserver, "looker")
    nginx.tokens.add(tok)
    outage(devserver)
    assert answer(nginx.get("/stale/index.html", tok)) == (503, "MISS")
    devserver.clear_faults()
    assert answer(nginx.get("/stale/index.html", tok)) == (200, "MISS")


def test_row_fresh_entries_answer_without_the_server(tmp_path, devserver,
                                                     nginx):
    """A fresh entry answers (HIT) with no call, the server up or not: the
    identity, or a refusal kept negative_ttl."""
    stale_site(nginx, write_tg_conf(tmp_path, "looker", devserver.url),
               "zone=tg:1m ttl=1h negative_ttl=1h stale_ttl=1h")
    tok = fetch_token(devserver, "looker")
    nginx.tokens.add(tok)
    assert answer(nginx.get("/stale/index.html", tok)) == (200, "MISS")
    bad = "never-issued-token-0123"
    assert answer(nginx.get("/stale/index.html", bad)) == (401, "MISS")
    assert answer(nginx.get("/deny/index.html", tok)) == (200, "HIT")
    assert answer(nginx.get("/deny/index.html", bad)) == (401, "HIT")
    outage(devserver)
    for where in ("/stale/", "/deny/"):
        assert answer(nginx.get(where + "index.html", tok)) == (200, "HIT")
        assert answer(nginx.get(where + "index.html", bad)) == (401, "HIT")
    assert calls(devserver) == 2


def test_row_expired_entry_is_renewed_by_the_server(tmp_path, devserver,
                                                    nginx):
    stale_site(nginx, write_tg_conf(tmp_path, "looker", devserver.url), CACHE)
    tok = fetch_token(devserver, "looker")
    nginx.tokens.add(tok)
    assert answer(nginx.get("/stale/index.html", tok)) == (200, "MISS")
    time.sleep(1.5)
    assert answer(nginx.get("/stale/index.html", tok)) == (200, "MISS")
    assert answer(nginx.get("/stale/index.html", tok)) == (200, "HIT")
    assert calls(devserver) == 2


@pytest.mark.parametrize("negative_ttl,during_outage", [
    ("0", (503, "MISS")),      # the accepted identity is gone: no STALE
    ("1h", (401, "HIT")),      # the refusal is kept and answers
])
def test_row_refusal_ends_the_accepted_identity(tmp_path, devserver, nginx,
                                                negative_ttl, during_outage):
    """The reproduced attack: a revoked token refused once is never served
    STALE afterwards, whatever negative_ttl is."""
    stale_site(nginx, write_tg_conf(tmp_path, "looker", devserver.url),
               f"zone=tg:1m ttl=2s negative_ttl={negative_ttl} stale_ttl=1h")
    tok = fetch_token(devserver, "looker")
    nginx.tokens.add(tok)
    assert answer(nginx.get("/stale/index.html", tok)) == (200, "MISS")
    looker_logout(devserver, tok)
    time.sleep(2.5)
    assert answer(nginx.get("/stale/index.html", tok)) == (401, "MISS")
    outage(devserver)
    r = nginx.get("/stale/index.html", tok)
    assert answer(r) == during_outage, r
    assert r.header("X-TG-User") is None


def test_row_server_forbidden_ends_the_accepted_identity(tmp_path, devserver,
                                                        nginx):
    """A 403 from the server is answered 403 and removes the accepted
    identity without storing a refusal: a later outage is 503, never 200
    STALE, and the server is asked again once it is back."""
    stale_site(nginx, write_tg_conf(tmp_path, "looker", devserver.url), CACHE)
    tok = fetch_token(devserver, "looker")
    nginx.tokens.add(tok)
    assert answer(nginx.get("/stale/index.html", tok)) == (200, "MISS")
    time.sleep(1.5)
    devserver.fault(endpoint="validate", status=403, count=1)
    assert answer(nginx.get("/stale/index.html", tok)) == (403, "MISS")
    outage(devserver)
    r = nginx.get("/stale/index.html", tok)
    assert answer(r) == (503, "MISS"), r
    assert r.header("X-TG-User") is None
    devserver.clear_faults()
    assert answer(nginx.get("/stale/index.html", tok)) == (200, "MISS")


def test_row_expired_refusal_outage_is_503(tmp_path, devserver, nginx):
    stale_site(nginx, write_tg_conf(tmp_path, "looker", devserver.url),
               "zone=tg:1m ttl=1s negative_ttl=1s stale_ttl=1h")
    bad = "never-issued-token-0123"
    assert answer(nginx.get("/stale/index.html", bad)) == (401, "MISS")
    time.sleep(1.5)
    outage(devserver)
    assert answer(nginx.get("/stale/index.html", bad)) == (503, "MISS")


def test_row_renewal_keeps_the_first_validation(tmp_path, devserver, nginx):
    """The token's life counts from its first accepted validation, not from
    the last renewal: validated at 0 s, renewed at 3.5 s, with a 6 s life
    an outage at 7.5 s is 503 (counted from the renewal it would be
    STALE until 9.5 s)."""
    stale_site(nginx, write_tg_conf(tmp_path, "looker", devserver.url,
                                    token_lifetime_max=6), CACHE)
    tok = fetch_token(devserver, "looker")
    nginx.tokens.add(tok)
    assert answer(nginx.get("/stale/index.html", tok)) == (200, "MISS")
    time.sleep(3.5)
    assert answer(nginx.get("/stale/index.html", tok)) == (200, "MISS")
    assert calls(devserver) == 2
    time.sleep(4)
    outage(devserver)
    assert answer(nginx.get("/stale/index.html", tok)) == (503, "MISS")


# An accepted token, then the server unavailable: what each later request
# gets.  Row: the devserver's options, the tokengate.conf keys, the cache,
# what /stale/ adds, then (seconds to wait, location, answer) in order.
ACCEPTED_THEN_OUTAGE = {
    # expired, within stale_ttl: STALE where allowed, 503 elsewhere
    "stale window": (
        "looker", (), {}, CACHE, "",
        [(1.5, "/stale/", (200, "STALE")), (0, "/deny/", (503, "MISS"))]),
    "past stale_ttl": (
        "looker", (), {}, "zone=tg:1m ttl=1s negative_ttl=0 stale_ttl=1s", "",
        [(2.5, "/stale/", (503, "MISS")), (0, "/deny/", (503, "MISS"))]),
    # answers without expiry: the first validation plus the longest life
    # (3 s: token_lifetime_max for Looker, token_max_age for Insight)
    "looker token life": (
        "looker", ("--looker-token-lifetime", "3"), {"token_lifetime_max": 3},
        CACHE, "",
        [(1.5, "/stale/", (200, "STALE")), (3, "/stale/", (503, "MISS"))]),
    "insight token life": (
        "insight", ("--insight-max-age", "3"), {"token_max_age": 3},
        CACHE, "tokengate_require_group admins;",      # auth/currentuser
        [(1.5, "/stale/", (200, "STALE")), (3, "/stale/", (503, "MISS"))]),
    # Insight auth/user gives the token's expiry (2 s): that is the bound,
    # whatever token_lifetime_max says
    "answer's expiry": (
        "insight", ("--insight-max-age", "2"), {"token_lifetime_max": 3600},
        CACHE, "",
        [(3, "/stale/", (503, "MISS"))]),
}


@pytest.mark.parametrize("row", list(ACCEPTED_THEN_OUTAGE))
def test_row_accepted_token_in_an_outage(tmp_path, devserver_factory, nginx,
                                         row):
    api, args, keys, cache, extra, steps = ACCEPTED_THEN_OUTAGE[row]
    srv = devserver_factory(*args)
    stale_site(nginx, write_tg_conf(tmp_path, api, srv.url, **keys), cache,
               extra)
    tok = fetch_token(srv, api)
    nginx.tokens.add(tok)
    assert answer(nginx.get("/stale/index.html", tok)) == (200, "MISS")
    outage(srv)
    for wait, where, want in steps:
        time.sleep(wait)
        r = nginx.get(where + "index.html", tok)
        assert answer(r) == want, (where, r)
        assert (r.header("X-TG-Email") == "alice@example.com") \
            == (want[0] == 200)
