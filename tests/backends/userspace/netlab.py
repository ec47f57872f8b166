"""The live tests' lab: :class:`pymacvlan.netlab.Lab` (pmv-prefixed namespaces, unique per run,
deleted by the fixtures even when a test fails; veth ends made directly in their namespaces,
the root namespace untouched), its Python ICMP ping, and a fixed-size TCP transfer.
"""

from __future__ import annotations

import socket
import threading
import time

from pymacvlan.backends.userspace._sys import in_netns


# The namespaces, probes and checks shared with the demo live in pymacvlan.netlab.
from pymacvlan import netlab
from pymacvlan.netlab import Lab, leftovers, live_unavailable, sh  # noqa: F401


def ping(netns: str, dst: str, count: int = 3, timeout: float = 3.0, interval: float = 0.05) -> int:
    """:func:`pymacvlan.netlab.ping` with the tests' patience (3 requests, 3 s)."""
    return netlab.ping(netns, dst, count, timeout, interval)


def tcp_transfer(server_ns: str, server_ip: str, client_ns: str, nbytes: int, port: int = 5201,
                 timeout: float = 30.0) -> tuple[int, float]:
    """Send ``nbytes`` over TCP from client_ns to server_ns; (bytes received, seconds)."""
    with in_netns(server_ns):
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((server_ip, port))
    srv.listen(1)
    srv.settimeout(timeout)
    received = [0]

    def serve() -> None:
        try:
            conn, _ = srv.accept()
            conn.settimeout(timeout)
            with conn:
                while True:
                    b = conn.recv(1 << 20)
                    if not b:
                        break
                    received[0] += len(b)
        except OSError:
            pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    with in_netns(client_ns):
        cli = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    chunk = bytes(1 << 20)
    t0 = time.monotonic()
    try:
        cli.settimeout(timeout)
        cli.connect((server_ip, port))
        left = nbytes
        while left > 0:
            n = cli.send(chunk[:min(left, len(chunk))])
            left -= n
        cli.shutdown(socket.SHUT_WR)
        t.join(timeout)
    finally:
        cli.close()
        srv.close()
    return received[0], time.monotonic() - t0
