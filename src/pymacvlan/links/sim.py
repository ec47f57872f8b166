"""`pymacvlan --backend sim link ...`: an Engine per parent, kept between commands.

The state file holds a journal of the control operations asked for, not a snapshot: the
engine is deterministic (parent MACs and engine seeds derive from the parent's name), so
replaying the journal rebuilds exactly the same ports, filters and ifindexes. A child added
without an address gets one from the OS's entropy (eth_hw_addr_random()), written into its
journal entry so it comes back; two hosts never draw the same sequence,
and an operation the kernel refuses halfway (changelink has no rollback) leaves exactly the
state it left the first time. Errors come from the engine's control ops, i.e. are the kernel's.

Parents are veth-like devices (up, carrier, MTU 1500, no unicast filter). The simulated host
has ``eth0`` and ``eth1`` (:data:`BUILTIN_PARENTS`, made on first use); any other parent is
declared first, as iproute2 makes a device: ``pymacvlan link add name NAME type veth``
(:meth:`Driver.add_parent`; ``apply`` declares a TOML file's parents). A child of a parent the
sim does not have is refused as ip refuses it (``Cannot find device "eht0"``) with a hint naming
the parents it has: a typo used to create a parent silently, and the mistake surfaced commands later.
Namespaces are labels: a link lives in one, ``show`` lists one, and a child
whose parent lives elsewhere shows as ``mac0@ifN`` with ``link_netnsid`` as iproute2 prints it.
Child names are unique per parent (the engine's table) and per namespace.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..engine import Engine
from ..engine.fill_info import OFFLOAD_DETAILS as _OFFLOAD_DETAILS
from ..engine.fill_info import child_link, macvlan_fill_info  # noqa: F401 (the engine's one view)
from ..model import KernelError, MacaddrMode, Mode, mac_str, random_mac
from ..model.iproute import link_flags, operstate
from ..model.link import LinkChange, LinkRequest, apply_change, check_endpoint, validate_request
from .base import BaseDriver, TraceRequest

STATE_ENV = "PMV_SIM_STATE"
#: the parents the simulated host has from the start (default namespace); others are declared
BUILTIN_PARENTS = ("eth0", "eth1")
JOURNAL_VERSION = 1


def default_state_path() -> Path:
    if os.environ.get(STATE_ENV):
        return Path(os.environ[STATE_ENV])
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "pymacvlan" / "sim.json"


def parent_mac(name: str) -> bytes:
    """A locally administered unicast MAC derived from the parent's name (stable across runs)."""
    raw = bytearray(hashlib.sha256(b"pmv-sim-parent:" + name.encode()).digest()[:6])
    raw[0] = (raw[0] & 0xFE) | 0x02
    return bytes(raw)


def _seed(name: str) -> int:
    return int.from_bytes(hashlib.sha256(b"pmv-sim-seed:" + name.encode()).digest()[:4], "big")


# -- journal encoding ------------------------------------------------------------------------------
def _encode(obj) -> dict:
    out = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, bytes):
            v = v.hex()
        elif isinstance(v, list):
            v = [x.hex() if isinstance(x, bytes) else x for x in v]
        elif isinstance(v, (Mode, MacaddrMode)) or isinstance(v, int) and not isinstance(v, bool):
            v = int(v)
        out[f.name] = v
    return out


def _decode(cls, d: dict):
    kw = {}
    for f in dataclasses.fields(cls):
        if f.name not in d:
            continue
        v = d[f.name]
        if f.name in ("address",) and v is not None:
            v = bytes.fromhex(v)
        elif f.name == "macaddrs":
            v = [bytes.fromhex(x) for x in v]
        elif f.name == "mode" and v is not None:
            v = Mode(v)
        elif f.name == "macaddr_mode" and v is not None:
            v = MacaddrMode(v)
        kw[f.name] = v
    return cls(**kw)


@dataclasses.dataclass
class _Parent:
    engine: Engine
    ifindex: int
    netns: str | None


@dataclasses.dataclass
class _Child:
    parent: str
    ifindex: int
    netns: str | None


