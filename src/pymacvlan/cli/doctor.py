"""`pymacvlan doctor [PARENT] [--netns NS]`: the pitfalls macvlan users hit, checked read-only."""

from __future__ import annotations

import json
import sys

ORDER = 30


def _doctor(args) -> int:
    from ..doctor import diagnose, exit_status, gather, render

    try:
        facts = gather(args.netns)
    except OSError as e:
        where = f"namespace {args.netns}" if args.netns else "this namespace"
        print(f"pymacvlan doctor: cannot read {where}: {e}", file=sys.stderr)
        return 2
    try:
        findings = diagnose(facts, args.parent)
    except LookupError:
        known = ", ".join(i.name for i in facts.ifaces if i.name != "lo")
        where = f" in namespace {args.netns}" if args.netns else ""
        print(f"pymacvlan doctor: ENODEV: no interface {args.parent!r}{where}; known: {known}", file=sys.stderr)
        return 2
    checked = (
        [args.parent]
        if args.parent
        else sorted({f.subject for f in findings if not f.subject.startswith(("namespace", "this "))})
    )
    if args.json:
        json.dump({"netns": args.netns, "parent": args.parent, "findings": [f.as_dict() for f in findings],
                   "status": exit_status(findings)}, sys.stdout, indent=2)
        print()
    else:
        print(render(findings, checked or ["every interface that could be a parent"]))
    return exit_status(findings)


def register(sub) -> None:
    d = sub.add_parser("doctor", help="check a parent and its namespace for the usual macvlan pitfalls (read-only)",
                       description="Looks for what macvlan users keep tripping over: a Wi-Fi parent, a parent without "
                                   "a unicast filter, more MACs than the NIC filters, a hypervisor or cloud dropping "
                                   "unknown MACs, a host that cannot reach its own children, ARP/rp_filter settings "
                                   "for several children in one namespace, macvlan next to ipvlan. Changes nothing. "
                                   "Exit 1 if there are warnings or errors.")
    d.add_argument("parent", nargs="?", help="the parent interface (default: every parent of a child here)")
    d.add_argument("--netns", help="the namespace the parent lives in (ip netns name)")
    d.add_argument("-j", "--json", action="store_true", help="JSON output")
    d.set_defaults(func=_doctor)
