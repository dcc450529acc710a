# SPDX-License-Identifier: MIT
"""The CLI side of the fault matrix (SECURITY.md section 6, F1-F14).

Each fault must give a clear message naming the cause, a distinct exit
code, no secret in any output, and no hang past the configured timeout
(subprocess timeouts below are generous hang guards, not timing checks).
"""
import json
import socket
import threading

import pytest

from conftest import DEMO, EXIT, Cli, free_port
from pamlib import make_pki


def logged_in(cli, user="alice"):
    res = cli.login(user)
    assert res.rc == 0, res
    return cli.stored_token()


# ---------------------------------------------------------------- F1, F2, F3


def test_f1_connection_refused(cli):
    res = cli("--url", f"http://127.0.0.1:{free_port()}", "login",
              "--client-id", "alice-client",
              env={"TOKENGATE_SECRET": DEMO["alice"]["secret"]})
    assert res.rc == EXIT["UNAVAILABLE"], res
    assert "connect" in res.err.lower()


def test_f2_connect_black_hole(cli, black_hole):
    res = cli("--url", f"http://127.0.0.1:{black_hole}", "-o",
              "connect_timeout=1", "-o", "timeout=3", "login", "--client-id",
              "alice-client", env={"TOKENGATE_SECRET": DEMO["alice"]["secret"]},
              timeout=30)
    assert res.rc == EXIT["TIMEOUT"], res
    assert "time" in res.err.lower()


def test_f3_accepts_never_answers(cli, devserver):
    logged_in(cli)
    devserver.fault(endpoint="validate", hang=True)
    res = cli("-o", "timeout=1", "whoami", timeout=30)
    assert res.rc == EXIT["TIMEOUT"], res


# ---------------------------------------------------------------- F4


def test_f4_slow_below_limit_is_fine(cli, devserver):
    logged_in(cli)
    devserver.fault(endpoint="validate", delay_ms=300)
    res = cli("-o", "timeout=5", "whoami", timeout=30)
    assert res.rc == 0, res


def test_f4_slow_above_limit_times_out(cli, devserver):
    logged_in(cli)
    devserver.fault(endpoint="validate", delay_ms=3000)
    res = cli("-o", "timeout=1", "whoami", timeout=30)
    assert res.rc == EXIT["TIMEOUT"], res


# ---------------------------------------------------------------- F5


@pytest.mark.parametrize("status", [500, 502, 503, 504])
@pytest.mark.parametrize("body", [True, False])
def test_f5_server_errors(cli, devserver, status, body):
    logged_in(cli)
    rule = {"endpoint": "validate", "status": status}
    if not body:
        rule["body"] = False
    devserver.fault(**rule)
    res = cli("whoami")
    assert res.rc == EXIT["UNAVAILABLE"], res
    assert str(status) in res.err


# ---------------------------------------------------------------- F6


@pytest.mark.parametrize("value,expected", [
    ("5", 5),
    ("garbage", None),
    ("-3", None),
    ("999999", 300),          # clamped to retry_after_max
])
def test_f6_rate_limited(cli, devserver, value, expected):
    logged_in(cli)
    devserver.fault(endpoint="validate", retry_after=value)
    res = cli("--json", "whoami")
    assert res.rc == EXIT["RATE_LIMITED"], res
    doc = res.json()
    assert doc["error"] == "TG_RATE_LIMITED"
    if expected is None:
        assert doc.get("retry_after") in (None, -1)
    else:
        assert doc["retry_after"] == expected


def test_f6_rate_limited_http_date(cli, devserver):
    import email.utils
    import time
    logged_in(cli)
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    devserver.fault(endpoint="validate", retry_after=when)
    res = cli("--json", "whoami")
    assert res.rc == EXIT["RATE_LIMITED"], res
    assert 60 <= res.json()["retry_after"] <= 130


def test_f6_human_message_says_when(cli, devserver):
    logged_in(cli)
    devserver.fault(endpoint="validate", retry_after="7")
    res = cli("whoami")
    assert res.rc == EXIT["RATE_LIMITED"]
    assert "7" in res.err


# ---------------------------------------------------------------- F7


