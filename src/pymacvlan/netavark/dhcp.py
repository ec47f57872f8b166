"""Networks without subnets (ipam driver ``dhcp``): a lease for the container.

netavark's own macvlan asks its ``netavark dhcp-proxy`` (gRPC on /run/podman/nv-proxy.sock);
ours is to ask the pymacvlan daemon's DHCP client. Until that client's API is wired here,
setup refuses such a network with an error that says so, before anything is made.
"""

from __future__ import annotations

from typing import Any

from .config import PluginError


def check_available(ex: Any) -> None:
    raise PluginError("ipam_options.driver: dhcp: this pymacvlan-netavark has no DHCP client yet (the pymacvlan "
                      "daemon's DHCP is not wired); allowed: give the network a subnet (podman network create "
                      "--subnet ...) so the host-local ipam assigns static IPs")


def lease(ex: Any, netns: str, parent: str) -> Any:
    check_available(ex)


def release(ex: Any, netns: str) -> None:
    return None
