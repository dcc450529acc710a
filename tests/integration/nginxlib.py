# SPDX-License-Identifier: MIT
"""A private nginx (Debian's /usr/sbin/nginx) loading the built
ngx_http_tokengate_module, on a free loopback port, with its own prefix.

The module is $TG_BUILDDIR/nginx/ngx_http_tokengate_module.so; when it is
missing, scripts/build-nginx-module builds it.  stop() checks the error log:
no [alert], no [emerg], no sanitizer report, no secret and no token.
"""
import http.client
import json
import os
import signal
import socket
import subprocess
import time
import urllib.parse

import pytest

from conftest import (ALL_SECRETS, BUILDDIR, Response, fetch_token, free_port,
                      stop_process)

NGINX = "/usr/sbin/nginx"
SRCDIR = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
INS = "/insightservices/rest/v1"


def _has_asan(path):
    """True when an object or archive was built with AddressSanitizer."""
    out = subprocess.run(["nm", "-u", path], capture_output=True,
                         text=True).stdout
    return "__asan_" in out


def asan_build():
    """The ASan flavor of scripts/build (its libtokengate.a is
    instrumented), or TG_NGINX_ASAN set explicitly."""
    if os.environ.get("TG_NGINX_ASAN"):
        return True
    lib = os.path.join(BUILDDIR or "", "common", ".libs", "libtokengate.a")
    return os.path.exists(lib) and _has_asan(lib)


def module_path():
    if not BUILDDIR:
        pytest.fail("TG_BUILDDIR is not set: run the tests through "
                    "scripts/check")
    path = os.path.join(BUILDDIR, "nginx", "ngx_http_tokengate_module.so")
    if not os.path.exists(path):
        cmd = [os.path.join(SRCDIR, "scripts", "build-nginx-module"), BUILDDIR]
        if asan_build():
            cmd.append("--asan")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not os.path.exists(path):
            pytest.fail("cannot build the nginx module:\n"
                        + proc.stdout[-3000:] + proc.stderr[-3000:])
    return path


def nginx_env():
    env = dict(os.environ)
    # An ASan-built module needs the runtime first (TOOLCHAIN.md section 3).
    if asan_build():
        libasan = subprocess.run(["gcc", "-print-file-name=libasan.so"],
                                 capture_output=True, text=True).stdout.strip()
        env["LD_PRELOAD"] = libasan
        # nginx never frees its pools at exit: leak reports there are
        # nginx's own, so leak detection is off for nginx whatever the
        # caller's ASAN_OPTIONS say (later options win).
        opts = env.get("ASAN_OPTIONS", "")
        env["ASAN_OPTIONS"] = (opts + ":" if opts else "") + "detect_leaks=0"
    return env


class Nginx:
    """One nginx instance; configure() writes nginx.conf around an http{}
    body, start() runs it (master + one worker), stop() checks the log."""

    def __init__(self, tmp_path):
        self.dir = tmp_path / f"nginx-{time.monotonic_ns()}"
        self.dir.mkdir()
        (self.dir / "tmp").mkdir()
        (self.dir / "logs").mkdir()
        self.html = self.dir / "html"
        self.html.mkdir()
        for name in ("index.html", "open.html", "admin.html"):
            (self.html / name).write_text(f"static {name}\n")
        self.port = free_port()
        self.conf = self.dir / "nginx.conf"
        self.error_log = self.dir / "logs" / "error.log"
        self.access_log = self.dir / "logs" / "access.log"
        self.proc = None
        self.tokens = set()
        # Other values that must never reach the logs (embed secrets,
        # signed URLs, signatures); check_log() checks the access log too.
        self.secrets = set()

    def configure(self, http_body, main=""):
        d = self.dir
        # pytest's tmp dirs are private (0700): as root, the worker must run
        # as root to read the static files (it never does outside tests).
        if os.geteuid() == 0 and "user " not in main:
            main = "user root root;\n" + main
        self.conf.write_text(f"""
load_module {module_path()};
daemon off;
master_process on;
worker_processes 1;
error_log {d}/logs/error.log info;
pid {d}/nginx.pid;
{main}
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    default_type text/plain;
{http_body}
}}
""")

    def server(self, body, http_extra=""):
        """configure() with one server on the private port."""
        self.configure(f"""
{http_extra}
    server {{
        listen 127.0.0.1:{self.port};
        root {self.html};
{body}
    }}
""")

    def test_config(self, prefix=()):
        """nginx -t; prefix: a command that runs nginx (unshare ...)."""
        return subprocess.run([*prefix, NGINX, "-t", "-p", str(self.dir),
                               "-c", str(self.conf)], capture_output=True,
                              text=True, env=nginx_env(), timeout=30)

    def start(self, prefix=()):
        """Start nginx and wait until it listens; prefix: a command that
        runs nginx (unshare ...)."""
        self.proc = subprocess.Popen(
            [*prefix, NGINX, "-p", str(self.dir), "-c", str(self.conf)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "stderr.log", "wb"), env=nginx_env())
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("nginx exited: " + self.logs())
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not listen: " + self.logs())

    def logs(self):
        text = ""
        for p in (self.error_log, self.dir / "stderr.log"):
            if p.exists():
                text += p.read_text(errors="replace")
        return text

    def request(self, path, headers=None, method="GET", timeout=30):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, headers=dict(headers or {}))
            r = c.getresponse()
            return Response.read(r)
        finally:
            c.close()

    def get(self, path, token=None, headers=None, **kw):
        h = dict(headers or {})
        if token is not None:
            self.tokens.add(token)
            h["Authorization"] = f"Bearer {token}"
        return self.request(path, h, **kw)

    def worker_pids(self):
        out = subprocess.run(["ps", "-o", "pid=", "--ppid",
                              str(self.proc.pid)], capture_output=True,
                             text=True).stdout
        return sorted(int(x) for x in out.split())

    def stop(self):
        if self.proc is None:
            return
        if not stop_process(self.proc, signal.SIGQUIT, 20):
            raise AssertionError("nginx did not stop on SIGQUIT")
        self.proc = None
        self.check_log()

    def check_log(self):
        log = self.logs()
        for bad in ("[alert]", "[emerg]", "AddressSanitizer",
                    "runtime error:", "LeakSanitizer"):
            assert bad not in log, f"{bad} in the nginx log:\n{log[-4000:]}"
        for secret in ALL_SECRETS:
            assert secret not in log, "a secret in the nginx log"
        for token in self.tokens:
            if len(token) >= 8:
                assert token not in log, "a token in the nginx log"
        if self.access_log.exists():
            log += self.access_log.read_text(errors="replace")
        for secret in self.secrets:
            assert secret not in log, "a secret or signed URL in a log"


