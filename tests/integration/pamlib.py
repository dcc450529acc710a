# SPDX-License-Identifier: MIT
"""Helpers shared by the PAM tests (test_pam.py, test_sshd.py) and
bench/pam: where the built module, driver and syslog shim are, how to write
a PAM service, how to run tests/pam/pam_driver with the shim preloaded and
read back what the module logged, and how to get tokens and credentials
from the devserver.

Nothing here touches the system: service files, state and logs live in a
test's tmp_path (pam_start_confdir), except where test_sshd.py installs its
own files explicitly.
"""
import functools
import hashlib
import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from conftest import ALL_SECRETS, DEMO, fetch_token, http_post

# Linux-PAM return codes (security/_pam_types.h).
PAM = {
    "SUCCESS": 0, "OPEN_ERR": 1, "SYMBOL_ERR": 2, "SERVICE_ERR": 3,
    "SYSTEM_ERR": 4, "BUF_ERR": 5, "PERM_DENIED": 6, "AUTH_ERR": 7,
    "CRED_INSUFFICIENT": 8, "AUTHINFO_UNAVAIL": 9, "USER_UNKNOWN": 10,
    "MAXTRIES": 11, "NEW_AUTHTOK_REQD": 12, "ACCT_EXPIRED": 13,
    "SESSION_ERR": 14, "CRED_UNAVAIL": 15, "CRED_EXPIRED": 16, "CRED_ERR": 17,
    "NO_MODULE_DATA": 18, "CONV_ERR": 19, "AUTHTOK_ERR": 20,
    "AUTHTOK_RECOVERY_ERR": 21, "AUTHTOK_LOCK_BUSY": 22,
    "AUTHTOK_DISABLE_AGING": 23, "TRY_AGAIN": 24, "IGNORE": 25, "ABORT": 26,
    "AUTHTOK_EXPIRED": 27, "MODULE_UNKNOWN": 28, "BAD_ITEM": 29,
    "CONV_AGAIN": 30, "INCOMPLETE": 31,
}
PAM_NAME = {v: k for k, v in PAM.items()}

# What sshd sends as the password of an invalid or denied user
# (openssh-portable auth-pam.c fake_password(), cut to the typed length).
SSHD_FAKE_PASSWORD = "\b\n\r\177INCORRECT"

# Insight authority groups / Looker group ids (demo users: alice in
# admins+analysts / 7+9, bob in sales / 8).
GROUPS = {"insight": {"admins": "admins", "analysts": "analysts",
                      "sales": "sales"},
          "looker": {"admins": "9", "analysts": "7", "sales": "8"}}

# Control for the test services: "[default=ok]" makes libpam return the
# module's own code unchanged, PAM_IGNORE included (with "required" an
# ignoring module would come back as PAM_PERM_DENIED, indistinguishable
# from a real denial).
PASS_THROUGH = "[default=ok]"


# ---------------------------------------------------------------- the build


def builddir():
    d = os.environ.get("TG_BUILDDIR")
    if not d:
        pytest.fail("TG_BUILDDIR is not set: run the tests through "
                    "scripts/check")
    return d


def _built(rel, what, how):
    path = os.path.join(builddir(), rel)
    if not os.path.exists(path):
        pytest.fail(f"{path} is not built ({what}): run {how}")
    return path


def module_path():
    return _built("pam_module/.libs/pam_tokengate.so", "the PAM module",
                  "make in the build directory")


def driver_path():
    return _built("tests/pam/pam_driver", "the PAM test driver",
                  "make check (or make tests/pam/pam_driver)")


def shim_path():
    return _built("tests/pam/.libs/libsyslog_shim.so", "the syslog shim",
                  "make check (or make tests/pam/libsyslog_shim.la)")


