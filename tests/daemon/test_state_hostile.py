"""Hostile state files (issue 19, item 4): a bad record is set aside with its reason and the
daemon starts with the rest; temporary files are O_EXCL|O_NOFOLLOW; and a hypothesis fuzz of
damaged files (truncated, bit flips, wrong types, other formats): load never raises, never
loses a good record."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pymacvlan.daemon import state
from pymacvlan.daemon.state import LinkRecord

GOOD = [LinkRecord("eth0", "p0", netns="A", ifindex=7, address="02:00:00:00:00:0a", mode=4),
        LinkRecord("vm0", "p0", kind="macvtap", mode=1, up=True),
        LinkRecord("m2", "p1", mode=8, mtu=1400)]


def _file(links: list, version: int = state.STATE_VERSION) -> str:
    data: dict = {"version": version, "links": links}
    if version >= 2:
        data["sha256"] = state._digest(version, links)
    return json.dumps(data)


@pytest.mark.parametrize("bad,why", [({"name": "x", "parent": "p0", "mode": 99}, "not a valid link"),
                                     ({"name": "x", "parent": "p0", "mode": "4"}, "'mode' is str"),
                                     ({"name": "x", "parent": "p0", "up": 1}, "'up' is int"),
                                     ({"name": "x", "parent": "p0", "address": "zz"}, "not a valid link"),
                                     ({"name": "x", "parent": "p0", "kind": "veth"}, "neither macvlan"),
                                     ({"name": "a" * 16, "parent": "p0"}, "not an interface name"),
                                     ({"parent": "p0"}, "no 'name'"), ([1, 2], "must be an object")])
def test_a_bad_record_is_set_aside_with_its_reason_and_the_rest_restored(tmp_path: Path, bad, why) -> None:
    p = tmp_path / "state.json"
    good = [dataclasses.asdict(r) for r in GOOD]
    p.write_text(_file(good[:1] + [bad] + good[1:]))
    recs, warning = state.load(str(p))
    assert recs == GOOD
    assert warning is not None and "1 bad record set aside" in warning and "state.json.bad" in warning
    aside = json.loads((tmp_path / "state.json.bad").read_text())["bad_records"]
    assert aside[0]["record"] == bad and why in aside[0]["reason"], aside
    assert state.load(str(p)) == (GOOD, None)  # rewritten without it: the next start is clean


def test_temporary_files_never_follow_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("precious")
    p = tmp_path / "state.json"
    os.symlink(target, tmp_path / f".state.json.{os.getpid()}.tmp")
    state.save(str(p), GOOD)
    assert target.read_text() == "precious" and state.load(str(p)) == (GOOD, None)


def _mutations():
    good = [dataclasses.asdict(r) for r in GOOD]
    wrong = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.text(max_size=8),
                      st.lists(st.integers(), max_size=2),
                      st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
    retyped = st.tuples(st.integers(0, len(good) - 1), st.sampled_from(sorted(state._FIELDS) + ["zz"]), wrong)
    return st.one_of(
        st.tuples(st.just("truncate"), st.integers(0, 10_000)),
        st.tuples(st.just("bitflip"), st.integers(0, 10_000), st.integers(0, 7)),
        st.tuples(st.just("retype"), st.lists(retyped, min_size=1, max_size=3)),
        st.tuples(st.just("version"), st.one_of(st.integers(-3, 9), st.text(max_size=3), st.none())),
        st.tuples(st.just("format1"), st.lists(retyped, max_size=2)),
        st.tuples(st.just("garbage"), st.binary(max_size=200)),
        st.tuples(st.just("deep"), st.integers(1, 100_000)),
    )


@settings(max_examples=int(os.environ.get("PMV_STATE_FUZZ", "400")), deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(m=_mutations())
def test_state_file_fuzz_always_starts_and_keeps_every_good_record(tmp_path_factory, m) -> None:
    d = tmp_path_factory.mktemp("st")
    p = d / "state.json"
    good = [dataclasses.asdict(r) for r in GOOD]
    state.save(str(p), GOOD[:1])  # the last good copy: the first record
    state.save(str(p), GOOD)
    text = p.read_bytes()
    expect_all = True  # the records that must come back (None: the file is damaged, .prev's)
    kind = m[0]
    if kind == "truncate":
        p.write_bytes(text[: m[1] % max(1, len(text))])
        expect_all = False
    elif kind == "bitflip":
        i = m[1] % len(text)
        p.write_bytes(text[:i] + bytes([text[i] ^ (1 << m[2])]) + text[i + 1:])
        expect_all = False
    elif kind in ("retype", "format1"):
        links = json.loads(json.dumps(good))
        for idx, key, v in m[1]:
            links[idx][key] = v
        p.write_text(_file(links, 1 if kind == "format1" else state.STATE_VERSION))
    elif kind == "version":
        p.write_text(json.dumps({"version": m[1], "links": good}))
        expect_all = isinstance(m[1], int) and not isinstance(m[1], bool) and m[1] in (1,) or m[1] == 3
    elif kind == "garbage":
        p.write_bytes(m[1])
        expect_all = False
    else:
        p.write_bytes(b"[" * m[1] + b"]" * m[1])
        expect_all = False
    recs, warning = state.load(str(p))  # never raises
    names = {r.key for r in recs}
    if kind in ("retype", "format1"):
        # every record that still checks is restored: none is lost with a bad neighbour
        for r in GOOD:
            touched = {idx for idx, _k, _v in m[1]}
            if GOOD.index(r) not in touched:
                assert r.key in names, (m, names, warning)
    elif expect_all:
        assert names == {r.key for r in GOOD}, (m, warning)
    else:
        assert names in ({r.key for r in GOOD}, {GOOD[0].key}, set()), (m, names)
        if names == set():
            assert warning is not None
    # and the next start works from whatever the daemon saves now
    state.save(str(p), recs)
    assert {r.key for r in state.load(str(p))[0]} == names
