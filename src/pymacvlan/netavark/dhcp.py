"""Networks without subnets (ipam driver ``dhcp``): a lease for the container.

netavark's own macvlan asks its ``netavark dhcp-proxy`` (gRPC on /run/podman/nv-proxy.sock);
ours asks the pymacvlan daemon, which holds the lease (:mod:`pymacvlan.dhcp`): renewed, released
on teardown, kept across the daemon's restarts, with a client identifier from the container's
name (a re-created container gets its address back). The daemon is found at the network's
``socket`` option, ``$PYMACVLAN_SOCKET`` or the default; one that does not answer refuses the
setup before anything is made.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from .config import PluginError


def _socket(ex: Any) -> str | None:
    return ex.network.options.socket or None


def _key(ex: Any) -> str:
    return f"netavark/{ex.network.name}/{ex.container_id}/{ex.ifname}"


def check_available(ex: Any) -> None:
    from ..daemon.client import Client
    from ..model import KernelError

    try:
        Client(_socket(ex), timeout=5.0).hello()
    except KernelError as e:
        raise PluginError(f"ipam_options.driver: dhcp: the pymacvlan daemon holds the DHCP leases and does not "
                          f"answer ({e.errno_name}: {e.message}); allowed: start `pymacvlan daemon`, or give the "
                          "network a subnet") from None


def lease(ex: Any, netns: str, parent: str) -> Any:
    """Bring the child up, lease an address for its MAC; the Addressing to configure."""
    from ..backends.userspace.syscalls import IFF_UP, NetdevCtl
    from ..dhcp import client
    from ..model import KernelError
    from .plugin import Addressing

    ctl = NetdevCtl(netns)
    try:
        mac = ctl.get_mac(ex.ifname).hex(":")
        ctl.set_flags(ex.ifname, IFF_UP)  # its MAC joins the parent's unicast filter
    except OSError as e:
        raise PluginError(f"dhcp: {ex.ifname} in {netns}: {e.strerror or e}") from None
    finally:
        ctl.close()
    name = ex.container_name or ex.container_id
    try:
        got = client.acquire(_key(ex), parent, mac, network=ex.network.name, identity=f"ctr/{name}/{ex.ifname}",
                             ifname=ex.ifname, hostname=ex.container_name or "", netns=netns,
                             host_access=ex.network.options.host_access, socket=_socket(ex))
    except KernelError as e:
        hint = e.advice or "a DHCP server on the network"
        raise PluginError(f"ipam_options.driver: dhcp: no lease for {ex.ifname} ({mac}) on {parent}: "
                          f"{e.errno_name}: {e.message}; allowed: {hint}") from None
    iface = ipaddress.ip_interface(got["address"])
    gw = got.get("gateway")
    return Addressing([iface], [ipaddress.ip_address(gw)] if gw else [], [{"gateway": gw, "ipnet": str(iface)}],
                      dhcp=True)


def release(ex: Any, netns: str) -> None:
    """Release the container's lease (idempotent); a daemon that does not answer is an error."""
    from ..dhcp import client
    from ..model import KernelError

    try:
        client.release(_key(ex), socket=_socket(ex))
    except KernelError as e:
        raise PluginError(f"ipam_options.driver: dhcp: could not release the lease of {ex.ifname}: "
                          f"{e.errno_name}: {e.message}") from None
