"""Live tests of `pymacvlan trace --backend kernel`: a real macvlan host in pmv namespaces
(the kernel backend's topology: parent P, wire W, each child in its own namespace), frames
from the wire and from children, and the trace's -j --verify objects checked against what the
test knows the kernel does. Needs root; under CI=true these run instead of skipping."""

from __future__ import annotations

import itertools
import json
import os
import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pymacvlan.backends.kernel import unavailable_reason
from pymacvlan.backends.kernel.nl import linkinfo_data
from pymacvlan.backends.kernel.topology import Topology, in_netns
from pymacvlan.model import MODES, MacaddrMode
from pymacvlan.netlab import sh
from tests.ci import live_marks

_REASON = unavailable_reason()
pytestmark = live_marks(_REASON)

SRC = str(Path(__file__).resolve().parents[2] / "src")
E = "02:00:00:00:00:99"  # a station on the wire
F = "02:00:00:00:00:98"  # another one, on source child s's list
BCAST = "ff:ff:ff:ff:ff:ff"
#: name → (kind, mode, MAC): several modes, a macvtap among them
CHILDREN = {"a": ("macvlan", "bridge", "02:00:00:00:00:0a"), "b": ("macvlan", "bridge", "02:00:00:00:00:0b"),
            "c": ("macvlan", "private", "02:00:00:00:00:0c"), "d": ("macvlan", "vepa", "02:00:00:00:00:0d"),
            "t": ("macvtap", "vepa", "02:00:00:00:00:0f"), "s": ("macvlan", "source", "02:00:00:00:00:05")}
_mark = itertools.count(1)


def frame(dst: str, src: str) -> bytes:
    """60 bytes whose payload is unique to this call."""
    return bytes.fromhex((dst + src).replace(":", "") + "88b5") + next(_mark).to_bytes(4, "big") * 11 + b"\0\0"


def sources(*macs: str) -> dict:
    return {"attrs": [("IFLA_MACVLAN_MACADDR", m) for m in macs]}


def build(wire: str) -> Topology:
    topo = Topology(wire=wire, parent_mac="02:00:00:00:00:01").create()
    try:
        for name, (kind, mode, mac) in CHILDREN.items():
            extra = {"macaddr_mode": int(MacaddrMode.SET), "macaddr_data": sources(F)} if mode == "source" else {}
            child = topo.add_child(name, kind, {"address": mac, **linkinfo_data(kind, mode=int(MODES[mode]), **extra)})
            child.ipr.link("set", index=child.index, state="up")
        topo.settle()
    except BaseException:
        topo.teardown()
        raise
    return topo


class Trace:
    """`pymacvlan trace --backend kernel -j --verify` running against a topology."""

    def __init__(self, topo: Topology, *extra: str) -> None:
        self.topo = topo
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pymacvlan.cli.main", "trace", "--backend", "kernel", "-n", topo.ns_parent,
             "-j", "--verify", "--wire", topo.wire, *extra],
            env={**os.environ, "PYTHONPATH": SRC}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()
        assert line.startswith("tracing "), line + self.proc.stderr.read()

    def send(self, where: str, data: bytes) -> None:
        ns, ifname = (self.topo.ns_wire, self.topo.wire_ifname) if where == "wire" else \
            (self.topo.children[where].ns, self.topo.children[where].ifname)
        with in_netns(ns):
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        with sock:
            sock.bind((ifname, 0))
            sock.send(data)

    def event(self, data: bytes, timeout: float = 5.0) -> dict:
        """The next event on stdout, which must be about ``data``."""
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        assert sel.select(timeout), "no event from the trace: " + self.stop()
        line = self.proc.stdout.readline()
        assert line, "the trace ended: " + self.stop()
        ev = json.loads(line)
        assert (ev["src"], ev["dst"]) == (data[6:12].hex(":"), data[0:6].hex(":")), ev
        return ev

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            _out, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _out, err = self.proc.communicate()
        return err


@pytest.fixture(scope="module", params=["plain", "hairpin"])
def host(request):
    topo = build(request.param)
    yield topo
    topo.teardown()


@pytest.fixture
def trace(host):
    tr = Trace(host)
    yield tr
    tr.stop()


