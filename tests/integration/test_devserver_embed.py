# SPDX-License-Identifier: MIT
"""tokengate-devserver as a Looker signed-embed verifier (docs/api-spec.md C
and B.6; docs/devserver.md "Signed embedding").

An independent signer written here from api-spec C (hmac, hashlib, base64,
urllib.parse.quote, json.dumps) first reproduces the spec's test vectors
byte for byte, then drives the devserver over real HTTP: what it accepts,
what it rejects and with which status and message, single use, the clock,
sessions and their cookie, the server-side signer (POST /embed/sso_url), the
counters and the control listing, and that no secret reaches the log.
Redirects are never followed automatically.  Only 127.0.0.1 is contacted.
"""
import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import secrets
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse

import pytest

from conftest import DEMO, Response, binary

DEMO_SECRET = "looker-embed-secret-DEMO-0001"
DOC = "https://cloud.google.com/looker/docs/r/api/support"
COOKIE_RE = re.compile(
    r"^tg_embed_session=([A-Za-z0-9_-]{43}); Path=/; HttpOnly; SameSite=Lax$")

# api-spec C.2: the signed parameters in string-to-sign order, and which of
# them are lines only when sent.
SIGNED = ["nonce", "time", "session_length", "external_user_id",
          "permissions", "models", "group_ids", "external_group_id",
          "user_attributes", "access_filters"]
OPTIONAL_SIGNED = ["group_ids", "external_group_id", "user_attributes"]
REQUIRED = ["nonce", "time", "session_length", "external_user_id",
            "permissions", "models", "access_filters", "signature",
            "force_logout_login"]
# URL order of the vector (and of the devserver's sso_url).
ORDER = SIGNED + ["first_name", "last_name", "user_timezone",
                  "force_logout_login"]

# api-spec C.4.
V_SECRET = "test-embed-secret-0123456789abcdef"
V_HOST = "looker.example.com"
V_PATH = "/embed/dashboards/42"
V_COMMON = {
    "nonce": '"0123456789abcdef0123456789abcdef"', "time": "1700000000",
    "session_length": "3600", "external_user_id": '"user-57"',
    "permissions": '["access_data","see_looks","see_user_dashboards"]',
    "models": '["thelook"]',
}
V1_URL = (
    "https://looker.example.com/login/embed/%2Fembed%2Fdashboards%2F42?"
    "nonce=%220123456789abcdef0123456789abcdef%22&time=1700000000&"
    "session_length=3600&external_user_id=%22user-57%22&permissions=%5B%22"
    "access_data%22%2C%22see_looks%22%2C%22see_user_dashboards%22%5D&"
    "models=%5B%22thelook%22%5D&group_ids=%5B%224%22%2C%223%22%5D&"
    "external_group_id=%22acme%22&user_attributes=%7B%22vendor_id%22%3A%22"
    "17%22%7D&access_filters=%7B%7D&first_name=%22Alice%22&last_name=%22"
    "Jones%22&force_logout_login=true&signature=4FscyxXLauOJNUj9OYP3nbhkOhU"
    "%3D")


# ------------------------------------------------------- the signer (C.3)


def pct(text):
    """C.1: every byte but A-Z a-z 0-9 - _ . ~ as %XX."""
    return urllib.parse.quote(text, safe="-_.~")


