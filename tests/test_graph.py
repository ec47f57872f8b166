"""`pymacvlan show --graph`: the DOT of known topologies has the right nodes and edges (who
reaches whom computed by the engine), the SVG renders, inputs from scenario / TOML / links."""

from __future__ import annotations

import json
import shutil

import pytest

from pymacvlan import graph
from pymacvlan.cli.main import main
from pymacvlan.graph import Child, Parent, edges, from_links, from_toml, reach_matrix, to_dot
from pymacvlan.netlab import Lab, leftovers, sh
from tests.conformance.conftest import require_live

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def lan() -> Parent:
    return Parent("eth0", "02:00:00:00:00:01", "plain",
                  [Child("b1", "bridge"), Child("b2", "bridge"), Child("p1", "private"), Child("v1", "vepa", up=False)])


def test_reach_matrix_plain_wire():
    m = reach_matrix(lan())
    assert m[("b1", "b2")] == (True, True) and m[("b2", "b1")] == (True, True)
    assert m[("b1", "p1")] == (False, False) and m[("p1", "b1")] == (False, False)
    assert m[("@wire", "p1")] == (True, True) and m[("p1", "@wire")] == (True, True)
    assert m[("b1", "@parent")] == (False, False) and m[("@parent", "b1")] == (False, False)
    assert m[("@wire", "v1")] == (False, False)  # down
    assert ("@wire", "@parent") not in m


def test_dot_nodes_and_edges_of_a_known_topology():
    dot = to_dot([lan()])
    for label in ("b1\\nmacvlan bridge", "p1\\nmacvlan private", "v1\\nmacvlan vepa\\n(down)",
                  "the parent's own stack", "LAN station"):
        assert label in dot, label
    assert dot.count("shape=ellipse") == 4
    e = edges(dot)
    assert e == {("p0_c0", "p0_c1", "U B both"),       # b1 <-> b2
                 ("p0_wire", "p0_c0", "U B both"), ("p0_wire", "p0_c1", "U B both"),
                 ("p0_wire", "p0_c2", "U B both")}     # the LAN reaches every up child; nobody the host


def test_dot_private_through_a_hairpin():
    (p,) = graph.load_topology(str(ROOT / "examples" / "private-mode.json"))
    assert p.wire == "hairpin" and [c.mode for c in p.children] == ["private", "private"]
    e = edges(to_dot([p]))
    assert ("p0_c0", "p0_c1", "U both") in e          # unicast only: ARP fails
    assert ("p0_stack", "p0_c0", "U B") in e and ("p0_c0", "p0_stack", "U") in e
    assert 'style=dashed, label="U"' in to_dot([p])


def test_svg_renders(tmp_path):
    if shutil.which("dot") is None:
        pytest.skip("graphviz dot is not installed")
    out = tmp_path / "g.svg"
    assert main(["show", str(ROOT / "examples" / "private-mode.json"), "--graph", str(out)]) == 0
    svg = out.read_text()
    assert "<svg" in svg and "mac1" in svg and "mac2" in svg and "hairpin wire" in svg


def test_cli_dot_text_and_errors(tmp_path, capsys, monkeypatch):
    assert main(["show", str(ROOT / "examples" / "private-mode.json"), "--dot"]) == 0
    assert capsys.readouterr().out.startswith("digraph pymacvlan {")
    bad = tmp_path / "two-passthru.json"
    bad.write_text(json.dumps({"parent": {"mac": "02:00:00:00:00:01"}, "steps": [
        {"do": "add", "name": "a", "mode": "passthru"}, {"do": "add", "name": "b", "mode": "passthru"}]}))
    assert main(["show", str(bad), "--dot"]) == 2
    err = capsys.readouterr().err
    assert "cannot exist" in err and "Traceback" not in err
    monkeypatch.setattr(graph.shutil, "which", lambda name: None)
    assert main(["show", str(ROOT / "examples" / "private-mode.json"), "--graph", str(tmp_path / "x.svg")]) == 2
    assert "`dot` is not installed (apt-get install graphviz)" in capsys.readouterr().err


