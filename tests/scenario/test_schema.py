"""A bad scenario is refused before anything runs, naming the step and the key."""

import json

import pytest

from pymacvlan.scenario import ScenarioError, load_scenario

OK = {"parent": {"mac": "02:00:00:00:00:01"}, "wire": "plain", "steps": [
    {"do": "add", "name": "A", "mode": "bridge", "mac": "02:00:00:00:00:0A"},
    {"do": "inject", "at": "child:A", "frame": "FF FF FF FF FF FF 02 00 00 00 00 0a 88 b5"}]}


def refused(data) -> str:
    with pytest.raises(ScenarioError) as e:
        load_scenario(data)
    return str(e.value)


def test_normalizes_macs_frames_and_defaults():
    sc = load_scenario(OK)
    assert sc["steps"][0]["mac"] == "02:00:00:00:00:0a"
    assert sc["steps"][0]["type"] == "macvlan"
    assert sc["steps"][1]["frame"] == "ffffffffffff02000000000a88b5"
    assert sc["parent"]["mtu"] == 1500


@pytest.mark.parametrize("step,words", [
    ({"do": "frobnicate"}, ["step 1", "do", "frobnicate"]),
    ({"do": "add", "name": "A", "mode": "bridged"}, ["step 1", "mode", "bridged"]),
    ({"do": "add", "name": "A", "mac": "02:00:00:00:00"}, ["step 1", "mac"]),
    ({"do": "add", "name": "A", "colour": "red"}, ["step 1", "colour"]),
    ({"do": "set", "name": "Z", "up": True}, ["step 1", "unknown child", "Z"]),
    ({"do": "inject", "at": "child:Q", "frame": "ff" * 14}, ["step 1", "at", "Q"]),
    ({"do": "inject", "at": "wire", "frame": "ff" * 10}, ["step 1", "frame", "14"]),
    ({"do": "inject", "at": "wire", "frame": "zz"}, ["step 1", "frame", "hex"]),
    ({"do": "add", "name": "A", "flags": ["loud"]}, ["step 1", "flags", "loud"]),
    ({"do": "set", "name": "A"}, None),
])
def test_refusals_name_the_step_and_key(step, words):
    data = {"steps": [step]}
    if words is None:  # set before add: unknown child
        assert "unknown child" in refused(data)
        return
    msg = refused(data)
    for w in words:
        assert w in msg, msg


def test_bad_json_file(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{"steps": [')
    assert "not valid JSON" in refused(str(p))


def test_wire_kind():
    assert "wire" in refused({"wire": "mirror", "steps": []})


def test_roundtrip_json_file(tmp_path):
    p = tmp_path / "ok.json"
    p.write_text(json.dumps(OK))
    assert load_scenario(str(p))["wire"] == "plain"
