"""Netlink values of include/uapi/linux/if_link.h, so every backend shares one model."""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum, IntFlag

ETH_HLEN = 14
#: an 802.1Q tag
VLAN_HLEN = 4
ETH_P_PAUSE = 0x8808
ETH_P_8021Q = 0x8100


class Mode(IntEnum):
    """MACVLAN_MODE_*: bits, because the flood code tests masks."""

    PRIVATE = 1
    VEPA = 2
    BRIDGE = 4
    PASSTHRU = 8
    SOURCE = 16


class MacvlanFlag(IntFlag):
    """MACVLAN_FLAG_*."""

    NOPROMISC = 1
    NODST = 2


class MacaddrMode(IntEnum):
    """MACVLAN_MACADDR_* (source-mode list operations)."""

    ADD = 0
    DEL = 1
    FLUSH = 2
    SET = 3


class PacketType(IntEnum):
    """PACKET_* of linux/if_packet.h: how a receiving stack classifies a frame."""

    HOST = 0
    BROADCAST = 1
    MULTICAST = 2
    OTHERHOST = 3
    OUTGOING = 4
    LOOPBACK = 5


MODE_NAMES: dict[Mode, str] = {m: m.name.lower() for m in Mode}
MODES: dict[str, Mode] = {v: k for k, v in MODE_NAMES.items()}
FLAG_NAMES: dict[str, MacvlanFlag] = {"nopromisc": MacvlanFlag.NOPROMISC, "nodst": MacvlanFlag.NODST}


def mode_from_name(name: str) -> Mode:
    try:
        return MODES[name]
    except KeyError:
        raise ValueError(f"unknown mode {name!r}; expected one of {', '.join(MODES)}") from None


def flags_from_names(names: Iterable[str]) -> MacvlanFlag:
    value = MacvlanFlag(0)
    for n in names:
        if n == "null":
            continue
        try:
            value |= FLAG_NAMES[n]
        except KeyError:
            raise ValueError(f"unknown flag {n!r}; expected nopromisc or nodst") from None
    return value


def flag_names(flags: int) -> list[str]:
    return [n for n, f in FLAG_NAMES.items() if flags & f]


def frame_max(mtu: int) -> int:
    """The longest frame a device of this MTU takes (is_skb_forwardable(): MTU + header + one
    VLAN tag; GSO frames are exempt)."""
    return mtu + ETH_HLEN + VLAN_HLEN
