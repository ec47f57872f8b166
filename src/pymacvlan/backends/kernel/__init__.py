"""The kernel backend of ``pymacvlan replay``: the scenario runs on the real macvlan driver.

Each run builds its own namespaces (see :mod:`.topology`), replays the steps through rtnetlink,
ioctls and packet sockets, reads what every device received (see :mod:`.capture`), and removes
everything again, on errors and Ctrl-C too. Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN for
namespaces); the root namespace is never touched.
"""

from __future__ import annotations

import os
import platform
import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator

from .capture import Capture, ethertype_chain
from .steps import StepDispatcher
from .topology import Topology

__all__ = ["KernelBackend", "UnsupportedScenario", "unavailable_reason", "unsupported_reason"]


class UnsupportedScenario(ValueError):
    """The scenario asks for something this backend's topology cannot build."""


def unavailable_reason() -> str | None:
    """Why this machine cannot run the kernel backend, or None when it can."""
    if os.geteuid() != 0:
        return "the kernel backend needs root (network namespaces, macvlan links)"
    if not os.path.exists("/proc/self/ns/net"):
        return "this kernel has no network namespaces"
    return None


def unsupported_reason(scenario: dict) -> str | None:
    """Why this backend cannot run ``scenario`` faithfully, or None."""
    if (scenario.get("parent") or {}).get("unicast_filter"):
        return ("parent.unicast_filter: the kernel backend's parent is a veth, which has no unicast "
                "filter (IFF_UNICAST_FLT); a filtering parent is not implemented")
    if scenario.get("kernel_rules") == "net-next":
        return (f"kernel_rules net-next: this kernel ({platform.release()}) floods by the 6.18 rules; "
                "it does not have commit b52363f706e5")
    return None


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into SystemExit while a run is live, so its finally-cleanup runs.

    Only when we are the main thread and nobody else handles SIGTERM.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


class KernelBackend:
    """Replays a validated, normalized scenario on the kernel's own macvlan/macvtap."""

    name = "kernel"

    def __init__(self, quiet: float = 0.03, cap: float = 1.0, child_netns: bool = True) -> None:
        self.quiet = quiet
        self.cap = cap
        self.child_netns = child_netns  # see Topology.child_netns
        self.last_prefix: str | None = None  # name prefix of the latest run's namespaces/links

    def run(self, scenario: dict) -> dict:
        reason = unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        reason = unsupported_reason(scenario)
        if reason:
            raise UnsupportedScenario(reason)
        parent = scenario.get("parent") or {}
        topo = Topology(wire=scenario.get("wire", "plain"), parent_mac=parent.get("mac"),
                        parent_mtu=parent.get("mtu") or 1500, child_netns=self.child_netns)
        self.last_prefix = topo.prefix
        capture = Capture(quiet=self.quiet, cap=self.cap)
        ethertypes = {t for s in scenario["steps"] if s["do"] == "inject"
                      for t in ethertype_chain(bytes.fromhex(s["frame"]))}
        with _sigterm_raises():
            try:
                topo.create()
                capture.open_wire(topo.ns_wire, topo.wire_ifname)
                capture.open_parent(topo.ns_parent, topo.parent_ifname, ethertypes)
                dispatcher = StepDispatcher(topo, capture)
                results = [dispatcher.run(step) for step in scenario["steps"]]
            finally:
                capture.close()  # sockets pin their namespaces: close them first
                topo.teardown()
        return {"backend": self.name, "kernel": platform.release(), "results": results}
