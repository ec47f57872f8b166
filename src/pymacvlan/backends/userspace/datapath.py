"""The userspace datapath: real frames between a parent, TAP children and macvtap endpoints,
decided by the sans-IO :class:`~pymacvlan.engine.Engine`.

One thread, one epoll loop. Per pass:

1. parent ring → ``engine.receive`` → write to child TAPs / endpoints (the parent's own stack
   already got its copy from the kernel; see "the parent's stack" below);
2. each readable TAP or endpoint → ``engine.xmit`` → parent tx ring / other children;
3. the engine's broadcast queue is drained (bc_work), the tx ring is kicked once.

Frames are ``bytes`` buffers of virtio_net_hdr + frame (:mod:`.vnet`); the engine sees the
frame part only and returns the same object for every delivery of it, so the buffer read
is the buffer written — no copy, no per-frame object besides the engine's own tuple list.
Multicast with a non-zero header is finalized (:mod:`.gso`) before the engine sees it, so
frames waiting on the engine's broadcast queue never need a header.

Control (add/delete/set) goes through :meth:`Datapath.call`, which runs it on the loop
thread between passes (eventfd wake-up), so the engine is only ever touched by one thread.
Child state follows the TAP: ``ip link set X up|down|address|mtu|promisc|allmulticast``
inside the child's namespace reaches the engine through an rtnetlink monitor, as ndo_open
and friends would. The parent's carrier, MTU and MAC are followed the same way; if the
parent is deleted the children stay (carrier off) and the datapath re-attaches when a
device of that name comes back — unlike the kernel, which deletes them, because a
userspace daemon outliving a parent's re-creation is the point.

The parent's stack: AF_PACKET only gets a copy, so what macvlan would consume also goes
up L's stack. Unicast to a child's MAC reaches it as PACKET_OTHERHOST, which IPv4, IPv6 and
ARP drop on entry; the rest (passthru, floods returned to a private/passthru/source
sender, source-mode ``nodst``) is dropped by the optional tc ingress filter of
:mod:`.shield`, which runs after the packet taps, so the datapath still sees it.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import errno
import fcntl
import logging
import os
import select
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ...engine import WIRE, Engine, Trace
from ...engine.device import STACK_GROUPS, MacvlanDev
from ...model import KernelError, MacaddrMode, Mode, frame_max, mode_from_name
from ._sys import (
    IFF_ALLMULTI,
    IFF_LOWER_UP,
    IFF_PROMISC,
    IFF_UP,
    ZERO_VNET_HDR,
    NetdevCtl,
    ifreq,
    netns_inode,
    read_proc_net,
)
from .endpoints import Endpoint
from .fastpath import EMPTY, FastChild, FastPath, fastpath_rules
from .gso import GSOError, finalize
from .netlink import LinkEvent, LinkMonitor
from .parent import Parent, ParentConfig
from .tap import Tap, TapConfig
from .veth import VethChild, VethConfig
from .vnet import VNET_HDR_LEN

log = logging.getLogger("pymacvlan.datapath")

__all__ = ["Datapath", "DatapathConfig"]

EPOLLIN, EPOLLOUT = select.EPOLLIN, select.EPOLLOUT
#: what epoll reports whatever was asked for: an error pending on the socket, or a hang-up
FAILED = select.EPOLLERR | select.EPOLLHUP
#: an fd whose error or hang-up neither reading SO_ERROR nor its handler cleared, this many
#: times within one housekeeping period, is parked (taken out of epoll) until the next
#: housekeeping pass re-arms it: level-triggered epoll would otherwise report it on every pass
PARK_AFTER = 3
#: longest wait between re-kicks of a stalled tx ring (doubling from 200 µs while nothing else
#: happens): a receiver that stopped reading must not keep the loop awake 5,000 times a second
STALL_WAIT_MAX = 0.05
READ_SIZE = VNET_HDR_LEN + 65535 + 18
MIN_BUF = VNET_HDR_LEN + 14
#: IGMP and MLD report destinations: a child that sends one has just changed its groups
SIOCADDMULTI, SIOCDELMULTI = 0x8931, 0x8932
AF_UNSPEC = 0
_REPORT_DSTS = {bytes.fromhex("01005e000016"), bytes.fromhex("01005e000002"), bytes.fromhex("333300000016"),
                bytes.fromhex("333300000002")}


def _so_error(fd: int) -> int:
    """SO_ERROR of ``fd`` (reading it clears the socket's pending error); 0 for a non-socket."""
    try:
        s = socket.socket(fileno=fd)
    except OSError:  # ENOTSOCK: a TAP, an eventfd
        return 0
    try:
        return s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    except OSError:
        return 0
    finally:
        s.detach()


class EndpointReaderQueue:
    """What the engine takes for a macvtap's reader ring when the reader is an endpoint.

    A userspace macvtap always has a reader: its endpoint. Without one the engine would
    model the kernel's reader-less macvtap, whose own stack drops (and counts) protocols it
    has no handler for. A real ring would fill up, since the datapath never pops it; this
    one is always empty, and the endpoint's own 500-frame queue does the ring's work (its
    overflow counted in the child's rx_errors, as tap_handle_frame counts it)."""

    __slots__ = ()

    def __len__(self) -> int:
        return 0

    def append(self, frame: bytes) -> None:
        pass

    def popleft(self) -> bytes | None:
        return None


@dataclass
class DatapathConfig:
    parent: ParentConfig
    #: frames read from one fd before the loop looks at the others (fairness)
    budget: int = 128
    #: seconds between housekeeping passes (namespace checks, multicast lists, stats)
    housekeeping: float = 1.0
    #: drop at the parent's tc ingress what macvlan consumes (see shield.py)
    shield: bool = False
    bridge_mc_to_bridge: bool = False
    #: IFF_UNICAST_FLT of the real parent, for the engine's promisc model (veth: False)
    unicast_filter: bool = False
    #: after a pass that moved frames, poll without sleeping for this long before blocking in
    #: epoll_wait, so the next frame finds the loop awake and warm (no scheduler wake-up, IPI
    #: or idle exit). It costs CPU only while traffic flows (at most 200 µs per idle gap:
    #: 4% of a core for one frame every 5 ms). Under TCP it cuts the loop's sleeps from
    #: ~8,700 to ~200 a second; in two interleaved runs it lowered the median ping RTT by
    #: 12 and 26 µs, while its TCP effect (+11%, -12%) was within run-to-run noise and the
    #: loop's CPU under TCP rose from ~76% to ~95% (bench/RESULTS.md). 0: never spin
    busy_poll_us: int = 200
    #: nice value for the loop's thread, absolute like systemd's Nice= (None: leave it).
    #: The kernel's macvlan forwards in softirq, which no task preempts; a datapath at nice 0
    #: is preempted by every receiver it wakes: 35,000 involuntary switches a second under
    #: 64-byte load on a 2-core VM, 700 at -5, which gave +37% small frames and +16% TCP
    #: (bench/RESULTS.md). Needs CAP_SYS_NICE (else counted as ``nice_refused``, left as is)
    nice: int | None = -5
    #: child MACs without an address and filter salts: None draws them from the OS's entropy
    #: (eth_hw_addr_random()), an int makes them reproducible (scenario replays)
    seed: int | None = None
    #: TAP children outlive the datapath (TUNSETPERSIST): :meth:`Datapath.close` with
    #: ``keep_children`` leaves them (carrier off) for the next one to adopt (the daemon)
    persist: bool = False
    #: what a macvlan child is: "tap" (a TAP device, one read/write per frame) or "veth" (a veth
    #: pair whose outer end, next to the parent, the datapath reads and writes through
    #: PACKET_MMAP rings; see veth.py and docs/fastpath.md). macvtap endpoints stay TAPs.
    children: str = "tap"
    #: forward known unicast in the kernel (eBPF tc programs, fastpath.py) between the wire and
    #: veth children and between bridge children; the rest stays on this Python path. Needs
    #: children="veth" and CAP_BPF; where it cannot load, the datapath says so once and runs the
    #: Python path alone (``stats()["path"]`` shows which is active and why)
    fastpath: bool = False


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


class Datapath:
    """macvlan in userspace on one parent. Start with :meth:`start` (thread) or :meth:`run`."""

    def __init__(self, cfg: DatapathConfig | ParentConfig | str, **parent_kw: Any) -> None:
        if isinstance(cfg, str):
            cfg = ParentConfig(cfg, **parent_kw)
        if isinstance(cfg, ParentConfig):
            cfg = DatapathConfig(cfg)
        self.cfg = cfg
        pcfg = cfg.parent
        self.counters: Counter[str] = Counter()
        self._handlers: dict[int, Callable[[int], None]] = {}
        self._events: dict[int, int] = {}
        #: what each watched fd is ("parent", "veth", "tap", "endpoint", "netlink", "wake"), for
        #: the error counters and the one log line per kind of failure
        self._kinds: dict[int, str] = {}
        #: fds whose error or hang-up was not cleared, and how often since the last housekeeping
        self._failing: Counter[int] = Counter()
        #: parked fds (see PARK_AFTER) and the events to re-arm them with
        self._parked: dict[int, int] = {}
        #: the failure keys already logged (each is logged once, then only counted)
        self._logged: set[str] = set()
        self.ep = select.epoll()
        self._cmds: list[tuple[Callable, tuple, dict, concurrent.futures.Future]] = []
        self._cmd_lock = threading.Lock()
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._thread: threading.Thread | None = None
        self._loop_ident: int | None = None
        self._stop = False
        self.parent: Parent | None = Parent(pcfg)
        #: the device the socket is on (the base of a userspace VLAN parent), to re-attach by name
        self._parent_base = self.parent.base
        self.engine = Engine(self.parent.base if self.parent.vlan is None else f"{self.parent.base}.{self.parent.vlan}",
                             mac=self.parent.mac, mtu=self.parent.mtu, unicast_filter=cfg.unicast_filter,
                             bridge_mc_to_bridge=cfg.bridge_mc_to_bridge, seed=cfg.seed)
        #: child → writer of hdr+frame buffers (TAP write or endpoint.deliver)
        self._out: dict[MacvlanDev, Callable[[bytes], Any]] = {}
        self.taps: dict[str, Tap | VethChild] = {}
        self.endpoints: dict[str, Endpoint] = {}
        self._flushers: list[Callable[[], None]] = []
        #: veth children's ring sockets: kicked once per pass, re-kicked soon while stalled
        self._rings: list[Parent] = []
        self._monitors: dict[str | None, LinkMonitor] = {}
        self._mc_dirty: set[str] = set()
        self.shield = None
        #: the eBPF fast path (None: off, or it could not load: see fastpath_error)
        self.fastpath: FastPath | None = None
        self.fastpath_error: str | None = None
        #: veth children the fast path forwards to and from, by name
        self._fast: dict[str, FastChild] = {}
        #: see :meth:`set_observer` (None: nobody traces, the handlers pay one ``is not None``)
        self._observer: FrameObserver | None = None
        try:
            self._watch_parent()
            self._monitor(pcfg.netns)
            ev = self._monitors[pcfg.netns].query(self.parent.ifindex)
            if ev is not None:
                self._parent_state(ev)
            self.watch(self._wake, self._on_wake, kind="wake")
            if cfg.shield:
                if self.parent.vlan is not None:
                    raise ValueError("the shield matches MACs on the base device and is not VLAN-aware yet; "
                                     "use it only with untagged parents")
                from .shield import Shield
                self.shield = Shield(self.parent.base, pcfg.netns, ifindex=self.parent.ifindex)
            if cfg.fastpath:
                if cfg.children != "veth":
                    raise ValueError(
                        "the fast path forwards into veth children: use children='veth' with fastpath=True"
                    )
                self._start_fastpath()
        except BaseException:
            self._close_all()
            raise
        self._next_hk = time.monotonic() + cfg.housekeeping

    # -- reactor ----------------------------------------------------------------------------
    def watch(self, fd: int, handler: Callable[[int], None], write: bool = False, kind: str = "fd") -> None:
        """Call ``handler(events)`` when ``fd`` is readable (or writable). An error or hang-up
        is handled here as well (see :meth:`_fd_failed`); ``kind`` names the fd in its counters."""
        ev = EPOLLIN | (EPOLLOUT if write else 0)
        self._handlers[fd] = handler
        self._events[fd] = ev
        self._kinds[fd] = kind
        self.ep.register(fd, ev)

    def want_write(self, fd: int, on: bool) -> None:
        ev = self._events.get(fd)
        if ev is None:
            return
        new = (ev | EPOLLOUT) if on else (ev & ~EPOLLOUT)
        if new != ev:
            self._events[fd] = new
            if fd in self._parked:
                self._parked[fd] = new  # re-armed with it at the next housekeeping
            else:
                self.ep.modify(fd, new)

    def unwatch(self, fd: int) -> None:
        if self._handlers.pop(fd, None) is not None:
            self._events.pop(fd, None)
            self._kinds.pop(fd, None)
            self._failing.pop(fd, None)
            if self._parked.pop(fd, None) is not None:
                return  # not registered while parked
            try:
                self.ep.unregister(fd)
            except (OSError, ValueError):
                pass

    def _fd_failed(self, fd: int, events: int) -> None:
        """``fd`` polled with EPOLLERR or EPOLLHUP (its handler has run). epoll reports both
        whatever was asked for, level-triggered, for as long as they last: a packet socket
        bound to a device that is down (a veth child's outer end before its carrier, or set
        down by anyone) holds ENETDOWN in sk_err, which only a recv() or SO_ERROR clears, and
        the rings never recv(), so the loop would wake for it forever. So: read SO_ERROR
        (that clears it; the kernel re-attaches the socket itself when the device comes up),
        count it by kind and errno, log the first of each, and park an fd whose failure does
        not clear (a TAP whose device is gone, a peer that hung up) until the next
        housekeeping, which re-arms it."""
        if fd not in self._handlers:
            return  # the handler let it go
        kind = self._kinds.get(fd, "fd")
        err = _so_error(fd)
        if err:
            key = f"fd_error_{kind}_{errno.errorcode.get(err, err)}"
        elif events & select.EPOLLHUP:
            key = f"fd_hangup_{kind}"
        else:
            key = f"fd_error_{kind}"
        self.counters[key] += 1
        if key not in self._logged:
            self._logged.add(key)
            log.warning("%s fd %d reported %s%s: handled and counted as %s (further ones are only counted)",
                        kind, fd, "a hang-up" if events & select.EPOLLHUP else "an error",
                        f" ({os.strerror(err)})" if err else "", key)
        if err:
            return  # cleared: the next poll does not report it again
        self._failing[fd] += 1
        if self._failing[fd] >= PARK_AFTER:
            self._park(fd)

    def _park(self, fd: int) -> None:
        try:
            self.ep.unregister(fd)
        except (OSError, ValueError):
            pass
        self._parked[fd] = self._events.get(fd, EPOLLIN)
        self.counters[f"fd_parked_{self._kinds.get(fd, 'fd')}"] += 1

    def _rearm_parked(self) -> None:
        """Housekeeping: parked fds go back into epoll (a failure that lasts parks them again)."""
        self._failing.clear()
        parked, self._parked = self._parked, {}
        for fd, ev in parked.items():
            if fd in self._handlers:
                try:
                    self.ep.register(fd, ev)
                except OSError:
                    self.counters["fd_rearm_error"] += 1

    # -- the loop ----------------------------------------------------------------------------------
    def start(self) -> Datapath:
        """Run the loop in a daemon thread; :meth:`close` stops and joins it."""
        ready = threading.Event()

        def main() -> None:
            self._loop_ident = threading.get_ident()
            ready.set()
            self.run()

        self._thread = threading.Thread(target=main, name="pymacvlan-datapath", daemon=True)
        self._thread.start()
        ready.wait()
        return self

    def run(self) -> None:
        self._loop_ident = threading.get_ident()
        if self.cfg.nice is not None:
            try:  # per thread on Linux: only the loop's priority changes
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.cfg.nice)
            except OSError:
                self.counters["nice_refused"] += 1
        poll = self.ep.poll
        handlers = self._handlers
        hk = self.cfg.housekeeping
        counters = self.counters
        monotonic = time.monotonic
        spin = self.cfg.busy_poll_us / 1e6
        spin_until = 0.0
        stall_wait = 0.0002
        while not self._stop:
            now = monotonic()
            if now < spin_until:
                timeout = 0.0
            else:
                timeout = max(0.0, self._next_hk - now)
                if self._tx_stalled():
                    timeout = min(timeout, stall_wait)  # re-kick the tx ring soon (see Parent.flush)
            try:
                events = poll(timeout)
            except InterruptedError:  # pragma: no cover - PEP 475 retries
                continue
            if not events:
                if now < spin_until and not self._tx_stalled():
                    continue  # spinning and nothing to flush; housekeeping waits for the next sleep
                if timeout:
                    stall_wait = min(stall_wait * 2, STALL_WAIT_MAX)  # still stalled, nothing moved
            else:
                stall_wait = 0.0002
                if spin:
                    spin_until = monotonic() + spin
            for fd, ev in events:
                h = handlers.get(fd)
                if h is not None:
                    try:
                        h(ev)
                    except Exception as e:  # a bug or an unexpected errno must not stop the datapath
                        counters[f"handler_error_{type(e).__name__}"] += 1
                    if ev & FAILED:
                        self._fd_failed(fd, ev)
            self._end_of_pass()
            now = monotonic()
            if now >= self._next_hk:
                self._next_hk = now + hk
                try:
                    self._housekeeping()
                except Exception as e:
                    counters[f"housekeeping_error_{type(e).__name__}"] += 1

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

    def call(self, fn: Callable, *args: Any, **kw: Any) -> Any:
        """Run ``fn`` on the loop thread (now, if that is us or no loop runs) and return its result."""
        if self._thread is None or threading.get_ident() == self._loop_ident or not self._thread.is_alive():
            return fn(*args, **kw)
        fut: concurrent.futures.Future = concurrent.futures.Future()
        with self._cmd_lock:
            self._cmds.append((fn, args, kw, fut))
        os.eventfd_write(self._wake, 1)
        return fut.result(timeout=30)

    def _on_wake(self, events: int) -> None:
        try:
            os.eventfd_read(self._wake)
        except BlockingIOError:
            pass
        with self._cmd_lock:
            cmds, self._cmds = self._cmds, []
        if self._fast:
            self._fold_fastpath()  # whatever the commands read, the kernel's counts are in
        for fn, args, kw, fut in cmds:
            try:
                fut.set_result(fn(*args, **kw))
            except BaseException as e:
                fut.set_exception(e)
        self._sync_fastpath()  # a command may have started or ended a trace

    def close(self, keep_children: bool = False) -> None:
        """Stop the loop, delete every child (TAPs vanish), release every membership.
        ``keep_children``: persistent TAPs stay (carrier off) for the next datapath to adopt."""
        if self._thread is not None and self._thread.is_alive():
            self.call(self._request_stop)
            self._thread.join(timeout=10)
        self._close_all(keep_children)

    def _request_stop(self) -> None:
        self._stop = True

    def _close_all(self, keep_children: bool = False) -> None:
        self._release_children_and_parent(count_errors=True, keep_children=keep_children)
        for mon in self._monitors.values():
            mon.close()
        self._monitors.clear()
        if self._wake >= 0:
            os.close(self._wake)
            self._wake = -1
        self.ep.close()

    def __enter__(self) -> Datapath:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- hot path: parent → children -----------------------------------------------------------------
    def _watch_parent(self) -> None:
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

    # -- hot path: a child transmits --------------------------------------------------------------------
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
                    counters[f"child_read_{errno.errorcode.get(e.errno, e.errno)}"] += 1
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
                counters[f"child_write_{errno.errorcode.get(e.errno, e.errno)}"] += 1

        return w

    # -- control: children -----------------------------------------------------------------------------
    def add_macvlan(self, name: str, mode: str | Mode = "bridge", *, mac: bytes | None = None,
                    mtu: int | None = None, netns: str | None = None, ifname: str | None = None,
                    flags: int = 0, up: bool = False, adopt: int | None = None, tx_dropped_seen: int = 0,
                    **engine_kw: Any) -> dict:
        """A macvlan child: a TAP named ``ifname`` (default ``name``) inside ``netns``.

        Like ``ip link add ... type macvlan`` it starts down; it comes up when the TAP is set
        up (by the user inside the namespace, or ``up=True``). ``adopt``: the ifindex of the
        persistent TAP a previous datapath left; its state (up, MAC, MTU, flags) is read back
        from the device, and what it dropped beyond ``tx_dropped_seen`` while nobody read it
        is counted (``detached_tx_dropped``, and the child's tx_dropped).
        """
        return self.call(self._add_macvlan, name, mode, mac, mtu, netns, ifname, flags, up, engine_kw,
                         adopt, tx_dropped_seen)

    def _add_macvlan(self, name, mode, mac, mtu, netns, ifname, flags, up, engine_kw, adopt=None,
                     tx_dropped_seen=0) -> dict:
        mode = mode_from_name(mode) if isinstance(mode, str) else mode
        vlan = self.engine.add(name, "macvlan", mode, flags, mac, mtu, **engine_kw)
        try:
            dev = self._new_child_dev(name, ifname or name, netns, vlan, adopt)
        except BaseException:
            self.engine.delete(name)
            raise
        self.taps[name] = dev
        if isinstance(dev, VethChild):
            ring = dev.ring
            assert ring is not None
            self._out[vlan] = ring.queue  # into the veth's tx ring, kicked once per loop pass (_end_of_pass)
            self._rings.append(ring)
            self.watch(dev.fd, self._make_veth_reader(dev, vlan), kind="veth")
            self._fastpath_add(name, dev)
        else:
            self._out[vlan] = self._make_tap_writer(dev)
            self.watch(dev.fd, self._make_tap_reader(dev, vlan), kind="tap")
        self._monitor(netns)
        if adopt is not None:
            ev = self._monitors[netns].query(dev.ifindex)
            if ev is not None:
                lost = max(0, ev.tx_dropped - tx_dropped_seen)
                self.counters["detached_tx_dropped"] += lost
                vlan.stats.tx_dropped += lost
                self._child_event(name, ev)  # the device is the truth: the user may have changed it
            self.counters["children_adopted"] += 1
        if up:
            dev.set_admin_up(True)
            self._engine_set_up(name, True)
        self._sync_parent()  # a source list (nodst) changes the shield even while down
        return {"name": name, "ifname": dev.name, "ifindex": dev.ifindex, "netns": netns,
                "mac": vlan.mac.hex(":"), "mtu": vlan.mtu, "mode": vlan.mode.name.lower(),
                "kind": "veth" if isinstance(dev, VethChild) else "tap"}

    def _new_child_dev(self, name: str, ifname: str, netns: str | None, vlan: MacvlanDev,
                       adopt: int | None = None) -> Tap | VethChild:
        carrier = self.engine.lower.carrier
        if self.cfg.children == "veth":
            return VethChild(VethConfig(ifname, netns, self.cfg.parent.netns, mac=vlan.mac, mtu=vlan.mtu,
                                        outer_mtu=max(vlan.mtu, self.engine.lower.mtu), carrier=carrier, key=name,
                                        adopt=adopt))
        if self.cfg.children != "tap":
            raise ValueError(f"children must be 'tap' or 'veth', not {self.cfg.children!r}")
        return Tap(TapConfig(ifname, netns, mac=vlan.mac, mtu=vlan.mtu, carrier=carrier, persist=self.cfg.persist,
                             adopt=adopt))

    def add_macvtap(self, name: str, endpoint: Endpoint, mode: str | Mode = "bridge", *,
                    mac: bytes | None = None, mtu: int | None = None, flags: int = 0, up: bool = True,
                    allmulticast: bool = True, **engine_kw: Any) -> dict:
        """A macvtap child whose frames an application reads and writes on ``endpoint``.

        There is no netdev to set up, so it is up at once unless ``up=False``.

        ``allmulticast`` (on by default): the child receives every multicast group. A kernel
        macvtap's own stack joins the solicited-node group of the link-local address made
        from its MAC, which is the guest's, so IPv6 ND to the guest works there by that
        coincidence; an endpoint has no stack, and the guest's virtio-net receive filter
        stays inside QEMU, which applies it itself. So the port lets all multicast through
        and QEMU drops what its guest did not ask for: ND, DHCPv6, mDNS work for any address
        the guest uses (docs/userspace-differences.md, ``endpoint_allmulti``).
        ``link set NAME allmulticast off`` narrows it to broadcast and the stack groups.
        """
        return self.call(self._add_macvtap, name, endpoint, mode, mac, mtu, flags, up, allmulticast, engine_kw)

    def _add_macvtap(self, name, endpoint, mode, mac, mtu, flags, up, allmulticast, engine_kw) -> dict:
        mode = mode_from_name(mode) if isinstance(mode, str) else mode
        vlan = self.engine.add(name, "macvtap", mode, flags, mac, mtu, **engine_kw)
        if allmulticast:
            self.engine.set_allmulticast(name, True)
        endpoint.child = vlan
        vlan.tap = EndpointReaderQueue()  # the endpoint is the macvtap's reader
        self.endpoints[name] = endpoint
        endpoint.attach(self, self._endpoint_sink)
        self._out[vlan] = endpoint.deliver
        fl = getattr(endpoint, "flush_pending", None)
        if fl is not None:
            self._flushers.append(fl)
        if up:
            self._engine_set_up(name, True)
        self._sync_parent()
        tap = getattr(endpoint, "tap", None)
        return {"name": name, "kind": endpoint.kind, "mac": vlan.mac.hex(":"), "mtu": vlan.mtu,
                "mode": vlan.mode.name.lower(), "ifindex": tap.ifindex if tap is not None else None}

    def set_up(self, name: str, up: bool) -> None:
        self.call(self._set_up, name, up)

    def _set_up(self, name: str, up: bool) -> None:
        # the engine first: a refused open (EADDRINUSE) must leave the TAP down
        self._engine_set_up(name, up)
        tap = self.taps.get(name)
        if tap is not None:
            tap.set_admin_up(up)
            self._absorb_own_events(tap)

    def _engine_set_up(self, name: str, up: bool) -> None:
        self.engine.set_up(name, up)
        self._sync_parent()

    def delete(self, name: str) -> None:
        self.call(self._control, self._delete_child, name)  # the last passthru child gives L its MAC back

    def tap_tx_dropped(self, name: str) -> int:
        """The kernel's tx_dropped of a child's TAP (0 if unknown): the base for the next adoption."""
        tap = self.taps.get(name)
        mon = self._monitors.get(tap.netns) if tap is not None else None
        ev = mon.query(tap.ifindex) if mon is not None else None
        return ev.tx_dropped if ev is not None else 0

    def _delete_child(self, name: str, keep: bool = False) -> None:
        vlan = self.engine.children.get(name)
        if vlan is not None:
            self._out.pop(vlan, None)
            self._fastpath_remove(name, vlan)
            self.engine.delete(name)
            self._sync_fastpath()  # no frame for it leaves the kernel's path once it is gone
        tap = self.taps.pop(name, None)
        if tap is not None:
            self.unwatch(tap.fd)
            if isinstance(tap, VethChild) and tap.ring in self._rings:
                self._rings.remove(tap.ring)
            tap.close(remove=not keep)
            self._unmonitor_if_unused(tap.netns)
        ep = self.endpoints.pop(name, None)
        if ep is not None:
            fl = getattr(ep, "flush_pending", None)
            if fl in self._flushers:
                self._flushers.remove(fl)
            ep.close(keep=keep)
        if self.parent is not None:
            self._sync_parent()

    def stats(self) -> dict:
        """Everything counted: datapath, parent socket, engine drops, per child."""
        return self.call(self._stats)

    def _stats(self) -> dict:
        if self._fast:
            self._fold_fastpath()
        children = {}
        for name, vlan in self.engine.children.items():
            c = {"up": vlan.up, "mac": vlan.mac.hex(":"), "mode": vlan.mode.name.lower(),
                 **vlan.stats.as_stats64()}
            if name in self.endpoints:
                c["endpoint"] = self.endpoints[name].stats()
            children[name] = c
        return {"datapath": dict(self.counters), "engine_drops": dict(self.engine.drops),
                "parent": self.parent.stats() if self.parent is not None else None,
                "lower": {"rx_dropped": self.engine.lower.rx_dropped, "carrier": self.engine.lower.carrier},
                "shield": self.shield.rules() if self.shield is not None else None,
                "path": self._path_info(),
                "children": children}

    # -- control plane (shared by the replay backend and the daemon) --------------------------------
    # One method per kernel operation, run on the loop thread (through call()). Each asks the
    # engine first, so a refusal raises the kernel's KernelError and leaves every device as it
    # was; then it applies the engine's result to the real devices (the TAP, and the parent
    # where macvlan changes it: passthru addresses), re-syncs the parent's memberships and
    # shield, and absorbs the link events its own TAP change caused: mirrored back later, a
    # stale one (say the old MTU, seen after a newer change) would undo what was just done.

    def set_mac(self, name: str, mac: bytes) -> None:
        """`ip link set NAME address MAC` (macvlan_set_mac_address)."""
        self.call(self._control, self.engine.set_mac, name, mac)

    def set_mtu(self, name: str, mtu: int) -> None:
        """`ip link set NAME mtu N` (macvlan_change_mtu)."""
        self.call(self._control, self.engine.set_mtu, name, mtu)

    def set_promisc(self, name: str, on: bool) -> None:
        """`ip link set NAME promisc on|off`: the engine's count, and IFF_PROMISC on the TAP."""
        self.call(self._control, self.engine.set_promisc, name, on, flag=(IFF_PROMISC, on))

    def set_allmulticast(self, name: str, on: bool) -> None:
        """`ip link set NAME allmulticast on|off`."""
        self.call(self._control, self.engine.set_allmulticast, name, on, flag=(IFF_ALLMULTI, on))

    def changelink(self, name: str, mode: Mode | None = None, flags: int | None = None,
                   bcqueuelen: int | None = None, bclim: int | None = None,
                   macaddr_op: MacaddrMode | None = None, macaddrs: Sequence[bytes] = ()) -> None:
        """`ip link set NAME type macvlan ...` (macvlan_changelink, in the kernel's order)."""
        self.call(self._control, self.engine.changelink, name, mode, flags, bcqueuelen, bclim, macaddr_op,
                  list(macaddrs))

    def join(self, name: str, group: bytes) -> None:
        """`ip maddr add GROUP dev NAME`: the engine's list, and the TAP's (SIOCADDMULTI)."""
        self.call(self._control, self.engine.join, name, group, maddr=(SIOCADDMULTI, group))

    def leave(self, name: str, group: bytes) -> None:
        """`ip maddr del GROUP dev NAME`."""
        self.call(self._control, self.engine.leave, name, group, maddr=(SIOCDELMULTI, group))

    def delete_parent(self) -> None:
        """`ip link del PARENT` as the kernel treats it (NETDEV_UNREGISTER): every child goes,
        memberships and shield are released. The caller deletes the device itself. (A parent
        that merely vanishes is followed differently: see :meth:`_parent_event`.)"""
        self.call(self._delete_parent)

    def settled(self) -> None:
        """Return once a whole loop pass ran after this call: every frame readable when it was
        made has been handled, the engine's broadcast queue drained and the tx ring kicked
        (a command may run mid-pass, so the second one marks the end of that pass)."""
        self.call(lambda: None)
        self.call(lambda: None)

    def sync(self) -> None:
        """Follow every device change the kernel has reported so far, now: a caller that just
        changed a device (the parent's carrier, say) knows the datapath has caught up."""
        self.call(self._sync_devices)

    def _control(self, op: Callable, name: str, *args: Any, flag: tuple[int, bool] | None = None,
                 maddr: tuple[int, bytes] | None = None) -> None:
        op(name, *args)
        tap = self.taps.get(name)
        if tap is not None:
            if flag is not None:
                bit, on = flag
                tap.ctl.set_flags(tap.name, set_bits=bit if on else 0, clear_bits=0 if on else bit)
            if maddr is not None:
                req = ifreq(tap.name, struct.pack("H6s", AF_UNSPEC, maddr[1]))
                try:
                    fcntl.ioctl(tap.ctl.sock.fileno(), maddr[0], req)
                except OSError as e:  # the engine has it: housekeeping reconciles, count it
                    self.counters[f"child_maddr_{errno.errorcode.get(e.errno, e.errno)}"] += 1
        self._apply_to_devices()
        self._sync_parent()

    def _apply_to_devices(self) -> None:
        """Make the real devices carry the engine's addresses and MTUs (macvlan changes them
        beyond the device asked: a parent MTU clamps children, passthru shares the parent's
        MAC both ways, a passthru port gives the parent its permanent address back)."""
        lower = self.engine.lower
        if self.parent is not None and not lower.deleted and lower.mac != self.parent.mac:
            ctl = NetdevCtl(self.cfg.parent.netns)
            try:
                ctl.set_mac(self.parent.base, lower.mac)
                self.parent.mac = lower.mac
                self._parent_mac_changed(lower.mac)
            except OSError:
                self.counters["parent_mac_error"] += 1
            finally:
                ctl.close()
            self._absorb_own_parent_mac()
        for name, tap in self.taps.items():
            vlan = self.engine.children.get(name)
            if vlan is None:
                continue
            try:
                if tap.mac() != vlan.mac:
                    tap.set_mac(vlan.mac)
                if tap.ctl.get_mtu(tap.name) != vlan.mtu:
                    tap.set_mtu(vlan.mtu)
            except OSError:
                self.counters["child_apply_error"] += 1
            self._absorb_own_events(tap)

    def _absorb_own_parent_mac(self) -> None:
        """The parent's pending events carry the MAC we just gave it (or an older one of ours):
        handle them without their address, which the engine already has. Mirrored back later,
        a stale one would take back what a passthru port's last delete restored."""
        mon = self._monitors.get(self.cfg.parent.netns)
        if mon is None:
            return
        for ev in mon.read():
            if ev.kind == "new" and self._is_parent(ev):
                ev = dataclasses.replace(ev, mac=b"")
            self._link_event(mon, ev)

    def _absorb_own_events(self, tap: Tap | VethChild) -> None:
        """Drop the pending events of ``tap`` (our own changes, already in the engine);
        handle everything else its namespace's monitor reported."""
        mon = self._monitors.get(tap.netns)
        if mon is None:
            return
        for ev in mon.read():
            if ev.ifindex == tap.ifindex and ev.kind == "new":
                continue
            self._link_event(mon, ev)

    def _delete_parent(self) -> None:
        self._release_children_and_parent(delete_parent_in_engine=True)

    def _release_children_and_parent(self, count_errors: bool = False,
                                     delete_parent_in_engine: bool = False, keep_children: bool = False) -> None:
        """Delete every child (TAPs vanish, endpoints close), then drop the shield and the
        parent socket (every membership with it). On close a failing child is counted and
        the rest still go; when the parent is deleted, the engine forgets it too."""
        for name in list(self.taps) + list(self.endpoints):
            try:
                self._delete_child(name, keep=keep_children)
            except Exception:
                if not count_errors:
                    raise
                self.counters["close_error"] += 1
        if delete_parent_in_engine:
            self.engine.delete_parent()
        if self.fastpath is not None:
            self.fastpath.close()
            self.fastpath = None
        if self.shield is not None:
            self.shield.close()
            self.shield = None
        if self.parent is not None:
            self.unwatch(self.parent.fd)
            self.parent.close()
            self.parent = None

    def _sync_devices(self) -> None:
        for mon in list(self._monitors.values()):
            self._on_link_events(mon)

    # -- the eBPF fast path (fastpath.py) ----------------------------------------------------------------
    def _start_fastpath(self) -> None:
        """Load the programs and attach them to the parent; where that fails, say so once and
        stay on the Python path."""
        try:
            if self.parent is None or self.parent.vlan is not None:
                raise OSError(errno.EOPNOTSUPP, "a userspace VLAN parent needs its tag inserted in Python")
            self.fastpath = FastPath(self.cfg.parent.netns)
            self._fastpath_attach_parent()
        except Exception as e:  # no CAP_BPF, a verifier refusal, no clsact: the Python path carries all
            if self.fastpath is not None:
                self.fastpath.close()
                self.fastpath = None
            self.fastpath_error = f"{type(e).__name__}: {e}"
            self.counters["fastpath_unavailable"] += 1
            log.warning("eBPF fast path unavailable, every frame takes the Python path: %s", self.fastpath_error)

    def _fastpath_attach_parent(self) -> None:
        if self.fastpath is not None and self.parent is not None:
            self.fastpath.attach(self.parent.ifindex, self.parent.base, self.parent.sock)

    def _fastpath_add(self, name: str, dev: VethChild) -> None:
        fp = self.fastpath
        if fp is None or dev.ring is None:
            return
        slot = fp.new_slot()
        try:
            fp.attach(dev.outer_ifindex, dev.outer, dev.ring.sock)
        except Exception:  # this child stays on the Python path
            fp.free_slot(slot)
            self.counters["fastpath_child_attach_error"] += 1
            return
        # bpf_redirect_peer refuses a peer in the namespace it is called in
        peer_ok = netns_inode(dev.netns) != netns_inode(self.cfg.parent.netns)
        self._fast[name] = FastChild(dev.outer_ifindex, slot, peer_ok)

    def _fastpath_remove(self, name: str, vlan: MacvlanDev) -> None:
        fc = self._fast.pop(name, None)
        if fc is None or self.fastpath is None:
            return
        self.fastpath.fold(fc.slot, vlan.stats)
        self.fastpath.forget(fc.outer_ifindex)
        self.fastpath.free_slot(fc.slot)

    def _sync_fastpath(self) -> None:
        """The maps from the engine's port, now (before the control operation returns)."""
        fp = self.fastpath
        if fp is None:
            return
        parent = self.parent
        if self._observer is not None or parent is None:
            want = EMPTY  # a trace sees every frame; no parent, nothing to forward
        else:
            want = fastpath_rules(self.engine, parent.ifindex, parent.frame_max, self._fast)
        try:
            fp.sync(want)
        except OSError as e:  # a map full or refused: fall back to the Python path for everything
            self.counters[f"fastpath_sync_{errno.errorcode.get(e.errno, e.errno)}"] += 1
            fp.sync(EMPTY)

    def _fold_fastpath(self) -> None:
        fp = self.fastpath
        if fp is None:
            return
        children = self.engine.children
        for name, fc in self._fast.items():
            vlan = children.get(name)
            if vlan is not None:
                fp.fold(fc.slot, vlan.stats)

    def _path_info(self) -> dict:
        """Which path carries frames, for ``stats``: "fast" (eBPF for known unicast, Python for
        the rest) or "python"."""
        fp = self.fastpath
        info: dict[str, Any] = {"active": "fast" if fp is not None else "python",
                                "children": self.cfg.children}
        if fp is not None:
            info.update(fp.describe())
            info["fast_children"] = sorted(self._fast)
        elif self.cfg.fastpath:
            info["reason"] = self.fastpath_error
        else:
            info["reason"] = "off (pymacvlan daemon --fastpath turns it on)"
        return info

    # -- the parent's filters ------------------------------------------------------------------------------
    def _sync_parent(self) -> None:
        """Memberships (and shield rules) from the engine's view of L: what dev_uc_add(),
        dev_mc_sync(), promisc and allmulti would have set on the real device."""
        parent = self.parent
        lower = self.engine.lower
        if parent is not None:
            promisc = lower.promiscuity - (1 if lower.uc_promisc else 0) > 0
            parent.sync_memberships(set(lower.uc_list), set(lower.mc_synced), promisc, lower.allmulti > 0)
        if self.shield is not None:
            self.shield.sync(self.engine)
        self._sync_fastpath()

    # -- following devices ---------------------------------------------------------------------------------
    def _monitor(self, netns: str | None) -> None:
        if netns in self._monitors:
            return
        mon = LinkMonitor(netns)
        self._monitors[netns] = mon
        self.watch(mon.fd, lambda ev, mon=mon: self._on_link_events(mon), kind="netlink")

    def _unmonitor_if_unused(self, netns: str | None) -> None:
        """A namespace's monitor goes with its last child (it would hold the namespace alive
        after `ip netns del`, and its socket would leak with every namespace ever used)."""
        if netns == self.cfg.parent.netns or any(t.netns == netns for t in self.taps.values()):
            return
        mon = self._monitors.pop(netns, None)
        if mon is not None:
            self.unwatch(mon.fd)
            mon.close()

    def _on_link_events(self, mon: LinkMonitor) -> None:
        events = mon.read()
        if mon.lost:
            events += self._relearn(mon)
        for ev in events:
            self._link_event(mon, ev)

    def _relearn(self, mon: LinkMonitor) -> list[LinkEvent]:
        """The monitor's socket overflowed (ENOBUFS): events were lost, so ask for the state
        of every device followed in its namespace, as if each had just reported it."""
        mon.lost = False
        self.counters["netlink_overrun"] += 1
        if "netlink_overrun" not in self._logged:
            self._logged.add("netlink_overrun")
            log.warning("link monitor of namespace %s overflowed: events were lost; the devices' state is read "
                        "again (counted as netlink_overrun)", mon.netns or "(own)")
        want: list[int] = []
        if mon.netns == self.cfg.parent.netns:
            if self.parent is not None:
                want.append(self.parent.ifindex)
            else:
                ctl = NetdevCtl(mon.netns)
                try:
                    idx = ctl.ifindex(self._parent_base)
                finally:
                    ctl.close()
                if idx is not None:
                    want.append(idx)
        for name, tap in self.taps.items():
            if tap.netns == mon.netns:
                want.append(tap.ifindex)
                self._mc_dirty.add(name)
        out = []
        for idx in want:
            ev = mon.query(idx)
            if ev is not None:
                out.append(ev)
        return out

    def _link_event(self, mon: LinkMonitor, ev: LinkEvent) -> None:
        if mon.netns == self.cfg.parent.netns and self._is_parent(ev):
            self._parent_event(ev)
            return
        for name, tap in list(self.taps.items()):
            if tap.netns == mon.netns and tap.ifindex == ev.ifindex:
                if ev.kind == "del":
                    self.counters["child_link_deleted"] += 1
                    self._delete_child(name)
                elif ev.kind == "addr":
                    self._mc_dirty.add(name)
                else:
                    self._child_event(name, ev)

    def _is_parent(self, ev: LinkEvent) -> bool:
        p = self.parent
        if p is not None:
            return ev.ifindex == p.ifindex
        return ev.kind == "new" and ev.name == self._parent_base

    def _parent_event(self, ev: LinkEvent) -> None:
        if ev.kind == "addr" or self.engine.lower.deleted:  # deleted: see delete_parent()
            return
        if ev.kind == "del":
            self.counters["parent_deleted"] += 1
            if self.parent is not None:
                self.unwatch(self.parent.fd)
                self.parent.close()
                self.parent = None
            self.engine.set_wire_carrier(False)
            self.engine.set_parent_up(False)
            self._carrier_to_children()
            self._sync_fastpath()
            return
        if self.parent is None:
            try:
                self.parent = Parent(self.cfg.parent)
            except OSError:
                self.counters["parent_reopen_failed"] += 1
                return
            self.counters["parent_reattached"] += 1
            self._watch_parent()
            self._fastpath_attach_parent()
            if self.parent.mac != self.engine.lower.mac:
                self.engine.set_parent_mac(self.parent.mac)
            self._sync_parent()
        self._parent_state(ev)

    def _parent_state(self, ev: LinkEvent) -> None:
        engine = self.engine
        engine.set_parent_up(bool(ev.flags & IFF_UP))
        engine.set_wire_carrier(bool(ev.flags & IFF_LOWER_UP))
        if ev.mtu and ev.mtu != engine.lower.mtu:
            engine.set_parent_mtu(ev.mtu)
        if ev.mtu and self.parent is not None and ev.mtu != self.parent.mtu:
            # the socket's oversize check follows the device (it was sized at open)
            self.parent.mtu, self.parent.frame_max = ev.mtu, frame_max(ev.mtu)
        if ev.mac and len(ev.mac) == 6 and ev.mac != engine.lower.mac:
            engine.set_parent_mac(ev.mac)
        if ev.mac and len(ev.mac) == 6:
            self._parent_mac_changed(ev.mac)  # seen by our monitor, bound in the parent's namespace
        self._carrier_to_children()
        self._apply_to_devices()  # NETDEV_CHANGEMTU clamps children; passthru follows the MAC
        self._sync_parent()

    def _parent_mac_changed(self, mac: bytes) -> None:
        """The parent's identity (see pymacvlan.identity) follows a MAC we gave it or saw it take."""
        if self.parent is None:
            return
        if self.shield is not None:
            self.shield.note_mac(mac)
        if self.fastpath is not None:
            self.fastpath.note_mac(self.parent.ifindex, mac)

    def _carrier_to_children(self) -> None:
        carrier = self.engine.lower.carrier
        for tap in self.taps.values():
            if tap.carrier != carrier:
                try:
                    tap.set_carrier(carrier)
                except OSError:
                    self.counters["child_carrier_error"] += 1

    def _child_event(self, name: str, ev: LinkEvent) -> None:
        """Mirror a TAP's state into the engine; refuse (undo) what the kernel would refuse."""
        vlan = self.engine.children.get(name)
        tap = self.taps[name]
        if vlan is None:
            return
        try:
            if ev.mac and len(ev.mac) == 6 and ev.mac != vlan.mac:
                try:
                    self.engine.set_mac(name, ev.mac)
                except KernelError:
                    self.counters["child_mac_refused"] += 1
                    tap.set_mac(vlan.mac)
            if ev.mtu and ev.mtu != vlan.mtu:
                try:
                    self.engine.set_mtu(name, ev.mtu)
                except KernelError:
                    self.counters["child_mtu_refused"] += 1
                    tap.set_mtu(vlan.mtu)
            up = bool(ev.flags & IFF_UP)
            if up and not vlan.up and not tap.flags() & IFF_UP:
                up = False  # a stale event (a veth reports up twice: flags, then carrier) of a refused open
            if up != vlan.up:
                try:
                    self.engine.set_up(name, up)
                    self._mc_dirty.add(name)
                except KernelError:
                    self.counters["child_up_refused"] += 1  # EADDRINUSE: like `ip link set up` failing
                    tap.set_admin_up(False)
            if bool(ev.flags & IFF_PROMISC) != vlan.promisc_user:
                self.engine.set_promisc(name, bool(ev.flags & IFF_PROMISC))
            if bool(ev.flags & IFF_ALLMULTI) != vlan.allmulti_user:
                self.engine.set_allmulticast(name, bool(ev.flags & IFF_ALLMULTI))
        except OSError:
            self.counters["child_event_error"] += 1
        self._sync_parent()

    # -- housekeeping -----------------------------------------------------------------------------------------
    def _housekeeping(self) -> None:
        if self._parked or self._failing:
            self._rearm_parked()
        for name, tap in list(self.taps.items()):
            if not tap.netns_still_named():
                # the TAP fd keeps the namespace alive: let it go
                self.counters["child_netns_gone"] += 1
                self._delete_child(name)
            else:
                self._mc_dirty.add(name)
        if self._mc_dirty:
            dirty, self._mc_dirty = self._mc_dirty, set()
            for name in dirty:
                self._sync_child_groups(name)
        if self.parent is not None:
            self.parent.kernel_stats()
        if self._fast:
            self._fold_fastpath()

    def _sync_child_groups(self, name: str) -> None:
        """The child's link-layer multicast list (what dev_mc_sync would copy) into the engine."""
        tap = self.taps.get(name)
        vlan = self.engine.children.get(name)
        if tap is None or vlan is None:
            return
        try:
            text = read_proc_net(tap.netns, "dev_mcast")
        except OSError:
            return
        want = set()
        for line in text.splitlines():
            # ifindex name users global address. Every group counts (an application's IGMP
            # join too, as dev_mc_sync copies it) except the stack's own, unless `global`
            # says the user joined that one as well (`ip maddr add`: dev_mc_add_global)
            f = line.split()
            if len(f) >= 5 and f[0] == str(tap.ifindex):
                g = bytes.fromhex(f[4])
                if g not in STACK_GROUPS or f[3] != "0":
                    want.add(g)
        have = set(vlan.user_groups)
        if want == have:
            return
        for g in want - have:
            self.engine.join(name, g)
        for g in have - want:
            self.engine.leave(name, g)
        self._sync_parent()
