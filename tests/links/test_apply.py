"""`pymacvlan apply/down FILE.toml` on the sim backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "lab.toml"


def show(cli) -> dict[str, dict]:
    return {d["ifname"]: d for d in json.loads(cli("-j", "-d", "link", "show")[0])}


def test_example_applies_idempotently_and_comes_down(cli):
    out, _ = cli("apply", "--dry-run", str(EXAMPLE))
    assert out.splitlines()[-1] == "(dry run: 7 changes not made)"
    assert show(cli) == {}
    out, _ = cli("apply", str(EXAMPLE))
    plan = out.splitlines()
    assert plan[0] == "+ add web (macvlan bridge on eth0 address 02:00:00:00:01:01)"
    assert "+ add vf0 (macvlan passthru on eth1 flag nopromisc)" in plan
    links = show(cli)
    assert links["db"]["mtu"] == 1400 and "UP" in links["db"]["flags"]
    assert links["uplink"]["linkinfo"]["info_data"]["nodst"] is True
    assert sorted(links["sniff"]["linkinfo"]["info_data"]["macaddr_data"]) == ["02:00:00:00:0a:01", "02:00:00:00:0a:02"]
    assert links["vm0"]["linkinfo"] == {"info_kind": "macvtap", "info_data": {
        "mode": "bridge", "bcqueuelen": 2000, "usedbcqueuelen": 2000}}
    assert links["vf0"]["linkinfo"]["info_data"]["nopromisc"] is True
    out, _ = cli("apply", str(EXAMPLE))
    assert out == f"{EXAMPLE}: nothing to change (sim)\n"
    out, _ = cli("down", str(EXAMPLE))
    assert "- del web" in out and "- del eth0 (sim parent)" in out
    assert show(cli) == {}
    out, _ = cli("down", str(EXAMPLE))
    assert "nothing to change" in out


def test_drift_is_repaired_with_a_readable_plan(cli):
    cli("apply", str(EXAMPLE))
    cli("link", "set", "web", "type", "macvlan", "mode", "vepa")
    cli("link", "set", "db", "mtu", "1500", "down")
    cli("link", "set", "sniff", "type", "macvlan", "macaddr", "flush")
    cli("link", "del", "guest")
    out, _ = cli("apply", "--dry-run", str(EXAMPLE))
    assert out.splitlines() == [
        "~ set web mode vepa -> bridge",
        "~ set db mtu 1500 -> 1400, down -> up",
        "+ add guest (macvlan private on eth0 address 02:00:00:00:01:03)",
        "~ set sniff source [] -> [02:00:00:00:0a:01 02:00:00:00:0a:02]",
        "(dry run: 4 changes not made)",
    ]
    cli("apply", str(EXAMPLE))
    assert "nothing to change" in cli("apply", str(EXAMPLE))[0]


def test_kind_or_passthru_changes_recreate(cli, tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('[parents.eth0.children.m]\nkind = "macvtap"\nmode = "bridge"\n')
    cli("link", "add", "link", "eth0", "name", "m", "type", "macvlan", "mode", "bridge")
    out, _ = cli("apply", str(f))
    assert out.splitlines()[:2] == ["- del m (kind macvlan -> macvtap: re-created)", "+ add m (macvtap bridge on eth0)"]
    assert show(cli)["m"]["linkinfo"]["info_kind"] == "macvtap"


def test_prune_deletes_only_with_the_flag(cli, tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('[parents.eth0.children.keep]\nmode = "bridge"\n')
    cli("link", "add", "link", "eth0", "name", "stray", "type", "macvlan")
    cli("apply", str(f))
    assert "stray" in show(cli)
    out, _ = cli("apply", "--prune", str(f))
    assert out.splitlines()[0] == f"- del stray (not in {f})"
    assert set(show(cli)) == {"eth0", "keep"}


def test_a_plan_that_would_fail_half_way_is_refused_before_any_change(cli, tmp_path):
    """Issue 19: apply made `a` and then failed at `b`; --dry-run had passed the file. Both now
    rehearse the whole plan first: refused, nothing made, the same answer from the dry run."""
    f = tmp_path / "s.toml"
    f.write_text('[parents.eth0.children.a]\nmac = "02:00:00:00:00:01"\n'
                 '[parents.eth0.children.b]\nmac = "02:00:00:00:00:01"\n')
    for dry in (["--dry-run"], []):
        _, err = cli("apply", *dry, str(f), rc=2)
        lines = err.splitlines()
        assert lines[0] == "refused: + add b (macvlan (default mode) on eth0 address 02:00:00:00:00:01)"
        assert lines[1] == "RTNETLINK answers: Address already in use"
        assert lines[-1] == "nothing was changed; fix the file and apply again"
        assert "02:00:00:00:00:01 is already in use by child a" in err
        assert "a" not in show(cli)


def test_passthru_beside_another_child_is_refused_by_the_dry_run_too(cli, tmp_path):
    f = tmp_path / "p.toml"
    f.write_text('[parents.eth0.children.a]\nmode = "bridge"\n[parents.eth0.children.b]\nmode = "passthru"\n')
    _, err = cli("apply", "--dry-run", str(f), rc=2)
    assert "passthru must be the only one" in err


def test_a_files_backend_never_switches_the_command_lines(cli, tmp_path):
    """Issue 19: `backend = "kernel"` in a TOML moved `apply` onto the host's kernel, no flag."""
    f = tmp_path / "k.toml"
    f.write_text('backend = "kernel"\n[parents.eth0.children.a]\nmode = "bridge"\n')
    for cmd in (["apply"], ["apply", "--dry-run"], ["down"]):
        _, err = cli(*cmd, str(f), rc=2)
        assert "is for the kernel backend, and this command runs on sim" in err and "--backend kernel" in err
    g = tmp_path / "s.toml"
    g.write_text('backend = "sim"\n[parents.eth0.children.a]\nmode = "bridge"\n')
    cli("apply", str(g))  # the same backend: applied
    assert "a" in show(cli)


