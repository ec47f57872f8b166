"""Side by side, interleaved: kernel macvlan, Linux bridge, VDE and pymacvlan, with iperf3.

    sudo python3 bench/compare.py [--quick] [--rounds 5] [--seconds 3] [--results bench/RESULTS.md]

Every setup joins two network namespaces, a client ``A`` and a server ``B`` (or the wire
station ``W`` as the client), built once at the start and kept until the end:

- ``kernel-macvlan``: two kernel macvlan children (bridge mode) of a veth parent, child↔child;
- ``kernel-macvlan-wire``: the same kernel macvlan, station on the veth's peer → child;
- ``bridge-veth``: a Linux bridge with one veth per namespace;
- ``vde``: ``vde_switch -t tapA -t tapB``, the TAPs moved into the namespaces;
- ``pymacvlan``: the userspace datapath (its own process) on a veth parent, two TAP children
  in bridge mode, child↔child;
- ``pymacvlan-wire``: the same datapath, station on the veth's peer → AF_PACKET parent → TAP;
- ``pymacvlan-veth`` (and ``-wire``): the Python path with veth children whose outer ends the
  datapath reads and writes through PACKET_MMAP rings (``DatapathConfig.children="veth"``);
- ``pymacvlan-fast`` (and ``-wire``): the same with the eBPF fast path (``fastpath=True``):
  known unicast never reaches Python.

A round measures each metric on every setup in turn (the setups' order rotates each round),
so load from anything else on the machine falls on all setups alike; the table shows the
median over rounds. Metrics:

- TCP: ``iperf3 -c`` for ``--seconds``, Gbit/s received;
- 64-byte frames: ``iperf3 -u -b 0 -l 18`` (14 Ethernet + 20 IP + 8 UDP + 18 = 60 bytes, 64 on
  a real wire with the FCS), kpps the server's socket received (sent minus lost, as iperf3's
  server counts them);
- RTT: median of ICMP echo round trips A → B (iputils ``ping`` if installed, else a raw-socket
  echo in Python; one method for all setups), one request at a time;
- CPU: the datapath process's CPU during the TCP test (``/proc/PID/stat``; VDE's switch, the
  pymacvlan datapath; the kernel setups have none), and the CPU of everything involved
  (iperf3 client + server + datapath, whose softirq work the kernel charges to them) per GB
  moved, as a ratio to kernel macvlan.

Namespaces are ``pmv<6 hex><role>``, deleted at exit, on error and on SIGTERM/SIGINT; only
processes started here are stopped, by PID.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "backends" / "userspace"))
sys.path.insert(0, str(ROOT / "src"))

from netlab import Lab, sh  # noqa: E402

from pymacvlan.backends.userspace._sys import in_netns  # noqa: E402
from pymacvlan.progress import Progress  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
MAC_A, MAC_B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
IP_A, IP_B, IP_W = "10.78.0.1", "10.78.0.2", "10.78.0.100"
UDP_PAYLOAD = 18  # 60-byte frames (64 with the FCS)


# -- the datapath process -------------------------------------------------------------------------
def serve_datapath(argv: list[str]) -> None:
    """``compare.py --serve-datapath P parent A B``: a pymacvlan datapath in this process."""
    from pymacvlan.backends.userspace import Datapath, DatapathConfig, ParentConfig
    P, parent, A, B, config = argv
    dp = Datapath(DatapathConfig(ParentConfig(parent, P), **json.loads(config)))

    def stop(*_a) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        dp.add_macvlan("a", "bridge", netns=A, ifname="eth0", mac=bytes.fromhex(MAC_A.replace(":", "")))
        dp.add_macvlan("b", "bridge", netns=B, ifname="eth0", mac=bytes.fromhex(MAC_B.replace(":", "")))
        print("ready", flush=True)
        dp.run()
    finally:
        dp.close()


# -- processes and CPU ------------------------------------------------------------------------------
def cpu_ticks(pid: int) -> int:
    """utime + stime of a process (all its threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])


