"""Userspace datapath micro-benchmarks: frames per second through the real loop (not a test).

    sudo python bench/userspace_micro.py [--seconds 2] [--sizes 64,1514] [--rx v2,v3,recv] [--tx ring,send]

- ``rx``: a generator process on the wire blasts unicast frames to a child's MAC; the datapath
  (its own thread, the real epoll loop) takes them from the parent's rx ring through
  ``engine.receive`` and writes them to the child's TAP. Rate = the child's rx_packets.
- ``tx``: a generator process inside the child's namespace transmits on the TAP (AF_PACKET
  ring on the TAP netdev); the datapath reads the TAP, runs ``engine.xmit`` and sends on the
  parent (tx ring or one send() per frame). Rate = the child's tx_packets.

TCP, small-frame UDP and RTT against kernel macvlan, a Linux bridge and VDE, with iperf3 and
interleaved rounds, are in ``bench/compare.py``.

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

from netlab import Lab, sh  # noqa: E402

from pymacvlan.backends.userspace import Datapath, DatapathConfig, ParentConfig  # noqa: E402

MAC_A = bytes.fromhex("02000000000a")

GEN = textwrap.dedent("""
    import sys, time
    from pymacvlan.backends.userspace.parent import Parent, ParentConfig
    ns, ifname, dst = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3])
    size, seconds = int(sys.argv[4]), float(sys.argv[5])
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
        dp = Datapath(DatapathConfig(ParentConfig(parent, P, rx=rx, tx=tx), children="tap", fastpath=False)).start()
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--sizes", default="64,1514")
    ap.add_argument("--rx", default="v2,v3,recv", help="parent rx modes to compare (rx direction)")
    ap.add_argument("--tx", default="ring,send", help="parent tx modes to compare (tx direction)")
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


if __name__ == "__main__":
    main()
