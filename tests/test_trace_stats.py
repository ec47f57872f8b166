"""`pymacvlan trace` and `pymacvlan stats`: output and errors on the sim (any user), the
kernel backend's stats (root, a pmv namespace), and the userspace errors without a daemon.
The userspace live paths are in tests/backends/userspace/test_daemon.py."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from pymacvlan.cli.main import main
from pymacvlan.links import LinkChange, LinkRequest, get_driver
from pymacvlan.model import Mode
from tests.ci import in_ci

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def sim(tmp_path: Path, monkeypatch):
    """Two up children on sim parent eth0: m0 bridge (02:..:0a), m1 private."""
    state = tmp_path / "sim.json"
    monkeypatch.setenv("PMV_SIM_STATE", str(state))
    d = get_driver("sim", state=str(state))
    d.add(LinkRequest("eth0", "m0", mode=Mode.BRIDGE, address=bytes.fromhex("02000000000a")))
    d.add(LinkRequest("eth0", "m1", mode=Mode.PRIVATE, address=bytes.fromhex("02000000000b")))
    d.add(LinkRequest("eth0", "m2", mode=Mode.BRIDGE, address=bytes.fromhex("02000000000c")))
    for n in ("m0", "m1", "m2"):
        d.set(n, LinkChange(up=True))
    return d


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_sim_trace_explains_a_broadcast_from_the_wire(sim, capsys) -> None:
    rc, out, err = run(capsys, "trace", "--dst", "ff:ff:ff:ff:ff:ff", "--ethertype", "0x0806")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == "02:00:00:00:00:ee > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 60: from wire on eth0"
    assert lines[1] == "    [1] frame arrives at the parent from the wire"
    rows = {ln.split()[0]: ln for ln in lines if ln.startswith("  ") and not ln.startswith("    ")}
    assert "got it" in rows["m0"] and "got it" in rows["m1"] and "got it" in rows["@parent"]
    assert lines[-2] == "  delivered to: @parent, m0, m1, m2"


def test_sim_trace_private_child_reaches_only_the_wire(sim, capsys) -> None:
    rc, out, _ = run(capsys, "trace", "--at", "m1", "--dst", "ff:ff:ff:ff:ff:ff", "-j")
    assert rc == 0
    ev = json.loads(out)
    assert ev["from"] == "m1" and ev["src"] == "02:00:00:00:00:0b" and ev["delivered"] == ["@wire"]
    siblings = {t["device"]: t for t in ev["trace"]}
    assert siblings["m0"]["received"] == 0
    # bridge children talk to each other locally: unicast m0 → m2 never touches the wire
    rc, out, _ = run(capsys, "trace", "--at", "m0", "--dst", "02:00:00:00:00:0c", "-j")
    assert json.loads(out)["delivered"] == ["m2"]


def test_sim_trace_with_a_hairpin_wire_and_a_whole_frame(sim, capsys) -> None:
    frame = "02000000000b" + "02000000000a" + "88b5" + "00" * 46
    rc, out, _ = run(capsys, "trace", "--at", "m0", "--frame", frame, "--wire", "hairpin", "-j")
    ev = json.loads(out)
    assert rc == 0 and ev["wire"] == "hairpin" and ev["len"] == 60
    # bridge → private sibling: out to the switch, reflected, delivered by the parent
    assert "m1" in ev["delivered"] and any("reflects" in h for h in ev["path"])


def test_sim_trace_takes_a_scenario_setup(capsys) -> None:
    rc, out, err = run(capsys, "trace", "--scenario", str(ROOT / "examples" / "private-mode.json"),
                       "--dst", "ff:ff:ff:ff:ff:ff", "-j")
    assert rc == 0, err
    ev = json.loads(out)
    assert ev["parent"] == "parent" and ev["from"] == "wire"
    assert len([t for t in ev["trace"] if not t["device"].startswith("@")]) >= 2


@pytest.mark.parametrize("argv, errno_name, rc", [
    (["trace"], "EINVAL", 2),
    (["trace", "--frame", "zz"], "EINVAL", 2),
    (["trace", "--frame", "0011"], "EINVAL", 2),
    (["trace", "--dst", "ff:ff:ff:ff:ff:ff", "--ethertype", "xyz"], "EINVAL", 2),
    (["trace", "--at", "nosuch", "--dst", "02:00:00:00:00:01"], "ENODEV", 1),
    (["trace", "--parent", "eth9", "--dst", "02:00:00:00:00:01"], "ENODEV", 1),
    (["trace", "--backend", "kernel", "--frame", "00" * 14], "EINVAL", 2),
    (["stats", "nosuch"], "ENODEV", 1),
])
def test_errors_are_one_line_with_the_errno(sim, capsys, argv, errno_name, rc) -> None:
    got, out, err = run(capsys, *argv)
    assert got == rc
    assert err.count("\n") == 1 and err.startswith(f"pymacvlan {argv[0]}: {errno_name}: "), err


def test_sim_trace_of_a_down_child_says_so(sim, capsys) -> None:
    sim.set("m2", LinkChange(up=False))
    rc, _, err = run(capsys, "trace", "--at", "m2", "--dst", "02:00:00:00:00:0a")
    assert rc == 1 and "ENETDOWN" in err


def test_empty_sim_has_nothing_to_trace(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("PMV_SIM_STATE", str(tmp_path / "empty.json"))
    rc, _, err = run(capsys, "trace", "--dst", "ff:ff:ff:ff:ff:ff")
    assert rc == 1 and "ENODEV" in err and "link add" in err


@pytest.mark.parametrize("cmd", [["trace", "--backend", "userspace"], ["stats", "--backend", "userspace"]])
def test_userspace_without_a_daemon(tmp_path, capsys, cmd) -> None:
    rc, _, err = run(capsys, *cmd, "--socket", str(tmp_path / "no.sock"))
    assert rc == 1 and "ECONNREFUSED" in err and "pymacvlan daemon" in err and "Traceback" not in err


def test_sim_stats_of_a_replayed_scenario_match_its_show(capsys) -> None:
    path = ROOT / "examples" / "private-mode.json"
    rc, out, _ = run(capsys, "stats", "--scenario", str(path), "-j")
    assert rc == 0
    rep = json.loads(out)
    # the same counters the scenario's own `show` reports, from an independent replay
    rc, replay, _ = run(capsys, "replay", str(path))
    results = json.loads(replay)["results"]
    assert "state" in results[-1], "the example ends with a show step: its counters are the final ones"
    children = rep["parents"]["parent"]["children"]
    shown = results[-1]["state"]["children"]
    assert set(children) == set(shown)
    for name, st in shown.items():
        assert (children[name]["rx"], children[name]["tx"]) == (st["stats64"]["rx"], st["stats64"]["tx"]), name
    assert sum(c["tx"]["packets"] for c in children.values()) > 0
    assert "engine_drops" in rep["parents"]["parent"]
    rc, text, _ = run(capsys, "stats", "--scenario", str(path))
    assert text.splitlines()[0] == "parent (sim)" and "drops by reason (engine)" in text


def test_sim_stats_of_the_link_state(sim, capsys) -> None:
    rc, out, _ = run(capsys, "stats", "m1", "-j")
    rep = json.loads(out)
    assert rc == 0 and list(rep["parents"]["eth0"]["children"]) == ["m1"]
    assert rep["parents"]["eth0"]["children"]["m1"]["mode"] == "private"
    rc, text, _ = run(capsys, "stats")
    assert [ln.split()[0] for ln in text.splitlines()[2:5]] == ["m0", "m1", "m2"]


def test_engine_drops_show_by_reason(tmp_path, capsys) -> None:
    """A frame the engine drops without a kernel counter is listed by its reason."""
    sc = {"parent": {"mac": "02:00:00:00:00:01"}, "steps": [
        {"do": "add", "name": "t", "type": "macvtap", "mode": "bridge", "mac": "02:00:00:00:00:0a"},
        {"do": "set", "name": "t", "up": True, "reader": True}]}
    sc["steps"] += [{"do": "inject", "at": "wire", "frame": "02000000000a02000000000e88b5" + "00" * 46}] * 501
    p = tmp_path / "sc.json"
    p.write_text(json.dumps(sc))
    rc, out, err = run(capsys, "stats", "--scenario", str(p), "-j")
    assert rc == 0, err
    rep = json.loads(out)["parents"]["parent"]
    assert rep["engine_drops"] == {"tap_ring_full": 1}
    assert rep["children"]["t"]["rx"]["errors"] == 1


@pytest.mark.live
@pytest.mark.skipif(os.geteuid() != 0 and not in_ci(), reason="needs root for a namespace")
def test_kernel_stats_per_child(capsys) -> None:
    import secrets

    ns = f"pmv{secrets.token_hex(3)}K"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        def ip(*a: str) -> None:
            subprocess.run(["ip", "-n", ns, *a], check=True, capture_output=True)
        ip("link", "add", "p0", "type", "veth", "peer", "name", "p1")
        ip("link", "add", "link", "p0", "name", "mv0", "type", "macvlan", "mode", "bridge")
        ip("link", "add", "link", "p0", "name", "mv1", "type", "macvlan", "mode", "private")
        rc, out, err = run(capsys, "stats", "--backend", "kernel", "-n", ns, "-j")
        assert rc == 0, err
        rep = json.loads(out)
        assert set(rep["parents"]["p0"]["children"]) == {"mv0", "mv1"}
        assert rep["parents"]["p0"]["children"]["mv1"]["mode"] == "private"
        assert rep["parents"]["p0"]["children"]["mv0"]["rx"]["packets"] == 0
        rc, _, err = run(capsys, "stats", "--backend", "kernel", "-n", ns, "p1")
        assert rc == 1 and "ENODEV" in err
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_stats_text_names_the_active_path() -> None:
    from pymacvlan.cli.stats import format_stats

    def report(path: dict) -> dict:
        return {"backend": "userspace", "parents": {"eth0": {"children": {}, "path": path}}}

    fast = format_stats(
        report({"active": "fast", "children": "veth", "generation": 7, "macs": {"02:00:00:00:00:0a": 7}})
    )
    assert "eBPF fast path" in fast and "generation 7" in fast and "1 MACs" in fast
    slow = format_stats(report({"active": "python", "children": "tap", "reason": "PermissionError: bpf(0): EPERM"}))
    assert "path: Python" in slow and "EPERM" in slow


def test_kernel_trace_refuses_injection_options_and_unknown_namespaces(capsys) -> None:
    rc, _out, err = run(capsys, "trace", "--backend", "kernel", "--dst", "ff:ff:ff:ff:ff:ff")
    assert rc == 2 and "EINVAL" in err and "--backend sim" in err
    if os.geteuid() == 0:
        rc, _out, err = run(capsys, "trace", "--backend", "kernel", "-n", "pmv-no-such-namespace")
        assert rc == 1 and "ENOENT" in err and "ip netns list" in err
    else:
        rc, _out, err = run(capsys, "trace", "--backend", "kernel")
        assert rc == 1 and "EPERM" in err


def test_sim_trace_writes_pcapng_with_the_explanation_as_comment(sim, capsys, tmp_path: Path) -> None:
    pcap = tmp_path / "t.pcapng"
    rc, out, err = run(
        capsys, "trace", "--dst", "ff:ff:ff:ff:ff:ff", "--ethertype", "0x0806", "--pcap", str(pcap), "-j"
    )
    assert rc == 0, err
    ev = json.loads(out)
    r = subprocess.run(["tshark", "-r", str(pcap), "-T", "fields", "-e", "frame.len", "-e", "eth.dst",
                        "-e", "eth.type", "-e", "frame.comment"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    length, dst, etype, comment = r.stdout.split("\t", 3)
    assert (int(length), dst, etype) == (60, "ff:ff:ff:ff:ff:ff", "0x0806")
    assert bytes.fromhex(ev["frame"])[:6] == b"\xff" * 6
    # the whole explanation, as the terminal shows it
    assert "from wire on eth0" in comment and "delivered to: @parent, m0, m1, m2" in comment
    assert "private is in the mode mask" in comment


def test_pcap_to_an_unwritable_place_is_one_line(sim, capsys, tmp_path: Path) -> None:
    rc, _out, err = run(capsys, "trace", "--dst", "ff:ff:ff:ff:ff:ff", "--pcap", str(tmp_path / "no" / "such.pcapng"))
    assert rc == 1 and err.startswith("pymacvlan trace: ENOENT: ") and err.count("\n") == 1


def test_a_userspace_trace_whose_daemon_stops_says_so_and_exits_1(monkeypatch, capsys):
    """Issue 25: the trace ended silently with exit 0 when the daemon it followed stopped."""
    import pymacvlan.links.userspace as us

    class Gone:  # the daemon answers the subscription, then closes the stream at once
        def __init__(self, path, timeout=None):
            pass

        def call(self, obj):
            return {"ok": True}

        def recv(self):
            return None

        def close(self):
            pass

    monkeypatch.setattr(us, "Connection", Gone)
    rc = main(["trace", "--backend", "userspace", "--socket", "/run/pmv-test/control.sock"])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.strip().splitlines()[-1].startswith(
        "pymacvlan trace: ECONNRESET: the daemon on /run/pmv-test/control.sock stopped; the trace ends")
