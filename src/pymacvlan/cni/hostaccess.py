"""hostAccess: the host reaches its pods and the pods reach the host.

macvlan never passes frames between its children and the master's own stack. The standard
fix, applied per master: one bridge-mode child of the master in the host's namespace
(``pmvha`` + a hash of the master's name) holding the master's IPv4 addresses as /32s
(the backend driver's ``host_access``: a kernel macvlan, or the userspace daemon's TAP), and
a /32 (or /128) route per pod address through it. :func:`sync` recomputes that from the
attachment records of every network with hostAccess on this master, under a lock file: made
with the first pod, routes kept current on ADD and DEL, removed with the last pod.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .spec import ERR_INTERNAL, ERR_TRY_AGAIN_LATER, CNIError


def child_name(master: str) -> str:
    return f"pmvha{zlib.crc32(master.encode()):08x}"[:15]


@contextmanager
def _locked(state_dir: str) -> Iterator[None]:
    import time

    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(state_dir, "hostaccess.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise CNIError(ERR_TRY_AGAIN_LATER, "hostAccess: another plugin instance holds the lock",
                                   "try again later") from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)


def wanted(state_dir: str, master: str) -> list[str]:
    """Pod addresses (host routes) of every hostAccess attachment on ``master``."""
    from .records import read_all

    out: set[str] = set()
    for net in sorted(os.listdir(state_dir)) if os.path.isdir(state_dir) else []:
        if not os.path.isdir(os.path.join(state_dir, net)):
            continue
        for rec in read_all(state_dir, net):
            try:
                conf = json.loads(rec.config or "{}")
            except (ValueError, RecursionError):
                continue
            if rec.master == master and isinstance(conf, dict) and conf.get("hostAccess") is True:
                for a in rec.addresses:
                    try:
                        ip = ipaddress.ip_interface(a).ip
                    except ValueError:
                        continue
                    out.add(f"{ip}/{ip.max_prefixlen}")
    return sorted(out)


def _ident_path(state_dir: str, name: str) -> str:
    return os.path.join(state_dir, f"{name}.identity.json")


def _proven(ipr: Any, state_dir: str, name: str, master: str, idx: int) -> Any:
    """The host child ``name`` (at ``idx``) is the one pymacvlan made: its recorded identity
    matches, or (no record: made by an older version) it is a macvlan on ``master``, which is
    then recorded. Anything else is refused: it is not ours to change or delete."""
    from .. import identity

    path = _ident_path(state_dir, name)
    try:
        with open(path) as f:
            want = identity.DeviceIdentity.from_dict(json.load(f))
    except FileNotFoundError:
        want = None
    except (OSError, ValueError, RecursionError) as e:
        raise CNIError(ERR_INTERNAL, f"hostAccess: {path}: unreadable identity record: {e}",
                       f"remove {path} and {name} if they are stale") from None
    try:
        if want is not None:
            return identity.check(ipr, want, "change")
        have = identity.read(ipr, ifindex=idx)
        link = ipr.get_links(idx)[0]
        lower = link.get_attr("IFLA_LINK")
        master_idx = ipr.link_lookup(ifname=master)
        if have.kind != "macvlan" or not master_idx or lower != master_idx[0]:
            raise identity.IdentityError(
                19, f"not going to change {have.describe()}: it is not a macvlan on {master} and no record says "
                "pymacvlan made it")
        _record(state_dir, name, have)
        return have
    except identity.IdentityError as e:
        raise CNIError(ERR_INTERNAL, f"hostAccess: {e}", f"{name} is not pymacvlan's: rename or remove it") from None


def _record(state_dir: str, name: str, ident: Any) -> None:
    path = _ident_path(state_dir, name)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(ident.to_dict(), f)
    os.replace(tmp, path)


def sync(n: Any, keep: bool = False) -> list[str]:
    """Make the host child and its routes match the records; returns what is routed.
    ``keep``: the child stays (is made) even with no record yet, holding the master's addresses
    but no routes: a DHCP IPAM needs it to reach a server on the host before any pod has an address.

    The host child is made by the network's backend driver (the kernel's macvlan, or the
    userspace daemon's TAP where its parents are), in one request with ``up``; its addresses
    come from the driver's ``host_access``; the per-pod routes are kept here (CNI's concern)."""
    from ..links import DriverConfig, open_driver
    from ..model import KernelError, Mode
    from ..model.link import LinkRequest
    from .netns import _ipr

    name = child_name(n.master)
    drv = open_driver(DriverConfig(n.backend, socket=n.socket or None))
    with _locked(n.state_dir):
        want = wanted(n.state_dir, n.master)
        ipr = _ipr()
        try:
            from .. import identity

            have_idx = ipr.link_lookup(ifname=name)
            if have_idx:
                _proven(ipr, n.state_dir, name, n.master, have_idx[0])
            try:
                if not want and not keep:
                    if have_idx:
                        if drv.kernel_links:  # the proven device itself, by its index
                            ipr.link("del", index=have_idx[0])
                        else:  # the daemon's own child
                            drv.delete(name)
                        try:
                            os.unlink(_ident_path(n.state_dir, name))
                        except FileNotFoundError:
                            pass
                    return []
                if not have_idx:
                    drv.add(LinkRequest(parent=n.master, name=name, kind="macvlan", mode=Mode.BRIDGE, up=True))
                    have_idx = ipr.link_lookup(ifname=name)
                    if not have_idx:
                        raise KernelError("ENODEV", f"the host child {name} is not in the host's namespace",
                                          "the userspace daemon must run where the host is (no --netns)")
                    _record(n.state_dir, name, identity.read(ipr, ifindex=have_idx[0]))
                    if want:
                        drv.host_access(name, n.master, routes=want[:1])
                    else:  # the master's addresses as /32s, no route yet (host_access would route the subnet)
                        m_idx = ipr.link_lookup(ifname=n.master)
                        for addr in ipr.get_addr(index=m_idx[0], family=2) if m_idx else []:
                            ipr.addr("add", index=have_idx[0], address=addr.get_attr("IFA_ADDRESS"), prefixlen=32)
            except KernelError as e:
                raise CNIError(ERR_INTERNAL, f"hostAccess: {e}", e.advice) from None
            from ..links.hostnet import sync_host_routes

            sync_host_routes(ipr, have_idx[0], want)
        except CNIError:
            raise
        except Exception as e:
            raise CNIError(ERR_INTERNAL, f"hostAccess: {type(e).__name__}: {e}") from None
        finally:
            ipr.close()
    return want
