"""The engine: one parent, its port and its children, as drivers/net/macvlan.c keeps them.

Sans-IO: it takes frames and control operations and returns decisions. Deliveries are
``(target, pkttype, frame)`` where target is a :class:`MacvlanDev`, the :class:`Lower`
(its own stack) or :data:`WIRE`. Counters live in the devices. Nothing here touches a
socket, a clock or a thread; backends drain ``port.bc_queue`` when they see fit.
"""

from __future__ import annotations

import random
from collections import Counter, deque

from ..model import KernelError, PacketType, random_mac
from .broadcast import FloodPath
from .control import ControlPlane
from .defrag import Defragmenter
from .device import Lower, MacvlanDev
from .port import Port
from .receive import ReceivePath
from .state import Delivery
from .trace import WIRE
from .transmit import TransmitPath

__all__ = ["Engine", "WIRE"]

#: ethertypes a stock Linux namespace has protocol handlers for (IPv4, ARP, IPv6)
STACK_PROTOCOLS = frozenset({b"\x08\x00", b"\x08\x06", b"\x86\xdd"})


class Engine(ReceivePath, FloodPath, TransmitPath, ControlPlane):
    """macvlan on one lower device.

    ``bridge_mc_to_bridge`` selects the flood rule of commit b52363f706e5 (kernels from
    2026): a reflected multicast whose source is a bridge child also reaches bridge
    children, the sender included. The default is the rule of 6.18, the kernel here.
    """

    def __init__(self, parent: str = "parent", mac: bytes | None = None, mtu: int = 1500, *,
                 seed: int | None = 0, unicast_filter: bool = False, bridge_mc_to_bridge: bool = False) -> None:
        self._rng = random.Random(seed) if seed is not None else random.SystemRandom()
        self.lower = Lower(parent, mac if mac is not None else random_mac(self._rng), mtu=mtu,
                           unicast_filter=unicast_filter)
        self.port: Port | None = None
        self.children: dict[str, MacvlanDev] = {}
        self.bridge_mc_to_bridge = bridge_mc_to_bridge
        self.defrag = Defragmenter()
        #: drops the kernel does not count anywhere, by reason, so none is silent here
        self.drops: Counter[str] = Counter()
        self._synced: dict[MacvlanDev, set[bytes]] = {}

    def _random_mac(self) -> bytes:
        return random_mac(self._rng)

    def _salt(self) -> int:
        """The kernel salts each child's filter with its pointer; any value is faithful."""
        return self._rng.getrandbits(32)

    # -- delivery into a child -------------------------------------------------------------------
    def _deliver(self, vlan: MacvlanDev, pkttype: PacketType, frame: bytes, out: list[Delivery]) -> None:
        """A clone handed to the child with netif_rx() (floods, source copies, the original
        port); unicast goes through RX_HANDLER_ANOTHER in receive() instead."""
        ring = vlan.tap
        if ring is not None:
            self._tap_queue(vlan, ring, pkttype, frame, out)
            return
        if vlan.kind == "macvtap" and frame[12:14] not in STACK_PROTOCOLS:
            # Seen on 6.18: a macvtap with no reader passes such a clone to its own stack,
            # where no handler takes this protocol: the core counts rx_dropped.
            vlan.stats.core_rx_dropped += 1
        out.append((vlan, pkttype, frame))

    def _tap_queue(self, vlan: MacvlanDev, ring: deque[bytes], pkttype: PacketType, frame: bytes,
                   out: list[Delivery]) -> None:
        """tap_handle_frame(): a macvtap with a reader queues the frame on its ring
        (``vlan.tap``, which the caller has read and found set)."""
        if len(ring) >= vlan.tap_qlen:
            vlan.stats.rx_errors += 1
            self.drops["tap_ring_full"] += 1
            return
        ring.append(frame)
        out.append((vlan, pkttype, frame))

    # -- macvtap readers -----------------------------------------------------------------------------
    def attach_reader(self, name: str) -> None:
        """open() of /dev/tapN: from now on frames for the macvtap go to its ring."""
        vlan = self.child(name)
        if vlan.kind != "macvtap":
            raise KernelError("EOPNOTSUPP", f"{name} is a {vlan.kind}, not a macvtap",
                              "only macvtap children have a reader queue")
        if vlan.tap is None:
            vlan.tap = deque()

    def detach_reader(self, name: str) -> None:
        self.child(name).tap = None

    def tap_read(self, name: str) -> bytes | None:
        ring = self.child(name).tap
        return ring.popleft() if ring else None

    # -- the parent's own stack transmits -----------------------------------------------------------------
    def parent_xmit(self, frame: bytes) -> list[Delivery]:
        """L's stack transmits: never seen by the rx_handler (PACKET_LOOPBACK), only the wire."""
        lower = self.lower
        if lower.carrier:
            return [(WIRE, None, frame)]
        self.drops["tx_no_carrier"] += 1
        return []

