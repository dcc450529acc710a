# SPDX-License-Identifier: MIT
"""Install, upgrade and purge the Debian packages on this machine; inspect
the RPMs.

What an administrator expects from packages of an auth module, checked on
the real system (as root, through dpkg):

* installing changes no PAM stack (/etc/pam.d stays byte-identical: the
  pam-auth-update profile is "Default: no") and only adds the nginx load
  file, with which the system's "nginx -t" passes;
* the CLI, the devserver, the man pages and the modules work from their
  installed places, with the installed /etc/tokengate.conf (root:root 0600,
  a conffile, every key commented out);
* the PAM module's state directory /run/tokengate is made root:root 0700
  by its tmpfiles.d entry, by the postinst and at boot;
* reinstalling (the upgrade path) keeps an edited /etc/tokengate.conf
  without a prompt, and keeps an nginx module the administrator disabled
  disabled;
* purging leaves the machine as it was: /etc/pam.d, /etc/nginx,
  /usr/share/pam-configs, /var/lib/pam, the alternatives, the package list
  and every path the packages ship.

The RPMs are inspected without installing them (rpm -qp, rpm2cpio).

The run takes minutes (building the packages, most of it): a line per phase
(each step of scripts/package, installing, upgrading, purging...) with the
time since the start goes to the terminal through pytest's capture.

Packages come from scripts/package, or from $TG_PACKAGES_DIR when set (a
folder scripts/package filled).  The machine is restored by a finalizer
even when a test fails midway or the run is stopped (Ctrl-C, SIGTERM,
SIGHUP): our packages (and any dependency apt pulled for them) are purged,
and dpkg is never interrupted halfway.  A run killed outright (SIGKILL)
leaves /var/tmp/tokengate-install-test.pending; the next run purges what
it names first.  The system nginx service is never started or
reloaded (dpkg's nginx-reload trigger only reloads a running nginx); the
nginx this test starts is private (its own prefix, a free loopback port).

Run as root:  /usr/bin/python3 -m pytest -p no:cacheprovider -q -ra tests/install
"""
import ctypes
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PACKAGES = ("tokengate", "libpam-tokengate", "libnginx-mod-http-tokengate")
RPMS = ("tokengate", "pam_tokengate", "nginx-mod-http-tokengate")
CONF = "/etc/tokengate.conf"
NGINX = "/usr/sbin/nginx"
ENABLED = "/etc/nginx/modules-enabled"
LOAD_LINK = ENABLED + "/50-mod-http-tokengate.conf"
LOAD_FILE = "/usr/share/nginx/modules-available/mod-http-tokengate.conf"
NGX_SO = "/usr/lib/nginx/modules/ngx_http_tokengate_module.so"
PAM_CONFIG = "/usr/share/pam-configs/tokengate"
# The module's state directory, made at boot by the tmpfiles.d entry.
STATE_DIR = "/run/tokengate"
TMPFILES = "/usr/lib/tmpfiles.d/tokengate.conf"
EXAMPLES = "/usr/share/doc/libnginx-mod-http-tokengate/examples"
# The devserver's built-in demo users: alice is in the group "admins",
# bob is not.
DEMO = {name: (f"{name}-client", f"{name}-secret-DEMO-0001")
        for name in ("alice", "bob")}
# The devserver's built-in demo embed secret (docs/devserver.md).
DEMO_EMBED_SECRET = "looker-embed-secret-DEMO-0001"
# One install test per machine at a time (dpkg is machine-wide).
LOCK = "/run/lock/tokengate-install-test.lock"
# How long to wait for another install test to finish.
LOCK_WAIT = 1800
# Written before the first dpkg -i, removed once the packages are purged: a
# run killed in between (SIGKILL, a crash) leaves it, and the next run
# purges what it names before starting.  /var/tmp survives a reboot, as
# dpkg's database does.
PENDING = "/var/tmp/tokengate-install-test.pending"
# How long to wait for another dpkg/apt-get to release its lock.
DPKG_LOCK_WAIT = 300
# Mentioned in the conffile prompt dpkg shows when a conffile conflicts.
PROMPT_TEXT = "Configuration file '/etc/tokengate.conf'"


# The pytest config (for its capture manager and terminal), and the start.
_PROGRESS = {}


@pytest.fixture(scope="module", autouse=True)
def _progress(pytestconfig):
    """Set up phase(): autouse, so it comes before the machine fixture and
    goes after it."""
    _PROGRESS.update(config=pytestconfig, start=time.monotonic())
    yield
    _PROGRESS.clear()


def phase(text):
    """One progress line on the terminal, "[ 95s] install test: TEXT",
    around pytest's output capture (the summary stays as it is)."""
    start = _PROGRESS.get("start", time.monotonic())
    line = f"[{time.monotonic() - start:4.0f}s] install test: {text}"
    config = _PROGRESS.get("config")
    capman = config.pluginmanager.getplugin("capturemanager") if config \
        else None
    reporter = config.pluginmanager.getplugin("terminalreporter") if config \
        else None
    if capman is None or reporter is None:
        print(line, file=sys.stderr, flush=True)
        return
    with capman.global_and_fixture_disabled():
        reporter.write_line(line)


