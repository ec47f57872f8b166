"""Diffing two backends' outputs for the same scenario, step by step.

What is compared: control results (ok and errno; messages are free text), inject
observations as multisets, and `show` states key for key. Traces are explanations,
not observations, and are shown next to a difference instead of being compared.
"""

from __future__ import annotations

import json


def comparable(result: dict) -> dict:
    """The part of one step's result that every backend must agree on."""
    out = {"ok": result.get("ok")}
    if not result.get("ok"):
        out["errno"] = result.get("errno")
        return out
    if "observed" in result:
        obs = result["observed"]
        out["observed"] = {
            "wire": sorted(f["hex"] for f in obs.get("wire", [])),
            "parent": sorted(f"{f['pkttype']} {f['hex']}" for f in obs.get("parent", [])),
            "children": {n: sorted(f"{f['pkttype']} {f['hex']}" for f in v)
                         for n, v in sorted(obs.get("children", {}).items())},
        }
    if "state" in result:
        out["state"] = json.loads(json.dumps(result["state"]))
        links = [out["state"].get("parent")] + list(out["state"].get("children", {}).values())
        for link in links:
            # Without carrier the kernel reports the operstate computed at the device's last
            # linkwatch event, in the namespace it was in then: DOWN or LOWERLAYERDOWN for
            # the same device state. NO-CARRIER (in flags) is still compared.
            if isinstance(link, dict) and "NO-CARRIER" in link.get("flags", ()):
                link["operstate"] = "DOWN|LOWERLAYERDOWN"
    return out


def diff_results(steps: list[dict], left: dict, right: dict, ignore: set[str] = frozenset()) -> list[str]:
    """Human-readable differences between two outputs ([] when they agree)."""
    lname, rname = left.get("backend", "left"), right.get("backend", "right")
    diffs = []
    lres, rres = left["results"], right["results"]
    tainted: set[str] = set()  # children whose counters a salted decision may have moved
    if len(lres) != len(rres):
        diffs.append(f"{lname} gave {len(lres)} results, {rname} {len(rres)}")
    for i, (step, a, b) in enumerate(zip(steps, lres, rres), 1):
        ca, cb = comparable(a), comparable(b)
        _drop_ignored(ca, ignore)
        _drop_ignored(cb, ignore)
        # a child whose receipt hinged on its randomly salted multicast filter (a group it
        # did not join) may legitimately differ between runs and backends: not compared
        salted = set(a.get("salted", [])) | set(b.get("salted", []))
        tainted |= salted
        for name in salted:
            for c in (ca, cb):
                c.get("observed", {}).get("children", {}).pop(name, None)
        for c in (ca, cb):
            for name, link in (c.get("state") or {}).get("children", {}).items():
                if name in tainted and isinstance(link, dict):
                    link.pop("stats64", None)
        if ca == cb:
            continue
        lines = [f"step {i} {json.dumps({k: v for k, v in step.items() if k != 'expect'})}"]
        lines += ["  " + d for d in _walk(ca, cb, "", lname, rname)]
        trace = a.get("trace") or b.get("trace")
        if trace:
            lines.append("  sim trace:")
            lines += [f"    {t['device']}: received {t['received']}: " + " | ".join(t["rules"]) for t in trace]
        diffs.append("\n".join(lines))
    return diffs


def _drop_ignored(c: dict, ignore: set[str]) -> None:
    state = c.get("state")
    if not state or not ignore:
        return
    for link in [state.get("parent")] + list(state.get("children", {}).values()):
        if isinstance(link, dict):
            for key in ignore:
                link.pop(key, None)


def _walk(a, b, path: str, lname: str, rname: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            p = f"{path}.{k}" if path else str(k)
            if k not in a:
                out.append(f"{p}: only {rname} has it: {json.dumps(b[k])}")
            elif k not in b:
                out.append(f"{p}: only {lname} has it: {json.dumps(a[k])}")
            else:
                out += _walk(a[k], b[k], p, lname, rname)
        return out
    if isinstance(a, list) and isinstance(b, list) and all(isinstance(x, str) for x in a + b):
        if a == b:
            return []
        only_a = _minus(a, b)
        only_b = _minus(b, a)
        out = []
        if only_a:
            out.append(f"{path}: only {lname}: {only_a}")
        if only_b:
            out.append(f"{path}: only {rname}: {only_b}")
        return out
    if a != b:
        return [f"{path}: {lname} {json.dumps(a)} != {rname} {json.dumps(b)}"]
    return []


def _minus(a: list, b: list) -> list:
    rest = list(b)
    out = []
    for x in a:
        if x in rest:
            rest.remove(x)
        else:
            out.append(x)
    return out


def check_expectations(scenario: dict, output: dict) -> list[str]:
    """Compare an output with the ``expect`` keys a scenario carries (partial: only the
    keys an expectation gives are checked)."""
    diffs = []
    for i, (step, res) in enumerate(zip(scenario["steps"], output["results"]), 1):
        if "expect" not in step:
            continue
        want = comparable({"ok": True, **step["expect"]})
        got = comparable(res)
        if "observed" in want:
            given = step["expect"].get("observed", {})
            want_obs = want["observed"] = {k: v for k, v in want["observed"].items() if k in given}
            got_obs = got.get("observed", {})
            got["observed"] = {k: got_obs.get(k) for k in want_obs}
            if "children" in want_obs and isinstance(got["observed"].get("children"), dict):
                got["observed"]["children"] = {n: got_obs["children"].get(n, [])
                                               for n in want_obs["children"]}
        if "state" in want:
            got["state"] = _project(got.get("state"), want["state"])
        if want != got:
            lines = [f"step {i} {json.dumps({k: v for k, v in step.items() if k != 'expect'})}"]
            lines += ["  " + d for d in _walk(want, got, "", "expected", output.get("backend", "got"))]
            diffs.append("\n".join(lines))
    return diffs


def _project(got, want):
    """Keep only the keys of ``got`` that ``want`` names, recursively."""
    if isinstance(want, dict) and isinstance(got, dict):
        return {k: _project(got.get(k), v) for k, v in want.items()}
    return got
