"""Software GSO and checksum completion against packets scapy builds and verifies.

Each case builds one large frame with scapy, gives it the virtio_net_hdr the kernel would
put on it (partial checksum: the field holds the pseudo-header sum), segments it with
:mod:`pymacvlan.backends.userspace.gso`, and checks every segment with scapy: checksums
recomputed by scapy equal ours, sequence numbers and IP IDs advance, lengths are right,
FIN/PSH only on the last segment, and the payloads concatenate to the original.
"""

from __future__ import annotations

import struct

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from pymacvlan.backends.userspace import gso
from pymacvlan.backends.userspace.syscalls import (
    VIRTIO_NET_HDR_F_NEEDS_CSUM,
    VIRTIO_NET_HDR_GSO_ECN,
    VIRTIO_NET_HDR_GSO_NONE,
    VIRTIO_NET_HDR_GSO_TCPV4,
    VIRTIO_NET_HDR_GSO_TCPV6,
    VIRTIO_NET_HDR_GSO_UDP,
    VIRTIO_NET_HDR_GSO_UDP_L4,
    VNET_HDR,
    ZERO_VNET_HDR,
)
from pymacvlan.backends.userspace.vnet import insert_vlan_tag, strip_vlan_tag, valid_hdr

ETH = Ether(dst="02:00:00:00:00:0b", src="02:00:00:00:00:0a")
PAYLOAD = bytes(range(256)) * 160  # 40960 bytes, not a multiple of any MSS below


def _partial(frame: bytes, l4off: int, csum_off: int, proto: int, v6: bool, l3off: int = 14) -> bytes:
    """Put the pseudo-header sum (not inverted) in the checksum field, as CHECKSUM_PARTIAL does."""
    f = bytearray(frame)
    l4len = len(f) - l4off
    addrs = f[l3off + 8:l3off + 40] if v6 else f[l3off + 12:l3off + 20]
    struct.pack_into("!H", f, l4off + csum_off, gso.csum_add(addrs, proto + l4len))
    return bytes(f)


def _hdr(gso_type: int, gso_size: int, csum_start: int, csum_off: int, hdr_len: int) -> bytes:
    return VNET_HDR.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, gso_type, hdr_len, gso_size, csum_start, csum_off)


def _check_scapy_checksums(seg: bytes) -> Ether:
    """Every checksum scapy recomputes equals ours. A layer scapy failed to decode is a
    failure, not a check skipped: the frame's own ethertype and protocol say what must be there."""
    pkt = Ether(seg)
    etype = pkt[Dot1Q].type if Dot1Q in pkt else pkt.type
    l3 = IP if etype == 0x0800 else IPv6 if etype == 0x86DD else None
    assert l3 is not None and l3 in pkt, f"scapy did not decode an IP layer: {pkt!r}"
    proto = pkt[IP].proto if l3 is IP else pkt[IPv6].nh
    l4 = {6: TCP, 17: UDP}.get(proto)
    assert l4 is not None and l4 in pkt, f"scapy did not decode the L4 layer (protocol {proto}): {pkt!r}"
    rebuilt = pkt.copy()
    for layer in (IP, TCP, UDP):
        if layer in rebuilt:
            del rebuilt[layer].chksum
    rebuilt = Ether(bytes(rebuilt))
    for layer in (IP, TCP, UDP):
        if layer in pkt:
            assert pkt[layer].chksum == rebuilt[layer].chksum, f"{layer.__name__} checksum differs"
    return pkt