def run(cmd, check=True, timeout=300, shielded=False, **kw):
    """Run a command; on failure, say what it printed.  shielded: the
    command (dpkg, apt-get) runs in its own session, so a Ctrl-C at the
    terminal does not reach it, and is waited for even when the test is
    interrupted: killing dpkg halfway would leave packages half-installed
    for the cleanup to deal with."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    if not shielded:
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              timeout=timeout, **kw)
    else:
        child = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True,
                                 start_new_session=True, **kw)
        interrupted = None
        deadline = time.monotonic() + timeout
        while True:
            try:
                out, err = child.communicate(
                    timeout=max(1, deadline - time.monotonic()))
                break
            except KeyboardInterrupt as e:
                interrupted = e     # let dpkg finish, then stop the test
                print(f"interrupted: waiting for {cmd[0]} to finish")
            except subprocess.TimeoutExpired:
                child.kill()
                out, err = child.communicate()
                pytest.fail(f"{' '.join(cmd)} timed out after {timeout} s:"
                            f"\n{out[-3000:]}\n{err[-3000:]}")
        if interrupted is not None:
            raise interrupted
        proc = subprocess.CompletedProcess(cmd, child.returncode, out, err)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}:\n"
                    f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def dpkg(*args, check=True):
    """dpkg, non-interactive, waiting for a lock another dpkg/apt holds."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    deadline = time.monotonic() + DPKG_LOCK_WAIT
    while True:
        proc = run(["dpkg", *args], check=False, env=env, shielded=True)
        locked = "lock" in proc.stderr and "locked" in proc.stderr
        if not locked or time.monotonic() > deadline:
            break
        time.sleep(2)
    if check and proc.returncode != 0:
        pytest.fail(f"dpkg {' '.join(args)} exited {proc.returncode}:\n"
                    f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def installed_packages():
    """{package:arch: version} of every package dpkg knows, in any state
    but "not-installed"."""
    out = run(["dpkg-query", "-W", "-f",
               "${binary:Package} ${Version} ${db:Status-Abbrev}\n"]).stdout
    pkgs = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and not parts[2].startswith("un"):
            pkgs[parts[0]] = f"{parts[1]} {parts[2]}"
    return pkgs


def ours_installed():
    """Our packages dpkg lists in any state but not-installed."""
    return sorted(p for p in installed_packages()
                  if p.split(":")[0] in PACKAGES)


def tree(path):
    """{relative path: (kind, content hash or link target, mode, uid, gid)}
    of everything under path (missing: {})."""
    snap = {}
    if not os.path.lexists(path):
        return snap
    for dirpath, dirnames, filenames in os.walk(path):
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                what = ("link", os.readlink(full))
            elif stat.S_ISREG(st.st_mode):
                with open(full, "rb") as f:
                    what = ("file", hashlib.sha256(f.read()).hexdigest())
            elif stat.S_ISDIR(st.st_mode):
                what = ("dir", "")
            else:
                what = ("other", "")
            snap[os.path.relpath(full, path)] = what + (
                stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    return snap


def diff(before, after):
    """Lines that say how two tree() snapshots differ."""
    lines = []
    for key in sorted(set(before) | set(after)):
        if key not in after:
            lines.append(f"gone:    {key}")
        elif key not in before:
            lines.append(f"new:     {key} {after[key][:2]}")
        elif before[key] != after[key]:
            lines.append(f"changed: {key} {before[key]} -> {after[key]}")
    return lines


def alternatives():
    return run(["update-alternatives", "--get-selections"]).stdout


def deb_paths(deb):
    """(path, mode string, owner) of every entry of a .deb."""
    out = run(["dpkg-deb", "-c", deb]).stdout
    entries = []
    for line in out.splitlines():
        f = line.split()
        path = f[5][1:] if f[5].startswith("./") else f[5]
        entries.append((path.rstrip("/") or "/", f[0], f[1]))
    return entries


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def http_get(url, headers=None, timeout=10, follow=True):
    """(status, headers, body) of a GET, errors included; follow=False
    answers a redirect itself instead of following it."""
    req = urllib.request.Request(url, headers=headers or {})
    # No proxy from the environment (http_proxy): loopback stays loopback.
    handlers = [urllib.request.ProxyHandler({})]
    if not follow:
        handlers.append(_NoRedirect)
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


class Machine:
    """The packages under test and the machine's state before them."""

    def __init__(self, pkgdir, tmp):
        self.pkgdir = pkgdir
        self.tmp = tmp
        self.version = None
        self.debs = {}
        self.rpms = {}
        self.before = {}
        self.pulled = []     # dependencies apt-get installed for us
        self.installed = False
        self.edit = None

    def find_packages(self):
        for pkg in PACKAGES:
            found = glob.glob(os.path.join(self.pkgdir, f"{pkg}_*.deb"))
            assert len(found) == 1, f"{pkg}: expected one .deb in " \
                f"{self.pkgdir}, found {found}"
            self.debs[pkg] = found[0]
        self.version = os.path.basename(
            self.debs["tokengate"]).split("_")[1]
        for pkg in RPMS:
            found = [r for r in glob.glob(os.path.join(self.pkgdir,
                                                       f"{pkg}-[0-9]*.rpm"))
                     if not r.endswith(".src.rpm")]
            assert len(found) == 1, f"{pkg}: expected one .rpm in " \
                f"{self.pkgdir}, found {found}"
            self.rpms[pkg] = found[0]

    def snapshot(self):
        shipped = {}
        for deb in self.debs.values():
            for path, mode, _ in deb_paths(deb):
                shipped[path] = (os.path.lexists(path), mode[0])
        return {
            "pam.d": tree("/etc/pam.d"),
            "nginx": tree("/etc/nginx"),
            "pam-configs": tree("/usr/share/pam-configs"),
            "var-lib-pam": tree("/var/lib/pam"),
            "etc-alternatives": tree("/etc/alternatives"),
            "alternatives": alternatives(),
            "packages": installed_packages(),
            "shipped": shipped,
            "state-dir": os.path.lexists(STATE_DIR),
        }

    def install(self, *extra):
        """dpkg -i our .debs; apt-get pulls dependencies if dpkg cannot."""
        debs = [self.debs[p] for p in PACKAGES]
        before = set(installed_packages())
        self.write_pending()
        proc = dpkg(*extra, "-i", *debs, check=False)
        if proc.returncode != 0 and "dependency problems" in proc.stderr:
            # Missing runtime dependencies: let apt-get resolve them like an
            # administrator would, and remember what it added.
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            try:
                run(["apt-get", "-o",
                     f"DPkg::Lock::Timeout={DPKG_LOCK_WAIT}",
                     "install", "-y", "--no-install-recommends",
                     *[os.path.abspath(d) for d in debs]],
                    env=env, timeout=900, shielded=True)
            finally:
                self.note_pulled(before)
            proc = dpkg(*extra, "-i", *debs)
        elif proc.returncode != 0:
            pytest.fail(f"dpkg -i failed:\n{proc.stdout}\n{proc.stderr}")
        self.note_pulled(before)
        return proc

    def note_pulled(self, before):
        """Remember (here and in PENDING) what apt-get added for us."""
        added = set(installed_packages()) - before
        self.pulled = sorted(set(self.pulled) | {
            p for p in added if p.split(":")[0] not in PACKAGES})
        self.write_pending()

    def write_pending(self):
        tmp = PENDING + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"pid": os.getpid(), "pulled": self.pulled}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, PENDING)

    def purge(self):
        proc = dpkg("--purge", *PACKAGES, check=False)
        if self.pulled:
            dpkg("--purge", *self.pulled, check=False)
        return proc


