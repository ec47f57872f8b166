"""Live tests of the kernel backend: small scenarios on the real macvlan driver, in namespaces.

They need root. They are skipped without it, except under CI=true, where they must run.
Every assertion below is a kernel fact checked on 6.18 (see the backend's report).
"""

from __future__ import annotations

import itertools
import os
import socket

import pytest

from pymacvlan.backends.kernel import KernelBackend, LateFrame, UnsupportedScenario, unavailable_reason
from pymacvlan.backends.kernel.steps import StepDispatcher
from pymacvlan.backends.kernel.topology import Topology
from tests.ci import live_marks

_REASON = unavailable_reason()
pytestmark = live_marks(_REASON)

LM = "02:00:00:00:00:01"  # the parent
E = "02:00:00:00:00:99"  # an external host on the wire
A, B, C, D = (f"02:00:00:00:00:0{x}" for x in "abcd")
BCAST = "ff:ff:ff:ff:ff:ff"
_marker = itertools.count(1)


def frame(dst: str, src: str, ethertype: int = 0x88B5, vlan: int | None = None) -> str:
    """A 60-byte frame whose payload is unique to this call, so observations cannot mix."""
    tag = f"8100{vlan:04x}" if vlan is not None else ""
    mark = next(_marker).to_bytes(4, "big").hex()
    return (dst + src).replace(":", "") + tag + f"{ethertype:04x}" + (mark * 12)[:92 - len(tag)]


def add(name: str, mode: str, mac: str, up: bool = True, **extra) -> list[dict]:
    steps = [{"do": "add", "name": name, "type": extra.pop("type", "macvlan"), "mode": mode, "mac": mac, **extra}]
    return steps + ([{"do": "set", "name": name, "up": True}] if up else [])


def inject(at: str, hexframe: str) -> dict:
    return {"do": "inject", "at": at, "frame": hexframe}


def run(steps: list[dict], wire: str = "plain", child_netns: bool = True) -> list[dict]:
    scenario = {"parent": {"mac": LM, "mtu": 1500}, "wire": wire, "steps": steps}
    out = KernelBackend(child_netns=child_netns).run(scenario)
    assert out["backend"] == "kernel" and out["kernel"] == os.uname().release
    assert len(out["results"]) == len(steps)
    return out["results"]


def receivers(result: dict) -> dict[str, list[str]]:
    """{device: [pkttype, ...]} for everyone who got the frame ("wire" entries count copies)."""
    assert result["ok"], result
    obs = result["observed"]
    out = {name: [f["pkttype"] for f in got] for name, got in obs["children"].items() if got}
    if obs["parent"]:
        out["parent"] = [f["pkttype"] for f in obs["parent"]]
    if obs["wire"]:
        out["wire"] = ["WIRE"] * len(obs["wire"])
    return out


# ---------------------------------------------------------------- leftovers


def _pmv_names() -> set[str]:
    """pmv namespaces (what `ip netns list` shows) and pmv links of the root namespace."""
    try:
        netns = {f"netns:{n}" for n in os.listdir("/run/netns") if n.startswith("pmv")}
    except FileNotFoundError:
        netns = set()
    links = {f"link:{name}" for _i, name in socket.if_nameindex() if name.startswith("pmv")}
    return netns | links


@pytest.fixture(autouse=True)
def no_leftovers(monkeypatch):
    """No namespace or root-namespace link of any topology this test built may survive it.

    Only this test's own prefixes are checked, so concurrent runs (pytest-xdist, another
    backend's tests) cannot make it fail.
    """
    prefixes: list[str] = []
    create = Topology.create

    def recording_create(self):
        prefixes.append(self.prefix)
        return create(self)

    monkeypatch.setattr(Topology, "create", recording_create)
    yield
    left = {name for name in _pmv_names() for prefix in prefixes if prefix in name}
    assert not left, f"the kernel backend left these behind: {sorted(left)}"


# ---------------------------------------------------------------- receive path


def test_wire_unicast_to_child_is_host_at_child_only():
    uni = frame(A, E)
    res = run([*add("A", "bridge", A), *add("B", "vepa", B), inject("wire", uni)])
    obs = res[-1]["observed"]
    assert obs["children"] == {"A": [{"pkttype": "HOST", "hex": uni}], "B": []}
    assert obs["parent"] == [] and obs["wire"] == []


