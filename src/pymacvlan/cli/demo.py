"""`pymacvlan demo`: every mode live in throwaway namespaces, next to the engine's prediction."""

from __future__ import annotations

import json
import sys

from ..links import HOST_BACKENDS

ORDER = 5


def _demo(args) -> int:
    from ..demo import MODES, render, run_demo

    modes = tuple(args.mode) if args.mode else MODES

    def progress(msg: str) -> None:
        if not args.quiet:
            print(f"  ... {msg}", file=sys.stderr, flush=True)

    try:
        rep = run_demo(args.backend, args.wire, modes, progress=progress,
                       force_engine_only="--engine-only given" if args.engine_only else None,
                       shield=not args.no_shield)
    except (OSError, RuntimeError) as e:
        print(f"pymacvlan demo: {e} (everything it built was removed)", file=sys.stderr)
        return 2
    if args.json:
        json.dump(rep.as_dict(), sys.stdout, indent=2)
        print()
    else:
        print(render(rep))
    return 1 if rep.mismatches() or rep.leftovers else 0


def register(sub) -> None:
    d = sub.add_parser("demo", help="every mode live in throwaway namespaces, next to the engine's prediction",
                       description="As root: builds pmv namespaces with a veth parent, children in every mode, "
                                   "tries ARP and ping between every pair and to a station on the wire, prints "
                                   "the live matrix next to the engine's, a TCP throughput figure, and cleans up. "
                                   "Without root or /dev/net/tun: the engine's matrix and why it did not go live.")
    d.add_argument("--backend", choices=HOST_BACKENDS, default="userspace",
                   help="userspace: the pymacvlan datapath (TAP children); kernel: the kernel's macvlan")
    d.add_argument("--wire", choices=["plain", "hairpin"], default="plain",
                   help="the far end of the parent: a plain station, or a bridge with hairpin on (VEPA switch)")
    d.add_argument("--mode", action="append", choices=["private", "vepa", "bridge", "passthru", "source"],
                   help="only these modes (repeatable; default all)")
    d.add_argument("--no-shield", action="store_true",
                   help="userspace: without the eBPF filter that keeps the parent's stack from frames "
                        "macvlan consumes (shows where a plain AF_PACKET datapath differs from the kernel)")
    d.add_argument("--engine-only", action="store_true", help="do not go live; print the engine's matrix")
    d.add_argument("-j", "--json", action="store_true", help="JSON output")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    d.set_defaults(func=_demo)
