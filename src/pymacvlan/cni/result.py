"""CNI results in every version we speak: built in 1.1.0 ("current"), converted on output.

0.3.0, 0.3.1 and 0.4.0 results carry ``ips[].version`` ("4"/"6"), interfaces of name, mac
and sandbox and routes of dst and gw only; 1.0.0 dropped ``version``; libcni's types/100 (1.0.0
and 1.1.0) has ``interfaces[].mtu``, ``socketPath``, ``pciID`` and route ``mtu``, ``advmss``,
``priority``, ``table``, ``scope``. Key order and the
omitted empty keys are libcni's (types/040, types/100), so the output reads like the reference
plugin's.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from .spec import ERR_DECODING, ERR_INCOMPATIBLE_VERSION, CNIError, version_tuple

_IFACE_KEYS_100 = ("name", "mac", "mtu", "sandbox", "socketPath", "pciID")
_IFACE_KEYS_040 = ("name", "mac", "sandbox")
_ROUTE_KEYS_110 = ("dst", "gw", "mtu", "advmss", "priority", "table", "scope")
_ROUTE_KEYS_040 = ("dst", "gw")
_DNS_KEYS = ("nameservers", "domain", "search", "options")


def _ip_version(address: str) -> str:
    try:
        return "4" if ipaddress.ip_interface(address).version == 4 else "6"
    except ValueError:
        raise CNIError(ERR_DECODING, f"invalid IP address in result: {address!r}") from None


def _pick(d: dict, keys: tuple[str, ...]) -> dict:
    return {
        k: d[k]
        for k in keys
        if d.get(k) not in (None, "", [], {}) or (k in ("table", "scope") and d.get(k) is not None)
    }


def dns(d: Any) -> dict:
    return _pick(d, _DNS_KEYS) if isinstance(d, dict) else {}


def to_current(r: dict) -> dict:
    """Any supported result (an IPAM plugin's, a prevResult) as a 1.1.0 result."""
    v = r.get("cniVersion", "")
    if not isinstance(v, str) or not v or version_tuple(v) < (0, 3, 0):
        raise CNIError(ERR_INCOMPATIBLE_VERSION, f"unsupported result version {v!r}",
                       "results of cniVersion 0.3.0 or later are understood")
    ips = []
    for ip in r.get("ips") or []:
        if not isinstance(ip, dict) or "address" not in ip:
            raise CNIError(ERR_DECODING, f"invalid ips entry in result: {ip!r}")
        ips.append({k: ip[k] for k in ("interface", "address", "gateway") if ip.get(k) is not None})
    return {
        "cniVersion": "1.1.0",
        "interfaces": [dict(i) for i in r.get("interfaces") or [] if isinstance(i, dict)],
        "ips": ips,
        "routes": [dict(rt) for rt in r.get("routes") or [] if isinstance(rt, dict)],
        "dns": dns(r.get("dns")),
    }


def convert(r: dict, version: str) -> dict:
    """A current result as ``version`` prints it."""
    old = version_tuple(version) < (1, 0, 0)
    out: dict[str, Any] = {"cniVersion": version}
    if r.get("interfaces"):
        out["interfaces"] = [_pick(i, _IFACE_KEYS_040 if old else _IFACE_KEYS_100) for i in r["interfaces"]]
    if r.get("ips"):
        ips = []
        for ip in r["ips"]:
            e: dict[str, Any] = {"version": _ip_version(ip["address"])} if old else {}
            for k in ("interface", "address", "gateway"):
                if ip.get(k) is not None:
                    e[k] = ip[k]
            ips.append(e)
        out["ips"] = ips
    if r.get("routes"):
        out["routes"] = [_pick(rt, _ROUTE_KEYS_040 if old else _ROUTE_KEYS_110) for rt in r["routes"]]
    out["dns"] = dns(r.get("dns"))
    return out