def test_wire_unicast_to_down_child_goes_to_parent_as_otherhost():
    res = run([*add("A", "bridge", A, up=False), inject("wire", frame(A, E))])
    assert receivers(res[-1]) == {"parent": ["OTHERHOST"]}


@pytest.mark.parametrize("child_netns", [True, False], ids=["own-netns", "parent-netns"])
def test_wire_broadcast_reaches_parent_and_up_children_but_not_source_or_down(child_netns):
    res = run([
        *add("P", "private", A), *add("V", "vepa", B), *add("R", "bridge", C),
        *add("S", "source", D, macaddr=["02:00:00:00:00:77"]),
        *add("X", "vepa", "02:00:00:00:00:0e", up=False),
        inject("wire", frame(BCAST, E)),
    ], child_netns=child_netns)
    assert receivers(res[-1]) == {"parent": ["BROADCAST"], "P": ["BROADCAST"], "V": ["BROADCAST"], "R": ["BROADCAST"]}
    assert res[-1]["observed"]["children"]["S"] == [] and res[-1]["observed"]["children"]["X"] == []


def test_source_mode_child_gets_copies_of_listed_senders():
    res = run([
        *add("A", "bridge", A), *add("S", "source", D, macaddr=[E]),
        inject("wire", frame(A, E)), inject("wire", frame(LM, E)), inject("wire", frame(BCAST, E)),
    ])
    assert receivers(res[-3]) == {"A": ["HOST"], "S": ["OTHERHOST"]}
    assert receivers(res[-2]) == {"parent": ["HOST"], "S": ["HOST"]}
    assert receivers(res[-1]) == {"parent": ["BROADCAST"], "A": ["BROADCAST"], "S": ["BROADCAST"]}


def test_joined_group_reaches_only_the_member():
    group = "01:00:5e:01:02:03"
    res = run([
        *add("A", "bridge", A), *add("B", "bridge", B),
        inject("wire", frame(group, E)),
        {"do": "join", "name": "A", "group": group},
        inject("wire", frame(group, E)),
    ])
    assert receivers(res[-3]) == {"parent": ["MULTICAST"]}
    assert res[-2] == {"ok": True}
    assert receivers(res[-1]) == {"parent": ["MULTICAST"], "A": ["MULTICAST"]}


def test_leave_keeps_the_group_until_the_next_rx_mode_change():
    """macvlan_set_mac_lists() hashes the child's list before dev_mc_sync() unsyncs the group."""
    group, other = "01:00:5e:01:02:03", "01:00:5e:44:55:66"
    res = run([
        *add("A", "bridge", A),
        {"do": "join", "name": "A", "group": group},
        {"do": "leave", "name": "A", "group": group},
        inject("wire", frame(group, E)),
        {"do": "join", "name": "A", "group": other},  # any rx-mode change recomputes the filter
        inject("wire", frame(group, E)),
    ])
    assert receivers(res[4]) == {"parent": ["MULTICAST"], "A": ["MULTICAST"]}
    assert receivers(res[6]) == {"parent": ["MULTICAST"]}


def test_bcqueuelen_zero_loses_even_a_single_member_group_on_a_promiscuous_parent():
    """The veth parent has no unicast filter, so it is promiscuous once a child is up; that
    fills the port's bc_filter, and every group goes through the (here zero-length) queue."""
    group = "01:00:5e:01:02:03"
    res = run([
        *add("A", "bridge", A, bcqueuelen=0),
        {"do": "join", "name": "A", "group": group},
        inject("wire", frame(group, E)),
        {"do": "set", "name": "A", "bclim": -1},  # nothing is queued any more
        inject("wire", frame(group, E)),
    ])
    assert receivers(res[3]) == {"parent": ["MULTICAST"]}
    assert receivers(res[5]) == {"parent": ["MULTICAST"], "A": ["MULTICAST"]}


def test_leave_of_a_group_never_joined_is_enoent():
    res = run([*add("A", "bridge", A), {"do": "leave", "name": "A", "group": "01:00:5e:01:02:03"}])
    assert res[-1]["ok"] is False and res[-1]["errno"] == "ENOENT"


