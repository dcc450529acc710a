# SPDX-License-Identifier: MIT
"""Every man page in the source tree reads correctly in a terminal.

Each page is rendered as a reader sees it (man-db, MANWIDTH=80, through tbl)
with every groff warning on, and any warning fails: a table wider than the
terminal, an unknown macro or escape, a line groff cannot break.  A second
check catches what renders silently wrong: in the alternating-font macros
(.BR, .IR, ...) each argument is set without a space after the previous
one, so a quoted phrase split over several arguments ('.BR \\(dqNot
found\\(dq ;') loses its spaces ("Notfound").
"""
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
# Not the source tree: build output, caches, version control.
SKIP_DIRS = {".git", "autom4te.cache", "__pycache__", ".pytest_cache"}
# The pages the packages install: the search below must find them.
KNOWN = {"cli/tokengate.1", "devserver/tokengate-devserver.1",
         "docs/tokengate.conf.5", "pam_module/pam_tokengate.8"}
ALTERNATING = (".BR", ".RB", ".IR", ".RI", ".BI", ".IB")


def man_pages():
    """Every file named *.[1-9] with a .TH line, relative to ROOT."""
    pages = []
    for d, dirs, files in os.walk(ROOT):
        dirs[:] = sorted(x for x in dirs
                         if x not in SKIP_DIRS and not x.startswith("_build"))
        for name in files:
            if not re.search(r"\.[1-9]$", name):
                continue
            path = os.path.join(d, name)
            with open(path, errors="replace") as f:
                if re.search(r"^\.TH ", f.read(8192), re.M):
                    pages.append(os.path.relpath(path, ROOT))
    return sorted(pages)


PAGES = man_pages()


def test_every_man_page_is_found():
    assert KNOWN <= set(PAGES), f"man pages found: {PAGES}"


@pytest.mark.parametrize("page", PAGES)
def test_man_page_renders_without_warnings(page):
    man = shutil.which("man")
    if man is None:
        pytest.fail("man is missing: run scripts/deps (man-db)")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "LC_ALL": "C.UTF-8", "MANWIDTH": "80", "MAN_KEEP_STDERR": "1"}
    proc = subprocess.run(
        [man, "--warnings=all", "-E", "UTF-8", "-l",
         os.path.join(ROOT, page)],
        capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip(), f"{page} rendered nothing"
    assert proc.stderr.strip() == "", \
        f"{page} renders with warnings (MANWIDTH=80 man --warnings=all -l " \
        f"{page}):\n{proc.stderr}"


def roff_args(line):
    """The arguments of a macro line, and whether each was quoted."""
    args = []
    for m in re.finditer(r'"((?:[^"]|"")*)"|(\S+)', line):
        if m.group(1) is not None:
            args.append((m.group(1), True))
        else:
            args.append((m.group(2), False))
    return args


@pytest.mark.parametrize("page", PAGES)
def test_no_quoted_phrase_is_split_over_arguments(page):
    """An unquoted argument of an alternating-font macro with an odd number
    of \\(dq opens or closes a quotation across arguments: the spaces
    between those arguments are lost.  Quote the phrase as one argument:
    .BR "\\(dqNot found\\(dq" ;"""
    bad = []
    with open(os.path.join(ROOT, page), errors="replace") as f:
        for n, line in enumerate(f, 1):
            words = line.split(None, 1)
            if not words or words[0] not in ALTERNATING or len(words) < 2:
                continue
            for arg, quoted in roff_args(words[1]):
                if not quoted and arg.count("\\(dq") % 2 == 1:
                    bad.append(f"{page}:{n}: {line.rstrip()}")
                    break
    assert not bad, "quoted phrases split over arguments (spaces lost):\n" \
        + "\n".join(bad)
