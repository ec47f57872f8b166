"""macvtap children in userspace: endpoints an application reads and writes whole frames on.

Three kinds, one per QEMU backend (landscape.md, QEMU framing table):

- :class:`StreamEndpoint` — ``-netdev stream`` (and legacy ``-netdev socket`` TCP framing) over
  a Unix stream socket: each frame is a 4-byte big-endian length, then the frame. Reads and
  writes may stop anywhere in a frame; both directions keep partial state.
- :class:`DgramEndpoint` — ``-netdev dgram``: one frame per Unix datagram. The peer is the
  ``remote`` path given, else the address of the last datagram received.
- :class:`TapFdEndpoint` — ``-netdev tap,fd=N``: a TAP device whose fd is handed to any client
  of a Unix socket with SCM_RIGHTS. QEMU checks the fd with TUNGETIFF, so it must be a real
  tun fd; the datapath then drives the TAP's *netdev* side through an AF_PACKET socket
  (what QEMU writes arrives there as received frames; what the datapath sends there is
  queued to the fd), which is the userspace image of macvtap's rx_handler.

Stream and dgram clients take no virtio_net_hdr, so GSO frames are segmented and partial
checksums completed (:mod:`.gso`) before they are queued. Each has a reader queue of 500
frames (TUN_READQ_SIZE, macvtap's "qlen 500"): a reader that stops reading loses the
overflow, counted per endpoint and in the child's rx_errors as the kernel counts it. A client
that sends garbage (a length that cannot be a frame) is disconnected and counted; the
datapath goes on.
"""

from __future__ import annotations

import array
import errno
import fcntl
import logging
import os
import socket
import stat
import struct
from collections import Counter, deque
from collections.abc import Callable
from typing import Protocol

from ._sys import IFF_NOARP, IFF_UP, ZERO_VNET_HDR, ifreq, write_sysctl
from .gso import GSOError, finalize
from .parent import Parent, ParentConfig
from .tap import Tap, TapConfig
from .vnet import VNET_HDR_LEN

__all__ = ["Endpoint", "StreamEndpoint", "DgramEndpoint", "TapFdEndpoint", "READER_QUEUE_LEN",
           "STREAM_MAX_FRAME", "send_fd", "recv_fd"]

READER_QUEUE_LEN = 500
SIOCSIFTXQLEN = 0x8943
#: QEMU's NET_BUFSIZE (4096 + 65536): no stream frame can be longer; a longer length is garbage
STREAM_MAX_FRAME = 4096 + 65536
_LEN = struct.Struct("!I")
EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP = 0x1, 0x4, 0x8, 0x10
log = logging.getLogger("pymacvlan.endpoints")


class Reactor(Protocol):
    """What an endpoint needs from the event loop."""

    def watch(self, fd: int, handler: Callable[[int], None], write: bool = False, kind: str = "fd") -> None: ...
    def want_write(self, fd: int, on: bool) -> None: ...
    def unwatch(self, fd: int) -> None: ...


def _unix_path_ready(path: str) -> None:
    """Refuse to take over anything but a stale socket file at ``path``."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise FileExistsError(errno.EEXIST, f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)  # stale: nobody listens
        return
    except OSError as e:
        if e.errno == errno.EPROTOTYPE:  # a datagram socket file
            os.unlink(path)
            return
        raise
    finally:
        probe.close()
    raise FileExistsError(errno.EADDRINUSE, f"{path} is in use by another listener")


def _peer_alive(conn: socket.socket) -> bool:
    """Whether a stream's client is still there: no EOF or error waiting to be read."""
    try:
        return conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


class Endpoint:
    """Base: counters, the bounded reader queue, and the hook into the datapath.

    ``sink(endpoint, buf)`` is the datapath's transmit path (buf = hdr+frame);
    ``deliver(buf)`` is called by the datapath for every frame macvlan hands this child.
    """

    kind = "endpoint"
    #: whether deliver() takes hdr+frame as is (True) or needs wire frames
    takes_vnet = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.child = None  # the engine's MacvlanDev, set by the datapath
        self.reactor: Reactor | None = None
        self.sink: Callable[[Endpoint, bytes], None] | None = None
        self.queue: deque[bytes] = deque()
        self.qlen = READER_QUEUE_LEN
        self.counters: Counter[str] = Counter()

    @property
    def connected(self) -> bool:
        return False

    def attach(self, reactor: Reactor, sink: Callable[[Endpoint, bytes], None]) -> None:
        self.reactor = reactor
        self.sink = sink

    def _enqueue_wire(self, buf: bytes) -> list[bytes] | None:
        """hdr+frame → wire frames, or None (counted) if it cannot be made one."""
        if buf[:VNET_HDR_LEN] == ZERO_VNET_HDR:
            return [buf[VNET_HDR_LEN:]]
        try:
            return finalize(buf)
        except GSOError:
            self.counters["rx_gso_error"] += 1
            if self.child is not None:
                self.child.stats.rx_errors += 1
            return None

    def _ring_full(self, n: int = 1) -> None:
        self.counters["rx_queue_full"] += n
        if self.child is not None:
            self.child.stats.rx_errors += n

    def deliver(self, buf: bytes) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self, keep: bool = False) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def stats(self) -> dict:
        return {"kind": self.kind, "connected": self.connected, "queued": len(self.queue),
                "counters": dict(self.counters)}


