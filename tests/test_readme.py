"""The mode table in the docs is the engine's output, and the README's commands work as written."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from pymacvlan.reachability import readme_block

README = Path(__file__).resolve().parents[1] / "README.md"
MODES_PAGE = Path(__file__).resolve().parents[1] / "docs" / "explanation" / "how-macvlan-decides.md"
SECTION = "## The two commands"


def test_mode_table_is_generated_by_the_engine():
    text = MODES_PAGE.read_text()
    block = text.split("<!-- mode-table:begin -->\n", 1)[1].split("\n<!-- mode-table:end -->", 1)[0]
    assert block == readme_block(), "regenerate the table with `pymacvlan modes`"


def _quick_start_commands() -> list[list[str]]:
    text = README.read_text().split(SECTION, 1)[1].split("\n## ", 1)[0]
    cmds = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("pymacvlan "):
                cmds.append(shlex.split(line)[1:])
    return cmds


def test_quick_start_names_the_demo_and_the_tests():
    text = README.read_text().split(SECTION, 1)[1].split("\n## ", 1)[0]
    assert "pymacvlan demo" in text and "python3 -m pytest" in text
    assert "pymacvlan --version" in README.read_text()
    assert len(_quick_start_commands()) >= 8


def test_quick_start_sim_commands_run(tmp_path):
    """Every quick-start command that needs no host (sim backend) runs and exits 0; doctor and
    demo are covered by their own tests (they read or build live state)."""
    env = {**os.environ, "PMV_SIM_STATE": str(tmp_path / "sim.json")}
    ran = 0
    for args in _quick_start_commands():
        if args[0] in ("demo", "doctor"):
            continue
        args = [str(tmp_path / a) if a.endswith(".svg") else a for a in args]
        r = subprocess.run([sys.executable, "-m", "pymacvlan.cli.main", *args], env=env,
                           capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr
        ran += 1
    assert ran >= 6
    assert (tmp_path / "setup.svg").read_text().lstrip().startswith("<?xml")
