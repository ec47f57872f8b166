"""One throwaway dockerd per test module (pymacvlan.docker.lab.DockerLab), with the plugin
started in dockerd's network namespace; everything is removed after the module, also when a
test fails. Helpers read a container's interface with the host's iproute2 (nsenter)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from pymacvlan.docker.lab import DockerLab, missing

from .. import ci

REASON = missing()


def live_marks() -> list:
    return ci.live_marks(REASON)


@pytest.fixture(scope="module")
def lab() -> Iterator[DockerLab]:
    ci.skip_or_fail(REASON)
    with DockerLab() as lab:
        lab.start_plugin()
        yield lab


def eth0(lab: DockerLab, c: str, ifname: str = "eth0") -> dict:
    """What the side-by-side compares: kind, mode, MAC, MTU, IPv4 addresses, IPv4 routes."""
    link = json.loads(lab.in_container(c, "ip", "-j", "-d", "addr", "show", ifname).stdout)[0]
    info = link.get("linkinfo", {})
    routes = json.loads(lab.in_container(c, "ip", "-j", "-4", "route", "show").stdout or "[]")
    return {"kind": info.get("info_kind"), "mode": info.get("info_data", {}).get("mode"),
            "mac": link["address"], "mtu": link["mtu"], "up": "UP" in link["flags"],
            "addrs": sorted(f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])
                            if a["family"] == "inet"),
            "routes": sorted(f"{r['dst']} via {r.get('gateway', '-')} dev {r['dev']}" for r in routes),
            "info_data": info.get("info_data", {})}


def host_links(lab: DockerLab) -> list[str]:
    return sorted(ln["ifname"] for ln in lab.ip_host("link", "show"))