def recover_killed_run():
    """Purge what a killed earlier run (PENDING left behind) installed."""
    if not os.path.exists(PENDING):
        return
    try:
        with open(PENDING) as f:
            pulled = json.load(f).get("pulled", [])
    except (OSError, ValueError):
        pulled = []
    left = ours_installed()
    phase(f"an earlier install test was killed: purging {left + pulled}")
    if left:
        dpkg("--purge", *PACKAGES, check=False)
    if pulled:
        dpkg("--purge", *pulled, check=False)
    left = ours_installed()
    if left:
        pytest.fail(f"could not purge {left}, left by a killed install "
                    f"test ({PENDING})")
    os.unlink(PENDING)


class _Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: stop like Ctrl-C, so pytest runs the cleanup."""


def _terminate(signum, frame):
    raise _Terminated(f"signal {signum}")


_LIBC = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    """preexec_fn: SIGTERM this child when the test process dies (prctl
    PR_SET_PDEATHSIG), so a killed test leaves no server running."""
    _LIBC.prctl(1, signal.SIGTERM, 0, 0, 0)     # 1: PR_SET_PDEATHSIG


@pytest.fixture(scope="module")
def machine(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("the install test installs packages: run it as root "
                    "(scripts/check skips it otherwise)")
    for tool in ("dpkg", "dpkg-deb", "rpm", "rpm2cpio", "cpio", NGINX):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: run scripts/deps")
    os.makedirs(os.path.dirname(LOCK), exist_ok=True)
    lock = open(LOCK, "w")
    deadline = time.monotonic() + LOCK_WAIT
    waiting = False
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if not waiting:
                phase(f"waiting for another install test ({LOCK})")
                waiting = True
            if time.monotonic() > deadline:
                pytest.fail(f"another install test has held {LOCK} for "
                            f"{LOCK_WAIT} s")
            time.sleep(1)
    # From here on, SIGTERM/SIGHUP clean up like Ctrl-C does.
    old_handlers = {s: signal.signal(s, _terminate)
                    for s in (signal.SIGTERM, signal.SIGHUP)}
    recover_killed_run()

    tmp = tmp_path_factory.mktemp("install")
    pkgdir = os.environ.get("TG_PACKAGES_DIR")
    if not pkgdir:
        pkgdir = os.path.join(ROOT, "_build", "packages")
        log = tmp / "package.log"
        t = time.monotonic()
        phase(f"building the packages with scripts/package (log: {log})")
        # Its "==== step ====" headings are the phases of the build.
        with open(log, "w") as out:
            proc = subprocess.Popen([os.path.join(ROOT, "scripts", "package")],
                                    stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, text=True,
                                    errors="replace")
            for line in proc.stdout:
                out.write(line)
                if line.startswith("==== "):
                    phase("scripts/package: " + line.strip().strip("= "))
            rc = proc.wait()
        if rc != 0:
            pytest.fail(f"scripts/package exited {rc}:\n"
                        + log.read_text(errors="replace")[-4000:])
        phase(f"packages built in {time.monotonic() - t:.0f} s")
    else:
        phase(f"using the packages in {pkgdir} (TG_PACKAGES_DIR)")

    m = Machine(pkgdir, tmp)
    m.find_packages()
    already = ours_installed()
    if already:
        pytest.fail(f"{', '.join(already)} already installed: the install "
                    "test needs a machine without them (dpkg --purge them)")
    if os.path.lexists(CONF):
        pytest.fail(f"{CONF} exists and no package owns it: installing "
                    "would make dpkg ask about it; move it away first")
    m.before = m.snapshot()
    yield m

    # Whatever happened above, leave no package of ours behind; a second
    # SIGTERM does not stop that (a SIGKILL leaves PENDING for next time).
    for s in old_handlers:
        signal.signal(s, signal.SIG_IGN)
    try:
        left = ours_installed()
        if left or m.pulled:
            phase(f"cleanup: purging {left + m.pulled}")
            m.purge()
        left = ours_installed()
        assert not left, f"cleanup could not purge {left}"
        if os.path.exists(PENDING):
            os.unlink(PENDING)
        # What the packages touch is back as it was (the full comparison
        # is test_purge_restores_machine's; this one also runs after a
        # failure midway).
        after = m.snapshot()
        problems = [f"{k}: {line}" for k in ("pam.d", "var-lib-pam",
                                             "pam-configs")
                    for line in diff(m.before[k], after[k])]
        problems += [f"{p} left behind" for p in (CONF, LOAD_LINK,
                                                  LOAD_LINK + ".removed")
                     if os.path.lexists(p)]
        if os.path.lexists(STATE_DIR) and not m.before["state-dir"]:
            problems.append(f"{STATE_DIR} left behind")
        assert not problems, "after the cleanup:\n" + "\n".join(problems)
        phase("done: the machine is as it was")
    finally:
        for s, h in old_handlers.items():
            signal.signal(s, h)
        lock.close()


def require_installed(m):
    if not m.installed:
        pytest.fail("the packages are not installed (see test_install)")


# ---------------------------------------------------------------------------
# Before installing: what the packages contain
# ---------------------------------------------------------------------------

def test_deb_contents(machine):
    """Paths, owners and modes of the .debs, as Debian lays them out."""
    phase("checking the contents of the .debs")
    # Where this Debian keeps its own PAM modules (Debian 12:
    # /lib/<multiarch>/security).
    unix = [p for p in run(["dpkg", "-L", "libpam-modules"]).stdout.split()
            if p.endswith("/pam_unix.so")]
    assert unix, "cannot find pam_unix.so in libpam-modules"
    pamdir = os.path.dirname(unix[0])

    entries = {pkg: {p: (mode, owner) for p, mode, owner
                     in deb_paths(machine.debs[pkg])}
               for pkg in PACKAGES}
    for pkg, files in entries.items():
        for path, (mode, owner) in files.items():
            assert owner == "root/root", f"{pkg}: {path} owned by {owner}"
            assert not path.startswith("/usr/local"), f"{pkg}: {path}"
        assert f"/usr/share/doc/{pkg}/copyright" in files, pkg
        assert f"/usr/share/doc/{pkg}/changelog.Debian.gz" in files, pkg
    t = entries["tokengate"]
    assert t[CONF][0] == "-rw-------", f"{CONF}: {t[CONF][0]}"
    for path in ("/usr/bin/tokengate", "/usr/bin/tokengate-devserver"):
        assert t[path][0] == "-rwxr-xr-x", path
    for page in ("/usr/share/man/man1/tokengate.1.gz",
                 "/usr/share/man/man1/tokengate-devserver.1.gz",
                 "/usr/share/man/man5/tokengate.conf.5.gz"):
        assert page in t, page
    p = entries["libpam-tokengate"]
    assert p[f"{pamdir}/pam_tokengate.so"][0] == "-rw-r--r--"
    assert PAM_CONFIG in p
    # The tmpfiles.d entry, activated by the postinst (dh_installtmpfiles)
    # and its directory removed on purge.
    assert p[TMPFILES][0] == "-rw-r--r--", p.get(TMPFILES)
    pamctl = machine.tmp / "ctl-pam"
    run(["dpkg-deb", "-e", machine.debs["libpam-tokengate"], str(pamctl)])
    postinst = (pamctl / "postinst").read_text()
    assert "systemd-tmpfiles" in postinst and \
        "--create tokengate.conf" in postinst, postinst
    postrm = (pamctl / "postrm").read_text()
    assert f"rm -rf {STATE_DIR}" in postrm, postrm
    assert "/usr/share/man/man8/pam_tokengate.8.gz" in p
    n = entries["libnginx-mod-http-tokengate"]
    assert NGX_SO in n and LOAD_FILE in n
    for name in ("http-tokengate.conf", "location-api.conf",
                 "location-admin.conf", "map-admin-realm.conf",
                 "location-status.conf"):
        assert f"{EXAMPLES}/{name}" in n, name

    info = run(["dpkg-deb", "-f", machine.debs["libnginx-mod-http-tokengate"],
                "Depends"]).stdout
    abi = open("/usr/share/nginx/src/debian/libnginx-mod.abisubstvars").read()
    want = re.search(r"^nginx:abi=(\S+)", abi, re.M).group(1)
    assert want in info, f"Depends has no {want}: {info}"
    # tokengate_shared_cache: shlibs adds the hiredis runtime
    assert "libhiredis" in info, f"Depends has no libhiredis: {info}"
    ctl = machine.tmp / "ctl"
    run(["dpkg-deb", "-e", machine.debs["tokengate"], str(ctl)])
    assert (ctl / "conffiles").read_text().split() == [CONF]


def test_rpm_contents(machine):
    """The RPMs: Fedora's layout, modes, the config as %config(noreplace)."""
    phase("checking the contents of the .rpms")
    qf = "[%{FILEMODES:octal}|%{FILEUSERNAME}|%{FILEGROUPNAME}|" \
         "%{FILEFLAGS:fflags}|%{FILENAMES}\n]"
    files = {}
    for pkg, path in machine.rpms.items():
        out = run(["rpm", "-qp", "--qf", qf, path]).stdout
        files[pkg] = {}
        for line in out.splitlines():
            mode, user, group, flags, name = line.split("|", 4)
            files[pkg][name] = (mode, user, group, flags)
            assert (user, group) == ("root", "root"), f"{pkg}: {line}"
        # rpm2cpio | cpio -t lists the same files as rpm -qlp.
        cpio = subprocess.run(f"rpm2cpio '{path}' | cpio -t --quiet",
                              shell=True, capture_output=True, text=True)
        assert cpio.returncode == 0, cpio.stderr
        listed = {n[1:] if n.startswith(".") else n
                  for n in cpio.stdout.split()}
        assert listed == set(files[pkg]), \
            f"{pkg}: cpio and rpm -qp differ: {listed ^ set(files[pkg])}"

    t, p, n = files["tokengate"], files["pam_tokengate"], \
        files["nginx-mod-http-tokengate"]
    mode, _, _, flags = t[CONF]
    assert mode == "100600", f"{CONF} mode {mode}"
    assert "c" in flags and "n" in flags, f"{CONF} flags {flags!r}: " \
        "expected %config(noreplace)"
    for binary in ("/usr/bin/tokengate", "/usr/bin/tokengate-devserver"):
        assert t[binary][0] == "100755", binary
    for page in ("/usr/share/man/man1/tokengate.1.gz",
                 "/usr/share/man/man1/tokengate-devserver.1.gz",
                 "/usr/share/man/man5/tokengate.conf.5.gz"):
        assert page in t, page
    assert p["/usr/lib64/security/pam_tokengate.so"][0] == "100755"
    assert p[TMPFILES][0] == "100644", p.get(TMPFILES)
    scripts = run(["rpm", "-qp", "--scripts",
                   machine.rpms["pam_tokengate"]]).stdout
    assert f"systemd-tmpfiles --create {TMPFILES}" in scripts, scripts
    assert "/usr/share/man/man8/pam_tokengate.8.gz" in p
    so = "/usr/lib64/nginx/modules/ngx_http_tokengate_module.so"
    conf = "/usr/share/nginx/modules/mod-http-tokengate.conf"
    assert n[so][0] == "100755" and n[conf][0] == "100644"
    for pkg, fl in files.items():
        for name in fl:
            assert not name.endswith(".la"), f"{pkg}: {name}"
            assert not name.startswith(("/usr/local", "/lib/", "/usr/lib/x86")), \
                f"{pkg}: {name} is not in Fedora's layout"

    # The load file names the module by its absolute path.
    text = subprocess.run(
        f"rpm2cpio '{machine.rpms['nginx-mod-http-tokengate']}' "
        f"| cpio -i --quiet --to-stdout '.{conf}'",
        shell=True, capture_output=True, text=True).stdout
    assert text.strip() == f'load_module "{so}";', text
    # The same sample config as the .deb.
    rpm_conf = subprocess.run(
        f"rpm2cpio '{machine.rpms['tokengate']}' "
        f"| cpio -i --quiet --to-stdout '.{CONF}'",
        shell=True, capture_output=True).stdout
    with open(os.path.join(ROOT, "packaging", "tokengate.conf"), "rb") as f:
        assert rpm_conf == f.read()
    # nginx(abi) is the version of the nginx the module was built against.
    req = run(["rpm", "-qp", "--requires",
               machine.rpms["nginx-mod-http-tokengate"]]).stdout
    ver = re.search(r'NGINX_VERSION\s+"([0-9.]+)"',
                    open("/usr/share/nginx/src/src/core/nginx.h").read())
    assert f"nginx(abi) = {ver.group(1)}" in req, req


