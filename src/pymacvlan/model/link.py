"""What `ip link add` and `ip link set` ask for, as values every backend understands; the
checks every request passes before anything is touched; and do_setlink()'s order.

In the model (not in :mod:`pymacvlan.links`) so backends and the daemon can take requests
without depending on the link drivers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .constants import MacaddrMode, MacvlanFlag, Mode
from .errors import KernelError
from .mac import is_multicast, is_zero, mac_str

IFNAMSIZ = 16
ETH_MIN_MTU = 68
ETH_MAX_MTU = 65535
KINDS = ("macvlan", "macvtap")


@dataclass
class LinkRequest:
    """`ip link add link PARENT name NAME type macvlan|macvtap ...` (IFLA_MACVLAN_* values)."""

    parent: str
    name: str
    kind: str = "macvlan"  # or "macvtap"
    mode: Mode | None = None  # None: the kernel's default (vepa)
    address: bytes | None = None  # None: random, as the kernel does
    mtu: int | None = None
    flags: MacvlanFlag | None = None
    macaddr_mode: MacaddrMode | None = None  # source mode list operation
    macaddrs: list[bytes] = field(default_factory=list)
    bcqueuelen: int | None = None
    bclim: int | None = None
    netns: str | None = None
    #: a macvtap's endpoint: how a VM reaches it. Userspace: stream (default), dgram or tapfd;
    #: the kernel's macvtap is always its character device /dev/tapN (tapfd; see check_endpoint)
    endpoint: str | None = None
    #: the endpoint socket's owner, group (names or numbers) and permission bits, so an
    #: unprivileged QEMU can connect (None: the daemon's user and umask)
    endpoint_user: str | None = None
    endpoint_group: str | None = None
    endpoint_mode: int | None = None
    #: `ip link add ... up`: one request; if bringing it up fails, the link is deleted again
    up: bool = False


ENDPOINT_KINDS = ("stream", "dgram", "tapfd")


def check_endpoint(req: LinkRequest, backend: str, sockets: bool = False) -> None:
    """Refuse endpoint words the request's backend cannot honour (EOPNOTSUPP). ``sockets``: the
    backend's macvtap endpoints are sockets it makes (any of ENDPOINT_KINDS, owned as asked);
    otherwise a macvtap is the kernel's character device /dev/tapN. ``backend`` names it in the
    refusal."""
    if req.endpoint is None and req.endpoint_user is None and req.endpoint_group is None \
            and req.endpoint_mode is None:
        return
    if req.kind != "macvtap":
        raise KernelError("EOPNOTSUPP", "only a macvtap has an endpoint", "say `type macvtap`, or drop `endpoint`")
    if sockets:
        if req.endpoint not in (None, *ENDPOINT_KINDS):
            raise KernelError("EINVAL", f"unknown endpoint {req.endpoint!r}", "say endpoint stream, dgram or tapfd")
        return
    if req.endpoint not in (None, "tapfd") or req.endpoint_user or req.endpoint_group or req.endpoint_mode is not None:
        raise KernelError("EOPNOTSUPP", f"the {backend} backend's macvtap is the character device /dev/tapN "
                          "(endpoint tapfd), owned by udev's rules",
                          "drop the endpoint words, or use --backend userspace for stream/dgram sockets")


@dataclass
class LinkChange:
    """`ip link set NAME ...`; None means "leave as is"."""

    up: bool | None = None
    kind: str | None = None  # `type macvlan|macvtap ...`: must match the link's kind (else EOPNOTSUPP)
    address: bytes | None = None
    mtu: int | None = None
    mode: Mode | None = None  # `type macvlan mode M`
    flags: MacvlanFlag | None = None
    macaddr_mode: MacaddrMode | None = None
    macaddrs: list[bytes] = field(default_factory=list)
    bcqueuelen: int | None = None
    bclim: int | None = None
    allmulticast: bool | None = None
    promisc: bool | None = None

    def changes_macvlan(self) -> bool:
        """Does it change an IFLA_MACVLAN_* setting (changelink), not only the netdev's?"""
        return any(v is not None for v in (self.mode, self.flags, self.bcqueuelen, self.bclim, self.macaddr_mode))


