# SPDX-License-Identifier: MIT
"""pam_tokengate.so in front of a REAL OpenSSH sshd on loopback
(TOOLCHAIN.md section 11), both flavors: password logins with sshpass+ssh
and keyboard-interactive logins with paramiko.

This file changes the machine, and puts everything back:
  - test users tgtest-alice, tgtest-bob, tgtest-nomap (useradd; userdel -r);
  - /etc/pam.d/sshd-tgtest (sshd's PAM service is its program name, so a
    symlink TMP/sshd-tgtest -> /usr/sbin/sshd uses it; /etc/pam.d/sshd is
    never touched) and /etc/pam.d/tokengate-test (a plain pam_start
    application, like su or sudo);
  - /run/sshd when it was missing (sshd's privilege separation directory).
The last test checks that /etc/pam.d and the user databases are byte for
byte as before.  It needs root, sshd, ssh, sshpass and python3-paramiko
(scripts/deps installs them; CI runs as root): without them the tests FAIL,
they never skip.  sshd's own wtmp/lastlog records of the test logins are
the one trace left (OpenSSH cannot be told not to write them).
"""
import hashlib
import os
import pwd
import shutil
import signal
import subprocess
import time

import pytest

from conftest import ALL_SECRETS, Devserver, free_port
from pamlib import (GROUPS, PAM, PamHarness, creds, driver_path, fetch_token,
                    module_path, preload, sanitizer_env, is_asan)

SSHD = "/usr/sbin/sshd"
SERVICE = "sshd-tgtest"
SERVICE_FILE = f"/etc/pam.d/{SERVICE}"
APP_SERVICE_FILE = "/etc/pam.d/tokengate-test"
MARKER = "tokengate test user"
USERS = {"tgtest-alice": "alice@example.com",
         "tgtest-bob": "bob@example.com",
         "tgtest-nomap": None}
WATCHED = ["/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow",
           "/etc/subuid", "/etc/subgid"]


# ---------------------------------------------------------------- snapshot


def system_state():
    state = {}
    for root, dirs, files in os.walk("/etc/pam.d"):
        dirs.sort()
        for name in sorted(dirs + files):
            path = os.path.join(root, name)
            st = os.lstat(path)
            if os.path.islink(path):
                state[path] = ("link", os.readlink(path))
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    state[path] = (oct(st.st_mode), st.st_uid,
                                   hashlib.sha256(f.read()).hexdigest())
            else:
                state[path] = (oct(st.st_mode), st.st_uid)
    for path in WATCHED:
        if os.path.exists(path):
            with open(path, "rb") as f:
                state[path] = hashlib.sha256(f.read()).hexdigest()
    return state


def remove_leftovers():
    """Undo what a killed earlier run may have left: only our own users
    (by their GECOS marker) and our own service files."""
    for name in USERS:
        try:
            if pwd.getpwnam(name).pw_gecos == MARKER:
                subprocess.run(["userdel", "-r", "-f", name],
                               capture_output=True)
        except KeyError:
            pass
    for path in (SERVICE_FILE, APP_SERVICE_FILE):
        try:
            with open(path) as f:
                if "tokengate test service" in f.read():
                    os.unlink(path)
        except FileNotFoundError:
            pass


def require_tools():
    if os.geteuid() != 0:
        pytest.fail("test_sshd.py needs root (it creates users and a PAM "
                    "service); CI runs it as root")
    missing = [t for t in (SSHD, "ssh", "sshpass", "ssh-keygen", "useradd",
                           "userdel")
               if not shutil.which(t, path="/usr/sbin:/usr/bin:/sbin:/bin")]
    if missing:
        pytest.fail("openssh-server, openssh-client and sshpass are needed: "
                    f"run scripts/deps (missing: {' '.join(missing)})")
    try:
        import paramiko  # noqa: F401
    except ImportError:
        pytest.fail("python3-paramiko is needed: run scripts/deps")


@pytest.fixture(scope="module")
def snapshot():
    require_tools()
    remove_leftovers()
    return system_state()


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="class")
def users(snapshot):
    created = []
    try:
        for name in USERS:
            try:
                pwd.getpwnam(name)
                pytest.fail(f"user {name} already exists and is not ours")
            except KeyError:
                pass
            subprocess.run(["useradd", "-m", "-s", "/bin/sh", "-c", MARKER,
                            name], check=True, capture_output=True)
            created.append(name)
        yield list(created)
    finally:
        for name in created:
            subprocess.run(["userdel", "-r", "-f", name], capture_output=True)


@pytest.fixture(scope="class")
def privsep_dir(snapshot):
    made = not os.path.isdir("/run/sshd")
    if made:
        os.makedirs("/run/sshd", mode=0o755)
    yield
    if made:
        shutil.rmtree("/run/sshd", ignore_errors=True)