# ---------------------------------------------------------------------------
# Install
# ---------------------------------------------------------------------------

def test_install(machine):
    """dpkg -i the three packages: all configured, nothing prompted."""
    phase("installing the .debs (dpkg -i)")
    proc = machine.install()
    machine.installed = True
    assert PROMPT_TEXT not in proc.stdout + proc.stderr
    pkgs = installed_packages()
    for pkg in PACKAGES:
        state = [v for k, v in pkgs.items() if k.split(":")[0] == pkg]
        assert state and state[0].endswith(" ii"), f"{pkg}: {state}"
        assert state[0].startswith(machine.version), f"{pkg}: {state}"
    if machine.pulled:
        print(f"apt-get pulled {machine.pulled}")


def test_pam_not_enabled(machine):
    """pam-auth-update knows the profile but enabled nothing."""
    require_installed(machine)
    changes = diff(machine.before["pam.d"], tree("/etc/pam.d"))
    assert not changes, "/etc/pam.d changed:\n" + "\n".join(changes)
    with open(PAM_CONFIG) as f:
        profile = f.read()
    assert re.search(r"^Default: no$", profile, re.M), profile
    for f in glob.glob("/etc/pam.d/*"):
        with open(f, errors="replace") as fh:
            assert "pam_tokengate" not in fh.read(), f
    # pam-auth-update's own record: the profile is known ("seen"), and the
    # stacks it saved (auth, account, ...) are unchanged: not enabled.
    changes = diff(machine.before["var-lib-pam"], tree("/var/lib/pam"))
    assert [c.split()[:2] for c in changes] in ([], [["changed:", "seen"]]), \
        "/var/lib/pam changed:\n" + "\n".join(changes)
    with open("/var/lib/pam/seen") as f:
        assert "tokengate" in f.read().split(), "profile not registered"
    # The module loads (its libraries resolve) and exports the PAM entry
    # points.
    unix = [p for p in run(["dpkg", "-L", "libpam-modules"]).stdout.split()
            if p.endswith("/pam_unix.so")]
    path = os.path.join(os.path.dirname(unix[0]), "pam_tokengate.so")
    lib = ctypes.CDLL(path, mode=os.RTLD_NOW | os.RTLD_LOCAL)
    for sym in ("pam_sm_authenticate", "pam_sm_acct_mgmt",
                "pam_sm_open_session", "pam_sm_setcred"):
        assert hasattr(lib, sym), f"{path} does not export {sym}"
    owner = run(["dpkg", "-S", path]).stdout
    assert owner.startswith("libpam-tokengate"), owner


