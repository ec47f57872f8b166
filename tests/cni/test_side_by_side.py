"""The reference macvlan plugin is the oracle: it and pymacvlan-cni run the same configs in
fresh namespaces and must agree on the exit code, the result JSON and the link in the
container (kind, mode, MTU, MAC, flags, addresses, routes, arp_notify).

Normalised, because it is random by design: the MAC when none is given (and the IPv6
link-local address made from it). Differences from Debian's plugin 1.1.1, each with its reason:

* ``ndisc_notify``: set to 1 by us and by upstream since v1.2; 1.1.1 sets only arp_notify.
* error codes for config mistakes: 7 naming the key (the spec's "invalid config"); the
  reference says 999 (a plain Go error). Both exit 1.
* a failing IPAM plugin: we leave nothing; the reference leaks the child (its ``err`` is
  shadowed in cmdAdd, so the deferred link delete never runs).
* txqueuelen: 1.1.1 sends IFLA_TXQLEN 0 (a zero LinkAttrs); we, like upstream since v1.2,
  leave the kernel's default (macvlan is noqueue either way): not compared.
* cniVersion 0.1.0/0.2.0: the reference still speaks them; we support 0.3.0 ... 1.1.0 (code 1).
"""

from __future__ import annotations

import json
import os

import pytest

from .conftest import OURS, REF, Lab, ip, live_marks

pytestmark = live_marks()

PLUGINS = {"ref": [REF], "ours": OURS}
MAC = "02:42:ac:11:00:07"


def conf(**kw) -> dict:
    c = {"cniVersion": "1.0.0", "name": "sbs", "type": "macvlan", "master": "pmvM"}
    c.update(kw)
    return c


def hostlocal(**kw) -> dict:
    i = {"type": "host-local", "subnet": "10.77.0.0/24", "gateway": "10.77.0.1",
         "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.9.0.0/16", "gw": "10.77.0.5"}]}
    i.update(kw)
    return i


def allocations(d) -> list[str]:
    """host-local's reservations (its data dir holds one file per address, plus bookkeeping)."""
    out = []
    for _root, _dirs, files in os.walk(d):
        out += [f for f in files if f not in ("lock",) and not f.startswith("last_reserved_ip")]
    return sorted(out)


def one(lab: Lab, who: str, c: dict, ns: str, *, args: str = "", random_mac: bool, cid: str = "ctr1") -> dict:
    """ADD, the link it made, DEL twice and DEL without a namespace, what is left."""
    c = json.loads(json.dumps(c))
    data_dir = lab.tmp / f"{ns}-{who}-ipam"
    if c.get("ipam", {}).get("type") == "host-local":
        c["ipam"]["dataDir"] = str(data_dir)
    c["stateDir"] = str(lab.tmp / f"{ns}-{who}-state")
    plugin = PLUGINS[who]
    add = lab.run(plugin, "ADD", c, netns=ns, args=args, container_id=cid)
    res = add.json
    if add.rc == 0 and random_mac:
        for i in res.get("interfaces", []):
            assert len(i["mac"]) == 17
            i["mac"] = "<random>"
    state = lab.state(ns, random_mac=random_mac) if add.rc == 0 else {}
    allocated = allocations(data_dir)
    dels = [lab.run(plugin, "DEL", c, netns=ns, args=args, container_id=cid) for _ in range(2)]
    dels.append(lab.run(plugin, "DEL", c, netns=None, args=args, container_id=cid))
    return {"rc": add.rc, "result": res, "state": state, "allocated": allocated, "stderr": add.err,
            "del": [(d.rc, d.out) for d in dels], "left": lab.links(ns), "after_del": allocations(data_dir)}


def compare(lab: Lab, c: dict, *, args: str = "", random_mac: bool = True) -> dict:
    ns = lab.container()
    got = {who: one(lab, who, c, ns, args=args, random_mac=random_mac) for who in ("ref", "ours")}
    ref, ours = got["ref"], got["ours"]
    assert ref["rc"] == 0, ref
    assert ours["rc"] == ref["rc"], (ours, ref)
    assert ours["result"] == ref["result"]
    # Debian's 1.1.1 does not set ndisc_notify (upstream does since v1.2): ours must be 1 when
    # there is IPAM (without it neither plugin touches the sysctls)
    assert ours["state"]["sysctl"].pop("ndisc_notify") == ("1" if c.get("ipam") else "0")
    ref["state"]["sysctl"].pop("ndisc_notify")
    assert ours["state"] == ref["state"]
    assert ours["allocated"] == ref["allocated"]
    for who in ("ref", "ours"):
        assert got[who]["del"] == [(0, "")] * 3, (who, got[who]["del"])
        assert got[who]["left"] == ["lo"], who
        assert got[who]["after_del"] == [], who
    assert [n for n in lab.host_links() if n.startswith("pmvtmp")] == []
    return got


