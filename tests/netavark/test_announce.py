"""The announcement after setup, seen from a station on the wire: its neighbour table follows
a redeployed container's new MAC (IPv4 by gratuitous ARP, IPv6 by unsolicited NA), the
number of rounds is the option's, and with ``advertise_addr_nmsgs=0`` the table keeps the
old MAC (the kernel announces nothing by itself: netavark leaves arp_notify off).

No waiting on the clock for a verdict: after each setup the container sends a UDP broadcast
marker; frames from one interface arrive in order and a station handles each one (its ARP or
NDP included) before the next, so once the station's capture has seen the marker, every
announcement sent before it has been processed.
"""

from __future__ import annotations

import ipaddress
import os
import re
import select
import socket
import struct
import time

from pymacvlan import announce
from pymacvlan.backends.kernel.topology import in_netns

from .conftest import GW6, Lab, ip_json, live_marks, network, per_container

pytestmark = live_marks()

IP4, IP6 = "10.79.0.30", "fd79::30"
MAC1, MAC2, MAC3 = "02:aa:00:00:00:01", "02:aa:00:00:00:02", "02:aa:00:00:00:03"


def capture(lab: Lab) -> socket.socket:
    with in_netns(lab.wire):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
        s.bind(("pmvW", 0))
    return s


def marker(ns: str, token: bytes) -> None:
    with in_netns(ns):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        u.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
        u.sendto(token, ("10.79.0.255", 9))
    finally:
        u.close()


def until_marker(cap: socket.socket, token: bytes, cap_s: float = 10.0) -> list[bytes]:
    """Frames the station saw up to the marker (fails when the marker never comes)."""
    seen, deadline = [], time.monotonic() + cap_s
    while time.monotonic() < deadline:
        r, _, _ = select.select([cap], [], [], 0.2)
        if not r:
            continue
        f = cap.recv(65535)
        if token in f:
            return seen
        seen.append(f)
    raise AssertionError(f"the marker never reached the station ({len(seen)} frames seen)")


def learn(lab: Lab, mac: str) -> None:
    """The station talks to the container (UDP to the discard port): it resolves both
    addresses through ARP / NDP, so its table holds ``mac`` the way a real peer's would."""
    deadline = time.monotonic() + 10
    for target, family in ((IP4, socket.AF_INET), (IP6, socket.AF_INET6)):
        with in_netns(lab.wire):
            u = socket.socket(family, socket.SOCK_DGRAM)
        try:
            while neigh(lab).get(target) != mac:
                assert time.monotonic() < deadline, f"the station never resolved {target}: {neigh(lab)}"
                try:
                    u.sendto(b"hello", (target, 9))
                except OSError:
                    pass  # EHOSTUNREACH while NDP fails (the container's address still tentative)
                time.sleep(0.1)
        finally:
            u.close()


def neigh(lab: Lab) -> dict[str, str]:
    return {n["dst"]: n.get("lladdr") for n in ip_json("-n", lab.wire, "neigh", "show", "dev", "pmvW")}


def deploy(lab: Lab, mac: str, nmsgs: int, ms: int = 100):
    ns = lab.container()
    net = network(driver="pymacvlan", subnets=[{"subnet": "10.79.0.0/24", "gateway": "10.79.0.1"},
                                               {"subnet": "fd79::/64", "gateway": GW6}], ipv6_enabled=True,
                  options={"advertise_addr_nmsgs": str(nmsgs), "advertise_addr_ms": str(ms)})
    opts = per_container(static_ips=[IP4, IP6], mac=mac)
    r = lab.ours("setup", net, opts, ns)
    if r.rc != 0:
        lab.drop(ns)
    assert r.rc == 0, r
    return ns, net, opts, r


def remove(lab: Lab, ns: str, net: dict, opts: dict) -> None:
    t = lab.ours("teardown", net, opts, ns)
    assert (t.rc, t.out) == (0, ""), t
    lab.drop(ns)