def test_state_dir_from_tmpfiles(machine):
    """The tmpfiles.d entry makes /run/tokengate root:root 0700: at once
    from the postinst, and at boot (systemd-tmpfiles --create on an empty
    /run, done here as the boot does)."""
    require_installed(machine)
    with open(TMPFILES) as f:
        entries = [line.split() for line in f
                   if line.strip() and not line.startswith("#")]
    assert entries == [["d", STATE_DIR, "0700", "root", "root", "-"]], \
        entries
    owner = run(["dpkg", "-S", TMPFILES]).stdout
    assert owner.startswith("libpam-tokengate:"), owner
    tool = shutil.which("systemd-tmpfiles")
    if tool is None:
        pytest.fail("systemd-tmpfiles is missing: cannot check that the "
                    f"entry makes {STATE_DIR} (install systemd)")
    # The postinst runs systemd-tmpfiles when it is there.
    check_state_dir("after the postinst")
    if not machine.before["state-dir"]:
        os.rmdir(STATE_DIR)     # ours, still empty: as after a reboot
    run([tool, "--create", TMPFILES])
    check_state_dir("after systemd-tmpfiles --create")


def check_state_dir(when):
    st = os.lstat(STATE_DIR)
    assert stat.S_ISDIR(st.st_mode), f"{STATE_DIR} {when}: not a directory"
    assert (st.st_uid, st.st_gid) == (0, 0), \
        f"{STATE_DIR} {when}: owned by {st.st_uid}:{st.st_gid}"
    assert stat.S_IMODE(st.st_mode) == 0o700, \
        f"{STATE_DIR} {when}: mode {stat.S_IMODE(st.st_mode):04o}"


