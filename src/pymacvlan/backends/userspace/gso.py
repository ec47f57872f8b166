"""Software GSO and checksum completion, for endpoints that take no virtio_net_hdr.

A TAP child with offloads, or the parent with PACKET_VNET_HDR, hands the datapath 64 KB TCP
(TSO) or UDP (USO) frames whose checksums are only partial. TAPs and the parent take such
frames back as they are; a QEMU ``stream`` or ``dgram`` socket does not, so before a frame
goes there :func:`finalize` turns it into what would have been on a wire: MSS-sized segments
with complete IPv4 header, TCP and UDP checksums, as skb_gso_segment() and
skb_checksum_help() would have made them.

Checksums use the identity that a ones' complement sum of 16-bit big-endian words is the
big-endian integer value modulo 0xFFFF (2**16 ≡ 1), so one ``int.from_bytes`` and one
``%`` do a whole segment in C, instead of a Python loop over words.
"""

from __future__ import annotations

import struct

from ._sys import (
    VIRTIO_NET_HDR_F_NEEDS_CSUM,
    VIRTIO_NET_HDR_GSO_ECN,
    VIRTIO_NET_HDR_GSO_NONE,
    VIRTIO_NET_HDR_GSO_TCPV4,
    VIRTIO_NET_HDR_GSO_TCPV6,
    VIRTIO_NET_HDR_GSO_UDP_L4,
    VNET_HDR,
    VNET_HDR_LEN,
    ZERO_VNET_HDR,
)

__all__ = ["GSOError", "csum_add", "checksum", "complete_csum", "segment", "finalize"]

_VLAN_TPIDS = (0x8100, 0x88A8)
_TCP_FIN, _TCP_PSH, _TCP_CWR = 0x01, 0x08, 0x80
_H = struct.Struct("!H")
_I = struct.Struct("!I")


class GSOError(ValueError):
    """The frame or its virtio_net_hdr cannot be segmented (counted by the caller)."""


