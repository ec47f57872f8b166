"""The options of `docker network create -d pymacvlan`, checked before anything is made.

Docker's own names first (``parent``, ``macvlan_mode``; ``--internal`` arrives as
``com.docker.network.internal``), then the extras. A mistake is one line naming the option and
what is allowed: the text Docker shows after ``Error response from daemon:``. Sans-IO: nothing
here looks at a device.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

GENERIC = "com.docker.network.generic"
INTERNAL = "com.docker.network.internal"
ENABLE_IPV6 = "com.docker.network.enable_ipv6"
DRIVER_MTU = "com.docker.network.driver.mtu"  # the bridge driver's name, accepted as an alias of mtu

MODES = ("bridge", "private", "vepa", "passthru", "source")
TRUE, FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off", "")
#: every option the driver knows, with what it takes (for the "allowed" part of an error)
KNOWN: dict[str, str] = {
    "parent": "an interface, IF.VID for a VLAN (1-4094), or empty for an internal network",
    "macvlan_mode": "bridge (default), private, vepa, passthru or source",
    "mtu": "68 up to the parent's MTU",
    DRIVER_MTU: "68 up to the parent's MTU (alias of mtu)",
    "host_access": "true or false",
    "stable_mac": "true or false",
    "backend": "kernel (default) or userspace (the pymacvlan daemon's datapath)",
    "socket": "the pymacvlan daemon's control socket (backend=userspace)",
    "bclim": "a 32-bit signed integer (broadcast cutoff)",
    "bcqueuelen": "0 up to 4294967295",
    "nopromisc": "true or false (passthru only)",
    "nodst": "true or false (source only)",
    "macaddr": "comma-separated unicast MACs (source only)",
}
_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
_VLAN = re.compile(r"^(?P<base>.+)\.(?P<vid>[0-9]+)$")


class OptionError(ValueError):
    """A bad option: ``str(e)`` is the whole message Docker shows."""


@dataclass
class NetworkConfig:
    """One network's configuration, as the driver keeps it (JSON-able through :meth:`as_dict`)."""

    parent: str = ""  # "" until an internal network's isolated parent is named
    vlan: int | None = None  # parent IF.VID: the VID (base device = vlan_base)
    vlan_base: str = ""
    mode: str = "bridge"
    internal: bool = False
    mtu: int | None = None
    host_access: bool = False
    stable_mac: bool = False
    backend: str = "kernel"
    socket: str | None = None
    bclim: int | None = None
    bcqueuelen: int | None = None
    nopromisc: bool = False
    nodst: bool = False
    macaddr: list[str] = field(default_factory=list)
    ipv6: bool = False
    isolated: bool = False  # no parent given: the plugin made one that leads nowhere

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NetworkConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def _bool(key: str, value: Any) -> bool:
    v = str(value).strip().lower()
    if v in TRUE:
        return True
    if v in FALSE:
        return False
    raise OptionError(f"invalid value {value!r} for option {key}: expected true or false")


def _int(key: str, value: Any, lo: int, hi: int) -> int:
    try:
        n = int(str(value).strip(), 10)
    except ValueError:
        raise OptionError(f"invalid value {value!r} for option {key}: expected {KNOWN[key]}") from None
    if not lo <= n <= hi:
        raise OptionError(f"invalid value {value!r} for option {key}: expected {KNOWN[key]}")
    return n


def parse(options: dict[str, Any]) -> NetworkConfig:
    """The CreateNetwork ``Options`` map → a checked NetworkConfig, or OptionError."""
    if not isinstance(options, dict):
        raise OptionError("Options must be a JSON object")
    generic = options.get(GENERIC) or {}
    if not isinstance(generic, dict):
        raise OptionError(f"{GENERIC} must be a JSON object of strings")
    cfg = NetworkConfig(internal=bool(options.get(INTERNAL)), ipv6=bool(options.get(ENABLE_IPV6)))
    unknown = sorted(k for k in generic if k not in KNOWN)
    if unknown:
        raise OptionError(f"unknown option {unknown[0]!r}: pymacvlan takes " + ", ".join(
            k for k in KNOWN if k != DRIVER_MTU))
    for key, value in generic.items():
        if not isinstance(value, str):
            value = str(value)
        if key == "parent":
            cfg.parent = value.strip()
        elif key == "macvlan_mode":
            v = value.strip().lower() or "bridge"
            if v not in MODES:
                raise OptionError(f"requested macvlan mode '{value}' is not valid, 'bridge' mode is the macvlan "
                                  f"driver default (macvlan_mode takes {', '.join(MODES)})")
            cfg.mode = v
        elif key in ("mtu", DRIVER_MTU):
            cfg.mtu = _int(key, value, 68, 65535)
        elif key in ("host_access", "stable_mac", "nopromisc", "nodst"):
            setattr(cfg, key, _bool(key, value))
        elif key == "backend":
            from ..links import BACKENDS

            v = value.strip().lower() or cfg.backend
            if v not in BACKENDS:
                raise OptionError(f"invalid value {value!r} for option backend: expected {KNOWN['backend']}")
            cfg.backend = v
        elif key == "socket":
            cfg.socket = value or None
        elif key == "bclim":
            cfg.bclim = _int(key, value, -(2 ** 31), 2 ** 31 - 1)
        elif key == "bcqueuelen":
            cfg.bcqueuelen = _int(key, value, 0, 2 ** 32 - 1)
        elif key == "macaddr":
            macs = [m.strip().lower() for m in value.split(",") if m.strip()]
            for m in macs:
                if not _MAC.match(m) or int(m[:2], 16) & 1 or m == "00:00:00:00:00:00":
                    raise OptionError(f"invalid value {m!r} for option macaddr: expected {KNOWN['macaddr']}")
            cfg.macaddr = macs
    if cfg.parent:
        check_parent_name(cfg.parent)
    if cfg.parent == "lo":
        raise OptionError("loopback interface is not a valid macvlan parent link")
    vlan = _VLAN.match(cfg.parent)
    if vlan:
        vid = int(vlan["vid"])
        if not 1 <= vid <= 4094:
            raise OptionError(f"invalid value {cfg.parent!r} for option parent: the VLAN ID must be 1-4094")
        cfg.vlan, cfg.vlan_base = vid, vlan["base"]
    if not cfg.parent:
        # Docker's rule: no parent is an internal network on a link of its own (--internal with a
        # parent keeps the parent, dockerd 20.10 as the oracle: Docker then sets no default route)
        cfg.internal = True
        if cfg.host_access:
            raise OptionError("option host_access needs a parent: a network without one has no host side")
    if cfg.nopromisc and cfg.mode != "passthru":
        raise OptionError("option nopromisc is for macvlan_mode=passthru only")
    if (cfg.macaddr or cfg.nodst) and cfg.mode != "source":
        raise OptionError(f"option {'macaddr' if cfg.macaddr else 'nodst'} is for macvlan_mode=source only")
    return cfg


def check_parent_name(name: str) -> None:
    """iproute2's ifname rules, with Docker's words around them."""
    raw = name.encode()
    if len(raw) >= 16 or "/" in name or any(c.isspace() for c in name):
        raise OptionError(f"invalid value {name!r} for option parent: an interface name is 1 to 15 bytes, "
                          "without '/' or spaces")
