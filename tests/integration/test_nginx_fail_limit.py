# SPDX-License-Identifier: MIT
"""tokengate_fail_limit end to end (issue 14): Debian's nginx loading the
built module, a real tokengate-devserver and its counters.

Each test protects one rule: a client's refusals (invalid tokens, answered by
the server or by the negative cache, and refused Basic credentials) fill its
bucket; over the limit it gets 429 with Retry-After before anything else (no
call to the server), while other clients go on; successes, outages and
malformed requests do not count; an empty key is not limited; the bucket
leaks at the rate; the counters show it; every bad directive value fails
nginx -t naming it.

Clients are told apart by their loopback source address ($binary_remote_addr,
the default key: 127.0.0.1 and 127.0.0.2) or by a header
(key=$http_x_client).  No timing thresholds: rate=1/m keeps a bucket full for
the whole test, and the one test of the leak waits generously for it.
"""
import base64
import http.client
import time

import pytest

from conftest import DEMO, Response, fetch_token, free_port
from nginxlib import CACHE_HEADERS, write_tg_conf

GUESSER = "127.0.0.2"


# ------------------------------------------------------------------ helpers

def validations(srv):
    c = srv.counters()
    return c["validate"] + c["profile"]


def basic(user, secret=None):
    raw = f"{DEMO[user]['client_id']}:{secret or DEMO[user]['secret']}"
    return {"Authorization": "Basic " + base64.b64encode(raw.encode())
            .decode()}


def request_from(nginx, addr, path, headers=None):
    """One request from a given loopback source address."""
    c = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=30,
                                   source_address=(addr, 0))
    try:
        c.request("GET", path, headers=dict(headers or {}))
        return Response.read(c.getresponse())
    finally:
        c.close()


def bearer(nginx, token):
    nginx.tokens.add(token)
    return {"Authorization": f"Bearer {token}"}


def limited(nginx, conf, limit, cache="zone=tg:1m", extra="", http_extra=""):
    """Start nginx: /p/ behind tokengate (Basic accepted) with
    tokengate_fail_limit limit, /status, / open."""
    nginx.server(f"""
        tokengate_config {conf};
        tokengate_cache {cache};
        location / {{ }}
        location = /status {{ tokengate_status; }}
        location /p/ {{
            alias {nginx.html}/;
            tokengate "api";
            tokengate_basic on;
            tokengate_fail_limit {limit};
{CACHE_HEADERS}
{extra}
        }}
""", http_extra=http_extra)
    return nginx.start()


def assert_limited(r):
    assert r.status == 429, r
    assert r.header("X-TG-Result") == "limited"
    assert int(r.header("Retry-After")) >= 1
    assert r.header("WWW-Authenticate") is None
    assert r.header("X-TG-User") is None


# ------------------------------------------------------------ guessers

def test_basic_guesser_is_limited_and_others_are_not(tmp_path, devserver,
                                                      nginx, api):
    limited(nginx, write_tg_conf(tmp_path, api, devserver.url),
            "zone=fl:1m rate=1/m burst=3")
    tok = fetch_token(devserver, api, "bob")
    devserver.reset_counters()
    # burst=3: four refusals in a row, each one token call
    for i in range(4):
        secret = f"wrong-secret-{i:04d}"
        nginx.secrets.add(secret)
        r = request_from(nginx, GUESSER, "/p/index.html",
                         basic("alice", secret))
        assert r.status == 401, (i, r)
        assert r.header("X-TG-Result") == "invalid"
    assert devserver.counters()["token"] == 4
    for i in range(4, 24):
        secret = f"wrong-secret-{i:04d}"
        nginx.secrets.add(secret)
        assert_limited(request_from(nginx, GUESSER, "/p/index.html",
                                    basic("alice", secret)))
    # over the limit, even good credentials wait: no call at all
    assert_limited(request_from(nginx, GUESSER, "/p/index.html",
                                basic("alice")))
    assert devserver.counters()["token"] == 4
    assert validations(devserver) == 0
    # another client: its token and its credentials still work
    r = nginx.request("/p/index.html", bearer(nginx, tok))
    assert r.status == 200 and r.header("X-TG-Result") == "valid"
    r = nginx.request("/p/index.html", basic("alice"))
    assert r.status == 200, r
    assert devserver.counters()["token"] == 5
    # and the guesser is still limited
    assert_limited(request_from(nginx, GUESSER, "/p/index.html",
                                basic("alice", "wrong-secret-9999")))


