"""The devices the engine reasons about: the lower device (parent) and macvlan children.

Only the state macvlan.c reads or writes is kept: flags, addresses, the parent's
unicast/multicast address lists with their ``synced`` counts, promiscuity and allmulti
counts, carrier, and the per-child counters of section 7 of the spec.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from ..model import BROADCAST, Mode, PacketType

#: Groups a Linux stack joins by itself on an up Ethernet device: IPv4 all-hosts
#: (224.0.0.1) and IPv6 all-nodes (ff02::1, joined even with disable_ipv6=1). The kernel
#: on this machine shows them on every child, and they are synced into the parent.
STACK_GROUPS: tuple[bytes, ...] = (bytes.fromhex("01005e000001"), bytes.fromhex("333300000001"))

DEFAULT_BC_QUEUE_LEN = 1000
DEFAULT_TAP_QUEUE_LEN = 500  # TUN_READQ_SIZE: the macvtap "qlen 500"


@dataclass(slots=True)
class Counters:
    """Per-child counters, as macvlan_count_rx() and macvlan_start_xmit() keep them."""

    rx_packets: int = 0
    rx_bytes: int = 0
    multicast: int = 0
    rx_errors: int = 0
    tx_packets: int = 0
    tx_bytes: int = 0
    tx_dropped: int = 0
    #: dev_core_stats rx_dropped (e.g. __dev_forward_skb refusing a frame); added to the
    #: reported rx_dropped on top of rx_errors, as dev_get_stats() does.
    core_rx_dropped: int = 0

    def as_stats64(self) -> dict[str, dict[str, int]]:
        """The ``stats64`` object of ``ip -s -j link`` (rx_dropped = rx_errors + core drops)."""
        return {
            "rx": {"bytes": self.rx_bytes, "packets": self.rx_packets, "errors": self.rx_errors,
                   "dropped": self.rx_errors + self.core_rx_dropped, "multicast": self.multicast},
            "tx": {"bytes": self.tx_bytes, "packets": self.tx_packets, "dropped": self.tx_dropped},
        }


@dataclass(eq=False)
class Lower:
    """The parent (lower) device L.

    ``unicast_filter`` is IFF_UNICAST_FLT: without it (veth, the parent every live test
    uses) any secondary unicast address puts L into promiscuous mode, exactly as
    __dev_set_rx_mode() does, and that flips the port's multicast filters to all ones.
    """

    name: str
    mac: bytes
    mtu: int = 1500
    max_mtu: int = 65535
    up: bool = True
    wire_carrier: bool = True
    unicast_filter: bool = False
    promisc_user: bool = False
    allmulti_user: bool = False
    promiscuity: int = 0
    allmulti: int = 0
    uc_promisc: bool = False
    #: secondary unicast addresses (dev_uc_add), with reference counts
    uc_list: dict[bytes, int] = field(default_factory=dict)
    #: multicast list: address -> synced count (children that synced it; L's own joins are 0)
    mc_synced: dict[bytes, int] = field(default_factory=dict)
    rx_dropped: int = 0
    deleted: bool = False

    @property
    def carrier(self) -> bool:
        """veth semantics: carrier needs both ends up (veth_open/veth_close)."""
        return self.up and self.wire_carrier



class MacvlanDev:
    """One macvlan or macvtap child (struct macvlan_dev plus the netdev fields it uses)."""

    __slots__ = (
        "name", "kind", "mode", "flags", "mac", "mtu", "up", "promisc_user", "allmulti_user",
        "user_groups", "salt", "mc_filter", "bc_queue_len_req", "macaddr_count", "stats",
        "lower", "seq", "tap", "tap_qlen", "deleted",
    )

    def __init__(self, name: str, kind: str, mode: Mode, flags: int, mac: bytes, mtu: int,
                 lower: Lower, salt: int, seq: int) -> None:
        self.name = name
        self.kind = kind
        self.mode = mode
        self.flags = flags
        self.mac = mac
        self.mtu = mtu
        self.up = False
        self.promisc_user = False
        self.allmulti_user = False
        #: groups joined with `ip maddr add` (global use); stack groups come with `up`
        self.user_groups: dict[bytes, None] = {}
        self.salt = salt
        self.mc_filter = 0
        self.bc_queue_len_req = DEFAULT_BC_QUEUE_LEN
        self.macaddr_count = 0
        self.stats = Counters()
        self.lower = lower
        self.seq = seq
        #: macvtap reader ring (None: no reader attached, frames go to the netdev stack)
        self.tap: deque[bytes] | None = None
        self.tap_qlen = DEFAULT_TAP_QUEUE_LEN
        self.deleted = False

    def __repr__(self) -> str:
        return f"<{self.kind} {self.name} {self.mode.name.lower()} {self.mac.hex(':')}>"

    @property
    def carrier(self) -> bool:
        """netif_stacked_transfer_operstate(): the child's carrier is always L's."""
        return self.lower.carrier

    @property
    def promiscuity(self) -> int:
        return 1 if self.promisc_user else 0

    @property
    def allmulti(self) -> int:
        return 1 if self.allmulti_user else 0

    def mc_list(self) -> list[bytes]:
        """The device's multicast list as the stack has it (stack groups only while up)."""
        groups = list(self.user_groups)
        if self.up:
            groups += [g for g in STACK_GROUPS if g not in self.user_groups]
        return groups

    def classify(self, dst: bytes) -> PacketType:
        """eth_type_trans() on this device."""
        if dst[0] & 1:
            return PacketType.BROADCAST if dst == BROADCAST else PacketType.MULTICAST
        return PacketType.HOST if dst == self.mac else PacketType.OTHERHOST