class World:
    """Every sim parent and child; the deterministic machine the journal drives."""

    def __init__(self) -> None:
        self.parents: dict[str, _Parent] = {}
        self.children: dict[tuple[str | None, str], _Child] = {}
        self.next_ifindex = 2  # 1 is every namespace's lo

    # -- lookup ------------------------------------------------------------------------------
    def _find(self, name: str, ns: str | None):
        key = (ns, name)
        if key in self.children:
            return "child", self.children[key]
        p = self.parents.get(name)
        if p is not None and p.netns == ns:
            return "parent", p
        return None, None

    def _need(self, name: str, ns: str | None):
        kind, rec = self._find(name, ns)
        if kind is None:
            raise KernelError("ENODEV", f'Cannot find device "{name}"',
                              f"no link named {name} in {_ns_words(ns)}; see `pymacvlan link show`")
        return kind, rec

    def _alloc(self) -> int:
        i = self.next_ifindex
        self.next_ifindex += 1
        return i

    # -- operations --------------------------------------------------------------------------------
    def add(self, ns: str | None, req: LinkRequest) -> None:
        validate_request(req)
        target = req.netns if req.netns is not None else ns
        if self._find(req.name, target)[0] is not None:
            raise KernelError("EEXIST", f"a link named {req.name} already exists in {_ns_words(target)}",
                              "pick another name, or delete it first")
        kind, rec = self._find(req.parent, ns)
        if kind == "child":  # macvlan on a macvlan: the kernel uses the lower's lower
            parent_name = rec.parent
        elif kind == "parent":
            parent_name = req.parent
        elif req.parent in self.parents:
            raise KernelError("ENODEV", f'Cannot find device "{req.parent}"',
                              f"{req.parent} lives in {_ns_words(self.parents[req.parent].netns)}")
        else:
            parent_name = req.parent
            self.parents[req.parent] = _Parent(Engine(req.parent, parent_mac(req.parent), seed=_seed(req.parent)),
                                               self._alloc(), ns)
        engine = self.parents[parent_name].engine
        engine.newlink(req)
        self.children[(target, req.name)] = _Child(parent_name, self._alloc(), target)
        if req.up:
            try:
                engine.set_up(req.name, True)
            except KernelError:  # rtnl_newlink(): a link that cannot come up is unregistered again
                engine.delete(req.name)
                del self.children[(target, req.name)]
                raise

    def add_parent(self, ns: str | None, name: str) -> None:
        """A parent declared by name (`link add name NAME type veth`)."""
        if self._find(name, ns)[0] is not None or name in self.parents:
            where = self.parents[name].netns if name in self.parents else ns
            raise KernelError("EEXIST", f"a link named {name} already exists in {_ns_words(where)}",
                              "pick another name, or delete it first")
        if not name or len(name.encode()) > 15 or "/" in name or name.strip() != name:
            raise KernelError("EINVAL", f'argument "{name}" is wrong: "name" not a valid ifname')
        self.parents[name] = _Parent(Engine(name, parent_mac(name), seed=_seed(name)), self._alloc(), ns)

    def has_parent(self, name: str, ns: str | None) -> bool:
        """Could a child be added on ``name`` (a parent, a child's lower, or a built-in parent)?"""
        kind, _rec = self._find(name, ns)
        return kind is not None or (ns is None and name in BUILTIN_PARENTS and name not in self.parents)

    def set(self, ns: str | None, name: str, ch: LinkChange) -> None:
        kind, rec = self._need(name, ns)
        if kind == "parent":
            self._set_parent(name, rec, ch)
            return
        e = self.parents[rec.parent].engine
        v = e.child(name)
        if ch.kind is not None and ch.kind != v.kind:
            raise KernelError("EOPNOTSUPP", f"{name} is a {v.kind}, not a {ch.kind}",
                              f"say `type {v.kind}` to change its settings")
        apply_change(e, name, ch)

    def _set_parent(self, name: str, rec: _Parent, ch: LinkChange) -> None:
        e = rec.engine
        if ch.kind is not None or ch.changes_macvlan():
            raise KernelError("EOPNOTSUPP", f"{name} is a veth, not a {ch.kind or 'macvlan'}",
                              "macvlan settings belong to its children")
        if ch.address is not None:
            e.set_parent_mac(ch.address)
        if ch.mtu is not None:
            e.set_parent_mtu(ch.mtu)
        if ch.up is not None:
            e.set_parent_up(ch.up)
        lower = e.lower
        if ch.promisc is not None and ch.promisc != lower.promisc_user:
            lower.promisc_user = ch.promisc
            e._lower_promiscuity(1 if ch.promisc else -1)
        if ch.allmulticast is not None and ch.allmulticast != lower.allmulti_user:
            lower.allmulti_user = ch.allmulticast
            e._lower_allmulti(1 if ch.allmulticast else -1)

    def delete(self, ns: str | None, name: str) -> None:
        kind, rec = self._need(name, ns)
        if kind == "child":
            self.parents[rec.parent].engine.delete(name)
            del self.children[(ns, name)]
            return
        rec.engine.delete_parent()  # unregistering the lower takes every child with it
        for key in [k for k, c in self.children.items() if c.parent == name]:
            del self.children[key]
        del self.parents[name]

    # -- show ---------------------------------------------------------------------------------
    def show(self, ns: str | None) -> list[dict]:
        links = [self._parent_dict(n, p) for n, p in self.parents.items() if p.netns == ns]
        links += [self._child_dict(n, c) for (cns, n), c in self.children.items() if cns == ns]
        return sorted(links, key=lambda d: d["ifindex"])

    def _netnsid(self, ns: str | None, other: str | None) -> int:
        """A stable id for namespace ``other`` as seen from ``ns`` (the kernel's are per pair)."""
        known = sorted({p.netns or "" for p in self.parents.values()} |
                       {c.netns or "" for c in self.children.values()} - {ns or ""})
        return known.index(other or "")

    def _parent_dict(self, name: str, p: _Parent) -> dict:
        lower = p.engine.lower
        d = {"ifindex": p.ifindex, "ifname": name,
             "flags": link_flags(lower.up, lower.carrier, lower.promisc_user, lower.allmulti_user),
             "mtu": lower.mtu, "qdisc": "noqueue" if lower.up else "noop",
             "operstate": operstate(lower.up, lower.carrier), "linkmode": "DEFAULT", "group": "default",
             "txqlen": 1000, "link_type": "ether", "address": mac_str(lower.mac),
             "broadcast": "ff:ff:ff:ff:ff:ff", "promiscuity": lower.promiscuity, "allmulti": lower.allmulti,
             "min_mtu": 68, "max_mtu": lower.max_mtu, "linkinfo": {"info_kind": "veth"}}
        d.update(_OFFLOAD_DETAILS)
        return d

    def _child_dict(self, name: str, c: _Child) -> dict:
        p = self.parents[c.parent]
        same_ns = p.netns == c.netns
        return child_link(p.engine, p.engine.children[name], name, c.ifindex, c.parent, p.ifindex,
                          None if same_ns else self._netnsid(c.netns, p.netns))


