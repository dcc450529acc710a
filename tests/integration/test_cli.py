# SPDX-License-Identifier: MIT
"""The tokengate CLI against a real devserver, every command, both flavors."""
import http.client
import json
import os
import shutil
import socket
import stat
import subprocess
import time
import urllib.parse

import pytest

from conftest import DEMO, EXIT, binary


def test_login_then_whoami(cli, devserver, api):
    """A login costs one token call and one validation call on one
    connection, stores the token owner-only, and whoami reads it back."""
    devserver.reset_counters()
    res = cli.login("alice")
    assert res.rc == 0, res
    assert "logged in as" in res.text and "alice" in res.text
    counters = devserver.counters()
    assert counters["token"] == 1 and counters["validate"] + counters["profile"] == 1
    assert counters["connections"] == 1
    mode = stat.S_IMODE(os.stat(cli.token_file).st_mode)
    assert mode == 0o600
    stored = json.loads(cli.token_file.read_text())
    assert stored["api"] == api and stored["url"].startswith("http://127.0.0.1")

    res = cli("whoami")
    assert res.rc == 0, res
    assert "alice@example.com" in res.out
    assert "authorization: allowed" in res.out


def test_whoami_json_is_stable(cli):
    assert cli.login("alice").rc == 0
    res = cli("--json", "whoami")
    assert res.rc == 0, res
    doc = res.json()
    assert doc["ok"] is True
    assert doc["email"] == "alice@example.com"
    assert isinstance(doc["groups"], list)
    assert "token" not in doc


def test_wrong_secret_is_rejected(cli, devserver):
    res = cli("login", "--client-id", "alice-client",
              env={"TOKENGATE_SECRET": "not-the-secret"})
    assert res.rc == EXIT["REJECTED"], res
    assert "rejected" in res.err
    assert not cli.token_file.exists()


def test_unknown_client_id_is_rejected(cli):
    res = cli("login", "--client-id", "nobody-client",
              env={"TOKENGATE_SECRET": "whatever-secret"})
    assert res.rc == EXIT["REJECTED"], res


def test_secret_from_stdin(cli):
    res = cli("login", "--client-id", "bob-client", "--secret-stdin",
              input=DEMO["bob"]["secret"] + "\n")
    assert res.rc == 0, res
    assert "bob" in res.text