def jd(value):
    """C.2: compact JSON, UTF-8 as it is."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def string_to_sign(host, path_pct, values):
    lines = [host, "/login/embed/" + path_pct]
    lines += [values[name] for name in SIGNED if name in values]
    return "\n".join(lines)


def sign(secret, host, path_pct, values):
    text = string_to_sign(host, path_pct, values).encode("utf-8")
    mac = hmac.new(secret.encode("utf-8"), text, hashlib.sha1).digest()
    return base64.b64encode(mac).decode("ascii")


def target_of(path_pct, values, signature):
    """The request target: path and query, values percent-encoded."""
    query = [f"{name}={pct(values[name])}" for name in ORDER
             if name in values]
    query += [f"{name}={pct(v)}" for name, v in values.items()
              if name not in ORDER]
    if signature is not None:
        query.append("signature=" + pct(signature))
    return "/login/embed/" + path_pct + "?" + "&".join(query)


class Signed:
    """A signed embed URL: its raw values (JSON texts), signature, target."""

    def __init__(self, secret, host, embed_path, values):
        self.host = host
        self.path_pct = pct(embed_path)
        self.values = values
        self.signature = sign(secret, host, self.path_pct, values)
        self.target = target_of(self.path_pct, values, self.signature)

    def with_values(self, **changed):
        """The same signature over changed values (a tampered URL)."""
        values = dict(self.values)
        for name, value in changed.items():
            if value is None:
                values.pop(name, None)
            else:
                values[name] = value
        return target_of(self.path_pct, values, self.signature)


def make(secret, host, t, embed_path="/embed/dashboards/42", **params):
    """Sign a URL; params are Python values (None: not sent), or raw JSON
    text given as raw_NAME."""
    values = {
        "nonce": jd(secrets.token_hex(16)), "time": str(t),
        "session_length": "600", "external_user_id": jd("user-57"),
        "permissions": jd(["access_data", "see_looks",
                           "see_user_dashboards"]),
        "models": jd(["thelook"]), "access_filters": "{}",
        "first_name": jd("Alice"), "last_name": jd("Jones"),
        "force_logout_login": "true",
    }
    for name, value in params.items():
        if name.startswith("raw_"):
            values[name[4:]] = value
        elif value is None:
            values.pop(name, None)
        else:
            values[name] = jd(value)
    return Signed(secret, host, embed_path, values)


# ---------------------------------------------------------------- helpers


class Embed:
    """HTTP to one devserver, one connection per request, no redirects."""

    def __init__(self, srv, context=None):
        self.srv = srv
        self.host = f"127.0.0.1:{srv.port}"
        self.context = context

    def connect(self):
        if self.context is not None:
            return http.client.HTTPSConnection(
                "127.0.0.1", self.srv.port, timeout=10, context=self.context)
        return http.client.HTTPConnection("127.0.0.1", self.srv.port,
                                          timeout=10)

    def request(self, method, target, headers=None, body=None):
        conn = self.connect()
        try:
            conn.request(method, target, body=body, headers=headers or {})
            r = conn.getresponse()
            return Response.read(r)
        finally:
            conn.close()

    def get(self, target, host=None, cookie=None):
        headers = {}
        if host is not None:
            headers["Host"] = host
        if cookie is not None:
            headers["Cookie"] = f"tg_embed_session={cookie}"
        return self.request("GET", target, headers)

    def now(self):
        return self.control("GET", "/clock")["now"]

    def control(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        ctl = urllib.parse.urlsplit(self.srv.control)
        conn = http.client.HTTPConnection(ctl.hostname, ctl.port, timeout=10)
        try:
            conn.request(method, path, body=data,
                         headers={"Content-Type": "application/json"}
                         if data is not None else {})
            r = conn.getresponse()
            raw = r.read()
            assert r.status < 300, (method, path, r.status, raw)
            return json.loads(raw) if raw else None
        finally:
            conn.close()

    def url(self, t=None, secret=DEMO_SECRET, **params):
        return make(secret, self.host, self.now() if t is None else t,
                    **params)

    def login(self, signed, host=None):
        """Use a signed URL (a Signed or a request target); expect success
        and return the cookie value and the response."""
        r = self.get(getattr(signed, "target", signed), host=host)
        assert r.status == 302, r
        m = COOKIE_RE.match(r.header("Set-Cookie") or "")
        assert m, r
        return m.group(1), r

    def looker_token(self, user="alice"):
        body = urllib.parse.urlencode({
            "client_id": DEMO[user]["client_id"],
            "client_secret": DEMO[user]["secret"]})
        r = self.request("POST", "/api/4.0/login", {
            "Content-Type": "application/x-www-form-urlencoded"}, body)
        assert r.status == 200, r
        return r.json()["access_token"]

    def sso_url(self, params, token=None, version="4.0", raw=None):
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"token {token}"
        body = raw if raw is not None else json.dumps(params)
        return self.request("POST", f"/api/{version}/embed/sso_url",
                            headers, body)


def lk_error(message):
    return {"message": message, "documentation_url": DOC}


def assert_rejected(r, status, message):
    assert r.status == status, r
    assert r.header("Content-Type") == "application/json", r
    assert r.json() == lk_error(message), r
    assert r.header("Set-Cookie") is None, r


SIG_FAIL = "'signature' param failed to authenticate"
TIME_FAIL = "'time' param is not within 5 minutes of the server's system time"
NONCE_FAIL = "'nonce' param has already been used"


@pytest.fixture
def embed(devserver):
    return Embed(devserver)


def write_secret(tmp_path, text, mode=0o600, name="embed-secret"):
    path = tmp_path / name
    path.write_text(text)
    os.chmod(path, mode)
    return path


# ---------------------------------------------------- the signer, C.4 first


def test_signer_reproduces_vector_1_full_url():
    """Our signer is trustworthy only if it gives the spec's exact URL."""
    values = dict(V_COMMON, group_ids='["4","3"]', external_group_id='"acme"',
                  user_attributes='{"vendor_id":"17"}', access_filters="{}",
                  first_name=jd("Alice"), last_name=jd("Jones"),
                  force_logout_login="true")
    text = string_to_sign(V_HOST, pct(V_PATH), values)
    assert len(text.encode()) == 220 and text.count("\n") == 11
    assert not text.endswith("\n")
    signed = Signed(V_SECRET, V_HOST, V_PATH, values)
    assert signed.signature == "4FscyxXLauOJNUj9OYP3nbhkOhU="
    assert "https://" + V_HOST + signed.target == V1_URL


def test_signer_reproduces_vector_2_signature():
    values = dict(V_COMMON, access_filters="{}")
    text = string_to_sign(V_HOST, pct(V_PATH), values)
    assert len(text.encode()) == 184 and text.count("\n") == 8
    assert text.endswith('["thelook"]\n{}')
    assert sign(V_SECRET, V_HOST, pct(V_PATH), values) == \
        "IRnOoKNxLbmkhIv307INofsy1bA="


def test_signer_primitive_rfc2202():
    mac = hmac.new(b"Jefe", b"what do ya want for nothing?", hashlib.sha1)
    assert base64.b64encode(mac.digest()) == b"7/zfauXrL6LSdBbV8YTfnCWafHk="


# ------------------------------------------------ the vectors, end to end


def test_spec_vectors_verify_on_the_devserver(devserver_factory, tmp_path):
    """Vector 1 as published: right signature but 2023's time (401 time),
    then accepted once the server clock is moved to 1700000000.  Vector 2
    reuses vector 1's nonce: a valid signature, refused as a replay."""
    srv = devserver_factory("--embed-secret-file",
                            str(write_secret(tmp_path, V_SECRET + "\n")))
    e = Embed(srv)
    target = V1_URL[len("https://" + V_HOST):]
    assert_rejected(e.get(target, host=V_HOST), 401, TIME_FAIL)
    assert_rejected(e.get(target, host="looker.example.com:443"), 401,
                    SIG_FAIL)   # line 1 is the Host header as received
    e.control("POST", "/clock", {"offset": 1700000000 - int(time.time())})
    cookie, r = e.login(target, host=V_HOST)
    assert r.header("Location") == "/embed/dashboards/42"
    page = e.get("/embed/dashboards/42", cookie=cookie)
    assert page.status == 200 and b"user-57" in page.body
    v2 = Signed(V_SECRET, V_HOST, V_PATH, dict(V_COMMON, access_filters="{}",
                                              force_logout_login="true"))
    assert v2.signature == "IRnOoKNxLbmkhIv307INofsy1bA="
    assert_rejected(e.get(v2.target, host=V_HOST), 401, NONCE_FAIL)


