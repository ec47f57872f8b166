"""Explanations: for each device that could have received a frame, whether it did and why.

The decision code calls ``note`` only behind ``if tr is not None``, so tracing costs
nothing when off. A frame can visit a device more than once (a hairpin reflection, a
deferred flood); every visit adds a rule, in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PARENT = "@parent"
WIRE = "@wire"


@dataclass
class Trace:
    hops: list[str] = field(default_factory=list)
    notes: dict[str, list[tuple[bool, str]]] = field(default_factory=dict)
    #: children whose receipt hinged on their salted multicast filter for a group they did
    #: not subscribe to: the kernel's answer there is random by design
    salted: set[str] = field(default_factory=set)

    def hop(self, text: str) -> None:
        """A new leg of the frame's journey (arrival at the parent, a child's transmit...)."""
        self.hops.append(text)

    def note(self, device: str, received: bool, rule: str) -> None:
        self.notes.setdefault(device, []).append((received, f"[{len(self.hops)}] {rule}"))

    def summary(self, devices: list[str], default: str) -> list[dict[str, object]]:
        """One entry per device; a device never considered gets ``default``."""
        out: list[dict[str, object]] = []
        for name in devices:
            notes = self.notes.get(name)
            if not notes:
                out.append({"device": name, "received": 0, "rules": [default]})
                continue
            out.append({"device": name, "received": sum(1 for r, _ in notes if r),
                        "rules": [rule for _, rule in notes]})
        return out

    def path(self) -> list[str]:
        return [f"[{i}] {h}" for i, h in enumerate(self.hops, 1)]
