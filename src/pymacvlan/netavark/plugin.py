"""``create``, ``setup NETNS``, ``teardown NETNS`` and ``info`` of `pymacvlan-netavark`.

The commands follow netavark's built-in macvlan driver (src/network/vlan.rs ``setup``): the
macvlan made directly in the container's namespace under its final name, IPv6 autoconf off,
the static addresses (IPv4 with their broadcast), the link up, the default route per family
with the network's metric (99 unless ``metric`` says otherwise) unless the network is
internal or ``no_default_route``, then the network's static routes (metric 100 unless given);
all routes ``proto static`` in the main table. The link itself comes from the project's link
driver of the network's ``backend`` (:func:`pymacvlan.links.get_driver`, one
:class:`~pymacvlan.model.link.LinkRequest`), like the CLI's, the CNI plugin's and the Docker
plugin's; preflight, stableMac and hostAccess are the CNI plugin's.

What setup made is undone when a later step fails (the link, the hostAccess record), so a
refused setup leaves nothing. Teardown is idempotent: a namespace or link already gone is
success (netavark ≥ 1.15 calls plugins' teardown even when the namespace is gone).
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys
from dataclasses import dataclass
from typing import Any

from .config import (
    DEFAULT_METRIC,
    IPAM_DHCP,
    IPAM_HOSTLOCAL,
    IPAM_NONE,
    Exec,
    Network,
    PluginError,
    parse_exec,
    parse_network,
)

RTPROT_STATIC, RT_TABLE_MAIN = 4, 254
RTN = {"unicast": 1, "blackhole": 6, "unreachable": 7, "prohibit": 8}
STATE_DIR_ENV = "PYMACVLAN_NETAVARK_STATE_DIR"
DEFAULT_STATE_DIR = "/run/pymacvlan/cni"  # shared with pymacvlan-cni: one hostAccess child per parent


def log(msg: str) -> None:
    sys.stderr.write(f"pymacvlan-netavark: {msg}\n")


# -- addresses: netavark's get_ipam_addresses ------------------------------------------------------
@dataclass
class Addressing:
    addresses: list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]
    gateways: list[ipaddress.IPv4Address | ipaddress.IPv6Address]
    subnets: list[dict[str, Any]]  # the StatusBlock's NetAddress list
    dhcp: bool = False


def addressing(ex: Exec) -> Addressing:
    n = ex.network
    if n.ipam == IPAM_NONE:
        return Addressing([], [], [])
    if n.ipam == IPAM_DHCP:
        return Addressing([], [], [], dhcp=True)
    if ex.static_ips is None:
        raise PluginError("network_options.static_ips: no static ips provided; allowed: one address per subnet of "
                          "the network (podman allocates them)")
    out = Addressing([], [], [])
    for s in n.subnets:
        if s.gateway is not None:
            out.gateways.append(s.gateway)
        for ip in ex.static_ips:
            if ip in s.net:
                iface = ipaddress.ip_interface(f"{ip}/{s.net.prefixlen}")
                out.addresses.append(iface)
                out.subnets.append({"gateway": None if s.gateway is None else str(s.gateway), "ipnet": str(iface)})
    if n.subnets and len(out.addresses) != len(ex.static_ips):
        unmatched = [str(ip) for ip in ex.static_ips if not any(ip in s.net for s in n.subnets)]
        raise PluginError(f"network_options.static_ips: not all static IPs matched a subnet: expected "
                          f"{len(ex.static_ips)}, got {len(out.addresses)} ({', '.join(unmatched)} in none of "
                          f"{', '.join(str(s.net) for s in n.subnets)})")
    if n.internal:
        out.gateways = []
    return out


# -- helpers shared with pymacvlan-cni ------------------------------------------------------------------
def _state_dir() -> str:
    return os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR


def _cni_conf(n: Network, parent: str) -> Any:
    """The CNI plugin's NetConf for what it shares with us: preflight, hostAccess records."""
    from ..cni.conf import NetConf

    return NetConf(name=f"netavark:{n.name}", cni_version="1.1.0", master=parent, mode=n.options.mode,
                   backend=n.options.backend, host_access=n.options.host_access, state_dir=_state_dir())