# ------------------------------------------------------------ acceptance


@pytest.mark.parametrize("mode", [(), ("--threads", "2")],
                         ids=["thread-per-connection", "pool"])
def test_valid_url_redirects_sets_cookie_and_opens_the_page(
        devserver_factory, mode):
    embed = Embed(devserver_factory(*mode))
    signed = embed.url()
    r = embed.get(signed.target)
    assert r.status == 302, r
    assert r.header("Location") == "/embed/dashboards/42"
    assert r.header("Cache-Control") == "no-store"
    cookie = COOKIE_RE.match(r.header("Set-Cookie")).group(1)
    page = embed.get("/embed/dashboards/42", cookie=cookie)
    assert page.status == 200, page
    assert page.header("Content-Type").startswith("text/html")
    assert b'<span id="external_user_id">user-57</span>' in page.body
    assert b'<code id="path">/embed/dashboards/42</code>' in page.body
    # Any embed path works with the session.
    other = embed.get("/embed/looks/4", cookie=cookie)
    assert other.status == 200 and b"/embed/looks/4" in other.body


def test_replay_is_refused(embed):
    signed = embed.url()
    embed.login(signed)
    assert_rejected(embed.get(signed.target), 401, NONCE_FAIL)
    assert_rejected(embed.get(signed.target), 401, NONCE_FAIL)


def test_same_url_in_parallel_is_accepted_once(embed):
    signed = embed.url()
    statuses = []

    def use():
        statuses.append(embed.get(signed.target).status)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(statuses) == [302] + [401] * 7


TAMPERED = [
    ("nonce", jd("ffffffffffffffffffffffffffffffff")),
    ("time", "TIME-1"),
    ("session_length", "601"),
    ("external_user_id", jd("user-58")),
    ("permissions", jd(["access_data", "see_looks", "see_user_dashboards",
                        "download_without_limit"])),
    ("permissions", jd(["see_looks", "access_data", "see_user_dashboards"])),
    ("models", jd(["thelook", "finance"])),
    ("access_filters", jd({"thelook": {"region": "EU"}})),
    ("group_ids", jd(["4", "3", "1"])),
    ("group_ids", None),                 # an optional line removed
    ("external_group_id", jd("acme2")),
    ("external_group_id", None),
    ("user_attributes", jd({"vendor_id": "18"})),
    ("user_attributes", None),
    ("permissions", '["access_data", "see_looks", "see_user_dashboards"]'),
]


@pytest.mark.parametrize("name,value", TAMPERED,
                         ids=[f"{n}-{i}" for i, (n, _) in
                              enumerate(TAMPERED)])
def test_each_signed_param_is_protected(embed, name, value):
    """Any change to a signed value (even JSON whitespace or order, or
    dropping an optional line) fails the signature, and does not use up
    the nonce: the untouched URL still works afterwards."""
    t = embed.now()
    signed = embed.url(t=t, group_ids=["4", "3"], external_group_id="acme",
                       user_attributes={"vendor_id": "17"})
    if value == "TIME-1":
        value = str(t - 1)
    assert_rejected(embed.get(signed.with_values(**{name: value})), 401,
                    SIG_FAIL)
    embed.login(signed)


@pytest.mark.parametrize("name", OPTIONAL_SIGNED)
def test_an_unsigned_optional_param_added_is_refused(embed, name):
    signed = embed.url()
    extra = {"group_ids": jd(["1"]), "external_group_id": jd("x"),
             "user_attributes": jd({"a": "b"})}[name]
    assert_rejected(embed.get(signed.with_values(**{name: extra})), 401,
                    SIG_FAIL)


def test_host_and_path_are_signed(embed):
    signed = embed.url()
    assert_rejected(embed.get(signed.target, host=f"localhost:"
                              f"{embed.srv.port}"), 401, SIG_FAIL)
    other = signed.target.replace("%2F42?", "%2F43?")
    assert_rejected(embed.get(other), 401, SIG_FAIL)
    # The path segment is signed as received: the same path with a
    # lower-case escape is a different string.
    lower = signed.target.replace("%2F", "%2f", 1)
    assert_rejected(embed.get(lower), 401, SIG_FAIL)
    embed.login(signed)


@pytest.mark.parametrize("changed", [
    {"first_name": jd("Mallory")}, {"last_name": jd("Someone-Else")},
    {"first_name": None, "last_name": None},
    {"force_logout_login": "false"}, {"user_timezone": jd("Europe/Paris")},
    {"user_timezone": "null"}, {"unknown_param": "whatever"},
], ids=["first", "last", "no-names", "flo-false", "tz", "tz-null",
        "unknown"])
def test_unsigned_params_are_not_protected(embed, changed):
    """Names, time zone and force_logout_login are not on the signing
    lines (C.3): changing them keeps the URL valid."""
    signed = embed.url()
    r = embed.get(signed.with_values(**changed))
    assert r.status == 302, r


@pytest.mark.parametrize("present", [
    (), ("group_ids",), ("external_group_id",), ("user_attributes",),
    ("group_ids", "user_attributes"), tuple(OPTIONAL_SIGNED)])
def test_optional_lines_present_or_absent_both_verify(embed, present):
    given = {"group_ids": ["4", "3"], "external_group_id": "acme",
             "user_attributes": {"vendor_id": "17", "locale": "fr_FR"}}
    signed = embed.url(**{k: v for k, v in given.items() if k in present})
    for name in OPTIONAL_SIGNED:
        assert (name + "=" in signed.target) == (name in present)
    embed.login(signed)


def test_group_ids_as_numbers_and_empty_values_verify(embed):
    embed.login(embed.url(group_ids=[4, 2], external_group_id="",
                          user_attributes={}))