@functools.lru_cache(maxsize=None)
def _asan_runtime():
    """The libasan to preload when the build is an ASan build, else None.
    The driver is built with the same flags as the module; ldd tells."""
    asan = False
    try:
        out = subprocess.run(["ldd", driver_path()], capture_output=True,
                             text=True, timeout=30).stdout
        asan = "libasan" in out
    except (OSError, subprocess.SubprocessError):
        pass
    if not asan and os.path.basename(builddir().rstrip("/")).endswith("asan"):
        asan = True
    if not asan:
        return None
    for line in out.splitlines():
        # "libasan.so.8 => /lib/x86_64-linux-gnu/libasan.so.8 (0x...)"
        if "libasan" in line and "=>" in line:
            path = line.split("=>", 1)[1].split("(")[0].strip()
            if os.path.exists(path):
                return path
    path = subprocess.run(["gcc", "-print-file-name=libasan.so"],
                          capture_output=True, text=True).stdout.strip()
    return os.path.realpath(path)


def is_asan():
    return _asan_runtime() is not None


def preload(*extra):
    """LD_PRELOAD value: libasan first under ASan, then the shim."""
    libs = []
    if _asan_runtime():
        libs.append(_asan_runtime())
    libs.append(shim_path())
    libs.extend(extra)
    return " ".join(libs)


def sanitizer_env():
    env = {}
    for key in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


# ---------------------------------------------------------------- devserver


def rotate_credentials(devserver, token):
    """POST /auth/currentuser/credentials (Insight; the devserver shares
    credentials between the flavors): the old pair stops working.  Returns
    (client_id, secret) of the new pair."""
    url = (devserver.url
           + "/insightservices/rest/v1/auth/currentuser/credentials")
    body, _ = http_post(url, b"{}", {"Content-Type": "application/json",
                                     "Authorization": "Bearer " + token})
    doc = json.loads(body)
    return doc["clientId"], doc["secret"]


