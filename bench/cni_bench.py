"""ADD and DEL wall time: the reference macvlan plugin against pymacvlan-cni, side by side.

    sudo python3 bench/cni_bench.py [--rounds 30] [--json out.json]

One run, interleaved: each round runs the reference ADD, its DEL, then ours (the order
alternates every round), with host-local IPAM, in a host namespace whose master is a veth to
a wire namespace, exactly as a runtime runs a plugin (a fresh process per command, config on
stdin). Wall time from fork to exit, medians and ratios. Also timed: the bare interpreter
(``python3 -c pass``), the floor under any Python plugin on this machine.
Namespaces are pmv-prefixed and removed on exit.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REF = ["/usr/lib/cni/macvlan"]
OURS = [sys.executable, "-m", "pymacvlan.cni"]


def ip(*a: str) -> None:
    subprocess.run(["ip", *a], check=True, capture_output=True)


def timed(argv: list[str], env: dict, data: bytes, host: str) -> float:
    t = time.perf_counter()
    p = subprocess.run(["nsenter", f"--net=/run/netns/{host}", *argv], input=data, env=env, capture_output=True)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{argv[0]} {env['CNI_COMMAND']} failed: {p.stdout.decode()} {p.stderr.decode()}")
    return dt


def bench(rounds: int) -> dict:
    prefix = "pmv" + secrets.token_hex(3)
    host, wire, pod = prefix + "h", prefix + "w", prefix + "c"
    tmp = Path(tempfile.mkdtemp(prefix="pmvcni"))
    times: dict[str, list[float]] = {k: [] for k in ("ref ADD", "ref DEL", "ours ADD", "ours DEL", "python3 -c pass")}
    try:
        for ns in (host, wire, pod):
            ip("netns", "add", ns)
        ip("-n", host, "link", "add", "pmvM", "type", "veth", "peer", "name", "pmvW", "netns", wire)
        ip("-n", host, "link", "set", "pmvM", "up")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT / "src"),
               "CNI_CONTAINERID": "bench", "CNI_NETNS": f"/run/netns/{pod}", "CNI_IFNAME": "eth0",
               "CNI_PATH": "/usr/lib/cni"}
        for r in range(rounds):
            order = [("ref", REF), ("ours", OURS)]
            for who, argv in (order if r % 2 == 0 else order[::-1]):
                conf = {"cniVersion": "1.0.0", "name": "bench", "type": "macvlan", "master": "pmvM",
                        "stateDir": str(tmp / "state"),
                        "ipam": {"type": "host-local", "subnet": "10.77.0.0/24", "dataDir": str(tmp / who)}}
                data = json.dumps(conf).encode()
                times[f"{who} ADD"].append(timed(argv, dict(env, CNI_COMMAND="ADD"), data, host))
                times[f"{who} DEL"].append(timed(argv, dict(env, CNI_COMMAND="DEL"), data, host))
            times["python3 -c pass"].append(
                timed([sys.executable, "-c", "pass"], dict(env, CNI_COMMAND="-"), b"", host)
            )
    finally:
        for ns in (host, wire, pod):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"rounds": rounds, "median_s": med,
            "ratio_ours_over_ref": {c: med[f"ours {c}"] / med[f"ref {c}"] for c in ("ADD", "DEL")}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--json", help="also write the figures here")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 1
    res = bench(a.rounds)
    print(f"{a.rounds} interleaved rounds, medians (fork to exit):")
    for k, v in res["median_s"].items():
        print(f"  {k:16} {v * 1000:7.1f} ms")
    for c, x in res["ratio_ours_over_ref"].items():
        print(f"  {c}: pymacvlan-cni / reference = {x:.1f}x")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
