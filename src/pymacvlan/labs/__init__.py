"""The classic macvlan experiments as scenario files (``*.json`` here, docs/scenario-format.md
with ``expect`` keys), run by ``pymacvlan lab NAME`` on any backend.

A lab is an ordinary scenario: ``description`` says what it shows, each step's ``comment``
what that step does, ``note`` the takeaway. Expectations were written from the kernel's
rules and checked on the kernel backend (tests/test_lab.py runs every lab on sim, and live
on kernel).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..scenario import check_expectations, load_scenario


def names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(__name__).iterdir() if p.name.endswith(".json"))


def path_of(name: str) -> Path:
    """A shipped lab by name, or a scenario file given by path."""
    if name.endswith(".json") and Path(name).exists():
        return Path(name)
    p = resources.files(__name__) / f"{name}.json"
    if not p.is_file():
        raise KeyError(name)
    return Path(str(p))


def load(name: str) -> dict:
    return load_scenario(path_of(name))


def raw(name: str) -> dict:
    """The file as written (comments kept; the loader drops them)."""
    return json.loads(path_of(name).read_text())


@dataclass
class StepOutcome:
    index: int
    step: dict
    result: dict
    comment: str | None
    diffs: list[str] = field(default_factory=list)
    checked: bool = False


@dataclass
class LabRun:
    name: str
    backend: str
    kernel: str
    scenario: dict
    steps: list[StepOutcome]

    @property
    def failed(self) -> list[StepOutcome]:
        return [s for s in self.steps if s.diffs]

    @property
    def checked(self) -> int:
        return sum(s.checked for s in self.steps)


def run(name: str, backend) -> LabRun:
    """Run a lab on a backend object (``get_backend(...)``) and check every step's ``expect``."""
    sc = load(name)
    comments = [s.get("comment") for s in raw(name)["steps"]]
    out = backend.run(sc)
    steps = []
    for i, (st, res) in enumerate(zip(sc["steps"], out["results"], strict=False), 1):
        one = check_expectations({"steps": [st]}, {"backend": out["backend"], "results": [res]})
        steps.append(StepOutcome(i, st, res, comments[i - 1], [d.split("\n", 1)[-1] for d in one],
                                 "expect" in st))
    return LabRun(name, out["backend"], out.get("kernel", ""), sc, steps)


def describe_step(st: dict) -> str:
    """One line for a control step, in ip-link words."""
    do = st["do"]
    if do == "add":
        return (
            f"ip link add link parent name {st['name']} type {st.get('type', 'macvlan')} mode "
            f"{st.get('mode') or 'vepa'}"
            + (f" address {st['mac']}" if st.get("mac") else "")
        )
    if do == "set":
        rest = " ".join("up" if k == "up" and v else "down" if k == "up" else f"{k} {v}"
                        for k, v in st.items() if k not in ("do", "name", "expect"))
        return f"ip link set {st['name']} {rest}"
    if do == "inject":
        f = bytes.fromhex(st["frame"])
        kind = {0x0806: "ARP", 0x0800: "IPv4"}.get(int.from_bytes(f[12:14], "big"), f"type {f[12:14].hex()}")
        return f"{st['at']} sends {kind} {f[6:12].hex(':')} -> {f[:6].hex(':')}"
    return f"{do} " + " ".join(f"{k}={v}" for k, v in st.items() if k not in ("do", "expect"))


def summarize(result: dict) -> str:
    """Who got an injected frame: 'wire 1, parent -, macvl1 -, macvl2 BROADCAST'."""
    if not result.get("ok"):
        return f"refused: {result.get('errno')} {result.get('message', '')}".strip()
    obs = result.get("observed")
    if obs is None:
        return "ok"

    def f(frames):
        return ",".join(x.get("pkttype", "") for x in frames) if frames else "-"
    parts = [f"wire {len(obs.get('wire', [])) or '-'}", f"parent's stack {f(obs.get('parent', []))}"]
    parts += [f"{n} {f(v)}" for n, v in sorted(obs.get("children", {}).items())]
    return ", ".join(parts)