def expect(tr: Trace, where: str, data: bytes, delivered: set[str], observed: set[str] | None = None) -> dict:
    tr.send(where, data)
    ev = tr.event(data)
    assert ev["from"] == ("wire" if where == "wire" else where)
    assert set(ev["delivered"]) - {"@parent"} == delivered, ev
    assert set(ev["observed"]) == (delivered if observed is None else observed), ev
    return ev


def test_verify_names_exactly_the_children_that_received_each_frame(host, trace) -> None:
    hairpin = host.wire == "hairpin"
    # from the wire: a broadcast floods every up child; unicast reaches only its owner
    ev = expect(trace, "wire", frame(BCAST, E), {"a", "b", "c", "d", "t"})
    assert ev["agrees"] and "@parent" in ev["delivered"] and not ev.get("salted")
    assert ev["parent"] == host.parent_ifname and ev["wire"] == host.wire
    assert {t["device"] for t in ev["trace"]} == {"@wire", "@parent", *CHILDREN}
    assert expect(trace, "wire", frame(CHILDREN["c"][2], E), {"c"})["agrees"]
    # bridge → bridge sibling: switched locally, never on the wire (its echo into the parent
    # is part of the event, not a new frame from the wire)
    assert expect(trace, "a", frame(CHILDREN["b"][2], CHILDREN["a"][2]), {"b"})["agrees"]
    # vepa → vepa sibling: only a hairpin brings it back
    ev = expect(trace, "d", frame(CHILDREN["t"][2], CHILDREN["d"][2]), {"@wire", "t"} if hairpin else {"@wire"})
    assert ev["agrees"]
    # a vepa child's broadcast: reflected to the other vepa and bridge children, never to
    # private ones nor back to the sender
    ev = expect(trace, "d", frame(BCAST, CHILDREN["d"][2]), {"@wire", "a", "b", "t"} if hairpin else {"@wire"})
    assert ev["agrees"]
    # a private child's broadcast comes back only to itself
    ev = expect(trace, "c", frame(BCAST, CHILDREN["c"][2]), {"@wire", "c"} if hairpin else {"@wire"})
    assert ev["agrees"]
    # a bridge child's broadcast: local flood to the bridge sibling, and the wire
    ev = expect(trace, "a", frame(BCAST, CHILDREN["a"][2]), {"@wire", "b", "d", "t"} if hairpin else {"@wire", "b"})
    assert ev["agrees"]


def test_mirror_follows_mode_mac_and_down_while_tracing(host, trace) -> None:
    d, a, b = (host.children[n] for n in "dab")
    try:
        # d: vepa → bridge; its unicast to bridge child b is now switched locally
        d.ipr.link("set", index=d.index, kind="macvlan", **linkinfo_data("macvlan", mode=int(MODES["bridge"])))
        ev = expect(trace, "d", frame(CHILDREN["b"][2], CHILDREN["d"][2]), {"b"})
        assert ev["agrees"] and any("bridge child d" in h for h in ev["path"])
        # a gets a new MAC: the old one goes to the parent's stack, the new one to a
        a.ipr.link("set", index=a.index, address="02:00:00:00:00:1a")
        assert expect(trace, "wire", frame("02:00:00:00:00:1a", E), {"a"})["agrees"]
        assert expect(trace, "wire", frame(CHILDREN["a"][2], E), set())["agrees"]
        # b goes down: no more floods for it
        b.ipr.link("set", index=b.index, state="down")
        ev = expect(trace, "wire", frame(BCAST, E), {"a", "c", "d", "t"})
        assert ev["agrees"]
        rules = {t["device"]: t["rules"] for t in ev["trace"]}
        assert any("down" in r for r in rules["b"])
    finally:
        d.ipr.link("set", index=d.index, kind="macvlan", **linkinfo_data("macvlan", mode=int(MODES["vepa"])))
        a.ipr.link("set", index=a.index, address=CHILDREN["a"][2])
        b.ipr.link("set", index=b.index, state="up")
        host.settle()


