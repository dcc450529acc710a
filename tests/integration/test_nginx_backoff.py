# SPDX-License-Identifier: MIT
"""The node-wide back-off of ngx_http_tokengate_module (issue 14): after a
429/503 with Retry-After, or connect failures, no worker calls the auth
server before the deadline; cached tokens keep working; one probe at a time
after connect failures; tokengate_backoff off keeps the old behaviour."""
import json
import re
import secrets
import threading
import time

from conftest import fetch_token
from nginxlib import CACHE_HEADERS, write_tg_conf


def validations(srv):
    c = srv.counters()
    return c["validate"] + c["profile"]


def backed(nginx, conf, extra="", cache="zone=tg:1m"):
    nginx.server(f"""
        tokengate_config {conf};
        tokengate_cache {cache};
        location = /status {{ tokengate_status; }}
        location /p/ {{
            alias {nginx.html}/;
            tokengate "api";
{CACHE_HEADERS}
{extra}
        }}
        location /other/ {{
            alias {nginx.html}/;
            tokengate "other";
{CACHE_HEADERS}
        }}
        location /off/ {{
            alias {nginx.html}/;
            tokengate "api";
            tokengate_backoff off;
{CACHE_HEADERS}
        }}
""")
    return nginx.start()


def status(nginx):
    return json.loads(nginx.get("/status").body)


def new_token():
    return "never-seen-" + secrets.token_hex(12)


def wait_until(pred, limit=60):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.25)
    return False


def test_retry_after_stops_calls_until_the_deadline(tmp_path, devserver,
                                                     nginx):
    backed(nginx, write_tg_conf(tmp_path, "insight", devserver.url))
    cached_tok = fetch_token(devserver, "insight")
    assert nginx.get("/p/index.html", cached_tok).status == 200
    devserver.fault(endpoint="validate", status=429, retry_after="5",
                    count=1)
    r = nginx.get("/p/index.html", fetch_token(devserver, "insight", "bob"))
    assert r.status == 503 and r.header("Retry-After") == "5"
    devserver.reset_counters()

    for _ in range(100):
        r = nginx.get("/p/index.html", new_token())
        assert r.status == 503, r
        assert 1 <= int(r.header("Retry-After")) <= 5
        assert r.header("X-TG-Result") == "unavailable"
        # the cached token keeps working
        assert nginx.get("/p/index.html", cached_tok).status == 200
    # another location of the same server shares its back-off
    assert nginx.get("/other/index.html", new_token()).status == 503
    assert validations(devserver) == 0
    st = status(nginx)
    assert st["backoff"]["refused"] >= 101
    assert st["backoff"]["active"] == 1

    # after the deadline calls resume
    fresh = fetch_token(devserver, "insight")
    assert wait_until(lambda: nginx.get("/p/index.html", fresh).status
                      == 200)
    assert validations(devserver) >= 1
    assert status(nginx)["backoff"]["active"] == 0


def test_backoff_off_keeps_calling(tmp_path, devserver, nginx):
    backed(nginx, write_tg_conf(tmp_path, "insight", devserver.url))
    devserver.fault(endpoint="validate", status=429, retry_after="30",
                    count=1)
    assert nginx.get("/p/index.html", new_token()).status == 503
    devserver.reset_counters()
    tok = fetch_token(devserver, "insight")
    assert nginx.get("/p/index.html", tok).status == 503
    # the location with tokengate_backoff off calls the server
    r = nginx.get("/off/index.html", tok)
    assert r.status == 200, r
    assert validations(devserver) == 1


def test_stale_answers_during_backoff(tmp_path, devserver, nginx):
    conf = write_tg_conf(tmp_path, "insight", devserver.url)
    backed(nginx, conf, "tokengate_on_unavailable stale;",
           cache="zone=tg:1m ttl=1s negative_ttl=1s stale_ttl=60s")
    tok = fetch_token(devserver, "insight")
    assert nginx.get("/p/index.html", tok).status == 200
    time.sleep(1.6)
    devserver.fault(endpoint="validate", status=503, retry_after="20",
                    count=1)
    assert nginx.get("/p/index.html", new_token()).status == 503
    devserver.reset_counters()
    r = nginx.get("/p/index.html", tok)
    assert r.status == 200, r
    assert r.header("X-Cache") == "STALE"
    assert validations(devserver) == 0


def test_black_hole_probes_one_at_a_time(tmp_path, nginx, black_hole):
    conf = write_tg_conf(tmp_path, "insight",
                         f"http://127.0.0.1:{black_hole}",
                         connect_timeout="2", timeout="3")
    backed(nginx, conf)
    # the first call times out: back-off 1 s; meanwhile no call
    assert nginx.get("/p/index.html", new_token()).status == 503
    assert "backing off for 1 s" in nginx.logs()
    r = nginx.get("/p/index.html", new_token())
    assert r.status == 503
    st = status(nginx)
    # deadlines are whole seconds (nginx's clock), so on a loaded machine
    # the 1 s window may be over already: this request was then the probe
    if r.header("Retry-After") is None:
        assert st["backoff"]["probes"] == 1, st
    else:
        assert r.header("Retry-After") == "1"
        assert st["backoff"]["probes"] == 0, st
    probes, refused = st["backoff"]["probes"], st["backoff"]["refused"]

    # later: a burst, of which at most one request is the probe and the
    # others are refused while it runs
    time.sleep(1.5)
    out = []
    threads = [threading.Thread(target=lambda: out.append(
        nginx.get("/p/index.html", new_token()))) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [r.status for r in out] == [503] * 10
    st = status(nginx)
    assert st["backoff"]["probes"] - probes <= 1, st
    assert st["backoff"]["refused"] - refused >= 9, st
    assert st["backoff"]["active"] == 1

    # each failed probe doubles the back-off
    assert wait_until(lambda: nginx.get("/p/index.html", new_token())
                      and "backing off for 4 s" in nginx.logs())
    log = nginx.logs()
    seq = re.findall(r"backing off for (\d+) s", log)
    assert seq[:3] == ["1", "2", "4"], seq
    # one probe at a time: a probe's failure comes before the next probe
    events = re.findall(r"(probing|backing off)", log)
    assert events[0] == "backing off"
    for a, b in zip(events, events[1:]):
        assert not (a == "probing" and b == "probing"), events
