# SPDX-License-Identifier: MIT
"""The build tree as a user other than its builder finds it.

The README suggests running the built CLI as a non-root user, and its first
command (scripts/demo) runs with umask 077: scripts/build must leave every
directory of _build/FLAVOR searchable and every built program readable and
executable by others, whatever the caller's umask.  The tree holds no
secret (the tests and the demo keep theirs in private temporary
directories).
"""
import os
import pwd
import shutil
import stat
import subprocess

import pytest

from conftest import BUILDDIR, binary

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

# What a user of the build tree runs or loads (the nginx module only when
# nginx-dev was there to build it).
PROGRAMS = ["cli/tokengate", "devserver/tokengate-devserver",
            "pam_module/.libs/pam_tokengate.so"]
OPTIONAL = ["nginx/ngx_http_tokengate_module.so"]


def flavor():
    """The FLAVOR of TG_BUILDDIR = ROOT/_build/FLAVOR, made by scripts/build."""
    if not BUILDDIR:
        pytest.fail("TG_BUILDDIR is not set: run the tests through scripts/check")
    path = os.path.realpath(BUILDDIR)
    if os.path.dirname(path) != os.path.join(os.path.realpath(ROOT), "_build"):
        pytest.fail(f"TG_BUILDDIR={BUILDDIR} is not a scripts/build tree "
                    f"({ROOT}/_build/FLAVOR)")
    return os.path.basename(path)


def not_usable_by_others():
    """The paths of the build tree (from ROOT/_build down to each program)
    that another user could not traverse, read or execute."""
    bad = []
    programs = [binary(p) for p in PROGRAMS]
    programs += [os.path.join(BUILDDIR, p) for p in OPTIONAL
                 if os.path.exists(os.path.join(BUILDDIR, p))]
    top = os.path.join(os.path.realpath(ROOT), "_build")
    for prog in programs:
        path = os.path.realpath(prog)
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode & 0o005 != 0o005:
            bad.append(f"{path} {mode:04o}")
        d = os.path.dirname(path)
        while d.startswith(top):
            mode = stat.S_IMODE(os.stat(d).st_mode)
            if mode & 0o005 != 0o005:
                bad.append(f"{d}/ {mode:04o}")
            d = os.path.dirname(d)
    return sorted(set(bad))


def test_build_under_a_private_umask_stays_usable_by_others():
    """scripts/build run with umask 077 (as scripts/demo does) leaves the
    tree and the programs world-readable and executable, and no part of
    the tree writable by others."""
    proc = subprocess.run(["bash", os.path.join(ROOT, "scripts", "build"),
                           flavor()],
                          preexec_fn=lambda: os.umask(0o077),
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not_usable_by_others() == []
    writable = []
    for d, dirs, files in os.walk(os.path.join(ROOT, "_build", flavor())):
        for name in [d] + [os.path.join(d, f) for f in dirs + files]:
            st = os.lstat(name)
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o002:
                writable.append(name)
    assert writable == []


def test_cli_runs_as_nobody():
    """The built CLI runs for an unprivileged user: as root, tokengate
    --version as nobody (only when the directories above the source tree
    let nobody in: that part is the clone's location, not the build)."""
    assert not_usable_by_others() == []
    if os.geteuid() != 0:
        pytest.skip("running as nobody needs root (the modes were checked)")
    d = os.path.dirname(os.path.realpath(ROOT))
    while d != "/":
        if stat.S_IMODE(os.stat(d).st_mode) & 0o001 == 0:
            pytest.skip(f"{d} keeps nobody out: the clone's location, not "
                        "the build (the modes were checked)")
        d = os.path.dirname(d)
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is missing"
    nobody = pwd.getpwnam("nobody")
    proc = subprocess.run(
        [setpriv, f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
         "--clear-groups", binary("cli/tokengate"), "--version"],
        capture_output=True, text=True, timeout=60, cwd="/",
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("tokengate "), proc.stdout
