"""The fast path's programs, branch by branch, with BPF_PROG_TEST_RUN on crafted frames; and
the map rules derived from the engine.

BPF_PROG_TEST_RUN runs a program on a frame in the calling namespace without sending
anything: the tc program's verdict (TC_ACT_REDIRECT, TC_ACT_UNSPEC, or TC_ACT_SHOT for a child's miss) and its per-CPU
counters are observed, and the socket filter (the slow path's) must drop exactly what the
tc program redirects. The frame "arrives" on lo (ifindex 1), which each test makes the
parent or a child's outer end through the ``ports`` map. Needs CAP_BPF (root).
"""

from __future__ import annotations

import os
import struct

import pytest

from tests.ci import live_marks  # noqa: E402

pytestmark = live_marks(None if os.geteuid() == 0 else "BPF_PROG_TEST_RUN needs root (CAP_BPF)")

from pymacvlan.backends.userspace.bpf import TC_ACT_REDIRECT, TC_ACT_SHOT, TC_ACT_UNSPEC, prog_test_run  # noqa: E402
from pymacvlan.backends.userspace.fastpath import (  # noqa: E402
    BRIDGE,
    FAST_TARGET,
    FROM_WIRE,
    FWD_OK,
    KEEP_ALL,
    LOCAL_BRIDGE,
    SRC_ANY,
    SRC_LISTED,
    WIRE_OK,
    WORLD_OK,
    FastPath,
    Rules,
)

LO = 1
PARENT = 7  # any ifindex: what the tc program redirects to is not observable in a test run
A, B, W = bytes.fromhex("02000000000a"), bytes.fromhex("02000000000b"), bytes.fromhex("0200000000ee")
SLOT_A, SLOT_B = 3, 4


def frame(dst: bytes, src: bytes, ethertype: int = 0x0800, size: int = 64) -> bytes:
    f = dst + src + ethertype.to_bytes(2, "big")
    return f + bytes(size - len(f))


def skb_ctx(gso_size: int = 0) -> bytes:
    """A struct __sk_buff prefix: ifindex (offset 40) = lo, gso_size (176)."""
    ctx = bytearray(192)
    struct.pack_into("I", ctx, 40, LO)
    struct.pack_into("I", ctx, 176, gso_size)
    struct.pack_into("I", ctx, 164, 1 if gso_size else 0)  # gso_segs
    return bytes(ctx)


@pytest.fixture
def fp():
    f = FastPath()
    f.new_slot()  # slots 1, 2 unused: the tests' slots are fixed
    f.new_slot()
    assert f.new_slot() == SLOT_A and f.new_slot() == SLOT_B
    yield f
    f.close()


def run(fp: FastPath, data: bytes, gso_size: int = 0) -> int:
    """The tc verdict; also checks the socket filter agrees (0 exactly when redirected)."""
    verdict = prog_test_run(fp.tc_fd, data, skb_ctx(gso_size))
    kept = prog_test_run(fp.sf_fd, data, skb_ctx(gso_size))
    assert (kept == 0) == (verdict == TC_ACT_REDIRECT), (verdict, kept)
    if kept:
        assert kept == KEEP_ALL
    return verdict


def as_wire(fp: FastPath, macs: dict) -> None:
    fp.sync(Rules({LO: (0, FROM_WIRE, 0, 0)}, macs))


def as_child(fp: FastPath, flags: int, macs: dict, max_len: int = 1518) -> None:
    fp.sync(Rules({LO: (SLOT_A, flags, PARENT, max_len)}, macs))


def counted(fp: FastPath, slot: int) -> tuple[int, int, int, int]:
    return fp.read(slot)


# -- no entry for the ingress device ----------------------------------------------------------------
def test_an_unknown_ingress_device_goes_to_the_slow_path(fp) -> None:
    fp.sync(Rules({99: (0, FROM_WIRE, 0, 0)}, {B: (21, SLOT_B, WIRE_OK | FAST_TARGET)}))
    assert run(fp, frame(B, W)) == TC_ACT_UNSPEC


# -- from the wire ---------------------------------------------------------------------------------------
def test_wire_to_an_up_child_is_redirected_and_counted(fp) -> None:
    as_wire(fp, {B: (21, SLOT_B, WIRE_OK | FAST_TARGET)})
    assert run(fp, frame(B, W, size=100)) == TC_ACT_REDIRECT
    assert counted(fp, SLOT_B) == (1, 100, 0, 0)
    assert run(fp, frame(B, W, size=60)) == TC_ACT_REDIRECT
    assert counted(fp, SLOT_B) == (2, 160, 0, 0)


@pytest.mark.parametrize("dst", [b"\xff" * 6, bytes.fromhex("01005e000001"), bytes.fromhex("333300000001")])
def test_wire_broadcast_and_multicast_go_to_the_slow_path(fp, dst: bytes) -> None:
    as_wire(fp, {dst: (21, SLOT_B, WIRE_OK | FAST_TARGET)})  # even a (bogus) entry for it
    assert run(fp, frame(dst, W)) == TC_ACT_UNSPEC


def test_wire_unknown_destination_goes_to_the_slow_path(fp) -> None:
    as_wire(fp, {B: (21, SLOT_B, WIRE_OK | FAST_TARGET)})
    assert run(fp, frame(A, W)) == TC_ACT_UNSPEC
    assert counted(fp, SLOT_B) == (0, 0, 0, 0)


@pytest.mark.parametrize("flags", [0, LOCAL_BRIDGE | FAST_TARGET, SRC_LISTED])
def test_wire_to_a_child_not_marked_wire_ok_goes_to_the_slow_path(fp, flags: int) -> None:
    as_wire(fp, {B: (21, SLOT_B, flags)})
    assert run(fp, frame(B, W)) == TC_ACT_UNSPEC


