"""The preflight's verdicts on doctor facts built by hand (no kernel needed)."""

from __future__ import annotations

from pymacvlan import doctor
from pymacvlan.cni.preflight import judge


def facts(p: doctor.Iface, *kids: doctor.Iface, **kw) -> tuple[doctor.Facts, doctor.Iface]:
    return doctor.Facts(ifaces=[p, *kids], **kw), p


def test_clean_master_passes():
    assert judge(*facts(doctor.Iface("eth1", 2, driver="ixgbe", up=True))) == (None, [])


def test_sure_failures_are_fatal():
    wifi = judge(*facts(doctor.Iface("wlan0", 2, wireless=True)))[0]
    port = judge(*facts(doctor.Iface("eth1", 2, master="br0")))[0]
    ipv = judge(*facts(doctor.Iface("eth1", 2), doctor.Iface("ipv0", 3, kind="ipvlan", link=2)))[0]
    assert (wifi.code, port.code, ipv.code) == ("wifi-parent", "rx-handler-busy", "macvlan-and-ipvlan")
    assert "ipvlan" in wifi.fix and "br0" in port.fix


def test_hypervisor_is_a_warning_only():
    fatal, warnings = judge(*facts(doctor.Iface("ens3", 2, driver="virtio_net"), cpu_hypervisor=True))
    assert fatal is None and [w.code for w in warnings] == ["hypervisor-drops-macs"]
