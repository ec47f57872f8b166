"""Which device is this, really: identity before every change pymacvlan makes to a device.

A name is not an identity (``eth0`` exists in every namespace), and an ifindex means nothing
outside its namespace. A device is identified here by four things read *through a netlink
socket bound in the device's namespace*:

- the namespace's nsfs inode, taken from the socket itself (``SIOCGSKNS``), not from the
  thread that happens to use it: a socket opened on another thread, or in another
  namespace, proves itself wrong before it touches anything;
- the ifindex (never reused within a namespace until the counter wraps);
- the kind (``IFLA_INFO_KIND``: ``macvlan``, ``veth``, ``tun`` ...; ``""`` for a NIC);
- the MAC.

Every attach, detach and delete first reads the device and compares it with what
pymacvlan recorded when it made the device or was given it (:func:`check`); a device that
no longer matches is left alone, with a one-line error naming the difference.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DeviceIdentity", "IdentityError", "socket_netns", "read", "check", "netns_ino", "open_ipr", "ipr_in"]

#: ioctl on any socket: a new fd for the network namespace the socket belongs to
SIOCGSKNS = 0x894C


class IdentityError(OSError):
    """The device is not (or no longer) the one pymacvlan made or was given."""


@dataclass(frozen=True)
class DeviceIdentity:
    """A device as pymacvlan knows it: see the module docstring. ``name`` is informational
    (for messages) and takes no part in the comparison."""

    netns: int
    ifindex: int
    kind: str
    mac: str
    name: str = field(default="", compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"netns": self.netns, "ifindex": self.ifindex, "kind": self.kind, "mac": self.mac, "name": self.name}

    @classmethod
    def from_dict(cls, d: object) -> DeviceIdentity:
        """From a record (CNI cache, daemon state): every field type-checked, ValueError if not."""
        if not isinstance(d, dict):
            raise ValueError("a device identity must be an object")
        netns, ifindex, kind, mac, name = (d.get(k) for k in ("netns", "ifindex", "kind", "mac", "name"))
        if type(netns) is not int or netns <= 0 or type(ifindex) is not int or ifindex <= 0:
            raise ValueError("a device identity needs positive integers 'netns' and 'ifindex'")
        if not isinstance(kind, str) or not isinstance(mac, str) or len(mac) != 17:
            raise ValueError("a device identity needs a string 'kind' and a MAC 'mac'")
        return cls(netns, ifindex, kind, mac.lower(), name if isinstance(name, str) else "")

    def describe(self) -> str:
        kind = self.kind or "no kind"
        return f"{self.name or '?'} (ifindex {self.ifindex}, {kind}, {self.mac}, netns inode {self.netns})"


def socket_netns(sock: Any) -> int:
    """The nsfs inode of the namespace ``sock`` (a socket, or anything with ``fileno()``) belongs to."""
    fd = sock if isinstance(sock, int) else sock.fileno()
    nsfd = fcntl.ioctl(fd, SIOCGSKNS)
    try:
        return os.fstat(nsfd).st_ino
    finally:
        os.close(nsfd)


def netns_ino(netns: str | None) -> int:
    """The nsfs inode of a namespace given by name (``ip netns``), path, or None (this thread's)."""
    if netns is None:
        path = "/proc/thread-self/ns/net"
    elif netns.startswith("/"):
        path = netns
    else:
        path = os.path.join("/run/netns", netns)
    return os.stat(path).st_ino


def _mac_str(raw: Any) -> str:
    if isinstance(raw, bytes | bytearray):
        return bytes(raw).hex(":")
    return str(raw or "").lower()


def read(ipr: Any, ifindex: int | None = None, ifname: str | None = None) -> DeviceIdentity:
    """The device ``ifindex`` (or ``ifname``) as the namespace of ``ipr``'s socket sees it.

    Raises IdentityError (ENODEV) when there is no such device there."""
    ns = socket_netns(ipr)
    try:
        links = ipr.get_links(ifindex) if ifindex is not None else ipr.get_links(ifname=ifname)
    except Exception as e:  # NetlinkError(ENODEV) and friends
        code = getattr(e, "code", None) or errno.ENODEV
        raise IdentityError(code, f"no device {ifname or ifindex} in netns inode {ns}") from None
    if not links:
        raise IdentityError(errno.ENODEV, f"no device {ifname or ifindex} in netns inode {ns}")
    link = links[0]
    info = link.get_attr("IFLA_LINKINFO")
    kind = (info.get_attr("IFLA_INFO_KIND") if info is not None else None) or ""
    return DeviceIdentity(ns, int(link["index"]), kind, _mac_str(link.get_attr("IFLA_ADDRESS")),
                          link.get_attr("IFLA_IFNAME") or "")


def check(ipr: Any, want: DeviceIdentity, what: str = "change", mac: bool = True) -> DeviceIdentity:
    """Prove the device ``want`` names is still that device, through ``ipr``; returns what was read.

    ``mac=False`` only where the device lives in a namespace pymacvlan made itself (proven by
    inode) and the kernel may change its MAC on its own (a kernel passthru child's lower).
    Raises IdentityError (ESTALE: a different namespace or device; ENODEV: gone) with a one-line
    message saying what differs and that nothing was done."""
    ns = socket_netns(ipr)
    if ns != want.netns:
        raise IdentityError(errno.ESTALE, f"not going to {what} {want.describe()}: the netlink socket is in "
                            f"netns inode {ns}, not the device's")
    have = read(ipr, ifindex=want.ifindex)
    keys = ("kind", "mac") if mac else ("kind",)
    if any(getattr(want, k) != getattr(have, k) for k in keys):
        diff = ", ".join(f"{k} {getattr(want, k)!r} is now {getattr(have, k)!r}"
                         for k in keys if getattr(want, k) != getattr(have, k))
        raise IdentityError(errno.ESTALE, f"not going to {what} {want.describe()}: {diff} (another device, "
                            "or not pymacvlan's any more)")
    return have


@contextmanager
def _setns(netns: str | None) -> Iterator[None]:
    from .netns import in_netns

    with in_netns(netns):
        yield


def open_ipr(netns: str | None, expect_ino: int | None = None) -> Any:
    """An rtnetlink socket bound in ``netns`` (made on this thread, use it on this thread only);
    with ``expect_ino``, refused (IdentityError ESTALE) unless its namespace has that inode (a
    namespace name deleted and made again is another namespace)."""
    from pyroute2 import IPRoute

    with _setns(netns):
        ipr = IPRoute()
    if expect_ino is not None:
        try:
            ns = socket_netns(ipr)
        except BaseException:
            ipr.close()
            raise
        if ns != expect_ino:
            ipr.close()
            raise IdentityError(errno.ESTALE, f"netns {netns or '(this thread)'} is inode {ns} now, not "
                                f"{expect_ino}: not the namespace pymacvlan was given")
    return ipr


@contextmanager
def ipr_in(netns: str | None, expect_ino: int | None = None) -> Iterator[Any]:
    """:func:`open_ipr` as a context manager (closed on exit)."""
    ipr = open_ipr(netns, expect_ino)
    try:
        yield ipr
    finally:
        ipr.close()