# -- checks: what the kernel (or iproute2 before it) refuses without looking at any device -------------
def check_ifname(name: str, what: str = "name") -> None:
    """iproute2's check_ifname(): 1..15 bytes, no '/' and no whitespace; its words."""
    raw = name.encode() if isinstance(name, str) else b""
    if not raw or len(raw) >= IFNAMSIZ or b"/" in raw or any(c in b" \t\n\r\v\f" for c in raw):
        raise KernelError("EINVAL", f'Error: argument "{name}" is wrong: "{what}" not a valid ifname',
                          f"an interface name is 1 to {IFNAMSIZ - 1} bytes, without '/' or spaces")


def check_netns(ns: str) -> None:
    """`ip netns` names: a file name under /var/run/netns; or an absolute path to a namespace
    file (/proc/PID/ns/net, a runtime's /run/netns/cni-...), as CNI's CNI_NETNS gives it."""
    if isinstance(ns, str) and ns.startswith("/") and "/../" not in ns + "/":
        return
    if not isinstance(ns, str) or not ns or "/" in ns or ns in (".", ".."):
        raise KernelError("EINVAL", f'Invalid netns name "{ns}"', "a namespace name as `ip netns list` shows it")


def check_unicast(mac: bytes, what: str = "") -> None:
    """is_valid_ether_addr(): six bytes, not multicast, not all zeros (else EADDRNOTAVAIL)."""
    if len(mac) != 6 or is_multicast(mac) or is_zero(mac):
        raise KernelError("EADDRNOTAVAIL", f"{mac_str(mac)} is not a valid unicast MAC address{what}",
                          "use a unicast address (lowest bit of the first byte clear), not all zeros")


def check_mtu(mtu: int, most: int = ETH_MAX_MTU) -> None:
    """dev_validate_mtu(): ETH_MIN_MTU .. the device's max_mtu."""
    if not isinstance(mtu, int) or not ETH_MIN_MTU <= mtu <= most:
        raise KernelError("EINVAL", f"MTU {mtu} is outside {ETH_MIN_MTU}..{most}")


def check_flags(flags: int) -> None:
    """macvlan_validate(): only NOPROMISC and NODST exist."""
    if int(flags) & ~int(MacvlanFlag.NOPROMISC | MacvlanFlag.NODST):
        raise KernelError("EINVAL", f"unknown macvlan flags {int(flags):#x}", "flags are nopromisc and nodst")


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise KernelError("EOPNOTSUPP", f"unknown link type {kind!r}", "use macvlan or macvtap")


def _check_common(kind: str | None, mode: Mode | None, flags: MacvlanFlag | None, address: bytes | None,
                  mtu: int | None, macaddr_mode: MacaddrMode | None, macaddrs: Sequence[bytes],
                  bcqueuelen: int | None, bclim: int | None) -> None:
    if kind is not None:
        check_kind(kind)
    if mode is not None and mode not in set(Mode):
        raise KernelError("EINVAL", f"unknown macvlan mode {mode!r}", "private, vepa, bridge, passthru or source")
    if flags is not None:
        check_flags(flags)
    if address is not None:
        check_unicast(address)
    if mtu is not None:
        check_mtu(mtu)
    if macaddr_mode is not None and macaddr_mode not in set(MacaddrMode):
        raise KernelError("EINVAL", f"unknown macaddr operation {macaddr_mode!r}", "add, del, set or flush")
    for m in macaddrs:
        check_unicast(m, " for the source list")
    if macaddr_mode in (MacaddrMode.ADD, MacaddrMode.DEL) and not macaddrs:
        raise KernelError("EINVAL", f"macaddr {MacaddrMode(macaddr_mode).name.lower()} needs an address")
    if bcqueuelen is not None and not 0 <= bcqueuelen <= 0xFFFFFFFF:
        raise KernelError("EINVAL", f"bcqueuelen {bcqueuelen} is outside 0..4294967295")
    if bclim is not None and not -(2 ** 31) <= bclim < 2 ** 31:
        raise KernelError("EINVAL", f"bclim {bclim} is outside the 32-bit signed range")


