"""The shared vocabulary: netlink values, MAC addresses, packet types and kernel errors."""

from .constants import (
    ETH_HLEN,
    ETH_P_8021Q,
    ETH_P_PAUSE,
    FLAG_NAMES,
    MODE_NAMES,
    MODES,
    VLAN_HLEN,
    MacaddrMode,
    MacvlanFlag,
    Mode,
    PacketType,
    flag_names,
    flags_from_names,
    frame_max,
    mode_from_name,
)
from .errors import KernelError
from .link import LinkChange, LinkRequest
from .mac import BROADCAST, Mac, is_multicast, is_zero, mac_str, parse_mac, random_mac

__all__ = [
    "ETH_HLEN",
    "ETH_P_8021Q",
    "ETH_P_PAUSE",
    "VLAN_HLEN",
    "frame_max",
    "MODE_NAMES",
    "MODES",
    "FLAG_NAMES",
    "Mode",
    "MacvlanFlag",
    "MacaddrMode",
    "PacketType",
    "mode_from_name",
    "flags_from_names",
    "flag_names",
    "BROADCAST",
    "Mac",
    "mac_str",
    "parse_mac",
    "is_multicast",
    "is_zero",
    "random_mac",
    "KernelError",
    "LinkChange",
    "LinkRequest",
]
