"""Conformance: every scenario on the sim (the reference) and on each other backend.

A backend joins by adding its name to BACKENDS; nothing else changes. Live backends
need root and network namespaces: outside CI they skip with the reason, under CI=true
they must run (a skip there is a failure).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from pymacvlan.fuzz import random_scenario
from tests.ci import skip_or_fail

ROOT = Path(__file__).resolve().parents[1]
#: userspace: the default datapath (the eBPF fast path with veth children wherever it loads);
#: userspace-python: TAP children, every frame through Python (backends/userspace/backend.VARIANTS)
BACKENDS = ["kernel", "userspace", "userspace-python"]
GENERATED = int(os.environ.get("PMV_CONFORMANCE_GENERATED", "150"))


def scenario_files() -> list[Path]:
    files = sorted((ROOT / "scenarios").rglob("*.json"))
    files += sorted((ROOT.parent / "examples").glob("*.json"))
    return files


def generated(n: int = GENERATED) -> list[tuple[str, dict]]:
    """Random topologies, control sequences and frames (the fuzzer's generator, fixed seeds)."""
    rng = random.Random(20261121)
    return [(f"gen{i:03d}", random_scenario(rng)) for i in range(n)]


def backend_cannot_run(backend: str, sc: dict) -> str | None:
    """A backend's own word on a scenario it cannot run faithfully (e.g. kernel rules of a
    newer kernel than this machine's), or None."""
    if backend == "kernel":
        from pymacvlan.backends.kernel import unsupported_reason
        return unsupported_reason(sc)
    if backend.startswith("userspace"):
        from pymacvlan.backends.userspace.backend import unsupported_reason as userspace_reason
        return userspace_reason(sc)
    return None


def live_available() -> str | None:
    """Why live backends cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (CAP_NET_ADMIN) to create namespaces, veth pairs and macvlans"
    if not Path("/run/netns").exists() and not os.access("/run", os.W_OK):
        return "cannot create network namespaces"
    return None


def require_live() -> None:
    skip_or_fail(live_available())