def test_vlan_tagged_broadcast_keeps_its_tag_and_is_otherhost_for_the_parent():
    tagged = frame(BCAST, E, vlan=5)
    res = run([*add("A", "bridge", A), inject("wire", tagged)])
    obs = res[-1]["observed"]
    assert obs["children"]["A"] == [{"pkttype": "BROADCAST", "hex": tagged}]
    # __netif_receive_skb_core(): a VID with no VLAN device makes the frame OTHERHOST for L's stack
    assert [f["pkttype"] for f in obs["parent"]] == ["OTHERHOST"]


# ---------------------------------------------------------------- transmit path


def test_bridge_to_bridge_unicast_stays_off_the_wire():
    res = run([*add("A", "bridge", A), *add("B", "bridge", B), inject("child:A", frame(B, A))])
    assert receivers(res[-1]) == {"B": ["HOST"]}


def test_bridge_broadcast_floods_bridge_siblings_and_the_wire():
    res = run([*add("A", "bridge", A), *add("B", "bridge", B), *add("V", "vepa", C),
               inject("child:A", frame(BCAST, A))])
    assert receivers(res[-1]) == {"B": ["BROADCAST"], "wire": ["WIRE"]}


@pytest.mark.parametrize("wire, expected", [
    ("plain", {"wire": ["WIRE"]}),
    ("hairpin", {"wire": ["WIRE"], "B": ["HOST"]}),
])
def test_vepa_to_vepa_sibling_needs_a_hairpin(wire, expected):
    res = run([*add("A", "vepa", A), *add("B", "vepa", B), inject("child:A", frame(B, A))], wire=wire)
    assert receivers(res[-1]) == expected


def test_vepa_broadcast_with_hairpin_returns_to_parent_and_siblings_but_not_sender_or_private():
    res = run([*add("A", "vepa", A), *add("B", "bridge", B), *add("V", "vepa", C), *add("P", "private", D),
               inject("child:A", frame(BCAST, A))], wire="hairpin")
    assert receivers(res[-1]) == {"wire": ["WIRE"], "parent": ["BROADCAST"], "B": ["BROADCAST"], "V": ["BROADCAST"]}


def test_private_broadcast_with_hairpin_returns_only_to_the_sender():
    res = run([*add("P", "private", A), *add("V", "vepa", B), inject("child:P", frame(BCAST, A))], wire="hairpin")
    assert receivers(res[-1]) == {"wire": ["WIRE"], "P": ["BROADCAST"]}


def test_parent_transmissions_reach_children_only_through_a_hairpin():
    steps = [*add("A", "bridge", A), inject("parent", frame(BCAST, LM)), inject("parent", frame(A, LM))]
    plain = run(steps)
    assert receivers(plain[-2]) == {"wire": ["WIRE"]} and receivers(plain[-1]) == {"wire": ["WIRE"]}
    hairpin = run(steps, wire="hairpin")
    assert receivers(hairpin[-2]) == {"wire": ["WIRE"], "parent": ["BROADCAST"], "A": ["BROADCAST"]}
    assert receivers(hairpin[-1]) == {"wire": ["WIRE"], "A": ["HOST"]}


@pytest.mark.parametrize("dst, reflected", [
    ("01:80:c2:00:00:00", True),  # STP is off: br_handle_frame() forwards the BPDU address
    ("01:80:c2:00:00:01", False),
    ("01:80:c2:00:00:0e", False),
])
def test_hairpin_bridge_and_link_local_groups(dst, reflected):
    res = run([*add("A", "vepa", A), {"do": "set", "name": "A", "allmulticast": True},
               inject("parent", frame(dst, LM))], wire="hairpin")
    back = {"parent": ["MULTICAST"], "A": ["MULTICAST"]} if reflected else {}
    assert receivers(res[-1]) == {"wire": ["WIRE"], **back}


@pytest.mark.parametrize("src", ["03:00:00:00:00:01", "00:00:00:00:00:00"])
def test_hairpin_bridge_drops_frames_with_an_invalid_source(src):
    res = run([*add("A", "vepa", A), inject("parent", frame(A, src))], wire="hairpin")
    assert receivers(res[-1]) == {"wire": ["WIRE"]}


def test_sending_from_a_down_child_or_parent_is_enetdown():
    res = run([
        *add("A", "bridge", A, up=False), inject("child:A", frame(BCAST, A)),
        {"do": "parent", "up": False}, inject("parent", frame(BCAST, LM)),
    ])
    for r in (res[1], res[3]):
        assert r["ok"] is False and r["errno"] == "ENETDOWN"


