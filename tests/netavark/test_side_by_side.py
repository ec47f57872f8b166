"""netavark 1.4's built-in macvlan driver is the oracle: it and pymacvlan-netavark set up the
same network and per-container options in fresh namespaces and must agree on the exit code,
the StatusBlock, the link in the container (kind, mode, MTU, MAC, up, addresses, routes with
protocol, scope and metric, IPv6 autoconf off), on refusing bad options, and on teardown
leaving nothing. The MAC is normalised where it is random (and the link-local address made
from it).

Differences, each with its reason (asserted where they show, so a change is noticed):

* default route metric: 1.4 uses 100; netavark ≥ 2.0 uses 99 for macvlan (commit 65fe5b5,
  containers/podman#23984) and so do we: we follow the current driver.
* static IPs: 1.4 pairs ``static_ips[i]`` with ``subnets[i]`` and adds an address outside
  the subnet unchecked; netavark ≥ 1.15 (and we) put each IP in the subnet containing it and
  refuse one that fits none ("not all static IPs matched a subnet").
* ``no_default_route``, ``bclim`` and the network's static ``routes`` exist since netavark
  1.7; 1.4 ignores them. Ours honour them as the current driver does (compared with 1.4
  after taking out what 1.4 does not know).
* the loopback: netavark's setup command brings ``lo`` up before any driver runs (also
  before calling a plugin), so it is not the driver's and not compared.
* error text: ours names the key and what is allowed; where netavark has a message for the
  same mistake ours contains it. Where 1.4 only passes the kernel's errno on (bad MTU, a
  missing parent, a multicast MAC), ours says so before touching anything.
* teardown of something already gone: 1.4 fails ("No such device"); ours succeeds (netavark
  ≥ 1.15 calls a plugin's teardown even when the namespace is gone; podman's cleanup must
  be able to repeat it).
"""

from __future__ import annotations

import copy

import pytest

from .conftest import GW4, GW6, SUBNET4, SUBNET6, Lab, ip, live_marks, network, per_container

pytestmark = live_marks()

MAC = "02:42:ac:11:00:07"
OUR_DRIVER = "pymacvlan"


def through(lab: Lab, who: str, net: dict, opts: dict, *, random_mac: bool, teardown: bool = True) -> dict:
    """setup in a fresh namespace, the StatusBlock and link state, teardown, what is left."""
    ns = lab.container()
    try:
        host_before = lab.links(lab.host)
        if who == "ref":
            r = lab.netavark("setup", net, opts, ns)
            status = (r.json or {}).get(net["name"]) if r.rc == 0 else r.json
        else:
            r = lab.ours("setup", dict(net, driver=OUR_DRIVER), opts, ns)
            status = r.json
        ifname = opts.get("interface_name") or "eth0"
        state = lab.state(ns, ifname, random_mac=random_mac) if r.rc == 0 else {}
        if r.rc == 0 and random_mac:
            iface = status["interfaces"][ifname]
            assert len(iface["mac_address"]) == 17
            iface["mac_address"] = "<random>"
        out = {"rc": r.rc, "status": status, "state": state, "stderr": r.err, "links": lab.links(ns)}
        if teardown:
            if who == "ref":
                t = lab.netavark("teardown", net, opts, ns)
            else:
                t = lab.ours("teardown", dict(net, driver=OUR_DRIVER), opts, ns)
            out["teardown"] = (t.rc, t.out)
            out["left"] = lab.links(ns)
            out["routes_left"] = [r for fam in ("-4", "-6") for r in
                                  ip("-n", ns, fam, "route", "show", "table", "main").splitlines()]
        out["host_changed"] = sorted(set(lab.links(lab.host)) ^ set(host_before))
        return out
    finally:
        lab.drop(ns)


def compare(lab: Lab, net: dict, opts: dict, *, random_mac: bool = True, our_net: dict | None = None) -> dict:
    ref = through(lab, "ref", net, opts, random_mac=random_mac)
    ours = through(lab, "ours", our_net or net, opts, random_mac=random_mac)
    assert ref["rc"] == 0, ref
    assert ours["rc"] == 0, ours
    assert ours["status"] == ref["status"]
    assert ours["state"] == ref["state"]
    for who, got in (("ref", ref), ("ours", ours)):
        assert got["teardown"] == (0, ""), (who, got["teardown"])
        assert got["left"] == ["lo"], who
        assert got["routes_left"] == [], who
        assert got["host_changed"] == [], who
    return {"ref": ref, "ours": ours}


def metric(m: int = 50, **options) -> dict:
    """1.4's default metric is 100, ours (netavark ≥ 2.0's) 99: compared with it explicit."""
    return {"metric": str(m), **options}


@pytest.mark.parametrize("mode", ["", "bridge", "private", "vepa", "passthru", "source"])
def test_modes(lab, mode):
    got = compare(lab, network(options=metric(mode=mode)), per_container())
    assert got["ours"]["state"]["mode"] == (mode or "bridge")
    assert got["ours"]["state"]["routes"][0]["metric"] == 50


