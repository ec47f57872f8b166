"""Engine decisions per second (issue 2's benchmark; not a test).

    python bench/engine_bench.py [--seconds 1.0]

Cases: wire-to-child unicast, bridge-local unicast (child to child), and a broadcast
from the wire to 1, 100 and 1000 children (decision = one frame's whole fan-out, the
deferred queue drained). One core, one process; figures vary with the machine's load.
"""

from __future__ import annotations

import argparse
import json
import time

from pymacvlan.engine import Engine
from pymacvlan.model import Mode


def mac(i: int) -> bytes:
    return bytes([0x02, 0, 0, (i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF])


def topology(n: int, mode: Mode = Mode.BRIDGE) -> Engine:
    e = Engine("eth0", bytes.fromhex("020000ffff01"))
    for i in range(1, n + 1):
        e.add(f"c{i}", mode=mode, mac=mac(i))
        e.set_up(f"c{i}", True)
    return e


def rate(fn, seconds: float) -> float:
    """Calls of fn per second, in batches of 1000 to keep timer overhead out."""
    n = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        for _ in range(1000):
            fn()
        n += 1000
        t = time.perf_counter()
        if t >= deadline:
            return n / (t - t0)


def run(seconds: float) -> dict:
    results = {}
    e = topology(10)
    frame = mac(5) + bytes.fromhex("0a00000000ee88b5") + bytes(50)
    results["wire_to_child_unicast"] = rate(lambda: e.receive(frame), seconds)

    sender = e.children["c1"]
    local = mac(7) + mac(1) + bytes.fromhex("88b5") + bytes(50)
    results["bridge_local_unicast"] = rate(lambda: e.xmit(sender, local), seconds)

    for n in (1, 100, 1000):
        eb = topology(n)
        bc = b"\xff" * 6 + bytes.fromhex("0a00000000ee88b5") + bytes(50)

        def flood(eb=eb, bc=bc):
            eb.receive(bc)
            eb.process_bc_queue()

        r = rate(flood, seconds if n < 1000 else seconds * 2)
        results[f"broadcast_to_{n}"] = r
        results[f"broadcast_to_{n}_deliveries_per_s"] = r * n
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    res = run(args.seconds)
    if args.json:
        print(json.dumps(res, indent=1))
        return
    for k, v in res.items():
        print(f"{k:38s} {v:14,.0f} /s")


if __name__ == "__main__":
    main()
