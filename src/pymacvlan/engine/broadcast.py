"""Flooding: macvlan_broadcast_enqueue(), macvlan_process_broadcast(), macvlan_multicast_rx()
and macvlan_broadcast(), with the mode masks by origin."""

from __future__ import annotations

from ..model import BROADCAST, ETH_P_PAUSE, Mode, PacketType, frame_max
from .device import MacvlanDev
from .port import Port
from .state import Delivery, EngineState
from .trace import Trace

BCAST = PacketType.BROADCAST
MCAST = PacketType.MULTICAST
PRIVATE, VEPA, BRIDGE, PASSTHRU, SOURCE = (Mode.PRIVATE, Mode.VEPA, Mode.BRIDGE, Mode.PASSTHRU, Mode.SOURCE)
EXTERNAL_MASK = PRIVATE | VEPA | PASSTHRU | BRIDGE
PAUSE = ETH_P_PAUSE.to_bytes(2, "big")
_K32 = 0x61C88647


class FloodPath(EngineState):
    """Mixin of :class:`~pymacvlan.engine.core.Engine`."""

    def _bc_enqueue(self, frame: bytes, src: MacvlanDev | None, port: Port, tr: Trace | None) -> None:
        if len(port.bc_queue) < port.bc_queue_len_used:
            port.bc_queue.append((frame, src))
            if tr is not None:
                tr.hop(
                    "queued on the port's broadcast queue (deferred flood; the group is broadcast or shared by "
                    "several children)"
                )
        else:
            self.lower.rx_dropped += 1
            self.drops["bc_queue_full"] += 1
            if tr is not None:
                tr.hop(
                    f"dropped for the children: broadcast queue full ({port.bc_queue_len_used} = the largest "
                    f"bcqueuelen of any child); charged to the parent's rx_dropped"
                )

    @property
    def bc_pending(self) -> bool:
        return bool(self.port is not None and self.port.bc_queue)

    def process_bc_queue(self, tr: Trace | None = None) -> list[Delivery]:
        """The bc_work item: drain the queue in FIFO order. The sender's mode is read now."""
        out: list[Delivery] = []
        port = self.port
        while port is not None and port.bc_queue:
            frame, src = port.bc_queue.popleft()
            if tr is not None:
                tr.hop("broadcast queue drained (bc_work)")
            self._multicast_rx(frame, src, port, out, tr)
        return out

    def _multicast_rx(self, frame: bytes, src: MacvlanDev | None, port: Port, out: list[Delivery],
                      tr: Trace | None) -> None:
        if src is None:
            self._broadcast(frame, None, port, EXTERNAL_MASK, False, out, tr, "from outside")
        elif src.mode == VEPA:
            self._broadcast(frame, src, port, VEPA | BRIDGE, False, out, tr, f"reflected from vepa child {src.name}")
        elif src.mode == BRIDGE and self.bridge_mc_to_bridge:
            self._broadcast(
                frame,
                None,
                port,
                VEPA | BRIDGE,
                False,
                out,
                tr,
                f"reflected from bridge child {src.name} (b52363f706e5 rule)",
            )
        else:
            self._broadcast(
                frame, src, port, VEPA, False, out, tr, f"reflected from {src.mode.name.lower()} child {src.name}"
            )

    def _broadcast(self, frame: bytes, excl: MacvlanDev | None, port: Port, mask: int, local: bool,
                   out: list[Delivery], tr: Trace | None, origin: str = "", gso: bool = False) -> None:
        """macvlan_broadcast(): every up child in the mask, but the excluded sender,
        whose own (salted) multicast filter has the destination's bit."""
        if frame[12:14] == PAUSE:
            if tr is not None:
                for v in port.vlans:
                    tr.note(v.name, False, "not flooded: pause frames (0x8808) are never flooded")
            return
        dst = frame[:6]
        n = len(frame)
        key = int.from_bytes(dst[2:6], "little")
        is_bcast = dst == BROADCAST
        for vlan in port.flood_order():
            if vlan is excl or not (vlan.mode & mask):
                if tr is not None:
                    self._trace_flood_skip(vlan, excl, mask, local, origin, tr)
                continue
            if tr is not None and not is_bcast and not (vlan.promisc_user or vlan.allmulti_user) \
                    and dst not in vlan.mc_list():
                tr.salted.add(vlan.name)
            if not (vlan.mc_filter >> ((((key ^ vlan.salt) * _K32) & 0xFFFFFFFF) >> 24)) & 1:
                if tr is not None:
                    tr.note(
                        vlan.name,
                        False,
                        "not flooded: the group is not in this child's multicast filter (join it, or set "
                        "allmulticast/promisc)",
                    )
                continue
            st = vlan.stats
            if local:
                # __dev_forward_skb(child): the child must be up and the frame fit its MTU
                if n > frame_max(vlan.mtu) and not gso:
                    st.rx_errors += 1
                    st.core_rx_dropped += 1
                    if tr is not None:
                        tr.note(
                            vlan.name, False, f"dropped (rx_errors): {n} bytes exceed the child's MTU {vlan.mtu} + 18"
                        )
                    continue
                pkttype = vlan.classify(dst)
                # on transmit skb->len still includes the Ethernet header, and
                # macvlan_count_rx() is given skb->len + ETH_HLEN all the same
                st.rx_bytes += n + 14
            else:
                pkttype = BCAST if is_bcast else MCAST
                st.rx_bytes += n
            st.rx_packets += 1
            st.multicast += 1
            if tr is not None:
                how = "bridge-mode local flood on transmit" if local else f"flood {origin}"
                tr.note(
                    vlan.name,
                    True,
                    f"delivered ({pkttype.name}): {how}; {vlan.mode.name.lower()} is in the mode mask and the group "
                    f"passes its filter",
                )
            self._deliver(vlan, pkttype, frame, out)
        if tr is not None:
            for v in port.vlans:
                if not v.up:
                    tr.note(v.name, False, "not flooded: the child is down")

    def _trace_flood_skip(self, vlan: MacvlanDev, excl: MacvlanDev | None, mask: int, local: bool, origin: str,
                          tr: Trace) -> None:
        if vlan is excl:
            tr.note(vlan.name, False, "not flooded back to its own sender")
        elif local:
            tr.note(
                vlan.name,
                False,
                f"not in the local flood: a bridge child's transmit floods only to other bridge children, not "
                f"{vlan.mode.name.lower()}",
            )
        elif vlan.mode == SOURCE:
            tr.note(vlan.name, False, "not flooded: source-mode children get only frames from the MACs on their list")
        elif vlan.mode == PRIVATE:
            tr.note(
                vlan.name,
                False,
                f"not flooded: private children get floods only from outside ({origin}); this is why ARP between "
                f"children never reaches a private child",
            )
        else:
            names = "|".join(m.name.lower() for m in Mode if m & mask)
            tr.note(
                vlan.name,
                False,
                f"not flooded: {vlan.mode.name.lower()} is not in the mask ({names}) for a frame {origin}",
            )
