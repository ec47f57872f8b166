"""Spec §6: lifecycle and control plane, with the kernel's errors."""

import pytest

from pymacvlan.engine import Engine
from pymacvlan.model import KernelError, MacaddrMode, MacvlanFlag, Mode

from .conftest import LM, build, mac


def err(fn, *a, **kw) -> str:
    with pytest.raises(KernelError) as e:
        fn(*a, **kw)
    return e.value.errno_name


def test_default_mode_is_vepa():
    e = build()
    assert e.add("X").mode == Mode.VEPA


def test_mac_conflicts_are_checked_at_up_not_at_creation():
    e = build("vepa")
    e.add("B", mac=mac(0x0A))
    assert err(e.set_up, "B", True) == "EADDRINUSE"
    assert err(e.set_mac, "A", LM) == "EADDRINUSE"
    e.set_up("A", False)
    e.set_up("B", True)  # A is down now: B may take the address


def test_two_down_children_may_share_a_mac():
    e = build()
    e.add("X", mac=mac(5))
    e.add("Y", mac=mac(5))
    assert e.child("X").mac == e.child("Y").mac == mac(5)
    assert not e.child("X").up and not e.child("Y").up
    e.set_up("X", True)  # one of them may come up with it; then the other may not
    assert err(e.set_up, "Y", True) == "EADDRINUSE"


def test_a_down_child_cannot_take_an_up_childs_mac():
    e = build("vepa", "vepa")
    e.set_up("B", False)
    assert err(e.set_mac, "B", mac(0x0A)) == "EADDRINUSE"


def test_bad_addresses():
    e = build("vepa")
    assert err(e.set_mac, "A", bytes.fromhex("010000000001")) == "EADDRNOTAVAIL"
    assert err(e.add, "X", mac=b"\x00" * 6) == "EADDRNOTAVAIL"


def test_passthru_rules():
    e = build("passthru")
    assert err(e.add, "B") == "EINVAL"
    e2 = build("vepa")
    assert err(e2.add, "P", mode=Mode.PASSTHRU) == "EINVAL"
    e3 = build()
    p = e3.add("P", mode=Mode.PASSTHRU, mac=mac(0x42))
    assert p.mac == LM
    e3.set_up("P", True)
    e3.set_mac("P", mac(0x42))
    assert e3.lower.mac == mac(0x42) and p.mac == mac(0x42)
    e3.delete("P")
    assert e3.lower.mac == LM


def test_admin_change_of_the_parent_mac_moves_perm_addr():
    e = build("passthru")
    e.set_parent_mac(mac(0x43))
    assert e.children["A"].mac == mac(0x43)
    e.delete("A")
    assert e.lower.mac == mac(0x43)


def test_passthru_promisc_and_nopromisc_toggle_even_while_down():
    e = build("passthru")
    assert e.lower.promiscuity == 1
    e.set_up("A", False)
    assert e.lower.promiscuity == 0
    e.changelink("A", flags=int(MacvlanFlag.NOPROMISC))
    assert e.lower.promiscuity == 4294967295  # an unsigned int: the imbalance wraps (seen on 6.18)
    assert e.port.compute_port_filters() is None and e.port.mc_filter == (1 << 256) - 1


def test_mtu_rules():
    e = build("vepa")
    assert err(e.add, "X", mtu=1600) == "EINVAL"
    assert err(e.set_mtu, "A", 1501) == "EINVAL"
    assert err(e.set_mtu, "A", 67) == "EINVAL"
    e.set_parent_mtu(1400)
    assert e.children["A"].mtu == 1400
    e.set_parent_mtu(1500)
    assert e.children["A"].mtu == 1400


def test_mode_changes():
    e = build("vepa", "source")
    assert err(e.changelink, "A", mode=Mode.PASSTHRU) == "EINVAL"
    e.changelink("B", macaddr_op=MacaddrMode.ADD, macaddrs=[mac(0x50)])
    assert e.children["B"].macaddr_count == 1
    e.changelink("B", mode=Mode.BRIDGE)
    assert e.children["B"].macaddr_count == 0
    assert err(e.changelink, "A", macaddr_op=MacaddrMode.ADD, macaddrs=[mac(0x50)]) == "EINVAL"


def test_changelink_applies_earlier_steps_before_failing():
    e = build("vepa")
    assert err(e.changelink, "A", bcqueuelen=7, macaddr_op=MacaddrMode.ADD, macaddrs=[mac(1)]) == "EINVAL"
    assert e.children["A"].bc_queue_len_req == 7


def test_source_list_ops():
    e = build("source", up=False)
    a = e.children["A"]
    e.changelink("A", macaddr_op=MacaddrMode.ADD, macaddrs=[mac(1)])
    e.changelink("A", macaddr_op=MacaddrMode.ADD, macaddrs=[mac(1)])
    assert a.macaddr_count == 1
    e.changelink("A", macaddr_op=MacaddrMode.DEL, macaddrs=[mac(9)])  # absent: silent success
    e.changelink("A", macaddr_op=MacaddrMode.SET, macaddrs=[mac(2), mac(3)])
    assert sorted(e.port.source_dump(a)) == [mac(2), mac(3)]
    e.changelink("A", macaddr_op=MacaddrMode.FLUSH)
    assert a.macaddr_count == 0


def test_deleting_the_parent_deletes_the_children():
    e = build("vepa", "bridge")
    e.delete_parent()
    assert e.children == {}
    assert err(e.add, "X") == "ENODEV"


def test_carrier_follows_the_parent_admin_state_stays():
    e = build("vepa")
    a = e.children["A"]
    e.set_wire_carrier(False)
    assert a.up and not a.carrier
    e.set_wire_carrier(True)
    e.set_parent_up(False)
    assert a.up and not a.carrier


def test_promisc_and_allmulti_counts_follow_children():
    e = build("vepa", unicast_filter=True)
    e.set_promisc("A", True)
    e.set_allmulticast("A", True)
    assert (e.lower.promiscuity, e.lower.allmulti) == (1, 1)
    e.set_up("A", False)
    assert (e.lower.promiscuity, e.lower.allmulti) == (0, 0)
    e.set_up("A", True)
    assert (e.lower.promiscuity, e.lower.allmulti) == (1, 1)


def test_leave_a_group_not_joined_is_enoent():
    e = build("vepa")
    assert err(e.leave, "A", bytes.fromhex("01005e000001")) == "ENOENT"


def test_unknown_child_is_enodev():
    assert err(build().set_up, "nope", True) == "ENODEV"


def test_child_macs_come_from_os_entropy_unless_seeded() -> None:
    """eth_hw_addr_random(): two engines made alike hand out different MACs; a seed (scenarios,
    the sim's journal) makes them reproducible."""
    def first_mac(seed):
        e = Engine("eth0", bytes.fromhex("020000000001"), seed=seed)
        return e.add("m0", mode=Mode.BRIDGE).mac

    a, b = first_mac(None), first_mac(None)
    assert a != b
    for m in (a, b):
        assert m[0] & 0x03 == 0x02  # locally administered, unicast
    assert first_mac(7) == first_mac(7)