def _cni_args(ex: Exec, netns: str) -> Any:
    from ..cni.skel import Args

    return Args(command="ADD", container_id=ex.container_id, netns=netns, ifname=ex.ifname,
                stdin=json.dumps({"hostAccess": ex.network.options.host_access, "netavark": ex.network.name}).encode())


def _check_netns(path: str) -> None:
    if not path.startswith("/"):
        raise PluginError(f"netns: {path!r:.80} is not a path; allowed: the container's network namespace file, "
                          "like /run/netns/NAME or /proc/PID/ns/net")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise PluginError(f"netns: open {path}: {e.strerror}; "
                          "allowed: the container's network namespace file") from None
    os.close(fd)


def _parent(n: Network) -> tuple[str, dict[str, Any]]:
    """The parent's name and facts (netavark: network_interface, else the default route's)."""
    from ..cni import netns as cns
    from ..cni.skel import CNIError

    name = n.parent
    if not name:
        try:
            name = cns.default_route_ifname(None)
        except CNIError:
            raise PluginError("network_interface: not set and failed to get default route interface; allowed: the "
                              "parent's name (podman network create -d pymacvlan-netavark -o parent=eth1)") from None
    info = cns.link_info(name, None)
    if info is None:
        raise PluginError(f"network_interface: parent interface {name} does not exist; allowed: an existing "
                          "interface (see `ip link`)")
    mtu = n.options.mtu
    if mtu and mtu > (info["mtu"] or 0):
        raise PluginError(f"options.mtu: invalid MTU {mtu}, must be [0, parent MTU({info['mtu']})]; allowed: 0 (the "
                          f"parent's) or 68 .. {info['mtu']}")
    return name, info


def _preflight(parent: str, info: dict[str, Any]) -> None:
    from ..cni.preflight import facts, judge

    fatal, warnings = judge(*facts(info, parent, None))
    if fatal is not None:
        raise PluginError(f"network_interface: {fatal.saw}; {fatal.fix}")
    for x in warnings:
        log(f"warning: {x.code} ({x.subject}): {x.saw}; {x.fix}")


def _driver(n: Network) -> Any:
    from ..links import get_driver

    kw = {"socket_path": n.options.socket or None} if n.options.socket else {}
    return get_driver(n.options.backend, **kw)


def _kerr(e: Any, what: str) -> PluginError:
    advice = f"; {e.advice}" if getattr(e, "advice", "") else ""
    return PluginError(f"{what}: {e.errno_name}: {e.message}{advice}")


# -- commands ----------------------------------------------------------------------------------------
def cmd_info() -> dict[str, str]:
    from .. import __version__
    from . import API_VERSION, CONTRACT

    return {"version": __version__, "api_version": API_VERSION, "contract": CONTRACT,
            "driver": "macvlan (kernel or the pymacvlan daemon's userspace datapath)"}


def cmd_create(raw: Any) -> dict[str, Any]:
    """Validate and complete the Network (name, id and driver unchanged)."""
    if isinstance(raw, dict) and isinstance(raw.get("options"), dict) and "parent" in raw["options"]:
        p = raw["options"]["parent"]
        have = raw.get("network_interface")
        if isinstance(p, str) and have not in (None, "", p):
            raise PluginError(f"options.parent: {p!r:.40} names another interface than network_interface "
                              f"{have!r:.40}; allowed: one of them, or both the same")
    n = parse_network(raw, where="", strict=True)
    net = n.raw
    opts = net.get("options")
    if isinstance(opts, dict):
        if "parent" in opts:
            net["network_interface"] = opts.pop("parent")
        for key in ("no_default_route", "host_access", "stable_mac"):
            if key in opts:
                opts[key] = "true" if getattr(n.options, key) else "false"
        if not opts:
            net["options"] = None
    if n.parent:
        _preflight(*_parent(n))
    net["dns_enabled"] = False  # netavark: "always turn dns off with macvlan"
    ipam = dict(net.get("ipam_options") or {})
    ipam["driver"] = n.ipam
    net["ipam_options"] = ipam
    add_gateway = not n.internal
    for s, raw_s in zip(n.subnets, net.get("subnets") or [], strict=True):
        if s.gateway is None and add_gateway:
            net_ = s.net
            if (net_.version == 4 and net_.prefixlen >= 31) or (net_.version == 6 and net_.prefixlen >= 128):
                raise PluginError(f"subnets: could not create gateway for subnet {net_} because it has a "
                                  f"{net_.max_prefixlen - (1 if net_.version == 4 else 0)} or greater subnet prefix; "
                                  "allowed: a gateway, or --internal")
            raw_s["gateway"] = str(net_.network_address + 1)
        if s.net.version == 6:
            net["ipv6_enabled"] = True
    for i, r in enumerate(n.routes):
        if r.dst.network_address != ipaddress.ip_interface(net["routes"][i]["destination"]).ip:
            raise PluginError(f"routes[{i}].destination: route destination invalid ({net['routes'][i]['destination']} "
                              f"is an address, not a network); allowed: a network like {r.dst}")
    return net


