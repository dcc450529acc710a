# SPDX-License-Identifier: MIT
"""The complete nginx configurations of docs/examples/ work as shipped.

Each example is a whole nginx.conf written for an installed system
(load_module /usr/lib/nginx/modules/..., /etc/tokengate.conf,
/var/log/nginx/, ...).  The test changes only what an administrator trying
one elsewhere would: the module's path (the built one), the files under
/etc, /run and /var (into a private prefix) and the listen port; then Debian's
/usr/sbin/nginx must pass "nginx -t" with it.  The minimal example is also
started against a devserver: 401 without a token, 200 with one.

nginx creates its default temporary directories (/var/lib/nginx/body, ...)
when it reads a configuration that does not name them, as the examples do;
the ones this test made are removed again.
"""
import os
import re
import subprocess

import pytest

from conftest import Devserver, fetch_token
from nginxlib import NGINX, SRCDIR, Nginx, module_path, nginx_env, write_secret

EXAMPLES = os.path.join(SRCDIR, "docs", "examples")
INSTALLED_MODULE = "/usr/lib/nginx/modules/ngx_http_tokengate_module.so"
TEMP_ROOT = "/var/lib/nginx"
TEMP_DIRS = ["body", "fastcgi", "proxy", "scgi", "uwsgi"]
# What each example needs in /etc/tokengate.conf besides "url" (its header
# comment says so).
CONF_KEYS = {"embed.conf": {"api": "looker"}}


def example_names():
    return sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".conf"))


def test_the_four_examples_are_there():
    assert example_names() == ["api-basic.conf", "browser-login.conf",
                               "embed.conf", "minimal.conf"]


@pytest.fixture(scope="module")
def nginx_temp_dirs():
    """Remove the default temporary directories nginx creates, when they
    did not exist before (only empty ones)."""
    before = {d for d in TEMP_DIRS
              if os.path.exists(os.path.join(TEMP_ROOT, d))}
    yield
    for d in TEMP_DIRS:
        path = os.path.join(TEMP_ROOT, d)
        if d not in before and os.path.isdir(path):
            try:
                os.rmdir(path)
            except OSError:
                pass


class Example(Nginx):
    """One example, rewritten into a private prefix (nginxlib's Nginx: its
    logs/error.log and logs/access.log are where the rewritten example
    logs; stop() checks them)."""

    def __init__(self, name, tmp_path, url):
        super().__init__(tmp_path)
        self.name = name
        keys = {"url": url, **CONF_KEYS.get(name, {})}
        tg = self.dir / "tokengate.conf"
        tg.write_text("".join(f"{k} = {v}\n" for k, v in keys.items()))
        os.chmod(tg, 0o600)
        write_secret(self.dir / "embed.secret", "example-embed-secret-0001")
        with open(os.path.join(EXAMPLES, name)) as f:
            self.text = self.rewrite(f.read())
        self.conf.write_text(self.text)

    def rewrite(self, text):
        d = self.dir
        # Exactly the installed module's path, on a line of its own.
        assert f"\nload_module {INSTALLED_MODULE};\n" in text, self.name
        assert re.search(r"^\s*listen 8000;$", text, re.M), self.name
        subs = [(INSTALLED_MODULE, module_path()),
                ("/run/nginx.pid", f"{d}/nginx.pid"),
                ("/var/log/nginx/", f"{d}/logs/"),
                ("/etc/tokengate/embed.secret", f"{d}/embed.secret"),
                ("/etc/tokengate.conf", f"{d}/tokengate.conf"),
                ("/var/www/html", f"{d}/html"),
                ("listen 8000;", f"listen 127.0.0.1:{self.port};")]
        for old, new in subs:
            text = text.replace(old, new)
        # Nothing else under /etc, /run or /var is written or needed
        # (/etc/nginx/mime.types comes with Debian's nginx).
        code = re.sub(r"#.*", "", text)
        for path in re.findall(r"(/(?:etc|run|var)/[^\s;]*)", code):
            assert path == "/etc/nginx/mime.types", (self.name, path)
        return text

    def test_config(self):
        return subprocess.run(
            [NGINX, "-t", "-e", str(self.dir / "logs" / "error.log"), "-p",
             str(self.dir), "-c", str(self.conf)],
            capture_output=True, text=True, env=nginx_env(), timeout=30)

    def start(self):
        # In the foreground, as nginxlib runs nginx (nginx -g 'daemon off;'
        # would do the same); pytest's directories are private (0700): as
        # root, the worker runs as root to read html/ (never outside tests).
        main = "daemon off;\n"
        if os.geteuid() == 0:
            main += "user root root;\n"
        self.conf.write_text(main + self.text)
        return super().start()


@pytest.mark.parametrize("name", example_names())
def test_example_passes_nginx_t(name, tmp_path, nginx_temp_dirs):
    ex = Example(name, tmp_path, "http://127.0.0.1:9")
    res = ex.test_config()
    assert res.returncode == 0, (res.stderr, ex.logs())
    assert "test is successful" in res.stderr
    assert "[emerg]" not in res.stderr + ex.logs(), (res.stderr, ex.logs())
    assert "[warn]" not in res.stderr + ex.logs(), (res.stderr, ex.logs())


def test_minimal_example_against_the_devserver(tmp_path, nginx_temp_dirs):
    srv = Devserver(tmp_path, ())
    ex = Example("minimal.conf", tmp_path, srv.url)
    try:
        ex.start()
        r = ex.get("/")
        assert r.status == 401, r
        assert r.header("WWW-Authenticate") == 'Bearer realm="site"', r
        r = ex.get("/", token=fetch_token(srv, "insight", "alice"))
        assert r.status == 200, (r, ex.logs())
        assert r.body == b"static index.html\n"
        r = ex.get("/", token="not-a-valid-token-0001")
        assert r.status == 401, r
        assert 'error="invalid_token"' in r.header("WWW-Authenticate"), r
    finally:
        ex.stop()       # checks the logs: no alert, no token, no secret
        assert srv.stop() == 0
