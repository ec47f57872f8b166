"""What busy polling costs, side by side with the loop that sleeps (not a test).

    sudo python bench/datapath_tuning.py [--rounds 3] [--busy-us 2000] [--idle 1.0]

Per round, interleaved, a datapath with ``busy_poll_us`` = 0 and one with ``--busy-us``, on
the same veth parent with two bridge children:

- ``stop_s``: seconds from ``Datapath.close()`` to the loop thread gone, right after a ping
  (so the busy one is spinning when asked to stop);
- ``idle_cpu``: CPU seconds the loop thread used per second of idleness, measured after
  ``--idle`` seconds without traffic (a busy loop must go back to sleeping in epoll_wait).

Prints the medians and the ratios busy/sleeping. The functional checks (the loop stops, an
idle loop sleeps in epoll_wait) are tests/backends/userspace/test_datapath_tuning.py.
Everything runs in pmv-prefixed namespaces made here and deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "backends" / "userspace"))
sys.path.insert(0, str(ROOT / "src"))

from netlab import Lab, ping, sh  # noqa: E402

from pymacvlan.backends.userspace import Datapath, DatapathConfig, ParentConfig  # noqa: E402


def _thread_cpu(tid: int) -> float:
    with open(f"/proc/self/task/{tid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def one(lab: Lab, parent: str, P: str, busy_us: int, idle: float, n: int) -> dict[str, float]:
    dp = Datapath(DatapathConfig(ParentConfig(parent, P), busy_poll_us=busy_us, children="tap", fastpath=False)).start()
    try:
        ns = lab.ns(f"a{n}")
        dp.add_macvlan("a", "bridge", netns=ns, ifname="eth0", mac=bytes.fromhex("02000000001a"))
        sh("ip", "-n", ns, "addr", "add", "10.79.0.1/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not dp.call(lambda: dp.engine.child("a").up):
            time.sleep(0.01)
        tid = dp._thread.native_id
        time.sleep(idle / 4)
        c0 = _thread_cpu(tid)
        time.sleep(idle)
        idle_cpu = (_thread_cpu(tid) - c0) / idle
        ping(ns, "10.79.0.100", count=2)  # traffic: a busy loop is spinning now
        thread = dp._thread
        t0 = time.monotonic()
    finally:
        dp.close()
    thread.join(10)
    return {"stop_s": time.monotonic() - t0, "idle_cpu": idle_cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--busy-us", type=int, default=2000)
    ap.add_argument("--idle", type=float, default=1.0)
    ap.add_argument("-j", "--json", action="store_true")
    args = ap.parse_args()
    lab = Lab()
    try:
        P, W = lab.ns("P"), lab.ns("W")
        parent, wire = lab.ifname("p"), lab.ifname("w")
        lab.veth(parent, P, wire, W)
        sh("ip", "-n", W, "addr", "add", "10.79.0.100/24", "dev", wire)
        runs: dict[int, list[dict[str, float]]] = {0: [], args.busy_us: []}
        for i in range(args.rounds):
            for k, busy in enumerate(runs):  # interleaved: both see the same machine
                runs[busy].append(one(lab, parent, P, busy, args.idle, len(runs) * i + k))
    finally:
        lab.close()
    med = {b: {k: statistics.median(r[k] for r in rs) for k in ("stop_s", "idle_cpu")} for b, rs in runs.items()}
    out = {"busy_poll_us": args.busy_us, "sleeping": med[0], "busy": med[args.busy_us],
           "ratio": {k: (med[args.busy_us][k] / med[0][k] if med[0][k] else None) for k in ("stop_s", "idle_cpu")}}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    for k in ("stop_s", "idle_cpu"):
        r = out["ratio"][k]
        print(f"{k:9} sleeping {med[0][k]:.4f}  busy({args.busy_us} µs) {med[args.busy_us][k]:.4f}  "
              f"ratio {'n/a' if r is None else f'{r:.2f}x'}")


if __name__ == "__main__":
    main()