def test_nginx_module_enabled(machine):
    """dh_nginx's load file is enabled, and the system config still passes
    nginx -t with the module loaded."""
    require_installed(machine)
    assert os.path.islink(LOAD_LINK), f"{LOAD_LINK} missing"
    assert os.readlink(LOAD_LINK) == LOAD_FILE
    with open(LOAD_FILE) as f:
        assert f.read().strip() == \
            "load_module modules/ngx_http_tokengate_module.so;"
    test = run([NGINX, "-t"], check=False)
    assert test.returncode == 0, f"nginx -t failed:\n{test.stderr}"
    dump = run([NGINX, "-T"]).stdout
    assert f"# configuration file {LOAD_LINK}:" in dump
    assert "load_module modules/ngx_http_tokengate_module.so;" in dump
    changes = [c for c in diff(machine.before["nginx"], tree("/etc/nginx"))
               if not c.endswith("modules-enabled/50-mod-http-tokengate.conf "
                                 f"('link', '{LOAD_FILE}')")]
    assert not changes, "/etc/nginx changed beyond the load link:\n" + \
        "\n".join(changes)


def test_cli_and_man_pages(machine):
    """The installed commands run and their man pages are found."""
    require_installed(machine)
    ver = run(["/usr/bin/tokengate", "version"]).stdout
    assert ver.startswith(f"tokengate {machine.version.split('-')[0]} "), ver
    helptext = run(["/usr/bin/tokengate", "--help"]).stdout
    assert "login" in helptext and "whoami" in helptext, helptext
    dev = run(["/usr/bin/tokengate-devserver", "--help"]).stdout
    assert "--listen" in dev
    pages = {"1": "tokengate", "5": "tokengate.conf", "8": "pam_tokengate"}
    pages_dev = ("1", "tokengate-devserver")
    if shutil.which("man"):
        for section, name in list(pages.items()) + [pages_dev]:
            where = run(["man", "-w", section, name]).stdout.strip()
            assert where == f"/usr/share/man/man{section}/{name}.{section}.gz"
        # The page renders without groff warnings.
        out = run(["man", "--warnings", "-E", "UTF-8", "-l",
                   "/usr/share/man/man5/tokengate.conf.5.gz"],
                  env=dict(os.environ, MANWIDTH="80"))
        assert "KEYS" in out.stdout and not out.stderr.strip(), out.stderr
    else:
        print("man-db is not installed: checking the page files instead")
        for section, name in list(pages.items()) + [pages_dev]:
            assert os.path.isfile(
                f"/usr/share/man/man{section}/{name}.{section}.gz"), name


def test_config_file(machine):
    """/etc/tokengate.conf: root:root 0600, a conffile, every key of the
    key table commented out and explained, the documented defaults valid."""
    require_installed(machine)
    st = os.lstat(CONF)
    assert stat.S_ISREG(st.st_mode)
    assert (st.st_uid, st.st_gid) == (0, 0)
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    conffiles = run(["dpkg-query", "-W", "-f", "${Conffiles}",
                     "tokengate"]).stdout
    assert CONF in conffiles, conffiles
    with open(CONF) as f:
        text = f.read()
    active = [l for l in text.splitlines()
              if re.match(r"\s*[a-z_]+\s*=", l)]
    assert not active, f"keys set in the shipped config: {active}"
    with open(os.path.join(ROOT, "common", "config.c")) as f:
        keys = re.findall(r'^\s*\{"([a-z_]+)", KEY_[A-Z_]+,', f.read(), re.M)
    assert len(keys) >= 20, keys
    for key in keys:
        assert re.search(rf"^#{key} =( |$)", text, re.M), \
            f"{key} is not in {CONF}"

    # Every commented default, uncommented, is accepted by the parser (url
    # has no default: it comes from the devserver).
    defaults = [l[1:] for l in text.splitlines()
                if re.match(r"#[a-z_]+ =", l) and not l.startswith("#url =")]
    with Devserver(machine.tmp) as dev:
        conf = machine.tmp / "defaults.conf"
        conf.write_text("\n".join(defaults + [f"url = {dev.url}"]) + "\n")
        os.chmod(conf, 0o600)
        res = run(["/usr/bin/tokengate", "--config", str(conf), "check"],
                  check=False, env=cli_env(machine.tmp))
        assert res.returncode == 0, f"tokengate check with every default " \
            f"uncommented: {res.returncode}\n{res.stdout}\n{res.stderr}"

        # A user other than root cannot read the root-only file: the CLI
        # goes on without it, says so when that falls short, and works with
        # options of the user's own.
        nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup",
                  "--clear-groups", "--"]
        env = dict(cli_env(machine.tmp), HOME="/nonexistent")
        env.pop("TOKENGATE_CONFIG", None)
        res = run(nobody + ["/usr/bin/tokengate", "whoami"], check=False,
                  env=env)
        assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
        assert f"{CONF} is not readable by you" in res.stderr, res.stderr
        res = run(nobody + ["/usr/bin/tokengate", "--url", dev.url, "check"],
                  check=False, env=env)
        assert res.returncode == 0, (res.returncode, res.stdout, res.stderr)


