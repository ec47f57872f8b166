"""Docker's built-in macvlan driver is the oracle: the same networks and containers on the same
dockerd with `-d macvlan` and `-d pymacvlan` must give the same results (create succeeds or
fails alike; each container's IP, MAC, MTU, link kind and mode, routes; pings to the wire
station and between containers; nothing left after `docker rm`/`docker network rm`; the state
after a dockerd restart). Where they differ on purpose, the test says so and why.

The built-in driver of dockerd 20.10 refuses a second network on a parent, so each case runs
the two drivers one after the other on the lab's one parent.
"""

from __future__ import annotations

import pytest

from .conftest import eth0, host_links, live_marks

pytestmark = live_marks()
DRIVERS = ("macvlan", "pymacvlan")


def run_case(lab, driver: str, mode: str, n: int = 2) -> dict:
    """A network in ``mode`` with Docker's IPAM options, ``n`` containers (the second with
    --ip), what each looks like, who reaches whom; then everything removed."""
    net = f"sbs{driver}"
    before = host_links(lab)
    lab.docker("network", "create", "-d", driver, "-o", "parent=pmvP", "-o", f"macvlan_mode={mode}",
               "--subnet", "10.83.0.0/24", "--gateway", "10.83.0.1", "--ip-range", "10.83.0.32/28",
               "--aux-address", "reserved=10.83.0.32", net)
    names = [f"{net}c{i}" for i in range(n)]
    try:
        for i, c in enumerate(names):
            extra = ["--ip", "10.83.0.40"] if i == 1 else []
            lab.docker("run", "-d", "--name", c, "--network", net, *extra, "pmv/bb:latest", "sleep", "600")
        out: dict = {"containers": [eth0(lab, c) for c in names]}
        out["station"] = [lab.ping(c, lab.station) for c in names]
        if n > 1:
            out["between"] = lab.ping(names[0], "10.83.0.40")
    finally:
        lab.docker("rm", "-f", *names, check=False)
        lab.docker("network", "rm", net, check=False)
    out["left"] = sorted(set(host_links(lab)) - set(before))
    return out


@pytest.mark.parametrize("mode", ["bridge", "private", "vepa", "passthru"])
def test_same_results_per_mode(lab, mode):
    n = 1 if mode == "passthru" else 2
    builtin, ours = (run_case(lab, d, mode, n) for d in DRIVERS)
    # the one difference: the built-in driver's netlink library sends txqueuelen 0; we leave the
    # kernel's default (1000). A macvlan is noqueue either way, so nothing is queued differently.
    assert ours == builtin
    assert builtin["left"] == []
    c0 = builtin["containers"][0]
    assert (c0["kind"], c0["mode"], c0["mtu"]) == ("macvlan", mode, 1500)
    assert c0["addrs"] == ["10.83.0.33/24"] if mode == "passthru" else ["10.83.0.33/24"]
    assert c0["mac"] == "02:42:0a:53:00:21"  # MAC from the IP, like the built-in driver
    assert all(builtin["station"])
    if n > 1:
        assert builtin["containers"][1]["addrs"] == ["10.83.0.40/24"]
        assert builtin["between"] is (mode == "bridge")  # private/vepa: no hairpin on the wire


def create(lab, driver: str, *args: str):
    r = lab.docker("network", "create", "-d", driver, *args, "--subnet", "10.84.0.0/24", "sbsx", check=False)
    if r.returncode == 0:
        lab.docker("network", "rm", "sbsx", check=False)
    return r.returncode == 0, r.stderr.strip()


@pytest.mark.parametrize("args, same", [
    (["-o", "parent=pmvP"], True),
    (["-o", "parent=pmvP", "-o", "macvlan_mode=foo"], True),
    (["-o", "parent=pmvNOPE"], True),
    (["-o", "parent=lo"], True),
    # this kernel has no 8021q: both fail; ours names the cause
    (["-o", "parent=pmvP.50"], True),
    # no parent: Docker makes a dummy link, which this kernel does not have (EOPNOTSUPP);
    # pymacvlan makes an isolated veth pair instead, so the internal network works
    ([], False),
    (["--internal"], False),
    (["--internal", "-o", "parent=pmvP"], True),
    # an unknown option: Docker ignores it; pymacvlan refuses it, naming the options it takes
    (["-o", "parent=pmvP", "-o", "macvlan_mod=private"], False),
])
def test_create_succeeds_or_fails_alike(lab, args, same):
    b_ok, b_err = create(lab, "macvlan", *args)
    o_ok, o_err = create(lab, "pymacvlan", *args)
    assert (b_ok == o_ok) is same, (b_err, o_err)
    if "macvlan_mode=foo" in args:
        assert "requested macvlan mode 'foo' is not valid" in b_err and "requested macvlan mode 'foo'" in o_err
    if "parent=pmvP.50" in args:
        assert "operation not supported" in b_err and "802.1Q" in o_err
    if "macvlan_mod=private" in args:
        assert "unknown option 'macvlan_mod'" in o_err and "macvlan_mode" in o_err
    assert host_links(lab) == ["lo", "pmvP"]


