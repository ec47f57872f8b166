"""`pymacvlan doctor`: each finding from injected facts (no special hardware), the output and
exit status, and one live run on a pmv veth parent in a pmv namespace."""

from __future__ import annotations

import json

import pytest

from pymacvlan import doctor
from pymacvlan.cli.main import main
from pymacvlan.doctor import Facts, Iface, diagnose, exit_status
from pymacvlan.netlab import Lab, leftovers, sh
from tests.conformance.conftest import require_live


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
    # rp_filter: the larger of all and dev counts, so 'all=1' hits both children
    assert "vrrp.1, vrrp.2" in got["rp-filter"].saw and "net.ipv4.conf.vrrp.1.rp_filter=0" in got["rp-filter"].fix
    f.sysctl = {"all": {"arp_ignore": 1, "arp_announce": 1, "rp_filter": 0}}
    assert not {"arp-flux", "rp-filter"} & {x.code for x in diagnose(f, "eth0")}


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
    assert "[error] wifi-parent (wlan0)" in out and "saw:" in out and "do:" in out
    assert main(["doctor", "wlan0", "-j"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["findings"][0]["code"] == "wifi-parent" and data["status"] == 1
    assert main(["doctor", "eth9"]) == 2
    assert "ENODEV: no interface 'eth9'" in capsys.readouterr().err
    monkeypatch.setattr(doctor, "gather", lambda netns=None: Facts(ifaces=[nic()]))
    assert main(["doctor", "eth0"]) == 0
    assert "no pitfalls found" in capsys.readouterr().out


def test_a_missing_namespace_is_one_line(capsys):
    assert main(["doctor", "--netns", "pmv-no-such-namespace"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pymacvlan doctor: cannot read namespace pmv-no-such-namespace") and "Traceback" not in err


# -- live ------------------------------------------------------------------------------------------
@pytest.mark.live
def test_live_on_a_veth_parent_in_a_pmv_namespace(capsys):
    require_live()
    lab = Lab()
    try:
        P, A = lab.ns("P"), lab.ns("A")
        parent = lab.ifname("p")
        lab.veth(parent, P, lab.ifname("w"), P)
        sh("ip", "-n", P, "addr", "add", "10.66.0.1/24", "dev", parent)
        kid = lab.ifname("k")
        sh("ip", "-n", P, "link", "add", "link", parent, "name", kid, "type", "macvlan", "mode", "bridge")
        sh("ip", "-n", P, "link", "set", kid, "netns", A)
        sh("ip", "-n", A, "addr", "add", "10.66.0.21/24", "dev", kid)
        sh("ip", "-n", A, "link", "set", kid, "up")
        before = sh("ip", "-n", P, "-d", "link", "show", parent).stdout

        facts = doctor.gather(P)
        p = facts.get(parent)
        assert p.kind == "veth" and p.driver == "veth" and p.ipv4 == ["10.66.0.1/24"] and not p.wireless
        assert [c.name for c in facts.remote_children] == [kid] and facts.remote_children[0].netns == A
        assert main(["doctor", parent, "--netns", P, "-j"]) == 1
        found = {x["code"]: x for x in json.loads(capsys.readouterr().out)["findings"]}
        assert found["no-unicast-filter"]["severity"] == "info"
        assert "promiscuity 1" in found["no-unicast-filter"]["saw"]
        assert "10.66.0.21/24" in found["host-cannot-reach-children"]["saw"]
        assert "hypervisor-drops-macs" not in found  # a veth's frames never meet a vswitch

        # the standard fix, by hand: a host-side child with an address; now ARP flux is the risk
        host = lab.ifname("h")
        sh("ip", "-n", P, "link", "add", "link", parent, "name", host, "type", "macvlan", "mode", "bridge")
        sh("ip", "-n", P, "addr", "add", "10.66.0.250/32", "dev", host)
        sh("ip", "-n", P, "link", "set", host, "up")
        assert main(["doctor", "--netns", P]) == 1
        out = capsys.readouterr().out
        assert "[info] host-access" in out and "host-cannot-reach-children" not in out
        assert "[warning] arp-flux" in out
        # read-only: nothing about the parent changed but what we did ourselves
        assert sh("ip", "-n", P, "-d", "link", "show", parent).stdout.split("promiscuity")[0] == \
            before.split("promiscuity")[0]
    finally:
        lab.close()
        assert not leftovers(lab.tag)