def test_non_ascii_values_verify_and_show_escaped(embed):
    signed = embed.url(external_user_id="ユーザー<57>&\"'",
                       first_name="Zoë", last_name="Ñúñez",
                       external_group_id="Café",
                       user_attributes={"city": "Zürich"})
    assert "%E3%83%A6" in signed.target
    cookie, _ = embed.login(signed)
    page = embed.get("/embed/dashboards/42", cookie=cookie)
    assert page.status == 200
    assert ("ユーザー&lt;57&gt;&amp;&quot;&#39;").encode() in page.body
    users = embed.control("GET", "/embed")["users"]
    assert users[0]["external_user_id"] == "ユーザー<57>&\"'"
    assert users[0]["first_name"] == "Zoë"
    assert users[0]["user_attributes"] == {"city": "Zürich"}


def test_embed_path_with_its_own_query(embed):
    path = "/embed/dashboards/42?embed_domain=http://127.0.0.1:8080&sdk=2"
    signed = embed.url(embed_path=path)
    assert "%3Fembed_domain%3Dhttp%3A%2F%2F127.0.0.1%3A8080%26sdk%3D2?" \
        in signed.target
    cookie, r = embed.login(signed)
    assert r.header("Location") == path
    page = embed.get(path, cookie=cookie)
    assert page.status == 200
    assert b'<code id="path">/embed/dashboards/42</code>' in page.body


@pytest.mark.parametrize("path", ["/dashboards/42", "/embed/", "//evil/x",
                                  "/embed/a b", "/embed/\u00e9",
                                  "/embed/x\r\nSet-Cookie: a=b"])
def test_embed_path_must_be_under_embed(embed, path):
    """The path becomes the Location header: never off this host."""
    r = embed.get(embed.url(embed_path=path).target)
    assert_rejected(r, 400, "The embed path must be a percent-encoded path "
                            "starting with /embed/")


# -------------------------------------------------------------- the clock


def test_stale_time_is_refused_without_using_the_nonce(embed):
    signed = embed.url()
    embed.control("POST", "/clock", {"advance": 360})
    assert_rejected(embed.get(signed.target), 401, TIME_FAIL)
    embed.control("POST", "/clock", {"offset": 0})
    embed.login(signed)


@pytest.mark.parametrize("delta,ok", [(-310, False), (-290, True),
                                      (290, True), (310, False),
                                      (86400, False)])
def test_time_window_is_five_minutes_each_way(embed, delta, ok):
    """10 s either side of the 300 s edge: the clock read here and the
    devserver's when the request arrives may be a second or more apart."""
    signed = embed.url(t=embed.now() + delta)
    r = embed.get(signed.target)
    if ok:
        assert r.status == 302, r
    else:
        assert_rejected(r, 401, TIME_FAIL)


def test_a_wrong_signature_is_checked_before_time(embed):
    """A tampered stale URL says "signature": nothing is learnt from it."""
    signed = embed.url(t=embed.now() - 3600)
    assert_rejected(embed.get(signed.with_values(models=jd(["x"]))), 401,
                    SIG_FAIL)


def test_nonce_is_remembered_for_an_hour(embed):
    """A nonce may not repeat within an hour (C.2), even in a new URL."""
    nonce = jd(secrets.token_hex(16))
    embed.login(embed.url(raw_nonce=nonce))
    embed.control("POST", "/clock", {"advance": 1800})
    assert_rejected(embed.get(embed.url(raw_nonce=nonce).target), 401,
                    NONCE_FAIL)
    embed.control("POST", "/clock", {"advance": 1801})
    embed.login(embed.url(raw_nonce=nonce))


# ---------------------------------------------------------------- secrets


def test_a_url_signed_with_another_secret_is_refused(embed):
    signed = embed.url(secret="some-other-secret")
    assert_rejected(embed.get(signed.target), 401, SIG_FAIL)


def test_custom_embed_secret_file(devserver_factory, tmp_path):
    secret = "custom-" + secrets.token_hex(32)
    srv = devserver_factory("--embed-secret-file",
                            str(write_secret(tmp_path, secret + "\r\n")))
    e = Embed(srv)
    assert_rejected(e.get(e.url().target), 401, SIG_FAIL)   # demo secret
    assert_rejected(e.get(e.url(secret=secret + "\r").target), 401,
                    SIG_FAIL)                             # newline stripped
    cookie, _ = e.login(e.url(secret=secret))
    token = e.looker_token()
    r = e.sso_url({"target_url": f"http://{e.host}/embed/looks/4"}, token)
    assert r.status == 200, r
    e.login(sso_target(r.json()["url"])[1])
    srv.stop()
    log = srv.log_path.read_text(errors="replace")
    assert secret not in log and cookie not in log


@pytest.mark.parametrize("setup,message", [
    ("mode644", "must be readable by its owner only (mode 0644); chmod 600"),
    ("mode640", "must be readable by its owner only (mode 0640)"),
    ("missing", "No such file or directory"),
    ("empty", "the secret is empty"),
    ("newline", "the secret is empty"),
    ("symlink", "symbolic link is refused"),
    ("directory", "not a regular file"),
    ("large", "larger than 4096 bytes"),
])
def test_bad_embed_secret_file_stops_the_start(tmp_path, setup, message):
    secret = "s3cr3t-" + secrets.token_hex(8)
    path = tmp_path / "secret"
    if setup.startswith("mode"):
        write_secret(tmp_path, secret, int(setup[4:], 8), "secret")
    elif setup == "empty":
        write_secret(tmp_path, "", name="secret")
    elif setup == "newline":
        write_secret(tmp_path, "\n", name="secret")
    elif setup == "symlink":
        real = write_secret(tmp_path, secret, name="real")
        path.symlink_to(real)
    elif setup == "directory":
        path.mkdir()
    elif setup == "large":
        write_secret(tmp_path, "x" * 4097, name="secret")
    proc = subprocess.run(
        [binary("devserver/tokengate-devserver"), "--listen", "127.0.0.1:0",
         "--control", "127.0.0.1:0", "--embed-secret-file", str(path)],
        capture_output=True, text=True, timeout=20)
    assert proc.returncode == 2, proc
    assert proc.stdout == ""
    assert "--embed-secret-file" in proc.stderr and message in proc.stderr
    assert secret not in proc.stderr


