"""A lab for CNI plugins: a "host" namespace whose master is a veth to a wire namespace, and
fresh "container" namespaces; both the reference plugin and pymacvlan-cni run in the host
namespace (``nsenter --net``), as a runtime would run them in its own.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .. import ci

REF = "/usr/lib/cni/macvlan"
CNI_DIR = "/usr/lib/cni"
SRC = str(Path(__file__).resolve().parents[2] / "src")
OURS = [sys.executable, "-m", "pymacvlan.cni"]


def live_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if not os.path.exists(REF):
        return f"the reference plugin {REF} is missing (apt-get install containernetworking-plugins)"
    return None


def live_marks():
    return ci.live_marks(live_reason())


def ip(*args: str, check: bool = True) -> str:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def ip_json(*args: str):
    return json.loads(ip("-j", *args) or "[]")


@dataclass
class Run:
    rc: int
    out: str
    err: str

    @property
    def json(self):
        return json.loads(self.out) if self.out.strip() else None


@dataclass
class Lab:
    prefix: str
    host: str
    wire: str
    master: str = "pmvM"
    tmp: Path = field(default_factory=Path)
    containers: list[str] = field(default_factory=list)

    def container(self) -> str:
        name = f"{self.prefix}c{len(self.containers)}"
        ip("netns", "add", name)
        self.containers.append(name)
        return name

    def run(self, plugin: list[str], command: str, conf: dict | str | bytes, netns: str | None = "",
            ifname: str = "eth0", container_id: str = "ctr1", args: str = "", env: dict | None = None,
            path: str = CNI_DIR) -> Run:
        """Execute ``plugin`` for ``command`` in the host namespace, as a runtime does."""
        e = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": SRC,
             "CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_IFNAME": ifname,
             "CNI_PATH": path}
        if netns:
            e["CNI_NETNS"] = f"/run/netns/{netns}" if not netns.startswith("/") else netns
        if args:
            e["CNI_ARGS"] = args
        for k, v in (env or {}).items():
            if v is None:
                e.pop(k, None)
            else:
                e[k] = v
        data = conf if isinstance(conf, bytes) else (conf if isinstance(conf, str) else json.dumps(conf)).encode()
        r = subprocess.run(["nsenter", f"--net=/run/netns/{self.host}", *plugin], input=data, env=e,
                           capture_output=True, timeout=60)
        return Run(r.returncode, r.stdout.decode(), r.stderr.decode())

    def links(self, ns: str) -> list[str]:
        return [ln["ifname"] for ln in ip_json("-n", ns, "link", "show")]

    def state(self, ns: str, ifname: str = "eth0", random_mac: bool = False) -> dict:
        """What a test compares: the link (kind, mode, MTU, MAC, flags), its addresses, the
        namespace's routes and the notify sysctls. ``random_mac``: the MAC (and the IPv6
        link-local address derived from it) are random, so only their form is kept."""
        links = ip_json("-n", ns, "-d", "addr", "show", "dev", ifname)
        if not links:
            return {}
        ln = links[0]
        info = ln.get("linkinfo", {})
        data = info.get("info_data", {})
        mac = ln["address"]
        addrs = []
        for a in ln.get("addr_info", []):
            if random_mac and a["local"].startswith("fe80:"):
                a = dict(a, local="fe80::<from mac>")
            addrs.append({k: a.get(k) for k in ("family", "local", "prefixlen", "broadcast", "scope")})
        routes = [{k: r.get(k) for k in ("dst", "gateway", "dev", "protocol", "scope", "prefsrc", "metric")}
                  for fam in ("-4", "-6") for r in ip_json("-n", ns, fam, "route", "show", "table", "main")]
        if random_mac:
            assert int(mac.split(":")[0], 16) & 1 == 0, mac
            mac = "<random unicast>"
        sysctl = {}
        for key in ("ipv4/conf/{}/arp_notify", "ipv6/conf/{}/ndisc_notify"):
            r = subprocess.run(["nsenter", f"--net=/run/netns/{ns}", "cat", "/proc/sys/net/" + key.format(ifname)],
                               capture_output=True, text=True)
            sysctl[key.split("/")[-1]] = r.stdout.strip()
        return {"kind": info.get("info_kind"), "mode": data.get("mode"), "flags": data.get("flags"),
                "bcqueuelen": data.get("bcqueuelen"), "mtu": ln["mtu"], "mac": mac,
                "up": "UP" in ln["flags"], "operstate": ln.get("operstate"), "addresses": addrs,
                "routes": routes, "sysctl": sysctl}

    def host_links(self) -> list[str]:
        return self.links(self.host)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    ci.skip_or_fail(live_reason())
    prefix = "pmv" + secrets.token_hex(3)
    host, wire = prefix + "h", prefix + "w"
    lab = Lab(prefix=prefix, host=host, wire=wire, tmp=tmp_path_factory.mktemp("cni"))
    try:
        ip("netns", "add", host)
        ip("netns", "add", wire)
        ip("-n", host, "link", "add", lab.master, "type", "veth", "peer", "name", "pmvW", "netns", wire)
        ip("-n", host, "link", "set", lab.master, "up")
        ip("-n", wire, "link", "set", "pmvW", "up")
        ip("-n", wire, "addr", "add", "10.77.0.1/24", "dev", "pmvW")
        yield lab
    finally:
        for ns in [*lab.containers, host, wire]:
            ip("netns", "del", ns, check=False)
        shutil.rmtree(lab.tmp, ignore_errors=True)
