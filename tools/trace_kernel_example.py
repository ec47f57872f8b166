"""The traced frame in docs/guides/live-host.md, from a kernel host: builds a throwaway macvlan host in pmv
namespaces (parent P, a hairpin wire, children a/b bridge, c private, d vepa, each in its own
namespace), runs `pymacvlan trace --backend kernel --verify` against it, lets child d send one
broadcast, prints what the trace printed and removes everything. Needs root.

    sudo python3 tools/trace_kernel_example.py [--wire plain|hairpin] [-j]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))

from pymacvlan.backends.kernel.nl import linkinfo_data  # noqa: E402
from pymacvlan.backends.kernel.topology import Topology, in_netns  # noqa: E402
from pymacvlan.model import MODES  # noqa: E402

CHILDREN = {"a": ("bridge", "02:00:00:00:00:0a"), "b": ("bridge", "02:00:00:00:00:0b"),
            "c": ("private", "02:00:00:00:00:0c"), "d": ("vepa", "02:00:00:00:00:0d")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wire", choices=["plain", "hairpin"], default="hairpin")
    ap.add_argument("-j", "--json", action="store_true")
    args = ap.parse_args()
    topo = Topology(wire=args.wire, parent_mac="02:00:00:00:00:01").create()
    proc = None
    try:
        for name, (mode, mac) in CHILDREN.items():
            child = topo.add_child(name, "macvlan", {"address": mac, **linkinfo_data("macvlan", mode=int(MODES[mode]))})
            child.ipr.link("set", index=child.index, state="up")
        topo.settle()
        proc = subprocess.Popen([sys.executable, "-m", "pymacvlan.cli.main", "trace", "--backend", "kernel",
                                 "-n", topo.ns_parent, "--verify", "--wire", args.wire, "--count", "1"]
                                + (["-j"] if args.json else []),
                                env={**os.environ, "PYTHONPATH": str(SRC)}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        proc.stderr.readline()  # "tracing ...": the mirror is built and the taps are open
        d = topo.children["d"]
        with in_netns(d.ns):
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        with sock:
            sock.bind((d.ifname, 0))
            sock.send(bytes.fromhex("ffffffffffff02000000000d88b5") + b"hello".ljust(46, b"\0"))
        out, err = proc.communicate(timeout=10)
        print(f"# pymacvlan trace --backend kernel -n {topo.ns_parent} --verify --wire {args.wire}")
        print(out, end="")
        print(err, end="", file=sys.stderr)
        return proc.returncode
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        topo.teardown()


if __name__ == "__main__":
    sys.exit(main())
