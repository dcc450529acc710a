# SPDX-License-Identifier: MIT
"""pam_tokengate.so in front of a REAL OpenSSH sshd on loopback, both
flavors: password logins with sshpass+ssh and keyboard-interactive logins
with paramiko.

The PAM service files, the sshd_config lines, the useradd command and the
first-try recipe are read from README.md ("sshd, step by step": fenced
blocks found by their first line), so the README says what is tested.  The
test changes in them only what it must to stay off the machine's own
configuration: pam_tokengate.so becomes the built module with conf= and
state_dir= in the test's directory (and, for the flavor tests, their own
rules), the devserver's port, and the user names (alice -> tgtest-alice).

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
import json
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import time

import pytest

from conftest import (ALL_SECRETS, DEMO, Devserver, binary, fetch_token,
                      free_port)
from pamlib import (GROUPS, PAM, PamHarness, creds, driver_path, module_path,
                    preload, sanitizer_env, is_asan)

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
README = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "README.md")
TOKENS_ONLY = "tokens only"
WITH_PASSWORD = "tokens or local password"
FIRST_TRY = "# sshd, first try: a devserver, /etc/tokengate.conf and a local user"
FIRST_LOGIN = "# sshd, first try: log in"


# ---------------------------------------------------------------- README


def readme_block(first_line):
    """The text of the one fenced block of README.md whose first line is
    first_line."""
    with open(README) as f:
        text = f.read()
    blocks = [b for b in re.findall(r"^```[a-z]*\n(.*?)^```$", text,
                                    re.M | re.S)
              if b.split("\n", 1)[0] == first_line]
    assert len(blocks) == 1, f"README.md needs one block starting {first_line!r}"
    return blocks[0]


def readme_pam_file(kind, module_args):
    """The README's /etc/pam.d/sshd for kind, every pam_tokengate.so
    replaced by the built module with module_args."""
    text = readme_block(f"# /etc/pam.d/sshd ({kind})")
    mod = f"{module_path()} {module_args}"
    out, n = re.subn(r"(?<=\s)pam_tokengate\.so(?=\s|$)", mod, text, flags=re.M)
    assert n >= 2, text
    return out


def readme_sshd_config():
    """The README's sshd_config lines, as {keyword: line}."""
    lines = [l for l in readme_block("# /etc/ssh/sshd_config: change these "
                                     "lines").splitlines()[1:] if l.strip()]
    return {l.split()[0].lower(): l for l in lines}


def readme_commands(first_line):
    """The commands of a README shell block: ("write", path, text) for a
    "cat > PATH <<'EOF'" here-document, else ("run", argv, comment)."""
    steps = []
    lines = iter(readme_block(first_line).splitlines()[1:])
    for line in lines:
        m = re.fullmatch(r"cat > (\S+) <<'(\w+)'", line.strip())
        if m:
            body = []
            for l in lines:
                if l == m[2]:
                    break
                body.append(l + "\n")
            steps.append(("write", m[1], "".join(body)))
            continue
        code, _, comment = line.partition(" #")
        if code.strip():
            steps.append(("run", shlex.split(code), comment))
    return steps


def readme_useradd(name):
    """The README's useradd command for the user name (README: alice),
    with the test's marker as the comment field."""
    runs = [argv for kind, argv, *_ in readme_commands(FIRST_TRY)
            if kind == "run" and argv[0] == "useradd"]
    assert len(runs) == 1 and runs[0][-1] == "alice", runs
    return ["useradd", "-c", MARKER, *runs[0][1:-1], name]


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
            subprocess.run(readme_useradd(name), check=True,
                           capture_output=True)
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

    def __init__(self, tmp, api, devserver_args=()):
        self.tmp = tmp
        self.api = api
        self.pid = None
        self.service_written = False
        self.devserver = Devserver(tmp, devserver_args)
        self.port = free_port()
        self.syslog = tmp / "syslog.log"
        self.log = tmp / "sshd.log"
        self.state = tmp / "state"
        self.state.mkdir(mode=0o700)

    def start(self, pam_text):
        """Install pam_text as the service file and start sshd."""
        tmp = self.tmp
        with open(SERVICE_FILE, "x") as f:
            self.service_written = True
            f.write("# tokengate test service (tests/integration/"
                    "test_sshd.py); removed when the test ends\n" + pam_text)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(tmp / "hostkey")], check=True, capture_output=True)
        self.pidfile = tmp / "sshd.pid"
        # The README's lines first (sshd keeps the first value of a
        # keyword), then the test's own: a private port, key and pid file,
        # passwords and keyboard-interactive only, test users only.
        readme = readme_sshd_config()
        own = [f"Port {self.port}", "ListenAddress 127.0.0.1",
               f"HostKey {tmp}/hostkey", f"PidFile {self.pidfile}",
               "UsePAM yes", "PasswordAuthentication yes",
               "KbdInteractiveAuthentication yes", "PubkeyAuthentication no",
               "PermitRootLogin no", "AuthorizedKeysFile none",
               "AllowUsers tgtest-*", "MaxAuthTries 3", "LoginGraceTime 30",
               "PrintMotd no", "PrintLastLog no", "PermitUserEnvironment no",
               "X11Forwarding no", "AllowTcpForwarding no", "LogLevel VERBOSE"]
        lines = list(readme.values()) + [
            l for l in own if l.split()[0].lower() not in readme]
        (tmp / "sshd_config").write_text("\n".join(lines) + "\n")
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


