"""Leases held by the daemon, live: kernel macvlan children in pod namespaces, dnsmasq on the wire."""

from __future__ import annotations

import time

import pytest

from pymacvlan.dhcp import client
from pymacvlan.model import KernelError

from .conftest import ip_json, live_reason

pytestmark = __import__("tests.ci", fromlist=["live_marks"]).live_marks(live_reason())


def _acquire(lab, key: str, mac: str, identity: str, **kw):
    return client.acquire(key, lab.master, mac, network="pmvnet", identity=identity, socket=lab.socket, **kw)


def test_parent_socket_sees_the_childs_frames_lease_and_release(lab):
    """Through the parent only: the child in its pod namespace is never entered."""
    srv = lab.dnsmasq()
    lab.start_daemon()
    pod = lab.pod("p0")
    mac = lab.kernel_child(pod)
    lease = _acquire(lab, "t/0", mac, "ctr/c0/eth0", timeout=15)
    addr = lease["address"].split("/")[0]
    assert lease["address"].endswith("/24") and lease["gateway"] == "10.77.0.1"
    assert lease["mtu"] == 1400 and lease["dns"] == {"nameservers": ["10.77.0.1"], "domain": "pmv.test"}
    assert {"dst": "10.78.0.0/24", "gw": "10.77.0.254"} in lease["routes"]
    line = next(ln for ln in srv.leases().splitlines() if mac in ln)
    assert addr in line and " ff:" in line  # RFC 4361 client-id (type 255)
    shown = client.show("t/0", socket=lab.socket)
    assert shown[0]["state"] == "bound" and shown[0]["via"] == "parent"
    assert client.release("t/0", socket=lab.socket) is True
    deadline = time.monotonic() + 5
    while mac in srv.leases() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert mac not in srv.leases(), srv.log()[-1500:]
    assert client.show(socket=lab.socket) == []
    assert client.release("t/0", socket=lab.socket) is False


def test_restart_keeps_the_lease_without_a_new_discover(lab):
    srv = lab.dnsmasq()
    lab.start_daemon()
    pod = lab.pod("p1")
    mac = lab.kernel_child(pod)
    lease = _acquire(lab, "t/1", mac, "ctr/c1/eth0")
    discovers = srv.log().count(f"DHCPDISCOVER(pmvW) {mac}")
    requests = srv.log().count("DHCPREQUEST(pmvW)")
    lab.stop_daemon()
    lab.start_daemon()
    shown = client.show("t/1", socket=lab.socket)
    assert shown and shown[0]["state"] == "bound" and shown[0]["address"] == lease["address"]
    assert "resumed" in lab.daemon_log()
    time.sleep(0.5)
    assert srv.log().count(f"DHCPDISCOVER(pmvW) {mac}") == discovers
    assert srv.log().count("DHCPREQUEST(pmvW)") == requests  # before T1 nothing is sent at all
    client.release("t/1", socket=lab.socket)


def test_nak_on_renew_goes_back_to_init_and_tells_the_runtime(lab):
    srv = lab.dnsmasq()
    lab.start_daemon()
    mac = lab.kernel_child(lab.pod("p2"))
    first = _acquire(lab, "t/2", mac, "ctr/c2/eth0")
    srv.stop()
    lab.dnsmasq("10.77.0.200", "10.77.0.220", tag="d2")  # authoritative, the old address is outside: NAK
    seq = max([e["seq"] for e in client.events(socket=lab.socket)], default=0)
    assert client.renew("t/2", socket=lab.socket)
    deadline = time.monotonic() + 15
    kinds: list[str] = []
    while time.monotonic() < deadline and "bound" not in kinds:
        kinds = [e["kind"] for e in client.events(seq, socket=lab.socket)]
        time.sleep(0.1)
    assert kinds[:1] == ["nak"] and "bound" in kinds, kinds
    now = client.show("t/2", socket=lab.socket)[0]
    assert now["address"] != first["address"] and now["address"].startswith("10.77.0.2")
    assert "nak" in lab.daemon_log()
    client.release("t/2", socket=lab.socket)


def test_no_server_fails_bounded_and_leaves_nothing(lab):
    lab.start_daemon()
    mac = lab.kernel_child(lab.pod("p3"))
    with pytest.raises(KernelError) as e:
        _acquire(lab, "t/3", mac, "ctr/c3/eth0", timeout=2.5)
    assert e.value.errno_name == "ETIMEDOUT" and "no lease" in e.value.message and "2.5 s" in e.value.message
    assert client.show(socket=lab.socket) == []
    stats = client._client(lab.socket, 5).call({"op": "dhcp.show"})["stats"]
    assert stats["leases"] == 0 and stats["ports"] == 0  # the parent's socket is closed again


def test_userspace_child_gets_a_lease_through_the_same_parent(lab):
    """A userspace child (the daemon's own TAP) is leased the same way, by its MAC."""
    from pymacvlan.daemon.client import Client
    from pymacvlan.model import Mode
    from pymacvlan.model.link import LinkRequest

    srv = lab.dnsmasq()
    lab.start_daemon()
    pod = lab.pod("p4")
    link = Client(lab.socket).link_add(LinkRequest(parent=lab.master, name="eth0", kind="macvlan", mode=Mode.BRIDGE,
                                                   netns=pod, up=True))
    lease = _acquire(lab, "t/4", link["address"], "ctr/c4/eth0")
    assert link["address"] in srv.leases() and lease["address"].split("/")[0] in srv.leases()
    client.release("t/4", socket=lab.socket)
    Client(lab.socket).link_del("eth0", netns=pod)
    assert ip_json("-n", pod, "link", "show") is not None


