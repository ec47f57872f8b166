"""The namespaces and links of one kernel run: create them, find them, and always remove them.

Layout (every name starts with ``pmv`` and a per-run tag):

- namespace ``P`` holds the parent, one end of a veth pair, and is where children are created;
- namespace ``W`` holds the other end (the wire); for a hairpin wire it is the only port of a
  bridge with ``hairpin on``, STP and multicast snooping off;
- each child is created in ``P`` on the parent, then moved to a namespace of its own and renamed
  there, so its name cannot clash with anything and its stack is separate (``child_netns``;
  otherwise it stays in ``P`` beside the parent, which changes its operstate, see below).

IPv6 is disabled in a namespace before any link enters it, so the kernel emits no DAD, router
solicitations or MLD reports that would disturb captures. Nothing is routed anywhere.
"""

from __future__ import annotations

import atexit
import ctypes
import errno
import os
import secrets
import stat
import tempfile
import warnings
from dataclasses import dataclass, field
from typing import Any

from pyroute2 import IPRoute
from pyroute2 import netns as pr_netns
from pyroute2.netlink.exceptions import NetlinkError

from ... import identity
from ...netns import NETNS_DIR, in_netns, setns  # noqa: F401 (in_netns re-exported for this package)

CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
IFNAMSIZ = 16
#: The wire never limits frame size: only the parent's own MTU does (veth checks the receiver's).
WIRE_MTU = 65535

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    setns(fd)


def valid_ifname(name: str) -> bool:
    """dev_valid_name(), minus names that would clash in a fresh namespace or be templates."""
    return (
        0 < len(name.encode()) < IFNAMSIZ
        and name not in (".", "..", "lo")
        and not any(c in "/:%" or c.isspace() for c in name)
    )


@dataclass
class Child:
    """A child link, in its namespace (its own, or the parent's)."""

    name: str  # the scenario's name
    kind: str  # macvlan | macvtap
    ns: str
    ifname: str
    index: int
    ipr: IPRoute
    reader: int | None = None  # an open /dev/tapN (macvtap only): frames go to its ring


def _sysfs_in_netns(ns: str, path: str) -> str:
    """Read a sysfs file as namespace ``ns`` sees it (what `ip netns exec NS cat` does).

    Network-class entries such as /sys/class/macvtap/tapN are tagged with their namespace and
    visible only through a sysfs mounted inside it, so a short-lived child process enters the
    namespace, mounts its own sysfs in a private mount namespace and reads the file.
    """
    rd, wr = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns
        code = 1
        try:
            os.close(rd)
            target = os.open(os.path.join(NETNS_DIR, ns), os.O_RDONLY)
            _setns(target)
            if _libc.unshare(CLONE_NEWNS) == 0 and \
                    _libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) == 0 and \
                    _libc.mount(b"sysfs", b"/sys", b"sysfs", 0, None) == 0:
                with open(path, "rb") as f:
                    os.write(wr, f.read())
                code = 0
        finally:
            os._exit(code)
    os.close(wr)
    with os.fdopen(rd, "rb") as f:
        data = f.read()
    _pid, status = os.waitpid(pid, 0)
    if status != 0:
        raise OSError(errno.ENOENT, f"cannot read {path} in namespace {ns}")
    return data.decode().strip()


def open_macvtap(ns: str | None, ifindex: int) -> int:
    """open() /dev/tap<ifindex>: a node made from the device number, in a private directory
    (no udev needed). ``ns``: the macvtap's namespace (None: this process's)."""
    sysfs = f"/sys/class/macvtap/tap{ifindex}/dev"
    if ns is None:
        try:
            with open(sysfs) as f:
                text = f.read().strip()
        except OSError:
            raise OSError(errno.ENODEV, f"no macvtap with ifindex {ifindex} here ({sysfs})") from None
    else:
        text = _sysfs_in_netns(ns, sysfs)
    major, minor = (int(x) for x in text.split(":"))
    directory = tempfile.mkdtemp(prefix="pmv")
    node = os.path.join(directory, f"tap{ifindex}")
    try:
        os.mknod(node, 0o600 | stat.S_IFCHR, os.makedev(major, minor))
        return os.open(node, os.O_RDWR | os.O_NONBLOCK)
    finally:
        if os.path.exists(node):
            os.unlink(node)
        os.rmdir(directory)


