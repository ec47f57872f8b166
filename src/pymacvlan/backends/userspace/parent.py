"""The parent (lower device) as the userspace datapath sees it: one AF_PACKET socket.

Receive: a TPACKET_V2 mmap ring (default) or TPACKET_V3, both with PACKET_VNET_HDR so GSO
frames arrive whole with their virtio_net_hdr. V2 is the default because it wakes the
reader per frame: V3 hands over a block only when it is full or its retire timer (1 ms at
best) fires, which alone would break the 50 us added-RTT target; under load V2 batches by
itself, since every frame the kernel wrote while we were busy is read in the same pass.
V2 slots are small (sized from the MTU); a frame that does not fit (a 64 KB GSO frame) is
marked TP_STATUS_COPY in its slot and queued whole on the socket (PACKET_COPY_THRESH),
where recvmsg() picks it up in order. ``rx="recv"`` is the one-frame-per-syscall baseline.

Transmit: a TPACKET_V2 tx ring (frames copied into slots, one send() per batch) or one
send() per frame (``tx="send"``). A socket with a tx ring ignores send()'s buffer, so frames
too big for a slot go through a second, ring-less socket. Two kernel behaviours shape the
ring code: a frame the device drops is put back and retried on every kick (so oversized
frames are refused before they enter it), and slots stay busy until the receiver frees the
skb (zero-copy), so a full ring of already-sent frames falls back to the second socket.

Measured (bench/userspace_micro.py, veth parent, 2-core VM): rx 64 B frames V2 366k/s,
V3 427k/s, recvmsg 166k/s; 1514 B V2 337k/s, V3 323k/s, recvmsg 166k/s. V2 and V3 are
within noise of each other, so V2 stays for its latency. tx ring vs send: 64 B 179-202k vs
156-197k, 1514 B 166-210k vs 151-196k over three runs: the ring is never worse.

PACKET_IGNORE_OUTGOING keeps the parent's own transmissions (and ours) out of the ring:
macvlan never sees L's output (PACKET_OUTGOING), and AF_PACKET drops PACKET_LOOPBACK
itself. Memberships (PACKET_ADD_MEMBERSHIP) put children's MACs in L's unicast filter,
their groups in its multicast list, and promisc/allmulti where the engine says L has them;
the kernel releases them all when the socket closes, so a crash leaks none.

VLAN parents (``eth0.11`` without 8021q, or ``vlan=11``): the socket is on the base device,
frames whose stripped tag (ring header or PACKET_AUXDATA) carries the VID are delivered
untagged, everything else is ignored; transmitted frames get the tag inserted in-band.
"""

from __future__ import annotations

import errno
import mmap
import re
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass

from ...model import frame_max
from ._sys import (
    ETH_P_8021Q,
    ETH_P_ALL,
    PACKET_ADD_MEMBERSHIP,
    PACKET_AUXDATA,
    PACKET_COPY_THRESH,
    PACKET_DROP_MEMBERSHIP,
    PACKET_IGNORE_OUTGOING,
    PACKET_LOSS,
    PACKET_MR_ALLMULTI,
    PACKET_MR_MULTICAST,
    PACKET_MR_PROMISC,
    PACKET_MR_UNICAST,
    PACKET_QDISC_BYPASS,
    PACKET_RX_RING,
    PACKET_STATISTICS,
    PACKET_TX_RING,
    PACKET_VERSION,
    PACKET_VNET_HDR,
    SO_RCVBUFFORCE,
    SO_SNDBUFFORCE,
    SOL_PACKET,
    TP_STATUS_COPY,
    TP_STATUS_KERNEL,
    TP_STATUS_SEND_REQUEST,
    TP_STATUS_USER,
    TP_STATUS_VLAN_TPID_VALID,
    TP_STATUS_VLAN_VALID,
    TPACKET_V2,
    TPACKET_V3,
    NetdevCtl,
    in_netns,
)
from .vnet import VNET_HDR_LEN, insert_vlan_tag

