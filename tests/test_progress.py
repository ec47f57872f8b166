"""Progress of long jobs: plain lines when not on a terminal, a rich bar on one; and the jobs
that use it (fuzz, a conformance run of several scenario files)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from pymacvlan import progress as progress_mod
from pymacvlan.progress import Progress

ROOT = Path(__file__).resolve().parents[1]
SPEC = sorted((ROOT / "tests" / "scenarios" / "spec").glob("*.json"))


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_say_how_far_what_and_how_long_is_left(monkeypatch) -> None:
    monkeypatch.setattr(progress_mod, "PLAIN_EVERY", 0.0)
    out = io.StringIO()
    with Progress(4, "job", out) as p:
        for i in range(4):
            p.step(f"item {i}")
            p.advance()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("job: 1/4 (item 0), ") and lines[0].endswith("s left")
    assert lines[-1].startswith("job: 4/4, ") and lines[-1].endswith("done")


def test_plain_mode_is_quiet_between_its_lines() -> None:
    out = io.StringIO()
    with Progress(1000, "job", out) as p:
        for _ in range(1000):
            p.advance()
    assert out.getvalue().splitlines() == [out.getvalue().splitlines()[-1]]  # only the final line
    assert p.left() == 0


def test_a_terminal_gets_a_bar_with_the_count_and_the_current_step() -> None:
    out = Tty()
    with Progress(3, "job", out) as p:
        assert not p.plain
        p.step("the second")
        p.advance(3)
    text = out.getvalue()
    assert "job" in text and "3/3" in text and "the second" in text


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pymacvlan.cli.main", *args], capture_output=True, text=True,
                          timeout=300, env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})


def test_a_conformance_run_over_several_files_summarises_and_fails_on_a_difference(tmp_path: Path) -> None:
    r = run("replay", *map(str, SPEC[:5]), "--backend", "sim", "--backend", "sim", "--check")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("sim and sim agree") == 5
    assert "replay sim vs sim: 5/5" in r.stderr and "5/5 scenario files passed" in r.stderr
    # one backend: one JSON object per file, named
    r = run("replay", *map(str, SPEC[:2]), "--backend", "sim")
    assert [json.loads(line)["scenario"] for line in r.stdout.splitlines()] == list(map(str, SPEC[:2]))
    # a file whose expectations are wrong fails the run and is named
    sc = json.loads(SPEC[0].read_text())
    step = next(s for s in sc["steps"] if s["do"] == "show" or "expect" in s)
    step["expect"] = {"ok": False, "errno": "EPERM"}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(sc))
    r = run("replay", str(SPEC[1]), str(bad), "--check")
    assert r.returncode == 1 and f"failed: {bad}" in r.stderr and "1/2 scenario files passed" in r.stderr


def test_fuzz_reports_progress_and_its_summary() -> None:
    r = run("fuzz", "--against", "sim", "-n", "20")
    assert r.returncode == 0, r.stderr
    assert "fuzz sim vs sim: 20/20" in r.stderr and "0 differences" in r.stdout
