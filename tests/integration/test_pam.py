# SPDX-License-Identifier: MIT
"""pam_tokengate.so through a real libpam (pam_start_confdir, service files
in tmp_path), against the devserver, both flavors: every phase, every flag,
every PAM code, the PAM side of the fault matrix, the host-process rules
(no network call for local rejections, one connection per login, no
environment influence, only pam_sm_* exported, no leaks).

Each driver run is checked for secrets in its output and in everything the
module logged (pamlib.PamHarness.check_clean).  The services use the
"[default=ok]" control, so the codes seen are the module's own.
"""
import json
import os
import pwd
import shutil
import socket
import stat
import subprocess
import time
import urllib.request

import pytest

from conftest import fetch_token, free_port
from pamlib import (GROUPS, PAM, SSHD_FAKE_PASSWORD, ConnCounter, PamHarness,
                    creds, fingerprint, is_asan, live_tokens,
                    looker_get, make_pki, module_path, rotate_credentials)


@pytest.fixture
def pam(tmp_path, devserver, api):
    harness = PamHarness(tmp_path, devserver, api)
    yield harness
    # Nothing the module wrote may hold a secret or be readable by others.
    for d in (harness.state_dir, harness.offline_dir):
        for f in d.iterdir():
            st = f.lstat()
            assert stat.S_ISREG(st.st_mode), f
            assert stat.S_IMODE(st.st_mode) & 0o077 == 0, \
                f"{f} is mode {oct(st.st_mode)}"
            assert st.st_uid == 0, f
            data = f.read_bytes()
            for secret in harness.secrets:
                assert secret.encode() not in data, f"secret in {f}"
    logs = harness.all_logs()
    for secret in harness.secrets:
        assert secret not in logs


def no_requests(devserver):
    counters = devserver.counters()
    assert sum(counters.values()) == 0, counters


# ---------------------------------------------------------------- auth


def test_token_login(pam, devserver):
    """A bearer token as the password: one validation call, no token call,
    a log line with its fingerprint, and a root-only state file."""
    pam.service()
    token = pam.token("alice")
    devserver.reset_counters()
    res = pam.run("alice", token)
    assert res.rc() == PAM["SUCCESS"], res.why
    c = devserver.counters()
    assert c["token"] == 0 and c["validate"] + c["profile"] == 1, c
    assert f"fp={fingerprint(token)}" in res.log_text, res.why
    assert pam.state_file("alice").exists()


def test_credentials_login_is_two_calls_on_one_connection(pam, devserver):
    pam.service()
    devserver.reset_counters()
    res = pam.run("alice", creds("alice"))
    assert res.rc() == PAM["SUCCESS"], res.why
    c = devserver.counters()
    assert c["token"] == 1, c
    assert c["validate"] + c["profile"] == 1, c
    assert c["connections"] == 1, c
    assert sum(v for k, v in c.items() if k != "connections") == 2, c


def test_wrong_secret(pam):
    pam.service()
    res = pam.run("alice", "alice-client:not-the-secret-0001")
    assert res.rc() == PAM["AUTH_ERR"], res.why
    assert res.logged("TG_REJECTED", "reject"), res.why


def test_unknown_client_id(pam):
    pam.service()
    res = pam.run("alice", "nobody-client:whatever-secret-0001")
    assert res.rc() == PAM["AUTH_ERR"], res.why


def test_invalid_token(pam):
    pam.service()
    res = pam.run("alice", "A" * 43)
    assert res.rc() == PAM["AUTH_ERR"], res.why
    assert res.logged("TG_TOKEN_INVALID", "invalid", "expired"), res.why


def test_expired_token(pam, devserver):
    pam.service()
    token = pam.token("alice")
    devserver.advance_clock(7200)
    res = pam.run("alice", token)
    assert res.rc() == PAM["AUTH_ERR"], res.why
    assert res.logged("TG_TOKEN_INVALID", "invalid", "expired"), res.why


def test_revoked_credentials(pam, devserver):
    """Rotating the pair (Insight credentials API; the devserver shares
    credentials between the flavors) kills the old pair at once."""
    pam.service()
    token = fetch_token(devserver, "insight", "alice")
    pam.add_secret(token)
    client_id, secret = rotate_credentials(devserver, token)
    pam.add_secret(secret)
    res = pam.run("alice", creds("alice"))
    assert res.rc() == PAM["AUTH_ERR"], res.why
    res = pam.run("alice", f"{client_id}:{secret}")
    assert res.rc() == PAM["SUCCESS"], res.why


def test_identity_bound_to_another_user(pam):
    """bob's credentials or token do not open alice's account."""
    pam.service()
    res = pam.run("alice", creds("bob"))
    assert res.rc() == PAM["AUTH_ERR"], res.why
    assert res.logged("TG_IDENTITY", "bind", "bound", "match"), res.why
    res = pam.run("alice", pam.token("bob"))
    assert res.rc() == PAM["AUTH_ERR"], res.why
    assert not pam.state_file("alice").exists()


def test_user_map_file_binding(pam):
    """user_map_file maps an identity to a local name of any shape."""
    mapf = pam.write_map({"alice@example.com": "tg-local-a"})
    pam.service(args=["user_attribute=email", f"user_map_file={mapf}"])
    res = pam.run("tg-local-a", creds("alice"))
    assert res.rc() == PAM["SUCCESS"], res.why
    res = pam.run("alice", creds("alice"))
    assert res.rc() == PAM["AUTH_ERR"], res.why
    # bob has no entry: not bound to anyone.
    res = pam.run("bob", creds("bob"))
    assert res.rc() == PAM["AUTH_ERR"], res.why


