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
"""

from __future__ import annotations

import select
import socket
import struct
import time
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

    def read(self) -> list[tuple[bytes, int]]:
        """Every queued incoming frame, VLAN tag re-inserted, with its sll_pkttype."""
        frames: list[tuple[bytes, int]] = []
        errors = 0
        while True:
            try:
                data, ancdata, _flags, addr = self.sock.recvmsg(_MAX_FRAME, _CMSG_SPACE)
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
            if pkttype == PacketType.OUTGOING or ifname != self.ifname:
                # A socket bound to the parent is also served frames that macvlan handed to a
                # child (RX_HANDLER_ANOTHER: orig_dev's ptype_specific) when that child shares
                # its namespace; sll_ifindex names the device that really received them.
                continue
            for level, kind, raw in ancdata:
                if level == SOL_PACKET and kind == PACKET_AUXDATA and len(raw) >= _AUXDATA.size:
                    status, _len, _snap, _mac, _net, tci, tpid = _AUXDATA.unpack_from(raw)
                    if status & TP_STATUS_VLAN_VALID:
                        if not status & TP_STATUS_VLAN_TPID_VALID:
                            tpid = ETH_P_8021Q
                        data = data[:12] + struct.pack("!HH", tpid, tci) + data[12:]
            frames.append((data, pkttype))


@dataclass
class Capture:
    """All taps of a run; collect() returns what each saw of one injected frame."""

    quiet: float = 0.03  # stop once no matching frame has arrived for this long
    cap: float = 1.0  # and never wait longer than this
    taps: list[Tap] = field(default_factory=list)

    def open_wire(self, ns: str, ifname: str) -> None:
        self.taps.append(Tap("wire", ifname, _packet_socket(ns, ifname, ETH_P_ALL)))

    def open_parent(self, ns: str, ifname: str, ethertypes: set[int]) -> None:
        for proto in sorted(ethertypes):
            self.taps.append(Tap("parent", ifname, _packet_socket(ns, ifname, proto), strip_tags=True))

    def open_child(self, name: str, ns: str, ifname: str) -> None:
        self.taps.append(Tap(name, ifname, _packet_socket(ns, ifname, ETH_P_ALL)))

    def send(self, where: str, frame: bytes) -> None:
        """Transmit ``frame`` on the device a tap watches, as an application's packet socket would.

        The tap's own socket sends (it lives in the right namespace); a packet socket never
        receives its own transmissions, and the other taps skip PACKET_OUTGOING anyway. Raises
        OSError as the kernel answers: ENETDOWN for a device that is down, EMSGSIZE above its MTU.
        """
        tap = next(t for t in self.taps if t.where == where)
        tap.sock.sendto(frame, (tap.ifname, int.from_bytes(frame[12:14], "big")))

    def close(self, where: str | None = None) -> None:
        """Close the taps of one device (all when ``where`` is None)."""
        keep: list[Tap] = []
        for tap in self.taps:
            if where is None or tap.where == where:
                tap.sock.close()
            else:
                keep.append(tap)
        self.taps = keep

    def drain(self) -> None:
        """Forget anything queued, so late frames of an earlier step cannot count now."""
        for tap in self.taps:
            tap.read()

    def collect(self, frame: bytes) -> dict[str, list[dict]]:
        """Observations of ``frame`` per tap location, waiting until the kernel is quiet.

        Floods go through macvlan's bc workqueue and hairpin reflections through a bridge, so
        there is no completion signal: poll until ``quiet`` passes with no matching frame.
        """
        variants = untagged_variants(frame)
        datagram = ipv4_fragment_key(frame)
        seen: dict[str, list[dict]] = {}
        poller = select.poll()
        by_fd = {tap.sock.fileno(): tap for tap in self.taps}
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        start = last = time.monotonic()
        while True:
            now = time.monotonic()
            wait = min(last + self.quiet, start + self.cap) - now
            if wait <= 0:
                break
            for fd, _event in poller.poll(wait * 1000):
                tap = by_fd[fd]
                for data, pkttype in tap.read():
                    if data == frame or (tap.strip_tags and data in variants):
                        got = frame
                    elif datagram is not None and ipv4_datagram_key(data) == datagram:
                        got = data  # macvlan reassembled the fragments this one completed
                    else:
                        continue
                    entry = {"hex": got.hex()} if tap.where == "wire" else {
                        "pkttype": _PKTTYPES.get(pkttype, str(pkttype)), "hex": got.hex()}
                    seen.setdefault(tap.where, []).append(entry)
                    last = time.monotonic()
        return seen


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