def test_working_product(machine):
    """The installed pieces work together: the devserver, a CLI login with
    the shipped config, and the system's nginx binary running the installed
    module with the packaged example snippets."""
    require_installed(machine)
    phase("running the installed CLI, devserver and nginx module together")
    with Devserver(machine.tmp) as dev:
        tokens = {}
        for name, (client_id, secret) in DEMO.items():
            env = dict(cli_env(machine.tmp), TOKENGATE_SECRET=secret)
            res = run(["/usr/bin/tokengate", "--url", dev.url, "login",
                       "--client-id", client_id, "--print-token"], env=env)
            tokens[name] = res.stdout.strip()
            assert tokens[name] and "\n" not in tokens[name], res.stdout
        who = run(["/usr/bin/tokengate", "--url", dev.url, "whoami"],
                  env=dict(cli_env(machine.tmp),
                           TOKENGATE_TOKEN=tokens["alice"]))
        assert "alice" in who.stdout, who.stdout
        token = tokens["alice"]

        with PrivateNginx(machine.tmp, dev.url) as ngx:
            base = f"http://127.0.0.1:{ngx.port}"
            status, headers, _ = http_get(base + "/api/x")
            assert status == 401, status
            assert headers["WWW-Authenticate"] == 'Bearer realm="api"'
            status, _, _ = http_get(base + "/api/x", {
                "Authorization": "Bearer " + token})
            # Accepted, then proxied to a closed port: 502 from the proxy.
            assert status == 502, f"valid token: {status}"
            status, _, _ = http_get(base + "/api/x", {
                "Authorization": "Bearer not-a-valid-token"})
            assert status == 401, status
            status, _, body = http_get(base + "/tokengate-status")
            assert status == 200 and b"{" in body, (status, body[:200])
            status, _, _ = http_get(base + "/admin/x", {
                "Authorization": "Bearer " + token})
            assert status == 502, f"/admin/ for alice (in admins): {status}"
            status, _, _ = http_get(base + "/admin/x", {
                "Authorization": "Bearer " + tokens["bob"]})
            assert status == 403, f"/admin/ for bob (not in admins): {status}"
            # The packaged embed example signs a URL the devserver accepts.
            status, headers, _ = http_get(
                base + "/analytics/dashboard?id=42",
                {"Authorization": "Bearer " + token}, follow=False)
            assert status == 302, f"embed for alice: {status}"
            assert headers["Cache-Control"] == "no-store", dict(headers)
            location = headers["Location"]
            assert location.startswith(
                dev.url + "/login/embed/%2Fembed%2Fdashboards%2F42?"), \
                "the Location is not the devserver's embed login"
            status, headers, _ = http_get(location, follow=False)
            assert status == 302, f"the devserver refused the URL: {status}"
            status, _, _ = http_get(location, follow=False)
            assert status == 401, f"replayed embed URL: {status}"
            status, _, _ = http_get(base + "/analytics/dashboard?id=7",
                                    {"Authorization": "Bearer " + token},
                                    follow=False)
            assert status == 403, f"dashboard outside the allow-list: {status}"


# ---------------------------------------------------------------------------
# Upgrade (reinstall)
# ---------------------------------------------------------------------------

def test_upgrade_keeps_edited_config(machine):
    """An administrator's edit survives a reinstall, with no prompt; an
    nginx module they disabled stays disabled."""
    require_installed(machine)
    phase("upgrading (reinstalling over an edited configuration)")
    with open(CONF, "a") as f:
        f.write("\n# edited by tests/install\ndeny_disabled = yes\n")
    with open(CONF, "rb") as f:
        machine.edit = f.read()
    os.unlink(LOAD_LINK)        # nginx: the administrator disables us

    # No --force-confold: the packaged conffile did not change, so dpkg
    # must keep the edit without asking (stdin is /dev/null: a prompt would
    # fail the install).
    proc = machine.install()
    out = proc.stdout + proc.stderr
    assert PROMPT_TEXT not in out, f"dpkg asked about {CONF}:\n{out}"
    with open(CONF, "rb") as f:
        assert f.read() == machine.edit, f"{CONF} lost the edit"
    st = os.lstat(CONF)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
    assert not os.path.lexists(LOAD_LINK), \
        "reinstalling enabled the nginx module the administrator disabled"
    changes = diff(machine.before["pam.d"], tree("/etc/pam.d"))
    assert not changes, "/etc/pam.d changed:\n" + "\n".join(changes)
    test = run([NGINX, "-t"], check=False)
    assert test.returncode == 0, test.stderr


# ---------------------------------------------------------------------------
# Purge
# ---------------------------------------------------------------------------

