"""Throwaway worlds of network namespaces for the demo and the labs, and probes that run in them.

Everything is created inside namespaces this module makes (names ``pmv<6 hex><role>``,
unique per run) and removed by :meth:`Lab.close` — called from ``finally`` blocks, so also on
errors, Ctrl-C and (with :func:`sigterm_raises`) SIGTERM. The root namespace is never
touched: veth pairs are created with both ends directly in their namespaces.

No ping binary is assumed: :func:`ping` speaks ICMP on a raw socket made inside the
namespace, :func:`arp_probe` sends one ARP request on a packet socket and waits for the
answer, :func:`tcp_transfer` pushes bytes over a TCP connection (a size or a time).
"""

from __future__ import annotations

import os
import secrets
import select
import shutil
import socket
import struct
import subprocess
import threading
import time

from ._signals import sigterm_raises  # noqa: F401  (re-exported for the demo)
from .backends.userspace.syscalls import write_sysctl
from .netns import in_netns

ETH_P_ARP = 0x0806
PACKET_OUTGOING = 4


def live_unavailable(need_tun: bool = True) -> str | None:
    """Why live worlds cannot be built here, or None."""
    if os.geteuid() != 0:
        return "not root: building namespaces, veth pairs and TAPs needs CAP_NET_ADMIN and CAP_SYS_ADMIN"
    if need_tun and not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun: the userspace backend's children are TAP devices (modprobe tun)"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2) to build the namespaces with"
    return None


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=check, capture_output=True, text=True, timeout=30)


class Lab:
    """The namespaces of one run; :meth:`close` deletes them (and so every link in them)."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(3)
        self.namespaces: list[str] = []

    def ns(self, role: str) -> str:
        name = f"pmv{self.tag}{role}"
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        for key in ("all", "default"):  # no IPv6 chatter (DAD, router solicitations) in the way
            write_sysctl(name, f"net/ipv6/conf/{key}/disable_ipv6", "1")
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def ifname(self, role: str) -> str:
        name = f"pmv{self.tag}{role}"
        if len(name) > 15:
            raise ValueError(f"interface name {name!r} is longer than 15 characters")
        return name

    def veth(self, a: str, ns_a: str, b: str, ns_b: str, mac_a: str | None = None,
             mac_b: str | None = None) -> None:
        sh("ip", "link", "add", a, "netns", ns_a, "type", "veth", "peer", "name", b, "netns", ns_b)
        if mac_a:
            sh("ip", "-n", ns_a, "link", "set", a, "address", mac_a)
        if mac_b:
            sh("ip", "-n", ns_b, "link", "set", b, "address", mac_b)
        sh("ip", "-n", ns_a, "link", "set", a, "up")
        sh("ip", "-n", ns_b, "link", "set", b, "up")

    def drop(self, ns: str) -> None:
        if ns in self.namespaces:
            self.namespaces.remove(ns)
        sh("ip", "netns", "del", ns, check=False)

    def close(self) -> None:
        for name in reversed(self.namespaces):
            sh("ip", "netns", "del", name, check=False)
        self.namespaces.clear()


def leftovers(tag: str) -> list[str]:
    """Namespaces or root-namespace links carrying this run's tag (should be none)."""
    out = sh("ip", "netns", "list").stdout.split()
    out += sh("ip", "-o", "link").stdout.split()
    return [w for w in out if f"pmv{tag}" in w]


def set_neighbour(ns: str, ip: str, mac: str, dev: str) -> None:
    """A permanent neighbour entry, as one sets by hand for private mode."""
    sh("ip", "-n", ns, "neigh", "replace", ip, "lladdr", mac, "dev", dev, "nud", "permanent")