__all__ = ["Parent", "ParentConfig", "resolve_vlan_parent"]

_T2 = struct.Struct("IIIHHIIHH")  # tpacket2_hdr up to tp_vlan_tpid
_T3 = struct.Struct("IIIIIIHHIIH")  # tpacket3_hdr up to hv1.tp_vlan_tpid
_BLK = struct.Struct("III")  # block_status, num_pkts, offset_to_first_pkt (at offset 8)
_U32 = struct.Struct("I")
_TXHDR = struct.Struct("II")  # tp_status, tp_len
_AUX = struct.Struct("IIIHHHH")  # tpacket_auxdata
_MREQ = struct.Struct("iHH8s")
_PKTSTATS = struct.Struct("II")
TPACKET2_HDRLEN = 52
TX_DATA_OFF = 32  # TPACKET2_HDRLEN - sizeof(sockaddr_ll): where tpacket_snd() reads data
AUX_SPACE = socket.CMSG_SPACE(_AUX.size)


def _pow2_at_least(n: int) -> int:
    p = 1
    while p < n:
        p <<= 1
    return p


def resolve_vlan_parent(ifname: str, netns: str | None, vlan: int | None) -> tuple[str, int | None]:
    """``eth0.11`` with no such device (8021q absent) → (``eth0``, 11); an existing device
    is used as it is, so a kernel VLAN device keeps working too."""
    if vlan is not None:
        if not 1 <= vlan <= 4094:
            raise ValueError(f"VLAN id {vlan} is outside 1..4094")
        return ifname, vlan
    ctl = NetdevCtl(netns)
    try:
        if ctl.ifindex(ifname) is not None:
            return ifname, None
        m = re.fullmatch(r"(.+)\.(\d+)", ifname)
        if m and ctl.ifindex(m.group(1)) is not None and 1 <= int(m.group(2)) <= 4094:
            return m.group(1), int(m.group(2))
    finally:
        ctl.close()
    raise OSError(errno.ENODEV, f"no device {ifname!r}" + (f" in namespace {netns}" if netns else ""))


@dataclass
class ParentConfig:
    """How the parent socket is set up. Defaults follow the measurements in the module docstring."""

    ifname: str
    netns: str | None = None
    vlan: int | None = None
    #: "v2" (per-frame wakeup, default), "v3" (block batches, retire timer) or "recv"
    rx: str = "v2"
    #: "ring" (TPACKET_V2 tx ring, one send() per batch) or "send" (one send() per frame)
    tx: str = "ring"
    rx_frames: int = 4096
    tx_frames: int = 1024
    v3_block_size: int = 1 << 20
    v3_blocks: int = 16
    v3_retire_ms: int = 1
    rcvbuf: int = 32 << 20
    #: frames stay charged to this socket until their receiver frees them (not when the
    #: parent's driver has them), so the send buffer must cover every peer's unread queue
    sndbuf: int = 128 << 20
    qdisc_bypass: bool = False
    #: PACKET_LOSS on the tx ring (skip malformed frames); off only to diagnose
    tx_loss: bool = True


