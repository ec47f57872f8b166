"""`pymacvlan show --graph`: parents, children, modes and who reaches whom, as a graphviz picture.

The topology comes from a scenario file (its control steps), a TOML config (``pymacvlan
apply``'s) or a backend's current links (``ip -j -d link show`` dicts). Who reaches whom is
not looked up in a table: the engine is built with exactly these children (modes, MACs,
source lists, up or down) and every child, the parent's own stack and a station on the wire
send one unicast to each other endpoint and one broadcast (:func:`reach_matrix`).

The DOT text is written here (no graphviz Python package); ``dot`` renders it.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .model.constants import Mode

STATION_MAC = "02:00:00:00:ee:ee"
PARENT = "@parent"
WIRE = "@wire"


@dataclass
class Child:
    name: str
    mode: str = "vepa"
    kind: str = "macvlan"
    mac: str | None = None
    up: bool = True
    macaddr: list[str] = field(default_factory=list)  # source mode list
    flags: list[str] = field(default_factory=list)  # nopromisc, nodst


@dataclass
class Parent:
    name: str
    mac: str | None = None
    wire: str = "plain"  # or hairpin
    children: list[Child] = field(default_factory=list)


# -- reachability, computed --------------------------------------------------------------------------
def reach_matrix(p: Parent) -> dict[tuple[str, str], tuple[bool, bool]]:
    """(sender, receiver) → (unicast arrives, broadcast arrives) for every child, the parent's
    stack (``@parent``) and a wire station (``@wire``), by running the engine."""
    from .backends.sim import Simulation
    from .scenario import load_scenario

    pmac = p.mac or "02:00:00:00:00:01"
    steps: list[dict] = []
    macs = {PARENT: pmac, WIRE: STATION_MAC}
    for i, c in enumerate(p.children):
        add: dict[str, Any] = {"do": "add", "name": c.name, "type": c.kind, "mode": c.mode}
        if c.mode != "passthru":
            add["mac"] = c.mac or f"02:00:00:00:{(i + 16) >> 8:02x}:{(i + 16) & 0xFF:02x}"
        if c.mode == "source":
            add["macaddr"] = c.macaddr or [STATION_MAC]
        if c.flags:
            add["flags"] = list(c.flags)
        steps.append(add)
    steps += [{"do": "set", "name": c.name, "up": True} for c in p.children if c.up]
    sc = load_scenario({"parent": {"mac": pmac}, "wire": p.wire, "steps": steps})
    sim = Simulation(sc)
    results = [sim.step(s) for s in sc["steps"]]
    bad = [(st, res) for st, res in zip(sc["steps"], results, strict=False) if not res.get("ok")]
    if bad:
        st, res = bad[0]
        raise ValueError(f"this topology cannot exist on {p.name}: {st['do']} {st['name']}: {res.get('errno')} "
                         f"{res.get('message', '')}")
    for c in p.children:
        macs[c.name] = sim.engine.children[c.name].mac.hex(":")
    ends = [c.name for c in p.children] + [PARENT, WIRE]
    at = {PARENT: "parent", WIRE: "wire"}
    out: dict[tuple[str, str], tuple[bool, bool]] = {}
    for s in ends:
        src = macs[s].replace(":", "")
        where = at.get(s, f"child:{s}")
        bc = sim.step({"do": "inject", "at": where, "frame": "ffffffffffff" + src + "88b502"})
        for r in ends:
            if r == s or {r, s} == {PARENT, WIRE}:
                continue
            uc = sim.step({"do": "inject", "at": where, "frame": macs[r].replace(":", "") + src + "88b501"})
            out[(s, r)] = (_got(uc, r), _got(bc, r))
    return out


def _got(res: dict, who: str) -> bool:
    if not res.get("ok"):
        return False
    obs = res["observed"]
    if who == PARENT:
        return bool(obs["parent"])
    if who == WIRE:
        return bool(obs["wire"])
    return bool(obs["children"].get(who))


# -- inputs ----------------------------------------------------------------------------------------
def from_scenario(sc: dict, name: str = "parent") -> list[Parent]:
    """The topology a scenario's control steps leave (its injected frames are not needed)."""
    from .scenario import load_scenario

    sc = load_scenario(sc)
    p = Parent(name, sc["parent"]["mac"], sc["wire"])
    kids: dict[str, Child] = {}
    for st in sc["steps"]:
        do, n = st["do"], st.get("name")
        if do == "add":
            kids[n] = Child(n, st.get("mode") or "vepa", st.get("type", "macvlan"), st.get("mac"), False,
                            list(st.get("macaddr", [])))
        elif do == "set" and n in kids:
            c = kids[n]
            c.up = st.get("up", c.up)
            c.mode = st.get("mode", c.mode)
            c.mac = st.get("mac", c.mac)
            m = st.get("macaddr")
            if isinstance(m, dict):
                if m["op"] == "flush":
                    c.macaddr = []
                elif m["op"] == "set":
                    c.macaddr = list(m["macs"])
                elif m["op"] == "add":
                    c.macaddr += [x for x in m["macs"] if x not in c.macaddr]
                elif m["op"] == "del":
                    c.macaddr = [x for x in c.macaddr if x not in m["macs"]]
        elif do == "del":
            if n == "@parent":
                kids.clear()
            kids.pop(n, None)
        elif do == "parent" and "mac" in st:
            p.mac = st["mac"]
    p.children = list(kids.values())
    return [p]