def validate_request(req: LinkRequest) -> None:
    """Everything about `ip link add` that does not depend on existing devices: raised before
    any backend touches anything (iproute2's and macvlan_validate()'s refusals)."""
    check_ifname(req.name)
    if not req.parent:
        raise KernelError("EINVAL", "a macvlan needs a parent", "say `link PARENT`")
    check_ifname(req.parent, "link")
    if req.netns is not None:
        check_netns(req.netns)
    _check_common(req.kind, req.mode, req.flags, req.address, req.mtu, req.macaddr_mode, req.macaddrs,
                  req.bcqueuelen, req.bclim)
    if req.macaddr_mode in (MacaddrMode.DEL, MacaddrMode.FLUSH):
        raise KernelError("EINVAL", "macaddr del/flush make no sense on a new link", "use macaddr add or set")
    if req.macaddr_mode is not None and (req.mode or Mode.VEPA) != Mode.SOURCE:
        raise KernelError("EINVAL", "a macaddr list needs mode source", "add `mode source` to the same command")


def validate_change(ch: LinkChange) -> None:
    """Everything about `ip link set` that does not depend on the device."""
    _check_common(ch.kind, ch.mode, ch.flags, ch.address, ch.mtu, ch.macaddr_mode, ch.macaddrs,
                  ch.bcqueuelen, ch.bclim)


# -- do_setlink() ----------------------------------------------------------------------------------------
class SetLink(Protocol):
    """The verbs `ip link set` is made of, with the engine's names: the sim engine, the
    userspace datapath (and through it the daemon and the replay backend) implement them."""

    def changelink(self, name: str, mode: Mode | None = None, flags: int | None = None,
                   bcqueuelen: int | None = None, bclim: int | None = None,
                   macaddr_op: MacaddrMode | None = None, macaddrs: Sequence[bytes] = ()) -> None: ...

    def set_mac(self, name: str, mac: bytes) -> None: ...

    def set_mtu(self, name: str, mtu: int) -> None: ...

    def set_up(self, name: str, up: bool) -> None: ...

    def set_promisc(self, name: str, on: bool) -> None: ...

    def set_allmulticast(self, name: str, on: bool) -> None: ...


def apply_change(dev: SetLink, name: str, ch: LinkChange) -> None:
    """One `ip link set` request in do_setlink()'s order: changelink (one call per source
    MAC added or deleted, as iproute2 sends them), address, MTU, then the flags: up/down,
    promisc, allmulticast. :func:`validate_change` runs first, so a malformed request
    touches nothing; like the kernel, what a later step refuses leaves the earlier ones done,
    except that a refused up/down still applies promisc/allmulticast (__dev_change_flags())."""
    validate_change(ch)
    flags = None if ch.flags is None else int(ch.flags)
    link_opts = (ch.mode, flags, ch.bcqueuelen, ch.bclim)
    if ch.macaddr_mode in (MacaddrMode.ADD, MacaddrMode.DEL):
        if any(v is not None for v in link_opts):
            dev.changelink(name, ch.mode, flags, ch.bcqueuelen, ch.bclim)
        for m in ch.macaddrs:
            dev.changelink(name, macaddr_op=ch.macaddr_mode, macaddrs=[m])
    elif any(v is not None for v in link_opts) or ch.macaddr_mode is not None:
        dev.changelink(name, ch.mode, flags, ch.bcqueuelen, ch.bclim, ch.macaddr_mode, list(ch.macaddrs))
    if ch.address is not None:
        dev.set_mac(name, ch.address)
    if ch.mtu is not None:
        dev.set_mtu(name, ch.mtu)
    error = None
    if ch.up is not None:
        try:
            dev.set_up(name, ch.up)
        except KernelError as e:
            error = e
    if ch.promisc is not None:
        dev.set_promisc(name, ch.promisc)
    if ch.allmulticast is not None:
        dev.set_allmulticast(name, ch.allmulticast)
    if error is not None:
        raise error
