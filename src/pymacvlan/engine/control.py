"""The control plane: newlink/changelink/dellink, open/stop, addresses, MTU, flags,
multicast lists and the parent's notifier events, with the kernel's errors."""

from __future__ import annotations

from collections.abc import Sequence

from ..model import KernelError, MacaddrMode, MacvlanFlag, Mode, mac_str
from ..model.link import LinkRequest, check_flags, check_kind, check_mtu, check_unicast
from .device import MacvlanDev
from .port import Port, compute_child_filter
from .state import EngineState

NOPROMISC = MacvlanFlag.NOPROMISC


class ControlPlane(EngineState):
    """Mixin of :class:`~pymacvlan.engine.core.Engine`."""

    # -- lookup -----------------------------------------------------------------------------
    def child(self, name: str) -> MacvlanDev:
        try:
            return self.children[name]
        except KeyError:
            raise KernelError("ENODEV", f"no child named {name!r}",
                              f"existing children: {', '.join(self.children) or 'none'}") from None

    def _need_lower(self) -> None:
        if self.lower.deleted:
            raise KernelError("ENODEV", f"the parent {self.lower.name} was deleted", "create a new topology")

    # -- newlink ----------------------------------------------------------------------------
    def newlink(self, req: LinkRequest) -> MacvlanDev:
        """rtnl_link_ops.newlink with the one request shape: ``req``'s IFLA_MACVLAN_* settings
        (``req.up`` and ``req.netns`` are the caller's: the engine has no namespaces)."""
        macs: list[bytes] | None = None
        if req.macaddr_mode is not None:
            macs = list(req.macaddrs) if req.macaddr_mode in (MacaddrMode.ADD, MacaddrMode.SET) else []
        return self.add(req.name, req.kind, req.mode, int(req.flags or 0), req.address, req.mtu, macs,
                        req.bcqueuelen, req.bclim)

    def add(self, name: str, kind: str = "macvlan", mode: Mode | None = None, flags: int = 0,
            mac: bytes | None = None, mtu: int | None = None, macaddr: list[bytes] | None = None,
            bcqueuelen: int | None = None, bclim: int | None = None) -> MacvlanDev:
        """macvlan_common_newlink(): the child is created down. No MAC conflict check here."""
        self._need_lower()
        lower = self.lower
        if name in self.children:
            raise KernelError("EEXIST", f"a device named {name!r} already exists")
        check_kind(kind)
        if mac is not None:
            check_unicast(mac)
        check_flags(flags)
        if mtu is not None:
            check_mtu(mtu)
            if mtu > lower.mtu:
                raise KernelError("EINVAL", f"MTU {mtu} is above the parent's {lower.mtu}",
                                  f"a child's MTU can be at most its parent's; raise {lower.name}'s MTU first")
        mode = Mode.VEPA if mode is None else Mode(mode)
        port = self.port
        created = port is None
        if port is None:
            port = Port(lower)
        if port.passthru:
            raise KernelError("EINVAL", f"{lower.name} already has a passthru child",
                              "a passthru child must be alone on its parent; delete it first")
        if mode == Mode.PASSTHRU and port.vlans:
            raise KernelError("EINVAL", f"{lower.name} already has children; passthru must be the only one",
                              "delete the other children, or pick another mode")
        if macaddr is not None and mode != Mode.SOURCE:
            raise KernelError("EINVAL", "a macaddr list needs mode source")
        for m in macaddr or ():
            check_unicast(m, " for the source list")
        if created:
            self.port = port
        vlan = MacvlanDev(name, kind, mode, flags, mac if mac is not None else self._random_mac(),
                          lower.mtu if mtu is None else mtu, lower, self._salt(), len(self.children))
        if mode == Mode.PASSTHRU:
            port.passthru = True
            port.perm_addr = lower.mac
            vlan.mac = lower.mac
        if kind == "macvtap":
            vlan.tap_qlen = 500
        if macaddr is not None:
            self._changelink_sources(vlan, MacaddrMode.SET, macaddr)
        if bcqueuelen is not None:
            vlan.bc_queue_len_req = bcqueuelen
        if bclim is not None:
            self._update_bc_cutoff(bclim)
        self.children[name] = vlan
        port.vlans.append(vlan)
        port.update_bc_queue_len()
        return vlan

    def _update_bc_cutoff(self, cutoff: int) -> None:
        port = self._port
        if port.bc_cutoff != cutoff:
            port.bc_cutoff = cutoff
            port.recompute_bc_filter()

    # -- changelink ---------------------------------------------------------------------------
    def changelink(self, name: str, mode: Mode | None = None, flags: int | None = None,
                   bcqueuelen: int | None = None, bclim: int | None = None,
                   macaddr_op: MacaddrMode | None = None, macaddrs: Sequence[bytes] = ()) -> None:
        """macvlan_changelink(): applied in the kernel's order, without rollback."""
        vlan = self.child(name)
        port = self._port
        if mode is not None:
            if (mode == Mode.PASSTHRU) != (vlan.mode == Mode.PASSTHRU):
                raise KernelError(
                    "EINVAL",
                    f"cannot change {name} between {vlan.mode.name.lower()} and {Mode(mode).name.lower()}",
                    "passthru can be neither entered nor left; delete and re-create the child",
                )
            if vlan.mode == Mode.SOURCE and mode != Mode.SOURCE:
                port.source_flush(vlan)
        if flags is not None:
            check_flags(flags)
            if port.passthru and (flags ^ vlan.flags) & NOPROMISC:
                self._lower_promiscuity(-1 if flags & NOPROMISC else 1)
            vlan.flags = flags
        if bcqueuelen is not None:
            vlan.bc_queue_len_req = bcqueuelen
            port.update_bc_queue_len()
        if bclim is not None:
            self._update_bc_cutoff(bclim)
        if mode is not None:
            vlan.mode = Mode(mode)
        if macaddr_op is not None:
            if vlan.mode != Mode.SOURCE:
                raise KernelError("EINVAL", f"{name} is in {vlan.mode.name.lower()} mode; macaddr needs mode source",
                                  f"set mode source first (pymacvlan link set {name} type macvlan mode source)")
            self._changelink_sources(vlan, MacaddrMode(macaddr_op), list(macaddrs))

    def _changelink_sources(self, vlan: MacvlanDev, op: MacaddrMode, macs: list[bytes]) -> None:
        port = self._port
        for m in macs:
            check_unicast(m, " for the source list")
        if op in (MacaddrMode.ADD, MacaddrMode.DEL):
            if len(macs) != 1:
                raise KernelError("EINVAL", f"macaddr {op.name.lower()} takes exactly one address")
            (port.source_add if op == MacaddrMode.ADD else port.source_del)(vlan, macs[0])
        elif op == MacaddrMode.FLUSH:
            port.source_flush(vlan)
        else:
            port.source_flush(vlan)
            for m in macs:
                port.source_add(vlan, m)

    # -- open / stop ---------------------------------------------------------------------------
    def set_up(self, name: str, up: bool) -> None:
        vlan = self.child(name)
        if up == vlan.up:
            return
        if up:
            self._open(vlan)
        else:
            self._stop(vlan)

    def _open(self, vlan: MacvlanDev) -> None:
        port = self._port
        if port.passthru:
            if not vlan.flags & NOPROMISC:
                self._lower_promiscuity(1)
        else:
            if port.addr_busy(vlan.mac):
                holder = self._mac_holder(vlan.mac)
                raise KernelError(
                    "EADDRINUSE",
                    f"{mac_str(vlan.mac)} is already in use by {holder}",
                    f"give {vlan.name} another address (link set {vlan.name} address ...) or bring {holder} down",
                )
            self._lower_uc_add(vlan.mac)
            if vlan.allmulti_user:
                self._lower_allmulti(1)
            if vlan.promisc_user:
                self._lower_promiscuity(1)
        port.hash_add(vlan)
        vlan.up = True
        self._set_rx_mode(vlan)

    def _stop(self, vlan: MacvlanDev) -> None:
        port = self._port
        self._mc_unsync(vlan)
        if port.passthru:
            if not vlan.flags & NOPROMISC:
                self._lower_promiscuity(-1)
        else:
            if vlan.allmulti_user:
                self._lower_allmulti(-1)
            if vlan.promisc_user:
                self._lower_promiscuity(-1)
            self._lower_uc_del(vlan.mac)
        port.hash_del(vlan)
        vlan.up = False  # the port filters are *not* recomputed: they may now be stale

    def _mac_holder(self, mac: bytes) -> str:
        if mac == self.lower.mac:
            return f"the parent {self.lower.name}"
        owner = self._port.vlan_hash.get(mac)
        return f"child {owner.name}" if owner is not None else "another device"

    # -- rx mode: filters and list sync -----------------------------------------------------------
    def _set_rx_mode(self, vlan: MacvlanDev) -> None:
        """macvlan_set_mac_lists(), run by the core only while the child is up."""
        if not vlan.up:
            return
        # The filter is computed before dev_mc_sync(): a group just left is still on the
        # child's list then (the entry synced into L holds a reference), so it stays in
        # the child's filter until the next rx-mode event.
        vlan.mc_filter = compute_child_filter(vlan, self._synced.get(vlan, ()))
        self._mc_sync(vlan)
        self._port.compute_port_filters()

    def _mc_sync(self, vlan: MacvlanDev) -> None:
        synced = self._synced.setdefault(vlan, set())
        now = set(vlan.mc_list())
        table = self.lower.mc_synced
        for addr in synced - now:
            self._unsync_one(addr)
        for addr in now - synced:
            table[addr] = table.get(addr, 0) + 1
        self._synced[vlan] = now

    def _mc_unsync(self, vlan: MacvlanDev) -> None:
        for addr in self._synced.pop(vlan, ()):
            self._unsync_one(addr)

    def _unsync_one(self, addr: bytes) -> None:
        table = self.lower.mc_synced
        table[addr] -= 1
        if table[addr] <= 0:
            del table[addr]

    # -- the parent's counts and lists ----------------------------------------------------------
    def _lower_promiscuity(self, inc: int) -> None:
        """__dev_set_promiscuity(): an unsigned int, so an imbalance (passthru's nopromisc
        toggled while down) wraps to 4294967295 and leaves the device promiscuous."""
        self.lower.promiscuity = (self.lower.promiscuity + inc) & 0xFFFFFFFF

    def _lower_allmulti(self, inc: int) -> None:
        self.lower.allmulti = (self.lower.allmulti + inc) & 0xFFFFFFFF

    def _lower_uc_add(self, mac: bytes) -> None:
        self.lower.uc_list[mac] = self.lower.uc_list.get(mac, 0) + 1
        self._lower_rx_mode()

    def _lower_uc_del(self, mac: bytes) -> None:
        uc = self.lower.uc_list
        if mac in uc:
            uc[mac] -= 1
            if uc[mac] <= 0:
                del uc[mac]
        self._lower_rx_mode()

    def _lower_rx_mode(self) -> None:
        """__dev_set_rx_mode(L): without a unicast filter, secondary addresses mean promisc.
        Nothing happens while L is down; dev_open() runs it again (found by the fuzzer)."""
        lower = self.lower
        if lower.unicast_filter or not lower.up:
            return
        if lower.uc_list and not lower.uc_promisc:
            lower.uc_promisc = True
            self._lower_promiscuity(1)
        elif not lower.uc_list and lower.uc_promisc:
            lower.uc_promisc = False
            self._lower_promiscuity(-1)

    # -- addresses, MTU, flags, groups ------------------------------------------------------------
    def set_mac(self, name: str, mac: bytes) -> None:
        """macvlan_set_mac_address()."""
        vlan = self.child(name)
        check_unicast(mac)
        if mac == vlan.mac:
            return
        port = self._port
        if vlan.mode == Mode.PASSTHRU:
            port.addr_change = True
            self.set_parent_mac(mac)
            return
        if port.addr_busy(mac):
            holder = self._mac_holder(mac)
            raise KernelError("EADDRINUSE", f"{mac_str(mac)} is already in use by {holder}",
                              "pick an address no up child and not the parent uses")
        self._sync_address(vlan, mac)

    def _sync_address(self, vlan: MacvlanDev, mac: bytes) -> None:
        """macvlan_sync_address()."""
        port = self._port
        if not vlan.up:
            vlan.mac = mac
        else:
            if port.addr_busy(mac):
                raise KernelError("EADDRINUSE", f"{mac_str(mac)} is already in use by {self._mac_holder(mac)}")
            if not port.passthru:
                self._lower_uc_add(mac)
                self._lower_uc_del(vlan.mac)
            port.hash_change_addr(vlan, mac)
        if port.passthru and not port.addr_change:
            port.perm_addr = self.lower.mac
        port.addr_change = False

    def set_mtu(self, name: str, mtu: int) -> None:
        vlan = self.child(name)
        check_mtu(mtu, self.lower.max_mtu)
        if mtu > self.lower.mtu:
            raise KernelError("EINVAL", f"MTU {mtu} is above the parent's {self.lower.mtu}",
                              f"a child's MTU can be at most its parent's; raise {self.lower.name}'s MTU first")
        vlan.mtu = mtu

    def set_allmulticast(self, name: str, on: bool) -> None:
        vlan = self.child(name)
        if vlan.allmulti_user == on:
            return
        vlan.allmulti_user = on
        if vlan.up:  # macvlan_change_rx_flags(): in every mode, passthru included
            self._lower_allmulti(1 if on else -1)
        self._set_rx_mode(vlan)

    def set_promisc(self, name: str, on: bool) -> None:
        vlan = self.child(name)
        if vlan.promisc_user == on:
            return
        vlan.promisc_user = on
        if vlan.up and not self._port.passthru:
            self._lower_promiscuity(1 if on else -1)
        self._set_rx_mode(vlan)

    def join(self, name: str, group: bytes) -> None:
        """`ip maddr add`: dev_mc_add_global(); joining twice is a no-op."""
        vlan = self.child(name)
        if group in vlan.user_groups:
            return
        vlan.user_groups[group] = None
        self._set_rx_mode(vlan)

    def leave(self, name: str, group: bytes) -> None:
        vlan = self.child(name)
        if group not in vlan.user_groups:
            raise KernelError("ENOENT", f"{name} has not joined {mac_str(group)}")
        del vlan.user_groups[group]
        self._set_rx_mode(vlan)

    # -- delete ------------------------------------------------------------------------------------
    def delete(self, name: str) -> None:
        """macvlan_dellink() + uninit: the last child takes the port with it."""
        vlan = self.child(name)
        port = self._port
        if vlan.up:
            self._stop(vlan)
        port.source_flush(vlan)
        port.vlans.remove(vlan)
        port.update_bc_queue_len()
        del self.children[name]
        vlan.deleted = True
        if not port.vlans:
            self._port_destroy()

    def _port_destroy(self) -> None:
        port = self._port
        port.bc_queue.clear()
        if port.passthru and self.lower.mac != port.perm_addr:
            self.lower.mac = port.perm_addr
        self.port = None

    # -- the parent ----------------------------------------------------------------------------------
    def set_parent_mac(self, mac: bytes) -> None:
        self._need_lower()
        check_unicast(mac)
        self.lower.mac = mac
        port = self.port
        if port is not None and port.passthru and port.vlans:  # NETDEV_CHANGEADDR
            self._sync_address(port.vlans[0], mac)

    def set_parent_mtu(self, mtu: int) -> None:
        self._need_lower()
        check_mtu(mtu, self.lower.max_mtu)
        self.lower.mtu = mtu
        for vlan in self.children.values():  # NETDEV_CHANGEMTU: clamp, never raise
            if vlan.mtu > mtu:
                vlan.mtu = mtu

    def set_parent_up(self, up: bool) -> None:
        self._need_lower()
        was = self.lower.up
        self.lower.up = up
        if up and not was:
            self._lower_rx_mode()

    def set_wire_carrier(self, carrier: bool) -> None:
        self._need_lower()
        self.lower.wire_carrier = carrier

    def delete_parent(self) -> None:
        """Unregistering L deletes every child (NETDEV_UNREGISTER)."""
        self._need_lower()
        for name in list(self.children):
            self.delete(name)
        self.lower.deleted = True
