"""eBPF without a toolchain: the bpf() system call, maps, program loading, BPF_PROG_TEST_RUN,
tc attachment, and a small assembler with labels.

Used by :mod:`.shield` and :mod:`.fastpath`. Everything here is control-path code; the
programs themselves run in the kernel. Numbers come from ``linux/bpf.h`` (x86_64 syscall).
"""

from __future__ import annotations

import ctypes
import os
import struct
from typing import Any

__all__ = ["Asm", "bpf", "map_create", "map_update", "map_delete", "map_lookup", "prog_load", "prog_test_run",
           "tc_attach", "tc_detach", "clsact_release"]

_libc = ctypes.CDLL(None, use_errno=True)
SYS_BPF = 321  # x86_64
BPF_MAP_CREATE, BPF_MAP_LOOKUP_ELEM, BPF_MAP_UPDATE_ELEM, BPF_MAP_DELETE_ELEM = 0, 1, 2, 3
BPF_PROG_LOAD, BPF_PROG_TEST_RUN = 5, 10
BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_PERCPU_ARRAY = 1, 6
BPF_PROG_TYPE_SOCKET_FILTER, BPF_PROG_TYPE_SCHED_CLS = 1, 3
TC_ACT_UNSPEC, TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT = -1, 0, 2, 7
SO_ATTACH_BPF = 50

# helpers (linux/bpf.h ___BPF_FUNC_MAPPER order)
HELPER_MAP_LOOKUP, HELPER_REDIRECT, HELPER_SKB_LOAD_BYTES = 1, 23, 26
HELPER_SKB_LOAD_BYTES_RELATIVE, HELPER_REDIRECT_PEER = 68, 155
BPF_HDR_START_MAC = 0

R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = range(11)
FP = R10
_INSN = struct.Struct("<BBhi")


def bpf(cmd: int, attr: bytes) -> int:
    buf = ctypes.create_string_buffer(attr, len(attr))
    r = _libc.syscall(SYS_BPF, cmd, buf, len(attr))
    if r < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf({cmd}): {os.strerror(err)}")
    return r


def _bpf_keep(cmd: int, attr: bytes, *keep: Any) -> tuple[int, ctypes.Array]:
    """bpf() with the attr buffer returned (for commands that write results into it)."""
    buf = ctypes.create_string_buffer(attr, len(attr))
    r = _libc.syscall(SYS_BPF, cmd, buf, len(attr))
    if r < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf({cmd}): {os.strerror(err)}")
    return r, buf


def map_create(kind: int, key_size: int, value_size: int, max_entries: int, name: bytes = b"") -> int:
    attr = struct.pack("IIIIIII16s", kind, key_size, value_size, max_entries, 0, 0, 0, name[:15])
    return bpf(BPF_MAP_CREATE, attr.ljust(72, b"\0"))


def map_update(fd: int, key: bytes, value: bytes) -> None:
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value, len(value))
    bpf(BPF_MAP_UPDATE_ELEM, struct.pack("IIQQQ", fd, 0, ctypes.addressof(k), ctypes.addressof(v), 0).ljust(32, b"\0"))


def map_delete(fd: int, key: bytes) -> bool:
    k = ctypes.create_string_buffer(key, len(key))
    try:
        bpf(BPF_MAP_DELETE_ELEM, struct.pack("IIQ", fd, 0, ctypes.addressof(k)).ljust(32, b"\0"))
        return True
    except FileNotFoundError:
        return False


def map_lookup(fd: int, key: bytes, value_size: int) -> bytes | None:
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value_size)
    try:
        bpf(
            BPF_MAP_LOOKUP_ELEM,
            struct.pack("IIQQQ", fd, 0, ctypes.addressof(k), ctypes.addressof(v), 0).ljust(32, b"\0"),
        )
    except FileNotFoundError:
        return None
    return v.raw


