"""The documentation site builds with no warning (`mkdocs build --strict`), its generated parts
are current, and the README stays a short front door."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_site_builds_strictly_with_no_warning(tmp_path):
    pytest.importorskip("material", reason="mkdocs-material is in the test extra (pip install -e '.[test]')")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert warnings == []
    site = tmp_path / "site"
    # the generated reference names every command, and the figures were drawn
    cli = (site / "reference/cli/index.html").read_text()
    for cmd in ("link", "daemon", "vm-guest", "trace", "stats", "cni", "demo"):
        assert f"pymacvlan {cmd}" in cli, cmd
    for svg in ("modes-plain.svg", "modes-hairpin.svg", "macvtap.svg"):
        assert (site / "explanation" / svg).read_text().lstrip().startswith("<?xml"), svg


def test_readme_is_under_a_thousand_words_and_links_only_what_exists():
    text = (ROOT / "README.md").read_text()
    assert len(text.split()) < 1000
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if "://" not in target:
            assert (ROOT / target).exists(), target


def test_no_page_points_outside_the_repository_or_reads_like_a_lab_notebook():
    for page in (ROOT / "docs").rglob("*.md"):
        text = page.read_text()
        assert "shared/docs" not in text and "seed article" not in text, page
        assert "this machine" not in text, page


def test_reference_generator_covers_every_command():
    from pymacvlan.cli._reference import markdown
    from pymacvlan.cli.main import build_parser

    text = markdown()
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    for name in sub.choices:
        assert f"`pymacvlan {name}`" in text, name
