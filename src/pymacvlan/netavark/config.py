"""The netavark plugin's input, read and checked before anything is touched.

Shapes are netavark's Rust types (src/network/types.rs): a field that is not an ``Option``
there is required here (a Rust plugin's serde refuses the JSON without it), unknown fields
pass through. Network ``options`` and ``ipam_options`` are string maps (``podman network
create -o mtu=1400`` arrives as ``"mtu": "1400"``). The macvlan options and their parsing
follow netavark's built-in driver (src/network/vlan.rs ``parse_vlan_opts``,
core_utils.rs ``parse_option``/``get_macvlan_mode_from_string``/``get_ipam_addresses``),
its create-time checks (create_config/{driver,validation}.rs); ours come on top.

Every refusal is a :class:`PluginError` whose message names the key (``options.mtu``,
``network_options.static_ips[1]`` ...) and says what is allowed; where netavark's driver has
a message for the same mistake, ours contains it, so the two can be compared.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from ..links import HOST_BACKENDS, takes_option

IPAM_HOSTLOCAL, IPAM_DHCP, IPAM_NONE = "host-local", "dhcp", "none"
MODES = ("bridge", "private", "vepa", "passthru", "source")
BACKENDS = HOST_BACKENDS  # the link drivers whose children are real netdevs
#: netavark's default route metric for macvlan (vlan.rs: "use lower than default (100) metric
#: for macvlan", containers/podman#23984); static routes without a metric get DEFAULT_METRIC
MACVLAN_METRIC = 99
DEFAULT_METRIC = 100
#: Docker 28's defaults and ranges for the same announcement (com.docker.network.advertise_addr_*)
ANNOUNCE_COUNT, ANNOUNCE_COUNT_MAX = 3, 3
ANNOUNCE_MS, ANNOUNCE_MS_RANGE = 1000, (100, 2000)

#: netavark's VALID_VLAN_OPTS
NETAVARK_OPTIONS = ("mode", "mtu", "metric", "no_default_route", "bclim")
#: ours (the ``parent`` alias is folded into ``network_interface`` by create)
OUR_OPTIONS = ("parent", "host_access", "stable_mac", "backend", "socket", "macaddr", "advertise_addr_nmsgs",
               "advertise_addr_ms")
OPTIONS = NETAVARK_OPTIONS + OUR_OPTIONS

_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_GO_FALSE = ("0", "f", "F", "FALSE", "false", "False")


class PluginError(Exception):
    """One line for ``{"error": ...}``: the key, what is wrong, what is allowed."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _kind(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(v), "a number")


def _need(obj: dict, key: str, where: str, kind: type, what: str, required: bool = True) -> Any:
    if key not in obj or obj[key] is None:
        if required:
            raise PluginError(f"{where}{key}: missing; it must be {what}")
        return None
    v = obj[key]
    if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
        raise PluginError(f"{where}{key}: must be {what}, not {_kind(v)} ({v!r:.60})")
    return v


def _str_map(obj: dict, key: str, where: str) -> dict[str, str] | None:
    m = _need(obj, key, where, dict, "an object of strings", required=False)
    if m is None:
        return None
    for k, v in m.items():
        if not isinstance(v, str):
            raise PluginError(f"{where}{key}.{k}: must be a string (podman passes -o {k}=VALUE as text), "
                              f"not {_kind(v)} ({v!r:.60})")
    return m


