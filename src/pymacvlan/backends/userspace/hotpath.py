"""The datapath's hot path: frames from the parent and from the children through the engine
to their writers (see :mod:`.datapath` for the whole picture).

Per pass: the parent's ring → ``engine.receive`` → the children's writers; each readable TAP,
veth ring or endpoint → ``engine.xmit`` → the parent's tx ring or other children; then
:meth:`HotPath._end_of_pass` drains the engine's broadcast queue and kicks every tx ring once.
Frames are ``bytes`` of virtio_net_hdr + frame (:mod:`.vnet`); the engine sees the frame
part only and returns the same object for every delivery of it, so the buffer read is the
buffer written. A :class:`FrameObserver` (``pymacvlan trace``) sees every frame that reaches
the engine, explained.
"""

from __future__ import annotations

import errno
import os
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ...engine import WIRE, Engine, Trace
from ...engine.device import MacvlanDev
from ...model import frame_max
from ._sys import ZERO_VNET_HDR
from .gso import GSOError, finalize
from .vnet import VNET_HDR_LEN

if TYPE_CHECKING:
    from .endpoints import Endpoint
    from .parent import Parent
    from .tap import Tap
    from .veth import VethChild

__all__ = ["HotPath", "FrameObserver", "READ_SIZE", "MIN_BUF"]

READ_SIZE = VNET_HDR_LEN + 65535 + 18
MIN_BUF = VNET_HDR_LEN + 14
#: IGMP and MLD report destinations: a child that sends one has just changed its groups
_REPORT_DSTS = {bytes.fromhex("01005e000016"), bytes.fromhex("01005e000002"), bytes.fromhex("333300000016"),
                bytes.fromhex("333300000002")}


class FrameObserver(Protocol):
    """Who watches frames go by (`pymacvlan trace`): installed with :meth:`Datapath.set_observer`.

    The datapath calls it from its own admission and dispatch code, per frame that reached the
    engine: ``begin`` returns a :class:`~pymacvlan.engine.Trace` to have the engine explain this
    frame (None: decided as if unobserved), ``end`` gets the decisions once dispatched. ``origin``
    is ``"wire"`` or the sending child's name (``vlan`` is that child, None from the wire).
    Both run on the datapath's thread and must not block. While one is installed the eBPF fast
    path forwards nothing, so every frame passes here."""

    def begin(self, origin: str, vlan: MacvlanDev | None, frame: bytes) -> Trace | None: ...

    def end(self, origin: str, vlan: MacvlanDev | None, frame: bytes, tr: Trace, deliveries: list) -> None: ...


