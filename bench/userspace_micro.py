"""Userspace datapath micro-benchmarks: frames per second through the real loop (not a test).

    sudo python bench/userspace_micro.py [--seconds 2] [--sizes 64,1514 | --sizes ''] [--rx v2,v3,recv] [--tx ring,send] [--tcp] [--rtt]

- ``rx``: a generator process on the wire blasts unicast frames to a child's MAC; the datapath
  (its own thread, the real epoll loop) takes them from the parent's rx ring through
  ``engine.receive`` and writes them to the child's TAP. Rate = the child's rx_packets.
- ``tx``: a generator process inside the child's namespace transmits on the TAP (AF_PACKET
  ring on the TAP netdev); the datapath reads the TAP, runs ``engine.xmit`` and sends on the
  parent (tx ring or one send() per frame). Rate = the child's tx_packets.
- ``--rtt``: median ICMP round trip child → station, userspace datapath vs kernel macvlan.
- ``--tcp``: bridge-mode child→child TCP (Python sockets, 1 MB writes), userspace datapath in a
  separate process vs two kernel macvlans on the same kind of parent.

Generators are separate processes so they do not share the GIL with the datapath; the machine
has 2 cores, so generator, datapath and softirq work compete: figures are lower bounds and vary
with load. Everything runs in pmv-prefixed namespaces made here and deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "backends" / "userspace"))
sys.path.insert(0, str(ROOT / "src"))

from netlab import Lab, sh, tcp_transfer  # noqa: E402

from pymacvlan.backends.userspace import Datapath, ParentConfig  # noqa: E402

MAC_A, MAC_B = bytes.fromhex("02000000000a"), bytes.fromhex("02000000000b")

GEN = textwrap.dedent("""
    import sys, time
    from pymacvlan.backends.userspace.parent import Parent, ParentConfig
    ns, ifname, dst, size, seconds = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    p = Parent(ParentConfig(ifname, ns, tx="ring", rx="recv", tx_frames=4096))
    frame = bytes(10) + dst + bytes.fromhex("020000000099") + b"\\x88\\xb5" + bytes(size - 14)
    q, fl = p.queue, p.flush
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        for _ in range(256):
            q(frame)
        fl()
        n += 256
    print(n)
""")


def _gen(ns: str, ifname: str, dst: bytes, size: int, seconds: float) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    return subprocess.Popen([sys.executable, "-c", GEN, ns, ifname, dst.hex(), str(size), str(seconds)],
                            stdout=subprocess.PIPE, text=True, env=env)


def _measure(dp: Datapath, key: str, seconds: float) -> float:
    def get() -> int:
        return dp.call(lambda: getattr(dp.engine.child("a").stats, key))
    time.sleep(0.3)  # warm up
    a0, t0 = get(), time.monotonic()
    time.sleep(seconds)
    a1, t1 = get(), time.monotonic()
    return (a1 - a0) / (t1 - t0)


def bench_frames(direction: str, rx: str, tx: str, size: int, seconds: float) -> dict:
    lab = Lab()
    dp = None
    gen = None
    try:
        P, W, A = lab.ns("P"), lab.ns("W"), lab.ns("A")
        parent, wire = lab.ifname("p"), lab.ifname("w")
        lab.veth(parent, P, wire, W)
        dp = Datapath(ParentConfig(parent, P, rx=rx, tx=tx)).start()
        dp.add_macvlan("a", "bridge", netns=A, ifname="eth0", mac=MAC_A)
        sh("ip", "-n", A, "link", "set", "eth0", "up")
        time.sleep(0.2)
        if direction == "rx":
            gen = _gen(W, wire, MAC_A, size, seconds + 1.0)
            rate = _measure(dp, "rx_packets", seconds)
        else:
            gen = _gen(A, "eth0", bytes.fromhex("020000000099"), size, seconds + 1.0)
            rate = _measure(dp, "tx_packets", seconds)
        sent = int(gen.communicate(timeout=60)[0] or 0)
        gen = None
        st = dp.stats()
        return {"direction": direction, "rx": rx, "tx": tx, "size": size, "fps": round(rate),
                "gbit_s": round(rate * size * 8 / 1e9, 3), "generator_fps": round(sent / (seconds + 1.0)),
                "parent_kernel_drops": st["parent"]["kernel_drops"], "parent_drops": st["parent"]["drops"]}
    finally:
        if gen is not None:
            gen.kill()  # our own child process, by handle
            gen.wait()
        if dp is not None:
            dp.close()
        lab.close()


SERVE = textwrap.dedent("""
    import sys, time
    from pymacvlan.backends.userspace import Datapath, ParentConfig
    P, parent, A, B = sys.argv[1:5]
    dp = Datapath(ParentConfig(parent, P)).start()
    dp.add_macvlan("a", "bridge", netns=A, ifname="eth0", mac=bytes.fromhex("02000000000a"))
    dp.add_macvlan("b", "bridge", netns=B, ifname="eth0", mac=bytes.fromhex("02000000000b"))
    print("ready", flush=True)
    sys.stdin.read()
    dp.close()
