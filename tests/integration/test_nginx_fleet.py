# SPDX-License-Identifier: MIT
"""tokengate_shared_cache (issue 15): two nginx nodes share validations
through a private redis-server, sealed under a fleet key.

A real redis-server (conftest.Redis: free loopback port, no persistence, a
password), two or three nginx instances with their own prefixes, the
devserver.  No timing thresholds: a stalled or dead Redis is asserted by
status codes and an overall bound on each request.
"""
import json
import os
import socket
import threading
import time

import pytest

from conftest import fetch_token
from nginxlib import CACHE_HEADERS, write_tg_conf


# ------------------------------------------------------------------ helpers

def validations(srv):
    c = srv.counters()
    return c["validate"] + c["profile"]


def key_file(tmp_path, name="fleet.key", data=None, mode=0o600):
    path = tmp_path / name
    path.write_bytes(data if data is not None else os.urandom(32))
    os.chmod(path, mode)
    return path


def node(nginx_factory, conf, redis, key, timeout="200ms", extra="",
         start=True):
    n = nginx_factory()
    n.server(f"""
        location / {{ }}
        location = /status {{ tokengate_status; }}
        location /p/ {{
            alias {n.html}/;
            tokengate "api";
            tokengate_config {conf};
            tokengate_cache zone=tg:1m ttl=60s negative_ttl=30s;
            tokengate_shared_cache redis://127.0.0.1:{redis.port} key_file={key}
                password_file={redis.password_file} timeout={timeout};
{CACHE_HEADERS}
{extra}
        }}
""")
    return n.start() if start else n


def shared(n):
    return n.get("/status").json()["shared"]


def wait_connected(n, new_token, deadline_s=40):
    """Poll, with a new token each time (a zone miss), until a request sees
    Redis again (a miss or a hit counted)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        before = shared(n)
        assert n.get("/p/open.html", new_token()).status == 200
        after = shared(n)
        if after["hits"] + after["misses"] > before["hits"] + before["misses"]:
            return True
        time.sleep(0.5)
    return False


@pytest.fixture
def fleet(tmp_path, devserver, nginx_factory, redis, api):
    conf = write_tg_conf(tmp_path, api, devserver.url)
    key = key_file(tmp_path)
    a = node(nginx_factory, conf, redis, key)
    b = node(nginx_factory, conf, redis, key)
    return conf, key, a, b


# ------------------------------------------------------------- sharing

def test_node_b_serves_node_a_validation(fleet, devserver, api):
    conf, key, a, b = fleet
    tok = fetch_token(devserver, api)
    devserver.reset_counters()
    r = a.get("/p/index.html", tok)
    assert r.status == 200, r
    assert r.header("X-Cache") == "MISS"
    assert validations(devserver) == 1
    r2 = b.get("/p/index.html", tok)
    assert r2.status == 200, r2
    assert r2.header("X-Cache") == "SHARED"
    assert validations(devserver) == 1
    for h in ("X-TG-User", "X-TG-Id", "X-TG-Email", "X-TG-Groups",
              "X-Remote-User"):
        assert r2.header(h) == r.header(h), h
    r3 = b.get("/p/index.html", tok)
    assert r3.header("X-Cache") == "HIT"
    assert validations(devserver) == 1
    assert shared(b)["hits"] == 1
    assert shared(a)["misses"] == 1
    prom = b.get("/status?format=prometheus").body.decode()
    assert 'tokengate_shared_total{result="hits"} 1' in prom


def test_refused_token_is_shared(fleet, devserver):
    conf, key, a, b = fleet
    devserver.reset_counters()
    r = a.get("/p/index.html", "not-a-real-token-0123456789")
    assert r.status == 401, r
    n = validations(devserver)
    assert n >= 1
    r2 = b.get("/p/index.html", "not-a-real-token-0123456789")
    assert r2.status == 401, r2
    assert r2.header("X-Cache") == "SHARED"
    assert validations(devserver) == n


# ------------------------------------------------------------ failures

def test_redis_stopped_then_back(fleet, devserver, redis, api):
    conf, key, a, b = fleet
    toks = [fetch_token(devserver, api, u) for u in ("alice", "bob")]
    redis.pause()
    try:
        for n in (a, b):
            for tok in toks:
                t0 = time.monotonic()
                r = n.get("/p/index.html", tok, timeout=10)
                assert r.status == 200, r
                assert time.monotonic() - t0 < 10
        assert shared(a)["errors"] >= 1
    finally:
        redis.cont()
    assert wait_connected(a, lambda: fetch_token(devserver, api, "carol"))
    assert wait_connected(b, lambda: fetch_token(devserver, api, "carol"))
    tok2 = fetch_token(devserver, api, "bob")
    assert b.get("/p/open.html", tok2).status == 200
    devserver.reset_counters()
    assert a.get("/p/admin.html", tok2).header("X-Cache") == "SHARED"
    assert validations(devserver) == 0
    assert "shared cache" in a.logs()


def test_redis_killed_then_restarted(fleet, devserver, redis, api):
    conf, key, a, b = fleet
    tok = fetch_token(devserver, api)
    redis.kill()
    for n in (a, b):
        for _ in range(3):
            r = n.get("/p/index.html", tok, timeout=10)
            assert r.status == 200, r
    redis.start()
    assert wait_connected(a, lambda: fetch_token(devserver, api, "bob"))
    assert wait_connected(b, lambda: fetch_token(devserver, api, "bob"))
    tok3 = fetch_token(devserver, api, "carol")
    assert b.get("/p/index.html", tok3).status == 200
    assert a.get("/p/index.html", tok3).header("X-Cache") == "SHARED"


def test_wrong_password_goes_to_the_bi_server(tmp_path, devserver, redis,
                                              nginx_factory, api):
    conf = write_tg_conf(tmp_path, api, devserver.url)
    pw = tmp_path / "wrong.pw"
    pw.write_text("not-the-password\n")
    os.chmod(pw, 0o600)
    n = nginx_factory()
    key = key_file(tmp_path)
    n.server(f"""
        location = /status {{ tokengate_status; }}
        location /p/ {{
            alias {n.html}/;
            tokengate "api";
            tokengate_config {conf};
            tokengate_cache zone=tg:1m;
            tokengate_shared_cache redis://127.0.0.1:{redis.port}
                key_file={key} password_file={pw};
{CACHE_HEADERS}
        }}