class StreamEndpoint(Endpoint):
    """A Unix stream listener speaking QEMU's ``-netdev stream`` framing to one client.

    QEMU is the client (``-netdev stream,id=n,server=off,addr.type=unix,addr.path=PATH``).
    One client at a time: a second one while the first is connected is refused (closed at
    once, counted as ``client_refused``, logged once) — two guests on one MAC would each get
    half the frames. A connection whose client has gone (EOF or error pending, not yet read)
    is replaced, so a restarted QEMU gets in at once (``client_replaced``).
    """

    kind = "stream"

    def __init__(self, name: str, path: str, sndbuf: int = 1 << 20) -> None:
        super().__init__(name)
        self.path = path
        self.sndbuf = sndbuf
        _unix_path_ready(path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        self.listener.bind(path)
        self.listener.listen(4)
        self.conn: socket.socket | None = None
        self._rbuf = bytearray()
        self._wpending = b""  # the unsent tail of the last send

    @property
    def connected(self) -> bool:
        return self.conn is not None

    def attach(self, reactor: Reactor, sink) -> None:
        super().attach(reactor, sink)
        reactor.watch(self.listener.fileno(), self._on_listen, kind="endpoint")

    def _on_listen(self, events: int) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except BlockingIOError:
                return
            except OSError:
                self.counters["accept_error"] += 1
                return
            if self.conn is not None:
                if _peer_alive(self.conn):
                    self.counters["client_refused"] += 1
                    if self.counters["client_refused"] == 1:
                        log.warning("%s: a second client connected to %s while one is connected: refused "
                                    "(one QEMU per endpoint; stop the first, or add another macvtap)",
                                    self.name, self.path)
                    conn.close()
                    continue
                self.counters["client_replaced"] += 1
                self._drop_client()
            conn.setblocking(False)
            # the socket buffer sits in front of the 500-frame reader queue: keep it modest
            # so a reader that stops is noticed (and counted) within a few hundred frames
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
            self.conn = conn
            self.counters["clients"] += 1
            self.reactor.watch(conn.fileno(), self._on_conn, kind="endpoint")

    def _drop_client(self) -> None:
        conn = self.conn
        if conn is None:
            return
        self.reactor.unwatch(conn.fileno())
        conn.close()
        self.conn = None
        self._rbuf = bytearray()
        self._wpending = b""
        if self.queue:
            self.counters["dropped_on_disconnect"] += len(self.queue)
            self.queue.clear()

    def _on_conn(self, events: int) -> None:
        if events & EPOLLOUT:
            self._flush()
        if events & (EPOLLIN | EPOLLHUP | EPOLLERR):
            self._read()

    def _read(self, budget: int = 64) -> None:
        conn = self.conn
        if conn is None:
            return
        rbuf = self._rbuf
        for _ in range(budget):
            try:
                chunk = conn.recv(262144)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:
                self.counters["client_closed"] += 1
                self._drop_client()
                return
            rbuf += chunk
            if len(chunk) < 262144:
                break
        self._parse()

    def _parse(self) -> None:
        rbuf = self._rbuf
        pos = 0
        end = len(rbuf)
        sink = self.sink
        unpack = _LEN.unpack_from
        while end - pos >= 4:
            n = unpack(rbuf, pos)[0]
            if n > STREAM_MAX_FRAME:
                self.counters["bad_length_disconnect"] += 1
                self._drop_client()
                return
            if end - pos - 4 < n:
                break
            if n < 14:
                self.counters["tx_runt"] += 1
            else:
                self.counters["tx_frames"] += 1
                sink(self, ZERO_VNET_HDR + rbuf[pos + 4:pos + 4 + n])
            pos += 4 + n
            if self.conn is None:  # the sink may have closed us
                return
        if pos:
            del rbuf[:pos]

    def deliver(self, buf: bytes) -> None:
        if self.conn is None:
            self.counters["rx_no_reader"] += 1
            return
        frames = self._enqueue_wire(buf)
        if frames is None:
            return
        q = self.queue
        for f in frames:
            if len(q) >= self.qlen:
                self._ring_full()
                continue
            q.append(_LEN.pack(len(f)) + f)
        if not self._wpending and len(q) == len(frames):
            self._flush()  # the queue was empty: try to send now, no EPOLLOUT round trip

    def flush_pending(self) -> None:
        """Called once per loop pass: send what deliveries queued in this batch."""
        if self.conn is not None and (self.queue or self._wpending):
            self._flush()

    def _flush(self) -> None:
        conn = self.conn
        if conn is None:
            return
        q = self.queue
        while self._wpending or q:
            if self._wpending:
                data = self._wpending
            else:
                batch = [q.popleft() for _ in range(min(len(q), 64))]
                data = b"".join(batch)
                self.counters["rx_frames"] += len(batch)
            try:
                sent = conn.send(data)
            except BlockingIOError:
                self._wpending = data
                self.reactor.want_write(conn.fileno(), True)
                return
            except OSError:
                self.counters["client_send_error"] += 1
                self._drop_client()
                return
            self._wpending = data[sent:] if sent < len(data) else b""
            if self._wpending:
                self.reactor.want_write(conn.fileno(), True)
                return
        self.reactor.want_write(conn.fileno(), False)

    def close(self, keep: bool = False) -> None:
        if self.reactor is not None:
            self._drop_client()
            self.reactor.unwatch(self.listener.fileno())
        self.listener.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class DgramEndpoint(Endpoint):
    """A Unix datagram socket speaking QEMU's ``-netdev dgram`` (one frame per datagram)."""

    kind = "dgram"

    def __init__(self, name: str, path: str, remote: str | None = None) -> None:
        super().__init__(name)
        self.path = path
        _unix_path_ready(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        self.sock.bind(path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.remote = remote
        self.peer: str | None = remote

    @property
    def connected(self) -> bool:
        return self.peer is not None

    def attach(self, reactor: Reactor, sink) -> None:
        super().attach(reactor, sink)
        reactor.watch(self.sock.fileno(), self._on_event, kind="endpoint")

    def _on_event(self, events: int) -> None:
        if events & EPOLLOUT:
            self._flush()
        if events & EPOLLIN:
            self._read()

    def _read(self, budget: int = 64) -> None:
        for _ in range(budget):
            try:
                data, addr = self.sock.recvfrom(STREAM_MAX_FRAME + 1)
            except BlockingIOError:
                return
            except OSError:
                self.counters["recv_error"] += 1
                return
            if self.remote is None and addr:
                self.peer = addr
            if len(data) < 14:
                self.counters["tx_runt"] += 1
                continue
            if len(data) > STREAM_MAX_FRAME:
                self.counters["tx_oversize"] += 1
                continue
            self.counters["tx_frames"] += 1
            self.sink(self, ZERO_VNET_HDR + data)

    def deliver(self, buf: bytes) -> None:
        if self.peer is None:
            self.counters["rx_no_reader"] += 1
            return
        frames = self._enqueue_wire(buf)
        if frames is None:
            return
        q = self.queue
        was_empty = not q
        for f in frames:
            if len(q) >= self.qlen:
                self._ring_full()
                continue
            q.append(f)
        if was_empty:
            self._flush()

    def flush_pending(self) -> None:
        if self.queue and self.peer is not None:
            self._flush()

    def _flush(self) -> None:
        q = self.queue
        sock = self.sock
        peer = self.peer
        while q:
            if peer is None:
                self.counters["rx_no_reader"] += len(q)
                q.clear()
                break
            try:
                sock.sendto(q[0], peer)
            except BlockingIOError:
                self.reactor.want_write(sock.fileno(), True)
                return
            except OSError as e:
                # the reader went away (ENOENT, ECONNREFUSED): forget a learned peer
                self.counters[f"send_{errno.errorcode.get(e.errno, e.errno)}"] += 1
                q.popleft()
                if self.remote is None:
                    self.peer = peer = None
                continue
            q.popleft()
            self.counters["rx_frames"] += 1
        self.reactor.want_write(sock.fileno(), False)

    def close(self, keep: bool = False) -> None:
        if self.reactor is not None:
            self.reactor.unwatch(self.sock.fileno())
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def send_fd(sock: socket.socket, fd: int, msg: bytes = b"F") -> None:
    """One byte with the fd attached (SCM_RIGHTS), as ``qemu -add-fd``/libvirt pass fds."""
    sock.sendmsg([msg], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])


def recv_fd(sock: socket.socket) -> tuple[int, bytes]:
    """The counterpart of :func:`send_fd` (used by tests and by client code)."""
    fds = array.array("i")
    msg, anc, _flags, _addr = sock.recvmsg(16, socket.CMSG_SPACE(fds.itemsize))
    for level, typ, data in anc:
        if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    if not fds:
        raise OSError(errno.EBADMSG, "no fd received")
    return fds[0], msg


class TapFdEndpoint(Endpoint):
    """A TAP whose fd is handed over SCM_RIGHTS to whoever connects to ``handover_path``.

    The TAP is made quiet: IPv6 off, no ARP, forwarding off, so its own stack neither
    answers nor forwards what the guest writes; the datapath reads those frames with an
    AF_PACKET socket (``port``), and sends the child's deliveries out through the same
    socket, which tun queues to the fd (tun's own queue of 500 is the reader queue; its
    overflow is counted by the kernel as the TAP's tx_dropped).
    """

    kind = "tapfd"
    takes_vnet = True

    def __init__(self, name: str, ifname: str, handover_path: str, netns: str | None = None,
                 mtu: int | None = None, persist: bool = False, adopt: int | None = None) -> None:
        super().__init__(name)
        self.handover_path = handover_path
        self.netns = netns
        self.tap = Tap(TapConfig(ifname, netns, mtu=mtu, persist=persist, adopt=adopt, shared=True))
        try:
            write_sysctl(netns, f"net/ipv6/conf/{self.tap.name}/disable_ipv6", "1")
            write_sysctl(netns, f"net/ipv4/conf/{self.tap.name}/forwarding", "0")
            write_sysctl(netns, f"net/ipv4/conf/{self.tap.name}/arp_ignore", "8")
            self.tap.ctl.set_flags(self.tap.name, set_bits=IFF_UP | IFF_NOARP)
            self.tap.set_carrier(True)
            # tun's queue to the fd is the reader queue: tx_queue_len slots (1000 by default)
            fcntl.ioctl(self.tap.ctl.sock.fileno(), SIOCSIFTXQLEN,
                        ifreq(self.tap.name, struct.pack("i", READER_QUEUE_LEN)))
            self.port = Parent(ParentConfig(self.tap.name, netns, rx="v2", tx="send", rx_frames=512,
                                            rcvbuf=8 << 20, sndbuf=8 << 20))
            _unix_path_ready(handover_path)
            self.listener = socket.socket(
                socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
            )
            self.listener.bind(handover_path)
            self.listener.listen(4)
        except BaseException:
            self.tap.close()
            raise

    @property
    def connected(self) -> bool:
        return True

    def attach(self, reactor: Reactor, sink) -> None:
        super().attach(reactor, sink)
        reactor.watch(self.listener.fileno(), self._on_listen, kind="endpoint")
        reactor.watch(self.port.fd, self._on_port, kind="endpoint")

    def _on_listen(self, events: int) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except BlockingIOError:
                return
            try:
                conn.setblocking(True)
                conn.settimeout(1.0)
                if self.tap.fd < 0 and not self._reattach():
                    self.counters["handover_busy"] += 1  # the previous VM still holds the TAP
                    continue
                send_fd(conn, self.tap.fd)
                self.counters["fd_handed_over"] += 1
            except OSError:
                self.counters["handover_error"] += 1
            finally:
                conn.close()

    def _reattach(self) -> bool:
        """Open the adopted TAP again once the VM that held it let go (False: still held)."""
        cfg = self.tap.cfg
        try:
            tap = Tap(TapConfig(self.tap.name, cfg.netns, persist=cfg.persist, adopt=self.tap.ifindex, shared=True))
        except OSError:
            return False
        if tap.fd < 0:
            tap.close(remove=False)
            return False
        self.tap.close(remove=False)
        self.tap = tap
        tap.set_carrier(True)
        return True

    def _on_port(self, events: int) -> None:
        sink = self.sink
        for buf in self.port.drain(64):
            if len(buf) < VNET_HDR_LEN + 14:
                self.counters["tx_runt"] += 1
                continue
            self.counters["tx_frames"] += 1
            sink(self, buf)

    def deliver(self, buf: bytes) -> None:
        self.port.queue(buf)
        self.counters["rx_frames"] += 1

    def flush_pending(self) -> None:
        self.port.flush()

    def stats(self) -> dict:
        s = super().stats()
        s["port"] = self.port.stats()
        s["ifname"] = self.tap.name
        return s

    def close(self, keep: bool = False) -> None:
        """``keep``: a persistent TAP stays (with the VM that holds it) for the next daemon."""
        if self.reactor is not None:
            self.reactor.unwatch(self.listener.fileno())
            self.reactor.unwatch(self.port.fd)
        self.listener.close()
        try:
            os.unlink(self.handover_path)
        except FileNotFoundError:
            pass
        self.port.close()
        if not keep and self.tap.fd < 0:
            self._reattach()  # to clear TUNSETPERSIST (else the TAP goes when its VM lets go)
        self.tap.close(remove=not keep)
