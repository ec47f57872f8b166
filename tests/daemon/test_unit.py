"""The systemd unit: systemd accepts it, and it runs the daemon with the options given."""

from __future__ import annotations

import configparser
import shutil
import stat
import subprocess
import sys

from pymacvlan.daemon.unit import CAPABILITIES, UNIT_NAME, render
from tests.ci import skip_or_fail


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pymacvlan.cli.main", *args], capture_output=True, text=True,
                          timeout=60)


def _parse(text: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=True, interpolation=None)
    cp.optionxform = str  # systemd keys are case-sensitive
    cp.read_string(text)
    return cp


def test_install_unit_writes_a_unit_systemd_accepts(tmp_path) -> None:
    r = _cli("daemon", "--shield", "--socket", "/run/pmv test/c.sock", "install-unit", "--unit-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    path = tmp_path / UNIT_NAME
    assert str(path) in r.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    svc = _parse(path.read_text())["Service"]
    assert svc["Type"] == "notify" and svc["Restart"] == "on-failure"
    assert svc["CapabilityBoundingSet"].split() == list(CAPABILITIES)
    assert svc["ExecStart"].endswith('daemon --socket "/run/pmv test/c.sock" --shield')
    assert svc["ExecStart"].startswith(sys.executable)
    if shutil.which("systemd-analyze") is None:
        skip_or_fail("no systemd-analyze here: the unit was only parsed (.ci/run installs systemd)")
    v = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)
    assert v.returncode == 0, v.stderr
    assert "nknown" not in v.stderr and "ignoring" not in v.stderr, v.stderr  # a misspelt key is only a warning


def test_systemd_analyze_catches_a_broken_unit(tmp_path) -> None:
    """The check above can fail: the same verification rejects a misspelt key."""
    if shutil.which("systemd-analyze") is None:
        skip_or_fail("no systemd-analyze here (.ci/run installs systemd)")
    path = tmp_path / UNIT_NAME
    path.write_text(render().replace("Restart=on-failure", "Restrat=on-failure"))
    v = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)
    assert "Restrat" in v.stderr


def test_install_unit_print_and_unwritable_dir() -> None:
    r = _cli("daemon", "install-unit", "--print")
    assert r.returncode == 0 and "[Service]" in r.stdout and r.stdout.count("ExecStart=") == 1
    r = _cli("daemon", "install-unit", "--unit-dir", "/proc/pmv-no-such-dir")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("pymacvlan daemon install-unit: ENOENT: cannot write /proc/pmv-no-such-dir")


def _systemd_words(line: str) -> list[str]:
    """ExecStart's words as systemd reads them (systemd.service(5) "Command lines"): quotes,
    C escapes inside them, then ``%%`` and ``$$`` are single characters (no specifier, no
    variable was meant)."""
    words, i = [], 0
    while i < len(line):
        while i < len(line) and line[i] == " ":
            i += 1
        if i >= len(line):
            break
        w, quote = "", None
        while i < len(line) and (quote or line[i] != " "):
            c = line[i]
            if quote is None and c in "\"'":
                quote = c
            elif c == quote:
                quote = None
            elif c == "\\":
                i += 1
                e = line[i]
                if e == "x":
                    w += chr(int(line[i + 1:i + 3], 16))
                    i += 2
                else:
                    w += {"n": "\n", "t": "\t"}.get(e, e)
            elif c in "%$":
                assert line[i + 1] == c, f"an unescaped {c} in {line!r}: systemd would expand it"
                w += c
                i += 1
            else:
                w += c
            i += 1
        words.append(w)
    return words


HOSTILE_ARGS = ["--socket", "/run/pmv %h/c $HOME.sock", "--endpoint-dir", "it's \\back\"q\"", "--netns", "a\tb\nc"]


def test_execstart_is_quoted_the_way_systemd_reads_it(tmp_path) -> None:
    """Issue 19: ExecStart was quoted with shell rules (shlex): systemd expands %h and $HOME
    inside them and reads backslashes in single quotes as escapes."""
    svc = _parse(render(HOSTILE_ARGS))["Service"]
    words = _systemd_words(svc["ExecStart"])
    assert words[-len(HOSTILE_ARGS):] == HOSTILE_ARGS, words
    if shutil.which("systemd-analyze") is None:
        skip_or_fail("no systemd-analyze here (.ci/run installs systemd)")
    path = tmp_path / UNIT_NAME
    path.write_text(render(HOSTILE_ARGS[:2]))
    v = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)
    assert v.returncode == 0 and "specifier" not in v.stderr, v.stderr
