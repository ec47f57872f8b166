"""Issue 18's done-when test: the same requests through every front end (the `link` CLI,
`apply`, the CNI plugin) on the sim and on the userspace daemon give the same links; and the
behaviour that used to differ by front end or backend (a sibling's MAC, `show --graph` on the
userspace backend, a kernel command without root).

Each front end translates its own input (CLI words, a TOML file, a CNI NetConf) into one
LinkRequest for the driver: the links they leave must agree key for key.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pymacvlan.cli.main import main
from tests.backends.userspace.netlab import Lab, leftovers, live_unavailable
from tests.ci import live_marks

_REASON = live_unavailable()
pytestmark = live_marks(_REASON)

SRC = str(Path(__file__).resolve().parents[2] / "src")
#: (name, mode, address, mtu, up, bcqueuelen): what every front end asks for
CHILDREN = [("fa0", "bridge", "02:00:00:00:18:01", 1400, True, None),
            ("fa1", "vepa", "02:00:00:00:18:02", None, False, 200),
            ("fa2", "private", "02:00:00:00:18:03", None, True, None)]


@pytest.fixture
def lab():
    lab = Lab()
    try:
        yield lab
    finally:
        lab.close()
        assert not leftovers(lab.tag), f"leftover namespaces or links: {leftovers(lab.tag)}"


def _cli_words(parent: str, c: tuple) -> list[str]:
    name, mode, mac, mtu, up, bcq = c
    w = ["add", "link", parent, "name", name, "type", "macvlan", "mode", mode, "address", mac]
    w += ["mtu", str(mtu)] if mtu else []
    w += ["bcqueuelen", str(bcq)] if bcq is not None else []
    return w + (["up"] if up else [])


def _toml(parent: str) -> str:
    out = [f"[parents.{parent}]", ""]
    for name, mode, mac, mtu, up, bcq in CHILDREN:
        out += [f"[parents.{parent}.children.{name}]", f'mode = "{mode}"', f'mac = "{mac}"',
                f"up = {'true' if up else 'false'}"]
        out += [f"mtu = {mtu}"] if mtu else []
        out += [f"bcqueuelen = {bcq}"] if bcq is not None else []
        out.append("")
    return "\n".join(out)


def _normal(links: list[dict]) -> dict[str, tuple]:
    """What a request decides about a link, from `link -j -d show`."""
    out = {}
    for d in links:
        info = d.get("linkinfo", {})
        if info.get("info_kind") != "macvlan":
            continue
        data = info.get("info_data", {})
        out[d["ifname"]] = (data.get("mode"), d["address"], d["mtu"], "UP" in d["flags"], data.get("bcqueuelen"))
    return out


def _show(opts: list[str], capsys) -> dict[str, tuple]:
    capsys.readouterr()
    assert main(["link", *opts, "-j", "-d", "show"]) == 0
    return _normal(json.loads(capsys.readouterr().out or "[]"))


def _through_cli(parent: str, opts: list[str], capsys) -> dict[str, tuple]:
    for c in CHILDREN:
        assert main(["link", *opts, *_cli_words(parent, c)]) == 0, capsys.readouterr().err
    got = _show(opts, capsys)
    for c in CHILDREN:
        assert main(["link", *opts, "del", c[0]]) == 0
    return got


def _through_apply(parent: str, opts: list[str], tmp: Path, capsys) -> dict[str, tuple]:
    f = tmp / "setup.toml"
    f.write_text(_toml(parent))
    assert main(["apply", str(f), *opts]) == 0, capsys.readouterr().err
    got = _show(opts, capsys)
    assert main(["down", str(f), *opts]) == 0
    return got


def test_the_same_requests_through_cli_apply_and_cni_on_sim_and_userspace(lab: Lab, tmp_path: Path, capsys) -> None:
    from tests.backends.userspace.test_daemon import DaemonProc

    sim = ["--backend", "sim", "--state", str(tmp_path / "sim.json")]
    results = {("sim", "cli"): _through_cli("eth0", sim, capsys),
               ("sim", "apply"): _through_apply("eth0", sim, tmp_path, capsys)}
    P, parent = _parent(lab)
    d = DaemonProc(tmp_path, P).start()
    try:
        us = ["--backend", "userspace", "--socket", d.socket]
        results[("userspace", "cli")] = _through_cli(parent, us, capsys)
        results[("userspace", "apply")] = _through_apply(parent, us, tmp_path, capsys)
        cni = _through_cni(lab, parent, P, d.socket, tmp_path)
    finally:
        d.stop()
    base = results[("sim", "cli")]
    assert base == {name: (mode, mac, mtu or 1500, up, bcq if bcq is not None else base[name][4])
                    for name, mode, mac, mtu, up, bcq in CHILDREN}
    for key, got in results.items():
        assert got == base, (key, got, base)
    # CNI cannot say "down": its interface is always up; everything else is the same request
    assert {n: v[:3] + v[4:] for n, v in cni.items()} == {n: v[:3] + v[4:] for n, v in base.items()}
    assert all(v[3] for v in cni.values())


def _parent(lab: Lab) -> tuple[str, str]:
    P, W = lab.ns("P"), lab.ns("W")
    parent, wire = lab.ifname("p"), lab.ifname("w")
    lab.veth(parent, P, wire, W)
    return P, parent


def _through_cni(lab: Lab, parent: str, host: str, sock: str, tmp: Path) -> dict[str, tuple]:
    """One pod per child, the same request as a CNI NetConf; the child is eth0 in its pod
    (CNI's name), reported here under the request's name."""
    from pymacvlan.links import DriverConfig, open_driver

    got = {}
    plugin = [sys.executable, "-m", "pymacvlan.cni"]
    for name, mode, mac, mtu, _up, bcq in CHILDREN:
        pod = lab.ns(f"c{name[-1]}")
        conf: dict = {"cniVersion": "1.0.0", "name": f"fe{name}", "type": "pymacvlan-cni", "master": parent,
                      "mode": mode, "mac": mac, "backend": "userspace", "socket": sock, "stateDir": str(tmp / "cni")}
        if mtu:
            conf["mtu"] = mtu
        if bcq is not None:
            conf["bcqueuelen"] = bcq
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": SRC, "CNI_COMMAND": "ADD",
               "CNI_CONTAINERID": f"fe{name}", "CNI_IFNAME": "eth0", "CNI_NETNS": f"/run/netns/{pod}",
               "CNI_PATH": "/usr/lib/cni"}
        r = subprocess.run(["nsenter", f"--net=/run/netns/{host}", *plugin], input=json.dumps(conf).encode(),
                           env=env, capture_output=True, timeout=60)
        assert r.returncode == 0, (r.stdout, r.stderr)
        links = open_driver(DriverConfig("userspace", socket=sock)).show("eth0", netns=f"/run/netns/{pod}")
        got[name] = _normal(links)["eth0"]
        r = subprocess.run(["nsenter", f"--net=/run/netns/{host}", *plugin], input=json.dumps(conf).encode(),
                           env=dict(env, CNI_COMMAND="DEL"), capture_output=True, timeout=60)
        assert r.returncode == 0, (r.stdout, r.stderr)
    return got


def test_a_siblings_mac_is_eaddrinuse_on_sim_and_userspace(lab: Lab, tmp_path: Path, capsys) -> None:
    """A child may be added with a sibling's MAC, but not brought up with it: EADDRINUSE, as
    the kernel refuses the open; it keeps its MAC (never a random one), and `add ... up` leaves
    nothing behind."""
    from tests.backends.userspace.test_daemon import DaemonProc

    mac = "02:00:00:00:18:10"
    P, parent = _parent(lab)
    d = DaemonProc(tmp_path, P).start()
    try:
        for opts, par in ((["--backend", "sim", "--state", str(tmp_path / "sim.json")], "eth1"),
                          (["--backend", "userspace", "--socket", d.socket], parent)):
            def link(*words: str, opts: list[str] = opts) -> tuple[int, str]:
                capsys.readouterr()
                rc = main(["link", *opts, *words])
                return rc, capsys.readouterr().err
            assert link("add", "link", par, "name", "fb0", "type", "macvlan", "mode", "bridge", "address", mac,
                        "up")[0] == 0
            rc, err = link("add", "link", par, "name", "fb1", "type", "macvlan", "mode", "bridge", "address", mac,
                           "up")
            assert rc != 0 and "Address already in use" in err, (opts, err)
            assert "fb1" not in _show(opts, capsys), opts  # `add ... up` that cannot come up leaves nothing
            assert link("add", "link", par, "name", "fb1", "type", "macvlan", "mode", "bridge", "address", mac)[0] == 0
            rc, err = link("set", "fb1", "up")
            assert rc != 0 and "Address already in use" in err, (opts, err)
            assert _show(opts, capsys)["fb1"][1:4:2] == (mac, False), opts  # its own MAC, still down
            for n in ("fb1", "fb0"):
                assert link("del", n)[0] == 0
    finally:
        d.stop()


def test_show_graph_on_userspace_draws_the_daemons_children(lab: Lab, tmp_path: Path, capsys) -> None:
    from tests.backends.userspace.test_daemon import DaemonProc

    P, parent = _parent(lab)
    d = DaemonProc(tmp_path, P).start()
    try:
        us = ["--backend", "userspace", "--socket", d.socket]
        for name, mode in (("fg0", "bridge"), ("fg1", "vepa")):
            assert main(["link", *us, "add", "link", parent, "name", name, "type", "macvlan", "mode", mode]) == 0
        capsys.readouterr()
        assert main(["show", *us, "--dot"]) == 0, capsys.readouterr().err
        dot = capsys.readouterr().out
        assert "fg0" in dot and "fg1" in dot and parent in dot
    finally:
        d.stop()


def test_a_kernel_command_without_root_is_one_line_naming_eperm(tmp_path: Path) -> None:
    """Run without CAP_NET_ADMIN/CAP_SYS_ADMIN (the capabilities a non-root user lacks): one
    line (iproute2's words and a hint for `link`) naming EPERM, never a traceback."""
    drop = ["setpriv", "--bounding-set=-net_admin,-sys_admin,-net_raw", "--inh-caps=-all"]
    probe = subprocess.run([*drop, sys.executable, "-c", "print(open('/proc/self/status').read())"],
                           capture_output=True, text=True, timeout=30)
    eff = next(ln.split()[1] for ln in probe.stdout.splitlines() if ln.startswith("CapEff:"))
    assert int(eff, 16) & ((1 << 12) | (1 << 21)) == 0, "the capabilities were not dropped"
    env = dict(os.environ, PYTHONPATH=SRC)
    for words in (["trace", "--backend", "kernel", "--count", "1"],
                  ["stats", "--backend", "kernel", "-n", "/proc/self/ns/net"],
                  ["show", "--backend", "kernel", "--netns", "/proc/self/ns/net"],
                  ["link", "--backend", "kernel", "-n", "/proc/self/ns/net", "show"],
                  ["link", "--backend", "kernel", "add", "link", "lo", "name", "pmvnoroot0", "type", "macvlan"]):
        r = subprocess.run([*drop, sys.executable, "-m", "pymacvlan", *words], capture_output=True, text=True,
                           timeout=60, env=env)
        lines = r.stderr.strip().splitlines()
        assert r.returncode != 0 and "Traceback" not in r.stderr, (words, r.stderr)
        assert "EPERM" in r.stderr and len(lines) <= 2, (words, r.stderr)
