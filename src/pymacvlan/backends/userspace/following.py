"""The datapath's device following: what the kernel reports about the parent and the
children (rtnetlink link monitors, one per namespace) reaches the engine through one switch,
:meth:`DeviceFollowing.device_event`, as netdev events reach macvlan through
macvlan_device_event(); and the engine's answer goes back to the devices (addresses, MTUs,
carrier, the parent's memberships, shield and fast-path maps).

Child state follows the device: ``ip link set X up|down|address|mtu|promisc|allmulticast``
inside the child's namespace reaches the engine as ndo_open and friends would. The parent's
carrier, MTU and MAC are followed the same way; if the parent is deleted the children stay
(carrier off) and the datapath re-attaches when a device of that name comes back — unlike
the kernel, which deletes them, because a userspace daemon outliving a parent's re-creation
is the point.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from typing import TYPE_CHECKING, Any

from ...engine import Engine
from ...engine.device import STACK_GROUPS
from ...model import KernelError, frame_max
from ._sys import IFF_ALLMULTI, IFF_LOWER_UP, IFF_PROMISC, IFF_UP, NetdevCtl, read_proc_net
from .netlink import LinkEvent, LinkMonitor
from .parent import Parent

if TYPE_CHECKING:
    from collections.abc import Callable

    from .fastpath import FastPath
    from .tap import Tap
    from .veth import VethChild

log = logging.getLogger("pymacvlan.datapath")

__all__ = ["DeviceFollowing"]


class DeviceFollowing:
    """Device following, the room of :class:`~.datapath.Datapath` that listens to the kernel
    (loop thread only)."""

    engine: Engine
    counters: Counter[str]
    parent: Parent | None
    cfg: Any
    taps: dict[str, Tap | VethChild]
    shield: Any
    fastpath: FastPath | None
    _monitors: dict[str | None, LinkMonitor]
    _mc_dirty: set[str]
    _parent_base: str
    _logged: set[str]
    _parked: dict[int, int]
    _failing: Counter[int]

    if TYPE_CHECKING:
        def watch(self, fd: int, handler: Callable[[int], None], write: bool = False, kind: str = "fd") -> None: ...
        def unwatch(self, fd: int) -> None: ...
        def _watch_parent(self) -> None: ...
        def _sync_fastpath(self) -> None: ...
        def _fastpath_attach_parent(self) -> None: ...
        def _fold_fastpath(self) -> None: ...
        def _delete_child(self, name: str, keep: bool = False) -> None: ...
        def _rearm_parked(self) -> None: ...
        _fast: dict

    # -- the monitors ------------------------------------------------------------------------------
    def _monitor(self, netns: str | None) -> None:
        if netns in self._monitors:
            return
        mon = LinkMonitor(netns)
        self._monitors[netns] = mon
        def on_events(events: int, mon: LinkMonitor = mon) -> None:
            self._on_link_events(mon)

        self.watch(mon.fd, on_events, kind="netlink")

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
            self.device_event(mon, ev)

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
            if tap.netns == mon.netns and tap.ifindex is not None:
                want.append(tap.ifindex)
                self._mc_dirty.add(name)
        out = []
        for idx in want:
            ev = mon.query(idx)
            if ev is not None:
                out.append(ev)
        return out

    def _sync_devices(self) -> None:
        for mon in list(self._monitors.values()):
            self._on_link_events(mon)

    # -- the switch -----------------------------------------------------------------------------------
    def device_event(self, mon: LinkMonitor, ev: LinkEvent) -> None:
        """One link or address event from ``mon``'s namespace, as macvlan_device_event() takes a
        netdev event: whose device it is (the parent, a child, or none of ours), then what
        happened to it (gone, changed, addresses)."""
        if mon.netns == self.cfg.parent.netns and self._is_parent(ev):
            if ev.kind == "addr" or self.engine.lower.deleted:  # deleted: see delete_parent()
                return
            if ev.kind == "del":  # NETDEV_UNREGISTER, but the children stay
                self._parent_gone()
            else:  # NETDEV_UP/DOWN/CHANGE/CHANGEMTU/CHANGEADDR, or the parent is back
                self._parent_changed(ev)
            return
        for name, tap in list(self.taps.items()):
            if tap.netns == mon.netns and tap.ifindex == ev.ifindex:
                if ev.kind == "del":
                    self.counters["child_link_deleted"] += 1
                    self._delete_child(name)
                elif ev.kind == "addr":
                    self._mc_dirty.add(name)  # a new address may have joined groups
                else:
                    self._child_event(name, ev)

    def _is_parent(self, ev: LinkEvent) -> bool:
        p = self.parent
        if p is not None:
            return ev.ifindex == p.ifindex
        return ev.kind == "new" and ev.name == self._parent_base

    def _parent_gone(self) -> None:
        """The parent was deleted: its socket goes, the children lose carrier and stay."""
        self.counters["parent_deleted"] += 1
        if self.parent is not None:
            self.unwatch(self.parent.fd)
            self.parent.close()
            self.parent = None
        self.engine.set_wire_carrier(False)
        self.engine.set_parent_up(False)
        self._carrier_to_children()
        self._sync_fastpath()

    def _parent_changed(self, ev: LinkEvent) -> None:
        """The parent's state changed (or a device of its name is back: re-attach first)."""
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

    # -- the engine's answer, back to the devices ----------------------------------------------------------
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
            self.device_event(mon, ev)

    def _absorb_own_events(self, tap: Tap | VethChild) -> None:
        """Drop the pending events of ``tap`` (our own changes, already in the engine);
        handle everything else its namespace's monitor reported."""
        mon = self._monitors.get(tap.netns)
        if mon is None:
            return
        for ev in mon.read():
            if ev.ifindex == tap.ifindex and ev.kind == "new":
                continue
            self.device_event(mon, ev)

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

