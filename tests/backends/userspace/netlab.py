"""The live tests' lab: :class:`pymacvlan.netlab.Lab` (pmv-prefixed namespaces, unique per run,
deleted by the fixtures even when a test fails; veth ends made directly in their namespaces,
the root namespace untouched), its Python ICMP ping (with the tests' patience) and TCP transfer.
"""

from __future__ import annotations

# The namespaces, probes and transfers shared with the demo live in pymacvlan.netlab.
from pymacvlan import netlab
from pymacvlan.netlab import Lab, leftovers, live_unavailable, sh, tcp_transfer  # noqa: F401


def ping(netns: str, dst: str, count: int = 3, timeout: float = 3.0, interval: float = 0.05) -> int:
    """:func:`pymacvlan.netlab.ping` with the tests' patience (3 requests, 3 s)."""
    return netlab.ping(netns, dst, count, timeout, interval)