def flavor_args(server):
    """Module arguments for the flavor tests: bindings by a map file, the
    admins group required."""
    tmp, api = server.tmp, server.api
    conf = tmp / "tokengate.conf"
    conf.write_text("# sshd test\n")
    os.chmod(conf, 0o600)
    mapf = tmp / "users.map"
    mapf.write_text("".join(f"{v} {k}\n" for k, v in USERS.items() if v))
    os.chmod(mapf, 0o600)
    return (f"url={server.devserver.url} api={api} conf={conf} "
            f"user_attribute=email user_map_file={mapf} "
            f"state_dir={server.state} require_groups="
            f"{GROUPS[api]['admins']} connect_timeout=2 timeout=5")


def stop_and_check(server):
    rc = server.stop()
    logs = server.logs() + "\n" + server.devserver.log_path.read_text(
        errors="replace")
    for secret in server.secrets:
        assert secret not in logs, "a secret is in the sshd/PAM logs"
    for f in server.tmp.glob("asan*"):
        text = f.read_text(errors="replace")
        assert "ERROR: AddressSanitizer" not in text, text[-3000:]
    assert rc == 0


@pytest.fixture(scope="class", params=["insight", "looker"])
def sshd(request, tmp_path_factory, users, privsep_dir):
    """The README's tokens-only service file, with the flavor's rules."""
    tmp = tmp_path_factory.mktemp(f"sshd-{request.param}")
    os.chmod(tmp, 0o700)
    server = Sshd(tmp, request.param)
    server.secrets = set(ALL_SECRETS)
    try:
        server.start(readme_pam_file(TOKENS_ONLY, flavor_args(server)))
        yield server
    finally:
        stop_and_check(server)


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


# ------------------------------------------------- the README's first try


def readme_users_file(tmp):
    """The devserver's demo users, alice and bob renamed to the test users
    (email tgtest-alice@example.com, ...): the README's email_local binding
    then maps them to tgtest-alice and tgtest-bob."""
    out = subprocess.run([binary("devserver/tokengate-devserver"),
                          "--print-demo-users"], check=True,
                         capture_output=True, text=True).stdout
    users = json.loads(out)
    for u in users["users"]:
        local, _, domain = u["email"].partition("@")
        if f"tgtest-{local}" in USERS:
            u["email"] = f"tgtest-{local}@{domain}"
    path = tmp / "users.json"
    path.write_text(json.dumps(users))
    return path


def run_first_try(server):
    """Runs the README's first-try block for the test's sshd: returns the
    tokengate.conf written.  Every line must be one the test knows."""
    tmp = server.tmp
    conf = tmp / "tokengate.conf"
    readme_port = None
    for kind, what, *rest in readme_commands(FIRST_TRY):
        if kind == "write":
            assert what == "/etc/tokengate.conf", what
            text = rest[0]
            url = f"http://127.0.0.1:{readme_port}"
            assert f"\nurl = {url}\n" in text, (url, text)
            conf.write_text(text.replace(f"url = {url}\n",
                                         f"url = {server.devserver.url}\n"))
            continue
        argv = what
        if argv[0] == "tokengate-devserver":
            # Started by the fixture on a free port: the README's port must
            # be the one its url names.
            assert argv[-1] == "&" and argv[1] == "--listen", argv
            readme_port = int(argv[2].rsplit(":", 1)[1])
        elif argv == ["chmod", "600", "/etc/tokengate.conf"]:
            os.chmod(conf, 0o600)
        elif argv == ["tokengate", "check"]:
            res = subprocess.run([binary("cli/tokengate"), "--config",
                                  str(conf), "check"], capture_output=True,
                                 text=True, timeout=60)
            assert res.returncode == 0, (res.stdout, res.stderr)
        elif argv[0] == "useradd":
            pass        # the users fixture ran it (readme_useradd)
        else:
            pytest.fail(f"test_sshd.py cannot run the README line {argv}")
    assert conf.exists() and readme_port
    return conf


