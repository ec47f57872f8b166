"""What `ip link add` and `ip link set` ask for, as values every backend understands.

In the model (not in :mod:`pymacvlan.links`) so backends and the daemon can take requests
without depending on the link drivers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .constants import MacaddrMode, MacvlanFlag, Mode
from .errors import KernelError


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


ENDPOINT_KINDS = ("stream", "dgram", "tapfd")


def check_endpoint(req: LinkRequest, backend: str) -> None:
    """Refuse endpoint words the request's backend cannot honour (EOPNOTSUPP)."""
    if req.endpoint is None and req.endpoint_user is None and req.endpoint_group is None \
            and req.endpoint_mode is None:
        return
    if req.kind != "macvtap":
        raise KernelError("EOPNOTSUPP", "only a macvtap has an endpoint", "say `type macvtap`, or drop `endpoint`")
    if backend == "userspace":
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
