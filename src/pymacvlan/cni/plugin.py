"""ADD, DEL, CHECK, STATUS and GC of `pymacvlan-cni`.

ADD and DEL follow the reference plugin step by step (plugins/main/macvlan/macvlan.go), with
two deliberate differences: every failure after the child exists rolls back both the child and
the IPAM allocation (the reference leaks the child when the IPAM plugin fails: its ``err`` is
shadowed), and a config mistake is code 7 naming the key where the reference says 999.

Each attachment made is recorded under ``stateDir/NETWORK/`` (container ID, interface,
namespace, addresses, the config it was made with): GC tears down those not in
``cni.dev/valid-attachments`` (IPAM DEL with their own config, then the child), and hostAccess
keeps its routes from these records.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

from . import conf as conflib
from . import ipam
from .spec import ERR_INTERNAL, ERR_INVALID_CONFIG, ERR_PLUGIN_NOT_AVAILABLE, ERR_TRY_AGAIN_LATER, Args, CNIError


def log(msg: str) -> None:
    sys.stderr.write(f"pymacvlan-cni: {msg}\n")


# -- attachment records (cni/records.py: type-checked, with the child's identity) ---------------------
def write_record(n: conflib.NetConf, a: Args, result: dict) -> None:
    from .records import Record, child_identity, write

    try:
        ident = child_identity(a.ifname, a.netns)
    except OSError as e:  # recorded without: GC then deletes no link for it, DEL only a macvlan
        log(f"could not read the identity of {a.ifname} in {a.netns}: {e}")
        ident = None
    rec = Record(a.container_id, a.ifname, a.netns, n.backend, n.master,
                 [ip["address"] for ip in result.get("ips", [])], a.stdin.decode(errors="replace"), ident)
    write(n.state_dir, n.name, rec)


def read_records(n: conflib.NetConf) -> list:
    from .records import read_all

    return read_all(n.state_dir, n.name)


def drop_record(n: conflib.NetConf, container_id: str, ifname: str) -> None:
    from .records import drop

    drop(n.state_dir, n.name, container_id, ifname)


def _delete_child(n: conflib.NetConf, a: Args, expect=None) -> None:
    """The kernel child, only if it is the one ADD made (see records.delete_child)."""
    from .records import delete_child, read

    if expect is None:
        rec = read(n.state_dir, n.name, a.container_id, a.ifname)
        expect = rec.identity if rec is not None else None
    delete_child(a.ifname, a.netns, expect)


# -- commands -------------------------------------------------------------------------------------
def _load_checked(a: Args) -> tuple[conflib.NetConf, dict[str, Any], str | None]:
    """loadConf of the reference: the config, the namespace, the master (default: the default
    route's interface) and the MTU against it; returns the config, the master's facts and where
    the master lives (None: here; the pod's namespace with linkInContainer)."""
    from . import netns

    n = conflib.load(a.conf, a.args, a.container_id, a.ifname)
    netns.check_netns(a.netns)
    where = a.netns if n.link_in_container else None
    if not n.master:
        n.master = netns.default_route_ifname(where)
    return n, netns.master_mtu(n.master, where, n.mtu), where


# -- the link driver: the only way to the backend ------------------------------------------------------
_UNREACHABLE = ("ECONNREFUSED", "ETIMEDOUT", "ECONNRESET", "EACCES", "ENOENT")


def _driver(n: conflib.NetConf, where: str | None = None):
    """The link driver of the config's backend, working where the master lives (None: here)."""
    from ..links import DriverConfig, open_driver

    return open_driver(DriverConfig(n.backend, netns=where, socket=n.socket or None))


def _cni_error(e: Any, what: str) -> CNIError:
    """A driver's refusal in CNI's terms: a daemon that does not answer is "try again later";
    the kernel's own words are lower-case, as Go's errors (and the reference plugin) print them."""
    if e.errno_name in _UNREACHABLE and "namespace" not in e.message:
        return CNIError(ERR_TRY_AGAIN_LATER, f"{what}: {e.message}", e.advice)
    words = e.message.lower() if e.message == os.strerror(e.errno) else e.message
    return CNIError(ERR_INTERNAL, f"{what}: {e.errno_name}: {words}", e.advice)


def _delete_link(n: conflib.NetConf, a: Args, expect=None) -> None:
    """The child, idempotently (a child or namespace already gone is success). A kernel link
    only if it is provably the one ADD made (records.delete_child: namespace, ifindex, kind,
    MAC); a daemon's child through its driver (the daemon knows its own children)."""
    from ..model import KernelError

    if not a.netns:
        return
    drv = _driver(n)
    if drv.kernel_links:
        try:
            _delete_child(n, a, expect)
        except OSError as e:
            raise CNIError(ERR_INTERNAL, f"failed to delete {a.ifname} in {a.netns}: {e}") from None
        return
    try:
        drv.delete(a.ifname, netns=a.netns)
    except KernelError as e:
        if e.errno_name in ("ENODEV", "ENOENT"):
            return
        raise _cni_error(e, f"failed to delete {a.ifname} in {a.netns}") from None


def cmd_add(a: Args) -> dict:
    from ..model import KernelError
    from . import netns
    from .result import convert

    n, master, where = _load_checked(a)
    req = n.link_request(a.ifname, None if n.link_in_container else a.netns)  # checked before anything
    from .preflight import preflight

    preflight(n, master, where)
    drv = _driver(n, where)
    try:
        added = drv.add(req) or {}
        mac = added.get("address") or drv.show(a.ifname, netns=a.netns)[0]["address"]
    except KernelError as e:
        raise _cni_error(e, "failed to create macvlan") from None
    iface = {"name": a.ifname, "mac": mac, "sandbox": a.netns}
    result: dict[str, Any] = {"cniVersion": "1.1.0", "interfaces": [iface], "ips": [], "routes": [], "dns": {}}
    ipam_done = False
    try:
        if n.ipam_type and n.host_access:
            # the host's child first: a DHCP IPAM (pymacvlan-dhcp) reaches a server on the host through it
            from .hostaccess import sync

            sync(n, keep=True)
        if n.ipam_type:
            cur = ipam.add(a, n.ipam_type)
            ipam_done = True
            result["ips"] = [dict(ip, interface=0) for ip in cur["ips"]]
            result["routes"] = cur["routes"]
            netns.configure(a.ifname, a.netns, result)
        else:
            netns.set_up(a.ifname, a.netns)
        result["dns"] = n.dns
        write_record(n, a, result)
        if n.host_access:
            from .hostaccess import sync

            sync(n)
    except BaseException:
        _rollback(n, a, ipam_done)
        raise
    return convert(result, a.cni_version)


def _rollback(n: conflib.NetConf, a: Args, ipam_done: bool) -> None:
    from .records import child_identity

    drop_record(n, a.container_id, a.ifname)
    try:  # the child ADD just made: no record any more, so prove it is ours by reading it now
        ident = child_identity(a.ifname, a.netns) if _driver(n).kernel_links else None
    except OSError:
        ident = None
    try:
        _delete_link(n, a, expect=ident)
    except Exception as e:
        log(f"rollback: could not delete {a.ifname} in {a.netns}: {e}")
    if ipam_done:
        try:
            ipam.execute(a, "DEL", n.ipam_type)
        except CNIError as e:
            log(f"rollback: IPAM DEL failed: {e.msg}")
    if n.host_access:  # the host's child goes with the last record (it may have been made for this ADD)
        try:
            from .hostaccess import sync

            sync(n)
        except CNIError as e:
            log(f"rollback: hostAccess: {e.msg}")


def cmd_del(a: Args) -> None:
    """IPAM first, then the child; succeeds when things are already gone, and without a netns."""
    n = conflib.load_for_del(a.conf)
    if n.ipam_type:
        ipam.execute(a, "DEL", n.ipam_type)
    _delete_link(n, a)
    drop_record(n, a.container_id, a.ifname)
    if n.host_access:
        from .hostaccess import sync

        sync(n)
    return None


def cmd_check(a: Args) -> None:
    """The child in ``CNI_NETNS`` against ``prevResult``: kind, mode, MAC, addresses, routes."""
    import ipaddress

    from ..model import KernelError
    from . import netns
    from .result import to_current

    n, _master, _where = _load_checked(a)
    if n.ipam_type:
        ipam.execute(a, "CHECK", n.ipam_type)
    prev = a.conf.get("prevResult")
    if not isinstance(prev, dict):
        raise CNIError(ERR_INVALID_CONFIG, "required prevResult missing", "CHECK needs the ADD result as prevResult")
    r = to_current(prev)
    mine = next((i for i in r["interfaces"] if i.get("name") == a.ifname and i.get("sandbox") == a.netns), None)
    if mine is None:
        raise CNIError(ERR_INTERNAL, f"sandbox in prevResult  doesn't match configured netns: {a.netns}")
    try:
        links = _driver(n).show(a.ifname, netns=a.netns)
    except KernelError as e:
        if e.errno_name in ("ENODEV", "ENOENT"):
            links = []
        else:
            raise _cni_error(e, f"container Interface name in prevResult: {a.ifname} not found") from None
    if not links:
        raise CNIError(ERR_INTERNAL, f"container Interface name in prevResult: {a.ifname} not found")
    info = links[0].get("linkinfo", {})
    if info.get("info_kind") != "macvlan":
        raise CNIError(ERR_INTERNAL, f"error: Container interface {a.ifname} not of type macvlan")
    have = info.get("info_data", {}).get("mode", "?")
    if have != n.mode:
        raise CNIError(ERR_INTERNAL, f"container macvlan mode {have} does not match expected value: {n.mode}")
    if mine.get("mac") and mine["mac"].lower() != str(links[0].get("address", "")).lower():
        raise CNIError(ERR_INTERNAL, f"interface {a.ifname} Mac {mine['mac']} doesn't match container Mac: "
                       f"{links[0].get('address')}")
    have_addrs = {str(ipaddress.ip_interface(x)) for x in netns.addresses(a.ifname, a.netns) or []}
    for ip in r["ips"]:
        if str(ipaddress.ip_interface(ip["address"])) not in have_addrs:
            raise CNIError(ERR_INTERNAL, f"Failed to match addr {ip['address']} on interface {a.ifname}")
    have_routes = netns.routes(a.netns)
    for rt in r["routes"]:
        dst = str(ipaddress.ip_network(rt["dst"], strict=False))
        if not any(
            str(ipaddress.ip_network(h["dst"], strict=False)) == dst and (not rt.get("gw") or h["gw"] == rt["gw"])
            for h in have_routes
        ):
            raise CNIError(ERR_INTERNAL, f"Expected Route {rt} not found in the container's routing table")
    return None


def _delegate_optional(a: Args, command: str, plugin: str, stdin: bytes | None = None) -> None:
    """STATUS/GC to an IPAM plugin that may predate spec 1.1.0 (Debian's 1.1.1 plugins answer
    "unknown CNI_COMMAND" or "incompatible CNI versions"): such an answer means "nothing to do"."""
    try:
        ipam.execute(a, command, plugin, stdin=stdin)
    except CNIError as e:
        if e.code in (1, 3, 4) and ("CNI_COMMAND" in e.msg or "version" in e.msg or "containerID" in e.msg):
            log(f"IPAM plugin {plugin!r} does not implement {command} ({e.msg}); skipped")
            return
        raise


def cmd_status(a: Args) -> None:
    """50 when an ADD would fail for sure: the backend does not answer, the master is gone."""
    from ..model import KernelError

    n = conflib.load_for_del(a.conf)
    try:
        _driver(n).probe(None if n.link_in_container else (n.master or None))
    except KernelError as e:
        raise CNIError(ERR_PLUGIN_NOT_AVAILABLE, e.message, e.advice or "start it, or fix \"master\"") from None
    if n.ipam_type:
        _delegate_optional(a, "STATUS", n.ipam_type)
    return None


def cmd_gc(a: Args) -> None:
    """Tear down the attachments we recorded that are not in ``cni.dev/valid-attachments``."""

    n = conflib.load_for_del(a.conf)
    valid_raw = a.conf.get("cni.dev/valid-attachments") or []
    if not isinstance(valid_raw, list):
        raise CNIError(ERR_INVALID_CONFIG, "cni.dev/valid-attachments: must be a list of {containerID, ifname}")
    valid = {(v.get("containerID"), v.get("ifname")) for v in valid_raw
             if isinstance(v, dict) and isinstance(v.get("containerID"), str) and isinstance(v.get("ifname"), str)}
    for rec in read_records(n):
        if (rec.container_id, rec.ifname) in valid:
            continue
        log(f"GC: tearing down {rec.container_id}/{rec.ifname}")
        env = {"CNI_CONTAINERID": rec.container_id, "CNI_IFNAME": rec.ifname, "CNI_NETNS": rec.netns}
        sub = Args(command="DEL", container_id=rec.container_id, netns=rec.netns, ifname=rec.ifname,
                   path=a.path, stdin=rec.config.encode())
        try:
            conf = json.loads(sub.stdin or b"{}")
            sub.conf = conf if isinstance(conf, dict) else {}
            rn = conflib.load_for_del(sub.conf) if isinstance(sub.conf.get("name"), str) else n
            if rn.ipam_type:
                ipam.execute(sub, "DEL", rn.ipam_type, env=env)
            if _driver(rn).kernel_links and sub.netns and rec.identity is None:
                # a record of format 1: its namespace path proves nothing
                log(f"GC: {rec.container_id}/{rec.ifname}: the record has no device identity; "
                    "its link is left to the runtime")
            else:
                _delete_link(rn, sub, expect=rec.identity)
        except (CNIError, OSError, ValueError, RecursionError) as e:
            log(f"GC: {rec.container_id}/{rec.ifname}: {getattr(e, 'msg', e)}")
            continue
        drop_record(n, sub.container_id, sub.ifname)
    if n.host_access:
        from .hostaccess import sync

        sync(n)
    if n.ipam_type:
        _delegate_optional(a, "GC", n.ipam_type)
    return None


COMMANDS: dict[str, Callable[[Args], Any]] = {
    "ADD": cmd_add, "DEL": cmd_del, "CHECK": cmd_check, "STATUS": cmd_status, "GC": cmd_gc,
}


def command(name: str) -> Callable[[Args], Any]:
    return COMMANDS[name]


__all__ = ["COMMANDS", "command", "ERR_TRY_AGAIN_LATER"]