def from_links(links: list[dict]) -> list[Parent]:
    """From ``ip -j -d link show`` dicts (any backend's LinkDriver.show()): children under the
    parent their ``link`` names (its MAC when the parent is in the list too: a daemon's children
    come without their parents); a parent's ``wire`` cannot be seen from here (plain)."""
    by_name = {d["ifname"]: d for d in links}
    parents: dict[str, Parent] = {}
    for d in links:
        info = d.get("linkinfo", {})
        if info.get("info_kind") not in ("macvlan", "macvtap") or not d.get("link"):
            continue
        pname = d["link"]
        p = parents.setdefault(pname, Parent(pname, by_name.get(pname, {}).get("address")))
        data = info.get("info_data", {})
        p.children.append(Child(d["ifname"], str(data.get("mode", "vepa")), info["info_kind"], d.get("address"),
                                "UP" in d.get("flags", []), list(data.get("macaddr_data", []))))
    return list(parents.values())


def from_toml(data: dict) -> list[Parent]:
    """From a ``pymacvlan apply`` TOML document (examples/lab.toml: ``[parents.P.children.C]``
    with ``mode``, ``kind``, ``mac``, ``source``, ``flags``). Read generously: any table with a
    ``mode`` or ``type``/``kind`` = macvlan|macvtap is a child; its parent is its ``link`` or
    ``parent`` key or the table it sits in; a parent table may give ``mac`` and ``wire``."""
    parents: dict[str, Parent] = {}

    def parent(name: str) -> Parent:
        return parents.setdefault(name, Parent(name))

    def is_child(t: dict) -> bool:
        return isinstance(t, dict) and ("mode" in t or t.get("type", t.get("kind")) in ("macvlan", "macvtap"))

    def walk(obj, key: str | None, outer: str | None) -> None:
        if isinstance(obj, list):
            for x in obj:
                walk(x, key, outer)
            return
        if not isinstance(obj, dict):
            return
        if is_child(obj):
            pname = obj.get("link") or obj.get("parent") or outer
            if not pname:
                raise ValueError(f"child {obj.get('name') or key!r} names no parent (link = \"eth0\")")
            parent(pname).children.append(Child(
                obj.get("name") or key or "?", obj.get("mode", "vepa"), obj.get("type", obj.get("kind")) or "macvlan",
                obj.get("address") or obj.get("mac"), obj.get("up", True),
                list(obj.get("macaddr", obj.get("source", [])) or []), list(obj.get("flags", []) or [])))
            return
        here = outer
        if outer is None and key not in (None, "parent", "parents", "children", "child", "links", "link") \
                or "name" in obj:
            here = obj.get("name") or key
            if any(k in obj for k in ("mac", "wire", "address")) and here:
                p = parent(here)
                p.mac = obj.get("mac") or obj.get("address") or p.mac
                p.wire = obj.get("wire", p.wire)
        for k, v in obj.items():
            walk(v, k, here)

    walk(data, None, None)
    return [p for p in parents.values() if p.children]


