"""`pymacvlan lab NAME`: classic macvlan experiments, told step by step and checked.

Shown steps are numbered from 1 in the order shown (hidden setup steps take no number), so the
first thing a reader sees is step 1."""

from __future__ import annotations

import sys
import textwrap

from ..backends import BACKENDS as REPLAY_BACKENDS
from ._report import plural

ORDER = 40


def _wrap(text: str, indent: str = "") -> str:
    return textwrap.fill(text, width=100, initial_indent=indent, subsequent_indent=indent)


def _keepalived(args) -> int:
    """The keepalived lab: real processes on the kernel's macvlan, not a scenario file."""
    import os

    from ..labs import keepalived as ka

    if args.backend not in (None, ka.BACKEND):
        print(f"pymacvlan lab: EINVAL: keepalived makes its kernel macvlan itself: the lab runs on the kernel "
              f"backend only, not {args.backend} (leave --backend out)", file=sys.stderr)
        return 2
    why = ka.unavailable()
    if why:
        print(f"pymacvlan lab: keepalived: {why}", file=sys.stderr)
        return 2
    print(f"lab keepalived on the kernel backend (kernel {os.uname().release}), Debian's keepalived in namespaces")
    print(_wrap(ka.DESCRIPTION))
    print()
    n = 0

    def report(s) -> None:
        nonlocal n
        n += 1
        mark = "" if s.ok is None else ("  ok" if s.ok else "  DIFFERS")
        print(f"{n:2}. {s.text}{mark}")
        if s.comment:
            print(_wrap(s.comment, "    "))
        for line in s.got.splitlines():
            print(f"    got: {line}")
    out = ka.run(report)
    print()
    print(_wrap("Takeaway: " + ka.NOTE))
    if out.failover:
        print("failover, longest time without a reply at the station: "
              + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in out.failover.items()))
    if out.failed:
        print(f"{len(out.failed)} of {out.checked} checked steps differ from the lab's expectations")
        return 1
    print(f"all {out.checked} checked steps behaved as expected")
    return 0


def _lab(args) -> int:
    from .. import labs
    from ..backends import get_backend

    if args.list or not args.name:
        for n in labs.names():
            print(f"{n:18} {labs.raw(n).get('description', '').split('. ')[0]}")
        print(f"{'keepalived':18} keepalived's virtual MAC with Debian's real keepalived (kernel backend, root)")
        if not args.list:
            print("\nrun one with: pymacvlan lab NAME [--backend sim|kernel|userspace]", file=sys.stderr)
        return 0
    if args.name == "keepalived":
        return _keepalived(args)
    try:
        labs.path_of(args.name)
    except KeyError:
        print(f"pymacvlan lab: no lab named {args.name!r}; known: {', '.join([*labs.names(), 'keepalived'])}",
              file=sys.stderr)
        return 2
    args.backend = args.backend or REPLAY_BACKENDS[0]
    try:
        backend = get_backend(args.backend)
    except (ValueError, ImportError) as e:
        print(f"pymacvlan lab: backend {args.backend}: {e}", file=sys.stderr)
        return 2
    try:
        run = labs.run(args.name, backend)
    except PermissionError as e:
        print(f"pymacvlan lab: backend {args.backend} needs root (CAP_NET_ADMIN): {e}", file=sys.stderr)
        return 2
    except (RuntimeError, ValueError) as e:
        print(f"pymacvlan lab: backend {args.backend}: {e}", file=sys.stderr)
        return 2
    sc = labs.raw(args.name)
    print(f"lab {run.name} on the {run.backend} backend (kernel {run.kernel}), {sc.get('wire', 'plain')} wire")
    print(_wrap(sc.get("description", "")))
    print()
    shown = 0
    for s in run.steps:
        if s.step["do"] in ("add", "set") and not s.checked and s.result.get("ok"):
            if not args.verbose:
                continue
        shown += 1
        mark = "" if not s.checked else ("  ok" if not s.diffs else "  DIFFERS")
        print(f"{shown:2}. {labs.describe_step(s.step)}{mark}")
        if s.comment:
            print(_wrap(s.comment, "    "))
        if s.step["do"] == "inject" or not s.result.get("ok"):
            print(f"    got: {labs.summarize(s.result)}")
        for d in s.diffs:
            print(f"    {d}")
    setup = sum(1 for s in run.steps if s.step["do"] in ("add", "set") and not s.checked and s.result.get("ok"))
    print()
    if setup and not args.verbose:
        print(f"({plural(setup, 'setup step')} not shown; -v shows them)")
    if sc.get("note"):
        print(_wrap("Takeaway: " + sc["note"]))
    bad = run.failed
    if bad:
        print(f"{len(bad)} of {run.checked} checked steps differ from the lab's expectations")
        return 1
    print(f"all {run.checked} checked steps behaved as expected")
    return 0


def register(sub) -> None:
    p = sub.add_parser("lab", help="classic macvlan experiments, step by step, on any backend",
                       description="Runs a lab (a scenario file shipped with pymacvlan, or a path), tells what "
                                   "each step shows and what happened, and checks it against the lab's "
                                   "expectations (exit 1 on a difference).")
    p.add_argument("name", nargs="?", help="lab name (see --list) or a scenario .json file")
    p.add_argument("--backend", choices=REPLAY_BACKENDS, default=None,
                   help="sim (default, no privileges), kernel (root: the real driver), userspace; "
                        "the keepalived lab runs on kernel only")
    p.add_argument("--list", action="store_true", help="list the labs")
    p.add_argument("-v", "--verbose", action="store_true", help="show the setup steps too")
    p.set_defaults(func=_lab)
