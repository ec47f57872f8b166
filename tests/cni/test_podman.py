"""A real container runtime: Debian's podman (4.3, CNI network backend) runs two containers on a
network whose conflist uses pymacvlan-cni; they get their addresses, ping a station on the wire
and each other, and removing them leaves nothing behind (no link, no address allocation, no
attachment record, no namespace).

Everything podman keeps is private to the test (root, runroot, vfs storage, CNI config dir,
containers.conf with our plugin directory); the image is a busybox-static rootfs made here and
`podman import`-ed (nothing is pulled). podman runs under `nsenter --net` in a pmv "host"
namespace whose master is a veth to the wire namespace, so the root namespace is never touched
(as ../shared/docs/runtimes.md ran it: runc, cgroupfs, explicit ulimits, NET_RAW for ping).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from pymacvlan.cni.install import install

from .. import ci
from .conftest import CNI_DIR, ip, live_reason

REASON = live_reason() or next((f"{t} is missing (apt-get install podman runc busybox-static)"
                                for t in ("podman", "runc", "busybox") if shutil.which(t) is None), None)
pytestmark = ci.live_marks(REASON)
NAMES = ("pmvpodc1", "pmvpodc2")


class Podman:
    def __init__(self, d: Path, host: str) -> None:
        self.d, self.host = d, host
        self.env = dict(os.environ, CONTAINERS_CONF=str(d / "containers.conf"))

    def __call__(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        argv = ["nsenter", f"--net=/run/netns/{self.host}", "podman", "--root", str(self.d / "root"),
                "--runroot", str(self.d / "runroot"), "--storage-driver", "vfs", "--runtime", "runc",
                "--cgroup-manager", "cgroupfs", "--network-backend", "cni", "--cni-config-dir",
                str(self.d / "cni"), *args]
        r = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: rc {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r


@pytest.fixture
def podman():
    ci.skip_or_fail(REASON)
    d = Path(tempfile.mkdtemp(prefix="pmvpod"))
    host, wire = f"pmv{d.name[-6:].lower()}h", f"pmv{d.name[-6:].lower()}w"
    pm = Podman(d, host)
    try:
        ip("netns", "add", host)
        ip("netns", "add", wire)
        ip("-n", host, "link", "add", "pmvM", "type", "veth", "peer", "name", "pmvW", "netns", wire)
        ip("-n", host, "link", "set", "pmvM", "up")
        ip("-n", wire, "link", "set", "pmvW", "up")
        ip("-n", wire, "addr", "add", "10.82.0.1/24", "dev", "pmvW")
        rootfs = d / "bb" / "bin"
        rootfs.mkdir(parents=True)
        shutil.copy(shutil.which("busybox"), rootfs / "busybox")
        for c in ("sh", "ip", "ping", "sleep", "cat"):
            (rootfs / c).symlink_to("busybox")
        subprocess.run(["tar", "-C", str(d / "bb"), "-cf", str(d / "bb.tar"), "."], check=True)
        bindir = d / "bin"
        install(str(bindir))
        for ipam in ("host-local", "static"):
            (bindir / ipam).symlink_to(os.path.join(CNI_DIR, ipam))
        (d / "containers.conf").write_text(f'[network]\ncni_plugin_dirs = ["{bindir}"]\n'
                                           '[engine]\nevents_logger = "file"\n')
        (d / "cni").mkdir()
        (d / "cni" / "pmvtest.conflist").write_text(
            '{"cniVersion":"1.0.0","name":"pmvtest","plugins":[{"type":"pymacvlan-cni","master":"pmvM",'
            f'"mode":"bridge","stateDir":"{d}/state","ipam":{{"type":"host-local","subnet":"10.82.0.0/24",'
            f'"rangeStart":"10.82.0.20","dataDir":"{d}/ipam"}}}}]}}')
        pm("import", str(d / "bb.tar"), "localhost/pmvbb:latest")
        yield pm
    finally:
        pm("rm", "--force", "--time", "0", *NAMES, check=False)
        for ns in (host, wire):
            ip("netns", "del", ns, check=False)
        shutil.rmtree(d, ignore_errors=True)


def test_podman_runs_containers_on_pymacvlan_cni(podman):
    netns_before = set(os.listdir("/run/netns"))
    run = ("run", "-d", "--cap-add", "NET_RAW", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000",
           "--network", "pmvtest")
    for name in NAMES:
        podman(*run, "--name", name, "localhost/pmvbb:latest", "/bin/sleep", "300")
    addrs = {}
    for name in NAMES:
        out = podman("exec", name, "ip", "-4", "addr", "show", "eth0").stdout
        addrs[name] = next(w.split("/")[0] for w in out.split() if w.startswith("10.82.0."))
    assert sorted(addrs.values()) == ["10.82.0.20", "10.82.0.21"]
    sandbox = podman("inspect", "--format", "{{.NetworkSettings.SandboxKey}}", NAMES[0]).stdout.strip()
    link = ip("-d", "-n", os.path.basename(sandbox), "link", "show", "eth0")
    assert "macvlan mode bridge" in link, link
    for target in ("10.82.0.1", addrs[NAMES[1]]):  # the wire station, then the other container
        r = podman("exec", NAMES[0], "ping", "-c", "2", "-W", "2", target, check=False)
        assert r.returncode == 0 and " 0% packet loss" in r.stdout, (target, r.stdout, r.stderr)
    state = podman.d / "state" / "pmvtest"
    assert len(os.listdir(state)) == 2
    podman("rm", "--force", "--time", "0", *NAMES)
    ipam = podman.d / "ipam" / "pmvtest"
    assert [f for f in os.listdir(ipam) if f.startswith("10.")] == []
    assert os.listdir(state) == []
    links = [ln.split(": ")[1].split("@")[0] for ln in ip("-n", podman.host, "-o", "link", "show").splitlines()]
    assert links == ["lo", "pmvM"], links
    assert set(os.listdir("/run/netns")) - netns_before == set()
