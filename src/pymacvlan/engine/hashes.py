"""The kernel's hash functions, bit for bit (little-endian, 64-bit).

``mac_hash`` picks one of the port's 256 buckets (vlan_hash and vlan_source_hash);
``mc_hash`` picks one of the 256 bits of a multicast filter. Only bytes 2..5 of the
group take part in ``mc_hash``, so false positives are part of the kernel's behaviour.
"""

from __future__ import annotations

GOLDEN_RATIO_64 = 0x61C8864680B583EB
GOLDEN_RATIO_32 = 0x61C88647
_M64 = (1 << 64) - 1
_M32 = (1 << 32) - 1
ALL_ONES = (1 << 256) - 1


def mac_hash(mac: bytes) -> int:
    """macvlan_eth_hash(): hash_64(get_unaligned_u64(addr) << 16, 8)."""
    value = (int.from_bytes(mac[:6], "little") << 16) & _M64
    return ((value * GOLDEN_RATIO_64) & _M64) >> 56


def mc_hash(salt: int, addr: bytes) -> int:
    """mc_hash(): hash_32(get_unaligned_cpu32(addr + 2) ^ salt, 8)."""
    value = int.from_bytes(addr[2:6], "little") ^ salt
    return ((value * GOLDEN_RATIO_32) & _M32) >> 24