def test_several_networks_per_parent(lab):
    """dockerd 20.10's driver refuses a second network on a parent ("already using parent
    interface"); pymacvlan allows it, as the kernel does (children of one parent)."""
    lab.docker("network", "create", "-d", "macvlan", "-o", "parent=pmvP", "--subnet", "10.85.0.0/24", "sbsa")
    try:
        r = lab.docker("network", "create", "-d", "macvlan", "-o", "parent=pmvP", "--subnet", "10.86.0.0/24",
                       "sbsb", check=False)
        assert r.returncode != 0 and "already using parent interface pmvP" in r.stderr
    finally:
        lab.docker("network", "rm", "sbsa")
    nets = ("sbsc", "sbsd")
    try:
        for i, n in enumerate(nets):
            lab.docker("network", "create", "-d", "pymacvlan", "-o", "parent=pmvP", "--subnet",
                       f"10.8{5 + i}.0.0/24", n)
            lab.docker("run", "-d", "--name", f"{n}c", "--network", n, "pmv/bb:latest", "sleep", "600")
        assert eth0(lab, "sbscc")["addrs"] == ["10.85.0.2/24"] and eth0(lab, "sbsdc")["addrs"] == ["10.86.0.2/24"]
    finally:
        lab.docker("rm", "-f", "sbscc", "sbsdc", check=False)
        for n in nets:
            lab.docker("network", "rm", n, check=False)
    assert host_links(lab) == ["lo", "pmvP"]


def test_internal_network(lab):
    """No parent: the containers reach each other and nothing else, and have no default route."""
    lab.docker("network", "create", "-d", "pymacvlan", "--subnet", "10.87.0.0/24", "sbsi")
    try:
        for c in ("sbsi1", "sbsi2"):
            lab.docker("run", "-d", "--name", c, "--network", "sbsi", "pmv/bb:latest", "sleep", "600")
        e = eth0(lab, "sbsi1")
        assert e["routes"] == ["10.87.0.0/24 via - dev eth0"]  # no gateway: it would lead nowhere
        assert lab.ping("sbsi1", "10.87.0.3")
        assert not lab.ping("sbsi1", lab.station)
    finally:
        lab.docker("rm", "-f", "sbsi1", "sbsi2", check=False)
        lab.docker("network", "rm", "sbsi", check=False)
    assert host_links(lab) == ["lo", "pmvP"]


def test_mac_address(lab):
    """`--mac-address` (through the API at v1.41: the 28.x client refuses it with --network there)."""
    macs = {}
    for d in DRIVERS:
        lab.docker("network", "create", "-d", d, "-o", "parent=pmvP", "--subnet", "10.83.0.0/24", f"sbsm{d}")
        try:
            code, body = lab.api("POST", f"/containers/create?name=sbsm{d}c", {
                "Image": "pmv/bb:latest", "Cmd": ["sleep", "600"], "MacAddress": "02:00:00:00:00:11",
                "HostConfig": {"NetworkMode": f"sbsm{d}"}})
            assert code == 201, body
            lab.docker("start", f"sbsm{d}c")
            macs[d] = eth0(lab, f"sbsm{d}c")["mac"]
        finally:
            lab.docker("rm", "-f", f"sbsm{d}c", check=False)
            lab.docker("network", "rm", f"sbsm{d}", check=False)
    assert macs == {"macvlan": "02:00:00:00:00:11", "pymacvlan": "02:00:00:00:00:11"}


@pytest.mark.parametrize("driver", DRIVERS)
def test_dockerd_restart(lab, driver):
    """A --restart=always container comes back with the same address, MAC and reach after
    dockerd restarts, on both drivers (Docker does not send CreateNetwork again: the plugin's
    state file has the network)."""
    import time

    n, c = f"sbsr{driver}", f"sbsr{driver}c"
    lab.docker("network", "create", "-d", driver, "-o", "parent=pmvP", "--subnet", "10.83.0.0/24", n)
    lab.docker("run", "-d", "--restart", "always", "--name", c, "--network", n, "pmv/bb:latest", "sleep", "600")
    try:
        before = eth0(lab, c)
        lab.restart_dockerd()
        for _ in range(100):
            if lab.docker("inspect", "-f", "{{.State.Running}}", c).stdout.strip() == "true":
                break
            time.sleep(0.1)
        assert eth0(lab, c) == before
        assert lab.ping(c, lab.station)
    finally:
        lab.docker("rm", "-f", c, check=False)
        lab.docker("network", "rm", n, check=False)
    assert host_links(lab) == ["lo", "pmvP"]