def test_mtu_and_static_mac(lab):
    got = compare(lab, network(options=metric(77, mtu="1400")), per_container(mac=MAC), random_mac=False)
    s = got["ours"]["state"]
    assert (s["mtu"], s["mac"], s["autoconf"]) == (1400, MAC, "0")
    assert got["ours"]["status"]["interfaces"]["eth0"]["mac_address"] == MAC


def test_internal_has_no_default_route(lab):
    got = compare(lab, network(internal=True, options=metric()), per_container())
    assert not any(r["dst"] == "default" for r in got["ours"]["state"]["routes"])
    assert got["ours"]["status"]["interfaces"]["eth0"]["subnets"] == [{"gateway": GW4, "ipnet": "10.79.0.20/24"}]


def test_dual_stack(lab):
    subnets = [{"subnet": SUBNET4, "gateway": GW4}, {"subnet": SUBNET6, "gateway": GW6}]
    got = compare(lab, network(subnets=subnets, ipv6_enabled=True, options=metric(60)),
                  per_container(static_ips=["10.79.0.21", "fd79::21"]))
    dsts = {(r["dst"], r["metric"]) for r in got["ours"]["state"]["routes"]}
    assert {("default", 60)} <= dsts
    assert len([r for r in got["ours"]["state"]["routes"] if r["dst"] == "default"]) == 2


def test_no_ipam(lab):
    got = compare(lab, network(subnets=[], ipam="none", options=metric()), per_container(static_ips=None))
    assert got["ours"]["status"]["interfaces"]["eth0"]["subnets"] == []
    assert [a["family"] for a in got["ours"]["state"]["addresses"]] in ([], ["inet6"])


def test_other_interface_name(lab):
    compare(lab, network(options=metric()), per_container(ifname="net1"))


def test_default_metric_differs_by_version(lab):
    """The one deliberate difference in a working setup: 1.4's 100 against the current 99."""
    ref = through(lab, "ref", network(), per_container(), random_mac=True)
    ours = through(lab, "ours", network(), per_container(), random_mac=True)
    assert ours["status"] == ref["status"]
    default = [r for r in ref["state"]["routes"] if r["dst"] == "default"]
    assert [r["metric"] for r in default] == [100]
    mine = [r for r in ours["state"]["routes"] if r["dst"] == "default"]
    assert [r["metric"] for r in mine] == [99]
    for r in ref["state"]["routes"]:
        if r["dst"] == "default":
            r["metric"] = 99
    assert ours["state"] == ref["state"]


def test_options_1_4_does_not_know(lab):
    """no_default_route, bclim and static routes (netavark ≥ 1.7): ours does what the current
    driver does; with those taken out, the rest is 1.4's."""
    net = network(options=metric(no_default_route="true", bclim="-1"),
                  routes=[{"destination": "10.90.0.0/16", "gateway": "10.79.0.5"},
                          {"destination": "10.91.0.0/16", "gateway": "10.79.0.6", "metric": 7},
                          {"destination": "10.92.0.0/16", "route_type": "blackhole"}])
    ref = through(lab, "ref", network(options=metric()), per_container(), random_mac=True)
    ours = through(lab, "ours", net, per_container(), random_mac=True)
    assert ours["rc"] == 0, ours
    assert ours["status"] == ref["status"]
    mine = {r["dst"]: r for r in ours["state"]["routes"]}
    assert "default" not in mine
    assert (mine["10.90.0.0/16"]["gateway"], mine["10.90.0.0/16"]["metric"]) == ("10.79.0.5", 100)
    assert mine["10.91.0.0/16"]["metric"] == 7
    assert mine["10.92.0.0/16"]["type"] == "blackhole"
    assert ours["state"]["bclim"] in (-1, None)  # iproute2 prints bclim only when it knows it
    theirs = copy.deepcopy(ref["state"])
    theirs["routes"] = [r for r in theirs["routes"] if r["dst"] != "default"]
    mine_rest = dict(ours["state"], bclim=theirs["bclim"],
                     routes=[r for r in ours["state"]["routes"] if not r["dst"].startswith("10.9")])
    assert mine_rest == theirs
    assert ours["teardown"] == (0, "") and ours["left"] == ["lo"] and ours["routes_left"] == []


def test_static_ips_by_subnet(lab):
    """The current driver puts each IP in its subnet; 1.4 pairs them by position. Given in
    the subnets' order the two agree; in the other order only ours still does it right."""
    subnets = [{"subnet": SUBNET4, "gateway": GW4}, {"subnet": SUBNET6, "gateway": GW6}]
    net = network(subnets=subnets, ipv6_enabled=True, options=metric())
    ours = through(lab, "ours", net, per_container(static_ips=["fd79::22", "10.79.0.22"]), random_mac=True)
    assert ours["rc"] == 0, ours
    assert [s["ipnet"] for s in ours["status"]["interfaces"]["eth0"]["subnets"]] == ["10.79.0.22/24", "fd79::22/64"]


