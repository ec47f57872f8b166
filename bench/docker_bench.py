"""`docker network create` and `docker run` to the first ping: Docker's built-in macvlan driver
against `-d pymacvlan`, side by side on one private dockerd.

    sudo python3 bench/docker_bench.py [--rounds 10] [--json out.json]

One run, interleaved: each round creates a network with one driver, times `docker run --rm`
of a container whose only command is one ping to the wire station (container create, the
driver's CreateEndpoint/Join, start, the first ARP and echo, exit and removal), removes the
network, then does the same with the other driver (the order alternates every round). The
built-in driver refuses two networks on one parent, hence one network at a time. Medians and
the ratio ours/built-in (the target: within 1.2x). dockerd runs in pmv namespaces of its own
(pymacvlan.docker.lab) and everything is removed on exit.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pymacvlan.docker.lab import IMAGE, DockerLab, missing  # noqa: E402

DRIVERS = ("macvlan", "pymacvlan")


def timed(lab: DockerLab, *args: str) -> float:
    t = time.perf_counter()
    lab.docker(*args)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--json", help="write the figures there too")
    args = ap.parse_args(argv)
    why = missing()
    if why:
        print(f"docker_bench: {why}", file=sys.stderr)
        return 2
    times: dict[str, dict[str, list[float]]] = {d: {"create": [], "run_ping": []} for d in DRIVERS}
    with DockerLab() as lab:
        lab.start_plugin()
        for d in DRIVERS:  # warm-up: the first call of each path pays for imports and caches
            lab.docker("network", "create", "-d", d, "-o", "parent=pmvP", "--subnet", "10.83.0.0/24", "bw")
            lab.docker("run", "--rm", "--network", "bw", IMAGE, "ping", "-c", "1", "-W", "5", lab.station)
            lab.docker("network", "rm", "bw")
        for r in range(args.rounds):
            for d in (DRIVERS if r % 2 == 0 else DRIVERS[::-1]):
                times[d]["create"].append(timed(lab, "network", "create", "-d", d, "-o", "parent=pmvP",
                                                "--subnet", "10.83.0.0/24", "--gateway", lab.station, "bn"))
                times[d]["run_ping"].append(timed(lab, "run", "--rm", "--network", "bn", IMAGE, "ping", "-c", "1",
                                                  "-W", "5", lab.station))
                lab.docker("network", "rm", "bn")
    med = {d: {k: statistics.median(v) for k, v in times[d].items()} for d in DRIVERS}
    print(f"dockerd 20.10 in a namespace, {args.rounds} interleaved rounds, medians (s):")
    print(f"{'':24}{'macvlan (built-in)':>20}{'pymacvlan':>12}{'ratio':>8}")
    for k, label in (("create", "docker network create"), ("run_ping", "docker run to first ping")):
        b, o = med["macvlan"][k], med["pymacvlan"][k]
        print(f"{label:24}{b:20.3f}{o:12.3f}{o / b:8.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"rounds": args.rounds, "median_s": med, "samples_s": times}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