def test_a_sender_a_source_child_lists_goes_to_the_slow_path(fp) -> None:
    macs = {B: (21, SLOT_B, WIRE_OK | FAST_TARGET), W: (0, 0, SRC_LISTED)}
    fp.sync(Rules({LO: (0, FROM_WIRE | SRC_ANY, 0, 0)}, macs))
    assert run(fp, frame(B, W)) == TC_ACT_UNSPEC
    fp.sync(Rules({LO: (0, FROM_WIRE | SRC_ANY, 0, 0)}, {**macs, W: (0, 0, 0)}))
    assert run(fp, frame(B, W)) == TC_ACT_REDIRECT
    # the sender is looked up only while some list exists (the rules set SRC_ANY with any list)
    fp.sync(Rules({LO: (0, FROM_WIRE, 0, 0)}, macs))
    assert run(fp, frame(B, W)) == TC_ACT_REDIRECT


@pytest.mark.parametrize("ethertype", [0x8100, 0x88A8])
def test_in_band_vlan_tags_go_to_the_slow_path(fp, ethertype: int) -> None:
    as_wire(fp, {B: (21, SLOT_B, WIRE_OK | FAST_TARGET)})
    assert run(fp, frame(B, W, ethertype)) == TC_ACT_UNSPEC
    assert run(fp, frame(B, W, 0x86DD)) == TC_ACT_REDIRECT


# -- from a child ---------------------------------------------------------------------------------------------
#: a child's miss ends at its outer end's tc ingress: the slow path's packet socket took its copy
#: before (taps run first), and the outer end's stack must not see it (the parent namespace's)
CHILD_SLOW = TC_ACT_SHOT

OK = WORLD_OK | FWD_OK


def test_bridge_child_to_a_bridge_child_is_local_and_counted_on_both(fp) -> None:
    as_child(fp, BRIDGE | OK, {B: (21, SLOT_B, LOCAL_BRIDGE | FAST_TARGET | WIRE_OK)})
    assert run(fp, frame(B, A, size=90)) == TC_ACT_REDIRECT
    assert counted(fp, SLOT_A) == (0, 0, 1, 90)
    assert counted(fp, SLOT_B) == (1, 90, 0, 0)


def test_bridge_child_to_a_bridge_target_the_kernel_cannot_reach_is_slow(fp) -> None:
    as_child(fp, BRIDGE | OK, {B: (0, 0, LOCAL_BRIDGE)})  # a macvtap, a TAP, a same-namespace veth
    assert run(fp, frame(B, A)) == CHILD_SLOW


def test_bridge_child_to_a_bridge_child_while_the_parent_is_down_is_slow(fp) -> None:
    as_child(fp, BRIDGE | WORLD_OK, {B: (21, SLOT_B, LOCAL_BRIDGE | FAST_TARGET)})
    assert run(fp, frame(B, A)) == CHILD_SLOW


@pytest.mark.parametrize("dst_flags", [None, WIRE_OK | FAST_TARGET])
def test_bridge_child_to_an_unknown_or_non_bridge_mac_goes_to_the_wire(fp, dst_flags) -> None:
    macs = {} if dst_flags is None else {B: (21, SLOT_B, dst_flags)}
    as_child(fp, BRIDGE | OK, macs)
    assert run(fp, frame(B, A, size=70)) == TC_ACT_REDIRECT
    assert counted(fp, SLOT_A) == (0, 0, 1, 70)
    assert counted(fp, SLOT_B) == (0, 0, 0, 0)


def test_a_vepa_child_sends_even_bridge_neighbours_to_the_wire(fp) -> None:
    as_child(fp, OK, {B: (21, SLOT_B, LOCAL_BRIDGE | FAST_TARGET | WIRE_OK)})
    assert run(fp, frame(B, A)) == TC_ACT_REDIRECT
    assert counted(fp, SLOT_B) == (0, 0, 0, 0)  # not delivered locally
    assert counted(fp, SLOT_A)[2] == 1


def test_child_to_the_wire_without_carrier_is_slow(fp) -> None:
    as_child(fp, BRIDGE | FWD_OK, {})
    assert run(fp, frame(B, A)) == CHILD_SLOW


def test_child_multicast_is_slow(fp) -> None:
    as_child(fp, BRIDGE | OK, {})
    assert run(fp, frame(b"\xff" * 6, A)) == CHILD_SLOW


def test_child_frames_over_the_limit_are_slow_unless_gso(fp) -> None:
    as_child(fp, BRIDGE | OK, {}, max_len=100)
    assert run(fp, frame(B, A, size=100)) == TC_ACT_REDIRECT
    # a test run hands a socket filter the frame without its Ethernet header (skb->len 14
    # shorter; a packet socket's filter gets it whole), so the boundary is checked on tc alone
    assert prog_test_run(fp.tc_fd, frame(B, A, size=101), skb_ctx()) == CHILD_SLOW
    assert run(fp, frame(B, A, size=115)) == CHILD_SLOW
    assert run(fp, frame(B, A, size=1000), gso_size=500) == TC_ACT_REDIRECT


def test_child_sender_listed_by_a_source_child_is_slow(fp) -> None:
    as_child(fp, BRIDGE | OK | SRC_ANY, {A: (11, SLOT_A, SRC_LISTED)})
    assert run(fp, frame(B, A)) == CHILD_SLOW


def test_counters_are_zeroed_when_a_slot_is_reused(fp) -> None:
    as_wire(fp, {B: (21, SLOT_B, WIRE_OK | FAST_TARGET)})
    run(fp, frame(B, W))
    fp.free_slot(SLOT_B)
    assert fp.new_slot() == SLOT_B
    assert counted(fp, SLOT_B) == (0, 0, 0, 0)
