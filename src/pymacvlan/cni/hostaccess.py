"""hostAccess: the host reaches its pods and the pods reach the host.

macvlan never passes frames between its children and the master's own stack. The standard
fix, applied per master: one bridge-mode child of the master in the host's namespace
(``pmvha`` + a hash of the master's name) holding the master's IPv4 addresses as /32s
(:meth:`pymacvlan.links.kernel.Driver.host_access`), and a /32 (or /128) route per pod address
through it. :func:`sync` recomputes that from the attachment records of every network with
hostAccess on this master, under a lock file: made with the first pod, routes kept current
on ADD and DEL, removed with the last pod.
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

from .skel import ERR_INTERNAL, ERR_TRY_AGAIN_LATER, CNIError


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
    out: set[str] = set()
    for net in sorted(os.listdir(state_dir)) if os.path.isdir(state_dir) else []:
        d = os.path.join(state_dir, net)
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            if not name.endswith(".json"):
                continue
            try:
                with open(os.path.join(d, name)) as f:
                    rec = json.load(f)
                conf = json.loads(rec.get("config") or "{}")
            except (OSError, ValueError):
                continue
            if rec.get("master") == master and conf.get("hostAccess") is True:
                for a in rec.get("addresses", []):
                    ip = ipaddress.ip_interface(a).ip
                    out.add(f"{ip}/{ip.max_prefixlen}")
    return sorted(out)


def sync(n: Any) -> list[str]:
    """Make the host child and its routes match the records; returns what is routed."""
    from ..links.kernel import Driver
    from ..model import KernelError, Mode
    from ..model.link import LinkRequest
    from .netns import _ipr

    name = child_name(n.master)
    with _locked(n.state_dir):
        want = wanted(n.state_dir, n.master)
        ipr = _ipr()
        try:
            have_idx = ipr.link_lookup(ifname=name)
            if not want:
                if have_idx:
                    ipr.link("del", index=have_idx[0])
                return []
            try:
                if not have_idx:
                    d = Driver()
                    d.add(LinkRequest(parent=n.master, name=name, kind="macvlan", mode=Mode.BRIDGE))
                    have_idx = ipr.link_lookup(ifname=name)
                    ipr.link("set", index=have_idx[0], state="up")
                    d.host_access(name, n.master, routes=want[:1])
            except KernelError as e:
                raise CNIError(ERR_INTERNAL, f"hostAccess: {e}", e.advice) from None
            idx = have_idx[0]
            have = set()
            for r in ipr.get_routes(oif=idx, table=254):
                dst = r.get_attr("RTA_DST")
                if dst and r["dst_len"] in (32, 128):
                    have.add(f"{dst}/{r['dst_len']}")
            for prefix in sorted(set(want) - have):
                net = ipaddress.ip_network(prefix)
                ipr.route("add", dst=str(net.network_address), dst_len=net.prefixlen, oif=idx,
                          family=2 if net.version == 4 else 10)
            for prefix in sorted(have - set(want)):
                net = ipaddress.ip_network(prefix)
                ipr.route("del", dst=str(net.network_address), dst_len=net.prefixlen, oif=idx,
                          family=2 if net.version == 4 else 10)
        except CNIError:
            raise
        except Exception as e:
            raise CNIError(ERR_INTERNAL, f"hostAccess: {type(e).__name__}: {e}") from None
        finally:
            ipr.close()
    return want
