"""The kernel backend of ``pymacvlan replay``: the scenario runs on the real macvlan driver.

Each run builds its own namespaces (see :mod:`.topology`), replays the steps through rtnetlink,
ioctls and packet sockets, reads what every device received (see :mod:`.capture`), and removes
everything again, on errors and Ctrl-C too. Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN for
namespaces); the root namespace is never touched.
"""

from __future__ import annotations

import os
import platform

from ..._signals import sigterm_raises as _sigterm_raises
from .capture import Capture, LateFrame, ethertype_chain, pinned_to_one_cpu
from .steps import StepDispatcher
from .topology import Topology

__all__ = ["CaptureCapped", "KernelBackend", "LateFrame", "UnsupportedScenario", "unavailable_reason",
           "unsupported_reason"]


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


class CaptureCapped(RuntimeError):
    """A frame's copies were collected until the cap, not until the probe's evidence."""


class KernelBackend:
    """Replays a validated, normalized scenario on the kernel's own macvlan/macvtap."""

    name = "kernel"
    explains = False  # no trace of its own: the sim's explains a compared run

    def __init__(self, cap: float = 5.0, child_netns: bool = True) -> None:
        self.cap = cap  # the longest wait for one frame's copies (see capture.Capture)
        self.child_netns = child_netns  # see Topology.child_netns
        self.last_prefix: str | None = None  # name prefix of the latest run's namespaces/links

    def run(self, scenario: dict) -> dict:
        """Replay ``scenario`` live. Raises LateFrame for a copy that came after its step was
        closed and CaptureCapped when any frame's collection ended at the cap, not on evidence."""
        reason = self.unavailable()
        if reason:
            raise RuntimeError(reason)
        reason = self.unsupported(scenario)
        if reason:
            raise UnsupportedScenario(reason)
        parent = scenario.get("parent") or {}
        topo = Topology(wire=scenario.get("wire", "plain"), parent_mac=parent.get("mac"),
                        parent_mtu=parent.get("mtu") or 1500, child_netns=self.child_netns)
        self.last_prefix = topo.prefix
        capture = Capture(cap=self.cap)
        ethertypes = {t for s in scenario["steps"] if s["do"] == "inject"
                      for t in ethertype_chain(bytes.fromhex(s["frame"]))}
        with _sigterm_raises(), pinned_to_one_cpu():
            try:
                topo.create()
                capture.open_probe(*topo.add_probe())
                capture.open_wire(topo.ns_wire, topo.wire_ifname)
                capture.open_parent(topo.ns_parent, topo.parent_ifname, ethertypes)
                results = self.replay(topo, capture, scenario["steps"])
                capture.finish()  # a late copy of the last step's frame fails the run too
                if capture.capped:  # issue 19: an observation cut at the cap is not evidence
                    raise CaptureCapped(
                        f"{capture.capped} {'frame' if capture.capped == 1 else 'frames'} collected until the "
                        f"{self.cap:g} s cap instead of until the "
                        "probe came back: the run saw an incomplete picture (a stuck probe or a starved machine)")
            finally:
                self.release()  # what the replay holds may pin namespaces: first
                capture.close()  # sockets pin their namespaces too
                topo.teardown()
        return {"backend": self.name, "kernel": self.kernel_label(), "results": results}

    # -- what a backend on the same world overrides (the userspace backend does) -------------
    def unavailable(self) -> str | None:
        return unavailable_reason()

    def unsupported(self, scenario: dict) -> str | None:
        return unsupported_reason(scenario)

    def replay(self, topo: Topology, capture: Capture, steps: list[dict]) -> list[dict]:
        dispatcher = StepDispatcher(topo, capture)
        return [dispatcher.run(step) for step in steps]

    def release(self) -> None:
        """Drop what :meth:`replay` holds (nothing here); runs even when it raised."""

    def kernel_label(self) -> str:
        return platform.release()
