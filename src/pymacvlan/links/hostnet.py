"""Host access: the standard fix for "the host cannot reach its macvlan children", for every
backend whose host child is a real netdev in the host's namespace (the kernel's macvlan, the
userspace daemon's TAP).

The host's traffic to its children leaves through its own bridge-mode child ``name``: each IPv4
address of the parent is added to ``name`` as a /32, and the given routes (default: the parent's
subnets, as two halves so they win over the parent's own prefix routes without touching them)
point at ``name``. Deleting ``name`` removes all of it.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Any

from ..model.errors import KernelError


def give_host_access(ipr: Any, name: str, parent: str, routes: list[str]) -> list[str]:
    """Addresses and routes on ``name`` through ``ipr`` (an IPRoute in the host's namespace);
    lines saying what was done."""
    from pyroute2.netlink.exceptions import NetlinkError

    from ..backends.kernel.nl import errno_name

    def index(ifname: str) -> int:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            raise KernelError("ENODEV", f'Cannot find device "{ifname}"',
                              "host access needs it in the host's namespace")
        return int(found[0])

    lines: list[str] = []
    p_idx, c_idx = index(parent), index(name)
    addrs = [(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=p_idx, family=socket.AF_INET)]
    try:
        for addr, _plen in addrs:
            ipr.addr("add", index=c_idx, address=addr, prefixlen=32)
            lines.append(f"host-access: {name} has {addr}/32 (from {parent})")
        prefixes = list(routes)
        if not prefixes:
            for addr, plen in addrs:
                net = ipaddress.ip_network(f"{addr}/{plen}", strict=False)
                if plen < 31:
                    prefixes += [str(n) for n in net.subnets(prefixlen_diff=1)]
        for prefix in prefixes:
            net = ipaddress.ip_network(prefix, strict=False)
            ipr.route("add", dst=str(net.network_address), dst_len=net.prefixlen, oif=c_idx,
                      family=socket.AF_INET if net.version == 4 else socket.AF_INET6)
            lines.append(f"host-access: route {net} dev {name}")
    except NetlinkError as e:
        raise KernelError(errno_name(e.code), os.strerror(e.code),
                          f"while giving {name} the host's addresses and routes") from None
    except ValueError as e:
        raise KernelError("EINVAL", f"bad route prefix: {e}", "say route 10.0.0.0/24") from None
    if not addrs and not routes:
        lines.append(f"host-access: {parent} has no IPv4 address: give {name} one and routes to the "
                     "children (host-access route PREFIX)")
    return lines


def sync_host_routes(ipr: Any, idx: int, want: list[str]) -> None:
    """Make the /32 and /128 routes (main table) through the host child ``idx`` exactly ``want``
    (one prefix per pod or container): add the missing, delete the stale. Shared by the CNI and
    Docker front ends, which keep the same per-workload routes as workloads come and go."""
    have = set()
    for r in ipr.get_routes(oif=idx, table=254):
        dst = r.get_attr("RTA_DST")
        if dst and r["dst_len"] in (32, 128):
            have.add(f"{dst}/{r['dst_len']}")
    for verb, prefixes in (("add", set(want) - have), ("del", have - set(want))):
        for prefix in sorted(prefixes):
            net = ipaddress.ip_network(prefix)
            ipr.route(verb, dst=str(net.network_address), dst_len=net.prefixlen, oif=idx,
                      family=2 if net.version == 4 else 10)
