"""macvlan_start_xmit() / macvlan_queue_xmit(): what happens when a child transmits."""

from __future__ import annotations

from ..model import Mode, frame_max
from .device import MacvlanDev
from .port import Port
from .state import Delivery, EngineState
from .trace import PARENT, WIRE, Trace

BRIDGE = Mode.BRIDGE


class TransmitPath(EngineState):
    """Mixin of :class:`~pymacvlan.engine.core.Engine`."""

    def xmit(self, vlan: MacvlanDev, frame: bytes, tr: Trace | None = None, gso: bool = False) -> list[Delivery]:
        """A child transmits: deliveries (local children, the parent via dev_forward_skb)
        and ``(WIRE, None, frame)`` for what leaves the parent. ``gso``: the frame is a GSO
        super-frame, which is_skb_forwardable() exempts from the MTU checks."""
        out: list[Delivery] = []
        st = vlan.stats
        if self._queue_xmit(vlan, frame, out, tr, gso):
            st.tx_packets += 1
            st.tx_bytes += len(frame)
        else:
            st.tx_dropped += 1
        return out

    def _queue_xmit(self, vlan: MacvlanDev, frame: bytes, out: list[Delivery], tr: Trace | None,
                    gso: bool = False) -> bool:
        if vlan.mode == BRIDGE:
            # a transmitting child implies its port; per frame, so no cast() call nor check
            port: Port = self.port  # type: ignore[assignment]
            dst = frame[:6]
            if dst[0] & 1:
                if tr is not None:
                    tr.hop(
                        f"bridge child {vlan.name} transmits a multicast: local flood to the other bridge children, "
                        f"then the wire"
                    )
                self._broadcast(frame, vlan, port, BRIDGE, True, out, tr, f"from bridge child {vlan.name}", gso)
                return self._xmit_world(frame, out, tr)
            dest = port.vlan_hash.get(dst)
            if dest is not None and dest.mode == BRIDGE:
                if tr is not None:
                    tr.hop(
                        f"bridge child {vlan.name} → bridge child {dest.name}: delivered locally through the "
                        f"parent's receive path (never on the wire)"
                    )
                self._forward_to_lower(frame, out, tr, gso)
                return True
        if tr is not None:
            tr.hop(
                f"{vlan.mode.name.lower()} child {vlan.name} transmits: to the wire (only bridge mode switches locally)"
            )
        return self._xmit_world(frame, out, tr)

    def _forward_to_lower(self, frame: bytes, out: list[Delivery], tr: Trace | None, gso: bool = False) -> None:
        """dev_forward_skb(L): into L's receive path, so source-mode children see it."""
        lower = self.lower
        if not lower.up or (len(frame) > frame_max(lower.mtu) and not gso):
            lower.rx_dropped += 1
            self.drops["forward_to_lower_refused"] += 1
            if tr is not None:
                why = (
                    "the parent is down"
                    if not lower.up
                    else f"{len(frame)} bytes exceed the parent's MTU {lower.mtu} + 18"
                )
                tr.hop(f"dropped at the parent ({why}); the sender still counts a success")
            return
        out.extend(self.receive(frame, tr))

    def _xmit_world(self, frame: bytes, out: list[Delivery], tr: Trace | None) -> bool:
        """dev_queue_xmit(L). A down parent refuses (ENETDOWN); a veth parent whose peer is
        down drops the frame and says so (NET_XMIT_DROP): either way the child counts
        tx_dropped (found by the differential fuzzer, seed 20261121)."""
        lower = self.lower
        if not lower.up:
            self.drops["tx_parent_down"] += 1
            if tr is not None:
                tr.note(WIRE, False, "not sent: the parent is down (the child counts tx_dropped)")
            return False
        if not lower.carrier:
            self.drops["tx_no_carrier"] += 1
            if tr is not None:
                tr.note(
                    WIRE,
                    False,
                    "dropped: the parent has no carrier (its veth peer is down); the child counts tx_dropped",
                )
            return False
        out.append((WIRE, None, frame))
        if tr is not None:
            tr.note(WIRE, True, "sent on the wire through the parent")
            tr.note(
                PARENT, False, "the parent's own stack never sees what it transmits (only a hairpin brings it back)"
            )
        return True
