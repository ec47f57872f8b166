"""MAC addresses as 6-byte ``bytes`` (hashable, the datapath's native form)."""

from __future__ import annotations

import os
import random
import re

Mac = bytes
BROADCAST: Mac = b"\xff" * 6
_MAC_RE = re.compile(r"^[0-9a-fA-F]{1,2}(:[0-9a-fA-F]{1,2}){5}$")


def parse_mac(text: str | bytes) -> Mac:
    """Parse ``aa:bb:cc:dd:ee:ff`` (or pass 6 bytes through); ValueError says what is wrong."""
    if isinstance(text, (bytes, bytearray)):
        if len(text) != 6:
            raise ValueError(f"a MAC address has 6 bytes, not {len(text)}")
        return bytes(text)
    if not isinstance(text, str) or not _MAC_RE.match(text):
        raise ValueError(f"{text!r} is not a MAC address (expected six hex bytes like 02:00:00:00:00:0a)")
    return bytes(int(p, 16) for p in text.split(":"))


def mac_str(mac: Mac) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def is_multicast(mac: Mac) -> bool:
    return bool(mac[0] & 1)


def is_zero(mac: Mac) -> bool:
    return mac == b"\x00" * 6


def random_mac(rng: random.Random | None = None) -> Mac:
    """A random locally administered unicast MAC, as eth_hw_addr_random() makes."""
    raw = bytearray(rng.randbytes(6) if rng is not None else os.urandom(6))
    raw[0] = (raw[0] & 0xFE) | 0x02
    return bytes(raw)
