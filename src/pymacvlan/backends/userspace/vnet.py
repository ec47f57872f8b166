"""virtio_net_hdr helpers shared by the parent socket, the TAPs and the endpoints.

Every frame inside the datapath travels as one ``bytes`` buffer: a 10-byte virtio_net_hdr
followed by the Ethernet frame. PACKET_VNET_HDR on the parent and IFF_VNET_HDR on the TAPs
use exactly this layout (little-endian, 10 bytes), so a buffer read from one side is written
to the other unchanged, and a 64 KB GSO frame crosses without being segmented or copied
field by field. Endpoints without vnet headers (stream, dgram) get frames through
:func:`pymacvlan.backends.userspace.gso.finalize`.
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

__all__ = ["VNET_HDR_LEN", "ZERO_VNET_HDR", "shift_hdr", "insert_vlan_tag", "strip_vlan_tag",
           "valid_hdr"]

_TAG = struct.Struct("!HH")
_KNOWN_GSO = {VIRTIO_NET_HDR_GSO_NONE, VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6,
              VIRTIO_NET_HDR_GSO_UDP_L4}


def shift_hdr(hdr: bytes, delta: int) -> bytes:
    """The header after ``delta`` bytes were inserted (or removed) before the L3 header.

    csum_start and hdr_len count from the start of the frame, so a VLAN tag added at
    offset 12 moves both by 4.
    """
    if hdr == ZERO_VNET_HDR:
        return hdr
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = VNET_HDR.unpack(hdr)
    if flags & VIRTIO_NET_HDR_F_NEEDS_CSUM:
        csum_start += delta
    if hdr_len:
        hdr_len += delta
    return VNET_HDR.pack(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


def insert_vlan_tag(buf: bytes, tci: int, tpid: int = 0x8100) -> bytes:
    """hdr+frame → hdr+frame with an 802.1Q (or 802.1ad) tag after the MAC addresses.

    AF_PACKET always sees frames with the outer tag stripped (skb_vlan_untag runs before
    the taps) and reports it only in the ring header or PACKET_AUXDATA; putting it back
    in-band is what makes tagged traffic reach children as it left the wire.
    """
    hdr = buf[:VNET_HDR_LEN]
    return shift_hdr(hdr, 4) + buf[VNET_HDR_LEN:VNET_HDR_LEN + 12] + _TAG.pack(tpid, tci) + buf[VNET_HDR_LEN + 12:]


def strip_vlan_tag(buf: bytes) -> tuple[bytes, int, int]:
    """hdr+tagged frame → (hdr+untagged frame, tpid, tci)."""
    tpid, tci = _TAG.unpack_from(buf, VNET_HDR_LEN + 12)
    hdr = buf[:VNET_HDR_LEN]
    return shift_hdr(hdr, -4) + buf[VNET_HDR_LEN:VNET_HDR_LEN + 12] + buf[VNET_HDR_LEN + 16:], tpid, tci


def valid_hdr(hdr: bytes, frame_len: int) -> bool:
    """The checks virtio_net_hdr_to_skb() makes, so a bad header from an endpoint is
    counted here instead of failing a whole batch in the kernel."""
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = VNET_HDR.unpack(hdr)
    if flags & ~(VIRTIO_NET_HDR_F_NEEDS_CSUM | 2):
        return False
    if flags & VIRTIO_NET_HDR_F_NEEDS_CSUM and csum_start + csum_offset + 2 > frame_len:
        return False
    base = gso_type & ~VIRTIO_NET_HDR_GSO_ECN
    if base not in _KNOWN_GSO:
        return False
    if base != VIRTIO_NET_HDR_GSO_NONE:
        if not gso_size or not flags & VIRTIO_NET_HDR_F_NEEDS_CSUM:
            return False
        if hdr_len > frame_len:
            return False
    return True
