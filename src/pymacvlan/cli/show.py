"""`pymacvlan show --graph FILE.svg`: a picture of parents, children, modes and who reaches whom."""

from __future__ import annotations

import sys

from ..links import BACKENDS
from ._report import error_line, plural

ORDER = 25


def _topology(args):
    from ..graph import load_topology

    if args.source:
        return load_topology(args.source)
    from ..links import DriverConfig, open_driver

    return open_driver(DriverConfig(args.backend, state=args.state, socket=args.socket)).topology(args.netns)


def _show(args) -> int:
    from ..graph import PARENT, WIRE, reach_matrix, render, to_dot, to_hash_dot
    from ..links import DEFAULT_BACKEND
    from ..model.errors import KernelError
    from ..scenario import ScenarioError

    if args.source is None and args.backend is None:
        args.backend = DEFAULT_BACKEND
    try:
        parents = _topology(args)
        if not parents:
            where = args.source or f"the {args.backend} backend" + (f" (namespace {args.netns})" if args.netns else "")
            print(f"pymacvlan show: no macvlan/macvtap children in {where}: nothing to draw", file=sys.stderr)
            return 1
        dot = to_hash_dot(parents) if args.hash else to_dot(parents)
    except KernelError as e:
        print(error_line("show", e), file=sys.stderr)
        return 2
    except OSError as e:
        print(error_line("show", e), file=sys.stderr)
        return 2
    except (ScenarioError, ValueError) as e:
        print(error_line("show", e), file=sys.stderr)
        return 2
    if args.dot:
        sys.stdout.write(dot)
    if args.graph:
        try:
            render(dot, args.graph)
        except RuntimeError as e:
            print(f"pymacvlan show: {e}", file=sys.stderr)
            return 2
        print(f"wrote {args.graph}: {plural(sum(len(p.children) for p in parents), 'child', 'children')} on "
              f"{plural(len(parents), 'parent')}", file=sys.stderr)
    if args.hash and not args.dot and not args.graph:
        from ..engine.hashes import mac_hash
        from ..model.mac import parse_mac

        for p in parents:
            print(f"{p.name}: vlan_hash (256 buckets)")
            for c in p.children:
                where = f"bucket {mac_hash(parse_mac(c.mac))}" if c.mac else "MAC random at creation"
                print(f"  {c.name}" + (f" {c.mac}" if c.mac else "") + f": {where}")
                for m in c.macaddr if c.mode == "source" else []:
                    print(f"    vlan_source_hash bucket {mac_hash(parse_mac(m))}: {m} -> {c.name}")
    if not args.dot and not args.graph and not args.hash:
        name = {PARENT: "parent's stack", WIRE: "wire station"}
        for p in parents:
            print(f"{p.name} ({p.wire} wire): " + ", ".join(f"{c.name} {c.mode}" + ("" if c.up else " (down)")
                                                         for c in p.children))
            for (s, r), (u, b) in sorted(reach_matrix(p).items()):
                what = "unicast and broadcast" if u and b else "unicast only" if u else "broadcast only" if b else None
                if what:
                    print(f"  {name.get(s, s)} -> {name.get(r, r)}: {what}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("show", help="draw parents, children, modes and who reaches whom (--graph FILE.svg)",
                       description="Reads a scenario (.json), a config (.toml) or a backend's current links, "
                                   "computes who reaches whom with the engine and draws it with graphviz.")
    p.add_argument("source", nargs="?", help="scenario .json or config .toml (default: the backend's links)")
    p.add_argument("--graph", metavar="FILE", help="write the picture (format from the suffix: svg, png, pdf)")
    p.add_argument("--dot", action="store_true", help="print the DOT text")
    p.add_argument("--hash", action="store_true",
                   help="draw the port's MAC hash tables (256 buckets: which child each bucket holds) "
                        "instead of who reaches whom")
    p.add_argument("--backend", choices=BACKENDS, help="read the links of this backend")
    p.add_argument("--netns", help="the namespace to read the links from (kernel)")
    p.add_argument("--state", help="sim backend: its state file")
    p.add_argument("--socket", help="userspace backend: the daemon's control socket")
    p.set_defaults(func=_show)