def csum_add(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """Ones' complement sum (not inverted, folded to 16 bits) of ``data`` plus ``initial``.

    ``data`` starts at an even offset of the summed region; an odd length is padded with
    a zero byte, as the Internet checksum requires.
    """
    if len(data) & 1:
        data = bytes(data) + b"\0"
    total = int.from_bytes(data, "big") % 0xFFFF + initial
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return total


def checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """The Internet checksum field value: ~sum, with 0 for all-zero-sum data."""
    return ~csum_add(data, initial) & 0xFFFF


def _l3(frame: bytes) -> tuple[int, int]:
    """(ethertype, offset of the L3 header), skipping VLAN tags."""
    off = 12
    etype = _H.unpack_from(frame, off)[0]
    while etype in _VLAN_TPIDS:
        off += 4
        etype = _H.unpack_from(frame, off)[0]
    return etype, off + 2


def complete_csum(frame: bytearray, csum_start: int, csum_offset: int) -> None:
    """skb_checksum_help(): the field holds the pseudo-header sum; fold in the rest."""
    pos = csum_start + csum_offset
    if pos + 2 > len(frame) or csum_start > len(frame):
        raise GSOError(f"checksum at {csum_start}+{csum_offset} lies outside a {len(frame)}-byte frame")
    value = checksum(memoryview(frame)[csum_start:])
    if value == 0 and csum_offset == 6:  # UDP: a computed 0 is sent as 0xFFFF
        value = 0xFFFF
    _H.pack_into(frame, pos, value)


def _pseudo_sum(frame: bytes | bytearray, l3off: int, v6: bool, proto: int, l4len: int) -> int:
    if v6:
        addrs = frame[l3off + 8: l3off + 40]
    else:
        addrs = frame[l3off + 12: l3off + 20]
    return csum_add(addrs, proto + l4len)


def segment(hdr: bytes, frame: bytes) -> list[bytes]:
    """Split one GSO frame into wire frames, each with complete checksums."""
    flags, gso_type, _hdr_len, gso_size, csum_start, _csum_off = VNET_HDR.unpack(hdr)
    base = gso_type & ~VIRTIO_NET_HDR_GSO_ECN
    if not gso_size:
        raise GSOError("GSO frame with gso_size 0")
    etype, l3off = _l3(frame)
    v6 = etype == 0x86DD
    if etype not in (0x0800, 0x86DD):
        raise GSOError(f"GSO frame with ethertype {etype:#06x}")
    if v6 != (base == VIRTIO_NET_HDR_GSO_TCPV6) and base != VIRTIO_NET_HDR_GSO_UDP_L4:
        raise GSOError("gso_type does not match the IP version")
    if v6:
        l4off = csum_start if flags & VIRTIO_NET_HDR_F_NEEDS_CSUM and csum_start else l3off + 40
    else:
        l4off = l3off + (frame[l3off] & 0x0F) * 4
    if base in (VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6):
        return _segment_tcp(frame, l3off, l4off, v6, gso_size)
    if base == VIRTIO_NET_HDR_GSO_UDP_L4:
        return _segment_udp(frame, l3off, l4off, v6, gso_size)
    raise GSOError(f"unsupported gso_type {gso_type:#x} (UFO is not offered to the kernel)")


def _ip_fix(head: bytearray, l3off: int, l4off: int, v6: bool, l4len: int, ipid: int) -> None:
    if v6:
        _H.pack_into(head, l3off + 4, l4off - l3off - 40 + l4len)
    else:
        _H.pack_into(head, l3off + 2, l4off - l3off + l4len)
        _H.pack_into(head, l3off + 4, ipid & 0xFFFF)
        _H.pack_into(head, l3off + 10, 0)
        _H.pack_into(head, l3off + 10, checksum(memoryview(head)[l3off:l4off]))


def _segment_tcp(frame: bytes, l3off: int, l4off: int, v6: bool, mss: int) -> list[bytes]:
    if len(frame) < l4off + 20:
        raise GSOError("TCP GSO frame shorter than its headers")
    thl = (frame[l4off + 12] >> 4) * 4
    poff = l4off + thl
    if thl < 20 or poff > len(frame):
        raise GSOError("bad TCP header length in a GSO frame")
    payload = memoryview(frame)[poff:]
    seq0 = _I.unpack_from(frame, l4off + 4)[0]
    tcpflags = frame[l4off + 13]
    ipid0 = 0 if v6 else _H.unpack_from(frame, l3off + 4)[0]
    n = max(1, -(-len(payload) // mss))
    out: list[bytes] = []
    for i in range(n):
        chunk = payload[i * mss:(i + 1) * mss]
        head = bytearray(frame[:poff])
        l4len = thl + len(chunk)
        _ip_fix(head, l3off, l4off, v6, l4len, ipid0 + i)
        _I.pack_into(head, l4off + 4, (seq0 + i * mss) & 0xFFFFFFFF)
        f = tcpflags
        if i != n - 1:
            f &= ~(_TCP_FIN | _TCP_PSH)
        if i:
            f &= ~_TCP_CWR
        head[l4off + 13] = f
        _H.pack_into(head, l4off + 16, 0)
        s = _pseudo_sum(head, l3off, v6, 6, l4len)
        s = csum_add(memoryview(head)[l4off:poff], s)
        _H.pack_into(head, l4off + 16, checksum(chunk, s))
        out.append(bytes(head) + chunk)
    return out


def _segment_udp(frame: bytes, l3off: int, l4off: int, v6: bool, size: int) -> list[bytes]:
    if len(frame) < l4off + 8:
        raise GSOError("UDP GSO frame shorter than its headers")
    poff = l4off + 8
    payload = memoryview(frame)[poff:]
    ipid0 = 0 if v6 else _H.unpack_from(frame, l3off + 4)[0]
    n = max(1, -(-len(payload) // size))
    out: list[bytes] = []
    for i in range(n):
        chunk = payload[i * size:(i + 1) * size]
        head = bytearray(frame[:poff])
        l4len = 8 + len(chunk)
        _ip_fix(head, l3off, l4off, v6, l4len, ipid0 + i)
        _H.pack_into(head, l4off + 4, l4len)
        _H.pack_into(head, l4off + 6, 0)
        s = _pseudo_sum(head, l3off, v6, 17, l4len)
        s = csum_add(memoryview(head)[l4off:poff], s)
        c = checksum(chunk, s)
        _H.pack_into(head, l4off + 6, c or 0xFFFF)
        out.append(bytes(head) + chunk)
    return out


def finalize(buf: bytes) -> list[bytes]:
    """hdr+frame → plain wire frames: segmented if GSO, checksums completed if partial.

    The common case (a zero header) costs one comparison and one slice.
    """
    hdr = buf[:VNET_HDR_LEN]
    if hdr == ZERO_VNET_HDR:
        return [buf[VNET_HDR_LEN:]]
    if len(buf) < VNET_HDR_LEN + 14:
        raise GSOError("frame shorter than an Ethernet header")
    flags, gso_type, _hl, _gs, csum_start, csum_offset = VNET_HDR.unpack(hdr)
    frame = buf[VNET_HDR_LEN:]
    if gso_type & ~VIRTIO_NET_HDR_GSO_ECN != VIRTIO_NET_HDR_GSO_NONE:
        return segment(hdr, frame)
    if flags & VIRTIO_NET_HDR_F_NEEDS_CSUM:
        f = bytearray(frame)
        complete_csum(f, csum_start, csum_offset)
        return [bytes(f)]
    return [frame]
