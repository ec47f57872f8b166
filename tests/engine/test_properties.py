"""Properties over random topologies, control sequences and frames (issue 2, item 6)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pymacvlan.engine import WIRE, Engine
from pymacvlan.engine.device import Lower
from pymacvlan.model import KernelError, MacaddrMode, Mode

NAMES = ["A", "B", "C", "D"]
MACS = [bytes([2, 0, 0, 0, 0, i]) for i in (0x01, 0x0A, 0x0B, 0x0C, 0x0D, 0xEE, 0x77)]
GROUPS = [b"\xff" * 6, bytes.fromhex("01005e000001"), bytes.fromhex("01005e0a0b0c"),
          bytes.fromhex("333300000001"), bytes.fromhex("0180c2000001")]
mac_st = st.sampled_from(MACS)
dst_st = st.sampled_from(MACS + GROUPS)
mode_st = st.sampled_from(list(Mode))

op_st = st.one_of(
    st.tuples(st.just("add"), st.sampled_from(NAMES), mode_st, mac_st, st.sampled_from(["macvlan", "macvtap"])),
    st.tuples(st.just("up"), st.sampled_from(NAMES), st.booleans()),
    st.tuples(st.just("mac"), st.sampled_from(NAMES), mac_st),
    st.tuples(st.just("mode"), st.sampled_from(NAMES), mode_st),
    st.tuples(st.just("flags"), st.sampled_from(NAMES), st.integers(0, 3)),
    st.tuples(st.just("src"), st.sampled_from(NAMES), mac_st),
    st.tuples(st.just("join"), st.sampled_from(NAMES), st.sampled_from(GROUPS[1:])),
    st.tuples(st.just("allmulti"), st.sampled_from(NAMES), st.booleans()),
    st.tuples(st.just("bc"), st.sampled_from(NAMES), st.integers(0, 3), st.integers(-1, 2)),
    st.tuples(st.just("del"), st.sampled_from(NAMES)),
    st.tuples(st.just("parent"), st.booleans(), st.booleans()),
    st.tuples(st.just("reader"), st.sampled_from(NAMES)),
)
frame_st = st.tuples(st.sampled_from(["wire", "A", "B", "C", "D"]), dst_st, mac_st,
                     st.sampled_from([0x88B5, 0x8808, 0x0806]), st.binary(max_size=40))


def apply(e: Engine, op) -> None:
    kind, *args = op
    try:
        if kind == "add":
            e.add(args[0], args[3], mode=args[1], mac=args[2])
        elif kind == "up":
            e.set_up(args[0], args[1])
        elif kind == "mac":
            e.set_mac(args[0], args[1])
        elif kind == "mode":
            e.changelink(args[0], mode=args[1])
        elif kind == "flags":
            e.changelink(args[0], flags=args[1])
        elif kind == "src":
            e.changelink(args[0], macaddr_op=MacaddrMode.ADD, macaddrs=[args[1]])
        elif kind == "join":
            e.join(args[0], args[1])
        elif kind == "allmulti":
            e.set_allmulticast(args[0], args[1])
        elif kind == "bc":
            e.changelink(args[0], bcqueuelen=args[1], bclim=args[2])
        elif kind == "del":
            e.delete(args[0])
        elif kind == "parent":
            e.set_parent_up(args[0])
            e.set_wire_carrier(args[1])
        elif kind == "reader":
            e.attach_reader(args[0])
    except KernelError:
        pass


def run_frame(e: Engine, f, hairpin: bool):
    """Inject one frame; returns (deliveries of the first leg, all deliveries)."""
    origin, dst, src, etype, payload = f
    frame = dst + src + etype.to_bytes(2, "big") + payload
    if origin == "wire":
        first = e.receive(frame)
    else:
        vlan = e.children.get(origin)
        if vlan is None or not vlan.up:
            return [], [], 0
        first = e.xmit(vlan, frame)
    allv = list(first)
    pending = [d[2] for d in first if d[0] is WIRE] if hairpin else []
    hops = 0
    while pending or e.bc_pending:
        hops += 1
        assert hops < 50, "a frame must not loop"
        while pending:
            got = e.receive(pending.pop())
            allv += got
        got = e.process_bc_queue()
        allv += got
    return first, allv, 1 if origin != "wire" else 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op_st, max_size=25), frames=st.lists(frame_st, min_size=1, max_size=8),
       hairpin=st.booleans(), newer=st.booleans())
def test_random_topologies(ops, frames, hairpin, newer):
    e = Engine("eth0", MACS[0], bridge_mc_to_bridge=newer)
    for op in ops:
        apply(e, op)
    delivered = 0
    xmits = 0
    tx_before = sum(v.stats.tx_packets + v.stats.tx_dropped for v in e.children.values())
    rx_before = sum(v.stats.rx_packets for v in e.children.values())
    ring_before = e.drops["tap_ring_full"]
    for f in frames:
        origin, dst = f[0], f[1]
        first, allv, nx = run_frame(e, f, hairpin)
        xmits += nx
        children = [d for d in allv if d[0] is not WIRE and not isinstance(d[0], Lower)]
        delivered += len(children)
        if not dst[0] & 1 and origin == "wire":
            # a unicast reaches at most one child besides source-mode copies
            non_source = [d for d in first if d[0] is not WIRE and not isinstance(d[0], Lower)
                          and d[0].mode != Mode.SOURCE]
            assert len(non_source) <= 1
        if origin != "wire" and not hairpin:
            # without a hairpin no child's frame reaches the parent's stack
            assert not any(isinstance(d[0], Lower) for d in allv)
    # counters add up: every delivery to a child was counted, and only those (ring drops
    # are counted as received, then as rx_errors)
    rx_after = sum(v.stats.rx_packets for v in e.children.values())
    assert rx_after - rx_before == delivered + (e.drops["tap_ring_full"] - ring_before)
    tx_after = sum(v.stats.tx_packets + v.stats.tx_dropped for v in e.children.values())
    assert tx_after - tx_before == xmits


@settings(max_examples=200, deadline=None)
@given(ops=st.lists(op_st, max_size=30))
def test_control_invariants(ops):
    e = Engine("eth0", MACS[0])
    for op in ops:
        apply(e, op)
        port = e.port
        if port is None:
            assert not e.children
            continue
        up = [v for v in e.children.values() if v.up]
        # the MAC table holds exactly the up children, each under its own MAC
        assert sorted(port.vlan_hash.values(), key=id) == sorted(up, key=id)
        assert all(port.vlan_hash[v.mac] is v for v in up)
        # no two up children share a MAC, and none shares the parent's outside passthru
        assert len({v.mac for v in up}) == len(up)
        if not port.passthru:
            assert MACS[0] not in port.vlan_hash or e.lower.mac != MACS[0]
        assert port.bc_queue_len_used == max(v.bc_queue_len_req for v in e.children.values())
        assert all(v.mtu <= e.lower.mtu for v in e.children.values())
        assert sum(v.macaddr_count for v in e.children.values()) == sum(len(x) for x in port.source_hash.values())
