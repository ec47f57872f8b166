"""macvlan_handle_frame(): what happens to a frame the parent receives.

Hot path: a unicast frame with no source-mode entries costs one slice, one dict lookup,
two counter updates and one small list. Everything else (source copies, multicast,
passthru, tracing) branches off it.
"""

from __future__ import annotations

from ..model import BROADCAST, MacvlanFlag, Mode, PacketType
from .device import Lower, MacvlanDev
from .hashes import mc_hash
from .port import Port
from .state import Delivery, EngineState
from .trace import PARENT, Trace

HOST = PacketType.HOST
OTHERHOST = PacketType.OTHERHOST
BCAST = PacketType.BROADCAST
MCAST = PacketType.MULTICAST
SOURCE = Mode.SOURCE
VEPA = Mode.VEPA
BRIDGE = Mode.BRIDGE
NODST = MacvlanFlag.NODST


class ReceivePath(EngineState):
    """Mixin of :class:`~pymacvlan.engine.core.Engine`: the parent's rx_handler."""

    def receive(self, frame: bytes, tr: Trace | None = None) -> list[Delivery]:
        """A frame arrives at the parent (from the wire, or through dev_forward_skb).

        Returns deliveries ``(target, pkttype, frame)``: a child, the parent (its own
        stack) or nothing. Deferred floods wait in ``port.bc_queue``.
        """
        port = self.port
        lower = self.lower
        dst = frame[:6]
        if port is None:
            if tr is not None:
                tr.note(PARENT, True, "the parent has no macvlan port (no children): its own stack gets every frame")
            return [(lower, lower_pkttype(lower, dst, frame), frame)]
        if dst[0] & 1:
            return self._rx_multicast(frame, dst, port, tr)
        out: list[Delivery] = []
        if port.source_hash:
            entries = port.source_hash.get(frame[6:12])
            if entries and self._forward_source(frame, dst, entries, out, tr):
                if tr is not None:
                    tr.note(
                        PARENT,
                        False,
                        "consumed: a source-mode child with flag nodst lists the sender's MAC, so the frame goes no "
                        "further",
                    )
                return out
        if port.passthru:
            vlan = port.vlans[0] if port.vlans else None
        else:
            vlan = port.vlan_hash.get(dst)
        if vlan is None or vlan.mode == SOURCE:
            pkttype = lower_pkttype(lower, dst, frame)
            if tr is not None:
                self._trace_unicast_miss(dst, vlan, tr)
            out.append((lower, pkttype, frame))
            return out
        if not vlan.up:
            self.drops["rx_target_down"] += 1
            if tr is not None:
                tr.note(
                    vlan.name,
                    False,
                    "dropped: passthru delivers every unicast to its only child, and that child is down (nothing "
                    "counted by the kernel)",
                )
                tr.note(PARENT, False, "not passed up: the passthru port consumes all unicast")
            return out
        st = vlan.stats
        st.rx_packets += 1
        st.rx_bytes += len(frame)
        if tr is not None:
            self._trace_unicast_hit(dst, vlan, tr)
        ring = vlan.tap
        if ring is None:
            out.append((vlan, HOST, frame))
        else:
            self._tap_queue(vlan, ring, HOST, frame, out)
        return out

    # -- source mode ---------------------------------------------------------------------
    def _forward_source(self, frame: bytes, dst: bytes, entries: list[tuple[MacvlanDev, int]],
                        out: list[Delivery], tr: Trace | None) -> bool:
        """macvlan_forward_source(): copies for source-mode children; True = consume."""
        consume = False
        multicast = dst[0] & 1
        n = len(frame)
        for vlan, _ in entries:
            if vlan.flags & NODST:
                consume = True
            if not vlan.up:
                if tr is not None:
                    tr.note(vlan.name, False, "source mode lists the sender's MAC, but the child is down")
                continue
            if dst == vlan.mac:
                pkttype = HOST
            elif multicast:
                pkttype = BCAST if dst == BROADCAST else MCAST
            else:
                pkttype = HOST if dst == self.lower.mac else OTHERHOST
            st = vlan.stats
            st.rx_packets += 1
            st.rx_bytes += n
            if tr is not None:
                tr.note(
                    vlan.name,
                    True,
                    f"source mode: its list holds the sender {frame[6:12].hex(':')}, so it gets a copy "
                    f"({pkttype.name})",
                )
            self._deliver(vlan, pkttype, frame, out)
        return consume

    # -- multicast and broadcast ---------------------------------------------------------------
    def _rx_multicast(self, frame: bytes, dst: bytes, port: Port, tr: Trace | None) -> list[Delivery]:
        lower = self.lower
        if self.defrag.is_fragment(frame):
            whole = self.defrag.add(frame)
            if whole is None:
                if tr is not None:
                    tr.note(PARENT, False, "held: an IPv4 multicast fragment waits for reassembly (ip_check_defrag)")
                return []
            frame = whole
            dst = frame[:6]
        out: list[Delivery] = []
        src_mac = frame[6:12]
        entries = port.source_hash.get(src_mac) if port.source_hash else None
        if entries and self._forward_source(frame, dst, entries, out, tr):
            if tr is not None:
                tr.note(PARENT, False, "consumed: a source-mode child with flag nodst lists the sender's MAC")
            return out
        src = port.vlan_hash.get(src_mac)
        if src is not None and src.mode != VEPA and src.mode != BRIDGE:
            pkttype = BCAST if dst == BROADCAST else MCAST
            src.stats.rx_packets += 1  # counted with 0 bytes, no multicast count
            if tr is not None:
                tr.note(
                    src.name,
                    True,
                    f"forwarded back to the original port: the sender's MAC is this {src.mode.name.lower()} child's, "
                    f"and macvlan returns such a frame only to it",
                )
                tr.note(
                    PARENT,
                    False,
                    f"consumed: the source is {src.mode.name.lower()} child {src.name}, whose reflected floods go "
                    f"only back to it",
                )
                for v in port.vlans:
                    if v is not src:
                        tr.note(
                            v.name,
                            False,
                            f"not flooded: the source is {src.mode.name.lower()} child {src.name}; its floods return "
                            f"only to itself",
                        )
            self._deliver(src, pkttype, frame, out)
            return out
        h = mc_hash(0, dst)
        if (port.bc_filter >> h) & 1:
            self._bc_enqueue(frame, src, port, tr)
        elif (port.mc_filter >> h) & 1:
            self._multicast_rx(frame, src, port, out, tr)
        elif tr is not None:
            for v in port.vlans:
                tr.note(
                    v.name,
                    False,
                    "not flooded: no up child subscribes to this group (the port's multicast filter has no bit for it)",
                )
        pkttype = lower_pkttype(lower, dst, frame)
        if tr is not None:
            tr.note(
                PARENT, True, f"passed up: the parent's own stack always gets multicast and broadcast ({pkttype.name})"
            )
        out.append((lower, pkttype, frame))
        return out

    # -- tracing helpers (only ever called with a trace) ----------------------------------------
    def _trace_unicast_miss(self, dst: bytes, vlan: MacvlanDev | None, tr: Trace) -> None:
        lower = self.lower
        if vlan is not None:
            tr.note(
                vlan.name,
                False,
                "not delivered: source-mode children never get unicast for their own MAC through the lookup",
            )
        owner = "the parent's own MAC" if dst == lower.mac else "no up child's MAC"
        for v in self._port.vlans:
            if v is vlan:
                continue
            if v.mac == dst and not v.up:
                tr.note(
                    v.name,
                    False,
                    f"not delivered: {dst.hex(':')} is this child's MAC but it is down (down children are not in the "
                    f"MAC table)",
                )
            else:
                tr.note(
                    v.name,
                    False,
                    f"not delivered: unicast goes only to the up child owning the destination, and {dst.hex(':')} is "
                    f"{owner}",
                )
        tr.note(PARENT, True, f"passed up to the parent's stack: {dst.hex(':')} is {owner}")

    def _trace_unicast_hit(self, dst: bytes, vlan: MacvlanDev, tr: Trace) -> None:
        port = self._port
        if port.passthru:
            tr.note(
                vlan.name,
                True,
                "delivered (HOST): a passthru port hands every unicast to its only child, whatever the destination",
            )
        else:
            tr.note(vlan.name, True, f"delivered (HOST): {dst.hex(':')} is this up child's MAC")
        for v in port.vlans:
            if v is not vlan:
                tr.note(v.name, False, f"not delivered: unicast to {dst.hex(':')} belongs to {vlan.name}")
        tr.note(PARENT, False, f"not passed up: macvlan handed the frame to {vlan.name}")


def lower_pkttype(lower: Lower, dst: bytes, frame: bytes) -> PacketType:
    """eth_type_trans() on the parent; a frame tagged with a VLAN the parent has no device
    for reaches its stack as OTHERHOST (__netif_receive_skb_core)."""
    if frame[12:14] == b"\x81\x00" and (frame[14] & 0x0F or frame[15]):
        return OTHERHOST
    if dst[0] & 1:
        return BCAST if dst == BROADCAST else MCAST
    return HOST if dst == lower.mac else OTHERHOST
