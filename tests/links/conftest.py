"""Helpers for the `pymacvlan link` / `apply` tests: run the CLI in-process, capture its output."""

from __future__ import annotations

import pytest

from pymacvlan.cli.main import main


class Cli:
    def __init__(self, capsys, base: list[str]) -> None:
        self.capsys = capsys
        self.base = base

    def __call__(self, *words: str, rc: int = 0) -> tuple[str, str]:
        """Run `pymacvlan BASE WORDS...`; assert the exit code; return (stdout, stderr)."""
        self.capsys.readouterr()
        code = main([*self.base, *words])
        out, err = self.capsys.readouterr()
        assert code == rc, f"pymacvlan {' '.join([*self.base, *words])} -> {code}\nstdout:{out}\nstderr:{err}"
        return out, err


@pytest.fixture
def sim_state(tmp_path, monkeypatch):
    path = tmp_path / "sim.json"
    monkeypatch.setenv("PMV_SIM_STATE", str(path))
    return path


@pytest.fixture
def cli(capsys, sim_state):
    """The CLI on the sim backend, with a state file of this test's own."""
    return Cli(capsys, [])
