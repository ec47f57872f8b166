"""pyroute2 glue: the macvlan attributes pyroute2 0.9.7 lacks, and link state as ``ip -j -d link`` names it.

pyroute2's ``macvx_data`` stops at IFLA_MACVLAN_MACADDR_COUNT (6) and knows only the NOPROMISC
flag. We register a superset of it for the ``macvlan`` and ``macvtap`` kinds in ifinfmsg's
IFLA_INFO_DATA plugin table (``ifinfmsg.ifinfo.data_map``), so the same IPRoute calls can send
BC_QUEUE_LEN (7) and BC_CUTOFF (9, s32) and decode BC_QUEUE_LEN_USED (8). Existing attribute
names are kept, so other pyroute2 users in the process see only additions. Mode and flags decode
as plain integers here (pyroute2's value maps would turn 2 into an ambiguous int/str mix).
"""

from __future__ import annotations

import errno
import os
from typing import Any

from pyroute2.netlink import nlmsg_atoms
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg, macvx_data

from pymacvlan.model import MODE_NAMES, Mode, flag_names

# include/uapi/linux/if.h
IFF_UP = 0x1
IFF_RUNNING = 0x40
IFF_PROMISC = 0x100
IFF_ALLMULTI = 0x200

#: iproute2 print_link_flags() order; RUNNING is folded into NO-CARRIER, M-DOWN left out.
_PRINTED_FLAGS: tuple[tuple[str, int], ...] = (
    ("LOOPBACK", 0x8), ("BROADCAST", 0x2), ("POINTOPOINT", 0x10), ("MULTICAST", 0x1000),
    ("NOARP", 0x80), ("ALLMULTI", IFF_ALLMULTI), ("PROMISC", IFF_PROMISC), ("MASTER", 0x400),
    ("SLAVE", 0x800), ("DEBUG", 0x4), ("DYNAMIC", 0x8000), ("AUTOMEDIA", 0x4000),
    ("PORTSEL", 0x2000), ("NOTRAILERS", 0x20), ("UP", IFF_UP), ("LOWER_UP", 0x10000),
    ("DORMANT", 0x20000), ("ECHO", 0x40000),
)
_OPERSTATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")

_EXTRA_MACVLAN_NLAS = (
    ("IFLA_MACVLAN_BC_QUEUE_LEN", "uint32"),
    ("IFLA_MACVLAN_BC_QUEUE_LEN_USED", "uint32"),
    ("IFLA_MACVLAN_BC_CUTOFF", "int32"),
)


class MacvlanData(macvx_data):
    """IFLA_INFO_DATA of kind macvlan: pyroute2's attributes 1..6 plus 7..9 (uapi if_link.h)."""

    nla_map = tuple(macvx_data.nla_map) + _EXTRA_MACVLAN_NLAS
    # pyroute2 caches the compiled nla_map in a class attribute that subclasses inherit; start
    # each class uncompiled so none reuses its base's table (and its attribute names).
    _nlmsg_base__compiled_nla = False

    class mode(nlmsg_atoms.uint32):
        pass

    class flags(nlmsg_atoms.uint16):
        pass


class MacvtapData(MacvlanData):
    """The same attributes, under pyroute2's IFLA_MACVTAP_* names for kind macvtap."""

    nla_map = tuple((name.replace("MACVLAN", "MACVTAP"), kind) for name, kind in MacvlanData.nla_map)
    _nlmsg_base__compiled_nla = False


def register() -> None:
    """Install the full macvlan/macvtap attribute tables (idempotent)."""
    ifinfmsg.ifinfo.data_map["macvlan"] = MacvlanData
    ifinfmsg.ifinfo.data_map["macvtap"] = MacvtapData


register()


#: Where Python's errno.errorcode picks an alias, use the name the kernel's headers use.
_KERNEL_ERRNO_NAMES = {errno.EOPNOTSUPP: "EOPNOTSUPP", errno.EDEADLK: "EDEADLK"}


def errno_name(code: int) -> str:
    return _KERNEL_ERRNO_NAMES.get(code) or errno.errorcode.get(code, f"E{code}")