def _configure(ex: Exec, netns: str, a: Addressing) -> str:
    """In the container: autoconf off, addresses, up, default routes, static routes; the MAC."""
    from ..cni.netns import _ipr, _nlerr, _sysctl
    from ..netns import in_netns

    n, ifname = ex.network, ex.ifname
    with in_netns(netns):
        _sysctl(f"net/ipv6/conf/{ifname}/autoconf", "0")
        ipr = _ipr()
    try:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            raise PluginError(f"network_options.interface_name: {ifname} vanished from the container right after "
                              "it was made")
        idx = found[0]
        for addr in a.addresses:
            kw: dict[str, Any] = {"index": idx, "address": str(addr.ip), "prefixlen": addr.network.prefixlen}
            if addr.version == 4:
                kw["broadcast"] = str(addr.network.broadcast_address)
            try:
                ipr.addr("add", **kw)
            except Exception as e:
                hint = "; is ipv6 enabled in the kernel?" if addr.version == 6 and getattr(e, "code", 0) == 13 else ""
                raise PluginError(f"network_options.static_ips: add ip addr {addr} to macvlan: "
                                  f"{_nlerr(e)}{hint}") from None
        try:
            ipr.link("set", index=idx, state="up")
        except Exception as e:
            raise PluginError(f"set macvlan up: {_nlerr(e)}") from None
        routes: list[tuple[Any, Any, int, str]] = []
        if not n.options.no_default_route:
            seen: set[int] = set()
            for gw in a.gateways:
                if gw.version not in seen:
                    seen.add(gw.version)
                    routes.append((ipaddress.ip_network("0.0.0.0/0" if gw.version == 4 else "::/0"), gw,
                                   n.options.metric, "unicast"))
        for r in n.routes:
            routes.append((r.dst, r.gateway, DEFAULT_METRIC if r.metric is None else r.metric, r.kind))
        for dst, gw, metric, kind in routes:
            rkw: dict[str, Any] = {"dst": str(dst.network_address), "dst_len": dst.prefixlen, "proto": RTPROT_STATIC,
                                   "table": RT_TABLE_MAIN, "priority": metric, "type": RTN[kind],
                                   "family": 2 if dst.version == 4 else 10}
            if gw is not None:
                rkw["gateway"] = str(gw)  # no oif, as netavark: the kernel finds the device from the gateway
            try:
                ipr.route("add", **rkw)
            except Exception as e:
                via = f" via {gw}" if gw is not None else ""
                raise PluginError(f"add route {dst}{via} metric {metric}: {_nlerr(e)}") from None
        m = ipr.get_links(idx)[0]
        return str(m.get_attr("IFLA_ADDRESS"))
    finally:
        ipr.close()


