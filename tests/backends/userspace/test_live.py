"""Live tests of the userspace datapath: real frames between TAP children, macvtap endpoints
and a station on the other end of a veth parent, all in this run's pmv namespaces.

Topology (``Lab``): namespace P holds the parent veth ``pmv<tag>p``; its peer ``pmv<tag>w``
sits in namespace W as a station (10.77.0.100/24). Each macvlan child is a TAP created
directly in its own namespace (A, B, ...) as ``eth0``. Skipped without root unless CI=true.
Fixtures stop the datapath (its thread, by handle) before deleting the namespaces, even
when a test fails.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP, Ether

from pymacvlan.backends.userspace import (
    Datapath,
    DatapathConfig,
    DgramEndpoint,
    ParentConfig,
    StreamEndpoint,
    TapFdEndpoint,
)
from pymacvlan.backends.userspace.endpoints import recv_fd
from pymacvlan.daemon.trace import FrameTracer, TraceFilter
from pymacvlan.netns import in_netns
from tests.ci import live_marks

from .netlab import Lab, leftovers, live_unavailable, ping, sh, tcp_transfer

_REASON = live_unavailable()
pytestmark = live_marks(_REASON)

MAC_A, MAC_B, MAC_T = (bytes.fromhex(f"0200000000{x}") for x in ("0a", "0b", "0c"))
STATION = "10.77.0.100"


class World:
    """The namespaces of one test and the datapath running over them."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.P = lab.ns("P")
        self.W = lab.ns("W")
        self.parent = lab.ifname("p")
        self.wire = lab.ifname("w")
        lab.veth(self.parent, self.P, self.wire, self.W)
        sh("ip", "-n", self.W, "addr", "add", f"{STATION}/24", "dev", self.wire)
        self.dp: Datapath | None = None

    #: DatapathConfig fields of the path under test (PATHS); the fixtures run every test with each
    path: dict = {}

    def start(self, shield: bool = False, **parent_kw) -> Datapath:
        pcfg = ParentConfig(parent_kw.pop("ifname", self.parent), self.P, **parent_kw)
        self.dp = Datapath(DatapathConfig(pcfg, shield=shield, **self.path)).start()
        return self.dp

    def child(self, role: str, mode: str, mac: bytes, ip: str | None) -> str:
        ns = self.lab.ns(role)
        self.dp.add_macvlan(role.lower(), mode, netns=ns, ifname="eth0", mac=mac)
        if ip:
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        return ns

    def wait_up(self, name: str, timeout: float = 3.0) -> None:
        """The TAP's `ip link set up` reaches the engine through the link monitor."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.dp.call(lambda: self.dp.engine.child(name).up):
                return
            time.sleep(0.01)
        raise AssertionError(f"child {name} never came up in the engine")

    def close(self) -> None:
        if self.dp is not None:
            self.dp.close()
            self.dp = None


#: the datapath's ways of carrying a child's frames: TAP children, veth children with rings,
#: and those with the eBPF fast path
PATHS = {"tap": {"children": "tap", "fastpath": False}, "veth": {"children": "veth", "fastpath": False},
         "fast": {"children": "veth", "fastpath": True}}


@contextmanager
def world_on(path: str) -> Iterator[World]:
    """A World whose datapath carries frames the PATHS[path] way; everything removed after,
    even when the test fails (the datapath first, then the namespaces)."""
    lab = Lab()
    w = None
    try:
        w = World(lab)
        w.path = PATHS[path]
        yield w
    finally:
        if w is not None:
            w.close()
        lab.close()
        assert not leftovers(lab.tag), f"leftover namespaces or links: {leftovers(lab.tag)}"


@pytest.fixture(params=list(PATHS))
def world(request):
    with world_on(request.param) as w:
        yield w


def _frames(sock: socket.socket, timeout: float, framing: str = "stream"):
    """Yield frames a client gets (stream: 4-byte BE length framing) until the timeout."""
    buf = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            return
        if framing == "dgram":
            yield sock.recv(70000)
            continue
        chunk = sock.recv(1 << 20)
        if not chunk:
            return
        buf += chunk
        while len(buf) >= 4 and len(buf) >= 4 + struct.unpack_from("!I", buf)[0]:
            n = struct.unpack_from("!I", buf)[0]
            yield buf[4:4 + n]
            buf = buf[4 + n:]


def _arp_request(src_mac: bytes, src_ip: str, dst_ip: str) -> bytes:
    m = src_mac.hex(":")
    return bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src=m) / ARP(op=1, hwsrc=m, psrc=src_ip, pdst=dst_ip))


def _wait_for(pred, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


# -- macvlan children ------------------------------------------------------------------------------
def test_bridge_children_ping_each_other_and_the_station(world: World) -> None:
    world.start()
    a = world.child("A", "bridge", MAC_A, "10.77.0.1")
    b = world.child("B", "bridge", MAC_B, "10.77.0.2")
    world.wait_up("a")
    world.wait_up("b")
    assert ping(a, "10.77.0.2") == 3
    assert ping(b, "10.77.0.1") == 3
    assert ping(a, STATION) == 3
    assert ping(world.W, "10.77.0.2") == 3
    st = world.dp.stats()
    assert st["children"]["a"]["tx"]["packets"] >= 6 and st["children"]["b"]["rx"]["packets"] >= 6
    # both MACs are in the parent's unicast list (veth has no filter: the kernel made it promisc)
    assert ("unicast", MAC_A.hex(":")) in st["parent"]["memberships"]


def test_private_mode_blocks_arp_between_children(world: World) -> None:
    dp = world.start()
    a = world.child("A", "private", MAC_A, "10.77.0.1")
    world.child("B", "private", MAC_B, "10.77.0.2")
    world.wait_up("a")
    world.wait_up("b")
    tx_a = dp.stats()["children"]["a"]["tx"]["packets"]
    assert ping(a, "10.77.0.2", count=2, timeout=1.0) == 0  # ARP never reaches a private sibling
    assert dp.stats()["children"]["a"]["tx"]["packets"] > tx_a  # evidence: A's ARP did reach the datapath
    assert ping(a, STATION) == 3  # positive control: a's frames do cross the datapath
    assert ping(world.W, "10.77.0.1") == 3  # floods from outside do
    assert ping(world.W, "10.77.0.2") == 3


def test_vepa_children_need_a_hairpin(world: World) -> None:
    dp = world.start()
    a = world.child("A", "vepa", MAC_A, "10.77.0.1")
    world.child("B", "vepa", MAC_B, "10.77.0.2")
    world.wait_up("a")
    world.wait_up("b")
    tx_a = dp.stats()["children"]["a"]["tx"]["packets"]
    assert ping(a, "10.77.0.2", count=2, timeout=1.0) == 0  # the veth peer does not reflect
    assert dp.stats()["children"]["a"]["tx"]["packets"] > tx_a  # evidence: A's ARP did reach the datapath
    assert ping(a, STATION) == 3


def test_tcp_between_children_crosses_as_gso(world: World) -> None:
    world.start()
    a = world.child("A", "bridge", MAC_A, "10.77.0.1")
    b = world.child("B", "bridge", MAC_B, "10.77.0.2")
    world.wait_up("a")
    world.wait_up("b")
    n, _secs = tcp_transfer(b, "10.77.0.2", a, 32 << 20)
    assert n == 32 << 20
    n, _secs = tcp_transfer(world.W, STATION, a, 16 << 20)
    assert n == 16 << 20
    st = world.dp.stats()
    # 48 MB in far fewer frames than MSS-sized segments: 64 KB GSO frames crossed whole
    assert st["children"]["a"]["tx"]["packets"] < (48 << 20) // 1448 // 4
    assert not st["parent"]["drops"], st["parent"]["drops"]


def test_carrier_and_admin_state_follow(world: World) -> None:
    dp = world.start()
    a = world.child("A", "bridge", MAC_A, "10.77.0.1")
    world.wait_up("a")

    def lower_up() -> bool:
        out = sh("ip", "-n", a, "-o", "link", "show", "eth0").stdout
        return "LOWER_UP" in out.split(">")[0]

    assert _wait_for(lower_up)
    sh("ip", "-n", world.W, "link", "set", world.wire, "down")  # veth: the parent loses carrier
    assert _wait_for(lambda: not lower_up())
    sh("ip", "-n", world.W, "link", "set", world.wire, "up")
    assert _wait_for(lower_up)
    # the child going down leaves the parent's filter; its promiscuity (veth) drops back
    sh("ip", "-n", a, "link", "set", "eth0", "down")
    assert _wait_for(lambda: not dp.call(lambda: dp.engine.child("a").up))
    assert _wait_for(lambda: "promiscuity 0" in sh("ip", "-d", "-n", world.P, "link", "show", world.parent).stdout)


def test_duplicate_mac_is_refused_like_eaddrinuse(world: World) -> None:
    dp = world.start()
    world.child("A", "bridge", MAC_A, None)
    world.wait_up("a")
    b = world.lab.ns("B")
    dp.add_macvlan("b", "bridge", netns=b, ifname="eth0", mac=MAC_A)
    sh("ip", "-n", b, "link", "set", "eth0", "up")
    assert _wait_for(lambda: dp.stats()["datapath"].get("child_up_refused", 0) == 1)
    assert _wait_for(
        lambda: (
            "UP" not in sh("ip", "-n", b, "-o", "link", "show", "eth0").stdout.split("<")[1].split(">")[0].split(",")
        )
    )


def test_child_namespace_deleted_is_counted_and_released(world: World) -> None:
    dp = world.start()
    a = world.child("A", "bridge", MAC_A, "10.77.0.1")
    world.child("B", "bridge", MAC_B, "10.77.0.2")
    world.wait_up("a")
    sh("ip", "netns", "del", a)
    world.lab.namespaces.remove(a)
    assert _wait_for(lambda: dp.stats()["datapath"].get("child_netns_gone") == 1, timeout=5)
    assert "a" not in dp.stats()["children"]
    assert ping(world.W, "10.77.0.2") == 3


# -- VLAN parent without 8021q -----------------------------------------------------------------------------
def test_vlan_parent_in_userspace(world: World) -> None:
    world.start(ifname=f"{world.parent}.11")
    a = world.child("A", "bridge", MAC_A, "10.77.0.1")
    world.wait_up("a")
    with in_netns(world.W):
        # ETH_P_ALL: protocol-specific packet sockets get a frame only after the core has
        # cleared its (unclaimed) tag; the ptype_all taps see it in PACKET_AUXDATA
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    try:
        s.bind((world.wire, 0))
        s.setsockopt(263, 8, 1)  # PACKET_AUXDATA
        station = "02:00:00:00:00:99"
        req = bytes(
            Ether(dst="ff:ff:ff:ff:ff:ff", src=station) / ARP(op=1, hwsrc=station, psrc="10.77.0.99", pdst="10.77.0.1")
        )
        s.send(req)  # untagged: not for the VLAN parent
        s.send(req[:12] + struct.pack("!HH", 0x8100, 11) + req[12:])
        s.settimeout(0.5)
        replies = []
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            try:
                data, anc, _f, _a = s.recvmsg(2048, 64)
            except TimeoutError:
                break
            e = Ether(data)
            if e.haslayer(ARP) and e[ARP].op == 2 and e.src == MAC_A.hex(":"):
                tci = [struct.unpack_from("IIIHHHH", d)[5] for lvl, t, d in anc if lvl == 263 and t == 8]
                replies.append(tci[0] if tci else None)
        assert replies == [11], replies  # exactly one reply, tagged with VID 11
    finally:
        s.close()
    assert ping(a, STATION, count=1, timeout=1.0) == 0  # the station has no VLAN 11 address


# -- macvtap endpoints -----------------------------------------------------------------------------------
def test_qemu_stream_client_exchanges_frames_with_a_child(world: World, tmp_path) -> None:
    dp = world.start()
    world.child("A", "bridge", MAC_A, "10.77.0.1")
    world.wait_up("a")
    path = str(tmp_path / "t.sock")
    dp.add_macvtap("t", StreamEndpoint("t", path), "bridge", mac=MAC_T)
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        c.connect(path)
        assert _wait_for(lambda: dp.stats()["children"]["t"]["endpoint"]["connected"])
        req = _arp_request(MAC_T, "10.77.0.50", "10.77.0.1")
        # one frame split over two writes: partial reads must be reassembled
        framed = struct.pack("!I", len(req)) + req
        c.sendall(framed[:7])
        time.sleep(0.05)
        c.sendall(framed[7:])
        reply = next((f for f in _frames(c, 3.0) if Ether(f).haslayer(ARP) and Ether(f)[ARP].op == 2), None)
        assert reply is not None and Ether(reply).dst == MAC_T.hex(":")
        assert Ether(reply)[ARP].hwsrc == MAC_A.hex(":")
        echo = bytes(
            Ether(dst=MAC_A.hex(":"), src=MAC_T.hex(":"))
            / IP(src="10.77.0.50", dst="10.77.0.1")
            / ICMP(id=7, seq=1)
            / (b"q" * 100)
        )
        c.sendall(struct.pack("!I", len(echo)) + echo)
        got = next((f for f in _frames(c, 3.0) if Ether(f).haslayer(ICMP) and Ether(f)[ICMP].type == 0), None)
        assert got is not None and Ether(got)[ICMP].id == 7
    finally:
        c.close()


def test_stream_garbage_and_a_stalled_reader_do_not_stop_the_datapath(world: World, tmp_path) -> None:
    dp = world.start()
    a = world.child("A", "bridge", MAC_A, "10.77.0.1")
    world.child("B", "bridge", MAC_B, "10.77.0.2")
    world.wait_up("a")
    world.wait_up("b")
    path = str(tmp_path / "t.sock")
    dp.add_macvtap("t", StreamEndpoint("t", path), "bridge", mac=MAC_T)
    bad = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bad.connect(path)
    bad.sendall(struct.pack("!I", 0xFFFFFF) + b"garbage")
    assert _wait_for(lambda: dp.stats()["children"]["t"]["endpoint"]["counters"].get("bad_length_disconnect") == 1)
    bad.close()
    stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        stalled.connect(path)
        assert _wait_for(lambda: dp.stats()["children"]["t"]["endpoint"]["connected"])
        # broadcasts from the station flood every child, the stalled reader included
        with in_netns(world.W):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        s.bind((world.wire, 0))
        frame = bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src="02:00:00:00:00:99", type=0x88B5) / (b"x" * 1400))
        for _ in range(5000):
            try:
                s.send(frame)
            except BlockingIOError:
                time.sleep(0.001)
        s.close()
        assert _wait_for(lambda: dp.stats()["children"]["t"]["endpoint"]["counters"].get("rx_queue_full", 0) > 0)
        t = dp.stats()["children"]["t"]
        assert t["endpoint"]["queued"] <= 500
        assert t["rx"]["errors"] == t["endpoint"]["counters"]["rx_queue_full"]
        assert ping(a, "10.77.0.2") == 3
    finally:
        stalled.close()


def test_dgram_endpoint(world: World, tmp_path) -> None:
    dp = world.start()
    world.child("A", "bridge", MAC_A, "10.77.0.1")
    world.wait_up("a")
    ours, theirs = str(tmp_path / "dp.sock"), str(tmp_path / "qemu.sock")
    dp.add_macvtap("t", DgramEndpoint("t", ours), "bridge", mac=MAC_T)
    c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        c.bind(theirs)
        c.sendto(_arp_request(MAC_T, "10.77.0.50", "10.77.0.1"), ours)
        reply = next((f for f in _frames(c, 3.0, "dgram") if Ether(f).haslayer(ARP) and Ether(f)[ARP].op == 2), None)
        assert reply is not None and Ether(reply)[ARP].hwsrc == MAC_A.hex(":")
    finally:
        c.close()


def test_tap_fd_handover(world: World, tmp_path) -> None:
    dp = world.start()
    world.child("A", "bridge", MAC_A, "10.77.0.1")
    world.wait_up("a")
    x = world.lab.ns("X")
    handover = str(tmp_path / "fd.sock")
    dp.add_macvtap("t", TapFdEndpoint("t", "pmvtap0", handover, netns=x), "bridge", mac=MAC_T)
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(handover)
    fd, _ = recv_fd(c)
    c.close()
    try:
        os.set_blocking(fd, False)
        os.write(fd, bytes(10) + _arp_request(MAC_T, "10.77.0.50", "10.77.0.1"))  # vnet hdr + frame
        deadline = time.monotonic() + 3
        reply = None
        while time.monotonic() < deadline and reply is None:
            r, _, _ = select.select([fd], [], [], 0.2)
            if r:
                data = os.read(fd, 70000)[10:]
                if Ether(data).haslayer(ARP) and Ether(data)[ARP].op == 2:
                    reply = data
        assert reply is not None and Ether(reply)[ARP].hwsrc == MAC_A.hex(":")
    finally:
        os.close(fd)


def test_passthru_sets_promisc_and_releases_it(world: World) -> None:
    dp = world.start()
    p = world.lab.ns("A")
    dp.add_macvlan("pt", "passthru", netns=p, ifname="eth0", up=True)
    out = sh("ip", "-d", "-n", world.P, "link", "show", world.parent).stdout
    assert "promiscuity 1" in out
    assert ("promisc", "") in dp.stats()["parent"]["memberships"]
    dp.delete("pt")
    assert "promiscuity 0" in sh("ip", "-d", "-n", world.P, "link", "show", world.parent).stdout


@pytest.mark.parametrize("shield", [False, True])
def test_shield_keeps_the_parent_stack_from_what_passthru_consumes(world: World, shield: bool) -> None:
    """Kernel passthru consumes every unicast: the parent's own address goes silent. Without
    the shield the parent's stack still answers (the difference the shield removes)."""
    dp = world.start(shield=shield)
    sh("ip", "-n", world.P, "addr", "add", "10.77.0.5/24", "dev", world.parent)
    a = world.lab.ns("A")
    dp.add_macvlan("pt", "passthru", netns=a, ifname="eth0")
    sh("ip", "-n", a, "addr", "add", "10.77.0.1/24", "dev", "eth0")
    sh("ip", "-n", a, "link", "set", "eth0", "up")
    world.wait_up("pt")
    assert ping(world.W, "10.77.0.1") == 3  # the child, reached on the parent's MAC
    assert ping(world.W, "10.77.0.5", count=2, timeout=1.0) == (0 if shield else 2)
    if shield:
        assert dp.stats()["shield"] == {
            "*": ["unicast_to"],
            dp.engine.lower.mac.hex(":"): ["unicast_to", "multicast_from"],
        }
    dp.close()
    out = sh("tc", "-n", world.P, "filter", "show", "dev", world.parent, "ingress", check=False).stdout
    assert "pmv_shield" not in out