def load_topology(path: str) -> list[Parent]:
    """A scenario (.json) or a config (.toml) file."""
    import tomllib

    f = Path(path)
    if f.suffix == ".toml":
        try:
            return from_toml(tomllib.loads(f.read_text()))
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path}: not valid TOML: {e}") from None
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}): TOML files are UTF-8") from None
        except RecursionError:
            raise ValueError(f"{path}: nested too deeply to be a setup file") from None
        except (AttributeError, TypeError, KeyError) as e:  # a table where a value was due, or the reverse
            raise ValueError(f"{path}: not a pymacvlan setup file ({type(e).__name__}: {str(e)[:80]})") from None
    from .scenario import load_scenario

    return from_scenario(load_scenario(path), "parent")


# -- DOT -----------------------------------------------------------------------------------------------
MODE_COLOR = {"private": "#e15759", "vepa": "#f28e2b", "bridge": "#4e79a7", "passthru": "#76b7b2",
              "source": "#b07aa1"}


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(parents: list[Parent]) -> str:
    """DOT text: per parent a cluster (its stack, the wire station, the children), black arrows
    for "unicast and broadcast arrive", dashed for "unicast only (ARP fails)", dotted for
    "broadcast only"; a two-headed arrow when both directions agree."""
    lines = ["digraph pymacvlan {", '  graph [rankdir=TB, fontname="Helvetica", fontsize=11, '
             'label="who reaches whom (computed by the pymacvlan engine): solid = unicast and broadcast, '
             'dashed = unicast only (ARP fails), dotted = broadcast only", labelloc=b];',
             '  node [fontname="Helvetica", fontsize=10];', '  edge [fontname="Helvetica", fontsize=9];']
    for pi, p in enumerate(parents):
        pid = f"p{pi}"
        matrix = reach_matrix(p)
        ids = {PARENT: f"{pid}_stack", WIRE: f"{pid}_wire"}
        lines.append(f"  subgraph cluster_{pid} {{")
        lines.append(f"    label={_q(f'parent: {p.name}' + (f' ({p.mac})' if p.mac else '') + f', {p.wire} wire')};")
        lines.append('    style=rounded; color="#888888";')
        wire_label = "LAN station\n(far end of the wire)" + ("\nhairpin switch" if p.wire == "hairpin" else "")
        lines.append(f'    {ids[WIRE]} [label={_q(wire_label)}, shape=box3d];')
        stack_label = _q(f"{p.name}\nthe parent's own stack")
        lines.append(f'    {ids[PARENT]} [label={stack_label}, shape=box, style=filled, fillcolor="#eeeeee"];')
        for ci, c in enumerate(p.children):
            cid = f"{pid}_c{ci}"
            ids[c.name] = cid
            label = _q(f"{c.name}\n{c.kind} {c.mode}" + ("" if c.up else "\n(down)") + (f"\n{c.mac}" if c.mac else ""))
            style = "filled" if c.up else "filled,dashed"
            lines.append(f'    {cid} [label={label}, shape=ellipse, '
                         f'style="{style}", fillcolor="{MODE_COLOR.get(c.mode, "#dddddd")}40", '
                         f'color="{MODE_COLOR.get(c.mode, "#999999")}"];')
            lines.append(f'    {ids[PARENT]} -> {cid} [arrowhead=none, color="#bbbbbb", style=bold, weight=4];')
        lines.append(f'    {ids[WIRE]} -> {ids[PARENT]} [arrowhead=none, color="#bbbbbb", style=bold, label="wire"];')
        done = set()
        for (s, r), (u, b) in sorted(matrix.items()):
            if (s, r) in done or not (u or b):
                continue
            back = matrix.get((r, s))
            both = back == (u, b)
            done.add((s, r))
            if both:
                done.add((r, s))
            style = "solid" if u and b else ("dashed" if u else "dotted")
            lab = ("U B" if u and b else "U" if u else "B")
            lines.append(f'    {ids[s]} -> {ids[r]} [style={style}, label="{lab}", constraint=false'
                         + (", dir=both" if both else "") + "];")
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_hash_dot(parents: list[Parent]) -> str:
    """DOT text of each port's two MAC hash tables, as macvlan.c keeps them: ``vlan_hash``
    (256 buckets, ``macvlan_eth_hash()`` of a child's MAC; ``macvlan_hash_lookup()`` walks one
    bucket comparing whole MACs, so children sharing a bucket cost a comparison, never a wrong
    delivery) and ``vlan_source_hash`` (the same hash over a source-mode child's ``macaddr``
    list). Only occupied buckets are drawn; a child whose MAC is not given (random at creation)
    is listed apart, as its bucket is decided only when it is made."""
    from .engine.hashes import mac_hash
    from .model.mac import parse_mac

    lines = ["digraph pymacvlan_hash {", '  graph [rankdir=LR, fontname="Helvetica", fontsize=11, labelloc=b, '
             'label="the port\'s hash tables (256 buckets, macvlan_eth_hash); only occupied buckets are drawn"];',
             '  node [fontname="Helvetica", fontsize=10];',
             '  edge [color="#888888", fontname="Helvetica", fontsize=9];']
    for pi, p in enumerate(parents):
        pid = f"p{pi}"
        lines.append(f"  subgraph cluster_{pid} {{")
        lines.append(f"    label={_q(f'parent: {p.name}')}; style=rounded; color=\"#888888\";")
        tables: dict[str, dict[int, list[tuple[str, str]]]] = {"vlan_hash": {}, "vlan_source_hash": {}}
        unknown: list[str] = []
        for ci, c in enumerate(p.children):
            cid = f"{pid}_c{ci}"
            label = _q(f"{c.name}\n{c.kind} {c.mode}" + (f"\n{c.mac}" if c.mac else ""))
            fill, edge = MODE_COLOR.get(c.mode, "#dddddd"), MODE_COLOR.get(c.mode, "#999999")
            lines.append(f'    {cid} [label={label}, shape=ellipse, style=filled, '
                         f'fillcolor="{fill}40", color="{edge}"];')
            if c.mac:  # every mode is hashed when it opens (passthru too: macvlan_open's hash_add)
                tables["vlan_hash"].setdefault(mac_hash(parse_mac(c.mac)), []).append((cid, c.mac))
            else:
                unknown.append(cid)
            if c.mode == "source":
                for m in c.macaddr:
                    tables["vlan_source_hash"].setdefault(mac_hash(parse_mac(m)), []).append((cid, m))
        for table, buckets in tables.items():
            if not buckets:
                continue
            tid = f"{pid}_{table}"
            cells = "|".join(f"<b{b}> bucket {b}" for b in sorted(buckets))
            record = _q(f"{table}|{cells}")
            lines.append(f"    {tid} [shape=record, label={record}];")
            for b, entries in sorted(buckets.items()):
                for cid, mac in entries:
                    lab = mac if table == "vlan_source_hash" else ""
                    lines.append(f'    {tid}:b{b} -> {cid} [label={_q(lab)}];')
        if unknown:
            note = _q("MAC random at creation:\nbucket decided then")
            lines.append(f"    {pid}_random [shape=note, label={note}];")
            for cid in unknown:
                lines.append(f"    {pid}_random -> {cid} [style=dashed];")
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def edges(dot: str) -> set[tuple[str, str, str]]:
    """(from, to, label) of the reachability edges in DOT text written by :func:`to_dot`
    (for tests and for anyone post-processing the picture)."""
    out = set()
    for line in dot.splitlines():
        line = line.strip()
        if "->" in line and "label=" in line and "arrowhead=none" not in line:
            a, rest = line.split(" -> ", 1)
            b = rest.split(" ", 1)[0]
            lab = rest.split('label="', 1)[1].split('"', 1)[0]
            out.add((a, b, lab + (" both" if "dir=both" in rest else "")))
    return out


def render(dot: str, out: str, fmt: str | None = None) -> None:
    """Run graphviz ``dot``; RuntimeError with what to do when it is missing or fails."""
    exe = shutil.which("dot")
    if exe is None:
        raise RuntimeError("graphviz's `dot` is not installed (apt-get install graphviz); "
                           "--dot prints the DOT text without it")
    fmt = fmt or (Path(out).suffix.lstrip(".") or "svg")
    r = subprocess.run([exe, f"-T{fmt}", "-o", out], input=dot, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"dot failed: {r.stderr.strip()}")


__all__ = ["Child", "Parent", "reach_matrix", "from_scenario", "from_links", "from_toml", "load_topology",
           "to_dot", "edges", "render", "Mode"]
