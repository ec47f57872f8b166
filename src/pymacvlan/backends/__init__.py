"""Backends: sim (in-process), kernel (netlink, the oracle), userspace (real datapath).

Each has ``name`` and ``run(scenario) -> output`` over a validated scenario.
"""

from __future__ import annotations

#: the scenario runners (replay, conformance, fuzz, labs); the first is the default
BACKENDS = ("sim", "kernel", "userspace")


def get_backend(name: str):
    if name == "sim":
        from .sim import SimBackend
        return SimBackend()
    if name == "kernel":
        from .kernel import KernelBackend
        return KernelBackend()
    if name == "userspace":
        from .userspace.backend import UserspaceBackend
        return UserspaceBackend()
    if name.startswith("userspace-"):  # a datapath variant (userspace.backend.VARIANTS), for tests
        from .userspace.backend import VARIANTS, UserspaceBackend
        if name[10:] in VARIANTS:
            return UserspaceBackend(**VARIANTS[name[10:]])
    raise ValueError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")
