#!/usr/bin/env python3
"""Record each scenario step's result on a backend (the kernel by default) as the step's ``expect``.

    python tools/record_expectations.py tests/scenarios/matrix/*.json            # record (kernel)
    python tools/record_expectations.py --dry-run tests/scenarios/spec/*.json    # compare only
    python tools/record_expectations.py --backend sim --dry-run FILE...

What is written is only the comparable part of a result (as pymacvlan.scenario.compare sees it):
``{"ok": false, "errno": ...}`` for a failed step, ``{"ok": true}`` for a control step, the
observed frames (wire, parent, and every child, [] included) for an inject, and the state for a
show as the backend reports it, counters (``stats64``) included; ``--drop-stats`` leaves the
counters out, for suites run on a backend that lacks them. Traces and messages are never written.
With ``--dry-run``, expected counters are ignored when the backend reports none.

The kernel salts each child's multicast filter at random, so a child may get a group it did not
join by hash collision (about 1 in 64 per child and group here). Each file therefore runs
``--runs`` times (2 on the kernel) and the observations recorded are the intersection over the
runs (collisions only ever add frames); any disagreement between runs is reported.

A file that already has expectations is left alone unless ``--overwrite`` is given (hand-written
expectations in tests/scenarios/spec are compared with ``--dry-run``, never overwritten by
accident). Files the backend says it cannot run are skipped with its reason (the kernel backend's
``unsupported_reason()``: ``kernel_rules`` net-next, a parent with a unicast filter).

Files are rewritten pretty-printed and stable (tools/scenario_json.py): same results, same bytes.
Exit status: 0 when everything was recorded (or, with --dry-run, agrees); 1 otherwise.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scenario_json  # noqa: E402

from pymacvlan.backends import get_backend  # noqa: E402
from pymacvlan.scenario import ScenarioError, check_expectations, load_scenario  # noqa: E402

#: LINK keys some backends may not report: ignored in comparisons with a backend that lacks
#: them, and left out of recordings with --drop-stats.
BACKEND_ONLY_KEYS = ("stats64",)


# -- what a backend cannot run ------------------------------------------------------------------

def skip_reason(sc: dict, backend: str) -> str | None:
    """The backend's own word on a scenario it cannot run faithfully (kernel: net-next rules, a
    parent with a unicast filter), or None."""
    if backend == "kernel":
        try:
            from pymacvlan.backends.kernel import unsupported_reason
        except ImportError:
            unsupported_reason = None
        if unsupported_reason is not None:
            return unsupported_reason(sc)
        if sc.get("kernel_rules") == "net-next":
            return "models net-next rules (kernel_rules net-next); this kernel is older"
    return None


# -- results -> expectations ----------------------------------------------------------------------

def _frames(items, with_type: bool) -> list[dict]:
    out = [{"pkttype": f["pkttype"], "hex": f["hex"]} if with_type else {"hex": f["hex"]} for f in items]
    return sorted(out, key=lambda f: (f["hex"], f.get("pkttype", "")))


def _strip(state, keys) -> None:
    if not isinstance(state, dict):
        return
    for link in [state.get("parent")] + list((state.get("children") or {}).values()):
        if isinstance(link, dict):
            for k in keys:
                link.pop(k, None)


def expectation(result: dict, drop: tuple[str, ...]) -> dict:
    """The comparable part of one step's result, in the scenario's expect format."""
    if not result.get("ok"):
        return {"ok": False, "errno": result.get("errno")}
    if "observed" in result:
        obs = result["observed"]
        return {"observed": {
            "wire": _frames(obs.get("wire", []), False),
            "parent": _frames(obs.get("parent", []), True),
            "children": {n: _frames(v, True) for n, v in obs.get("children", {}).items()},
        }}
    if "state" in result:
        state = copy.deepcopy(result["state"])
        _strip(state, drop)
        return {"state": state}
    return {"ok": True}


def _multiset_and(lists: list[list[dict]]) -> list[dict]:
    keyed = [Counter(json.dumps(f, sort_keys=True) for f in lst) for lst in lists]
    common = keyed[0]
    for c in keyed[1:]:
        common &= c
    return sorted((json.loads(k) for k in common.elements()), key=lambda f: (f["hex"], f.get("pkttype", "")))


def merge_runs(outputs: list[dict]) -> tuple[dict, list[str]]:
    """One output from several runs of the same file: observations intersected, the rest from
    the first run; and a note for every step on which the runs disagree."""
    first = outputs[0]
    merged = copy.deepcopy(first)
    notes = []
    for i, res in enumerate(merged["results"]):
        others = [o["results"][i] for o in outputs[1:]]
        if "observed" in res and all("observed" in r for r in others):
            obs = res["observed"]
            runs = [res["observed"]] + [r["observed"] for r in others]
            for key in ("wire", "parent"):
                lists = [r.get(key, []) for r in runs]
                obs[key] = _multiset_and(lists)
                if any(_frames(x, key != "wire") != _frames(lists[0], key != "wire") for x in lists[1:]):
                    notes.append(f"step {i + 1}: {key} differs between runs: {[len(x) for x in lists]} frames")
            for name in obs.get("children", {}):
                lists = [r.get("children", {}).get(name, []) for r in runs]
                obs["children"][name] = _multiset_and(lists)
                if any(_frames(x, True) != _frames(lists[0], True) for x in lists[1:]):
                    notes.append(f"step {i + 1}: child {name} differs between runs "
                                 f"({[len(x) for x in lists]} frames; kept the {len(obs['children'][name])} common)")
        else:
            a = expectation(res, ())
            for r in others:
                if expectation(r, ()) != a:
                    notes.append(f"step {i + 1}: result differs between runs; kept the first")
                    break
    return merged, notes


def backend_lacks(outputs: list[dict], key: str) -> bool:
    for out in outputs:
        for res in out["results"]:
            state = res.get("state")
            if not isinstance(state, dict):
                continue
            links = [state.get("parent")] + list((state.get("children") or {}).values())
            if any(isinstance(link, dict) and key in link for link in links):
                return False
    return True


# -- one file -----------------------------------------------------------------------------------------

def process(path: Path, backend_name: str, runs: int, dry_run: bool, overwrite: bool, drop_stats: bool) -> bool:
    """Record or compare one file; True when all is well."""
    try:
        sc = load_scenario(path)
    except ScenarioError as e:
        print(f"{path}: cannot be read: {e}")
        return False
    reason = skip_reason(sc, backend_name)
    if reason:
        print(f"{path}: skipped: {reason}")
        return True
    has_expect = any("expect" in s for s in sc["steps"])
    if not dry_run and has_expect and not overwrite:
        print(f"{path}: has expectations already; left alone (use --overwrite to replace them, "
              "--dry-run to compare)")
        return True
    backend = get_backend(backend_name)
    if hasattr(backend, "trace"):
        backend.trace = False
    try:
        outputs = [backend.run(copy.deepcopy(sc)) for _ in range(runs)]
    except Exception as e:  # a backend crash is reported per file; the others still run
        print(f"{path}: the {backend_name} backend failed: {type(e).__name__}: {e}")
        return False
    merged, notes = merge_runs(outputs)
    for n in notes:
        print(f"{path}: warning: {n}")

    if dry_run:
        if not has_expect:
            print(f"{path}: no expectations to compare")
            return True
        checked = copy.deepcopy(sc)
        lacking = [k for k in BACKEND_ONLY_KEYS if backend_lacks(outputs, k)]
        for st in checked["steps"]:
            if "state" in st.get("expect", {}):
                _strip(st["expect"]["state"], lacking)
        diffs = check_expectations(checked, merged)
        if diffs:
            print(f"{path}: {len(diffs)} step(s) differ from the expectations on {backend_name} "
                  f"({merged.get('kernel', '?')}):")
            for d in diffs:
                print("  " + d.replace("\n", "\n  "))
            return False
        print(f"{path}: {backend_name} agrees with the expectations")
        return True

    raw = json.loads(path.read_text())
    drop = BACKEND_ONLY_KEYS if drop_stats else ()
    for st, res in zip(raw["steps"], merged["results"], strict=False):
        st.pop("expect", None)
        st["expect"] = expectation(res, drop)
    changed = scenario_json.write(path, raw)
    print(f"{path}: recorded from {backend_name} ({merged.get('kernel', '?')})" + ("" if changed else ", unchanged"))
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument("--backend", default="kernel", choices=["kernel", "sim", "userspace"])
    p.add_argument("--runs", type=int, default=None,
                   help="runs per file; observations are intersected (default: 2 on the kernel, else 1)")
    p.add_argument("--dry-run", action="store_true",
                   help="write nothing: compare the backend with the expectations already in the files")
    p.add_argument("--overwrite", action="store_true", help="replace expectations a file already has")
    p.add_argument("--drop-stats", action="store_true",
                   help="leave stats64 (counters) out of recorded show states, for a backend that lacks them")
    args = p.parse_args(argv)
    runs = args.runs or (2 if args.backend == "kernel" else 1)
    ok = True
    for path in args.files:
        ok &= process(path, args.backend, runs, args.dry_run, args.overwrite, args.drop_stats)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
