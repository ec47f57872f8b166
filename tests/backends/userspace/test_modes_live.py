"""The mode table, live: real frames through the userspace datapath in every mode agree with
what the engine predicts (:func:`pymacvlan.reachability.reach`, the table in docs/explanation/how-macvlan-decides.md).

For each wire (a plain veth peer, or a Linux bridge port with hairpin on: VEPA's reflective
relay) and each mode, two children in that mode (one for passthru, which must be alone)
each in its own namespace, and a station at the far end of the parent (MAC 02:..:ee, also
the source list of source-mode children). Every sender sends one unicast to the receiver's
MAC and one broadcast (ethertype 0x88b5, a unique marker each) from a packet socket; every
receiver listens on a packet socket. What arrived is compared, pair by pair, with the
engine's answer for the same pair. No hand-written expectation: the engine is the oracle.
"""

from __future__ import annotations

import select
import socket
import time

import pytest

from pymacvlan.netns import in_netns
from pymacvlan.reachability import STATION_MAC, reach
from tests.ci import live_marks

from .netlab import Lab, leftovers, live_unavailable, sh
from .test_live import PATHS, World

_REASON = live_unavailable()
pytestmark = live_marks(_REASON)

ETH_P_TEST = 0x88B5
PACKET_OUTGOING = 4
MODES = ("private", "vepa", "bridge", "passthru", "source")
MAC = {"S": bytes.fromhex("020000000010"), "R": bytes.fromhex("020000000020")}


class ModeWorld(World):
    """World with the station's MAC fixed and, for ``hairpin``, the wire end on a bridge."""

    def __init__(self, lab: Lab, wire: str) -> None:
        self.lab = lab
        self.P = lab.ns("P")
        self.W = lab.ns("W")
        self.parent = lab.ifname("p")
        self.wire = lab.ifname("w")
        lab.veth(self.parent, self.P, self.wire, self.W, mac_b=STATION_MAC)
        if wire == "hairpin":
            sh("ip", "-n", self.W, "link", "add", "br0", "type", "bridge")
            sh("ip", "-n", self.W, "link", "set", self.wire, "master", "br0")
            sh("bridge", "-n", self.W, "link", "set", "dev", self.wire, "hairpin", "on")
            sh("ip", "-n", self.W, "link", "set", "br0", "up")
        self.dp = None


def _listener(ns: str, ifname: str) -> socket.socket:
    """ETH_P_ALL: a tap, so it also sees what a bridge port's rx_handler then consumes."""
    with in_netns(ns):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.bind((ifname, 3))
    s.setblocking(False)
    return s


def _sender(ns: str, ifname: str) -> socket.socket:
    with in_netns(ns):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((ifname, 0))
    return s


def _collect(socks: dict[str, socket.socket], seconds: float,
             until: dict[str, set[bytes]] | None = None) -> dict[str, set[bytes]]:
    """Markers each receiver got (incoming frames only) within ``seconds``, or until every
    marker in ``until`` has arrived (then it returns at once: an event ends the wait)."""
    got: dict[str, set[bytes]] = {k: set() for k in socks}
    by_fd = {s.fileno(): k for k, s in socks.items()}
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or (until is not None and all(until[k] <= got[k] for k in until)):
            return got
        r, _, _ = select.select(list(socks.values()), [], [], left)
        for s in r:
            while True:
                try:
                    data, addr = s.recvfrom(2048)
                except BlockingIOError:
                    break
                if addr[2] != PACKET_OUTGOING and data[12:18] == b"\x88\xb5pmv!":
                    got[by_fd[s.fileno()]].add(data[18:26])


def _engine_says(mode: str, s: str, r: str, kind: str, wire: str) -> bool:
    """Whether the engine's mode table lets this (sender, receiver, unicast|broadcast) through."""
    engine = reach(mode if s != "wire" else "wire", mode if r != "wire" else "wire", wire)
    return engine[0] if kind == "U" else engine[1]


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("wire", ["plain", "hairpin"])
def test_every_mode_matches_the_engines_table(wire: str, path: str) -> None:
    lab = Lab()
    w = None
    mismatches: list[str] = []
    checked = 0
    expected: set[bool] = set()
    try:
        w = ModeWorld(lab, wire)
        w.path = PATHS[path]
        w.start()
        for mode in MODES:
            roles = ["S"] if mode == "passthru" else ["S", "R"]
            nss = {}
            for r in roles:
                ns = lab.ns(f"{mode[:2]}{r}")
                kw = {"macaddr": [bytes.fromhex(STATION_MAC.replace(":", ""))]} if mode == "source" else {}
                w.dp.add_macvlan(r, mode, netns=ns, ifname="eth0",
                                 mac=None if mode == "passthru" else MAC[r], **kw)
                sh("ip", "-n", ns, "link", "set", "eth0", "up")
                w.wait_up(r)
                nss[r] = ns
            macs = {r: w.dp.call(lambda r=r: w.dp.engine.child(r).mac) for r in roles}
            macs["wire"] = bytes.fromhex(STATION_MAC.replace(":", ""))
            # (sender, receiver) as reach() names them
            pairs = [("S", "R"), ("R", "S")] if len(roles) == 2 else []
            pairs += [(r, "wire") for r in roles] + [("wire", r) for r in roles]
            listeners = {r: _listener(nss[r], "eth0") for r in roles}
            listeners["wire"] = _listener(w.W, w.wire)
            senders = {r: _sender(nss[r], "eth0") for r in roles}
            senders["wire"] = _sender(w.W, w.wire)
            try:
                time.sleep(0.2)  # let the children's own join/IGMP chatter pass
                _collect(listeners, 0.05)
                sent = {}
                awaited: dict[str, set[bytes]] = {k: set() for k in listeners}
                for s, r in pairs:
                    for kind, dst in (("U", macs[r]), ("B", b"\xff" * 6)):
                        marker = f"{s[0]}{r[0]}{kind}".ljust(8, "-").encode()
                        frame = dst + macs[s] + ETH_P_TEST.to_bytes(2, "big") + b"pmv!" + marker
                        senders[s].send(frame + bytes(60 - len(frame)))
                        sent[(s, r, kind)] = marker
                        if _engine_says(mode, s, r, kind, wire):
                            awaited[r].add(marker)
                # the window ends on evidence: every marker the engine lets through has arrived
                # (cap 5 s), then the datapath finished a whole loop pass after them and what
                # its last pass wrote is read; a marker arriving in any of these counts as
                # received, so a wrong delivery cannot hide behind a short window
                got = _collect(listeners, 5.0, until=awaited)
                w.dp.settled()
                for k, v in _collect(listeners, 0.1).items():
                    got[k] |= v
            finally:
                for sock in list(listeners.values()) + list(senders.values()):
                    sock.close()
            for (s, r, kind), marker in sent.items():
                want = _engine_says(mode, s, r, kind, wire)
                have = marker in got[r]
                checked += 1
                expected.add(want)
                if want != have:
                    mismatches.append(f"{wire} {mode}: {'unicast' if kind == 'U' else 'broadcast'} "
                                      f"{s}→{r}: engine says {want}, live {have}")
            for r in roles:
                w.dp.delete(r)
        assert checked == 2 * (4 * 6 + 2), checked  # every pair of every mode was tried
        assert expected == {True, False}  # the table blocks some pairs and lets others through
        assert not mismatches, "\n".join(mismatches)
    finally:
        if w is not None:
            w.close()
        lab.close()
        assert not leftovers(lab.tag), f"leftover namespaces or links: {leftovers(lab.tag)}"
