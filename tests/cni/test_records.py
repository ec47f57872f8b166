"""cni/records.py live: DEL, GC and hostAccess delete only what ADD made (issue 19, item 1).

A namespace path or an interface name proves nothing: the tests point a record at another
namespace (a reused ``/proc/PID/ns/net``), put a device of another kind under the child's name,
give CNI_NETNS a regular file, and put a foreign device under hostAccess's name; each time the
device must survive and the plugin say why.
"""

from __future__ import annotations

import json
import os

from . import test_extras
from .conftest import Lab, ip, ip_json, live_marks
from .test_extras import conf, hl, run

plugin_dir = test_extras.plugin_dir  # the fixture: our launcher and the IPAM plugins in a CNI_PATH

pytestmark = live_marks()


def _record(lab: Lab, network: str, cid: str) -> str:
    return str(lab.tmp / "state" / network / f"{cid}-eth0.json")


def test_add_records_the_childs_identity(lab, plugin_dir):
    ns = lab.container()
    c = conf(lab, name="idrec")
    assert run(lab, plugin_dir, "ADD", c, netns=ns, container_id="r1").rc == 0
    with open(_record(lab, "idrec", "r1")) as f:
        rec = json.load(f)
    link = ip_json("-n", ns, "link", "show", "eth0")[0]
    assert rec["format"] == 2 and rec["identity"]["ifindex"] == link["ifindex"]
    assert rec["identity"]["mac"] == link["address"] and rec["identity"]["kind"] == "macvlan"
    assert rec["identity"]["netns"] == os.stat(f"/run/netns/{ns}").st_ino
    assert run(lab, plugin_dir, "DEL", c, netns=ns, container_id="r1").rc == 0
    assert lab.links(ns) == ["lo"] and not os.path.exists(_record(lab, "idrec", "r1"))


def test_gc_never_deletes_in_a_namespace_the_record_path_names_now(lab, plugin_dir):
    """A reused PID: the record's path now names an unrelated namespace holding a macvlan of the
    same name. The old GC deleted it by name."""
    ours, theirs = lab.container(), lab.container()
    c = conf(lab, name="gcid", ipam=hl(lab, "gcid"))
    assert run(lab, plugin_dir, "ADD", c, netns=ours, container_id="g1").rc == 0
    ip("-n", lab.host, "link", "add", "pmvx", "link", lab.master, "type", "macvlan")
    ip("-n", lab.host, "link", "set", "pmvx", "netns", theirs)
    ip("-n", theirs, "link", "set", "pmvx", "name", "eth0")
    path = _record(lab, "gcid", "g1")
    with open(path) as f:
        rec = json.load(f)
    rec["netns"] = f"/run/netns/{theirs}"
    with open(path, "w") as f:
        json.dump(rec, f)
    gc = dict(c, cniVersion="1.1.0", **{"cni.dev/valid-attachments": []})
    r = run(lab, plugin_dir, "GC", gc)
    assert r.rc == 0, r
    assert lab.links(theirs) == ["lo", "eth0"], r.err  # not ours: untouched
    assert "another namespace" in r.err
    assert not os.path.exists(path)  # the IPAM reservation and the record are released
    assert not [f for f in os.listdir(lab.tmp / "ipam-gcid" / "gcid") if f.startswith("10.")]
    ip("-n", ours, "link", "del", "eth0")


def test_del_without_a_record_deletes_only_a_macvlan(lab, plugin_dir):
    ns = lab.container()
    ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
    r = run(lab, plugin_dir, "DEL", conf(lab, name="norec"), netns=ns, container_id="n1")
    assert r.rc == 0, r
    assert "eth0" in lab.links(ns) and "not macvlan" in r.err


def test_del_leaves_a_device_that_replaced_the_child(lab, plugin_dir):
    ns = lab.container()
    c = conf(lab, name="repl")
    assert run(lab, plugin_dir, "ADD", c, netns=ns, container_id="p1").rc == 0
    ip("-n", ns, "link", "del", "eth0")
    ip("-n", lab.host, "link", "add", "pmvy", "link", lab.master, "type", "macvlan")
    ip("-n", lab.host, "link", "set", "pmvy", "netns", ns)
    ip("-n", ns, "link", "set", "pmvy", "name", "eth0")
    r = run(lab, plugin_dir, "DEL", c, netns=ns, container_id="p1")
    assert r.rc == 0, r
    assert "eth0" in lab.links(ns)  # another macvlan under the same name: not the one ADD made
    ip("-n", ns, "link", "del", "eth0")


def test_cni_netns_must_be_a_network_namespace(lab, plugin_dir, tmp_path):
    plain = tmp_path / "netns"
    plain.write_text("")
    for path in (str(plain), "/proc/self/ns/uts", str(tmp_path)):
        r = run(lab, plugin_dir, "ADD", conf(lab, name="nsfs"), netns=path, container_id="f1")
        assert r.rc == 1 and r.json["code"] == 4 and "CNI_NETNS" in r.json["msg"], (path, r)
    assert lab.host_links() == ["lo", lab.master]


def test_host_access_leaves_a_foreign_device_of_its_name(lab, plugin_dir):
    from pymacvlan.cni.hostaccess import child_name

    name = child_name(lab.master)
    ip("-n", lab.host, "link", "add", name, "type", "veth", "peer", "name", "pmvz")
    try:
        ns = lab.container()
        c = conf(lab, hostAccess=True, ipam=hl(lab, "hafor"), name="hafor")
        r = run(lab, plugin_dir, "ADD", c, netns=ns, container_id="h1")
        assert r.rc == 1 and "not pymacvlan's" in r.out, r
        assert name in lab.host_links() and lab.links(ns) == ["lo"]  # rolled back, theirs kept
    finally:
        ip("-n", lab.host, "link", "del", name, check=False)