def prog_load(kind: int, insns: bytes, name: bytes) -> int:
    """Load a GPL program; a verifier refusal raises OSError with the log's tail."""
    insn_buf = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(1 << 16)
    attr = struct.pack("IIQQIIQII16s", kind, len(insns) // 8, ctypes.addressof(insn_buf),
                       ctypes.addressof(lic), 1, len(log), ctypes.addressof(log), 0, 0, name[:15])
    try:
        return bpf(BPF_PROG_LOAD, attr.ljust(128, b"\0"))
    except OSError as e:
        raise OSError(e.errno, f"{e.strerror}; verifier: {log.value.decode(errors='replace')[-800:]}") from None


def prog_test_run(prog_fd: int, data: bytes, ctx: bytes = b"", repeat: int = 1) -> int:
    """BPF_PROG_TEST_RUN: the program's return value on ``data`` (an Ethernet frame); a tc
    program's redirect is decided but not performed. ``ctx``: a struct __sk_buff prefix
    (ifindex, gso_size, ...)."""
    din = ctypes.create_string_buffer(data, len(data))
    dout = ctypes.create_string_buffer(len(data) + 256)
    cin = ctypes.create_string_buffer(ctx, max(1, len(ctx)))
    # struct: prog_fd, retval, data_size_in, data_size_out, data_in, data_out, repeat, duration,
    #         ctx_size_in, ctx_size_out, ctx_in, ctx_out, flags, cpu, batch_size
    attr = struct.pack("IIIIQQIIIIQQIII", prog_fd, 0, len(data), len(dout), ctypes.addressof(din),
                       ctypes.addressof(dout), repeat, 0, len(ctx), 0, ctypes.addressof(cin) if ctx else 0, 0,
                       0, 0, 0)
    _r, buf = _bpf_keep(BPF_PROG_TEST_RUN, attr.ljust(80, b"\0"))
    return struct.unpack_from("i", buf.raw, 4)[0]


# -- tc attachment (pyroute2) -------------------------------------------------------------------------
def tc_attach(ipr, ifindex: int, prog_fd: int, name: str, prio: int) -> bool:
    """Our direct-action filter on the clsact ingress hook (replacing one of ours a crashed run
    left: same name *and* priority, nothing else); returns whether we created the clsact qdisc.

    The caller has proven the device's identity through ``ipr`` (see :mod:`pymacvlan.identity`)."""
    tc_detach(ipr, ifindex, name, prio)
    try:
        ipr.tc("add", "clsact", ifindex)
        created = True
    except Exception:  # it exists already (someone else's filters may live there): never ours to remove
        created = False
    ipr.tc("add-filter", "bpf", ifindex, ":1", fd=prog_fd, name=name, parent="ffff:fff2",
           classid=1, direct_action=True, prio=prio)
    return created


def _filter_name(f) -> str | None:
    opts = f.get_attr("TCA_OPTIONS")
    return opts.get_attr("TCA_BPF_NAME") if opts is not None and f.get_attr("TCA_KIND") == "bpf" else None


def tc_detach(ipr, ifindex: int, name: str, prio: int | None = None) -> None:
    """Remove our filter from the ingress hook: a bpf filter whose name is exactly ``name`` (and
    at ``prio`` when given). Nothing else: another tool's filter, even one whose name contains
    ours, stays."""
    try:
        filters = ipr.get_filters(ifindex, parent="ffff:fff2")
    except Exception:
        return
    for f in filters:
        fprio = f["info"] >> 16
        if _filter_name(f) == name and (prio is None or fprio == prio):
            try:
                ipr.tc("del-filter", "bpf", ifindex, ":1", parent="ffff:fff2", prio=fprio)
            except Exception:
                pass


def clsact_release(ipr, ifindex: int) -> bool:
    """Delete the clsact qdisc on ``ifindex`` only if no filter at all is left on either of its
    hooks (ingress ffff:fff2, egress ffff:fff3); the caller deletes it only if it created it.
    Returns whether it was deleted."""
    try:
        for hook in ("ffff:fff2", "ffff:fff3"):
            if any(f.get_attr("TCA_KIND") for f in ipr.get_filters(ifindex, parent=hook)):
                return False
        ipr.tc("del", "clsact", ifindex)
        return True
    except Exception:
        return False