@pytest.mark.parametrize("api", ["insight"])
def test_cn_binding_and_state_expiry_do_not_depend_on_rules(pam, devserver):
    """One token, one identity (issue 12): user_attribute=cn binds alice by
    auth/user's cn with and without a group rule (a rule makes the module
    ask auth/user and auth/currentuser, not currentuser alone, whose
    display name would bind someone else or no one), and the state file
    keeps the token's own expiry either way (not token_max_age)."""
    pam.service("plain", args=["user_attribute=cn"])
    pam.service("ruled", args=["user_attribute=cn",
                               f"require_groups={GROUPS['insight']['admins']}"])
    body = json.dumps({"clientId": "alice-client",
                       "secret": creds("alice").split(":", 1)[1],
                       "maxAge": 120}).encode()
    req = urllib.request.Request(
        devserver.url + "/insightservices/rest/v1/auth/token", data=body,
        headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        tok = r.read().decode().strip().strip('"')
    pam.add_secret(tok)
    states = {}
    for service in ("plain", "ruled"):
        devserver.reset_counters()
        res = pam.run("alice", tok, service=service)
        assert res.rc() == PAM["SUCCESS"], res.why
        states[service] = json.loads(pam.state_file("alice").read_text())
    c = devserver.counters()
    assert (c["validate"], c["profile"]) == (1, 1), c
    plain, ruled = states["plain"], states["ruled"]
    assert plain["identity"]["name"] == ruled["identity"]["name"] == "alice"
    assert plain["identity"]["id"] == ruled["identity"]["id"]
    assert plain["identity"]["email"] == ruled["identity"]["email"]
    assert plain["expires_at"] == ruled["expires_at"]
    assert plain["identity"]["expires_at"] == ruled["identity"]["expires_at"]
    assert plain["expires_at"] <= time.time() + 125


def test_group_rule_failing(pam, api):
    g = GROUPS[api]
    pam.service(args=[f"require_groups={g['admins']}"])
    res = pam.run("bob", creds("bob"))
    assert res.rc() == PAM["PERM_DENIED"], res.why
    assert res.logged(g["admins"], "TG_FORBIDDEN", "group"), res.why
    res = pam.run("alice", creds("alice"))
    assert res.rc() == PAM["SUCCESS"], res.why


def test_group_rule_all_mode(pam, api):
    """require_groups with a space needs PAM's [..] argument syntax."""
    g = GROUPS[api]
    pam.service("all-ok", args=[f"[require_groups={g['admins']} "
                                f"{g['analysts']}]",
                                "require_groups_mode=all"])
    pam.service("all-bad", args=[f"[require_groups={g['admins']} nobody]",
                                 "require_groups_mode=all"])
    pam.service("any-ok", args=[f"[require_groups=nobody {g['sales']}]"])
    assert pam.run("alice", creds("alice"), service="all-ok").rc() == 0
    res = pam.run("alice", creds("alice"), service="all-bad")
    assert res.rc() == PAM["PERM_DENIED"], res.why
    assert pam.run("bob", creds("bob"), service="any-ok").rc() == 0


def test_evaluation_user(pam, api):
    pam.service(args=["deny_evaluation=yes"])
    res = pam.run("carol", creds("carol"))
    if api == "insight":
        assert res.rc() == PAM["PERM_DENIED"], res.why
        assert res.logged("evaluation"), res.why
    else:
        # Looker has no evaluation users.
        assert res.rc() == PAM["SUCCESS"], res.why
    pam.service("allow-eval")
    assert pam.run("carol", creds("carol"), service="allow-eval").rc() == 0


def test_disabled_user(pam, api):
    """The devserver gives a disabled user no token (Insight: 401, Looker:
    403 "Account is disabled"): never success.  A 403 cannot be tied to the
    user (the pair may not be theirs): an existing state file of "dave"
    is left exactly as it was (pam_tokengate(8), RETURN VALUES)."""
    pam.service()
    # A state file for the local user "dave" first (bob's identity mapped
    # to it), so that "unchanged" means something.
    mapf = pam.write_map({"bob@example.com": "dave"})
    pam.service("mapped", args=["user_attribute=email",
                                f"user_map_file={mapf}"])
    res = pam.run("dave", creds("bob"), service="mapped")
    assert res.rc() == PAM["SUCCESS"], res.why
    before = pam.state_file("dave").read_bytes()
    res = pam.run("dave", creds("dave"))
    if api == "looker":
        assert res.rc() == PAM["PERM_DENIED"], res.why
    else:
        assert res.rc() in (PAM["AUTH_ERR"], PAM["PERM_DENIED"]), res.why
    assert res.module_logs(), res.why
    assert pam.state_file("dave").read_bytes() == before


@pytest.mark.parametrize("how", ["no-user", "empty-user"])
def test_no_pam_user(pam, devserver, how):
    pam.service()
    devserver.reset_counters()
    if how == "no-user":
        res = pam.run(password=creds("alice"), no_user=True, steps="auth,acct")
    else:
        res = pam.run("", creds("alice"), steps="auth,acct")
    assert res.rc("auth") == PAM["USER_UNKNOWN"], res.why
    assert res.rc("acct") == PAM["USER_UNKNOWN"], res.why
    no_requests(devserver)


def test_debug_and_quiet(pam):
    pam.service("dbg", args=["debug"])
    res = pam.run("alice", creds("alice"), service="dbg")
    assert res.rc() == PAM["SUCCESS"], res.why
    assert len(res.module_logs()) >= 2, res.why
    pam.service("quiet", args=["quiet"])
    res = pam.run("alice", "alice-client:not-the-secret-0001", service="quiet")
    assert res.rc() == PAM["AUTH_ERR"], res.why


# ---------------------------------------------------------------- system accounts

# One devserver identity whose email's local part is a system account
# (issue 12 item 6): the smallest users file that the devserver takes.
SYSTEM_SECRET = "daemon-secret-TEST-0070"
SYSTEM_USERS = {"users": [
    {"id": "u-daemon", "looker_id": "70", "username": "daemon",
     "email": "daemon@example.com", "client_id": "daemon-client",
     "client_secret": SYSTEM_SECRET},
]}


@pytest.fixture
def system_pam(tmp_path, devserver_factory, api):
    """A PamHarness against a devserver whose only user is
    daemon@example.com; the same after-checks as the pam fixture."""
    users = tmp_path / "system-users.json"
    users.write_text(json.dumps(SYSTEM_USERS))
    harness = PamHarness(tmp_path, devserver_factory("--users", str(users)),
                         api)
    harness.add_secret(SYSTEM_SECRET)
    yield harness
    for d in (harness.state_dir, harness.offline_dir):
        for f in d.iterdir():
            assert stat.S_IMODE(f.lstat().st_mode) & 0o077 == 0, f
    logs = harness.all_logs()
    for secret in harness.secrets:
        assert secret not in logs


def daemon_uid():
    uid = pwd.getpwnam("daemon").pw_uid
    assert 0 < uid < 1000, "these tests need the system account daemon"
    return uid


def test_system_account_is_not_bound_by_its_email(system_pam):
    """daemon@example.com inside email_domain does not log in as daemon
    (uid below min_uid, whose default is UID_MIN): credentials and token
    alike, and nothing is remembered for it."""
    daemon_uid()
    pam = system_pam
    pam.service(args=["email_domain=example.com"])
    res = pam.run("daemon", "daemon-client:" + SYSTEM_SECRET)
    assert res.rc() == PAM["AUTH_ERR"], res.why
    assert res.logged("TG_IDENTITY"), res.why
    assert res.logged("system account"), res.why
    tok = fetch_token(pam.devserver, pam.api, "daemon",
                      secret=SYSTEM_SECRET, client_id="daemon-client")
    pam.add_secret(tok)
    res = pam.run("daemon", tok)
    assert res.rc() == PAM["AUTH_ERR"], res.why
    assert not pam.state_file("daemon").exists()


def test_system_account_is_bound_by_an_explicit_map_line(system_pam):
    """A user_map_file line is the deliberate way in, as for root."""
    pam = system_pam
    mapf = pam.write_map({"daemon@example.com": "daemon"})
    pam.service(args=["email_domain=example.com", "user_attribute=email",
                      f"user_map_file={mapf}"])
    res = pam.run("daemon", "daemon-client:" + SYSTEM_SECRET)
    assert res.rc() == PAM["SUCCESS"], res.why
    assert pam.state_file("daemon").exists()


def test_min_uid_argument_sets_the_bar(system_pam):
    """min_uid is a key like any other: at daemon's uid it binds, one
    above it does not; a value out of range is a configuration error."""
    uid = daemon_uid()
    pam = system_pam
    pam.service("at", args=["email_domain=example.com", f"min_uid={uid}"])
    pam.service("above", args=["email_domain=example.com",
                               f"min_uid={uid + 1}"])
    pam.service("zero", args=["email_domain=example.com", "min_uid=0"])
    password = "daemon-client:" + SYSTEM_SECRET
    assert pam.run("daemon", password, service="at").rc() == PAM["SUCCESS"]
    res = pam.run("daemon", password, service="above")
    assert res.rc() == PAM["AUTH_ERR"], res.why
    res = pam.run("daemon", password, service="zero")
    assert res.rc() == PAM["SERVICE_ERR"], res.why
    assert res.logged("min_uid"), res.why


# ---------------------------------------------------------------- password


def test_prompt(pam):
    pam.service("plain", args=["prompt=Token:"])
    res = pam.run("alice", creds("alice"), service="plain")
    assert res.rc() == PAM["SUCCESS"], res.why
    assert [p["msg"] for p in res.prompts] == ["Token:"], res.why
    pam.service("spaced", args=["[prompt=BI token or id:secret: ]"])
    res = pam.run("alice", creds("alice"), service="spaced")
    assert res.rc() == PAM["SUCCESS"], res.why
    assert [p["msg"] for p in res.prompts] == \
        ["BI token or id:secret: "], res.why
    assert res.prompts[0]["style"] == "echo_off"


EXPOSE = "auth optional pam_exec.so expose_authtok quiet /bin/cat"


def test_use_first_pass(pam):
    """The token comes from PAM_AUTHTOK set by the module above (pam_exec
    with expose_authtok asks once and stores it); no second prompt, even
    when it is wrong."""
    pam.service(args=["use_first_pass"], before=[EXPOSE])
    res = pam.run("alice", None, authtok=creds("alice"))
    assert res.rc() == PAM["SUCCESS"], res.why
    assert len(res.prompts) == 1, res.why
    res = pam.run("alice", creds("alice"),
                  authtok="alice-client:not-the-secret-0001")
    assert res.rc() == PAM["AUTH_ERR"], res.why
    assert len(res.prompts) == 1, res.why


def test_try_first_pass(pam):
    pam.service(args=["try_first_pass"], before=[EXPOSE])
    res = pam.run("alice", None, authtok=creds("alice"))
    assert res.rc() == PAM["SUCCESS"], res.why
    assert len(res.prompts) == 1, res.why
    # A wrong PAM_AUTHTOK: asked again, and the answer is used.
    res = pam.run("alice", creds("alice"),
                  authtok="alice-client:not-the-secret-0001")
    assert res.rc() == PAM["SUCCESS"], res.why
    assert len(res.prompts) == 2, res.why


def test_password_token_forced(pam, devserver):
    pam.service(args=["password=token"])
    devserver.reset_counters()
    res = pam.run("alice", creds("alice"))
    assert res.rc() == PAM["AUTH_ERR"], res.why
    assert devserver.counters()["token"] == 0
    assert pam.run("alice", pam.token("alice")).rc() == PAM["SUCCESS"]


def test_password_credentials_forced(pam, devserver):
    pam.service(args=["password=credentials"])
    token = pam.token("alice")
    devserver.reset_counters()
    res = pam.run("alice", token)
    assert res.rc() == PAM["AUTH_ERR"], res.why
    no_requests(devserver)
    assert pam.run("alice", creds("alice")).rc() == PAM["SUCCESS"]


@pytest.mark.parametrize("password", [
    SSHD_FAKE_PASSWORD,                 # sshd: invalid or denied user
    SSHD_FAKE_PASSWORD[:4],             # ... cut to the typed length
    SSHD_FAKE_PASSWORD[:1],
    "",                                 # empty
    "a" * (9 * 1024),                   # > 8 KiB
    "alice-client:alice-secret\x01DEMO",  # control bytes
    "tok\x1ben-with-escape",
    "alice-client:alice\nsecret",
    "alice-client:alice\rsecret",
], ids=["fake", "fake4", "fake1", "empty", "9KiB", "ctl1", "esc", "lf", "cr"])
def test_local_rejection_makes_no_server_call(pam, devserver, password):
    pam.service()
    devserver.reset_counters()
    res = pam.run("alice", password)
    assert res.rc() == PAM["AUTH_ERR"], res.why
    no_requests(devserver)
    assert res.module_logs(), res.why


def test_fingerprint_only_for_accepted_tokens(pam):
    """fp= (32 bits of SHA-256) is logged only for tokens the server
    accepted: never for input refused locally or rejected by the server,
    which may be a mistyped Unix password."""
    pam.service()
    for pw in ("hunter2!", "Sommer2024", "A" * 43):
        res = pam.run("alice", pw)
        assert res.rc() == PAM["AUTH_ERR"], res.why
        assert res.module_logs(), res.why
        assert "fp=" not in res.log_text, res.why
        assert fingerprint(pw) not in res.log_text, res.why
    token = pam.token("alice")
    res = pam.run("alice", token)
    assert res.rc() == PAM["SUCCESS"], res.why
    assert f"fp={fingerprint(token)}" in res.log_text, res.why


# ---------------------------------------------------------------- account


def test_account_from_state_file(pam):
    """sshd runs auth and account in different processes (and skips auth
    for public keys): account reads the state file a successful auth
    wrote, in another process."""
    pam.service()
    pam.service("strict", account_args=["[require_groups=nobody]"])
    res = pam.run("alice", creds("alice"), steps="auth")
    assert res.rc() == PAM["SUCCESS"], res.why
    st = pam.state_file("alice").stat()
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
    res = pam.run("alice", None, steps="acct")
    assert res.rc() == PAM["SUCCESS"], res.why
    res = pam.run("alice", None, steps="acct", service="strict")
    assert res.rc() == PAM["PERM_DENIED"], res.why
    assert res.logged("nobody", "group", "TG_FORBIDDEN"), res.why


def test_denied_auth_is_not_user_unknown(pam):
    """A denial in auth never turns the user into "not ours": the state
    file becomes a denied record (with the fresh identity and the reason),
    account refuses on it with PAM_PERM_DENIED in every service, and only a
    later successful auth replaces it.  (Deleting the state file made
    account answer PAM_USER_UNKNOWN, which [user_unknown=ignore] stacks let
    through with a public key.)"""
    pam.service()
    pam.service("strict", args=["[require_groups=nobody]"])
    assert pam.run("alice", creds("alice")).rc() == PAM["SUCCESS"]
    res = pam.run("alice", None, steps="acct", service="strict")
    assert res.rc() == PAM["PERM_DENIED"], res.why
    res = pam.run("alice", creds("alice"), service="strict")
    assert res.rc() == PAM["PERM_DENIED"], res.why
    assert pam.state_file("alice").exists()
    doc = json.loads(pam.state_file("alice").read_text())
    assert "nobody" in doc["denied"], doc
    for service in ("strict", "tg"):
        res = pam.run("alice", None, steps="acct", service=service)
        assert res.rc() == PAM["PERM_DENIED"], res.why
        assert res.logged("denied at its last login"), res.why
    # A later successful auth replaces the record.
    assert pam.run("alice", creds("alice")).rc() == PAM["SUCCESS"]
    assert "denied" not in json.loads(pam.state_file("alice").read_text())
    res = pam.run("alice", None, steps="acct")
    assert res.rc() == PAM["SUCCESS"], res.why


def test_denied_auth_without_prior_state(pam):
    """A user denied at their first login is refused by account, not
    "unknown"."""
    pam.service("strict", args=["[require_groups=nobody]"])
    res = pam.run("bob", creds("bob"), service="strict")
    assert res.rc() == PAM["PERM_DENIED"], res.why
    res = pam.run("bob", None, steps="acct", service="strict")
    assert res.rc() == PAM["PERM_DENIED"], res.why


def test_denied_record_that_cannot_be_written_still_denies(pam):
    """When the denied record cannot be written (here: RLIMIT_FSIZE=0, as a
    full disk or a hostile caller's limit would do), the state file is
    emptied in place, which account refuses; deleting it would have made the
    user "not ours"."""
    pam.service()
    pam.service("strict", args=["[require_groups=nobody]"])
    assert pam.run("alice", creds("alice")).rc() == PAM["SUCCESS"]
    res = pam.run("alice", creds("alice"), service="strict", fsize_zero=True)
    assert res.rc() == PAM["PERM_DENIED"], res.why
    # (The syslog capture file cannot grow under the same limit.)
    assert pam.state_file("alice").exists()
    assert pam.state_file("alice").stat().st_size == 0
    res = pam.run("alice", None, steps="acct")
    assert res.rc() == PAM["PERM_DENIED"], res.why


def test_account_in_the_same_process(pam):
    pam.service()
    res = pam.run("alice", creds("alice"), steps="auth,acct")
    assert res.codes == {"auth": "SUCCESS", "acct": "SUCCESS"}, res.why


def test_account_without_state_unmanaged_user(pam, devserver):
    pam.service()
    devserver.reset_counters()
    res = pam.run("bob", None, steps="acct")
    assert res.rc() == PAM["USER_UNKNOWN"], res.why


def test_account_with_broken_config(pam):
    """A tokengate.conf that does not load (here: no url) must not lock out
    the users tokengate never logged in (root, key-based logins): account
    answers PAM_USER_UNKNOWN for them, which [user_unknown=ignore] stacks
    skip; a user with a state file stays refused (PAM_SERVICE_ERR)."""
    pam.service()
    pam.service("broken", base=False,
                args=[f"conf={pam.conf}", f"state_dir={pam.state_dir}"])
    assert pam.run("alice", creds("alice")).rc() == PAM["SUCCESS"]
    res = pam.run("bob", None, steps="acct", service="broken")
    assert res.rc() == PAM["USER_UNKNOWN"], res.why
    assert res.logged("configuration does not load", "PAM_USER_UNKNOWN"), \
        res.why
    res = pam.run("root", None, steps="acct", service="broken")
    assert res.rc() == PAM["USER_UNKNOWN"], res.why
    res = pam.run("alice", None, steps="acct", service="broken")
    assert res.rc() == PAM["SERVICE_ERR"], res.why
    assert res.logged("url"), res.why
    # Auth with the same broken config still fails closed.
    res = pam.run("bob", creds("bob"), service="broken")
    assert res.rc() == PAM["SERVICE_ERR"], res.why


def test_account_without_state_mapped_user(pam):
    mapf = pam.write_map({"bob@example.com": "bob"})
    common = ["user_attribute=email", f"user_map_file={mapf}"]
    pam.service("deny", args=common)
    pam.service("ignore", args=common + ["account_without_state=ignore"])
    pam.service("explicit-deny", args=common + ["account_without_state=deny"])
    res = pam.run("bob", None, steps="acct", service="deny")
    assert res.rc() == PAM["PERM_DENIED"], res.why
    res = pam.run("bob", None, steps="acct", service="explicit-deny")
    assert res.rc() == PAM["PERM_DENIED"], res.why
    res = pam.run("bob", None, steps="acct", service="ignore")
    assert res.rc() == PAM["IGNORE"], res.why
    # Not in the map: still not ours.
    res = pam.run("carol", None, steps="acct", service="ignore")
    assert res.rc() == PAM["USER_UNKNOWN"], res.why


# A Looker token brought by the user has no known lifetime (GET /user does
# not say): the module can only bound it by token_max_age.
@pytest.mark.parametrize("api,how", [("insight", "credentials"),
                                     ("insight", "token"),
                                     ("looker", "credentials")])
def test_account_expired(tmp_path, devserver_factory, api, how):
    """A state file whose token has expired: PAM_ACCT_EXPIRED.  The server
    gives 2 s tokens (Insight clamps the maxAge asked for, and says so in
    /auth/user): the state must not outlive the token actually issued."""
    arg = "--insight-max-age" if api == "insight" else \
        "--looker-token-lifetime"
    srv = devserver_factory(arg, "2")
    pam = PamHarness(tmp_path, srv, api)
    pam.service()
    password = creds("alice") if how == "credentials" else pam.token("alice")
    res = pam.run("alice", password, steps="auth,acct")
    assert res.codes == {"auth": "SUCCESS", "acct": "SUCCESS"}, res.why
    time.sleep(3)
    res = pam.run("alice", None, steps="acct")
    assert res.rc() == PAM["ACCT_EXPIRED"], res.why


# ---------------------------------------------------------------- session


def test_session_exports_token(pam):
    pam.service("export", session_args=["export_token"])
    pam.service("noexport")
    res = pam.run("alice", creds("alice"), steps="auth,open",
                  service="export")
    assert res.codes == {"auth": "SUCCESS", "open": "SUCCESS"}, res.why
    # pam_driver shows the length of TOKENGATE_TOKEN, never its value.
    assert res.env.get("TOKENGATE_TOKEN") == 43, res.why
    token = pam.token("alice")
    res = pam.run("alice", token, steps="auth,open", service="export",
                  show_env_token=True, allow=[token])
    assert res.env.get("TOKENGATE_TOKEN") == token, res.why
    res = pam.run("alice", creds("alice"), steps="auth,open",
                  service="noexport")
    assert res.rc("open") == PAM["SUCCESS"], res.why
    assert "TOKENGATE_TOKEN" not in res.env, res.why


@pytest.mark.parametrize("api", ["looker"])
def test_session_workspace(pam, devserver):
    pam.service(session_args=["export_token", "workspace=dev"])
    devserver.reset_counters()
    res = pam.run("alice", creds("alice"), steps="auth,open",
                  show_env_token=True)
    assert res.codes == {"auth": "SUCCESS", "open": "SUCCESS"}, res.why
    assert devserver.counters()["session"] == 1
    token = res.env["TOKENGATE_TOKEN"]
    pam.add_secret(token)
    status, session = looker_get(devserver, "/session", token)
    assert status == 200 and session["workspace_id"] == "dev", session


@pytest.mark.parametrize("api", ["looker"])
def test_logout_on_close(pam, devserver):
    """The token the module got from credentials is dead after close; a
    token the user brought is left alone."""
    pam.service(session_args=["logout_on_close"])
    before = live_tokens(devserver)
    devserver.reset_counters()
    res = pam.run("alice", creds("alice"), steps="auth,open,close")
    assert res.codes == {"auth": "SUCCESS", "open": "SUCCESS",
                         "close": "SUCCESS"}, res.why
    assert devserver.counters()["logout"] == 1
    assert live_tokens(devserver) == before
    token = pam.token("alice")
    devserver.reset_counters()
    res = pam.run("alice", token, steps="auth,open,close")
    assert res.rc("close") == PAM["SUCCESS"], res.why
    assert devserver.counters()["logout"] == 0
    assert looker_get(devserver, "/user", token)[0] == 200


def test_setcred_and_chauthtok(pam):
    pam.service()
    res = pam.run("alice", creds("alice"), steps="auth,setcred,delcred")
    assert res.codes == {"auth": "SUCCESS", "setcred": "SUCCESS",
                         "delcred": "SUCCESS"}, res.why
    res = pam.run("alice", creds("alice"), steps="chauthtok")
    assert res.rc() == PAM["IGNORE"], res.why


# ---------------------------------------------------------------- config


def test_unknown_argument(pam):
    """Fails closed in every phase; account only for users tokengate
    logged in (a state file), others are not known to be ours."""
    pam.service(args=["frobnicate=1"])
    res = pam.run("alice", creds("alice"), steps="auth,acct,open")
    assert res.codes == {"auth": "SERVICE_ERR", "acct": "USER_UNKNOWN",
                         "open": "SERVICE_ERR"}, res.why
    assert res.logged("frobnicate"), res.why
    pam.service("good")
    assert pam.run("alice", creds("alice"), service="good").rc() == \
        PAM["SUCCESS"]
    res = pam.run("alice", None, steps="acct")
    assert res.rc() == PAM["SERVICE_ERR"], res.why


def test_unknown_argument_in_setcred_and_chauthtok(pam):
    """setcred and chauthtok check their arguments too (pam_tokengate(8):
    an unknown argument is PAM_SERVICE_ERR in every phase)."""
    pam.service(args=["frobnicate=1"])
    res = pam.run("alice", None, steps="setcred,chauthtok")
    assert res.codes == {"setcred": "SERVICE_ERR",
                         "chauthtok": "SERVICE_ERR"}, res.why
    assert res.logged("frobnicate"), res.why
    pam.service("good")
    res = pam.run("alice", None, steps="setcred,chauthtok", service="good")
    assert res.codes == {"setcred": "SUCCESS", "chauthtok": "IGNORE"}, \
        res.why


@pytest.mark.parametrize("how", ["world-writable", "group-writable",
                                 "not-root", "missing"])
def test_bad_config_file(pam, devserver, how):
    pam.conf.write_text(f"url = {devserver.url}\n")
    os.chmod(pam.conf, 0o600)
    if how == "world-writable":
        os.chmod(pam.conf, 0o666)
    elif how == "group-writable":
        os.chmod(pam.conf, 0o620)
    elif how == "not-root":
        os.chown(pam.conf, 65534, 65534)
    else:
        pam.conf.unlink()
    pam.service()
    devserver.reset_counters()
    res = pam.run("alice", creds("alice"))
    assert res.rc() == PAM["SERVICE_ERR"], res.why
    assert res.logged(str(pam.conf), "tokengate.conf"), res.why
    no_requests(devserver)


def test_config_file_is_used(pam, devserver):
    """Settings from conf=FILE apply; arguments override them."""
    pam.conf.write_text(f"url = {devserver.url}\napi = {pam.api}\n"
                        "require_groups = nobody\n")
    os.chmod(pam.conf, 0o600)
    pam.service("fromfile", base=False,
                args=[f"conf={pam.conf}", f"state_dir={pam.state_dir}"])
    res = pam.run("alice", creds("alice"), service="fromfile")
    assert res.rc() == PAM["PERM_DENIED"], res.why
    pam.service("override", base=False,
                args=[f"conf={pam.conf}", f"state_dir={pam.state_dir}",
                      "[require_groups=]"])
    res = pam.run("alice", creds("alice"), service="override")
    assert res.rc() == PAM["SUCCESS"], res.why


def test_on_unavailable(pam):
    pam.url = f"http://127.0.0.1:{free_port()}"
    pam.service("default")
    pam.service("ignore", args=["on_unavailable=ignore"])
    pam.service("fail", args=["on_unavailable=fail"])
    assert pam.run("alice", creds("alice"), service="default").rc() == \
        PAM["AUTHINFO_UNAVAIL"]
    assert pam.run("alice", creds("alice"), service="fail").rc() == \
        PAM["AUTHINFO_UNAVAIL"]
    res = pam.run("alice", creds("alice"), service="ignore")
    assert res.rc() == PAM["IGNORE"], res.why
    # Never on a rejection.
    pam.url = pam.devserver.url
    pam.service("ignore", args=["on_unavailable=ignore"])
    res = pam.run("alice", "alice-client:not-the-secret-0001",
                  service="ignore")
    assert res.rc() == PAM["AUTH_ERR"], res.why


# ---------------------------------------------------------------- offline


OFFLINE = ["offline_cache=3600", "offline_max_failures=3"]


def offline_service(pam, name="tg", extra=()):
    return pam.service(name, args=OFFLINE + [f"offline_dir={pam.offline_dir}",
                                             *extra])


def test_offline_login(pam, devserver):
    offline_service(pam)
    assert pam.run("alice", creds("alice")).rc() == PAM["SUCCESS"]
    assert any(pam.offline_dir.iterdir()), "nothing cached"
    devserver.stop()
    res = pam.run("alice", creds("alice"))
    assert res.rc() == PAM["SUCCESS"], res.why
    assert res.logged("offline"), res.why
    # Not for a user who never logged in online.
    assert pam.run("bob", creds("bob")).rc() == PAM["AUTHINFO_UNAVAIL"]


def test_offline_lockout(pam, devserver):
    offline_service(pam)
    assert pam.run("alice", creds("alice")).rc() == PAM["SUCCESS"]
    devserver.stop()
    for _ in range(3):
        res = pam.run("alice", "alice-client:not-the-secret-0001")
        assert res.rc() == PAM["AUTH_ERR"], res.why
    res = pam.run("alice", creds("alice"))
    assert res.rc() not in (PAM["SUCCESS"], PAM["IGNORE"]), res.why
    assert res.logged("lock", "failures", "too many"), res.why


def test_offline_not_used_when_server_rejects(pam, devserver):
    """Offline is for an unreachable server only: a rejection online is
    final, and the cached entry is not used afterwards."""
    offline_service(pam)
    assert pam.run("alice", creds("alice")).rc() == PAM["SUCCESS"]
    devserver.fault(endpoint="token", status=401)
    res = pam.run("alice", creds("alice"))
    assert res.rc() == PAM["AUTH_ERR"], res.why
    devserver.clear_faults()
    devserver.stop()
    res = pam.run("alice", creds("alice"))
    assert res.rc() not in (PAM["SUCCESS"], PAM["IGNORE"]), res.why


def cache_file(pam, user="alice"):
    return pam.offline_dir / f"{user}.cache"


def test_offline_entry_kept_on_someone_elses_rejection(pam, devserver):
    """Typing a wrong pair at alice's prompt does not remove her offline
    entry: only a rejection of the very secret the entry holds does (401
    and 403 alike)."""
    offline_service(pam)
    assert pam.run("alice", creds("alice")).rc() == PAM["SUCCESS"]
    before = cache_file(pam).read_bytes()
    for pw in ("alice-client:not-the-secret-0001",
               "nobody-client:whatever-secret-0001", creds("bob")):
        res = pam.run("alice", pw)
        assert res.rc() == PAM["AUTH_ERR"], res.why
        assert cache_file(pam).read_bytes() == before, pw
    devserver.fault(endpoint="token", status=403)
    res = pam.run("alice", "alice-client:not-the-secret-0001")
    assert res.rc() == PAM["PERM_DENIED"], res.why
    assert cache_file(pam).read_bytes() == before
    # The server refuses alice's own pair: the entry goes.
    res = pam.run("alice", creds("alice"))
    assert res.rc() == PAM["PERM_DENIED"], res.why
    assert not cache_file(pam).exists()
    assert res.logged("entry removed"), res.why
    devserver.clear_faults()
    assert pam.run("alice", creds("alice")).rc() == PAM["SUCCESS"]
    devserver.fault(endpoint="token", status=401)
    res = pam.run("alice", creds("alice"))
    assert res.rc() == PAM["AUTH_ERR"], res.why
    assert not cache_file(pam).exists()


def test_offline_guess_counted_before_it_is_checked(pam, devserver):
    """A guess whose failure cannot be counted (RLIMIT_FSIZE=0, as with
    "ulimit -f 0" before su) is not checked at all: not even the right
    password gets in, and the counter cannot be bypassed."""
    offline_service(pam)
    assert pam.run("alice", creds("alice")).rc() == PAM["SUCCESS"]
    devserver.stop()
    for _ in range(4):
        res = pam.run("alice", "alice-client:not-the-secret-0001",
                      fsize_zero=True)
        assert res.rc() == PAM["AUTHINFO_UNAVAIL"], res.why
    res = pam.run("alice", creds("alice"), fsize_zero=True)
    assert res.rc() not in (PAM["SUCCESS"], PAM["IGNORE"]), res.why
    assert json.loads(cache_file(pam).read_text())["failures"] == 0
    # Writable again: counted, and a right password resets the count.
    res = pam.run("alice", "alice-client:not-the-secret-0001")
    assert res.rc() == PAM["AUTH_ERR"], res.why
    assert json.loads(cache_file(pam).read_text())["failures"] == 1
    res = pam.run("alice", creds("alice"))
    assert res.rc() == PAM["SUCCESS"], res.why
    assert json.loads(cache_file(pam).read_text())["failures"] == 0


def test_offline_never_for_tokens(pam, devserver):
    offline_service(pam)
    token = pam.token("alice")
    assert pam.run("alice", token).rc() == PAM["SUCCESS"]
    devserver.stop()
    assert pam.run("alice", token).rc() == PAM["AUTHINFO_UNAVAIL"]


def test_offline_off_by_default(pam, devserver):
    pam.service()
    assert pam.run("alice", creds("alice")).rc() == PAM["SUCCESS"]
    devserver.stop()
    assert pam.run("alice", creds("alice")).rc() == PAM["AUTHINFO_UNAVAIL"]
    assert not any(pam.offline_dir.iterdir())


# ---------------------------------------------------------------- faults


FAULTS = {
    # id: (fault rule or None, extra module args, words naming the cause)
    "F3-hang": ({"endpoint": "validate", "hang": True}, ["timeout=1"],
                ["TG_TIMEOUT", "timed out", "timeout"]),
    "F4-slow": ({"endpoint": "validate", "delay_ms": 3000}, ["timeout=1"],
                ["TG_TIMEOUT", "timed out", "timeout"]),
    "F5-500": ({"endpoint": "validate", "status": 500}, [], ["500"]),
    "F5-502": ({"endpoint": "token", "status": 502}, [], ["502"]),
    "F5-503": ({"endpoint": "validate", "status": 503, "body": False}, [],
               ["503"]),
    "F5-504": ({"endpoint": "validate", "status": 504}, [], ["504"]),
    "F6-429": ({"endpoint": "validate", "retry_after": "5"}, [],
               ["TG_RATE_LIMITED", "429", "rate"]),
    "F6-429-huge": ({"endpoint": "token", "retry_after": "999999"}, [],
                    ["TG_RATE_LIMITED", "429", "rate"]),
    "F8-malformed": ({"endpoint": "validate", "malformed": True}, [],
                     ["TG_PROTOCOL", "json", "malformed"]),
    "F8-no-uid": ({"endpoint": "validate", "body": '{"mail":""}'}, [],
                  ["TG_PROTOCOL", "uid", "missing", "json"]),
    "F9-truncated": ({"endpoint": "validate", "truncate": True}, [],
                     ["TG_PROTOCOL", "TG_UNAVAILABLE", "truncat", "partial",
                      "closed", "transfer"]),
    "F10-oversize": ({"endpoint": "validate", "oversize": 1 << 20},
                     ["max_response_bytes=65536"],
                     ["TG_PROTOCOL", "larger", "65536", "too large",
                      "oversize"]),
    "F11-content-type": ({"endpoint": "validate",
                          "content_type": "text/html"}, [],
                         ["text/html", "content-type", "content type"]),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_matrix(pam, devserver, fault):
    rule, extra, words = FAULTS[fault]
    pam.service(args=extra)
    # A login first: the fault must leave its state file as it was.
    assert pam.run("alice", creds("alice")).rc() == PAM["SUCCESS"]
    before = pam.state_file("alice").read_bytes()
    devserver.fault(**rule)
    res = pam.run("alice", creds("alice"), timeout=30)
    assert res.rc() == PAM["AUTHINFO_UNAVAIL"], res.why
    assert res.logged(*words), res.why
    # Within the configured timeout (1 s or 5 s) plus a little.
    limit = 1 if "timeout=1" in extra else 5
    assert res.elapsed < limit + 2.5, res.why
    assert pam.state_file("alice").read_bytes() == before


def test_f1_connection_refused(pam):
    pam.url = f"http://127.0.0.1:{free_port()}"
    pam.service()
    res = pam.run("alice", creds("alice"))
    assert res.rc() == PAM["AUTHINFO_UNAVAIL"], res.why
    assert res.logged("TG_UNAVAILABLE", "connect", "refused"), res.why


def test_f2_connect_black_hole(pam):
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    fillers = []
    try:
        for _ in range(8):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(lsock.getsockname())
            except BlockingIOError:
                pass
            fillers.append(s)
        pam.url = "http://127.0.0.1:%d" % lsock.getsockname()[1]
        pam.service(args=["connect_timeout=1", "timeout=2"])
        res = pam.run("alice", creds("alice"), timeout=30)
        assert res.rc() == PAM["AUTHINFO_UNAVAIL"], res.why
        assert res.elapsed < 2 + 2.5, res.why
        assert res.logged("TG_TIMEOUT", "timed out", "timeout",
                          "connect"), res.why
    finally:
        for s in fillers:
            s.close()
        lsock.close()


@pytest.mark.parametrize("endpoint", ["token", "validate"])
def test_f12_redirect_never_followed(pam, devserver, endpoint):
    target = ConnCounter()
    try:
        pam.service()
        devserver.fault(endpoint=endpoint, redirect=target.url + "/steal")
        res = pam.run("alice", creds("alice"))
        assert res.rc() == PAM["AUTHINFO_UNAVAIL"], res.why
        assert res.logged("redirect", "3xx", "302"), res.why
        assert target.connections == 0 and target.bytes == 0
    finally:
        target.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_harness(tmp_path, devserver_factory, pki, api):
    srv = devserver_factory("--tls-cert", pki / "good.pem", "--tls-key",
                            pki / "good.key")
    assert srv.url.startswith("https://"), srv.url
    return PamHarness(tmp_path, srv, api), srv


def test_f13_tls(tmp_path, devserver_factory, pki, api):
    """Untrusted CA: AUTHINFO_UNAVAIL naming TLS; the same server with its
    CA configured works (so the failure is the trust, nothing else)."""
    pam, _ = tls_harness(tmp_path, devserver_factory, pki, api)
    pam.service("untrusted")
    pam.service("trusted", args=[f"ca_file={pki / 'ca.pem'}"])
    res = pam.run("alice", creds("alice"), service="untrusted")
    assert res.rc() == PAM["AUTHINFO_UNAVAIL"], res.why
    assert res.logged("TG_TLS", "tls", "certificate", "ssl"), res.why
    res = pam.run("alice", creds("alice"), service="trusted")
    assert res.rc() == PAM["SUCCESS"], res.why


# ---------------------------------------------------------------- host rules


PROXY_VARS = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY",
              "ALL_PROXY", "all_proxy")


def test_environment_cannot_redirect(pam, devserver, tmp_path):
    """su and sudo run the module with the caller's environment: proxies
    and CA variables from it change nothing."""
    proxy = ConnCounter()
    bogus = tmp_path / "bogus-ca.pem"
    bogus.write_text("not a certificate\n")
    env = {v: proxy.url for v in PROXY_VARS}
    env.update({"NO_PROXY": "", "no_proxy": "", "SSL_CERT_FILE": str(bogus),
                "SSL_CERT_DIR": str(tmp_path), "CURL_CA_BUNDLE": str(bogus),
                "CURL_HOME": str(tmp_path), "HOME": str(tmp_path)})
    try:
        pam.service()
        res = pam.run("alice", creds("alice"), env=env)
        assert res.rc() == PAM["SUCCESS"], res.why
        assert proxy.connections == 0, "the login went through the proxy"
    finally:
        proxy.close()


def test_environment_cannot_add_trust_or_proxy_tls(tmp_path,
                                                   devserver_factory, pki,
                                                   api):
    pam, _ = tls_harness(tmp_path, devserver_factory, pki, api)
    proxy = ConnCounter()
    bogus = tmp_path / "bogus-ca.pem"
    bogus.write_text("not a certificate\n")
    try:
        # A configured CA plus a hostile environment: still works, direct.
        pam.service("trusted", args=[f"ca_file={pki / 'ca.pem'}"])
        env = {v: proxy.url for v in PROXY_VARS}
        env.update({"SSL_CERT_FILE": str(bogus), "CURL_CA_BUNDLE": str(bogus),
                    "SSL_CERT_DIR": str(tmp_path)})
        res = pam.run("alice", creds("alice"), service="trusted", env=env)
        assert res.rc() == PAM["SUCCESS"], res.why
        assert proxy.connections == 0
        # The environment cannot make an untrusted server trusted.
        pam.service("untrusted")
        env = {"SSL_CERT_FILE": str(pki / "ca.pem"),
               "CURL_CA_BUNDLE": str(pki / "ca.pem"),
               "SSL_CERT_DIR": str(pki)}
        res = pam.run("alice", creds("alice"), service="untrusted", env=env)
        assert res.rc() == PAM["AUTHINFO_UNAVAIL"], res.why
    finally:
        proxy.close()


def test_exports_only_pam_sm_symbols():
    out = subprocess.run(["nm", "-D", "--defined-only", module_path()],
                         capture_output=True, text=True, check=True).stdout
    names = sorted(line.split()[-1] for line in out.splitlines()
                   if line.strip())
    assert names, out
    bad = [n for n in names if not n.startswith("pam_sm_")]
    assert not bad, f"exported besides pam_sm_*: {bad}"
    for fn in ("authenticate", "setcred", "acct_mgmt", "open_session",
               "close_session", "chauthtok"):
        assert f"pam_sm_{fn}" in names, names


def test_module_is_never_unloaded():
    out = subprocess.run(["readelf", "-d", module_path()],
                         capture_output=True, text=True, check=True).stdout
    assert "NODELETE" in out, out


# ---------------------------------------------------------------- leaks


def leak_run(pam, *args, **kw):
    """Run under valgrind (default build) or with LeakSanitizer on (ASan
    build: the driver is instrumented and LSan reports at exit)."""
    if is_asan():
        env = kw.pop("env", {}) or {}
        opts = os.environ.get("ASAN_OPTIONS", "")
        env["ASAN_OPTIONS"] = (opts + ":" if opts else "") + "detect_leaks=1"
        res = pam.run(*args, env=env, timeout=300, **kw)
        assert "LeakSanitizer" not in res.err, res.why
        return res
    if shutil.which("valgrind") is None:
        pytest.fail("valgrind is needed for the leak tests of the default "
                    "build: run scripts/deps")
    res = pam.run(*args, valgrind=True, timeout=300, **kw)
    assert res.returncode == 0, res.valgrind[-5000:]
    assert "definitely lost" not in res.valgrind, res.valgrind[-5000:]
    return res


@pytest.mark.parametrize("api", ["insight"])
def test_no_leak_over_1000_cycles(pam, devserver):
    """A thousand pam_start..pam_end cycles in one process, on the local
    rejection path (fast, no network)."""
    pam.service()
    devserver.reset_counters()
    res = leak_run(pam, "alice", SSHD_FAKE_PASSWORD,
                   steps="auth,acct,setcred,chauthtok", repeat=1000)
    assert res.doc["cycles"] == 1000
    assert res.rc("auth") == PAM["AUTH_ERR"], res.why
    no_requests(devserver)


def test_no_leak_over_real_logins(pam, devserver, api):
    pam.service(session_args=["export_token"]
                + (["logout_on_close"] if api == "looker" else []))
    devserver.reset_counters()
    res = leak_run(pam, "alice", creds("alice"),
                   steps="auth,acct,open,setcred,close", repeat=50)
    assert res.codes == {"auth": "SUCCESS", "acct": "SUCCESS",
                         "open": "SUCCESS", "setcred": "SUCCESS",
                         "close": "SUCCESS"}, res.why
    assert devserver.counters()["token"] == 50
