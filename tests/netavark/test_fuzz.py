"""A hypothesis fuzz of every command with generated Network JSON, options, per-container
options and environments (namespace paths, parents, backends): the answer is always success
or ``{"error": ...}`` with exit status 1, never a traceback or an "internal error", and
nothing is left: a refused setup leaves the container's namespace and the host as they were,
a successful one is undone completely by teardown.

The plugin runs in-process (its main()) with this thread inside the lab's host namespace,
so thousands of examples take minutes, not hours. Pools never name anything outside the lab:
parents are the lab's, namespace paths are the lab's container or files of our own, the
userspace backend is pointed at a socket that does not exist (no one's daemon is touched).
CI runs PMV_NETAVARK_FUZZ_EXAMPLES (default 150); the full run sets it to 3000.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pymacvlan.backends.kernel.topology import in_netns
from pymacvlan.netavark.config import OPTIONS
from pymacvlan.netavark.plugin import main

from .conftest import NET_ID, Lab, ip, live_marks

pytestmark = live_marks()

EXAMPLES = int(os.environ.get("PMV_NETAVARK_FUZZ_EXAMPLES", "150"))
NOSOCK = "/nonexistent/pmv-fuzz.sock"

junk = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), st.text(max_size=12),
                 st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))
ips4 = st.sampled_from(["10.79.0.40", "10.79.0.41", "10.79.0.1", "10.79.0.0", "10.79.0.255", "10.80.0.5", "300.1.1.1",
                        "10.79.0.040", "", "::1"])
ips6 = st.sampled_from(["fd79::40", "fd79::41", "fd79::1", "fe80::1", "fd80::1", "::", "fd79::g"])
any_ip = st.one_of(ips4, ips6, junk)
subnet = st.fixed_dictionaries(
    {"subnet": st.sampled_from(["10.79.0.0/24", "10.79.0.0/16", "10.79.0.40/24", "fd79::/64", "10.79.0.0/31",
                                "10.79.0.0/33", "nonsense", "10.79.0.0"]) | junk},
    optional={"gateway": any_ip, "lease_range": st.one_of(junk, st.fixed_dictionaries(
        {}, optional={"start_ip": any_ip, "end_ip": any_ip}))})
route = st.fixed_dictionaries(
    {"destination": st.sampled_from(["10.90.0.0/16", "10.90.0.1/16", "fd90::/64", "0.0.0.0/0", "bad"]) | junk},
    optional={"gateway": any_ip, "metric": st.one_of(st.integers(-1, 2**32), junk),
              "route_type": st.sampled_from(["unicast", "blackhole", "unreachable", "prohibit", "nat", ""]) | junk})
opt_values = {
    "mode": st.sampled_from(["", "bridge", "private", "vepa", "passthru", "source", "l2"]),
    "mtu": st.sampled_from(["0", "68", "67", "1280", "1500", "1501", "9000", "-1", "x", "+1400", ""]),
    "metric": st.sampled_from(["0", "50", "99", "4294967295", "4294967296", "-1", "m"]),
    "no_default_route": st.sampled_from(["true", "false", "1", "0", "yes", ""]),
    "bclim": st.sampled_from(["-1", "0", "100", "2147483648", "x"]),
    "host_access": st.sampled_from(["true", "false", "maybe"]),
    "stable_mac": st.sampled_from(["true", "false", "2"]),
    "backend": st.sampled_from(["kernel", "userspace", "ebpf", ""]),
    "socket": st.just(NOSOCK),
    "macaddr": st.sampled_from(["02:00:00:00:00:aa", "02:00:00:00:00:aa,02:00:00:00:00:bb", "03:00:00:00:00:01", "x"]),
    "advertise_addr_nmsgs": st.sampled_from(["0", "1", "2", "4", "-1", "n"]),
    "advertise_addr_ms": st.sampled_from(["100", "99", "2001", "ms"]),
    "parent": st.sampled_from(["pmvP", "pmvNope", ""]),
}
options = st.one_of(junk, st.fixed_dictionaries({}, optional={k: opt_values[k] for k in OPTIONS}),
                    st.dictionaries(st.sampled_from([*OPTIONS, "custom", "isolate"]), st.text(max_size=6) | junk,
                                    max_size=3))


VALID = {
    "name": st.sampled_from(["pmvfuzz", "pmv.fz-1"]), "id": st.just(NET_ID), "driver": st.just("pymacvlan"),
    "network_interface": st.sampled_from(["pmvP", "pmvP", ""]),
    "subnets": st.sampled_from([[{"subnet": "10.79.0.0/24", "gateway": "10.79.0.1"},
                                 {"subnet": "fd79::/64", "gateway": "fd79::1"}],
                                [{"subnet": "10.79.0.0/24"}, {"subnet": "fd79::/64", "gateway": "fd79::1"}], []]),
    "ipv6_enabled": st.booleans(), "internal": st.booleans(), "dns_enabled": st.booleans(),
    "ipam_options": st.sampled_from([{"driver": "host-local"}, {}, {"driver": "none"}]),
    "options": st.fixed_dictionaries({}, optional={
        "mode": st.sampled_from(["", "bridge", "private", "vepa", "passthru", "source"]),
        "mtu": st.sampled_from(["0", "1280", "1500"]), "metric": st.sampled_from(["0", "50", "4294967295"]),
        "no_default_route": st.sampled_from(["true", "false", "1"]), "bclim": st.sampled_from(["-1", "100"]),
        "stable_mac": st.sampled_from(["true", "false"]), "host_access": st.sampled_from(["true", "false"]),
        "advertise_addr_nmsgs": st.sampled_from(["0", "1", "2"]), "advertise_addr_ms": st.just("100")}),
    "routes": st.sampled_from([[], [{"destination": "10.90.0.0/16", "gateway": "10.79.0.9"}],
                               [{"destination": "10.91.0.0/16", "route_type": "blackhole", "metric": 5}]]),
}
WILD = {
    "name": st.sampled_from(["", "bad/name", "-x"]) | junk, "id": st.sampled_from(["", "abc"]) | junk,
    "driver": junk, "network_interface": st.sampled_from(["pmvNope", "lo", "a" * 16, "a/b"]) | junk,
    "subnets": st.lists(subnet, max_size=3) | junk, "ipv6_enabled": junk, "internal": junk, "dns_enabled": junk,
    "ipam_options": st.one_of(junk, st.fixed_dictionaries({}, optional={
        "driver": st.sampled_from(["host-local", "dhcp", "none", "", "bogus"]) | junk})),
    "options": options, "routes": st.lists(route, max_size=2) | junk,
    "network_dns_servers": st.lists(any_ip, max_size=2) | junk,
    "labels": st.dictionaries(st.text(max_size=3), st.text(max_size=3) | junk, max_size=2) | junk,
}


@st.composite
def networks(draw):
    """Mostly a valid network with a few keys made wild (or dropped), so that both the
    refusals and the full setup/teardown path are exercised."""
    n: dict = {k: draw(v) for k, v in VALID.items()}
    if not n["subnets"]:
        n["ipam_options"] = {"driver": "none"}
    if isinstance(n["options"], dict) and n["options"].get("host_access") == "true":
        n["options"]["mode"] = "bridge"
    wild = draw(st.lists(st.sampled_from(sorted(WILD)), max_size=1))
    for key in wild:
        if draw(st.integers(0, 5)) == 0:
            n.pop(key, None)
        else:
            n[key] = draw(WILD[key])
    opts = n.get("options")
    if isinstance(opts, dict) and opts.get("backend") == "userspace":
        opts["socket"] = NOSOCK  # never anyone's daemon
    return n


@st.composite
def per_container(draw):
    o: dict = {"interface_name": draw(st.sampled_from(["eth0", "net1"])),
               "static_ips": draw(st.sampled_from([["10.79.0.40"], ["10.79.0.41", "fd79::41"], ["fd79::40"]]))}
    if draw(st.booleans()):
        o["static_mac"] = draw(st.sampled_from(["02:42:ac:11:00:40", "02-42-ac-11-00-41"]))
    wild = {"interface_name": st.sampled_from(["", "a" * 16, "a/b", "lo"]) | junk,
            "static_ips": st.lists(any_ip, max_size=3) | junk,
            "static_mac": st.sampled_from(["03:00:00:00:00:01", "00:00:00:00:00:00", "zz", "02:42"]) | junk,
            "aliases": st.lists(st.text(max_size=3), max_size=1) | junk,
            "options": st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=1) | junk}
    for key in draw(st.lists(st.sampled_from(sorted(wild)), max_size=1)):
        if draw(st.integers(0, 5)) == 0:
            o.pop(key, None)
        else:
            o[key] = draw(wild[key])
    return o


def run(lab: Lab, argv: list[str], data: bytes) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    stdin = io.TextIOWrapper(io.BytesIO(data))
    old = sys.stdin
    sys.stdin = stdin
    try:
        with in_netns(lab.host), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(argv)
    finally:
        sys.stdin = old
    for pid in re.findall(r"the rest from pid (\d+)", err.getvalue()):
        os.waitpid(int(pid), 0)  # the announcer child (a fork of this process) ends by itself
    return rc, out.getvalue(), err.getvalue()


def check_answer(rc: int, out: str, err: str, command: str) -> dict | None:
    assert "Traceback" not in err, err
    assert rc in (0, 1), rc
    if rc == 1:
        answer = json.loads(out)
        assert set(answer) == {"error"} and isinstance(answer["error"], str) and answer["error"], answer
        assert not answer["error"].startswith("internal error"), answer
        return None
    if command == "teardown":
        assert out == "", out
        return None
    answer = json.loads(out)
    assert isinstance(answer, dict)
    return answer


def clean(lab: Lab, ns: str, host_before: set[str]) -> None:
    assert lab.links(ns) == ["lo"], lab.links(ns)
    assert ip("-n", ns, "route", "show", "table", "main").strip() == ""
    assert ip("-n", ns, "-6", "route", "show", "table", "main").strip() == ""
    assert set(lab.links(lab.host)) == host_before


@pytest.fixture(scope="module")
def fuzz_ns(lab):
    """The container namespace every example uses (it must be clean after each); the lab's
    host gets an address and a default route, so an empty network_interface finds a parent."""
    ip("-n", lab.host, "addr", "add", "10.79.0.2/24", "dev", lab.parent)
    ip("-n", lab.host, "route", "add", "default", "via", "10.79.0.1")
    ns = lab.container()
    yield ns
    lab.drop(ns)


SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=os.environ.get("CI", "") != "",
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large, HealthCheck.filter_too_much])


@SETTINGS
@given(net=networks() | junk)
def test_create(lab, monkeypatch, net):
    monkeypatch.setenv("PYMACVLAN_NETAVARK_STATE_DIR", str(lab.tmp / "fuzz-state"))
    rc, out, err = run(lab, ["create"], json.dumps(net).encode())
    answer = check_answer(rc, out, err, "create")
    if answer is not None:
        assert (answer["name"], answer["id"], answer["driver"]) == (net["name"], net["id"], net["driver"])
        assert answer["dns_enabled"] is False


@SETTINGS
@given(net=networks(), opts=per_container() | junk, where=st.sampled_from(["ns"] * 5 + ["missing", "file", "dir"]),
       top=st.fixed_dictionaries({}, optional={"container_id": st.text(max_size=5) | junk,
                                              "container_name": st.text(max_size=5) | junk,
                                              "port_mappings": junk}),
       full=st.integers(0, 3))
def test_setup_teardown(lab, fuzz_ns, monkeypatch, net, opts, where, top, full):
    monkeypatch.setenv("PYMACVLAN_NETAVARK_STATE_DIR", str(lab.tmp / "fuzz-state"))
    monkeypatch.setenv("PYMACVLAN_SOCKET", NOSOCK)
    path = {"ns": f"/run/netns/{fuzz_ns}", "missing": "/run/netns/pmv-no-such-ns", "file": str(lab.tmp / "afile"),
            "dir": str(lab.tmp)}[where]
    (lab.tmp / "afile").write_text("not a namespace")
    raw: dict = {"container_id": "pmvfuzz1", "container_name": "pmvfuzz", "network": net, "network_options": opts}
    if not full:  # one in four: the top-level keys made wild
        raw.update(top)
    host_before = set(lab.links(lab.host))
    rc, out, err = run(lab, ["setup", path], json.dumps(raw).encode())
    answer = check_answer(rc, out, err, "setup")
    event("setup ok" if answer is not None else "setup refused")
    if answer is not None:
        assert where == "ns"
        (ifname, iface), = answer["interfaces"].items()
        assert re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", iface["mac_address"])
        assert fuzz_ns and ifname in lab.links(fuzz_ns)
        rc, out, err = run(lab, ["teardown", path], json.dumps(raw).encode())
        check_answer(rc, out, err, "teardown")
        assert rc == 0, out
    else:
        rc, out, err = run(lab, ["teardown", path], json.dumps(raw).encode())
        check_answer(rc, out, err, "teardown")
    clean(lab, fuzz_ns, host_before)


@SETTINGS
@given(argv=st.lists(st.sampled_from(["info", "create", "setup", "teardown", "", "x", "/run/netns/pmv-none"]),
                     max_size=3),
       data=st.binary(max_size=40) | st.sampled_from([b"{}", b"[]", b"null", b'{"network": {}}', b"\xff"]))
def test_any_invocation(lab, fuzz_ns, monkeypatch, argv, data):
    monkeypatch.setenv("PYMACVLAN_NETAVARK_STATE_DIR", str(lab.tmp / "fuzz-state"))
    host_before = set(lab.links(lab.host))
    rc, out, err = run(lab, argv, data)
    check_answer(rc, out, err, (argv or ["info"])[0])
    clean(lab, fuzz_ns, host_before)
