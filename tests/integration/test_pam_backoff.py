# SPDX-License-Identifier: MIT
"""pam_tokengate's node-wide back-off (issue 14): the deadline file under
state_dir makes logins fail fast with PAM_AUTHINFO_UNAVAIL (or use the
offline cache) during a 429/503 Retry-After window or after connect
failures, without a server call; a tampered file never locks logins out
beyond the cap."""
import hashlib
import json
import os
import time

import pytest

from conftest import free_port
from pamlib import PAM, PamHarness, creds


@pytest.fixture
def pam(tmp_path, devserver):
    return PamHarness(tmp_path, devserver, "insight")


def backoff_file(pam):
    h = hashlib.sha256(pam.url.encode()).hexdigest()[:32]
    return pam.state_dir / f"backoff-{h}.json"


def calls(devserver):
    c = devserver.counters()
    return sum(c.values())


def wait_for_login(pam, password, limit=60):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        res = pam.run("alice", password)
        if res.rc() == PAM["SUCCESS"]:
            return res
        time.sleep(0.5)
    return res


def test_retry_after_window_fails_fast_without_calls(pam, devserver):
    pam.service()
    tokens = [pam.token() for _ in range(5)]
    devserver.fault(endpoint="validate", status=429, retry_after="5",
                    count=1)
    res = pam.run("alice", tokens[0])
    assert res.rc() == PAM["AUTHINFO_UNAVAIL"], res.why
    f = backoff_file(pam)
    st = f.lstat()
    assert st.st_uid == 0 and st.st_mode & 0o077 == 0
    rec = json.loads(f.read_text())
    assert rec["kind"] == "backoff" and rec["url"] == pam.url
    assert 0 < rec["until"] - time.time() <= 5
    devserver.reset_counters()
    for password in tokens[1:] + [creds("alice"), creds("bob")]:
        res = pam.run("alice", password)
        assert res.rc() == PAM["AUTHINFO_UNAVAIL"], res.why
        assert res.logged("backing off from the server"), res.why
        assert res.logged("retry_after="), res.why
    assert calls(devserver) == 0
    # after the window, logins work again and the file goes
    res = wait_for_login(pam, creds("alice"))
    assert res.rc() == PAM["SUCCESS"], res.why
    assert not f.exists()


def test_on_unavailable_ignore_during_the_window(pam, devserver):
    pam.service(args=["on_unavailable=ignore"])
    devserver.fault(endpoint="token", status=503, retry_after="30", count=1)
    assert pam.run("alice", creds("alice")).rc() == PAM["IGNORE"]
    devserver.reset_counters()
    res = pam.run("alice", creds("alice"))
    assert res.rc() == PAM["IGNORE"], res.why
    assert calls(devserver) == 0


def test_connect_failures_double_with_one_probe(pam):
    pam.url = f"http://127.0.0.1:{free_port()}"
    pam.service()
    f = backoff_file(pam)
    res = pam.run("alice", creds("alice"))
    assert res.rc() == PAM["AUTHINFO_UNAVAIL"], res.why
    assert res.logged("backing off from the server for 1 s"), res.why
    assert json.loads(f.read_text())["failures"] == 1
    # within the window: no connection attempt
    res = pam.run("alice", creds("alice"))
    assert res.rc() == PAM["AUTHINFO_UNAVAIL"], res.why
    assert res.logged("no call for"), res.why
    assert not res.logged("connect", "refused"), res.why
    seen = []
    for want in (2, 4):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            res = pam.run("alice", creds("alice"))
            if res.logged(f"backing off from the server for {want} s"):
                break
            time.sleep(0.3)
        assert res.logged("this login probes it"), res.why
        seen.append(json.loads(f.read_text())["failures"])
    assert seen == [2, 3]


def test_offline_cache_answers_during_the_window(pam, devserver):
    pam.service(args=["offline_cache=3600", "offline_max_failures=3",
                      f"offline_dir={pam.offline_dir}"])
    assert pam.run("alice", creds("alice")).rc() == PAM["SUCCESS"]
    devserver.fault(endpoint="token", status=429, retry_after="30", count=1)
    assert pam.run("bob", creds("bob")).rc() == PAM["AUTHINFO_UNAVAIL"]
    devserver.reset_counters()
    res = pam.run("alice", creds("alice"))
    assert res.rc() == PAM["SUCCESS"], res.why
    assert res.logged("offline cache"), res.why
    assert calls(devserver) == 0


def tamper(pam, how):
    f = backoff_file(pam)
    now = int(time.time())
    rec = {"version": 1, "kind": "backoff", "api": "insight",
           "url": pam.url, "created": now, "until": now + 20,
           "probe_until": 0, "failures": 0}
    if how == "far-future":
        rec["until"] = now + 10 ** 9
    if how == "garbage":
        f.write_bytes(b"\x00not json{{{")
    elif how == "symlink":
        target = pam.tmp / "elsewhere.json"
        target.write_text(json.dumps(rec))
        os.chmod(target, 0o600)
        f.symlink_to(target)
    else:
        f.write_text(json.dumps(rec))
    if how == "mode":
        os.chmod(f, 0o644)
    elif how == "owner":
        os.chmod(f, 0o600)
        os.chown(f, 65534, 65534)
    elif how in ("far-future", "garbage"):
        os.chmod(f, 0o600)
    return f


@pytest.mark.parametrize("how", ["far-future", "mode", "owner", "garbage",
                                 "symlink"])
def test_tampered_file_never_locks_logins_out(pam, devserver, how):
    pam.service()
    tamper(pam, how)
    res = pam.run("alice", creds("alice"))
    assert res.rc() == PAM["SUCCESS"], res.why
    assert res.logged("back-off file ignored"), res.why
    assert calls(devserver) > 0


def test_well_formed_file_is_honoured(pam, devserver):
    """The control for the tampered cases: the same record, safe, holds."""
    pam.service()
    tamper(pam, "ok")
    os.chmod(backoff_file(pam), 0o600)
    res = pam.run("alice", creds("alice"))
    assert res.rc() == PAM["AUTHINFO_UNAVAIL"], res.why
    assert calls(devserver) == 0