""")


def bench_tcp(nbytes: int) -> dict:
    out = {}
    for kind in ("kernel", "userspace"):
        lab = Lab()
        srv = None
        try:
            P, W, A, B = lab.ns("P"), lab.ns("W"), lab.ns("A"), lab.ns("B")
            parent, wire = lab.ifname("p"), lab.ifname("w")
            lab.veth(parent, P, wire, W)
            if kind == "kernel":
                for role, ns, mac in (("a", A, MAC_A), ("b", B, MAC_B)):
                    tmp = lab.ifname(role)
                    sh("ip", "-n", P, "link", "add", tmp, "link", parent, "address", mac.hex(":"), "type", "macvlan", "mode", "bridge")
                    sh("ip", "-n", P, "link", "set", tmp, "netns", ns)
                    sh("ip", "-n", ns, "link", "set", tmp, "name", "eth0")
            else:
                env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
                srv = subprocess.Popen([sys.executable, "-c", SERVE, P, parent, A, B], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True, env=env)
                assert srv.stdout.readline().strip() == "ready"
            for ns, ip in ((A, "10.78.0.1"), (B, "10.78.0.2")):
                sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
                sh("ip", "-n", ns, "link", "set", "eth0", "up")
            time.sleep(0.5)
            tcp_transfer(B, "10.78.0.2", A, 16 << 20)  # warm up
            n, secs = tcp_transfer(B, "10.78.0.2", A, nbytes)
            out[kind] = {"bytes": n, "gbit_s": round(n * 8 / secs / 1e9, 2)}
        finally:
            if srv is not None:
                srv.stdin.close()
                try:
                    srv.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    srv.kill()
                    srv.wait()
            lab.close()
    out["ratio"] = round(out["userspace"]["gbit_s"] / out["kernel"]["gbit_s"], 2)
    return out


def _rtts(netns: str, dst: str, count: int) -> list[float]:
    """ICMP echo round trips (seconds) from inside ``netns``, one at a time."""
    import select
    import socket
    import struct

    from pymacvlan.backends.userspace._sys import in_netns
    with in_netns(netns):
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    out = []
    try:
        for seq in range(count):
            body = struct.pack("!HH", 0x4242, seq) + bytes(56)
            csum = 0x0800 + sum(struct.unpack("!30H", body))
            while csum >> 16:
                csum = (csum & 0xFFFF) + (csum >> 16)
            pkt = struct.pack("!BBH", 8, 0, ~csum & 0xFFFF) + body
            t0 = time.perf_counter()
            s.sendto(pkt, (dst, 0))
            while True:
                r, _, _ = select.select([s], [], [], 1.0)
                if not r:
                    break
                data = s.recv(2048)
                ihl = (data[0] & 0x0F) * 4
                if data[ihl] == 0 and struct.unpack_from("!HH", data, ihl + 4) == (0x4242, seq):
                    out.append(time.perf_counter() - t0)
                    break
            time.sleep(0.002)
    finally:
        s.close()
    return out


def bench_rtt(count: int = 300) -> dict:
    """Median ping RTT child → station: userspace datapath (own process) vs kernel macvlan."""
    out = {}
    for kind in ("kernel", "userspace"):
        lab = Lab()
        srv = None
        try:
            P, W, A, B = lab.ns("P"), lab.ns("W"), lab.ns("A"), lab.ns("B")
            parent, wire = lab.ifname("p"), lab.ifname("w")
            lab.veth(parent, P, wire, W)
            sh("ip", "-n", W, "addr", "add", "10.78.0.100/24", "dev", wire)
            if kind == "kernel":
                tmp = lab.ifname("a")
                sh("ip", "-n", P, "link", "add", tmp, "link", parent, "address", MAC_A.hex(":"), "type", "macvlan", "mode", "bridge")
                sh("ip", "-n", P, "link", "set", tmp, "netns", A)
                sh("ip", "-n", A, "link", "set", tmp, "name", "eth0")
                sh("ip", "-n", B, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")  # B unused
            else:
                env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
                srv = subprocess.Popen([sys.executable, "-c", SERVE, P, parent, A, B], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True, env=env)
                assert srv.stdout.readline().strip() == "ready"
            sh("ip", "-n", A, "addr", "add", "10.78.0.1/24", "dev", "eth0")
            sh("ip", "-n", A, "link", "set", "eth0", "up")
            time.sleep(0.3)
            _rtts(A, "10.78.0.100", 5)
            r = sorted(_rtts(A, "10.78.0.100", count))
            out[kind] = {"median_us": round(r[len(r) // 2] * 1e6, 1), "p90_us": round(r[int(len(r) * 0.9)] * 1e6, 1),
                         "replies": len(r)}
        finally:
            if srv is not None:
                srv.stdin.close()
                try:
                    srv.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    srv.kill()
                    srv.wait()
            lab.close()
    out["added_median_us"] = round(out["userspace"]["median_us"] - out["kernel"]["median_us"], 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--sizes", default="64,1514")
    ap.add_argument("--rx", default="v2,v3,recv", help="parent rx modes to compare (rx direction)")
    ap.add_argument("--tx", default="ring,send", help="parent tx modes to compare (tx direction)")
    ap.add_argument("--tcp", action="store_true", help="also child→child TCP vs kernel macvlan")
    ap.add_argument("--rtt", action="store_true", help="also ping RTT child→station vs kernel macvlan")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (namespaces, veth, TAP, AF_PACKET)")
    results = []
    for size in (int(s) for s in args.sizes.split(",") if s):
        for rx in args.rx.split(","):
            results.append(bench_frames("rx", rx, "ring" if rx != "v3" else "send", size, args.seconds))
            print(json.dumps(results[-1]), flush=True)
        for tx in args.tx.split(","):
            results.append(bench_frames("tx", "v2", tx, size, args.seconds))
            print(json.dumps(results[-1]), flush=True)
    if args.tcp:
        print(json.dumps({"tcp_child_to_child": bench_tcp(256 << 20)}), flush=True)
    if args.rtt:
        print(json.dumps({"rtt_child_to_station": bench_rtt()}), flush=True)


if __name__ == "__main__":
    main()
