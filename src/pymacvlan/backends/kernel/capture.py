"""Packet sockets that tell which devices received an injected frame, and how they classified it.

Where each tap sits matters more than anything else here:

- **parent**: an ETH_P_ALL socket on the parent would see every frame *before* macvlan's
  rx_handler (ptype_all taps run first), so it cannot tell what the parent's stack got. A socket
  bound to the parent with a *specific* protocol sits in dev->ptype_specific, which
  __netif_receive_skb_core() serves only after the rx_handler returned PASS. One such socket per
  ethertype the scenario uses.
- **wire**: an ETH_P_ALL socket on the wire end, incoming frames only; a hairpin bridge's
  reflections leave through the same port as PACKET_OUTGOING and are not counted again.
- **children**: an ETH_P_ALL socket on each child, incoming only. On a macvtap it runs before
  tap_handle_frame(), so it sees frames whether they then go to a reader's ring or the stack.

Every tap keeps only frames whose sll_ifindex is its own device (see Tap.read).

Tags: the kernel moves a VLAN tag into skb metadata before the taps run. PACKET_AUXDATA gives it
back and we re-insert it. For the parent's stack the tag is gone for good by the time the
protocol socket is served (the kernel cleared it, classifying the frame OTHERHOST when the VID is
not 0), so the parent matches the injected frame with its outer tags removed.

When to stop listening: after a frame, the kernel works through per-CPU queues (the backlog
that netif_rx() fills, softirqs, macvlan's bc_work on the system workqueue), all in FIFO order
on one CPU. The run is pinned to one CPU (:func:`pinned_to_one_cpu`), and a :class:`Probe`, a
broadcast through a macvlan port of its own, is sent after the frame: when it arrives it has
passed through the same backlog and the same workqueue behind everything the frame caused.
Capture stops after a probe round brought nothing new (at least ``rounds`` rounds, at most
``cap`` seconds), never on silence alone. Anything of an injected frame that still arrives
later is a :class:`LateFrame` error naming the step and the device, never dropped.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from pymacvlan.model import PacketType
from pymacvlan.model.constants import ETH_P_8021Q

from .topology import in_netns

ETH_P_ALL = 0x0003
ETH_P_802_3 = 0x0001
ETH_P_802_2 = 0x0004
ETH_P_8021AD = 0x88A8
SOL_PACKET = 263
PACKET_AUXDATA = 8
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40
_AUXDATA = struct.Struct("=IIIHHHH")  # struct tpacket_auxdata
_CMSG_SPACE = socket.CMSG_SPACE(_AUXDATA.size)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # SCM_TIMESTAMPNS: struct timespec, the skb's stamp
_TIMESPEC = struct.Struct("=qq")
_CMSG_SPACE_STAMPED = _CMSG_SPACE + socket.CMSG_SPACE(_TIMESPEC.size)
_VLAN_TPIDS = (ETH_P_8021Q, ETH_P_8021AD)
_MAX_FRAME = 1 << 16
SO_SNDBUFFORCE = 32
_SNDBUF = 64 << 20
_PKTTYPES = {t.value: t.name for t in PacketType}


def ethertype_chain(frame: bytes) -> list[int]:
    """The ethertypes skb->protocol can take for this frame as the kernel peels its VLAN tags.

    Length fields (< 0x600) become ETH_P_802_3 or ETH_P_802_2, as eth_type_trans() decides.
    """
    out: list[int] = []
    offset = 12
    while len(frame) >= offset + 2:
        etype = int.from_bytes(frame[offset:offset + 2], "big")
        if etype < 0x600:
            out += [ETH_P_802_3, ETH_P_802_2]
            break
        out.append(etype)
        if etype not in _VLAN_TPIDS:
            break
        offset += 4
    return out


def untagged_variants(frame: bytes) -> list[bytes]:
    """The frame, then the frame with its first one and two VLAN tags removed."""
    out = [frame]
    while len(out) < 3 and len(out[-1]) >= 18 and int.from_bytes(out[-1][12:14], "big") in _VLAN_TPIDS:
        out.append(out[-1][:12] + out[-1][16:])
    return out


def _packet_socket(ns: str, ifname: str, proto: int) -> socket.socket:
    # Created with protocol 0 (no hook yet), then bound: binding a socket that already has a
    # hook waits for an RCU grace period, which would cost ~10 ms per socket.
    with in_netns(ns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        sock.bind((ifname, proto))
        sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        # A sent skb stays charged to its socket until freed, and a macvtap's unread ring keeps
        # up to 500 of them: a default send buffer would answer EAGAIN long before that.
        sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, _SNDBUF)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass
class Tap:
    """One receiving socket and the observation list it feeds."""

    where: str  # "wire", "parent" or a child's scenario name
    ifname: str
    sock: socket.socket
    strip_tags: bool = False  # the parent's stack sees tagged frames with the tag removed
    outgoing: bool = False  # also return what the device transmits (PACKET_OUTGOING)

    def read(self) -> list[tuple[bytes, int]]:
        """Every queued incoming frame (and outgoing one, with ``outgoing``), VLAN tag
        re-inserted, with its sll_pkttype."""
        return [(data, pkttype) for _ts, data, pkttype in self.read_stamped()]

    def stamp(self) -> None:
        """Have the kernel stamp every frame this socket gets (SO_TIMESTAMPNS): when the device
        received or sent it (the skb's timestamp, set in netif_receive_skb / dev_queue_xmit_nit),
        not when it was read, so frames read from several sockets can be put in causal order."""
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)

    def read_stamped(self) -> list[tuple[int, bytes, int]]:
        """As :meth:`read`, each with the kernel's timestamp in nanoseconds (integers: a float
        of epoch seconds cannot tell frames 100 ns apart; 0 without :meth:`stamp`)."""
        frames: list[tuple[int, bytes, int]] = []
        errors = 0
        while True:
            try:
                data, ancdata, _flags, addr = self.sock.recvmsg(_MAX_FRAME, _CMSG_SPACE_STAMPED)
            except BlockingIOError:
                return frames
            except OSError:
                # ENETDOWN is reported once after the device went down; the socket stays bound
                # and is served again when the device comes back up.
                errors += 1
                if errors > 4:
                    return frames
                continue
            ifname, pkttype = addr[0], addr[2]
            if (pkttype == PacketType.OUTGOING and not self.outgoing) or ifname != self.ifname:
                # A socket bound to the parent is also served frames that macvlan handed to a
                # child (RX_HANDLER_ANOTHER: orig_dev's ptype_specific) when that child shares
                # its namespace; sll_ifindex names the device that really received them.
                continue
            ts = 0
            for level, kind, raw in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(raw) >= _TIMESPEC.size:
                    sec, nsec = _TIMESPEC.unpack_from(raw)
                    ts = sec * 1_000_000_000 + nsec
                if level == SOL_PACKET and kind == PACKET_AUXDATA and len(raw) >= _AUXDATA.size:
                    status, _len, _snap, _mac, _net, tci, tpid = _AUXDATA.unpack_from(raw)
                    if status & TP_STATUS_VLAN_VALID:
                        if not status & TP_STATUS_VLAN_TPID_VALID:
                            tpid = ETH_P_8021Q
                        data = data[:12] + struct.pack("!HH", tpid, tci) + data[12:]
            frames.append((ts, data, pkttype))


class LateFrame(RuntimeError):
    """A copy of an earlier step's frame arrived after that step's capture ended."""


_libc = ctypes.CDLL(None, use_errno=True)


@contextmanager
def pinned_to_one_cpu() -> Iterator[int]:
    """Run the block (and threads it starts) on the CPU this thread is on now.

    Packet-socket sends, the softirqs they raise, and the bc_work that macvlan queues from
    them then all run on this CPU's queues, in order: what makes a :class:`Probe` evidence.
    """
    before = os.sched_getaffinity(0)
    cpu = _libc.sched_getcpu()
    if cpu < 0 or cpu not in before:
        cpu = min(before)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, before)


_PROBE_ETHERTYPE = 0x88B6  # IEEE local experimental 2; scenarios never use it for probes
_PROBE_SRC = bytes.fromhex("02ffffffff01")


@dataclass
class Probe:
    """A broadcast sent into a macvlan port of its own (veth ``tx`` → veth ``port`` → macvlan
    ``rx``), read where the port's bc_work delivered it. Its path is the longest a frame of
    the run takes on the CPU (backlog, softirq, workqueue, backlog); it touches none of the
    run's devices, so it changes no counter, queue or ring the scenario looks at."""

    tx: socket.socket
    rx: socket.socket
    tx_ifname: str
    _serial: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @classmethod
    def open(cls, ns: str, tx_ifname: str, rx_ifname: str) -> Probe:
        tx = _packet_socket(ns, tx_ifname, _PROBE_ETHERTYPE)
        try:
            rx = _packet_socket(ns, rx_ifname, _PROBE_ETHERTYPE)
        except BaseException:
            tx.close()
            raise
        return cls(tx, rx, tx_ifname)

    def send(self) -> bytes:
        """Send the next probe; returns its payload (what :meth:`arrived` looks for)."""
        token = next(self._serial).to_bytes(8, "big")
        frame = b"\xff" * 6 + _PROBE_SRC + _PROBE_ETHERTYPE.to_bytes(2, "big") + token.ljust(46, b"\0")
        self.tx.sendto(frame, (self.tx_ifname, _PROBE_ETHERTYPE))
        return token

    def arrived(self, token: bytes) -> bool:
        """Read what came back; True once the probe carrying ``token`` is among it."""
        found = False
        while True:
            try:
                data = self.rx.recv(_MAX_FRAME)
            except BlockingIOError:
                return found
            found = found or data[14:22] == token

    def fileno(self) -> int:
        return self.rx.fileno()

    def close(self) -> None:
        self.tx.close()
        self.rx.close()


