"""`pymacvlan doctor`: the pitfalls macvlan users keep hitting, checked on this machine.

Three parts, so every check is testable without special hardware:

* :mod:`.gather` reads :class:`Facts`, read-only (links, addresses, routes, sysctls, who
  listens on UDP 67, bridge FDBs, multicast lists, drivers, Wi-Fi-ness, DMI, 802.1Q).
* :mod:`.checks` holds one function per pitfall, registered with what it looks at, what it
  cannot see and the test that proves its advice (:mod:`.registry`); each returns
  :class:`Finding` s: what was seen, what to do in words, the exact commands to run.
* :func:`diagnose` runs the registry over the facts; :func:`render` prints the findings.

The commands are proven by effect: tests/doctor/test_live.py builds each pitfall in pmv
namespaces, shows the harm, runs the printed commands literally in that namespace and shows
the harm gone and doctor silent (checks that cannot be built here say why, see
``Check.not_live``). Sources: ../shared/docs/landscape.md section 2, the seed articles and
issue 24.
"""

from __future__ import annotations

from ..words import plural
from . import checks as _checks  # noqa: F401  (registers every check)
from .checks import VLAN_NAME
from .gather import _driver_and_wireless, _read, gather
from .model import CHILD_KINDS, SEVERITIES, Facts, Finding, Iface, Listener, Route
from .registry import CHECKS, Check, by_code

__all__ = ["CHECKS", "CHILD_KINDS", "SEVERITIES", "Check", "Facts", "Finding", "Iface", "Listener", "Route",
           "_driver_and_wireless", "_read", "by_code", "check_parent", "diagnose", "exit_status", "gather", "render"]


def check_parent(f: Facts, p: Iface) -> list[Finding]:
    """Every parent-scoped check for ``p`` (the CNI preflight judges a master with these)."""
    out: list[Finding] = []
    for c in CHECKS:
        if c.scope == "parent":
            out += c.run(f, p)
    return out


def diagnose(f: Facts, parent: str | None = None) -> list[Finding]:
    """Every finding for ``parent`` (or for every parent of a child here, or every link that
    could be one) and for the namespace. A ``parent`` named IF.VID that does not exist while
    IF does is judged as a VLAN still to make (802.1Q); any other unknown name: LookupError."""
    out: list[Finding] = []
    if parent is not None:
        p = f.get(parent)
        if p is None:
            m = VLAN_NAME.match(parent)
            if m is None or f.get(m["base"]) is None:
                raise LookupError(parent)
            f.asked = parent
            out += by_code("no-8021q").run(f, Iface(parent))
            parents: list[Iface] = []
        else:
            parents = [p]
    else:
        idx = {c.link for c in f.ifaces if c.kind in CHILD_KINDS and c.link_netns is None}
        idx |= {c.link for c in f.remote_children}
        parents = [i for i in f.ifaces if i.ifindex in idx]
        if not parents:
            parents = [i for i in f.ifaces if i.up and i.name != "lo" and not i.master
                       and i.kind in ("", "veth", "bond", "bridge", "vlan")]  # a port is no parent
    for p in parents:
        out += check_parent(f, p)
    for c in CHECKS:
        if c.scope == "namespace":
            out += c.run(f)
    order = {s: n for n, s in enumerate(reversed(SEVERITIES))}
    return sorted(out, key=lambda x: order[x.severity])


def exit_status(findings: list[Finding]) -> int:
    return 1 if any(x.severity != "info" for x in findings) else 0


def render(findings: list[Finding], checked: list[str], netns: str | None = None) -> str:
    """Text: per finding what was seen, what to do, the commands (``run:``, one per line, to
    type in the examined namespace exactly as printed) and what the check cannot see."""
    if not findings:
        return f"checked {', '.join(checked) or 'nothing'}: no pitfalls found"
    lines = [f"checked {', '.join(checked)}:"]
    for x in findings:
        lines += [f"[{x.severity}] {x.code} ({x.subject})", f"  saw: {x.saw}", f"  do:  {x.fix}"]
        lines += [f"  run: {c}" for c in x.commands]
        if x.cannot_see:
            lines.append(f"  cannot see: {x.cannot_see}")
    n = {s: sum(1 for x in findings if x.severity == s) for s in SEVERITIES}
    lines.append(f"{plural(n['error'], 'error')}, {plural(n['warning'], 'warning')}, {plural(n['info'], 'note')}")
    if any(x.commands for x in findings):
        where = f"in namespace {netns} (ip netns exec {netns} sh -c 'LINE')" if netns else "in this namespace"
        lines.append(f"run: lines are commands to type as printed, {where}, as root")
    return "\n".join(lines)


def table_markdown() -> str:
    """The registry as the Markdown table of docs/guides/doctor.md (a test keeps them equal)."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")
    rows = ["| check | looks at | cannot see | proven by |", "|---|---|---|---|"]
    for c in CHECKS:
        codes = "<br>".join(f"`{x}`" for x in (c.code, *c.also))
        proof = f"live: `{c.test.split('::')[1]}`" if c.not_live is None else \
            f"injected facts (`{c.test.split('::')[1]}`): {c.not_live}"
        rows.append(f"| {codes} | {cell(c.looks_at)} | {cell(c.cannot_see)} | {cell(proof)} |")
    return "\n".join(rows)


def render_checks() -> str:
    """The registry as text (`doctor --checks`)."""
    lines = []
    for c in CHECKS:
        codes = ", ".join((c.code, *c.also))
        lines += [f"{codes} ({c.scope})", f"  looks at:   {c.looks_at}", f"  cannot see: {c.cannot_see}",
                  f"  proven:     {c.proof} ({c.test})" + (f": {c.not_live}" if c.not_live else "")]
    return "\n".join(lines)
