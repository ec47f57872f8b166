"""Differential fuzzing: random scenarios on two backends; a difference is shrunk to a
minimal scenario file that reproduces it.

    pymacvlan fuzz --against kernel -n 2000 --seed 1

Scenarios avoid what the kernel leaves to chance: small bcqueuelen values (whether a
second flood finds the queue drained is a race), and the salted per-child multicast filter
(the comparison ignores children whose receipt hinged on it; see scenario.compare).
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from .scenario import ScenarioError, diff_results, load_scenario
from .words import plural

MODES = ["private", "vepa", "bridge", "passthru", "source", None]
NAMES = ["A", "B", "C", "D"]
PARENT = "02:00:00:00:00:01"
STATION = "0a:00:00:00:00:ee"
CHILD_MACS = ["02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c", "02:00:00:00:00:0d"]
GROUPS = ["01:00:5e:00:00:01", "01:00:5e:0a:0b:0c", "33:33:00:00:00:01", "01:00:5e:7f:00:05"]


def _hex(mac: str) -> str:
    return mac.replace(":", "")


def random_scenario(rng: random.Random) -> dict:
    """A random topology, control sequence and frames, in the scenario format."""
    wire = rng.choice(["plain", "hairpin"])
    steps: list[dict] = []
    added: list[str] = []
    n_children = rng.randint(1, 4)
    for i in range(n_children):
        mode = rng.choice(MODES if i == 0 else [m for m in MODES if m != "passthru"] + ["passthru"] * 0)
        st: dict = {"do": "add", "name": NAMES[i], "mac": rng.choice(CHILD_MACS[: i + 2])}
        if mode:
            st["mode"] = mode
        if rng.random() < 0.15:
            st["type"] = "macvtap"
        if mode == "source" and rng.random() < 0.7:
            st["macaddr"] = rng.sample([STATION] + CHILD_MACS, rng.randint(1, 2))
        if mode in ("source", "passthru") and rng.random() < 0.3:
            st["flags"] = [rng.choice(["nodst", "nopromisc"])]
        steps.append(st)
        added.append(NAMES[i])
        steps.append({"do": "set", "name": NAMES[i], "up": True})
    marker = 0
    for _ in range(rng.randint(2, 10)):
        r = rng.random()
        name = rng.choice(added)
        if r < 0.55:
            marker += 1
            steps.append(_inject(rng, added, marker))
        elif r < 0.62:
            steps.append({"do": "set", "name": name, "up": rng.random() < 0.6})
        elif r < 0.67:
            steps.append({"do": "set", "name": name, "mac": rng.choice(CHILD_MACS + [PARENT])})
        elif r < 0.72:
            steps.append({"do": "set", "name": name, "mode": rng.choice(MODES[:5])})
        elif r < 0.76:
            steps.append({"do": rng.choice(["join", "leave"]), "name": name, "group": rng.choice(GROUPS)})
        elif r < 0.80:
            steps.append({"do": "set", "name": name, rng.choice(["allmulticast", "promisc"]): rng.random() < 0.5})
        elif r < 0.84:
            steps.append({"do": "set", "name": name, "macaddr": rng.choice([
                {"op": "add", "macs": [rng.choice([STATION] + CHILD_MACS)]},
                {"op": "del", "macs": [rng.choice([STATION] + CHILD_MACS)]},
                {"op": "set", "macs": rng.sample([STATION] + CHILD_MACS, 2)}, {"op": "flush", "macs": []}])})
        elif r < 0.87:
            steps.append({"do": "set", "name": name, "bclim": rng.choice([-1, 0, 1, 2])})
        elif r < 0.89:
            steps.append({"do": "set", "name": name, "bcqueuelen": rng.choice([0, 1000, 3000])})
        elif r < 0.92:
            steps.append({"do": "set", "name": name, "mtu": rng.choice([1000, 1500, 1600])})
        elif r < 0.95:
            steps.append({"do": "parent", rng.choice(["up", "carrier"]): rng.random() < 0.6})
        elif r < 0.97:
            steps.append({"do": "parent", "mtu": rng.choice([1200, 1500])})
        else:
            steps.append({"do": "del", "name": name})
    steps.append({"do": "show"})
    return {"parent": {"mac": PARENT}, "wire": wire, "steps": steps}


def _inject(rng: random.Random, added: list[str], marker: int) -> dict:
    origin = rng.choice(["wire", "wire", "parent"] + [f"child:{n}" for n in added])
    dst = rng.choice(CHILD_MACS + [PARENT, STATION, "02:00:00:00:00:77", "ff:ff:ff:ff:ff:ff"] + GROUPS
                     + ["01:80:c2:00:00:01"])
    if origin == "wire":
        src = rng.choice([STATION] * 3 + CHILD_MACS + [PARENT])
    elif origin == "parent":
        src = PARENT
    else:
        src = rng.choice(CHILD_MACS + [STATION])
    etype = "8808" if dst == "01:80:c2:00:00:01" and rng.random() < 0.7 else "88b5"
    payload = f"{marker:04x}" + "00" * rng.choice([2, 40, 1500])
    return {"do": "inject", "at": origin, "frame": _hex(dst) + _hex(src) + etype + payload}


@dataclass
class Finding:
    seed: int
    index: int
    scenario: dict
    diffs: list[str]
    path: Path | None = None


@dataclass
class FuzzReport:
    runs: int = 0
    invalid: int = 0
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0


def differs(scenario: dict, left, right) -> list[str]:
    try:
        sc = load_scenario(scenario)
    except ScenarioError:
        return []
    return diff_results(sc["steps"], left.run(sc), right.run(sc))


def shrink(scenario: dict, left, right, budget: int = 200) -> dict:
    """Greedy delta debugging over steps (then over add keys), keeping the difference."""
    best = json.loads(json.dumps(scenario))
    tries = 0
    changed = True
    while changed and tries < budget:
        changed = False
        i = 0
        while i < len(best["steps"]) and tries < budget:
            cand = json.loads(json.dumps(best))
            del cand["steps"][i]
            tries += 1
            if differs(cand, left, right):
                best = cand
                changed = True
            else:
                i += 1
    if best.get("wire") == "hairpin":
        cand = dict(best, wire="plain")
        if differs(cand, left, right):
            best = cand
    return best


def fuzz(left, right, n: int, seed: int, out_dir: Path, log=None, stop_after: int = 1,
         progress=None) -> FuzzReport:
    """``progress``: a :class:`~pymacvlan.progress.Progress` told each scenario (and its logs)."""
    rep = FuzzReport()
    t0 = time.monotonic()
    rng = random.Random(seed)
    if progress is not None:
        log = progress.log
    for i in range(n):
        if progress is not None:
            if i:
                progress.advance()
            progress.step(f"scenario {i}, {plural(len(rep.findings), 'difference')}")
        sc = random_scenario(rng)
        try:
            load_scenario(sc)
        except ScenarioError:
            rep.invalid += 1
            continue
        rep.runs += 1
        d = differs(sc, left, right)
        if d:
            small = shrink(sc, left, right)
            final = differs(small, left, right) or d
            out_dir.mkdir(parents=True, exist_ok=True)
            path = out_dir / f"fuzz-seed{seed}-{i}.json"
            small = dict(small, description=f"shrunk by pymacvlan fuzz --seed {seed} (scenario {i})")
            path.write_text(json.dumps(small, indent=1) + "\n")
            rep.findings.append(Finding(seed, i, small, final, path))
            if log:
                log(f"difference in scenario {i}; shrunk to {len(small['steps'])} steps: {path}")
                log("\n".join(final))
                log(f"replay: pymacvlan replay {path} --backend {left.name} --backend {right.name}")
            if len(rep.findings) >= stop_after:
                break
        if log and progress is None and (i + 1) % 100 == 0:
            log(f"{i + 1}/{n} scenarios, {len(rep.findings)} differences, {time.monotonic() - t0:.0f} s")
    if progress is not None and n:
        progress.advance()
    rep.seconds = time.monotonic() - t0
    return rep
