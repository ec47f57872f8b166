"""The plugin without a kernel: info, create's checks and completions, setup's and teardown's
input checks (they run before anything is touched), the error object and exit status."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from pymacvlan.netavark import API_VERSION
from pymacvlan.netavark.config import PluginError, parse_exec, parse_network, parse_options
from pymacvlan.netavark.plugin import addressing, main

from .conftest import NET_ID, SRC, network, per_container


def call(argv: list[str], data: bytes | str = b"", monkeypatch=None, capsys=None) -> tuple[int, dict | None]:
    raw = data.encode() if isinstance(data, str) else data
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw)))
    rc = main(argv)
    out = capsys.readouterr().out
    return rc, (json.loads(out) if out.strip() else None)


def test_info_and_no_subcommand(monkeypatch, capsys):
    for argv in (["info"], []):
        rc, out = call(argv, monkeypatch=monkeypatch, capsys=capsys)
        assert rc == 0 and out["api_version"] == API_VERSION == "1.0.0"
        assert out["version"] and all(isinstance(v, str) for v in out.values())


@pytest.mark.parametrize("argv,text", [
    (["frobnicate"], "unknown subcommand: frobnicate"),
    (["setup"], "netns path argument is missing"),
    (["teardown", ""], "netns path argument is missing"),
])
def test_bad_invocations(monkeypatch, capsys, argv, text):
    rc, out = call(argv, b"{}", monkeypatch, capsys)
    assert rc == 1 and text in out["error"]


def test_create_completes(monkeypatch, capsys):
    net = network(driver="pymacvlan", parent="", ipam=None, dns_enabled=True,
                  subnets=[{"subnet": "10.88.0.0/16"}, {"subnet": "fd88::/64"}],
                  options={"parent": "", "mode": "vepa", "no_default_route": "1", "custom": "x"})
    rc, out = call(["create"], json.dumps(net), monkeypatch, capsys)
    assert rc == 1 and out["error"].startswith("options.custom: unsupported vlan network option: custom")
    del net["options"]["custom"]
    rc, out = call(["create"], json.dumps(net), monkeypatch, capsys)
    assert rc == 0, out
    assert (out["name"], out["id"], out["driver"]) == ("pmvnet", NET_ID, "pymacvlan")
    assert out["dns_enabled"] is False and out["ipv6_enabled"] is True
    assert out["ipam_options"] == {"driver": "host-local"}
    assert [s["gateway"] for s in out["subnets"]] == ["10.88.0.1", "fd88::1"]
    assert out["options"] == {"mode": "vepa", "no_default_route": "true"}
    assert out["network_interface"] == ""


def test_create_dhcp_default_and_internal(monkeypatch, capsys):
    rc, out = call(["create"], json.dumps(network(parent="", subnets=[], ipam=None)), monkeypatch, capsys)
    assert rc == 0 and out["ipam_options"]["driver"] == "dhcp"
    rc, out = call(["create"], json.dumps(network(parent="", internal=True, subnets=[{"subnet": "10.1.0.0/24"}])),
                   monkeypatch, capsys)
    assert rc == 0 and "gateway" not in out["subnets"][0]


@pytest.mark.parametrize("edit,text", [
    ({"name": "bad/name"}, "name: Invalid characters in network name"),
    ({"id": ""}, "id: Network id must be supplied"),
    ({"internal": "no"}, "internal: must be true or false"),
    ({"options": {"mtu": 1400}}, "options.mtu: must be a string"),
    ({"options": {"mode": "l2"}}, 'options.mode: invalid macvlan mode "l2"'),
    ({"options": {"bclim": "x"}}, 'options.bclim: unable to parse "bclim"'),
    ({"options": {"no_default_route": "yes"}}, 'options.no_default_route: unable to parse "no_default_route"'),
    ({"options": {"host_access": "true", "mode": "vepa"}}, "options.host_access: needs mode bridge"),
    ({"options": {"backend": "ebpf"}}, "options.backend: unknown backend"),
    ({"options": {"macaddr": "02:00:00:00:00:01"}}, "options.macaddr: is only for mode=source"),
    ({"options": {"advertise_addr_nmsgs": "4"}}, "options.advertise_addr_nmsgs"),
    ({"options": {"advertise_addr_ms": "99"}}, "options.advertise_addr_ms"),
    ({"options": {"parent": "a"}, "network_interface": "b"}, "options.parent: 'a' names another interface"),
    ({"subnets": [{"subnet": "10.1.0.0/24", "gateway": "10.2.0.1"}]}, "gateway 10.2.0.1 not in subnet 10.1.0.0/24"),
    ({"subnets": [{"subnet": "10.1.0.0/24"}, {"subnet": "10.1.0.0/16"}]}, "overlapping subnets"),
    ({"subnets": [{"subnet": "10.1.0.0/32"}]}, "could not create gateway for subnet 10.1.0.0/32"),
    ({"subnets": [{"subnet": "nonsense"}]}, "subnets[0].subnet: invalid IP network"),
    ({"ipam_options": {"driver": "dhcp"}}, "ipam driver dhcp set but subnets are set"),
    ({"ipam_options": {"driver": "none"}}, "None ipam driver is set but subnets are given"),
    ({"routes": [{"destination": "10.9.0.1/16", "gateway": "10.1.0.1"}]}, "route destination invalid"),
    ({"routes": [{"destination": "10.9.0.0/16"}]}, "requires a gateway for type unicast"),
    ({"routes": [{"destination": "10.9.0.0/16", "route_type": "nat"}]}, 'invalid route type "nat"'),
    ({"network_interface": "pmv-no-such-0"}, "parent interface pmv-no-such-0 does not exist"),
])
def test_create_refuses(monkeypatch, capsys, edit, text):
    net = network(driver="pymacvlan", parent="")
    net.update(edit)
    rc, out = call(["create"], json.dumps(net), monkeypatch, capsys)
    assert rc == 1 and set(out) == {"error"}, out
    assert text in out["error"], out


def test_setup_input_checks_before_anything():
    def ex(**edit):
        raw = {"container_id": "c", "container_name": "n", "network": network(), "network_options": per_container()}
        raw.update(edit)
        return raw

    with pytest.raises(PluginError, match="container_id: missing"):
        parse_exec({k: v for k, v in ex().items() if k != "container_id"})
    with pytest.raises(PluginError, match="network_options.static_ips\\[0\\]: invalid IP address"):
        parse_exec(ex(network_options=per_container(static_ips=["10.79.0.300"])))
    with pytest.raises(PluginError, match="network_options.interface_name: 'a/b' is not an interface name"):
        parse_exec(ex(network_options=per_container(ifname="a/b")))
    with pytest.raises(PluginError, match="not all static IPs matched a subnet: expected 2, got 1"):
        addressing(parse_exec(ex(network_options=per_container(static_ips=["10.79.0.5", "10.80.0.5"]))))
    a = addressing(parse_exec(ex(network=network(internal=True))))
    assert a.gateways == [] and [str(x) for x in a.addresses] == ["10.79.0.20/24"]


def test_options_defaults():
    o = parse_options(None, strict=True)
    assert (o.mode, o.mtu, o.metric, o.no_default_route, o.bclim) == ("bridge", 0, 99, False, None)
    assert (o.announce_count, o.announce_ms) == (3, 1000)
    assert parse_network(network()).ipam == "host-local"
    assert parse_network(network(subnets=[], ipam=None)).ipam == "dhcp"


def test_the_executable_never_prints_a_traceback():
    """The console entry point itself, as netavark runs it (stdout JSON, exit 1)."""
    for argv, data in ((["create"], b"\xff\xfe"), (["setup", "/proc/self/ns/net"], b"[]"),
                       (["teardown", "/nonexistent"], b'{"network": 5}')):
        r = subprocess.run([sys.executable, "-m", "pymacvlan.netavark", *argv], input=data, capture_output=True,
                           env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"}, timeout=30)
        assert r.returncode == 1, r
        assert set(json.loads(r.stdout)) == {"error"}
        assert b"Traceback" not in r.stderr