# -------------------------------------------------------- parse, then 400


@pytest.mark.parametrize("name", REQUIRED)
def test_each_required_param_missing_is_400(embed, name):
    signed = embed.url()
    if name == "signature":
        target = target_of(signed.path_pct, signed.values, None)
    else:
        target = signed.with_values(**{name: None})
    assert_rejected(embed.get(target), 400, f"'{name}' param is required")


BAD_TYPES = [
    ("nonce", "123", "a JSON string"),
    ("nonce", "0123abc", "a JSON string"),        # not JSON at all
    ("time", '"1700000000"', "a JSON integer"),
    ("time", "1.7e9", "a JSON integer"),
    ("session_length", "true", "a JSON integer"),
    ("external_user_id", "null", "a JSON string"),
    ("external_user_id", "user-57", "a JSON string"),
    ("permissions", '"access_data"', "a JSON array of strings"),
    ("permissions", "[1]", "a JSON array of strings"),
    ("models", "{}", "a JSON array of strings"),
    ("group_ids", '[{"a":1}]', "a JSON array of strings or integers"),
    ("external_group_id", "[]", "a JSON string"),
    ("user_attributes", '["a"]', "a JSON object"),
    ("user_attributes", '{"a":"1","a":"2"}', "a JSON object"),
    ("access_filters", "[]", "a JSON object"),
    ("first_name", "5", "a JSON string or null"),
    ("force_logout_login", '"true"', "true or false"),
    ("force_logout_login", "1", "true or false"),
]


@pytest.mark.parametrize("name,raw,what", BAD_TYPES,
                         ids=[f"{n}-{i}" for i, (n, _, _) in
                              enumerate(BAD_TYPES)])
def test_values_must_have_their_json_type(embed, name, raw, what):
    """Checked before the signature: correctly signed, still 400."""
    signed = embed.url(**{"raw_" + name: raw})
    assert_rejected(embed.get(signed.target), 400,
                    f"'{name}' param must be {what}")


@pytest.mark.parametrize("length,ok", [(-1, False), (0, True),
                                       (2592000, True), (2592001, False)])
def test_session_length_bounds(embed, length, ok):
    r = embed.get(embed.url(raw_session_length=str(length)).target)
    if ok:
        assert r.status == 302, r
    else:
        assert_rejected(r, 400, "'session_length' param must be between 0 "
                                "and 2592000")


@pytest.mark.parametrize("nonce,ok", [("n" * 254, True), ("é" * 254, True),
                                      ("n" * 255, False), ("", False)])
def test_nonce_length(embed, nonce, ok):
    r = embed.get(embed.url(nonce=nonce).target)
    if ok:
        assert r.status == 302, r
    else:
        assert_rejected(r, 400, "'nonce' param must be a JSON string of 1 "
                                "to 254 characters")


def test_external_user_id_length(embed):
    """Up to tokengate's signer's per-field limit (TG_EMBED_FIELD_MAX, 1024
    bytes; Looker's own is not documented), so that every id the signer
    signs is verified: bytes count, not characters."""
    ext = "é" * 512
    r = embed.get(embed.url(external_user_id=ext).target)
    assert r.status == 302, r
    assert any(u["external_user_id"] == ext
               for u in embed.control("GET", "/embed")["users"])
    assert_rejected(embed.get(embed.url(external_user_id=ext + "u").target),
                    400, "'external_user_id' param must be a non-empty JSON "
                         "string of at most 1024 bytes")


def test_external_group_id_length(embed):
    assert embed.get(embed.url(external_group_id="g" * 81).target).status \
        == 302
    assert_rejected(embed.get(embed.url(external_group_id="g" * 82).target),
                    400, "'external_group_id' param must be a JSON string of "
                         "at most 81 characters")


def test_a_param_given_twice_is_400(embed):
    signed = embed.url()
    target = signed.target + "&models=" + pct(signed.values["models"])
    assert_rejected(embed.get(target), 400,
                    "'models' param is given more than once")


def test_signature_variants_never_pass(embed):
    """The signature parameter fails closed in every spelling: empty, a
    second (good or bad) copy, a name in another case or percent-encoded
    (which is the same name), a NUL or junk after the 28 characters, and
    the right signature with its '+', '/', '=' unencoded ('+' decodes to a
    space).  None of them uses up the nonce."""
    signed = embed.url()
    bare = signed.with_values()
    bare = bare[:bare.index("&signature=")]
    good = pct(signed.signature)
    for target, status, message in [
        (bare + "&signature=", 401, SIG_FAIL),
        (bare, 400, "'signature' param is required"),
        (bare + "&Signature=" + good, 400, "'signature' param is required"),
        (bare + "&signature=" + good + "&signature=" + good, 400,
         "'signature' param is given more than once"),
        (bare + "&signature=" + good + "&sig%6Eature=AAAA", 400,
         "'signature' param is given more than once"),
        (bare + "&signature=" + good + "%00", 401, SIG_FAIL),
        (bare + "&signature=" + good + "A", 401, SIG_FAIL),
        (bare + "&signature=" + good.lower(), 401, SIG_FAIL),
    ]:
        assert_rejected(embed.get(target), status, message)
    embed.login(signed)
    # A signature holding '+' sent unencoded: '+' is a space, so it fails
    # ('/' and '=' unencoded decode to themselves and would pass).
    for _ in range(200):
        signed = embed.url()
        if "+" in signed.signature:
            break
    assert "+" in signed.signature
    bare = signed.with_values()
    bare = bare[:bare.index("&signature=")]
    assert_rejected(embed.get(bare + "&signature=" + signed.signature), 401,
                    SIG_FAIL)
    embed.login(signed)


def test_bad_percent_encoding_is_400(embed):
    signed = embed.url()
    assert_rejected(embed.get(signed.target + "&user_timezone=%zz"), 400,
                    "'user_timezone' param is not properly encoded")
    assert_rejected(embed.get(signed.target + "&%zz=1"), 400,
                    "Malformed query string")
    embed.login(signed)


