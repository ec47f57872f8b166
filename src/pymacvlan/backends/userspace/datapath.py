"""The userspace datapath: real frames between a parent, its macvlan children (TAPs, or veth
pairs with the eBPF fast path) and macvtap endpoints, decided by the sans-IO
:class:`~pymacvlan.engine.Engine`.

One thread, one epoll loop. Per pass:

1. parent ring → ``engine.receive`` → write to child TAPs / endpoints (the parent's own stack
   already got its copy from the kernel; see "the parent's stack" below);
2. each readable TAP or endpoint → ``engine.xmit`` → parent tx ring / other children;
3. the engine's broadcast queue is drained (bc_work), the tx ring is kicked once.

:class:`Datapath` is built from four rooms, one module each, along its own sections:

- the **reactor** (:mod:`.reactor`): watch, call, wake — the loop, the commands other
  threads hand it, what a failed fd does to it;
- **device following** (:mod:`.following`): the rtnetlink monitors and one
  ``device_event`` switch, as macvlan_device_event() is; the engine's answer back to the
  devices;
- the **fast-path binding** (:mod:`.binding`): the eBPF programs and their maps;
- the **hot path** (:mod:`.hotpath`): frames through the engine to their writers.

This module holds what joins them: the configuration, the children's life cycle and the
control plane (one method per kernel operation, run on the loop thread), and
:class:`ChildView`, the read-only copy of a child other threads may keep.

Control (add/delete/set) goes through :meth:`Datapath.call`, which runs it on the loop
thread between passes (eventfd wake-up), so the engine is only ever touched by one thread.

The parent's stack: AF_PACKET only gets a copy, so what macvlan would consume also goes
up L's stack. Unicast to a child's MAC reaches it as PACKET_OTHERHOST, which IPv4, IPv6 and
ARP drop on entry; the rest (passthru, floods returned to a private/passthru/source
sender, source-mode ``nodst``) is dropped by the optional tc ingress filter of
:mod:`.shield`, which runs after the packet taps, so the datapath still sees it.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ...engine import Engine
from ...engine.device import MacvlanDev
from ...model import MacaddrMode, Mode, mode_from_name
from ._sys import IFF_ALLMULTI, IFF_PROMISC, ifreq
from .binding import FastPathBinding
from .endpoints import Endpoint
from .fastpath import FastChild, FastPath
from .following import DeviceFollowing
from .hotpath import MIN_BUF, READ_SIZE, FrameObserver, HotPath
from .netlink import LinkMonitor
from .parent import Parent, ParentConfig
from .reactor import FAILED, PARK_AFTER, STALL_WAIT_MAX, Reactor
from .tap import Tap, TapConfig
from .veth import VethChild, VethConfig

log = logging.getLogger("pymacvlan.datapath")

__all__ = ["Datapath", "DatapathConfig", "ChildView", "FrameObserver",
           # re-exported: they lived here before the datapath was split into rooms
           "FAILED", "PARK_AFTER", "STALL_WAIT_MAX", "READ_SIZE", "MIN_BUF"]

SIOCADDMULTI, SIOCDELMULTI = 0x8931, 0x8932
AF_UNSPEC = 0


@dataclass(frozen=True)
class ChildView:
    """A child as it stood when :meth:`Datapath.child_view` was answered: a copy made on the
    loop thread, safe to keep and read from any other (the daemon's control thread), where
    reaching into ``engine.children`` from outside the loop would race it."""

    name: str
    #: "macvlan" or "macvtap"
    kind: str
    mode: str
    mac: str
    mtu: int
    up: bool
    #: the engine's MACVLAN_FLAG bits (nopromisc, nodst)
    flags: int
    #: what carries it: "tap", "veth" (a macvlan child's device) or the endpoint's kind
    dev: str
    #: the device's name, ifindex and namespace (a macvtap endpoint's TAP for tapfd; else None)
    ifname: str | None
    ifindex: int | None
    netns: str | None
    #: "fast" when the eBPF fast path forwards its known unicast, else "python"
    path: str
    #: ``ip -s -j link``'s stats64 object ({"rx": {...}, "tx": {...}}), the fast path's counts folded in
    stats: dict[str, dict[str, int]]


def _device_kind(netns: str | None, ifindex: int) -> str | None:
    """"veth" or "tap" for the device ``ifindex`` in ``netns`` (None: gone, or neither)."""
    from ... import identity

    try:
        with identity.ipr_in(netns) as ipr:
            kind = identity.read(ipr, ifindex=ifindex).kind
    except Exception:  # gone, or its namespace: the caller's adoption says ENODEV
        return None
    return {"veth": "veth", "tun": "tap"}.get(kind)


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
    #: what a macvlan child is: "veth" (a veth pair whose outer end, next to the parent, the
    #: datapath reads and writes through PACKET_MMAP rings, and the fast path forwards into; see
    #: veth.py and docs/fastpath.md), "tap" (a TAP device, one read/write per frame: the faster
    #: *Python* path), or "auto" (the default): veth while the fast path is loaded, else tap.
    #: macvtap endpoints stay TAPs. An adopted child keeps the kind it has.
    children: str = "auto"
    #: forward known unicast in the kernel (eBPF tc programs, fastpath.py) between the wire and
    #: veth children and between bridge children; the rest stays on this Python path. On by
    #: default; needs veth children and CAP_BPF. Where it cannot load, the datapath says so once
    #: (log, ``stats()["path"]["reason"]``) and the Python path carries every frame
    fastpath: bool = True




class Datapath(HotPath, DeviceFollowing, FastPathBinding, Reactor):
    """macvlan in userspace on one parent. Start with :meth:`start` (thread) or :meth:`run`."""

    def __init__(self, cfg: DatapathConfig | ParentConfig | str, **parent_kw: Any) -> None:
        if isinstance(cfg, str):
            cfg = ParentConfig(cfg, **parent_kw)
        if isinstance(cfg, ParentConfig):
            cfg = DatapathConfig(cfg)
        self.cfg = cfg
        pcfg = cfg.parent
        Reactor.__init__(self, busy_poll_us=cfg.busy_poll_us, housekeeping=cfg.housekeeping, nice=cfg.nice)
        self.parent: Parent | None = Parent(pcfg)
        #: the device the socket is on (the base of a userspace VLAN parent), to re-attach by name
        self._parent_base = self.parent.base
        self.engine = Engine(self.parent.base if self.parent.vlan is None else f"{self.parent.base}.{self.parent.vlan}",
                             mac=self.parent.mac, mtu=self.parent.mtu, unicast_filter=cfg.unicast_filter,
                             bridge_mc_to_bridge=cfg.bridge_mc_to_bridge, seed=cfg.seed)
        #: child → writer of hdr+frame buffers (TAP write or endpoint.deliver)
        self._out: dict[object, Callable[[bytes], Any]] = {}
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
            if cfg.children not in ("auto", "veth", "tap"):
                raise ValueError(f"children must be 'auto', 'veth' or 'tap', not {cfg.children!r}")
            if cfg.fastpath and cfg.children == "tap":
                self.fastpath_error = "off: TAP children (children='tap'); the fast path forwards into veth children"
            elif cfg.fastpath:
                self._start_fastpath()
            #: what a new macvlan child is made of: cfg.children, "auto" resolved
            auto_veth = cfg.children == "auto" and self.fastpath is not None
            self.children_kind = "veth" if cfg.children == "veth" or auto_veth else "tap"
        except BaseException:
            self._close_all()
            raise

    def close(self, keep_children: bool = False) -> None:
        """Stop the loop, delete every child (TAPs vanish), release every membership.
        ``keep_children``: persistent TAPs stay (carrier off) for the next datapath to adopt."""
        if self._thread is not None and self._thread.is_alive():
            self.call(self._request_stop)
            self._thread.join(timeout=10)
        self._close_all(keep_children)

    def _close_all(self, keep_children: bool = False) -> None:
        self._release_children_and_parent(count_errors=True, keep_children=keep_children)
        for mon in self._monitors.values():
            mon.close()
        self._monitors.clear()
        self._close_reactor()

    def _before_commands(self) -> None:
        if self._fast:
            self._fold_fastpath()  # whatever the commands read, the kernel's counts are in

    def _after_commands(self) -> None:
        self._sync_fastpath()  # a command may have started or ended a trace

    def __enter__(self) -> Datapath:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

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
        if adopt is None:
            # the device's own creation (made with a random MAC, then given the child's) is already
            # in the engine: replayed from the namespace's monitor, its first, random MAC would
            # become the child's while it is down, and a sibling's MAC would then be refused and
            # replaced by that random one instead of EADDRINUSE at `up` (issue 18)
            self._absorb_own_events(dev)
        else:
            ev = self._monitors[netns].query(dev.ifindex) if dev.ifindex is not None else None
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
        kind = self.children_kind
        if adopt is not None:  # a previous datapath's child keeps its kind (the default may have changed since)
            kind = _device_kind(netns, adopt) or kind
        if kind == "veth":
            return VethChild(VethConfig(ifname, netns, self.cfg.parent.netns, mac=vlan.mac, mtu=vlan.mtu,
                                        outer_mtu=max(vlan.mtu, self.engine.lower.mtu), carrier=carrier, key=name,
                                        parent=self._parent_base,
                                        adopt=adopt))
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
        vlan.tap = EndpointReaderQueue()  # type: ignore[assignment]  # the endpoint is the macvtap's reader ring
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
        if tap is None or tap.ifindex is None:
            return 0
        mon = self._monitors.get(tap.netns)
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

    def child_view(self, name: str) -> ChildView | None:
        """A read-only copy of one child (None: no such child), made on the loop thread."""
        return self.call(self._child_view, name)

    def children_view(self) -> dict[str, ChildView]:
        """Read-only copies of every child, made in one pass on the loop thread."""
        return self.call(lambda: {n: v for n in list(self.engine.children) if (v := self._child_view(n)) is not None})

    def _child_view(self, name: str) -> ChildView | None:
        vlan = self.engine.children.get(name)
        if vlan is None:
            return None
        if name in self._fast:
            self._fold_fastpath()
        dev = self.taps.get(name)
        ep = self.endpoints.get(name)
        tap = dev if dev is not None else getattr(ep, "tap", None)
        return ChildView(name=name, kind="macvtap" if ep is not None else "macvlan", mode=vlan.mode.name.lower(),
                         mac=vlan.mac.hex(":"), mtu=vlan.mtu, up=vlan.up, flags=int(vlan.flags),
                         dev=(dev.kind if isinstance(dev, VethChild) else "tap") if dev is not None
                         else ep.kind if ep is not None else "",
                         ifname=tap.name if tap is not None else None,
                         ifindex=tap.ifindex if tap is not None else None,
                         netns=tap.netns if tap is not None else None,
                         path="fast" if name in self._fast else "python",
                         stats=vlan.stats.as_stats64())

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
                    self.counters[f"child_maddr_{errno.errorcode.get(e.errno or 0, e.errno)}"] += 1
        self._apply_to_devices()
        self._sync_parent()

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