def looker_get(devserver, path, token):
    req = urllib.request.Request(devserver.url + "/api/4.0" + path,
                                 headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None


def live_tokens(devserver):
    return devserver._control("GET", "/tokens")["live"]


def creds(user):
    return f"{DEMO[user]['client_id']}:{DEMO[user]['secret']}"


def fingerprint(secret):
    return hashlib.sha256(secret.encode()).hexdigest()[:8]


# ---------------------------------------------------------------- listeners


class ConnCounter:
    """A loopback listener that counts the connections and bytes it gets
    (a would-be proxy or redirect target that must see nothing)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.settimeout(0.5)
            try:
                self.bytes += len(conn.recv(65536))
            except OSError:
                pass
            conn.close()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


def make_pki(d, more=(), self_signed=False):
    """A test CA and a good server certificate for 127.0.0.1 signed by it,
    then one NAME.pem/NAME.key signed by it per (NAME, subjectAltName) of
    more, and with self_signed a self-signed self.pem for 127.0.0.1;
    returns the directory."""
    def ossl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True,
                       capture_output=True)

    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
         "-out", "ca.pem", "-days", "2", "-subj", "/CN=tokengate test CA")
    for name, san in (("good", "IP:127.0.0.1"),) + tuple(more):
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
             "-out", f"{name}.csr", "-subj", f"/CN={name}")
        ossl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey",
             "ca.key", "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
             "-extfile", f"{name}.ext")
    if self_signed:
        ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
             "self.key", "-out", "self.pem", "-days", "2", "-subj",
             "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1")
    return d


# ---------------------------------------------------------------- running PAM


class PamResult:
    def __init__(self, proc, elapsed, logs, cmd):
        self.returncode = proc.returncode
        self.out = proc.stdout.decode(errors="replace")
        self.err = proc.stderr.decode(errors="replace")
        self.elapsed = elapsed
        self.logs = logs
        self.cmd = cmd
        self.doc = None
        try:
            self.doc = json.loads(self.out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            pass

    @property
    def steps(self):
        return self.doc["steps"] if self.doc and "steps" in self.doc else []

    def rc(self, step=None):
        """The code of the given step (default: the last one run)."""
        if not self.steps:
            return None
        if step is None:
            return self.steps[-1]["rc"]
        for s in self.steps:
            if s["step"] == step:
                return s["rc"]
        raise KeyError(step)

    @property
    def codes(self):
        return {s["step"]: PAM_NAME.get(s["rc"], s["rc"]) for s in self.steps}

    @property
    def env(self):
        return (self.doc or {}).get("env", {})

    @property
    def prompts(self):
        return (self.doc or {}).get("prompts", [])

    @property
    def messages(self):
        return (self.doc or {}).get("messages", [])

    @property
    def log_text(self):
        return "\n".join(self.logs)

    def module_logs(self):
        return [l for l in self.logs if "pam_tokengate(" in l]

    def logged(self, *words):
        """True when one pam_tokengate line contains any of words
        (case-insensitive)."""
        for line in self.module_logs():
            low = line.lower()
            if any(w.lower() in low for w in words):
                return True
        return False

    def __repr__(self):
        return f"<PamResult {self.codes}>"

    @property
    def why(self):
        """Everything needed to understand a failed assertion."""
        return (f"codes={self.codes} exit={self.returncode} "
                f"elapsed={self.elapsed:.2f}s\nstdout: {self.out.strip()}\n"
                f"stderr: {self.err.strip()[-3000:]}\nsyslog:\n  "
                + "\n  ".join(self.logs[-40:]))


class PamHarness:
    """A private PAM service directory, state/offline dirs and syslog
    capture for one test, against one devserver and flavor."""

    def __init__(self, tmp_path, devserver, api):
        self.tmp = tmp_path
        self.api = api
        self.devserver = devserver
        self.url = devserver.url if devserver is not None else None
        self.confdir = tmp_path / "pam.d"
        self.confdir.mkdir(exist_ok=True)
        (self.confdir / "other").write_text(
            "auth required pam_deny.so\naccount required pam_deny.so\n"
            "password required pam_deny.so\nsession required pam_deny.so\n")
        self.state_dir = tmp_path / "state"
        self.state_dir.mkdir(mode=0o700, exist_ok=True)
        self.offline_dir = tmp_path / "offline"
        self.offline_dir.mkdir(mode=0o700, exist_ok=True)
        self.logdir = tmp_path / "syslog"
        self.logdir.mkdir(exist_ok=True)
        self.conf = tmp_path / "tokengate.conf"
        self.conf.write_text("# test config: everything is on the "
                             "service line\n")
        os.chmod(self.conf, 0o600)
        self.secrets = set(ALL_SECRETS)
        self.runs = 0

    # ------------------------------------------------------------ services

    def base_args(self):
        return [f"url={self.url}", f"api={self.api}", f"conf={self.conf}",
                f"state_dir={self.state_dir}", "connect_timeout=2",
                "timeout=5"]

    def service(self, name="tg", args=(), account_args=None,
                session_args=None, control=PASS_THROUGH, before=(),
                base=True, phases=("auth", "account", "session",
                                   "password")):
        """Write a service file using pam_tokengate.so in every phase.
        args apply to every phase; account_args/session_args replace them
        for those phases.  before: raw lines put first (e.g. pam_exec)."""
        mod = module_path()
        lines = list(before)
        for phase in phases:
            if phase == "account" and account_args is not None:
                a = account_args
            elif phase == "session" and session_args is not None:
                a = session_args
            else:
                a = args
            full = (self.base_args() if base else []) + list(a)
            lines.append(f"{phase} {control} {mod} " + " ".join(full))
        (self.confdir / name).write_text("\n".join(lines) + "\n")
        return name

    def write_map(self, entries, name="users.map"):
        path = self.tmp / name
        path.write_text("".join(f"{k} {v}\n" for k, v in entries.items()))
        os.chmod(path, 0o600)
        return path

    # ------------------------------------------------------------ secrets

    def token(self, user="alice", **kw):
        tok = fetch_token(self.devserver, self.api, user, **kw)
        self.secrets.add(tok)
        return tok

    def add_secret(self, s):
        self.secrets.add(s)

    # ------------------------------------------------------------ running

    def env(self, extra=None):
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
               "LD_PRELOAD": preload()}
        env.update(sanitizer_env())
        env.update(extra or {})
        return env

    def run(self, user="alice", password=None, steps="auth", service="tg",
            repeat=1, env=None, authtok=None, no_user=False, timeout=60,
            show_env_token=False, allow=(), valgrind=False, confdir=None,
            silent=False, fsize_zero=False):
        """Run pam_driver; password=None gives it no password at all (its
        prompts fail), "" the empty one.  fsize_zero: RLIMIT_FSIZE=0 in the
        driver ("ulimit -f 0"; nothing is logged then).  The driver's stdout/stderr and
        everything logged are checked for secrets (except allow)."""
        self.runs += 1
        logfile = self.logdir / f"run-{self.runs}.log"
        cmd = [driver_path(), "--service", service, "--steps", steps,
               "--repeat", str(repeat)]
        if confdir is not False:
            cmd[1:1] = ["--confdir", str(confdir or self.confdir)]
        cmd += ["--no-user"] if no_user else ["--user", user]
        extra = dict(env or {})
        extra["TG_SYSLOG_FILE"] = str(logfile)
        if authtok is not None:
            cmd.append("--authtok")
            extra["TG_PAM_AUTHTOK"] = authtok
        if show_env_token:
            cmd.append("--show-env-token")
        if silent:
            cmd.append("--silent")
        if fsize_zero:
            cmd.append("--fsize-zero")
        if valgrind:
            cmd = ["valgrind", "--quiet", "--leak-check=full",
                   "--errors-for-leak-kinds=definite",
                   "--show-leak-kinds=definite", "--error-exitcode=99",
                   f"--log-file={self.tmp}/valgrind-{self.runs}.log",
                   *cmd]
        data = b"" if password is None else \
            password.encode("utf-8", "surrogateescape") + b"\n"
        start = time.monotonic()
        proc = subprocess.run(cmd, input=data, env=self.env(extra),
                              capture_output=True, timeout=timeout)
        elapsed = time.monotonic() - start
        logs = []
        if logfile.exists():
            logs = logfile.read_text(errors="replace").splitlines()
        res = PamResult(proc, elapsed, logs, cmd)
        if valgrind:
            vlog = self.tmp / f"valgrind-{self.runs}.log"
            res.valgrind = vlog.read_text(errors="replace") \
                if vlog.exists() else ""
        self.check_clean(res, allow=allow, password=password)
        return res

    def check_clean(self, res, allow=(), password=None):
        assert res.returncode in (0, 99), res.why
        assert res.doc is not None, f"no JSON from pam_driver: {res.why}"
        texts = {"stdout": res.out, "stderr": res.err,
                 "syslog": res.log_text}
        secrets = set(self.secrets)
        if password and len(password) >= 8 and password not in allow:
            secrets.add(password)
            if ":" in password:
                secrets.add(password.split(":", 1)[1])
        for secret in secrets:
            if secret in allow or len(secret) < 8:
                continue
            for where, text in texts.items():
                assert secret not in text, \
                    f"a secret (fp={fingerprint(secret)}) is in the " \
                    f"{where}: {res.why}"
        assert "AddressSanitizer" not in res.err, res.why
        assert "LeakSanitizer" not in res.err, res.why
        assert "runtime error:" not in res.err, res.why

    def all_logs(self):
        out = []
        for f in sorted(self.logdir.glob("*.log")):
            out.append(f.read_text(errors="replace"))
        return "\n".join(out)

    def state_file(self, user):
        return self.state_dir / f"{user}.json"
