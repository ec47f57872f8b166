"""``"backend": "userspace"``: the child comes from the pymacvlan daemon, a TAP in the pod's
namespace, so pods get macvlan networking where the kernel module is missing.

The daemon is reached through its client (:class:`pymacvlan.daemon.client.Client`) on
``socket`` (else ``$PYMACVLAN_SOCKET``, else the default). A daemon that does not answer is
"try again later" (11) on ADD and "not available" (50) on STATUS.
"""

from __future__ import annotations

from typing import Any

from .skel import ERR_INTERNAL, ERR_PLUGIN_NOT_AVAILABLE, ERR_TRY_AGAIN_LATER, Args, CNIError

_UNREACHABLE = ("ECONNREFUSED", "ETIMEDOUT", "ECONNRESET", "EACCES", "ENOENT")


def _client(n: Any):
    from ..daemon.client import Client

    return Client(n.socket or None, timeout=30.0)


def _err(e: Any, what: str) -> CNIError:
    if e.errno_name in _UNREACHABLE:
        return CNIError(ERR_TRY_AGAIN_LATER, f"{what}: {e.message}", e.advice)
    return CNIError(ERR_INTERNAL, f"{what}: {e.errno_name}: {e.message}", e.advice)


def add(n: Any, a: Args) -> dict:
    """The daemon makes the child as ``CNI_IFNAME`` in ``CNI_NETNS``; the interface entry."""
    from ..model import KernelError, MacaddrMode, MacvlanFlag, Mode
    from ..model.link import LinkRequest
    from ..model.mac import parse_mac

    flags = MacvlanFlag(0) | (MacvlanFlag.NODST if n.nodst else 0) | (MacvlanFlag.NOPROMISC if n.nopromisc else 0)
    req = LinkRequest(parent=n.master, name=a.ifname, kind="macvlan", mode=Mode[n.mode.upper()],
                      address=parse_mac(n.mac) if n.mac else None, mtu=n.mtu or None,
                      flags=flags or None, macaddr_mode=MacaddrMode.SET if n.macaddr else None,
                      macaddrs=[parse_mac(m) for m in n.macaddr], bcqueuelen=n.bcqueuelen or None,
                      bclim=n.bclim, netns=a.netns)
    try:
        link = _client(n).link_add(req)
    except KernelError as e:
        raise _err(e, "failed to create the userspace macvlan") from None
    return {"name": a.ifname, "mac": link.get("address", ""), "sandbox": a.netns}


def delete(n: Any, a: Args) -> None:
    """Idempotent: a child (or namespace) already gone is success."""
    from ..model import KernelError

    if not a.netns:
        return
    try:
        _client(n).link_del(a.ifname, netns=a.netns)
    except KernelError as e:
        if e.errno_name in ("ENODEV", "ENOENT"):
            return
        raise _err(e, f"failed to delete {a.ifname}") from None


def check(n: Any, a: Args, mine: dict) -> None:
    from ..model import KernelError

    try:
        links = _client(n).link_show(a.ifname, netns=a.netns)
    except KernelError as e:
        raise _err(e, f"container Interface name in prevResult: {a.ifname} not found") from None
    if not links:
        raise CNIError(ERR_INTERNAL, f"container Interface name in prevResult: {a.ifname} not found")
    have = links[0]
    if mine.get("mac") and mine["mac"].lower() != str(have.get("address", "")).lower():
        raise CNIError(ERR_INTERNAL, f"interface {a.ifname} Mac {mine['mac']} doesn't match container Mac: "
                       f"{have.get('address')}")
    mode = have.get("linkinfo", {}).get("info_data", {}).get("mode")
    if mode is not None and mode != n.mode:
        raise CNIError(ERR_INTERNAL, f"container macvlan mode {mode} does not match expected value: {n.mode}")


def status(n: Any) -> None:
    from ..model import KernelError

    try:
        _client(n).hello()
    except KernelError as e:
        raise CNIError(
            ERR_PLUGIN_NOT_AVAILABLE, f"the pymacvlan daemon does not answer: {e.message}", e.advice
        ) from None
