"""The devices behind a network: its parent (an existing interface, a VLAN device made for
``parent=IF.VID``, an isolated veth pair for an internal network) and each container's child.

Children go through the project's link driver layer only (:func:`pymacvlan.links.get_driver`
with the network's ``backend``, one :class:`~pymacvlan.model.link.LinkRequest`): the plugin
never asks which backend it talks to. The parent-side helpers (VLAN device, isolated veth)
use pyroute2 directly: they are not macvlan children and no link driver makes them.

Before anything is deleted its identity is proved (kind, and the MAC or the parent it hangs
on): a name alone is not an identity.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .options import NetworkConfig
from .state import Endpoint


class ChildError(Exception):
    pass


def _err(msg: str) -> Exception:
    from .driver import DriverError

    return DriverError(msg)


@contextmanager
def _ipr(netns: str | None) -> Iterator[Any]:
    from pyroute2 import IPRoute

    if netns is None:
        ipr = IPRoute()
    else:
        from ..backends.kernel.topology import in_netns

        with in_netns(netns):
            ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def _kind(msg: Any) -> str | None:
    info = msg.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info is not None else None


def _errno_text(e: BaseException) -> str:
    code = getattr(e, "code", None) or getattr(e, "errno", None) or 0
    return f"{errno.errorcode.get(code, str(code))}: {os.strerror(code)}" if code else str(e)


def _driver(cfg: NetworkConfig, netns: str | None) -> Any:
    """The network's backend through the one driver layer (what it is, it never asks)."""
    from .. import links
    from ..model import KernelError

    try:
        if hasattr(links, "open_driver"):
            return links.open_driver(links.DriverConfig(  # type: ignore[attr-defined]
                backend=cfg.backend, netns=netns, socket=cfg.socket))
        kw: dict[str, Any] = {"netns": netns}
        if cfg.socket:
            kw["socket_path"] = cfg.socket
        return links.get_driver(cfg.backend, **kw)
    except (KernelError, ValueError) as e:
        raise _err(f"backend {cfg.backend}: {e}") from None


# -- parents ------------------------------------------------------------------------------------------
def prepare_parent(cfg: NetworkConfig, nid: str, netns: str | None) -> list[str]:
    """Check (and for VLANs and internal networks, make) the network's parent. Returns the
    links made for it; on failure nothing is left and DriverError says why."""
    drv = _driver(cfg, netns)
    if not getattr(drv, "movable_children", True):
        raise _err(f"option backend: the {cfg.backend} backend's children cannot be handed to Docker yet (Docker "
                   "moves the driver's link into the container, and that backend follows a child only in the "
                   "namespace it made it in); use the kernel backend with Docker")
    if not getattr(drv, "host_stack", True):
        raise _err(f"option backend: the {cfg.backend} backend makes no real devices; use the kernel backend")
    if not cfg.parent:
        return [_isolated_pair(cfg, nid, netns)]
    info: dict[str, Any] | None = None
    with _ipr(netns) as ipr:
        found = ipr.link_lookup(ifname=cfg.parent)
        parent = ipr.get_links(found[0])[0] if found else None
        mtu = parent.get_attr("IFLA_MTU") if parent is not None else None
        if parent is not None:  # what cni.netns.link_info reads, from the message we have
            from ..links.kernel import _mode

            info = {"index": parent["index"], "mtu": mtu, "kind": _kind(parent), "mode": _mode(parent),
                    "mac": parent.get_attr("IFLA_ADDRESS"), "flags": parent["flags"],
                    "link": parent.get_attr("IFLA_LINK"), "master": parent.get_attr("IFLA_MASTER")}
    if parent is None:
        if cfg.vlan is None:
            raise _err(f"-o parent={cfg.parent}: Link not found (ENODEV): no interface {cfg.parent!r} here "
                       "(give an existing interface, or IF.VID for a VLAN on IF)")
        if getattr(drv, "vlan_parents", False):
            return []  # the backend takes IF.VID itself (the userspace datapath filters the VID: no 8021q)
        return [_vlan(cfg, netns)]
    if cfg.mtu is not None and mtu is not None and cfg.mtu > mtu:
        raise _err(f"invalid value '{cfg.mtu}' for option mtu: at most the parent's MTU ({cfg.parent} has {mtu})")
    if info is not None:
        _preflight(cfg, info, netns)
    return []


def _preflight(cfg: NetworkConfig, info: dict[str, Any], netns: str | None) -> None:
    """pymacvlan doctor's facts about the parent (the CNI plugin's preflight, cni/preflight.py):
    what breaks for sure (Wi-Fi, a bridge or bond port, ipvlan on it) refuses the network."""
    from ..cni import preflight

    fatal, _warnings = preflight.judge(*preflight.facts(info, cfg.parent, netns))
    if fatal is not None:
        raise _err(f"-o parent={cfg.parent}: {fatal.saw}; {fatal.fix} (pymacvlan doctor {cfg.parent})")