# -- refusals ----------------------------------------------------------------------------------------
BAD = {
    # name: (network options or edits, per-container edits, text both share, or None when 1.4 only
    #        passes the kernel's errno on, then the errno ours names)
    "mode": ({"options": metric(mode="foo")}, {}, 'invalid macvlan mode "foo"'),
    "mtu-text": ({"options": metric(mtu="abc")}, {}, 'unable to parse "mtu"'),
    "metric-negative": ({"options": {"metric": "-1"}}, {}, 'unable to parse "metric"'),
    "mac-text": ({}, {"static_mac": "zz:00:00:00:00:01"}, "unable to parse mac address zz:00:00:00:00:01"),
    "mac-short": ({}, {"static_mac": "02:00:00:00:00"}, "invalid mac length for address: 02:00:00:00:00"),
    "no-static-ips": ({}, {"static_ips": None}, "no static ips provided"),
    "no-ifname": ({}, {"interface_name": ""}, "no container interface name given"),
    "ipam-driver": ({"ipam_options": {"driver": "bogus"}}, {}, "unsupported ipam driver bogus"),
    "mac-multicast": ({}, {"static_mac": "03:00:00:00:00:01"}, ("Cannot assign requested address", "EADDRNOTAVAIL")),
    "mtu-too-big": ({"options": metric(mtu="9000")}, {}, ("Invalid argument", "invalid MTU 9000")),
    "parent-missing": ({"network_interface": "pmvNope"}, {}, ("No such device", "pmvNope does not exist")),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_refusals(lab, case):
    net_edit, opt_edit, text = BAD[case]
    net = network(options=metric())
    net.update(copy.deepcopy(net_edit))
    opts = per_container()
    for k, v in opt_edit.items():
        if v is None:
            opts.pop(k, None)
        else:
            opts[k] = v
    ref = through(lab, "ref", net, opts, random_mac=True, teardown=False)
    ours = through(lab, "ours", net, opts, random_mac=True, teardown=False)
    for who, got in (("ref", ref), ("ours", ours)):
        assert got["rc"] == 1, (who, got)
        assert list(got["status"]) == ["error"], (who, got["status"])
        assert got["links"] == ["lo"], (who, "setup left a link behind")
        assert got["host_changed"] == [], who
        assert "Traceback" not in got["stderr"], who
    if isinstance(text, tuple):
        assert text[0] in ref["status"]["error"], ref
        assert text[1] in ours["status"]["error"], ours
    else:
        assert text in ref["status"]["error"], ref
        assert text in ours["status"]["error"], ours


def test_interface_name_taken(lab):
    """A second setup into the same namespace under the same name: both refuse, both leave
    the first link as it was."""
    net, opts = network(options=metric()), per_container()
    for who in ("ref", "ours"):
        ns = lab.container()
        try:
            def run(c: str, who: str = who, ns: str = ns):
                if who == "ref":
                    return lab.netavark(c, net, opts, ns)
                return lab.ours(c, dict(net, driver=OUR_DRIVER), opts, ns)

            first = run("setup")
            assert first.rc == 0, (who, first)
            before = lab.state(ns)
            second = run("setup")
            assert second.rc == 1 and "error" in second.json, (who, second)
            assert lab.state(ns) == before, who
            assert run("teardown").rc == 0, who
            assert lab.links(ns) == ["lo"], who
        finally:
            lab.drop(ns)


def test_teardown_of_what_is_gone(lab):
    """1.4 fails on a link already deleted; ours succeeds, also without the namespace."""
    net, opts = network(options=metric()), per_container()
    ns = lab.container()
    try:
        ref = lab.netavark("teardown", net, opts, ns)
        assert ref.rc == 1 and "error" in ref.json
        ours = lab.ours("teardown", dict(net, driver=OUR_DRIVER), opts, ns)
        assert (ours.rc, ours.out) == (0, "")
    finally:
        lab.drop(ns)
    gone = lab.ours("teardown", dict(net, driver=OUR_DRIVER), opts, None)
    assert (gone.rc, gone.out) == (0, ""), gone


def test_dhcp_without_subnets(lab):
    """1.4 has no DHCP ("not yet supported"); ours asks the daemon, or refuses saying so."""
    net = network(subnets=[], ipam="dhcp", options=metric())
    ref = through(lab, "ref", net, per_container(static_ips=None), random_mac=True, teardown=False)
    assert ref["rc"] == 1 and "dhcp" in ref["status"]["error"]
    ours = through(lab, "ours", net, per_container(static_ips=None), random_mac=True, teardown=False)
    assert ours["rc"] == 1 and "dhcp" in ours["status"]["error"], ours
    assert ours["links"] == ["lo"]