def parse_ip(text: Any, key: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if not isinstance(text, str):
        raise PluginError(f"{key}: must be an IP address as a string, not {_kind(text)} ({text!r:.60})")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise PluginError(f"{key}: invalid IP address syntax {text!r:.60}; "
                          "allowed: an IPv4 or IPv6 address like 10.88.0.5 or fd00::5") from None


def parse_net(text: Any, key: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An ``IpNet``: address/prefix; host bits may be set (the network is what counts)."""
    if not isinstance(text, str) or "/" not in text:
        raise PluginError(f"{key}: invalid IP network {text!r:.60}; allowed: ADDRESS/PREFIX like 10.88.0.0/16")
    try:
        ipaddress.ip_address(text.split("/", 1)[0])
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise PluginError(f"{key}: invalid IP network {text!r:.60}; "
                          "allowed: ADDRESS/PREFIX like 10.88.0.0/16") from None


def parse_mac(text: Any, key: str) -> str:
    """netavark's decode_address_from_hex (':' or '-', six hex bytes), then a unicast check
    (the kernel refuses a multicast or zero MAC with EADDRNOTAVAIL)."""
    if not isinstance(text, str):
        raise PluginError(f"{key}: must be a MAC address as a string, not {_kind(text)}")
    parts = re.split(r"[:-]", text)
    if not all(re.fullmatch(r"[0-9a-fA-F]{1,2}", p) for p in parts):
        raise PluginError(f"{key}: unable to parse mac address {text}; allowed: six hex bytes like 02:00:00:00:00:0a")
    if len(parts) != 6:
        raise PluginError(f"{key}: invalid mac length for address: {text}; "
                          "allowed: six hex bytes like 02:00:00:00:00:0a")
    raw = bytes(int(p, 16) for p in parts)
    if raw[0] & 1 or raw == b"\0" * 6:
        raise PluginError(f"{key}: {text} is not a unicast MAC address (EADDRNOTAVAIL); "
                          "allowed: the first byte's lowest bit clear, not all zeros")
    return ":".join(f"{b:02x}" for b in raw)


def _int(opts: dict[str, str], key: str, lo: int, hi: int, allowed: str) -> int | None:
    v = opts.get(key)
    if v is None:
        return None
    if not re.fullmatch(r"[+-]?[0-9]+", v) or not lo <= int(v) <= hi:
        raise PluginError(f"options.{key}: unable to parse \"{key}\": {v!r:.40}; allowed: {allowed}")
    return int(v)


def _bool(opts: dict[str, str], key: str) -> bool | None:
    v = opts.get(key)
    if v is None:
        return None
    if v in _GO_TRUE:
        return True
    if v in _GO_FALSE:
        return False
    raise PluginError(f"options.{key}: unable to parse \"{key}\": {v!r:.40}; allowed: true or false")


@dataclass
class Options:
    """The network's options, parsed (None: not given)."""

    mode: str = "bridge"
    mtu: int = 0  # 0: the parent's
    metric: int = MACVLAN_METRIC
    no_default_route: bool = False
    bclim: int | None = None
    host_access: bool = False
    stable_mac: bool = False
    backend: str = "kernel"
    socket: str = ""
    macaddr: list[str] = field(default_factory=list)
    announce_count: int = ANNOUNCE_COUNT
    announce_ms: int = ANNOUNCE_MS


def parse_options(opts: dict[str, str] | None, strict: bool) -> Options:
    """``strict`` (create): an unknown key is refused, as netavark's create does
    (``parse_vlan_opts(.., true)``); setup ignores them (``parse_vlan_opts(.., false)``)."""
    opts = opts or {}
    if strict:
        for k in opts:
            if k not in OPTIONS:
                raise PluginError(f"options.{k}: unsupported vlan network option: {k}; allowed: {', '.join(OPTIONS)}")
    o = Options()
    mode = opts.get("mode", "")
    if mode not in ("",) + MODES:
        raise PluginError(f"options.mode: invalid macvlan mode \"{mode}\"; allowed: bridge (default), private, "
                          "vepa, passthru, source")
    o.mode = mode or "bridge"
    o.mtu = _int(opts, "mtu", 0, 2**32 - 1, "0 (the parent's MTU) or 68 .. the parent's MTU") or 0
    if 0 < o.mtu < 68:
        raise PluginError(f"options.mtu: {o.mtu} is below the minimum (EINVAL); allowed: 0 (the parent's MTU) "
                          "or 68 .. the parent's MTU")
    metric = _int(opts, "metric", 0, 2**32 - 1, "an integer 0 .. 4294967295 (default 99)")
    o.metric = MACVLAN_METRIC if metric is None else metric
    o.no_default_route = bool(_bool(opts, "no_default_route"))
    o.bclim = _int(opts, "bclim", -(2**31), 2**31 - 1,
                   "a 32-bit signed integer (IFLA_MACVLAN_BC_CUTOFF; -1: no queueing)")
    o.host_access = bool(_bool(opts, "host_access"))
    if o.host_access and o.mode != "bridge":
        raise PluginError(f"options.host_access: needs mode bridge (the host's child and the containers talk over the "
                          f"parent in bridge mode), not {o.mode}; allowed: host_access=true with mode=bridge")
    o.stable_mac = bool(_bool(opts, "stable_mac"))
    o.backend = opts.get("backend") or "kernel"
    if o.backend not in BACKENDS:
        raise PluginError(f"options.backend: unknown backend {o.backend!r:.40}; allowed: kernel (default), userspace")
    o.socket = opts.get("socket", "")
    if o.socket and not takes_option(o.backend, "socket"):
        raise PluginError("options.socket: is only for backend=userspace (the pymacvlan daemon's control socket)")
    if "macaddr" in opts:
        if o.mode != "source":
            raise PluginError("options.macaddr: is only for mode=source; allowed: a comma-separated MAC list with "
                              "mode=source")
        o.macaddr = [parse_mac(m.strip(), "options.macaddr") for m in opts["macaddr"].split(",") if m.strip()]
    n = _int(opts, "advertise_addr_nmsgs", 0, ANNOUNCE_COUNT_MAX, f"0 .. {ANNOUNCE_COUNT_MAX} (default 3; 0: none)")
    o.announce_count = ANNOUNCE_COUNT if n is None else n
    ms = _int(opts, "advertise_addr_ms", *ANNOUNCE_MS_RANGE, "100 .. 2000 milliseconds (default 1000)")
    o.announce_ms = ANNOUNCE_MS if ms is None else ms
    return o


@dataclass
class Subnet:
    net: ipaddress.IPv4Network | ipaddress.IPv6Network
    gateway: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    text: str


@dataclass
class Route:
    dst: ipaddress.IPv4Network | ipaddress.IPv6Network
    gateway: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    metric: int | None
    kind: str  # unicast, blackhole, unreachable, prohibit


@dataclass
class Network:
    """A Network JSON, parsed; ``raw`` is the object itself (create edits and returns it)."""

    raw: dict[str, Any]
    name: str
    id: str
    driver: str
    internal: bool
    parent: str
    options: Options
    ipam: str
    subnets: list[Subnet]
    routes: list[Route]


ROUTE_TYPES = ("unicast", "blackhole", "unreachable", "prohibit")


def _routes(raw: dict, where: str) -> list[Route]:
    out = []
    for i, r in enumerate(_need(raw, "routes", where, list, "a list of routes", required=False) or []):
        key = f"{where}routes[{i}]"
        if not isinstance(r, dict):
            raise PluginError(f"{key}: must be an object {{destination, gateway, metric, route_type}}")
        dst = parse_net(r.get("destination"), key + ".destination")
        gw = None if r.get("gateway") is None else parse_ip(r["gateway"], key + ".gateway")
        metric = r.get("metric")
        if metric is not None and (not isinstance(metric, int) or isinstance(metric, bool)
                                   or not 0 <= metric < 2**32):
            raise PluginError(f"{key}.metric: must be an integer 0 .. 4294967295, not {metric!r:.40}")
        rt = r.get("route_type") or "unicast"
        if rt not in ROUTE_TYPES:
            raise PluginError(f"{key}.route_type: invalid route type \"{rt!s:.40}\"; allowed: {', '.join(ROUTE_TYPES)}")
        if rt == "unicast" and gw is None:
            raise PluginError(f"{key}: route {dst} requires a gateway for type unicast")
        if rt != "unicast" and gw is not None:
            raise PluginError(f"{key}: route {dst} must not have a gateway for type {rt}")
        if gw is not None and gw.version != dst.version:
            raise PluginError(f"{key}: route with ipv{dst.version} destination and ipv{gw.version} gateway "
                              f"({dst} via {gw})")
        out.append(Route(dst, gw, metric, rt))
    return out


def parse_network(raw: Any, where: str = "network.", strict: bool = False) -> Network:
    """The Network JSON (``where``: how keys are named in errors: ``network.`` inside setup's
    input, empty for create's)."""
    if not isinstance(raw, dict):
        raise PluginError(f"{where.rstrip('.') or 'network'}: must be a JSON object (a podman Network), "
                          f"not {_kind(raw)}")
    name = _need(raw, "name", where, str, "the network's name")
    if not _NAME_RE.match(name):
        raise PluginError(f"{where}name: Invalid characters in network name {name!r:.60}: must match "
                          "[a-zA-Z0-9][a-zA-Z0-9_.-]*")
    nid = _need(raw, "id", where, str, "the network's ID (64 hex digits)")
    if not nid:
        raise PluginError(f"{where}id: Network id must be supplied; allowed: 64 hex digits")
    driver = _need(raw, "driver", where, str, "the driver's name (this plugin's file name)")
    for key in ("dns_enabled", "internal", "ipv6_enabled"):
        _need(raw, key, where, bool, "true or false")
    parent = _need(raw, "network_interface", where, str, "the parent interface's name", required=False) or ""
    opts = _str_map(raw, "options", where)
    if parent and (len(parent.encode()) > 15 or any(c in parent for c in "/: \t\n") or parent in (".", "..")):
        raise PluginError(f"{where}network_interface: {parent!r:.60} is not an interface name; allowed: 1 .. 15 "
                          "bytes without '/', ':' or spaces")
    options = parse_options(opts, strict)
    ipam_opts = _str_map(raw, "ipam_options", where) or {}
    ipam = ipam_opts.get("driver", "")
    subnets = []
    raw_subnets = _need(raw, "subnets", where, list, "a list of {subnet, gateway, lease_range}", required=False) or []
    for i, s in enumerate(raw_subnets):
        key = f"{where}subnets[{i}]"
        if not isinstance(s, dict):
            raise PluginError(f"{key}: must be an object {{subnet, gateway, lease_range}}")
        net = parse_net(s.get("subnet"), key + ".subnet")
        gw = None if s.get("gateway") is None else parse_ip(s["gateway"], key + ".gateway")
        if gw is not None and gw not in net:
            raise PluginError(f"{key}.gateway: gateway {gw} not in subnet {net}")
        lr = s.get("lease_range")
        if lr is not None:
            if not isinstance(lr, dict):
                raise PluginError(f"{key}.lease_range: must be an object {{start_ip, end_ip}}")
            ends = []
            for end in ("start_ip", "end_ip"):
                if lr.get(end) is not None:
                    ip = parse_ip(lr[end], f"{key}.lease_range.{end}")
                    if ip not in net:
                        raise PluginError(f"{key}.lease_range.{end}: lease range {end} {ip} not in subnet {net}")
                    ends.append(ip)
            if len(ends) == 2 and ends[0].version != ends[1].version:
                raise PluginError(f"{key}.lease_range: lease range start_ip and end_ip must be the same IP version")
            if len(ends) == 2 and int(ends[0]) > int(ends[1]):
                raise PluginError(f"{key}.lease_range: lease range start_ip {ends[0]} must be less than or equal "
                                  f"to end_ip {ends[1]}")
        subnets.append(Subnet(net, gw, s["subnet"]))
    for i, a in enumerate(subnets):
        for b in subnets[i + 1:]:
            if a.net == b.net:
                raise PluginError(f"{where}subnets: duplicate subnet defined: {a.net}")
            if a.net.version == b.net.version and (a.net.overlaps(b.net)):  # type: ignore[arg-type]
                raise PluginError(f"{where}subnets: overlapping subnets: {a.net} and {b.net}")
    if ipam not in ("", IPAM_HOSTLOCAL, IPAM_DHCP, IPAM_NONE):
        raise PluginError(f"{where}ipam_options.driver: unsupported ipam driver {ipam!s:.40}; allowed: host-local "
                          "(with subnets), dhcp (without), none")
    if ipam == IPAM_NONE and subnets:
        raise PluginError(f"{where}ipam_options.driver: None ipam driver is set but subnets are given")
    if ipam == IPAM_DHCP and subnets:
        raise PluginError(f"{where}ipam_options.driver: ipam driver dhcp set but subnets are set; allowed: dhcp "
                          "without subnets, host-local with them")
    if ipam == IPAM_HOSTLOCAL and not subnets and strict:
        raise PluginError(f"{where}subnets: {driver} driver needs at least one subnet specified when the "
                          "host-local ipam driver is set")
    _str_map(raw, "labels", where)
    for i, d in enumerate(_need(raw, "network_dns_servers", where, list, "a list of IP addresses", required=False)
                          or []):
        parse_ip(d, f"{where}network_dns_servers[{i}]")
    return Network(raw=raw, name=name, id=nid, driver=driver, internal=bool(raw["internal"]),
                   parent=parent or (opts or {}).get("parent", ""), options=options,
                   ipam=ipam or (IPAM_HOSTLOCAL if subnets else IPAM_DHCP), subnets=subnets,
                   routes=_routes(raw, where))


@dataclass
class Exec:
    """setup's and teardown's input (``NetworkPluginExec``)."""

    container_id: str
    container_name: str
    network: Network
    ifname: str
    static_ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] | None
    static_mac: str | None


def parse_exec(raw: Any) -> Exec:
    if not isinstance(raw, dict):
        raise PluginError(f"input: must be a JSON object (container_id, container_name, network, "
                          f"network_options), not {_kind(raw)}")
    cid = _need(raw, "container_id", "", str, "the container's ID")
    cname = _need(raw, "container_name", "", str, "the container's name")
    if "network" not in raw:
        raise PluginError("network: missing; it must be the network's config (a podman Network)")
    network = parse_network(raw["network"])
    if raw.get("port_mappings") is not None and not isinstance(raw["port_mappings"], list):
        raise PluginError("port_mappings: must be a list (macvlan has no port mappings: they are ignored)")
    no = _need(raw, "network_options", "", dict, "the container's options {interface_name, static_ips, static_mac}")
    ifname = _need(no, "interface_name", "network_options.", str, "the interface's name in the container")
    if not ifname:
        raise PluginError("network_options.interface_name: no container interface name given")
    if len(ifname.encode()) > 15 or any(c in ifname for c in "/: \t\n") or ifname in (".", ".."):
        raise PluginError(f"network_options.interface_name: {ifname!r:.60} is not an interface name; allowed: "
                          "1 .. 15 bytes without '/', ':' or spaces")
    ips = _need(no, "static_ips", "network_options.", list, "a list of IP addresses", required=False)
    static_ips = None if ips is None else [parse_ip(ip, f"network_options.static_ips[{i}]")
                                           for i, ip in enumerate(ips)]
    mac = _need(no, "static_mac", "network_options.", str, "a MAC address", required=False)
    static_mac = parse_mac(mac, "network_options.static_mac") if mac else None
    _need(no, "aliases", "network_options.", list, "a list of names", required=False)
    _str_map(no, "options", "network_options.")
    return Exec(container_id=cid, container_name=cname, network=network, ifname=ifname, static_ips=static_ips,
                static_mac=static_mac)
