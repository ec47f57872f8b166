"""`pymacvlan trace` in the daemon: which frames a subscriber wants (:class:`TraceFilter`)
and the observer the datapath calls while someone traces (:class:`FrameTracer`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ..engine import WIRE, Engine
from ..engine.device import Lower, MacvlanDev
from ..engine.trace import PARENT, Trace
from ..model import ETH_P_8021Q, KernelError, mac_str, parse_mac


# -- tracing -------------------------------------------------------------------------------------------------
def ethertype_value(text: str | int) -> int:
    """An ethertype as given on a command line: ``0x0806``, ``88b5`` (four digits: hex) or decimal."""
    if isinstance(text, int):
        v = text
    else:
        try:
            v = int(text, 16) if text.lower().startswith("0x") or len(text) == 4 else int(text)
        except ValueError:
            raise KernelError("EINVAL", f"{text!r} is not an ethertype",
                              "give it in hex, like 0x0806 or 88b5") from None
    if not 0 <= v <= 0xFFFF:
        raise KernelError("EINVAL", f"ethertype {text} is out of range", "it is 16 bits")
    return v


@dataclass
class TraceFilter:
    """Which frames a subscriber wants: all given conditions must hold."""

    mac: bytes | None = None  # source or destination
    ethertype: int | None = None  # outer, or inner behind one 802.1Q tag
    child: str | None = None  # sent by, or considered for, this child (its name or key)

    @classmethod
    def from_request(cls, req: dict) -> TraceFilter:
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
            if et != self.ethertype and not (
                et == ETH_P_8021Q and int.from_bytes(frame[16:18], "big") == self.ethertype
            ):
                return False
        return True

    def concerns(self, origin: str, delivered, considered) -> bool:
        """The part after the engine: ``child`` sent it, got it or was considered for it."""
        return self.child is None or self.child == origin or self.child in delivered or self.child in considered

    def concerns_event(self, ev: dict) -> bool:
        """:meth:`concerns` for an explained frame (a trace event): frames the child sends,
        gets, or was considered for."""
        considered = {t["device"] for t in ev["trace"] if t["received"] or not t["rules"][0].startswith("not reached")}
        return self.concerns(ev["from"], ev["delivered"], considered)


class FrameTracer:
    """A :class:`~pymacvlan.backends.userspace.datapath.FrameObserver` for `pymacvlan trace`
    subscribers: frames matching a filter get a :class:`Trace`, which the datapath's own
    handlers fill (the same admission and dispatch as when nobody traces); ``emit`` gets each
    explained frame as an event (called on the datapath's thread)."""

    def __init__(self, parent_name: str, filters: list[TraceFilter], emit: Callable[[dict], None],
                 engine: Engine) -> None:
        self.parent_name = parent_name
        self.filters = filters
        self.emit = emit
        self.engine = engine

    def begin(self, origin: str, vlan: MacvlanDev | None, frame: bytes) -> Trace | None:
        if not any(f.pre(frame) for f in self.filters):
            return None
        tr = Trace()
        tr.hop("frame arrives at the parent from the wire" if vlan is None else f"{origin} transmits it")
        return tr

    def end(self, origin: str, vlan: MacvlanDev | None, frame: bytes, tr: Trace, deliveries: list) -> None:
        got = sorted({_target_name(t) for t, _pt, _f in deliveries})
        names = [WIRE, PARENT] + list(self.engine.children)
        for f in self.filters:
            if not f.pre(frame) or not f.concerns(origin, got, tr.notes):
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
