"""A DHCP server on the parent's own host: macvlan children cannot reach it (the kernel never
passes a child's frame up the parent's stack). Detected: the ADD fails with EHOSTUNREACH naming
hostAccess; with ``hostAccess: true`` the lease's frames go through the child and the host's
bridge-mode child (pmvha…), and the host's server answers."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from pymacvlan.dhcp import client
from pymacvlan.model import KernelError

from .conftest import ip, live_reason

pytestmark = __import__("tests.ci", fromlist=["live_marks"]).live_marks(live_reason())


def test_server_on_the_host_detected_then_reached_with_host_access(lab):
    ip("-n", lab.host, "addr", "add", "10.77.0.1/24", "dev", lab.master)
    ip("-n", lab.wire, "addr", "del", "10.77.0.1/24", "dev", "pmvW")  # nobody on the wire answers
    # on the host's own stack; no interface list: it serves every interface, the host's macvlan child too
    srv = lab.dnsmasq(ns=lab.host, dev=None, extra=("--except-interface=lo",), tag="host")
    lab.start_daemon()
    pod = lab.pod("ha0")
    mac = lab.kernel_child(pod)
    with pytest.raises(KernelError) as e:
        client.acquire("ha/0", lab.master, mac, network="pmvnet", identity="ctr/ha0/eth0", timeout=2,
                       socket=lab.socket)
    assert e.value.errno_name == "EHOSTUNREACH" and "hostAccess" in e.value.advice, e.value
    assert client.show(socket=lab.socket) == []
    lab.drop_pod(pod)

    conf = {"cniVersion": "1.0.0", "name": "pmvha", "type": "pymacvlan-cni", "master": lab.master, "mode": "bridge",
            "hostAccess": True, "stateDir": str(lab.tmp / "cni-state"),
            "ipam": {"type": "pymacvlan-dhcp", "socket": lab.socket, "timeout": 15}}
    pod = lab.pod("ha1")
    rc, out, err = lab.cni("pymacvlan-cni", "ADD", conf, pod, "ha-ctr-1")
    assert rc == 0, (out, err, srv.log()[-2000:], lab.daemon_log()[-2000:])
    addr = out["ips"][0]["address"].split("/")[0]
    mac = out["interfaces"][0]["mac"]
    assert addr.startswith("10.77.0.") and mac in srv.leases()
    shown = client.show(socket=lab.socket)
    assert shown[0]["via"] == "child" and shown[0]["state"] == "bound"
    # the host reaches the pod through its child, as hostAccess promises
    ping = ["ping"] if shutil.which("ping") else ["busybox", "ping"]
    r = subprocess.run(["nsenter", f"--net=/run/netns/{lab.host}", *ping, "-c", "1", "-W", "2", addr],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, (r.stdout, r.stderr)
    rc, out, err = lab.cni("pymacvlan-cni", "DEL", conf, pod, "ha-ctr-1")
    assert rc == 0, (out, err)
    deadline = time.monotonic() + 5
    while mac in srv.leases() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert mac not in srv.leases()
    assert not [ln for ln in ip("-n", lab.host, "-o", "link", "show").splitlines() if "pmvha" in ln]
