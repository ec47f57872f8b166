"""Real QEMU guests (TCG) on macvtap children: the kernel's macvtap as the reference, then a
pymacvlan userspace macvtap on each endpoint kind (stream, dgram, tapfd).

One topology for the module: namespace W is the wire — a bridge with the station 10.77.0.1
and dnsmasq handing out leases — with two parents hanging off it: ``k`` (in K) carries the
kernel's macvtap and a kernel macvlan sibling (bridge mode, 10.77.0.50, in SK); ``u`` (in U)
carries the userspace datapath, its TAP sibling (bridge mode, 10.77.0.51, in SU) and the
guest's endpoint. Each guest gets its own MAC, so its own lease. From inside the guest:
a DHCP lease, ping the station, ping the sibling, ping the sibling's IPv6 link-local (the
guest's neighbour solicitation); then the sibling pings the guest's link-local, which needs
the sibling's solicitation (to the guest's solicited-node group) to reach the guest: the
multicast a guest needs from its port. QEMU and dnsmasq are ended by their PIDs.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from pymacvlan.backends.userspace import (
    Datapath,
    DatapathConfig,
    DgramEndpoint,
    ParentConfig,
    StreamEndpoint,
    TapFdEndpoint,
)
from pymacvlan.backends.userspace.endpoints import recv_fd
from pymacvlan.backends.userspace.syscalls import write_sysctl
from pymacvlan.netlab import Lab, leftovers, live_unavailable, sh
from pymacvlan.vm.guest import build
from pymacvlan.vm.qemu import GuestRun, netdev_args, qemu_available, qemu_base
from tests.ci import in_ci

_REASON = live_unavailable() or qemu_available() or (None if shutil.which("dnsmasq") else "no dnsmasq")
pytestmark = [
    pytest.mark.live,
    pytest.mark.slow,
    pytest.mark.skipif(_REASON is not None and not in_ci(),
                       reason=f"{_REASON}; under CI these tests run (and fail) instead of skipping"),
]

STATION = "10.77.0.1"
SIBLING = {"kernel": "10.77.0.50", "userspace": "10.77.0.51"}
MACS = {"kernel": "52:54:00:77:00:01", "stream": "52:54:00:77:00:02", "dgram": "52:54:00:77:00:03",
        "tapfd": "52:54:00:77:00:04", "daemon-dgram": "52:54:00:77:00:05", "daemon-tapfd": "52:54:00:77:00:06"}


def _ipv6_on(ns: str, dev: str | None = None) -> None:
    for key in ("all", "default") + ((dev,) if dev else ()):
        write_sysctl(ns, f"net/ipv6/conf/{key}/disable_ipv6", "0")
        write_sysctl(ns, f"net/ipv6/conf/{key}/accept_dad", "0")


def link_local(ns: str, dev: str = "eth0", timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = sh("ip", "-n", ns, "-6", "-o", "addr", "show", "dev", dev, "scope", "link").stdout
        for word in out.split():
            if word.startswith("fe80::") and "tentative" not in out:
                return word.split("/")[0]
        time.sleep(0.1)
    raise AssertionError(f"no IPv6 link-local address on {dev} in {ns}")


class Wire:
    """The module's topology (see the module docstring)."""

    def __init__(self, lab: Lab, tmp: Path) -> None:
        self.lab, self.tmp = lab, tmp
        self.W, self.K, self.U = lab.ns("W"), lab.ns("K"), lab.ns("U")
        self.SK, self.SU = lab.ns("SK"), lab.ns("SU")
        sh("ip", "-n", self.W, "link", "add", "br0", "type", "bridge", "forward_delay", "0")
        self.k, self.u = lab.ifname("k"), lab.ifname("u")
        self.D = lab.ns("D")  # the daemon's parents' namespace
        self.d = lab.ifname("d")
        for parent, ns, port in ((self.k, self.K, lab.ifname("wk")), (self.u, self.U, lab.ifname("wu")),
                                 (self.d, self.D, lab.ifname("wd"))):
            lab.veth(parent, ns, port, self.W)
            sh("ip", "-n", self.W, "link", "set", port, "master", "br0")
        sh("ip", "-n", self.W, "addr", "add", f"{STATION}/24", "dev", "br0")
        sh("ip", "-n", self.W, "link", "set", "br0", "up")
        self.dnsmasq = subprocess.Popen(
            ["ip", "netns", "exec", self.W, "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0",
             "--interface=br0", "--bind-interfaces", "--dhcp-range=10.77.0.100,10.77.0.199,255.255.255.0,5m",
             f"--dhcp-leasefile={tmp / 'leases'}", "--no-ping", "--user=root", "--pid-file="],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # the kernel's side: a macvlan sibling; the macvtap is made per test
        sh("ip", "-n", self.K, "link", "add", "link", self.k, "name", "sib", "type", "macvlan", "mode", "bridge")
        sh("ip", "-n", self.K, "link", "set", "sib", "netns", self.SK, "name", "eth0")
        self._sibling(self.SK, SIBLING["kernel"])
        # the userspace side: the datapath on u and its TAP sibling
        self.dp = Datapath(DatapathConfig(ParentConfig(self.u, self.U))).start()
        self.dp.add_macvlan("sib", "bridge", netns=self.SU, ifname="eth0", mac=bytes.fromhex("020000770051"))
        self._sibling(self.SU, SIBLING["userspace"])

    @staticmethod
    def _sibling(ns: str, ip: str) -> None:
        _ipv6_on(ns, "eth0")
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")

    def close(self) -> None:
        try:
            if self.dp is not None:
                self.dp.close()
        finally:
            if self.dnsmasq.poll() is None:
                os.kill(self.dnsmasq.pid, signal.SIGTERM)
                self.dnsmasq.wait(10)


@pytest.fixture(scope="module")
def wire():
    lab = Lab()
    w = None
    tmp = Path(tempfile.mkdtemp(prefix="pmv-vm-"))
    try:
        w = Wire(lab, tmp)
        yield w
    finally:
        if w is not None:
            w.close()
        lab.close()
        shutil.rmtree(tmp, ignore_errors=True)
        assert not leftovers(lab.tag), f"leftover namespaces or links: {leftovers(lab.tag)}"


@pytest.fixture(scope="module")
def guest():
    return build()


def _script(sibling_ip: str, sibling_ll: str) -> str:
    return "\n".join([
        "pmv_dhcp",
        f"pmv_ping station {STATION}",
        f"pmv_ping sibling {sibling_ip}",
        f"pmv_ping sibling6 -6 -I eth0 {sibling_ll}",
        "pmv_ll",
        "echo PMV-READY",
        "sleep 120",
    ])


def _checks(run: GuestRun, sibling_ns: str) -> None:
    """What the guest reports, then the sibling's solicitation of the guest."""
    lease = run.expect(r"PMV-DHCP-BOUND (\S+)", 90).group(1)
    assert lease.startswith("10.77.0.1"), lease
    run.expect(r"PMV-OK station", 30)
    run.expect(r"PMV-OK sibling$", 30)
    run.expect(r"PMV-OK sibling6", 30)
    guest_ll = run.expect(r"PMV-LL (fe80::\S+)", 10).group(1)
    run.expect("PMV-READY", 10)
    sh("ip", "-n", sibling_ns, "-6", "neigh", "flush", "dev", "eth0")  # the sibling must solicit
    r = sh("ip", "netns", "exec", sibling_ns, "busybox", "ping", "-6", "-c", "3", "-W", "3", "-I", "eth0",
           guest_ll, check=False)
    assert r.returncode == 0, f"the sibling cannot reach the guest's {guest_ll}:\n{r.stdout}{r.stderr}"


def test_guest_on_kernel_macvtap(wire, guest) -> None:
    """The reference: the same guest on the kernel's macvtap, `-netdev tap,fd=N` on /dev/tapN,
    started by `pymacvlan --backend kernel -n NS vm-exec` (which opens /dev/tapN without udev)."""
    sh("ip", "-n", wire.K, "link", "add", "link", wire.k, "name", "mvt0", "address", MACS["kernel"],
       "type", "macvtap", "mode", "bridge")
    _ipv6_on(wire.K, "mvt0")
    sh("ip", "-n", wire.K, "link", "set", "mvt0", "up")
    ifindex = int(sh("ip", "-n", wire.K, "-o", "link", "show", "mvt0").stdout.split(":")[0])
    cli = [sys.executable, "-m", "pymacvlan.cli.main", "--backend", "kernel", "-n", wire.K]
    try:
        shown = subprocess.run([*cli, "vm-args", "mvt0"], capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0, shown.stderr
        assert netdev_args("tap", MACS["kernel"], fd=3) == shlex.split(shown.stdout)
        assert f"/dev/tap{ifindex}" in shown.stderr
        argv = [*cli, "vm-exec", "mvt0", "--", *qemu_base(guest, _script(SIBLING["kernel"], link_local(wire.SK)))]
        with GuestRun(argv) as run:
            _checks(run, wire.SK)
    finally:
        sh("ip", "-n", wire.K, "link", "del", "mvt0")


@pytest.mark.parametrize("kind", ["stream", "dgram", "tapfd"])
def test_guest_on_userspace_macvtap(wire, guest, kind) -> None:
    """The same guest on a pymacvlan macvtap child, one endpoint kind at a time."""
    path = str(wire.tmp / f"{kind}.sock")
    name = f"vm{kind}"
    if kind == "stream":
        ep = StreamEndpoint(name, path)
    elif kind == "dgram":
        ep = DgramEndpoint(name, path)
    else:
        ep = TapFdEndpoint(name, wire.lab.ifname("t"), path, netns=wire.U)
    wire.dp.add_macvtap(name, ep, "bridge", mac=bytes.fromhex(MACS[kind].replace(":", "")))
    fds: tuple[int, ...] = ()
    try:
        if kind == "tapfd":
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
                c.connect(path)
                fds = (recv_fd(c)[0],)
        argv = qemu_base(guest, _script(SIBLING["userspace"], link_local(wire.SU))) + \
            netdev_args(kind, MACS[kind], path=path, fd=fds[0] if fds else None)
        with GuestRun(argv, pass_fds=fds, netns=wire.U) as run:
            _checks(run, wire.SU)
    finally:
        for fd in fds:
            os.close(fd)
        wire.dp.delete(name)


# -- through the daemon and the CLI -------------------------------------------------------------------
@pytest.fixture
def daemon(wire, tmp_path):
    from ..backends.userspace.test_daemon import DaemonProc

    d = DaemonProc(tmp_path, wire.D).start()
    try:
        yield d
    finally:
        d.stop()


def _cli(d, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYMACVLAN_SOCKET=d.socket)
    r = subprocess.run([sys.executable, "-m", "pymacvlan.cli.main", "--backend", "userspace", *args],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, f"{args}: {r.stderr}"
    return r


def _replies_resume_after_a_restart(run, daemon, interval: float = 0.5, late: float = 2.0) -> None:
    """Restart the daemon under the guest's ping and require a reply to a ping *sent after the
    restart*. (Issue 19: the old check took the first reply line after the restart, which could
    be one printed before it.) ping sends one request per ``interval`` or slower, so a sequence
    number beyond what could have been sent by the time the daemon was back proves it; the
    reference reply's request went out at most ``late`` seconds before it was read."""
    run.drain()
    t_ref = time.monotonic()
    ref = int(run.expect(r"PMV-P 64 bytes.*seq=(\d+)", 30).group(1))
    daemon.stop()
    daemon.start()
    back = time.monotonic()
    first_after = ref + math.ceil((back - (t_ref - late)) / interval) + 1
    deadline = time.monotonic() + 90
    while True:
        seq = int(run.expect(r"PMV-P 64 bytes.*seq=(\d+)", max(1.0, deadline - time.monotonic())).group(1))
        if seq >= first_after:
            break
    run.expect(r"PMV-P 64 bytes", 10)  # and keep coming


def test_guest_on_a_daemon_dgram_endpoint_survives_a_daemon_restart(wire, guest, daemon) -> None:
    """`link add ... endpoint dgram endpoint-mode 0666` prints the endpoint, `link show -j -d`
    has it, QEMU runs on what `vm-args` prints; the daemon is restarted while the guest pings
    the station, and the pings resume (the endpoint comes back at the same path; QEMU's dgram
    socket sends to that path, so it needs no reconnect)."""
    mac = MACS["daemon-dgram"]
    added = _cli(daemon, "link", "add", "link", wire.d, "name", "vmd", "address", mac, "type", "macvtap",
                 "mode", "bridge", "endpoint", "dgram", "endpoint-mode", "0666").stdout
    _cli(daemon, "link", "set", "vmd", "up")
    ep = json.loads(_cli(daemon, "-j", "-d", "link", "show", "vmd").stdout)[0]["endpoint"]
    assert ep["kind"] == "dgram" and ep["perm"] == "0666" and ep["path"] in added, (ep, added)
    assert "endpoint dgram" in _cli(daemon, "-d", "link", "show", "vmd").stdout
    args = shlex.split(_cli(daemon, "vm-args", "vmd").stdout)
    assert f"mac={mac}" in args[3]
    script = "\n".join(["pmv_dhcp", f"pmv_ping station {STATION}", "echo PMV-PINGING",
                        f"ping -i 0.5 -W 1 -c 600 {STATION} | while read l; do echo \"PMV-P $l\"; done",
                        "sleep 120"])
    with GuestRun(qemu_base(guest, script) + args, netns=wire.D) as run:
        run.expect(r"PMV-DHCP-BOUND", 90)
        run.expect(r"PMV-OK station", 30)
        _replies_resume_after_a_restart(run, daemon)
    assert json.loads(_cli(daemon, "-j", "link", "show", "vmd").stdout)[0]["endpoint"]["kind"] == "dgram"
    _cli(daemon, "link", "del", "vmd")


def test_guest_on_a_daemon_tapfd_endpoint_through_vm_exec_survives_a_restart(wire, guest, daemon) -> None:
    """`vm-exec` receives the TAP's fd over SCM_RIGHTS and execs QEMU with fd=N; the daemon is
    restarted while the guest pings the station: the new daemon adopts the persistent TAP
    QEMU still holds (through its netdev) and the pings resume."""
    mac = MACS["daemon-tapfd"]
    _cli(daemon, "link", "add", "link", wire.d, "name", "vmt", "address", mac, "type", "macvtap",
         "mode", "bridge", "endpoint", "tapfd")
    _cli(daemon, "link", "set", "vmt", "up")
    ep = json.loads(_cli(daemon, "-j", "link", "show", "vmt").stdout)[0]["endpoint"]
    assert ep["kind"] == "tapfd" and ep["ifname"] == "vmt"
    script = "\n".join(["pmv_dhcp", f"pmv_ping station {STATION}", "echo PMV-PINGING",
                        f"ping -i 0.5 -W 1 -c 600 {STATION} | while read l; do echo \"PMV-P $l\"; done",
                        "sleep 120"])
    argv = [sys.executable, "-m", "pymacvlan.cli.main", "--backend", "userspace", "vm-exec", "vmt", "--",
            *qemu_base(guest, script)]
    with GuestRun(argv, env=dict(os.environ, PYMACVLAN_SOCKET=daemon.socket)) as run:
        run.expect(r"PMV-DHCP-BOUND", 90)
        run.expect(r"PMV-OK station", 30)
        _replies_resume_after_a_restart(run, daemon)
        shown = json.loads(_cli(daemon, "-j", "-s", "link", "show", "vmt").stdout)[0]
        assert shown["endpoint"]["kind"] == "tapfd" and "UP" in shown["flags"]
        # a second VM asking for the fd while the first holds the TAP gets nothing
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.settimeout(5)
            c.connect(ep["path"])
            assert c.recv(16) == b""
    _cli(daemon, "link", "del", "vmt")
