"""Scenario steps as kernel operations: netlink for control, packet sockets for frames."""

from __future__ import annotations

import fcntl
import socket
import struct
from dataclasses import dataclass
from typing import Any, Callable

from pyroute2.netlink.exceptions import NetlinkError

from pymacvlan.model import MODES, MacaddrMode, flags_from_names, parse_mac

from .capture import Capture
from .nl import IFF_ALLMULTI, IFF_PROMISC, IFF_UP, error_result, link_state, linkinfo_data
from .topology import Child, Topology, in_netns

ENODEV = 19
EEXIST = 17
SIOCADDMULTI = 0x8931
SIOCDELMULTI = 0x8932
_IFREQ_SIZE = 40  # struct ifreq on 64-bit Linux


def _macvlan_data(step: dict[str, Any]) -> dict[str, Any]:
    """The IFLA_MACVLAN_* values a step gives, keyed by their pyroute2 suffix."""
    data: dict[str, Any] = {}
    if "mode" in step:
        data["mode"] = int(MODES[step["mode"]])
    if "flags" in step:
        data["flags"] = int(flags_from_names(step["flags"]))
    if "bcqueuelen" in step:
        data["bc_queue_len"] = step["bcqueuelen"]
    if "bclim" in step:
        data["bc_cutoff"] = step["bclim"]
    return data


def _macaddr_list(macs: list[str]) -> dict[str, Any]:
    """IFLA_MACVLAN_MACADDR_DATA: a nest of IFLA_MACVLAN_MACADDR (for macvtap too)."""
    return {"attrs": [("IFLA_MACVLAN_MACADDR", mac) for mac in macs]}


