"""`pymacvlan replay` as a user runs it: JSON out, clear errors, no tracebacks."""

import json
import subprocess
import sys

SCEN = {
    "parent": {"mac": "02:00:00:00:00:01"},
    "wire": "hairpin",
    "steps": [
        {"do": "add", "name": "A", "mode": "private", "mac": "02:00:00:00:00:0a"},
        {"do": "add", "name": "B", "mode": "private", "mac": "02:00:00:00:00:0b"},
        {"do": "set", "name": "A", "up": True},
        {"do": "set", "name": "B", "up": True},
        {
            "do": "inject",
            "at": "child:A",
            "frame": "ffffffffffff02000000000a08060001",
            "expect": {
                "observed": {
                    "parent": [],
                    "children": {"A": [{"pkttype": "BROADCAST", "hex": "ffffffffffff02000000000a08060001"}], "B": []},
                }
            },
        },
    ],
}


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "pymacvlan.cli.main", *args],
                          capture_output=True, text=True, cwd=cwd)


def test_replay_sim_outputs_the_format(tmp_path):
    p = tmp_path / "s.json"
    p.write_text(json.dumps(SCEN))
    r = run("replay", str(p), "--check")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["backend"] == "sim"
    assert len(out["results"]) == 5
    assert "trace" not in out["results"][4]


def test_replay_trace_explains_the_private_child(tmp_path):
    p = tmp_path / "s.json"
    p.write_text(json.dumps(SCEN))
    out = json.loads(run("replay", str(p), "--trace").stdout)
    b = next(t for t in out["results"][4]["trace"] if t["device"] == "B")
    assert b["received"] == 0
    assert any("private" in r for r in b["rules"])


def test_check_fails_on_a_wrong_expectation(tmp_path):
    bad = json.loads(json.dumps(SCEN))
    bad["steps"][4]["expect"]["observed"]["children"]["B"] = [{"pkttype": "BROADCAST", "hex": "00"}]
    p = tmp_path / "s.json"
    p.write_text(json.dumps(bad))
    r = run("replay", str(p), "--check")
    assert r.returncode == 1
    assert "step 5" in r.stderr


def test_bad_scenario_is_refused_without_traceback(tmp_path):
    p = tmp_path / "s.json"
    p.write_text(json.dumps({"steps": [{"do": "add", "name": "A", "mode": "bridged"}]}))
    r = run("replay", str(p))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "step 1" in r.stderr and "mode" in r.stderr


def test_missing_file(tmp_path):
    r = run("replay", str(tmp_path / "nope.json"))
    assert r.returncode == 2 and "cannot read" in r.stderr and "Traceback" not in r.stderr
