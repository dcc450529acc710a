# SPDX-License-Identifier: MIT
"""Fixtures for the integration tests: a real tokengate-devserver on a free
loopback port, a private nginx loading the built module (nginxlib.py), a
runner for the real tokengate CLI, and a listener that never accepts.

Every process a test starts is stopped when the test ends.  Only 127.0.0.1
is ever contacted.
"""
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import pytest

BUILDDIR = os.environ.get("TG_BUILDDIR")

# Demo users built into the devserver (devserver/demo-users.json).
DEMO = {
    name: {"client_id": f"{name}-client", "secret": f"{name}-secret-DEMO-0001"}
    for name in ("alice", "bob", "carol", "dave")
}

# The CLI's exit codes are the tg_err_t values (common/tokengate.h).
EXIT = {
    "OK": 0, "CONFIG": 1, "INPUT": 2, "REJECTED": 3, "TOKEN_INVALID": 4,
    "FORBIDDEN": 5, "NOT_FOUND": 6, "IDENTITY": 7, "RATE_LIMITED": 8,
    "UNAVAILABLE": 9, "TIMEOUT": 10, "TLS": 11, "PROTOCOL": 12, "NOMEM": 13,
    "VALIDATION": 14, "INTERNAL": 15, "USAGE": 64,
}

# Secrets that must never appear in any output the tests see.
ALL_SECRETS = [u["secret"] for u in DEMO.values()]


def binary(rel):
    if not BUILDDIR:
        pytest.fail("TG_BUILDDIR is not set: run the tests through scripts/check")
    path = os.path.join(BUILDDIR, rel)
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is not built: run scripts/check")
    return path


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc, sig, timeout):
    """Stop a child: send sig, wait up to timeout seconds, then kill it.
    False when it had to be killed."""
    if proc.poll() is not None:
        return True
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False