def announcements(frames: list[bytes], mac: str) -> tuple[int, int]:
    raw = bytes.fromhex(mac.replace(":", ""))
    garps = [f for f in frames if f[12:14] == b"\x08\x06" and f[22:28] == raw
             and f[28:32] == f[38:42] == ipaddress.IPv4Address(IP4).packed]
    nas = [f for f in frames if f[12:14] == b"\x86\xdd" and f[20] == 58 and f[54] == 136
           and f[62:78] == ipaddress.IPv6Address(IP6).packed and f[6:12] == raw]
    return len(garps), len(nas)


def test_station_follows_redeployed_container(lab):
    cap = capture(lab)
    try:
        # the first container, and the station talking to it: its table holds MAC1
        ns, net, opts, _ = deploy(lab, MAC1, 1)
        learn(lab, MAC1)
        remove(lab, ns, net, opts)
        # redeployed without announcements: the station still believes MAC1
        ns, net, opts, _ = deploy(lab, MAC3, 0)
        marker(ns, b"pmv-marker-1")
        frames = until_marker(cap, b"pmv-marker-1")
        assert announcements(frames, MAC3) == (0, 0)
        assert neigh(lab)[IP4] == MAC1 and neigh(lab)[IP6] == MAC1, neigh(lab)
        remove(lab, ns, net, opts)
        # redeployed with announcements: the station's entries follow to MAC2
        ns, net, opts, _ = deploy(lab, MAC2, 1)
        marker(ns, b"pmv-marker-2")
        frames = until_marker(cap, b"pmv-marker-2")
        assert announcements(frames, MAC2) == (1, 1)
        assert neigh(lab)[IP4] == MAC2 and neigh(lab)[IP6] == MAC2, neigh(lab)
        remove(lab, ns, net, opts)
    finally:
        cap.close()
        for ns in list(lab.containers):
            lab.drop(ns)


def test_count_and_background_rounds(lab):
    """Three rounds 100 ms apart: the first before setup returns, two from the detached
    child, which ends by itself; then exactly three GARPs and three NAs reached the station."""
    cap = capture(lab)
    try:
        ns, net, opts, r = deploy(lab, MAC1, 3, 100)
        m = re.search(r"the rest from pid (\d+)", r.err)
        assert m, r.err
        pid = int(m.group(1))
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().split(")")[-1].split()[0] == "Z":
                        break
            except OSError:
                break
            time.sleep(0.05)
        assert not os.path.exists(f"/proc/{pid}/cmdline") or open(f"/proc/{pid}/cmdline").read() == "", \
            "the announcer child did not end"
        marker(ns, b"pmv-marker-3")
        assert announcements(until_marker(cap, b"pmv-marker-3"), MAC1) == (3, 3)
        remove(lab, ns, net, opts)
    finally:
        cap.close()
        for ns in list(lab.containers):
            lab.drop(ns)


def test_frames_are_what_receivers_take():
    """GARP: request, sender IP == target IP, target MAC zero. NA: hop limit 255, Override,
    not Solicited, target link-layer option, a checksum that verifies (scapy recomputes it)."""
    from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6
    from scapy.layers.l2 import ARP, Ether

    mac = bytes.fromhex("02aa00000001")
    g = Ether(announce.garp(mac, ipaddress.IPv4Address(IP4)))
    assert g.dst == "ff:ff:ff:ff:ff:ff" and g[ARP].op == 1 and g[ARP].psrc == g[ARP].pdst == IP4
    assert g[ARP].hwsrc == "02:aa:00:00:00:01" and g[ARP].hwdst == "00:00:00:00:00:00"
    raw = announce.unsolicited_na(mac, ipaddress.IPv6Address(IP6))
    n = Ether(raw)
    assert n.dst == "33:33:00:00:00:01" and n[IPv6].hlim == 255 and n[IPv6].dst == "ff02::1"
    na = n[ICMPv6ND_NA]
    assert (na.R, na.S, na.O, na.tgt) == (0, 0, 1, IP6)
    assert n[ICMPv6NDOptDstLLAddr].lladdr == "02:aa:00:00:00:01"
    given = na.cksum
    del na.cksum
    assert Ether(bytes(n))[ICMPv6ND_NA].cksum == given
    assert announce.frames(mac, [ipaddress.ip_address(IP4), ipaddress.ip_address(IP6)]) == \
        [bytes(g), raw]
    assert struct.unpack("!H", raw[12:14])[0] == announce.ETH_P_IPV6
