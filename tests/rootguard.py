"""The root namespace's network state, read-only, to prove the suite never changed it.

:func:`snapshot` reads (``ip -j``, ``tc -j``, /proc/sys only: nothing is ever written) the
links, addresses, routes of every table (IPv4 and IPv6), qdiscs, the tc filters on every hook
of every device, and the ``net.ipv4.conf.*`` / ``net.ipv6.conf.*`` sysctls. Fields the kernel
changes on its own (counters, lifetimes, expiry timers, operstate) are left out; everything
else must be equal after the run. :func:`diff` says what changed, one line per difference.

Used by tests/conftest.py around the whole session; the same functions read any namespace
(``netns``), which is how the guard's own test proves it notices changes.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

#: set by the kernel as time passes or traffic flows: never compared
VOLATILE = {"stats", "stats64", "valid_life_time", "preferred_life_time", "expires", "cacheinfo",
            "operstate", "linkmode", "used", "tstamp", "lastuse", "age"}


class GuardUnavailable(RuntimeError):
    """A read the guard needs failed: it cannot vouch for anything."""


def _run(argv: list[str], netns: str | None) -> str:
    if netns:
        argv = [argv[0], "-n", netns, *argv[1:]]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as e:
        raise GuardUnavailable(f"`{' '.join(argv)}` could not run: {e}") from e
    if r.returncode != 0:
        raise GuardUnavailable(f"`{' '.join(argv)}` failed: {r.stderr.strip()}")
    return r.stdout


def _json(argv: list[str], netns: str | None) -> Any:
    out = _run(argv, netns).strip()
    return json.loads(out) if out else []


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in sorted(obj.items()) if k not in VOLATILE}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def _key(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)


def _sysctls(netns: str | None) -> dict[str, str]:
    """net.ipv4.conf.* and net.ipv6.conf.*: read in the namespace (``ip netns exec`` when given)."""
    if netns:
        script = ("import os,json\nout={}\nfor fam in ('ipv4','ipv6'):\n d=f'/proc/sys/net/{fam}/conf'\n"
                  " for dev in (os.listdir(d) if os.path.isdir(d) else []):\n  for k in os.listdir(f'{d}/{dev}'):\n"
                  "   try: out[f'{fam}.{dev}.{k}']=open(f'{d}/{dev}/{k}').read().strip()\n"
                  "   except OSError: pass\nprint(json.dumps(out))")
        import sys

        return json.loads(_run(["ip", "netns", "exec", netns, sys.executable, "-c", script], None))
    out: dict[str, str] = {}
    for fam in ("ipv4", "ipv6"):
        d = f"/proc/sys/net/{fam}/conf"
        for dev in os.listdir(d) if os.path.isdir(d) else []:
            for k in os.listdir(f"{d}/{dev}"):
                try:
                    with open(f"{d}/{dev}/{k}") as f:
                        out[f"{fam}.{dev}.{k}"] = f.read().strip()
                except OSError:  # write-only (stable_secret unset)
                    pass
    return out


def snapshot(netns: str | None = None) -> dict[str, Any]:
    """Everything compared, keyed so :func:`diff` can name what changed."""
    links = _clean(_json(["ip", "-j", "-d", "link", "show"], netns))
    snap: dict[str, Any] = {}
    devs = []
    for ln in links:
        name = ln.get("ifname", "?")
        devs.append(name)
        snap[f"link {name}"] = ln
    for a in _clean(_json(["ip", "-j", "addr", "show"], netns)):
        for ai in a.get("addr_info", []):
            snap[f"address {ai.get('local')}/{ai.get('prefixlen')} on {a.get('ifname')}"] = ai
    for fam in ("-4", "-6"):
        for r in _clean(_json(["ip", "-j", fam, "route", "show", "table", "all"], netns)):
            snap[f"route {fam} {_key(r)}"] = r
        for r in _clean(_json(["ip", "-j", fam, "rule", "show"], netns)):
            snap[f"rule {fam} {_key(r)}"] = r
    for q in _clean(_json(["tc", "-j", "qdisc", "show"], netns)):
        snap[f"qdisc {q.get('kind')} {q.get('handle')} on {q.get('dev')}"] = q
    for dev in devs:
        for hook in (("ingress",), ("egress",), ()):
            try:
                filters = _clean(_json(["tc", "-j", "filter", "show", "dev", dev, *hook], netns))
            except GuardUnavailable:  # no such hook (no clsact/ingress qdisc): nothing to read
                continue
            for f in filters:
                snap[f"tc filter {hook[0] if hook else 'root'} on {dev}: {_key(f)}"] = f
    for k, v in _sysctls(netns).items():
        snap[f"sysctl net.{k}"] = v
    return snap


def diff(before: dict[str, Any], after: dict[str, Any], ignore_prefix: str | None = None) -> list[str]:
    """One line per difference; ``ignore_prefix``: names of others' devices (a shared machine)."""
    out = []
    for k in sorted(set(before) | set(after)):
        if ignore_prefix and ignore_prefix in k:
            continue
        if k not in after:
            out.append(f"gone: {k}")
        elif k not in before:
            out.append(f"new: {k}")
        elif before[k] != after[k]:
            out.append(f"changed: {k}: {_key(before[k])[:200]} -> {_key(after[k])[:200]}")
    return out
