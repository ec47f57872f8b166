"""pymacvlan.identity, and every tc attach/detach proving identity first (issue 19, item 1).

Live, in this run's pmv namespaces only. The parent is called ``eth0`` *inside* a pmv
namespace, so a name-only check would match the root namespace's eth0; every test also reads
the root namespace's eth0 (read-only, ``tc -j``) before and after and requires it unchanged.
Where old code would have touched a root device, the test replaces ``tc_attach`` with a
recorder that refuses, so even a regression never reaches the root namespace.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import threading
from pathlib import Path

import pytest

from pymacvlan import identity
from tests.ci import live_marks

from .backends.userspace.netlab import Lab, live_unavailable, sh

pytestmark = live_marks(live_unavailable())

OTHER = "other_tool"  # a bpf filter of another tool, its name containing none of ours
SIMILAR = "x_pmv_shield_x"  # another tool's filter whose name contains ours (old code deleted it)


def _root_tc() -> tuple[str, str, str]:
    """The root namespace's eth0 (if any): qdiscs and both hooks' filters, read-only."""
    if not os.path.exists("/sys/class/net/eth0"):
        return ("", "", "")
    return tuple(sh("tc", "-j", *a, check=False).stdout for a in  # type: ignore[return-value]
                 (("qdisc", "show", "dev", "eth0"), ("filter", "show", "dev", "eth0", "ingress"),
                  ("filter", "show", "dev", "eth0", "egress")))


@pytest.fixture
def lab():
    """This test's pmv namespaces, removed after it, also on failure."""
    from .backends.userspace.netlab import leftovers

    lab = Lab()
    try:
        yield lab
    finally:
        lab.close()
        assert not leftovers(lab.tag), f"leftover namespaces or links: {leftovers(lab.tag)}"


@pytest.fixture
def world(lab: Lab):
    """P holds a veth end called eth0 (peer in W); the root's eth0 must not change."""
    P, W = lab.ns("P"), lab.ns("W")
    lab.veth("eth0", P, lab.ifname("w"), W)
    sh("ip", "-n", P, "link", "set", "eth0", "up")
    root = _root_tc()
    yield P, W
    assert _root_tc() == root, "the root namespace's eth0 changed"


def _filters(ns: str, hook: str) -> list[dict]:
    return json.loads(sh("tc", "-n", ns, "-j", "filter", "show", "dev", "eth0", hook).stdout or "[]")


def _names(ns: str, hook: str = "ingress") -> set[str]:
    return {f.get("options", {}).get("bpf_name", f.get("kind", "")) for f in _filters(ns, hook) if "options" in f}


def _qdiscs(ns: str) -> set[str]:
    return {q["kind"] for q in json.loads(sh("tc", "-n", ns, "-j", "qdisc", "show", "dev", "eth0").stdout)}


def _other_tool(ns: str, *, qdisc: bool) -> None:
    """Another tool's state on the parent: (its clsact,) an egress filter, an ingress bpf filter
    named like ours, and one named its own way."""
    from pymacvlan.backends.userspace.bpf import BPF_PROG_TYPE_SCHED_CLS, Asm, prog_load

    if qdisc:
        sh("tc", "-n", ns, "qdisc", "add", "dev", "eth0", "clsact")
    fd = prog_load(BPF_PROG_TYPE_SCHED_CLS, Asm().movi(0, -1).exit().code(), b"other")
    try:
        with identity.ipr_in(ns) as ipr:
            idx = ipr.link_lookup(ifname="eth0")[0]
            for prio, name, hook in ((7, SIMILAR, "ffff:fff2"), (8, OTHER, "ffff:fff2"), (9, OTHER, "ffff:fff3")):
                ipr.tc("add-filter", "bpf", idx, ":1", fd=fd, name=name, parent=hook, classid=1,
                       direct_action=True, prio=prio)
    finally:
        os.close(fd)


def _others_intact(ns: str) -> None:
    assert "clsact" in _qdiscs(ns)
    assert {OTHER, SIMILAR} <= _names(ns), _filters(ns, "ingress")
    assert OTHER in _names(ns, "egress"), _filters(ns, "egress")


# -- the module --------------------------------------------------------------------------------------------
def test_identity_is_read_through_a_socket_bound_in_the_namespace(world) -> None:
    P, _ = world
    with identity.ipr_in(P, identity.netns_ino(P)) as ipr:
        ident = identity.read(ipr, ifname="eth0")
        assert ident.netns == identity.netns_ino(P) != identity.netns_ino(None)
        assert ident.kind == "veth" and ident.name == "eth0" and len(ident.mac) == 17
        assert identity.check(ipr, ident) == ident
        assert identity.DeviceIdentity.from_dict(ident.to_dict()) == ident
        with pytest.raises(identity.IdentityError) as e:  # another MAC: another device
            identity.check(ipr, identity.DeviceIdentity(ident.netns, ident.ifindex, ident.kind, "02:00:00:00:00:01"))
        assert e.value.errno == errno.ESTALE and "not going to" in str(e.value)
    with identity.ipr_in(None) as root, pytest.raises(identity.IdentityError) as e:  # same ifindex, root ns
        identity.check(root, ident)
    assert e.value.errno == errno.ESTALE and "netns inode" in str(e.value)
    with pytest.raises(identity.IdentityError):  # a socket opened where we were not given
        identity.open_ipr(None, identity.netns_ino(P))


@pytest.mark.parametrize("bad", [None, [], {"netns": 1}, {"netns": 1, "ifindex": "2", "kind": "", "mac": "x" * 17},
                                 {"netns": True, "ifindex": 2, "kind": "", "mac": "02:00:00:00:00:01"}])
