"""What Docker's built-in macvlan driver lacks, live on a private dockerd: mtu, host_access,
stable_mac, bclim, nopromisc (passthru), source mode, the doctor's preflight; the plugin's own
restart; and the Compose example run by Debian's docker-compose."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from pymacvlan.docker.hostaccess import child_name
from pymacvlan.docker.lab import run

from .conftest import eth0, host_links, live_marks

pytestmark = live_marks()
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "docker" / "docker-compose.yml"


def kernel_view(lab, c: str) -> dict:
    """The child's macvlan attributes as pymacvlan's kernel driver reads them (bclim included)."""
    import json
    import sys

    code = ("import json; from pymacvlan.links.kernel import Driver; "
            "print(json.dumps(Driver().show('eth0')[0]['linkinfo']['info_data']))")
    out = run(["nsenter", "-t", str(lab.pid(c)), "-n", sys.executable, "-c", code],
              env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"))).stdout
    return json.loads(out)


def net(lab, name, *opts, subnet="10.83.0.0/24"):
    args = []
    for o in opts:
        args += ["-o", o]
    lab.docker("network", "create", "-d", "pymacvlan", *args, "--subnet", subnet, name)


def cleanup(lab, containers, networks):
    if containers:
        lab.docker("rm", "-f", *containers, check=False)
    for n in networks:
        lab.docker("network", "rm", n, check=False)


def test_mtu_bclim_and_refusals(lab):
    net(lab, "exm", "parent=pmvP", "mtu=1400", "bclim=7")
    try:
        lab.docker("run", "-d", "--name", "exmc", "--network", "exm", "pmv/bb:latest", "sleep", "600")
        e = eth0(lab, "exmc")
        assert e["mtu"] == 1400 and kernel_view(lab, "exmc")["bclim"] == 7  # iproute2 6.1 does not print bclim
        assert lab.ping("exmc", lab.station)
    finally:
        cleanup(lab, ["exmc"], ["exm"])
    r = lab.docker("network", "create", "-d", "pymacvlan", "-o", "parent=pmvP", "-o", "mtu=9000", "exm2", check=False)
    assert r.returncode != 0 and "option mtu" in r.stderr and "pmvP has 1500" in r.stderr
    assert host_links(lab) == ["lo", "pmvP"]


def test_userspace_backend_refused_cleanly(lab):
    """Not done: Docker moves the driver's link into the container, and the daemon follows a TAP
    only in the namespace it made it in; the network is refused, naming why, and nothing is made."""
    for parent in ("pmvP", "pmvP.7"):
        r = lab.docker("network", "create", "-d", "pymacvlan", "-o", f"parent={parent}", "-o", "backend=userspace",
                       "--subnet", "10.89.0.0/24", "exu", check=False)
        assert r.returncode != 0 and "option backend" in r.stderr and "kernel backend" in r.stderr, r.stderr
    assert host_links(lab) == ["lo", "pmvP"]


def test_passthru_nopromisc_and_source_mode(lab):
    net(lab, "exp", "parent=pmvP", "macvlan_mode=passthru", "nopromisc=true")
    try:
        lab.docker("run", "-d", "--name", "expc", "--network", "exp", "pmv/bb:latest", "sleep", "600")
        e = eth0(lab, "expc")
        assert e["mode"] == "passthru" and e["info_data"].get("nopromisc") is True
    finally:
        cleanup(lab, ["expc"], ["exp"])
    net(lab, "exs", "parent=pmvP", "macvlan_mode=source", "macaddr=02:00:00:00:aa:01,02:00:00:00:aa:02")
    try:
        lab.docker("run", "-d", "--name", "exsc", "--network", "exs", "pmv/bb:latest", "sleep", "600")
        e = eth0(lab, "exsc")
        assert e["mode"] == "source"
        assert sorted(e["info_data"].get("macaddr_data", [])) == ["02:00:00:00:aa:01", "02:00:00:00:aa:02"]
    finally:
        cleanup(lab, ["exsc"], ["exs"])
    assert host_links(lab) == ["lo", "pmvP"]


def test_host_access_kept_current(lab):
    run(["ip", "-n", lab.host, "addr", "add", "10.83.0.254/24", "dev", "pmvP"])
    ha = child_name("pmvP")
    net(lab, "exh", "parent=pmvP", "host_access=true")
    try:
        lab.docker("run", "-d", "--name", "exh1", "--network", "exh", "pmv/bb:latest", "sleep", "600")
        lab.docker("run", "-d", "--name", "exh2", "--network", "exh", "pmv/bb:latest", "sleep", "600")
        assert lab.ping("exh1", "10.83.0.254")  # container -> host
        host_ping = ["nsenter", f"--net=/run/netns/{lab.host}", "busybox", "ping", "-c", "1", "-W", "2"]
        assert run([*host_ping, "10.83.0.3"], check=False).returncode == 0  # host -> container
        routes = run(["ip", "-n", lab.host, "route", "show", "dev", ha]).stdout
        assert "10.83.0.2 " in routes and "10.83.0.3 " in routes
        lab.docker("rm", "-f", "exh2")
        routes = run(["ip", "-n", lab.host, "route", "show", "dev", ha]).stdout
        assert "10.83.0.2 " in routes and "10.83.0.3 " not in routes
        lab.docker("rm", "-f", "exh1")
        assert ha not in host_links(lab)  # removed with the last container
    finally:
        cleanup(lab, ["exh1", "exh2"], ["exh"])
        run(["ip", "-n", lab.host, "addr", "del", "10.83.0.254/24", "dev", "pmvP"], check=False)
    assert host_links(lab) == ["lo", "pmvP"]


def test_stable_mac_follows_the_container_name(lab):
    """dockerd 20.10 tells a driver nothing about the container; the plugin asks dockerd's API
    which container is being connected (see pymacvlan.docker.dockerapi)."""
    net(lab, "exs2", "parent=pmvP", "stable_mac=true")
    try:
        macs = []
        for name in ("exsa", "exsa", "exsb"):
            lab.docker("run", "-d", "--name", name, "--network", "exs2", "pmv/bb:latest", "sleep", "600")
            macs.append(eth0(lab, name)["mac"])
            lab.docker("rm", "-f", name)
        assert macs[0] == macs[1] != macs[2]
        assert not macs[0].startswith("02:42:") and int(macs[0][:2], 16) & 3 == 2  # local, unicast
    finally:
        cleanup(lab, ["exsa", "exsb"], ["exs2"])


def test_preflight_refuses_a_bridge_port(lab):
    """A parent enslaved to a bridge cannot take macvlan children (EBUSY at the first container
    with the built-in driver); pymacvlan refuses the network with the doctor's advice."""
    for a in (["link", "add", "pmvbr", "type", "bridge"], ["link", "add", "pmvS", "type", "veth", "peer", "pmvT"],
              ["link", "set", "pmvS", "master", "pmvbr"]):
        run(["ip", "-n", lab.host, *a])
    try:
        r = lab.docker("network", "create", "-d", "pymacvlan", "-o", "parent=pmvS", "--subnet", "10.88.0.0/24",
                       "exb", check=False)
        assert r.returncode != 0 and "pymacvlan doctor pmvS" in r.stderr and "port of pmvbr" in r.stderr
    finally:
        run(["ip", "-n", lab.host, "link", "del", "pmvS"], check=False)
        run(["ip", "-n", lab.host, "link", "del", "pmvbr"], check=False)
        lab.docker("network", "rm", "exb", check=False)
    assert host_links(lab) == ["lo", "pmvP"]


