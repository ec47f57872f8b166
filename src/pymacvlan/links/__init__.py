"""`ip link` over every backend: one request model, one driver (ops table) per backend.

Every front end (the CLI's ``link``/``stats``/``trace``/``show``, ``apply``, the CNI plugin, the
Docker/netavark/DHCP front ends, the demo) gets its driver here and calls only its verbs
(:class:`.base.BaseDriver`); none of them compares backend names. The registry:

* ``sim``       :mod:`.sim`       an Engine per parent, its state kept in a file between commands
* ``kernel``    :mod:`.kernel`    the kernel's own macvlan/macvtap over rtnetlink (pyroute2)
* ``userspace`` :mod:`.userspace` a client of the ``pymacvlan daemon`` control socket

Drivers raise :class:`pymacvlan.model.errors.KernelError` (errno name, message, advice) for
anything the kernel would refuse, ``EOPNOTSUPP`` naming the backend for a verb it cannot do, and
return links from ``show`` as the dicts ``ip -j -d -s link show`` prints (iproute2's key names:
ifindex, ifname, link, flags, mtu, operstate, address, linkinfo.info_kind / info_data.mode ...,
stats64), so one formatter serves every backend and ``-j`` output can be diffed against iproute2's.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from ..model.errors import KernelError
from ..model.link import LinkChange, LinkRequest
from .base import BaseDriver, TraceRequest, unsupported


@dataclass(frozen=True)
class BackendInfo:
    """One registry entry: what the backend is, and what a front end may expect of it."""

    what: str
    host_stack: bool  # its links are real netdevs in real namespaces (CNI, Docker, netavark need this)
    options: tuple[str, ...] = ()  # DriverConfig options it takes beyond netns


#: the registry: backend name -> its entry (the driver is ``pymacvlan.links.<name>.Driver``)
REGISTRY: dict[str, BackendInfo] = {
    "sim": BackendInfo("the deterministic in-process engine, state in a file", False, ("state", "scenario")),
    "kernel": BackendInfo("the kernel's own macvlan/macvtap over rtnetlink", True),
    "userspace": BackendInfo("the pymacvlan daemon's userspace datapath", True, ("socket",)),
}
BACKENDS = tuple(REGISTRY)
#: the backends whose links are real netdevs (what a container runtime's front end may offer)
HOST_BACKENDS = tuple(n for n, b in REGISTRY.items() if b.host_stack)
DEFAULT_BACKEND = "sim"

LinkDriver = BaseDriver  # the name the drivers' docstrings use

__all__ = ["BACKENDS", "DEFAULT_BACKEND", "HOST_BACKENDS", "REGISTRY", "BackendInfo", "BaseDriver", "DriverConfig",
           "LinkChange", "LinkDriver", "LinkRequest", "TraceRequest", "get_driver", "open_driver", "takes_option",
           "unsupported"]


@dataclass(frozen=True)
class DriverConfig:
    """Which backend, and the options a driver takes. Options a backend has no use for are
    refused (EINVAL naming the option and the backend), so a typo never silently does nothing."""

    backend: str = DEFAULT_BACKEND
    netns: str | None = None  # the namespace the driver works in (`pymacvlan -n NS ...`)
    state: str | None = None  # sim: the state file
    socket: str | None = None  # userspace: the daemon's control socket
    scenario: str | None = None  # sim: read links from this scenario's setup instead of the state


_HINTS = {"state": "--state is the sim's state file", "scenario": "--scenario replays a file on the sim",
          "socket": "--socket is the userspace daemon's control socket"}


def takes_option(backend: str, option: str) -> bool:
    """Does ``backend``'s driver take DriverConfig option ``option`` (state, scenario, socket)?"""
    return option in REGISTRY[backend].options


def check_backend(backend: str) -> None:
    if backend not in REGISTRY:
        raise KernelError("EINVAL", f"unknown backend {backend!r}", f"backends: {', '.join(BACKENDS)}")


def open_driver(cfg: DriverConfig) -> BaseDriver:
    """The driver of ``cfg.backend`` with ``cfg``'s options (EINVAL for an unknown backend or an
    option it does not take)."""
    check_backend(cfg.backend)
    kw: dict[str, object] = {}
    for opt in _HINTS:
        val = getattr(cfg, opt)
        if val is None:
            continue
        if not takes_option(cfg.backend, opt):
            owner = next(n for n in BACKENDS if takes_option(n, opt))
            raise KernelError("EINVAL", f"the {cfg.backend} backend takes no --{opt}",
                              f"{_HINTS[opt]}: drop it, or say --backend {owner}")
        kw[opt] = val
    if cfg.netns is not None:
        kw["netns"] = cfg.netns
    try:
        mod = importlib.import_module(f"{__name__}.{cfg.backend}")
    except ImportError as e:
        raise KernelError("EOPNOTSUPP", f"the {cfg.backend} backend is not available here: {e}",
                          "install pymacvlan's dependencies (pip install pymacvlan)") from None
    driver: BaseDriver = mod.Driver(**kw)
    return driver


def get_driver(backend: str, **kw: object) -> BaseDriver:
    """``open_driver(DriverConfig(backend, **kw))`` (``socket_path`` is accepted for ``socket``)."""
    if "socket_path" in kw:
        kw["socket"] = kw.pop("socket_path")
    return open_driver(DriverConfig(backend, **kw))  # type: ignore[arg-type]