def test_wire_without_carrier_delivers_nothing():
    res = run([*add("A", "bridge", A), {"do": "parent", "carrier": False}, inject("wire", frame(BCAST, E)),
               {"do": "parent", "carrier": True}, inject("wire", frame(BCAST, E))])
    assert res[-3] == {"ok": True, "observed": {"wire": [], "parent": [], "children": {"A": []}}}
    assert receivers(res[-1]) == {"parent": ["BROADCAST"], "A": ["BROADCAST"]}


# ---------------------------------------------------------------- control plane


def test_up_with_a_mac_taken_by_an_up_sibling_is_eaddrinuse():
    res = run([*add("A", "bridge", A), *add("B", "bridge", A)])
    assert res[2] == {"ok": True}  # no conflict check at creation
    assert res[3]["ok"] is False and res[3]["errno"] == "EADDRINUSE"


def test_setting_the_parents_mac_on_a_child_is_eaddrinuse():
    res = run([*add("A", "bridge", A, up=False), {"do": "set", "name": "A", "mac": LM}])
    assert res[-1]["errno"] == "EADDRINUSE"


def test_second_child_on_a_passthru_port_is_einval():
    res = run([*add("P", "passthru", A, up=False), *add("Q", "passthru", B, up=False),
               *add("V", "vepa", C, up=False), {"do": "show"}])
    assert res[0] == {"ok": True}
    assert res[1]["errno"] == "EINVAL" and res[2]["errno"] == "EINVAL"
    state = res[-1]["state"]
    assert list(state["children"]) == ["P"]
    assert state["children"]["P"]["address"] == LM  # passthru takes the parent's MAC


def test_passthru_nopromisc_set_while_down_underflows_the_parents_promiscuity():
    """macvlan_changelink() drops L's promiscuity at once, though the down child never raised it;
    __dev_set_promiscuity() lets the u32 count wrap."""
    res = run([*add("P", "passthru", A, up=False), {"do": "set", "name": "P", "flags": ["nopromisc"]},
               {"do": "show"}])
    assert res[1] == {"ok": True}
    assert res[2]["state"]["parent"]["promiscuity"] == 2**32 - 1


def test_set_is_one_request_a_failed_up_still_applies_mtu_promisc_and_allmulti():
    """As `ip link set B mtu 1400 up promisc on allmulticast on`: do_setlink() applies the MTU,
    then __dev_change_flags() tries to open (EADDRINUSE) and still changes promisc/allmulti."""
    res = run([*add("A", "bridge", A), *add("B", "bridge", A, up=False),
               {"do": "set", "name": "B", "mtu": 1400, "up": True, "promisc": True, "allmulticast": True},
               {"do": "show"}])
    assert res[3]["errno"] == "EADDRINUSE"
    b = res[4]["state"]["children"]["B"]
    assert b["mtu"] == 1400 and b["flags"] == ["BROADCAST", "MULTICAST", "ALLMULTI", "PROMISC"]


def test_set_applies_linkinfo_before_address_and_stops_at_the_first_error():
    res = run([
        *add("S", "source", A, up=False, macaddr=[E]),
        # mode first (vepa), then the macaddr op fails: EINVAL, mode stays changed, mtu not applied
        {"do": "set", "name": "S", "mode": "vepa", "macaddr": {"op": "flush", "macs": []}, "mtu": 1400},
        {"do": "show"},
    ])
    assert res[1]["errno"] == "EINVAL"
    s = res[2]["state"]["children"]["S"]
    assert s["linkinfo"]["info_data"]["mode"] == "vepa" and s["mtu"] == 1500


@pytest.mark.parametrize("child_netns", [True, False], ids=["own-netns", "parent-netns"])
def test_reader_on_a_macvtap_takes_frames_and_a_macvlan_has_none(child_netns):
    res = run([
        *add("T", "bridge", A, type="macvtap"), *add("M", "bridge", B),
        {"do": "set", "name": "T", "reader": True},
        {"do": "set", "name": "M", "reader": True},
        inject("wire", frame(A, E)),
        {"do": "set", "name": "T", "reader": False},
    ], child_netns=child_netns)
    assert res[4] == {"ok": True}
    assert res[5]["ok"] is False and res[5]["errno"] == "EOPNOTSUPP"
    assert receivers(res[6]) == {"T": ["HOST"]}
    assert res[7] == {"ok": True}