def test_plus_in_a_query_value_is_a_space(embed):
    """Form rules: '+' decodes to a space, so an unencoded '+' in a value
    (e.g. a signature) changes it; %2B is the way to send one."""
    signed = embed.url(external_user_id="a b")
    assert_rejected(embed.get(signed.target.replace("%20", "%2B", 1)), 401,
                    SIG_FAIL)
    embed.login(signed.target.replace("%20", "+", 1))


@pytest.mark.parametrize("head", [b"HTTP/1.0\r\n",
                                  b"HTTP/1.1\r\nHost: a\r\nHost: b\r\n"])
def test_host_header_missing_or_twice_is_400(embed, head):
    """Line 1 is the Host header: without exactly one there is nothing to
    verify against."""
    signed = embed.url()
    with socket.create_connection(("127.0.0.1", embed.srv.port), 5) as s:
        s.sendall(b"GET " + signed.target.encode() + b" " + head +
                  b"Connection: close\r\n\r\n")
        raw = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            raw += chunk
    assert raw.startswith(b"HTTP/1.1 400 "), raw[:200]
    embed.login(signed)


def test_only_get(embed):
    r = embed.request("POST", embed.url().target)
    assert r.status == 405 and r.header("Allow") == "GET"
    assert embed.request("POST", "/embed/dashboards/1").status == 405


# --------------------------------------------------- sessions and the page


def test_page_without_or_with_a_bad_cookie_is_401(embed):
    lk_401 = lk_error("Requires authentication.")
    for cookie in (None, "", "x", "A" * 43, "A" * 44):
        r = embed.get("/embed/dashboards/42", cookie=cookie)
        assert r.status == 401 and r.json() == lk_401, (cookie, r)


def test_session_length_is_honoured(embed):
    cookie, _ = embed.login(embed.url(raw_session_length="60"))
    assert embed.get("/embed/dashboards/42", cookie=cookie).status == 200
    embed.control("POST", "/clock", {"advance": 50})
    assert embed.get("/embed/dashboards/42", cookie=cookie).status == 200
    embed.control("POST", "/clock", {"advance": 11})
    assert embed.get("/embed/dashboards/42", cookie=cookie).status == 401
    assert embed.control("GET", "/embed")["sessions"] == []


def test_zero_session_length_gives_a_dead_session(embed):
    cookie, _ = embed.login(embed.url(raw_session_length="0"))
    assert embed.get("/embed/dashboards/42", cookie=cookie).status == 401


def test_a_new_login_replaces_the_previous_session(embed):
    """B.6: a new session for the same external_user_id ends the old one
    and replaces its grants; the embed user (and its id) stays."""
    first, _ = embed.login(embed.url(models=["thelook"]))
    before = embed.control("GET", "/embed")["users"]
    second, _ = embed.login(embed.url(models=["finance"]))
    assert first != second
    assert embed.get("/embed/x/1", cookie=first).status == 401
    assert embed.get("/embed/x/1", cookie=second).status == 200
    listing = embed.control("GET", "/embed")
    assert len(listing["users"]) == 1 and len(listing["sessions"]) == 1
    assert listing["users"][0]["id"] == before[0]["id"]
    assert listing["users"][0]["models"] == ["finance"]
    other, _ = embed.login(embed.url(external_user_id="user-99"))
    listing = embed.control("GET", "/embed")
    assert len(listing["users"]) == 2 and len(listing["sessions"]) == 2
    ids = [u["id"] for u in listing["users"]]
    assert len(set(ids)) == 2 and all(i.isdigit() and int(i) >= 1000
                                      for i in ids)
    page = embed.get("/embed/x/1", cookie=other)
    assert b"user-99" in page.body


def test_embed_users_are_bounded(embed):
    """At most 4096 embed users: a full table evicts the user whose last
    login is oldest (here all sessions are live), ending its session."""
    t = embed.now()
    first, _ = embed.login(embed.url(t=t, external_user_id="u-0"))
    conn = embed.connect()
    try:
        for i in range(1, 4097):
            signed = make(DEMO_SECRET, embed.host, t,
                          external_user_id=f"u-{i}")
            conn.request("GET", signed.target)
            r = conn.getresponse()
            r.read()
            assert r.status == 302, (i, r.status)
    finally:
        conn.close()
    listing = embed.control("GET", "/embed")
    assert len(listing["users"]) == 4096
    assert len(listing["sessions"]) == 4096
    ext = {u["external_user_id"] for u in listing["users"]}
    assert "u-0" not in ext and "u-1" in ext and "u-4096" in ext
    assert embed.get("/embed/a/1", cookie=first).status == 401
    assert listing["nonces"] == 4097


def test_https_cookie_is_secure(devserver_factory, tmp_path):
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "key.pem",
         "-out", "cert.pem", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        cwd=tmp_path, check=True, capture_output=True, timeout=60)
    srv = devserver_factory("--tls-cert", str(tmp_path / "cert.pem"),
                            "--tls-key", str(tmp_path / "key.pem"))
    e = Embed(srv, ssl.create_default_context(
        cafile=str(tmp_path / "cert.pem")))
    r = e.get(e.url().target)
    assert r.status == 302, r
    assert re.fullmatch(r"tg_embed_session=[A-Za-z0-9_-]{43}; Path=/; "
                        r"HttpOnly; SameSite=Lax; Secure",
                        r.header("Set-Cookie")), r
    r = e.sso_url({"target_url": f"https://{e.host}/embed/looks/4"},
                  e.looker_token())
    url = r.json()["url"]
    assert url.startswith(f"https://{e.host}/login/embed/%2Fembed%2Flooks")
    assert e.get(sso_target(url)[1]).status == 302


