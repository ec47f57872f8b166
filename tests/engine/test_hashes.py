"""Spec §1, hash functions. Expected values come from a C transcription of the kernel's
macvlan_eth_hash()/mc_hash() (hash_64/hash_32 on little-endian), not from this code."""

import pytest

from pymacvlan.engine.hashes import mac_hash, mc_hash

CASES = [  # mac, eth_hash, mc_hash(salt 0), mc_hash(salt 0xdeadbeef)
    ("02000000000a", 58, 198, 167),
    ("ffffffffffff", 121, 158, 48),
    ("01005e000001", 179, 46, 6),
    ("333300000001", 182, 71, 180),
    ("525400123456", 165, 57, 252),
]


@pytest.mark.parametrize("mac,eth,mc0,mcs", CASES)
def test_hashes_match_the_kernel(mac, eth, mc0, mcs):
    m = bytes.fromhex(mac)
    assert mac_hash(m) == eth
    assert mc_hash(0, m) == mc0
    assert mc_hash(0xDEADBEEF, m) == mcs


def test_mc_hash_ignores_the_first_two_bytes():
    assert mc_hash(0, bytes.fromhex("01005e000001")) == mc_hash(0, bytes.fromhex("ffff5e000001"))