@pytest.mark.parametrize("mode", [None, "", "bridge", "private", "vepa", "passthru"])
def test_modes(lab, mode):
    c = conf(ipam=hostlocal()) if mode is None else conf(mode=mode, ipam=hostlocal())
    got = compare(lab, c)
    assert got["ours"]["state"]["mode"] == (mode or "bridge")


@pytest.mark.parametrize("mtu", [0, 1280, 1500])
def test_mtu(lab, mtu):
    got = compare(lab, conf(mtu=mtu, ipam=hostlocal()))
    assert got["ours"]["state"]["mtu"] == (mtu or 1500)


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0", "1.0.0"])
def test_result_versions(lab, version):
    got = compare(
        lab, conf(cniVersion=version, ipam=hostlocal(), dns={"nameservers": ["10.0.0.53"], "search": ["pmv"]})
    )
    r = got["ours"]["result"]
    assert r["cniVersion"] == version
    assert ("version" in r["ips"][0]) == (version < "1.0.0")


def test_mac_key(lab):
    got = compare(lab, conf(mac=MAC, ipam=hostlocal()), random_mac=False)
    assert got["ours"]["state"]["mac"] == MAC


def test_mac_cni_args_and_runtime_config(lab):
    got = compare(lab, conf(ipam=hostlocal()), args=f"IgnoreUnknown=1;MAC={MAC}", random_mac=False)
    assert got["ours"]["result"]["interfaces"][0]["mac"] == MAC
    other = "02:42:ac:11:00:08"
    got = compare(lab, conf(mac="02:42:ac:11:00:09", runtimeConfig={"mac": other}, ipam=hostlocal()),
                  args=f"IgnoreUnknown=1;MAC={MAC}", random_mac=False)
    assert got["ours"]["state"]["mac"] == other


def test_l2_only(lab):
    got = compare(lab, conf(mode="private"))
    assert got["ours"]["state"]["up"] and got["ours"]["state"]["addresses"][0]["family"] == "inet6"
    assert "ips" not in got["ours"]["result"]


def test_static_ipam_v4_v6(lab):
    ipam = {"type": "static", "addresses": [{"address": "10.77.0.40/24", "gateway": "10.77.0.1"},
                                            {"address": "fd77::40/64"}],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "fd00:1::/48", "gw": "fd77::1"}],
            "dns": {"nameservers": ["10.77.0.1"]}}
    got = compare(lab, conf(mac=MAC, ipam=ipam), random_mac=False)
    fams = [a["family"] for a in got["ours"]["state"]["addresses"]]
    assert "inet" in fams and "inet6" in fams


def test_check_against_prev_result(lab):
    ns = lab.container()
    c = conf(ipam=hostlocal(dataDir=str(lab.tmp / "check-ipam")), mac=MAC)
    add = lab.run([REF], "ADD", c, netns=ns)
    assert add.rc == 0, add
    prev = add.json
    for who, plugin in PLUGINS.items():
        ok = lab.run(plugin, "CHECK", dict(c, prevResult=prev), netns=ns)
        assert (ok.rc, ok.out) == (0, ""), (who, ok)
        bad_mac = json.loads(json.dumps(prev))
        bad_mac["interfaces"][0]["mac"] = "02:42:ac:11:00:99"
        bad_ip = json.loads(json.dumps(prev))
        bad_ip["ips"][0]["address"] = "10.77.0.99/24"
        bad_route = json.loads(json.dumps(prev))
        bad_route["routes"].append({"dst": "10.10.0.0/16"})
        for bad in (bad_mac, bad_ip, bad_route, None):
            r = lab.run(plugin, "CHECK", dict(c, prevResult=bad) if bad else c, netns=ns)
            assert r.rc == 1 and r.json["code"] in (7, 999), (who, bad, r)
        wrong_mode = lab.run(plugin, "CHECK", dict(c, mode="vepa", prevResult=prev), netns=ns)
        assert wrong_mode.rc == 1 and "mode" in wrong_mode.json["msg"], (who, wrong_mode)
    assert lab.run([REF], "DEL", c, netns=ns).rc == 0