class HotPath:
    """The hot path's room of :class:`~.datapath.Datapath`: what it reads of the datapath is
    declared here; everything runs on the loop thread."""

    engine: Engine
    counters: Counter[str]
    parent: Parent | None
    _out: dict[object, Callable[[bytes], Any]]
    _rings: list[Parent]
    _flushers: list[Callable[[], None]]
    _mc_dirty: set[str]
    _observer: FrameObserver | None
    cfg: Any

    if TYPE_CHECKING:
        def watch(self, fd: int, handler: Callable[[int], None], write: bool = False, kind: str = "fd") -> None: ...
        def unwatch(self, fd: int) -> None: ...
        def call(self, fn: Callable, *args: Any, **kw: Any) -> Any: ...
        def _sync_fastpath(self) -> None: ...

    def _tx_stalled(self) -> bool:
        parent = self.parent
        if parent is not None and parent.tx_stalled:
            return True
        for ring in self._rings:
            if ring.tx_stalled:
                return True
        return False

    def _drain_bc(self) -> None:
        """macvlan_process_broadcast: the queued floods, to the children's writers."""
        out = self._out
        for target, _pt, f in self.engine.process_bc_queue():
            w = out.get(target)
            if w is not None:
                w(ZERO_VNET_HDR + f)

    def _end_of_pass(self) -> None:
        if self.engine.bc_pending:
            self._drain_bc()
        parent = self.parent
        if parent is not None:
            parent.flush()
        for ring in self._rings:
            ring.flush()
        for fl in self._flushers:
            fl()

    # -- parent → children -----------------------------------------------------------------
    def _watch_parent(self) -> None:
        assert self.parent is not None  # called right after it was opened
        self.watch(self.parent.fd, self._on_parent, kind="parent")

    def _on_parent(self, events: int) -> None:
        parent = self.parent
        if parent is None:
            return
        receive = self.engine.receive
        out = self._out
        obs = self._observer
        bufs = parent.drain(self.cfg.budget)
        if not bufs:
            parent.rx_resync()  # readable but nothing at our head (see Parent.rx_resync)
            return
        for buf in bufs:
            n = len(buf)
            if n < MIN_BUF:
                self.counters["rx_runt"] += 1
                continue
            if buf[VNET_HDR_LEN] & 1 and buf[:VNET_HDR_LEN] != ZERO_VNET_HDR:
                self._rx_finalized(buf)
                continue
            frame = buf[VNET_HDR_LEN:]
            if obs is not None:
                self._observed(obs, None, frame, buf)
                continue
            for target, _pt, f in receive(frame):
                w = out.get(target)
                if w is not None:
                    w(buf if f is frame else ZERO_VNET_HDR + f)

    def _rx_finalized(self, buf: bytes) -> None:
        try:
            frames = finalize(buf)
        except GSOError:
            self.counters["rx_bad_vnet_hdr"] += 1
            return
        out = self._out
        obs = self._observer
        for frame in frames:
            if obs is not None:
                self._observed(obs, None, frame, None)
                continue
            for target, _pt, f in self.engine.receive(frame):
                w = out.get(target)
                if w is not None:
                    w(ZERO_VNET_HDR + f)

    # -- a child transmits --------------------------------------------------------------------
    def _make_child_sender(self, vlan: MacvlanDev) -> Callable[[bytes], None]:
        """What the datapath does with one hdr+frame buffer a macvlan child sent (TAP read or
        veth ring): the engine's transmit decision, handed on."""
        xmit = self.engine.xmit
        dispatch = self._dispatch
        counters = self.counters
        out = self._out

        def sent(buf: bytes) -> None:
            if len(buf) < MIN_BUF:
                counters["tx_runt"] += 1
                return
            if buf[VNET_HDR_LEN] & 1:
                self._xmit_multicast(vlan, buf)
                return
            # bytes, not a memoryview: hashing a view's slice (the engine's MAC lookups)
            # hashes the whole underlying buffer first, 64 KB of siphash for a GSO frame
            frame = buf[VNET_HDR_LEN:]
            obs = self._observer
            if obs is not None:
                self._observed(obs, vlan, frame, buf, buf[1] != 0)
                return
            deliveries = xmit(vlan, frame, None, buf[1] != 0)
            if len(deliveries) == 1:  # the common case, one child gets the frame itself
                target, _pt, f = deliveries[0]
                if f is frame:
                    w = out.get(target)
                    if w is not None:
                        w(buf)
                        return
            dispatch(deliveries, frame, buf)

        return sent

    def _make_tap_reader(self, tap: Tap, vlan: MacvlanDev) -> Callable[[int], None]:
        fd = tap.fd
        read = os.read
        budget = self.cfg.budget
        counters = self.counters
        sent = self._make_child_sender(vlan)

        def on_tap(events: int) -> None:
            for _ in range(budget):
                try:
                    buf = read(fd, READ_SIZE)
                except BlockingIOError:
                    return
                except OSError as e:
                    counters[f"child_read_{errno.errorcode.get(e.errno or 0, e.errno)}"] += 1
                    if e.errno == errno.EBADFD:  # the TAP is gone (namespace torn down)
                        self.unwatch(fd)
                    return
                sent(buf)

        return on_tap

    def _make_veth_reader(self, child: VethChild, vlan: MacvlanDev) -> Callable[[int], None]:
        ring = child.ring
        assert ring is not None  # open until the child is deleted
        budget = self.cfg.budget
        sent = self._make_child_sender(vlan)

        def on_veth(events: int) -> None:
            bufs = ring.drain(budget)
            if not bufs:
                ring.rx_resync()
                return
            for buf in bufs:
                sent(buf)

        return on_veth

    def _xmit_multicast(self, vlan: MacvlanDev, buf: bytes) -> None:
        """Slow path for multicast from a child: finalize partial checksums, notice group changes."""
        if buf[VNET_HDR_LEN:VNET_HDR_LEN + 6] in _REPORT_DSTS:
            self._mc_dirty.add(vlan.name)
        if buf[:VNET_HDR_LEN] != ZERO_VNET_HDR:
            try:
                frames = finalize(buf)
            except GSOError:
                self.counters["tx_bad_vnet_hdr"] += 1
                return
            if len(frames) > 1:  # a GSO multicast becomes its segments: one transmit each
                self.counters["tx_gso_segments_added"] += len(frames) - 1
        else:
            frames = [buf[VNET_HDR_LEN:]]
        self._xmit_frames(vlan, frames)

    def _xmit_frames(self, vlan: MacvlanDev, frames: list[bytes]) -> None:
        obs = self._observer
        for frame in frames:
            if obs is not None:
                self._observed(obs, vlan, frame, None)
                continue
            self._dispatch(self.engine.xmit(vlan, frame), frame)

    def _observed(self, obs: FrameObserver, vlan: MacvlanDev | None, frame: bytes, buf: bytes | None,
                  gso: bool = False) -> None:
        """One admitted frame while someone observes: the engine decides as on the fast path,
        explaining it into the observer's Trace if it wants this frame; the deferred flood
        (macvlan_process_broadcast) then runs at once, so the explanation has it too."""
        engine = self.engine
        origin = "wire" if vlan is None else vlan.name
        tr = obs.begin(origin, vlan, frame)
        if tr is not None and engine.bc_pending:
            self._drain_bc()  # floods of earlier, unobserved frames go first: not this frame's doing
        deliveries = engine.receive(frame, tr) if vlan is None else engine.xmit(vlan, frame, tr, gso)
        if tr is not None and engine.bc_pending:
            deliveries = list(deliveries) + engine.process_bc_queue(tr)
        if tr is not None:  # explained before it is handed on: whoever receives it finds the event there
            obs.end(origin, vlan, frame, tr, deliveries)
        self._dispatch(deliveries, frame, buf)

    def set_observer(self, observer: FrameObserver | None) -> None:
        """Install (or with None remove) the frame observer, on the loop thread; the eBPF
        fast path stands aside while one is installed."""
        def install() -> None:
            self._observer = observer
            self._sync_fastpath()

        self.call(install)

    def _dispatch(self, deliveries: list, frame: bytes, buf: bytes | None = None) -> None:
        """Hand one engine decision to the parent's transmit queue and the children's
        writers. ``buf`` is ``frame`` behind its vnet header: reused (no copy) for every
        delivery of the frame itself; anything else gets a zero header."""
        parent = self.parent
        out = self._out
        for target, _pt, f in deliveries:
            b = buf if buf is not None and f is frame else ZERO_VNET_HDR + f
            if target is WIRE:
                if parent is not None:
                    parent.queue(b)
                else:
                    self.counters["tx_no_parent"] += 1
            else:
                w = out.get(target)
                if w is not None:
                    w(b)

    def _endpoint_sink(self, ep: Endpoint, buf: bytes) -> None:
        """What an endpoint's client wrote: hdr+frame from a macvtap child."""
        vlan = ep.child
        if vlan is None or vlan.deleted:
            self.counters["tx_no_child"] += 1
            return
        if not vlan.up:  # __dev_queue_xmit() on a down macvtap drops it and counts tx_dropped
            vlan.stats.tx_dropped += 1
            return
        n = len(buf)
        if n - VNET_HDR_LEN > frame_max(vlan.mtu) and buf[1] == 0:  # not GSO: bigger than the child's MTU allows
            ep.counters["tx_oversize"] += 1
            vlan.stats.tx_dropped += 1
            return
        if buf[VNET_HDR_LEN] & 1:
            self._xmit_multicast(vlan, buf)
            return
        frame = buf[VNET_HDR_LEN:]
        obs = self._observer
        if obs is not None:
            self._observed(obs, vlan, frame, buf, buf[1] != 0)
            return
        self._dispatch(self.engine.xmit(vlan, frame, None, buf[1] != 0), frame, buf)

    def _make_tap_writer(self, tap: Tap) -> Callable[[bytes], None]:
        fd = tap.fd
        write = os.write
        counters = self.counters

        def w(buf: bytes) -> None:
            try:
                write(fd, buf)
            except OSError as e:
                counters[f"child_write_{errno.errorcode.get(e.errno or 0, e.errno)}"] += 1

        return w

