"""The eBPF fast path: the engine's unicast decisions, forwarded in the kernel.

The engine stays the one authority. After every control operation the datapath derives,
from the engine's port, which unicast frames have an exact, state-free answer
(:func:`fastpath_rules`) and writes them into two hash maps; a tc program on the ingress hook
of the parent and of every veth child's outer end (:mod:`.veth`) forwards such frames itself:

- **wire → child**: unicast to an up child's MAC (not source mode, not a passthru port):
  ``bpf_redirect_peer`` into the child's veth, which delivers in the child's namespace;
- **bridge child → bridge child**: unicast from a bridge child to an up bridge child's MAC,
  while the parent is up (dev_forward_skb's condition): ``bpf_redirect_peer`` likewise;
- **child → wire**: any other unicast a child sends, while the parent is up and has carrier:
  ``bpf_redirect`` out of the parent.

Everything else is the slow path's, whose packet sockets took their copy before tc ingress
(taps run first): on the parent it goes on unchanged (TC_ACT_UNSPEC: the next filter, the
shield, and the host's stack); on a child's outer end, whose stack is nobody's, it ends there
(TC_ACT_SHOT: the parent namespace's stack would otherwise answer a child's ARP or take its
broadcasts, which a macvlan child never reaches). The slow path's share: broadcast and
multicast; any frame whose source MAC a source-mode child lists (it could be copied, or
consumed by ``nodst``); a passthru port's receive side;
non-GSO frames longer than the parent's MTU allows; unknown destinations and targets that
are not veth children (macvtap endpoints, TAPs, a veth whose inner end shares the parent's
namespace, where bpf_redirect_peer refuses); VLAN-tagged frames (in-band or stripped tags)
and VLAN parents; everything while ``pymacvlan trace`` runs.

Packet taps run before tc ingress, so the slow path's AF_PACKET sockets (parent and outer
ends) would also see what the program forwards. Each of them carries a socket filter made
from the same decision code and the same maps, which drops for that socket exactly the
frames the tc program will redirect. (A control operation landing between a frame's socket
filter and its tc program — the same frame, microseconds apart — can leave that one frame
undelivered; never delivered twice.)

Counters: the tc program counts, per child slot, rx/tx packets and bytes in a per-CPU array;
:meth:`FastPath.fold` adds what is new to the engine's counters, so ``stats``, ``link show -s``
and the conformance suite see one set of numbers.

Maps (all keys and values little-endian):

- ``ports``: ingress ifindex (u32) → {u32 slot, u32 flags, u32 parent ifindex, u32 max_len};
- ``macs``: MAC (6 bytes + 2 zero) → {u32 outer ifindex, u32 slot, u32 flags, u32 0};
- ``stats``: slot (u32) → per CPU {u64 rx_packets, rx_bytes, tx_packets, tx_bytes}.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
from dataclasses import dataclass

from ... import identity
from ...model import Mode, frame_max
from .bpf import (
    BPF_HDR_START_MAC,
    BPF_MAP_TYPE_HASH,
    BPF_MAP_TYPE_PERCPU_ARRAY,
    BPF_PROG_TYPE_SCHED_CLS,
    BPF_PROG_TYPE_SOCKET_FILTER,
    FP,
    HELPER_MAP_LOOKUP,
    HELPER_REDIRECT,
    HELPER_REDIRECT_PEER,
    HELPER_SKB_LOAD_BYTES_RELATIVE,
    R0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R9,
    SO_ATTACH_BPF,
    TC_ACT_SHOT,
    TC_ACT_UNSPEC,
    Asm,
    clsact_release,
    map_create,
    map_delete,
    map_lookup,
    map_update,
    prog_load,
    tc_attach,
    tc_detach,
)

__all__ = ["FastPath", "fastpath_rules", "Rules"]

log = logging.getLogger(__name__)

FILTER_NAME = "pmv_fastpath"
#: the fast path's tc filter runs before the shield's (prio 2)
TC_PRIO = 1
MAX_SLOTS = 1024
KEEP_ALL = 0x7FFFFFFF  # a socket filter's "keep the whole frame"

# ports.flags
FROM_WIRE = 1    # the parent: frames from the wire
BRIDGE = 2       # the sending child is in bridge mode
WORLD_OK = 4     # the parent is up and has carrier: dev_queue_xmit(L) would take the frame
FWD_OK = 8       # the parent is up: dev_forward_skb(L) would take a bridge-local frame
SRC_ANY = 16     # some source-mode child has a list: look the sender up (SRC_LISTED)
# macs.flags
WIRE_OK = 1      # wire → this child in the kernel (up, not source mode, not passthru, a veth)
LOCAL_BRIDGE = 2  # an up bridge child: a bridge sender's frame to it stays local
FAST_TARGET = 4  # a veth child bpf_redirect_peer can reach
SRC_LISTED = 8   # a source-mode child lists this MAC: frames *from* it take the slow path

# __sk_buff offsets (linux/bpf.h)
SKB_LEN, SKB_VLAN_PRESENT, SKB_IFINDEX, SKB_DATA, SKB_DATA_END, SKB_GSO_SIZE = 0, 20, 40, 76, 80, 176
ETH_P_8021Q_LE, ETH_P_8021AD_LE = 0x0081, 0xA888  # the ethertype bytes read as a little-endian u16

_PORT = struct.Struct("IIII")
_MAC = struct.Struct("IIII")
_STATS = struct.Struct("QQQQ")


@dataclass(frozen=True)
class Rules:
    """What the maps should hold: ``ports`` by ifindex, ``macs`` by MAC (values as tuples)."""

    ports: dict[int, tuple[int, int, int, int]]
    macs: dict[bytes, tuple[int, int, int]]


@dataclass(frozen=True)
class FastChild:
    """A veth child as the fast path needs it."""

    outer_ifindex: int
    slot: int
    #: bpf_redirect_peer can reach it (the inner end is in another namespace than the outer)
    peer_ok: bool


EMPTY = Rules({}, {})


def fastpath_rules(engine, parent_ifindex: int | None, max_len: int, children: dict[str, FastChild]) -> Rules:
    """The engine's port as map entries (see the module docstring for what each flag means).

    Only decisions that depend on nothing but the maps' keys are written; whatever is not
    written goes to the Python slow path, which asks the engine."""
    port = engine.port
    if port is None or parent_ifindex is None:
        return EMPTY
    lower = engine.lower
    src_any = SRC_ANY if port.source_hash else 0
    ports: dict[int, tuple[int, int, int, int]] = {parent_ifindex: (0, FROM_WIRE | src_any, 0, 0)}
    flags = (WORLD_OK if lower.up and lower.carrier else 0) | (FWD_OK if lower.up else 0) | src_any
    max_len = min(max_len, frame_max(lower.mtu))
    for name, child in children.items():
        vlan = engine.children.get(name)
        if vlan is None:
            continue
        ports[child.outer_ifindex] = (child.slot, flags | (BRIDGE if vlan.mode == Mode.BRIDGE else 0),
                                   parent_ifindex, max_len)
    macs: dict[bytes, tuple[int, int, int]] = {}
    for mac, vlan in port.vlan_hash.items():
        fc = children.get(vlan.name)
        f = LOCAL_BRIDGE if vlan.mode == Mode.BRIDGE else 0
        if fc is not None and fc.peer_ok:
            f |= FAST_TARGET
            if not port.passthru and vlan.mode != Mode.SOURCE:
                f |= WIRE_OK
        macs[mac] = (fc.outer_ifindex if fc else 0, fc.slot if fc else 0, f)
    for mac in port.source_hash:
        ifindex, slot, f = macs.get(mac, (0, 0, 0))
        macs[mac] = (ifindex, slot, f | SRC_LISTED)
    return Rules(ports, macs)


def _mac_key(mac: bytes) -> bytes:
    return mac + b"\0\0"


def program(ports_fd: int, macs_fd: int, stats_fd: int, tc: bool) -> bytes:
    """The decision, as a tc program (``tc``: redirects and counts) or as the slow path's
    socket filter (returns 0 for exactly the frames the tc program redirects).

    Registers: r6 skb, r7 the ingress port's entry, r8 the destination's entry (or 0),
    r9 the port's flags. Stack: fp-4 ifindex key, fp-16 dst key, fp-24 src key,
    fp-28 ethertype, fp-32 counter slot key."""
    a = Asm()
    a.mov(R6, R1)
    a.movi(R9, FROM_WIRE)  # until the port is known, a miss is treated as the parent's (see "miss")
    a.ldx(4, R1, R6, SKB_IFINDEX).stx(4, FP, -4, R1)
    a.ld_map(R1, ports_fd).mov(R2, FP).addi(R2, -4).call(HELPER_MAP_LOOKUP)
    a.jmp("jeq", R0, 0, "miss")
    a.mov(R7, R0)
    a.ldx(4, R1, R6, SKB_VLAN_PRESENT).jmp("jne", R1, 0, "miss")  # a tag the device stripped

    a.ldx(4, R9, R7, 4)  # the port's flags
    a.st(8, FP, -16, 0).st(8, FP, -24, 0).st(4, FP, -28, 0)
    if tc:
        # direct packet access: at tc ingress skb->data is the MAC header (cls_bpf pushes it)
        a.ldx(4, R2, R6, SKB_DATA).ldx(4, R3, R6, SKB_DATA_END)
        a.mov(R4, R2).addi(R4, 14).jmp("jgt", R4, R3, "miss", reg=True)
        for pkt_off, fp_off in ((0, -16), (6, -24)):  # dst, src: 6 bytes each, into 8-byte keys
            a.ldx(4, R1, R2, pkt_off).stx(4, FP, fp_off, R1)
            a.ldx(2, R1, R2, pkt_off + 4).stx(2, FP, fp_off + 4, R1)
        a.ldx(2, R1, R2, 12).stx(2, FP, -28, R1)
    else:
        # a socket filter has no direct packet access (and its skb->data need not be the MAC
        # header in a test run): the same bytes through the helper
        def load(off: int, fp_off: int, n: int) -> None:
            a.mov(R1, R6).movi(R2, off).mov(R3, FP).addi(R3, fp_off).movi(R4, n).movi(R5, BPF_HDR_START_MAC)
            a.call(HELPER_SKB_LOAD_BYTES_RELATIVE).jmp("jne", R0, 0, "miss")

        load(0, -16, 6)
        load(6, -24, 6)
        load(12, -28, 2)
    a.ldx(2, R1, FP, -28).jmp("jeq", R1, ETH_P_8021Q_LE, "miss").jmp("jeq", R1, ETH_P_8021AD_LE, "miss")
    a.ldx(1, R1, FP, -16).jmp("jset", R1, 1, "miss")  # multicast and broadcast
    # a source-mode child lists the sender: copies (and nodst) are the engine's. Looked up only
    # while some source-mode child has a list (SRC_ANY), which is rare
    a.jmp("jset", R9, SRC_ANY, "src").ja("dst")
    a.label("src")
    a.ld_map(R1, macs_fd).mov(R2, FP).addi(R2, -24).call(HELPER_MAP_LOOKUP)
    a.jmp("jeq", R0, 0, "dst")
    a.ldx(4, R1, R0, 8).jmp("jset", R1, SRC_LISTED, "miss")
    a.label("dst")
    a.ld_map(R1, macs_fd).mov(R2, FP).addi(R2, -16).call(HELPER_MAP_LOOKUP)
    a.mov(R8, R0)
    a.jmp("jset", R9, FROM_WIRE, "wire_in")

    # -- from a child: non-GSO frames longer than the parent takes are the engine's
    a.ldx(4, R1, R6, SKB_GSO_SIZE).jmp("jne", R1, 0, "sized")
    a.ldx(4, R1, R6, SKB_LEN).ldx(4, R2, R7, 12).jmp("jgt", R1, R2, "miss", reg=True)
    a.label("sized")
    a.jmp("jset", R9, BRIDGE, "bridge").ja("to_wire")
    a.label("bridge")
    a.jmp("jeq", R8, 0, "to_wire")
    a.ldx(4, R1, R8, 8).jmp("jset", R1, LOCAL_BRIDGE, "local").ja("to_wire")
    a.label("local")
    a.jmp("jset", R1, FAST_TARGET, "local_target").ja("miss")
    a.label("local_target")
    a.jmp("jset", R9, FWD_OK, "local_ok").ja("miss")
    a.label("local_ok")
    if tc:
        _count(a, stats_fd, R7, 0, 16)  # the sender's tx
        _count(a, stats_fd, R8, 4, 0)   # the receiver's rx
        a.ldx(4, R1, R8, 0).movi(R2, 0).call(HELPER_REDIRECT_PEER).exit()
    else:
        a.ret(0)

    a.label("to_wire")
    a.jmp("jset", R9, WORLD_OK, "wire_ok").ja("miss")
    a.label("wire_ok")
    if tc:
        _count(a, stats_fd, R7, 0, 16)
        a.ldx(4, R1, R7, 8).movi(R2, 0).call(HELPER_REDIRECT).exit()
    else:
        a.ret(0)

    # -- from the wire: unicast to an up child's MAC
    a.label("wire_in")
    a.jmp("jeq", R8, 0, "miss")
    a.ldx(4, R1, R8, 8).jmp("jset", R1, WIRE_OK, "wire_hit").ja("miss")
    a.label("wire_hit")
    if tc:
        _count(a, stats_fd, R8, 4, 0)
        a.ldx(4, R1, R8, 0).movi(R2, 0).call(HELPER_REDIRECT_PEER).exit()
    else:
        a.ret(0)

    a.label("miss")
    if tc:
        # the parent's misses go on (the shield, then its stack: the host's own traffic); a
        # child's outer end has no stack of its own: the Python path's packet socket took its
        # copy before tc ingress (taps run first), so nothing else may see it, least of all the
        # parent namespace's stack (which would answer a child's ARP or take its broadcasts)
        a.jmp("jset", R9, FROM_WIRE, "miss_parent")
        a.ret(TC_ACT_SHOT)
        a.label("miss_parent")
        a.ret(TC_ACT_UNSPEC)
    else:
        a.ret(KEEP_ALL)
    return a.code()


def _count(a: Asm, stats_fd: int, entry: int, slot_off: int, field: int) -> None:
    """stats[entry->slot].{packets, bytes} at ``field`` += 1, skb->len (per CPU: plain adds)."""
    skip = a.fresh("count")
    a.ldx(4, R1, entry, slot_off).stx(4, FP, -32, R1)
    a.ld_map(R1, stats_fd).mov(R2, FP).addi(R2, -32).call(HELPER_MAP_LOOKUP)
    a.jmp("jeq", R0, 0, skip)
    a.ldx(8, R1, R0, field).addi(R1, 1).stx(8, R0, field, R1)
    a.ldx(4, R2, R6, SKB_LEN).ldx(8, R1, R0, field + 8).add(R1, R2).stx(8, R0, field + 8, R1)
    a.label(skip)


def _ncpus() -> int:
    """Possible CPUs: the per-CPU map's value array length."""
    try:
        with open("/sys/devices/system/cpu/possible") as f:
            text = f.read().strip()
    except OSError:
        return os.cpu_count() or 1
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n = max(n, int(hi or lo) + 1)
    return n


