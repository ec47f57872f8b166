"""A lab for netavark plugins: a "host" namespace whose parent is a veth to a wire namespace
(the station), and fresh "container" namespaces. netavark 1.4 (the oracle) and
pymacvlan-netavark both run in the host namespace (``nsenter --net``), as podman runs netavark
in its own. Everything is named ``pmv`` + a random token and removed by the fixture.
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

NETAVARK = "/usr/lib/podman/netavark"
SRC = str(Path(__file__).resolve().parents[2] / "src")
OURS = [sys.executable, "-m", "pymacvlan.netavark"]
NET_ID = "2f259bab93aaaaa2542ba43ef33eb990d0999ee1b9924b557b7be53c0b7a1bb9"
SUBNET4, GW4, STATION4 = "10.79.0.0/24", "10.79.0.1", "10.79.0.1"
SUBNET6, GW6 = "fd79::/64", "fd79::1"


def live_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if not os.path.exists(NETAVARK):
        return f"netavark 1.4 (the oracle) is missing at {NETAVARK} (apt-get install netavark)"
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
        try:
            return json.loads(self.out) if self.out.strip() else None
        except ValueError:
            return {"unparsable": self.out}


def network(name: str = "pmvnet", driver: str = "macvlan", parent: str = "pmvP", subnets=None, options=None,
            internal: bool = False, ipam: str | None = "host-local", **extra) -> dict:
    """A Network as podman writes it (after create)."""
    n = {"name": name, "id": NET_ID, "driver": driver, "network_interface": parent,
         "subnets": [{"subnet": SUBNET4, "gateway": GW4}] if subnets is None else subnets,
         "ipv6_enabled": False, "internal": internal, "dns_enabled": False}
    if ipam is not None:
        n["ipam_options"] = {"driver": ipam}
    if options is not None:
        n["options"] = options
    n.update(extra)
    return n


def per_container(static_ips=("10.79.0.20",), mac: str | None = None, ifname: str = "eth0") -> dict:
    o: dict = {"interface_name": ifname}
    if static_ips is not None:
        o["static_ips"] = list(static_ips)
    if mac is not None:
        o["static_mac"] = mac
    return o


@dataclass
class Lab:
    prefix: str
    host: str
    wire: str
    parent: str = "pmvP"
    tmp: Path = field(default_factory=Path)
    containers: list[str] = field(default_factory=list)

    def container(self) -> str:
        name = f"{self.prefix}c{len(self.containers)}"
        ip("netns", "add", name)
        self.containers.append(name)
        return name

    def drop(self, ns: str) -> None:
        ip("netns", "del", ns, check=False)
        if ns in self.containers:
            self.containers.remove(ns)

    def _exec(self, argv: list[str], data: bytes, env: dict | None = None) -> Run:
        e = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": SRC,
             "PYMACVLAN_NETAVARK_STATE_DIR": str(self.tmp / "state")}
        e.update(env or {})
        r = subprocess.run(["nsenter", f"--net=/run/netns/{self.host}", *argv], input=data, env=e,
                           capture_output=True, timeout=60)
        return Run(r.returncode, r.stdout.decode(), r.stderr.decode())

    def netavark(self, command: str, net: dict, opts: dict, ns: str | None) -> Run:
        """netavark 1.4's built-in driver, fed podman's NetworkOptions for one network."""
        inp = {"container_id": "pmvctr1", "container_name": "pmvctr", "networks": {net["name"]: opts},
               "network_info": {net["name"]: net}}
        path = f"/run/netns/{ns}" if ns else "/run/netns/pmv-gone"
        return self._exec([NETAVARK, "--config", str(self.tmp / "nvconf"), command, path], json.dumps(inp).encode())

    def ours(self, command: str, net: dict | None = None, opts: dict | None = None, ns: str | None = None,
             raw: bytes | None = None, env: dict | None = None, name: str = "pmvctr") -> Run:
        """pymacvlan-netavark, fed the NetworkPluginExec netavark ≥ 1.6 sends a plugin."""
        argv = [*OURS, command]
        if command in ("setup", "teardown"):
            argv.append(f"/run/netns/{ns}" if ns else "/run/netns/pmv-gone")
        if raw is None:
            if command == "create":
                raw = json.dumps(net).encode()
            elif command in ("setup", "teardown"):
                raw = json.dumps({"container_id": "pmvctr1", "container_name": name, "port_mappings": [],
                                  "network": net, "network_options": opts}).encode()
            else:
                raw = b""
        return self._exec(argv, raw, env)

    def links(self, ns: str) -> list[str]:
        return [ln["ifname"] for ln in ip_json("-n", ns, "link", "show")]

    def state(self, ns: str, ifname: str = "eth0", random_mac: bool = False) -> dict:
        """The link (kind, mode, bclim, MTU, MAC, up), its addresses, the namespace's routes
        (destination, gateway, device, protocol, scope, metric, type) and the autoconf sysctl.
        ``random_mac``: the MAC and the link-local address made from it are kept as their form."""
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
        routes = []
        for fam in ("-4", "-6"):
            for r in ip_json("-n", ns, "-d", fam, "route", "show", "table", "main"):
                routes.append({k: r.get(k) for k in ("type", "dst", "gateway", "dev", "protocol", "scope", "metric")})
        if random_mac:
            assert int(mac.split(":")[0], 16) & 1 == 0, mac
            mac = "<random unicast>"
        r = subprocess.run(["nsenter", f"--net=/run/netns/{ns}", "cat", f"/proc/sys/net/ipv6/conf/{ifname}/autoconf"],
                           capture_output=True, text=True)
        return {"kind": info.get("info_kind"), "mode": data.get("mode"), "bclim": data.get("bclim"),
                "mtu": ln["mtu"], "mac": mac, "up": "UP" in ln["flags"], "addresses": addrs, "routes": routes,
                "autoconf": r.stdout.strip()}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    ci.skip_or_fail(live_reason())
    prefix = "pmv" + secrets.token_hex(3)
    host, wire = prefix + "h", prefix + "w"
    lab = Lab(prefix=prefix, host=host, wire=wire, tmp=tmp_path_factory.mktemp("netavark"))
    try:
        ip("netns", "add", host)
        ip("netns", "add", wire)
        ip("-n", host, "link", "add", lab.parent, "type", "veth", "peer", "name", "pmvW", "netns", wire)
        ip("-n", host, "link", "set", lab.parent, "up")
        ip("-n", wire, "link", "set", "pmvW", "up")
        ip("-n", wire, "addr", "add", f"{STATION4}/24", "dev", "pmvW")
        ip("-n", wire, "addr", "add", f"{GW6}/64", "dev", "pmvW", "nodad")
        yield lab
    finally:
        for ns in [*lab.containers, host, wire]:
            ip("netns", "del", ns, check=False)
        shutil.rmtree(lab.tmp, ignore_errors=True)
