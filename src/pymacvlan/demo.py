"""`pymacvlan demo`: macvlan's modes, live, next to what the engine predicts.

For each mode it builds children ``a`` and ``b`` on a veth parent inside throwaway ``pmv``
namespaces (the parent's own stack is the "host" at 10.77.0.254, a station on the far end of
the veth is the LAN at 10.77.0.100), then between every pair of them:

* **ARP**: one ARP request broadcast from the sender's interface, answered or not;
* **ping**: ICMP echo with permanent neighbour entries on both sides, so it tests unicast
  alone (the classic trick for private mode).

The engine's prediction for the same pair comes from :func:`pymacvlan.reachability.reach`
(the sim, no I/O): ARP needs the request's broadcast to reach the receiver and the reply's
unicast to come back; ping needs unicast both ways. A short TCP transfer between two bridge
children gives a throughput figure. Everything is removed at the end, on errors, Ctrl-C and
SIGTERM too.

Backends: ``userspace`` (default: the :class:`~pymacvlan.backends.userspace.Datapath` in this
process, children are veth pairs on the eBPF fast path where it loads, else TAPs) and ``kernel``
(the kernel's own macvlan, for comparison).
Without root or /dev/net/tun only the engine's matrix is printed, with the reason.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .reachability import reach

MODES = ("private", "vepa", "bridge", "passthru", "source")
ROLES = ("a", "b", "station", "host")
PARENT_MAC = "02:00:00:00:00:01"
STATION_MAC = "02:00:00:00:00:ee"
IPS = {"a": "10.77.0.1", "b": "10.77.0.2", "station": "10.77.0.100", "host": "10.77.0.254"}
MACS = {"a": "02:00:00:00:00:0a", "b": "02:00:00:00:00:0b", "station": STATION_MAC, "host": PARENT_MAC}
LABEL = {"a": "a", "b": "b", "station": "station", "host": "host"}


def roles(mode: str) -> list[str]:
    """A passthru child is alone on its parent: no ``b``."""
    return ["a", "station", "host"] if mode == "passthru" else list(ROLES)


def pairs(mode: str) -> list[tuple[str, str]]:
    """Directed pairs worth probing: not station<->host (a veth, nothing of macvlan's)."""
    rs = roles(mode)
    return [(s, r) for s in rs for r in rs if s != r and {s, r} != {"station", "host"}]


def _kind(role: str, mode: str) -> str:
    return {"station": "wire", "host": "parent"}.get(role, mode)


@dataclass(frozen=True)
class Outcome:
    arp: bool
    ping: bool

    def cell(self) -> str:
        return ("A" if self.arp else "-") + ("P" if self.ping else "-")


def predict(mode: str, wire: str = "plain") -> dict[tuple[str, str], Outcome]:
    """The engine's answer for every pair of :func:`pairs` (computed, never typed in)."""
    memo: dict[tuple[str, str], tuple[bool, bool]] = {}

    def r(s: str, d: str) -> tuple[bool, bool]:
        key = (_kind(s, mode), _kind(d, mode))
        if key not in memo:
            got = reach(key[0], key[1], wire)
            memo[key] = got if got is not None else (False, False)
        return memo[key]

    out = {}
    for s, d in pairs(mode):
        (u_sd, b_sd), (u_ds, _) = r(s, d), r(d, s)
        out[(s, d)] = Outcome(arp=b_sd and u_ds, ping=u_sd and u_ds)
    return out


@dataclass
class ModeRun:
    mode: str
    predicted: dict[tuple[str, str], Outcome]
    live: dict[tuple[str, str], Outcome] | None = None
    seconds: float = 0.0

    def mismatches(self) -> list[tuple[str, str]]:
        if self.live is None:
            return []
        return [p for p, o in self.predicted.items() if self.live.get(p) != o]


@dataclass
class DemoReport:
    backend: str
    wire: str
    runs: list[ModeRun] = field(default_factory=list)
    why_not_live: str | None = None
    throughput: tuple[int, float] | None = None
    leftovers: list[str] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def live(self) -> bool:
        return self.why_not_live is None

    def mismatches(self) -> int:
        return sum(len(r.mismatches()) for r in self.runs)

    def probes(self) -> int:
        return sum(len(r.predicted) for r in self.runs if r.live is not None)

    def as_dict(self) -> dict:
        def tab(t):
            return None if t is None else {f"{s}->{d}": {"arp": o.arp, "ping": o.ping} for (s, d), o in t.items()}
        return {"backend": self.backend, "wire": self.wire, "live": self.live, "why_not_live": self.why_not_live,
                "seconds": round(self.seconds, 2), "mismatches": self.mismatches(),
                "throughput": None if self.throughput is None else
                {"bytes": self.throughput[0], "seconds": round(self.throughput[1], 3),
                 "mbit_per_s": round(self.throughput[0] * 8 / self.throughput[1] / 1e6, 1)},
                "leftovers": self.leftovers, "notes": self.notes,
                "modes": {r.mode: {"engine": tab(r.predicted), "live": tab(r.live)} for r in self.runs}}


# -- live worlds ---------------------------------------------------------------------------------
class World:
    """A veth parent (namespace P, with the host's address), its far end as the station
    (namespace W; behind a hairpin bridge for ``wire="hairpin"``) and a namespace per child."""

    def __init__(self, lab, wire: str) -> None:
        from .netlab import sh

        self.lab = lab
        self.P, self.W = lab.ns("P"), lab.ns("W")
        self.parent, self.wire_if = lab.ifname("p"), lab.ifname("w")
        lab.veth(self.parent, self.P, self.wire_if, self.W, mac_a=PARENT_MAC)
        sh("ip", "-n", self.P, "addr", "add", f"{IPS['host']}/24", "dev", self.parent)
        station_dev = self.wire_if
        if wire == "hairpin":
            station_dev = lab.ifname("br")
            sh("ip", "-n", self.W, "link", "add", station_dev, "type", "bridge", "stp_state", "0",
               "mcast_snooping", "0")
            sh("ip", "-n", self.W, "link", "set", self.wire_if, "master", station_dev)
            sh("ip", "-n", self.W, "link", "set", self.wire_if, "type", "bridge_slave", "hairpin", "on")
            sh("ip", "-n", self.W, "link", "set", station_dev, "address", STATION_MAC, "up")
        else:
            sh("ip", "-n", self.W, "link", "set", self.wire_if, "address", STATION_MAC)
        sh("ip", "-n", self.W, "addr", "add", f"{IPS['station']}/24", "dev", station_dev)
        self.child_ns = {"a": lab.ns("A"), "b": lab.ns("B")}
        self.where = {"station": (self.W, station_dev), "host": (self.P, self.parent),
                      "a": (self.child_ns["a"], "eth0"), "b": (self.child_ns["b"], "eth0")}

    def mac(self, role: str, mode: str) -> str:
        return PARENT_MAC if role == "a" and mode == "passthru" else MACS[role]


class UserspaceChildren:
    """Children of the in-process userspace datapath, as it runs by default: veth pairs with the
    eBPF fast path wherever it loads, else TAPs on the Python path."""

    name = "userspace"
    needs_tun = True

    def __init__(self, world: World, shield: bool = True) -> None:
        from .backends.userspace import Datapath, DatapathConfig, ParentConfig

        self.world = world
        self.note = ""
        try:
            self.dp = Datapath(DatapathConfig(ParentConfig(world.parent, world.P), shield=shield)).start()
        except OSError as e:  # no eBPF here: run without the shield and say what that changes
            self.dp = Datapath(DatapathConfig(ParentConfig(world.parent, world.P))).start()
            self.note = (f"the shield (eBPF tc filter) could not load ({e}); the parent's stack also gets "
                         "frames kernel macvlan would consume (passthru, floods back to a private sender)")
        if not shield:
            self.note = ("without the shield the parent's stack also gets frames kernel macvlan would "
                         "consume (passthru, floods back to a private sender)")
        path = self.dp.stats()["path"]
        if path["active"] != "fast":  # the default: known unicast in the kernel (eBPF), veth children
            self.note = "; ".join(filter(None, [self.note, f"the eBPF fast path is not active ({path.get('reason')}): "
                                                           "every frame takes the Python path (TAP children)"]))

    def add(self, role: str, mode: str) -> None:
        w = self.world
        macaddr = [bytes.fromhex(STATION_MAC.replace(":", ""))] if mode == "source" else None
        mac = None if mode == "passthru" else bytes.fromhex(MACS[role].replace(":", ""))
        self.dp.add_macvlan(role, mode, mac=mac, netns=w.child_ns[role], ifname="eth0", macaddr=macaddr)

    def wait_up(self, role: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.dp.call(lambda: self.dp.engine.child(role).up):
                return
            time.sleep(0.01)
        raise RuntimeError(f"child {role} never came up in the userspace datapath")

    def delete(self, role: str) -> None:
        self.dp.delete(role)

    def close(self) -> None:
        self.dp.close()


class KernelChildren:
    """Children as the kernel's own macvlan devices (the oracle)."""

    name = "kernel"
    needs_tun = False

    def __init__(self, world: World, shield: bool = True) -> None:  # shield: the userspace datapath's
        self.world = world

    def add(self, role: str, mode: str) -> None:
        from .netlab import sh

        w = self.world
        tmp = w.lab.ifname(role)
        cmd = ["ip", "-n", w.P, "link", "add", "link", w.parent, "name", tmp]
        if mode != "passthru":
            cmd += ["address", MACS[role]]
        sh(*cmd, "type", "macvlan", "mode", mode)
        if mode == "source":
            sh("ip", "-n", w.P, "link", "set", tmp, "type", "macvlan", "macaddr", "add", STATION_MAC)
        sh("ip", "-n", w.P, "link", "set", tmp, "netns", w.child_ns[role])
        sh("ip", "-n", w.child_ns[role], "link", "set", tmp, "name", "eth0")

    def wait_up(self, role: str, timeout: float = 5.0) -> None:
        from .netlab import sh

        ns = self.world.child_ns[role]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "LOWER_UP" in sh("ip", "-n", ns, "-o", "link", "show", "eth0").stdout.split(">")[0]:
                return
            time.sleep(0.01)
        raise RuntimeError(f"child {role} has no carrier")

    def delete(self, role: str) -> None:
        from .netlab import sh

        sh("ip", "-n", self.world.child_ns[role], "link", "del", "eth0", check=False)

    def close(self) -> None:
        pass


def _probe(world: World, mode: str, s: str, d: str, stage: str, timeout: float) -> bool:
    from .netlab import arp_probe, ping

    ns, dev = world.where[s]
    if stage == "arp":
        return arp_probe(ns, dev, world.mac(s, mode), IPS[s], IPS[d], timeout=timeout) is not None
    return ping(ns, IPS[d], count=2, timeout=timeout) > 0


def _run_mode(world: World, children, mode: str, wire: str, timeout: float,
              say: Callable[[str], None]) -> tuple[ModeRun, tuple[int, float] | None]:
    from .netlab import set_neighbour, sh, tcp_transfer

    t0 = time.monotonic()
    run = ModeRun(mode, predict(mode, wire))
    kids = [r for r in roles(mode) if r in ("a", "b")]
    for role in kids:
        children.add(role, mode)
        ns = world.child_ns[role]
        sh("ip", "-n", ns, "addr", "add", f"{IPS[role]}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
    for role in kids:
        children.wait_up(role)
    # permanent neighbours everywhere: the ping stage then tests unicast alone
    rs = roles(mode)
    for s in rs:
        ns, dev = world.where[s]
        for d in rs:
            if d != s and {s, d} != {"station", "host"}:
                set_neighbour(ns, IPS[d], world.mac(d, mode), dev)
    say(f"{mode}: children up, probing {len(run.predicted)} pairs (ARP, then ping)")
    results: dict[tuple[str, str], dict[str, bool]] = {p: {} for p in run.predicted}
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(results)) as pool:
        for stage in ("arp", "ping"):
            futs = {pool.submit(_probe, world, mode, s, d, stage, timeout): (s, d) for (s, d) in results}
            for f, p in futs.items():
                results[p][stage] = f.result()
    run.live = {p: Outcome(v["arp"], v["ping"]) for p, v in results.items()}
    tput = None
    if mode == "bridge":
        say("bridge: TCP from a to b for 1.5 s")
        tput = tcp_transfer(world.child_ns["b"], IPS["b"], world.child_ns["a"], seconds=1.5)
    for role in kids:
        children.delete(role)
    run.seconds = time.monotonic() - t0
    return run, tput


#: the demo's children, by backend: the live ones (the sim has no frames on a wire to show)
CHILDREN: dict[str, type[UserspaceChildren] | type[KernelChildren]] = {
    c.name: c for c in (UserspaceChildren, KernelChildren)}


def run_demo(backend: str = "userspace", wire: str = "plain", modes: tuple[str, ...] = MODES,
             timeout: float = 0.8, progress: Callable[[str], None] | None = None,
             force_engine_only: str | None = None, shield: bool = True) -> DemoReport:
    """Run the demo; ``progress`` gets one line per stage. Never leaves a namespace behind."""
    from .netlab import live_unavailable

    say = progress or (lambda m: None)
    t0 = time.monotonic()
    rep = DemoReport(backend, wire)
    rep.why_not_live = force_engine_only or live_unavailable(need_tun=CHILDREN[backend].needs_tun)
    if not rep.live:
        say(f"not going live: {rep.why_not_live}; computing the engine's matrix only")
        rep.runs = [ModeRun(m, predict(m, wire)) for m in modes]
        rep.seconds = time.monotonic() - t0
        return rep
    from .netlab import Lab, leftovers, sigterm_raises

    lab = Lab()
    children = None
    try:
        with sigterm_raises():
            say(f"building namespaces pmv{lab.tag}* (veth parent, station, {wire} wire)")
            world = World(lab, wire)
            children = CHILDREN[backend](world, shield=shield)
            note = getattr(children, "note", "")
            if note:
                rep.notes.append(note)
            for i, mode in enumerate(modes, 1):
                say(f"[{i}/{len(modes)}] {mode}: adding children on the {backend} backend")
                run, tput = _run_mode(world, children, mode, wire, timeout, say)
                rep.runs.append(run)
                if tput is not None:
                    rep.throughput = tput
    finally:
        try:
            if children is not None:
                children.close()
        finally:
            lab.close()
            rep.leftovers = leftovers(lab.tag)
            say(f"removed namespaces pmv{lab.tag}*" + (f"; LEFT OVER: {rep.leftovers}" if rep.leftovers else ""))
    rep.seconds = time.monotonic() - t0
    return rep


# -- output ----------------------------------------------------------------------------------------
def _table(mode: str, t: dict[tuple[str, str], Outcome] | None, mark: dict[tuple[str, str], Outcome] | None = None
           ) -> list[str]:
    rs = roles(mode)
    w = 8
    lines = ["from\\to".ljust(w) + "".join(LABEL[r].ljust(w) for r in rs)]
    for s in rs:
        cells = []
        for d in rs:
            if s == d:
                c = "."
            elif t is None or (s, d) not in t:
                c = " "
            else:
                c = t[(s, d)].cell()
                if mark is not None and mark.get((s, d)) != t[(s, d)]:
                    c += "!"
            cells.append(c.ljust(w))
        lines.append(LABEL[s].ljust(w) + "".join(cells))
    return lines


def _summary(run: ModeRun) -> str:
    t = run.live if run.live is not None else run.predicted

    def say(p, what):
        o = t.get(p)
        if o is None:
            return None
        return f"{what}: " + ("ARP and unicast" if o.arp and o.ping else "unicast only, ARP fails" if o.ping
                              else "ARP only" if o.arp else "nothing")
    parts = [say(("a", "b"), "a->b"), say(("station", "a"), "LAN->a"), say(("a", "host"), "a->host")]
    return "; ".join(p for p in parts if p)


def render(rep: DemoReport) -> str:
    out = []
    head = (f"pymacvlan demo: {rep.backend} backend, veth parent, {rep.wire} wire"
            if rep.live else f"pymacvlan demo: engine only ({rep.why_not_live})")
    out += [
        head,
        "cells: A = ARP request answered, P = ping answered with static neighbours "
        "(unicast alone), - = failed, ! = live differs from the engine, . = itself, "
        "blank = not tried (station and host: a veth, nothing of macvlan's); rows send, columns receive",
        "a, b: macvlan children; station: a host on the LAN (far end of the veth); host: the parent's own stack",
        "",
    ]
    for run in rep.runs:
        out.append(f"== {run.mode} ==  " + _summary(run) + (f"  ({run.seconds:.1f} s)" if run.live else ""))
        eng = _table(run.mode, run.predicted)
        if run.live is None:
            out += ["  engine:"] + ["    " + line for line in eng]
        else:
            live = _table(run.mode, run.live, mark=run.predicted)
            width = max(len(line) for line in live) + 4
            out.append("    " + "live".ljust(width) + "engine")
            out += ["    " + a.ljust(width) + b for a, b in zip(live, eng, strict=False)]
        out.append("")
    out += [f"note: {n}" for n in rep.notes]
    if rep.live:
        n, bad = rep.probes(), rep.mismatches()
        out.append(
            f"live and engine agree on {n - bad} of {n} probes" + ("" if not bad else f" ({bad} DIFFER, marked !)")
        )
        if rep.throughput:
            b, s = rep.throughput
            out.append(f"throughput, TCP between two bridge children on the {rep.backend} backend: "
                       f"{b * 8 / s / 1e6:,.0f} Mbit/s ({b / 1e6:,.0f} MB in {s:.2f} s)")
        out.append(f"done in {rep.seconds:.1f} s; " + ("nothing left behind" if not rep.leftovers
                                                       else f"LEFT BEHIND: {', '.join(rep.leftovers)}"))
    else:
        out.append("run as root (with /dev/net/tun) to see the same matrix measured on real frames")
    return "\n".join(out)
