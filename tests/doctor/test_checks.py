"""`pymacvlan doctor`: each check from injected facts (no special hardware), the registry, the
advice's command forms, the output and exit status. tests/doctor/test_live.py proves the
advice by effect in namespaces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pymacvlan import doctor
from pymacvlan.cli.main import main
from pymacvlan.doctor import CHECKS, Facts, Iface, Listener, Route, diagnose, exit_status
from pymacvlan.doctor.checks import child_name, sysctl_w

ROOT = Path(__file__).resolve().parents[2]


def codes(findings):
    return {(f.code, f.severity) for f in findings}


def nic(name="eth0", driver="ixgbe", **kw) -> Iface:
    return Iface(name, ifindex=2, driver=driver, up=True, **kw)


def child(name, ifindex, mode="bridge", kind="macvlan", link=2, **kw) -> Iface:
    return Iface(name, ifindex=ifindex, kind=kind, link=link, mode=mode, up=True, **kw)


def test_a_clean_nic_has_no_findings():
    f = Facts(ifaces=[nic(), child("mac0", 3)])
    assert diagnose(f, "eth0") == []
    assert exit_status([]) == 0


def test_wifi_parent():
    f = Facts(ifaces=[nic("wlan0", driver="iwlwifi", wireless=True)])
    (x,) = diagnose(f, "wlan0")
    assert (x.code, x.severity) == ("wifi-parent", "error")
    assert "ipvlan" in x.fix and "wlan0" in x.saw


def test_veth_parent_goes_promiscuous_info_only():
    f = Facts(ifaces=[Iface("v0", 2, kind="veth", driver="veth", up=True, promiscuity=1), child("m", 3)])
    (x,) = diagnose(f, "v0")
    assert (x.code, x.severity) == ("no-unicast-filter", "info")
    assert "promiscuous now (promiscuity 1) because 1 child(ren) are up" in x.saw
    assert exit_status([x]) == 0


def test_a_nic_without_a_filter_is_a_warning_before_any_child():
    f = Facts(ifaces=[nic("bond0", driver="bonding")])
    (x,) = diagnose(f, "bond0")
    assert (x.code, x.severity) == ("no-unicast-filter", "warning")
    assert "will turn promiscuous" in x.saw


def test_more_macs_than_the_filter():
    kids = [child(f"m{i}", 10 + i) for i in range(16)]
    f = Facts(ifaces=[nic(driver="igb", promiscuity=1), *kids])
    (x,) = diagnose(f, "eth0")
    assert (x.code, x.severity) == ("mac-filter-overflow", "warning")
    assert "16 children up plus eth0's own MAC = 17 unicast addresses; igb filters 16" in x.saw
    assert not diagnose(Facts(ifaces=[nic(driver="igb"), *kids[:15]]), "eth0")  # 15 + 1 fit
    # passthru children do not use the filter
    pt = [child(f"p{i}", 40 + i, mode="passthru") for i in range(20)]
    assert not diagnose(Facts(ifaces=[nic(driver="igb"), *pt]), "eth0")


def test_promiscuous_with_children_on_an_unknown_driver_is_a_note():
    f = Facts(ifaces=[nic(driver="mlx5_core", promiscuity=1), child("m", 3)])
    (x,) = diagnose(f, "eth0")
    assert (x.code, x.severity) == ("mac-filter-overflow", "info")


@pytest.mark.parametrize("facts_kw, driver, who", [
    ({"dmi_vendor": "VMware, Inc."}, "vmxnet3", "VMware"),
    ({"dmi_vendor": "Microsoft Corporation"}, "hv_netvsc", "Hyper-V"),
    ({"dmi_vendor": "Amazon EC2"}, "ena", "AWS EC2"),
    ({"cpu_hypervisor": True}, "virtio_net", "KVM/QEMU"),
    ({"dmi_vendor": "innotek GmbH", "cpu_hypervisor": True}, "e1000", "VirtualBox"),
])
def test_hypervisor_or_cloud(facts_kw, driver, who):
    f = Facts(ifaces=[nic(driver=driver)], **facts_kw)
    (x,) = diagnose(f, "eth0")
    assert (x.code, x.severity) == ("hypervisor-drops-macs", "warning")
    assert who in x.saw
    if who == "VMware":
        assert "Forged transmits" in x.fix
    if who == "VirtualBox":
        assert "allow-all" in x.fix


def test_bare_metal_and_veth_are_not_blamed_on_a_hypervisor():
    assert not diagnose(Facts(ifaces=[nic(driver="mlx5_core")]), "eth0")
    f = Facts(ifaces=[Iface("v0", 2, kind="veth", driver="veth", up=True)], cpu_hypervisor=True)
    assert "hypervisor-drops-macs" not in {x.code for x in diagnose(f, "v0")}


def test_host_cannot_reach_children_and_the_fix():
    remote = child("eth0", 7, link=2, ipv4=["10.0.0.21/24"], netns="ctr1")
    f = Facts(ifaces=[nic(ipv4=["10.0.0.5/24"])], remote_children=[remote])
    (x,) = diagnose(f, "eth0")
    assert (x.code, x.severity) == ("host-cannot-reach-children", "warning")
    assert "10.0.0.21/24" in x.saw and "host-access" in x.fix and "10.0.0.0/24" in x.fix
    # with a host-side child holding an address, it is fine
    f.ifaces.append(child("mac0", 3, ipv4=["10.0.0.250/32"]))
    assert ("host-access", "info") in codes(diagnose(f, "eth0"))
    assert "host-cannot-reach-children" not in {x.code for x in diagnose(f, "eth0")}


def test_arp_flux_and_rp_filter_for_several_children_in_one_namespace():
    f = Facts(ifaces=[nic(ipv4=["10.0.0.5/24"]), child("vrrp.1", 3, ipv4=["10.0.0.100/24"]),
                      child("vrrp.2", 4, ipv4=["10.0.0.101/24"])],
              sysctl={"all": {"arp_ignore": 0, "arp_announce": 0, "rp_filter": 1},
                      "vrrp.1": {"arp_ignore": 1, "arp_announce": 1, "rp_filter": 0}})
    got = {x.code: x for x in diagnose(f, "eth0")}
    assert "arp-flux" in got and "rp-filter" in got
    assert "arp_ignore is 0 on eth0, vrrp.2" in got["arp-flux"].saw
    # a container with a macvlan child and another network: not one wire, no flux
    g = Facts(ifaces=[Iface("eth1", 4, kind="veth", ipv4=["172.18.0.2/16"]),
                      child("mv0", 3, link=9, ipv4=["10.0.0.2/24"])])
    g.ifaces[1].link_netns = "host"
    assert not diagnose(g)
    assert got["arp-flux"].commands == ["sysctl -w net.ipv4.conf.all.arp_ignore=1"]
    # rp_filter: the larger of all and dev counts, so 'all=1' hits both children; all goes loose
    assert "vrrp.1, vrrp.2" in got["rp-filter"].saw
    assert got["rp-filter"].commands == ["sysctl -w net.ipv4.conf.all.rp_filter=2"]
    f.sysctl = {"all": {"arp_ignore": 1, "arp_announce": 2, "rp_filter": 0}}
    assert not {"arp-flux", "rp-filter", "arp-announce"} & {x.code for x in diagnose(f, "eth0")}


def test_arp_announce_1_is_not_enough_for_an_address_in_the_parents_subnet():
    f = Facts(ifaces=[nic(ipv4=["10.0.0.5/24"]), child("vrrp.51", 3, ipv4=["10.0.0.100/32"])],
              sysctl={"all": {"arp_ignore": 1, "arp_announce": 1}, "eth0": {"arp_announce": 1}})
    (x,) = [x for x in diagnose(f, "eth0") if x.code == "arp-announce"]
    assert x.subject == "eth0" and "10.0.0.100/32 on vrrp.51" in x.saw and "arp_announce is 1" in x.saw
    assert x.commands == ["sysctl -w net.ipv4.conf.eth0.arp_announce=2"]
    assert "keepalived 2.2.7" in x.fix and "does" not in x.fix.split("keepalived")[0]
    f.sysctl["eth0"]["arp_announce"] = 2
    assert "arp-announce" not in {x.code for x in diagnose(f, "eth0")}
    # an address outside the parent's subnet: the parent never uses it as ARP source
    f = Facts(ifaces=[nic(ipv4=["10.0.0.5/24"]), child("m", 3, ipv4=["10.9.0.1/24"])])
    assert "arp-announce" not in {x.code for x in diagnose(f, "eth0")}


@pytest.mark.parametrize("name, key", [
    ("vrrp.51", "net.ipv4.conf.vrrp/51.rp_filter=0"),
    ("a-b.c-d.e-f-15c", "net.ipv4.conf.a-b/c-d/e-f-15c.rp_filter=0"),
    ("eth0", "net.ipv4.conf.eth0.rp_filter=0"),
])
def test_sysctl_advice_keeps_dots_in_names(name, key):
    assert sysctl_w(name, "rp_filter", 0) == f"sysctl -w {key}"


def test_new_names_fit_the_kernels_15_bytes():
    assert child_name("eth0", "-host") == "eth0-host"
    assert child_name("a-b.c-d.e-f-15c", "-host") == "a-b.c-d.e--host" and len(child_name("x" * 15, "-dh")) == 15


def test_parent_down_and_without_carrier():
    f = Facts(ifaces=[Iface("eth0", 2, driver="ixgbe", up=False), child("m", 3)])
    (x,) = diagnose(f, "eth0")
    assert (x.code, x.severity, x.commands) == ("parent-down", "error", ["ip link set eth0 up"])
    assert "LOWERLAYERDOWN" in x.saw
    f = Facts(ifaces=[Iface("eth0", 2, driver="ixgbe", up=True, carrier=False)])
    (x,) = diagnose(f, "eth0")
    assert x.code == "parent-no-carrier" and not x.commands and "cable" in x.fix
    f.ifaces[0].peer = ("pmvsw", "s1.x")
    assert diagnose(f, "eth0")[0].commands == ["ip -n pmvsw link set s1.x up"]
    assert not diagnose(Facts(ifaces=[Iface("eth0", 2, driver="ixgbe", up=True, carrier=None)]), "eth0")


def test_dhcp_server_on_the_parents_stack():
    f = Facts(ifaces=[nic(ipv4=["10.0.0.5/24"])], remote_children=[child("eth0", 7, ipv4=[], netns="ctr1")],
              dhcp_servers=[Listener("0.0.0.0", None, "dnsmasq")], default_routes=[Route("eth0", "10.0.0.1")])
    (x,) = [x for x in diagnose(f, "eth0") if x.code == "dhcp-unreachable"]
    assert "dnsmasq on 0.0.0.0:67" in x.saw
    assert x.commands == ["ip link add link eth0 name eth0-dh type macvlan mode bridge",
                          "ip addr del 10.0.0.5/24 dev eth0",
                          "ip addr add 10.0.0.5/24 dev eth0-dh", "ip link set eth0-dh up",
                          "ip route replace default via 10.0.0.1 dev eth0-dh metric 0"]
    f.dhcp_servers = [Listener("0.0.0.0", "other0", "dnsmasq")]  # bound elsewhere: not this parent's
    assert "dhcp-unreachable" not in {x.code for x in diagnose(f, "eth0")}


def test_vlan_parent_without_8021q():
    f = Facts(ifaces=[nic()], vlan_support="absent")
    (x,) = diagnose(f, "eth0.100")
    assert (x.code, x.severity) == ("no-8021q", "error") and "Unknown device type" in x.saw and not x.commands
    f = Facts(ifaces=[nic()], vlan_support="module")
    (x,) = diagnose(f, "eth0.100")
    assert x.code == "vlan-parent-missing" and x.commands[0] == "modprobe 8021q"
    assert x.commands[1] == "ip link add link eth0 name eth0.100 type vlan id 100"
    with pytest.raises(LookupError):
        diagnose(Facts(ifaces=[nic()]), "eth9.100")


def test_foreign_source_mac_behind_a_bridged_child():
    kid = child("m0", 3, master="br0", mac="02:00:00:00:00:0a")
    kid.link_netns, kid.parent_ref = "host", ("host", "eth0")
    f = Facts(netns="ctr", ifaces=[Iface("br0", 5, kind="bridge", up=True), kid],
              fdb={"br0": [("52:54:00:12:34:56", "tap0")]})
    (x,) = diagnose(f)
    assert x.code == "foreign-source-mac" and "52:54:00:12:34:56 (behind tap0)" in x.saw
    assert x.commands == ["ip link del m0", "ip -n host link add link eth0 name m0 type macvlan mode passthru",
                          "ip -n host link set m0 netns ctr", "ip link set m0 master br0", "ip link set m0 up"]
    kid.mode = "passthru"
    assert not diagnose(f)


def test_macvtap_without_allmulti():
    tap = child("macvtap0", 3, kind="macvtap", mac="52:54:00:aa:bb:cc",
                maddr=["01:00:5e:00:00:01", "33:33:ff:aa:bb:cc"])
    f = Facts(ifaces=[nic(), tap])
    (x,) = diagnose(f)
    assert x.code == "macvtap-guest-filter" and x.commands == ["ip link set macvtap0 allmulticast on"]
    tap.allmulti = True
    assert not diagnose(f)
    tap.allmulti, tap.maddr = False, tap.maddr + ["33:33:ff:00:00:50"]  # the guest's groups are programmed
    assert not diagnose(f)


def test_competing_default_routes():
    f = Facts(ifaces=[Iface("eth1", 4, kind="veth", up=True), child("mv0", 3)],
              default_routes=[Route("eth1", "172.18.0.1", 0), Route("mv0", "10.0.0.1", 0)])
    (x,) = diagnose(f)
    assert x.code == "competing-default-routes" and "wins only by the order" in x.saw
    assert "not the macvlan child mv0" in x.saw
    assert x.commands == ["ip route del default via 172.18.0.1 dev eth1 metric 0"]
    f.default_routes = [Route("mv0", "10.0.0.1", 0), Route("eth1", "172.18.0.1", 100)]
    assert not diagnose(f)  # the child's wins, on purpose
    f.default_routes = [Route("eth1", "172.18.0.1", 0)]
    assert not diagnose(f)


def test_every_check_is_registered_with_its_evidence_and_proof():
    codes = [c.code for c in CHECKS]
    assert len(codes) == len(set(codes)) >= 16
    for c in CHECKS:
        assert c.looks_at and c.cannot_see and c.test.startswith("tests/doctor/"), c.code
        assert (c.proof == "live") == c.test.startswith("tests/doctor/test_live.py::"), c.code
        mod, name = c.test.split("::")
        assert f"def {name}(" in (ROOT / mod).read_text(), c.test
    assert {c.code for c in CHECKS if c.proof != "live"} == {"wifi-parent", "macvlan-and-ipvlan",
                                                              "mac-filter-overflow", "hypervisor-drops-macs"}


def test_checks_listing(capsys):
    assert main(["doctor", "--checks"]) == 0
    out = capsys.readouterr().out
    assert "arp-announce (namespace)" in out and "cannot see:" in out
    assert main(["doctor", "--checks", "-j"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {d["code"] for d in data} == {c.code for c in CHECKS} and all("cannot_see" in d for d in data)


def test_macvlan_next_to_ipvlan_and_bridge_ports():
    f = Facts(ifaces=[nic(), child("m", 3), child("i", 4, kind="ipvlan", mode="l2")])
    assert ("macvlan-and-ipvlan", "error") in codes(diagnose(f, "eth0"))
    f = Facts(ifaces=[nic(), child("i", 4, kind="ipvlan", mode="l2")])
    assert ("macvlan-and-ipvlan", "warning") in codes(diagnose(f, "eth0"))
    f = Facts(ifaces=[nic(master="br0")])
    assert ("rx-handler-busy", "error") in codes(diagnose(f, "eth0"))


def test_without_a_parent_every_parent_of_a_child_is_checked():
    f = Facts(ifaces=[nic(), Iface("wlan0", 5, driver="iwlwifi", wireless=True, up=True),
                      child("m", 3, link=5)])
    assert {x.subject for x in diagnose(f)} == {"wlan0"}
    with pytest.raises(LookupError):
        diagnose(f, "nope")


def test_cli_text_json_and_exit_status(monkeypatch, capsys):
    f = Facts(ifaces=[nic("wlan0", driver="iwlwifi", wireless=True)])
    monkeypatch.setattr(doctor, "gather", lambda netns=None: f)
    assert main(["doctor", "wlan0"]) == 1
    out = capsys.readouterr().out
    assert "[error] wifi-parent (wlan0)" in out and "saw:" in out and "do:" in out and "cannot see:" in out
    assert main(["doctor", "wlan0", "-j"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["findings"][0]["code"] == "wifi-parent" and data["status"] == 1
    assert data["findings"][0]["proof"] == "injected facts" and "commands" in data["findings"][0]
    assert main(["doctor", "eth9"]) == 2
    assert "ENODEV: no interface 'eth9'" in capsys.readouterr().err
    monkeypatch.setattr(doctor, "gather", lambda netns=None: Facts(ifaces=[nic()]))
    assert main(["doctor", "eth0"]) == 0
    assert "no pitfalls found" in capsys.readouterr().out


def test_a_missing_namespace_is_one_line(capsys):
    assert main(["doctor", "--netns", "pmv-no-such-namespace"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pymacvlan doctor: cannot read namespace pmv-no-such-namespace") and "Traceback" not in err


def test_the_guide_carries_the_registry():
    """docs/guides/doctor.md's table is the registry (regenerate with doctor.table_markdown())."""
    from pymacvlan.doctor import table_markdown

    page = (ROOT / "docs/guides/doctor.md").read_text()
    table = page.split("<!-- doctor-checks:begin -->\n", 1)[1].split("\n<!-- doctor-checks:end -->", 1)[0]
    assert table == table_markdown()