def cpu_ns(pid: int) -> int:
    """Nanoseconds on CPU of every thread of a process (/proc/PID/task/*/schedstat)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def sched_sample(pid: int) -> tuple[int, int, int, int]:
    """(utime, stime, voluntary, involuntary context switches) of a process, all threads."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    vol = invol = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        vol += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        invol += int(line.split()[1])
        except FileNotFoundError:
            continue
    return int(rest[11]), int(rest[12]), vol, invol


def in_ns(ns: str, *cmd: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *cmd]


@dataclass
class Setup:
    name: str
    client_ns: str
    server_ns: str
    server_ip: str
    #: the datapath process (VDE switch, pymacvlan), whose CPU is reported
    datapath: subprocess.Popen | None = None
    iperf: subprocess.Popen | None = None
    results: dict[str, list[float]] = field(default_factory=dict)

    def add(self, key: str, value: float | None) -> None:
        if value is not None:
            self.results.setdefault(key, []).append(value)


class Bench:
    def __init__(self, seconds: float, pings: int) -> None:
        self.lab = Lab()
        self.seconds = seconds
        self.pings = pings
        self.procs: list[subprocess.Popen] = []
        self.setups: list[Setup] = []
        self.ping_bin = shutil.which("ping")
        self.verbose = False
        #: DatapathConfig fields of the main pymacvlan setups
        self.datapath_config: dict = {}
        #: (metric, path): perf record the main pymacvlan datapath during that metric, last round
        self.perf: tuple[str, str] | None = None
        #: the setup --perf records, and whether system-wide (-a) rather than its datapath process
        self.perf_setup = "pymacvlan"
        self.perf_system = False
        self.last_round = False

    # -- building --------------------------------------------------------------------------------
    def _spawn(self, cmd: list[str], **kw) -> subprocess.Popen:
        p = subprocess.Popen(cmd, **kw)
        self.procs.append(p)
        return p

    def _addr(self, ns: str, dev: str, ip: str) -> None:
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")

    def _kernel_macvlan(self, tag: str) -> tuple[str, str, str]:
        lab = self.lab
        P, W, A, B = (lab.ns(tag + r) for r in "PWAB")
        parent, wire = lab.ifname(tag + "p"), lab.ifname(tag + "w")
        lab.veth(parent, P, wire, W)
        self._addr(W, wire, IP_W)
        for role, ns, mac in (("a", A, MAC_A), ("b", B, MAC_B)):
            tmp = lab.ifname(tag + role)
            sh("ip", "-n", P, "link", "add", tmp, "link", parent, "address", mac, "type", "macvlan", "mode", "bridge")
            sh("ip", "-n", P, "link", "set", tmp, "netns", ns)
            sh("ip", "-n", ns, "link", "set", tmp, "name", "eth0")
        return W, A, B

    def _bridge(self, tag: str) -> tuple[str, str]:
        lab = self.lab
        P, A, B = (lab.ns(tag + r) for r in "PAB")
        sh("ip", "-n", P, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", P, "link", "set", "br0", "up")
        for role, ns in (("a", A), ("b", B)):
            sh("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", "v" + role, "netns", P)
            sh("ip", "-n", P, "link", "set", "v" + role, "master", "br0")
            sh("ip", "-n", P, "link", "set", "v" + role, "up")
        return A, B

    def _vde(self, tag: str) -> tuple[str, str, subprocess.Popen]:
        lab = self.lab
        P, A, B = (lab.ns(tag + r) for r in "PAB")
        ctl = f"/tmp/{lab.ifname(tag)}.vde"
        self.cleanup_paths.append(ctl)
        sw = self._spawn(in_ns(P, "vde_switch", "-s", ctl, "-t", "tapa", "-t", "tapb"),
                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            links = sh("ip", "-n", P, "-o", "link").stdout
            if "tapa" in links and "tapb" in links:
                break
            if sw.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("vde_switch did not create its TAPs")
            time.sleep(0.05)
        for role, ns in (("a", A), ("b", B)):
            sh("ip", "-n", P, "link", "set", "tap" + role, "netns", ns)
            sh("ip", "-n", ns, "link", "set", "tap" + role, "name", "eth0")
        return A, B, sw

    def _pymacvlan(self, tag: str, config: dict) -> tuple[str, str, str, subprocess.Popen]:
        lab = self.lab
        P, W, A, B = (lab.ns(tag + r) for r in "PWAB")
        parent, wire = lab.ifname(tag + "p"), lab.ifname(tag + "w")
        lab.veth(parent, P, wire, W)
        self._addr(W, wire, IP_W)
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
        dp = self._spawn([sys.executable, str(Path(__file__).resolve()), "--serve-datapath", P, parent, A, B,
                          json.dumps(config)],
                         stdout=subprocess.PIPE, text=True, env=env)
        line = dp.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"the pymacvlan datapath did not start ({line!r})")
        return W, A, B, dp

    def build(self, only: set[str] | None = None, variants: dict[str, dict] | None = None) -> None:
        """Every setup (or those named in ``only``), plus one pymacvlan setup per variant
        (DatapathConfig fields), for A/B comparisons of the datapath's options."""
        self.cleanup_paths: list[str] = []

        def want(*names: str) -> bool:
            return only is None or any(n in only for n in names)

        if want("kernel-macvlan", "kernel-macvlan-wire"):
            W, A, B = self._kernel_macvlan("k")
            self.setups.append(Setup("kernel-macvlan", A, B, IP_B))
            if want("kernel-macvlan-wire"):
                self.setups.append(Setup("kernel-macvlan-wire", W, A, IP_A))
        if want("bridge-veth"):
            A, B = self._bridge("b")
            self.setups.append(Setup("bridge-veth", A, B, IP_B))
        if want("vde"):
            A, B, sw = self._vde("v")
            from pymacvlan.backends.userspace import DatapathConfig
            nice = self.datapath_config.get("nice", DatapathConfig.nice)
            if nice is not None:  # the same priority for both userspace switches
                os.setpriority(os.PRIO_PROCESS, sw.pid, nice)
            self.setups.append(Setup("vde", A, B, IP_B, datapath=sw))
        # the datapath's own setups (TAP children, veth children with rings, the eBPF fast path),
        # then one per variant; each also as wire→child
        pmv: dict[str, dict] = {}
        for base, extra in PYMACVLAN.items():
            if want(base, base + "-wire"):
                pmv[base] = {**self.datapath_config, **extra}
        for name, config in (variants or {}).items():
            pmv[f"pymacvlan[{name}]"] = config
        for i, (name, config) in enumerate(pmv.items()):
            W, A, B, dp = self._pymacvlan(f"u{i}", config)
            base, _, variant = name.partition("[")
            wire_name = f"{base}-wire" + (f"[{variant}" if variant else "")
            if not variant or only is None or want(name):
                self.setups.append(Setup(name, A, B, IP_B, datapath=dp))
            if want(base + "-wire") if not variant else (only is not None and "pymacvlan-wire" in only):
                self.setups.append(Setup(wire_name, W, A, IP_A, datapath=dp))
        for s in self.setups:
            if s.name.endswith("-wire"):
                continue
            self._addr(s.client_ns, "eth0", IP_A)
            self._addr(s.server_ns, "eth0", IP_B)
        for s in self.setups:
            s.iperf = next((o.iperf for o in self.setups if o.server_ns == s.server_ns and o.iperf), None)
            if s.iperf is None:
                s.iperf = self._spawn(in_ns(s.server_ns, "iperf3", "-s", "-B", s.server_ip),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        for s in self.setups:  # ARP, and a TCP warm-up through every path
            if self.verbose:
                print(f"  warm-up {s.name}", file=sys.stderr, flush=True)
            self.rtt(s, 3)
            self.iperf(s, ["-n", "20M"])

    def close(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()  # our own child, by handle (PID)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs.clear()
        self.lab.close()
        for path in getattr(self, "cleanup_paths", []):
            shutil.rmtree(path, ignore_errors=True)

    # -- measuring -----------------------------------------------------------------------------------------
    def iperf(self, s: Setup, extra: list[str]) -> tuple[dict | None, float]:
        """Run one iperf3 client; (its JSON or None, CPU seconds of client + server + datapath)."""
        pids = [s.iperf.pid] + ([s.datapath.pid] if s.datapath is not None else [])
        before = [cpu_ticks(p) for p in pids]
        cli = subprocess.Popen(in_ns(s.client_ns, "iperf3", "-c", s.server_ip, "-J", *extra),
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.procs.append(cli)
        timer = threading.Timer(self.seconds + 20, cli.kill)  # a wedged client is our own child
        timer.start()
        out = cli.stdout.read()
        _pid, _status, ru = os.wait4(cli.pid, 0)
        timer.cancel()
        cli.returncode = 0
        self.procs.remove(cli)
        after = [cpu_ticks(p) for p in pids]
        cpu = ru.ru_utime + ru.ru_stime + sum(a - b for a, b in zip(after, before, strict=False)) / TICK
        try:
            return json.loads(out), cpu
        except json.JSONDecodeError:
            return None, cpu

    def _timed(self, s: Setup, metric: str, extra: list[str]) -> tuple[dict | None, float, float | None]:
        """One iperf3 run; also the datapath's CPU split and context switches during it
        (``<metric>_dp_*`` samples). Returns (JSON, CPU of everything, datapath CPU seconds)."""
        dp0 = sched_sample(s.datapath.pid) if s.datapath is not None else None
        perf = None
        if self.perf and self.perf[0] == metric and s.name == self.perf_setup and self.last_round:
            # the whole machine where the setup has no datapath process (kernel setups, the fast
            # path) or when asked: where the kernel's own forwarding spends its time
            target = ["-a"] if self.perf_system or s.datapath is None else ["-p", str(s.datapath.pid)]
            perf = subprocess.Popen(["perf", "record", "-g", "-o", self.perf[1], *target],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.3)
        t0 = time.monotonic()
        res, cpu = self.iperf(s, extra)
        wall = time.monotonic() - t0
        if perf is not None:
            perf.send_signal(signal.SIGINT)  # our own child: perf writes its file and exits
            perf.wait(timeout=60)
        if dp0 is None:
            return res, cpu, None
        u, st, vol, invol = (b - a for a, b in zip(dp0, sched_sample(s.datapath.pid), strict=False))
        s.add(f"{metric}_dp_user_pct", 100 * u / TICK / wall)
        s.add(f"{metric}_dp_sys_pct", 100 * st / TICK / wall)
        s.add(f"{metric}_dp_vol_per_s", vol / wall)
        s.add(f"{metric}_dp_invol_per_s", invol / wall)
        return res, cpu, (u + st) / TICK

    def tcp(self, s: Setup) -> None:
        t0 = time.monotonic()
        res, cpu, dp = self._timed(s, "tcp", ["-t", str(self.seconds)])  # whole seconds: iperf3 reads -t as an int
        wall = time.monotonic() - t0
        if res is None or "error" in res:
            s.add("tcp_errors", 1)
            return
        end = res["end"]["sum_received"]
        s.add("tcp_gbit", end["bits_per_second"] / 1e9)
        s.add("cpu_s_per_gb", cpu / (end["bytes"] / 1e9))
        if dp is not None:
            s.add("dp_cpu_pct", 100 * dp / wall)

    def udp(self, s: Setup) -> None:
        res, _cpu, dp = self._timed(s, "udp", ["-u", "-b", "0", "-l", str(UDP_PAYLOAD), "-t", str(self.seconds)])
        if res is None or "error" in res:
            s.add("udp_errors", 1)
            return
        end = res["end"]["sum"]
        received = end["packets"] - end["lost_packets"]
        s.add("udp_kpps", received / end["seconds"] / 1e3)
        s.add("udp_sent_kpps", end["packets"] / end["seconds"] / 1e3)
        if dp is not None and received:
            s.add("udp_dp_us_per_frame", dp / received * 1e6)

    def rtt(self, s: Setup, count: int | None = None) -> None:
        count = count or self.pings
        if self.ping_bin:
            r = subprocess.run(in_ns(s.client_ns, self.ping_bin, "-n", "-c", str(count), "-i", "0.005", s.server_ip),
                               capture_output=True, text=True, timeout=60)
            rtts = [float(m) / 1e3 for m in re.findall(r"time=([\d.]+) ms", r.stdout)]
        else:
            rtts = icmp_echo(s.client_ns, s.server_ip, count)
        if rtts and count == self.pings:
            s.add("rtt_us", statistics.median(rtts) * 1e6)

    def idle(self, seconds: float = 2.0) -> None:
        """Every datapath process's CPU over ``seconds`` with no traffic anywhere (all at once):
        a datapath that idles must idle (issue 20), and the fast path's must stay idle."""
        procs = {s.datapath.pid for s in self.setups if s.datapath is not None}
        before = {pid: cpu_ns(pid) for pid in procs}
        t0 = time.monotonic()
        time.sleep(seconds)
        wall = time.monotonic() - t0
        used = {pid: cpu_ns(pid) - ns for pid, ns in before.items()}
        for s in self.setups:
            if s.datapath is not None:
                s.add("idle_dp_cpu_pct", 100 * used[s.datapath.pid] / 1e9 / wall)

    def run(self, rounds: int) -> None:
        n = len(self.setups)
        with Progress(rounds * 3 * n, "compare") as progress:
            for r in range(rounds):
                self.last_round = r == rounds - 1
                order = self.setups[r % n:] + self.setups[:r % n]
                progress.step(f"round {r + 1}/{rounds}: idle datapaths")
                self.idle()
                for metric in (self.tcp, self.udp, self.rtt):
                    for s in order:
                        progress.step(f"round {r + 1}/{rounds}: {metric.__name__} {s.name}")
                        metric(s)
                        progress.advance()


def icmp_echo(netns: str, dst: str, count: int) -> list[float]:
    """Round trips (seconds) of ICMP echoes sent one at a time from inside ``netns``."""
    return [(t1 - t0) / 1e9 for t0, t1 in icmp_echo_ns(netns, dst, count, os.getpid() & 0xFFFF)]


def icmp_echo_ns(netns: str, dst: str, count: int, ident: int) -> list[tuple[int, int]]:
    """(sendto start, reply received) in perf_counter_ns of ICMP echoes sent one at a time,
    5 ms apart, from inside ``netns`` (lost ones are left out)."""
    import select
    with in_netns(netns):
        sk = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    out = []
    try:
        for seq in range(count):
            body = struct.pack("!HH", ident, seq) + bytes(56)
            csum = 0x0800 + sum(struct.unpack("!30H", body))
            while csum >> 16:
                csum = (csum & 0xFFFF) + (csum >> 16)
            pkt = struct.pack("!BBH", 8, 0, ~csum & 0xFFFF) + body
            t0 = time.perf_counter_ns()
            sk.sendto(pkt, (dst, 0))
            while True:
                r, _, _ = select.select([sk], [], [], 1.0)
                if not r:
                    break
                data = sk.recv(2048)
                t1 = time.perf_counter_ns()
                ihl = (data[0] & 0x0F) * 4
                if data[ihl] == 0 and struct.unpack_from("!HH", data, ihl + 4) == (ident, seq):
                    out.append((t0, t1))
                    break
            time.sleep(0.005)
    finally:
        sk.close()
    return out


# -- report -------------------------------------------------------------------------------------------------
#: the pymacvlan setups and their DatapathConfig fields (over --datapath)
PYMACVLAN = {
    "pymacvlan": {},
    "pymacvlan-python": {"children": "tap", "fastpath": False},
    "pymacvlan-veth": {"children": "veth", "fastpath": False},
    "pymacvlan-fast": {"children": "veth", "fastpath": True},
}
LABELS = {
    "kernel-macvlan": "kernel macvlan, bridge, child↔child",
    "kernel-macvlan-wire": "kernel macvlan, wire→child",
    "bridge-veth": "Linux bridge + veth",
    "vde": "VDE vde_switch + TAP ports",
    "pymacvlan": "pymacvlan default (eBPF fast path where it loads), child↔child",
    "pymacvlan-wire": "pymacvlan default, wire→child",
    "pymacvlan-python": "pymacvlan --no-fastpath (Python path, TAPs), child↔child",
    "pymacvlan-python-wire": "pymacvlan --no-fastpath, wire→child (AF_PACKET → TAP)",
    "pymacvlan-veth": "pymacvlan Python path, veth+rings, child↔child",
    "pymacvlan-veth-wire": "pymacvlan Python path, veth+rings, wire→child",
    "pymacvlan-fast": "pymacvlan eBPF fast path, child↔child",
    "pymacvlan-fast-wire": "pymacvlan eBPF fast path, wire→child",
}


def med(s: Setup, key: str) -> float | None:
    v = s.results.get(key)
    return statistics.median(v) if v else None


def fmt(v: float | None, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or not b else f"{a / b:.2f}x"


def ref(by: dict[str, Setup], s: Setup) -> Setup:
    """The kernel macvlan setup a row is compared with: the same direction (wire→child rows
    with kernel macvlan wire→child, when it was measured), else child↔child."""
    k = by.get("kernel-macvlan", Setup("", "", "", ""))
    if s.name.partition("[")[0].endswith("-wire") and "kernel-macvlan-wire" in by:
        return by["kernel-macvlan-wire"]
    return k


def table(setups: list[Setup]) -> str:
    by = {s.name: s for s in setups}
    k, v = by.get("kernel-macvlan", Setup("", "", "", "")), by.get("vde", Setup("", "", "", ""))
    rows = [
        "| setup | TCP Gbit/s | ×kmv | 64 B kpps | ×kmv | ×VDE | RTT µs | +µs vs kmv | datapath CPU % TCP / 64 B "
        "/ idle | CPU/GB ×kmv |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in setups:
        tcp, udp, rtt = med(s, "tcp_gbit"), med(s, "udp_kpps"), med(s, "rtt_us")
        k = ref(by, s)
        krtt = med(k, "rtt_us")
        rows.append(" | ".join([
            f"| {LABELS.get(s.name, s.name.replace('[', ' [') )}", fmt(tcp, ".2f"), ratio(tcp, med(k, "tcp_gbit")),
            fmt(udp, ".0f"), ratio(udp, med(k, "udp_kpps")), ratio(udp, med(v, "udp_kpps")),
            fmt(rtt, ".0f"), "—" if rtt is None or krtt is None else f"{rtt - krtt:+.0f}",
            dp_cpu(s),
            ratio(med(s, "cpu_s_per_gb"), med(k, "cpu_s_per_gb")),
        ]) + " |")
    return "\n".join(rows)


def dp_cpu(s: Setup) -> str:
    """The datapath's CPU % during TCP, during 64 B frames and idle ("—" without a datapath)."""
    tcp = med(s, "dp_cpu_pct")
    if tcp is None:
        return "—"
    u, st = med(s, "udp_dp_user_pct"), med(s, "udp_dp_sys_pct")
    udp = None if u is None or st is None else u + st
    return f"{fmt(tcp, '.0f')} / {fmt(udp, '.0f')} / {fmt(med(s, 'idle_dp_cpu_pct'), '.1f')}"


def detail_table(setups: list[Setup]) -> str:
    """Where the userspace switches' time goes: CPU split and context switches per test."""
    rows = [
        "| datapath process | test | CPU % user / sys | involuntary / voluntary switches per s | µs CPU per "
        "delivered 64 B frame |",
        "|---|---|---:|---:|---:|",
    ]
    for s in setups:
        if not s.results.get("tcp_dp_user_pct"):
            continue
        for metric in ("tcp", "udp"):
            rows.append(" | ".join([
                f"| {LABELS.get(s.name, s.name.replace('[', ' ['))}", "TCP" if metric == "tcp" else "64 B UDP",
                f"{fmt(med(s, metric + '_dp_user_pct'), '.0f')} / {fmt(med(s, metric + '_dp_sys_pct'), '.0f')}",
                f"{fmt(med(s, metric + '_dp_invol_per_s'), ',.0f')} / {fmt(med(s, metric + '_dp_vol_per_s'), ',.0f')}",
                fmt(med(s, "udp_dp_us_per_frame"), ".1f") if metric == "udp" else "",
            ]) + " |")
    return "\n".join(rows)


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def busy_fraction() -> tuple[int, int]:
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    idle = vals[3] + vals[4]
    return sum(vals) - idle, sum(vals)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-datapath":
        serve_datapath(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 rounds of 1 s tests, 100 pings (a smoke run)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--pings", type=int, default=300)
    ap.add_argument("--results", help="also write the table, command and machine load to this markdown file")
    ap.add_argument("--only", help="comma-separated setups to build (default: all): " + ", ".join(LABELS))
    ap.add_argument("--datapath", default="{}", metavar="JSON",
                    help="DatapathConfig fields for the pymacvlan setups, e.g. '{\"nice\": -5}'")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=JSON",
                    help="an extra pymacvlan setup with these DatapathConfig fields (repeatable)")
    ap.add_argument("--perf-setup", default="pymacvlan", metavar="SETUP",
                    help="the setup --perf records (default pymacvlan; e.g. pymacvlan-veth)")
    ap.add_argument("--perf-system", action="store_true",
                    help="--perf records the whole machine (perf record -a), e.g. for the fast path, whose "
                         "frames never reach the datapath process")
    ap.add_argument("--perf", metavar="METRIC:FILE", help="perf record -g the pymacvlan datapath during its "
                    "tcp or udp test of the last round into FILE (then: perf report -i FILE --no-children)")
    ap.add_argument("-v", "--verbose", action="store_true", help="name each test as it starts (stderr)")
    ap.add_argument("--json", help="also write every raw sample to this JSON file")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.seconds, args.pings = 2, 1, 100
    if os.geteuid() != 0:
        sys.exit("needs root (namespaces, veth, TAP, AF_PACKET)")
    for tool in ("iperf3", "vde_switch"):
        if shutil.which(tool) is None:
            sys.exit(f"needs {tool} (apt-get install {'iperf3' if tool == 'iperf3' else 'vde2'})")
    command = "python3 bench/compare.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    bench = Bench(args.seconds, args.pings)
    bench.verbose = args.verbose
    bench.datapath_config = json.loads(args.datapath)
    bench.perf_setup = args.perf_setup
    bench.perf_system = args.perf_system
    if args.perf:
        metric, _, path = args.perf.partition(":")
        bench.perf = (metric, path or f"/tmp/pmv-perf-{metric}.data")
    variants = {}
    for v in args.variant:
        name, _, config = v.partition("=")
        variants[name] = json.loads(config or "{}")
    only = set(args.only.split(",")) if args.only else None

    def on_signal(signum, _frame) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    load0, busy0, t0 = loadavg(), busy_fraction(), time.monotonic()
    try:
        bench.build(only, variants)
        bench.run(args.rounds)
    finally:
        bench.close()
    load1, busy1, t1 = loadavg(), busy_fraction(), time.monotonic()
    busy = 100 * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
    method = "iputils ping" if bench.ping_bin else "Python raw-socket ICMP echo"
    md = "\n".join([
        table(bench.setups), "", detail_table(bench.setups), "",
        f"Command: `{command}` ({args.rounds} interleaved rounds, {args.seconds:g} s per iperf3 test, "
        f"{args.pings} pings per RTT sample; medians over rounds; RTT by {method}).",
        f"Machine: {os.cpu_count()} CPUs, load average {load0} before and {load1} after; "
        f"all CPUs {busy:.0f}% busy over the {t1 - t0:.0f} s run (this benchmark included).",
        "×kmv: ratio to kernel macvlan in the same direction (wire→child rows to kernel macvlan wire→child, "
        "the others to child↔child); ×VDE: ratio to VDE; datapath CPU: the switch's or "
        "datapath's process during the TCP test, the 64 B test, and 2 s without traffic once per round "
        "(100% = one core); CPU/GB: CPU time of iperf3 client, server "
        "and datapath per GB moved, ratio to kernel macvlan.",
    ])
    print(md)
    if args.results:
        Path(args.results).write_text(md + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps({s.name: s.results for s in bench.setups}, indent=1))


if __name__ == "__main__":
    main()
