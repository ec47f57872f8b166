"""`pymacvlan link` on the sim backend: no root, state kept between invocations."""

from __future__ import annotations

import json

import pytest

from pymacvlan.links import LinkChange, LinkRequest, get_driver
from pymacvlan.links.sim import parent_mac
from pymacvlan.model import Mode, mac_str, parse_mac


def links(cli, *opts) -> list[dict]:
    out, _ = cli(*opts, "-j", "-d", "-s", "link", "show")
    return json.loads(out)


def by_name(cli) -> dict[str, dict]:
    return {d["ifname"]: d for d in links(cli)}


def test_add_show_text_in_iproute2_format(cli):
    cli("link", "add", "link", "eth0", "name", "mac0", "type", "macvlan", "mode", "bridge")
    cli("link", "set", "mac0", "up")
    out, _ = cli("link", "show", "mac0")
    mac = by_name(cli)["mac0"]["address"]
    assert out.splitlines() == [
        "3: mac0@eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT "
        "group default qlen 1000",
        f"    link/ether {mac} brd ff:ff:ff:ff:ff:ff",
    ]
    out, _ = cli("-d", "link", "show", "mac0")
    assert out.splitlines()[2].startswith("    macvlan mode bridge bcqueuelen 1000 usedbcqueuelen 1000 addrgenmode ")
    assert out.splitlines()[1].endswith(" promiscuity 0  allmulti 0 minmtu 68 maxmtu 65535 ")


def test_a_mistyped_parent_is_refused_as_ip_refuses_it(cli, sim_state):
    """Issue 25: `link add link eht0 ...` silently made a parent eht0; the mistake surfaced later."""
    _, err = cli("link", "add", "link", "eht0", "name", "m", "type", "macvlan", rc=1)
    assert err.splitlines()[0] == 'Cannot find device "eht0"'
    assert "did you mean eth0?" in err and "pymacvlan link add name eht0 type veth" in err
    out, _ = cli("link", "show")
    assert "eht0" not in out


def test_a_declared_parent_takes_children_and_a_second_declaration_is_refused(cli):
    cli("link", "add", "name", "uplink", "type", "veth")
    cli("link", "add", "link", "uplink", "name", "m", "type", "macvlan", "mode", "bridge")
    assert by_name(cli)["m"]["link"] == "uplink"
    _, err = cli("link", "add", "uplink", "type", "veth", rc=2)
    assert "already exists" in err
    _, err = cli("--backend", "kernel", "link", "add", "name", "x", "type", "veth", rc=2)
    assert "Unknown device type" in err


def test_parent_eth7_declared_then_child_mac_random(cli, tmp_path):
    cli("link", "add", "name", "eth7", "type", "veth")
    cli("link", "add", "link", "eth7", "name", "m", "type", "macvlan")
    d = by_name(cli)
    assert d["eth7"]["address"] == mac_str(parent_mac("eth7"))
    assert d["eth7"]["linkinfo"] == {"info_kind": "veth"}
    assert d["m"]["link"] == "eth7"
    assert d["m"]["linkinfo"]["info_data"]["mode"] == "vepa"  # the kernel's default
    # the child's MAC is random, locally administered unicast, and comes back from the journal
    mac = parse_mac(d["m"]["address"])
    assert mac[0] & 0x03 == 0x02
    assert by_name(cli)["m"]["address"] == d["m"]["address"]
    # the same commands on a fresh state draw another MAC (OS entropy, not a seed two hosts share)
    other = get_driver("sim", state=tmp_path / "other.json")
    other.add_parent("eth7")
    other.add(LinkRequest(parent="eth7", name="m"))
    assert other.show("m")[0]["address"] != d["m"]["address"]
    assert get_driver("sim", state=tmp_path / "other.json").show("m")[0]["address"] == other.show("m")[0]["address"]


def test_state_persists_and_replays_partial_failures(cli, sim_state):
    cli("link", "add", "link", "eth0", "name", "a", "type", "macvlan", "mode", "bridge", "address", "02:00:00:00:00:0a")
    cli("link", "add", "link", "eth0", "name", "b", "type", "macvlan", "mode", "bridge", "address", "02:00:00:00:00:0a")
    cli("link", "set", "a", "up")
    # b's `up` fails (EADDRINUSE) but its promisc still applies, as __dev_change_flags() does
    _, err = cli("link", "set", "b", "promisc", "on", "up", rc=2)
    assert err.splitlines()[0] == "RTNETLINK answers: Address already in use"
    assert "02:00:00:00:00:0a is already in use by child a" in err.splitlines()[1]
    d = by_name(cli)
    assert "PROMISC" in d["b"]["flags"] and "UP" not in d["b"]["flags"]
    journal = json.loads(sim_state.read_text())["journal"]
    assert [e["op"] for e in journal] == ["add", "add", "set", "set"]