def cmd_setup(netns: str, raw: Any) -> dict[str, Any]:
    from ..cni.conf import stable_mac
    from ..model import KernelError, MacaddrMode, Mode
    from ..model.link import LinkRequest
    from ..model.mac import parse_mac

    ex = parse_exec(raw)
    n, o = ex.network, ex.network.options
    _check_netns(netns)
    a = addressing(ex)
    if a.dhcp:
        from .dhcp import check_available

        check_available(ex)
    parent, info = _parent(n)
    _preflight(parent, info)
    mac = ex.static_mac or (stable_mac(n.name, f"ctr/{ex.container_name or ex.container_id}/{ex.ifname}")
                            if o.stable_mac else None)
    req = LinkRequest(parent=parent, name=ex.ifname, kind="macvlan", mode=Mode[o.mode.upper()],
                      address=parse_mac(mac) if mac else None, mtu=o.mtu or None,
                      macaddr_mode=MacaddrMode.SET if o.macaddr else None,
                      macaddrs=[parse_mac(x) for x in o.macaddr], bclim=o.bclim, netns=netns)
    driver = _driver(n)
    try:
        driver.add(req)
    except KernelError as e:
        if e.errno_name == "EEXIST":
            raise PluginError(f"network_options.interface_name: {ex.ifname} already exists in the container "
                              f"(EEXIST); allowed: a name the container does not use yet") from None
        raise _kerr(e, "create macvlan interface") from None
    cn = _cni_conf(n, parent)
    ca = _cni_args(ex, netns)
    recorded = False
    try:
        if a.dhcp:
            from .dhcp import lease

            a = lease(ex, netns, parent)
        got_mac = _configure(ex, netns, a)
        if o.host_access:
            from ..cni.hostaccess import sync
            from ..cni.plugin import write_record

            write_record(cn, ca, {"ips": [{"address": str(x)} for x in a.addresses]})
            recorded = True
            sync(cn)
        if o.announce_count and a.addresses:
            from ..announce import announce

            ips = [x.ip for x in a.addresses]
            pid = announce(ex.ifname, parse_mac(got_mac), ips, o.announce_count, o.announce_ms, netns=netns)
            log(f"announced {', '.join(map(str, ips))} at {got_mac}: {o.announce_count} rounds "
                f"{o.announce_ms} ms apart" + (f" (the rest from pid {pid})" if pid else ""))
    except BaseException:
        _undo(driver, ex, netns, cn, recorded)
        raise
    return {"dns_search_domains": [], "dns_server_ips": [],
            "interfaces": {ex.ifname: {"mac_address": got_mac, "subnets": a.subnets}}}


def _del_routes(ex: Exec, netns: str) -> None:
    """The network's static routes (netavark's teardown deletes them first: a blackhole,
    unreachable or prohibit route belongs to no device and outlives the link)."""
    from ..cni.netns import _ipr
    from ..netns import in_netns

    if not ex.network.routes or not os.path.exists(netns):
        return
    with in_netns(netns):
        ipr = _ipr()
    try:
        for r in ex.network.routes:
            kw: dict[str, Any] = {"dst": str(r.dst.network_address), "dst_len": r.dst.prefixlen,
                                  "table": RT_TABLE_MAIN, "type": RTN[r.kind],
                                  "family": 2 if r.dst.version == 4 else 10,
                                  "priority": DEFAULT_METRIC if r.metric is None else r.metric}
            if r.gateway is not None:
                kw["gateway"] = str(r.gateway)
            try:
                ipr.route("del", **kw)
            except Exception:
                pass  # gone with the link, or never made
    finally:
        ipr.close()


def _undo(driver: Any, ex: Exec, netns: str, cn: Any, recorded: bool) -> None:
    try:
        _del_routes(ex, netns)
    except Exception as e:
        log(f"rollback: could not delete the network's routes in {netns}: {e}")
    try:
        driver.delete(ex.ifname, netns=netns)
    except Exception as e:
        log(f"rollback: could not delete {ex.ifname} in {netns}: {e}")
    if recorded:
        from ..cni.hostaccess import sync
        from ..cni.plugin import drop_record

        drop_record(cn, ex.container_id, ex.ifname)
        try:
            sync(cn)
        except Exception as e:
            log(f"rollback: hostAccess: {e}")


