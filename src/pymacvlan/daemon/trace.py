"""`pymacvlan trace` in the daemon: which frames a subscriber wants, and the datapath's
handlers while someone traces (:class:`FrameTracer`)."""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass

from ..backends.userspace._sys import ZERO_VNET_HDR
from ..backends.userspace.vnet import VNET_HDR_LEN
from ..engine import WIRE
from ..engine.device import Lower
from ..engine.trace import PARENT, Trace
from ..model import KernelError, mac_str, parse_mac

MIN_BUF = VNET_HDR_LEN + 14


# -- tracing -------------------------------------------------------------------------------------------------
@dataclass
class TraceFilter:
    """Which frames a subscriber wants: all given conditions must hold."""

    mac: bytes | None = None  # source or destination
    ethertype: int | None = None  # outer, or inner behind one 802.1Q tag
    child: str | None = None  # sent by, or considered for, this child (its name or key)

    @classmethod
    def from_request(cls, req: dict) -> "TraceFilter":
        try:
            mac = parse_mac(req["mac"]) if req.get("mac") else None
            et = req.get("ethertype")
            if isinstance(et, str):
                et = int(et, 16) if et.lower().startswith("0x") else int(et, 16 if len(et) == 4 else 10)
        except (ValueError, TypeError) as e:
            raise KernelError("EINVAL", f"bad trace filter: {e}") from None
        return cls(mac, et, req.get("child") or None)

    def pre(self, frame: bytes) -> bool:
        """The cheap part, before the engine sees the frame."""
        if self.mac is not None and frame[0:6] != self.mac and frame[6:12] != self.mac:
            return False
        if self.ethertype is not None:
            et = int.from_bytes(frame[12:14], "big")
            if et != self.ethertype and not (et == 0x8100 and int.from_bytes(frame[16:18], "big") == self.ethertype):
                return False
        return True

    def concerns(self, origin: str, delivered, considered) -> bool:
        """The part after the engine: ``child`` sent it, got it or was considered for it."""
        return self.child is None or self.child == origin or self.child in delivered or self.child in considered


class FrameTracer:
    """The datapath's slow path while someone traces (``Datapath._trace``).

    The datapath checks ``self._trace is not None`` once per handler call and then hands
    the whole batch here; frames matching a subscriber's filter go through the engine
    with a :class:`Trace`, the rest exactly as on the fast path. One instance per datapath;
    ``emit`` gets each explained frame (called on the datapath's thread).
    """

    def __init__(self, parent_name: str, filters: list[TraceFilter], emit) -> None:
        self.parent_name = parent_name
        self.filters = filters
        self.emit = emit

    def on_parent(self, dp) -> None:
        """Parent → children (``Datapath._on_parent``'s slow twin)."""
        parent = dp.parent
        if parent is None:
            return
        receive = dp.engine.receive
        for buf in parent.drain(dp.cfg.budget):
            if len(buf) < MIN_BUF:
                dp.counters["rx_runt"] += 1
                continue
            self._frames(dp, "wire", None, buf, "rx_bad_vnet_hdr", lambda f, tr, gso: receive(f, tr))

    def on_tap(self, dp, fd: int, vlan) -> None:
        """A TAP child transmits (the TAP reader's slow twin)."""
        for _ in range(dp.cfg.budget):
            try:
                buf = os.read(fd, VNET_HDR_LEN + 65535 + 18)
            except BlockingIOError:
                return
            except OSError as e:
                dp.counters[f"child_read_{errno.errorcode.get(e.errno or 0, e.errno)}"] += 1
                if e.errno == errno.EBADFD:
                    dp.unwatch(fd)
                return
            if len(buf) < MIN_BUF:
                dp.counters["tx_runt"] += 1
                continue
            self._child_buf(dp, vlan, buf)

    def on_child_buf(self, dp, vlan, buf: bytes) -> None:
        """One buffer a veth child sent (the veth ring reader's slow twin)."""
        if len(buf) < MIN_BUF:
            dp.counters["tx_runt"] += 1
            return
        self._child_buf(dp, vlan, buf)

    def on_endpoint(self, dp, ep, buf: bytes) -> None:
        """A macvtap endpoint's client transmits (``Datapath._endpoint_sink``'s slow twin)."""
        vlan = ep.child
        if vlan is None or vlan.deleted:
            dp.counters["tx_no_child"] += 1
            return
        if len(buf) - VNET_HDR_LEN > vlan.mtu + 18 and buf[1] == 0:
            ep.counters["tx_oversize"] += 1
            vlan.stats.tx_dropped += 1
            return
        self._child_buf(dp, vlan, buf)

    def _child_buf(self, dp, vlan, buf: bytes) -> None:
        xmit = dp.engine.xmit
        self._frames(dp, vlan.name, vlan, buf, "tx_bad_vnet_hdr", lambda f, tr, gso: xmit(vlan, f, tr, gso))

    # -- common
    def _frames(self, dp, origin: str, vlan, buf: bytes, bad: str, decide) -> None:
        """Unicast keeps its header (GSO crosses whole); multicast with a header is finalized
        first, as on the fast path."""
        frame = buf[VNET_HDR_LEN:]
        if frame[0] & 1 and buf[:VNET_HDR_LEN] != ZERO_VNET_HDR:
            from ..backends.userspace.gso import GSOError, finalize
            try:
                frames = finalize(buf)
            except GSOError:
                dp.counters[bad] += 1
                return
            for f in frames:
                self._one(dp, origin, vlan, f, None, False, decide)
            return
        self._one(dp, origin, vlan, frame, buf, buf[1] != 0, decide)

    def _one(self, dp, origin: str, vlan, frame: bytes, buf: bytes | None, gso: bool, decide) -> None:
        match = [f for f in self.filters if f.pre(frame)]
        tr = Trace() if match else None
        if tr is not None:
            tr.hop("frame arrives at the parent from the wire" if vlan is None else f"{origin} transmits it")
        deliveries = decide(frame, tr, gso)
        if tr is not None and dp.engine.bc_pending:
            # the deferred flood (macvlan_process_broadcast), explained with the frame it carries
            deliveries = list(deliveries) + dp.engine.process_bc_queue(tr)
        dp._dispatch(deliveries, frame, buf)
        if tr is None:
            return
        got = sorted({_target_name(t) for t, _pt, _f in deliveries})
        names = [WIRE, PARENT] + list(dp.engine.children)
        for f in match:
            if not f.concerns(origin, got, tr.notes):
                continue
            self.emit({"event": "frame", "time": time.time(), "parent": self.parent_name, "from": origin,
                       "dst": mac_str(frame[0:6]), "src": mac_str(frame[6:12]),
                       "ethertype": f"0x{int.from_bytes(frame[12:14], 'big'):04x}", "len": len(frame),
                       "delivered": got, "path": tr.path(),
                       "trace": tr.summary(names, "not reached: the frame never came its way"),
                       "frame": frame.hex()})
            return


def _target_name(target) -> str:
    """A delivery's target as the trace names it: ``@wire``, ``@parent`` or the child's key."""
    if target is WIRE:
        return WIRE
    if isinstance(target, Lower):
        return PARENT
    return target.name
