"""`pymacvlan doctor [PARENT] [--netns NS]`: the pitfalls macvlan users hit, checked read-only."""

from __future__ import annotations

import json
import sys

ORDER = 30


def _doctor(args) -> int:
    from ..doctor import CHECKS, by_code, diagnose, exit_status, gather, render, render_checks

    if args.checks:
        if args.json:
            json.dump([c.as_dict() for c in CHECKS], sys.stdout, indent=2)
            print()
        else:
            print(render_checks())
        return 0
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
    checked = [args.parent] if args.parent else sorted(
        {f.subject for f in findings if not f.subject.startswith(("namespace", "this "))})
    if args.json:
        out = []
        for f in findings:
            c = by_code(f.code)
            out.append({**f.as_dict(), "check": c.code, "looks_at": c.looks_at, "proof": c.proof, "test": c.test})
        json.dump({"netns": args.netns, "parent": args.parent, "findings": out,
                   "status": exit_status(findings)}, sys.stdout, indent=2)
        print()
    else:
        print(render(findings, checked or ["every interface that could be a parent"], args.netns))
    return exit_status(findings)


def register(sub) -> None:
    d = sub.add_parser("doctor", help="check a parent and its namespace for the usual macvlan pitfalls (read-only)",
                       description="Looks for what macvlan users keep tripping over: a Wi-Fi parent, a parent "
                                   "down or without carrier, no or an overflowing unicast filter, a hypervisor "
                                   "dropping unknown MACs, a host that cannot reach its own children, a DHCP server "
                                   "they cannot reach, ARP flux, arp_announce and rp_filter with several addresses "
                                   "in one namespace (keepalived's VMAC), a VM or nested container behind a child "
                                   "sending from other MACs, a macvtap that filters its guest's multicast, an "
                                   "IF.VID parent without 802.1Q, competing default routes, macvlan next to "
                                   "ipvlan. Prints the exact commands that fix each (`run:` lines), and what it "
                                   "cannot see. Changes nothing. Exit 1 if there are warnings or errors.")
    d.add_argument("parent", nargs="?", help="the parent interface (default: every parent of a child here)")
    d.add_argument("--netns", help="the namespace the parent lives in (ip netns name)")
    d.add_argument("-j", "--json", action="store_true", help="JSON output")
    d.add_argument("--checks", action="store_true",
                   help="list every check: what it looks at, what it cannot see, the test that proves it")
    d.set_defaults(func=_doctor)