def _vlan(cfg: NetworkConfig, netns: str | None) -> str:
    with _ipr(netns) as ipr:
        base = ipr.link_lookup(ifname=cfg.vlan_base)
        if not base:
            raise _err(f"-o parent={cfg.parent}: Link not found (ENODEV): no interface {cfg.vlan_base!r} for "
                       f"VLAN {cfg.vlan}")
        try:
            ipr.link("add", ifname=cfg.parent, kind="vlan", link=base[0], vlan_id=cfg.vlan)
            ipr.link("set", index=ipr.link_lookup(ifname=cfg.parent)[0], state="up")
        except Exception as e:
            found = ipr.link_lookup(ifname=cfg.parent)
            if found and _kind(ipr.get_links(found[0])[0]) == "vlan":
                ipr.link("del", index=found[0])
            hint = (" (this kernel has no 802.1Q support: load 8021q, or make the VLAN device another way)"
                    if getattr(e, "code", None) == errno.EOPNOTSUPP else "")
            raise _err(f"failed to create {cfg.parent} vlan link: {_errno_text(e)}{hint}") from None
    return cfg.parent


def _isolated_pair(cfg: NetworkConfig, nid: str, netns: str | None) -> str:
    """An internal network's parent: a veth pair whose peer goes nowhere (Docker's built-in
    driver makes a dummy link here; this kernel may have none, and a veth works everywhere)."""
    name, peer = "pmvi" + nid[:11], "pmvj" + nid[:11]
    with _ipr(netns) as ipr:
        try:
            ipr.link("add", ifname=name, kind="veth", peer=peer)
            for n in (peer, name):
                ipr.link("set", index=ipr.link_lookup(ifname=n)[0], state="up")
        except Exception as e:
            found = ipr.link_lookup(ifname=name)
            if found and _kind(ipr.get_links(found[0])[0]) == "veth":
                ipr.link("del", index=found[0])
            raise _err(f"cannot make the internal network's parent {name}: {_errno_text(e)}") from None
    cfg.parent, cfg.isolated = name, True
    return name


def remove_made(made: list[str], netns: str | None) -> None:
    """Delete what :func:`prepare_parent` made, if it is still that (a vlan or our veth)."""
    with _ipr(netns) as ipr:
        for name in made:
            found = ipr.link_lookup(ifname=name)
            if not found:
                continue
            kind = _kind(ipr.get_links(found[0])[0])
            if (kind == "vlan" and "." in name) or (kind == "veth" and name.startswith("pmvi")):
                try:
                    ipr.link("del", index=found[0])
                except Exception:
                    pass


# -- children -----------------------------------------------------------------------------------------
def request(cfg: NetworkConfig, name: str, mac: str):
    from ..model import MacaddrMode, MacvlanFlag, Mode
    from ..model.link import LinkRequest
    from ..model.mac import parse_mac

    flags = MacvlanFlag(0)
    if cfg.nopromisc:
        flags |= MacvlanFlag.NOPROMISC
    if cfg.nodst:
        flags |= MacvlanFlag.NODST
    return LinkRequest(parent=cfg.parent, name=name, kind="macvlan", mode=Mode[cfg.mode.upper()],
                       address=parse_mac(mac) if mac else None, mtu=cfg.mtu, flags=flags or None,
                       macaddr_mode=MacaddrMode.SET if cfg.macaddr else None,
                       macaddrs=[parse_mac(m) for m in cfg.macaddr], bcqueuelen=cfg.bcqueuelen, bclim=cfg.bclim)


def make_child(cfg: NetworkConfig, name: str, mac: str, netns: str | None) -> None:
    from ..model import KernelError

    try:
        _driver(cfg, netns).add(request(cfg, name, mac))
    except KernelError as e:
        hint = f" ({e.advice})" if e.advice else ""
        raise _err(f"failed to create the macvlan on {cfg.parent}: {e.errno_name}: {e.message}{hint}") from None


def delete_child(cfg: NetworkConfig, ep: Endpoint, netns: str | None) -> None:
    """Delete the endpoint's child if it is back in our namespace (Docker moves it back on
    Leave) and it is ours: a macvlan with our MAC, or hanging on the network's parent."""
    from ..model import KernelError

    if not ep.link:
        return
    drv = _driver(cfg, netns)
    try:
        links = drv.show(ep.link)
    except KernelError:
        return  # gone with the container's namespace
    if not links:
        return
    d = links[0]
    kind = (d.get("linkinfo") or {}).get("info_kind")
    ours = kind in ("macvlan", "macvtap") and (
        str(d.get("address", "")).lower() == ep.mac.lower() or (cfg.parent and d.get("link") == cfg.parent))
    if ours:
        try:
            drv.delete(ep.link)
        except KernelError:
            pass
