"""Where a ping's added round trip goes in the userspace datapath (a diagnostic, not a test).

    sudo python3 bench/rtt_trace.py [--pings 200] [--datapath '{"busy_poll_us": 0}']

Child A pings child B (bridge mode, TAP children, datapath in its own process), one echo
every 5 ms. The datapath process has ``os.read``, ``os.write`` and its epoll's ``poll``
wrapped to log ``perf_counter_ns`` before and after each call (CLOCK_MONOTONIC, the same
clock as the pinger's), so each ping splits into:

- ``wake``: the pinger's sendto() → the datapath's epoll_wait returns;
- ``request``: epoll return → the write to B's TAP starts (read, engine, dispatch);
- ``write_b``: that write, which runs B's whole receive path and its echo reply inline;
- ``reply``: end of that write → the write to A's TAP starts (EAGAIN read, poll, read, engine);
- ``write_a``: the write to A's TAP (A's receive path, waking the pinger);
- ``rtt``: sendto() → the pinger has the reply.

The wrappers add about a microsecond per call. Namespaces are pmv-prefixed and removed on exit.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "backends" / "userspace"))
sys.path.insert(0, str(ROOT / "src"))

import compare  # noqa: E402

SERVE = textwrap.dedent("""
    import json, os, signal, sys, time
    LOG = []
    ns = time.perf_counter_ns
    _read, _write = os.read, os.write
    def read(fd, n):
        t = ns()
        try:
            b = _read(fd, n)
        except BlockingIOError:
            LOG.append((t, ns(), "eagain", fd))
            raise
        LOG.append((t, ns(), "read", fd))
        return b
    def write(fd, b):
        t = ns()
        r = _write(fd, b)
        LOG.append((t, ns(), "write", fd))
        return r
    os.read, os.write = read, write  # before the datapath binds them in its closures
    from pymacvlan.backends.userspace import Datapath, DatapathConfig, ParentConfig
    P, parent, A, B, cfg, out = sys.argv[1:7]
    dp = Datapath(DatapathConfig(ParentConfig(parent, P), **json.loads(cfg)))
    class Epoll:
        def __init__(self, ep):
            self.ep = ep
        def poll(self, timeout):
            t = ns()
            r = self.ep.poll(timeout)
            if r:
                LOG.append((t, ns(), "poll", len(r)))
            return r
        def __getattr__(self, name):
            return getattr(self.ep, name)
    dp.ep = Epoll(dp.ep)
    def stop(*_a):
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, stop)
    try:
        dp.add_macvlan("a", "bridge", netns=A, ifname="eth0", mac=bytes.fromhex("02000000000a"))
        dp.add_macvlan("b", "bridge", netns=B, ifname="eth0", mac=bytes.fromhex("02000000000b"))
        print("ready", flush=True)
        LOG.clear()
        dp.run()
    finally:
        with open(out, "w") as f:
            json.dump(LOG, f)
        dp.close()
""")


def pings(netns: str, dst: str, count: int) -> list[tuple[int, int]]:
    """(sendto start, reply received) in perf_counter_ns, one echo at a time, 5 ms apart."""
    return compare.icmp_echo_ns(netns, dst, count, 0x7070)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pings", type=int, default=200)
    ap.add_argument("--datapath", default="{}", metavar="JSON", help="DatapathConfig fields")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (namespaces, veth, TAP, AF_PACKET)")
    bench = compare.Bench(1, args.pings)
    bench.cleanup_paths = []
    log_path = tempfile.mktemp(prefix="pmv-rtt-trace-", suffix=".json")
    try:
        lab = bench.lab
        P, W, A, B = (lab.ns("t" + r) for r in "PWAB")
        parent, wire = lab.ifname("tp"), lab.ifname("tw")
        lab.veth(parent, P, wire, W)
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
        dp = bench._spawn([sys.executable, "-c", SERVE, P, parent, A, B, args.datapath, log_path],
                          stdout=subprocess.PIPE, text=True, env=env)
        if dp.stdout.readline().strip() != "ready":
            raise RuntimeError("the datapath did not start")
        bench._addr(A, "eth0", compare.IP_A)
        bench._addr(B, "eth0", compare.IP_B)
        time.sleep(0.5)
        pings(A, compare.IP_B, 10)
        sends = pings(A, compare.IP_B, args.pings)
        dp.terminate()  # our own child: it writes its log and closes the datapath
        dp.wait(timeout=20)
        with open(log_path) as f:
            log = json.load(f)
    finally:
        bench.close()
        if os.path.exists(log_path):
            os.unlink(log_path)
    parts: dict[str, list[float]] = {k: [] for k in ("wake", "request", "write_b", "reply", "write_a", "rtt")}
    for t0, t1 in sends:
        ev = [e for e in log if t0 <= e[1] <= t1 + 200_000]  # by end: the poll that wakes began before t0
        polls = [e for e in ev if e[2] == "poll"]
        writes = [e for e in ev if e[2] == "write"]
        if not polls or len(writes) < 2:
            continue
        parts["wake"].append(polls[0][1] - t0)
        parts["request"].append(writes[0][0] - polls[0][1])
        parts["write_b"].append(writes[0][1] - writes[0][0])
        parts["reply"].append(writes[1][0] - writes[0][1])
        parts["write_a"].append(writes[1][1] - writes[1][0])
        parts["rtt"].append(t1 - t0)
    print(f"{len(parts['rtt'])} of {len(sends)} pings traced; medians in µs (datapath config {args.datapath}):")
    for k, v in parts.items():
        if v:
            print(f"  {k:8} {statistics.median(v) / 1e3:6.1f}")


if __name__ == "__main__":
    main()
