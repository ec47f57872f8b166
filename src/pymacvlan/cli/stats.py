"""`pymacvlan stats`: per-child counters, and the drops by reason nothing else counts.

* ``userspace``: from the daemon: each child's stats64 (and its macvtap endpoint's
  counters), the datapath's own counters (runts, bad vnet headers, parent re-attached,
  child namespace gone ...), the engine's drops by reason and the parent socket's.
* ``sim``: the links of `pymacvlan link --backend sim`, or a scenario file replayed
  (``--scenario``): stats64 and the engine's drops by reason.
* ``kernel``: each macvlan/macvtap child's stats64 over rtnetlink (the kernel keeps no
  reasons; rx_dropped/tx_dropped are all it says).
"""

from __future__ import annotations

import json
import sys

from ..links import BACKENDS, DEFAULT_BACKEND
from ..model import KernelError
from ._report import error_line

ORDER = 33


#: the columns: (title, direction, counter); a gap of three spaces between rx and tx
COLUMNS = (("rx pkts", "rx", "packets"), ("rx bytes", "rx", "bytes"), ("dropped", "rx", "dropped"),
           ("errors", "rx", "errors"), ("mcast", "rx", "multicast"), ("tx pkts", "tx", "packets"),
           ("tx bytes", "tx", "bytes"), ("dropped", "tx", "dropped"))


def _table(rows: list[tuple[str, dict]]) -> list[str]:
    """The header and one line per child, each column as wide as its widest cell (issue 25: fixed
    widths let a 12-digit byte count push every later column out of line)."""
    cells = [[name] + [str((s.get(way) or {}).get(key, 0)) for _t, way, key in COLUMNS] for name, s in rows]
    head = ["child"] + [t for t, _w, _k in COLUMNS]
    widths = [max(len(r[i]) for r in [head, *cells]) for i in range(len(head))]
    widths[0] = max(widths[0], 20)

    def line(r: list[str]) -> str:
        rx = " ".join(f"{c:>{w}}" for c, w in zip(r[1:6], widths[1:6], strict=True))
        tx = " ".join(f"{c:>{w}}" for c, w in zip(r[6:], widths[6:], strict=True))
        return f"  {r[0]:<{widths[0]}} {rx}   {tx}"

    return [line(head)] + [line(r) for r in cells]


def _reasons(title: str, counts: dict | None) -> list[str]:
    counts = {k: v for k, v in (counts or {}).items() if v}
    if not counts:
        return [f"  {title}: none"]
    return [f"  {title}:"] + [f"    {k:<28} {v}" for k, v in sorted(counts.items())]


def _path_line(path: dict) -> str:
    """Which path carries this parent's frames (the userspace datapath's ``stats()["path"]``)."""
    if path.get("active") == "fast":
        return (f"  path: eBPF fast path for known unicast, Python for the rest ({path.get('children')} children, "
                f"maps generation {path.get('generation')}, {len(path.get('macs') or {})} MACs)")
    return f"  path: Python ({path.get('children')} children; fast path {path.get('reason') or 'off'})"


def format_stats(report: dict) -> str:
    """Text for the dict :func:`collect` returns."""
    lines = []
    for pname, p in report["parents"].items():
        lines.append(f"{pname} ({report['backend']})")
        path = p.get("path")
        if path:
            lines.append(_path_line(path))
        children = list(p["children"].items())
        table = _table([(c.get("ifname", cname) + (f" ({c['netns']})" if c.get("netns") else ""), c)
                        for cname, c in children])
        lines.append(table[0])
        for (_cname, c), row in zip(children, table[1:], strict=True):
            lines.append(row)
            ep = c.get("endpoint")
            if ep:
                lines.append(
                    f"    endpoint {ep.get('kind')}: {'connected' if ep.get('connected') else 'no client'}, "
                    f"{ep.get('queued', 0)} queued"
                    + "".join(f", {k} {v}" for k, v in sorted(ep.get("counters", {}).items()) if v)
                )
        if "engine_drops" in p:
            lines += _reasons("drops by reason (engine)", p["engine_drops"])
        if "datapath" in p:
            lines += _reasons("datapath", p["datapath"])
        par = p.get("parent_socket")
        if par:
            lines += _reasons("parent socket drops", par.get("drops"))
        lines.append("")
    if not report["parents"]:
        lines.append(f"no children on the {report['backend']} backend")
    return "\n".join(lines).rstrip()


def collect(args) -> dict:
    """{"backend", "parents": {parent: {"children": {name: stats64...}, "engine_drops"...}}}: the driver's."""
    from ..links import DriverConfig, open_driver

    cfg = DriverConfig(args.backend, args.netns, args.state, args.socket, getattr(args, "scenario", None))
    return open_driver(cfg).stats(args.name)


def _stats(args) -> int:
    try:
        report = collect(args)
    except KernelError as e:
        print(error_line("stats", e), file=sys.stderr)
        return 2 if e.errno_name == "EINVAL" else 1
    except PermissionError as e:
        print(error_line("stats", e), file=sys.stderr)
        return 1
    if args.json:
        json.dump(report, sys.stdout, indent=2 if args.pretty else None)
        print()
    else:
        print(format_stats(report))
    return 0


def register(sub) -> None:
    s = sub.add_parser("stats", help="per-child counters and drops by reason",
                       description="Per-child counters (stats64) and every drop counted by reason: the "
                       "engine's, the userspace datapath's, the parent socket's.")
    s.add_argument("name", nargs="?", help="only this child")
    s.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND,
                   help="sim (default), userspace or kernel")
    s.add_argument("-n", "--netns", help="the namespace the children are in")
    s.add_argument("--socket", help="the daemon's control socket (userspace)")
    s.add_argument("--state", help="the sim link state file (sim)")
    s.add_argument("--scenario", help="replay this scenario on the sim and report its counters (sim)")
    s.add_argument("-j", "--json", action="store_true", help="JSON output")
    s.add_argument("-p", "--pretty", action="store_true", help="indented JSON")
    s.set_defaults(func=_stats)