""")
    n.start()
    for user in ("alice", "bob", "carol"):
        r = n.get("/p/index.html", fetch_token(devserver, api, user))
        assert r.status == 200, r
        assert r.header("X-Cache") == "MISS"
    assert shared(n)["hits"] == 0
    assert redis.cli("KEYS", "*").stdout.split() == []
    log = n.logs()
    assert "shared cache" in log
    assert log.count("AUTH or SELECT refused") <= 1


def test_out_of_memory_on_set_is_counted(fleet, devserver, redis, api):
    conf, key, a, b = fleet
    redis.cli("CONFIG", "SET", "maxmemory-policy", "noeviction")
    redis.cli("CONFIG", "SET", "maxmemory", "1")
    try:
        tok = fetch_token(devserver, api)
        r = a.get("/p/index.html", tok)
        assert r.status == 200, r
        assert b.get("/p/index.html", tok).status == 200
        deadline = time.monotonic() + 10
        while shared(a)["errors"] == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert shared(a)["errors"] >= 1
        assert "write refused" in a.logs()
    finally:
        redis.cli("CONFIG", "SET", "maxmemory", "0")


def test_leader_gone_during_the_redis_lookup(tmp_path, devserver, redis,
                                             nginx_factory, api):
    """The first request of a token leaves while its Redis lookup waits;
    the request waiting on it takes the lookup over and is answered."""
    conf = write_tg_conf(tmp_path, api, devserver.url)
    n = node(nginx_factory, conf, redis, key_file(tmp_path), timeout="2s")
    tok = fetch_token(devserver, api)
    n.tokens.add(tok)
    redis.pause()
    try:
        leader = socket.create_connection(("127.0.0.1", n.port))
        leader.sendall(f"GET /p/index.html HTTP/1.1\r\nHost: x\r\n"
                       f"Authorization: Bearer {tok}\r\n\r\n".encode())
        time.sleep(0.3)
        out = {}
        t = threading.Thread(target=lambda: out.update(
            r=n.get("/p/index.html", tok, timeout=10)))
        t.start()
        time.sleep(0.3)
        leader.close()
        t.join(15)
        assert out["r"].status == 200, out
        assert out["r"].header("X-Cache") == "COALESCED"
    finally:
        redis.cont()


def test_garbage_entry_is_ignored_and_counted(fleet, devserver, redis, api):
    conf, key, a, b = fleet
    tok = fetch_token(devserver, api)
    assert a.get("/p/index.html", tok).status == 200
    keys = redis.cli("KEYS", "*").stdout.split()
    assert len(keys) == 1
    redis.cli("SET", keys[0], "garbage, not sealed")
    devserver.reset_counters()
    r = b.get("/p/index.html", tok)
    assert r.status == 200, r
    assert r.header("X-Cache") == "MISS"
    assert validations(devserver) == 1
    assert shared(b)["rejected"] == 1
    # a wrong reply type (a list where a string was) is an error, not 500
    tok2 = fetch_token(devserver, api, "bob")
    assert a.get("/p/index.html", tok2).status == 200
    k2 = [k for k in redis.cli("KEYS", "*").stdout.split() if k != keys[0]]
    redis.cli("DEL", k2[0])
    redis.cli("RPUSH", k2[0], "x")
    r = b.get("/p/index.html", tok2)
    assert r.status == 200, r
    assert shared(b)["errors"] >= 1


def test_entry_sealed_under_another_key_is_rejected(tmp_path, fleet,
                                                     devserver, redis,
                                                     nginx_factory, api):
    conf, key, a, b = fleet
    other = key_file(tmp_path, "other.key")
    c = node(nginx_factory, conf, redis, other)
    tok = fetch_token(devserver, api)
    assert c.get("/p/index.html", tok).status == 200
    (kc,) = redis.cli("KEYS", "*").stdout.split()
    assert a.get("/p/index.html", tok).status == 200
    (ka,) = [k for k in redis.cli("KEYS", "*").stdout.split() if k != kc]
    # C's sealed value moved under A's key
    redis.cli("EVAL", "redis.call('SET', KEYS[2], redis.call('GET', "
              "KEYS[1])) return 1", "2", kc, ka)
    devserver.reset_counters()
    r = b.get("/p/index.html", tok)
    assert r.status == 200, r
    assert r.header("X-Cache") == "MISS"
    assert validations(devserver) == 1
    assert shared(b)["rejected"] == 1


def test_node_with_another_key_never_shares(tmp_path, fleet, devserver,
                                            redis, nginx_factory, api):
    conf, key, a, b = fleet
    c = node(nginx_factory, conf, redis, key_file(tmp_path, "other.key"))
    tok = fetch_token(devserver, api)
    assert a.get("/p/index.html", tok).status == 200
    devserver.reset_counters()
    r = c.get("/p/index.html", tok)
    assert r.status == 200, r
    assert r.header("X-Cache") == "MISS"
    assert validations(devserver) == 1
    assert shared(c)["hits"] == 0


def test_redis_holds_no_token_and_no_identity(fleet, devserver, redis,
                                              api):
    conf, key, a, b = fleet
    toks = [fetch_token(devserver, api, u) for u in ("alice", "bob")]
    seen = []
    for tok in toks:
        r = a.get("/p/index.html", tok)
        assert r.status == 200, r
        seen.append(r)
        assert b.get("/p/index.html", tok).header("X-Cache") == "SHARED"
    a.get("/p/index.html", "refused-token-abcdefgh")
    keys = redis.cli("KEYS", "*").stdout.split()
    assert len(keys) == 3
    dump = b"\n".join(keys)
    for k in keys:
        dump += redis.cli("GET", k).stdout
        ttl = int(redis.cli("PTTL", k).stdout)
        assert 0 < ttl <= 60000
    plain = set(toks) | {"refused-token-abcdefgh"}
    for r in seen:
        plain.add(r.header("X-TG-Email"))
        plain.add(r.header("X-TG-User"))
        plain.update(g for g in (r.header("X-TG-Groups") or "").split(",")
                     if len(g) >= 3)
    for p in plain:
        if p:
            assert p.encode() not in dump, p


# ------------------------------------------------------ logout and purge

def logout_node(nginx_factory, conf, redis, key):
    """A node with tokengate at server level: /p/, /logout, /purge
    (loopback only), /status."""
    n = nginx_factory()
    n.server(f"""
        tokengate "api";
        tokengate_config {conf};
        tokengate_cache zone=tg:1m ttl=60s negative_ttl=30s;
        tokengate_shared_cache redis://127.0.0.1:{redis.port} key_file={key}
            password_file={redis.password_file} timeout=200ms;
        location /p/ {{
            alias {n.html}/;
{CACHE_HEADERS}
        }}
        location = /logout {{ tokengate_logout; }}
        location = /purge {{
            tokengate off;
            tokengate_purge;
            allow 127.0.0.1;
            deny all;
        }}
        location = /status {{ tokengate off; tokengate_status; }}