def test_control_embed_lists_users_and_sessions_never_cookies(embed):
    t = embed.now()
    cookie, _ = embed.login(embed.url(t=t, raw_session_length="900",
                                      group_ids=["4"]))
    raw = embed.control("GET", "/embed")
    assert cookie not in json.dumps(raw)
    (user,) = raw["users"]
    assert user["external_user_id"] == "user-57"
    assert user["permissions"] == ["access_data", "see_looks",
                                   "see_user_dashboards"]
    assert user["models"] == ["thelook"] and user["group_ids"] == ["4"]
    assert user["external_group_id"] is None
    assert user["first_name"] == "Alice" and user["last_name"] == "Jones"
    assert abs(user["created"] - t) <= 5
    assert user["expires"] == user["created"] + 900
    (session,) = raw["sessions"]
    assert session == {"user_id": user["id"], "external_user_id": "user-57",
                       "created": user["created"],
                       "expires": user["expires"]}
    assert raw["nonces"] == 1


# --------------------------------------------------------------- sso_url


def sso_target(url):
    parts = urllib.parse.urlsplit(url)
    return parts, parts.path + "?" + parts.query


def test_sso_url_as_admin_is_signed_and_single_use(embed):
    token = embed.looker_token("alice")
    t = embed.now()
    body = {"target_url": f"http://{embed.host}/embed/dashboards/42",
            "external_user_id": "ext-1", "permissions": ["access_data"],
            "models": ["thelook"], "group_ids": ["4", "3"],
            "external_group_id": "acme", "user_attributes": {"k": "v"},
            "session_length": 900, "first_name": "Zoë"}
    r = embed.sso_url(body, token)
    assert r.status == 200, r
    assert r.header("Cache-Control") == "no-store"
    url = r.json()["url"]
    parts, target = sso_target(url)
    assert parts.scheme == "http" and parts.netloc == embed.host
    assert parts.path == "/login/embed/%2Fembed%2Fdashboards%2F42"
    q = dict(urllib.parse.parse_qsl(parts.query, strict_parsing=True))
    assert list(q) == ["nonce", "time", "session_length", "external_user_id",
                       "permissions", "models", "group_ids",
                       "external_group_id", "user_attributes",
                       "access_filters", "first_name", "last_name",
                       "force_logout_login", "signature"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', q["nonce"])
    assert abs(int(q["time"]) - t) <= 5
    assert q["session_length"] == "900" and q["access_filters"] == "{}"
    assert q["external_user_id"] == '"ext-1"'
    assert q["group_ids"] == '["4","3"]'
    assert q["first_name"] == '"Zoë"' and q["last_name"] == '"User"'
    assert q["force_logout_login"] == "true"
    # Our own signer agrees with the devserver's signature.
    values = {k: v for k, v in q.items() if k != "signature"}
    assert q["signature"] == sign(DEMO_SECRET, embed.host,
                                  pct("/embed/dashboards/42"), values)
    assert target == target_of(pct("/embed/dashboards/42"), values,
                               q["signature"])
    cookie, _ = embed.login(target)
    assert b"ext-1" in embed.get("/embed/dashboards/42", cookie=cookie).body
    assert_rejected(embed.get(target), 401, NONCE_FAIL)


def test_sso_url_defaults(embed):
    token = embed.looker_token("alice")
    r = embed.sso_url({"target_url": f"http://{embed.host}/dashboards/34"},
                      token, version="3.1")
    assert r.status == 200, r
    parts, target = sso_target(r.json()["url"])
    assert parts.path == "/login/embed/%2Fembed%2Fdashboards%2F34"
    q = dict(urllib.parse.parse_qsl(parts.query))
    assert q["session_length"] == "300" and q["force_logout_login"] == "true"
    assert q["first_name"] == '"Embed"' and q["last_name"] == '"User"'
    assert q["permissions"] == "[]" and q["models"] == "[]"
    assert re.fullmatch(r'"embed-[0-9a-f]{16}"', q["external_user_id"])
    for name in OPTIONAL_SIGNED + ["user_timezone"]:
        assert name not in q
    cookie, r = embed.login(target)
    assert r.header("Location") == "/embed/dashboards/34"


def test_sso_url_keeps_the_target_query_and_drops_default_port(embed):
    token = embed.looker_token("alice")
    r = embed.sso_url({"target_url": "HTTPS://Looker.Example.COM:443/"
                                     "dashboards/56?Date=1%20years#frag"},
                      token)
    assert r.status == 200, r
    parts = urllib.parse.urlsplit(r.json()["url"])
    assert parts.scheme == "https" and parts.netloc == "looker.example.com"
    assert parts.path == ("/login/embed/%2Fembed%2Fdashboards%2F56%3FDate"
                          "%3D1%2520years")


def test_sso_url_needs_an_admin(embed):
    body = {"target_url": f"http://{embed.host}/embed/dashboards/42"}
    r = embed.sso_url(body, embed.looker_token("bob"))
    assert r.status == 403 and r.json() == lk_error("Permission Denied")
    for token in (None, "not-a-token"):
        r = embed.sso_url(body, token)
        assert r.status == 401
        assert r.json() == lk_error("Requires authentication.")


def validation(field, code, message):
    return {"message": "Validation Failed",
            "errors": [{"field": field, "code": code, "message": message,
                        "documentation_url": DOC}],
            "documentation_url": DOC}


@pytest.mark.parametrize("body,field,code,message", [
    ({}, "target_url", "missing", "This field is required."),
    ({"target_url": None}, "target_url", "missing",
     "This field is required."),
    ({"target_url": 5}, "target_url", "invalid",
     "must be an http or https URL with a host and a path"),
    ({"target_url": "ftp://h/embed/x"}, "target_url", "invalid",
     "must be an http or https URL with a host and a path"),
    ({"target_url": "https://h/"}, "target_url", "invalid",
     "must be an http or https URL with a host and a path"),
    ({"target_url": "https://u:p@h/embed/x"}, "target_url", "invalid",
     "must be an http or https URL with a host and a path"),
    ({"target_url": "https://h<x>/embed/x"}, "target_url", "invalid",
     "must be an http or https URL with a host and a path"),
    ({"target_url": "https://h/embed/a b"}, "target_url", "invalid",
     "must be an http or https URL with a host and a path"),
    ({"session_length": 2592001}, "session_length", "invalid",
     "must be an integer from 0 to 2592000"),
    ({"session_length": -1}, "session_length", "invalid",
     "must be an integer from 0 to 2592000"),
    ({"session_length": "300"}, "session_length", "invalid",
     "must be an integer from 0 to 2592000"),
    ({"force_logout_login": "yes"}, "force_logout_login", "invalid",
     "must be true or false"),
    ({"permissions": "access_data"}, "permissions", "invalid",
     "must be an array of strings"),
    ({"models": [1]}, "models", "invalid", "must be an array of strings"),
    ({"user_attributes": []}, "user_attributes", "invalid",
     "must be an object"),
    ({"external_user_id": ""}, "external_user_id", "invalid",
     "must be a non-empty string of at most 1024 bytes"),
    ({"external_user_id": "u" * 1025}, "external_user_id", "invalid",
     "must be a non-empty string of at most 1024 bytes"),
    ({"first_name": 1}, "first_name", "invalid", "must be a string"),
])
def test_sso_url_validation_errors_are_422(embed, body, field, code,
                                           message):
    token = embed.looker_token("alice")
    if "target_url" not in body and field != "target_url":
        body = dict(body, target_url=f"http://{embed.host}/embed/x/1")
    r = embed.sso_url(body, token)
    assert r.status == 422, r
    assert r.json() == validation(field, code, message)


@pytest.mark.parametrize("raw", ["", "not json", "[1]", '"x"',
                                 '{"target_url":"a","target_url":"b"}'])
def test_sso_url_non_json_body_is_400(embed, raw):
    r = embed.sso_url(None, embed.looker_token("alice"), raw=raw)
    assert r.status == 400, r
    assert r.json() == lk_error("Malformed JSON request body")


def test_sso_url_uses_the_server_clock(embed):
    embed.control("POST", "/clock", {"advance": 7200})
    token = embed.looker_token("alice")
    r = embed.sso_url({"target_url": f"http://{embed.host}/embed/x/1"},
                      token)
    _, target = sso_target(r.json()["url"])
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(target).query))
    assert abs(int(q["time"]) - embed.now()) <= 5
    embed.login(target)


