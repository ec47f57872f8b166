"""tests/rootguard.py can fail: every kind of change it guards is noticed (in a pmv namespace of
the test's own: the guard reads any namespace the same way it reads the root one)."""

from __future__ import annotations

import os
import secrets
import subprocess

import pytest

from tests import rootguard
from tests.ci import live_marks


def test_diff_names_new_gone_and_changed() -> None:
    before = {"link a": {"mtu": 1500}, "route x": {}, "sysctl net.ipv4.a.forwarding": "0"}
    after = {"link a": {"mtu": 9000}, "qdisc clsact ffff: on a": {}, "sysctl net.ipv4.a.forwarding": "0"}
    assert rootguard.diff(before, after) == ["changed: link a: {\"mtu\": 1500} -> {\"mtu\": 9000}",
                                             "new: qdisc clsact ffff: on a", "gone: route x"]
    assert rootguard.diff(before, before) == []


def test_volatile_fields_are_not_compared() -> None:
    assert rootguard._clean({"ifname": "x", "stats64": {"rx": 1}, "addr_info": [{"valid_life_time": 3}]}) == \
        {"addr_info": [{}], "ifname": "x"}


def _live(f):
    for mark in live_marks(None if os.geteuid() == 0 else "network namespaces need root"):
        f = mark(f)
    return f


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@pytest.fixture
def ns():
    name = f"pmv{secrets.token_hex(3)}g"
    _sh("ip", "netns", "add", name)
    try:
        _sh("ip", "-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
        _sh("ip", "-n", name, "link", "set", "eth0", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.mark.parametrize("change,expect", [
    (("ip", "link", "set", "eth1", "mtu", "1400"), "changed: link eth1"),
    (("ip", "addr", "add", "10.9.9.9/24", "dev", "eth0"), "new: address 10.9.9.9/24 on eth0"),
    (("ip", "route", "add", "10.8.0.0/16", "dev", "eth0", "table", "77"), "new: route -4"),
    (("ip", "rule", "add", "to", "10.7.0.0/16", "table", "77"), "new: rule -4"),
    (("tc", "qdisc", "add", "dev", "eth0", "clsact"), "new: qdisc clsact"),
    (("sysctl", "-w", "net.ipv4.conf.eth0.arp_notify=1"), "changed: sysctl net.ipv4.eth0.arp_notify"),
    (("sysctl", "-w", "net.ipv6.conf.all.forwarding=1"), "changed: sysctl net.ipv6.all.forwarding"),
])
@_live
def test_every_guarded_change_is_noticed(ns: str, change: tuple, expect: str) -> None:
    before = rootguard.snapshot(ns)
    if change[0] == "sysctl":
        _sh("ip", "netns", "exec", ns, *change)
    else:
        _sh(change[0], "-n", ns, *change[1:])
    changed = rootguard.diff(before, rootguard.snapshot(ns))
    assert any(line.startswith(expect) for line in changed), changed


@_live
def test_a_tc_filter_on_any_hook_is_noticed(ns: str) -> None:
    from pymacvlan import identity
    from pymacvlan.backends.userspace.bpf import BPF_PROG_TYPE_SCHED_CLS, Asm, prog_load

    _sh("tc", "-n", ns, "qdisc", "add", "dev", "eth0", "clsact")
    before = rootguard.snapshot(ns)
    fd = prog_load(BPF_PROG_TYPE_SCHED_CLS, Asm().movi(0, -1).exit().code(), b"guard")
    try:
        with identity.ipr_in(ns) as ipr:
            idx = ipr.link_lookup(ifname="eth0")[0]
            ipr.tc("add-filter", "bpf", idx, ":1", fd=fd, name="x", parent="ffff:fff3", classid=1,
                   direct_action=True, prio=3)
    finally:
        os.close(fd)
    changed = rootguard.diff(before, rootguard.snapshot(ns))
    assert any(line.startswith("new: tc filter egress on eth0") for line in changed), changed