def error_result(exc: BaseException) -> dict:
    """A failed control step as the format doc wants it: the kernel's errno name and its words."""
    if isinstance(exc, NetlinkError):
        code, text = exc.code, (exc.args[1] if len(exc.args) > 1 and exc.args[1] else os.strerror(exc.code))
    elif isinstance(exc, OSError) and exc.errno is not None:
        code, text = exc.errno, exc.strerror or os.strerror(exc.errno)
    else:
        raise TypeError(f"not a kernel error: {exc!r}") from exc
    return {"ok": False, "errno": errno_name(code), "message": str(text)}


def linkinfo_data(kind: str, **values: Any) -> dict[str, Any]:
    """pyroute2 keyword arguments for IFLA_INFO_DATA, from IFLA_MACVLAN_* suffixes.

    ``linkinfo_data("macvtap", mode=4)`` → ``{"macvtap_mode": 4}``: pyroute2 nests keys that carry
    the kind's prefix into IFLA_LINKINFO/IFLA_INFO_DATA.
    """
    return {f"{kind}_{key}": value for key, value in values.items() if value is not None}


def print_flags(ifi_flags: int) -> list[str]:
    """What ``ip -j link`` lists under "flags" (iproute2 print_link_flags), minus M-DOWN."""
    out: list[str] = []
    if ifi_flags & IFF_UP and not ifi_flags & IFF_RUNNING:
        out.append("NO-CARRIER")
    rest = ifi_flags & ~IFF_RUNNING
    for name, bit in _PRINTED_FLAGS:
        if rest & bit:
            out.append(name)
            rest &= ~bit
    if rest:
        out.append(f"{rest:x}")
    return out


def _operstate(value: Any) -> str:
    if isinstance(value, int):
        return _OPERSTATES[value] if value < len(_OPERSTATES) else str(value)
    return str(value)


def link_state(msg: Any) -> dict[str, Any]:
    """One RTM_NEWLINK dump entry as a scenario LINK (``ip -j -d link`` key names)."""
    out: dict[str, Any] = {
        "address": msg.get_attr("IFLA_ADDRESS"),
        "mtu": msg.get_attr("IFLA_MTU"),
        "operstate": _operstate(msg.get_attr("IFLA_OPERSTATE")),
        "flags": print_flags(msg["flags"]),
        "promiscuity": msg.get_attr("IFLA_PROMISCUITY"),
        "allmulti": msg.get_attr("IFLA_ALLMULTI"),
    }
    info = msg.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    if kind in ("macvlan", "macvtap"):
        out["linkinfo"] = {"info_kind": kind, "info_data": _macvlan_info(kind, info.get_attr("IFLA_INFO_DATA"))}
        stats = msg.get_attr("IFLA_STATS64")
        if stats is not None:
            out["stats64"] = _stats64(stats)
    return out


def _stats64(stats: Any) -> dict[str, Any]:
    """The counters of ``ip -s -j link`` that macvlan keeps (its rx_dropped is rx_errors plus
    the core's drops)."""
    return {
        "rx": {"bytes": stats["rx_bytes"], "packets": stats["rx_packets"], "errors": stats["rx_errors"],
               "dropped": stats["rx_dropped"], "multicast": stats["multicast"]},
        "tx": {"bytes": stats["tx_bytes"], "packets": stats["tx_packets"], "dropped": stats["tx_dropped"]},
    }


def _macvlan_info(kind: str, data: Any) -> dict[str, Any]:
    """iplink_macvlan.c macvlan_print_opt(), with the NOPROMISC/NODST booleans as a ``flags`` list."""
    prefix = f"IFLA_{kind.upper()}_"

    def attr(name: str) -> Any:
        return data.get_attr(prefix + name)

    mode = attr("MODE") or 0
    try:
        mode_name = MODE_NAMES[Mode(mode)]
    except ValueError:
        mode_name = str(mode)
    out: dict[str, Any] = {
        "mode": mode_name,
        "flags": flag_names(attr("FLAGS") or 0),
        "bcqueuelen": attr("BC_QUEUE_LEN"),
        "usedbcqueuelen": attr("BC_QUEUE_LEN_USED"),
    }
    cutoff = attr("BC_CUTOFF")
    if cutoff is not None:  # the kernel dumps it only when it is not the default 1
        out["bclim"] = cutoff
    if mode == Mode.SOURCE:
        count = attr("MACADDR_COUNT") or 0
        out["macaddr_count"] = count
        listed = attr("MACADDR_DATA")
        if count and listed is not None:
            out["macaddr_data"] = [mac for name, mac in listed["attrs"] if name.endswith("_MACADDR")]
    return out
