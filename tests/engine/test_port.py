"""Spec §1: the port's tables, visiting order and bc-queue length."""

from pymacvlan.engine.hashes import mac_hash
from pymacvlan.model import Mode

from .conftest import build, mac


def test_flood_order_is_bucket_then_most_recently_opened():
    e = build("vepa", "vepa", "vepa", "vepa", "vepa")
    order = [v.name for v in e.port.flood_order()]
    expected = sorted(e.children.values(), key=lambda v: mac_hash(v.mac))
    assert order == [v.name for v in expected]


def test_same_bucket_newest_first():
    e = build()
    # find two MACs in the same bucket
    seen = {}
    pair = None
    for i in range(1, 5000):
        m = bytes([2, 0, 0, 0, i >> 8, i & 0xFF])
        b = mac_hash(m)
        if b in seen:
            pair = (seen[b], m)
            break
        seen[b] = m
    e.add("old", mode=Mode.VEPA, mac=pair[0])
    e.add("new", mode=Mode.VEPA, mac=pair[1])
    e.set_up("old", True)
    e.set_up("new", True)
    assert [v.name for v in e.port.flood_order()] == ["new", "old"]
    e.set_up("old", False)
    e.set_up("old", True)
    assert [v.name for v in e.port.flood_order()] == ["old", "new"]


def test_only_up_children_are_hashed():
    e = build("bridge", "bridge", up=False)
    assert e.port.vlan_hash == {}
    e.set_up("A", True)
    assert list(e.port.vlan_hash.values()) == [e.children["A"]]


def test_used_bcqueuelen_is_the_largest_request():
    e = build("vepa", "vepa")
    assert e.port.bc_queue_len_used == 1000
    e.changelink("A", bcqueuelen=5000)
    assert e.port.bc_queue_len_used == 5000
    e.delete("A")
    assert e.port.bc_queue_len_used == 1000
    e.changelink("B", bcqueuelen=0)
    assert e.port.bc_queue_len_used == 0


def test_source_dump_order_bucket_then_newest():
    e = build("source", up=False)
    macs = [mac(0x30 + i) for i in range(6)]
    e.changelink("A", macaddr_op=3, macaddrs=macs)
    dump = e.port.source_dump(e.children["A"])
    assert sorted(dump) == sorted(macs)
    assert [mac_hash(m) for m in dump] == sorted(mac_hash(m) for m in dump)


def test_port_goes_with_the_last_child():
    e = build("vepa")
    e.delete("A")
    assert e.port is None
