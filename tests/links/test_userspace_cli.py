"""`pymacvlan --backend userspace link/apply`: the CLI over the daemon's client (no parent needed).

The live path (a daemon with a real parent) is tested in tests/backends/userspace/test_daemon.py;
here: the CLI's output and errors through that driver, with a daemon serving in this process.
"""

from __future__ import annotations

import json
import threading

import pytest

from pymacvlan.daemon import server as daemon_mod


@pytest.fixture
def daemon(tmp_path, monkeypatch):
    d = daemon_mod.Daemon(daemon_mod.DaemonConfig(str(tmp_path / "run" / "c.sock"), str(tmp_path / "state.json")))
    d.start()
    t = threading.Thread(target=d.serve_forever, daemon=True)
    t.start()
    monkeypatch.setenv("PYMACVLAN_SOCKET", d.cfg.socket)
    yield d
    d.stop()
    t.join(10)


def test_show_through_the_daemon(cli, daemon):
    out, _ = cli("--backend", "userspace", "-j", "link", "show")
    assert json.loads(out) == []
    out, _ = cli("link", "show", "--backend", "userspace")
    assert out == ""


def test_errors_are_one_iproute2_line_and_a_hint(cli, daemon):
    _, err = cli("--backend", "userspace", "link", "set", "nope", "up", rc=1)
    lines = err.splitlines()
    assert lines[0] == 'Cannot find device "nope"' and len(lines) == 2 and lines[1].startswith("hint: ")
    _, err = cli("--backend", "userspace", "link", "add", "link", "nope0", "name", "m", "type", "macvlan", rc=1)
    assert err.splitlines()[0] == 'Cannot find device "nope0"'


def test_no_daemon_is_a_clear_error(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("PYMACVLAN_SOCKET", str(tmp_path / "none.sock"))
    _, err = cli("--backend", "userspace", "link", "show", rc=2)
    lines = err.splitlines()
    assert lines[0] == "RTNETLINK answers: Connection refused"
    assert lines[1].startswith("hint: no pymacvlan daemon is listening on") and "pymacvlan daemon" in lines[1]