def test_a_parent_with_a_unicast_filter_is_refused_before_anything_is_built():
    with pytest.raises(UnsupportedScenario, match="unicast_filter"):
        KernelBackend().run({"parent": {"mac": None, "mtu": 1500, "unicast_filter": True},
                             "wire": "plain", "steps": [{"do": "show"}]})


def test_show_reports_ip_link_keys():
    res = run([
        *add("A", "bridge", A),
        *add("S", "source", B, up=False, type="macvtap", macaddr=[E], flags=["nodst"], bcqueuelen=20),
        {"do": "show"},
        {"do": "set", "name": "A", "bclim": -1},
        {"do": "parent", "carrier": False},
        {"do": "show"},
        {"do": "del", "name": "@parent"},
        {"do": "show"},
    ])
    state = res[3]["state"]
    parent, a, s = state["parent"], state["children"]["A"], state["children"]["S"]
    assert set(parent) == {"address", "mtu", "operstate", "flags", "promiscuity", "allmulti"}
    assert parent["address"] == LM and parent["operstate"] == "UP"
    assert parent["flags"] == ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"]
    assert parent["promiscuity"] == 1  # veth has no unicast filter: the up child made it promisc
    assert a["linkinfo"] == {"info_kind": "macvlan", "info_data": {
        "mode": "bridge", "flags": [], "bcqueuelen": 1000, "usedbcqueuelen": 1000}}
    assert s["flags"] == ["BROADCAST", "MULTICAST"] and s["operstate"] == "DOWN"
    assert s["linkinfo"] == {"info_kind": "macvtap", "info_data": {
        "mode": "source", "flags": ["nodst"], "bcqueuelen": 20, "usedbcqueuelen": 1000,
        "macaddr_count": 1, "macaddr_data": [E]}}

    state = res[6]["state"]
    assert state["parent"]["flags"] == ["NO-CARRIER", "BROADCAST", "MULTICAST", "UP"]
    assert state["parent"]["operstate"] == "DOWN"
    assert state["children"]["A"]["flags"] == ["NO-CARRIER", "BROADCAST", "MULTICAST", "UP"]
    # bc_cutoff belongs to the port: every child dumps it once it is not 1
    assert all(c["linkinfo"]["info_data"]["bclim"] == -1 for c in state["children"].values())

    assert res[-1]["state"] == {"parent": None, "children": {}}


@pytest.mark.parametrize("child_netns, operstate", [(True, "DOWN"), (False, "LOWERLAYERDOWN")],
                         ids=["own-netns", "parent-netns"])
def test_up_child_without_carrier_is_lowerlayerdown_only_beside_its_parent(child_netns, operstate):
    """default_operstate() looks the child's iflink (the parent) up in the child's own netns."""
    res = run([*add("A", "bridge", A), *add("B", "bridge", B, up=False),
               {"do": "parent", "carrier": False}, {"do": "show"},
               {"do": "parent", "carrier": True, "up": False}, {"do": "show"}], child_netns=child_netns)
    for state in (res[4]["state"], res[6]["state"]):
        a, b = state["children"]["A"], state["children"]["B"]
        assert a["flags"] == ["NO-CARRIER", "BROADCAST", "MULTICAST", "UP"] and a["operstate"] == operstate
        assert b["flags"] == ["BROADCAST", "MULTICAST"] and b["operstate"] == "DOWN"
    # the parent is a veth whose peer is in another namespace: DOWN, like a NIC
    assert res[4]["state"]["parent"]["flags"] == ["NO-CARRIER", "BROADCAST", "MULTICAST", "UP"]
    assert res[6]["state"]["parent"]["flags"] == ["BROADCAST", "MULTICAST"]
    assert res[4]["state"]["parent"]["operstate"] == res[6]["state"]["parent"]["operstate"] == "DOWN"


def test_deleting_the_parent_deletes_the_children():
    res = run([*add("A", "bridge", A), {"do": "del", "name": "@parent"}, {"do": "set", "name": "A", "up": False},
               inject("wire", frame(BCAST, E))])
    assert res[2] == {"ok": True}
    assert res[3]["errno"] == "ENODEV"
    assert res[4] == {"ok": True, "observed": {"wire": [], "parent": [], "children": {}}}