# ------------------------------------------------- counters, faults, log


def test_counters_move_as_expected(embed):
    token = embed.looker_token("alice")
    embed.control("DELETE", "/counters")
    signed = embed.url()
    cookie, _ = embed.login(signed)                  # embed_login
    embed.get(signed.target)                         # rejected: nonce
    embed.get(embed.url(secret="x").target)          # rejected: signature
    embed.get(embed.url().with_values(nonce=None))   # rejected: 400
    embed.get("/embed/a/1", cookie=cookie)           # page 200
    embed.get("/embed/a/1")                          # page 401
    embed.sso_url({"target_url": f"http://{embed.host}/embed/a/1"}, token)
    embed.sso_url({}, token)                         # 422, still counted
    c = embed.control("GET", "/counters")
    assert (c["embed_login"], c["embed_rejected"], c["embed_page"],
            c["embed_sso_url"]) == (1, 3, 2, 2), c
    assert c["other"] == 0 and c["token"] == 0
    embed.control("DELETE", "/counters")
    c = embed.control("GET", "/counters")
    assert c["embed_login"] == c["embed_rejected"] == 0


@pytest.mark.parametrize("endpoint", ["embed_login", "*"])
def test_faults_apply_to_the_verifier_without_using_the_nonce(embed,
                                                              endpoint):
    embed.control("POST", "/faults", {"endpoint": endpoint, "status": 503,
                                      "count": 1})
    signed = embed.url()
    r = embed.get(signed.target)
    assert r.status == 503 and r.header("Set-Cookie") is None
    embed.login(signed)


def test_faults_apply_to_the_page_and_sso_url(embed):
    cookie, _ = embed.login(embed.url())
    embed.control("POST", "/faults", {"endpoint": "embed_page",
                                      "status": 500, "count": 1})
    embed.control("POST", "/faults", {"endpoint": "embed_sso_url",
                                      "delay_ms": 200, "status": 429,
                                      "retry_after": "3", "count": 1})
    assert embed.get("/embed/a/1", cookie=cookie).status == 500
    assert embed.get("/embed/a/1", cookie=cookie).status == 200
    start = time.monotonic()
    r = embed.sso_url({"target_url": f"http://{embed.host}/embed/a/1"},
                      embed.looker_token("alice"))
    assert r.status == 429 and r.header("Retry-After") == "3"
    assert time.monotonic() - start >= 0.2


def test_no_secret_signature_cookie_or_url_in_the_log(devserver_factory,
                                                      tmp_path):
    secret = "logcheck-" + secrets.token_hex(24)
    srv = devserver_factory("--embed-secret-file",
                            str(write_secret(tmp_path, secret)))
    e = Embed(srv)
    seen = [secret]
    signed = e.url(secret=secret)
    cookie, _ = e.login(signed)
    seen += [cookie, signed.signature, pct(signed.signature),
             signed.values["nonce"].strip('"')]
    e.get(signed.target)                                 # replay
    e.get(e.url(secret="wrong").target)
    e.get("/embed/a/1", cookie=cookie)
    r = e.sso_url({"target_url": f"http://{e.host}/embed/a/1"},
                  e.looker_token("alice"))
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(
        r.json()["url"]).query))
    seen += [q["signature"], pct(q["signature"]), q["nonce"].strip('"')]
    srv.stop()
    log = srv.log_path.read_text(errors="replace")
    assert "GET /login/embed//embed/dashboards/42 302" in log
    assert "signature" not in log and "nonce" not in log
    for value in seen:
        assert value not in log, value
    assert DEMO_SECRET not in log
