"""`pymacvlan replay`, `modes` and `fuzz`: scenario files on one or two backends."""

from __future__ import annotations

import json
import os
import sys

from ..backends import BACKENDS as REPLAY_BACKENDS
from ..scenario import ScenarioError, check_expectations, diff_results, load_scenario
from ._report import error_line, plural

ORDER = 10


def _replay(args) -> int:
    """One scenario file, or a conformance run over several (a progress bar on stderr, one
    line or JSON object per file, exit 1 when any differs)."""
    from ..progress import Progress

    args.backend = args.backend or [REPLAY_BACKENDS[0]]
    if len(args.scenario) == 1:
        return _replay_one(args.scenario[0], args, None)
    status = 0
    failed: list[str] = []
    with Progress(len(args.scenario), "replay " + " vs ".join(args.backend)) as progress:
        for path in args.scenario:
            progress.step(os.path.basename(path))
            one = _replay_one(path, args, progress)
            if one:
                failed.append(path)
            status = max(status, one)
            progress.advance()
    print(f"{len(args.scenario) - len(failed)}/{len(args.scenario)} scenario files passed"
          + (f"; failed: {', '.join(failed)}" if failed else ""), file=sys.stderr)
    return status


def _replay_one(path: str, args, progress) -> int:
    from ..backends import get_backend

    say = progress.log if progress is not None else (lambda line: print(line, flush=True))
    where = f"{path}: " if progress is not None else ""
    try:
        sc = load_scenario(path)
    except ScenarioError as e:
        print(error_line("replay", e), file=sys.stderr)
        return 2
    outputs = []
    for name in args.backend:
        try:
            backend = get_backend(name)
        except (ValueError, ImportError) as e:
            print(f"pymacvlan replay: backend {name}: {e}", file=sys.stderr)
            return 2
        if backend.explains:  # the engine's own backend says why (compared runs carry the sim's trace)
            backend.trace = args.trace or len(args.backend) > 1
        try:
            outputs.append(backend.run(sc))
        except PermissionError as e:
            print(f"pymacvlan replay: backend {name} needs root (CAP_NET_ADMIN): {e}", file=sys.stderr)
            return 2
        except (RuntimeError, ValueError) as e:  # not available here, or a scenario it cannot run
            print(f"pymacvlan replay: {where}backend {name}: {e}", file=sys.stderr)
            return 2
    status = 0
    if len(outputs) == 1:
        out = outputs[0]
        if not args.trace:
            for r in out["results"]:
                r.pop("trace", None)
                r.pop("path", None)
        if progress is not None:
            out = {"scenario": path, **out}
        say(json.dumps(out, indent=2 if args.pretty else None))
    else:
        diffs = diff_results(sc["steps"], outputs[0], outputs[1])
        if diffs:
            say(f"{where}{plural(len(diffs), 'step')} differ between {args.backend[0]} and {args.backend[1]}:")
            say("\n".join(diffs))
            status = 1
        else:
            say(f"{where}{args.backend[0]} and {args.backend[1]} agree on all {len(sc['steps'])} steps")
    if args.check:
        for out in outputs:
            bad = check_expectations(sc, out)
            if bad:
                print(
                    f"{where}{out['backend']}: {plural(len(bad), 'step')} differ from the scenario's expectations:",
                    file=sys.stderr,
                )
                print("\n".join(bad), file=sys.stderr)
                status = 1
    return status


def _modes(args) -> int:
    from ..reachability import mode_table, readme_block

    print(readme_block() if args.wire is None else mode_table(args.wire))
    return 0


def _fuzz(args) -> int:
    from pathlib import Path

    from ..backends import get_backend
    from ..fuzz import fuzz

    left = get_backend(args.base)
    left.trace = True
    right = get_backend(args.against)
    if hasattr(right, "trace"):
        right.trace = True
    from ..progress import Progress

    with Progress(args.n, f"fuzz {args.base} vs {args.against}") as progress:
        rep = fuzz(left, right, args.n, args.seed, Path(args.out), stop_after=args.max_findings, progress=progress)
    print(f"fuzz: {rep.runs} scenarios ({rep.invalid} invalid skipped), seed {args.seed}, "
          f"{args.base} vs {args.against}: {plural(len(rep.findings), 'difference')} in {rep.seconds:.1f} s")
    return 1 if rep.findings else 0


def register(sub) -> None:
    r = sub.add_parser("replay", help="run scenario files on a backend (or diff two backends)")
    r.add_argument("scenario", nargs="+",
                   help="scenario JSON file(s) (see docs/scenario-format.md); several: a conformance run "
                   "with a progress bar and a summary")
    r.add_argument("--backend", action="append", choices=REPLAY_BACKENDS,
                   help="backend to run on (default sim); give two to diff them")
    r.add_argument("--trace", action="store_true", help="explain every frame's fate (sim)")
    r.add_argument("--check", action="store_true", help="compare with the scenario's expect keys")
    r.add_argument("-p", "--pretty", action="store_true", help="indent the JSON output")
    r.set_defaults(func=_replay)
    m = sub.add_parser("modes", help="print who reaches whom in each mode (computed by the engine)")
    m.add_argument("--wire", choices=["plain", "hairpin"], help="only this wire (default both)")
    m.set_defaults(func=_modes)
    f = sub.add_parser("fuzz", help="differential fuzzing of two backends, shrinking any difference")
    f.add_argument("--against", default="kernel", choices=REPLAY_BACKENDS,
                   help="the backend checked (default kernel)")
    f.add_argument("--base", default="sim", choices=REPLAY_BACKENDS,
                   help="the backend it is checked against (default sim)")
    f.add_argument("-n", type=int, default=200, help="number of random scenarios")
    f.add_argument("--seed", type=int, default=1, help="first random seed (default 1): a run is reproducible")
    f.add_argument("--out", default="fuzz-failures", help="where shrunk scenarios are written")
    f.add_argument("--max-findings", type=int, default=1, help="stop after this many differences")
    f.set_defaults(func=_fuzz)