def test_plugin_restart_loses_nothing(lab):
    """Containers keep their networking while the plugin is down (their links are the
    kernel's); the restarted plugin knows the network and the endpoint from its state file."""
    net(lab, "exr", "parent=pmvP")
    try:
        lab.docker("run", "-d", "--name", "exr1", "--network", "exr", "pmv/bb:latest", "sleep", "600")
        # measured: a ping every 0.1 s from the container across the plugin's death and restart
        pinger = subprocess.Popen(["docker", "exec", "exr1", "ping", "-c", "40", "-i", "0.1", "-W", "1", lab.station],
                                  env=lab.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lab.stop_plugin(signal.SIGKILL)
        assert lab.ping("exr1", lab.station)
        lab.start_plugin()
        out = pinger.communicate(timeout=60)[0]
        assert " 0% packet loss" in out, out
        lab.docker("run", "-d", "--name", "exr2", "--network", "exr", "pmv/bb:latest", "sleep", "600")
        assert lab.ping("exr2", "10.83.0.2") and lab.ping("exr1", lab.station)
    finally:
        if lab.plugin is None:
            lab.start_plugin()
        cleanup(lab, ["exr1", "exr2"], ["exr"])
    assert host_links(lab) == ["lo", "pmvP"]


@pytest.mark.skipif(shutil.which("docker-compose") is None and not os.environ.get("CI"),
                    reason="docker-compose is missing (apt-get install docker-compose)")
def test_compose_example(lab, tmp_path):
    env = dict(lab.env, PARENT="pmvP", IMAGE="pmv/bb:latest", SUBNET_PREFIX="10.83.0",
               COMPOSE_PROJECT_NAME="pmvx")
    compose = ["docker-compose", "-f", str(EXAMPLE), "--project-directory", str(tmp_path)]
    try:
        r = subprocess.run([*compose, "up", "-d"], env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        web = eth0(lab, "pmvx_web_1")
        assert web["addrs"] == ["10.83.0.10/24"] and web["mtu"] == 1400
        assert lab.ping("pmvx_worker_1", "10.83.0.10") and lab.ping("pmvx_web_1", lab.station)
    finally:
        subprocess.run([*compose, "down"], env=env, capture_output=True, text=True, timeout=300)
    assert lab.docker("network", "ls", "-q", "--filter", "driver=pymacvlan").stdout.strip() == ""
    assert host_links(lab) == ["lo", "pmvP"]