# Topologies not yet torn down, for the atexit safety net.
_LIVE: set[Topology] = set()


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
    #: One namespace per child (a container's view), or children beside the parent. It shows
    #: in operstate: an up child without carrier is LOWERLAYERDOWN only when the parent is in
    #: its own namespace (default_operstate() looks its iflink up there), DOWN otherwise.
    child_netns: bool = True
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    children: dict[str, Child] = field(default_factory=dict)
    parent_index: int | None = None  # None once the parent is deleted
    wire_index: int | None = None
    _namespaces: list[str] = field(default_factory=list)
    _iprs: dict[str, IPRoute] = field(default_factory=dict)
    _serial: int = 0
    #: each namespace we made, by nsfs inode: a name is removed, and a cached socket used for a
    #: delete, only while it is still that namespace
    _ns_ino: dict[str, int] = field(default_factory=dict)
    #: the parent as made (namespace inode, ifindex, kind veth): teardown proves it before deleting
    _parent_ident: identity.DeviceIdentity | None = None

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
        self._ns_ino[name] = identity.netns_ino(name)
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
                if identity.netns_ino(name) != self._ns_ino.pop(name, None):
                    warnings.warn(f"namespace {name} is not the one this run made any more: not removing it",
                                  RuntimeWarning, stacklevel=2)
                    return
                pr_netns.remove(name)
            except OSError as exc:  # teardown goes on; the leftover is named, not hidden
                warnings.warn(f"could not remove namespace {name}: {exc}", RuntimeWarning, stacklevel=2)

    def ipr(self, ns: str) -> IPRoute:
        return self._iprs[ns]

    # ---------------------------------------------------------------- life cycle

    def create(self) -> Topology:
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
        self._parent_ident = identity.read(ipr_p, ifindex=self.parent_index)
        self.wire_index = ipr_w.link_lookup(ifname=self.wire_ifname)[0]
        if self.wire == "hairpin":
            ipr_w.link("add", ifname=self.bridge_ifname, kind="bridge", br_stp_state=0, br_mcast_snooping=0)
            bridge = ipr_w.link_lookup(ifname=self.bridge_ifname)[0]
            ipr_w.link("set", index=self.wire_index, master=bridge)
            ipr_w.brport("set", index=self.wire_index, mode=1)  # IFLA_BRPORT_MODE = hairpin
            ipr_w.link("set", index=bridge, state="up")
        ipr_w.link("set", index=self.wire_index, state="up")
        ipr_p.link("set", index=self.parent_index, state="up")
        self.settle()

    def teardown(self) -> None:
        """Delete the parent (its children and the wire go with it), then every namespace."""
        if self.parent_index is not None and self.ns_parent in self._iprs:
            try:
                self._del_parent_link()
            except (NetlinkError, OSError) as exc:
                if getattr(exc, "errno", None) not in (errno.ENODEV, None) or isinstance(exc, identity.IdentityError):
                    warnings.warn(f"teardown: {exc}", RuntimeWarning, stacklevel=2)
            self.parent_index = None
        for child in list(self.children.values()):
            self._forget(child)
        for name in list(reversed(self._namespaces)):
            self._drop_netns(name)  # closes its rtnetlink socket too
        _LIVE.discard(self)

    # ---------------------------------------------------------------- children

    def add_child(self, name: str, kind: str, request: dict[str, Any]) -> Child:
        """Create a child on the parent in P, move it to its own namespace (``child_netns``)
        and give it the scenario's name there.

        ``request`` holds the pyroute2 keywords of the creation (address, mtu, linkinfo data).
        Raises NetlinkError with the kernel's answer; nothing is left behind then.
        """
        if self.parent_index is None:
            raise NetlinkError(errno.ENODEV, "the parent was deleted")  # as `ip link add link <gone>`
        self._serial += 1
        tmp = f"{self.prefix}c{self._serial}"
        ipr_p = self.ipr(self.ns_parent)
        ns, ipr_c = (tmp, self._new_netns(tmp)) if self.child_netns else (self.ns_parent, ipr_p)
        try:
            ipr_p.link("add", ifname=tmp, kind=kind, link=self.parent_index, **request)
            index = ipr_p.link_lookup(ifname=tmp)[0]
            if self.child_netns:
                ipr_p.link("set", index=index, net_ns_fd=ns)
                index = ipr_c.link_lookup(ifname=tmp)[0]
            ifname = tmp
            if valid_ifname(name) and not name.startswith(self.prefix):
                ipr_c.link("set", index=index, ifname=name)
                ifname = name
        except BaseException:
            if self.child_netns:
                self._drop_netns(ns)  # takes the child with it
            elif ipr_p.link_lookup(ifname=tmp):
                ipr_p.link("del", ifname=tmp)
            raise
        child = Child(name=name, kind=kind, ns=ns, ifname=ifname, index=index, ipr=ipr_c)
        self.children[name] = child
        return child

    def add_probe(self) -> tuple[str, str, str]:
        """A macvlan port of the run's own, for :class:`.capture.Probe`: namespace ``Q`` with a
        veth pair (``tx`` → ``port``) and one up macvlan on ``port``. Returns (ns, tx, rx)."""
        ns = f"{self.prefix}q"
        ipr = self._new_netns(ns)
        tx, port, rx = f"{self.prefix}qt", f"{self.prefix}qp", f"{self.prefix}qm"
        ipr.link("add", ifname=tx, kind="veth", peer={"ifname": port})
        port_index = ipr.link_lookup(ifname=port)[0]
        ipr.link("add", ifname=rx, kind="macvlan", link=port_index)  # VEPA: a broadcast from the wire is queued
        for name in (tx, port, rx):
            ipr.link("set", index=ipr.link_lookup(ifname=name)[0], state="up")
        return ns, tx, rx

    def add_netns(self) -> str:
        """A fresh namespace of this run (IPv6 off), removed by :meth:`drop_netns` or
        :meth:`teardown`, for devices a caller creates itself (the userspace backend's TAPs)."""
        self._serial += 1
        name = f"{self.prefix}c{self._serial}"
        self._new_netns(name)
        return name

    def drop_netns(self, name: str) -> None:
        self._drop_netns(name)

    def _del_parent_link(self) -> None:
        """Delete the parent by ifindex through the cached socket, once both are proven: the socket
        is in the namespace this run made (SIOCGSKNS), the device there is our veth. Its MAC is not
        compared: a kernel passthru child gives the parent its own."""
        ipr = self._iprs[self.ns_parent]
        want = self._parent_ident
        if want is None or self.parent_index != want.ifindex:
            raise identity.IdentityError(errno.ESTALE, "the parent's identity was never recorded: not deleting")
        if want.netns != self._ns_ino.get(self.ns_parent):
            raise identity.IdentityError(errno.ESTALE, f"{self.ns_parent} is not the namespace the parent was made in")
        identity.check(ipr, want, "delete", mac=False)
        ipr.link("del", index=want.ifindex)

    def del_child(self, name: str) -> None:
        """Delete a child after proving it (its namespace's socket and inode, ifindex, kind)."""
        child = self.children[name]
        ino = self._ns_ino.get(child.ns)
        if ino is None or identity.socket_netns(child.ipr) != ino:
            raise identity.IdentityError(errno.ESTALE, f"{child.ns} is not the namespace {name} was made in")
        have = identity.read(child.ipr, ifindex=child.index)
        if have.kind != child.kind:
            raise identity.IdentityError(errno.ESTALE, f"not going to delete {have.describe()}: not a {child.kind}")
        child.ipr.link("del", index=child.index)
        self._forget(child)

    def _forget(self, child: Child) -> None:
        if child.reader is not None:
            os.close(child.reader)
            child.reader = None
        self.children.pop(child.name, None)
        if child.ns != self.ns_parent:
            self._drop_netns(child.ns)

    def attach_reader(self, name: str) -> None:
        """Open the macvtap's character device, as a VM does: frames then go to its ring
        (tx_queue_len = 500 entries) instead of its stack. Nobody reads it, as in the sim."""
        child = self.children[name]
        if child.kind != "macvtap":
            raise NetlinkError(errno.EOPNOTSUPP, f"{name} is a macvlan: only a macvtap has a /dev/tapN to read")
        if child.reader is None:
            child.reader = open_macvtap(child.ns, child.index)

    def detach_reader(self, name: str) -> None:
        child = self.children[name]
        if child.reader is not None:
            os.close(child.reader)
            child.reader = None

    def rx_errors(self, child: Child) -> int:
        """The child's rx_errors: a macvtap's full reader ring counts each frame it drops here."""
        return self.dump(child.ns, child.index).get_attr("IFLA_STATS64")["rx_errors"]

    def del_parent(self) -> None:
        """Delete the parent veth: the kernel deletes the wire end and every child with it."""
        if self.parent_index is None:
            raise NetlinkError(errno.ENODEV, "the parent was already deleted")
        self._del_parent_link()
        self.parent_index = None
        self.wire_index = None
        for child in list(self.children.values()):
            self._forget(child)

    # ---------------------------------------------------------------- state

    def dump(self, ns: str, index: int) -> Any:
        """RTM_GETLINK of one device; the kernel first runs its pending linkwatch work."""
        return self.ipr(ns).link("get", index=index)[0]

    def settle(self) -> None:
        """Apply pending carrier/operstate changes now instead of up to a second later.

        linkwatch batches non-urgent events once per second. Until it runs, operstate and
        RUNNING are stale, children have not copied the parent's carrier (they do on the
        parent's NETDEV_CHANGE), qdiscs are not (de)activated, and a bridge port is not enabled.
        rtnl_getlink() syncs the device it reports, so get the wire, the parent, then children.
        """
        devices = [(self.ns_wire, self.wire_index), (self.ns_parent, self.parent_index)]
        devices += [(c.ns, c.index) for c in self.children.values()]
        for ns, index in devices:
            if index is not None:
                try:
                    self.dump(ns, index)
                except NetlinkError:
                    pass

    def wire_up(self) -> bool:
        """Is the wire end admin up (the parent's carrier)?"""
        if self.wire_index is None:
            return False
        return bool(self.dump(self.ns_wire, self.wire_index)["flags"] & 0x1)