def _ns_words(ns: str | None) -> str:
    return "the default namespace" if ns is None else f"namespace {ns}"


class Driver(BaseDriver):
    """The sim's LinkDriver: every call loads the journal, replays it and (for changes) appends.
    With ``scenario`` its engines come from that scenario file's setup instead (stats, trace and
    show --graph read them; nothing is saved)."""

    backend = "sim"
    builtin_parents = BUILTIN_PARENTS
    owns_parents = True
    host_stack = False
    injects = True

    def __init__(self, state: str | os.PathLike | None = None, netns: str | None = None,
                 scenario: str | None = None) -> None:
        self.path = Path(state) if state else default_state_path()
        self.netns = netns
        self.scenario = scenario

    # -- journal -------------------------------------------------------------------------------
    @contextmanager
    def _locked(self, write: bool):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(str(self.path) + ".lock", "a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
            yield
        finally:
            lock.close()

    def _load(self) -> tuple[World, list]:
        world = World()
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return world, []
        except (OSError, ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
            why = "nested too deeply" if isinstance(e, RecursionError) else str(e)
            raise KernelError("EINVAL", f"cannot read the sim state {self.path}: {why}",
                              f"remove it (rm {self.path}) to start from nothing") from None
        version = data.get("version") if isinstance(data, dict) else None
        if version != JOURNAL_VERSION or not isinstance(data.get("journal"), list):
            raise KernelError("EINVAL", f"{self.path} is not a pymacvlan sim journal (version {version!r})",
                              f"remove it (rm {self.path}) to start from nothing")
        journal = data["journal"]
        for i, entry in enumerate(journal):
            try:
                _apply(world, entry)
            except KernelError:
                pass  # it failed the first time too, having done exactly this much
            except (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError) as e:
                raise KernelError("EINVAL", f"{self.path}: journal entry {i + 1} is malformed "
                                  f"({type(e).__name__}: {str(e)[:80]})",
                                  f"remove it (rm {self.path}) to start from nothing") from None
        return world, journal

    def _do(self, entry: dict) -> None:
        with self._locked(write=True):
            world, journal = self._load()
            try:
                _apply(world, entry)
            except KernelError:
                if _touches(entry):  # a partial change stays, as in the kernel
                    self._save(journal + [entry])
                raise
            self._save(journal + [entry])

    def _save(self, journal: list) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": JOURNAL_VERSION, "journal": journal}, indent=0))
        os.replace(tmp, self.path)

    def world(self) -> World:
        """The current state (read-only use: e.g. to inject frames into a parent's engine)."""
        with self._locked(write=False):
            return self._load()[0]

    # -- LinkDriver ------------------------------------------------------------------------------
    def add_parent(self, name: str, netns: str | None = None) -> None:
        """Declare a sim parent (what `pymacvlan link add name NAME type veth` does on the sim)."""
        self._do({"op": "parent", "ns": netns if netns is not None else self.netns, "name": name})

    def add(self, req: LinkRequest) -> None:
        check_endpoint(req, "sim")
        ns = self.netns
        world = self.world()
        if req.parent and not world.has_parent(req.parent, ns):
            import difflib

            if req.parent in world.parents:  # it lives in another namespace
                raise KernelError("ENODEV", f'Cannot find device "{req.parent}"',
                                  f"{req.parent} lives in {_ns_words(world.parents[req.parent].netns)}")
            known = sorted({*world.parents, *(BUILTIN_PARENTS if ns is None else ())})
            close = difflib.get_close_matches(req.parent, known, n=1)
            raise KernelError("ENODEV", f'Cannot find device "{req.parent}"',
                              (f"did you mean {close[0]}? " if close else "")
                              + f"the sim has {', '.join(known) or 'no parents'} in {_ns_words(ns)}; declare another "
                              f"parent with: pymacvlan link add name {req.parent} type veth")
        if req.address is None and req.mode != Mode.PASSTHRU:  # passthru takes the parent's
            req = dataclasses.replace(req, address=random_mac())
        self._do({"op": "add", "ns": self.netns, "req": _encode(req)})

    def set(self, name: str, change: LinkChange, netns: str | None = None) -> None:
        self._do({"op": "set", "ns": netns if netns is not None else self.netns, "name": name,
                  "change": _encode(change)})

    def delete(self, name: str, netns: str | None = None) -> None:
        self._do({"op": "del", "ns": netns if netns is not None else self.netns, "name": name})

    def show(self, name: str | None = None, kind: str | None = None, netns: str | None = None) -> list[dict]:
        ns = netns if netns is not None else self.netns
        links = self.world().show(ns)
        if name is not None:
            links = [d for d in links if d["ifname"] == name]
            if not links:
                raise KernelError("ENODEV", f'Device "{name}" does not exist.')
        if kind is not None:
            links = [d for d in links if d.get("linkinfo", {}).get("info_kind") == kind]
        return links

    def reset(self) -> None:
        """Forget everything (the state file is removed)."""
        with self._locked(write=True):
            self.path.unlink(missing_ok=True)

    def probe(self, parent: str | None = None) -> None:
        """Always ready: a sim parent is made on first use."""

    def notice(self) -> str | None:
        """Where the state lives, and that the host was not touched."""
        path = str(self.path)
        home = os.path.expanduser("~")
        if path.startswith(home + os.sep):
            path = "~" + path[len(home):]
        return f"note: simulated (state in {path}); nothing on this host changed"

    def engines(self, setup_only: bool = False) -> tuple[dict[str, Engine], str | None]:
        """Engines by parent name and the scenario's wire (None for the link state).
        ``setup_only``: replay a scenario's control steps but not its frames."""
        return sim_engines(self.scenario, str(self.path), self.netns, setup_only)

    def stats(self, name: str | None = None) -> dict:
        engines, _wire = self.engines()
        parents = {}
        for pname, e in engines.items():
            children = {n: {**v.stats.as_stats64(), "mode": v.mode.name.lower(), "up": v.up, "kind": v.kind}
                        for n, v in e.children.items() if name in (None, n)}
            if name and not children:
                continue
            parents[pname] = {"children": children, "engine_drops": dict(e.drops),
                              "lower": {"rx_dropped": e.lower.rx_dropped, "carrier": e.lower.carrier}}
        if name and not parents:
            raise KernelError("ENODEV", f'Cannot find device "{name}"', "see `pymacvlan link show --backend sim`")
        return {"backend": self.backend, "parents": parents}

    def trace(self, req: TraceRequest) -> Iterator[dict]:
        """One injected frame, explained (nothing is saved)."""
        return iter([_trace_one(self, req)])


STATION_MAC = bytes.fromhex("0200000000ee")


def _trace_one(drv: Driver, req: TraceRequest) -> dict:
    from ..backends.sim import Simulation, frame_event
    from ..daemon.trace import TraceFilter, ethertype_value

    engines, wire = drv.engines(setup_only=True)
    wire = wire or req.wire
    if not engines:
        raise KernelError("ENODEV", "no sim links to trace through",
                          "add some first (pymacvlan link add ... --backend sim) or give --scenario FILE")
    if req.parent:
        if req.parent not in engines:
            raise KernelError("ENODEV", f'Cannot find device "{req.parent}"', f"sim parents: {', '.join(engines)}")
        pname = req.parent
    elif (req.at or "wire") not in ("wire", "parent"):
        hits = [n for n, e in engines.items() if req.at in e.children]
        if not hits:
            raise KernelError("ENODEV", f'Cannot find device "{req.at}"', "--at takes wire, parent or a child's name")
        pname = hits[0]
    elif len(engines) == 1:
        pname = next(iter(engines))
    else:
        raise KernelError("EINVAL", f"several sim parents ({', '.join(engines)})", "say which with --parent")
    engine = engines[pname]
    if req.child and req.child not in engine.children:  # a filter naming nothing filters nothing
        raise KernelError("ENODEV", f'Cannot find device "{req.child}"',
                          f"--child takes a child of {pname}: {', '.join(engine.children) or 'it has none'}")
    at = req.at or "wire"
    if req.frame is not None:
        frame = req.frame
        if len(frame) < 14:
            raise KernelError("EINVAL", f"a {len(frame)}-byte frame has no Ethernet header", "at least 14 bytes")
    else:
        if req.dst is None:
            raise KernelError("EINVAL", "which frame?",
                              "give --frame HEX or at least --dst MAC (and --src, --ethertype)")
        if req.src is not None:
            src = req.src
        elif at == "wire":
            src = STATION_MAC
        elif at == "parent":
            src = engine.lower.mac
        else:
            src = engine.child(at).mac
        et = ethertype_value(req.ethertype or "0x88b5")
        frame = req.dst + src + et.to_bytes(2, "big")
        frame += bytes(max(0, 60 - len(frame)))
    sim = Simulation.__new__(Simulation)  # the scenario runner's injection, on this engine
    sim.engine, sim.hairpin, sim.trace = engine, wire == "hairpin", True
    res = sim.step({"do": "inject", "at": at if at in ("wire", "parent") else f"child:{at}", "frame": frame.hex()})
    if not res.get("ok"):
        raise KernelError(res["errno"], res["message"], res.get("advice", ""))
    ev = frame_event(pname, at, frame, res, wire)
    if req.child:
        flt = TraceFilter.from_request({"mac": req.mac, "ethertype": req.ethertype, "child": req.child})
        if not flt.concerns_event(ev):
            return {"info": f"note: the frame does not concern {req.child} (it neither sent, got, nor was "
                            "considered for it)"}
    return ev


def sim_engines(scenario: str | None, state: str | None, netns: str | None = None,
                setup_only: bool = False) -> tuple[dict[str, Engine], str | None]:
    """Engines by parent name and the scenario's wire (None for the link state).

    ``setup_only``: replay a scenario's control steps but not its frames (trace injects its own).
    """
    if scenario:
        from ..backends.sim import Simulation
        from ..scenario import ScenarioError, load_scenario

        try:
            sc = load_scenario(scenario)
        except ScenarioError as e:
            raise KernelError("EINVAL", f"{scenario}: {e}") from None
        sim = Simulation(sc)
        for st in sc["steps"]:
            if not (setup_only and st["do"] == "inject"):
                sim.step(st)
        return {"parent": sim.engine}, sc["wire"]
    world = Driver(state, netns=netns).world()
    return {name: p.engine for name, p in world.parents.items()}, None


def _apply(world: World, entry: dict) -> None:
    op, ns = entry["op"], entry.get("ns")
    if op == "add":
        world.add(ns, _decode(LinkRequest, entry["req"]))
    elif op == "set":
        world.set(ns, entry["name"], _decode(LinkChange, entry["change"]))
    elif op == "del":
        world.delete(ns, entry["name"])
    elif op == "parent":
        world.add_parent(ns, entry["name"])
    else:
        raise ValueError(f"unknown journal op {op!r}")


def _touches(entry: dict) -> bool:
    """Can this failed operation have changed something? (changelink applies in order, without
    rollback; `set ... up` still applies promisc/allmulti.) Failed adds and deletes change nothing."""
    return entry["op"] == "set"
