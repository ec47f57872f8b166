"""`pymacvlan trace`'s header line says what a frame carries, as tcpdump -e prints it."""

from __future__ import annotations

import ipaddress
import struct

from hypothesis import given
from hypothesis import strategies as st

from pymacvlan.cli.trace import format_event
from pymacvlan.dissect import summary

A, B = bytes.fromhex("86abe6373303"), bytes.fromhex("d61ae1d35ea2")
BCAST = b"\xff" * 6


def arp(op: int, sha: bytes, spa: str, tha: bytes, tpa: str) -> bytes:
    return (struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + sha + ipaddress.IPv4Address(spa).packed + tha
            + ipaddress.IPv4Address(tpa).packed)


def test_arp_request_and_reply_with_opcode_and_addresses():
    req = BCAST + A + b"\x08\x06" + arp(1, A, "10.9.0.1", bytes(6), "10.9.0.100")
    rep = A + B + b"\x08\x06" + arp(2, B, "10.9.0.100", A, "10.9.0.1")
    assert summary(req) == ("ethertype ARP (0x0806)", "Request who-has 10.9.0.100 tell 10.9.0.1, length 28")
    assert summary(rep) == ("ethertype ARP (0x0806)", "Reply 10.9.0.100 is-at d6:1a:e1:d3:5e:a2, length 28")


def icmp6(src: str, dst: str, body: bytes) -> bytes:
    return (struct.pack("!IHBB", 6 << 28, len(body), 58, 255) + ipaddress.IPv6Address(src).packed
            + ipaddress.IPv6Address(dst).packed + body)


def test_neighbour_solicitation_and_advertisement():
    ns = icmp6("fe80::1", "ff02::1:ff00:2", bytes([135, 0, 0, 0, 0, 0, 0, 0]) + ipaddress.IPv6Address("fe80::2").packed)
    na = icmp6("fe80::2", "fe80::1", bytes([136, 0, 0, 0, 0x60, 0, 0, 0]) + ipaddress.IPv6Address("fe80::2").packed)
    assert summary(B + A + b"\x86\xdd" + ns)[1] == \
        "fe80::1 > ff02::1:ff00:2: ICMP6, neighbor solicitation, who has fe80::2, length 24"
    assert summary(A + B + b"\x86\xdd" + na) == \
        ("ethertype IPv6 (0x86dd)", "fe80::2 > fe80::1: ICMP6, neighbor advertisement, tgt is fe80::2, length 24")


def test_a_tagged_arp_and_an_unknown_ethertype():
    tagged = BCAST + A + b"\x81\x00" + struct.pack("!HH", 11, 0x0806) + arp(1, A, "10.0.0.1", bytes(6), "10.0.0.2")
    assert summary(tagged) == ("ethertype 802.1Q (0x8100)", "vlan 11, p 0, ethertype ARP (0x0806), "
                                                            "Request who-has 10.0.0.2 tell 10.0.0.1, length 28")
    assert summary(BCAST + A + b"\x88\xb5" + bytes(46)) == ("ethertype Unknown (0x88b5)", None)


@given(st.binary(max_size=120))
def test_any_bytes_give_a_line_never_an_exception(data):
    et, _what = summary(data)
    assert isinstance(et, str)


def test_the_trace_header_carries_it():
    frame = BCAST + A + b"\x08\x06" + arp(1, A, "10.9.0.1", bytes(6), "10.9.0.100")
    ev = {"src": A.hex(":"), "dst": BCAST.hex(":"), "ethertype": "0x0806", "len": len(frame), "from": "pmvdemoA/eth0",
          "parent": "pmvdp", "frame": frame.hex(), "path": [], "trace": [], "delivered": []}
    assert format_event(ev).splitlines()[0] == (
        "86:ab:e6:37:33:03 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Request who-has 10.9.0.100 "
        "tell 10.9.0.1, length 28; from pmvdemoA/eth0 on pmvdp")
