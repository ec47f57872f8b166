"""The daemon restart's plain figures: how long the daemon is away, and the largest gap a
paced TCP stream (child to child, and child to the wire) sees across it.

    sudo PYTHONPATH=src python3 bench/restart_gap.py [--rounds 3] [--signal TERM|KILL] [--json out.json]

The test suite (tests/backends/userspace/test_daemon_restart.py) asserts each gap against a
bound computed from the run's own outage and TCP's backoff (tcp_gap_bound); the figures go
here, where a loaded machine changes a number, not a verdict. Namespaces are pmv-prefixed and
removed on exit; the daemon is stopped by its PID.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--signal", choices=["TERM", "KILL"], default="TERM")
    ap.add_argument("--json")
    args = ap.parse_args()
    from pymacvlan.netlab import Lab, PacedStream
    from tests.backends.userspace.test_daemon import STATION, DaemonProc, _link_in, _setup, _wait
    from tests.backends.userspace.test_daemon_restart import _children, tcp_gap_bound

    sig = getattr(signal, f"SIG{args.signal}")
    rows = []
    lab = Lab()
    try:
        with tempfile.TemporaryDirectory(prefix="pmv-bench-") as tmp:
            P, W, parent = _setup(lab)
            d = DaemonProc(Path(tmp), P).start()
            try:
                A, B = _children(lab, d, parent)
                for r in range(args.rounds):
                    streams = [PacedStream(B, "10.78.0.2", A, port=5401 + 2 * r).start(),
                               PacedStream(W, STATION, A, port=5402 + 2 * r).start()]
                    time.sleep(0.5)
                    t0 = time.monotonic()
                    d.stop(sig)
                    d.start()
                    restart = time.monotonic() - t0
                    _wait(lambda: "NO-CARRIER" not in _link_in(A, "eth0"))
                    outage = time.monotonic() - t0
                    time.sleep(1.5)
                    for s in streams:
                        s.stop(timeout=2)
                    row = {"round": r + 1, "restart_s": round(restart, 3), "outage_s": round(outage, 3),
                           "gap_child_child_s": round(streams[0].max_gap, 3),
                           "gap_child_wire_s": round(streams[1].max_gap, 3),
                           "bound_s": round(tcp_gap_bound(outage, streams[0].interval), 3)}
                    rows.append(row)
                    print(json.dumps(row))
            finally:
                d.stop()
    finally:
        lab.close()
    if args.json:
        Path(args.json).write_text(json.dumps({"signal": args.signal, "rounds": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
