"""Scenario steps as kernel operations: netlink for control, packet sockets for frames."""

from __future__ import annotations

import errno
import fcntl
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from pymacvlan.model import MODES, MacaddrMode, flags_from_names, parse_mac

from .capture import Capture
from .nl import IFF_ALLMULTI, IFF_PROMISC, IFF_UP, error_result, link_state, linkinfo_data
from .topology import Child, Topology, in_netns

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


def _setlink(step: dict[str, Any]) -> dict[str, Any]:
    """The do_setlink() part of `ip link set`: one request, so the kernel applies the address,
    then the MTU, then the flags; a failed `up` still lets promisc/allmulti through."""
    request: dict[str, Any] = {}
    if "mac" in step:
        request["address"] = step["mac"]
    if "mtu" in step:
        request["mtu"] = step["mtu"]
    flags = change = 0
    for key, bit in (("up", IFF_UP), ("promisc", IFF_PROMISC), ("allmulticast", IFF_ALLMULTI)):
        if key in step:
            change |= bit
            flags |= bit if step[key] else 0
    if change:
        request.update(flags=flags, change=change)
    return request


def _macaddr_list(macs: list[str]) -> dict[str, Any]:
    """IFLA_MACVLAN_MACADDR_DATA: a nest of IFLA_MACVLAN_MACADDR (for macvtap too)."""
    return {"attrs": [("IFLA_MACVLAN_MACADDR", mac) for mac in macs]}


@dataclass
class StepDispatcher:
    """Runs one scenario step against the topology and returns its result dict."""

    topo: Topology
    capture: Capture
    serial: int = 0  # the running step's number (1-based), for LateFrame messages

    def run(self, step: dict[str, Any]) -> dict[str, Any]:
        handler: Callable[[dict[str, Any]], dict[str, Any]] | None = getattr(self, f"do_{step['do']}", None)
        if handler is None:
            raise ValueError(f"the kernel backend has no step {step['do']!r}")
        self.capture.drain()  # a late copy of an earlier frame fails here, before anything changes
        self.serial += 1
        try:
            result = handler(step)
        except NetlinkError as exc:
            result = error_result(exc)
        if step["do"] not in ("inject", "show"):
            self.topo.settle()
        return result

    # ---------------------------------------------------------------- helpers

    def _child(self, name: str) -> Child:
        try:
            return self.topo.children[name]
        except KeyError:
            raise NetlinkError(errno.ENODEV, f"no device {name!r}") from None

    def label(self, step: dict[str, Any]) -> str:
        """How a LateFrame message names this step."""
        return f"step {self.serial} (inject at {step['at']})"

    def _parent_index(self) -> int:
        if self.topo.parent_index is None:
            raise NetlinkError(errno.ENODEV, "the parent was deleted")
        return self.topo.parent_index

    # ---------------------------------------------------------------- control steps

    def do_add(self, step: dict[str, Any]) -> dict[str, Any]:
        if step["name"] in self.topo.children:
            raise NetlinkError(errno.EEXIST, f"{step['name']!r} exists")  # as `ip link add` of a taken name
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
        """`ip link set NAME ... type KIND ...`: changelink, then do_setlink, as one RTM_NEWLINK
        does. `macaddr add/del` carry one MAC per request, so each further MAC is its own."""
        child = self._child(step["name"])
        data = _macvlan_data(step)
        more: list[str] = []
        if "macaddr" in step:
            op, macs = step["macaddr"]["op"], list(step["macaddr"]["macs"])
            data["macaddr_mode"] = int(MacaddrMode[op.upper()])
            if op in ("add", "del") and macs:
                data["macaddr"], more = macs[0], macs[1:]
            elif op == "set" and macs:
                data["macaddr_data"] = _macaddr_list(macs)
        ipr, index, kind = child.ipr, child.index, child.kind
        if data:  # macvlan_changelink() applies flags, bcqueuelen, bclim, mode, then the list op
            ipr.link("set", index=index, kind=kind, **linkinfo_data(kind, **data))
        for mac in more:
            ipr.link("set", index=index, kind=kind,
                     **linkinfo_data(kind, macaddr_mode=data["macaddr_mode"], macaddr=mac))
        setlink = _setlink(step)
        if setlink:
            ipr.link("set", index=index, **setlink)
        if "reader" in step:
            (self.topo.attach_reader if step["reader"] else self.topo.detach_reader)(child.name)
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
        """Address, MTU and up in one request (as `ip link set`), then the wire's carrier:
        the admin state of the parent's veth peer."""
        index = self._parent_index()
        setlink = _setlink(step)
        if setlink:
            self.topo.ipr(self.topo.ns_parent).link("set", index=index, **setlink)
        if "carrier" in step:
            self.topo.ipr(self.topo.ns_wire).link(
                "set", index=self.topo.wire_index, flags=IFF_UP if step["carrier"] else 0, change=IFF_UP)
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
        if len(frame) < 14:  # dev_validate_header(): shorter than min_header_len
            return error_result(OSError(errno.EINVAL, "a frame needs a 14-byte Ethernet header"))
        # The tap on a macvtap sees frames before its reader's ring takes or drops them.
        readers = {c.name: self.topo.rx_errors(c) for c in self.topo.children.values() if c.reader is not None}
        try:
            self.capture.send(at, frame)
        except OSError as exc:
            return error_result(exc)
        seen = self.capture.collect(frame, self.label(step))
        for name, before in readers.items():
            lost = self.topo.rx_errors(self.topo.children[name]) - before
            del seen.get(name, [])[:lost]  # the ring was full: the reader never got these
        return self._observed(seen)

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