# -- the assembler ---------------------------------------------------------------------------------------
def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return _INSN.pack(code, dst | (src << 4), off, imm)


_JMP_IMM = {"jeq": 0x15, "jne": 0x55, "jset": 0x45, "jgt": 0x25}
_JMP_REG = {"jeq": 0x1D, "jne": 0x5D, "jset": 0x4D, "jgt": 0x2D}
_SIZE = {1: 0x10, 2: 0x08, 4: 0x00, 8: 0x18}


class Asm:
    """eBPF by hand, readable: named registers, labels, one method per instruction used.

    ``a.jmp("jeq", R0, 0, "miss")`` jumps to ``a.label("miss")``; :meth:`code` resolves
    offsets (ld_imm64 counts as two instructions)."""

    def __init__(self) -> None:
        self._seq: list[tuple[str, Any]] = []
        self._fresh = 0

    def fresh(self, prefix: str) -> str:
        """A label name not used yet (for code emitted more than once)."""
        self._fresh += 1
        return f"{prefix}.{self._fresh}"

    def _emit(self, b: bytes) -> Asm:
        self._seq.append(("i", b))
        return self

    # ALU64
    def mov(self, dst: int, src: int) -> Asm: return self._emit(insn(0xBF, dst, src))
    def movi(self, dst: int, imm: int) -> Asm: return self._emit(insn(0xB7, dst, 0, 0, imm))
    def addi(self, dst: int, imm: int) -> Asm: return self._emit(insn(0x07, dst, 0, 0, imm))
    def add(self, dst: int, src: int) -> Asm: return self._emit(insn(0x0F, dst, src))
    # memory: ldx dst = *(size *)(src + off); stx *(size *)(dst + off) = src; st *(size *)(dst + off) = imm
    def ldx(self, size: int, dst: int, src: int, off: int) -> Asm:
        return self._emit(insn(0x61 | _SIZE[size], dst, src, off))

    def stx(self, size: int, dst: int, off: int, src: int) -> Asm:
        return self._emit(insn(0x63 | _SIZE[size], dst, src, off))

    def st(self, size: int, dst: int, off: int, imm: int) -> Asm:
        return self._emit(insn(0x62 | _SIZE[size], dst, 0, off, imm))

    def ld_map(self, dst: int, map_fd: int) -> Asm: return self._emit(insn(0x18, dst, 1, 0, map_fd) + insn(0))
    def call(self, helper: int) -> Asm: return self._emit(insn(0x85, 0, 0, 0, helper))
    def exit(self) -> Asm: return self._emit(insn(0x95))

    def ret(self, value: int) -> Asm:
        return self.movi(R0, value).exit()

    def jmp(self, op: str, dst: int, imm: int, label: str, reg: bool = False) -> Asm:
        """if (dst OP imm) goto label; ``reg``: compare with register ``imm``."""
        self._seq.append(("j", (op, dst, imm, label, reg)))
        return self

    def ja(self, label: str) -> Asm:
        self._seq.append(("j", ("ja", 0, 0, label, False)))
        return self

    def label(self, name: str) -> Asm:
        self._seq.append(("l", name))
        return self

    def code(self) -> bytes:
        pos: dict[str, int] = {}
        at = 0
        for kind, v in self._seq:
            if kind == "l":
                if v in pos:
                    raise ValueError(f"label {v!r} defined twice")
                pos[v] = at
            else:
                at += len(v) // 8 if kind == "i" else 1
        out: list[bytes] = []
        at = 0
        for kind, v in self._seq:
            if kind == "i":
                out.append(v)
                at += len(v) // 8
            elif kind == "j":
                op, dst, imm, lab, reg = v
                off = pos[lab] - (at + 1)
                if op == "ja":
                    out.append(insn(0x05, 0, 0, off))
                elif reg:
                    out.append(insn(_JMP_REG[op], dst, imm, off))
                else:
                    out.append(insn(_JMP_IMM[op], dst, 0, off, imm))
                at += 1
        return b"".join(out)