def test_mirror_follows_source_lists_and_joined_groups(host, trace) -> None:
    s, c = host.children["s"], host.children["c"]
    to_c = CHILDREN["c"][2]
    # F is on s's list: s gets a copy of what F sends, whoever it is for
    assert expect(trace, "wire", frame(to_c, F), {"c", "s"})["agrees"]
    s.ipr.link("set", index=s.index, kind="macvlan", **linkinfo_data("macvlan", macaddr_mode=int(MacaddrMode.FLUSH)))
    try:
        assert expect(trace, "wire", frame(to_c, F), {"c"})["agrees"]
    finally:
        s.ipr.link("set", index=s.index, kind="macvlan",
                   **linkinfo_data("macvlan", macaddr_mode=int(MacaddrMode.SET), macaddr_data=sources(F)))
    # c joins a group: `ip maddr` sends no netlink event; the trace polls the lists (0.5 s)
    group = "01:00:5e:01:02:03"
    sh("ip", "-n", c.ns, "maddr", "add", group, "dev", c.ifname)
    try:
        time.sleep(1.2)
        data = frame(group, E)
        trace.send("wire", data)
        ev = trace.event(data)
        assert "c" in ev["delivered"] and "c" in ev["observed"] and ev["agrees"], ev
        # the others' filters are salted: the kernel decides by chance, and it is said so
        assert set(ev["salted"]) == {"a", "b", "d", "t"}
        assert "s" not in ev["delivered"] + ev["observed"]
    finally:
        sh("ip", "-n", c.ns, "maddr", "del", group, "dev", c.ifname)


def test_a_child_created_and_moved_away_while_tracing_is_found_where_it_went(host, trace) -> None:
    mac = "02:00:00:00:00:1e"
    n = host.add_child("n", "macvlan", {"address": mac, **linkinfo_data("macvlan", mode=int(MODES["bridge"]))})
    try:
        n.ipr.link("set", index=n.index, state="up")
        host.settle()
        time.sleep(1.0)  # seen leaving the parent's namespace: looked for again within 0.3 s
        ev = expect(trace, "wire", frame(mac, E), {"n"})
        assert ev["agrees"] and "n" in {t["device"] for t in ev["trace"]}
    finally:
        host.del_child("n")
    time.sleep(0.3)
    assert expect(trace, "wire", frame(mac, E), set())["agrees"]


def test_a_wire_the_engine_was_not_told_about_is_a_loud_disagreement(host) -> None:
    """The trace is told the other wire: a vepa child's broadcast then comes back (or not)
    against the engine's word, and the object carries everything needed to reproduce it."""
    told = "plain" if host.wire == "hairpin" else "hairpin"
    tr = Trace(host, "--wire", told)  # the last --wire wins
    try:
        data = frame(BCAST, CHILDREN["d"][2])
        tr.send("d", data)
        ev = tr.event(data)
        reflected = {"a", "b", "t"}
        assert not ev["agrees"] and ev["wire"] == told
        if told == "plain":
            assert ev["delivered"] == ["@wire"] and set(ev["observed"]) == {"@wire", *reflected}
        else:
            assert reflected <= set(ev["delivered"]) and ev["observed"] == ["@wire"]
        bad = ev["disagreement"]
        assert any(("only kernel" if told == "plain" else "only engine") in d for d in bad["differences"])
        assert set(bad["mirror"]["children"]) == set(CHILDREN)
        # the scenario loads as is: the same mirror, the frame, and what the kernel did
        from pymacvlan.scenario import load_scenario

        sc = load_scenario(bad["scenario"])
        assert sc["wire"] == told
        last = sc["steps"][-1]
        assert last["do"] == "inject" and last["at"] == "child:d" and last["frame"] == data.hex()
        got = {n for n, v in last["expect"]["observed"]["children"].items() if v}
        assert got == (reflected if told == "plain" else set())
    finally:
        err = tr.stop()
    assert "DISAGREEMENT" in err


def test_pcap_of_a_kernel_trace_opens_in_tshark_with_the_verdicts(host, tmp_path: Path) -> None:
    path = tmp_path / "k.pcapng"
    tr = Trace(host, "--pcap", str(path))
    try:
        frames = [frame(BCAST, E), frame(CHILDREN["b"][2], CHILDREN["a"][2])]
        tr.send("wire", frames[0])
        tr.event(frames[0])
        tr.send("a", frames[1])
        tr.event(frames[1])
    finally:
        tr.stop()
    r = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.interface_name", "-e", "eth.src",
                        "-e", "frame.comment"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    rows = [line.split("\t") for line in r.stdout.split(f"{host.parent_ifname}\t")[1:]]
    assert [row[0] for row in rows] == [E, CHILDREN["a"][2]]
    assert "from wire" in rows[0][1] and "observed:     a, b, c, d, t (agrees" in rows[0][1]
    assert "from a on" in rows[1][1] and "delivered to: b" in rows[1][1]
