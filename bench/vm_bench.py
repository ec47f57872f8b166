"""A real guest (QEMU, TCG) on each macvtap endpoint, side by side with the kernel's macvtap.

    sudo python3 bench/vm_bench.py [--rounds 3] [--mbytes 16] [--pings 20] [--results FILE]

One topology, built once: the kernel's side is a veth parent ``k`` carrying the reference
macvtap (``-netdev tap,fd=N`` on /dev/tapN) and a kernel macvlan sibling (bridge mode); the
userspace side is a ``pymacvlan daemon`` (its own process) on a veth parent ``d`` carrying a
TAP sibling and one macvtap child per endpoint kind (stream, dgram, tapfd). In each round every
variant boots the same guest in turn (interleaved, so load from elsewhere falls on all alike),
which pings its sibling (``--pings`` echoes, 0.2 s apart; busybox's average RTT) and then
sends ``--mbytes`` MB to a TCP sink in the sibling's namespace (``dd | nc``; the sink times
first to last byte). The table has medians over rounds and ratios to the kernel's macvtap, the
QEMU process's CPU during the transfer, and the datapath's share: the daemon's CPU over
QEMU's plus the daemon's (the kernel's macvtap work is softirq, charged to whoever runs, so
it has no column of its own).

Under TCG the guest is the bottleneck: QEMU emulates every instruction of the guest's network
stack and virtio driver on one core, so the figures compare what each endpoint adds to a slow
guest, not what the datapaths can carry (bench/compare.py measures that).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from pymacvlan.backends.kernel.topology import open_macvtap  # noqa: E402
from pymacvlan.backends.userspace.endpoints import recv_fd  # noqa: E402
from pymacvlan.daemon.client import Connection  # noqa: E402
from pymacvlan.model import KernelError  # noqa: E402
from pymacvlan.netlab import Lab, sh, sigterm_raises, tcp_listener  # noqa: E402
from pymacvlan.progress import Progress  # noqa: E402
from pymacvlan.vm.guest import build  # noqa: E402
from pymacvlan.vm.qemu import GuestRun, netdev_args, qemu_base  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
VARIANTS = ("kernel-macvtap", "stream", "dgram", "tapfd")
MACS = {v: f"52:54:00:78:00:0{i + 1}" for i, v in enumerate(VARIANTS)}
SIB = {"kernel": "10.79.0.50", "userspace": "10.79.0.51"}
GUEST_IP = "10.79.0.10"
PORT = 5001


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])


class Sink:
    """A TCP sink in a namespace: bytes and first-to-last-byte time of each connection."""

    def __init__(self, ns: str, ip: str) -> None:
        self.sock = tcp_listener(ns, ip, PORT, 120)
        self.result: tuple[int, float] | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        n, first, last = 0, None, None
        with conn:
            while True:
                b = conn.recv(1 << 20)
                if not b:
                    break
                now = time.monotonic()
                first = first or now
                last = now
                n += len(b)
        self.result = (n, (last - first) if first and last else 0.0)

    def close(self) -> tuple[int, float] | None:
        self.thread.join(30)
        self.sock.close()
        return self.result


class Bench:
    def __init__(self, tmp: Path) -> None:
        self.lab = Lab()
        self.tmp = tmp
        self.daemon: subprocess.Popen | None = None
        self.results: dict[str, list[dict]] = {v: [] for v in VARIANTS}

    def build(self) -> None:
        lab = self.lab
        self.W, self.K, self.D, self.SK, self.SU = (lab.ns(r) for r in ("W", "K", "D", "SK", "SU"))
        self.k, self.d = lab.ifname("k"), lab.ifname("d")
        lab.veth(self.k, self.K, lab.ifname("wk"), self.W)
        lab.veth(self.d, self.D, lab.ifname("wd"), self.W)
        sh("ip", "-n", self.K, "link", "add", "link", self.k, "name", "sib", "type", "macvlan", "mode", "bridge")
        sh("ip", "-n", self.K, "link", "set", "sib", "netns", self.SK, "name", "eth0")
        self._sibling(self.SK, SIB["kernel"])
        sh("ip", "-n", self.K, "link", "add", "link", self.k, "name", "mvt0", "address", MACS["kernel-macvtap"],
           "type", "macvtap", "mode", "bridge")
        sh("ip", "-n", self.K, "link", "set", "mvt0", "up")
        self.mvt_index = int(sh("ip", "-n", self.K, "-o", "link", "show", "mvt0").stdout.split(":")[0])
        self.sock = str(self.tmp / "control.sock")
        self.daemon = subprocess.Popen(
            [sys.executable, "-m", "pymacvlan.cli.main", "daemon", "--socket", self.sock, "--state",
             str(self.tmp / "state.json"), "--netns", self.D], stdout=subprocess.DEVNULL,
            stderr=open(self.tmp / "daemon.log", "ab"), env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))
        deadline = time.monotonic() + 20
        while True:
            try:
                with Connection(self.sock, 2) as c:
                    c.call({"op": "hello"})
                break
            except KernelError:
                if time.monotonic() > deadline or self.daemon.poll() is not None:
                    raise RuntimeError("the daemon did not start: " + (self.tmp / "daemon.log").read_text()) from None
                time.sleep(0.05)
        self.cli("link", "add", "link", self.d, "name", "eth0", "netns", self.SU, "address", "02:00:00:79:00:51",
                 "type", "macvlan", "mode", "bridge")
        self._sibling(self.SU, SIB["userspace"], up=False)
        self.cli("-n", self.SU, "link", "set", "eth0", "up")
        for kind in ("stream", "dgram", "tapfd"):
            self.cli("link", "add", "link", self.d, "name", f"vm{kind}", "address", MACS[kind], "type", "macvtap",
                     "mode", "bridge", "endpoint", kind)
            self.cli("link", "set", f"vm{kind}", "up")

    @staticmethod
    def _sibling(ns: str, ip: str, up: bool = True) -> None:
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        if up:
            sh("ip", "-n", ns, "link", "set", "eth0", "up")

    def cli(self, *args: str) -> str:
        r = subprocess.run([sys.executable, "-m", "pymacvlan.cli.main", "--backend", "userspace", *args],
                           capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, PYMACVLAN_SOCKET=self.sock, PYTHONPATH=str(ROOT / "src")))
        if r.returncode:
            raise RuntimeError(f"pymacvlan {' '.join(args)}: {r.stderr}")
        return r.stdout

    def one(self, variant: str, guest, mbytes: int, pings: int) -> dict:
        side = "kernel" if variant == "kernel-macvtap" else "userspace"
        sib = SIB[side]
        script = "\n".join([
            f"ip addr add {GUEST_IP}/24 dev eth0",
            f"ping -c 2 -W 3 {sib} >/dev/null",
            f"echo \"PMV-RTT $(ping -c {pings} -i 0.2 {sib} | tail -n1)\"",
            "echo PMV-TX-START",
            f"dd if=/dev/zero bs=65536 count={mbytes * 16} 2>/dev/null | nc {sib} {PORT}",
            "echo PMV-TX-END",
        ])
        fds: tuple[int, ...] = ()
        if variant == "kernel-macvtap":
            fd = open_macvtap(self.K, self.mvt_index)
            os.set_blocking(fd, True)
            fds = (fd,)
            nd = netdev_args("tap", MACS[variant], fd=fd)
        elif variant == "tapfd":
            ep = json.loads(self.cli("-j", "link", "show", "vmtapfd"))[0]["endpoint"]
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
                c.connect(ep["path"])
                fds = (recv_fd(c)[0],)
            nd = netdev_args("tapfd", MACS[variant], fd=fds[0])
        else:
            nd = shlex.split(self.cli("vm-args", f"vm{variant}"))
        sink = Sink(self.SK if side == "kernel" else self.SU, sib)
        out: dict = {}
        try:
            with GuestRun(qemu_base(guest, script) + nd, pass_fds=fds) as run:
                m = run.expect(r"PMV-RTT .*= [\d.]+/([\d.]+)/", 120)
                out["rtt_ms"] = float(m.group(1))
                run.expect("PMV-TX-START", 30)
                q0, d0, t0 = cpu_ticks(run.proc.pid), cpu_ticks(self.daemon.pid), time.monotonic()
                run.expect("PMV-TX-END", 300)
                q1, d1, t1 = cpu_ticks(run.proc.pid), cpu_ticks(self.daemon.pid), time.monotonic()
        finally:
            for fd in fds:
                os.close(fd)
            got = sink.close()
        if got is None or got[0] < mbytes << 20:
            raise RuntimeError(f"{variant}: the sink got {got and got[0]} bytes of {mbytes << 20}")
        out["mbit_s"] = got[0] * 8 / got[1] / 1e6
        wall = t1 - t0
        out["qemu_cpu"] = (q1 - q0) / TICK / wall
        dp = (d1 - d0) / TICK / wall if variant != "kernel-macvtap" else None
        out["dp_share"] = dp / (dp + out["qemu_cpu"]) if dp is not None else None
        return out

    def run(self, rounds: int, mbytes: int, pings: int) -> None:
        guest = build()
        with Progress(rounds * len(VARIANTS), "vm_bench") as progress:
            for r in range(rounds):
                order = VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]
                for v in order:
                    progress.step(f"round {r + 1}/{rounds}: {v}")
                    res = self.one(v, guest, mbytes, pings)
                    self.results[v].append(res)
                    progress.advance()
                    progress.log(f"round {r + 1} {v:<15} {res['mbit_s']:7.1f} Mbit/s  rtt {res['rtt_ms']:.2f} ms  "
                                 f"qemu cpu {res['qemu_cpu']:.0%}" + (f"  datapath share {res['dp_share']:.0%}"
                                                                      if res["dp_share"] is not None else ""))

    def close(self) -> None:
        try:
            if self.daemon is not None and self.daemon.poll() is None:
                os.kill(self.daemon.pid, signal.SIGTERM)
                self.daemon.wait(30)
        finally:
            self.lab.close()


def med(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def table(results: dict[str, list[dict]]) -> str:
    ref = {k: med([r[k] for r in results["kernel-macvtap"]]) for k in ("mbit_s", "rtt_ms")}
    lines = [
        "| guest on | TCP guest→sibling Mbit/s | vs kernel | RTT ms (avg) | vs kernel | QEMU CPU | datapath share of "
        "CPU |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for v, rs in results.items():
        if not rs:
            continue
        t, rtt = med([r["mbit_s"] for r in rs]), med([r["rtt_ms"] for r in rs])
        q, share = med([r["qemu_cpu"] for r in rs]), med([r["dp_share"] for r in rs])
        lines.append(f"| {v} | {t:.1f} | {t / ref['mbit_s']:.2f}x | {rtt:.2f} | {rtt / ref['rtt_ms']:.2f}x | "
                     f"{q:.0%} | {'—' if share is None else f'{share:.0%}'} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--mbytes", type=int, default=16)
    ap.add_argument("--pings", type=int, default=20)
    ap.add_argument("--results", help="also write the table (markdown) and raw results (JSON next to it)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("vm_bench: needs root (namespaces, macvtap, the daemon)")
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="pmv-vmbench-"))
    b = Bench(tmp)
    with sigterm_raises():
        try:
            b.build()
            b.run(args.rounds, args.mbytes, args.pings)
        finally:
            b.close()
    text = (f"{table(b.results)}\n\n{args.rounds} interleaved rounds, {args.mbytes} MB per transfer, "
            f"{args.pings} pings; medians. `python3 bench/vm_bench.py --rounds {args.rounds} --mbytes {args.mbytes}`\n")
    print(text)
    if args.results:
        Path(args.results).write_text(text)
        Path(args.results).with_suffix(".json").write_text(json.dumps(b.results, indent=1) + "\n")


if __name__ == "__main__":
    main()
