"""pymacvlan-netavark's networks without a subnet (ipam driver dhcp) lease from the daemon."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from pymacvlan.dhcp import client

from .conftest import SRC, ip_json, live_reason

pytestmark = __import__("tests.ci", fromlist=["live_marks"]).live_marks(live_reason())
NET_ID = "2f259bab93aaaaa2542ba43ef33eb990d0999ee1b9924b557b7be53c0b7a1bb9"


def _plugin(lab, command: str, ns: str, net: dict) -> tuple[int, str]:
    raw = json.dumps({"container_id": "pmvctr1", "container_name": "web", "port_mappings": [], "network": net,
                      "network_options": {"interface_name": "eth0"}}).encode()
    env = dict(os.environ, PYTHONPATH=SRC, PYMACVLAN_SOCKET=lab.socket)
    r = subprocess.run(["nsenter", f"--net=/run/netns/{lab.host}", sys.executable, "-m", "pymacvlan.netavark",
                        command, f"/run/netns/{ns}"], input=raw, env=env, capture_output=True, timeout=60)
    return r.returncode, r.stdout.decode() + r.stderr.decode()


def test_network_without_subnet_leases_and_releases(lab):
    srv = lab.dnsmasq()
    lab.start_daemon()
    net = {"name": "pmvnet", "id": NET_ID, "driver": "pymacvlan", "network_interface": lab.master, "subnets": [],
           "ipv6_enabled": False, "internal": False, "dns_enabled": False, "ipam_options": {"driver": "dhcp"}}
    pod = lab.pod("nv")
    rc, out = _plugin(lab, "setup", pod, net)
    assert rc == 0, (out, lab.daemon_log()[-1500:])
    status = json.loads(out[:out.rindex("}") + 1])
    sub = status["interfaces"]["eth0"]["subnets"][0]
    addr = sub["ipnet"].split("/")[0]
    assert sub["gateway"] == "10.77.0.1" and addr.startswith("10.77.0.")
    have = [a["local"] for ln in ip_json("-n", pod, "addr", "show", "dev", "eth0") for a in ln["addr_info"]]
    assert addr in have
    mac = status["interfaces"]["eth0"]["mac_address"]
    assert mac in srv.leases()
    assert client.show(socket=lab.socket)[0]["key"] == "netavark/pmvnet/pmvctr1/eth0"
    rc, out = _plugin(lab, "teardown", pod, net)
    assert rc == 0, out
    deadline = time.monotonic() + 5
    while mac in srv.leases() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert mac not in srv.leases() and client.show(socket=lab.socket) == []
