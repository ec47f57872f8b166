"""``-o host_access=true``: the host (the plugin's namespace, dockerd's) reaches the network's
containers and they reach it, kept current as containers come and go.

The CNI plugin's recipe (:mod:`pymacvlan.cni.hostaccess`): one bridge-mode child of the parent
in the host's namespace, holding the parent's IPv4 addresses as /32s, and a host route per
container address through it; made with the first container, removed with the last. Its name
(``pmvhd`` + a hash of the parent) differs from the CNI plugin's, so both can share a parent
without removing each other's routes.
"""

from __future__ import annotations

import ipaddress
import zlib

from .options import NetworkConfig


def child_name(parent: str) -> str:
    return f"pmvhd{zlib.crc32(parent.encode()):08x}"[:15]


def sync(cfg: NetworkConfig, addresses: list[str], netns: str | None) -> list[str]:
    """Make the host child of ``cfg.parent`` and its routes match ``addresses`` (a.b.c.d/len),
    through the network's backend; returns what is routed."""
    from ..model import KernelError, Mode
    from ..model.link import LinkRequest
    from .children import _driver, _ipr, _kind

    parent = cfg.parent
    want = sorted({f"{ipaddress.ip_interface(a).ip}/{ipaddress.ip_interface(a).ip.max_prefixlen}" for a in addresses})
    name = child_name(parent)
    with _ipr(netns) as ipr:
        have_idx = ipr.link_lookup(ifname=name)
        if have_idx and _kind(ipr.get_links(have_idx[0])[0]) != "macvlan":
            raise OSError(17, f"{name} exists and is not our macvlan")
        if not want:
            if have_idx:
                ipr.link("del", index=have_idx[0])
            return []
        if not have_idx:
            d = _driver(cfg, netns)
            try:
                d.add(LinkRequest(parent=parent, name=name, kind="macvlan", mode=Mode.BRIDGE, up=True))
                d.host_access(name, parent, routes=want[:1])
            except KernelError as e:
                found = ipr.link_lookup(ifname=name)
                if found:
                    ipr.link("del", index=found[0])
                raise OSError(0, f"{e.errno_name}: {e.message}") from None
            have_idx = ipr.link_lookup(ifname=name)
        from ..links.hostnet import sync_host_routes

        sync_host_routes(ipr, have_idx[0], want)
    return want
