"""Keeping the parent's own stack from seeing what macvlan consumes: a tc ingress eBPF filter.

An AF_PACKET socket only gets a copy; the kernel still hands every frame to the parent's
stack. Kernel macvlan's rx_handler instead *consumes* some frames (spec §3):

1. unicast to an up child's MAC (not a source-mode child) — the parent never sees it;
2. with a passthru child: every unicast;
3. multicast/broadcast whose source MAC is an up private, passthru or source child's
   (returned only to that child);
4. anything from a MAC listed by a source-mode child with flag ``nodst``.

Case 1 is mostly harmless without help (the stack gets PACKET_OTHERHOST and IPv4, IPv6 and
ARP drop it on entry, counted in rx_otherhost_dropped), but 2–4 reach the stack as normal
traffic: a passthru parent with an address would answer for it.

The shield is a direct-action eBPF program on the parent's clsact ingress hook. tc ingress
runs in __netif_receive_skb_core *after* the ptype_all taps, so our AF_PACKET socket has
already taken its copy when the shield drops the frame for the stack. The program looks the
destination and source MACs up in a hash map that :meth:`Shield.sync` rebuilds from the
engine's port after every control operation:

- key = MAC (6 bytes, zero-padded to 8), value bits: 1 = consume unicast to it,
  2 = consume multicast from it, 4 = consume everything from it;
- key = 00:00:00:00:00:00 with bit 1 = consume every unicast (passthru).

What remains different from the kernel:

- the parent's own packet taps (tcpdump on the parent) see consumed frames (they do with
  kernel macvlan too) *and* bridge-local frames are invisible to them (kernel macvlan injects
  those into the parent's rx path with dev_forward_skb, here they never touch the parent);
- the parent's rx counters count consumed frames (as with kernel macvlan, whose lower
  counts them before its rx_handler), and tc's drop counter on the filter counts them;
- IPv4 multicast fragments are reassembled separately by the stack and by the engine;
- other tc ingress filters or XDP on the parent see the frames before the stack decision;
- after a crash the filter stays until the next start (which replaces it) or
  ``tc filter del dev PARENT ingress``; it only ever drops what children consumed.

Program assembled here by hand (no compiler): ~40 instructions, helpers
bpf_skb_load_bytes and bpf_map_lookup_elem only.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import struct
from typing import Any

from ... import identity
from ...model import MacvlanFlag
from .bpf import (
    BPF_MAP_CREATE,
    BPF_MAP_DELETE_ELEM,
    BPF_MAP_TYPE_HASH,
    BPF_MAP_UPDATE_ELEM,
    BPF_PROG_TYPE_SCHED_CLS,
    HELPER_MAP_LOOKUP,
    HELPER_SKB_LOAD_BYTES,
    R0,
    R1,
    R2,
    R3,
    R4,
    R6,
    R7,
    R10,
    TC_ACT_SHOT,
    TC_ACT_UNSPEC,
    clsact_release,
    prog_load,
    tc_attach,
    tc_detach,
)
from .bpf import bpf as _bpf
from .bpf import insn as _i

__all__ = ["Shield", "shield_rules"]

log = logging.getLogger(__name__)

FILTER_NAME = "pmv_shield"
#: after the fast path's filter (prio 1), which hands on what it does not forward
TC_PRIO = 2
CONSUME_UNICAST_TO, CONSUME_MCAST_FROM, CONSUME_ALL_FROM = 1, 2, 4
ALL_UNICAST_KEY = bytes(6)


# -- the shield's instructions (the assembler with labels is bpf.Asm; this program predates it) --
def mov_reg(dst: int, src: int) -> bytes: return _i(0xBF, dst, src)
def mov_imm(dst: int, imm: int) -> bytes: return _i(0xB7, dst, 0, 0, imm)
def add_imm(dst: int, imm: int) -> bytes: return _i(0x07, dst, 0, 0, imm)
def st_dw(dst: int, off: int, imm: int) -> bytes: return _i(0x7A, dst, 0, off, imm)
def ldx_w(dst: int, src: int, off: int) -> bytes: return _i(0x61, dst, src, off)
def ldx_b(dst: int, src: int, off: int) -> bytes: return _i(0x71, dst, src, off)
def call(helper: int) -> bytes: return _i(0x85, 0, 0, 0, helper)
def exit_() -> bytes: return _i(0x95)
def jne_imm(dst: int, imm: int, off: int) -> bytes: return _i(0x55, dst, 0, off, imm)
def jeq_imm(dst: int, imm: int, off: int) -> bytes: return _i(0x15, dst, 0, off, imm)
def jset_imm(dst: int, imm: int, off: int) -> bytes: return _i(0x45, dst, 0, off, imm)
def ja(off: int) -> bytes: return _i(0x05, 0, 0, off)
def ld_map_fd(dst: int, fd: int) -> bytes: return _i(0x18, dst, 1, 0, fd) + _i(0, 0, 0, 0, 0)




def _program(map_fd: int) -> bytes:
    """Labels are resolved by assembling blocks and counting instructions (ld_imm64 = 2)."""
    def load(off_pkt: int, fp_off: int) -> list[bytes]:
        return [mov_reg(R1, R6), mov_imm(R2, off_pkt), mov_reg(R3, R10), add_imm(R3, fp_off),
                mov_imm(R4, 6), call(HELPER_SKB_LOAD_BYTES)]

    def lookup(fp_off: int) -> list[bytes]:
        return [ld_map_fd(R1, map_fd), mov_reg(R2, R10), add_imm(R2, fp_off), call(HELPER_MAP_LOOKUP)]

    # fp-8: dst key, fp-16: src key, fp-24: the all-unicast key (all zero)
    head = [mov_reg(R6, R1), st_dw(R10, -8, 0), st_dw(R10, -16, 0), st_dw(R10, -24, 0)]
    head += load(0, -8)
    body: list[list[bytes]] = []
    body.append(head)
    # blocks, with jumps patched by position: PASS and DROP at the end
    b_src = load(6, -16)
    b_src_lookup = lookup(-16)
    b_dst = lookup(-8)
    b_all = lookup(-24)
    pass_ = [mov_imm(R0, TC_ACT_UNSPEC), exit_()]
    drop = [mov_imm(R0, TC_ACT_SHOT), exit_()]

    def n(block: list[bytes]) -> int:
        return sum(len(x) // 8 for x in block)

    # layout:
    # head; jne r0,0 -> PASS
    # b_src; jne r0,0 -> PASS
    # b_src_lookup; jeq r0,0 -> DST
    #   ldx_w r7,[r0]; jset r7,4 -> DROP; jset r7,2 -> MC_CHECK; ja DST
    #   MC_CHECK: ldx_b r7,[fp-8]; jset r7,1 -> DROP
    # DST: ldx_b r7,[fp-8]; jset r7,1 -> PASS
    #   b_dst; jeq r0,0 -> ALL; ldx_w r7,[r0]; jset r7,1 -> DROP
    #   ALL: b_all; jne r0,0 -> DROP
    # PASS; DROP
    seq: list[tuple[str, Any]] = []  # ("i", insn bytes) | ("j", (kind, reg, imm, label)) | ("l", label)

    def emit(x: bytes) -> None:
        seq.append(("i", x))

    def jump(kind: str, reg: int, imm: int, label: str) -> None:
        seq.append(("j", (kind, reg, imm, label)))

    def label(name: str) -> None:
        seq.append(("l", name))

    for x in head:
        emit(x)
    jump("jne", R0, 0, "PASS")
    for x in b_src:
        emit(x)
    jump("jne", R0, 0, "PASS")
    for x in b_src_lookup:
        emit(x)
    jump("jeq", R0, 0, "DST")
    emit(ldx_w(R7, R0, 0))
    jump("jset", R7, CONSUME_ALL_FROM, "DROP")
    jump("jset", R7, CONSUME_MCAST_FROM, "MC")
    jump("ja", 0, 0, "DST")
    label("MC")
    emit(ldx_b(R7, R10, -8))
    jump("jset", R7, 1, "DROP")
    label("DST")
    emit(ldx_b(R7, R10, -8))
    jump("jset", R7, 1, "PASS")
    for x in b_dst:
        emit(x)
    # a destination entry may only say "multicast from it" or "everything from it" (a
    # source child's MAC, a nodst-listed sender): consume unicast to it only with bit 1
    jump("jeq", R0, 0, "ALL")
    emit(ldx_w(R7, R0, 0))
    jump("jset", R7, CONSUME_UNICAST_TO, "DROP")
    label("ALL")
    for x in b_all:
        emit(x)
    jump("jne", R0, 0, "DROP")
    label("PASS")
    for x in pass_:
        emit(x)
    label("DROP")
    for x in drop:
        emit(x)
    # resolve
    pos: dict[str, int] = {}
    at = 0
    for kind, v in seq:
        if kind == "l":
            pos[v] = at
        else:
            at += (len(v) // 8) if kind == "i" else 1
    out = []
    at = 0
    for kind, v in seq:
        if kind == "i":
            out.append(v)
            at += len(v) // 8
        elif kind == "j":
            k, reg, imm, lab = v
            off = pos[lab] - (at + 1)
            out.append({"jne": jne_imm, "jeq": jeq_imm, "jset": jset_imm}[k](reg, imm, off) if k != "ja" else ja(off))
            at += 1
    return b"".join(out)


def _key(mac: bytes) -> bytes:
    return mac + b"\0\0"


def shield_rules(engine) -> dict[bytes, int]:
    """What the port consumes, as map entries (see the module docstring)."""
    rules: dict[bytes, int] = {}
    port = engine.port
    if port is None:
        return rules
    from ...model import Mode
    if port.passthru:
        rules[ALL_UNICAST_KEY] = CONSUME_UNICAST_TO
    for mac, vlan in port.vlan_hash.items():
        if vlan.mode != Mode.SOURCE:
            rules[mac] = rules.get(mac, 0) | CONSUME_UNICAST_TO
        if vlan.mode in (Mode.PRIVATE, Mode.PASSTHRU, Mode.SOURCE):
            rules[mac] = rules.get(mac, 0) | CONSUME_MCAST_FROM
    for mac, entries in port.source_hash.items():
        if any(v.flags & MacvlanFlag.NODST for v, _ in entries):
            rules[mac] = rules.get(mac, 0) | CONSUME_ALL_FROM
    return rules


class Shield:
    """The eBPF filter on one parent's tc ingress, and its MAC map."""

    def __init__(self, ifname: str, netns: str | None = None, max_entries: int = 4096,
                 ifindex: int | None = None) -> None:
        """On ``ifname`` in ``netns``; with ``ifindex`` (the parent the datapath opened), the device
        at that ifindex must be ``ifname`` there, else nothing is attached."""
        self.ifname = ifname
        self.netns = netns
        #: the namespace we were given, by inode: every rtnetlink socket we use must be in it
        self.netns_ino = identity.netns_ino(netns)
        self.ident: identity.DeviceIdentity | None = None
        self.ifindex: int | None = ifindex
        self.map_fd = _bpf(
            BPF_MAP_CREATE, struct.pack("IIIII", BPF_MAP_TYPE_HASH, 8, 4, max_entries, 0).ljust(72, b"\0")
        )
        self.prog_fd = -1
        self._rules: dict[bytes, int] = {}
        self._created_clsact = False
        try:
            self.prog_fd = self._load()
            self._attach()
        except BaseException:
            self._close_fds()
            raise

    def _load(self) -> int:
        return prog_load(BPF_PROG_TYPE_SCHED_CLS, _program(self.map_fd), b"pmv_shield")

    def _ipr(self):
        """An rtnetlink socket in the namespace we were given (proven by inode), for this thread only."""
        return identity.open_ipr(self.netns, self.netns_ino)

    def _attach(self) -> None:
        ipr = self._ipr()
        try:
            if self.ifindex is not None:
                ident = identity.read(ipr, ifindex=self.ifindex)
                if ident.name != self.ifname:
                    raise identity.IdentityError(errno.ENODEV, f"ifindex {self.ifindex} is {ident.name!r}, not "
                                                 f"{self.ifname!r}: not attaching the shield")
            else:
                ident = identity.read(ipr, ifname=self.ifname)
            self.ident = ident
            self.ifindex = ident.ifindex
            self._created_clsact = tc_attach(ipr, ident.ifindex, self.prog_fd, FILTER_NAME, TC_PRIO)
        finally:
            ipr.close()

    def note_mac(self, mac: bytes) -> None:
        """The parent has a new MAC, seen through a socket in its namespace: its identity follows."""
        if self.ident is not None:
            i = self.ident
            self.ident = identity.DeviceIdentity(i.netns, i.ifindex, i.kind, mac.hex(":"), i.name)

    def sync(self, engine) -> None:
        want = shield_rules(engine)
        if want == self._rules:
            return
        for mac in [m for m in self._rules if m not in want]:
            key = ctypes.create_string_buffer(_key(mac), 8)
            try:
                _bpf(BPF_MAP_DELETE_ELEM, struct.pack("IIQ", self.map_fd, 0, ctypes.addressof(key)).ljust(32, b"\0"))
            except OSError:
                pass
        for mac, bits in want.items():
            if self._rules.get(mac) == bits:
                continue
            key = ctypes.create_string_buffer(_key(mac), 8)
            val = ctypes.create_string_buffer(struct.pack("I", bits), 4)
            _bpf(BPF_MAP_UPDATE_ELEM, struct.pack("IIQQQ", self.map_fd, 0, ctypes.addressof(key),
                                                  ctypes.addressof(val), 0).ljust(32, b"\0"))
        self._rules = dict(want)

    def rules(self) -> dict[str, list[str]]:
        names = {CONSUME_UNICAST_TO: "unicast_to", CONSUME_MCAST_FROM: "multicast_from", CONSUME_ALL_FROM: "all_from"}
        out: dict[str, list[str]] = {}
        for mac, bits in self._rules.items():
            key = "*" if mac == ALL_UNICAST_KEY else mac.hex(":")
            out[key] = [n for b, n in names.items() if bits & b]
        return out

    def _close_fds(self) -> None:
        for fd in (self.prog_fd, self.map_fd):
            if fd >= 0:
                os.close(fd)
        self.prog_fd = self.map_fd = -1

    def close(self) -> None:
        """Our filter off the parent (and the clsact qdisc if we made it and no filter at all is
        left on it), after proving the parent is still the device we attached to."""
        ident, self.ident = self.ident, None
        if ident is not None:
            try:
                ipr = self._ipr()
            except OSError as e:
                log.warning("shield: not detaching from %s: %s", ident.describe(), e)
                ipr = None
            if ipr is not None:
                try:
                    identity.check(ipr, ident, "detach the shield from")
                    tc_detach(ipr, ident.ifindex, FILTER_NAME, TC_PRIO)
                    if self._created_clsact:  # the fast path's filter may still be there: it removes its own
                        clsact_release(ipr, ident.ifindex)
                except identity.IdentityError as e:
                    if e.errno != errno.ENODEV:
                        log.warning("%s", e)
                finally:
                    ipr.close()
        self._close_fds()
