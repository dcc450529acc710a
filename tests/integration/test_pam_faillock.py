# SPDX-License-Identifier: MIT
"""The pam_faillock stack of pam_tokengate(8) ("Locking out after failed
logins"), through a real libpam (pam_start_confdir) with Linux-PAM's own
pam_faillock.so around pam_tokengate.so, against the devserver, both
flavors (issue 14: per-user lockout is pam_faillock's job, not ours).

pam_faillock counts only users of the passwd database: the login is the
system account daemon, bound to the devserver's daemon@example.com by an
explicit user_map_file line (test_pam.py's system_pam fixture).  The tally
lives in a private dir= in the test's tmp_path.
"""
import os
import subprocess

import pytest

from pamlib import PAM, module_path
# the fixtures and the devserver identity of the system-account tests
from test_pam import SYSTEM_SECRET, daemon_uid, system_pam  # noqa: F401

FAILLOCK_SO = "/lib/x86_64-linux-gnu/security/pam_faillock.so"
FAILLOCK = "/usr/sbin/faillock"


@pytest.fixture
def faillock_stack(system_pam, tmp_path):
    """The service "tg-faillock": pam_tokengate(8)'s example stack, with
    the tally in tmp_path/faillock, and "tg-faillock-outage", the same with
    authinfo_unavail=die on the pam_tokengate line.  Returns (harness,
    tally dir)."""
    for path in (FAILLOCK_SO, FAILLOCK):
        assert os.path.exists(path), \
            f"{path} is missing: install libpam-modules and libpam-modules-bin"
    daemon_uid()
    pam = system_pam
    tally = tmp_path / "faillock"
    tally.mkdir(mode=0o700)
    mapf = pam.write_map({"daemon@example.com": "daemon"})
    tg = " ".join(pam.base_args() + ["email_domain=example.com",
                                     "user_attribute=email",
                                     f"user_map_file={mapf}"])
    fl = f"deny=3 unlock_time=600 dir={tally}"
    for name, ctl in (("tg-faillock", "[success=1 default=bad]"),
                      ("tg-faillock-outage",
                       "[success=1 authinfo_unavail=die default=bad]")):
        (pam.confdir / name).write_text(f"""\
auth     requisite  pam_faillock.so preauth {fl}
auth     {ctl}  {module_path()} {tg}
auth     [default=die]  pam_faillock.so authfail {fl}
auth     sufficient  pam_faillock.so authsucc {fl}
auth     required  pam_deny.so
account  required  pam_faillock.so dir={tally}
account  required  {module_path()} {tg}
""")
    return pam, tally


def login(pam, secret):
    """One login as an application makes it: the account phase only after
    a successful authentication (pam_faillock's account phase clears the
    tally, as its authsucc does)."""
    res = pam.run("daemon", "daemon-client:" + secret,
                  service="tg-faillock", steps="auth")
    if res.rc("auth") == PAM["SUCCESS"]:
        res = pam.run("daemon", "daemon-client:" + secret,
                      service="tg-faillock", steps="auth,acct")
    return res


def calls(pam):
    c = pam.devserver.counters()
    return c["token"] + c["validate"] + c["profile"]


def test_three_failures_lock_without_server_calls(faillock_stack):
    pam, tally = faillock_stack
    good = login(pam, SYSTEM_SECRET)
    assert good.rc("auth") == PAM["SUCCESS"], good.why
    assert good.rc("acct") == PAM["SUCCESS"], good.why

    pam.devserver.reset_counters()
    for _ in range(3):
        res = login(pam, "wrong-secret-TEST-0001")
        assert res.rc("auth") == PAM["AUTH_ERR"], res.why
    asked = calls(pam)
    assert asked >= 3

    # locked: the right secret is refused before pam_tokengate runs
    res = login(pam, SYSTEM_SECRET)
    assert res.rc("auth") == PAM["AUTH_ERR"], res.why
    assert calls(pam) == asked

    out = subprocess.run([FAILLOCK, "--dir", str(tally), "--user", "daemon"],
                         capture_output=True, text=True, check=True).stdout
    # one record per failure, each naming the service
    assert sum("tg-faillock" in line for line in out.splitlines()) == 3, out

    subprocess.run([FAILLOCK, "--dir", str(tally), "--user", "daemon",
                    "--reset"], check=True)
    res = login(pam, SYSTEM_SECRET)
    assert res.rc("auth") == PAM["SUCCESS"], res.why
    assert calls(pam) > asked


def test_a_success_clears_the_count(faillock_stack):
    """authsucc: failures below deny are forgotten by a good login."""
    pam, tally = faillock_stack
    for _ in range(2):
        assert login(pam, "wrong-secret-TEST-0001").rc("auth") == \
            PAM["AUTH_ERR"]
    assert login(pam, SYSTEM_SECRET).rc("auth") == PAM["SUCCESS"]
    for _ in range(2):
        assert login(pam, "wrong-secret-TEST-0001").rc("auth") == \
            PAM["AUTH_ERR"]
    res = login(pam, SYSTEM_SECRET)
    assert res.rc("auth") == PAM["SUCCESS"], res.why


@pytest.mark.parametrize("service,recorded", [("tg-faillock", 1),
                                              ("tg-faillock-outage", 0)])
def test_outages_and_the_tally(faillock_stack, service, recorded):
    """With the plain stack an outage is a failure like any other; with
    authinfo_unavail=die on the pam_tokengate line it is not recorded."""
    pam, tally = faillock_stack
    pam.devserver.fault(status=503)
    res = pam.run("daemon", "daemon-client:" + SYSTEM_SECRET,
                  service=service, steps="auth")
    assert res.rc("auth") == PAM["AUTHINFO_UNAVAIL"], res.why
    out = subprocess.run([FAILLOCK, "--dir", str(tally), "--user", "daemon"],
                         capture_output=True, text=True, check=True).stdout
    assert sum(service + " " in line + " "
               for line in out.splitlines()[2:]) == recorded, out
