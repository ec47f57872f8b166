"""`ip link` over every backend: one request model, one driver interface.

The CLI (`pymacvlan link ...`), `pymacvlan apply FILE.toml`, the demo and the daemon all speak
this interface; each backend supplies a driver:

* ``sim``       :mod:`.sim`       an Engine per parent, its state kept in a file between commands
* ``kernel``    :mod:`.kernel`    the kernel's own macvlan/macvtap over rtnetlink (pyroute2)
* ``userspace`` :mod:`.userspace` a client of the ``pymacvlan daemon`` control socket

Drivers raise :class:`pymacvlan.model.errors.KernelError` (errno name, message, advice) for
anything the kernel would refuse, and return links from :meth:`LinkDriver.show` as the dicts
``ip -j -d -s link show`` prints (iproute2's key names: ifindex, ifname, link, flags, mtu,
operstate, address, linkinfo.info_kind / info_data.mode ..., stats64), so one formatter serves
every backend and ``-j`` output can be diffed against iproute2's.
"""

from __future__ import annotations

from typing import Protocol

from ..model.link import LinkChange, LinkRequest

BACKENDS = ("sim", "kernel", "userspace")

__all__ = ["BACKENDS", "LinkChange", "LinkDriver", "LinkRequest", "get_driver"]


class LinkDriver(Protocol):
    backend: str

    def add(self, req: LinkRequest) -> None: ...

    def set(self, name: str, change: LinkChange, netns: str | None = None) -> None: ...

    def delete(self, name: str, netns: str | None = None) -> None: ...

    def show(self, name: str | None = None, kind: str | None = None,
             netns: str | None = None) -> list[dict]: ...

    # Optional (the CLI checks with getattr): ``host_access(name, parent, routes)`` makes the
    # bridge-mode child ``name`` the host's way to its macvlan children (addresses, routes).
    # Drivers take ``netns=`` in their constructor (`pymacvlan -n NS link ...`): the namespace
    # they work in; LinkRequest.netns is where a new link is moved to.


def get_driver(backend: str, **kw) -> LinkDriver:
    """The link driver of ``backend`` (import errors of optional parts become ValueError)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    import importlib

    mod = importlib.import_module(f"{__name__}.{backend}")
    return mod.Driver(**kw)