# ------------------------------------------------------------ embedding

# The devserver's built-in Looker embed secret (public, demo only).
DEMO_EMBED_SECRET = "looker-embed-secret-DEMO-0001"


def looker_token(srv, user="alice"):
    """A fresh Looker API token from the devserver's POST /login."""
    return fetch_token(srv, "looker", user)


# ------------------------------------------------------------ locations

# A group alice has and bob lacks, per flavor (devserver/demo-users.json).
ADMIN_GROUP = {"insight": "admins", "looker": "9"}

IDENTITY_HEADERS = """
            add_header X-TG-User $tokengate_user always;
            add_header X-TG-Id $tokengate_user_id always;
            add_header X-TG-Email $tokengate_email always;
            add_header X-TG-Groups $tokengate_groups always;
            add_header X-TG-Result $tokengate_result always;
            add_header X-Remote-User $remote_user always;
"""

CACHE_HEADERS = IDENTITY_HEADERS + """
            add_header X-Cache $tokengate_cache_status always;
"""


def protected(nginx, conf, extra="", realm="api", http_extra=""):
    """Start nginx with / open and /p/ (the html directory) behind tokengate
    with conf; extra goes into /p/, http_extra into http {}."""
    nginx.server(f"""
        location / {{ }}
        location /p/ {{
            alias {nginx.html}/;
            tokengate "{realm}";
            tokengate_config {conf};
{extra}
        }}
""", http_extra=http_extra)
    return nginx.start()


def status_site(nginx, conf, extra="", start=True):
    """/p/ behind tokengate with conf (extra inside), its email in
    X-TG-Email, and tokengate_status at /status; nginx started unless start
    is false."""
    nginx.server(f"""
        location = /status {{ tokengate_status; }}
        location /p/ {{
            alias {nginx.html}/;
            tokengate "api";
            tokengate_config {conf};
            add_header X-TG-Email $tokengate_email always;
{extra}
        }}
""")
    return nginx.start() if start else nginx


def status_json(nginx):
    """tokengate_status's counters, as JSON."""
    return json.loads(nginx.get("/status").body)


def doc_blocks():
    """The ```nginx blocks of docs/nginx.md, in order."""
    with open(os.path.join(SRCDIR, "docs", "nginx.md")) as f:
        text = f.read()
    return [b.split("```", 1)[0] for b in text.split("```nginx\n")[1:]]


def statements(text):
    """Top-level statements of an nginx fragment (comments dropped)."""
    text = "\n".join(line.split("#", 1)[0] for line in text.split("\n"))
    out, cur, depth = [], "", 0
    for ch in text:
        cur += ch
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                out.append(cur.strip())
                cur = ""
        elif ch == ";" and depth == 0:
            out.append(cur.strip())
            cur = ""
    return [s for s in out if s]


def write_secret(path, value, mode=0o600):
    """A secret file as tokengate wants it (owner-only by default)."""
    path.write_text(value + "\n")
    os.chmod(path, mode)
    return path


def write_tg_conf(tmp_path, api, url, **extra):
    """A tokengate.conf (0600) with api, url and the extra keys."""
    path = tmp_path / f"tokengate-{api}-{time.monotonic_ns()}.conf"
    text = f"api = {api}\nurl = {url}\n"
    text += "".join(f"{k} = {v}\n" for k, v in extra.items())
    path.write_text(text)
    os.chmod(path, 0o600)
    return path


def fetch(url, headers=None, method="GET", timeout=30):
    """One request to an absolute http://127.0.0.1 URL, as a browser would
    send it (Host is the URL's host:port); redirects are not followed."""
    u = urllib.parse.urlsplit(url)
    assert u.scheme == "http" and u.hostname == "127.0.0.1", url
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        target = u.path + ("?" + u.query if u.query else "")
        c.request(method, target, headers=dict(headers or {}))
        r = c.getresponse()
        return Response.read(r)
    finally:
        c.close()
