"""The generated CNI fuzz (tools/cni_fuzz.py), short, live: hostile configs and environments
for every command through the plugin's entry point; no traceback, always the spec's JSON,
nothing left behind. The full run (100,000 examples) is the tool's default."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .conftest import live_marks

pytestmark = live_marks()

ROOT = Path(__file__).resolve().parents[2]


def test_cni_fuzz_short_run() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "cni_fuzz.py"), "--examples", "1500", "--seed", "19"],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "cni fuzz: 1500 examples" in r.stdout and "ADD succeeded" in r.stdout, r.stdout
