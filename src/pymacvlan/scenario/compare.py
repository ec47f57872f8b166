"""Diffing two backends' outputs for the same scenario, step by step.

What is compared: control results (ok and errno; messages are free text), inject
observations as multisets, and `show` states key for key. Traces are explanations,
not observations, and are shown next to a difference instead of being compared.

Tolerated, and nothing else:

- children whose receipt hinged on the kernel's salted multicast filter (``salted``);
- operstate DOWN vs LOWERLAYERDOWN when NO-CARRIER (see :func:`comparable`);
- the inherent differences a backend names in a result's ``"inherent"`` (a list of names,
  or names → devices), each tolerated exactly as below. Only the userspace backend names
  any; docs/userspace-differences.md explains why each is inherent.

  ``pkttype_by_device`` [children]: their receipts carry the pkt_type their own device gave
  them (eth_type_trans against its MAC), not the one macvlan set (HOST for any unicast to a
  passthru child, the parent's for source-mode copies): HOST and OTHERHOST are one value.
  ``parent_memberships`` [@parent]: the parent's promiscuity and allmulti are compared as
  on/off, not as reference counts.
  ``macvtap_reader`` [children]: their ``stats64.rx.dropped`` is not compared (no stack of
  their own drops protocols without a handler).
  ``macvtap_write``: a frame a macvtap's reader wrote; when the other backend's netdev
  refused it (ENETDOWN, EMSGSIZE) the step is not compared and children's counters are not
  compared from then on (the frame went on in one backend only).
  ``parent_unshielded``: ``observed.parent`` is not compared (no eBPF shield).
  ``parent_defrag``: ``observed.parent`` is not compared (the parent's stack got the IPv4
  multicast fragment as it came, not the datagram macvlan reassembled).
  ``tap_no_carrier`` [children]: they sent while their TAP had no carrier; their
  ``stats64.tx.dropped`` is not compared from then on.
  ``veth_rx_mtu`` [children]: veth children the step's frame is too long for (non-GSO, over
  their MTU + 18); what they received in this step is not compared (veth drops such a frame
  the Python path writes; macvlan delivers it).
"""

from __future__ import annotations

import json
from collections.abc import Set
from typing import Any


def comparable(result: dict) -> dict:
    """The part of one step's result that every backend must agree on."""
    out: dict[str, Any] = {"ok": result.get("ok")}
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


#: the netdev answers a macvtap's reader does not get (see ``macvtap_write``)
_NETDEV_REFUSALS = ("ENETDOWN", "EMSGSIZE")
_ALL = "*"


def inherent(result: dict) -> dict[str, set[str]]:
    """The named inherent differences of one result, each with the devices it concerns."""
    raw = result.get("inherent") or {}
    if isinstance(raw, list):
        return {name: {_ALL} for name in raw}
    return {name: set(devices) for name, devices in raw.items()}


def _unicast_pkttype(entry: str) -> str:
    kind, rest = entry.split(" ", 1)
    return f"HOST|OTHERHOST {rest}" if kind in ("HOST", "OTHERHOST") else entry


def tolerate(ca: dict, cb: dict, named: dict[str, set[str]]) -> bool:
    """Apply the named differences to two comparable results in place; False when the
    step is not to be compared at all (see the module docstring)."""
    if "macvtap_write" in named:
        refused = [c for c in (ca, cb) if not c.get("ok") and c.get("errno") in _NETDEV_REFUSALS]
        if len(refused) == 1 and (cb if refused[0] is ca else ca).get("ok"):
            return False
    for c in (ca, cb):
        obs = c.get("observed")
        if obs is not None:
            if "parent_unshielded" in named or "parent_defrag" in named:
                obs.pop("parent", None)
            for cname in list(obs.get("children", {})):
                if cname in named.get("veth_rx_mtu", ()):
                    obs["children"].pop(cname)
            for name in named.get("pkttype_by_device", ()):
                for cname, frames in obs.get("children", {}).items():
                    if name in (_ALL, cname):
                        obs["children"][cname] = sorted(map(_unicast_pkttype, frames))
        state = c.get("state")
        if state is not None:
            parent = state.get("parent")
            if "parent_memberships" in named and isinstance(parent, dict):
                for key in ("promiscuity", "allmulti"):
                    if isinstance(parent.get(key), int):
                        parent[key] = parent[key] > 0
            for name in named.get("macvtap_reader", ()):
                for cname, link in (state.get("children") or {}).items():
                    if name in (_ALL, cname) and isinstance(link, dict):
                        link.get("stats64", {}).get("rx", {}).pop("dropped", None)
    return True


def diff_results(steps: list[dict], left: dict, right: dict, ignore: Set[str] = frozenset()) -> list[str]:
    """Human-readable differences between two outputs ([] when they agree)."""
    lname, rname = left.get("backend", "left"), right.get("backend", "right")
    diffs = []
    lres, rres = left["results"], right["results"]
    tainted: set[str] = set()  # children whose counters a salted decision may have moved
    all_tainted = False  # every child's counters (a frame went on in one backend only)
    tx_tainted: set[str] = set()  # children whose tx_dropped a carrier-less TAP kept from counting
    if len(lres) != len(rres):
        diffs.append(f"{lname} gave {len(lres)} results, {rname} {len(rres)}")
    for i, (step, a, b) in enumerate(zip(steps, lres, rres, strict=False), 1):
        ca, cb = comparable(a), comparable(b)
        _drop_ignored(ca, ignore)
        _drop_ignored(cb, ignore)
        named = inherent(a)
        for name, devices in inherent(b).items():
            named.setdefault(name, set()).update(devices)
        if not tolerate(ca, cb, named):
            all_tainted = True
            continue
        tx_tainted |= named.get("tap_no_carrier", set())
        # a child whose receipt hinged on its randomly salted multicast filter (a group it
        # did not join) may legitimately differ between runs and backends: not compared
        salted = set(a.get("salted", [])) | set(b.get("salted", []))
        tainted |= salted
        for name in salted:
            for c in (ca, cb):
                c.get("observed", {}).get("children", {}).pop(name, None)
        for c in (ca, cb):
            for name, link in (c.get("state") or {}).get("children", {}).items():
                if (all_tainted or name in tainted) and isinstance(link, dict):
                    link.pop("stats64", None)
                elif name in tx_tainted and isinstance(link, dict):
                    link.get("stats64", {}).get("tx", {}).pop("dropped", None)
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


def _drop_ignored(c: dict, ignore: Set[str]) -> None:
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
    for i, (step, res) in enumerate(zip(scenario["steps"], output["results"], strict=False), 1):
        if "expect" not in step:
            continue
        want = comparable({"ok": True, **step["expect"]})
        got = comparable(res)
        if not tolerate(want, got, inherent(res)):
            continue
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
