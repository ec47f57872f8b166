"""What the parts of the engine share: the state every mixin of
:class:`~pymacvlan.engine.core.Engine` reads and writes, and the verbs they call on each
other, declared once so each part can be read (and type-checked) on its own."""

from __future__ import annotations

import random
from collections import Counter, deque
from typing import TYPE_CHECKING

from ..model import PacketType
from .defrag import Defragmenter
from .device import Lower, MacvlanDev
from .port import Port
from .trace import Trace

#: where a frame goes: a child, the parent's own stack (the Lower) or the wire (``WIRE``)
Target = MacvlanDev | Lower | str
#: one of the engine's decisions: (target, the pkt_type the receiver classifies it as, frame);
#: the pkt_type is None for what leaves on the wire
Delivery = tuple[Target, PacketType | None, bytes]


class EngineState:
    """Declared, not defined: :class:`~pymacvlan.engine.core.Engine` sets these up."""

    lower: Lower
    port: Port | None
    children: dict[str, MacvlanDev]
    bridge_mc_to_bridge: bool
    defrag: Defragmenter
    #: drops the kernel does not count anywhere, by reason, so none is silent here
    drops: Counter[str]
    _synced: dict[MacvlanDev, set[bytes]]
    _rng: random.Random

    @property
    def _port(self) -> Port:
        """The port, for control paths that act on an existing child (so a port exists).
        Per-frame paths narrow ``self.port`` themselves instead of paying for this call."""
        port = self.port
        if port is None:
            raise RuntimeError("no macvlan port: the parent has no children")
        return port

    if TYPE_CHECKING:  # the verbs one part calls on another (defined in core, receive, broadcast)
        def _deliver(self, vlan: MacvlanDev, pkttype: PacketType, frame: bytes, out: list[Delivery]) -> None: ...

        def _tap_queue(self, vlan: MacvlanDev, ring: deque[bytes], pkttype: PacketType, frame: bytes,
                       out: list[Delivery]) -> None: ...

        def _random_mac(self) -> bytes: ...

        def _salt(self) -> int: ...

        def receive(self, frame: bytes, tr: Trace | None = None) -> list[Delivery]: ...

        def _bc_enqueue(self, frame: bytes, src: MacvlanDev | None, port: Port, tr: Trace | None) -> None: ...

        def _multicast_rx(self, frame: bytes, src: MacvlanDev | None, port: Port, out: list[Delivery],
                          tr: Trace | None) -> None: ...

        def _broadcast(self, frame: bytes, excl: MacvlanDev | None, port: Port, mask: int, local: bool,
                       out: list[Delivery], tr: Trace | None, origin: str = "", gso: bool = False) -> None: ...

        def _lower_promiscuity(self, inc: int) -> None: ...

        def _lower_allmulti(self, inc: int) -> None: ...
