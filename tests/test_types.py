"""mypy in the test suite (so `pytest` in CI runs it): the model and the sans-IO engine
strictly, the daemon and CNI packages normally. Widen the lists as modules become clean;
never narrow them. pyproject.toml's [tool.mypy] says the same, so a plain `mypy` checks it too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "pymacvlan"
STRICT = ["model", "engine"]
NORMAL = ["daemon", "engine/state.py", "model", "cni"]


def _mypy(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir=/dev/null",
                           "--ignore-missing-imports", "--follow-imports=silent", *args],
                          capture_output=True, text=True, timeout=600, cwd=SRC.parent)


def test_the_model_and_engine_are_strictly_typed() -> None:
    r = _mypy("--strict", *[str(SRC / p) for p in STRICT])
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_daemon_package_type_checks() -> None:
    r = _mypy(*[str(SRC / p) for p in NORMAL])
    assert r.returncode == 0, r.stdout + r.stderr