class FastPath:
    """The maps and both programs of one datapath, and where they are attached."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        #: the namespace we were given, by inode: every socket we use must be in it
        self.netns_ino = identity.netns_ino(netns)
        self.fds: list[int] = []
        self._attached: dict[int, bool] = {}  # ifindex → we created its clsact
        #: ifindex → the device as proven at attach (detach touches it only if it still is)
        self._ident: dict[int, identity.DeviceIdentity] = {}
        #: detaches refused because the device was no longer the one we attached to
        self.identity_refusals = 0
        self.ports_fd = self._keep(map_create(BPF_MAP_TYPE_HASH, 4, _PORT.size, MAX_SLOTS + 1, b"pmv_ports"))
        self.macs_fd = self._keep(map_create(BPF_MAP_TYPE_HASH, 8, _MAC.size, 4 * MAX_SLOTS, b"pmv_macs"))
        self.stats_fd = self._keep(map_create(BPF_MAP_TYPE_PERCPU_ARRAY, 4, _STATS.size, MAX_SLOTS, b"pmv_stats"))
        try:
            self.tc_fd = self._keep(prog_load(BPF_PROG_TYPE_SCHED_CLS,
                                              program(self.ports_fd, self.macs_fd, self.stats_fd, True), b"pmv_fast"))
            self.sf_fd = self._keep(prog_load(BPF_PROG_TYPE_SOCKET_FILTER,
                                              program(self.ports_fd, self.macs_fd, self.stats_fd, False),
                                              b"pmv_fast_sf"))
        except BaseException:
            self.close()
            raise
        self.ncpus = _ncpus()
        self.rules = EMPTY
        #: bumped whenever the maps change: the decisions in force
        self.generation = 0
        self._free_slots = list(range(MAX_SLOTS - 1, 0, -1))  # slot 0: the parent, never counted
        self._last: dict[int, tuple[int, int, int, int]] = {}

    def _keep(self, fd: int) -> int:
        self.fds.append(fd)
        return fd

    # -- attachment ------------------------------------------------------------------------------------
    def _ipr(self):
        """An rtnetlink socket in the namespace we were given (proven by inode), for this thread only."""
        return identity.open_ipr(self.netns, self.netns_ino)

    def attach(self, ifindex: int, ifname: str, sock: socket.socket) -> None:
        """The tc program on ``ifindex``'s ingress, the socket filter on the slow path's socket there.

        The rtnetlink socket is made inside the parent's namespace (its inode checked) and used at
        once on this thread; before anything is attached, the device at ``ifindex`` there must be
        ``ifname`` and the slow path's socket must live in that same namespace (an ifindex means
        nothing in another namespace, a name nothing at all: never attach to a stranger's device).
        The device's identity (namespace, ifindex, kind, MAC) is kept for :meth:`detach`."""
        ipr = self._ipr()
        try:
            ident = identity.read(ipr, ifindex=ifindex)
            if ident.name != ifname:
                raise identity.IdentityError(
                    errno.ENODEV, f"ifindex {ifindex} is {ident.name!r}, not {ifname!r}, in the namespace "
                    "the fast path was given: not attaching")
            if identity.socket_netns(sock) != ident.netns:
                raise identity.IdentityError(errno.ESTALE, f"the slow path's socket on {ifname!r} is in another "
                                             "namespace than the device: not attaching")
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_BPF, self.sf_fd)
            self._ident[ifindex] = ident
            self._attached[ifindex] = tc_attach(ipr, ifindex, self.tc_fd, FILTER_NAME, TC_PRIO)
        finally:
            ipr.close()

    def note_mac(self, ifindex: int, mac: bytes) -> None:
        """The device we attached to has a new MAC, seen through a socket in its namespace (ours,
        or the datapath's link monitor): its identity follows."""
        ident = self._ident.get(ifindex)
        if ident is not None:
            self._ident[ifindex] = identity.DeviceIdentity(ident.netns, ident.ifindex, ident.kind,
                                                           mac.hex(":"), ident.name)

    def forget(self, ifindex: int) -> None:
        """A device that goes away with our filter on it (a veth child being deleted)."""
        self._attached.pop(ifindex, None)
        self._ident.pop(ifindex, None)

    def detach(self, ifindex: int) -> None:
        """Our filter off ``ifindex`` (and the clsact qdisc if we made it and no filter at all is
        left on it), after proving the device is still the one we attached to."""
        created = self._attached.pop(ifindex, None)
        ident = self._ident.pop(ifindex, None)
        if created is None or ident is None:
            return
        try:
            ipr = self._ipr()
        except OSError as e:
            log.warning("fast path: not detaching from ifindex %d: %s", ifindex, e)
            return
        try:
            try:
                identity.check(ipr, ident, "detach the fast path from")
            except identity.IdentityError as e:
                if e.errno != errno.ENODEV:  # gone: nothing to detach; otherwise say so
                    self.identity_refusals += 1
                    log.warning("%s", e)
                return
            tc_detach(ipr, ifindex, FILTER_NAME, TC_PRIO)
            if created:
                clsact_release(ipr, ifindex)
        finally:
            ipr.close()

    # -- slots and counters ---------------------------------------------------------------------------
    def new_slot(self) -> int:
        slot = self._free_slots.pop()
        map_update(self.stats_fd, struct.pack("I", slot), bytes(_STATS.size * self.ncpus))
        self._last[slot] = (0, 0, 0, 0)
        return slot

    def free_slot(self, slot: int) -> None:
        self._last.pop(slot, None)
        self._free_slots.append(slot)

    def read(self, slot: int) -> tuple[int, int, int, int]:
        """(rx_packets, rx_bytes, tx_packets, tx_bytes) the programs counted for ``slot``, all CPUs."""
        raw = map_lookup(self.stats_fd, struct.pack("I", slot), _STATS.size * self.ncpus)
        if raw is None:
            return (0, 0, 0, 0)
        tot = [0, 0, 0, 0]
        for i in range(self.ncpus):
            for j, v in enumerate(_STATS.unpack_from(raw, i * _STATS.size)):
                tot[j] += v
        return tot[0], tot[1], tot[2], tot[3]

    def fold(self, slot: int, stats) -> None:
        """Add what the programs counted for ``slot`` since the last fold to ``stats`` (the
        engine's per-child counters)."""
        now = self.read(slot)
        last = self._last.get(slot, (0, 0, 0, 0))
        if now == last:
            return
        stats.rx_packets += now[0] - last[0]
        stats.rx_bytes += now[1] - last[1]
        stats.tx_packets += now[2] - last[2]
        stats.tx_bytes += now[3] - last[3]
        self._last[slot] = now

    # -- the maps ----------------------------------------------------------------------------------------
    def sync(self, want: Rules) -> None:
        """Make the maps hold ``want``: removals first, then changes and additions, so a frame in
        between meets either the old answer or the slow path, never a mix."""
        have = self.rules
        if want == have:
            return
        for mac in [m for m in have.macs if m not in want.macs]:
            map_delete(self.macs_fd, _mac_key(mac))
        for idx in [i for i in have.ports if i not in want.ports]:
            map_delete(self.ports_fd, struct.pack("I", idx))
        for idx, val in want.ports.items():
            if have.ports.get(idx) != val:
                map_update(self.ports_fd, struct.pack("I", idx), _PORT.pack(*val))
        for mac, (ifindex, slot, flags) in want.macs.items():
            if have.macs.get(mac) != (ifindex, slot, flags):
                map_update(self.macs_fd, _mac_key(mac), _MAC.pack(ifindex, slot, flags, 0))
        self.rules = want
        self.generation += 1

    def describe(self) -> dict:
        return {"generation": self.generation, "ports": len(self.rules.ports),
                "macs": {m.hex(":"): f for m, (_i, _s, f) in self.rules.macs.items()}}

    def close(self) -> None:
        for idx in list(self._attached):
            self.detach(idx)
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds.clear()