def test_token_guesser_is_limited(tmp_path, devserver, nginx):
    limited(nginx, write_tg_conf(tmp_path, "insight", devserver.url),
            "zone=fl:1m rate=1/m burst=2")
    for i in range(3):
        r = request_from(nginx, GUESSER, "/p/index.html",
                         bearer(nginx, f"guessed-token-{i:06d}"))
        assert r.status == 401, r
        assert r.header("X-Cache") == "MISS"
    assert validations(devserver) == 3
    for i in range(3, 30):
        assert_limited(request_from(nginx, GUESSER, "/p/index.html",
                                    bearer(nginx, f"guessed-token-{i:06d}")))
    assert validations(devserver) == 3
    tok = fetch_token(devserver, "insight")
    assert nginx.request("/p/index.html", bearer(nginx, tok)).status == 200
    assert validations(devserver) == 4


def test_negative_cache_hits_count(tmp_path, devserver, nginx):
    """The same refused token again: answered from the negative cache
    (no call), and counted all the same."""
    limited(nginx, write_tg_conf(tmp_path, "insight", devserver.url),
            "zone=fl:1m rate=1/m burst=2", cache="zone=tg:1m negative_ttl=60s")
    headers = bearer(nginx, "never-issued-token-0001")
    caches = []
    for _ in range(3):
        r = request_from(nginx, GUESSER, "/p/index.html", headers)
        assert r.status == 401, r
        caches.append(r.header("X-Cache"))
    assert caches == ["MISS", "HIT", "HIT"]
    assert_limited(request_from(nginx, GUESSER, "/p/index.html", headers))
    assert validations(devserver) == 1


# ------------------------------------------------------ what does not count

def test_successes_outages_and_malformed_do_not_count(tmp_path, devserver,
                                                      nginx):
    limited(nginx, write_tg_conf(tmp_path, "insight", devserver.url),
            "zone=fl:1m rate=1/m burst=0")
    tok = fetch_token(devserver, "insight")
    for _ in range(5):
        assert nginx.request("/p/index.html",
                             bearer(nginx, tok)).status == 200
    devserver.fault(endpoint="validate", status=503, count=3)
    for i in range(3):
        r = nginx.request("/p/index.html",
                          bearer(nginx, f"outage-token-{i:06d}"))
        assert r.status == 503, r
    devserver.clear_faults()
    for value in ("Bearer a=b", "Bearer", "Basic bm8tY29sb24="):
        assert nginx.request("/p/index.html",
                             {"Authorization": value}).status == 400
    assert nginx.request("/p/index.html").status == 401    # no credentials
    # burst=0: the first refusal goes through, the next request waits
    r = nginx.request("/p/index.html", bearer(nginx, "refused-token-000001"))
    assert r.status == 401 and r.header("X-TG-Result") == "invalid"
    assert_limited(nginx.request("/p/index.html", bearer(nginx, tok)))


def test_empty_key_is_not_limited(tmp_path, devserver, nginx):
    limited(nginx, write_tg_conf(tmp_path, "insight", devserver.url),
            "zone=fl:1m rate=1/m key=$http_x_client")
    for i in range(10):
        r = nginx.request("/p/index.html",
                          bearer(nginx, f"no-key-token-{i:06d}"))
        assert r.status == 401, r
    assert validations(devserver) == 10
    # with a key: one refusal, then limited; another key is not
    h = {"X-Client": "guesser", **bearer(nginx, "keyed-token-000001")}
    assert nginx.request("/p/index.html", h).status == 401
    assert_limited(nginx.request("/p/index.html", h))
    h = {"X-Client": "someone-else", **bearer(nginx, "keyed-token-000002")}
    assert nginx.request("/p/index.html", h).status == 401
    assert validations(devserver) == 12


# ------------------------------------------------------------ recovery

def test_limit_recovers_at_the_rate(tmp_path, devserver, nginx):
    limited(nginx, write_tg_conf(tmp_path, "insight", devserver.url),
            "zone=fl:1m rate=1/s burst=0")
    r = nginx.request("/p/index.html", bearer(nginx, "recover-token-000001"))
    assert r.status == 401
    r = nginx.request("/p/index.html", bearer(nginx, "recover-token-000002"))
    assert_limited(r)
    assert r.header("Retry-After") == "1"
    assert validations(devserver) == 1
    # wait well past 1/rate: the bucket has room for one more refusal
    time.sleep(int(r.header("Retry-After")) + 1.5)
    r = nginx.request("/p/index.html", bearer(nginx, "recover-token-000003"))
    assert r.status == 401, r
    assert validations(devserver) == 2
    assert_limited(nginx.request("/p/index.html",
                                 bearer(nginx, "recover-token-000004")))


def test_retry_after_counts_down_a_full_bucket(tmp_path, devserver, nginx):
    """rate=1/m, burst=0: the bucket needs a minute to make room."""
    limited(nginx, write_tg_conf(tmp_path, "insight", devserver.url),
            "zone=fl:1m rate=1/m")
    assert nginx.request("/p/index.html",
                         bearer(nginx, "minute-token-000001")).status == 401
    r = nginx.request("/p/index.html", bearer(nginx, "minute-token-000002"))
    assert_limited(r)
    assert 1 <= int(r.header("Retry-After")) <= 60


