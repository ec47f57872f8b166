"""The daemon's start against hostile state (issue 19, item 4): ``--socket`` never deletes a
file that is not a socket; a bad state record is set aside and said so in the log, ``hello``
and systemd's STATUS, and the daemon starts. In-process, as root (the daemon's start needs no
device when there is nothing to restore)."""

from __future__ import annotations

import json
import logging
import os
import select
import socket
import threading
from pathlib import Path

import pytest

from pymacvlan.daemon import state
from pymacvlan.daemon.client import Client
from pymacvlan.daemon.server import Daemon, DaemonConfig
from pymacvlan.model import KernelError


@pytest.mark.parametrize("make", ["file", "dir", "fifo", "symlink"])
def test_socket_refuses_a_path_that_is_not_a_socket(tmp_path: Path, make: str) -> None:
    path = tmp_path / "control.sock"
    victim = tmp_path / "precious"
    victim.write_text("keep me")
    if make == "file":
        path.write_text("keep me")
    elif make == "dir":
        path.mkdir()
    elif make == "fifo":
        os.mkfifo(path)
    else:
        os.symlink(victim, path)
    with pytest.raises(KernelError) as e:
        Daemon(DaemonConfig(str(path), str(tmp_path / "state.json"))).start()
    assert e.value.errno_name == "ENOTSOCK" and "not a socket" in e.value.message
    assert os.path.lexists(path) and victim.read_text() == "keep me"


def test_a_stale_socket_is_still_replaced(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()  # nobody listens: stale
    d = Daemon(DaemonConfig(str(path), str(tmp_path / "state.json"))).start()
    d.shutdown()


def test_a_bad_record_is_set_aside_and_the_daemon_starts_and_says_so(tmp_path: Path, monkeypatch, caplog) -> None:
    st = tmp_path / "state.json"
    links = [{"name": "m0", "parent": "eth0", "mode": 99}]  # issue 19: a traceback at every start
    st.write_text(json.dumps({"version": 2, "links": links, "sha256": state._digest(2, links)}))
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    with caplog.at_level(logging.ERROR, logger="pymacvlan.daemon"):
        d = Daemon(DaemonConfig(str(tmp_path / "c.sock"), str(st))).start()
    t = threading.Thread(target=d.serve_forever, daemon=True)
    try:
        assert any("set aside" in r.getMessage() for r in caplog.records)
        assert "set aside" in (d.state_warning or "") and "state.json.bad" in d.state_warning
        r, _, _ = select.select([notify], [], [], 2)
        msg = notify.recv(4096).decode()
        assert msg.startswith("READY=1") and "set aside" in msg
        t.start()
        hello = Client(str(tmp_path / "c.sock"), timeout=5).hello()
        assert "set aside" in (hello.get("state_warning") or "")
        bad = json.loads((tmp_path / "state.json.bad").read_text())["bad_records"]
        assert bad[0]["record"] == links[0] and "not a valid link" in bad[0]["reason"]
    finally:
        d.stop()
        t.join(10)
