#!/usr/bin/env python3
"""Generate the scenario matrix: tests/scenarios/matrix/*.json.

    python tools/gen_scenarios.py                      # (re)write every matrix file, no expectations
    python tools/gen_scenarios.py --keep-expectations  # keep the recorded expect of unchanged steps
    python tools/gen_scenarios.py --check              # are the files on disk what we would generate?

Two families of files, all deterministic (same bytes on every run):

* **Traffic** (``<topology>_from-<origin>_<wire>.json``): one topology per file, every child up,
  then one inject per destination kind from one origin. Topologies:

  - ``mixed`` / ``mixedtap`` (macvlan / macvtap children): ``priv`` private 02:00:00:00:00:02,
    ``vepa`` vepa :03, ``bridge`` bridge :04, ``source`` source :05 listing the external station
    E 02:00:00:00:00:ee, ``bridge2`` bridge :06 (so a bridge child has a bridge peer);
  - ``passthru`` / ``passthru-nopromisc`` / ``passthrutap``: a passthru child ``pass`` alone
    (it takes the parent's MAC 02:00:00:00:00:01).

  Every child joins a group of its own, 01:00:5e:00:01:XX (XX = the last byte of its MAC).
  Origins: the wire (from E, which the source child lists; and from F 02:00:00:00:00:ef, which
  nobody lists), the parent's stack, and each child. Destinations: each child's MAC, the
  parent's, E's, an unknown 02:00:00:00:00:99, broadcast, each child's group, a group nobody
  joined (01:00:5e:00:01:ff), and a pause frame (ethertype 0x8808) to 01:80:c2:00:00:01.
  Wires: plain and hairpin.

* **Lifecycle** (``lifecycle_*.json``): control-plane sequences (add, up, down, address, MTU,
  mode, flags, source lists, delete, the parent's own changes) in various orders with conflicts,
  with ``show`` steps; hand-picked ones and seeded random ones.

Frames: destination, source, ethertype 0x88b5 (0x8808 for the pause frame) and a 2-byte payload
holding the step number, so every injected frame is unique in its file. Files are written without
``expect``; tools/record_expectations.py records them from the kernel.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scenario_json  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "scenarios" / "matrix"

PARENT = "02:00:00:00:00:01"
EXT = "02:00:00:00:00:ee"        # the external station E (listed by the source child)
EXT2 = "02:00:00:00:00:ef"       # another external station F (listed by nobody)
UNKNOWN = "02:00:00:00:00:99"
BROADCAST = "ff:ff:ff:ff:ff:ff"
PAUSE_DST = "01:80:c2:00:00:01"
UNJOINED = "01:00:5e:00:01:ff"
ETH_TEST = "88b5"                # IEEE local experimental ethertype
ETH_PAUSE = "8808"

HASH_NOTE = ("Children that did not join a group must get nothing for it; on the real kernel a child's "
             "multicast filter is salted at random, so such a frame may very rarely (~1% per child and group) "
             "get through by hash collision. record_expectations.py runs each file twice and records the "
             "intersection; spec section 1 says not to test collisions.")
VETH_NOTE = ("The parent is a veth (no unicast filter): an up non-passthru child makes it promiscuous, and that "
             "sets the port's multicast and broadcast filters to all ones. Every up child joins "
             "01:00:5e:00:00:01 and 33:33:00:00:00:01 by itself.")


def group_of(mac: str) -> str:
    return "01:00:5e:00:01:" + mac[-2:]


def hexmac(mac: str) -> str:
    return mac.replace(":", "")


# -- traffic files ----------------------------------------------------------------------------------

MIXED = [  # name, mode, MAC, extra add keys
    ("priv", "private", "02:00:00:00:00:02", {}),
    ("vepa", "vepa", "02:00:00:00:00:03", {}),
    ("bridge", "bridge", "02:00:00:00:00:04", {}),
    ("source", "source", "02:00:00:00:00:05", {"macaddr": [EXT]}),
    ("bridge2", "bridge", "02:00:00:00:00:06", {}),
]
PASSTHRU = [("pass", "passthru", PARENT, {})]

TOPOLOGIES = {
    # name: (children, child type, extra add keys for every child, words)
    "mixed": (MIXED, "macvlan", {}, "macvlan children priv (private), vepa, bridge, source (lists E) and bridge2"),
    "mixedtap": (MIXED, "macvtap", {}, "macvtap children (no reader) priv (private), vepa, bridge, source (lists E) "
                                       "and bridge2"),
    "passthru": (PASSTHRU, "macvlan", {}, "a passthru macvlan child alone (it takes the parent's MAC)"),
    "passthru-nopromisc": (PASSTHRU, "macvlan", {"flags": ["nopromisc"]},
                           "a passthru macvlan child with flag nopromisc, alone (the parent is not made promiscuous)"),
    "passthrutap": (PASSTHRU, "macvtap", {}, "a passthru macvtap child (no reader) alone"),
}


def origins(children) -> list[tuple[str, str, str, str]]:
    """(file tag, at, source MAC, words)."""
    out = [("wire", "wire", EXT, "the external station E (02:00:00:00:00:ee) on the wire")]
    if any(mode == "source" for _, mode, _, _ in children):
        out.append(("wire-unlisted", "wire", EXT2,
                    "the external station F (02:00:00:00:00:ef, in no source list) on the wire"))
    out.append(("parent", "parent", PARENT, "the parent's own stack"))
    for name, mode, mac, _ in children:
        if name == "bridge2":
            continue  # the same as bridge
        out.append((name, f"child:{name}", mac, f"child {name} ({mode})"))
    return out


def destinations(children) -> list[tuple[str, str, str]]:
    """(destination MAC, ethertype, words)."""
    out = []
    for name, mode, mac, _ in children:
        if mac == PARENT:
            out.append((mac, ETH_TEST, f"to {name}'s MAC = the parent's MAC"))
        else:
            out.append((mac, ETH_TEST, f"to {name} ({mode})"))
    if all(mac != PARENT for _, _, mac, _ in children):
        out.append((PARENT, ETH_TEST, "to the parent's MAC"))
    out += [(EXT, ETH_TEST, "to E (external)"),
            (UNKNOWN, ETH_TEST, "to an unknown MAC"),
            (BROADCAST, ETH_TEST, "broadcast")]
    for name, _, mac, _ in children:
        out.append((group_of(mac), ETH_TEST, f"to {name}'s group"))
    out += [(UNJOINED, ETH_TEST, "to a group nobody joined"),
            (PAUSE_DST, ETH_PAUSE, "pause frame (0x8808) to 01:80:c2:00:00:01")]
    return out


def frame(dst: str, src: str, ethertype: str, step: int) -> str:
    return hexmac(dst) + hexmac(src) + ethertype + f"{step:04x}"


def traffic_file(topo: str, origin: tuple, wire: str) -> tuple[str, dict]:
    children, kind, extra, words = TOPOLOGIES[topo]
    tag, at, src, owords = origin
    steps: list[dict] = []
    for name, mode, mac, more in children:
        st = {"do": "add", "name": name}
        if kind != "macvlan":
            st["type"] = kind
        st["mode"] = mode
        if mac != PARENT:
            st["mac"] = mac
        st.update(more)
        st.update(extra)
        steps.append(st)
    for name, _, mac, _ in children:
        steps.append({"do": "join", "name": name, "group": group_of(mac)})
    for name, _, _, _ in children:
        steps.append({"do": "set", "name": name, "up": True})
    steps.append({"do": "show"})
    for dst, eth, dwords in destinations(children):
        n = len(steps) + 1
        steps.append({"do": "inject", "at": at, "frame": frame(dst, src, eth, n), "comment": dwords})
    data = {
        "name": f"{topo}_from-{tag}_{wire}",
        "description": (f"Matrix: {words}, all up, each in its own multicast group. Every destination kind sent "
                        f"from {owords}, on a {wire} wire. Generated by tools/gen_scenarios.py; expectations "
                        "recorded from the kernel (tools/record_expectations.py)."),
        "note": HASH_NOTE + " " + VETH_NOTE,
        "parent": {"mac": PARENT},
        "wire": wire,
        "steps": steps,
    }
    return data["name"], data


def traffic_files() -> list[tuple[str, dict]]:
    out = []
    for topo, (children, _, _, _) in TOPOLOGIES.items():
        for origin in origins(children):
            for wire in ("plain", "hairpin"):
                out.append(traffic_file(topo, origin, wire))
    return out


# -- lifecycle files ---------------------------------------------------------------------------------

def mac(n: int) -> str:
    return f"02:00:00:00:00:{n:02x}"


A, B, C, D = mac(0x0a), mac(0x0b), mac(0x0c), mac(0x0d)
SHOW = {"do": "show"}


def add(name, mode=None, **kw):
    st = {"do": "add", "name": name}
    if "type" in kw:
        st["type"] = kw.pop("type")
    if mode:
        st["mode"] = mode
    st.update(kw)
    return st


def set_(name, **kw):
    return {"do": "set", "name": name, **kw}


def up(name):
    return set_(name, up=True)


def down(name):
    return set_(name, up=False)


def parent(**kw):
    return {"do": "parent", **kw}


def delete(name):
    return {"do": "del", "name": name}


def inject(at, dst, src):
    return {"do": "inject", "at": at, "dst": dst, "src": src}  # framed when the file is built


LIFECYCLE: list[tuple[str, str, list[dict]]] = [
    ("samemac_up_order", "Three children share one MAC; they come up and go down in turn (EADDRINUSE at up).",
     [add("A", "vepa", mac=A), add("B", "bridge", mac=A), add("C", "private", mac=A), SHOW,
      up("B"), up("A"), up("C"), SHOW, down("B"), up("C"), up("A"), SHOW,
      inject("wire", A, mac(0xee)), delete("C"), up("A"), SHOW, inject("wire", A, mac(0xee))]),
    ("mac_vs_parent", "A child with the parent's MAC; the parent changes its MAC under up children.",
     [add("A", "vepa", mac=PARENT), up("A"), parent(mac=mac(0x41)), up("A"), SHOW,
      parent(mac=PARENT), SHOW, inject("wire", PARENT, mac(0xee)), down("A"), up("A"), SHOW,
      parent(mac=mac(0x42)), up("A"), SHOW]),
    ("setmac_conflicts", "Address changes while up and down, into and out of conflicts.",
     [add("A", "vepa", mac=A), add("B", "bridge", mac=B), add("C", "private", mac=C), up("A"), up("B"),
      set_("A", mac=B), set_("B", mac=A), set_("C", mac=A), set_("C", mac=PARENT), down("B"),
      set_("A", mac=B), up("B"), set_("B", mac=A), up("B"), SHOW, set_("C", mac=B), set_("C", mac=C),
      up("C"), set_("C", mac="03:00:00:00:00:0c"), set_("C", mac="00:00:00:00:00:00"), SHOW,
      inject("wire", B, mac(0xee)), inject("wire", A, mac(0xee))]),
    ("mtu_order", "MTU at creation and on change, and the parent's MTU moving down and up.",
     [add("A", "vepa", mac=A, mtu=1400), parent(mtu=1200), add("B", "bridge", mac=B), SHOW, parent(mtu=1500),
      add("C", "private", mac=C, mtu=1500), add("D", "private", mac=D, mtu=1501), set_("A", mtu=1500),
      set_("B", mtu=1501), set_("B", mtu=1500), SHOW, parent(mtu=68), SHOW, parent(mtu=67), parent(mtu=9000),
      set_("C", mtu=9000), set_("A", mtu=67), SHOW]),
    ("mode_cycle_source", "A source child's mode goes round; the list is flushed on leaving source.",
     [add("S", "source", mac=A, macaddr=[mac(0xee), mac(0xef)]), SHOW, set_("S", mode="private"), SHOW,
      set_("S", mode="source"), set_("S", macaddr={"op": "add", "macs": [mac(0xee)]}), SHOW,
      set_("S", mode="vepa", macaddr={"op": "add", "macs": [mac(0xef)]}), SHOW,
      set_("S", mode="source", macaddr={"op": "set", "macs": [mac(0xef), mac(0xee), mac(0x99)]}), SHOW,
      set_("S", mode="passthru"), set_("S", mode="bridge"), SHOW]),
    ("passthru_nopromisc_toggles", "A passthru child's nopromisc flag toggled while down and up: the parent's "
     "promiscuity changes at once (spec 6), even when that takes it below zero.",
     [add("P", "passthru", flags=["nopromisc"]), SHOW, set_("P", flags=[]), SHOW, set_("P", flags=["nopromisc"]),
      set_("P", flags=["nopromisc"]), up("P"), SHOW, set_("P", flags=[]), SHOW, down("P"), SHOW,
      set_("P", flags=["nopromisc"]), SHOW, up("P"), SHOW, delete("P"), SHOW]),
    ("passthru_conflicts", "Passthru next to other children, its MAC, and the parent's MAC.",
     [add("A", "vepa", mac=A), add("P", "passthru"), delete("A"), add("P", "passthru", mac=B),
      add("A", "vepa", mac=A), add("Q", "passthru"), SHOW, set_("P", mac=C), SHOW, up("P"),
      set_("P", mac=D), parent(mac=mac(0x44)), SHOW, inject("wire", mac(0x99), mac(0xee)), delete("P"), SHOW,
      add("A", "bridge", mac=A), up("A"), SHOW]),
    ("bcqueuelen_life", "bcqueuelen per child and the port's maximum through adds, changes and deletes.",
     [add("A", "vepa", mac=A, bcqueuelen=5), add("B", "bridge", mac=B), SHOW, set_("B", bcqueuelen=3000), SHOW,
      delete("B"), SHOW, add("C", "private", mac=C, bcqueuelen=0), set_("A", bcqueuelen=0), SHOW,
      up("A"), up("C"), inject("wire", "ff:ff:ff:ff:ff:ff", mac(0xee)), delete("A"), delete("C"),
      add("D", "vepa", mac=D), SHOW]),
    ("bclim_life", "bclim is port-wide and dies with the port.",
     [add("A", "vepa", mac=A, bclim=3), SHOW, add("B", "bridge", mac=B, bclim=-5), SHOW, delete("A"), SHOW,
      set_("B", bclim=0), SHOW, delete("B"), add("C", "private", mac=C), SHOW]),
    ("flags_counts", "allmulticast and promisc on children, set while down and up, and the parent's counts.",
     [add("A", "vepa", mac=A), add("B", "bridge", mac=B), set_("A", allmulticast=True, promisc=True), SHOW,
      up("A"), SHOW, set_("B", promisc=True), up("B"), SHOW, set_("A", allmulticast=False), down("B"), SHOW,
      set_("B", allmulticast=True), up("B"), SHOW, delete("A"), SHOW, delete("B"), SHOW]),
    ("parent_down_up", "The parent goes down and up, and loses its carrier, under up and down children.",
     [add("A", "vepa", mac=A), add("B", "bridge", mac=B), up("A"), parent(up=False), SHOW, up("B"), SHOW,
      inject("child:A", mac(0xee), A), parent(up=True), SHOW, inject("child:A", mac(0xee), A),
      parent(carrier=False), SHOW, inject("wire", A, mac(0xee)), parent(carrier=True), SHOW,
      inject("wire", A, mac(0xee))]),
    ("delete_parent", "Deleting the parent with children of every kind; what is left afterwards.",
     [add("A", "vepa", mac=A), add("S", "source", mac=B, macaddr=[mac(0xee)]),
      add("T", "bridge", type="macvtap", mac=C), up("A"), up("T"), SHOW, delete("@parent"), SHOW,
      add("X", "vepa", mac=D), up("A"), delete("A"), SHOW]),
    ("macvtap_life", "A macvtap child through mode, MTU, MAC and up/down changes.",
     [add("T", "bridge", type="macvtap", mac=A), up("T"), set_("T", mode="vepa"), set_("T", mtu=1400),
      set_("T", mac=B), SHOW, add("U", "vepa", type="macvtap", mac=B), up("U"), down("T"), up("U"), SHOW,
      set_("T", mode="passthru"), delete("T"), SHOW]),
    ("join_leave", "Joining and leaving groups while down and up; leaving twice.",
     [add("A", "vepa", mac=A), {"do": "join", "name": "A", "group": "01:00:5e:00:01:0a"},
      {"do": "leave", "name": "A", "group": "01:00:5e:00:01:0a"},
      {"do": "leave", "name": "A", "group": "01:00:5e:00:01:0a"}, up("A"),
      {"do": "join", "name": "A", "group": "01:00:5e:00:01:0a"},
      {"do": "join", "name": "A", "group": "01:00:5e:00:01:0a"},
      inject("wire", "01:00:5e:00:01:0a", mac(0xee)),
      {"do": "leave", "name": "A", "group": "01:00:5e:00:01:0a"},
      inject("wire", "01:00:5e:00:01:0a", mac(0xee)),
      set_("A", allmulticast=True), set_("A", allmulticast=False),
      inject("wire", "01:00:5e:00:01:0a", mac(0xee)), SHOW]),
    ("source_list_life", "Source-list operations, duplicates included, while down and up.",
     [add("S", "source", mac=A, macaddr=[mac(0xee), mac(0xee), mac(0xef)]), SHOW,
      set_("S", macaddr={"op": "set", "macs": [mac(0xee), mac(0xef), mac(0x99)]}), SHOW,
      set_("S", macaddr={"op": "del", "macs": [mac(0xef)]}), set_("S", macaddr={"op": "add", "macs": [mac(0xee)]}),
      SHOW, set_("S", macaddr={"op": "set", "macs": []}), SHOW,
      set_("S", macaddr={"op": "add", "macs": [PARENT]}), set_("S", macaddr={"op": "add", "macs": [A]}), SHOW,
      up("S"), inject("parent", mac(0xee), PARENT), set_("S", macaddr={"op": "flush"}), SHOW]),
    ("invalid_add", "Creations the kernel refuses, and whether a refused one leaves anything behind.",
     [add("A", "vepa", mac="03:00:00:00:00:0a"), add("A", "vepa", mac="00:00:00:00:00:00"),
      add("A", "vepa", mac=A, mtu=67), add("A", "vepa", mac=A, mtu=1501),
      add("A", "vepa", mac=A, bclim=5, bcqueuelen=7, macaddr=[mac(0xee)]),
      add("B", "bridge", mac=B), SHOW,
      add("C", "vepa", mac=C, bclim=9, macaddr=[mac(0xee)]), SHOW,
      add("S", "source", mac=D, macaddr=["01:00:5e:00:00:01"]), SHOW]),
    ("name_reuse", "A child deleted and created again under the same name, in another mode.",
     [add("A", "vepa", mac=A), up("A"), delete("A"), add("A", "source", mac=A, macaddr=[mac(0xee)]), SHOW,
      up("A"), delete("A"), add("A", "passthru"), SHOW, delete("A"), add("A", "bridge", mac=B), SHOW]),
    ("updown_churn", "Up/down churn across three children with two MACs.",
     [add("A", "vepa", mac=A), add("B", "bridge", mac=A), add("C", "private", mac=B), up("A"), up("C"),
      up("B"), down("A"), up("B"), set_("A", mac=B), set_("C", mac=C), set_("A", mac=B), up("A"), SHOW,
      down("B"), down("A"), down("C"), SHOW, up("C"), up("B"), up("A"), SHOW]),
]

RANDOM_FILES = 12
RANDOM_STEPS = 14


def random_lifecycle(index: int) -> tuple[str, str, list[dict]]:
    """A seeded random control sequence over children A, B, C with few MACs, so conflicts happen."""
    rng = random.Random(1000 + index)
    macs = [A, B, PARENT]
    modes = ["private", "vepa", "bridge", "source", "passthru"]
    names = ["A", "B", "C"]
    steps: list[dict] = []
    created: set[str] = set()
    for i in range(RANDOM_STEPS):
        name = rng.choice(names)
        if name not in created or rng.random() < 0.1:
            st = add(name, rng.choice(modes[:4]) if rng.random() < 0.9 else "passthru")
            if st.get("mode") != "passthru":
                st["mac"] = rng.choice(macs[:2]) if rng.random() < 0.8 else PARENT
            if rng.random() < 0.3:
                st["mtu"] = rng.choice([1400, 1500, 1600])
            steps.append(st)
            created.add(name)
            continue
        op = rng.choice(["up", "up", "down", "mac", "mtu", "mode", "del", "parentmtu", "promisc", "flags"])
        if op == "up":
            steps.append(up(name))
        elif op == "down":
            steps.append(down(name))
        elif op == "mac":
            steps.append(set_(name, mac=rng.choice(macs)))
        elif op == "mtu":
            steps.append(set_(name, mtu=rng.choice([1000, 1400, 1500, 1501])))
        elif op == "mode":
            steps.append(set_(name, mode=rng.choice(modes)))
        elif op == "del":
            steps.append(delete(name))
            created.discard(name)
        elif op == "parentmtu":
            steps.append(parent(mtu=rng.choice([1300, 1500])))
        elif op == "promisc":
            steps.append(set_(name, promisc=rng.random() < 0.5))
        else:
            steps.append(set_(name, flags=rng.choice([[], ["nopromisc"], ["nodst"]])))
        if i % 4 == 3:
            steps.append(SHOW)
    steps.append(SHOW)
    return (f"random_{index:02d}", f"Seeded random control sequence #{index} (random.Random({1000 + index})).",
            steps)


def lifecycle_file(tag: str, words: str, steps: list[dict]) -> tuple[str, dict]:
    out = []
    for st in steps:
        st = dict(st)
        if st["do"] == "inject":
            n = len(out) + 1
            st = {"do": "inject", "at": st["at"], "frame": frame(st["dst"], st["src"], ETH_TEST, n)}
        out.append(st)
    name = f"lifecycle_{tag}"
    return name, {
        "name": name,
        "description": (f"Matrix lifecycle: {words} Generated by tools/gen_scenarios.py; expectations recorded "
                        "from the kernel (tools/record_expectations.py)."),
        "note": VETH_NOTE,
        "parent": {"mac": PARENT},
        "wire": "plain",
        "steps": out,
    }


def lifecycle_files() -> list[tuple[str, dict]]:
    items = list(LIFECYCLE) + [random_lifecycle(i) for i in range(1, RANDOM_FILES + 1)]
    return [lifecycle_file(*item) for item in items]


# -- driver -------------------------------------------------------------------------------------------

def all_files() -> list[tuple[str, dict]]:
    files = traffic_files() + lifecycle_files()
    for name, data in files:
        frames = [s["frame"] for s in data["steps"] if s["do"] == "inject"]
        assert len(frames) == len(set(frames)), f"{name}: duplicate frames"
    names = [n for n, _ in files]
    assert len(names) == len(set(names)), "duplicate file names"
    return files


def _without_expect(data: dict) -> dict:
    out = json.loads(json.dumps(data))
    for st in out.get("steps", []):
        st.pop("expect", None)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=OUT, help=f"output directory (default {OUT.relative_to(ROOT)})")
    p.add_argument("--keep-expectations", action="store_true",
                   help="carry over the expect of every step whose file and step are unchanged")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 if a file is missing, extra, or differs (expectations ignored)")
    args = p.parse_args(argv)
    files = all_files()
    wanted = {f"{name}.json" for name, _ in files}
    existing = {p.name for p in args.out.glob("*.json")} if args.out.exists() else set()
    if args.check:
        bad = 0
        for name, data in files:
            path = args.out / f"{name}.json"
            if not path.exists():
                print(f"missing: {path}")
                bad += 1
            elif _without_expect(json.loads(path.read_text())) != _without_expect(data):
                print(f"differs: {path}")
                bad += 1
        for extra in sorted(existing - wanted):
            print(f"extra (not generated): {args.out / extra}")
            bad += 1
        print(f"{len(files)} files generated, {bad} problem(s)")
        return 1 if bad else 0
    written = kept = dropped = 0
    for name, data in files:
        path = args.out / f"{name}.json"
        old = json.loads(path.read_text()) if path.exists() else {}
        if not args.keep_expectations and any("expect" in st for st in old.get("steps", [])):
            dropped += 1
        if args.keep_expectations and old:
            if len(old.get("steps", [])) == len(data["steps"]) and \
                    {k: v for k, v in _without_expect(old).items()} == data:
                for st, ost in zip(data["steps"], old["steps"], strict=False):
                    if "expect" in ost:
                        st["expect"] = ost["expect"]
                kept += 1
        written += scenario_json.write(path, data)
    for extra in sorted(existing - wanted):
        print(f"note: {args.out / extra} is not generated any more; delete it if it is stale")
    if dropped:
        print(f"warning: {dropped} file(s) had recorded expectations and now have none; record them again "
              "(tools/record_expectations.py) or regenerate with --keep-expectations")
    print(f"{len(files)} files ({written} written, {len(files) - written} unchanged"
          + (f", expectations kept in {kept}" if args.keep_expectations else "") + f") in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
