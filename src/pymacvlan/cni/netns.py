"""The kernel side of the plugin: the macvlan child in the pod's namespace, over pyroute2.

The child is made by the project's kernel link driver (:class:`pymacvlan.links.kernel.Driver`,
one RTM_NEWLINK with the macvlan attributes, moved into the pod's namespace by IFLA_NET_NS_FD
in the same request) under a temporary name, then renamed inside the namespace: a name taken
on the host cannot make ADD fail (the reference plugin does the same, "due to kernel bug").
Addresses, routes and sysctls follow what the reference's ``ipam.ConfigureIface`` does.
"""

from __future__ import annotations

import errno
import importlib.util
import ipaddress
import os
import sys
import time
from typing import Any

from ..netns import in_netns
from .spec import ERR_INTERNAL, ERR_INVALID_ENV, CNIError, config_error

IFA_F_TENTATIVE, IFA_F_DADFAILED = 0x40, 0x08
RTPROT_BOOT, RT_TABLE_MAIN = 3, 254


def lite_pyroute2() -> None:
    """Register the ``pyroute2`` package without running its ``__init__``.

    pyroute2's package ``__init__`` imports all of it (NDB, IPDB, conntrack, ethtool, ...):
    0.15 s of a plugin's start that only needs IPRoute. The plugin's entry point calls this
    first; ``from pyroute2 import IPRoute`` and the submodules keep working.
    """
    if "pyroute2" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or not spec.submodule_search_locations:
        return
    mod = importlib.util.module_from_spec(spec)
    sys.modules["pyroute2"] = mod
    try:
        from pyroute2.iproute.linux import IPRoute
    except Exception:  # an unexpected layout: fall back to the full import
        del sys.modules["pyroute2"]
        return
    mod.IPRoute = IPRoute  # type: ignore[attr-defined]


def _ipr():
    from pyroute2 import IPRoute

    return IPRoute()


def _nlerr(e: BaseException) -> str:
    code = getattr(e, "code", None) or getattr(e, "errno", None) or 0
    return f"{errno.errorcode.get(code, str(code))}: {os.strerror(code).lower()}" if code else str(e)


def check_netns(path: str) -> None:
    """ns.GetNS: the path must be a network namespace file (nsfs, of type CLONE_NEWNET: a
    regular file, a directory or another kind of namespace is refused)."""
    from .records import is_netns

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (OSError, ValueError) as e:
        raise CNIError(ERR_INVALID_ENV, f"CNI_NETNS: failed to open netns {path!r}: {getattr(e, 'strerror', e)}",
                       "CNI_NETNS must be a network namespace file such as /run/netns/NAME") from None
    os.close(fd)
    if not is_netns(path):
        raise CNIError(ERR_INVALID_ENV, f"CNI_NETNS: {path!r} is not a network namespace",
                       "CNI_NETNS must be a network namespace file such as /run/netns/NAME")


def default_route_ifname(netns: str | None) -> str:
    """The interface of the first default route (IPv4 or IPv6) of the main table."""
    with in_netns(netns):
        ipr = _ipr()
    try:
        for r in ipr.get_routes(table=RT_TABLE_MAIN):
            if r["dst_len"] == 0 and r.get_attr("RTA_OIF"):
                links = ipr.get_links(r.get_attr("RTA_OIF"))
                return links[0].get_attr("IFLA_IFNAME")
    finally:
        ipr.close()
    raise config_error("master", "no default route interface found",
                       "name the parent interface: \"master\": \"eth1\"")


def link_info(name: str, netns: str | None) -> dict[str, Any] | None:
    """``{index, mtu, kind, mode, mac, flags, link}`` of ``name`` there, or None."""
    from ..links.kernel import _info_kind, _mode

    with in_netns(netns):
        ipr = _ipr()
    try:
        idx = ipr.link_lookup(ifname=name)
        if not idx:
            return None
        m = ipr.get_links(idx[0])[0]
        return {"index": m["index"], "mtu": m.get_attr("IFLA_MTU"), "kind": _info_kind(m), "mode": _mode(m),
                "mac": m.get_attr("IFLA_ADDRESS"), "flags": m["flags"], "link": m.get_attr("IFLA_LINK"),
                "master": m.get_attr("IFLA_MASTER")}
    finally:
        ipr.close()


def master_mtu(master: str, netns: str | None, mtu: int) -> dict[str, Any]:
    """The master must exist; the child's MTU is 0 (the master's) up to the master's."""
    info = link_info(master, netns)
    if info is None:
        where = " in the container's namespace (linkInContainer)" if netns else ""
        raise config_error("master", f"Link not found: no interface {master!r}{where}",
                           "name an existing parent interface (see `ip link`)")
    if mtu < 0 or mtu > info["mtu"]:
        raise config_error("mtu", f"invalid MTU {mtu}, must be [0, master MTU({info['mtu']})]")
    return info


def _sysctl(path: str, value: str) -> None:
    try:
        with open("/proc/sys/" + path, "w") as f:
            f.write(value)
    except OSError:
        pass  # the reference ignores these too (IPv6 off: no ndisc_notify)


