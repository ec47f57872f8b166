"""The daemon's state file: checksummed, the last good copy kept and used, formats upgraded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pymacvlan.daemon import state
from pymacvlan.daemon.state import LinkRecord


def _two(path: Path) -> list[LinkRecord]:
    recs = [LinkRecord("eth0", "p0", netns="A", ifindex=7, address="02:00:00:00:00:0a"),
            LinkRecord("eth0", "p0", netns="B", ifindex=8)]
    state.save(str(path), recs[:1])
    state.save(str(path), recs)
    return recs


def test_round_trip_and_nothing_to_restore(tmp_path: Path) -> None:
    p = tmp_path / "state.json"
    assert state.load(str(p)) == ([], None)
    recs = _two(p)
    assert state.load(str(p)) == (recs, None)
    assert state.load(str(state.previous_path(str(p)))) == (recs[:1], None)  # the one before


@pytest.mark.parametrize("damage", ["torn", "bitflip", "empty"])
def test_damaged_file_is_detected_and_the_last_good_copy_used(tmp_path: Path, damage: str) -> None:
    p = tmp_path / "state.json"
    recs = _two(p)
    text = p.read_text()
    if damage == "torn":
        p.write_text(text[: len(text) // 2])
    elif damage == "bitflip":  # still valid JSON: only the checksum can tell
        p.write_text(text.replace('"ifindex": 8', '"ifindex": 9'))
    else:
        p.write_text("")
    got, warning = state.load(str(p))
    assert got == recs[:1]
    assert warning is not None and "last good copy" in warning
    assert (tmp_path / "state.json.bad").read_text() != text and not p.exists()


def test_a_bad_file_never_becomes_the_last_good_copy(tmp_path: Path) -> None:
    p = tmp_path / "state.json"
    recs = _two(p)
    p.write_text("{garbage")
    state.save(str(p), recs)
    assert state.load(str(state.previous_path(str(p))))[0] == recs[:1]


def test_format_1_is_upgraded_at_once_and_a_newer_one_kept_and_read(tmp_path: Path) -> None:
    """Format 1 has no checksum: its records are type-checked and the file rewritten with one
    on load. A newer format never stops the daemon: kept whole as .newer, what this version
    understands restored (issue 19: it used to refuse to start)."""
    p = tmp_path / "state.json"
    p.write_text(json.dumps({"version": 1, "links": [{"name": "m0", "parent": "eth0", "mode": 4}]}))
    recs, warning = state.load(str(p))
    assert warning is None and recs[0].name == "m0" and recs[0].ifindex is None
    data = json.loads(p.read_text())
    assert data["version"] == state.STATE_VERSION and "sha256" in data
    newer = json.dumps({"version": state.STATE_VERSION + 1, "new": 1,
                        "links": [{"name": "m1", "parent": "eth0", "mode": 4, "future": True}, {"mode": "x"}]})
    p.write_text(newer)
    recs, warning = state.load(str(p))
    assert [r.name for r in recs] == ["m1"] and "newer" in warning and "1 not" in warning
    assert (tmp_path / "state.json.newer").read_text() == newer  # kept whole


def test_neither_copy_usable_starts_empty_and_says_so(tmp_path: Path) -> None:
    p = tmp_path / "state.json"
    p.write_text("nope")
    recs, warning = state.load(str(p))
    assert recs == [] and "starting empty" in warning


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    """Issue 25: `daemon --state DIR` left `.DIR.<pid>.tmp` behind."""
    d = tmp_path / "statedir"
    d.mkdir()
    with pytest.raises(OSError):
        state.write_atomic(str(d), "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["statedir"]


def test_daemon_with_a_directory_as_state_refuses_before_making_anything(tmp_path: Path) -> None:
    """Issue 25: it said "starting empty", then exited, leaving a temporary file and its socket."""
    from pymacvlan.daemon.server import Daemon, DaemonConfig
    from pymacvlan.model import KernelError

    d = tmp_path / "statedir"
    d.mkdir()
    sock = tmp_path / "run" / "control.sock"
    with pytest.raises(KernelError) as e:
        Daemon(DaemonConfig(str(sock), str(d))).start()
    assert e.value.errno_name == "EISDIR" and f"--state {d / 'state.json'}" in e.value.advice
    assert not sock.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["statedir"]
