"""The fast path's map rules derived from the engine's port (pure: no kernel needed)."""

from __future__ import annotations

from pymacvlan.backends.userspace.fastpath import (
    BRIDGE,
    FAST_TARGET,
    FROM_WIRE,
    FWD_OK,
    LOCAL_BRIDGE,
    SRC_ANY,
    SRC_LISTED,
    WIRE_OK,
    WORLD_OK,
    FastChild,
    Rules,
    fastpath_rules,
)
from pymacvlan.engine import Engine
from pymacvlan.model import MacaddrMode, Mode

PARENT = 7
A, B, W = bytes.fromhex("02000000000a"), bytes.fromhex("02000000000b"), bytes.fromhex("0200000000ee")
SLOT_A, SLOT_B = 3, 4
OK = WORLD_OK | FWD_OK


def _engine(*children: tuple[str, Mode, bytes]) -> Engine:
    e = Engine("p", mac=bytes.fromhex("020000000001"))
    for name, mode, mac in children:
        e.add(name, "macvlan", mode, 0, mac, None)
        e.set_up(name, True)
    return e


FC = {"a": FastChild(11, SLOT_A, True), "b": FastChild(12, SLOT_B, True)}


def test_rules_for_two_bridge_children() -> None:
    e = _engine(("a", Mode.BRIDGE, A), ("b", Mode.BRIDGE, B))
    r = fastpath_rules(e, PARENT, 1518, FC)
    assert r.ports == {PARENT: (0, FROM_WIRE, 0, 0), 11: (SLOT_A, BRIDGE | OK, PARENT, 1518),
                       12: (SLOT_B, BRIDGE | OK, PARENT, 1518)}
    assert r.macs == {A: (11, SLOT_A, LOCAL_BRIDGE | FAST_TARGET | WIRE_OK),
                      B: (12, SLOT_B, LOCAL_BRIDGE | FAST_TARGET | WIRE_OK)}


def test_rules_follow_down_mode_and_parent_state() -> None:
    e = _engine(("a", Mode.BRIDGE, A), ("b", Mode.VEPA, B))
    e.set_up("a", False)
    r = fastpath_rules(e, PARENT, 1518, FC)
    assert A not in r.macs  # down: not in the MAC table, frames for it are the engine's
    assert r.macs[B] == (12, SLOT_B, FAST_TARGET | WIRE_OK)
    assert r.ports[12][1] == OK  # a vepa sender: no BRIDGE
    e.set_wire_carrier(False)
    assert fastpath_rules(e, PARENT, 1518, FC).ports[12][1] == FWD_OK
    e.set_parent_up(False)
    assert fastpath_rules(e, PARENT, 1518, FC).ports[12][1] == 0


def test_rules_leave_source_passthru_and_non_veth_to_the_engine() -> None:
    e = _engine(("a", Mode.SOURCE, A), ("b", Mode.BRIDGE, B))
    e.changelink("a", None, None, None, None, MacaddrMode.ADD, [W])
    r = fastpath_rules(e, PARENT, 1518, {"a": FC["a"]})
    assert r.macs[A][2] == FAST_TARGET  # source mode: never WIRE_OK
    assert r.macs[B] == (0, 0, LOCAL_BRIDGE)  # not a veth child: no FAST_TARGET
    assert r.macs[W][2] == SRC_LISTED
    assert all(flags & SRC_ANY for _slot, flags, _p, _m in r.ports.values())  # every ingress looks senders up
    p = _engine(("a", Mode.PASSTHRU, None))
    assert not fastpath_rules(p, PARENT, 1518, {"a": FC["a"]}).macs[p.children["a"].mac][2] & WIRE_OK


def test_rules_are_empty_without_a_port_or_parent() -> None:
    e = Engine("p", mac=bytes.fromhex("020000000001"))
    assert fastpath_rules(e, PARENT, 1518, {}) == Rules({}, {})
    e2 = _engine(("a", Mode.BRIDGE, A))
    assert fastpath_rules(e2, None, 1518, FC) == Rules({}, {})