# -- errors: same exit code, the spec's object, nothing left behind -------------------------------------
BAD_CONFIGS = {
    "mode": (conf(mode="foo", ipam=hostlocal()), {7}, "mode"),
    "mtu-above-master": (conf(mtu=9000, ipam=hostlocal()), {7}, "mtu"),
    "mtu-negative": (conf(mtu=-1, ipam=hostlocal()), {7}, "mtu"),
    "mtu-type": (conf(mtu="1400", ipam=hostlocal()), {7}, "mtu"),
    "master-missing": (conf(master="pmvnope", ipam=hostlocal()), {7}, "master"),
    "mac": (conf(mac="zz", ipam=hostlocal()), {7}, "mac"),
    "ipam-plugin-missing": (conf(ipam={"type": "pmvnoipam"}), {7}, "ipam.type"),
    "ipam-bad-subnet": (conf(ipam=hostlocal(subnet="10.77.0.0/33")), None, ""),
    "version": (conf(cniVersion="9.9.9"), {1}, ""),
    "no-name": ({"cniVersion": "1.0.0", "type": "macvlan", "master": "pmvM"}, {7}, ""),
    "bad-name": (conf(name="a b"), {7}, ""),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config(lab, case):
    c, codes, key = BAD_CONFIGS[case]
    ns = lab.container()
    runs = {}
    for who, plugin in PLUGINS.items():
        cc = json.loads(json.dumps(c))
        data_dir = lab.tmp / f"{ns}-{who}-ipam"
        if cc.get("ipam", {}).get("type") == "host-local":
            cc["ipam"]["dataDir"] = str(data_dir)
        r = lab.run(plugin, "ADD", cc, netns=ns)
        runs[who] = r
        assert r.rc == 1, (who, r)
        assert set(r.json) <= {"code", "msg", "details"} and r.json["msg"], (who, r)
        assert "Traceback" not in r.err
        if who == "ours":
            # nothing left behind: no link in the container, no temporary link, no allocation
            assert lab.links(ns) == ["lo"], r
            assert allocations(data_dir) == []
            assert [n for n in lab.host_links() if n.startswith("pmvtmp")] == []
            if codes is not None:
                assert r.json["code"] in codes, r
            if key:
                assert r.json["msg"].startswith(key + ":"), r
        else:
            for link in lab.links(ns):  # the reference leaks the child when IPAM fails: clean up
                if link != "lo":
                    ip("-n", ns, "link", "del", link)
    if codes is None:  # an IPAM plugin's own error is passed on, its message naming the plugin
        ref = runs["ref"].json
        assert runs["ours"].json == {**ref, "msg": f"{c['ipam']['type']}: {ref['msg']}"}


ENV_CASES = {
    "no-netns": ({"CNI_NETNS": None}, 4),
    "no-ifname": ({"CNI_IFNAME": None}, 4),
    "no-path": ({"CNI_PATH": None}, 4),
    "bad-container-id": ({"CNI_CONTAINERID": "-x y"}, 4),
    "ifname-too-long": ({"CNI_IFNAME": "a" * 16}, 4),
    "ifname-slash": ({"CNI_IFNAME": "a/b"}, 4),
    "unknown-command": ({"CNI_COMMAND": "FROB"}, 4),
    "netns-missing": ({"CNI_NETNS": "/run/netns/pmv-does-not-exist"}, None),
    "cni-args-unknown": ({"CNI_ARGS": "FOO=1"}, None),
}


@pytest.mark.parametrize("case", sorted(ENV_CASES))
def test_bad_env(lab, case):
    env, code = ENV_CASES[case]
    ns = lab.container()
    runs = {who: lab.run(plugin, "ADD", conf(), netns=ns, env=env) for who, plugin in PLUGINS.items()}
    for who, r in runs.items():
        assert r.rc == 1, (who, r)
        assert lab.links(ns) == ["lo"], who
    if code is not None:
        assert runs["ours"].json == runs["ref"].json
    else:
        assert runs["ours"].json["code"] == 4 and runs["ref"].json["code"] == 999


def test_no_command_prints_about(lab):
    for who, plugin in PLUGINS.items():
        r = lab.run(plugin, "", conf(), env={"CNI_COMMAND": None})
        assert r.rc == 0 and r.out == "" and "CNI protocol versions supported" in r.err, (who, r)


def test_second_add_same_ifname(lab):
    ns = lab.container()
    for who, plugin in PLUGINS.items():
        c = conf(ipam=hostlocal(dataDir=str(lab.tmp / f"{ns}-{who}")))
        first = lab.run(plugin, "ADD", c, netns=ns)
        assert first.rc == 0
        again = lab.run(plugin, "ADD", c, netns=ns, container_id="ctr2")
        assert again.rc == 1 and "file exists" in again.json["msg"], (who, again)
        assert allocations(lab.tmp / f"{ns}-{who}") == ["10.77.0.2"], who  # ctr2's address not kept
        assert lab.run(plugin, "DEL", c, netns=ns).rc == 0
        assert lab.links(ns) == ["lo"]


def test_version(lab):
    ours = lab.run(OURS, "VERSION", {"cniVersion": "1.1.0"})
    assert ours.rc == 0
    assert json.loads(ours.out) == {"cniVersion": "1.1.0",
                                    "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]}
    ref = json.loads(lab.run([REF], "VERSION", {"cniVersion": "1.0.0"}).out)
    assert set(ref["supportedVersions"]) - {"0.1.0", "0.2.0"} < set(json.loads(ours.out)["supportedVersions"])
