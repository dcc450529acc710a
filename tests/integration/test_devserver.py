# SPDX-License-Identifier: MIT
"""tokengate-devserver itself, over plain HTTP: does it behave like the real
Insight and Looker APIs (docs/api-spec.md A, B; docs/devserver.md), and do
its fault injection, control API, TLS, IPv6 and shutdown work?

The CLI's view of the same server is in test_cli.py and test_faults.py;
here every status code, header and body byte is checked directly.  Only
127.0.0.1 and ::1 are ever contacted.  Time limits are hang guards.
"""
import calendar
import email.utils
import http.client
import json
import os
import re
import resource
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse

import pytest

from conftest import ALL_SECRETS, DEMO, Response, binary

INS = "/insightservices/rest/v1"
LK = "/api/4.0"
DOC = "https://cloud.google.com/looker/docs/r/api/support"
JSON_CT = ("Content-Type", "application/json")
FORM_CT = ("Content-Type", "application/x-www-form-urlencoded")
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")
ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

ALICE_ID = "8cf6406a-6e43-402b-95eb-c0a47f8791cc"
ALICE_PROFILE = {
    "objectType": "USER_PROFILE", "id": ALICE_ID, "firstName": "Alice",
    "lastName": "Smith", "displayName": "Alice Smith",
    "authorities": ["SYS_USER", "SYS_ADMIN"],
    "url": INS + "/auth/currentuser", "email": "alice@example.com",
    "authorityGroups": ["analysts", "admins"], "evaluationUser": False,
}
ALICE_LOOKER = {
    "id": "1", "first_name": "Alice", "last_name": "Smith",
    "display_name": "Alice Smith", "email": "alice@example.com",
    "is_disabled": False, "group_ids": ["7", "9"], "role_ids": ["2"],
    "credentials_api3": [{"client_id": "alice-client"}],
    "url": "/api/4.0/users/1", "can": {},
}


def ins_error(code, message):
    return {"error": {"code": code, "message": message}}


def lk_error(message):
    return {"message": message, "documentation_url": DOC}


def lk_validation(field, message):
    return {"message": "Validation Failed",
            "errors": [{"field": field, "code": "invalid",
                        "message": message, "documentation_url": DOC}],
            "documentation_url": DOC}


LK_401 = lk_error("Requires authentication.")
INS_401_BAD = ins_error("UNAUTHORIZED", "Invalid or expired bearer token")
INS_401_NONE = ins_error(
    "UNAUTHORIZED", "Full authentication is required to access this resource")


# ---------------------------------------------------------------- helpers


class Api:
    """A direct HTTP client for the devserver's API listener."""

    def __init__(self, url, context=None):
        u = urllib.parse.urlsplit(url)
        self.scheme, self.host, self.port = u.scheme, u.hostname, u.port
        self.context = context

    def connect(self, timeout=10):
        if self.scheme == "https":
            return http.client.HTTPSConnection(
                self.host, self.port, context=self.context, timeout=timeout)
        return http.client.HTTPConnection(self.host, self.port,
                                          timeout=timeout)

    def __call__(self, method, path, body=None, headers=(), conn=None,
                 timeout=10):
        """headers: (name, value) pairs, so a name may repeat."""
        own = conn is None
        c = self.connect(timeout) if own else conn
        try:
            c.putrequest(method, path, skip_accept_encoding=True)
            for name, value in headers:
                c.putheader(name, value)
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
            if isinstance(body, str):
                body = body.encode()
            if body is not None:
                c.putheader("Content-Length", str(len(body)))
            c.endheaders(body)
            r = c.getresponse()
            return Response.read(r)
        finally:
            if own:
                c.close()

    def insight_token(self, user="alice", max_age=None):
        body = {"clientId": DEMO[user]["client_id"],
                "secret": DEMO[user]["secret"]}
        if max_age is not None:
            body["maxAge"] = max_age
        r = self("POST", INS + "/auth/token", body, [JSON_CT])
        assert r.status == 200, r
        return r.body.decode()

    def looker_login(self, client_id, secret, version="4.0"):
        form = urllib.parse.urlencode({"client_id": client_id,
                                       "client_secret": secret})
        return self("POST", f"/api/{version}/login", form, [FORM_CT])

    def looker_token(self, user="alice", version="4.0"):
        r = self.looker_login(DEMO[user]["client_id"], DEMO[user]["secret"],
                              version)
        assert r.status == 200, r
        return r.json()["access_token"]


def bearer(token, scheme="Bearer"):
    return [("Authorization", f"{scheme} {token}")]


@pytest.fixture
def client(devserver):
    """An Api client for the default devserver (conftest's own `api`
    fixture is the flavor parameter of the CLI tests)."""
    return Api(devserver.url)