# -- the eBPF fast path where it cannot load ----------------------------------------------------------------
def test_a_fast_path_the_verifier_refuses_leaves_the_python_path_running(monkeypatch, caplog) -> None:
    from pymacvlan.backends.userspace import fastpath
    from pymacvlan.backends.userspace.bpf import Asm

    monkeypatch.setattr(fastpath, "program", lambda *a, **kw: Asm().exit().code())  # R0 never set: refused
    with world_on("fast") as w:
        with caplog.at_level("WARNING", logger="pymacvlan.datapath"):
            dp = w.start()
        warnings = [r for r in caplog.records if "fast path unavailable" in r.getMessage()]
        assert len(warnings) == 1 and "verifier" in warnings[0].getMessage()
        a = w.child("A", "bridge", MAC_A, "10.77.0.1")
        w.child("B", "bridge", MAC_B, "10.77.0.2")
        w.wait_up("a")
        w.wait_up("b")
        assert ping(a, "10.77.0.2") == 3 and ping(a, STATION) == 3
        st = dp.stats()
        assert st["path"]["active"] == "python" and "verifier" in st["path"]["reason"]
        assert st["datapath"]["fastpath_unavailable"] == 1
        assert st["children"]["b"]["rx"]["packets"] >= 3  # the Python path carried them


