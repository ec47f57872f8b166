"""The NetworkDriver calls of Docker's remote driver API (libnetwork/docs/remote.md), as a table
of handlers: name → function(request dict) → reply dict. :class:`Plugin` joins the tables of
its parts (this NetworkDriver; an IpamDriver can be one more part) and answers Plugin.Activate
with every part's name.

What Docker's built-in macvlan driver does, this does, over the project's link driver layer
(:func:`pymacvlan.links.get_driver`, one :class:`~pymacvlan.model.link.LinkRequest` per child):
the child is made at Join in the plugin's namespace (dockerd's) under a temporary name,
Docker moves it into the container, renames it ``ethN`` and gives it the MAC, the address
from its IPAM and the routes; DeleteEndpoint deletes it once Docker has moved it back. The MAC
is ``02:42`` + the IPv4 address, as the built-in driver makes it, unless ``--mac-address`` or
``stable_mac`` say otherwise.

Every refusal is a :class:`DriverError` whose text Docker shows after ``Error response from
daemon:``; a refused call leaves nothing behind (no link, no state entry).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import children as kernel
from . import dockerapi, hostaccess
from .options import NetworkConfig, OptionError, parse
from .state import Endpoint, Network, State

log = logging.getLogger("pymacvlan.docker")

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class DriverError(Exception):
    """A refused call: ``str(e)`` goes to Docker as ``{"Err": ...}``."""


@dataclass
class Part:
    """One plugin interface (``NetworkDriver``, ``IpamDriver`` ...): its name for
    Plugin.Activate and its calls, keyed by the HTTP path without the slash."""

    implements: str
    handlers: dict[str, Handler]


@dataclass
class Plugin:
    """Every part behind one socket; :meth:`dispatch` is what the HTTP server calls."""

    parts: list[Part] = field(default_factory=list)

    def table(self) -> dict[str, Handler]:
        out: dict[str, Handler] = {"Plugin.Activate": lambda _req: {"Implements": [p.implements for p in self.parts]}}
        for p in self.parts:
            out.update(p.handlers)
        return out

    def dispatch(self, method: str, req: dict[str, Any]) -> dict[str, Any] | None:
        """The reply, or None for a method nobody implements (HTTP 404: "not implemented")."""
        handler = self.table().get(method)
        if handler is None:
            return None
        try:
            return handler(req)
        except (DriverError, OptionError) as e:
            log.info("%s refused: %s", method, e)
            return {"Err": str(e)}
        except Exception as e:  # a bug must not take the plugin (and every container's network) down
            log.exception("%s failed", method)
            return {"Err": f"pymacvlan: internal error in {method}: {type(e).__name__}: {e}"}


def mac_from_ip(addr: str) -> str:
    """netutils.GenerateMACFromIP of libnetwork: 02:42 and the four bytes of the IPv4 address."""
    ip = ipaddress.ip_interface(addr).ip
    return "02:42:" + ":".join(f"{b:02x}" for b in ip.packed[-4:])


def _id(req: dict[str, Any], key: str) -> str:
    v = req.get(key)
    if not isinstance(v, str) or not v:
        raise DriverError(f"{key} missing from the request")
    return v


@dataclass
class DriverConfig:
    state: str | None = None
    docker_host: str | None = None  # for stable_mac: the Docker API (unix:///run/docker.sock)
    netns: str | None = None  # where the plugin makes children (None: where it runs, dockerd's)


class NetworkDriver:
    """The NetworkDriver part. Calls are serialised (one lock): Docker sends them one
    container at a time per network anyway, and the state file is written after each."""

    implements = "NetworkDriver"

    def __init__(self, cfg: DriverConfig) -> None:
        self.cfg = cfg
        self.state = State.load(cfg.state)
        self.lock = threading.Lock()
        self.docker = dockerapi.Client(cfg.docker_host) if cfg.docker_host else None

    def part(self) -> Part:
        calls: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "GetCapabilities": self.get_capabilities,
            "CreateNetwork": self.create_network,
            "DeleteNetwork": self.delete_network,
            "CreateEndpoint": self.create_endpoint,
            "DeleteEndpoint": self.delete_endpoint,
            "EndpointOperInfo": self.endpoint_oper_info,
            "Join": self.join,
            "Leave": self.leave,
            "DiscoverNew": self.nothing,
            "DiscoverDelete": self.nothing,
            "ProgramExternalConnectivity": self.nothing,
            "RevokeExternalConnectivity": self.nothing,
        }

        def locked(f: Handler) -> Handler:
            def call(req: dict[str, Any]) -> dict[str, Any]:
                with self.lock:
                    return f(req)
            return call

        return Part(self.implements, {f"NetworkDriver.{k}": locked(v) for k, v in calls.items()})

    # -- calls --------------------------------------------------------------------------------------
    def nothing(self, _req: dict[str, Any]) -> dict[str, Any]:
        return {}

    def get_capabilities(self, _req: dict[str, Any]) -> dict[str, Any]:
        return {"Scope": "local", "ConnectivityScope": "local"}

    def create_network(self, req: dict[str, Any]) -> dict[str, Any]:
        nid = _id(req, "NetworkID")
        if nid in self.state.networks:
            raise DriverError(f"network id {nid[:12]} already exists")
        cfg = parse(req.get("Options") or {})
        v4 = req.get("IPv4Data") or []
        if not isinstance(v4, list) or not v4 or not isinstance(v4[0], dict) \
                or v4[0].get("Pool") in (None, "", "0.0.0.0/0"):
            raise DriverError("ipv4 pool is empty")
        v6 = req.get("IPv6Data") or []
        try:
            pools = [str(ipaddress.ip_network(d["Pool"], strict=False)) for d in list(v4) + list(v6)]
            gw = _addr_only(v4[0].get("Gateway"))
            gw6 = _addr_only(v6[0].get("Gateway")) if v6 and isinstance(v6[0], dict) else ""
        except (KeyError, TypeError, ValueError) as e:
            raise DriverError(f"bad IPAM data: {e}") from None
        made = kernel.prepare_parent(cfg, nid, self.cfg.netns)  # raises DriverError; makes nothing on failure
        net = Network(config=cfg.as_dict(), gateway=gw, gateway6=gw6, pools=pools, made=made)
        self.state.networks[nid] = net
        try:
            self.state.save()
        except OSError as e:
            del self.state.networks[nid]
            kernel.remove_made(made, self.cfg.netns)
            raise DriverError(f"cannot save the plugin state: {e.strerror} ({self.cfg.state})") from None
        log.info("network %s: %s", nid[:12], json.dumps(cfg.as_dict(), sort_keys=True))
        return {}

    def delete_network(self, req: dict[str, Any]) -> dict[str, Any]:
        nid = _id(req, "NetworkID")
        net = self.state.networks.get(nid)
        if net is None:
            return {}  # already gone (a second DeleteNetwork after a failed first one)
        cfg = NetworkConfig.from_dict(net.config)
        for eid, ep in list(self.state.endpoints.items()):
            if ep.network == nid:
                kernel.delete_child(cfg, ep, self.cfg.netns)
                del self.state.endpoints[eid]
        kernel.remove_made(net.made, self.cfg.netns)
        del self.state.networks[nid]
        self._sync_host_access(cfg)
        self.state.save()
        return {}

    def create_endpoint(self, req: dict[str, Any]) -> dict[str, Any]:
        nid, eid = _id(req, "NetworkID"), _id(req, "EndpointID")
        net = self.state.networks.get(nid)
        if net is None:
            raise DriverError(f"network id {nid!r} not found")
        iface = req.get("Interface") or {}
        if not isinstance(iface, dict):
            raise DriverError("Interface must be a JSON object")
        addr, addr6, mac = iface.get("Address") or "", iface.get("AddressIPv6") or "", iface.get("MacAddress") or ""
        if not addr:
            raise DriverError("create endpoint was not passed an IP address")
        try:
            ipaddress.ip_interface(addr)
            if addr6:
                ipaddress.ip_interface(addr6)
        except ValueError as e:
            raise DriverError(f"bad Interface address: {e}") from None
        cfg = NetworkConfig.from_dict(net.config)
        reply: dict[str, Any] = {}
        identity = ""
        if not mac:
            if cfg.stable_mac:
                mac, identity = self._stable_mac(nid, net, addr)
            if not mac:
                mac = mac_from_ip(addr)
            reply = {"Interface": {"MacAddress": mac}}
        self.state.endpoints[eid] = Endpoint(network=nid, address=addr, address6=addr6, mac=mac.lower(),
                                             identity=identity)
        self.state.save()
        return reply

    def join(self, req: dict[str, Any]) -> dict[str, Any]:
        nid, eid = _id(req, "NetworkID"), _id(req, "EndpointID")
        net = self.state.networks.get(nid)
        ep = self.state.endpoints.get(eid)
        if net is None:
            raise DriverError(f"network id {nid!r} not found")
        if ep is None or ep.network != nid:
            raise DriverError(f"could not find endpoint with id {eid}")
        cfg = NetworkConfig.from_dict(net.config)
        name = "pmvd" + eid[:11]
        kernel.make_child(cfg, name, ep.mac, self.cfg.netns)  # raises DriverError, leaves nothing
        ep.link = name
        try:
            self.state.save()
            self._sync_host_access(cfg)
        except Exception:
            kernel.delete_child(cfg, ep, self.cfg.netns)
            ep.link = ""
            raise
        out: dict[str, Any] = {"InterfaceName": {"SrcName": name, "DstPrefix": "eth"},
                               "DisableGatewayService": True}
        if net.gateway and not cfg.isolated:  # an isolated parent: a gateway would lead nowhere
            out["Gateway"] = net.gateway
        if net.gateway6 and ep.address6:
            out["GatewayIPv6"] = net.gateway6
        return out

    def leave(self, req: dict[str, Any]) -> dict[str, Any]:
        nid, eid = _id(req, "NetworkID"), _id(req, "EndpointID")
        if nid in self.state.networks and eid not in self.state.endpoints:
            raise DriverError(f"could not find endpoint with id {eid}")
        return {}

    def delete_endpoint(self, req: dict[str, Any]) -> dict[str, Any]:
        _id(req, "NetworkID")
        eid = _id(req, "EndpointID")
        ep = self.state.endpoints.pop(eid, None)
        if ep is None:
            return {}
        net = self.state.networks.get(ep.network)
        cfg = NetworkConfig.from_dict(net.config) if net is not None else NetworkConfig()
        kernel.delete_child(cfg, ep, self.cfg.netns)
        self.state.save()
        if net is not None:
            self._sync_host_access(cfg)
        return {}

    def endpoint_oper_info(self, req: dict[str, Any]) -> dict[str, Any]:
        eid = _id(req, "EndpointID")
        ep = self.state.endpoints.get(eid)
        if ep is None:
            return {"Value": {}}
        return {"Value": {"pymacvlan.mac": ep.mac, "pymacvlan.identity": ep.identity}}

    # -- helpers ------------------------------------------------------------------------------------
    def _stable_mac(self, nid: str, net: Network, addr: str) -> tuple[str, str]:
        """The MAC from the network's and the container's names, when Docker's API tells which
        container is being connected; ("", "") when it cannot (no API, or two candidates)."""
        from ..cni.conf import stable_mac

        if self.docker is None:
            log.warning("stable_mac: no --docker-host: MAC from the IP address instead")
            return "", ""
        try:
            if not net.name:
                net.name = self.docker.network_name(nid)
            who = self.docker.connecting_container(net.name, addr)
        except dockerapi.ApiError as e:
            log.warning("stable_mac: the Docker API did not say which container: %s", e)
            return "", ""
        if who is None:
            log.warning("stable_mac: no single container is being connected to %s: MAC from the IP", net.name)
            return "", ""
        return stable_mac(net.name, who), who

    def _sync_host_access(self, cfg: NetworkConfig) -> None:
        if not cfg.parent or cfg.internal:
            return
        wanted: list[str] = []
        any_on = False
        for n in self.state.networks.values():
            c = NetworkConfig.from_dict(n.config)
            if c.parent == cfg.parent and c.host_access:
                any_on = True
        if not any_on and not cfg.host_access:
            return
        for ep in self.state.endpoints.values():
            n2 = self.state.networks.get(ep.network)
            if n2 is None or not ep.link:
                continue
            c = NetworkConfig.from_dict(n2.config)
            if c.parent == cfg.parent and c.host_access:
                wanted += [a for a in (ep.address, ep.address6) if a]
        try:
            hostaccess.sync(cfg, wanted, self.cfg.netns)
        except OSError as e:
            raise DriverError(f"host_access: {e}") from None


def _addr_only(v: Any) -> str:
    if not v:
        return ""
    return str(ipaddress.ip_interface(str(v)).ip)
