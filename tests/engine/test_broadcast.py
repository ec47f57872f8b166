"""Spec §4: flood masks by origin, filters, the 6.18 and 2026 rules."""

from pymacvlan.model import PacketType as P

from .conftest import BCAST, STATION, build, flood_all, frame, mac, names

G = bytes.fromhex("01005e0a0b0c")


def test_reflected_vepa_broadcast_reaches_vepa_and_bridge_not_sender_nor_private():
    e = build("vepa", "bridge", "vepa", "private")
    got = flood_all(e, e.receive(frame(BCAST, mac(0x0A))))
    assert names(got) == {"L": P.BROADCAST, "B": P.BROADCAST, "C": P.BROADCAST}


def test_reflected_bridge_broadcast_618_vs_2026():
    old = build("bridge", "bridge", "vepa", "private")
    assert names(flood_all(old, old.receive(frame(BCAST, mac(0x0A))))) == {"L": P.BROADCAST, "C": P.BROADCAST}
    new = build("bridge", "bridge", "vepa", "private", bridge_mc_to_bridge=True)
    assert set(names(flood_all(new, new.receive(frame(BCAST, mac(0x0A)))))) == {"L", "A", "B", "C"}


def test_joined_group_sync_when_one_child_deferred_when_two():
    e = build("vepa", "vepa", "vepa", unicast_filter=True)
    e.join("B", G)
    got = e.receive(frame(G, STATION))
    assert not e.bc_pending and names(got) == {"B": P.MULTICAST, "L": P.MULTICAST}
    e.join("C", G)
    got = e.receive(frame(G, STATION))
    assert e.bc_pending and names(got) == {"L": P.MULTICAST}
    assert set(names(e.process_bc_queue())) == {"B", "C"}


def test_a_group_nobody_joined_reaches_only_the_parent_with_a_unicast_filter():
    e = build("vepa", "vepa", unicast_filter=True)
    assert names(flood_all(e, e.receive(frame(bytes.fromhex("01005e7f0000"), STATION)))) == {"L": P.MULTICAST}


def test_veth_parent_goes_promiscuous_and_port_filters_open_up():
    e = build("vepa")
    assert e.lower.promiscuity == 1 and e.lower.uc_promisc
    assert e.port.mc_filter == (1 << 256) - 1
    e.set_up("A", False)
    assert e.lower.promiscuity == 0
    assert e.port.mc_filter == (1 << 256) - 1  # stale: stop does not recompute


def test_allmulti_child_gets_every_group_and_raises_parent_allmulti():
    e = build("vepa", "vepa", unicast_filter=True)
    e.set_allmulticast("A", True)
    assert e.lower.allmulti == 1
    got = flood_all(e, e.receive(frame(bytes.fromhex("01005e7f0001"), STATION)))
    assert "A" in names(got)


def test_stack_groups_are_joined_by_every_up_child():
    e = build("vepa", "vepa", unicast_filter=True)
    got = flood_all(e, e.receive(frame(bytes.fromhex("01005e000001"), STATION)))
    assert set(names(got)) == {"L", "A", "B"}