@dataclass
class StepDispatcher:
    """Runs one scenario step against the topology and returns its result dict."""

    topo: Topology
    capture: Capture

    def run(self, step: dict[str, Any]) -> dict[str, Any]:
        handler: Callable[[dict[str, Any]], dict[str, Any]] | None = getattr(self, f"do_{step['do']}", None)
        if handler is None:
            raise ValueError(f"the kernel backend has no step {step['do']!r}")
        try:
            return handler(step)
        except NetlinkError as exc:
            return error_result(exc)

    # ---------------------------------------------------------------- helpers

    def _child(self, name: str) -> Child:
        try:
            return self.topo.children[name]
        except KeyError:
            raise NetlinkError(ENODEV, f"no device {name!r}") from None

    def _parent_index(self) -> int:
        if self.topo.parent_index is None:
            raise NetlinkError(ENODEV, "the parent was deleted")
        return self.topo.parent_index

    @staticmethod
    def _set_flag(ipr: Any, index: int, flag: int, on: bool) -> None:
        ipr.link("set", index=index, flags=flag if on else 0, change=flag)

    def _set_link(self, ipr: Any, index: int, step: dict[str, Any], linkinfo: Callable[[], None] | None) -> None:
        """ip-link order: down first, then linkinfo, address, mtu, allmulticast, promisc, up last."""
        if step.get("up") is False:
            self._set_flag(ipr, index, IFF_UP, False)
        if linkinfo is not None:
            linkinfo()
        if "mac" in step:
            ipr.link("set", index=index, address=step["mac"])
        if "mtu" in step:
            ipr.link("set", index=index, mtu=step["mtu"])
        if "allmulticast" in step:
            self._set_flag(ipr, index, IFF_ALLMULTI, step["allmulticast"])
        if "promisc" in step:
            self._set_flag(ipr, index, IFF_PROMISC, step["promisc"])
        if step.get("up") is True:
            self._set_flag(ipr, index, IFF_UP, True)

    # ---------------------------------------------------------------- control steps

    def do_add(self, step: dict[str, Any]) -> dict[str, Any]:
        if step["name"] in self.topo.children:
            raise NetlinkError(EEXIST, f"{step['name']!r} exists")  # as `ip link add` of a taken name
        kind = step.get("type", "macvlan")
        data = _macvlan_data(step)
        if step.get("macaddr"):
            # `ip link add ... mode source macaddr set M...`: the list at creation
            data["macaddr_mode"] = int(MacaddrMode.SET)
            data["macaddr_data"] = _macaddr_list(step["macaddr"])
        request = linkinfo_data(kind, **data)
        if "mac" in step:
            request["address"] = step["mac"]
        if "mtu" in step:
            request["mtu"] = step["mtu"]
        child = self.topo.add_child(step["name"], kind, request)
        self.capture.open_child(child.name, child.ns, child.ifname)
        return {"ok": True}

    def do_set(self, step: dict[str, Any]) -> dict[str, Any]:
        child = self._child(step["name"])
        data = _macvlan_data(step)
        more: list[str] = []  # `macaddr add/del` takes one MAC per request
        if "macaddr" in step:
            op, macs = step["macaddr"]["op"], list(step["macaddr"]["macs"])
            data["macaddr_mode"] = int(MacaddrMode[op.upper()])
            if op in ("add", "del") and macs:
                data["macaddr"], more = macs[0], macs[1:]
            elif op == "set" and macs:
                data["macaddr_data"] = _macaddr_list(macs)

        def linkinfo() -> None:
            # One RTM_NEWLINK: macvlan_changelink() applies flags, bcqueuelen, bclim, mode,
            # then the source-list op, in its own order.
            child.ipr.link("set", index=child.index, kind=child.kind, **linkinfo_data(child.kind, **data))
            for mac in more:
                child.ipr.link("set", index=child.index, kind=child.kind,
                               **linkinfo_data(child.kind, macaddr_mode=data["macaddr_mode"], macaddr=mac))

        self._set_link(child.ipr, child.index, step, linkinfo if data else None)
        return {"ok": True}

    def do_join(self, step: dict[str, Any]) -> dict[str, Any]:
        return self._maddr(step, SIOCADDMULTI)

    def do_leave(self, step: dict[str, Any]) -> dict[str, Any]:
        return self._maddr(step, SIOCDELMULTI)

    def _maddr(self, step: dict[str, Any], request: int) -> dict[str, Any]:
        """`ip maddr add/del`: SIOCADDMULTI/SIOCDELMULTI with an AF_UNSPEC hardware address."""
        child = self._child(step["name"])
        ifreq = struct.pack("16sH6s", child.ifname.encode(), socket.AF_UNSPEC, parse_mac(step["group"]))
        with in_netns(child.ns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with sock:
            try:
                fcntl.ioctl(sock, request, ifreq.ljust(_IFREQ_SIZE, b"\0"))
            except OSError as exc:
                return error_result(exc)
        return {"ok": True}

    def do_parent(self, step: dict[str, Any]) -> dict[str, Any]:
        index = self._parent_index()
        ipr = self.topo.ipr(self.topo.ns_parent)

        def carrier() -> None:
            # The parent's carrier is its veth peer's admin state.
            if "carrier" in step:
                self._set_flag(self.topo.ipr(self.topo.ns_wire), self.topo.wire_index, IFF_UP, step["carrier"])

        self._set_link(ipr, index, step, carrier)
        return {"ok": True}

    def do_del(self, step: dict[str, Any]) -> dict[str, Any]:
        name = step["name"]
        if name == "@parent":
            self._parent_index()
            gone = list(self.topo.children)
            self.topo.del_parent()
            for where in ["parent", "wire", *gone]:
                self.capture.close(where)
        else:
            self._child(name)
            self.topo.del_child(name)
            self.capture.close(name)
        return {"ok": True}

    # ---------------------------------------------------------------- frames and state

    def do_inject(self, step: dict[str, Any]) -> dict[str, Any]:
        frame = bytes.fromhex(step["frame"])
        at: str = step["at"]
        if at == "wire":
            if not self.topo.wire_up():
                return self._observed({})  # no carrier: nothing arrives anywhere
        elif at == "parent":
            self._parent_index()
        else:
            at = self._child(at.removeprefix("child:")).name
        self.capture.drain()
        try:
            self.capture.send(at, frame)
        except OSError as exc:
            return error_result(exc)
        return self._observed(self.capture.collect(frame))

    def _observed(self, seen: dict[str, list[dict]]) -> dict[str, Any]:
        return {"ok": True, "observed": {
            "wire": seen.get("wire", []),
            "parent": seen.get("parent", []),
            "children": {name: seen.get(name, []) for name in self.topo.children},
        }}

    def do_show(self, step: dict[str, Any]) -> dict[str, Any]:
        topo = self.topo
        parent = None
        if topo.parent_index is not None:
            parent = link_state(topo.dump(topo.ns_parent, topo.parent_index))
        children = {name: link_state(topo.dump(c.ns, c.index)) for name, c in topo.children.items()}
        return {"ok": True, "state": {"parent": parent, "children": children}}