class Parent:
    """One AF_PACKET socket on the parent. Not thread-safe: the datapath loop owns it."""

    def __init__(self, cfg: ParentConfig) -> None:
        self.cfg = cfg
        self.base, self.vlan = resolve_vlan_parent(cfg.ifname, cfg.netns, cfg.vlan)
        ctl = NetdevCtl(cfg.netns)
        try:
            idx = ctl.ifindex(self.base)
            if idx is None:
                raise OSError(errno.ENODEV, f"no device {self.base!r}")
            self.ifindex: int = idx
            self.mac: bytes = ctl.get_mac(self.base)
            self.mtu: int = ctl.get_mtu(self.base)
        finally:
            ctl.close()
        #: reasons for frames lost or ignored here, by name (never per-frame logging)
        self.drops: Counter[str] = Counter()
        self.rx_frames = 0
        self.tx_frames = 0
        self.kernel_drops = 0
        self._members: dict[tuple[int, bytes], int] = {}
        self._mm: mmap.mmap | None = None
        self._rx_kind = cfg.rx
        self._tx_kind = cfg.tx
        #: the tx ring still holds requests the kernel could not send yet (send buffer full)
        self.tx_stalled = False
        self.tx_stalls = 0
        self._tx_queued = 0
        #: when the rx ring first looked stuck (see :meth:`rx_resync`)
        self._stuck_since: float | None = None
        self.sock = self._open()
        self.fd = self.sock.fileno()
        #: a socket with a tx ring ignores send()'s buffer and only kicks the ring
        #: (packet_sendmsg → tpacket_snd), so frames too big for a slot (GSO) leave through
        #: a second, ring-less socket bound with protocol 0 (it never receives anything)
        self._big = self._open_big() if cfg.tx == "ring" else self.sock
        #: largest non-GSO frame the device takes: MTU + Ethernet header + one VLAN tag
        self.frame_max = frame_max(self.mtu)

    # -- setup ----------------------------------------------------------------------------
    def _open(self) -> socket.socket:
        cfg = self.cfg
        with in_netns(cfg.netns):
            # protocol 0: no frames are queued before the ring exists and bind() picks ETH_P_ALL
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC, 0)
        try:
            for opt, val, fallback in ((SO_RCVBUFFORCE, cfg.rcvbuf, socket.SO_RCVBUF),
                                       (SO_SNDBUFFORCE, cfg.sndbuf, socket.SO_SNDBUF)):
                try:
                    s.setsockopt(socket.SOL_SOCKET, opt, val)
                except PermissionError:
                    s.setsockopt(socket.SOL_SOCKET, fallback, val)
            s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
            if cfg.qdisc_bypass:
                s.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
            self._setup_rings(s)
            s.bind((self.base, ETH_P_ALL))
        except BaseException:
            self._unmap()
            s.close()
            raise
        return s

    def _open_big(self) -> socket.socket:
        with in_netns(self.cfg.netns):
            b = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC, 0)
        try:
            try:
                b.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, self.cfg.sndbuf)
            except PermissionError:
                b.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.cfg.sndbuf)
            b.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
            if self.cfg.qdisc_bypass:
                b.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
            b.bind((self.base, 0))
        except BaseException:
            b.close()
            raise
        return b

    def _setup_rings(self, s: socket.socket) -> None:
        cfg = self.cfg
        # a slot holds the ring header (76 bytes to tp_mac with a vnet header), the frame with
        # one VLAN tag, and alignment slack; anything larger takes the copy path
        self.slot = _pow2_at_least(frame_max(self.mtu) + 96 + 16)
        rx_size = tx_size = 0
        if cfg.rx not in ("v2", "v3", "recv"):
            raise ValueError(f"rx must be v2, v3 or recv, not {cfg.rx!r}")
        if cfg.tx not in ("ring", "send"):
            raise ValueError(f"tx must be ring or send, not {cfg.tx!r}")
        if cfg.rx == "v3":
            if cfg.tx == "ring":
                raise ValueError("a TPACKET_V3 socket has no usable tx ring here; use tx='send' with rx='v3'")
            s.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            bs = cfg.v3_block_size
            req = struct.pack("IIIIIII", bs, cfg.v3_blocks, self.slot, bs // self.slot * cfg.v3_blocks,
                              cfg.v3_retire_ms, 0, 0)
            s.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
            rx_size = bs * cfg.v3_blocks
            self._block = 0
        elif cfg.rx == "v2" or cfg.tx == "ring":
            s.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
        if cfg.tx == "ring":
            # before any ring exists (EBUSY after): a malformed frame is skipped, not a stuck ring
            s.setsockopt(SOL_PACKET, PACKET_LOSS, 1 if cfg.tx_loss else 0)
        if cfg.rx == "v2":
            s.setsockopt(SOL_PACKET, PACKET_COPY_THRESH, 1)
            self.rx_nr = self._ring(s, PACKET_RX_RING, cfg.rx_frames)
            rx_size = self.rx_nr * self.slot
            self._rx_head = 0
        if cfg.tx == "ring":
            self.tx_nr = self._ring(s, PACKET_TX_RING, cfg.tx_frames)
            tx_size = self.tx_nr * self.slot
            self._tx_head = 0
            self._tx_queued = 0
        self._rx_size = rx_size
        if rx_size or tx_size:
            # one mapping: the rx ring first, then the tx ring (packet_mmap())
            self._mm = mmap.mmap(s.fileno(), rx_size + tx_size, mmap.MAP_SHARED,
                                 mmap.PROT_READ | mmap.PROT_WRITE)
        self.tx_max = self.slot - TX_DATA_OFF

    def _ring(self, s: socket.socket, option: int, frames: int) -> int:
        """A TPACKET_V2 ring of about ``frames`` slots in 128 KiB blocks; returns the slot count."""
        per_block = max(1, (1 << 17) // self.slot)
        nr = max(per_block, frames // per_block * per_block)
        s.setsockopt(SOL_PACKET, option, struct.pack("IIII", per_block * self.slot, nr // per_block, self.slot, nr))
        return nr

    def _unmap(self) -> None:
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:  # pragma: no cover - a memoryview still alive
                pass
            self._mm = None

    def close(self) -> None:
        """Release every membership (the kernel would on close too) and the socket."""
        for (kind, mac) in list(self._members):
            self._mreq(PACKET_DROP_MEMBERSHIP, kind, mac)
        self._members.clear()
        self._unmap()
        if self._big is not self.sock:
            self._big.close()
        self.sock.close()

    # -- memberships ----------------------------------------------------------------------------
    def _mreq(self, op: int, kind: int, mac: bytes) -> None:
        self.sock.setsockopt(SOL_PACKET, op, _MREQ.pack(self.ifindex, kind, len(mac), mac.ljust(8, b"\0")))

    def add_membership(self, kind: int, mac: bytes = b"") -> None:
        key = (kind, mac)
        if key not in self._members:
            self._mreq(PACKET_ADD_MEMBERSHIP, kind, mac)
        self._members[key] = self._members.get(key, 0) + 1

    def drop_membership(self, kind: int, mac: bytes = b"") -> None:
        key = (kind, mac)
        n = self._members.get(key, 0)
        if n <= 0:
            return
        if n == 1:
            del self._members[key]
            self._mreq(PACKET_DROP_MEMBERSHIP, kind, mac)
        else:
            self._members[key] = n - 1

    def sync_memberships(self, unicast: set[bytes], multicast: set[bytes], promisc: bool, allmulti: bool) -> None:
        """Make the socket's memberships exactly this set (one reference each).

        A unicast address the device refuses (no unicast list support) falls back to one
        promiscuous membership; devices without IFF_UNICAST_FLT go promiscuous by
        themselves in __dev_set_rx_mode(), which needs nothing from us.
        """
        want: set[tuple[int, bytes]] = {(PACKET_MR_UNICAST, m) for m in unicast}
        want |= {(PACKET_MR_MULTICAST, m) for m in multicast}
        if promisc:
            want.add((PACKET_MR_PROMISC, b""))
        if allmulti:
            want.add((PACKET_MR_ALLMULTI, b""))
        for key in [k for k in self._members if k not in want]:
            self._members[key] = 1
            self.drop_membership(*key)
        for key in want - set(self._members):
            try:
                self.add_membership(*key)
            except OSError:
                if key[0] != PACKET_MR_UNICAST:
                    raise
                self.drops["uc_filter_refused_promisc_fallback"] += 1
                if (PACKET_MR_PROMISC, b"") not in self._members:
                    self.add_membership(PACKET_MR_PROMISC)

    @property
    def memberships(self) -> list[tuple[str, str]]:
        names = {PACKET_MR_UNICAST: "unicast", PACKET_MR_MULTICAST: "multicast",
                 PACKET_MR_PROMISC: "promisc", PACKET_MR_ALLMULTI: "allmulti"}
        return sorted((names[k], m.hex(":")) for k, m in self._members)

    # -- receive ------------------------------------------------------------------------------
    def drain(self, budget: int = 256) -> list[bytes]:
        """Up to ``budget`` received frames as hdr+frame buffers, tags back in place."""
        kind = self._rx_kind
        if kind == "v2":
            out = self._drain_v2(budget)
        elif kind == "v3":
            out = self._drain_v3(budget)
        else:
            out = self._drain_recv(budget)
        self.rx_frames += len(out)
        return out

    def rx_resync(self, after: float = 0.01) -> bool:
        """Called when the socket polled readable but :meth:`drain` found nothing: if the
        slot at our head has stayed the kernel's for ``after`` seconds while a later slot
        holds a frame, move the head to that frame.

        Seen once in a 5-round benchmark (6.18, veth parent, 64-byte floods with ring
        overflow): the head slot was free while the kernel filled the slots after it, so
        the reader waited forever and epoll (level-triggered: the kernel's previous slot
        is full) woke the loop in a busy circle. A slot the kernel has claimed is published
        within microseconds (tpacket_rcv holds no lock that sleeps), so one still free after
        10 ms is not coming; skipping it loses nothing. Counted as ``rx_ring_resync``.
        """
        if self._rx_kind != "v2":
            return False
        now = time.monotonic()
        if self._stuck_since is None:
            self._stuck_since = now
            return False
        if now - self._stuck_since < after:
            return False
        self._stuck_since = None
        mm, slot, nr, head = self._mm, self.slot, self.rx_nr, self._rx_head
        if _U32.unpack_from(mm, head * slot)[0] & TP_STATUS_USER:
            return False
        for i in range(1, nr):
            k = (head + i) % nr
            if _U32.unpack_from(mm, k * slot)[0] & TP_STATUS_USER:
                self._rx_head = k
                self.drops["rx_ring_resync"] += 1
                return True
        return False

    def _drain_v2(self, budget: int) -> list[bytes]:
        mm = self._mm
        slot = self.slot
        nr = self.rx_nr
        head = self._rx_head
        out: list[bytes] = []
        append = out.append
        unpack = _T2.unpack_from
        vlan = self.vlan
        zero_status = b"\0\0\0\0"
        while len(out) < budget:
            off = head * slot
            status, length, snaplen, mac, _net, _s, _ns, tci, tpid = unpack(mm, off)
            if not status & TP_STATUS_USER:
                break
            if status & TP_STATUS_COPY:
                buf = self._recv_one()
            elif snaplen < length:
                buf = None
                self.drops["rx_truncated"] += 1
            else:
                buf = mm[off + mac - VNET_HDR_LEN: off + mac + snaplen]
            mm[off:off + 4] = zero_status
            head += 1
            if head == nr:
                head = 0
            if buf is None:
                continue
            if status & TP_STATUS_VLAN_VALID or vlan is not None:
                buf = self._vlan_in(buf, status, tci, tpid)
                if buf is None:
                    continue
            append(buf)
        if head != self._rx_head:
            self._stuck_since = None
        self._rx_head = head
        return out

    def _drain_v3(self, budget: int) -> list[bytes]:
        mm = self._mm
        bs = self.cfg.v3_block_size
        nblocks = self.cfg.v3_blocks
        out: list[bytes] = []
        vlan = self.vlan
        while len(out) < budget:
            boff = self._block * bs
            bstatus, num, first = _BLK.unpack_from(mm, boff + 8)
            if not bstatus & TP_STATUS_USER:
                break
            p = boff + first
            for _ in range(num):
                nxt, _s, _ns, snaplen, length, status, mac, _net, _rxh, tci, tpid = _T3.unpack_from(mm, p)
                if snaplen < length:
                    self.drops["rx_truncated"] += 1
                else:
                    buf = mm[p + mac - VNET_HDR_LEN: p + mac + snaplen]
                    if status & TP_STATUS_VLAN_VALID or vlan is not None:
                        buf = self._vlan_in(buf, status, tci, tpid)
                    if buf is not None:
                        out.append(buf)
                p += nxt
            _U32.pack_into(mm, boff + 8, TP_STATUS_KERNEL)
            self._block = (self._block + 1) % nblocks
        return out

    def _recv_one(self) -> bytes | None:
        try:
            data, anc, _flags, _addr = self.sock.recvmsg(65536 + 64, AUX_SPACE)
        except BlockingIOError:
            self.drops["rx_copy_missing"] += 1
            return None
        return self._with_aux(data, anc)

    def _with_aux(self, data: bytes, anc) -> bytes | None:
        status = tci = tpid = 0
        for level, typ, payload in anc:
            if level == SOL_PACKET and typ == PACKET_AUXDATA and len(payload) >= _AUX.size:
                status, _len, _snap, _mac, _net, tci, tpid = _AUX.unpack_from(payload)
        if status & TP_STATUS_VLAN_VALID or self.vlan is not None:
            return self._vlan_in(data, status, tci, tpid)
        return data

    def _drain_recv(self, budget: int) -> list[bytes]:
        out: list[bytes] = []
        recvmsg = self.sock.recvmsg
        while len(out) < budget:
            try:
                data, anc, _flags, _addr = recvmsg(65536 + 64, AUX_SPACE)
            except BlockingIOError:
                break
            buf = self._with_aux(data, anc)
            if buf is not None:
                out.append(buf)
        return out

    def _vlan_in(self, buf: bytes, status: int, tci: int, tpid: int) -> bytes | None:
        """Restore the stripped tag, or (VLAN parent) keep only our VID, untagged."""
        tagged = bool(status & TP_STATUS_VLAN_VALID)
        if not status & TP_STATUS_VLAN_TPID_VALID:
            tpid = ETH_P_8021Q
        if self.vlan is None:
            return insert_vlan_tag(buf, tci, tpid) if tagged else buf
        if tagged and tpid == ETH_P_8021Q and tci & 0x0FFF == self.vlan:
            return buf
        self.drops["rx_not_our_vlan"] += 1
        return None

    # -- transmit --------------------------------------------------------------------------------
    def queue(self, buf: bytes) -> None:
        """Queue hdr+frame for the wire; :meth:`flush` sends the batch.

        A non-GSO frame longer than the device takes is dropped and counted here: in the
        tx ring, a frame the device drops is put back as a send request and retried on
        every kick (tpacket_snd treats drops as congestion), which would wedge the ring.
        """
        if self.vlan is not None:
            buf = insert_vlan_tag(buf, self.vlan)
        n = len(buf)
        if n - VNET_HDR_LEN > self.frame_max and not buf[1]:
            self.drops["tx_oversize"] += 1
            return
        if self._tx_kind == "ring" and n <= self.tx_max:
            mm = self._mm
            off = self._rx_size + self._tx_head * self.slot
            status = _U32.unpack_from(mm, off)[0]
            if status != 0:
                self.flush()
                status = _U32.unpack_from(mm, off)[0]
                if status == TP_STATUS_SEND_REQUEST:
                    # the kernel has not sent the ring's backlog yet: drop, as a full qdisc would
                    self.drops["tx_ring_full"] += 1
                    return
                if status != 0:
                    # every slot holds a frame already sent but not yet freed by its receiver
                    # (tx ring frames are zero-copy): nothing is pending, so sending this one
                    # through the ring-less socket keeps the order
                    self._send_direct(buf)
                    return
            mm[off + TX_DATA_OFF: off + TX_DATA_OFF + n] = buf
            _TXHDR.pack_into(mm, off, TP_STATUS_SEND_REQUEST, n)
            self._tx_head = (self._tx_head + 1) % self.tx_nr
            self._tx_queued += 1
            self.tx_frames += 1
            return
        if self._tx_queued:
            self.flush()  # keep order: what is in the ring goes first
        self._send_direct(buf)

    def _send_direct(self, buf: bytes) -> None:
        try:
            self._big.send(buf)
            self.tx_frames += 1
        except BlockingIOError:
            self.drops["tx_would_block"] += 1
        except OSError as e:
            self.drops[f"tx_{errno.errorcode.get(e.errno, e.errno)}"] += 1

    def flush(self) -> None:
        """Kick the tx ring: the kernel sends every slot marked SEND_REQUEST, in order.

        It stops early when the socket's send buffer is full (skbs stay charged to us until
        whoever receives them frees them, e.g. a peer's unread TCP queue across a veth), and
        leaves the rest marked. Only the last queued slot is checked (the kernel goes in
        order): if it is still marked, ``tx_stalled`` tells the loop to kick again soon,
        since no POLLOUT will come for a ring whose head is still a pending request.
        """
        if self._tx_kind != "ring" or not self._tx_queued:
            return
        try:
            self.sock.send(b"", socket.MSG_DONTWAIT)
        except BlockingIOError:
            self.drops["tx_ring_kick_would_block"] += 1
        except OSError as e:
            self.drops[f"tx_ring_{errno.errorcode.get(e.errno, e.errno)}"] += 1
            if e.errno in (errno.ENETDOWN, errno.ENXIO):
                self._discard_pending()  # the device is down: nothing will send them, no retry loop
                return
        last = self._rx_size + ((self._tx_head - 1) % self.tx_nr) * self.slot
        if _U32.unpack_from(self._mm, last)[0] == TP_STATUS_SEND_REQUEST:
            if not self.tx_stalled:
                self.tx_stalls += 1
            self.tx_stalled = True
        else:
            self.tx_stalled = False
            self._tx_queued = 0

    def _discard_pending(self) -> None:
        """Drop every queued request (as a down device's qdisc would): tpacket_snd refuses
        a down device before it looks at a slot, so the requests would be re-kicked forever.
        They are the slots just behind our head; the oldest is where the kernel's own head
        stands, so ours moves back to it and the next frame is the next one it sends."""
        mm, nr = self._mm, self.tx_nr
        head = self._tx_head
        n = 0
        while n < nr:
            k = (head - 1) % nr
            off = self._rx_size + k * self.slot
            if _U32.unpack_from(mm, off)[0] != TP_STATUS_SEND_REQUEST:
                break
            _U32.pack_into(mm, off, 0)
            head = k
            n += 1
        self._tx_head = head
        self._tx_queued = 0
        self.tx_stalled = False
        self.drops["tx_device_down"] += n

    # -- statistics ---------------------------------------------------------------------------------
    def kernel_stats(self) -> dict:
        """PACKET_STATISTICS (reset by the kernel on each read, so accumulated here)."""
        raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12)
        _packets, dropped = _PKTSTATS.unpack_from(raw)
        self.kernel_drops += dropped
        return {"ring_or_queue_drops": self.kernel_drops}

    def stats(self) -> dict:
        self.kernel_stats()
        return {"rx_frames": self.rx_frames, "tx_frames": self.tx_frames, "tx_stalls": self.tx_stalls,
                "kernel_drops": self.kernel_drops, "drops": dict(self.drops),
                "memberships": self.memberships}