# -- probes ----------------------------------------------------------------------------------------
def _checksum(data: bytes) -> int:
    if len(data) & 1:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ping(netns: str, dst: str, count: int = 2, timeout: float = 1.0, interval: float = 0.05) -> int:
    """ICMP echo from inside ``netns``: how many of ``count`` requests were answered.

    Requests are paced: each waits for its reply up to its share of ``timeout`` (at least
    ``interval``), so a first request lost to ARP resolution does not sink the rest."""
    with in_netns(netns):
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = secrets.randbits(16)
    got: set[int] = set()

    def wait(until: float, want_seq: int | None) -> None:
        while time.monotonic() < until and (want_seq not in got if want_seq is not None else len(got) < count):
            if not select.select([s], [], [], max(0.0, until - time.monotonic()))[0]:
                return
            data, addr = s.recvfrom(2048)
            ihl = (data[0] & 0x0F) * 4
            typ, _code, _c, rid, rseq = struct.unpack_from("!BBHHH", data, ihl)
            if typ == 0 and rid == ident and addr[0] == dst:
                got.add(rseq)

    try:
        s.setblocking(False)
        deadline = time.monotonic() + timeout
        for seq in range(count):
            payload = b"pmv-ping" + bytes(48)
            hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
            s.sendto(struct.pack("!BBHHH", 8, 0, _checksum(hdr + payload), ident, seq) + payload, (dst, 0))
            share = max(interval, (deadline - time.monotonic()) / (count - seq))
            wait(min(deadline, time.monotonic() + share), seq)
        wait(deadline, None)
    finally:
        s.close()
    return len(got)


def arp_probe(netns: str, dev: str, src_mac: str, src_ip: str, dst_ip: str, timeout: float = 1.0) -> str | None:
    """Broadcast one ARP request from ``dev`` and wait for the answer: the MAC that answered,
    or None. The socket sees only frames arriving at ``dev`` (not its own transmissions)."""
    with in_netns(netns):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    try:
        s.bind((dev, ETH_P_ARP))
        mac = bytes.fromhex(src_mac.replace(":", ""))
        req = (b"\xff" * 6 + mac + struct.pack("!H", ETH_P_ARP)
               + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + socket.inet_aton(src_ip)
               + bytes(6) + socket.inet_aton(dst_ip))
        s.send(req)
        want = socket.inet_aton(dst_ip)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([s], [], [], left)[0]:
                return None
            data, addr = s.recvfrom(2048)
            if addr[2] == PACKET_OUTGOING or len(data) < 42:
                continue
            op = struct.unpack_from("!H", data, 20)[0]
            if op == 2 and data[28:32] == want and data[32:38] == mac:
                return data[22:28].hex(":")
    finally:
        s.close()


def tcp_listener(ns: str, ip: str, port: int, timeout: float) -> socket.socket:
    """A TCP socket listening on ``ip:port`` inside namespace ``ns`` (one pending connection)."""
    with in_netns(ns):
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((ip, port))
    srv.listen(1)
    srv.settimeout(timeout)
    return srv


def tcp_transfer(server_ns: str, server_ip: str, client_ns: str, nbytes: int | None = None,
                 seconds: float = 1.5, port: int = 5201, timeout: float = 30.0) -> tuple[int, float]:
    """Push bytes over TCP from ``client_ns`` to ``server_ns``: exactly ``nbytes`` if given,
    else for about ``seconds``. Returns (bytes the server received, seconds from connect to
    the server seeing EOF)."""
    srv = tcp_listener(server_ns, server_ip, port, timeout)
    received = [0]
    done = [0.0]

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
            done[0] = time.monotonic()
        except OSError:
            pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    with in_netns(client_ns):
        cli = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    chunk = memoryview(bytes(1 << 18))
    t0 = time.monotonic()
    try:
        cli.settimeout(timeout)
        cli.connect((server_ip, port))
        t0 = time.monotonic()
        if nbytes is not None:
            left = nbytes
            while left > 0:
                left -= cli.send(chunk[:min(left, len(chunk))])
        else:
            end = t0 + seconds
            while time.monotonic() < end:
                cli.sendall(chunk)
        cli.shutdown(socket.SHUT_WR)
        t.join(timeout)
    finally:
        cli.close()
        srv.close()
    return received[0], max(1e-9, (done[0] or time.monotonic()) - t0)


