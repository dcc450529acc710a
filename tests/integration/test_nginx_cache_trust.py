# SPDX-License-Identifier: MIT
"""The nginx cache never mixes up servers (issue 12, item 1).

Real nginx loading the built module, real devservers: locations that would
ask different questions (another Insight base path, another Looker API
version, another trust setting) share one zone but never an answer.
"""
import base64
import hashlib
import subprocess
import threading

import pytest

from nginxlib import INS
from pamlib import make_pki
from test_nginx import (CACHE_HEADERS, nginx, nginx_factory,  # noqa: F401
                        tg_conf, token_for)


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
    confs = [tg_conf(tmp_path, api, url, **{key: value})
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
    tok = token_for(servers[issuer], api)
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
    tok = token_for(servers[0], api)
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
    monkeypatch.setenv("SSL_CERT_FILE", str(pki / "ca.pem"))
    tok = token_for(srv, "insight")
    ca = pki / "ca.pem"
    wrong = "sha256//" + base64.b64encode(b"\0" * 32).decode()
    conf_a = tg_conf(tmp_path, "insight", srv.url, ca_file=ca)
    conf_b = tg_conf(tmp_path, "insight", srv.url, ca_file=ca,
                     pinned_pubkey=wrong)
    conf_c = tg_conf(tmp_path, "insight", srv.url, ca_file=ca,
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