# -- tracing: the same datapath, observed ------------------------------------------------------------------
def test_a_traced_down_macvtap_drops_what_its_client_sends_as_untraced(world: World, tmp_path) -> None:
    """Tracing used to run its own copy of the handlers, which forgot the `up` check: a down
    macvtap's frames went out while someone traced. Now both paths share admission."""
    dp = world.start()
    world.child("A", "bridge", MAC_A, "10.77.0.1")
    world.wait_up("a")
    ours, theirs = str(tmp_path / "dp.sock"), str(tmp_path / "qemu.sock")
    dp.add_macvtap("t", DgramEndpoint("t", ours), "bridge", mac=MAC_T, up=False)
    events: list[dict] = []
    dp.set_observer(FrameTracer("p", [TraceFilter()], events.append, dp.engine))  # explains every frame
    c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        c.bind(theirs)
        for _ in range(3):
            c.sendto(_arp_request(MAC_T, "10.77.0.50", "10.77.0.1"), ours)
        assert _wait_for(lambda: dp.stats()["children"]["t"]["tx"]["dropped"] >= 3)
        assert dp.stats()["children"]["t"]["tx"]["packets"] == 0
        assert not any(ev["from"] == "t" for ev in events)
        # up, the same frames are admitted, explained and answered
        dp.set_up("t", True)
        c.sendto(_arp_request(MAC_T, "10.77.0.50", "10.77.0.1"), ours)
        reply = next((f for f in _frames(c, 3.0, "dgram") if Ether(f).haslayer(ARP) and Ether(f)[ARP].op == 2), None)
        assert reply is not None
        sent = next(ev for ev in events if ev["from"] == "t")
        assert "a" in sent["delivered"] and sent["path"]
        assert any(ev["from"] == "a" and "t" in ev["delivered"] for ev in events)  # A's reply, explained
        dp.set_observer(None)
    finally:
        c.close()