# ------------------------------------------------------------ zones

def test_zone_shared_by_locations_and_off(tmp_path, devserver, nginx):
    conf = write_tg_conf(tmp_path, "insight", devserver.url)
    nginx.server(f"""
        tokengate_config {conf};
        tokengate_fail_limit zone=fl:1m rate=1/m burst=1;
        location /a/ {{ alias {nginx.html}/; tokengate "api"; }}
        location /b/ {{
            alias {nginx.html}/;
            tokengate "api";
            tokengate_fail_limit zone=fl;
        }}
        location /free/ {{
            alias {nginx.html}/;
            tokengate "api";
            tokengate_fail_limit off;
        }}
""")
    nginx.start()
    assert nginx.request("/a/index.html",
                         bearer(nginx, "shared-token-000001")).status == 401
    assert nginx.request("/b/index.html",
                         bearer(nginx, "shared-token-000002")).status == 401
    assert nginx.request("/a/index.html",
                         bearer(nginx, "shared-token-000003")).status == 429
    assert nginx.request("/b/index.html",
                         bearer(nginx, "shared-token-000004")).status == 429
    # off: not limited
    for i in range(5):
        assert nginx.request("/free/index.html", bearer(
            nginx, f"free-token-{i:06d}")).status == 401
    assert validations(devserver) == 7


def test_zone_survives_reload(tmp_path, devserver, nginx):
    import signal
    limited(nginx, write_tg_conf(tmp_path, "insight", devserver.url),
            "zone=fl:1m rate=1/m")
    assert nginx.request("/p/index.html",
                         bearer(nginx, "reload-token-000001")).status == 401
    old = nginx.worker_pids()
    nginx.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and nginx.worker_pids() == old:
        time.sleep(0.1)
    assert_limited(nginx.request("/p/index.html",
                                 bearer(nginx, "reload-token-000002")))


def test_small_zone_evicts_and_keeps_limiting(tmp_path, devserver, nginx):
    """A zone full of clients evicts the least recently used one rather
    than failing: the newest clients are still limited."""
    limited(nginx, write_tg_conf(tmp_path, "insight", devserver.url),
            "zone=fl:32k rate=1/m key=$http_x_client",
            cache="zone=tg:1m negative_ttl=60s")
    h = bearer(nginx, "evict-token-000001")
    n = 600     # more clients than a 32k zone holds
    for i in range(n):
        r = nginx.request("/p/index.html", {"X-Client": f"c{i:05d}", **h})
        assert r.status == 401, (i, r)
    st = nginx.request("/status").json()
    assert 0 < st["fail_limit_entries"] < n
    # the newest client is still there, the oldest was evicted
    assert_limited(nginx.request("/p/index.html",
                                 {"X-Client": f"c{n - 1:05d}", **h}))
    assert nginx.request("/p/index.html",
                         {"X-Client": "c00000", **h}).status == 401


# ------------------------------------------------------- variables, status

def test_result_in_access_log_and_status_counters(tmp_path, devserver,
                                                  nginx):
    log = nginx.dir / "logs" / "tg.log"
    limited(nginx, write_tg_conf(tmp_path, "insight", devserver.url),
            "zone=fl:1m rate=1/m", extra=f"access_log {log} tg;",
            http_extra="log_format tg '$status|$tokengate_result';")
    tok = fetch_token(devserver, "insight")
    assert nginx.request("/p/index.html", bearer(nginx, tok)).status == 200
    assert request_from(nginx, GUESSER, "/p/index.html", bearer(
        nginx, "status-token-000001")).status == 401
    for i in range(2, 5):
        assert_limited(request_from(nginx, GUESSER, "/p/index.html", bearer(
            nginx, f"status-token-{i:06d}")))
    st = nginx.request("/status").json()
    assert st["requests"]["limited"] == 3
    assert st["requests"]["invalid"] == 1
    assert st["requests"]["valid"] == 1
    assert st["fail_limit_entries"] == 1
    assert st["auth_calls"] == 2
    text = nginx.request("/status?format=prometheus").body.decode()
    assert 'tokengate_requests_total{result="limited"} 3\n' in text
    assert "# TYPE tokengate_fail_limit_entries gauge\n" in text
    assert "tokengate_fail_limit_entries 1\n" in text
    nginx.stop()
    assert log.read_text().splitlines() == [
        "200|valid", "401|invalid", "429|limited", "429|limited",
        "429|limited"]


# ------------------------------------------------------------ nginx -t

