"""Hostile replies: generated frames fed to a client in every waiting state.

Each example is a reply built from a valid one with hypothesis-chosen changes (any field,
any option with any length and content, truncation, random bytes appended) or plain random
bytes; it goes through the same path as a frame off the wire (unframe, decode, receive).
The client must never raise, and whatever it binds must be an address a host may use: inside
the offered subnet, not its network or broadcast address, the router on that subnet.

CI runs PMV_DHCP_FUZZ_EXAMPLES (default 1000, about 5 s); the full run is
``PMV_DHCP_FUZZ_EXAMPLES=100000 python3 -m pytest -q tests/dhcp/test_fuzz.py``.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from ipaddress import IPv4Address

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pymacvlan.dhcp import packet as P
from pymacvlan.dhcp.machine import Client, Config, Event, Send, State

from .fakeserver import CHADDR, SERVER_MAC, reply

EXAMPLES = int(os.environ.get("PMV_DHCP_FUZZ_EXAMPLES", "1000"))
CID = b"\xff" + bytes(22)
STATS: Counter[str] = Counter()

option_codes = st.sampled_from([1, 3, 6, 12, 15, 26, 51, 52, 53, 54, 58, 59, 61, 121, 0, 255]) | st.integers(1, 254)
option_values = st.binary(max_size=40) | st.sampled_from([b"\xff\xff\xff\x00", b"\x00\x00\x00\x00", b"\xff" * 4,
                                                          bytes([2]), bytes([5]), bytes([6]), b"\x0a\x4d\x00\x01"])


def _client_in(state: str) -> tuple[Client, P.Message]:
    c = Client(Config(CHADDR, CID), random.Random(5))
    (d,) = [o for o in c.start(100.0) if isinstance(o, Send)]
    if state == "selecting":
        return c, d.msg
    (r,) = [o for o in c.receive(reply(d.msg, P.OFFER), 100.1, SERVER_MAC) if isinstance(o, Send)]
    if state == "requesting":
        return c, r.msg
    c.receive(reply(r.msg, P.ACK), 100.2, SERVER_MAC)
    lease = c.lease
    assert lease is not None
    (n,) = [o for o in c.tick(lease.t1) if isinstance(o, Send)]
    return c, n.msg


def _maybe(draw, p: int) -> bool:
    """True with probability 1/p (mutations stay rare, so most replies get far into the checks)."""
    return draw(st.sampled_from([False] * (p - 1) + [True]))


@st.composite
def hostile(draw):
    state = draw(st.sampled_from(["selecting", "requesting", "renewing"]))
    c, req = _client_in(state)
    if _maybe(draw, 10):
        return c, draw(st.binary(max_size=700))
    right = {"selecting": P.OFFER, "requesting": P.ACK, "renewing": P.ACK}[state]
    mtype = draw(st.sampled_from([right, right, right, P.OFFER, P.ACK, P.NAK, P.REQUEST, 0, 9]))
    good_addr = "10.77.0.50" if state != "selecting" else draw(st.sampled_from(["10.77.0.50", "10.77.0.51",
                                                                                  "10.77.0.200"]))
    yiaddr = good_addr if not _maybe(draw, 3) else draw(
        st.sampled_from(["10.77.0.0", "10.77.0.255", "0.0.0.0", "255.255.255.255", "224.0.0.1", "10.78.0.9",
                         "127.0.0.1", "169.254.1.1", "240.0.0.1", "0.1.2.3"]) | st.ip_addresses(v=4).map(str))
    lease = 600 if not _maybe(draw, 4) else draw(st.sampled_from([0, 5, 9, 10, 0xFFFFFFFF]) | st.integers(0, 2**32 - 1))
    mask = b"\xff\xff\xff\x00" if not _maybe(draw, 4) else draw(
        st.sampled_from([b"\xff\xff\xff\xff", b"\x00" * 4, b"\xff\x00\xff\x00", b"\xff\xff\xff", b"\xff\xff\x00\x00",
                         b"\xff\xff\xff\xfc", b"\xff\xff\xff\xfe", b"\x80\x00\x00\x00"])
        | st.binary(min_size=4, max_size=4))
    router = "10.77.0.1" if not _maybe(draw, 4) else draw(st.sampled_from(["10.99.0.1", "10.77.0.255", "10.77.0.50",
                                                                           "10.77.0.0", None]))
    m = reply(req, mtype if mtype in (P.OFFER, P.ACK, P.NAK) else P.ACK, yiaddr=yiaddr, lease=lease, mask=mask,
              router=router)
    if mtype not in (P.OFFER, P.ACK, P.NAK):
        m.options[P.OPT_MSG_TYPE] = bytes((mtype,))
    for code, value in draw(st.lists(st.tuples(option_codes, option_values), max_size=3)) if _maybe(draw, 2) else []:
        if code in (0, 255):
            continue
        m.options[code] = value
    if _maybe(draw, 6):
        m.xid = draw(st.sampled_from([m.xid ^ 1, 0]))
    if _maybe(draw, 8):
        m.chaddr = draw(st.binary(min_size=6, max_size=6))
    if _maybe(draw, 8):
        m.op = draw(st.integers(0, 255))
    data = P.encode(m)
    if _maybe(draw, 5):
        data = data[:draw(st.sampled_from([0, 100, 239, 240, 241, 250, len(data) - 1]))]
    if _maybe(draw, 5):
        data += draw(st.binary(max_size=8))
    return c, data


def _feed(c: Client, data: bytes) -> list:
    frame = P.frame(data, SERVER_MAC, CHADDR, IPv4Address("10.77.0.1"), P.BROADCAST_IP, sport=67, dport=68)
    try:
        f = P.unframe(frame)
        m = P.decode(f.payload)
    except P.BadPacket as e:
        STATS["decode:" + e.reason] += 1
        return []
    return c.receive(m, 101.0, f.src_mac)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(hostile())
def test_hostile_replies_never_crash_never_bind_a_bad_address(case):
    c, data = case
    before = c.state
    out = _feed(c, data)
    offer = c._offer
    if before is State.SELECTING and c.state is State.REQUESTING and offer is not None:
        STATS["accepted:offer"] += 1
        net = offer.network
        assert offer.address in net and offer.address not in (net.network_address, net.broadcast_address)
        assert not (offer.address.is_multicast or offer.address.is_loopback or offer.address.is_unspecified)
    for ev in (o for o in out if isinstance(o, Event)):
        STATS["event:" + ev.kind] += 1
        if ev.lease is None:
            continue
        lease = ev.lease
        net = lease.network
        assert lease.address in net and lease.address not in (net.network_address, net.broadcast_address)
        assert not (lease.address.is_multicast or lease.address.is_loopback or lease.address.is_unspecified)
        assert 1 <= lease.prefixlen <= 30 and lease.lease_time >= 10
        assert all(r in net for r in lease.routers)
        assert lease.t1 <= lease.t2 <= lease.expires
    if not out:
        assert c.state is before  # ignored means nothing changed
    for k, v in c.ignored.items():
        STATS["ignored:" + k] += v


def teardown_module() -> None:
    """What the run covered (shown with -s): decode rejections, ignores by reason, events."""
    print(f"\nfuzz: {EXAMPLES} examples; " + ", ".join(f"{k}={v}" for k, v in sorted(STATS.items())))
