"""Delegation to the IPAM plugin (cni/ipam.py) with the Debian reference plugins: a plugin
older than the configuration is called at a version both speak (issue 25: cniVersion 1.1.0 and
Debian's host-local 1.1.1), and its refusals name it. host-local needs no privileges."""

from __future__ import annotations

import json
import os

import pytest

from pymacvlan.cni import ipam
from pymacvlan.cni.skel import Args, CNIError
from tests.ci import skip_or_fail

HOST_LOCAL = "/usr/lib/cni/host-local"


@pytest.fixture
def env(monkeypatch, tmp_path):
    skip_or_fail(None if os.access(HOST_LOCAL, os.X_OK) else "needs containernetworking-plugins (host-local)")
    for k, v in {"CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/none", "CNI_IFNAME": "eth0",
                 "CNI_PATH": os.path.dirname(HOST_LOCAL)}.items():
        monkeypatch.setenv(k, v)
    return tmp_path


def args(conf: dict, command: str = "ADD") -> Args:
    return Args(command, "c1", "/run/netns/none", "eth0", "", os.path.dirname(HOST_LOCAL),
                json.dumps(conf).encode(), conf)


def conf(tmp_path, version: str, **ipam_extra) -> dict:
    return {"cniVersion": version, "name": "lan", "type": "pymacvlan-cni", "master": "eth0",
            "ipam": {"type": "host-local", "subnet": "10.77.5.0/24", "dataDir": str(tmp_path / "ipam"),
                     **ipam_extra}}


def test_a_1_1_0_config_gets_an_address_from_a_1_0_0_ipam_plugin(env):
    c = conf(env, "1.1.0")
    assert "1.1.0" not in ipam.versions(args(c), "host-local")  # Debian's 1.1.1 speaks up to 1.0.0
    cur = ipam.add(args(c), "host-local")
    assert cur["ips"][0]["address"] == "10.77.5.2/24"
    assert ipam.execute(args(c, "DEL"), "DEL", "host-local") is None
    assert not [f for f in os.listdir(env / "ipam" / "lan") if f.startswith("10.")]


def test_a_refusal_from_the_ipam_plugin_names_it(env):
    c = conf(env, "1.0.0", subnet="10.77.5.0/33")
    with pytest.raises(CNIError) as e:
        ipam.add(args(c), "host-local")
    assert e.value.msg.startswith("host-local: "), e.value.msg


def test_the_common_version_is_the_highest_both_speak():
    assert ipam.common_version("1.1.0", ["0.3.1", "0.4.0", "1.0.0"], "ADD") == "1.0.0"
    assert ipam.common_version("0.4.0", ["0.3.1", "0.4.0", "1.0.0"], "ADD") == "0.4.0"
    assert ipam.common_version("1.1.0", ["0.3.0", "0.3.1"], "CHECK") is None  # CHECK came with 0.4.0
    assert ipam.common_version("0.3.0", ["1.0.0"], "ADD") is None
