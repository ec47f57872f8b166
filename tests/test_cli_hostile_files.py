"""Undecodable, too deep and mistyped files (issue 19, item 5): apply, down, show and replay,
and a malformed ``--state`` journal, each end in one line naming the file, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pymacvlan.cli.main import main

FILES = {
    "latin1.toml": b"# caf\xe9\n[parents.p]\n",
    "latin1.json": b'{"name": "caf\xe9"}',
    "deep.toml": b"a = " + b"[" * 100_000 + b"]" * 100_000 + b"\n",
    "deep.json": b"[" * 100_000 + b"]" * 100_000,
    "children-int.toml": b"[parents.p]\nchildren = 5\n",
    "parent-list.toml": b"[parents]\np = [1]\n",
    "links-int.json": b'{"links": 5}',
}


def _run(capsys, argv: list[str]) -> tuple[int, str]:
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse
        rc = int(e.code or 0)
    out, err = capsys.readouterr()
    return rc, out + err


@pytest.mark.parametrize("name", sorted(FILES))
@pytest.mark.parametrize("cmd", [["apply"], ["apply", "--dry-run"], ["down"], ["show"], ["replay"]])
def test_a_hostile_file_is_one_line(capsys, tmp_path: Path, name: str, cmd: list[str]) -> None:
    f = tmp_path / name
    f.write_bytes(FILES[name])
    state = ["--state", str(tmp_path / "sim.json")] if cmd[0] in ("apply", "down") else []
    rc, text = _run(capsys, [*cmd, *state, str(f)])
    assert "Traceback" not in text and "Error:" not in text.replace("EINVAL", ""), text[-2000:]
    if rc != 0:
        first = [ln for ln in text.splitlines() if ln.startswith("pymacvlan")]
        assert first and (str(f) in first[0] or name in first[0]), text[-800:]


@pytest.mark.parametrize("content", [b"\xff\xfe", b"[" * 100_000, b"[1]", b'{"version": 1, "journal": 5}',
                                     b'{"version": 1, "journal": [5, {"op": 3}]}', b'{"version": "1"}'])
def test_a_malformed_state_journal_is_one_line(capsys, tmp_path: Path, content: bytes) -> None:
    st = tmp_path / "sim.json"
    st.write_bytes(content)
    rc, text = _run(capsys, ["--state", str(st), "link", "show"])
    assert rc != 0 and "Traceback" not in text, text[-2000:]
    assert str(st) in text and "rm " in text, text
    assert json.loads(json.dumps(text))  # printable
