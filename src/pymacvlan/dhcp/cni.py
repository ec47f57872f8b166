"""``pymacvlan-dhcp``: a CNI IPAM plugin whose leases the pymacvlan daemon holds.

Valid under any main plugin that creates the interface before calling IPAM (the reference
``macvlan``, ``pymacvlan-cni`` on either backend, ``ipvlan`` in l2 mode ...): ADD reads the
interface's MAC in ``CNI_NETNS``, asks the daemon for a lease for it on the parent (``master`` of
the main plugin's config, or ``ipam.parent``), and prints the lease as an IPAM result; option 26
(MTU) is applied to the interface itself, since an IPAM result cannot carry it. DEL and GC
release. There is no daemon to forget to start besides pymacvlan's own (which the userspace
backend needs anyway): ``pymacvlan daemon``, one per host.

``ipam`` keys: ``type`` (``pymacvlan-dhcp``), ``socket`` (the daemon's control socket; else the
main config's ``socket``, ``$PYMACVLAN_SOCKET``, the default), ``timeout`` (seconds an ADD waits
for a lease, default 30), ``subnet`` (refuse offers outside it), ``hostname`` (option 12; default:
the pod's name or the container ID's first 12 characters), ``parent``.
``hostAccess: true`` in the main config sends the lease's frames through the child itself, so a
DHCP server on the host's own stack answers (see :mod:`.service`).

The client identifier is RFC 4361's, from the identity stableMac uses (:mod:`.identity`): a
pod re-created under the same name gets the same address.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from ..cni.skel import (
    ERR_INTERNAL,
    ERR_INVALID_CONFIG,
    ERR_PLUGIN_NOT_AVAILABLE,
    ERR_TRY_AGAIN_LATER,
    Args,
    CNIError,
    config_error,
)
from ..model import KernelError

PLUGIN = "pymacvlan-dhcp"
_UNREACHABLE = ("ECONNREFUSED", "ECONNRESET", "ENOENT", "EACCES")


def _log(msg: str) -> None:
    sys.stderr.write(f"{PLUGIN}: {msg}\n")


def _cni_args(text: str) -> dict[str, str]:
    """CNI_ARGS as pairs; an IPAM plugin reads only what it knows (K8S_POD_*), never refuses."""
    out: dict[str, str] = {}
    for pair in (text or "").split(";"):
        k, sep, v = pair.partition("=")
        if sep:
            out[k] = v
    return out


class IpamConf:
    def __init__(self, a: Args) -> None:
        conf = a.conf
        ipam = conf.get("ipam")
        if not isinstance(ipam, dict):
            raise config_error("ipam", "must be an object like {\"type\": \"pymacvlan-dhcp\"}")
        self.network: str = conf["name"]
        self.socket = self._str(ipam, "socket") or (conf.get("socket") if isinstance(conf.get("socket"), str) else "")
        self.parent = self._str(ipam, "parent") or (conf.get("master") if isinstance(conf.get("master"), str) else "")
        self.subnet = self._str(ipam, "subnet") or None
        self.hostname = self._str(ipam, "hostname")
        t = ipam.get("timeout", 30)
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not 0 < t <= 3600:
            raise config_error("ipam.timeout", f"{t!r} is not a number of seconds", "1 .. 3600 (default 30)")
        self.timeout = float(t)
        self.host_access = conf.get("hostAccess") is True
        if self.subnet is not None:
            import ipaddress

            try:
                ipaddress.IPv4Network(self.subnet)
            except ValueError:
                raise config_error("ipam.subnet", f"{self.subnet!r} is not an IPv4 network",
                                   "like 10.1.0.0/24") from None

    @staticmethod
    def _str(d: dict[str, Any], key: str) -> str:
        v = d.get(key)
        if v is None:
            return ""
        if not isinstance(v, str):
            raise config_error(f"ipam.{key}", f"must be a string, not {v!r}")
        return v


def _key(n: IpamConf, container_id: str, ifname: str) -> str:
    return f"cni/{n.network}/{container_id}/{ifname}"


def _err(e: KernelError, what: str) -> CNIError:
    if e.errno_name in _UNREACHABLE:
        return CNIError(ERR_TRY_AGAIN_LATER, f"{what}: {e.message}", e.advice or "start `pymacvlan daemon`")
    return CNIError(ERR_INTERNAL, f"{what}: {e.errno_name}: {e.message}", e.advice)


def _socket(n: IpamConf) -> str | None:
    return n.socket or None


def cmd_add(a: Args) -> dict[str, Any]:
    from ..backends.userspace.syscalls import IFF_UP, NetdevCtl
    from ..cni.result import convert
    from . import client
    from .identity import for_attachment

    n = IpamConf(a)
    if not n.parent:
        raise config_error("ipam.parent", "no parent interface: the main plugin's config has no \"master\"",
                           "name the parent in \"master\" or ipam \"parent\"")
    try:
        ctl = NetdevCtl(a.netns)
    except OSError as e:
        raise CNIError(ERR_INTERNAL, f"cannot enter {a.netns}: {e.strerror or e}") from None
    try:
        try:
            mac = ctl.get_mac(a.ifname).hex(":")
        except OSError as e:
            raise CNIError(ERR_INTERNAL, f"no interface {a.ifname} in {a.netns}: {e.strerror or e}",
                           "the main plugin creates it before calling IPAM") from None
        # up before asking: a macvlan that is down has not put its MAC in the parent's unicast
        # filter (replies would not arrive), and a packet socket on it is ENETDOWN (the reference
        # dhcp daemon brings the link up too)
        try:
            ctl.set_flags(a.ifname, IFF_UP)
        except OSError as e:
            raise CNIError(ERR_INTERNAL, f"cannot bring {a.ifname} up in {a.netns}: {e.strerror or e}") from None
        ident = for_attachment(n.network, a.container_id, a.ifname, _cni_args(a.args), n.hostname)
        try:
            lease = client.acquire(_key(n, a.container_id, a.ifname), n.parent, mac, network=n.network,
                                   identity=ident.identity, ifname=a.ifname, hostname=ident.hostname,
                                   timeout=n.timeout, subnet=n.subnet, netns=a.netns, host_access=n.host_access,
                                   socket=_socket(n))
        except KernelError as e:
            raise _err(e, f"DHCP for {a.ifname} ({mac}) on {n.parent}") from None
        mtu = lease.get("mtu")
        if isinstance(mtu, int):
            try:
                if ctl.get_mtu(a.ifname) != mtu:
                    ctl.set_mtu(a.ifname, mtu)
            except OSError as e:  # larger than the parent's: the kernel says no; the lease still holds
                _log(f"DHCP option 26 MTU {mtu} not applied to {a.ifname}: {e.strerror or e}")
    finally:
        ctl.close()
    return convert(lease["cni"], a.cni_version)


def cmd_del(a: Args) -> None:
    from . import client

    n = IpamConf(a)
    try:
        client.release(_key(n, a.container_id, a.ifname), socket=_socket(n))
    except KernelError as e:
        raise _err(e, f"DHCP release for {a.container_id}/{a.ifname}") from None
    return None


def cmd_check(a: Args) -> None:
    import ipaddress

    from ..cni.result import to_current
    from . import client

    n = IpamConf(a)
    try:
        leases = client.show(_key(n, a.container_id, a.ifname), socket=_socket(n))
    except KernelError as e:
        raise _err(e, "DHCP check") from None
    if not leases or leases[0].get("state") not in ("bound", "renewing", "rebinding"):
        raise CNIError(ERR_INTERNAL, f"no bound DHCP lease for {a.container_id}/{a.ifname}"
                       + (f" (state {leases[0].get('state')})" if leases else ""))
    prev = a.conf.get("prevResult")
    if isinstance(prev, dict):
        have = str(ipaddress.ip_interface(leases[0]["address"]))
        want = {str(ipaddress.ip_interface(ip["address"])) for ip in to_current(prev)["ips"]}
        if want and have not in want:
            raise CNIError(ERR_INTERNAL, f"the lease is {have}, prevResult has {sorted(want)}")
    return None


def cmd_status(a: Args) -> None:
    from ..daemon.client import Client

    n = IpamConf(a)
    try:
        Client(_socket(n), timeout=5.0).hello()
    except KernelError as e:
        raise CNIError(ERR_PLUGIN_NOT_AVAILABLE, f"the pymacvlan daemon does not answer: {e.message}",
                       e.advice) from None
    return None


def cmd_gc(a: Args) -> None:
    """Release this network's leases whose attachment is not in ``cni.dev/valid-attachments``."""
    from . import client

    n = IpamConf(a)
    valid_raw = a.conf.get("cni.dev/valid-attachments") or []
    if not isinstance(valid_raw, list):
        raise CNIError(ERR_INVALID_CONFIG, "cni.dev/valid-attachments: must be a list of {containerID, ifname}")
    valid = {_key(n, str(v.get("containerID")), str(v.get("ifname"))) for v in valid_raw if isinstance(v, dict)}
    prefix = f"cni/{n.network}/"
    try:
        for lease in client.show(socket=_socket(n)):
            key = lease.get("key", "")
            if key.startswith(prefix) and key not in valid:
                _log(f"GC: releasing {key}")
                client.release(key, socket=_socket(n))
    except KernelError as e:
        raise _err(e, "DHCP GC") from None
    return None


COMMANDS = {"ADD": cmd_add, "DEL": cmd_del, "CHECK": cmd_check, "STATUS": cmd_status, "GC": cmd_gc}


def main() -> int:
    """Console-script entry point (``pymacvlan-dhcp``)."""
    from ..cni.skel import ERR_IO, dump, run

    stdin = b""
    if os.environ.get("CNI_COMMAND", "") != "VERSION":
        try:
            stdin = sys.stdin.buffer.read()
        except OSError as e:
            sys.stdout.write(dump(CNIError(ERR_IO, f"error reading from stdin: {e}").as_dict()))
            return 1
    rc = run(dict(os.environ), stdin, sys.stdout, sys.stderr, commands=COMMANDS.__getitem__)
    sys.stdout.flush()
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
