"""The namespaces and links of one kernel run: create them, find them, and always remove them.

Layout (every name starts with ``pmv`` and a per-run tag):

- namespace ``P`` holds the parent, one end of a veth pair, and is where children are created;
- namespace ``W`` holds the other end (the wire); for a hairpin wire it is the only port of a
  bridge with ``hairpin on``, STP and multicast snooping off;
- each child is created in ``P`` on the parent, then moved to a namespace of its own and renamed
  there, so its name cannot clash with anything and its stack is separate.

IPv6 is disabled in a namespace before any link enters it, so the kernel emits no DAD, router
solicitations or MLD reports that would disturb captures. Nothing is routed anywhere.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import secrets
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

from pyroute2 import IPRoute
from pyroute2 import netns as pr_netns
from pyroute2.netlink.exceptions import NetlinkError

NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
IFNAMSIZ = 16
#: The wire never limits frame size: only the parent's own MTU does (veth checks the receiver's).
WIRE_MTU = 65535

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the block with this thread in namespace ``name``; sockets made inside stay there.

    Unlike pyroute2's pushns(), this never creates a namespace that does not exist.
    """
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)


def valid_ifname(name: str) -> bool:
    """dev_valid_name(), minus names that would clash in a fresh namespace or be templates."""
    return (
        0 < len(name.encode()) < IFNAMSIZ
        and name not in (".", "..", "lo")
        and not any(c in "/:%" or c.isspace() for c in name)
    )


@dataclass
class Child:
    """A child link as it lives in its own namespace."""

    name: str  # the scenario's name
    kind: str  # macvlan | macvtap
    ns: str
    ifname: str
    index: int
    ipr: IPRoute


# Topologies not yet torn down, for the atexit safety net.
_LIVE: set["Topology"] = set()


@atexit.register
def _teardown_leftovers() -> None:
    for topo in list(_LIVE):
        topo.teardown()


