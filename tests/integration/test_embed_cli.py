# SPDX-License-Identifier: MIT
"""tokengate embed-url against a real devserver: a URL the CLI signs (or has
the devserver sign with POST /embed/sso_url) is accepted by the devserver's
signed-embed verifier exactly once, and every kind of forgery is refused.

What each test protects is in its docstring.  Every test also checks, on the
way out, that the embed secret never appears in any CLI output (the Cli
runner) nor in the devserver's log, and that the log holds no signature.
"""
import http.client
import json
import os
import urllib.parse

import pytest

from conftest import EXIT, Cli

# The devserver's built-in embed secret (docs/devserver.md).
DEMO_EMBED_SECRET = "looker-embed-secret-DEMO-0001"
# A secret of our own, for a devserver started with --embed-secret-file.
OTHER_EMBED_SECRET = "other-embed-secret-0123456789abcdef"

BASIC = ["--path", "/embed/dashboards/42", "--user-id", "user-57",
         "--permission", "access_data", "--permission", "see_user_dashboards",
         "--permission", "see_looks", "--model", "thelook"]


def write_secret(path, secret, mode=0o600):
    path.write_text(secret + "\n")
    os.chmod(path, mode)
    return path


class Embed:
    """A looker CLI whose config names an embed secret file, and the
    devserver it talks to."""

    def __init__(self, tmp_path, server, secret=DEMO_EMBED_SECRET):
        self.server = server
        self.secret_file = write_secret(tmp_path / "embed.secret", secret)
        self.cli = Cli(tmp_path, server.url, "looker")
        self.cli.write_config(url=server.url, api="looker",
                              embed_secret_file=self.secret_file)
        self.cli.extra_secrets += [DEMO_EMBED_SECRET, OTHER_EMBED_SECRET]
        self.signatures = []

    def sign(self, *args, **kw):
        """embed-url --host <devserver origin> ARGS; returns the URL."""
        res = self.cli("embed-url", "--host", self.server.url, *args, **kw)
        assert res.rc == 0, res
        url = res.out.strip()
        assert "\n" not in url and url.startswith(self.server.url + "/login/embed/")
        self.signatures.append(signature(url))
        return url


def signature(url):
    query = urllib.parse.urlsplit(url).query
    return urllib.parse.parse_qs(query)["signature"][0]