def test_a_recorded_identity_is_type_checked(bad) -> None:
    with pytest.raises(ValueError):
        identity.DeviceIdentity.from_dict(bad)


# -- the fast path and the shield --------------------------------------------------------------------------
def _refusing_tc_attach(monkeypatch, module) -> list:
    """tc_attach replaced by a recorder that never touches anything."""
    calls: list = []

    def record(ipr, ifindex, *a, **kw):
        calls.append((identity.socket_netns(ipr), ifindex))
        raise OSError(errno.EPERM, "test: tc_attach reached")

    monkeypatch.setattr(module, "tc_attach", record)
    return calls


def test_fastpath_used_from_another_thread_never_attaches_in_the_root_namespace(world, monkeypatch) -> None:
    """The original incident: a FastPath made on a thread inside P, used from a thread in the root
    namespace. By name and ifindex the root's eth0 matched; by namespace inode it does not."""
    from pymacvlan.backends.userspace import fastpath
    from pymacvlan.backends.userspace._sys import in_netns

    P, _ = world
    calls = _refusing_tc_attach(monkeypatch, fastpath)
    made: list = []

    def make() -> None:
        with in_netns(P):
            made.append(fastpath.FastPath(None))  # "this thread's namespace": P

    t = threading.Thread(target=make)
    t.start()
    t.join()
    fp = made[0]
    with identity.ipr_in(P) as ipr:
        idx = ipr.link_lookup(ifname="eth0")[0]
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # root namespace, as the attaching thread
    try:
        with pytest.raises(OSError) as e:
            fp.attach(idx, "eth0", s)
        assert e.value.errno == errno.ESTALE, e.value
        assert calls == []
    finally:
        s.close()
        fp.close()


def test_fastpath_refuses_a_socket_of_another_namespace(world, monkeypatch) -> None:
    from pymacvlan.backends.userspace import fastpath

    P, _ = world
    calls = _refusing_tc_attach(monkeypatch, fastpath)
    fp = fastpath.FastPath(P)
    with identity.ipr_in(P) as ipr:
        idx = ipr.link_lookup(ifname="eth0")[0]
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # the root namespace's
    try:
        with pytest.raises(OSError, match="another namespace"):
            fp.attach(idx, "eth0", s)
        assert calls == []
    finally:
        s.close()
        fp.close()


def test_shield_and_fastpath_leave_other_tools_filters_and_their_clsact(world) -> None:
    """pymacvlan made the clsact; another tool then put filters on both hooks: stopping removes
    our two filters and nothing else (the old code deleted the whole qdisc, egress filters of
    others included, and every filter whose name contained ours)."""
    from pymacvlan.backends.userspace import Datapath, DatapathConfig, ParentConfig

    P, _ = world
    dp = Datapath(DatapathConfig(ParentConfig("eth0", P), shield=True, children="veth", fastpath=True)).start()
    try:
        assert dp.fastpath is not None, dp.fastpath_error
        assert {"pmv_shield", "pmv_fastpath"} <= _names(P)
        _other_tool(P, qdisc=False)
    finally:
        dp.close()
    assert not {"pmv_shield", "pmv_fastpath"} & _names(P)
    _others_intact(P)


def test_a_parent_that_is_another_device_now_is_left_alone(world, caplog) -> None:
    """The parent was replaced (deleted, and a device of the same name made with the same ifindex
    impossible, so: another MAC) between attach and stop: the shield does not touch it."""
    from pymacvlan.backends.userspace.shield import Shield

    P, _ = world
    sh_ = Shield("eth0", P)
    try:
        assert "pmv_shield" in _names(P)
        sh("ip", "-n", P, "link", "set", "eth0", "address", "02:00:00:00:19:19")  # not through pymacvlan
        with caplog.at_level("WARNING"):
            sh_.close()
        assert "pmv_shield" in _names(P)  # left alone, and said so
        assert any("not going to detach the shield" in r.getMessage() for r in caplog.records)
    finally:
        sh("tc", "-n", P, "qdisc", "del", "dev", "eth0", "clsact", check=False)


# -- the daemon: start, restart, SIGKILL, stop -------------------------------------------------------------
def test_other_tools_tc_state_survives_daemon_start_restart_sigkill_and_stop(world, lab: Lab, tmp_path: Path) -> None:
    from pymacvlan.links.userspace import Driver
    from pymacvlan.model import LinkRequest, Mode

    from .backends.userspace.test_daemon import DaemonProc

    P, _ = world
    _other_tool(P, qdisc=True)
    A = lab.ns("A")
    d = DaemonProc(tmp_path, P, extra=("--shield", "--fastpath")).start()
    try:
        Driver(d.socket).add(LinkRequest("eth0", "eth0", mode=Mode.BRIDGE, netns=A))
        assert {"pmv_shield", "pmv_fastpath"} <= _names(P)
        _others_intact(P)
        d.stop(signal.SIGTERM)
        _others_intact(P)
        d.start()  # restart (adopts the child)
        _others_intact(P)
        d.stop(signal.SIGKILL)
        _others_intact(P)
        d.start()  # after a crash: replaces only its own filters
        assert {"pmv_shield", "pmv_fastpath"} <= _names(P)
        assert len([n for n in _names(P) if n.startswith("pmv_")]) == 2
        _others_intact(P)
    finally:
        d.stop()
    _others_intact(P)
    assert not {"pmv_shield", "pmv_fastpath"} & _names(P)
