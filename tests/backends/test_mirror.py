"""The kernel trace's mirror without a kernel: netlink views in, scenario steps out, applied to
the engine; the journal is a valid scenario that rebuilds the same state (any user). The live
side is tests/backends/test_kernel_trace.py."""

from __future__ import annotations

from pymacvlan.backends.kernel import mirror as mirror_mod
from pymacvlan.backends.kernel.mirror import Mirror, Where
from pymacvlan.backends.sim import Simulation
from pymacvlan.scenario import load_scenario

P = "02:00:00:00:00:01"


def view(index: int, mac: str, mode: str = "bridge", **kw) -> dict:
    v = {"index": index, "ifname": f"if{index}", "mac": mac, "mtu": 1500, "up": True, "promisc": False,
         "allmulticast": False, "carrier": True, "promiscuity": 0, "link": 2, "link_netnsid": 0,
         "kind": "macvlan", "mode": mode, "flags": [], "bcqueuelen": 1000, "bclim": 1, "macaddr": []}
    return {**v, **kw}


def mirror(monkeypatch, groups: dict[int, list[str]]) -> Mirror:
    monkeypatch.setattr(mirror_mod, "read_groups", lambda ns: groups)
    m = Mirror("ns-p", "eth0")
    m.head = {"parent": {"mac": P, "mtu": 1500, "unicast_filter": False}, "wire": "plain"}
    m._sim = Simulation({**m.head, "seed": 0})
    m._parent_steps({"mac": P, "mtu": 1500, "up": True, "carrier": True})
    return m


def test_children_become_add_set_join_steps_and_changes_become_one_set(monkeypatch) -> None:
    groups = {5: ["01:00:5e:00:00:01", "01:00:5e:01:02:03"], 6: []}
    m = mirror(monkeypatch, groups)
    m._add("a", Where("ns-a", 5), view(5, "02:00:00:00:00:0a"))
    m._add("s", Where("ns-s", 6), view(6, "02:00:00:00:00:05", "source", macaddr=["02:00:00:00:00:98"], up=False))
    m._sync_groups()
    assert m.journal[0] == {"do": "add", "name": "a", "type": "macvlan", "mode": "bridge", "mac": "02:00:00:00:00:0a",
                            "mtu": 1500, "flags": [], "bcqueuelen": 1000}
    assert {"do": "set", "name": "a", "up": True} in m.journal
    assert m.journal[-1] == {"do": "join", "name": "a", "group": "01:00:5e:01:02:03"}  # the stack's own: not joined
    e = m.sim.engine
    assert e.children["a"].up and not e.children["s"].up
    assert e.port.source_dump(e.children["s"]) == [bytes.fromhex("020000000098")]
    # one RTM_NEWLINK with several changes: changelink's keys, then do_setlink's
    m._set("a", view(5, "02:00:00:00:00:1a", "vepa", up=False, promisc=True))
    assert m.journal[-1] == {"do": "set", "name": "a", "mode": "vepa", "mac": "02:00:00:00:00:1a", "up": False,
                             "promisc": True}
    assert e.children["a"].mode == 2 and e.children["a"].mac == bytes.fromhex("02000000001a")
    m._set("s", view(6, "02:00:00:00:00:05", "source", macaddr=[], up=False))
    assert m.journal[-1]["macaddr"] == {"op": "flush", "macs": []} and not e.port.source_hash
    groups[5] = []
    m._sync_groups()
    assert m.journal[-1] == {"do": "leave", "name": "a", "group": "01:00:5e:01:02:03"}
    assert not m.notes  # the engine refused nothing
    # the journal is a scenario: it loads, and replays to the same state
    sc = load_scenario(m.scenario())
    again = Simulation(sc)
    for st in sc["steps"]:
        assert again.step(st)["ok"], st
    assert again.step({"do": "show"})["state"] == m.state()


def test_the_parent_changes_as_one_parent_step_and_carrier_only_while_up(monkeypatch) -> None:
    m = mirror(monkeypatch, {})
    assert m.journal == []  # nothing differs from the scenario's head
    m._parent_steps({"mac": P, "mtu": 9000, "up": False, "carrier": False})
    assert m.journal == [{"do": "parent", "mtu": 9000, "up": False}]  # a down parent says nothing of the wire
    m._parent_steps({"mac": P, "mtu": 9000, "up": True, "carrier": False})
    assert m.journal[-1] == {"do": "parent", "up": True, "carrier": False}
    assert not m.sim.engine.lower.carrier


def test_an_engine_refusal_is_noted_not_raised(monkeypatch) -> None:
    m = mirror(monkeypatch, {})
    m._add("a", Where("ns-a", 5), view(5, "02:00:00:00:00:0a"))
    m._add("b", Where("ns-b", 6), view(6, "02:00:00:00:00:0b", up=False))
    m._set("b", view(6, "02:00:00:00:00:0a"))  # the engine's mirror says a holds that MAC
    assert m.notes and "EADDRINUSE" in m.notes[0]


def test_a_parent_promiscuous_for_another_reason_is_said_once(monkeypatch) -> None:
    m = mirror(monkeypatch, {})
    pv = {"mac": P, "mtu": 1500, "up": True, "carrier": True, "promiscuity": 1}  # tcpdump on it, no child
    m._check_parent(pv)
    m._check_parent(pv)
    assert len(m.notes) == 1 and "promiscuous (promiscuity 1)" in m.notes[0]
    m._add("a", Where("ns-a", 5), view(5, "02:00:00:00:00:0a"))  # a child up: a veth parent goes promiscuous
    m._check_parent({**pv, "promiscuity": 2})
    assert len(m.notes) == 1