@pytest.mark.parametrize("status,code", [
    (401, "TOKEN_INVALID"), (403, "FORBIDDEN"), (404, "NOT_FOUND"),
])
def test_f7_client_errors(cli, devserver, status, code):
    logged_in(cli)
    devserver.fault(endpoint="validate", status=status)
    res = cli("whoami")
    assert res.rc == EXIT[code], res


def test_f7_login_401_is_rejected(cli, devserver):
    devserver.fault(endpoint="token", status=401)
    res = cli.login("alice")
    assert res.rc == EXIT["REJECTED"], res


# ---------------------------------------------------------------- F8


HOSTILE_BODIES = {
    "malformed": None,
    "empty": "",
    "trailing": '{"uid":"u1","mail":"a@example.com","id":"u1"} x',
    "duplicate": '{"uid":"u1","uid":"root","id":"1","id":"0"}',
    "nul": '{"uid":"u\\u0000x","id":"u\\u0000x"}',
    "types": '{"uid":17,"id":17.5,"email":[],"mail":{}}',
    "no_uid": '{"mail":"","cn":"","email":""}',
    "deep": '{"uid":"u1","id":"u1","x":' + '{"a":' * 100 + '1' + '}' * 101,
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_BODIES))
def test_f8_malformed_answers(cli, devserver, kind):
    logged_in(cli)
    if kind == "malformed":
        devserver.fault(endpoint="validate", malformed=True)
    else:
        devserver.fault(endpoint="validate", body=HOSTILE_BODIES[kind])
    res = cli("whoami")
    assert res.rc == EXIT["PROTOCOL"], res
    if kind == "deep":
        assert "nested deeper" in res.err, res


def test_f8_token_in_unexpected_2xx_is_never_shown(cli, devserver):
    """A 201 whose body is a token is a protocol error that quotes nothing
    of the body (the body is the secret)."""
    leaked = "Leaked201TokenValue"
    cli.extra_secrets.append(leaked)
    devserver.fault(endpoint="token", status=201, body=leaked,
                    content_type="text/plain")
    res = cli.login("alice")
    assert res.rc == EXIT["PROTOCOL"], res
    assert "201" in res.err
    res = cli("--json", "login", "--client-id", "alice-client",
              env={"TOKENGATE_SECRET": DEMO["alice"]["secret"]})
    assert res.rc == EXIT["PROTOCOL"], res


# ---------------------------------------------------------------- F9, F10


def test_f9_truncated_body(cli, devserver):
    logged_in(cli)
    devserver.fault(endpoint="validate", truncate=True)
    res = cli("whoami")
    assert res.rc == EXIT["PROTOCOL"], res


def test_f9_connection_closed(cli, devserver):
    logged_in(cli)
    devserver.fault(endpoint="validate", close=True)
    res = cli("whoami")
    assert res.rc in (EXIT["UNAVAILABLE"], EXIT["PROTOCOL"]), res


@pytest.mark.parametrize("kind", ["oversize", "oversize_chunked"])
def test_f10_oversized_body(cli, devserver, kind):
    logged_in(cli)
    devserver.fault(endpoint="validate", **{kind: 1 << 20})
    res = cli("-o", "max_response_bytes=65536", "whoami")
    assert res.rc == EXIT["PROTOCOL"], res
    assert "65536" in res.err or "larger" in res.err


# ---------------------------------------------------------------- F11, F12


def test_f11_wrong_content_type(cli, devserver):
    logged_in(cli)
    devserver.fault(endpoint="validate", content_type="text/html")
    res = cli("whoami")
    assert res.rc == EXIT["PROTOCOL"], res
    assert "text/html" in res.err


