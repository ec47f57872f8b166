"""Who reaches whom: the mode table, computed by running the engine (never typed by hand).

For a sender and a receiver it injects one unicast (to the receiver's MAC) and one
broadcast, and records which reached the receiver's stack. Senders and receivers are
children in each mode, the parent's own stack and a station on the wire.
"""

from __future__ import annotations

from typing import Any

from .backends.sim import Simulation
from .scenario import load_scenario

MODES = ("private", "vepa", "bridge", "source", "passthru")
PARENT_MAC = "02:00:00:00:00:01"
STATION_MAC = "02:00:00:00:00:ee"


def _mac(i: int) -> str:
    return f"02:00:00:00:00:{i:02x}"


def _endpoints(sender: str, receiver: str) -> tuple[list[dict], str, str]:
    """Steps creating the children a (sender, receiver) pair needs, and their MACs."""
    steps: list[dict[str, Any]] = []
    macs = {"parent": PARENT_MAC, "wire": STATION_MAC}
    for role, who in (("S", sender), ("R", receiver)):
        if who in MODES:
            mac = PARENT_MAC if who == "passthru" else _mac(0x10 if role == "S" else 0x20)
            steps.append({"do": "add", "name": role, "mode": who, "mac": mac})
            if who == "source":  # a source child listing the station (its only way to get frames)
                steps[-1]["macaddr"] = [STATION_MAC]
            steps.append({"do": "set", "name": role, "up": True})
            macs[role] = mac
        else:
            macs[role] = macs[who]
    return steps, macs["S"], macs["R"]


def reach(sender: str, receiver: str, wire: str) -> tuple[bool, bool] | None:
    """(unicast reached, broadcast reached), or None when the pair cannot coexist."""
    if sender == receiver and sender in ("parent", "wire"):
        return None
    if "passthru" in (sender, receiver) and (sender in MODES and receiver in MODES):
        return None  # a passthru child is alone on its parent
    steps, smac, rmac = _endpoints(sender, receiver)
    at = {"parent": "parent", "wire": "wire"}.get(sender, "child:S")
    src = smac.replace(":", "")
    frames = [rmac.replace(":", "") + src + "88b5" + "01", "ffffffffffff" + src + "88b5" + "02"]
    steps += [{"do": "inject", "at": at, "frame": f} for f in frames]
    sc = load_scenario({"parent": {"mac": PARENT_MAC}, "wire": wire, "steps": steps})
    sim = Simulation(sc)
    results = [sim.step(s) for s in sc["steps"]]
    got = []
    for res in results[-2:]:
        obs = res.get("observed", {}) if res.get("ok") else {}
        if receiver == "parent":
            got.append(bool(obs.get("parent")))
        elif receiver == "wire":
            # a station on the wire receives what the parent transmits
            got.append(bool(obs.get("wire")))
        else:
            got.append(bool(obs.get("children", {}).get("R")))
    return got[0], got[1]


def mode_table(wire: str) -> str:
    """A Markdown table: rows are senders, columns receivers."""
    who = list(MODES) + ["parent", "wire"]
    label = {m: m for m in MODES} | {"parent": "parent's stack", "wire": "wire station"}
    head = "| from \\ to | " + " | ".join(label[w] for w in who) + " |"
    lines = [head, "|" + "---|" * (len(who) + 1)]
    for s in who:
        cells = []
        for r in who:
            res = reach(s, r, wire)
            cells.append("n/a" if res is None else {(True, True): "U B", (True, False): "U", (False, True): "B",
                                                   (False, False): "-"}[res])
        lines.append(f"| {label[s]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def readme_block() -> str:
    return "\n\n".join(
        f"**{'Plain wire' if w == 'plain' else 'Hairpin switch (VEPA / reflective relay)'}**\n\n{mode_table(w)}"
        for w in ("plain", "hairpin"))