def get(url, cookie=None):
    """GET exactly this URL (no redirect following, the path and query sent
    as they are); returns (status, headers, body)."""
    parts = urllib.parse.urlsplit(url)
    assert parts.hostname == "127.0.0.1"
    target = parts.path + ("?" + parts.query if parts.query else "")
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        headers = {"Cookie": cookie} if cookie else {}
        conn.request("GET", target, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read().decode(errors="replace")
    finally:
        conn.close()


def replace_param(url, name, value):
    """The URL with one query value replaced (percent-encoded strictly, as
    the signer does); the other bytes are kept as they are."""
    head, query = url.split("?", 1)
    out = []
    for pair in query.split("&"):
        key = pair.split("=", 1)[0]
        if key == name:
            pair = key + "=" + urllib.parse.quote(value, safe="-_.~")
        out.append(pair)
    return head + "?" + "&".join(out)


def session_cookie(headers):
    cookie = headers.get("Set-Cookie", "")
    assert cookie.startswith("tg_embed_session="), cookie
    attrs = [a.strip().lower() for a in cookie.split(";")[1:]]
    assert "httponly" in attrs and "path=/" in attrs, cookie
    return cookie.split(";", 1)[0]


@pytest.fixture
def embed(tmp_path, devserver):
    e = Embed(tmp_path, devserver)
    yield e
    log = devserver.log_path.read_text(errors="replace")
    assert DEMO_EMBED_SECRET not in log, "devserver logged the embed secret"
    for sig in e.signatures:
        assert sig not in log and urllib.parse.quote(sig, safe="") not in log, \
            "devserver logged a signature"


def test_cli_signed_url_logs_in_once(embed, devserver):
    """The locally signed URL is accepted by the verifier (302 to the embed
    path with an HttpOnly session cookie), the cookie opens the embedded
    page for that user, and the same URL is refused the second time."""
    devserver.reset_counters()
    url = embed.sign(*BASIC, "--first-name", "Alice", "--last-name", "Jones",
                     "--group-id", "8", "--external-group-id", "acme",
                     "--attr", "vendor_id=17", "--session-length", "3600")
    status, headers, body = get(url)
    assert status == 302, body
    assert headers["Location"] == "/embed/dashboards/42"
    cookie = session_cookie(headers)

    origin = devserver.url
    status, headers, body = get(origin + "/embed/dashboards/42", cookie)
    assert status == 200, body
    assert headers.get_content_type() == "text/html"
    assert "user-57" in body
    status, _, _ = get(origin + "/embed/dashboards/42")
    assert status == 401

    status, _, body = get(url)
    assert status == 401, body
    counters = devserver.counters()
    assert counters["embed_login"] == 1
    assert counters["embed_rejected"] == 1


def test_embed_path_with_query_and_special_characters(embed, devserver):
    """A path with its own query, names with non-ASCII letters and an
    external user id with '&', '+' and a space survive the round trip."""
    url = embed.sign("--path", "/embed/looks/4?embed_domain=https://app.example.com&sdk=2",
                     "--user-id", "a&b+c d", "--permission", "access_data",
                     "--permission", "see_looks", "--model", "the look&co",
                     "--first-name", "Zoë", "--last-name", "Müller-Łukasz",
                     "--attr", 'company=A&B "Q" \\ / ü', "--timezone",
                     "Europe/Paris", "--no-force-logout-login")
    status, headers, body = get(url)
    assert status == 302, body
    assert headers["Location"] == \
        "/embed/looks/4?embed_domain=https://app.example.com&sdk=2"
    status, _, body = get(devserver.url + "/embed/looks/4", session_cookie(headers))
    assert status == 200, body


def test_longest_external_user_id_round_trips(embed, devserver):
    """The devserver verifies every id the CLI signs: an external user id of
    the signer's limit (1024 bytes, TG_EMBED_FIELD_MAX; Looker's own limit
    is not documented) logs in and is the user on the page.  (Regression:
    the verifier stopped at 255 bytes, so a 300-byte id signed by the CLI
    was refused.)"""
    ext = "é" * 500 + "u" * 24
    assert len(ext.encode()) == 1024
    args = ["--path", "/embed/dashboards/42", "--user-id", ext,
            "--permission", "access_data", "--model", "thelook"]
    url = embed.sign(*args)
    status, headers, body = get(url)
    assert status == 302, body
    status, _, body = get(devserver.url + "/embed/dashboards/42",
                          session_cookie(headers))
    assert status == 200, body
    assert f'<span id="external_user_id">{ext}</span>' in body

    res = embed.cli("embed-url", "--host", devserver.url, "--path",
                    "/embed/dashboards/42", "--user-id", ext + "u",
                    "--permission", "access_data", "--model", "thelook")
    assert res.rc == EXIT["INPUT"], res
    assert "external_user_id: longer than 1024 bytes" in res.err, res


@pytest.mark.parametrize("name,value", [
    ("external_user_id", '"user-58"'),
    ("permissions", '["access_data","see_user_dashboards","see_looks","explore"]'),
    ("models", '["thelook","other"]'),
    ("session_length", "86400"),
    ("nonce", '"00000000000000000000000000000000"'),
    ("access_filters", '{"x":1}'),
])
def test_tampered_signed_parameter_is_refused(embed, name, value):
    """Changing any signed parameter makes the signature fail (401); the
    refused attempt does not use up the URL, which then still works once."""
    url = embed.sign(*BASIC)
    tampered = replace_param(url, name, value)
    assert tampered != url
    status, _, body = get(tampered)
    assert status == 401, body
    status, _, body = get(url)
    assert status == 302, body


def test_unsigned_parameter_is_not_covered(embed):
    """first_name is not on the signing lines (api-spec C.3): changing it
    does not break the signature (which is why we never put anything that
    matters there)."""
    url = embed.sign(*BASIC, "--first-name", "Alice")
    status, _, body = get(replace_param(url, "first_name", '"Mallory"'))
    assert status == 302, body


def test_stale_url_is_refused(embed, devserver):
    """A URL older than 5 minutes by the server's clock is refused."""
    url = embed.sign(*BASIC)
    devserver.advance_clock(301)
    status, _, body = get(url)
    assert status == 401, body
    assert "time" in json.loads(body)["message"]


def test_url_signed_with_another_secret_is_refused(embed, tmp_path):
    """Only the server's embed secret makes a valid signature: a URL signed
    with another one (given on stdin) is refused."""
    url = embed.sign(*BASIC, "--secret-stdin", input=OTHER_EMBED_SECRET + "\n")
    status, _, body = get(url)
    assert status == 401, body


def test_devserver_with_its_own_secret(devserver_factory, tmp_path):
    """With --embed-secret-file the devserver verifies with that secret: the
    CLI's URL from the same secret logs in, one from the demo secret does
    not."""
    secret_file = write_secret(tmp_path / "server.secret", OTHER_EMBED_SECRET)
    server = devserver_factory("--embed-secret-file", str(secret_file))
    e = Embed(tmp_path, server, secret=OTHER_EMBED_SECRET)
    status, _, body = get(e.sign(*BASIC))
    assert status == 302, body
    url = e.sign(*BASIC, "--secret-stdin", input=DEMO_EMBED_SECRET + "\n")
    status, _, body = get(url)
    assert status == 401, body
    log = server.log_path.read_text(errors="replace")
    assert OTHER_EMBED_SECRET not in log


def test_server_signed_url_logs_in_once(embed, devserver):
    """--server: an admin's stored token has the devserver sign the URL
    (POST /api/4.0/embed/sso_url); no embed secret is read; the URL works
    once."""
    assert embed.cli.login("alice").rc == 0
    embed.cli.write_config(url=devserver.url, api="looker")  # no secret
    devserver.reset_counters()
    res = embed.cli("--json", "embed-url", "--server", "--host", devserver.url,
                    *BASIC)
    assert res.rc == 0, res
    doc = res.json()
    assert doc["signed_by"] == "server"
    assert "string_to_sign" not in doc
    url = doc["url"]
    embed.signatures.append(signature(url))
    assert devserver.counters()["embed_sso_url"] == 1
    status, headers, body = get(url)
    assert status == 302, body
    assert headers["Location"] == "/embed/dashboards/42"
    status, _, body = get(url)
    assert status == 401, body


def test_server_signing_needs_an_admin(embed, devserver):
    """A non-admin token is refused by the server (403 -> exit 5)."""
    assert embed.cli.login("bob").rc == 0
    res = embed.cli("embed-url", "--server", "--host", devserver.url, *BASIC)
    assert res.rc == EXIT["FORBIDDEN"], res
    assert res.out == ""


def test_server_signing_needs_a_login(embed, devserver):
    res = embed.cli("embed-url", "--server", "--host", devserver.url, *BASIC)
    assert res.rc == EXIT["INPUT"], res
    assert "login" in res.err


@pytest.mark.parametrize("args,rc,text", [
    (["--path", "/embed/x", "--user-id", "u", "--model", "m"], "USAGE", "--host"),
    (["--user-id", "u", "--model", "m"], "USAGE", "--path"),
    (["--path", "/embed/x", "--model", "m"], "USAGE", "--user-id"),
    (BASIC + ["--session-length", "ten"], "USAGE", "--session-length"),
    (BASIC + ["--attr", "novalue"], "USAGE", "--attr"),
    (BASIC + ["--secret", "s3cr3t-on-argv"], "USAGE", "unexpected argument"),
    (BASIC + ["--server", "--secret-stdin"], "USAGE", "--server"),
    (BASIC + ["s3cr3t-on-argv"], "USAGE", "unexpected argument"),
    (BASIC + ["--permission", "admin"], "INPUT", "permissions: 'admin'"),
    (BASIC + ["--session-length", "2592001"], "INPUT", "session_length"),
    (BASIC + ["--session-length", "-1"], "INPUT", "session_length"),
    (["--path", "/dashboards/42", "--user-id", "u", "--model", "m",
      "--permission", "access_data"], "INPUT", "embed_path"),
    (["--path", "/embed/a b", "--user-id", "u", "--model", "m",
      "--permission", "access_data"], "INPUT", "embed_path"),
    (["--path", "/embed/x", "--user-id", "", "--model", "m",
      "--permission", "access_data"], "INPUT", "external_user_id"),
    (["--path", "/embed/x", "--user-id", "u"], "INPUT", "models"),
    (BASIC + ["--external-group-id", "g" * 82], "INPUT", "external_group_id"),
    (BASIC + ["--attr", "=v"], "INPUT", "user_attributes"),
    (BASIC + ["--attr", "k=1", "--attr", "k=2"], "INPUT", "user_attributes"),
    (BASIC + ["--first-name", "a\tb"], "INPUT", "first_name"),
    (BASIC + ["--timezone", ""], "INPUT", "user_timezone"),
    # Regression: a repeated single-value option used to keep the last
    # value silently; like --host, --path and --user-id it is refused.
    (BASIC + ["--first-name", "a", "--first-name", "b"], "USAGE",
     "--first-name given twice"),
    (BASIC + ["--last-name", "a", "--last-name", "b"], "USAGE",
     "--last-name given twice"),
    (BASIC + ["--external-group-id", "a", "--external-group-id", "b"],
     "USAGE", "--external-group-id given twice"),
    (BASIC + ["--timezone", "UTC", "--timezone", "US/Pacific"], "USAGE",
     "--timezone given twice"),
    (BASIC + ["--session-length", "60", "--session-length", "3600"], "USAGE",
     "--session-length given twice"),
])
def test_bad_input_exits_naming_the_parameter(embed, args, rc, text):
    """Every bad option or parameter is refused with the usage (64) or
    input (2) status and a message naming it, and nothing on stdout."""
    if text != "--host":
        args = ["--host", embed.server.url] + args
    res = embed.cli("embed-url", *args)
    assert res.rc == EXIT[rc], res
    assert text in res.err, res
    assert res.out == ""
    # A stray argument may be a secret typed where it does not belong.
    assert "s3cr3t-on-argv" not in res.text


@pytest.mark.parametrize("host,text", [
    ("https://looker.example.com/", "host: want HOST or HOST:PORT without a "
                                    "scheme or path"),
    # Regression: hosts a browser rewrites before sending Host (line 1 of
    # the string-to-sign) used to be signed as given, so the URL could
    # never verify; they are refused with the spelling to use.
    ("https://Looker.example.com", "host: an upper-case letter"),
    ("[0:0:0:0:0:0:0:1]:8443", "as browsers send it: [::1]"),
    ("http://127.000.0.1:8080", "dotted-quad"),
    ("ftp://looker.example.com", "--host"),
    ("http://looker.example.com", "scheme: http only for a loopback host"),
    ("looker.example.com:443", "default port"),
])
def test_bad_host_is_refused(embed, host, text):
    res = embed.cli("embed-url", "--host", host, *BASIC)
    assert res.rc in (EXIT["INPUT"], EXIT["USAGE"]), res
    assert text in res.err, res


def test_missing_secret_is_a_clear_error(embed, devserver):
    embed.cli.write_config(url=devserver.url, api="looker")
    res = embed.cli("embed-url", "--host", devserver.url, *BASIC)
    assert res.rc == EXIT["CONFIG"], res
    assert "embed_secret_file" in res.err and "--secret-stdin" in res.err
    res = embed.cli("embed-url", "--host", devserver.url, *BASIC,
                    "--secret-stdin", input="")
    assert res.rc == EXIT["INPUT"], res
    assert "secret: empty" in res.err


def test_secret_file_must_be_owner_only(embed, devserver):
    os.chmod(embed.secret_file, 0o640)
    res = embed.cli("embed-url", "--host", devserver.url, *BASIC)
    assert res.rc == EXIT["CONFIG"], res
    assert "embed_secret_file" in res.err


def test_embed_url_is_a_looker_command(embed, devserver):
    embed.cli.write_config(url=devserver.url, api="insight",
                           embed_secret_file=embed.secret_file)
    res = embed.cli("embed-url", "--host", devserver.url, *BASIC)
    assert res.rc == EXIT["INPUT"], res
    assert "looker" in res.err


def test_json_shows_url_and_parameters_but_no_secret(embed, devserver):
    """--json: the URL, what it grants and the signed text; the signed text
    is the one the verifier accepts."""
    res = embed.cli("--json", "embed-url", "--host", devserver.url, *BASIC,
                    "--group-id", "8", "--attr", "locale=fr_FR",
                    "--session-length", "600")
    assert res.rc == 0, res
    doc = res.json()
    embed.signatures.append(signature(doc["url"]))
    assert doc["ok"] is True and doc["signed_by"] == "local"
    assert doc["scheme"] == "http" and doc["host"] == devserver.url[len("http://"):]
    assert doc["embed_path"] == "/embed/dashboards/42"
    assert doc["external_user_id"] == "user-57"
    assert doc["permissions"] == ["access_data", "see_user_dashboards", "see_looks"]
    assert doc["models"] == ["thelook"] and doc["group_ids"] == ["8"]
    assert doc["user_attributes"] == {"locale": "fr_FR"}
    assert doc["session_length"] == 600 and doc["force_logout_login"] is True
    lines = doc["string_to_sign"].split("\n")
    assert lines[0] == doc["host"]
    assert lines[1] == "/login/embed/%2Fembed%2Fdashboards%2F42"
    assert lines[-1] == "{}" and len(lines) == 11
    assert "secret" not in json.dumps(doc).lower()
    status, _, body = get(doc["url"])
    assert status == 302, body


def test_quiet_still_prints_the_url(embed, devserver):
    res = embed.cli("--quiet", "embed-url", "--host", devserver.url, *BASIC)
    assert res.rc == 0, res
    embed.signatures.append(signature(res.out.strip()))
    assert res.out.startswith(devserver.url + "/login/embed/")
    assert res.err == ""