class Sshd:
    """A private sshd on a loopback port, with its PAM service installed in
    /etc/pam.d, against its own devserver."""

    def __init__(self, tmp, api):
        self.tmp = tmp
        self.api = api
        self.pid = None
        self.service_written = False
        self.devserver = Devserver(tmp, ())
        self.port = free_port()

    def start(self):
        tmp, api = self.tmp, self.api
        self.syslog = tmp / "syslog.log"
        self.log = tmp / "sshd.log"
        self.state = tmp / "state"
        self.state.mkdir(mode=0o700)
        conf = tmp / "tokengate.conf"
        conf.write_text("# sshd test\n")
        os.chmod(conf, 0o600)
        mapf = tmp / "users.map"
        mapf.write_text("".join(f"{v} {k}\n" for k, v in USERS.items() if v))
        os.chmod(mapf, 0o600)
        args = (f"url={self.devserver.url} api={api} conf={conf} "
                f"user_attribute=email user_map_file={mapf} "
                f"state_dir={self.state} require_groups="
                f"{GROUPS[api]['admins']} connect_timeout=2 timeout=5")
        mod = module_path()
        with open(SERVICE_FILE, "x") as f:
            self.service_written = True
            f.write("# tokengate test service (tests/integration/"
                    "test_sshd.py); removed when the test ends\n"
                    f"auth     required {mod} {args}\n"
                    f"account  required {mod} {args}\n"
                    f"session  required {mod} {args}\n"
                    "password required pam_deny.so\n")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(tmp / "hostkey")], check=True, capture_output=True)
        self.pidfile = tmp / "sshd.pid"
        (tmp / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\n"
            f"HostKey {tmp}/hostkey\nPidFile {self.pidfile}\n"
            "UsePAM yes\nPasswordAuthentication yes\n"
            "KbdInteractiveAuthentication yes\nPubkeyAuthentication no\n"
            "PermitRootLogin no\nAuthorizedKeysFile none\n"
            "AllowUsers tgtest-*\nMaxAuthTries 3\nLoginGraceTime 30\n"
            "PrintMotd no\nPrintLastLog no\nPermitUserEnvironment no\n"
            "X11Forwarding no\nAllowTcpForwarding no\nLogLevel VERBOSE\n")
        self.binary = tmp / SERVICE
        os.symlink(SSHD, self.binary)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
               "LD_PRELOAD": preload(), "TG_SYSLOG_FILE": str(self.syslog)}
        env.update(sanitizer_env())
        if is_asan():
            # sshd is not ours: its leaks are not our business.
            env["ASAN_OPTIONS"] = f"detect_leaks=0:log_path={tmp}/asan"
        check = subprocess.run([str(self.binary), "-t", "-f",
                                str(tmp / "sshd_config")], env=env,
                               capture_output=True, text=True)
        assert check.returncode == 0, f"sshd -t: {check.stderr}"
        subprocess.run([str(self.binary), "-f", str(tmp / "sshd_config"),
                        "-E", str(self.log)], env=env, check=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.pidfile.exists() and self.pidfile.read_text().strip():
                self.pid = int(self.pidfile.read_text())
                break
            time.sleep(0.05)
        assert self.pid, f"sshd did not start: {self.log.read_text()}"

    def stop(self):
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            for _ in range(100):
                try:
                    os.kill(self.pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            self.pid = None
        if self.service_written:
            try:
                os.unlink(SERVICE_FILE)
            except FileNotFoundError:
                pass
            self.service_written = False
        return self.devserver.stop()

    # ------------------------------------------------------------ clients

    def ssh_password(self, user, password, cmd="echo tg-ok-$(id -un)"):
        """ssh with PasswordAuthentication, the password fed by sshpass -e
        (from the environment, never argv)."""
        argv = ["sshpass", "-e", "ssh", "-F", "/dev/null",
                "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                "-o", "PreferredAuthentications=password",
                "-o", "PubkeyAuthentication=no",
                "-o", "NumberOfPasswordPrompts=1", "-o", "ConnectTimeout=10",
                "-p", str(self.port), f"{user}@127.0.0.1", cmd]
        env = {"PATH": "/usr/bin:/bin", "SSHPASS": password,
               "HOME": str(self.tmp)}
        return subprocess.run(argv, env=env, capture_output=True, text=True,
                              timeout=60)

    def ssh_kbdint(self, user, password, cmd="echo tg-ok-$(id -un)"):
        """keyboard-interactive with paramiko: (ok, output, prompts)."""
        import paramiko
        prompts = []
        transport = paramiko.Transport(("127.0.0.1", self.port))
        try:
            transport.start_client(timeout=10)

            def handler(title, instructions, fields):
                prompts.extend(p for p, _ in fields)
                return [password for _ in fields]

            try:
                transport.auth_interactive(user, handler)
            except paramiko.SSHException:
                return False, "", prompts
            chan = transport.open_session(timeout=10)
            chan.exec_command(cmd)
            out = chan.makefile("r").read().decode(errors="replace")
            chan.recv_exit_status()
            return True, out, prompts
        finally:
            transport.close()

    def accepted(self, method, user):
        """sshd logged a successful login of this kind."""
        text = self.log.read_text(errors="replace") if self.log.exists() \
            else ""
        return f"Accepted {method} for {user} " in text

    def mark(self):
        """Where the module's log (the syslog shim's file) ends now."""
        return self.syslog.stat().st_size if self.syslog.exists() else 0

    def module_log_since(self, mark):
        """The pam_tokengate lines logged after mark."""
        if not self.syslog.exists():
            return ""
        with open(self.syslog, "rb") as f:
            f.seek(mark)
            text = f.read().decode(errors="replace")
        return "\n".join(l for l in text.splitlines()
                         if "pam_tokengate(" in l)

    def logs(self):
        parts = []
        for p in (self.syslog, self.log):
            if p.exists():
                parts.append(p.read_text(errors="replace"))
        return "\n".join(parts)


@pytest.fixture(scope="class", params=["insight", "looker"])
def sshd(request, tmp_path_factory, users, privsep_dir):
    tmp = tmp_path_factory.mktemp(f"sshd-{request.param}")
    os.chmod(tmp, 0o700)
    server = Sshd(tmp, request.param)
    server.secrets = set(ALL_SECRETS)
    try:
        server.start()
        yield server
    finally:
        rc = server.stop()
        logs = server.logs() + "\n" + server.devserver.log_path.read_text(
            errors="replace")
        for secret in server.secrets:
            assert secret not in logs, "a secret is in the sshd/PAM logs"
        for f in tmp.glob("asan*"):
            text = f.read_text(errors="replace")
            assert "ERROR: AddressSanitizer" not in text, text[-3000:]
        assert rc == 0


def refused(res):
    """ssh was refused a login (not a connection or usage error)."""
    return res.returncode != 0 and "Permission denied" in res.stderr \
        and "tg-ok" not in res.stdout


def module_refused(sshd, mark, user, *words):
    """The module itself made the refusal: one of its failure lines since
    mark names the user and contains every word (e.g. err=TG_FORBIDDEN).
    Returns the lines for an assertion message."""
    lines = sshd.module_log_since(mark)
    for line in lines.splitlines():
        if "failed:" in line and f"user={user} " in line and \
                all(w in line for w in words):
            return True, lines
    return False, lines or sshd.logs()[-3000:]


def token_for(sshd, user):
    tok = fetch_token(sshd.devserver, sshd.api, user)
    sshd.secrets.add(tok)
    return tok


# ---------------------------------------------------------------- tests


class TestRealSshd:
    def test_password_token(self, sshd):
        res = sshd.ssh_password("tgtest-alice", token_for(sshd, "alice"))
        assert res.returncode == 0, (res, sshd.logs()[-3000:])
        assert res.stdout.strip() == "tg-ok-tgtest-alice"
        assert sshd.accepted("password", "tgtest-alice")

    def test_password_credentials(self, sshd):
        sshd.devserver.reset_counters()
        res = sshd.ssh_password("tgtest-alice", creds("alice"))
        assert res.returncode == 0, (res, sshd.logs()[-3000:])
        assert res.stdout.strip() == "tg-ok-tgtest-alice"
        c = sshd.devserver.counters()
        # the service has a group rule: insight asks auth/user (the login
        # name and the expiry) and auth/currentuser (the groups)
        assert c["token"] == 1, c
        assert c["validate"] + c["profile"] == \
            (2 if sshd.api == "insight" else 1), c

    def test_kbdint_token(self, sshd):
        ok, out, prompts = sshd.ssh_kbdint("tgtest-alice",
                                           token_for(sshd, "alice"))
        assert ok, (prompts, sshd.logs()[-3000:])
        assert out.strip() == "tg-ok-tgtest-alice"
        assert len(prompts) == 1
        assert sshd.accepted("keyboard-interactive/pam", "tgtest-alice")

    def test_kbdint_credentials(self, sshd):
        """auth runs in a child of sshd here; account in the monitor reads
        the state file auth wrote."""
        ok, out, _ = sshd.ssh_kbdint("tgtest-alice", creds("alice"))
        assert ok, sshd.logs()[-3000:]
        assert out.strip() == "tg-ok-tgtest-alice"

    def test_wrong_secret_refused(self, sshd):
        mark = sshd.mark()
        res = sshd.ssh_password("tgtest-alice",
                                "alice-client:not-the-secret-0001")
        assert refused(res), res
        assert "tg-ok" not in res.stdout
        ok, why = module_refused(sshd, mark, "tgtest-alice",
                                 "err=TG_REJECTED", "result=PAM_AUTH_ERR")
        assert ok, why
        mark = sshd.mark()
        ok, out, _ = sshd.ssh_kbdint("tgtest-alice",
                                     "alice-client:not-the-secret-0001")
        assert not ok and "tg-ok" not in out
        ok, why = module_refused(sshd, mark, "tgtest-alice",
                                 "err=TG_REJECTED")
        assert ok, why

    def test_unmapped_user_refused(self, sshd):
        """carol is valid on the server but maps to no local user."""
        mark = sshd.mark()
        res = sshd.ssh_password("tgtest-nomap", creds("carol"))
        assert refused(res), res
        ok, why = module_refused(sshd, mark, "tgtest-nomap",
                                 "err=TG_IDENTITY")
        assert ok, why
        mark = sshd.mark()
        ok, _, _ = sshd.ssh_kbdint("tgtest-nomap", creds("carol"))
        assert not ok
        ok, why = module_refused(sshd, mark, "tgtest-nomap",
                                 "err=TG_IDENTITY")
        assert ok, why

    def test_identity_of_another_user_refused(self, sshd):
        mark = sshd.mark()
        res = sshd.ssh_password("tgtest-bob", creds("alice"))
        assert refused(res), res
        ok, why = module_refused(sshd, mark, "tgtest-bob", "err=TG_IDENTITY")
        assert ok, why

    def test_group_rule_refused(self, sshd):
        """bob maps to tgtest-bob but is not in the admins group."""
        mark = sshd.mark()
        res = sshd.ssh_password("tgtest-bob", creds("bob"))
        assert refused(res), res
        ok, why = module_refused(sshd, mark, "tgtest-bob", "err=TG_FORBIDDEN",
                                 "result=PAM_PERM_DENIED")
        assert ok, why
        mark = sshd.mark()
        ok, _, _ = sshd.ssh_kbdint("tgtest-bob", token_for(sshd, "bob"))
        assert not ok
        ok, why = module_refused(sshd, mark, "tgtest-bob", "err=TG_FORBIDDEN")
        assert ok, why

    def test_unknown_user_costs_no_server_call(self, sshd):
        """sshd runs PAM for an unknown user with a fake password: refused
        locally, without a request to the server."""
        sshd.devserver.reset_counters()
        mark = sshd.mark()
        res = sshd.ssh_password("tgtest-ghost", creds("alice"))
        assert refused(res), res
        ok, why = module_refused(sshd, mark, "tgtest-ghost",
                                 "dummy password", "err=TG_INPUT")
        assert ok, why
        c = sshd.devserver.counters()
        assert c["token"] == 0 and c["validate"] + c["profile"] == 0, c

    def test_module_logged(self, sshd):
        logs = sshd.syslog.read_text(errors="replace") \
            if sshd.syslog.exists() else ""
        assert f"pam_tokengate({SERVICE}:auth)" in logs, sshd.logs()[-3000:]


@pytest.fixture
def app_service(tmp_path, snapshot):
    """/etc/pam.d/tokengate-test for a plain pam_start() application."""
    srv = Devserver(tmp_path, ())
    harness = PamHarness(tmp_path, srv, "insight")
    args = " ".join(harness.base_args())
    try:
        with open(APP_SERVICE_FILE, "x") as f:
            f.write("# tokengate test service (tests/integration/"
                    "test_sshd.py); removed when the test ends\n"
                    f"auth     required {module_path()} {args}\n"
                    f"account  required {module_path()} {args}\n"
                    "password required pam_deny.so\n"
                    "session  required pam_permit.so\n")
        yield harness
    finally:
        try:
            os.unlink(APP_SERVICE_FILE)
        except FileNotFoundError:
            pass
        assert srv.stop() == 0


def test_pam_start_with_system_service(app_service):
    """Through /etc/pam.d like su or sudo (pam_start, no confdir)."""
    assert os.path.exists(driver_path())
    res = app_service.run("alice", creds("alice"), steps="auth,acct",
                          service="tokengate-test", confdir=False)
    assert res.codes == {"auth": "SUCCESS", "acct": "SUCCESS"}, res.why
    res = app_service.run("alice", "alice-client:not-the-secret-0001",
                          service="tokengate-test", confdir=False)
    assert res.rc() == PAM["AUTH_ERR"], res.why


def test_system_left_unchanged(snapshot):
    """Runs last: users, service files and /run/sshd are gone again."""
    assert not os.path.exists(SERVICE_FILE)
    assert not os.path.exists(APP_SERVICE_FILE)
    for name in USERS:
        with pytest.raises(KeyError):
            pwd.getpwnam(name)
        assert not os.path.exists(f"/home/{name}")
    assert system_state() == snapshot