class Response:
    """An HTTP answer: status, header (name, value) pairs, body bytes."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @classmethod
    def read(cls, r):
        """From an http.client response (reads its body)."""
        return cls(r.status, r.getheaders(), r.read())

    def header(self, name):
        """The first value of header name (any case), or None."""
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    @property
    def ctype(self):
        return self.header("Content-Type")

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<{self.status} {self.headers} {self.body[:300]!r}>"


class Devserver:
    """A tokengate-devserver process and its control endpoint."""

    def __init__(self, tmp_path, args=(), scheme="http"):
        self.log_path = tmp_path / f"devserver-{time.monotonic_ns()}.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [binary("devserver/tokengate-devserver"),
             "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL)
        self.url = self.control = None
        deadline = time.monotonic() + 15
        lines = []
        while (self.url is None or self.control is None) \
                and time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode(errors="replace")
            if not line:
                break
            lines.append(line)
            if "listening on " in line:
                self.url = line.split("listening on ", 1)[1].strip()
            elif "control on " in line:
                self.control = line.split("control on ", 1)[1].strip()
        if self.url is None or self.control is None:
            self.stop()
            raise RuntimeError("devserver did not start: %r %s" % (
                lines, self.log_path.read_text(errors="replace")))
        # Keep draining stdout so the server never blocks on a full pipe.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        self.port = int(self.url.rsplit(":", 1)[1])

    def _control(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.control + path, data=data,
                                     method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            return json.loads(raw) if raw else None

    def fault(self, **rule):
        return self._control("POST", "/faults", rule)

    def clear_faults(self):
        return self._control("DELETE", "/faults")

    def counters(self):
        return self._control("GET", "/counters")

    def reset_counters(self):
        return self._control("DELETE", "/counters")

    def advance_clock(self, seconds):
        return self._control("POST", "/clock", {"advance": seconds})

    def stop(self):
        stop_process(self.proc, signal.SIGTERM, 10)
        self.log.close()
        return self.proc.returncode


@pytest.fixture
def devserver_factory(tmp_path):
    servers = []

    def start(*args):
        srv = Devserver(tmp_path, args)
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        rc = srv.stop()
        log = srv.log_path.read_text(errors="replace")
        for secret in ALL_SECRETS:
            assert secret not in log, "devserver logged a secret"
        assert rc == 0, f"devserver exited with {rc}:\n{log[-3000:]}"
        assert "ERROR: AddressSanitizer" not in log
        assert "runtime error:" not in log


@pytest.fixture
def devserver(devserver_factory):
    return devserver_factory()


def http_post(url, data, headers, timeout=10):
    """POST data; the answer's body and Content-Type (raises on >= 400)."""
    req = urllib.request.Request(url, data=data, headers=headers,
                                 method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.read(), resp.headers.get("Content-Type", "")


def fetch_token(devserver, api, user="alice", secret=None, client_id=None):
    """A fresh token straight from the devserver's token endpoint."""
    client_id = client_id or DEMO[user]["client_id"]
    secret = secret or DEMO[user]["secret"]
    if api == "insight":
        body, ctype = http_post(
            devserver.url + "/insightservices/rest/v1/auth/token",
            json.dumps({"clientId": client_id, "secret": secret}).encode(),
            {"Content-Type": "application/json"})
        text = body.decode()
        return json.loads(text) if "json" in ctype else text.strip()
    body, _ = http_post(devserver.url + "/api/4.0/login",
                        urllib.parse.urlencode(
                            {"client_id": client_id,
                             "client_secret": secret}).encode(),
                        {"Content-Type": "application/x-www-form-urlencoded"})
    return json.loads(body)["access_token"]


# ---------------------------------------------------------------- nginx

@pytest.fixture
def nginx_factory(tmp_path):
    """Makes private nginx instances (nginxlib.Nginx, not started yet);
    each is stopped, and its error log checked, when the test ends."""
    from nginxlib import Nginx  # nginxlib imports this file

    started = []

    def make():
        n = Nginx(tmp_path)
        started.append(n)
        return n

    yield make
    for n in started:
        n.stop()


@pytest.fixture
def nginx(nginx_factory):
    return nginx_factory()


# ---------------------------------------------------------------- network

@pytest.fixture
def black_hole():
    """A listener whose accept queue is full and never drained: new SYNs are
    dropped, so connecting hangs until the client's connect timeout."""
    socks = open_black_hole("127.0.0.1")
    yield socks[0].getsockname()[1]
    for s in socks:
        s.close()


def open_black_hole(host):
    """The sockets of a black hole on host (a free port): the listener
    first, then what fills its accept queue.  The caller closes them."""
    lsock = socket.socket()
    lsock.bind((host, 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    socks = [lsock]
    for _ in range(8):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect((host, port))
        except BlockingIOError:
            pass
        socks.append(s)
    return socks


class Result:
    def __init__(self, proc, elapsed):
        self.rc = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr
        self.elapsed = elapsed

    @property
    def text(self):
        return self.out + self.err

    def json(self):
        return json.loads(self.out)

    def __repr__(self):
        return f"rc={self.rc}\nstdout:\n{self.out}\nstderr:\n{self.err}"


class Cli:
    """Runs the real tokengate binary with a private HOME, config and token
    file, and checks that no secret leaks into its output."""

    def __init__(self, tmp_path, url, api):
        self.tmp = tmp_path
        self.api = api
        self.home = tmp_path / "home"
        self.home.mkdir(exist_ok=True)
        self.token_file = tmp_path / "token.json"
        self.config = tmp_path / f"tokengate-{api}.conf"
        self.extra_secrets = []
        self.tokens = set()
        self.write_config(url=url, api=api)

    def write_config(self, **keys):
        text = "".join(f"{k} = {v}\n" for k, v in keys.items())
        self.config.write_text(text)
        os.chmod(self.config, 0o600)

    def env(self, extra=None):
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "TOKENGATE_TOKEN_FILE": str(self.token_file),
        }
        for key in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
            if key in os.environ:
                env[key] = os.environ[key]
        env.update(extra or {})
        return env

    def __call__(self, *args, env=None, input=None, timeout=60,
                 allow_secrets=(), config=True):
        cmd = [binary("cli/tokengate")]
        if config:
            cmd += ["--config", str(self.config)]
        cmd += [str(a) for a in args]
        start = time.monotonic()
        proc = subprocess.run(cmd, env=self.env(env), input=input,
                              capture_output=True, text=True, timeout=timeout)
        res = Result(proc, time.monotonic() - start)
        printed = "--print-token" in cmd
        for secret in ALL_SECRETS + list(self.extra_secrets):
            if secret in allow_secrets:
                continue
            assert secret not in res.text, f"secret leaked in output: {res}"
        for token in self.tokens:
            if printed or token in allow_secrets:
                continue
            assert token not in res.text, f"token leaked in output: {res}"
        # Every token the CLI stored from now on must never be shown either.
        if self.token_file.exists():
            try:
                self.tokens.add(self.stored_token())
            except (ValueError, KeyError):
                pass
        assert "AddressSanitizer" not in res.err, res
        assert "runtime error:" not in res.err, res
        return res

    def login(self, user="alice", **kw):
        return self("login", "--client-id", DEMO[user]["client_id"],
                    env={"TOKENGATE_SECRET": DEMO[user]["secret"]}, **kw)

    def stored_token(self):
        return json.loads(self.token_file.read_text())["token"]


@pytest.fixture(params=["insight", "looker"])
def api(request):
    return request.param


@pytest.fixture
def cli(tmp_path, devserver, api):
    return Cli(tmp_path, devserver.url, api)


# ---------------------------------------------------------------- redis

class Redis:
    """A private redis-server (Debian's) on a free loopback port: its own
    config, no persistence, a password.  stop()/cont() SIGSTOP/SIGCONT it,
    kill() SIGKILLs it, start() brings it back on the same port."""

    def __init__(self, tmp_path):
        self.server = "/usr/bin/redis-server"
        self.client = "/usr/bin/redis-cli"
        for path in (self.server, self.client):
            if not os.access(path, os.X_OK):
                pytest.fail(f"{path} is missing: run scripts/deps "
                            "(it installs Debian's redis-server)")
        self.dir = tmp_path / f"redis-{time.monotonic_ns()}"
        self.dir.mkdir()
        self.port = free_port()
        self.password = "redis-pw-" + os.urandom(12).hex()
        self.password_file = self.dir / "password"
        self.password_file.write_text(self.password + "\n")
        os.chmod(self.password_file, 0o600)
        self.conf = self.dir / "redis.conf"
        self.conf.write_text(
            f'port {self.port}\nbind 127.0.0.1\nprotected-mode yes\n'
            f'save ""\nappendonly no\nrequirepass {self.password}\n'
            f'dir {self.dir}\nlogfile {self.dir}/redis.log\n'
            'daemonize no\n')
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen([self.server, str(self.conf)],
                                     stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            r = self.cli("PING", check=False)
            if r.returncode == 0 and r.stdout.strip() == b"PONG":
                return self
            time.sleep(0.05)
        log = (self.dir / "redis.log")
        raise RuntimeError("redis-server did not start: " + (
            log.read_text(errors="replace") if log.exists() else ""))

    def cli(self, *args, stdin=None, check=True):
        """redis-cli with the password; raw output (bytes)."""
        r = subprocess.run([self.client, "-h", "127.0.0.1", "-p",
                            str(self.port), "-a", self.password,
                            "--no-auth-warning", "--raw", *args],
                           input=stdin, capture_output=True, timeout=10)
        if check:
            assert r.returncode == 0, r
        return r

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def cont(self):
        self.proc.send_signal(signal.SIGCONT)

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            stop_process(self.proc, signal.SIGTERM, 10)
        self.proc = None


@pytest.fixture
def redis(tmp_path):
    """A private redis-server (Redis), stopped when the test ends."""
    r = Redis(tmp_path)
    yield r
    r.stop()