def raw_exchange(host, port, data, timeout=3):
    """Send bytes, read until EOF or timeout; returns (bytes, got_eof)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return out, True
                out += chunk
        except socket.timeout:
            return out, False


def http_get_bytes(path, token):
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\nConnection: close\r\n\r\n"
            ).encode()


def split_response(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return lines[0], headers, body


def control(srv, method, path, body=None):
    """Like Devserver._control but returns (status, parsed body) for error
    answers too."""
    u = urllib.parse.urlsplit(srv.control)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        data = body if isinstance(body, str) else (
            json.dumps(body) if body is not None else None)
        c.request(method, path, body=data,
                  headers={"Content-Type": "application/json"} if data else {})
        r = c.getresponse()
        raw = r.read()
        return r.status, (json.loads(raw) if raw else None)
    finally:
        c.close()


def server_now(srv):
    return control(srv, "GET", "/clock")[1]["now"]


def iso_to_epoch(text):
    assert ISO_RE.match(text), text
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


def wait_for(pred, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def run_devserver(*args, timeout=10):
    """Start the devserver expecting it to refuse to start."""
    return subprocess.run(
        [binary("devserver/tokengate-devserver"), "--listen", "127.0.0.1:0",
         "--control", "127.0.0.1:0", *args],
        capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL)


# Thread per connection (default) and the epoll pool.
MODES = {"default": (), "threads4": ("--threads", "4")}


# ================================================================ Insight


def test_insight_token_is_raw_text_plain_and_not_cached(client):
    r = client("POST", INS + "/auth/token",
               {"clientId": "alice-client", "secret": DEMO["alice"]["secret"]},
               [JSON_CT])
    assert r.status == 200, r
    assert r.ctype == "text/plain"
    assert r.header("Cache-Control") == "no-store"
    assert TOKEN_RE.match(r.body.decode()), r.body
    assert int(r.header("Content-Length")) == 43


def test_insight_each_token_request_gives_a_new_token(client):
    assert client.insight_token() != client.insight_token()


def test_insight_token_json_string_format(devserver_factory):
    srv = devserver_factory("--insight-token-format", "json-string")
    api = Api(srv.url)
    r = api("POST", INS + "/auth/token",
            {"clientId": "bob-client", "secret": DEMO["bob"]["secret"]},
            [JSON_CT])
    assert r.status == 200, r
    assert r.ctype == "application/json"
    assert r.header("Cache-Control") == "no-store"
    assert r.body.startswith(b'"') and r.body.endswith(b'"')
    token = r.json()
    assert TOKEN_RE.match(token)
    user = api("GET", INS + "/auth/user", headers=bearer(token))
    assert user.status == 200 and user.json()["cn"] == "bob"


@pytest.mark.parametrize("ctype", ["application/json; charset=utf-8",
                                   "Application/JSON"])
def test_insight_token_accepts_json_media_type_variants(client, ctype):
    r = client("POST", INS + "/auth/token",
               {"clientId": "alice-client", "secret": DEMO["alice"]["secret"]},
               [("Content-Type", ctype)])
    assert r.status == 200, r


def test_insight_max_age_sets_expiry_by_server_clock(devserver, client):
    token = client.insight_token(max_age=900)
    now = server_now(devserver)
    r = client("GET", INS + "/auth/user", headers=bearer(token))
    assert r.status == 200, r
    expiry = iso_to_epoch(r.json()["access_token_expiration_time"])
    assert now + 900 - 3 <= expiry <= now + 900 + 1


@pytest.mark.parametrize("max_age", [None, "null", 601, 99999,
                                     2 ** 63 - 1])
def test_insight_max_age_is_clamped(devserver_factory, max_age):
    srv = devserver_factory("--insight-max-age", "600")
    api = Api(srv.url)
    body = {"clientId": "alice-client", "secret": DEMO["alice"]["secret"]}
    if max_age == "null":
        body["maxAge"] = None
    elif max_age is not None:
        body["maxAge"] = max_age
    r = api("POST", INS + "/auth/token", body, [JSON_CT])
    assert r.status == 200, r
    token = r.body.decode()
    now = server_now(srv)
    info = api("GET", INS + "/auth/user", headers=bearer(token)).json()
    expiry = iso_to_epoch(info["access_token_expiration_time"])
    assert now + 600 - 3 <= expiry <= now + 600 + 1, info
    # and the server really enforces the clamped lifetime
    srv.advance_clock(605)
    r = api("GET", INS + "/auth/user", headers=bearer(token))
    assert r.status == 401 and r.json() == INS_401_BAD, r


def test_insight_max_age_below_limit_is_kept(devserver_factory):
    srv = devserver_factory("--insight-max-age", "600")
    api = Api(srv.url)
    token = api.insight_token(max_age=30)
    srv.advance_clock(25)
    assert api("GET", INS + "/auth/user", headers=bearer(token)).status == 200
    srv.advance_clock(10)
    assert api("GET", INS + "/auth/user", headers=bearer(token)).status == 401


@pytest.mark.parametrize("body", [
    "{bad",
    "",
    "[]",
    '"alice-client"',
    '{"clientId":"alice-client","secret":"alice-secret-DEMO-0001"} x',
    '{"clientId":"alice-client","clientId":"alice-client",'
    '"secret":"alice-secret-DEMO-0001"}',
    '{"clientId":"alice-client"}',
    '{"secret":"alice-secret-DEMO-0001"}',
    '{"clientId":1,"secret":"alice-secret-DEMO-0001"}',
    '{"clientId":"alice-client","secret":null}',
    '{"clientId":"alice-client","secret":"alice-secret-DEMO-0001","maxAge":0}',
    '{"clientId":"alice-client","secret":"alice-secret-DEMO-0001",'
    '"maxAge":-1}',
    '{"clientId":"alice-client","secret":"alice-secret-DEMO-0001",'
    '"maxAge":1.5}',
    '{"clientId":"alice-client","secret":"alice-secret-DEMO-0001",'
    '"maxAge":900.0}',
    '{"clientId":"alice-client","secret":"alice-secret-DEMO-0001",'
    '"maxAge":"900"}',
    '{"clientId":"alice-client","secret":"alice-secret-DEMO-0001",'
    '"maxAge":true}',
], ids=lambda b: b[:40] or "empty")
def test_insight_token_bad_request_is_400(client, body):
    r = client("POST", INS + "/auth/token", body, [JSON_CT])
    assert r.status == 400, r
    assert r.ctype == "application/json"
    assert r.json()["error"]["code"] == "BAD_REQUEST"
    assert "alice-secret" not in r.body.decode()


@pytest.mark.parametrize("ctype", [None, "text/plain",
                                   "application/x-www-form-urlencoded"])
def test_insight_token_without_json_content_type_is_415(client, ctype):
    headers = [("Content-Type", ctype)] if ctype else []
    r = client("POST", INS + "/auth/token",
               {"clientId": "alice-client", "secret": DEMO["alice"]["secret"]},
               headers)
    assert r.status == 415, r
    assert r.json() == ins_error("UNSUPPORTED_MEDIA_TYPE",
                                 "Content-Type must be application/json")


@pytest.mark.parametrize("client_id,secret", [
    ("alice-client", "wrong"),
    ("alice-client", DEMO["bob"]["secret"]),
    ("nobody-client", DEMO["alice"]["secret"]),
    ("", ""),
])
def test_insight_bad_credentials_are_401(client, client_id, secret):
    r = client("POST", INS + "/auth/token",
               {"clientId": client_id, "secret": secret}, [JSON_CT])
    assert r.status == 401, r
    assert r.json() == ins_error("UNAUTHORIZED", "Invalid client credentials")


def test_insight_disabled_user_is_401(client):
    r = client("POST", INS + "/auth/token",
               {"clientId": "dave-client", "secret": DEMO["dave"]["secret"]},
               [JSON_CT])
    assert r.status == 401, r
    assert r.json() == ins_error("UNAUTHORIZED", "Account is disabled")


def test_insight_auth_user_fields(client):
    token = client.insight_token()
    r = client("GET", INS + "/auth/user", headers=bearer(token))
    assert r.status == 200 and r.ctype == "application/json", r
    info = r.json()
    assert set(info) == {"uid", "mail", "cn", "access_token_expiration_time"}
    assert info["uid"] == ALICE_ID
    assert info["mail"] == "alice@example.com"
    assert info["cn"] == "alice"
    assert ISO_RE.match(info["access_token_expiration_time"])


def test_insight_currentuser_profile(client):
    r = client("GET", INS + "/auth/currentuser",
               headers=bearer(client.insight_token()))
    assert r.status == 200 and r.ctype == "application/json", r
    assert r.json() == ALICE_PROFILE


def test_insight_evaluation_user_flag(client):
    r = client("GET", INS + "/auth/currentuser",
               headers=bearer(client.insight_token("carol")))
    profile = r.json()
    assert profile["evaluationUser"] is True
    assert profile["authorities"] == ["SYS_USER"]
    assert profile["authorityGroups"] == ["analysts"]


def test_insight_credentials_lifecycle(devserver, client):
    token = client.insight_token("bob")
    auth = bearer(token)
    path = INS + "/auth/currentuser/credentials"

    shown = client("GET", path, headers=auth)
    assert shown.status == 200, shown
    info = shown.json()
    assert set(info) == {"createdDate", "credentialsId"}
    assert info["credentialsId"] == 1
    # epoch milliseconds, not seconds
    age = server_now(devserver) - info["createdDate"] / 1000
    assert -2 <= age < 86400 * 366, info

    created = client("POST", path, headers=auth)
    assert created.status == 200, created
    assert created.header("Cache-Control") == "no-store"
    new = created.json()
    assert set(new) == {"clientId", "createdDate", "credentialsId", "secret"}
    assert new["credentialsId"] == 2
    assert re.fullmatch(r"[0-9a-f]{32}", new["clientId"]), new["clientId"]
    assert TOKEN_RE.match(new["secret"])
    assert abs(new["createdDate"] / 1000 - server_now(devserver)) < 5

    # the old pair stops working at once, on both APIs
    old = {"clientId": "bob-client", "secret": DEMO["bob"]["secret"]}
    r = client("POST", INS + "/auth/token", old, [JSON_CT])
    assert r.status == 401, r
    r = client.looker_login("bob-client", DEMO["bob"]["secret"])
    assert r.status == 404, r
    mixed = {"clientId": new["clientId"], "secret": DEMO["bob"]["secret"]}
    assert client("POST", INS + "/auth/token", mixed, [JSON_CT]).status == 401
    # the new pair works on both APIs; issued tokens stay valid
    r = client("POST", INS + "/auth/token",
               {"clientId": new["clientId"], "secret": new["secret"]},
               [JSON_CT])
    assert r.status == 200, r
    assert client.looker_login(new["clientId"], new["secret"]).status == 200
    assert client("GET", INS + "/auth/user", headers=auth).status == 200
    lk = client.looker_login(new["clientId"], new["secret"]).json()
    me = client("GET", LK + "/user", headers=bearer(lk["access_token"])).json()
    assert me["credentials_api3"] == [{"client_id": new["clientId"]}]
    assert new["secret"] not in json.dumps(me)

    # ids keep increasing, and each new pair revokes the previous one
    newer = client("POST", path, headers=auth).json()
    assert newer["credentialsId"] == 3
    assert newer["clientId"] != new["clientId"]
    assert client.looker_login(new["clientId"], new["secret"]).status == 404
    assert client("GET", path, headers=auth).json()["credentialsId"] == 3
    users = {u["username"]: u for u in
             control(devserver, "GET", "/users")[1]["users"]}
    assert users["bob"]["client_id"] == newer["clientId"]
    assert users["bob"]["credentials_id"] == 3

    # revoke: 204 without a body, then 404, and the pair is dead
    gone = client("DELETE", path, headers=auth)
    assert gone.status == 204 and gone.body == b"", gone
    missing = client("GET", path, headers=auth)
    assert missing.status == 404, missing
    assert missing.json()["error"]["code"] == "NOT_FOUND"
    r = client("POST", INS + "/auth/token",
               {"clientId": newer["clientId"], "secret": newer["secret"]},
               [JSON_CT])
    assert r.status == 401, r
    again = client("DELETE", path, headers=auth)
    assert again.status == 204, again
    assert client("GET", INS + "/auth/user", headers=auth).status == 200
    users = {u["username"]: u for u in
             control(devserver, "GET", "/users")[1]["users"]}
    assert users["bob"]["client_id"] is None


@pytest.mark.parametrize("headers,expected", [
    ([], INS_401_NONE),
    ([("Authorization", "Bearer")], None),
    ([("Authorization", "Bearer ")], None),
    ([("Authorization", "Basic {t}")], None),
    ([("Authorization", "token {t}")], None),
    ([("Authorization", "Bearer {t}x")], None),
    ([("Authorization", "Bearer {t} x")], None),
    ([("Authorization", "Bearer " + "A" * 43)], INS_401_BAD),
    ([("Authorization", "Bearer {t}"), ("Authorization", "Bearer {t}")],
     None),
], ids=["missing", "scheme-only", "scheme-space", "basic", "looker-scheme",
        "suffix", "two-words", "unknown", "twice"])
def test_insight_bad_authorization_is_401(client, headers, expected):
    token = client.insight_token()
    hdrs = [(k, v.format(t=token)) for k, v in headers]
    for path in ("/auth/user", "/auth/currentuser",
                 "/auth/currentuser/credentials"):
        r = client("GET", INS + path, headers=hdrs)
        assert r.status == 401, (path, r)
        assert r.ctype == "application/json"
        body = r.json()
        assert body["error"]["code"] == "UNAUTHORIZED"
        if expected is not None:
            assert body == expected
        assert token not in r.body.decode()


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR"])
def test_insight_bearer_scheme_is_case_insensitive(client, scheme):
    r = client("GET", INS + "/auth/user",
               headers=bearer(client.insight_token(), scheme))
    assert r.status == 200, r


def test_insight_expiry_is_issued_by_the_server_clock(devserver, client):
    devserver.advance_clock(100000)
    token = client.insight_token(max_age=900)
    now = server_now(devserver)
    assert now > time.time() + 99990
    info = client("GET", INS + "/auth/user", headers=bearer(token)).json()
    expiry = iso_to_epoch(info["access_token_expiration_time"])
    assert now + 900 - 3 <= expiry <= now + 900 + 1
    # back to real time: the token is far from expired
    control(devserver, "POST", "/clock", {"offset": 0})
    r = client("GET", INS + "/auth/user", headers=bearer(token))
    assert r.status == 200, r


@pytest.mark.parametrize("flavor", ["insight", "looker"])
def test_authorization_trailing_whitespace_is_not_part_of_the_token(
        client, flavor):
    """RFC 9112 5.1 / RFC 9110 5.5: optional whitespace around a field
    value is not part of it, and a recipient MUST exclude it (the real
    servers behind Tomcat, Jetty or nginx do).  The devserver already
    excludes leading whitespace, and trailing whitespace in Content-Type."""
    if flavor == "insight":
        token, path = client.insight_token(), INS + "/auth/user"
    else:
        token, path = client.looker_token(), LK + "/user"
    for value in (f"Bearer {token}", f" Bearer {token}", f"Bearer {token} ",
                  f"Bearer {token}\t", f"Bearer {token} \t "):
        raw, _ = raw_exchange(
            "127.0.0.1", client.port,
            (f"GET {path} HTTP/1.1\r\nHost: x\r\n"
             f"Authorization: {value}\r\nConnection: close\r\n\r\n"
             ).encode())
        assert raw.startswith(b"HTTP/1.1 200 "), (value[-4:], raw[:200])


def test_insight_token_expires_by_server_clock(devserver, client):
    token = client.insight_token(max_age=60)
    devserver.advance_clock(50)
    r = client("GET", INS + "/auth/user", headers=bearer(token))
    assert r.status == 200, r
    devserver.advance_clock(20)
    for path in ("/auth/user", "/auth/currentuser"):
        r = client("GET", INS + path, headers=bearer(token))
        assert r.status == 401, r
        assert r.json() == INS_401_BAD
    assert control(devserver, "GET", "/tokens")[1] == {"live": 0}


def test_tokens_are_bound_to_their_flavor(client):
    ins = client.insight_token()
    lk = client.looker_token()
    r = client("GET", INS + "/auth/user", headers=bearer(lk))
    assert r.status == 401 and r.json() == INS_401_BAD, r
    r = client("GET", LK + "/user", headers=bearer(ins))
    assert r.status == 401 and r.json() == LK_401, r


def test_live_token_count_follows_logout(devserver, client):
    a, b = client.looker_token(), client.looker_token()
    client.insight_token()
    assert control(devserver, "GET", "/tokens")[1] == {"live": 3}
    assert client("DELETE", LK + "/logout", headers=bearer(a)).status == 204
    assert control(devserver, "GET", "/tokens")[1] == {"live": 2}
    assert client("GET", LK + "/user", headers=bearer(b)).status == 200


def test_control_can_revoke_every_token(devserver, client):
    ins, lk = client.insight_token(), client.looker_token()
    assert control(devserver, "GET", "/tokens")[1] == {"live": 2}
    assert control(devserver, "DELETE", "/tokens")[0] == 204
    assert client("GET", INS + "/auth/user", headers=bearer(ins)).status == 401
    assert client("GET", LK + "/user", headers=bearer(lk)).status == 401
    assert control(devserver, "GET", "/tokens")[1] == {"live": 0}


@pytest.mark.parametrize("method,path,allow", [
    ("GET", "/auth/token", "POST"),
    ("PUT", "/auth/token", "POST"),
    ("DELETE", "/auth/user", "GET"),
    ("POST", "/auth/user", "GET"),
    ("POST", "/auth/currentuser", "GET"),
])
def test_insight_wrong_method_is_405_with_allow(client, method, path, allow):
    r = client(method, INS + path, headers=bearer(client.insight_token()))
    assert r.status == 405, r
    assert r.header("Allow") == allow
    assert r.json() == ins_error("METHOD_NOT_ALLOWED", "Method Not Allowed")


def test_insight_credentials_allow_header_lists_methods(client):
    r = client("PUT", INS + "/auth/currentuser/credentials",
               headers=bearer(client.insight_token()))
    assert r.status == 405, r
    allowed = {m.strip() for m in r.header("Allow").split(",")}
    assert allowed == {"GET", "POST", "DELETE"}


@pytest.mark.parametrize("path", [
    "/", "/insightservices/rest/v1/auth/nope",
    "/insightservices/rest/v2/auth/token",
    "/insightservices/rest/v1/auth/user/x", "/favicon.ico",
])
def test_insight_unknown_path_is_404(client, path):
    r = client("GET", path)
    assert r.status == 404, r
    assert r.json() == ins_error("NOT_FOUND", "Not Found")


def test_request_body_over_64k_is_413(client):
    r = client("POST", INS + "/auth/token", "x" * (64 * 1024 + 1), [JSON_CT])
    assert r.status == 413, r
    assert r.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    r = client("POST", LK + "/login", "x" * (70 * 1024), [FORM_CT])
    assert r.status == 413, r


# ================================================================ Looker


@pytest.mark.parametrize("version", ["4.0", "3.1"])
def test_looker_login_returns_access_token(client, version):
    r = client.looker_login("alice-client", DEMO["alice"]["secret"], version)
    assert r.status == 200, r
    assert r.ctype == "application/json"
    assert r.header("Cache-Control") == "no-store"
    body = r.json()
    assert set(body) == {"access_token", "token_type", "expires_in",
                         "refresh_token"}
    assert TOKEN_RE.match(body["access_token"])
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["refresh_token"] is None


@pytest.mark.parametrize("scheme", ["token", "Bearer", "TOKEN", "bearer"])
def test_looker_token_and_bearer_schemes_both_work(client, scheme):
    token = client.looker_token()
    r = client("GET", LK + "/user", headers=bearer(token, scheme))
    assert r.status == 200, r
    assert r.json() == ALICE_LOOKER


def test_looker_user_fields_never_hold_a_secret(client):
    for name in ("alice", "bob", "carol"):
        r = client("GET", LK + "/user",
                   headers=bearer(client.looker_token(name)))
        assert r.status == 200, r
        user = r.json()
        assert set(user) == set(ALICE_LOOKER)
        assert user["credentials_api3"] == [
            {"client_id": DEMO[name]["client_id"]}]
        assert user["is_disabled"] is False
        text = r.body.decode()
        assert "secret" not in text
        for secret in ALL_SECRETS:
            assert secret not in text
    bob = client("GET", LK + "/user",
                 headers=bearer(client.looker_token("bob")))
    assert bob.json()["id"] == "2" and bob.json()["role_ids"] == ["3"]
    assert bob.json()["url"] == "/api/4.0/users/2"


def test_looker_login_form_is_url_decoded(client):
    form = ("client_id=alice%2Dclient&client_secret="
            + urllib.parse.quote(DEMO["alice"]["secret"], safe=""))
    r = client("POST", LK + "/login", form, [FORM_CT])
    assert r.status == 200, r
    r = client("POST", LK + "/login",
               "client_id=alice-client&client_secret=alice-secret-DEMO-0001",
               [("Content-Type",
              "application/x-www-form-urlencoded; charset=utf-8")])
    assert r.status == 200, r


@pytest.mark.parametrize("form", [
    "",
    "client_id=alice-client",
    "client_secret=alice-secret-DEMO-0001",
    "client_id=alice-client&client_id=bob-client"
    "&client_secret=alice-secret-DEMO-0001",
    "client_id=alice-client&client_secret=alice-secret-DEMO-0001"
    "&client_secret=alice-secret-DEMO-0001",
    "client_id=%zz&client_secret=alice-secret-DEMO-0001",
    "client_id=alice-client&client_secret=alice-secret-DEMO-000%1",
], ids=["empty", "no-secret", "no-id", "id-twice", "secret-twice",
        "bad-escape", "bad-escape-2"])
def test_looker_login_bad_form_is_400(client, form):
    r = client("POST", LK + "/login", form, [FORM_CT])
    assert r.status == 400, r
    body = r.json()
    assert set(body) == {"message", "documentation_url"}
    assert body["documentation_url"] == DOC
    assert "alice-secret" not in r.body.decode()


@pytest.mark.parametrize("client_id,secret", [
    ("alice-client", "nope"),
    ("alice-client", DEMO["bob"]["secret"]),
    ("nobody", DEMO["alice"]["secret"]),
    ("", ""),
])
def test_looker_login_bad_credentials_is_404(client, client_id, secret):
    r = client.looker_login(client_id, secret)
    assert r.status == 404, r
    assert r.json() == lk_error("Not found")


def test_looker_login_disabled_user_is_403(client):
    r = client.looker_login("dave-client", DEMO["dave"]["secret"])
    assert r.status == 403, r
    assert r.json() == lk_error("Account is disabled")


def test_looker_login_refuses_credentials_in_query_string(client):
    query = urllib.parse.urlencode({"client_id": "alice-client",
                                    "client_secret": DEMO["alice"]["secret"]})
    for body in ("", None):
        r = client("POST", LK + "/login?" + query, body, [FORM_CT])
        assert r.status == 400, r
        assert "access_token" not in r.body.decode()


def test_looker_each_login_is_a_new_token_and_session(client):
    t1, t2 = client.looker_token(), client.looker_token()
    assert t1 != t2
    r = client("PATCH", LK + "/session", {"workspace_id": "dev"},
               bearer(t1) + [JSON_CT])
    assert r.status == 200, r
    assert client("GET", LK + "/session", headers=bearer(t1)).json()[
        "workspace_id"] == "dev"
    assert client("GET", LK + "/session", headers=bearer(t2)).json()[
        "workspace_id"] == "production"


@pytest.mark.parametrize("headers", [
    [],
    [("Authorization", "token")],
    [("Authorization", "Basic {t}")],
    [("Authorization", "token {t}x")],
    [("Authorization", "token {t}"), ("Authorization", "token {t}")],
    [("Authorization", "token " + "B" * 43)],
], ids=["missing", "scheme-only", "basic", "suffix", "twice", "unknown"])
def test_looker_bad_authorization_is_401(client, headers):
    token = client.looker_token()
    hdrs = [(k, v.format(t=token)) for k, v in headers]
    for method, path in (("GET", "/user"), ("GET", "/session"),
                         ("DELETE", "/logout"), ("POST", "/login/2")):
        r = client(method, LK + path, headers=hdrs)
        assert r.status == 401, (path, r)
        assert r.json() == LK_401
    assert client("GET", LK + "/user", headers=bearer(token)).status == 200


def test_looker_logout_ends_only_that_token(client):
    t1, t2 = client.looker_token(), client.looker_token()
    r = client("DELETE", LK + "/logout", headers=bearer(t1, "token"))
    assert r.status == 204 and r.body == b"", r
    r = client("GET", LK + "/user", headers=bearer(t1))
    assert r.status == 401 and r.json() == LK_401, r
    r = client("DELETE", LK + "/logout", headers=bearer(t1))
    assert r.status == 401, r
    assert client("GET", LK + "/user", headers=bearer(t2)).status == 200


def test_looker_sudo_as_admin_acts_as_target(client):
    admin = client.looker_token("alice")
    r = client("POST", LK + "/login/5", headers=bearer(admin))
    assert r.status == 200, r
    body = r.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    sudo = body["access_token"]
    assert TOKEN_RE.match(sudo) and sudo != admin

    me = client("GET", LK + "/user", headers=bearer(sudo)).json()
    assert me["id"] == "5" and me["credentials_api3"] == []
    assert me["url"] == "/api/4.0/users/5"
    session = client("GET", LK + "/session", headers=bearer(sudo))
    assert session.json() == {"can": {}, "workspace_id": "production",
                              "sudo_user_id": "5"}
    # the admin's own token and session are unaffected
    assert client("GET", LK + "/user", headers=bearer(admin)).json() == \
        ALICE_LOOKER
    assert client("GET", LK + "/session", headers=bearer(admin)).json()[
        "sudo_user_id"] is None
    # logging out the sudo token ends only it
    assert client("DELETE", LK + "/logout", headers=bearer(sudo)).status == 204
    assert client("GET", LK + "/user", headers=bearer(sudo)).status == 401
    assert client("GET", LK + "/user", headers=bearer(admin)).status == 200


def test_looker_sudo_to_a_normal_user(client):
    sudo = client("POST", LK + "/login/2",
                  headers=bearer(client.looker_token())).json()["access_token"]
    me = client("GET", LK + "/user", headers=bearer(sudo)).json()
    assert me["id"] == "2" and me["email"] == "bob@example.com"
    assert me["credentials_api3"] == [{"client_id": "bob-client"}]


@pytest.mark.parametrize("caller", ["bob", "carol"])
def test_looker_sudo_by_non_admin_is_403(client, caller):
    r = client("POST", LK + "/login/1",
               headers=bearer(client.looker_token(caller)))
    assert r.status == 403, r
    assert r.json() == lk_error("Permission Denied")


def test_looker_sudo_token_cannot_sudo_again(client):
    sudo = client("POST", LK + "/login/2",
                  headers=bearer(client.looker_token())).json()["access_token"]
    r = client("POST", LK + "/login/3", headers=bearer(sudo))
    assert r.status == 403, r


@pytest.mark.parametrize("target", ["99", "0", "abc", "1x", "01"])
def test_looker_sudo_unknown_user_is_404(client, target):
    r = client("POST", LK + "/login/" + target,
               headers=bearer(client.looker_token()))
    assert r.status == 404, r
    assert r.json()["documentation_url"] == DOC


def test_looker_sudo_checks_401_then_403_then_404(client):
    r = client("POST", LK + "/login/abc")
    assert r.status == 401 and r.json() == LK_401, r
    r = client("POST", LK + "/login/abc",
               headers=bearer(client.looker_token("bob")))
    assert r.status == 403 and r.json() == lk_error("Permission Denied"), r
    r = client("POST", LK + "/login/abc",
               headers=bearer(client.looker_token()))
    assert r.status == 404, r


def test_looker_disabled_user_wrong_secret_is_plain_404(client):
    r = client.looker_login("dave-client", "wrong")
    assert r.status == 404 and r.json() == lk_error("Not found"), r


def test_looker_sudo_to_disabled_user_is_403(client):
    r = client("POST", LK + "/login/4", headers=bearer(client.looker_token()))
    assert r.status == 403, r
    assert r.json() == lk_error("Account is disabled")


def test_looker_session_get_and_patch(client):
    token = client.looker_token()
    auth = bearer(token) + [JSON_CT]
    r = client("GET", LK + "/session", headers=bearer(token))
    assert r.status == 200, r
    assert r.json() == {"can": {}, "workspace_id": "production",
                        "sudo_user_id": None}
    r = client("PATCH", LK + "/session", {"workspace_id": "dev"}, auth)
    assert r.status == 200, r
    assert r.json() == {"can": {}, "workspace_id": "dev",
                        "sudo_user_id": None}
    assert client("GET", LK + "/session", headers=bearer(token)).json()[
        "workspace_id"] == "dev"
    # can, unknown keys and an echoed sudo_user_id are ignored
    r = client("PATCH", LK + "/session",
               {"can": {"x": True}, "foo": 1, "sudo_user_id": None}, auth)
    assert r.status == 200 and r.json()["workspace_id"] == "dev", r
    r = client("PATCH", LK + "/session", {"workspace_id": "production"}, auth)
    assert r.status == 200 and r.json()["workspace_id"] == "production", r


@pytest.mark.parametrize("value", ["staging", "DEV", "", 1, None, True,
                                   ["dev"]])
def test_looker_session_bad_workspace_is_422(client, value):
    token = client.looker_token()
    r = client("PATCH", LK + "/session", {"workspace_id": value},
               bearer(token) + [JSON_CT])
    assert r.status == 422, r
    body = r.json()
    assert body == lk_validation("workspace_id",
                                 "must be one of production, dev")
    assert body["errors"][0]["field"] == "workspace_id"
    assert client("GET", LK + "/session", headers=bearer(token)).json()[
        "workspace_id"] == "production"


@pytest.mark.parametrize("value", ["2", "1", 5])
def test_looker_session_sudo_user_id_is_read_only(client, value):
    admin = client.looker_token()
    r = client("PATCH", LK + "/session", {"sudo_user_id": value},
               bearer(admin) + [JSON_CT])
    assert r.status == 422, r
    assert r.json()["errors"][0]["field"] == "sudo_user_id"
    sudo = client("POST", LK + "/login/5",
                  headers=bearer(admin)).json()["access_token"]
    r = client("PATCH", LK + "/session", {"sudo_user_id": value},
               bearer(sudo) + [JSON_CT])
    assert r.status == 422, r
    assert r.json()["errors"][0]["field"] == "sudo_user_id"
    r = client("PATCH", LK + "/session", {"sudo_user_id": "5"},
               bearer(sudo) + [JSON_CT])
    assert r.status == 200 and r.json()["sudo_user_id"] == "5", r
    assert client("GET", LK + "/session", headers=bearer(sudo)).json()[
        "sudo_user_id"] == "5"


@pytest.mark.parametrize(
    "body", ["", "{", "[]", '"dev"',
             '{"workspace_id":"dev","workspace_id":"dev"}'],
    ids=["empty", "broken", "array", "string", "dupkey"])
def test_looker_session_bad_json_is_400(client, body):
    token = client.looker_token()
    r = client("PATCH", LK + "/session", body, bearer(token) + [JSON_CT])
    assert r.status == 400, r
    assert set(r.json()) == {"message", "documentation_url"}


def test_looker_api_31_is_served_like_40(client):
    token = client.looker_token(version="3.1")
    r = client("GET", "/api/3.1/user", headers=bearer(token))
    assert r.status == 200, r
    assert r.json() == dict(ALICE_LOOKER, url="/api/3.1/users/1")
    # one token, both versions
    assert client("GET", LK + "/user", headers=bearer(token)).status == 200
    r = client("GET", "/api/3.1/session", headers=bearer(token))
    assert r.status == 200 and r.json()["workspace_id"] == "production"
    r = client("POST", "/api/3.1/login/2", headers=bearer(token))
    assert r.status == 200, r


@pytest.mark.parametrize("method,path", [
    ("POST", "/api/9.9/login"), ("GET", "/api/9.9/user"),
    ("GET", "/api/3.0/user"), ("GET", "/api/4.0/nope"),
    ("GET", "/api/4.0/users/1"), ("GET", "/api/4.0"),
    ("GET", "/api/authentication/token"),
])
def test_looker_unknown_version_or_path_is_404(client, method, path):
    token = client.looker_token()
    body = None
    headers = bearer(token)
    if path.endswith("/login"):
        body = ("client_id=alice-client&client_secret="
                + DEMO["alice"]["secret"])
        headers = [FORM_CT]
    r = client(method, path, body, headers)
    assert r.status == 404, r
    assert r.json() == lk_error("Not found")
    assert "access_token" not in r.body.decode()


@pytest.mark.parametrize("method,path,allow", [
    ("GET", "/logout", "DELETE"),
    ("GET", "/login", "POST"),
    ("POST", "/user", "GET"),
    ("GET", "/login/2", "POST"),
])
def test_looker_wrong_method_is_405_with_allow(client, method, path, allow):
    r = client(method, LK + path, headers=bearer(client.looker_token()))
    assert r.status == 405, r
    assert r.header("Allow") == allow
    assert r.json() == lk_error("Method Not Allowed")


def test_looker_session_allow_header(client):
    r = client("DELETE", LK + "/session",
               headers=bearer(client.looker_token()))
    assert r.status == 405, r
    assert {m.strip() for m in r.header("Allow").split(",")} == \
        {"GET", "PATCH"}


def test_looker_expires_in_follows_lifetime_option(devserver_factory):
    srv = devserver_factory("--looker-token-lifetime", "120")
    api = Api(srv.url)
    r = api.looker_login("alice-client", DEMO["alice"]["secret"])
    assert r.json()["expires_in"] == 120
    token = r.json()["access_token"]
    sudo = api("POST", LK + "/login/2", headers=bearer(token)).json()
    assert sudo["expires_in"] == 120
    srv.advance_clock(110)
    assert api("GET", LK + "/user", headers=bearer(token)).status == 200
    srv.advance_clock(20)
    for t in (token, sudo["access_token"]):
        r = api("GET", LK + "/user", headers=bearer(t))
        assert r.status == 401 and r.json() == LK_401, r


def test_looker_default_lifetime_is_an_hour(devserver, client):
    token = client.looker_token()
    devserver.advance_clock(3590)
    assert client("GET", LK + "/user", headers=bearer(token)).status == 200
    devserver.advance_clock(20)
    assert client("GET", LK + "/user", headers=bearer(token)).status == 401
    # going back to real time makes it valid again: the clock is the truth
    status, clock = control(devserver, "POST", "/clock", {"offset": 0})
    assert status == 200 and clock["offset"] == 0
    assert client("GET", LK + "/user", headers=bearer(token)).status == 200


# ================================================================ users file


CUSTOM_USERS = {"users": [
    {"id": "u-zed", "looker_id": "42", "username": "zed",
     "first_name": "Z\u00e9 \u0000\u001b", "last_name": "Ng",
     "email": "zed@example.test", "client_id": "zed-client",
     "client_secret": "zed-custom-secret-0042", "authorities": ["SYS_USER"],
     "authority_groups": ["ops"], "looker_group_ids": ["11"],
     "looker_role_ids": ["12"], "admin": True},
    {"id": "u-bare", "looker_id": "43", "username": "bare"},
]}


def test_users_file_custom_users(tmp_path, devserver_factory):
    path = tmp_path / "users.json"
    path.write_text(json.dumps(CUSTOM_USERS))
    srv = devserver_factory("--users", str(path))
    api = Api(srv.url)
    secret = "zed-custom-secret-0042"

    # the demo users are gone
    r = api("POST", INS + "/auth/token",
            {"clientId": "alice-client", "secret": DEMO["alice"]["secret"]},
            [JSON_CT])
    assert r.status == 401, r

    r = api("POST", INS + "/auth/token",
            {"clientId": "zed-client", "secret": secret}, [JSON_CT])
    assert r.status == 200, r
    token = r.body.decode()
    info = api("GET", INS + "/auth/user", headers=bearer(token)).json()
    assert (info["uid"], info["mail"], info["cn"]) == \
        ("u-zed", "zed@example.test", "zed")
    profile = api("GET", INS + "/auth/currentuser",
                  headers=bearer(token)).json()
    assert profile == {
        "objectType": "USER_PROFILE", "id": "u-zed",
        "firstName": "Z\u00e9 \u0000\u001b", "lastName": "Ng",
        "displayName": "Z\u00e9 \u0000\u001b Ng",
        "authorities": ["SYS_USER"], "url": INS + "/auth/currentuser",
        "email": "zed@example.test", "authorityGroups": ["ops"],
        "evaluationUser": False}

    lk = api.looker_login("zed-client", secret).json()["access_token"]
    me = api("GET", LK + "/user", headers=bearer(lk)).json()
    assert me["id"] == "42" and me["group_ids"] == ["11"]
    assert me["role_ids"] == ["12"] and me["url"] == "/api/4.0/users/42"
    assert me["credentials_api3"] == [{"client_id": "zed-client"}]
    # a user without credentials is reachable only by sudo, with defaults
    bare = api("POST", LK + "/login/43", headers=bearer(lk))
    assert bare.status == 200, bare
    me = api("GET", LK + "/user",
             headers=bearer(bare.json()["access_token"])).json()
    assert me == {"id": "43", "first_name": "", "last_name": "",
                  "display_name": "bare", "email": "", "is_disabled": False,
                  "group_ids": [], "role_ids": [], "credentials_api3": [],
                  "url": "/api/4.0/users/43", "can": {}}

    status, listing = control(srv, "GET", "/users")
    assert status == 200
    assert [u["username"] for u in listing["users"]] == ["zed", "bare"]
    assert secret not in json.dumps(listing)
    assert all("client_secret" not in u for u in listing["users"])
    srv.stop()
    assert secret not in srv.log_path.read_text(errors="replace")


BAD_USERS = [
    ('{"users":[{"id":"a","looker_id":"1","username":"u","colour":"red"}]}',
     'users[0]: unknown key "colour"'),
    ('{"users":[{"id":"a","looker_id":"1","username":"u","admin":"yes"}]}',
     'users[0]: "admin" must be true or false'),
    ('{"users":[{"id":"a","looker_id":"x1","username":"u"}]}',
     'users[0]: "looker_id" must be a string of 1 to 19 digits'),
    ('{"users":[{"id":"a","looker_id":"1","username":"u"},'
     '{"id":"a","looker_id":"2","username":"v"}]}',
     'users[1]: "id" is not unique'),
    ('{"users":[{"id":"a","looker_id":"1","username":"u"},'
     '{"id":"b","looker_id":"1","username":"v"}]}',
     'users[1]: "looker_id" is not unique'),
    ('{"users":[{"id":"a","looker_id":"1","username":"u"},'
     '{"id":"b","looker_id":"2","username":"u"}]}',
     'users[1]: "username" is not unique'),
    ('{"users":[{"id":"a","looker_id":"1","username":"u","client_id":"c",'
     '"client_secret":"s"},{"id":"b","looker_id":"2","username":"v",'
     '"client_id":"c","client_secret":"t"}]}',
     'users[1]: "client_id" is not unique'),
    ('{"users":[{"id":"a","looker_id":"1","username":"u","client_id":"c"}]}',
     '"client_id" and "client_secret" go together'),
    ('{"users":[{"id":"a","looker_id":"1","username":"u",'
     '"authorities":["x",1]}]}',
     '"authorities" must be an array of strings'),
    ('{"users":[{"id":"a","looker_id":"1","username":"u","id":"b"}]}',
     "duplicate object key"),
    ('{"users":[{"id":"a","looker_id":"1","username":"u",}]}', ":1:"),
    ('{"users":[], "x":1}', 'unknown key "x"'),
    ('{"users":[{"looker_id":"1","username":"u"}]}',
     'users[0]: required key "id" is missing'),
    ('{"users":[{"id":"","looker_id":"1","username":"u"}]}',
     '"id" must be a non-empty string'),
    ('{"users":[{"id":"a","looker_id":"12345678901234567890",'
     '"username":"u"}]}', '"looker_id" must be a string of 1 to 19 digits'),
    ('{"users":[{"id":"a","looker_id":"1","username":"u","client_id":"'
     + "c" * 128 + '","client_secret":"s"}]}',
     '"client_id" must be at most 127 bytes'),
    ('{"users":[{"id":"a","looker_id":"1","username":"u","client_id":"",'
     '"client_secret":"s"}]}', '"client_id" must be a non-empty string'),
    ('{"users":[{"id":"a","looker_id":"1","username":"u","embed":null}]}',
     '"embed" must be true or false'),
    ("[]", "the top level must be an object"),
    ('{"users":[{"id":"a","looker_id":"1","username":"u"}]} x',
     "end of file expected"),
]


@pytest.mark.parametrize("text,problem", BAD_USERS,
                         ids=[p for _, p in BAD_USERS])
def test_bad_users_file_exits_2_naming_the_problem(tmp_path, text, problem):
    path = tmp_path / "u.json"
    path.write_text(text)
    res = run_devserver("--users", str(path))
    assert res.returncode == 2, res
    assert "listening on" not in res.stdout
    assert "bad users file: " + str(path) in res.stderr, res.stderr
    assert problem in res.stderr, res.stderr


def test_users_file_limits_are_inclusive(tmp_path, devserver_factory):
    path = tmp_path / "u.json"
    path.write_text(json.dumps({"users": [
        {"id": "a", "looker_id": "9" * 19, "username": "big",
         "client_id": "c" * 127, "client_secret": "limit-secret-0001",
         "admin": True},
        {"id": "b", "looker_id": "007", "username": "bond",
         "first_name": "James"}]}))
    srv = devserver_factory("--users", str(path))
    api = Api(srv.url)
    r = api.looker_login("c" * 127, "limit-secret-0001")
    assert r.status == 200, r
    token = r.json()["access_token"]
    me = api("GET", LK + "/user", headers=bearer(token)).json()
    assert me["id"] == "9" * 19 and me["url"] == "/api/4.0/users/" + "9" * 19
    # ids are strings: "007" is not "7"
    assert api("POST", LK + "/login/7", headers=bearer(token)).status == 404
    sudo = api("POST", LK + "/login/007", headers=bearer(token))
    assert sudo.status == 200, sudo
    me = api("GET", LK + "/user",
             headers=bearer(sudo.json()["access_token"])).json()
    assert me["id"] == "007" and me["display_name"] == "James"


def test_print_demo_users_is_the_source_file():
    res = subprocess.run([binary("devserver/tokengate-devserver"),
                          "--print-demo-users"], capture_output=True,
                         timeout=10)
    assert res.returncode == 0
    with open(os.path.join(os.path.dirname(__file__), "..", "..",
                           "devserver", "demo-users.json"), "rb") as f:
        assert res.stdout == f.read()


@pytest.mark.parametrize("flag,text", [("--help", "Usage:"),
                                       ("--version", "libmicrohttpd")])
def test_help_and_version_exit_0(flag, text):
    res = subprocess.run([binary("devserver/tokengate-devserver"), flag],
                         capture_output=True, text=True, timeout=10)
    assert res.returncode == 0 and text in res.stdout, res


def test_missing_users_file_exits_2(tmp_path):
    res = run_devserver("--users", str(tmp_path / "absent.json"))
    assert res.returncode == 2, res
    assert "absent.json" in res.stderr


@pytest.mark.parametrize("args,message", [
    (["--listen", "0.0.0.0:0"], "not a loopback address"),
    (["--listen", "10.1.2.3:0"], "not a loopback address"),
    (["--control", "0.0.0.0:0", "--allow-remote"], "loopback only"),
    (["--tls-cert", "x.pem"], "go together"),
    (["--threads", "257"], "--threads"),
    (["--insight-max-age", "0"], "--insight-max-age"),
    (["--insight-token-format", "yaml"], "raw or json-string"),
    (["--bogus"], "unknown option --bogus"),
])
def test_bad_usage_exits_2(args, message):
    res = run_devserver(*args)
    assert res.returncode == 2, res
    assert message in res.stderr, res.stderr
    assert "listening on" not in res.stdout


# ================================================================ faults


def test_fault_delay_then_normal_answer(devserver, client):
    token = client.insight_token()
    devserver.fault(endpoint="validate", delay_ms=500, count=1)
    start = time.monotonic()
    r = client("GET", INS + "/auth/user", headers=bearer(token))
    assert r.status == 200 and r.json()["cn"] == "alice", r
    assert time.monotonic() - start >= 0.45
    start = time.monotonic()
    r = client("GET", INS + "/auth/user", headers=bearer(token))
    assert r.status == 200, r
    assert time.monotonic() - start < 5


def test_fault_delay_combines_with_status(devserver, client):
    devserver.fault(endpoint="other", delay_ms=300, status=503, count=1)
    start = time.monotonic()
    r = client("GET", "/elsewhere")
    assert r.status == 503, r
    assert time.monotonic() - start >= 0.25


@pytest.mark.parametrize("flavor,status,expected", [
    ("insight", 503, ins_error("SERVICE_UNAVAILABLE", "Service Unavailable")),
    ("insight", 500, ins_error("INTERNAL_SERVER_ERROR",
                               "Internal Server Error")),
    ("insight", 404, ins_error("NOT_FOUND", "Not Found")),
    ("looker", 503, lk_error("Service Unavailable")),
    ("looker", 403, lk_error("Forbidden")),
    ("looker", 422, None),
])
def test_fault_status_with_flavor_error_body(devserver, client, flavor, status,
                                             expected):
    if flavor == "insight":
        token = client.insight_token()
        path = INS + "/auth/user"
    else:
        token = client.looker_token()
        path = LK + "/user"
    devserver.fault(endpoint="validate", status=status, count=1)
    r = client("GET", path, headers=bearer(token))
    assert r.status == status, r
    assert r.ctype == "application/json"
    if expected is None:     # Looker 422: the ValidationError form
        body = r.json()
        assert body["message"] and body["documentation_url"] == DOC
        assert isinstance(body["errors"], list)
    else:
        assert r.json() == expected
    # count=1: the next one is real again
    assert client("GET", path, headers=bearer(token)).status == 200


def test_fault_status_without_body(devserver, client):
    devserver.fault(endpoint="validate", status=500, body=False, count=1)
    r = client("GET", INS + "/auth/user")
    assert r.status == 500, r
    assert r.body == b"" and r.header("Content-Length") == "0"
    assert r.ctype is None


def test_fault_body_false_alone_is_empty_200(devserver, client):
    devserver.fault(endpoint="validate", body=False, count=1)
    r = client("GET", INS + "/auth/user")
    assert r.status == 200 and r.body == b"" and r.ctype is None, r


@pytest.mark.parametrize("value", [
    "5", "Sun, 06 Nov 1994 08:49:37 GMT", "garbage", "-3", "999999", 7,
])
def test_fault_retry_after_is_sent_verbatim(devserver, client, value):
    devserver.fault(endpoint="token", retry_after=value, count=1)
    r = client.looker_login("alice-client", DEMO["alice"]["secret"])
    assert r.status == 429, r
    assert r.header("Retry-After") == str(value)
    assert r.json() == lk_error("Too Many Requests")
    r = client("POST", INS + "/auth/token", {"clientId": "x", "secret": "y"},
               [JSON_CT])
    assert r.status == 401 and r.header("Retry-After") is None, r


def test_fault_retry_after_with_status(devserver, client):
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    devserver.fault(endpoint="token", retry_after=when, status=503, count=1)
    r = client("POST", INS + "/auth/token",
               {"clientId": "alice-client", "secret": DEMO["alice"]["secret"]},
               [JSON_CT])
    assert r.status == 503, r
    assert r.header("Retry-After") == when
    assert r.json()["error"]["code"] == "SERVICE_UNAVAILABLE"


def test_fault_malformed(devserver, client):
    devserver.fault(endpoint="profile", malformed=True, count=1)
    r = client("GET", INS + "/auth/currentuser")
    assert r.status == 200, r
    assert r.ctype == "application/json"
    assert r.body == b'{"uid": "x", '


def test_fault_malformed_with_status(devserver, client):
    devserver.fault(endpoint="profile", malformed=True, status=201, count=1)
    r = client("GET", INS + "/auth/currentuser")
    assert r.status == 201 and r.body == b'{"uid": "x", ', r


@pytest.mark.parametrize("body", [
    '{"uid":"a","uid":"b"}', '{"uid":1}', '{"uid":"\\u0000"}', "[" * 5000,
    "", "a\x00b\x1b\xff", "\u00e9\u4e2d",
], ids=["dupkey", "int", "nul-escape", "deep", "empty", "ctl-bytes", "utf8"])
def test_fault_body_is_sent_verbatim(devserver, client, body):
    devserver.fault(endpoint="validate", body=body, count=1)
    r = client("GET", INS + "/auth/user")
    assert r.status == 200, r
    assert r.ctype == "application/json"
    assert r.body == body.encode()


def test_fault_body_with_status_and_content_type(devserver, client):
    devserver.fault(endpoint="validate", body="<html>down</html>", status=401,
                    content_type="text/html", count=1)
    r = client("GET", LK + "/user")
    assert r.status == 401 and r.ctype == "text/html", r
    assert r.body == b"<html>down</html>"


def test_fault_content_type_replaces_the_real_one(devserver, client):
    token = client.insight_token()
    devserver.fault(endpoint="validate", content_type="text/html", count=1)
    r = client("GET", INS + "/auth/user", headers=bearer(token))
    assert r.status == 200 and r.ctype == "text/html", r
    assert r.json()["cn"] == "alice"
    devserver.fault(endpoint="token", content_type="application/json",
                    count=1)
    r = client("POST", INS + "/auth/token",
               {"clientId": "alice-client", "secret": DEMO["alice"]["secret"]},
               [JSON_CT])
    assert r.status == 200 and r.ctype == "application/json", r
    assert TOKEN_RE.match(r.body.decode())


def test_fault_truncate_sends_half_and_closes(devserver, client):
    token = client.insight_token()
    full = client("GET", INS + "/auth/user", headers=bearer(token)).body
    devserver.fault(endpoint="validate", truncate=True, count=1)
    raw, eof = raw_exchange("127.0.0.1", client.port,
                            http_get_bytes(INS + "/auth/user", token))
    assert eof, raw
    status, headers, body = split_response(raw)
    assert status == "HTTP/1.1 200 OK"
    assert int(headers["content-length"]) == len(full)
    assert len(body) == len(full) // 2
    assert full.startswith(body)
    # http.client sees an incomplete read
    devserver.fault(endpoint="validate", truncate=True, count=1)
    with pytest.raises(http.client.IncompleteRead):
        client("GET", INS + "/auth/user", headers=bearer(token))


def test_fault_truncate_of_an_error_uses_a_canned_body(devserver, client):
    devserver.fault(endpoint="other", truncate=True, count=1)
    raw, eof = raw_exchange("127.0.0.1", client.port,
                            b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
    assert eof
    status, headers, body = split_response(raw)
    assert status == "HTTP/1.1 200 OK"
    assert 0 < len(body) < int(headers["content-length"])


@pytest.mark.parametrize("size", [20, 100, 1 << 20])
def test_fault_oversize_has_exact_length(devserver, client, size):
    devserver.fault(endpoint="validate", oversize=size, count=1)
    r = client("GET", INS + "/auth/user")
    assert r.status == 200, r
    assert r.header("Content-Length") == str(size)
    assert r.header("Transfer-Encoding") is None
    assert len(r.body) == size
    body = r.json()
    assert body["uid"] == "x" and set(body["pad"]) <= {"a"}


def test_fault_oversize_chunked_has_no_length(devserver, client):
    size = 2_000_000
    devserver.fault(endpoint="validate", oversize_chunked=size, count=1)
    r = client("GET", INS + "/auth/user")
    assert r.status == 200, r
    assert r.header("Transfer-Encoding") == "chunked"
    assert r.header("Content-Length") is None
    assert len(r.body) == size and r.json()["uid"] == "x"


def test_fault_oversize_with_status(devserver, client):
    devserver.fault(endpoint="validate", oversize=64, status=500, count=1)
    r = client("GET", INS + "/auth/user")
    assert r.status == 500 and len(r.body) == 64, r


@pytest.mark.parametrize("location,status", [
    ("http://127.0.0.1:1/steal", None), ("file:///etc/passwd", 307),
    ("/insightservices/rest/v1/auth/user", 301), ("x y", 308),
])
def test_fault_redirect_location_verbatim(devserver, client, location, status):
    rule = {"endpoint": "validate", "redirect": location, "count": 1}
    if status:
        rule["status"] = status
    devserver.fault(**rule)
    r = client("GET", INS + "/auth/user")
    assert r.status == (status or 302), r
    assert r.header("Location") == location
    assert r.body == b""


def test_fault_close_sends_nothing(devserver, client):
    token = client.insight_token()
    devserver.fault(endpoint="validate", close=True, count=1)
    raw, eof = raw_exchange("127.0.0.1", client.port,
                            http_get_bytes(INS + "/auth/user", token))
    assert eof and raw == b""
    devserver.fault(endpoint="validate", close=True, count=1)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        client("GET", INS + "/auth/user", headers=bearer(token))
    r = client("GET", INS + "/auth/user", headers=bearer(token))
    assert r.status == 200, r


def test_fault_hang_never_answers_and_others_proceed(devserver, client):
    token = client.insight_token()
    rule = devserver.fault(endpoint="validate", hang=True, count=1)
    with socket.create_connection(("127.0.0.1", client.port)) as s:
        s.settimeout(1.0)
        s.sendall(http_get_bytes(INS + "/auth/user", token))
        with pytest.raises(socket.timeout):
            s.recv(1)
        # meanwhile another connection is served at once
        r = client("GET", INS + "/auth/user", headers=bearer(token), timeout=5)
        assert r.status == 200, r
    # thread-per-connection: the hung request ends when the client hangs up
    wait_for(lambda: re.search(
        r"GET /insightservices/rest/v1/auth/user - [0-9.]+ms fault=%d "
        r"\(closed\)" % rule["id"],
        devserver.log_path.read_text(errors="replace")),
             what="the hung request to be logged as closed")


@pytest.mark.parametrize("raw", [
    "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello",
    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
    "\r\n{}",
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Big: " + "a" * 20000
    + "\r\n\r\n{}",
    "garbage\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"uid\"",
], ids=["204-body", "1xx", "huge-header", "garbage", "short"])
def test_fault_raw_is_written_verbatim(devserver, client, raw):
    devserver.fault(endpoint="logout", raw=raw, count=1)
    got, eof = raw_exchange(
        "127.0.0.1", client.port,
        b"DELETE /api/4.0/logout HTTP/1.1\r\nHost: x\r\n\r\n")
    assert eof and got == raw.encode()


@pytest.mark.parametrize("flavor", ["insight", "looker"])
def test_fault_count_applies_n_times_then_stops(devserver, client, flavor):
    if flavor == "insight":
        path, auth = INS + "/auth/user", bearer(client.insight_token())
    else:
        path, auth = LK + "/user", bearer(client.looker_token())
    rule = devserver.fault(endpoint="validate", status=503, count=3)
    assert rule["remaining"] == 3 and rule["count"] == 3
    for left in (2, 1):
        assert client("GET", path, headers=auth).status == 503
        listed = control(devserver, "GET", "/faults")[1]["faults"]
        assert [(f["id"], f["remaining"]) for f in listed] == \
            [(rule["id"], left)]
    assert client("GET", path, headers=auth).status == 503
    assert control(devserver, "GET", "/faults")[1] == {"faults": []}
    for _ in range(3):
        assert client("GET", path, headers=auth).status == 200


def test_fault_count_zero_lasts_until_cleared(devserver, client):
    rule = devserver.fault(endpoint="other", status=418)
    assert rule["remaining"] is None
    for _ in range(5):
        assert client("GET", "/x").status == 418
    assert devserver.clear_faults() is None
    assert client("GET", "/x").status == 404


def test_fault_first_matching_rule_wins(devserver, client):
    devserver.fault(endpoint="validate", status=503, count=1)
    devserver.fault(status=418, count=2)
    assert client("GET", LK + "/user").status == 503
    assert client("GET", LK + "/user").status == 418
    assert client("GET", LK + "/session").status == 418
    assert client("GET", LK + "/user").status == 401
    assert control(devserver, "GET", "/faults")[1] == {"faults": []}


# One unauthenticated request per endpoint class; none changes any state.
ENDPOINT_PROBES = [
    ("token", "POST", INS + "/auth/token"),
    ("token", "POST", LK + "/login"),
    ("token", "GET", INS + "/auth/token"),      # by path, whatever the method
    ("validate", "GET", INS + "/auth/user"),
    ("validate", "GET", LK + "/user"),
    ("validate", "GET", "/api/3.1/user"),
    ("profile", "GET", INS + "/auth/currentuser"),
    ("credentials", "GET", INS + "/auth/currentuser/credentials"),
    ("credentials", "DELETE", INS + "/auth/currentuser/credentials"),
    ("logout", "DELETE", LK + "/logout"),
    ("sudo", "POST", LK + "/login/5"),
    ("sudo", "POST", "/api/3.1/login/abc"),
    ("session", "GET", LK + "/session"),
    ("session", "PATCH", LK + "/session"),
    ("other", "GET", "/"),
    ("other", "GET", LK + "/nope"),
    ("other", "GET", "/api/9.9/user"),
]


@pytest.mark.parametrize("endpoint", ["token", "validate", "profile",
                                      "credentials", "logout", "sudo",
                                      "session", "other", "*"])
def test_fault_endpoint_scoping(devserver, client, endpoint):
    devserver.fault(endpoint=endpoint, status=418)
    devserver.reset_counters()
    for kind, method, path in ENDPOINT_PROBES:
        r = client(method, path)
        hit = endpoint in ("*", kind)
        assert (r.status == 418) == hit, (endpoint, method, path, r)
    counts = devserver.counters()
    for kind in {k for k, _, _ in ENDPOINT_PROBES}:
        assert counts[kind] == sum(1 for k, _, _ in ENDPOINT_PROBES
                                   if k == kind), counts


def test_startup_fault_specs(devserver_factory):
    srv = devserver_factory(
        "--fault", "endpoint=validate,status=503,count=2",
        "--fault",
        r"endpoint=token,retry_after=Sun\, 06 Nov 1994 08:49:37 GMT",
        "--fault", r"endpoint=logout,raw=HTTP/1.1 204 No Content\r\n"
                   r"Content-Length: 5\r\n\r\nhello",
        "--fault", "endpoint=other,body=false,status=503,close=no,count=1",
        "--fault", r"endpoint=other,body=a\x00b\tc\\d\,e,count=1")
    api = Api(srv.url)
    listed = control(srv, "GET", "/faults")[1]["faults"]
    assert [f["id"] for f in listed] == [1, 2, 3, 4, 5]
    assert listed[0] == {"endpoint": "validate", "status": 503, "count": 2,
                         "id": 1, "remaining": 2}
    assert listed[1]["retry_after"] == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert listed[1]["remaining"] is None
    assert listed[2]["raw"] == \
        "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello"
    assert listed[3]["body"] is False and listed[3]["close"] is False
    assert listed[4]["body"] == "a\x00b\tc\\d,e"

    assert api("GET", INS + "/auth/user").status == 503
    assert api("GET", LK + "/user").status == 503
    assert api("GET", LK + "/user").status == 401
    r = api.looker_login("alice-client", DEMO["alice"]["secret"])
    assert r.status == 429, r
    assert r.header("Retry-After") == "Sun, 06 Nov 1994 08:49:37 GMT"
    got, eof = raw_exchange("127.0.0.1", api.port,
                            b"DELETE /api/4.0/logout HTTP/1.1\r\n\r\n")
    assert got == b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello"
    r = api("GET", "/x")
    assert r.status == 503 and r.body == b"", r
    r = api("GET", "/x")
    assert r.status == 200 and r.body == b"a\x00b\tc\\d,e", r


@pytest.mark.parametrize("spec,message", [
    ("colour=red", 'unknown key "colour"'),
    ("status=abc", '"status" must be an integer from 100 to 599'),
    ("endpoint=nope", '"endpoint" must be one of'),
    ("oversize=10", '"oversize" must be an integer from 20'),
    (r"body=a\q", "bad backslash escape"),
    ("hang=maybe", '"hang"'),
])
def test_bad_startup_fault_exits_2(spec, message):
    res = run_devserver("--fault", spec)
    assert res.returncode == 2, res
    assert "--fault" in res.stderr and message in res.stderr, res.stderr


@pytest.mark.parametrize("rule,key", [
    ({"endpoint": "validate", "x": 1}, '"x"'),
    ({"id": 5}, '"id"'),
    ({"status": "503"}, '"status"'),
    ({"status": 99}, '"status"'),
    ({"status": 600}, '"status"'),
    ({"count": -1}, '"count"'),
    ({"delay_ms": 3600001}, '"delay_ms"'),
    ({"endpoint": "nope"}, '"endpoint"'),
    ({"hang": 1}, '"hang"'),
    ({"body": True}, '"body"'),
    ({"retry_after": "a\r\nX-Injected: y"}, '"retry_after"'),
    ({"retry_after": "\u00e9"}, '"retry_after"'),
    ({"retry_after": "a" * 4097}, '"retry_after"'),
    ({"oversize": 19}, '"oversize"'),
    ({"oversize_chunked": 2 ** 40 + 1}, '"oversize_chunked"'),
    ({"redirect": 1}, '"redirect"'),
    ({"redirect": "http://x/\r\nX-Injected: 1"}, '"redirect"'),
    ({"content_type": "text/html\r\nX-Injected: 1"}, '"content_type"'),
], ids=lambda v: v if isinstance(v, str) else None)
def test_control_rejects_bad_rules_naming_the_key(devserver, rule, key):
    status, body = control(devserver, "POST", "/faults", rule)
    assert status == 400, body
    assert key in body["error"], body
    assert control(devserver, "GET", "/faults")[1] == {"faults": []}


@pytest.mark.parametrize("text", ["[]", "{", "", '"x"', "null"])
def test_control_rejects_non_object_rules(devserver, text):
    status, body = control(devserver, "POST", "/faults", text)
    assert status == 400 and body["error"], body


def test_control_faults_list_and_clear(devserver):
    a = devserver.fault(endpoint="validate", status=503, count=2)
    b = devserver.fault(retry_after=7, status=503)
    assert a == {"endpoint": "validate", "status": 503, "count": 2,
                 "id": a["id"], "remaining": 2}
    assert b == {"retry_after": 7, "status": 503, "id": b["id"],
                 "remaining": None}
    assert b["id"] > a["id"]
    status, listed = control(devserver, "GET", "/faults")
    assert status == 200 and listed == {"faults": [a, b]}
    status, body = control(devserver, "DELETE", "/faults")
    assert status == 204 and body is None
    assert control(devserver, "GET", "/faults")[1] == {"faults": []}


def test_control_misc_endpoints(devserver):
    assert control(devserver, "GET", "/health") == (200, {"status": "ok"})
    status, clock = control(devserver, "GET", "/clock")
    assert status == 200 and clock["offset"] == 0
    assert abs(clock["now"] - time.time()) < 5
    status, clock = control(devserver, "POST", "/clock", {"advance": 100})
    assert status == 200 and clock["offset"] == 100
    assert control(devserver, "POST", "/clock", {"advance": 5})[1]["offset"] \
        == 105
    assert control(devserver, "POST", "/clock", {"advance": -1})[0] == 400
    assert control(devserver, "POST", "/clock", {"advanc": 1})[0] == 400
    assert control(devserver, "POST", "/clock", {"advance": 1.5})[0] == 400
    status, body = control(devserver, "PUT", "/counters")
    assert status == 405 and body["error"], body
    status, body = control(devserver, "GET", "/nope")
    assert status == 404 and body["error"], body
    status, users = control(devserver, "GET", "/users")
    assert status == 200
    assert [u["username"] for u in users["users"]] == \
        ["alice", "bob", "carol", "dave", "embed-user-1"]
    text = json.dumps(users)
    assert "secret" not in text
    for secret in ALL_SECRETS:
        assert secret not in text
    assert control(devserver, "POST", "/faults", "x" * (70 * 1024))[0] == 413


# ================================================================ counters


def test_counters_per_endpoint(devserver, client):
    token = client.looker_token()
    itoken = client.insight_token()
    devserver.reset_counters()
    assert devserver.counters() == dict.fromkeys(
        ["token", "validate", "profile", "credentials", "logout", "sudo",
         "session", "other", "embed_login", "embed_rejected",
         "embed_page", "embed_sso_url", "connections"], 0)
    client.insight_token()
    client.looker_token()
    client.looker_login("alice-client", "wrong")
    for _ in range(3):
        client("GET", LK + "/user", headers=bearer(token))
    client("GET", INS + "/auth/currentuser", headers=bearer(itoken))
    client("GET", INS + "/auth/currentuser/credentials",
           headers=bearer(itoken))
    client("GET", INS + "/auth/currentuser/credentials")
    sudo = client("POST", LK + "/login/2", headers=bearer(token))
    client("GET", LK + "/session", headers=bearer(token))
    client("DELETE", LK + "/logout",
           headers=bearer(sudo.json()["access_token"]))
    client("GET", "/favicon.ico")
    devserver.fault(endpoint="validate", status=503, count=1)
    client("GET", INS + "/auth/user")          # faulted requests count too
    assert devserver.counters() == {
        "token": 3, "validate": 4, "profile": 1, "credentials": 2,
        "logout": 1, "sudo": 1, "session": 1, "other": 1,
        "embed_login": 0, "embed_rejected": 0, "embed_page": 0,
        "embed_sso_url": 0, "connections": 14}


def test_counters_prove_keep_alive(devserver, client):
    token = client.looker_token()
    devserver.reset_counters()
    conn = client.connect()
    try:
        for _ in range(2):
            r = client("GET", LK + "/user", headers=bearer(token), conn=conn)
            assert r.status == 200, r
        r = client("GET", LK + "/session", headers=bearer(token), conn=conn)
        assert r.status == 200
    finally:
        conn.close()
    counts = devserver.counters()
    assert counts["connections"] == 1, counts
    assert counts["validate"] == 2 and counts["session"] == 1, counts


def test_counters_reset(devserver, client):
    client("GET", "/")
    assert devserver.counters()["other"] == 1
    assert devserver.reset_counters() is None
    assert sum(devserver.counters().values()) == 0


def test_fault_already_matched_finishes_after_clear(devserver, client):
    devserver.fault(endpoint="validate", delay_ms=500, status=503, count=1)
    result = {}

    def slow():
        result["r"] = client("GET", LK + "/user")

    t = threading.Thread(target=slow)
    t.start()
    wait_for(lambda: devserver.counters()["validate"] == 1,
             what="the delayed request to arrive")
    devserver.clear_faults()
    t.join(10)
    assert result["r"].status == 503, result
    assert client("GET", LK + "/user").status == 401


def test_fault_oversize_chunked_on_http10_is_close_delimited(devserver,
                                                             client):
    devserver.fault(endpoint="validate", oversize_chunked=5000, count=1)
    raw, eof = raw_exchange("127.0.0.1", client.port,
                            b"GET /api/4.0/user HTTP/1.0\r\n\r\n")
    assert eof
    status, headers, body = split_response(raw)
    assert status.startswith("HTTP/1.") and " 200 " in status, status
    assert "transfer-encoding" not in headers and \
        "content-length" not in headers, headers
    assert len(body) == 5000 and json.loads(body)["uid"] == "x"


@pytest.mark.parametrize("mode", ["default", "threads4"])
def test_keep_alive_survives_faults(devserver_factory, mode):
    """One connection through a delay, error statuses and fault bodies: each
    answer is complete and the connection is reused throughout."""
    srv = devserver_factory(*MODES[mode])
    api = Api(srv.url)
    token = api.looker_token()
    srv.reset_counters()
    conn = api.connect()
    try:
        steps = [
            ({}, 200),
            ({"delay_ms": 200}, 200),
            ({"status": 503}, 503),
            ({"delay_ms": 100, "retry_after": "3"}, 429),
            ({"body": '{"id":"x"}'}, 200),
            ({"status": 500, "body": False}, 500),
            ({"oversize": 100000}, 200),
            ({"oversize_chunked": 100000}, 200),
            ({"redirect": "http://127.0.0.1:1/"}, 302),
            ({"content_type": "text/plain"}, 200),
            ({}, 200),
        ]
        for rule, status in steps:
            if rule:
                srv.fault(endpoint="validate", count=1, **rule)
            r = api("GET", LK + "/user", headers=bearer(token), conn=conn)
            assert r.status == status, (rule, r)
    finally:
        conn.close()
    counts = srv.counters()
    assert counts["validate"] == len(steps)
    assert counts["connections"] == 1, counts


@pytest.mark.parametrize("mode", ["default", "threads4"])
def test_fault_count_is_exact_under_concurrency(devserver_factory, mode):
    srv = devserver_factory(*MODES[mode])
    api = Api(srv.url)
    token = api.insight_token()
    srv.fault(endpoint="validate", status=503, count=7)
    n = 24
    barrier = threading.Barrier(n)
    results = []

    def one():
        barrier.wait()
        results.append(api("GET", INS + "/auth/user",
                           headers=bearer(token)).status)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [200] * (n - 7) + [503] * 7, results
    assert control(srv, "GET", "/faults")[1] == {"faults": []}


# ================================================================ concurrency


@pytest.mark.parametrize("mode", sorted(MODES))
def test_delays_do_not_block_other_connections(devserver_factory, mode):
    srv = devserver_factory(*MODES[mode])
    api = Api(srv.url)
    token = api.looker_token()
    srv.fault(endpoint="validate", delay_ms=1000)
    n = 20
    barrier = threading.Barrier(n)
    results = []

    def one():
        barrier.wait()
        try:
            results.append(api("GET", LK + "/user", headers=bearer(token),
                               timeout=30).status)
        except Exception as exc:  # noqa: BLE001 - reported below
            results.append(repr(exc))

    start = time.monotonic()
    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    elapsed = time.monotonic() - start
    assert results == [200] * n, results
    assert elapsed < 10, f"{n} concurrent 1 s delays took {elapsed:.1f} s"
    counts = srv.counters()
    assert counts["validate"] == n and counts["connections"] == n + 1


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("kind", ["hang", "delay"])
def test_stalled_requests_hold_no_thread(devserver_factory, mode, kind):
    """More stalled requests than pool threads: a fresh request is still
    answered (it would wait 30-60 s if the stalls held threads)."""
    srv = devserver_factory(*MODES[mode])
    api = Api(srv.url)
    token = api.insight_token()
    n = 8
    rule = {"hang": True} if kind == "hang" else {"delay_ms": 30000}
    srv.fault(endpoint="validate", count=n, **rule)
    srv.reset_counters()
    socks = []
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", api.port))
            s.sendall(http_get_bytes(INS + "/auth/user", token))
            socks.append(s)
        wait_for(lambda: srv.counters()["validate"] == n,
                 what="stalled requests to arrive")
        r = api("GET", INS + "/auth/user", headers=bearer(token), timeout=5)
        assert r.status == 200, r
        r = api("GET", INS + "/auth/currentuser", headers=bearer(token),
                timeout=5)
        assert r.json() == ALICE_PROFILE
    finally:
        for s in socks:
            s.close()


@pytest.mark.parametrize("mode", sorted(MODES))
def test_concurrent_logins_give_distinct_working_tokens(devserver_factory,
                                                        mode):
    srv = devserver_factory(*MODES[mode])
    api = Api(srv.url)
    tokens = []
    lock = threading.Lock()

    def worker(user):
        for _ in range(10):
            t = api.looker_token(user) if user != "carol" else \
                api.insight_token(user)
            with lock:
                tokens.append((user, t))

    threads = [threading.Thread(target=worker, args=(u,))
               for u in ("alice", "bob", "carol") * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(tokens) == 90 and len({t for _, t in tokens}) == 90
    for user, t in tokens[::7]:
        path = INS + "/auth/user" if user == "carol" else LK + "/user"
        r = api("GET", path, headers=bearer(t))
        assert r.status == 200, r
        assert user in r.body.decode()
    assert control(srv, "GET", "/tokens")[1] == {"live": 90}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_many_simultaneous_connections(devserver_factory, mode):
    """More connections than FD_SETSIZE (1024): none may be refused or
    left unanswered."""
    n = 1100
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 100:
        if hard != resource.RLIM_INFINITY and hard < n + 100:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is too low")
        resource.setrlimit(resource.RLIMIT_NOFILE, (n + 100, hard))
    srv = devserver_factory(*MODES[mode])
    port = Api(srv.url).port
    socks = []
    try:
        for _ in range(n):
            socks.append(socket.create_connection(("127.0.0.1", port),
                                                  timeout=10))
        for s in socks:
            s.sendall(b"GET /api/4.0/user HTTP/1.1\r\nHost: x\r\n\r\n")
        for s in socks:
            assert s.recv(4096).startswith(b"HTTP/1.1 401 "), "no answer"
    finally:
        for s in socks:
            s.close()
    counts = srv.counters()
    assert counts["connections"] == n and counts["validate"] == n


GARBAGE = [
    b"GET /api/4.0/user HTTP/1.1\r\nHost: x\r\nAuthorization: token "
    b"\x00abc\r\n\r\n",
    b"GET /api/4.0/us%00er HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /api/4.0/login/%2F%2F HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /api/4.0/login HTTP/1.1\r\nHost: x\r\nContent-Type: "
    b"application/x-www-form-urlencoded\r\nContent-Length: 7\r\n\r\n&&&=%=&",
    b"POST /api/4.0/login HTTP/1.1\r\nHost: x\r\nContent-Type: "
    b"application/x-www-form-urlencoded\r\nContent-Length: 40\r\n\r\n"
    b"client_id=%00%&client_secret=%4\x00\xff\xfe12345",
    b"POST /insightservices/rest/v1/auth/token HTTP/1.1\r\nHost: x\r\n"
    b"Content-Type: application/json\r\nContent-Length: 30\r\n\r\n"
    b'{"clientId":"\\u0000","secret"',
    b"PATCH /api/4.0/session HTTP/1.1\r\nHost: x\r\nAuthorization: token x"
    b"\r\nContent-Length: 5\r\n\r\n[[[[[",
    b"BREW /insightservices/rest/v1/auth/user HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 100000 + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n"
    + b"".join(b"X-%d: y\r\n" % i for i in range(3000)) + b"\r\n",
    b"POST /insightservices/rest/v1/auth/token HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: -5\r\n\r\n",
    b"POST /insightservices/rest/v1/auth/token HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: 1000000000000\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(50),
    b"GET /api/4.0/user HTTP/1.1\r\nHost: x\r\nAuthorization: token "
    + b"A" * 5000 + b"\r\n\r\n",
    b"GET /api/4.0/user HTTP/1.1\r\nHost: x\r\nAuthorization: token ===="
    b"\r\n\r\n",
    b"\r\n\r\n\r\n",
    b"GET\r\n\r\n",
]


def test_garbage_requests_leave_the_server_healthy(devserver, client):
    for data in GARBAGE:
        with socket.create_connection(("127.0.0.1", client.port)) as s:
            s.settimeout(0.5)
            try:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
                while s.recv(65536):
                    pass
            except OSError:
                pass
    cport = urllib.parse.urlsplit(devserver.control).port
    for data in (b"POST /faults HTTP/1.1\r\nHost: x\r\nContent-Length: "
                 b"1000000000000\r\n\r\n", b"\x00" * 64, GARBAGE[9]):
        raw_exchange("127.0.0.1", cport, data, timeout=0.5)
    assert control(devserver, "GET", "/health") == (200, {"status": "ok"})
    assert control(devserver, "GET", "/faults")[1] == {"faults": []}
    token = client.insight_token()
    r = client("GET", INS + "/auth/user", headers=bearer(token))
    assert r.status == 200 and r.json()["cn"] == "alice"


# ================================================================ TLS


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "key.pem",
         "-out", "cert.pem", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        cwd=d, check=True, capture_output=True, timeout=60)
    return d / "cert.pem", d / "key.pem"


@pytest.mark.parametrize("mode", sorted(MODES))
def test_tls_serves_https(devserver_factory, self_signed, mode):
    cert, key = self_signed
    srv = devserver_factory("--tls-cert", str(cert), "--tls-key", str(key),
                            *MODES[mode])
    assert re.fullmatch(r"https://127\.0\.0\.1:\d+", srv.url), srv.url
    assert srv.control.startswith("http://127.0.0.1:"), srv.control
    ctx = ssl.create_default_context(cafile=str(cert))
    api = Api(srv.url, context=ctx)
    token = api.insight_token()
    r = api("GET", INS + "/auth/user", headers=bearer(token))
    assert r.status == 200 and r.json()["cn"] == "alice", r
    lk = api.looker_token("bob")
    assert api("GET", LK + "/user", headers=bearer(lk)).json()["id"] == "2"
    # faults work over TLS too, except raw
    srv.fault(endpoint="validate", status=503, count=1)
    assert api("GET", LK + "/user", headers=bearer(lk)).status == 503
    status, body = control(srv, "POST", "/faults", {"raw": "x"})
    assert status == 400 and '"raw"' in body["error"], body
    # plain HTTP on the TLS port gets no HTTP answer
    raw, _ = raw_exchange("127.0.0.1", api.port,
                          b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=3)
    assert not raw.startswith(b"HTTP/"), raw


def test_tls_unreadable_files_exit_2(tmp_path):
    res = run_devserver("--tls-cert", str(tmp_path / "no.pem"),
                        "--tls-key", str(tmp_path / "no.key"))
    assert res.returncode == 2, res
    assert "no.pem" in res.stderr


# ================================================================ shutdown


@pytest.mark.parametrize("mode", sorted(MODES))
def test_sigterm_with_hung_and_delayed_requests_exits_0_quickly(
        devserver_factory, mode):
    srv = devserver_factory(*MODES[mode])
    api = Api(srv.url)
    token = api.insight_token()
    srv.fault(endpoint="validate", hang=True)
    srv.fault(endpoint="profile", delay_ms=60000)
    srv.reset_counters()
    socks = []
    try:
        for path in ("/auth/user", "/auth/currentuser"):
            for _ in range(10):
                s = socket.create_connection(("127.0.0.1", api.port))
                s.sendall(http_get_bytes(INS + path, token))
                socks.append(s)
        wait_for(lambda: srv.counters()["validate"] == 10
                 and srv.counters()["profile"] == 10,
                 what="stalled requests to arrive")
        start = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        rc = srv.proc.wait(timeout=10)
        elapsed = time.monotonic() - start
        assert rc == 0
        assert elapsed < 5, f"stopping took {elapsed:.1f} s"
        for s in socks:          # closed without an answer
            s.settimeout(5)
            assert s.recv(100) == b""
    finally:
        for s in socks:
            s.close()
    assert "SIGTERM received, stopping" in srv.log_path.read_text()


def test_sigint_exits_0(devserver):
    devserver.proc.send_signal(signal.SIGINT)
    assert devserver.proc.wait(timeout=10) == 0


# ================================================================ secrets


def test_log_never_contains_tokens_or_secrets(devserver):
    api = Api(devserver.url)
    seen = list(ALL_SECRETS)
    ins = api.insight_token("carol")
    seen.append(ins)
    api("GET", INS + "/auth/user", headers=bearer(ins))
    api("GET", INS + "/auth/currentuser", headers=bearer(ins))
    new = api("POST", INS + "/auth/currentuser/credentials",
              headers=bearer(ins)).json()
    seen.append(new["secret"])
    relog = api.looker_login(new["clientId"], new["secret"]).json()
    seen.append(relog["access_token"])
    admin = api.looker_token("alice")
    seen.append(admin)
    sudo = api("POST", LK + "/login/2", headers=bearer(admin)).json()
    seen.append(sudo["access_token"])
    api("PATCH", LK + "/session", {"workspace_id": "dev"},
        bearer(admin) + [JSON_CT])
    api("DELETE", LK + "/logout", headers=bearer(sudo["access_token"]))
    # secrets and tokens in places a careless logger would print
    query = urllib.parse.urlencode({"client_id": "bob-client",
                                    "client_secret": DEMO["bob"]["secret"],
                                    "access_token": admin})
    assert api("POST", LK + "/login?" + query, "", [FORM_CT]).status == 400
    assert api("GET", LK + "/user?access_token=" + admin).status == 401
    api.looker_login("bob-client", DEMO["bob"]["secret"] + "x")
    api("POST", INS + "/auth/token",
        {"clientId": "alice-client", "secret": DEMO["alice"]["secret"] + "y"},
        [JSON_CT])
    api("GET", INS + "/auth/user", headers=bearer(admin + "z"))
    devserver.fault(endpoint="validate", delay_ms=10, status=503, count=1)
    api("GET", LK + "/user", headers=bearer(admin))
    devserver.fault(endpoint="*", close=True, count=1)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        api("GET", INS + "/auth/currentuser", headers=bearer(ins))

    assert devserver.stop() == 0
    log = devserver.log_path.read_text(errors="replace")
    # the log is not empty: the check below is not vacuous
    for line in ("POST /insightservices/rest/v1/auth/token 200",
                 "POST /api/4.0/login 400", "GET /api/4.0/user 401",
                 "GET /api/4.0/user 503", "POST /api/4.0/login/2 200",
                 "DELETE /api/4.0/logout 204"):
        assert "tokengate-devserver: " + line in log, (line, log)
    for value in seen + ["access_token="]:
        assert value not in log, f"log holds {value[:12]}..."
    for value in seen:
        assert value[:20] not in log


def test_log_marks_control_and_replaces_unprintable_path_bytes(devserver):
    api = Api(devserver.url)
    raw, _ = raw_exchange("127.0.0.1", api.port,
                          b"GET /a%01b\x7fc%1bd HTTP/1.1\r\nHost: x\r\n"
                          b"Connection: close\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 404"), raw
    devserver.counters()
    devserver.stop()
    log = devserver.log_path.read_text(errors="replace")
    assert "tokengate-devserver: control GET /counters 200" in log
    assert "tokengate-devserver: GET /a?b?c?d 404" in log, log
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", log)


def test_quiet_mode_logs_no_requests(devserver_factory):
    srv = devserver_factory("-q")
    api = Api(srv.url)
    api.insight_token()
    srv.counters()
    srv.stop()
    assert "/auth/token" not in srv.log_path.read_text()


# ================================================================ IPv6


def have_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_ipv6_listen(devserver_factory):
    if not have_ipv6_loopback():
        pytest.skip("no ::1 on this machine")
    srv = devserver_factory("--listen", "[::1]:0", "--control", "[::1]:0")
    assert re.fullmatch(r"http://\[::1\]:\d+", srv.url), srv.url
    assert re.fullmatch(r"http://\[::1\]:\d+", srv.control), srv.control
    api = Api(srv.url)
    assert api.host == "::1"
    token = api.insight_token()
    r = api("GET", INS + "/auth/user", headers=bearer(token))
    assert r.status == 200 and r.json()["uid"] == ALICE_ID, r
    assert srv.counters()["validate"] == 1