@pytest.fixture(scope="class", params=[TOKENS_ONLY, WITH_PASSWORD])
def readme_sshd(request, tmp_path_factory, users, privsep_dir):
    """sshd with the README's first try and its service file for the
    kind; tgtest-nomap has a local password."""
    tmp = tmp_path_factory.mktemp("sshd-readme")
    os.chmod(tmp, 0o700)
    server = Sshd(tmp, "insight", ("--users", str(readme_users_file(tmp))))
    server.kind = request.param
    server.password = "local-" + secrets.token_hex(12)
    server.secrets = set(ALL_SECRETS) | {server.password}
    subprocess.run(["chpasswd"], input=f"tgtest-nomap:{server.password}\n",
                   text=True, check=True, capture_output=True)
    try:
        conf = run_first_try(server)
        server.start(readme_pam_file(
            request.param, f"conf={conf} state_dir={server.state}"))
        server.conf = conf
        yield server
    finally:
        stop_and_check(server)


def readme_login_steps():
    """The README's login block: (tokengate argv, ssh argv, the
    CLIENT_ID:SECRET its comment says to type)."""
    steps = readme_commands(FIRST_LOGIN)
    assert [s[0] for s in steps] == ["run", "run"], steps
    (_, cli, _), (_, ssh, comment) = steps
    assert cli[0] == "tokengate" and ssh == ["ssh", "alice@127.0.0.1"], steps
    typed = re.search(r"(alice-client:\S+)", comment)
    assert typed, comment
    return cli, typed[1]


class TestReadmeFirstTry:
    """README.md "sshd, step by step", followed as written (with
    tgtest-alice for alice): both service files."""

    CMD = "echo tg-ok-$(id -un) $(pwd)"

    def test_token_from_tokengate_login(self, readme_sshd):
        cli, _ = readme_login_steps()
        res = subprocess.run(
            [binary("cli/tokengate"), "--config", str(readme_sshd.conf),
             *cli[1:]], capture_output=True, text=True, timeout=60,
            env={"PATH": "/usr/bin:/bin", "HOME": str(readme_sshd.tmp),
                 "TOKENGATE_SECRET": DEMO["alice"]["secret"],
                 "TOKENGATE_TOKEN_FILE": str(readme_sshd.tmp / "token")})
        assert res.returncode == 0, res.stderr
        token = res.stdout.strip()
        readme_sshd.secrets.add(token)
        res = readme_sshd.ssh_password("tgtest-alice", token, self.CMD)
        assert res.returncode == 0, (res, readme_sshd.logs()[-3000:])
        # useradd -m: a home directory, no "Could not chdir".
        assert res.stdout.split() == ["tg-ok-tgtest-alice",
                                      "/home/tgtest-alice"], res
        assert "Could not chdir" not in res.stderr, res.stderr

    def test_credentials_typed_at_the_prompt(self, readme_sshd):
        _, typed = readme_login_steps()
        ok, out, prompts = readme_sshd.ssh_kbdint("tgtest-alice", typed,
                                                  self.CMD)
        assert ok, (prompts, readme_sshd.logs()[-3000:])
        assert out.split() == ["tg-ok-tgtest-alice", "/home/tgtest-alice"]
        assert readme_sshd.accepted("keyboard-interactive/pam",
                                    "tgtest-alice")

    def test_bob_is_not_in_admins(self, readme_sshd):
        mark = readme_sshd.mark()
        res = readme_sshd.ssh_password("tgtest-bob", creds("bob"))
        assert refused(res), res
        ok, why = module_refused(readme_sshd, mark, "tgtest-bob",
                                 "err=TG_FORBIDDEN")
        assert ok, why

    def test_local_password(self, readme_sshd):
        """Tokens only: pam_unix never sees the password.  Tokens or local
        password: pam_unix accepts it (after the server rejected it as a
        token)."""
        res = readme_sshd.ssh_password("tgtest-nomap", readme_sshd.password)
        if readme_sshd.kind == TOKENS_ONLY:
            assert refused(res), res
        else:
            assert res.returncode == 0, (res, readme_sshd.logs()[-3000:])
            assert res.stdout.strip() == "tg-ok-tgtest-nomap"
        res = readme_sshd.ssh_password("tgtest-nomap", "not-the-password")
        assert refused(res), res


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