""")
    return n.start()


@pytest.fixture
def looker_fleet(tmp_path, devserver, nginx_factory, redis):
    conf = write_tg_conf(tmp_path, "looker", devserver.url)
    key = key_file(tmp_path)
    a = logout_node(nginx_factory, conf, redis, key)
    b = logout_node(nginx_factory, conf, redis, key)
    return a, b


def redis_keys(redis):
    return redis.cli("KEYS", "*").stdout.split()


def test_logout_on_a_reaches_b(looker_fleet, devserver):
    a, b = looker_fleet
    tok = fetch_token(devserver, "looker")
    r = a.get("/p/index.html", tok)
    assert (r.status, r.header("X-Cache")) == (200, "MISS")
    devserver.reset_counters()

    r = a.get("/logout", tok)
    assert r.status == 204, r
    assert devserver.counters()["logout"] == 1

    # B never saw the token: its zone is empty, Redis must be too; the
    # devserver says the token is revoked
    r = b.get("/p/index.html", tok)
    assert r.status == 401, r
    assert r.header("X-Cache") != "SHARED"
    assert devserver.counters()["validate"] == 1
    assert shared(b)["hits"] == 0


def test_purge_on_a_deletes_the_redis_entry(looker_fleet, devserver, redis):
    a, b = looker_fleet
    toks = [fetch_token(devserver, "looker", u) for u in ("alice", "bob")]
    for tok in toks:
        assert a.get("/p/index.html", tok).header("X-Cache") == "MISS"
    assert len(redis_keys(redis)) == 2
    devserver.reset_counters()

    r = a.get("/purge", toks[0])
    assert r.status == 200, r
    assert json.loads(r.body) == {"removed": 1}
    # the DEL is written before the answer; Redis runs it right after
    end = time.monotonic() + 10
    while len(redis_keys(redis)) != 1 and time.monotonic() < end:
        time.sleep(0.1)
    assert len(redis_keys(redis)) == 1

    # B: the purged token goes to the BI server, the other one is shared
    r = b.get("/p/index.html", toks[0])
    assert (r.status, r.header("X-Cache")) == (200, "MISS")
    assert validations(devserver) == 1
    r = b.get("/p/index.html", toks[1])
    assert (r.status, r.header("X-Cache")) == (200, "SHARED")
    assert validations(devserver) == 1
    assert shared(b)["hits"] == 1
    assert shared(b)["misses"] == 1


# ------------------------------------------------------------ back-off

def test_retry_after_on_a_quiets_b(tmp_path, devserver, nginx_factory,
                                   redis):
    conf = write_tg_conf(tmp_path, "insight", devserver.url)
    key = key_file(tmp_path)
    a = node(nginx_factory, conf, redis, key)
    b = node(nginx_factory, conf, redis, key)
    devserver.fault(endpoint="validate", status=429, retry_after="5",
                    count=1)
    r = a.get("/p/index.html", fetch_token(devserver, "insight", "bob"))
    assert r.status == 503 and r.header("Retry-After") == "5"

    # A published its deadline, sealed, for at most Retry-After
    keys = [k for k in redis_keys(redis) if b"backoff:" in k]
    assert len(keys) == 1
    assert 0 < int(redis.cli("PTTL", keys[0]).stdout) <= 5000

    # B polls it about once a second; then it calls the server no more
    end = time.monotonic() + 4
    while (b.get("/status").json()["backoff"]["active"] == 0
           and time.monotonic() < end):
        time.sleep(0.25)
    devserver.reset_counters()
    for i in range(10):
        r = b.get("/p/index.html", f"never-seen-on-b-{i}-0123456789")
        assert r.status == 503, r
        assert 1 <= int(r.header("Retry-After")) <= 5
    assert validations(devserver) == 0
    assert b.get("/status").json()["backoff"]["refused"] >= 10


# ----------------------------------------------------------- directive

BAD = {
    "no_tokengate_cache": ("", None),
    "short_key": ("tokengate_cache zone=tg:1m;", "has 16 bytes"),
    "key_mode": ("tokengate_cache zone=tg:1m;", "mode 0644"),
    "key_missing": ("tokengate_cache zone=tg:1m;", "cannot be opened"),
    "no_key_file": ("tokengate_cache zone=tg:1m;", "key_file"),
    "bad_url": ("tokengate_cache zone=tg:1m;", "invalid URL"),
    "no_port": ("tokengate_cache zone=tg:1m;", "invalid URL"),
    "bad_timeout": ("tokengate_cache zone=tg:1m;", "timeout=abc"),
    "zero_timeout": ("tokengate_cache zone=tg:1m;", "timeout=0"),
    "unknown": ("tokengate_cache zone=tg:1m;", "invalid parameter"),
    "bad_prefix": ("tokengate_cache zone=tg:1m;", "prefix"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_directive_fails_nginx_t(tmp_path, devserver, nginx, redis,
                                     case):
    conf = write_tg_conf(tmp_path, "insight", devserver.url)
    good = key_file(tmp_path)
    url = f"redis://127.0.0.1:{redis.port}"
    params = f"key_file={good}"
    cache, expect = BAD[case]
    if case == "short_key":
        params = f"key_file={key_file(tmp_path, 'short', os.urandom(16))}"
    elif case == "key_mode":
        params = f"key_file={key_file(tmp_path, 'wide', mode=0o644)}"
    elif case == "key_missing":
        params = f"key_file={tmp_path / 'absent.key'}"
    elif case == "no_key_file":
        params = ""
    elif case == "bad_url":
        url = f"http://127.0.0.1:{redis.port}"
    elif case == "no_port":
        url = "redis://127.0.0.1"
    elif case == "bad_timeout":
        params += " timeout=abc"
    elif case == "zero_timeout":
        params += " timeout=0"
    elif case == "unknown":
        params += " colour=blue"
    elif case == "bad_prefix":
        params += " prefix=a/b"
    nginx.server(f"""
        location /p/ {{
            tokengate "api";
            tokengate_config {conf};
            {cache}
            tokengate_shared_cache {url} {params};
        }}
""")
    r = nginx.test_config()
    assert r.returncode != 0, r
    if expect is None:
        assert '"tokengate_shared_cache" needs "tokengate_cache"' \
            in r.stderr, r.stderr
    else:
        assert expect in r.stderr, r.stderr


def test_good_directive_passes_nginx_t(tmp_path, devserver, nginx, redis):
    conf = write_tg_conf(tmp_path, "insight", devserver.url)
    nginx.server(f"""
        tokengate_shared_cache redis://127.0.0.1:{redis.port}/2
            key_file={key_file(tmp_path)} password_file={redis.password_file}
            timeout=80ms prefix=fleet-1:;
        location /p/ {{
            tokengate "api";
            tokengate_config {conf};
            tokengate_cache zone=tg:1m;
        }}
""")
    r = nginx.test_config()
    assert r.returncode == 0, r.stderr
