"""Hostile and broken clients on the daemon's control socket, while it forwards a ping.

Malformed JSON, binary junk, absurd nesting, a 1 MiB line, a half-open request, an idle
connection, hundreds of connections at once and a peer that never reads its replies: each
gets a clear JSON error or is cut off, every case is counted, and the daemon keeps serving
other clients and forwarding frames (a ping between two children runs throughout).
(A peer that is neither root nor the daemon's user: test_daemon.py.)
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

from pymacvlan.daemon.server import Daemon, DaemonConfig
from pymacvlan.links.userspace import Driver
from pymacvlan.model import LinkChange, LinkRequest, Mode
from pymacvlan.netlab import Pinger
from tests.ci import live_marks

from .netlab import Lab, live_unavailable, ping, sh
from .test_daemon import _setup

pytestmark = live_marks(live_unavailable())


def _connect(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    return s


def _lines(s: socket.socket, n: int | None = None) -> list[dict]:
    """Reply lines until ``n`` arrived or the daemon closed the connection."""
    buf, out = b"", []
    while n is None or len(out) < n:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            break
        buf += chunk
        *done, buf = buf.split(b"\n")
        out += [json.loads(x) for x in done]
    return out


def _closed(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def test_hostile_clients_get_errors_or_are_cut_off_while_forwarding_goes_on(lab: Lab, tmp_path: Path) -> None:
    P, W, parent = _setup(lab)
    cfg = DaemonConfig(str(tmp_path / "c.sock"), str(tmp_path / "state.json"), netns=P,
                       idle_timeout=2.0, request_timeout=1.5, max_clients=64, max_output=256 << 10)
    d = Daemon(cfg).start()
    t = threading.Thread(target=d.serve_forever, daemon=True)
    t.start()
    pinger = None
    try:
        drv = Driver(cfg.socket)
        A, B = lab.ns("A"), lab.ns("B")
        for ns, ip in ((A, "10.78.0.1"), (B, "10.78.0.2")):
            drv.add(LinkRequest(parent, "eth0", mode=Mode.BRIDGE, netns=ns))
            drv.set("eth0", LinkChange(up=True), netns=ns)
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        assert ping(A, "10.78.0.2") == 3
        pinger = Pinger(A, "10.78.0.2", interval=0.02).start()

        # malformed JSON, binary junk, absurd nesting: an error per line, the connection stays
        s = _connect(cfg.socket)
        junk = os.urandom(8192).replace(b"\n", b"") + b"\n" + os.urandom(100).replace(b"\n", b"") + b"\n"
        s.sendall(b"{not json\n" + junk + b"[" * 200_000 + b"\n" + b'{"op": "hello"}\n')
        replies = _lines(s, 5)
        assert [r.get("errno") for r in replies[:4]] == ["EINVAL"] * 4, replies
        assert "nested" in replies[3]["message"] and replies[4]["ok"] is True
        s.close()

        # a 1 MiB line: EMSGSIZE, then cut off
        s = _connect(cfg.socket)
        try:
            s.sendall(b'{"op": "' + b"a" * (1 << 20) + b'"}\n')
        except (BrokenPipeError, ConnectionResetError):
            pass  # cut off while still sending: the error line is waiting
        replies = _lines(s)
        assert replies and replies[0]["errno"] == "EMSGSIZE" and "1048576" in replies[0]["message"]
        s.close()

        # half-open (a request never finished) and idle: ETIMEDOUT, then closed
        half, idle = _connect(cfg.socket), _connect(cfg.socket)
        half.sendall(b'{"op": "hel')
        t0 = time.monotonic()
        r_half = _lines(half)
        assert r_half[0]["errno"] == "ETIMEDOUT" and "unfinished" in r_half[0]["message"]
        assert 1.0 < time.monotonic() - t0 < 4.0
        r_idle = _lines(idle)
        assert r_idle[0]["errno"] == "ETIMEDOUT" and "idle" in r_idle[0]["message"]
        half.close()
        idle.close()

        # hundreds at once: up to max_clients served, the rest told EBUSY
        conns = [_connect(cfg.socket) for _ in range(300)]
        for c in conns:
            try:
                c.sendall(b'{"op": "hello"}\n')
            except (BrokenPipeError, ConnectionResetError):
                pass  # refused already: its EBUSY line is waiting
        answers = [(_lines(c, 1) or [{}])[0] for c in conns]
        served = sum(1 for a in answers if a.get("ok"))
        busy = sum(1 for a in answers if a.get("errno") == "EBUSY")
        assert served == cfg.max_clients and served + busy == 300, (served, busy)
        for c in conns:
            c.close()

        # a slow reader: never reads its replies; cut off at max_output, others still served
        slow = _connect(cfg.socket)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.sendall(b'{"op": "stats"}\n' * 4000)
        t0 = time.monotonic()
        assert drv.show() and time.monotonic() - t0 < 2.0
        deadline = time.monotonic() + 10
        while d.counters["slow_reader_dropped"] == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        slow.close()

        assert drv.show()  # still serving
        c = dict(d.counters)
        for key in ("request_too_long", "request_timeout", "idle_closed", "client_refused_busy",
                    "slow_reader_dropped"):
            assert c.get(key, 0) >= 1, (key, c)
        assert c.get("control_error", 0) == 0, c
    finally:
        if pinger is not None:
            pinger.stop()
        d.stop(remove=True)
        t.join(10)
    print(f"\nping through the daemon during the test: {pinger.answered}/{pinger.sent} answered")
    assert pinger.sent > 50 and pinger.loss <= 0.01
