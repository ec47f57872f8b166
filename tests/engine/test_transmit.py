"""Spec §5: transmit from a child (macvlan_queue_xmit)."""

from pymacvlan.engine import WIRE
from pymacvlan.model import MacaddrMode
from pymacvlan.model import PacketType as P

from .conftest import BCAST, LM, build, frame, mac, names


def test_bridge_to_bridge_unicast_is_local(four):
    e = build("bridge", "bridge")
    got = e.xmit(e.children["A"], frame(mac(0x0B), mac(0x0A)))
    assert names(got) == {"B": P.HOST}
    assert e.children["A"].stats.tx_packets == 1


def test_bridge_to_other_modes_goes_to_the_wire(four):
    c = four.children["C"]
    for dst in (mac(0x0A), mac(0x0B), mac(0x0D), LM, mac(0x55)):
        assert names(four.xmit(c, frame(dst, c.mac))) == {WIRE: None}


def test_bridge_broadcast_floods_bridge_children_then_the_wire():
    e = build("bridge", "bridge", "vepa", "private")
    got = e.xmit(e.children["A"], frame(BCAST, mac(0x0A)))
    assert names(got) == {"B": P.BROADCAST, WIRE: None}


def test_non_bridge_modes_always_use_the_wire():
    for mode in ("private", "vepa", "source"):
        e = build(mode, mode)
        a = e.children["A"]
        assert names(e.xmit(a, frame(mac(0x0B), a.mac))) == {WIRE: None}


def test_local_unicast_goes_through_the_parents_receive_path():
    e = build("bridge", "bridge", "source")
    e.changelink("C", macaddr_op=MacaddrMode.ADD, macaddrs=[mac(0x0A)])
    got = e.xmit(e.children["A"], frame(mac(0x0B), mac(0x0A)))
    assert names(got) == {"B": P.HOST, "C": P.OTHERHOST}


def test_local_unicast_refused_by_a_down_parent_still_counts_success():
    e = build("bridge", "bridge")
    e.set_parent_up(False)
    assert e.xmit(e.children["A"], frame(mac(0x0B), mac(0x0A))) == []
    assert e.lower.rx_dropped == 1
    assert e.children["A"].stats.tx_packets == 1


def test_wire_transmit_with_a_down_parent_is_tx_dropped():
    e = build("vepa")
    e.set_parent_up(False)
    assert e.xmit(e.children["A"], frame(mac(0x99), mac(0x0A))) == []
    assert e.children["A"].stats.tx_dropped == 1


def test_local_flood_checks_the_receivers_mtu():
    e = build("bridge", "bridge")
    e.set_mtu("B", 100)
    got = e.xmit(e.children["A"], frame(BCAST, mac(0x0A), bytes(200)))
    assert "B" not in names(got)
    assert e.children["B"].stats.rx_errors == 1


def test_gso_frames_are_exempt_from_the_forwarding_mtu_checks():
    e = build("bridge", "bridge")
    big = frame(mac(0x0B), mac(0x0A), bytes(64000))
    assert e.xmit(e.children["A"], big) == [] and e.lower.rx_dropped == 1
    assert names(e.xmit(e.children["A"], big, gso=True)) == {"B": P.HOST}
    flood = frame(BCAST, mac(0x0A), bytes(64000))
    assert "B" in names(e.xmit(e.children["A"], flood, gso=True))
