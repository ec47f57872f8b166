"""`replay --backend userspace`: control steps reach the real devices, runs clean up after
themselves even when they fail, and compare tolerates exactly the named differences."""

from __future__ import annotations

import subprocess

import pytest

from pymacvlan.backends.userspace.backend import UserspaceBackend, UserspaceSteps, unavailable_reason
from pymacvlan.scenario import diff_results, load_scenario
from tests.ci import skip_or_fail

PARENT = "02:00:00:00:00:01"


def _live() -> None:
    why = unavailable_reason()
    if why is None:
        return
    skip_or_fail(why)


def _leftovers(prefix: str) -> list[str]:
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return [line for line in (ns + links).splitlines() if prefix in line]


@pytest.mark.live
def test_control_steps_reach_the_tap_and_refusals_leave_it_down() -> None:
    _live()
    sc = load_scenario({"parent": {"mac": PARENT}, "wire": "plain", "steps": [
        {"do": "add", "name": "A", "mode": "bridge", "mac": "02:00:00:00:00:0a"},
        {"do": "add", "name": "B", "mode": "bridge", "mac": "02:00:00:00:00:0b"},
        {"do": "set", "name": "B", "mac": "02:00:00:00:00:0a"},
        {"do": "set", "name": "A", "up": True, "mtu": 1400, "promisc": True},
        {"do": "set", "name": "B", "up": True},
        {"do": "join", "name": "A", "group": "01:00:5e:00:00:01"},
        {"do": "show"},
    ]})
    backend = UserspaceBackend()
    out = backend.run(sc)["results"]
    assert out[4]["errno"] == "EADDRINUSE"
    a, b = out[6]["state"]["children"]["A"], out[6]["state"]["children"]["B"]
    # address, mtu, flags, operstate, promiscuity come from the TAPs themselves
    assert (a["mtu"], a["operstate"], a["promiscuity"]) == (1400, "UP", 1)
    assert "PROMISC" in a["flags"] and "UP" in a["flags"]
    assert b["address"] == "02:00:00:00:00:0a" and "UP" not in b["flags"]
    assert out[6]["inherent"]["parent_memberships"] == ["@parent"]
    assert not _leftovers(backend.last_prefix)


@pytest.mark.live
@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_a_run_that_raises_leaves_no_namespace_or_link(monkeypatch, exc) -> None:
    _live()
    calls = []

    def boom(self, step):
        calls.append(step)
        raise exc("injected failure")

    monkeypatch.setattr(UserspaceSteps, "do_show", boom)
    sc = load_scenario({"parent": {"mac": PARENT}, "wire": "hairpin", "steps": [
        {"do": "add", "name": "A", "mode": "bridge", "mac": "02:00:00:00:00:0a"},
        {"do": "add", "name": "T", "type": "macvtap", "mode": "vepa", "mac": "02:00:00:00:00:0b"},
        {"do": "set", "name": "A", "up": True},
        {"do": "show"},
    ]})
    backend = UserspaceBackend()
    with pytest.raises(exc):
        backend.run(sc)
    assert calls, "the run never reached the failing step"
    assert backend.last_prefix and not _leftovers(backend.last_prefix)


def _out(backend: str, results: list[dict]) -> dict:
    return {"backend": backend, "results": results}


def test_pkttype_by_device_tolerates_host_versus_otherhost_only() -> None:
    steps = [{"do": "inject", "at": "wire", "frame": "00"}]
    frame = "0200000000ee02000000000188b50006"
    kernel = _out("kernel", [{"ok": True, "observed": {"wire": [], "parent": [], "children": {
        "P": [{"pkttype": "HOST", "hex": frame}]}}}])
    user = _out("userspace", [{"ok": True, "inherent": {"pkttype_by_device": ["P"]}, "observed": {
        "wire": [], "parent": [], "children": {"P": [{"pkttype": "OTHERHOST", "hex": frame}]}}}])
    assert diff_results(steps, kernel, user) == []
    user["results"][0]["observed"]["children"]["P"][0]["pkttype"] = "MULTICAST"
    assert diff_results(steps, kernel, user)
    del user["results"][0]["inherent"]
    user["results"][0]["observed"]["children"]["P"][0]["pkttype"] = "OTHERHOST"
    assert diff_results(steps, kernel, user), "without the marker nothing is tolerated"


def test_macvtap_write_skips_only_a_netdev_refusal_and_then_counters() -> None:
    steps = [{"do": "inject", "at": "child:T", "frame": "00"}, {"do": "show"}]
    stats = {"rx": {"bytes": 0, "packets": 0, "errors": 0, "dropped": 0, "multicast": 0},
             "tx": {"bytes": 0, "packets": 0, "dropped": 0}}
    kernel = _out("kernel", [{"ok": False, "errno": "EMSGSIZE"},
                             {"ok": True, "state": {"parent": None, "children": {"T": {"stats64": stats}}}}])
    sent = {**stats, "tx": {"bytes": 1516, "packets": 1, "dropped": 0}}
    user = _out("userspace", [
        {"ok": True, "inherent": {"macvtap_write": ["T"]}, "observed": {"wire": [], "parent": [], "children": {}}},
        {"ok": True, "state": {"parent": None, "children": {"T": {"stats64": sent}}}}])
    assert diff_results(steps, kernel, user) == []
    user["results"][0]["inherent"] = {}
    assert len(diff_results(steps, kernel, user)) == 2
    kernel["results"][0] = {"ok": False, "errno": "EINVAL"}  # not a netdev check: compared
    user["results"][0]["inherent"] = {"macvtap_write": ["T"]}
    assert diff_results(steps, kernel, user)


def test_readback_fails_when_the_tap_did_not_count_what_the_engine_did():
    from pymacvlan.backends.userspace.backend import ReadbackMismatch, readback_tap_counters

    engine = {"rx": {"packets": 3}, "tx": {"packets": 2, "dropped": 1}}
    readback_tap_counters("a", engine, {"rx_packets": 3, "tx_packets": 3})  # agrees: nothing
    with pytest.raises(ReadbackMismatch, match="child a: the engine counts 3 frames delivered.*TAP counted 2 received"):
        readback_tap_counters("a", engine, {"rx_packets": 2, "tx_packets": 3})
    with pytest.raises(ReadbackMismatch):
        readback_tap_counters("a", engine, {"rx_packets": 3, "tx_packets": 2})
