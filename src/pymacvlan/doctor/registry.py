"""The registry of checks: a new pitfall is one decorated function in :mod:`.checks`.

Each :class:`Check` carries, next to the function that judges the facts, what it looks at,
what it cannot see, and the test that proves its advice: ``live`` when that test builds the
pitfall in namespaces, shows the harm, runs the printed commands literally and shows the harm
gone; otherwise the reason it is proven with injected facts only. `doctor --checks` prints the
registry, docs/guides/doctor.md carries it as a table (a test keeps the two equal).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .model import Facts, Finding, Iface

#: a parent-scoped check judges one parent; a namespace-scoped one the whole namespace
ParentFn = Callable[[Facts, Iface], list[Finding]]
NamespaceFn = Callable[[Facts], list[Finding]]


@dataclass(frozen=True)
class Check:
    code: str
    scope: str  # "parent" | "namespace"
    looks_at: str
    cannot_see: str
    test: str  # "tests/doctor/test_live.py::test_..." (the proof)
    fn: Callable
    #: other codes its findings may carry (a note that the fix is in place, a milder variant)
    also: tuple[str, ...] = ()
    #: None: proven live; otherwise why only injected facts prove it on this machine
    not_live: str | None = None

    @property
    def proof(self) -> str:
        return "live" if self.not_live is None else "injected facts"

    def run(self, f: Facts, p: Iface | None = None) -> list[Finding]:
        out = self.fn(f, p) if self.scope == "parent" else self.fn(f)
        for x in out:
            if not x.cannot_see:
                x.cannot_see = self.cannot_see
        return list(out)

    def as_dict(self) -> dict:
        return {"code": self.code, "also": list(self.also), "scope": self.scope, "looks_at": self.looks_at,
                "cannot_see": self.cannot_see, "proof": self.proof, "test": self.test,
                **({"why_not_live": self.not_live} if self.not_live else {})}


CHECKS: list[Check] = []


def check(code: str, scope: str, *, looks_at: str, cannot_see: str, test: str, also: tuple[str, ...] = (),
          not_live: str | None = None) -> Callable[[Callable], Callable]:
    """Register the decorated function as a check (order of registration is the order shown)."""
    if scope not in ("parent", "namespace"):
        raise ValueError(scope)

    def deco(fn: Callable) -> Callable:
        if any(c.code == code for c in CHECKS):
            raise ValueError(f"check {code} registered twice")
        CHECKS.append(Check(code, scope, looks_at, cannot_see, test, fn, also, not_live))
        return fn
    return deco


def by_code(code: str) -> Check:
    return next(c for c in CHECKS if c.code == code or code in c.also)