def cmd_teardown(netns: str, raw: Any) -> None:
    from ..model import KernelError

    ex = parse_exec(raw)
    n = ex.network
    driver = _driver(n)
    if n.ipam == IPAM_DHCP:
        from .dhcp import release

        release(ex, netns)
    if os.path.exists(netns):
        _del_routes(ex, netns)
        try:
            links = driver.show(ex.ifname, netns=netns)
        except KernelError as e:
            if e.errno_name not in ("ENODEV", "ENOENT"):
                raise _kerr(e, f"teardown: look up {ex.ifname}") from None
            links = []
        if links:
            kind = links[0].get("linkinfo", {}).get("info_kind")
            if kind != "macvlan":  # every driver shows its children as macvlan (a daemon's TAP too)
                raise PluginError(f"network_options.interface_name: {ex.ifname} in {netns} is a {kind or 'plain'} "
                                  "link, not a macvlan this plugin made; left alone")
            try:
                driver.delete(ex.ifname, netns=netns)
            except KernelError as e:
                if e.errno_name not in ("ENODEV", "ENOENT"):
                    raise _kerr(e, f"teardown: delete {ex.ifname}") from None
    if n.options.host_access:
        from ..cni.hostaccess import sync
        from ..cni.plugin import drop_record

        parent = n.parent
        if not parent:
            from ..cni import netns as cns
            from ..cni.skel import CNIError

            try:
                parent = cns.default_route_ifname(None)
            except CNIError:
                parent = ""
        cn = _cni_conf(n, parent)
        drop_record(cn, ex.container_id, ex.ifname)
        if parent:
            sync(cn)
    return None


# -- the executable ------------------------------------------------------------------------------------
def _read_stdin() -> Any:
    data = sys.stdin.buffer.read()
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise PluginError(f"input: invalid JSON on stdin ({e}); allowed: the JSON netavark sends") from None


def run(argv: list[str]) -> Any:
    cmd = argv[0] if argv else "info"
    if cmd == "info":
        return cmd_info()
    if cmd == "create":
        return cmd_create(_read_stdin())
    if cmd in ("setup", "teardown"):
        if len(argv) < 2 or not argv[1]:
            raise PluginError(f"{cmd}: netns path argument is missing; allowed: {cmd} /path/to/netns")
        raw = _read_stdin()
        return cmd_setup(argv[1], raw) if cmd == "setup" else cmd_teardown(argv[1], raw)
    raise PluginError(f"unknown subcommand: {cmd}; allowed: create, setup NETNS, teardown NETNS, info")


def error_message(e: BaseException) -> str:
    from ..cni.skel import CNIError
    from ..model import KernelError

    if isinstance(e, PluginError):
        return e.message
    if isinstance(e, KernelError):
        return f"{e.errno_name}: {e.message}" + (f"; {e.advice}" if e.advice else "")
    if isinstance(e, CNIError):
        return e.msg + (f"; {e.details}" if e.details else "")
    if isinstance(e, OSError):
        import errno as errno_mod

        name = errno_mod.errorcode.get(e.errno or 0, "EIO")
        return f"{name}: {e.strerror or e}" + (f": {e.filename}" if e.filename else "")
    return f"internal error: {type(e).__name__}: {e}"


def main(argv: list[str] | None = None) -> int:
    from ..cni.netns import lite_pyroute2

    lite_pyroute2()
    argv = sys.argv[1:] if argv is None else argv
    try:
        out = run(argv)
    except KeyboardInterrupt:
        print(json.dumps({"error": "interrupted"}, separators=(",", ":")))
        return 1
    except Exception as e:
        if not isinstance(e, (PluginError,)) and os.environ.get("PYMACVLAN_DEBUG"):
            import traceback

            traceback.print_exc()
        print(json.dumps({"error": error_message(e)}, separators=(",", ":")))
        return 1
    if out is not None:
        sys.stdout.write(json.dumps(out, separators=(",", ":")) + "\n")
    return 0


__all__ = ["IPAM_HOSTLOCAL", "main", "run", "cmd_create", "cmd_setup", "cmd_teardown", "cmd_info"]