def test_details_source_mode_and_flags(cli):
    cli("link", "add", "link", "eth0", "name", "s0", "type", "macvtap", "mode", "source",
        "macaddr", "set", "02:00:00:00:00:01", "02:00:00:00:00:02", "bcqueuelen", "2000")
    cli("link", "add", "link", "eth0", "name", "v0", "type", "macvlan", "mode", "vepa", "flag", "nodst")
    cli("link", "set", "s0", "type", "macvtap", "macaddr", "del", "02:00:00:00:00:01")
    d = by_name(cli)
    assert d["s0"]["txqlen"] == 500
    assert d["s0"]["linkinfo"] == {"info_kind": "macvtap", "info_data": {
        "mode": "source", "bcqueuelen": 2000, "usedbcqueuelen": 2000, "macaddr_count": 1,
        "macaddr_data": ["02:00:00:00:00:02"]}}
    assert d["v0"]["linkinfo"]["info_data"] == {"mode": "vepa", "nodst": True, "bcqueuelen": 1000,
                                                "usedbcqueuelen": 2000}
    out, _ = cli("-d", "link", "show", "type", "macvtap")
    assert "    macvtap mode source bcqueuelen 2000 usedbcqueuelen 2000 remotes (1) 02:00:00:00:00:02 addrgenmode" \
        in out
    assert "v0" not in out


