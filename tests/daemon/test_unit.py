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
    assert svc["ExecStart"].endswith("daemon --socket '/run/pmv test/c.sock' --shield")
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