@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize("mss", [1448, 1000, 536])
def test_tcp_segmentation(v6: bool, mss: int) -> None:
    l3 = IPv6(src="fd00::a", dst="fd00::b") if v6 else IP(src="10.0.0.1", dst="10.0.0.2", id=0xFFF0, flags="DF")
    pkt = (
        ETH
        / l3
        / TCP(sport=1234, dport=80, seq=0xFFFFF000, flags="PAF", options=[("NOP", None)] * 4 + [("Timestamp", (1, 2))])
        / Raw(PAYLOAD)
    )
    frame = bytes(pkt)
    l4off = 14 + (40 if v6 else 20)
    thl = (frame[l4off + 12] >> 4) * 4
    frame = _partial(frame, l4off, 16, 6, v6)
    hdr = _hdr(VIRTIO_NET_HDR_GSO_TCPV6 if v6 else VIRTIO_NET_HDR_GSO_TCPV4, mss, l4off, 16, l4off + thl)
    segs = gso.finalize(hdr + frame)
    assert len(segs) == -(-len(PAYLOAD) // mss)
    data = b""
    for i, seg in enumerate(segs):
        p = _check_scapy_checksums(seg)
        t = p[TCP]
        assert t.seq == (0xFFFFF000 + i * mss) & 0xFFFFFFFF
        body = bytes(t.payload)
        assert len(body) == (mss if i < len(segs) - 1 else len(PAYLOAD) - mss * (len(segs) - 1))
        last = i == len(segs) - 1
        assert bool(t.flags.F) == last and bool(t.flags.P) == last and t.flags.A
        if v6:
            assert p[IPv6].plen == thl + len(body)
        else:
            assert p[IP].len == 20 + thl + len(body)
            assert p[IP].id == (0xFFF0 + i) & 0xFFFF
            assert p[IP].flags == "DF"
        data += body
    assert data == PAYLOAD


def test_tcp_ecn_cwr_only_on_first_segment() -> None:
    pkt = ETH / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(flags="AC") / Raw(PAYLOAD[:5000])
    frame = _partial(bytes(pkt), 34, 16, 6, False)
    segs = gso.finalize(_hdr(VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN, 1400, 34, 16, 54) + frame)
    flags = [Ether(s)[TCP].flags for s in segs]
    assert flags[0].C and not any(f.C for f in flags[1:])


@pytest.mark.parametrize("v6", [False, True])
def test_udp_l4_segmentation(v6: bool) -> None:
    l3 = IPv6(src="fd00::a", dst="fd00::b") if v6 else IP(src="10.0.0.1", dst="10.0.0.2", id=7)
    frame = bytes(ETH / l3 / UDP(sport=5000, dport=6000) / Raw(PAYLOAD[:30000]))
    l4off = 14 + (40 if v6 else 20)
    frame = _partial(frame, l4off, 6, 17, v6)
    segs = gso.finalize(_hdr(VIRTIO_NET_HDR_GSO_UDP_L4, 1200, l4off, 6, l4off + 8) + frame)
    assert len(segs) == 25
    data = b""
    for i, seg in enumerate(segs):
        p = _check_scapy_checksums(seg)
        assert p[UDP].len == 8 + len(bytes(p[UDP].payload))
        if not v6:
            assert p[IP].id == 7 + i
        data += bytes(p[UDP].payload)
    assert data == PAYLOAD[:30000]


def test_vlan_tagged_gso_frame() -> None:
    frame = bytes(ETH / Dot1Q(vlan=11) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP() / Raw(PAYLOAD[:4000]))
    frame = _partial(frame, 38, 16, 6, False, l3off=18)
    segs = gso.finalize(_hdr(VIRTIO_NET_HDR_GSO_TCPV4, 1460, 38, 16, 58) + frame)
    assert len(segs) == 3
    for s in segs:
        p = _check_scapy_checksums(s)
        assert p[Dot1Q].vlan == 11


@pytest.mark.parametrize("kind", ["tcp4", "udp4", "udp6"])
def test_checksum_completion_without_gso(kind: str) -> None:
    v6 = kind.endswith("6")
    l3 = IPv6(src="fd00::1", dst="fd00::2") if v6 else IP(src="192.0.2.1", dst="192.0.2.2")
    l4 = TCP(sport=1, dport=2) if kind.startswith("tcp") else UDP(sport=1, dport=2)
    frame = bytes(ETH / l3 / l4 / Raw(b"odd-length payload!"))
    l4off = 14 + (40 if v6 else 20)
    off = 16 if kind.startswith("tcp") else 6
    frame = _partial(frame, l4off, off, 6 if off == 16 else 17, v6)
    hdr = VNET_HDR.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_NONE, 0, 0, l4off, off)
    (out,) = gso.finalize(hdr + frame)
    _check_scapy_checksums(out)
    assert len(out) == len(frame)


def test_zero_header_passes_unchanged() -> None:
    frame = bytes(ETH / IP() / UDP() / Raw(b"x"))
    assert gso.finalize(ZERO_VNET_HDR + frame) == [frame]


def test_checksum_matches_reference_sum() -> None:
    import random
    rng = random.Random(1)
    for n in (0, 1, 2, 3, 1499, 1500, 65535):
        data = bytes(rng.getrandbits(8) for _ in range(n))
        padded = data + b"\0" * (n & 1)
        ref = sum(struct.unpack(f"!{len(padded) // 2}H", padded))
        while ref >> 16:
            ref = (ref & 0xFFFF) + (ref >> 16)
        got = gso.csum_add(data)
        assert got % 0xFFFF == ref % 0xFFFF  # 0 and 0xFFFF are the same ones' complement value


@pytest.mark.parametrize("bad", [
    VNET_HDR.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, 54, 0, 34, 16),  # gso_size 0
    VNET_HDR.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV6, 54, 1000, 34, 16),  # v6 type, v4 frame
    VNET_HDR.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_UDP, 42, 1000, 34, 6),  # UFO
    VNET_HDR.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 0, 9000, 16),  # checksum outside the frame
])
def test_bad_headers_raise_gso_error(bad: bytes) -> None:
    frame = bytes(ETH / IP() / TCP() / Raw(PAYLOAD[:3000]))
    with pytest.raises(gso.GSOError):
        gso.finalize(bad + frame)


def test_valid_hdr_rejects_what_the_kernel_rejects() -> None:
    n = 3000
    assert valid_hdr(ZERO_VNET_HDR, n)
    assert valid_hdr(_hdr(VIRTIO_NET_HDR_GSO_TCPV4, 1448, 34, 16, 54), n)
    assert not valid_hdr(VNET_HDR.pack(0, VIRTIO_NET_HDR_GSO_TCPV4, 54, 1448, 0, 0), n)  # GSO without csum
    assert not valid_hdr(VNET_HDR.pack(1, 0x33, 0, 0, 34, 16), n)  # unknown gso type
    assert not valid_hdr(VNET_HDR.pack(1, 0, 0, 0, 2999, 16), n)  # csum outside
    assert not valid_hdr(VNET_HDR.pack(0x80, 0, 0, 0, 0, 0), n)  # unknown flag


def test_vlan_tag_insert_and_strip_shift_the_header() -> None:
    frame = bytes(ETH / IP() / TCP() / Raw(b"abc"))
    hdr = _hdr(VIRTIO_NET_HDR_GSO_TCPV4, 1448, 34, 16, 54)
    tagged = insert_vlan_tag(hdr + frame, 0x200B)
    fl, gt, hl, gs, cs, co = VNET_HDR.unpack(tagged[:10])
    assert (hl, cs) == (58, 38)
    assert Ether(tagged[10:])[Dot1Q].vlan == 11 and Ether(tagged[10:])[Dot1Q].prio == 1
    back, tpid, tci = strip_vlan_tag(tagged)
    assert back == hdr + frame and (tpid, tci) == (0x8100, 0x200B)