@dataclass
class _Injected:
    """A frame a step injected, and how each tap recognizes a copy of it."""

    label: str
    frame: bytes
    variants: list[bytes]
    datagram: bytes | None

    @classmethod
    def of(cls, label: str, frame: bytes) -> _Injected:
        return cls(label, frame, untagged_variants(frame), ipv4_fragment_key(frame))

    def copy(self, tap: Tap, data: bytes) -> bytes | None:
        """What ``tap`` observed of this frame, when ``data`` is a copy of it, else None."""
        if data == self.frame or (tap.strip_tags and data in self.variants):
            return self.frame
        if self.datagram is not None and ipv4_datagram_key(data) == self.datagram:
            return data  # macvlan reassembled the fragments this one completed
        return None


@dataclass
class Capture:
    """All taps of a run; collect() returns what each saw of one injected frame."""

    cap: float = 5.0  # never wait longer than this for a frame's copies (the probe stuck)
    rounds: int = 2  # at least this many probe rounds; stop after one that brought nothing new
    taps: list[Tap] = field(default_factory=list)
    probe: Probe | None = None
    #: runs at the start of every probe round: a userspace datapath finishes what it was handed
    barrier: Callable[[], None] | None = None
    injected: list[_Injected] = field(default_factory=list)
    capped: int = 0  # collections that ended at ``cap`` rather than on evidence
    late: list[str] = field(default_factory=list)  # late copies seen, until raised

    def open_wire(self, ns: str, ifname: str) -> None:
        self.taps.append(Tap("wire", ifname, _packet_socket(ns, ifname, ETH_P_ALL)))

    def open_parent(self, ns: str, ifname: str, ethertypes: set[int]) -> None:
        for proto in sorted(ethertypes):
            self.taps.append(Tap("parent", ifname, _packet_socket(ns, ifname, proto), strip_tags=True))

    def open_child(self, name: str, ns: str, ifname: str) -> None:
        self.taps.append(Tap(name, ifname, _packet_socket(ns, ifname, ETH_P_ALL)))

    def open_probe(self, ns: str, tx_ifname: str, rx_ifname: str) -> None:
        self.probe = Probe.open(ns, tx_ifname, rx_ifname)

    def send(self, where: str, frame: bytes) -> None:
        """Transmit ``frame`` on the device a tap watches, as an application's packet socket would.

        The tap's own socket sends (it lives in the right namespace); a packet socket never
        receives its own transmissions, and the other taps skip PACKET_OUTGOING anyway. Raises
        OSError as the kernel answers: ENETDOWN for a device that is down, EMSGSIZE above its MTU.
        """
        tap = next(t for t in self.taps if t.where == where)
        tap.sock.sendto(frame, (tap.ifname, int.from_bytes(frame[12:14], "big")))

    def close(self, where: str | None = None) -> None:
        """Close the taps of one device (all, and the probe, when ``where`` is None)."""
        keep: list[Tap] = []
        for tap in self.taps:
            if where is None or tap.where == where:
                tap.sock.close()
            else:
                keep.append(tap)
        self.taps = keep
        if where is None and self.probe is not None:
            self.probe.close()
            self.probe = None

    def drain(self) -> None:
        """Read what is queued. A copy of an earlier step's frame is a :class:`LateFrame`
        (its step's capture ended too early, or the kernel delivered it late); anything
        else (no run device emits frames of its own) is not the scenario's and is dropped.
        A frame injected twice is one frame: a late copy of the first counts for the second."""
        for tap in self.taps:
            self._record(tap, None, {})
        self._raise_late()

    def finish(self) -> None:
        """After the last step: one more probe round, then no copy may be left anywhere."""
        self._rounds(None, {}, time.monotonic() + self.cap, 1)
        self.drain()

    def collect(self, frame: bytes, label: str = "the frame") -> dict[str, list[dict]]:
        """Observations of ``frame`` per tap location, once a probe round brought nothing new.

        ``label`` names the step in a later :class:`LateFrame` error.
        """
        inj = _Injected.of(label, frame)
        seen: dict[str, list[dict]] = {}
        if not self._rounds(inj, seen, time.monotonic() + self.cap, self.rounds):
            self.capped += 1
        self.injected.append(inj)
        self._raise_late()
        return seen

    def _raise_late(self) -> None:
        late, self.late = self.late, []
        if late:
            raise LateFrame("; ".join(late))

    def _rounds(self, inj: _Injected | None, seen: dict[str, list[dict]], deadline: float,
                rounds: int) -> bool:
        """Probe rounds until ``rounds`` of them and the last one brought no copy of ``inj``;
        False when ``deadline`` came first."""
        quiet = 0
        while quiet < rounds:
            if self.barrier is not None:
                self.barrier()
            got = self._listen(inj, seen, deadline)
            if got is None:
                return False
            quiet = 0 if got else quiet + 1
        return True

    def _listen(self, inj: _Injected | None, seen: dict[str, list[dict]], deadline: float) -> int | None:
        """Send a probe and record copies of ``inj`` until it came back: how many were
        recorded, or None when ``deadline`` came first."""
        if self.probe is None:
            raise RuntimeError("a capture needs its probe (open_probe) to know when to stop")
        poller = select.poll()
        by_fd = {tap.sock.fileno(): tap for tap in self.taps}
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        poller.register(self.probe.fileno(), select.POLLIN)
        token = self.probe.send()
        got = 0
        back = False
        while not back:
            wait = deadline - time.monotonic()
            if wait <= 0:
                return None
            ready = [by_fd.get(fd) for fd, _event in poller.poll(wait * 1000)]
            back = None in ready and self.probe.arrived(token)
            # once the probe is back, one last look at every tap: what it queued is in
            for tap in self.taps if back else [t for t in ready if t is not None]:
                got += self._record(tap, inj, seen)
        return got

    def _record(self, tap: Tap, inj: _Injected | None, seen: dict[str, list[dict]]) -> int:
        """Read ``tap``; note each copy of ``inj`` under the tap's location (returns how many)
        and each copy of an earlier step's frame in :attr:`late`."""
        got = 0
        for data, pkttype in tap.read():
            copy = inj.copy(tap, data) if inj is not None else None
            if copy is None:
                earlier = next((e for e in reversed(self.injected) if e.copy(tap, data) is not None), None)
                if earlier is not None:
                    self.late.append(f"{earlier.label}: a copy of its frame arrived on {tap.where} "
                                     f"({tap.ifname}) after the step's capture had ended")
                continue
            entry = {"hex": copy.hex()} if tap.where == "wire" else {
                "pkttype": _PKTTYPES.get(pkttype, str(pkttype)), "hex": copy.hex()}
            seen.setdefault(tap.where, []).append(entry)
            got += 1
        return got


def ipv4_datagram_key(frame: bytes) -> bytes | None:
    """(source, destination, id, protocol) of an untagged IPv4 frame, else None."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[14] >> 4 != 4:
        return None
    return frame[26:34] + frame[18:20] + frame[23:24]


def ipv4_fragment_key(frame: bytes) -> bytes | None:
    """The datagram key when ``frame`` is an IPv4 fragment: its reassembly is the observation
    (the marker of a reassembled datagram is its IP identity, not the fragment's bytes)."""
    key = ipv4_datagram_key(frame)
    if key is None or not int.from_bytes(frame[20:22], "big") & 0x3FFF:
        return None
    return key
