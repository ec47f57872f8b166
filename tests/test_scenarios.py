"""The scenario suite (tests/scenarios/**/*.json) on the sim backend.

Every file must carry at least one ``expect``: a scenario that checks nothing cannot fail.
Expectations are partial (see pymacvlan.scenario.compare.check_expectations): only the keys a
step's ``expect`` gives are checked. On a mismatch the failure lists every differing step with
the sim's trace for it (who could have received the frame, and the rule that decided).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pymacvlan.backends.sim import SimBackend
from pymacvlan.scenario import check_expectations, load_scenario

ROOT = Path(__file__).parent / "scenarios"
FILES = sorted(ROOT.rglob("*.json"))


def _trace_lines(result: dict) -> list[str]:
    lines = []
    for entry in result.get("trace") or []:
        lines.append(f"    {entry['device']}: received {entry['received']}: " + " | ".join(entry["rules"]))
    for hop in result.get("path") or []:
        lines.append(f"    path: {hop}")
    return lines


def test_suite_is_big_enough():
    assert len(FILES) >= 100, f"only {len(FILES)} scenario files under {ROOT}"


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(ROOT)) for p in FILES])
def test_scenario_on_sim(path: Path):
    sc = load_scenario(path)
    checked = [i for i, s in enumerate(sc["steps"], 1) if "expect" in s]
    assert checked, (f"{path.relative_to(ROOT)} has no expect at all: it checks nothing "
                     "(record expectations with tools/record_expectations.py, or write them)")
    out = SimBackend(trace=True).run(sc)
    assert len(out["results"]) == len(sc["steps"])
    diffs = check_expectations(sc, out)
    if diffs:
        report = [f"{path.relative_to(ROOT)}: {len(diffs)} step(s) differ from the expectations"]
        if sc.get("description"):
            report.append(f"  ({sc['description']})")
        for d in diffs:
            report.append(d)
            m = re.match(r"step (\d+) ", d)
            if m:
                trace = _trace_lines(out["results"][int(m.group(1)) - 1])
                if trace:
                    report.append("  sim trace:")
                    report += trace
        pytest.fail("\n".join(report), pytrace=False)


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(ROOT)) for p in FILES])
def test_scenario_file_conventions(path: Path):
    """A description, and every injected frame unique in its file (the step number is in it)."""
    sc = load_scenario(path)
    assert sc.get("description"), f"{path.relative_to(ROOT)}: no description"
    frames = [s["frame"] for s in sc["steps"] if s["do"] == "inject"]
    dup = {f for f in frames if frames.count(f) > 1}
    assert not dup, f"{path.relative_to(ROOT)}: frames injected more than once: {sorted(dup)}"