@pytest.fixture
def listener_counter():
    """A second loopback listener that records every connection made to it."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    lsock.settimeout(0.2)
    seen = {"connections": 0, "bytes": 0}
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = lsock.accept()
            except OSError:
                continue
            seen["connections"] += 1
            conn.settimeout(0.5)
            try:
                seen["bytes"] += len(conn.recv(65536))
            except OSError:
                pass
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield lsock.getsockname()[1], seen
    stop.set()
    thread.join(timeout=5)
    lsock.close()


@pytest.mark.parametrize("endpoint", ["token", "validate"])
def test_f12_redirect_never_followed(cli, devserver, listener_counter,
                                     endpoint):
    port, seen = listener_counter
    if endpoint == "validate":
        logged_in(cli)
    devserver.fault(endpoint=endpoint,
                    redirect=f"http://127.0.0.1:{port}/steal")
    if endpoint == "token":
        res = cli.login("alice")
    else:
        res = cli("whoami")
    assert res.rc == EXIT["PROTOCOL"], res
    assert "redirect" in res.err.lower()
    assert seen["connections"] == 0 and seen["bytes"] == 0


def test_f12_redirect_to_file(cli, devserver):
    logged_in(cli)
    devserver.fault(endpoint="validate", redirect="file:///etc/passwd")
    res = cli("whoami")
    assert res.rc == EXIT["PROTOCOL"], res
    assert "root:" not in res.text


# ---------------------------------------------------------------- F13


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"),
                    [("wrongname", "DNS:other.example")], self_signed=True)


def tls_cli(tmp_path, devserver_factory, pki, cert, ca=None):
    srv = devserver_factory("--tls-cert", pki / f"{cert}.pem", "--tls-key",
                            pki / f"{cert}.key")
    assert srv.url.startswith("https://"), srv.url
    cli = Cli(tmp_path, srv.url, "insight")
    keys = {"url": srv.url, "api": "insight"}
    if ca:
        keys["ca_file"] = pki / ca
    cli.write_config(**keys)
    return cli


def test_f13_trusted_tls_works(tmp_path, devserver_factory, pki):
    cli = tls_cli(tmp_path, devserver_factory, pki, "good", ca="ca.pem")
    res = cli.login("alice")
    assert res.rc == 0, res


@pytest.mark.parametrize("cert,ca", [
    ("good", None),            # untrusted CA
    ("self", None),            # self-signed
    ("wrongname", "ca.pem"),   # trusted, wrong host name
])
def test_f13_tls_failures(tmp_path, devserver_factory, pki, cert, ca):
    cli = tls_cli(tmp_path, devserver_factory, pki, cert, ca=ca)
    res = cli.login("alice")
    assert res.rc == EXIT["TLS"], res


def test_f13_https_to_a_plain_http_server(tmp_path, devserver_factory, pki):
    srv = devserver_factory()
    cli = Cli(tmp_path, srv.url.replace("http://", "https://"), "insight")
    res = cli.login("alice")
    assert res.rc == EXIT["TLS"], res


def test_f13_plain_http_on_tls_port(tmp_path, devserver_factory, pki):
    srv = devserver_factory("--tls-cert", pki / "good.pem", "--tls-key",
                            pki / "good.key")
    cli = Cli(tmp_path, srv.url.replace("https://", "http://"), "insight")
    res = cli.login("alice")
    assert res.rc in (EXIT["PROTOCOL"], EXIT["UNAVAILABLE"]), res


# ---------------------------------------------------------------- F14


@pytest.mark.parametrize("token", [
    "abc\r\nX-Injected: 1", "abc def", "abc\x1bdef", "abc:def", "a\"b",
    "x" * 4097, "",
])
def test_f14_bad_token_makes_no_server_call(cli, devserver, token):
    devserver.reset_counters()
    res = cli("whoami", env={"TOKENGATE_TOKEN": token})
    assert res.rc in (EXIT["INPUT"],), res
    counters = devserver.counters()
    assert sum(v for k, v in counters.items()) == 0, counters
    if len(token) > 3:
        assert token not in res.text


@pytest.mark.parametrize("secret", ["a\nb", "with space", "\b\n\r\177INCORRECT",
                                    "x" * 1025])
def test_f14_bad_secret_makes_no_server_call(cli, devserver, secret):
    devserver.reset_counters()
    res = cli("login", "--client-id", "alice-client",
              env={"TOKENGATE_SECRET": secret})
    assert res.rc == EXIT["INPUT"], res
    assert sum(devserver.counters().values()) == 0
    assert secret not in res.text


def test_errors_are_json_with_json_flag(cli, devserver):
    logged_in(cli)
    devserver.fault(endpoint="validate", status=503)
    res = cli("--json", "whoami")
    doc = json.loads(res.out)
    assert doc["ok"] is False
    assert doc["error"] == "TG_UNAVAILABLE"
    assert doc["http_status"] == 503