def test_secret_file_must_be_owner_only(cli, tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text(DEMO["alice"]["secret"] + "\n")
    os.chmod(secret_file, 0o644)
    res = cli("login", "--client-id", "alice-client", "--secret-file",
              secret_file)
    assert res.rc == EXIT["CONFIG"], res
    assert "owner" in res.err
    os.chmod(secret_file, 0o600)
    res = cli("login", "--client-id", "alice-client", "--secret-file",
              secret_file)
    assert res.rc == 0, res


def test_secret_is_never_taken_from_argv(cli):
    """There is no option that takes a secret on the command line."""
    res = cli("login", "--client-id", "alice-client", "--secret",
              DEMO["alice"]["secret"], allow_secrets=[DEMO["alice"]["secret"]])
    assert res.rc == EXIT["USAGE"], res


def test_no_secret_and_no_tty_fails_clearly(cli):
    res = cli("login", "--client-id", "alice-client", input="")
    assert res.rc == EXIT["INPUT"], res
    assert "secret" in res.err


def test_print_token_is_explicit(cli):
    res = cli.login("alice")
    assert res.rc == 0
    token = cli.stored_token()
    assert token not in res.text
    res = cli("login", "--client-id", "alice-client", "--print-token",
              env={"TOKENGATE_SECRET": DEMO["alice"]["secret"]})
    assert res.rc == 0, res
    assert res.out.strip() == cli.stored_token()


def test_whoami_without_login(cli):
    res = cli("whoami")
    assert res.rc != 0
    assert "login" in res.err


def test_token_from_environment(cli):
    assert cli.login("bob").rc == 0
    token = cli.stored_token()
    os.unlink(cli.token_file)
    res = cli("whoami", env={"TOKENGATE_TOKEN": token})
    assert res.rc == 0, res
    assert "bob@example.com" in res.out
    assert token not in res.text


def test_expired_token_is_refused_by_server(cli, devserver):
    assert cli.login("alice").rc == 0
    token = cli.stored_token()
    devserver.advance_clock(7200)
    res = cli("whoami", env={"TOKENGATE_TOKEN": token})
    assert res.rc == EXIT["TOKEN_INVALID"], res


def test_stored_token_is_never_sent_to_another_server(cli, devserver_factory,
                                                      api):
    assert cli.login("alice").rc == 0
    other = devserver_factory()
    other.reset_counters()
    res = cli("--url", other.url, "whoami")
    assert res.rc == EXIT["INPUT"], res
    counters = other.counters()
    assert sum(v for k, v in counters.items() if k != "connections") == 0


def test_profile(cli, api):
    assert cli.login("alice").rc == 0
    res = cli("--json", "profile")
    assert res.rc == 0, res
    doc = res.json()
    assert doc["ok"] is True
    assert doc["email"] == "alice@example.com"
    if api == "insight":
        assert "analysts" in doc["groups"]
    else:
        assert "7" in doc["groups"]


# Groups as each flavor names them: insight authority groups, looker group
# ids (alice is in admins+analysts / 7+9, bob in neither).
GROUPS = {"insight": ("admins", "analysts"), "looker": ("9", "7")}


def test_rules_groups(cli, api):
    admins, analysts = GROUPS[api]
    assert cli.login("bob").rc == 0
    res = cli("-o", f"require_groups={admins}", "whoami")
    assert res.rc == EXIT["FORBIDDEN"], res
    assert admins in res.text
    assert cli.login("alice").rc == 0
    res = cli("-o", f"require_groups={admins} {analysts}", "-o",
              "require_groups_mode=all", "whoami")
    assert res.rc == 0, res
    res = cli("-o", f"require_groups={admins} nobody", "-o",
              "require_groups_mode=all", "whoami")
    assert res.rc == EXIT["FORBIDDEN"], res


def test_rules_evaluation_user(cli, api):
    assert cli.login("carol").rc == 0
    res = cli("-o", "deny_evaluation=yes", "whoami")
    if api == "insight":
        assert res.rc == EXIT["FORBIDDEN"], res
        assert "evaluation" in res.text
    else:
        # Looker has no evaluation users.
        assert res.rc == 0, res


def test_disabled_user_cannot_log_in(cli):
    res = cli.login("dave")
    assert res.rc in (EXIT["REJECTED"], EXIT["FORBIDDEN"]), res
    assert not cli.token_file.exists()


def test_logout(cli, api):
    assert cli.login("alice").rc == 0
    token = cli.stored_token()
    res = cli("logout")
    assert res.rc == 0, res
    assert not cli.token_file.exists()
    res = cli("whoami", env={"TOKENGATE_TOKEN": token})
    if api == "looker":
        assert res.rc == EXIT["TOKEN_INVALID"], res
    else:
        # insight has no logout call: the token lives until it expires,
        # and the CLI says so.
        assert res.rc == 0, res


def test_credentials_rotation_insight(tmp_path, devserver_factory):
    from conftest import Cli
    srv = devserver_factory()
    cli = Cli(tmp_path, srv.url, "insight")
    assert cli.login("alice").rc == 0
    res = cli("--json", "credentials", "show")
    assert res.rc == 0, res
    first_id = res.json()["credentials_id"]

    res = cli("--json", "credentials", "new",
              allow_secrets=ALL_ALLOWED)
    assert res.rc == 0, res
    doc = res.json()
    assert doc["credentials_id"] > first_id
    new_id, new_secret = doc["client_id"], doc["secret"]
    cli.extra_secrets.append(new_secret)

    # The previous pair is revoked, the new one works.
    res = cli.login("alice")
    assert res.rc == EXIT["REJECTED"], res
    res = cli("login", "--client-id", new_id,
              env={"TOKENGATE_SECRET": new_secret})
    assert res.rc == 0, res

    res = cli("credentials", "revoke")
    assert res.rc == 0, res
    res = cli("credentials", "show")
    assert res.rc == EXIT["NOT_FOUND"], res
    res = cli("login", "--client-id", new_id,
              env={"TOKENGATE_SECRET": new_secret})
    assert res.rc == EXIT["REJECTED"], res


ALL_ALLOWED = ()  # credentials new prints a fresh secret, not a demo one


def test_credentials_not_in_looker(tmp_path, devserver):
    from conftest import Cli
    cli = Cli(tmp_path, devserver.url, "looker")
    assert cli.login("alice").rc == 0
    res = cli("credentials", "show")
    assert res.rc == EXIT["INPUT"], res
    assert "looker" in res.err


def test_session_workspace_looker(tmp_path, devserver):
    from conftest import Cli
    cli = Cli(tmp_path, devserver.url, "looker")
    assert cli.login("alice").rc == 0
    res = cli("--json", "session")
    assert res.rc == 0, res
    assert res.json()["workspace_id"] == "production"
    res = cli("--json", "session", "--workspace", "dev")
    assert res.rc == 0, res
    assert res.json()["workspace_id"] == "dev"
    res = cli("--json", "session")
    assert res.json()["workspace_id"] == "dev"
    res = cli("--json", "session", "--workspace", "staging")
    assert res.rc == EXIT["VALIDATION"], res
    doc = res.json()
    assert doc["ok"] is False and doc["error"] == "TG_VALIDATION"
    assert doc["fields"][0]["field"] == "workspace_id"


def test_sudo_looker(tmp_path, devserver):
    from conftest import Cli
    cli = Cli(tmp_path, devserver.url, "looker")
    assert cli.login("alice").rc == 0
    out = tmp_path / "sudo-token"
    res = cli("sudo", "2", "--output", out)
    assert res.rc == 0, res
    assert "bob" in res.text
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    sudo_token = out.read_text().strip()
    res = cli("--json", "whoami", env={"TOKENGATE_TOKEN": sudo_token})
    assert res.rc == 0, res
    assert res.json()["email"] == "bob@example.com"
    res = cli("--json", "session", env={"TOKENGATE_TOKEN": sudo_token})
    assert res.rc == 0, res
    assert res.json()["sudo_user_id"] == "2"

    # Only admins may sudo; the user id must be digits.
    assert cli.login("bob").rc == 0
    res = cli("sudo", "1", "--output", tmp_path / "x")
    assert res.rc == EXIT["FORBIDDEN"], res
    assert cli.login("alice").rc == 0
    res = cli("sudo", "../1", "--output", tmp_path / "y")
    assert res.rc == EXIT["INPUT"], res


def test_sudo_not_in_insight(tmp_path, devserver):
    from conftest import Cli
    cli = Cli(tmp_path, devserver.url, "insight")
    assert cli.login("alice").rc == 0
    res = cli("sudo", "2", "--print-token")
    assert res.rc == EXIT["INPUT"], res


def test_check_healthy(cli):
    res = cli("check")
    assert res.rc == 0, res
    assert "FAIL" not in res.out


def test_check_reports_unreachable(cli, tmp_path):
    from conftest import free_port
    res = cli("--url", f"http://127.0.0.1:{free_port()}", "check")
    assert res.rc == EXIT["UNAVAILABLE"], res
    assert "FAIL" in res.out


def test_help_on_every_command(cli):
    for cmd in ("login", "whoami", "profile", "logout", "credentials",
                "session", "sudo", "check"):
        res = cli(cmd, "--help", config=False)
        assert res.rc == 0, res
        assert cmd in res.out
    res = cli("--help", config=False)
    assert res.rc == 0 and "credentials" in res.out
    res = cli("frobnicate", config=False)
    assert res.rc == EXIT["USAGE"], res


def test_bad_config_names_the_key(cli):
    cli.write_config(url="http://127.0.0.1:1", api="insight", timeuot="5")
    res = cli("whoami")
    assert res.rc == EXIT["CONFIG"], res
    assert "timeuot" in res.err and ":3" in res.err


def test_plain_http_to_remote_host_refused(cli):
    res = cli("--url", "http://bi.example.com", "check")
    assert res.rc == EXIT["CONFIG"], res
    assert "http" in res.err


def test_denied_looker_login_leaves_no_live_token(tmp_path, devserver):
    """A login the rules deny stores nothing and ends the token it got."""
    from conftest import Cli
    cli = Cli(tmp_path, devserver.url, "looker")
    devserver.reset_counters()
    res = cli("-o", "require_groups=nobody", "login", "--client-id",
              "bob-client", env={"TOKENGATE_SECRET": DEMO["bob"]["secret"]})
    assert res.rc == EXIT["FORBIDDEN"], res
    assert not cli.token_file.exists()
    assert devserver.counters()["logout"] == 1


def test_check_never_shows_proxy_credentials(cli):
    res = cli("-o", "proxy=http://proxyuser:Pr0xyPassw0rd@127.0.0.1:9",
              "check")
    assert "Pr0xyPassw0rd" not in res.text, res
    assert "127.0.0.1:9" in res.out


def test_bad_proxy_value_is_not_quoted(cli):
    res = cli("-o", "proxy=http://proxyuser:Pr0xyPassw0rd@127.0.0.1:9 x",
              "whoami")
    assert res.rc == EXIT["CONFIG"], res
    assert "Pr0xyPassw0rd" not in res.text


# ---------------------------------------------------------------------------
# What a newcomer meets first (issue 16): messages that say what was tried
# and what to do.
# ---------------------------------------------------------------------------

DEFAULT_CONFIG = "/etc/tokengate.conf"


def test_no_config_file_says_what_was_tried(cli):
    """Without --config, TOKENGATE_CONFIG or a readable /etc/tokengate.conf,
    the error says that no file was read (or which one was, without url)
    and suggests --url and --config."""
    res = cli("whoami", config=False)
    assert res.rc == EXIT["CONFIG"], res
    assert "url is not set" in res.err, res
    assert "--url URL" in res.err and "--config FILE" in res.err, res
    if not os.path.exists(DEFAULT_CONFIG):
        assert "no configuration file was read" in res.err, res
        assert f"{DEFAULT_CONFIG} does not exist" in res.err, res
    elif os.access(DEFAULT_CONFIG, os.R_OK):
        assert f"{DEFAULT_CONFIG} has no url line" in res.err, res
    else:
        assert f"{DEFAULT_CONFIG} is not readable by you" in res.err, res


def test_config_file_without_url_is_named(cli):
    """A file that was read but has no url is named, with the option or
    variable that named it."""
    cli.write_config(api="looker")
    res = cli("whoami")
    assert res.rc == EXIT["CONFIG"], res
    assert f"{cli.config} (named by --config) has no url line" in res.err, res
    assert "--url URL" in res.err, res
    res = cli("whoami", config=False,
              env={"TOKENGATE_CONFIG": str(cli.config)})
    assert res.rc == EXIT["CONFIG"], res
    assert f"{cli.config} (named by TOKENGATE_CONFIG) has no url line" \
        in res.err, res


def test_missing_config_file_names_its_origin(cli, tmp_path):
    missing = tmp_path / "no-such.conf"
    res = cli("whoami", config=False, env={"TOKENGATE_CONFIG": str(missing)})
    assert res.rc == EXIT["CONFIG"], res
    assert str(missing) in res.err, res
    assert "(the file named by TOKENGATE_CONFIG)" in res.err, res
    res = cli("--config", missing, "whoami", config=False)
    assert "(the file named by --config)" in res.err, res


def test_token_for_the_other_api_says_the_api_differs(cli, api):
    """The same server, the other flavor: the message says the API differs
    (not that the server does) and how to use the stored token."""
    assert cli.login("alice").rc == 0
    other = "looker" if api == "insight" else "insight"
    res = cli("--api", other, "whoami")
    assert res.rc == EXIT["INPUT"], res
    assert f"stored token is for the {api} API of this server, not the " \
        f"{other} API" in res.err, res
    assert f"--api {api}" in res.err, res
    assert "not this server" not in res.err, res


def test_token_for_another_server_names_it(cli, devserver_factory, api):
    assert cli.login("alice").rc == 0
    other = devserver_factory()
    res = cli("--url", other.url, "whoami")
    assert res.rc == EXIT["INPUT"], res
    stored = json.loads(cli.token_file.read_text())["url"]
    assert f"stored token is for {stored} (api {api}), not this server" \
        in res.err, res


def test_short_version_option(cli):
    """-V is --version, as for tokengate-devserver."""
    long = cli("--version", config=False)
    short = cli("-V", config=False)
    assert long.rc == 0 and short.rc == 0, (long, short)
    assert short.out == long.out and short.out.startswith("tokengate "), short
    assert "-V, --version" in cli("--help", config=False).out


def test_credentials_values_are_aligned(tmp_path, devserver):
    """credentials show and new print their values in one column (new
    prints the fresh secret: nothing the runner knows to look for)."""
    from conftest import Cli
    cli = Cli(tmp_path, devserver.url, "insight")
    assert cli.login("alice").rc == 0
    for action in ("show", "new"):
        res = cli("credentials", action)
        assert res.rc == 0, res
        lines = res.out.splitlines()
        labels = [line.split(":", 1)[0] for line in lines]
        assert "credentials id" in labels and "created" in labels, res
        columns = {len(line) - len(line.split(":", 1)[1].lstrip())
                   for line in lines}
        assert len(columns) == 1, f"values not aligned:\n{res.out}"


def embed_get(url):
    """GET a signed embed URL at the devserver (no redirect following)."""
    parts = urllib.parse.urlsplit(url)
    assert parts.hostname == "127.0.0.1"
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("GET", parts.path + "?" + parts.query)
        return conn.getresponse().status
    finally:
        conn.close()


EMBED = ["--path", "/embed/dashboards/42", "--user-id", "user-57",
         "--permission", "access_data", "--model", "thelook"]
DEMO_EMBED_SECRET = "looker-embed-secret-DEMO-0001"


def test_local_embed_signing_needs_no_url(cli, devserver):
    """embed-url --secret-stdin signs locally: no configuration at all is
    needed, and the URL is one the devserver accepts."""
    cli.extra_secrets.append(DEMO_EMBED_SECRET)
    res = cli("embed-url", "--host", devserver.url, *EMBED,
              "--secret-stdin", input=DEMO_EMBED_SECRET + "\n", config=False)
    assert res.rc == 0, res
    url = res.out.strip()
    assert url.startswith(devserver.url + "/login/embed/"), res
    assert embed_get(url) == 302
    # A config file without url is fine too.
    cli.write_config(api="looker")
    res = cli("embed-url", "--host", devserver.url, *EMBED,
              "--secret-stdin", input=DEMO_EMBED_SECRET + "\n")
    assert res.rc == 0, res


def test_embed_signing_still_checks_what_it_uses(cli, devserver):
    """Signing by the server needs the url; an API chosen as insight is
    refused; any other configuration error still stops local signing."""
    cli.extra_secrets.append(DEMO_EMBED_SECRET)
    res = cli("embed-url", "--host", devserver.url, *EMBED, "--server",
              config=False)
    assert res.rc == EXIT["CONFIG"], res
    assert "url is not set" in res.err, res
    res = cli("--api", "insight", "embed-url", "--host", devserver.url,
              *EMBED, "--secret-stdin", input=DEMO_EMBED_SECRET + "\n",
              config=False)
    assert res.rc == EXIT["INPUT"], res
    assert "looker" in res.err, res
    cli.write_config(api="looker", timeuot="5")
    res = cli("embed-url", "--host", devserver.url, *EMBED, "--secret-stdin",
              input=DEMO_EMBED_SECRET + "\n")
    assert res.rc == EXIT["CONFIG"], res
    assert "timeuot" in res.err, res


def check_in_private_dev(cli, syslog_socket=None):
    """tokengate --json check in a mount namespace whose /dev has no log
    socket, or the given socket bound at /dev/log (an overlay on /dev: the
    machine's /dev is not touched).  Needs root, like test_sshd.py."""
    if os.geteuid() != 0:
        pytest.fail("the syslog check tests need root (a private /dev in a "
                    "mount namespace)")
    unshare = shutil.which("unshare")
    assert unshare, "unshare (util-linux) is missing"
    ovl = cli.tmp / f"dev-{time.monotonic_ns()}"
    ovl.mkdir()
    script = (
        'set -e; mount -t tmpfs tmpfs "$OVL"; mkdir "$OVL/u" "$OVL/w"; '
        'mount -t overlay overlay '
        '-o "lowerdir=/dev,upperdir=$OVL/u,workdir=$OVL/w" /dev; '
        'rm -f /dev/log; '
        'if [ -n "$SOCK" ]; then touch /dev/log; '
        'mount --bind "$SOCK" /dev/log; fi; exec "$@"')
    env = cli.env({"OVL": str(ovl), "SOCK": str(syslog_socket or "")})
    cmd = [unshare, "--mount", "--propagation", "private", "sh", "-c",
           script, "sh", binary("cli/tokengate"), "--config",
           str(cli.config), "--json", "check"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                          timeout=60)
    assert "AddressSanitizer" not in proc.stderr, proc.stderr
    steps = {s["step"]: s for s in json.loads(proc.stdout)["steps"]}
    return proc, steps


def test_check_says_when_syslog_is_unreachable(cli):
    """The PAM module logs only to syslog: check warns when /dev/log takes
    no connection, and still exits 0 (the CLI does not need it)."""
    proc, steps = check_in_private_dev(cli)
    assert proc.returncode == 0, proc
    assert steps["syslog"]["status"] == "WARN", steps
    assert "/dev/log" in steps["syslog"]["message"], steps
    assert "journalctl" in steps["syslog"]["hint"], steps


def test_check_says_when_syslog_is_reachable(cli):
    sock_path = cli.tmp / "log.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(sock_path))
        proc, steps = check_in_private_dev(cli, sock_path)
    assert proc.returncode == 0, proc
    assert steps["syslog"]["status"] == "OK", steps
    # Also after a failed step: syslog does not depend on the server.
    cli.write_config(url="http://127.0.0.1:1", api=cli.api)
    proc, steps = check_in_private_dev(cli)
    assert proc.returncode == EXIT["UNAVAILABLE"], proc
    assert steps["syslog"]["status"] == "WARN", steps


# ------------------------------------------------------ the server's wait

@pytest.mark.parametrize("status, said", [
    (429, "retry after 27 s"),
    (503, "server busy: retry in 27 s"),
])
def test_cli_prints_the_servers_wait(cli, devserver, status, said):
    """A 429/503 with Retry-After: the message says how long to wait (the
    CLI keeps no back-off of its own: one call, one answer)."""
    devserver.fault(endpoint="*", status=status, retry_after="27", count=1)
    res = cli.login()
    assert res.rc != 0, res
    assert said in res.err, res