def _sysctl_read(path: str) -> str | None:
    try:
        with open("/proc/sys/" + path) as f:
            return f.read().strip()
    except OSError:
        return None


def configure(ifname: str, netns: str, result: dict, notify: bool = True) -> None:
    """arp_notify/ndisc_notify, then ipam.ConfigureIface: link up, addresses, routes."""
    with in_netns(netns):
        if notify:
            _sysctl(f"net/ipv4/conf/{ifname}/arp_notify", "1")
            _sysctl(f"net/ipv6/conf/{ifname}/ndisc_notify", "1")
        ipr = _ipr()
        try:
            _configure_iface(ipr, ifname, result)
        finally:
            ipr.close()


def _configure_iface(ipr, ifname: str, result: dict) -> None:
    idx = ipr.link_lookup(ifname=ifname)[0]
    ipr.link("set", index=idx, state="up")
    gw4 = gw6 = None
    v6_enabled = False
    for ip in result.get("ips", []):
        if ip.get("interface") is None:
            continue
        iface = ipaddress.ip_interface(ip["address"])
        if iface.version == 6 and not v6_enabled:
            for dev in ("lo", ifname):
                if _sysctl_read(f"net/ipv6/conf/{dev}/disable_ipv6") not in (None, "0"):
                    _sysctl(f"net/ipv6/conf/{dev}/disable_ipv6", "0")
            v6_enabled = True
        kw: dict[str, Any] = {"index": idx, "address": str(iface.ip), "prefixlen": iface.network.prefixlen}
        if iface.version == 4 and iface.network.prefixlen < 31:
            kw["broadcast"] = str(iface.network.broadcast_address)
        try:
            ipr.addr("add", **kw)
        except Exception as e:
            raise CNIError(ERR_INTERNAL, f"failed to add IP addr {ip['address']} to {ifname!r}: {_nlerr(e)}") from None
        gw = ip.get("gateway")
        if gw:
            if ipaddress.ip_address(gw).version == 4:
                gw4 = gw4 or gw
            else:
                gw6 = gw6 or gw
    if gw6:
        _settle(ipr, idx, ifname)
    for r in result.get("routes", []):
        dst = ipaddress.ip_network(r["dst"], strict=False)
        gw = r.get("gw") or (gw4 if dst.version == 4 else gw6)
        kw = {"dst": str(dst.network_address), "dst_len": dst.prefixlen, "oif": idx, "proto": RTPROT_BOOT,
              "table": r.get("table") or RT_TABLE_MAIN, "scope": r.get("scope") or 0,
              "family": 2 if dst.version == 4 else 10}
        if gw:
            kw["gateway"] = gw
        if r.get("priority"):
            kw["priority"] = r["priority"]
        metrics = {k: r[k] for k in ("mtu", "advmss") if r.get(k)}
        if metrics:
            kw["metrics"] = metrics
        try:
            ipr.route("add", **kw)
        except Exception as e:
            raise CNIError(ERR_INTERNAL, f"failed to add route '{dst} via {gw} dev {ifname}': {_nlerr(e)}") from None


def _settle(ipr, idx: int, ifname: str, timeout: float = 10.0) -> None:
    """ip.SettleAddresses: wait until no IPv6 address of the link is tentative (DAD done)."""
    deadline = time.monotonic() + timeout
    while True:
        pending = False
        for a in ipr.get_addr(index=idx, family=10):
            fl = a.get_attr("IFA_FLAGS") or a["flags"]
            if fl & IFA_F_DADFAILED:
                raise CNIError(
                    ERR_INTERNAL, f"link {ifname} has address {a.get_attr('IFA_ADDRESS')} in DADFAILED state"
                )
            pending |= bool(fl & IFA_F_TENTATIVE)
        if not pending or time.monotonic() > deadline:
            return
        time.sleep(0.05)


def set_up(ifname: str, netns: str) -> None:
    with in_netns(netns):
        ipr = _ipr()
    try:
        ipr.link("set", index=ipr.link_lookup(ifname=ifname)[0], state="up")
    finally:
        ipr.close()


def addresses(ifname: str, netns: str) -> list[str] | None:
    """The link's addresses as ``a.b.c.d/len``, None when the link does not exist."""
    with in_netns(netns):
        ipr = _ipr()
    try:
        idx = ipr.link_lookup(ifname=ifname)
        if not idx:
            return None
        return [f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(index=idx[0])]
    finally:
        ipr.close()


def routes(netns: str) -> list[dict[str, Any]]:
    """All routes of the namespace as ``{dst, gw, table}`` (dst ``0.0.0.0/0`` for a default)."""
    with in_netns(netns):
        ipr = _ipr()
    try:
        out = []
        for family, zero in ((2, "0.0.0.0"), (10, "::")):
            for r in ipr.get_routes(family=family):
                out.append({"dst": f"{r.get_attr('RTA_DST') or zero}/{r['dst_len']}",
                            "gw": r.get_attr("RTA_GATEWAY"), "table": r.get_attr("RTA_TABLE") or r["table"]})
        return out
    finally:
        ipr.close()
