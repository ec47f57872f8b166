"""What `ip link add` and `ip link set` ask for, as values every backend understands.

In the model (not in :mod:`pymacvlan.links`) so backends and the daemon can take requests
without depending on the link drivers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .constants import MacaddrMode, MacvlanFlag, Mode


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