def test_brief_json_pretty_and_stats(cli):
    cli("link", "add", "link", "eth0", "name", "mac0", "type", "macvlan", "up")
    out, _ = cli("-br", "link", "show")
    mac = by_name(cli)["mac0"]["address"]
    assert out.splitlines()[1] == f"mac0@eth0        UP             {mac} <BROADCAST,MULTICAST,UP,LOWER_UP> "
    out, _ = cli("-br", "-j", "link", "show", "mac0")
    assert json.loads(out) == [{"link": "eth0", "ifname": "mac0", "operstate": "UP", "address": mac,
                                "flags": ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"]}]
    out, _ = cli("-j", "-p", "link", "show", "mac0")
    assert out.startswith('[ {\n        "ifindex": 3,\n        "link": "eth0",\n')
    assert '        "flags": [ "BROADCAST","MULTICAST","UP","LOWER_UP" ],\n' in out
    assert out.endswith("    } ]\n")
    out, _ = cli("-s", "link", "show", "mac0")
    assert out.splitlines()[2:] == [
        "    RX:  bytes packets errors dropped  missed   mcast           ",
        "             0       0      0       0       0       0 ",
        "    TX:  bytes packets errors dropped carrier collsns           ",
        "             0       0      0       0       0       0 ",
    ]
    plain = json.loads(cli("-j", "link", "show", "mac0")[0])[0]
    assert "stats64" not in plain and "linkinfo" not in plain and "promiscuity" not in plain


def test_global_options_after_link_and_backend_anywhere(cli):
    cli("link", "add", "link", "eth0", "name", "mac0", "type", "macvlan", "--backend", "sim")
    out1, _ = cli("-j", "-d", "link", "show")
    out2, _ = cli("link", "-j", "-d", "--backend=sim", "show")
    out3, _ = cli("--backend", "sim", "-j", "-details", "link", "sh")
    assert out1 == out2 == out3


def test_abbreviations_and_dev_keyword(cli):
    cli("link", "a", "link", "eth0", "dev", "mac0", "type", "macvlan", "mode", "private")
    cli("link", "s", "dev", "mac0", "up")
    out, _ = cli("link", "lst", "dev", "mac0")
    assert "mac0@eth0" in out
    cli("link", "d", "dev", "mac0")
    assert "mac0" not in by_name(cli)


def test_unnamed_link_gets_the_kernel_name(cli):
    cli("link", "add", "link", "eth0", "type", "macvlan")
    cli("link", "add", "link", "eth0", "type", "macvtap")
    assert {"macvlan0", "macvtap0"} <= set(by_name(cli))


@pytest.mark.parametrize("words,rc,first", [
    (["link", "add", "link", "eth0", "name", "m", "type", "macvlan", "mode", "foo"], 1,
     'Error: argument of "mode" must be "private", "vepa", "bridge", "passthru" or "source", not "foo"'),
    (["link", "add", "link", "eth0", "name", "m", "type", "macvlan", "flag", "nopromisc"], 1,
     "macvlan: nopromisc flag only valid in passthru mode"),
    (["link", "add", "link", "eth0", "name", "m", "type", "macvlan", "flag", "xx"], 1,
     'Error: argument of "flag" must be "nopromisc", "nodst" or "null", not "xx"'),
    (["link", "add", "link", "eth0", "name", "m", "type", "macvlan", "bogus"], 1, 'macvlan: unknown option "bogus"?'),
    (["link", "add", "link", "eth0", "name", "m"], 1, 'Not enough information: "type" argument is required'),
    (["link", "add", "link", "eth0", "name", "m", "type", "veth"], 2, "Error: Unknown device type."),
    (["link", "add", "link", "eth0", "name", "m", "type", "macvlan", "bcqueuelen", "-1"], 1,
     'Error: argument of "bcqueuelen" must be a positive integer [0-4294967295], not "-1"'),
    (["link", "add", "link", "eth0", "name", "m", "type", "macvlan", "mode"], 255,
     'Command line is not complete. Try option "help"'),
    (["link", "add", "link", "eth0", "name", "m", "address", "zz", "type", "macvlan"], 1, '"zz" is invalid lladdr.'),
    (["link", "set", "nope", "up"], 1, 'Cannot find device "nope"'),
    (["link", "del", "nope"], 1, 'Cannot find device "nope"'),
    (["link", "show", "nope"], 1, 'Device "nope" does not exist.'),
    (["link", "set", "nope", "mtu", "abc"], 255, 'Error: argument "abc" is wrong: Invalid "mtu" value'),
    (["link", "set", "nope", "promisc", "maybe"], 1, 'Error: argument of "promisc" must be "on" or "off", not "maybe"'),
    (["link", "set", "a", "b"], 255, 'Error: either "dev" is duplicate, or "b" is a garbage.'),
    (["link", "foo"], 255, 'Command "foo" is unknown, try "pymacvlan link help".'),
])
def test_usage_errors_as_iproute2_prints_them(cli, words, rc, first):
    _, err = cli(*words, rc=rc)
    assert err.splitlines()[0] == first


@pytest.mark.parametrize(
    "setup,words,errno_line,hint",
    [
        (
            [["link", "add", "link", "eth0", "name", "m", "type", "macvlan"]],
            ["link", "add", "link", "eth0", "name", "m", "type", "macvlan"],
            "RTNETLINK answers: File exists",
            "already exists",
        ),
        (
            [["link", "add", "link", "eth0", "name", "m", "type", "macvtap"]],
            ["link", "set", "m", "type", "macvlan", "mode", "bridge"],
            "RTNETLINK answers: Operation not supported",
            "say `type macvtap`",
        ),
        (
            [["link", "add", "link", "eth0", "name", "m", "type", "macvlan"]],
            ["link", "set", "m", "type", "macvlan", "mode", "passthru"],
            "RTNETLINK answers: Invalid argument",
            "passthru can be neither entered nor left",
        ),
        (
            [],
            ["link", "add", "link", "eth0", "name", "m", "type", "macvlan", "mtu", "9000"],
            "RTNETLINK answers: Invalid argument",
            "raise eth0's MTU first",
        ),
        (
            [],
            ["link", "add", "link", "eth0", "name", "m", "type", "macvlan", "macaddr", "add", "02:00:00:00:00:05"],
            "RTNETLINK answers: Invalid argument",
            "needs mode source",
        ),
        (
            [],
            ["link", "add", "link", "eth0", "name", "m", "type", "macvlan", "address", "01:00:00:00:00:01"],
            "RTNETLINK answers: Cannot assign requested address",
            "unicast",
        ),
        (
            [["link", "add", "link", "eth0", "name", "p", "type", "macvlan", "mode", "passthru"]],
            ["link", "add", "link", "eth0", "name", "m", "type", "macvlan"],
            "RTNETLINK answers: Invalid argument",
            "passthru child must be alone",
        ),
    ],
)
def test_kernel_refusals_with_advice(cli, setup, words, errno_line, hint):
    for s in setup:
        cli(*s)
    _, err = cli(*words, rc=2)
    lines = err.splitlines()
    assert lines[0] == errno_line
    assert len(lines) == 2 and lines[1].startswith("hint: ") and hint in lines[1]


def test_address_in_use_names_the_holder(cli):
    cli("link", "add", "link", "eth0", "name", "a", "type", "macvlan", "up")
    cli("link", "add", "link", "eth0", "name", "b", "type", "macvlan")
    mac_a = by_name(cli)["a"]["address"]
    _, err = cli("link", "set", "b", "address", mac_a, rc=2)
    assert err.splitlines()[0] == "RTNETLINK answers: Address already in use"
    assert f"{mac_a} is already in use by child a" in err.splitlines()[1]
    parent = by_name(cli)["eth0"]["address"]
    _, err = cli("link", "set", "b", "address", parent, rc=2)
    assert "in use by the parent eth0" in err


def test_netns_labels_show_link_index_and_mdown(cli):
    cli("link", "add", "link", "eth0", "name", "c0", "type", "macvlan", "netns", "ns1", "up")
    cli("link", "add", "link", "eth0", "name", "c1", "type", "macvlan", "up")
    assert "c0" not in by_name(cli)
    c0 = links(cli, "-n", "ns1")[0]
    assert c0["ifname"] == "c0" and c0["link_index"] == by_name(cli)["eth0"]["ifindex"] and "link" not in c0
    assert c0["link_netnsid"] == 0
    out, _ = cli("-n", "ns1", "link", "show")
    assert out.startswith("3: c0@if2: <BROADCAST,MULTICAST,UP,LOWER_UP>")
    assert "link-netnsid 0" in out
    cli("link", "set", "eth0", "down")
    assert links(cli)[1]["flags"] == ["NO-CARRIER", "BROADCAST", "MULTICAST", "UP", "M-DOWN"]
    assert links(cli)[1]["operstate"] == "LOWERLAYERDOWN"
    c0 = links(cli, "-n", "ns1")[0]
    assert c0["flags"] == ["NO-CARRIER", "BROADCAST", "MULTICAST", "UP"] and c0["operstate"] == "DOWN"
    cli("-n", "ns1", "link", "del", "c0")
    assert links(cli, "-n", "ns1") == []


def test_delete_parent_takes_children(cli):
    cli("link", "add", "link", "eth0", "name", "a", "type", "macvlan")
    cli("link", "add", "link", "a", "name", "b", "type", "macvlan")  # on a macvlan: the lower's lower
    assert by_name(cli)["b"]["link"] == "eth0"
    cli("link", "del", "eth0")
    assert links(cli) == []


def test_host_access_on_sim_is_the_bridge_child_only(cli):
    _, err = cli("link", "add", "link", "eth0", "name", "host0", "type", "macvlan", "host-access")
    d = by_name(cli)["host0"]
    assert d["linkinfo"]["info_data"]["mode"] == "bridge" and "UP" in d["flags"]
    assert "no host stack" in err
    _, err = cli("link", "add", "link", "eth0", "name", "h1", "type", "macvlan", "mode", "vepa", "host-access", rc=1)
    assert "host-access needs mode bridge" in err


def test_driver_api_matches_the_cli(sim_state):
    drv = get_driver("sim")
    drv.add(LinkRequest(parent="eth0", name="x", mode=Mode.BRIDGE))
    drv.set("x", LinkChange(up=True, mtu=1400))
    d = drv.show("x")[0]
    assert d["mtu"] == 1400 and "UP" in d["flags"]
    assert get_driver("sim").show("x") == [d]  # a second driver reads the same state


def test_corrupt_state_is_one_clear_error(cli, sim_state):
    sim_state.write_text("{not json")
    _, err = cli("link", "show", rc=2)
    assert "cannot read the sim state" in err and f"rm {sim_state}" in err


def test_a_16_byte_name_is_refused_in_iproute2s_words_and_nothing_is_made(cli):
    _, err = cli("link", "add", "link", "eth0", "name", "a" * 16, "type", "macvlan", rc=255)
    assert err.splitlines()[0] == f'Error: argument "{"a" * 16}" is wrong: "name" not a valid ifname'
    assert links(cli) == []


def test_a_failed_add_up_leaves_no_link_as_ip_does(cli):
    """rtnl_newlink() unregisters a link whose open fails: no half-made child."""
    cli("link", "add", "link", "eth0", "name", "a", "type", "macvlan", "address", "02:00:00:00:00:01", "up")
    _, err = cli("link", "add", "link", "eth0", "name", "b", "type", "macvlan", "address", "02:00:00:00:00:01",
                 "up", rc=2)
    assert err.startswith("RTNETLINK answers: Address already in use")
    assert sorted(by_name(cli)) == ["a", "eth0"]
    cli("link", "add", "link", "eth0", "name", "b", "type", "macvlan", "address", "02:00:00:00:00:02", "up")
    assert sorted(by_name(cli)) == ["a", "b", "eth0"]  # the journal replays cleanly after the refusal