class PacedStream:
    """A long-lived TCP connection from ``client_ns`` to ``server_ns`` carrying ``chunk`` bytes
    every ``interval`` (an SSH session, a database link): it must survive what happens to the
    datapath meanwhile. :meth:`stop` ends it cleanly and tells whether every byte arrived and
    the largest gap between two receptions (what an outage costs the connection)."""

    def __init__(self, server_ns: str, server_ip: str, client_ns: str, port: int = 5301,
                 interval: float = 0.01, chunk: int = 1024) -> None:
        self._srv = tcp_listener(server_ns, server_ip, port, 30)
        with in_netns(client_ns):
            self._cli = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._cli.settimeout(30)
        self.addr = (server_ip, port)
        self.interval, self.chunk = interval, bytes(chunk)
        self.sent = self.received = 0
        self.max_gap = 0.0
        self.error: str | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> PacedStream:
        self._threads = [threading.Thread(target=self._serve, daemon=True)]
        self._threads[0].start()
        self._cli.connect(self.addr)
        self._threads.append(threading.Thread(target=self._send, daemon=True))
        self._threads[1].start()
        return self

    def _serve(self) -> None:
        try:
            conn, _ = self._srv.accept()
            conn.settimeout(30)
            with conn:
                last = None
                while True:
                    b = conn.recv(1 << 16)
                    now = time.monotonic()
                    if not b:
                        return
                    if last is not None:
                        self.max_gap = max(self.max_gap, now - last)
                    last = now
                    self.received += len(b)
        except OSError as e:
            self.error = self.error or f"server: {e}"

    def _send(self) -> None:
        try:
            nxt = time.monotonic()
            while not self._stop.is_set():
                self._cli.sendall(self.chunk)
                self.sent += len(self.chunk)
                nxt += self.interval
                self._stop.wait(max(0.0, nxt - time.monotonic()))
            self._cli.shutdown(socket.SHUT_WR)
        except OSError as e:
            self.error = self.error or f"client: {e}"

    def stop(self, timeout: float = 30.0) -> PacedStream:
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
        self._cli.close()
        self._srv.close()
        return self


class Pinger:
    """ICMP echo from ``netns`` to ``dst`` every ``interval`` in a thread, for as long as it
    runs: how many requests were sent and how many answered (replies up to 1 s late count)."""

    def __init__(self, netns: str, dst: str, interval: float = 0.02) -> None:
        with in_netns(netns):
            self._s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        self.dst, self.interval = dst, interval
        self.ident = secrets.randbits(16)
        self.sent = 0
        self._got: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def answered(self) -> int:
        return len(self._got)

    @property
    def loss(self) -> float:
        return 1.0 - self.answered / self.sent if self.sent else 0.0

    def start(self) -> Pinger:
        self._thread.start()
        return self

    def _run(self) -> None:
        s = self._s
        s.setblocking(False)
        nxt = time.monotonic()
        drain_until = None
        while drain_until is None or time.monotonic() < drain_until:
            now = time.monotonic()
            if drain_until is None and self._stop.is_set():
                drain_until = now + 1.0
            if drain_until is None and now >= nxt:
                seq = self.sent & 0xFFFF
                payload = b"pmv-ping" + bytes(48)
                hdr = struct.pack("!BBHHH", 8, 0, 0, self.ident, seq)
                try:
                    s.sendto(struct.pack("!BBHHH", 8, 0, _checksum(hdr + payload), self.ident, seq) + payload,
                             (self.dst, 0))
                except OSError:
                    pass  # counted as sent and unanswered: a lost echo
                self.sent += 1
                nxt += self.interval
            wait = max(0.0, min(nxt, drain_until or nxt) - time.monotonic())
            if select.select([s], [], [], wait)[0]:
                try:
                    while True:
                        data, addr = s.recvfrom(2048)
                        ihl = (data[0] & 0x0F) * 4
                        typ, _c, _x, rid, rseq = struct.unpack_from("!BBHHH", data, ihl)
                        if typ == 0 and rid == self.ident and addr[0] == self.dst:
                            self._got.add(rseq)
                except BlockingIOError:
                    pass
        s.close()

    def stop(self) -> Pinger:
        self._stop.set()
        self._thread.join(5)
        return self