@pytest.mark.parametrize("value,needle", [
    ("rate=1/s", 'must have a "zone" parameter'),
    ("zone=fl:1m", 'must have a "rate" parameter'),
    ("zone=fl:abc rate=1/s", 'invalid zone size "zone=fl:abc"'),
    ("zone=fl:1k rate=1/s", 'zone "zone=fl:1k" of "tokengate_fail_limit" '
                            'is too small'),
    ("zone=:1m rate=1/s", 'invalid zone name "zone=:1m"'),
    ("zone=fl:1m rate=0/s", 'invalid rate "rate=0/s"'),
    ("zone=fl:1m rate=abc", 'invalid rate "rate=abc"'),
    ("zone=fl:1m rate=10", 'invalid rate "rate=10"'),
    ("zone=fl:1m rate=1/h", 'invalid rate "rate=1/h"'),
    ("zone=fl:1m rate=/s", 'invalid rate "rate=/s"'),
    ("zone=fl:1m rate=-1/s", 'invalid rate "rate=-1/s"'),
    ("zone=fl:1m rate=1/s burst=-1", 'invalid burst "burst=-1"'),
    ("zone=fl:1m rate=1/s burst=x", 'invalid burst "burst=x"'),
    ("zone=fl:1m rate=1/s key=client", 'invalid key "client"'),
    ("zone=fl:1m rate=1/s key=", 'invalid key ""'),
    ("zone=fl:1m rate=1/s foo=1", 'invalid parameter "foo=1"'),
    ("zone=fl rate=1/s", 'shares a zone declared elsewhere'),
    ("zone=nowhere", 'zone "nowhere" is used but never declared'),
    ("zone=fl:1m rate=1/s; tokengate_fail_limit off", "is duplicate"),
])
def test_bad_fail_limit_fails_nginx_t(tmp_path, devserver, nginx, value,
                                      needle):
    conf = write_tg_conf(tmp_path, "insight", devserver.url)
    nginx.server(f"""
        tokengate_config {conf};
        location /p/ {{ tokengate "api"; tokengate_fail_limit {value}; }}
""")
    r = nginx.test_config()
    assert r.returncode != 0
    assert "[emerg]" in r.stderr and needle in r.stderr, r.stderr
    assert "tokengate_fail_limit" in r.stderr
    assert r.stderr.count("[emerg]") == 1


@pytest.mark.parametrize("locations,needle", [
    # declared twice
    ("location /a/ { tokengate_fail_limit zone=fl:1m rate=1/s; }\n"
     "location /b/ { tokengate_fail_limit zone=fl:1m rate=1/s; }",
     'zone "fl" of "tokengate_fail_limit" is already declared'),
    # a name the cache uses
    ("tokengate_cache zone=tg:1m;\n"
     "location /a/ { tokengate_fail_limit zone=tg:1m rate=1/s; }",
     'shared memory zone "tg" is already declared for a different use'),
    # sized differently where it is shared
    ("location /a/ { tokengate_fail_limit zone=fl:1m rate=1/s; }\n"
     "location /b/ { tokengate_fail_limit zone=fl:2m rate=1/s; }",
     'conflicts with already declared size'),
    ("location /a/ { tokengate_fail_limit zone=fl:1m rate=1/s "
     "key=$nosuchvariable; }", 'unknown "nosuchvariable" variable'),
])
def test_conflicting_zones_fail_nginx_t(tmp_path, devserver, nginx,
                                        locations, needle):
    conf = write_tg_conf(tmp_path, "insight", devserver.url)
    nginx.server(f"""
        tokengate_config {conf};
        tokengate "api";
        {locations}
""")
    r = nginx.test_config()
    assert r.returncode != 0
    assert "[emerg]" in r.stderr and needle in r.stderr, r.stderr


def test_good_fail_limit_passes_nginx_t(tmp_path, devserver, nginx):
    conf = write_tg_conf(tmp_path, "insight", devserver.url)
    nginx.configure(f"""
    tokengate_config {conf};
    tokengate_fail_limit zone=fl:1m rate=10/m burst=5;
    server {{
        listen 127.0.0.1:{nginx.port};
        location /b/ {{ tokengate "api"; tokengate_fail_limit zone=fl2; }}
        location /c/ {{ tokengate "api"; tokengate_fail_limit off; }}
        location /d/ {{
            tokengate "api";
            tokengate_fail_limit zone=fl3:64k rate=2r/s burst=0
                                 key=$http_x_client:$binary_remote_addr;
        }}
    }}
    server {{
        listen 127.0.0.1:{free_port()};
        tokengate_fail_limit zone=fl2:1m rate=1/s;
        location / {{ tokengate "api"; }}
    }}
""")
    r = nginx.test_config()
    assert r.returncode == 0, r.stderr
