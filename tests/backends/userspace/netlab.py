"""A small lab for the live tests: pmv-prefixed namespaces, veth pairs, ping and TCP in Python.

Everything is created inside namespaces this lab makes (names ``pmv<tag><role>``, unique per
run) and deleted by :meth:`Lab.close`, which the fixtures call even when a test fails. The
root namespace is never touched: veth pairs are created with both ends directly in their
namespaces. No ping binary is assumed: :func:`ping` speaks ICMP on a raw socket made inside
the namespace.
"""

from __future__ import annotations

import os
import secrets
import select
import socket
import struct
import subprocess
import threading
import time

from pymacvlan.backends.userspace._sys import in_netns, write_sysctl


def live_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) for namespaces, veth pairs, TAPs and AF_PACKET"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun"
    return None


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=check, capture_output=True, text=True, timeout=30)


class Lab:
    def __init__(self) -> None:
        self.tag = secrets.token_hex(3)  # "pmv" + 6 + role: names stay short
        self.namespaces: list[str] = []

    def ns(self, role: str) -> str:
        name = f"pmv{self.tag}{role}"
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        for key in ("all", "default"):
            write_sysctl(name, f"net/ipv6/conf/{key}/disable_ipv6", "1")
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def veth(self, a: str, ns_a: str, b: str, ns_b: str, mac_b: str | None = None) -> None:
        sh("ip", "link", "add", a, "netns", ns_a, "type", "veth", "peer", "name", b, "netns", ns_b)
        if mac_b:
            sh("ip", "-n", ns_b, "link", "set", b, "address", mac_b)
        sh("ip", "-n", ns_a, "link", "set", a, "up")
        sh("ip", "-n", ns_b, "link", "set", b, "up")

    def ifname(self, role: str) -> str:
        name = f"pmv{self.tag}{role}"
        assert len(name) <= 15, name
        return name

    def close(self) -> None:
        for name in reversed(self.namespaces):
            sh("ip", "netns", "del", name, check=False)
        self.namespaces.clear()


def leftovers(tag: str) -> list[str]:
    """Namespaces or root-namespace links carrying this run's tag (should be none)."""
    out = sh("ip", "netns", "list").stdout.split()
    out += sh("ip", "-o", "link").stdout.split()
    return [w for w in out if f"pmv{tag}" in w]


def _icmp_checksum(data: bytes) -> int:
    if len(data) & 1:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ping(netns: str, dst: str, count: int = 3, timeout: float = 3.0, interval: float = 0.05) -> int:
    """ICMP echo from inside ``netns``: the number of replies received."""
    with in_netns(netns):
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = secrets.randbits(16)
    got: set[int] = set()
    try:
        s.setblocking(False)
        deadline = time.monotonic() + timeout
        for seq in range(count):
            payload = b"pmv-ping" + bytes(48)
            hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
            pkt = struct.pack("!BBHHH", 8, 0, _icmp_checksum(hdr + payload), ident, seq) + payload
            s.sendto(pkt, (dst, 0))
            end = min(deadline, time.monotonic() + max(interval, (deadline - time.monotonic()) / (count - seq)))
            while time.monotonic() < end and seq not in got:
                r, _, _ = select.select([s], [], [], max(0.0, end - time.monotonic()))
                if not r:
                    break
                data, addr = s.recvfrom(2048)
                ihl = (data[0] & 0x0F) * 4
                typ, _code, _c, rid, rseq = struct.unpack_from("!BBHHH", data, ihl)
                if typ == 0 and rid == ident and addr[0] == dst:
                    got.add(rseq)
        while time.monotonic() < deadline and len(got) < count:
            r, _, _ = select.select([s], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                break
            data, addr = s.recvfrom(2048)
            ihl = (data[0] & 0x0F) * 4
            typ, _code, _c, rid, rseq = struct.unpack_from("!BBHHH", data, ihl)
            if typ == 0 and rid == ident and addr[0] == dst:
                got.add(rseq)
    finally:
        s.close()
    return len(got)


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