def test_from_links_and_from_toml():
    links = [{"ifindex": 2, "ifname": "eth0", "address": "02:00:00:00:00:01", "flags": ["UP"]},
             {"ifindex": 3, "ifname": "m0", "link": "eth0", "flags": ["UP"], "address": "02:00:00:00:00:0a",
              "linkinfo": {"info_kind": "macvlan", "info_data": {"mode": "bridge"}}},
             {"ifindex": 4, "ifname": "t0", "link": "eth0", "flags": [],
              "linkinfo": {"info_kind": "macvtap", "info_data": {"mode": "vepa"}}}]
    (p,) = from_links(links)
    assert p.name == "eth0" and [(c.name, c.kind, c.mode, c.up) for c in p.children] == [
        ("m0", "macvlan", "bridge", True), ("t0", "macvtap", "vepa", False)]
    import tomllib
    doc = tomllib.loads('''
[[parent]]
name = "eth0"
wire = "hairpin"
mac = "02:00:00:00:00:01"
  [[parent.child]]
  name = "web"
  mode = "private"
  [[parent.child]]
  name = "db"
  mode = "private"
[[link]]
name = "vm0"
link = "eth1"
type = "macvtap"
mode = "bridge"
''')
    ps = {p.name: p for p in from_toml(doc)}
    assert ps["eth0"].wire == "hairpin" and [c.name for c in ps["eth0"].children] == ["web", "db"]
    assert [(c.name, c.kind) for c in ps["eth1"].children] == [("vm0", "macvtap")]


def test_from_the_sim_backend(tmp_path, capsys):
    state = str(tmp_path / "sim.json")
    assert (
        main(["link", "--state", state, "add", "link", "eth0", "name", "m0", "type", "macvlan", "mode", "bridge"]) == 0
    )
    assert (
        main(["link", "--state", state, "add", "link", "eth0", "name", "m1", "type", "macvlan", "mode", "bridge"]) == 0
    )
    assert main(["link", "--state", state, "set", "m0", "up"]) == 0
    assert main(["link", "--state", state, "set", "m1", "up"]) == 0
    capsys.readouterr()
    assert main(["show", "--backend", "sim", "--state", state]) == 0
    out = capsys.readouterr().out
    assert "m0 -> m1: unicast and broadcast" in out


@pytest.mark.live
def test_from_the_kernel_backend(capsys):
    require_live()
    lab = Lab()
    try:
        P = lab.ns("P")
        parent = lab.ifname("p")
        lab.veth(parent, P, lab.ifname("w"), P)
        for n, mode in (("a", "private"), ("b", "vepa")):
            sh("ip", "-n", P, "link", "add", "link", parent, "name", lab.ifname(n), "type", "macvlan", "mode", mode)
        sh("ip", "-n", P, "link", "set", lab.ifname("a"), "up")
        assert main(["show", "--backend", "kernel", "--netns", P, "--dot"]) == 0
        dot = capsys.readouterr().out
        assert f"{lab.ifname('a')}\\nmacvlan private" in dot and f"{lab.ifname('b')}\\nmacvlan vepa\\n(down)" in dot
        assert f"parent: {parent}" in dot
    finally:
        lab.close()
        assert not leftovers(lab.tag)


def test_the_apply_example_config():
    ps = {p.name: p for p in graph.load_topology(str(ROOT / "examples" / "lab.toml"))}
    kids = {c.name: c for c in ps["eth0"].children}
    assert kids["vm0"].kind == "macvtap" and kids["sniff"].macaddr == ["02:00:00:00:0a:01", "02:00:00:00:0a:02"]
    m = reach_matrix(ps["eth0"])
    assert m[("web", "vm0")] == (True, True)
    assert m[("@wire", "sniff")] == (False, False)  # the station is not on sniff's source list
    assert [c.mode for c in ps["eth1"].children] == ["passthru"]


def test_hash_view_puts_each_child_in_its_kernel_bucket(capsys):
    """`show --hash`: buckets are macvlan_eth_hash's (52:54:00:12:34:56 is bucket 165, as the
    kernel-checked hash says), children sharing a bucket hang off one cell, a source child's
    senders go to the second table, and a child without a given MAC is drawn apart."""
    from pymacvlan.graph import to_hash_dot

    p = Parent("eth0", None, "plain", [Child("a", "bridge", mac="52:54:00:00:01:10"),
                                       Child("b", "bridge", mac="02:00:00:00:00:e4"),
                                       Child("c", "vepa", mac="52:54:00:12:34:56"),
                                       Child("s", "source", mac="02:00:00:00:00:51", macaddr=["02:00:00:00:0a:01"]),
                                       Child("r", "private")])
    dot = to_hash_dot([p])
    assert "p0_vlan_hash:b88 -> p0_c0" in dot and "p0_vlan_hash:b88 -> p0_c1" in dot  # a collision
    assert "p0_vlan_hash:b165 -> p0_c2" in dot
    assert "p0_vlan_source_hash:b30 -> p0_c3" in dot and "p0_random -> p0_c4" in dot
    assert dot.count("<b88>") == 1  # one cell for the shared bucket
    assert main(["show", str(ROOT / "examples/figures/hash.toml"), "--hash"]) == 0
    out = capsys.readouterr().out
    assert "vm0 52:54:00:00:01:10: bucket 88" in out and "pod1 02:00:00:00:00:e4: bucket 88" in out
    assert "vlan_source_hash bucket 30: 02:00:00:00:0a:01 -> src0" in out and "pod2: MAC random at creation" in out