@dataclass(eq=False)
class Topology:
    """Creates the run's namespaces and links; teardown() removes every one of them (idempotent)."""

    wire: str = "plain"  # plain | hairpin
    parent_mac: str | None = None
    parent_mtu: int = 1500
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    children: dict[str, Child] = field(default_factory=dict)
    parent_index: int | None = None  # None once the parent is deleted
    wire_index: int | None = None
    _namespaces: list[str] = field(default_factory=list)
    _iprs: dict[str, IPRoute] = field(default_factory=dict)
    _serial: int = 0

    @property
    def prefix(self) -> str:
        """Every namespace and link of this run starts with it."""
        return f"pmv{self.tag}"

    @property
    def ns_parent(self) -> str:
        return f"{self.prefix}p"

    @property
    def ns_wire(self) -> str:
        return f"{self.prefix}w"

    @property
    def parent_ifname(self) -> str:
        return f"{self.prefix}p"

    @property
    def wire_ifname(self) -> str:
        return f"{self.prefix}w"

    @property
    def bridge_ifname(self) -> str:
        return f"{self.prefix}b"

    # ---------------------------------------------------------------- namespaces

    def _new_netns(self, name: str) -> IPRoute:
        """Create a namespace with IPv6 off, and an rtnetlink socket inside it."""
        pr_netns.create(name)
        self._namespaces.append(name)
        with in_netns(name):
            for scope in ("all", "default"):
                path = f"/proc/sys/net/ipv6/conf/{scope}/disable_ipv6"
                if os.path.exists(path):  # absent when the kernel has no IPv6
                    with open(path, "w") as f:
                        f.write("1")
            ipr = IPRoute()
        self._iprs[name] = ipr
        return ipr

    def _drop_netns(self, name: str) -> None:
        ipr = self._iprs.pop(name, None)
        if ipr is not None:
            ipr.close()
        if name in self._namespaces:
            self._namespaces.remove(name)
            try:
                pr_netns.remove(name)
            except OSError:
                pass

    def ipr(self, ns: str) -> IPRoute:
        return self._iprs[ns]

    # ---------------------------------------------------------------- life cycle

    def create(self) -> "Topology":
        _LIVE.add(self)
        try:
            self._create()
        except BaseException:
            self.teardown()
            raise
        return self

    def _create(self) -> None:
        ipr_w = self._new_netns(self.ns_wire)
        ipr_p = self._new_netns(self.ns_parent)
        # The veth is the first link in both fresh namespaces, so both ends get ifindex 2 and the
        # parent's iflink equals its own ifindex: it reports DOWN on carrier loss, as a NIC does.
        extra: dict[str, Any] = {"mtu": self.parent_mtu}
        if self.parent_mac is not None:
            extra["address"] = self.parent_mac
        ipr_p.link(
            "add", ifname=self.parent_ifname, kind="veth",
            peer={"ifname": self.wire_ifname, "net_ns_fd": self.ns_wire, "mtu": WIRE_MTU}, **extra,
        )
        self.parent_index = ipr_p.link_lookup(ifname=self.parent_ifname)[0]
        self.wire_index = ipr_w.link_lookup(ifname=self.wire_ifname)[0]
        if self.wire == "hairpin":
            ipr_w.link("add", ifname=self.bridge_ifname, kind="bridge", br_stp_state=0, br_mcast_snooping=0)
            bridge = ipr_w.link_lookup(ifname=self.bridge_ifname)[0]
            ipr_w.link("set", index=self.wire_index, master=bridge)
            ipr_w.brport("set", index=self.wire_index, mode=1)  # IFLA_BRPORT_MODE = hairpin
            ipr_w.link("set", index=bridge, state="up")
        ipr_w.link("set", index=self.wire_index, state="up")
        ipr_p.link("set", index=self.parent_index, state="up")

    def teardown(self) -> None:
        """Delete the parent (its children and the wire go with it), then every namespace."""
        if self.parent_index is not None and self.ns_parent in self._iprs:
            try:
                self._iprs[self.ns_parent].link("del", index=self.parent_index)
            except (NetlinkError, OSError):
                pass
            self.parent_index = None
        self.children.clear()
        for name in list(reversed(self._namespaces)):
            self._drop_netns(name)
        for ipr in self._iprs.values():
            ipr.close()
        self._iprs.clear()
        _LIVE.discard(self)

    # ---------------------------------------------------------------- children

    def add_child(self, name: str, kind: str, request: dict[str, Any]) -> Child:
        """Create a child on the parent in P, then move it to its own namespace and rename it.

        ``request`` holds the pyroute2 keywords of the creation (address, mtu, linkinfo data).
        Raises NetlinkError with the kernel's answer; nothing is left behind then.
        """
        if self.parent_index is None:
            raise NetlinkError(19, "the parent was deleted")  # ENODEV, as `ip link add link <gone>`
        self._serial += 1
        ns = f"{self.prefix}c{self._serial}"
        tmp = f"{self.prefix}c{self._serial}"
        ipr_c = self._new_netns(ns)
        ipr_p = self.ipr(self.ns_parent)
        try:
            ipr_p.link("add", ifname=tmp, kind=kind, link=self.parent_index, **request)
        except BaseException:
            self._drop_netns(ns)
            raise
        try:
            index = ipr_p.link_lookup(ifname=tmp)[0]
            ipr_p.link("set", index=index, net_ns_fd=ns)
            index = ipr_c.link_lookup(ifname=tmp)[0]
            ifname = name if valid_ifname(name) else tmp
            if ifname != tmp:
                ipr_c.link("set", index=index, ifname=ifname)
        except BaseException:
            self._drop_netns(ns)  # takes the child with it
            raise
        child = Child(name=name, kind=kind, ns=ns, ifname=ifname, index=index, ipr=ipr_c)
        self.children[name] = child
        return child

    def del_child(self, name: str) -> None:
        child = self.children[name]
        child.ipr.link("del", index=child.index)
        del self.children[name]
        self._drop_netns(child.ns)

    def del_parent(self) -> None:
        """Delete the parent veth: the kernel deletes the wire end and every child with it."""
        if self.parent_index is None:
            raise NetlinkError(19, "the parent was already deleted")
        self.ipr(self.ns_parent).link("del", index=self.parent_index)
        self.parent_index = None
        self.wire_index = None
        for child in list(self.children.values()):
            self._drop_netns(child.ns)
        self.children.clear()

    # ---------------------------------------------------------------- state

    def dump(self, ns: str, index: int) -> Any:
        return self.ipr(ns).link("get", index=index)[0]

    def parent_flags(self) -> int:
        return self.dump(self.ns_parent, self.parent_index)["flags"] if self.parent_index else 0

    def wire_up(self) -> bool:
        """Is the wire end admin up (the parent's carrier)?"""
        if self.wire_index is None:
            return False
        return bool(self.dump(self.ns_wire, self.wire_index)["flags"] & 0x1)