def test_a_hundred_children_lease_at_once_from_one_daemon(lab):
    from concurrent.futures import ThreadPoolExecutor

    from .conftest import ip

    srv = lab.dnsmasq("10.77.0.20", "10.77.0.250")
    lab.start_daemon()
    pod = lab.pod("many")
    macs = []
    for i in range(100):
        ip("-n", lab.host, "link", "add", "link", lab.master, "name", f"pmvq{i}", "type", "macvlan", "mode", "bridge")
        ip("-n", lab.host, "link", "set", f"pmvq{i}", "netns", pod)
        macs.append(ip_json("-n", pod, "link", "show", f"pmvq{i}")[0]["address"])
    with ThreadPoolExecutor(100) as ex:
        leases = list(ex.map(lambda i: _acquire(lab, f"m/{i}", macs[i], f"ctr/m{i}/eth0", timeout=60), range(100)))
    addrs = {lease["address"] for lease in leases}
    assert len(addrs) == 100
    assert all(mac in srv.leases() for mac in macs)
    shown = client.show(socket=lab.socket)
    assert len(shown) == 100 and {s["state"] for s in shown} == {"bound"}
    with ThreadPoolExecutor(20) as ex:
        assert all(ex.map(lambda i: client.release(f"m/{i}", socket=lab.socket), range(100)))
    deadline = time.monotonic() + 10
    while any(mac in srv.leases() for mac in macs) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(mac in srv.leases() for mac in macs)


def test_ipam_add_check_gc_del(lab):
    """pymacvlan-dhcp as an IPAM plugin by itself: ADD (MTU from option 26 applied), CHECK, GC
    releasing what is not valid any more, DEL idempotent."""
    srv = lab.dnsmasq()
    lab.start_daemon()
    conf = {"cniVersion": "1.1.0", "name": "pmvnet", "type": "macvlan", "master": lab.master,
            "ipam": {"type": "pymacvlan-dhcp", "socket": lab.socket}}
    pods = {cid: lab.pod(f"g{cid[-1]}") for cid in ("gc-a", "gc-b")}
    macs = {cid: lab.kernel_child(pod) for cid, pod in pods.items()}
    results = {}
    for cid, pod in pods.items():
        rc, out, err = lab.cni("pymacvlan-dhcp", "ADD", conf, pod, cid)
        assert rc == 0, (out, err)
        assert out["ips"][0]["gateway"] == "10.77.0.1" and {"dst": "10.78.0.0/24", "gw": "10.77.0.254"} in out["routes"]
        assert ip_json("-n", pod, "link", "show", "eth0")[0]["mtu"] == 1400
        results[cid] = out
    rc, out, err = lab.cni("pymacvlan-dhcp", "CHECK", dict(conf, prevResult=results["gc-a"]), pods["gc-a"], "gc-a")
    assert rc == 0, (out, err)
    gc = dict(conf, **{"cni.dev/valid-attachments": [{"containerID": "gc-a", "ifname": "eth0"}]})
    rc, out, err = lab.cni("pymacvlan-dhcp", "GC", gc, None, "")
    assert rc == 0, (out, err)
    assert [s["key"] for s in client.show(socket=lab.socket)] == ["cni/pmvnet/gc-a/eth0"]
    deadline = time.monotonic() + 5
    while macs["gc-b"] in srv.leases() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert macs["gc-b"] not in srv.leases() and macs["gc-a"] in srv.leases()
    for _ in range(2):  # DEL twice: the second finds nothing and succeeds
        rc, out, err = lab.cni("pymacvlan-dhcp", "DEL", conf, pods["gc-a"], "gc-a")
        assert rc == 0, (out, err)
    assert client.show(socket=lab.socket) == []


def test_restart_after_expiry_confirms_with_init_reboot(lab):
    """A lease that expired while the daemon was down comes back through INIT-REBOOT (REQUEST
    for the remembered address, no DISCOVER)."""
    import json

    srv = lab.dnsmasq()
    lab.start_daemon()
    mac = lab.kernel_child(lab.pod("p5"))
    lease = _acquire(lab, "t/5", mac, "ctr/c5/eth0")
    lab.stop_daemon()
    path = lab.state + ".dhcp.json"
    with open(path) as f:
        saved = json.load(f)
    past = time.time() - 5
    for rec in saved["leases"]:
        rec["lease"].update(acquired=past - 100, t1=past - 50, t2=past - 20, expires=past)
    with open(path, "w") as f:
        json.dump(saved, f)
    discovers = srv.log().count(f"DHCPDISCOVER(pmvW) {mac}")
    lab.start_daemon()
    assert "(init-reboot)" in lab.daemon_log()
    deadline = time.monotonic() + 10
    while client.show("t/5", socket=lab.socket)[0]["state"] != "bound" and time.monotonic() < deadline:
        time.sleep(0.05)
    shown = client.show("t/5", socket=lab.socket)[0]
    assert shown["state"] == "bound" and shown["address"] == lease["address"]
    assert shown["expires"] > time.time() + 60
    assert srv.log().count(f"DHCPDISCOVER(pmvW) {mac}") == discovers
    client.release("t/5", socket=lab.socket)