@pytest.mark.parametrize("text,words", [
    ("[parents.eth0.children.m]\nmode = \"bridg\"\n", "parents.eth0.children.m.mode: 'bridg'"),
    ("[parents.eth0.children.m]\ncolour = 1\n", "unknown key 'colour'"),
    ("[parents.eth0.children.m]\nflags = [\"nopromisc\"]\n", "nopromisc is only valid"),
    ("[parents.eth0.children.m]\nmac = \"zz\"\n", "is not a MAC address"),
    ("[parents.eth0.children.m]\nsource = [\"02:00:00:00:00:01\"]\n", "needs mode = \"source\""),
    ("[parents.eth0.children.m]\nmtu = 10\n", "outside 68..65535"),
    ("x = 1\n", "unknown key 'x'"),
    ("[parents.eth0.children.m\n", "not valid TOML"),
    ("backend = 'sim'\n", "no [parents.NAME] table"),
])
def test_bad_files_are_one_clear_line(cli, tmp_path, text, words):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    _, err = cli("apply", str(f), rc=2)
    assert len(err.splitlines()) == 1 and words in err and str(f) in err


def test_a_child_that_cannot_come_up_is_not_left_behind(cli, tmp_path):
    """Issue 18: apply makes each child in one request with `up`, as `link add ... up` does: a
    child whose MAC an up sibling holds cannot come up (EADDRINUSE) and is removed again, not
    left down (apply used to add it, then fail the separate `set up`)."""
    f = tmp_path / "clash.toml"
    f.write_text('[parents.eth0]\n\n[parents.eth0.children.a]\nmode = "bridge"\nmac = "02:00:00:00:19:01"\n\n'
                 '[parents.eth0.children.b]\nmode = "bridge"\nmac = "02:00:00:00:19:01"\n')
    _, err = cli("apply", str(f), rc=2)
    assert "+ add b" in err and "Address already in use" in err
    assert "b" not in show(cli)