# ---------------------------------------------------------------- cleanup


@pytest.mark.parametrize("child_netns", [True, False], ids=["own-netns", "parent-netns"])
@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_nothing_is_left_after_a_run_that_raised(monkeypatch, exc, child_netns):
    def explode(self, step):
        raise exc

    monkeypatch.setattr(StepDispatcher, "do_show", explode)
    backend = KernelBackend(child_netns=child_netns)
    with pytest.raises(type(exc)):
        backend.run({"parent": {"mac": None, "mtu": 1500}, "wire": "hairpin", "steps": [
            *add("A", "bridge", A), *add("B", "vepa", B, type="macvtap"), {"do": "set", "name": "B", "reader": True},
            inject("wire", frame(BCAST, E)), {"do": "show"}, {"do": "del", "name": "A"},
        ]})
    prefix = backend.last_prefix
    assert prefix and prefix.startswith("pmv")
    assert not {n for n in _pmv_names() if prefix in n}


def test_leftover_check_sees_a_live_topology():
    """The detector above can fail: a topology shows up in `ip netns list` until torn down."""
    topo = Topology(wire="hairpin").create()
    try:
        assert {n for n in _pmv_names() if topo.prefix in n} == {f"netns:{topo.ns_parent}", f"netns:{topo.ns_wire}"}
    finally:
        topo.teardown()
    assert not {n for n in _pmv_names() if topo.prefix in n}


# ---------------------------------------------------------------- late frames


def test_a_copy_that_arrives_after_its_step_fails_the_run_naming_step_and_device(monkeypatch):
    """A frame the kernel hands a child after its step's capture ended is an error, not dropped
    (here the late copy is sent by the test, as a delayed delivery would arrive)."""
    first = frame(A, E)
    replay = StepDispatcher.do_show

    def show_after_a_late_copy(self, step):
        self.capture.send("wire", bytes.fromhex(first))  # step 3's frame again, to A
        return replay(self, step)

    monkeypatch.setattr(StepDispatcher, "do_show", show_after_a_late_copy)
    with pytest.raises(LateFrame, match=r"step 3 \(inject at wire\).* on A "):
        run([*add("A", "bridge", A), inject("wire", first), {"do": "show"}, {"do": "show"}])


def test_a_late_copy_of_the_last_frame_fails_the_run(monkeypatch):
    first = frame(A, E)
    replay = StepDispatcher.do_show

    def show_after_a_late_copy(self, step):
        result = replay(self, step)
        self.capture.send("wire", bytes.fromhex(first))
        return result

    monkeypatch.setattr(StepDispatcher, "do_show", show_after_a_late_copy)
    with pytest.raises(LateFrame, match=r"step 3 .* on A "):
        run([*add("A", "bridge", A), inject("wire", first), {"do": "show"}])


def test_the_capture_waits_for_the_bc_queue():
    """A broadcast reaches children through macvlan's deferred bc_work: the probe round waits
    for it on evidence. Ten floods to three children: every copy is in its own step."""
    steps = [*add("A", "bridge", A), *add("B", "vepa", B), *add("C", "private", C)]
    floods = [inject("wire", frame(BCAST, E)) for _ in range(10)]
    res = run(steps + floods)
    for r in res[len(steps):]:
        assert receivers(r) == {"A": ["BROADCAST"], "B": ["BROADCAST"], "C": ["BROADCAST"],
                                "parent": ["BROADCAST"]}


def test_a_run_whose_collection_hit_the_cap_fails(monkeypatch) -> None:
    """Issue 19: no live run noticed a collection cut at the cap; now the run itself fails."""
    from pymacvlan.backends.kernel import CaptureCapped
    from pymacvlan.backends.kernel import capture as capture_mod

    real = capture_mod.Capture._rounds

    def stuck_once(self, inj, seen, deadline, rounds):
        done = real(self, inj, seen, deadline, rounds)
        if inj is not None and not getattr(self, "_stuck", False):
            self._stuck = True
            return False  # as if the deadline had come before the probe's evidence
        return done

    monkeypatch.setattr(capture_mod.Capture, "_rounds", stuck_once)
    with pytest.raises(CaptureCapped, match="1 frame"):
        run([*add("a", "bridge", A), inject("wire", frame(A, E))])