def test_purge_restores_machine(machine):
    """dpkg --purge: the machine is as it was before the install."""
    require_installed(machine)
    phase("purging (dpkg --purge)")
    machine.purge()
    machine.installed = False
    assert not ours_installed(), ours_installed()
    assert not os.path.lexists(CONF), f"{CONF} left behind"
    assert not glob.glob(LOAD_LINK + "*"), glob.glob(LOAD_LINK + "*")
    after = machine.snapshot()
    problems = []
    for key in ("pam.d", "nginx", "pam-configs", "var-lib-pam",
                "etc-alternatives"):
        problems += [f"{key}: {line}"
                     for line in diff(machine.before[key], after[key])]
    if after["state-dir"] != machine.before["state-dir"]:
        problems.append(f"{STATE_DIR}: existed {machine.before['state-dir']}"
                        f", now {after['state-dir']}")
    if after["alternatives"] != machine.before["alternatives"]:
        problems.append("update-alternatives --get-selections changed")
    before_pkgs, after_pkgs = machine.before["packages"], after["packages"]
    for pkg in sorted(set(before_pkgs) | set(after_pkgs)):
        if before_pkgs.get(pkg) != after_pkgs.get(pkg):
            problems.append(f"package {pkg}: {before_pkgs.get(pkg)} -> "
                            f"{after_pkgs.get(pkg)}")
    shipped = machine.before["shipped"]
    for path, (existed, _) in sorted(shipped.items()):
        if os.path.lexists(path) != existed:
            problems.append(f"{path}: existed {existed}, now "
                            f"{os.path.lexists(path)}")
    # dpkg's database has no file of ours left (dpkg -S exits 1 for the
    # paths nobody owns: that is the expected answer).
    files = [p for p, (_, kind) in shipped.items() if kind != "d"]
    owners = run(["dpkg", "-S", *files], check=False).stdout
    for line in owners.splitlines():
        names = line.split(": ", 1)[0].replace(",", " ").split()
        if any(n.split(":")[0] in PACKAGES for n in names):
            problems.append(f"dpkg -S: {line}")
    assert not problems, "the purge did not restore the machine:\n" + \
        "\n".join(problems)


# ---------------------------------------------------------------------------
# Helpers that start processes
# ---------------------------------------------------------------------------

def cli_env(tmp):
    """A private HOME and token file for the installed CLI."""
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
            "TOKENGATE_TOKEN_FILE": str(tmp / "token")}


class Devserver:
    """The installed tokengate-devserver on a free loopback port."""

    def __init__(self, tmp):
        self.log_path = tmp / f"devserver-{time.monotonic_ns()}.log"

    def __enter__(self):
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            ["/usr/bin/tokengate-devserver", "--listen", "127.0.0.1:0",
             "--control", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent)
        self.url = None
        deadline = time.monotonic() + 15
        while self.url is None and time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode(errors="replace")
            if not line:
                break
            if "listening on " in line:
                self.url = line.split("listening on ", 1)[1].strip()
        if self.url is None:
            self.__exit__(None, None, None)
            pytest.fail("the installed devserver did not start: "
                        + self.log_path.read_text(errors="replace"))
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class PrivateNginx:
    """The system's /usr/sbin/nginx with the installed module and the
    packaged example snippets, in a private prefix on a free loopback port
    (the system nginx service is not touched)."""

    def __init__(self, tmp, url):
        self.dir = tmp / f"nginx-{time.monotonic_ns()}"
        self.url = url

    def __enter__(self):
        d = self.dir
        for sub in ("logs", "tmp", "examples"):
            (d / sub).mkdir(parents=True)
        conf = d / "tokengate.conf"
        with open(CONF) as f:
            conf.write_text(f.read() + f"\nurl = {self.url}\n")
        os.chmod(conf, 0o600)
        closed = free_port()     # nothing listens there: the proxy says 502
        secret = d / "embed.secret"
        secret.write_text(DEMO_EMBED_SECRET + "\n")
        os.chmod(secret, 0o600)
        for src in glob.glob(EXAMPLES + "/*.conf"):
            with open(src) as f:
                text = f.read()
            text = text.replace("/etc/tokengate.conf", str(conf))
            text = text.replace("http://127.0.0.1:8080",
                                f"http://127.0.0.1:{closed}")
            # Embedding: the devserver plays Looker (loopback only).
            text = text.replace("/etc/tokengate/embed.secret", str(secret))
            text = text.replace("https://looker.example.com", self.url)
            outside = [u for u in re.findall(r"\bhttps?://([^/\s;:\"]+)",
                                             text)
                       if u != "127.0.0.1"]
            assert not outside, f"{src}: a non-loopback URL is left in " \
                f"the private nginx's copy: {outside}"
            (d / "examples" / os.path.basename(src)).write_text(text)
        self.port = free_port()
        temps = "\n".join(f"    {k}_temp_path {d}/tmp/{k};" for k in
                          ("client_body", "proxy", "fastcgi", "uwsgi",
                           "scgi"))
        (d / "nginx.conf").write_text(f"""
load_module {NGX_SO};
daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/logs/error.log notice;
events {{ worker_connections 64; }}
http {{
    access_log off;
{temps}
    include {d}/examples/map-admin-realm.conf;
    include {d}/examples/http-tokengate.conf;
    server {{
        listen 127.0.0.1:{self.port};
        include {d}/examples/location-*.conf;
    }}
}}
""")
        args = [NGINX, "-p", str(d), "-c", str(d / "nginx.conf")]
        test = run(args + ["-t"], check=False)
        assert test.returncode == 0, \
            f"nginx -t with the packaged examples:\n{test.stderr}"
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL,
                                     preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        self.__exit__(None, None, None)
        pytest.fail("the private nginx did not start:\n" + self.error_log())

    def error_log(self):
        path = self.dir / "logs" / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        log = self.error_log()
        for bad in ("[alert]", "[emerg]", "[crit]"):
            assert bad not in log, f"nginx error log has {bad}:\n{log}"
