"""`pymacvlan demo`: the engine's predictions, the engine-only fallback, and the live run on
both backends (userspace and kernel) with its cleanup."""

from __future__ import annotations

import json
import os

import pytest

from pymacvlan import demo, netlab
from pymacvlan.cli.main import main
from pymacvlan.demo import Outcome, pairs, predict, render, run_demo
from tests.ci import skip_or_fail

AP, A_, _P, NONE = Outcome(True, True), Outcome(True, False), Outcome(False, True), Outcome(False, False)


def require_live(backend: str = "userspace") -> None:
    why = netlab.live_unavailable(need_tun=backend == "userspace")
    if why is None:
        return
    skip_or_fail(why)


# -- predictions (engine only) -------------------------------------------------------------------
def test_pairs_leave_out_what_cannot_exist():
    assert ("a", "b") in pairs("bridge") and len(pairs("bridge")) == 10
    assert all("b" not in p for p in pairs("passthru"))  # a passthru child is alone
    assert ("station", "host") not in pairs("vepa")


def test_predictions_plain_wire():
    assert predict("bridge")[("a", "b")] == AP
    for mode in ("private", "vepa", "source"):
        assert predict(mode)[("a", "b")] == NONE, mode
    for mode in demo.MODES:
        p = predict(mode)
        assert p[("station", "a")] == AP and p[("a", "station")] == AP, mode
        assert p[("a", "host")] == NONE and p[("host", "a")] == NONE, mode  # the famous complaint


def test_predictions_hairpin_wire_private_is_unicast_only():
    p = predict("private", "hairpin")
    assert p[("a", "b")] == _P  # the seed article: ARP blocked, unicast works with static neighbours
    assert p[("host", "a")] == AP
    assert predict("vepa", "hairpin")[("a", "b")] == AP


def test_engine_only_when_not_root(monkeypatch, capsys):
    monkeypatch.setattr(netlab.os, "geteuid", lambda: 1000)
    assert main(["demo", "--mode", "private", "--mode", "bridge"]) == 0
    cap = capsys.readouterr()
    assert "engine only (not root" in cap.out
    assert "== private ==" in cap.out and "== bridge ==" in cap.out and "== vepa ==" not in cap.out
    assert "run as root" in cap.out
    assert "not going live" in cap.err


def test_engine_only_json(monkeypatch, capsys):
    monkeypatch.setattr(netlab.os.path, "exists", lambda p: False if p == "/dev/net/tun" else os.path.lexists(p))
    monkeypatch.setattr(netlab.os, "geteuid", lambda: 0)
    assert main(["demo", "-j", "-q", "--mode", "bridge"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["live"] is False and "/dev/net/tun" in out["why_not_live"]
    assert out["modes"]["bridge"]["engine"]["a->b"] == {"arp": True, "ping": True}
    assert out["modes"]["bridge"]["live"] is None


def test_the_legend_explains_every_kind_of_cell(capsys):
    """Issue 25: the legend left out `.` (the device itself) and the blank cell (not tried)."""
    assert main(["demo", "--engine-only"]) == 0
    out = capsys.readouterr().out
    legend = next(line for line in out.splitlines() if line.startswith("cells:"))
    kinds: set[str] = set()
    for line in out.splitlines():
        if line.startswith("    ") and not line.strip().startswith("from"):
            cells = [line[4 + 8 * i: 12 + 8 * i].strip() for i in range(1, 5)]
            kinds |= {ch for c in cells for ch in c} | ({"blank"} if "" in cells else set())
    assert {".", "blank", "A", "P", "-"} <= kinds
    for k in kinds:
        assert (f"{k} = " in legend), (k, legend)


def test_render_marks_a_difference():
    rep = demo.DemoReport("userspace", "plain")
    run = demo.ModeRun("bridge", predict("bridge"))
    run.live = dict(run.predicted)
    run.live[("a", "b")] = _P
    rep.runs.append(run)
    text = render(rep)
    assert "-P!" in text and "1 DIFFER" in text
    assert rep.mismatches() == 1


# -- live --------------------------------------------------------------------------------------------
@pytest.mark.live
def test_live_userspace_every_mode_agrees_with_the_engine():
    require_live("userspace")
    lines = []
    rep = run_demo("userspace", "plain", progress=lines.append)
    assert rep.live, rep.why_not_live
    assert [r.mode for r in rep.runs] == list(demo.MODES)
    assert rep.probes() == 44
    bad = {r.mode: r.mismatches() for r in rep.runs if r.mismatches()}
    assert not bad, render(rep)
    assert rep.throughput is not None and rep.throughput[0] > 0
    assert not rep.leftovers
    assert any("probing" in m for m in lines) and lines[-1].startswith("removed namespaces")


@pytest.mark.live
def test_live_kernel_hairpin_private_and_passthru(capsys):
    require_live("kernel")
    assert main(["demo", "--backend", "kernel", "--wire", "hairpin", "--mode", "private",
                 "--mode", "passthru", "-q"]) == 0
    out = capsys.readouterr().out
    assert "agree on 14 of 14 probes" in out
    assert "nothing left behind" in out


@pytest.mark.live
def test_live_userspace_hairpin_needs_the_shield_to_match_the_kernel():
    """Without the eBPF shield the parent's own stack also gets the private child's reflected
    ARP (AF_PACKET only copies): the demo shows that difference instead of hiding it."""
    require_live("userspace")
    rep = run_demo("userspace", "hairpin", modes=("private",), shield=False)
    assert ("a", "host") in rep.runs[0].mismatches()
    assert rep.notes and "shield" in rep.notes[0]
    assert not rep.leftovers


@pytest.mark.live
def test_live_cleans_up_after_an_error(monkeypatch):
    require_live("userspace")
    tags = []
    real_lab = netlab.Lab

    class SpyLab(real_lab):
        def __init__(self):
            super().__init__()
            tags.append(self.tag)

    def boom(*a, **kw):
        raise RuntimeError("injected failure in the middle of a mode")

    monkeypatch.setattr(netlab, "Lab", SpyLab)
    monkeypatch.setattr(demo, "_probe", boom)
    with pytest.raises(RuntimeError, match="injected"):
        run_demo("userspace", "plain", modes=("bridge",))
    assert tags and not netlab.leftovers(tags[0])
