"""The engine's mirror of a live host: the kernel's macvlan/macvtap children of one parent.

The mirror is a scenario. What rtnetlink (and each child's multicast list) says about the
parent and its children becomes scenario steps (`add`, `set`, `join`, `leave`, `del`,
`parent`) applied to a :class:`~pymacvlan.backends.sim.Simulation`, so the decisions come from
the one engine, and the journal of steps is a ready scenario file: `replay` rebuilds the same
mirror anywhere, history included (a child's filter that the kernel left stale stays stale).

Children are found wherever they live: in the parent's namespace, and in every other
namespace this process can reach (``/run/netns`` and ``/proc/*/ns/net``), where a macvlan
whose IFLA_LINK is the parent's ifindex and whose IFLA_LINK_NETNSID is the parent's
namespace (RTM_GETNSID answers which id that namespace has there) is one of ours.
Nothing is ever changed: only dumps, RTM_GETNSID and reads of ``dev_mcast``.

Limits (named, not hidden): the parent's unicast filter (IFF_UNICAST_FLT) is not on netlink;
it is inferred (an up child whose address did not make the parent promiscuous means there is
one). Groups are polled, the kernel sends no event for `ip maddr`. A child moved between
namespaces is seen as deleted and added again (moving closes it anyway).
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pyroute2 import IPRoute

from ...engine import STACK_GROUPS
from ...model import MODE_NAMES, KernelError, Mode, flag_names, mac_str
from ...netns import in_netns, netns_path
from ..sim import Simulation
from . import nl  # noqa: F401  (registers the full macvlan attribute tables)
from .nl import IFF_ALLMULTI, IFF_PROMISC, IFF_UP

RTMGRP_LINK = 1
NETLINK_ROUTE = 0
NLM_F_REQUEST = 1
RTM_NEWNSID, RTM_GETNSID = 88, 90
NETNSA_NSID, NETNSA_FD = 1, 3
STACK = {mac_str(g) for g in STACK_GROUPS}


def netns_key(path: str) -> tuple[int, int]:
    """A namespace's identity: the (device, inode) of its nsfs file."""
    st = os.stat(netns_path(path))
    return st.st_dev, st.st_ino


def reachable_namespaces() -> dict[tuple[int, int], str]:
    """Every network namespace this process can enter, by identity: named ones first."""
    found: dict[tuple[int, int], str] = {}
    candidates = []
    if os.path.isdir("/run/netns"):
        candidates += [os.path.join("/run/netns", n) for n in sorted(os.listdir("/run/netns"))]
    candidates += [f"/proc/{p}/ns/net" for p in os.listdir("/proc") if p.isdigit()]
    for path in candidates:
        try:
            key = netns_key(path)
        except OSError:
            continue
        found.setdefault(key, path)
    return found


def short_ns(path: str) -> str:
    """How a namespace is named to the user: its `ip netns` name, else its path."""
    return os.path.basename(path) if path.startswith("/run/netns/") else path


def _nsid(space: str, target: str) -> int | None:
    """The id namespace ``target`` has inside namespace ``space`` (None: it has none).

    RTM_GETNSID with NETNSA_FD, by hand: pyroute2 0.9.7 has no call for it. It only looks
    up (peernet2id), it never assigns an id."""
    fd = os.open(netns_path(target), os.O_RDONLY)
    try:
        with in_netns(space):
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        with sock:
            sock.settimeout(1.0)
            body = struct.pack("=B3x", socket.AF_UNSPEC) + struct.pack("=HHI", 8, NETNSA_FD, fd)
            sock.send(struct.pack("=IHHII", 16 + len(body), RTM_GETNSID, NLM_F_REQUEST, 1, 0) + body)
            reply = sock.recv(4096)
    finally:
        os.close(fd)
    length, kind = struct.unpack_from("=IH", reply)
    if kind != RTM_NEWNSID:
        return None
    offset = 20  # nlmsghdr + rtgenmsg (padded)
    while offset + 4 <= length:
        alen, atype = struct.unpack_from("=HH", reply, offset)
        if atype == NETNSA_NSID and alen >= 8:
            nsid = struct.unpack_from("=i", reply, offset + 4)[0]
            return None if nsid < 0 else nsid
        offset += (alen + 3) & ~3
    return None


def link_view(msg: Any) -> dict[str, Any]:
    """What the mirror needs of one RTM_NEWLINK: the parent's or a child's state."""
    flags = msg["flags"]
    view: dict[str, Any] = {
        "index": msg["index"], "ifname": msg.get_attr("IFLA_IFNAME"),
        "mac": msg.get_attr("IFLA_ADDRESS"), "mtu": msg.get_attr("IFLA_MTU"),
        "up": bool(flags & IFF_UP), "promisc": bool(flags & IFF_PROMISC),
        "allmulticast": bool(flags & IFF_ALLMULTI), "carrier": bool(msg.get_attr("IFLA_CARRIER")),
        "promiscuity": msg.get_attr("IFLA_PROMISCUITY") or 0,
        "link": msg.get_attr("IFLA_LINK"), "link_netnsid": msg.get_attr("IFLA_LINK_NETNSID"),
    }
    info = msg.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    view["kind"] = kind
    if kind in ("macvlan", "macvtap"):
        data = info.get_attr("IFLA_INFO_DATA")
        prefix = f"IFLA_{kind.upper()}_"
        mode = data.get_attr(prefix + "MODE") or 0
        view["mode"] = MODE_NAMES[Mode(mode)] if mode in set(Mode) else str(mode)
        view["flags"] = flag_names(data.get_attr(prefix + "FLAGS") or 0)
        view["bcqueuelen"] = data.get_attr(prefix + "BC_QUEUE_LEN")
        cutoff = data.get_attr(prefix + "BC_CUTOFF")
        view["bclim"] = 1 if cutoff is None else cutoff
        macs: list[str] = []
        listed = data.get_attr(prefix + "MACADDR_DATA")
        if mode == Mode.SOURCE and listed is not None:
            macs = [mac for name, mac in listed["attrs"] if name.endswith("_MACADDR")]
        view["macaddr"] = macs
    return view


def read_groups(ns: str) -> dict[int, list[str]]:
    """Every device's link-layer multicast list in namespace ``ns`` (/proc/net/dev_mcast)."""
    out: dict[int, list[str]] = {}
    with in_netns(ns):
        with open("/proc/thread-self/net/dev_mcast") as f:
            text = f.read()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 5:
            raw = parts[4]
            out.setdefault(int(parts[0]), []).append(":".join(raw[i:i + 2] for i in range(0, len(raw), 2)))
    return out


def children_of(ns: str, parent_index: int | None = None,
                keep: dict[str, Netns] | None = None) -> list[tuple[Where, dict]]:
    """The macvlan/macvtap children of devices in namespace ``ns`` (of one device with
    ``parent_index``), wherever they live. Namespaces holding some are added to ``keep``
    (their sockets stay open for the mirror's events)."""
    found: list[tuple[Where, dict]] = []
    here = netns_key(ns)
    keep = {} if keep is None else keep
    for key, path in [(here, ns)] + [(k, p) for k, p in reachable_namespaces().items() if k != here]:
        try:
            space = keep.get(path) or Netns.open(path)
        except OSError:
            continue
        try:
            nsid = None if key == here else _nsid(path, ns)
            if key != here and nsid is None:
                continue
            for m in space.ipr.get_links():
                v = link_view(m)
                if v["kind"] in ("macvlan", "macvtap") and v["link_netnsid"] == nsid \
                        and parent_index in (None, v["link"]):
                    found.append((Where(path, v["index"]), v))
        except OSError:
            continue
        finally:
            if path not in keep:
                if any(w.ns == path for w, _ in found):
                    keep[path] = space
                else:
                    space.close()
    return found


@dataclass
class Where:
    """Where a child lives: its namespace (a name or path) and its ifindex there."""

    ns: str
    index: int


@dataclass
class Netns:
    """A namespace the mirror watches: a dump socket and a RTMGRP_LINK listener."""

    path: str
    ipr: IPRoute
    events: socket.socket

    @classmethod
    def open(cls, path: str) -> Netns:
        with in_netns(path):
            ipr = IPRoute()
            ev = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, NETLINK_ROUTE)
        try:
            ev.bind((0, RTMGRP_LINK))
        except OSError:
            ev.close()
            ipr.close()
            raise
        return cls(path, ipr, ev)

    def drain(self) -> bool:
        """Forget queued notifications; True when there were any (the dump says the rest)."""
        seen = False
        while True:
            try:
                if not self.events.recv(1 << 16):
                    return seen
                seen = True
            except BlockingIOError:
                return seen
            except OSError:  # ENOBUFS: we missed some; a dump is due anyway
                seen = True

    def close(self) -> None:
        self.events.close()
        self.ipr.close()


@dataclass
class Mirror:
    """One parent and its children, mirrored into a :class:`Simulation` by scenario steps."""

    ns: str  # the parent's namespace (name or path)
    parent: str  # the parent's name there
    wire: str = "plain"
    parent_index: int = 0
    _sim: Simulation | None = None
    #: the steps applied so far (with the scenario head from :meth:`scenario`, a ready file)
    journal: list[dict] = field(default_factory=list)
    head: dict = field(default_factory=dict)
    #: child name → where it lives, and the last state the mirror applied
    where: dict[str, Where] = field(default_factory=dict)
    seen: dict[str, dict] = field(default_factory=dict)
    groups: dict[str, set[str]] = field(default_factory=dict)
    parent_seen: dict = field(default_factory=dict)
    spaces: dict[str, Netns] = field(default_factory=dict)
    #: what went wrong while mirroring (a step the engine refused): shown, then rebuilt
    notes: list[str] = field(default_factory=list)
    _promisc_said: bool | None = None

    @property
    def sim(self) -> Simulation:
        if self._sim is None:
            raise RuntimeError("the mirror is not built yet (Mirror.build)")
        return self._sim

    # -- building -----------------------------------------------------------------------------
    def build(self) -> None:
        """Dump everything and start a fresh journal."""
        self.close()
        self.spaces[self.ns] = Netns.open(self.ns)
        msgs = [m for m in self.spaces[self.ns].ipr.get_links() if m.get_attr("IFLA_IFNAME") == self.parent]
        if not msgs:
            raise KernelError("ENODEV", f'Cannot find device "{self.parent}"' +
                              (f" in namespace {short_ns(self.ns)}" if self.ns != "/proc/self/ns/net" else ""),
                              "name a parent with --at; see `ip link show`")
        pv = link_view(msgs[0])
        self.parent_index = pv["index"]
        children = self._find_children()
        up_with_address = any(v["up"] and v["mode"] != "passthru" for _, v in children.values())
        self.head = {"parent": {"mac": pv["mac"], "mtu": pv["mtu"],
                                "unicast_filter": up_with_address and pv["promiscuity"] == 0},
                     "wire": self.wire}
        self._sim = Simulation({**self.head, "seed": 0})
        self.sim.engine.lower.name = self.parent
        self.journal, self.where, self.seen, self.groups, self.parent_seen = [], {}, {}, {}, {}
        self._parent_steps(pv)
        for name, (where, view) in sorted(children.items(), key=lambda kv: kv[1][1]["index"]):
            self._add(name, where, view)
        self._sync_groups()
        self._check_parent(pv)

    def _find_children(self) -> dict[str, tuple[Where, dict]]:
        """Every macvlan/macvtap on the parent, by a name unique among them."""
        found = children_of(self.ns, self.parent_index, self.spaces)
        names = [v["ifname"] for _, v in found]
        out = {}
        for where, v in found:
            name = v["ifname"]
            if names.count(name) > 1 or name.startswith("@"):
                name = f"{name}@{short_ns(where.ns)}"
            out[name] = (where, v)
        return out

    # -- steps -----------------------------------------------------------------------------------
    def _apply(self, step: dict) -> None:
        step = {k: v for k, v in step.items() if v is not None}
        self.journal.append(step)
        res = self.sim.step(step)
        if not res.get("ok"):
            self.notes.append(f"the engine refused {step}: {res.get('errno')} {res.get('message')}")

    def _parent_steps(self, pv: dict) -> None:
        old = self.parent_seen
        step: dict = {"do": "parent"}
        if old.get("mac", self.head["parent"]["mac"]) != pv["mac"]:
            step["mac"] = pv["mac"]
        if old.get("mtu", self.head["parent"]["mtu"]) != pv["mtu"]:
            step["mtu"] = pv["mtu"]
        if old.get("up", True) != pv["up"]:
            step["up"] = pv["up"]
        # veth and NICs drop carrier while down: only an up parent tells the wire's state
        if pv["up"] and old.get("carrier", True) != pv["carrier"]:
            step["carrier"] = pv["carrier"]
        if len(step) > 1:
            self._apply(step)
        self.parent_seen = {**pv, "carrier": pv["carrier"] if pv["up"] else old.get("carrier", True)}

    def _add(self, name: str, where: Where, v: dict) -> None:
        step: dict = {"do": "add", "name": name, "type": v["kind"], "mode": v["mode"], "mac": v["mac"],
                      "mtu": v["mtu"], "flags": v["flags"], "bcqueuelen": v["bcqueuelen"]}
        if v["mode"] == "source" and v["macaddr"]:
            step["macaddr"] = v["macaddr"]
        port = self.sim.engine.port
        if v["bclim"] != (port.bc_cutoff if port is not None else 1):
            step["bclim"] = v["bclim"]
        self._apply(step)
        self.where[name] = where
        self.seen[name] = {**v, "up": False, "promisc": False, "allmulticast": False}
        self.groups[name] = set()
        self._set(name, v)

    def _set(self, name: str, v: dict) -> None:
        """One `ip link set` with what changed: changelink's part first, then do_setlink's."""
        old = self.seen[name]
        step: dict = {"do": "set", "name": name}
        if old["mode"] != v["mode"]:
            step["mode"] = v["mode"]
        for key in ("flags", "bcqueuelen", "bclim"):
            if old[key] != v[key]:
                step[key] = v[key]
        if v["mode"] == "source" and (old["macaddr"] != v["macaddr"] or old["mode"] != "source"):
            step["macaddr"] = {"op": "set", "macs": v["macaddr"]} if v["macaddr"] else {"op": "flush", "macs": []}
        for key in ("mac", "mtu", "up", "promisc", "allmulticast"):
            if old[key] != v[key]:
                step[key] = v[key]
        if len(step) > 2:
            self._apply(step)
        self.seen[name] = v

    def _sync_groups(self) -> None:
        """join/leave steps from the children's multicast lists (the stack's own groups come
        and go with `up` in the engine)."""
        by_ns: dict[str, dict[int, list[str]]] = {}
        for name, where in self.where.items():
            if where.ns not in by_ns:
                try:
                    by_ns[where.ns] = read_groups(where.ns)
                except OSError:
                    by_ns[where.ns] = {}
            now = {g for g in by_ns[where.ns].get(where.index, []) if g not in STACK}
            old = self.groups[name]
            for g in sorted(old - now):
                self._apply({"do": "leave", "name": name, "group": g})
            for g in sorted(now - old):
                self._apply({"do": "join", "name": name, "group": g})
            self.groups[name] = now

    # -- keeping current -----------------------------------------------------------------------
    def sync(self, rescan: bool = False) -> list[str]:
        """Bring the mirror up to date with the kernel; the names of children added or removed.

        ``rescan`` also looks through every namespace for new children (a child created in
        the parent's namespace is seen without it)."""
        before = set(self.where)
        try:
            links = {m["index"]: m for m in self.spaces[self.ns].ipr.get_links()}
        except OSError:
            links = {}
        if self.parent_index not in links:
            raise KernelError("ENODEV", f"the parent {self.parent} is gone")
        pv = link_view(links[self.parent_index])
        self._parent_steps(pv)
        current = self._find_children() if rescan else None
        by_ns: dict[str, dict[int, Any]] = {self.ns: links}
        for name in list(self.where):
            where = self.where[name]
            if where.ns not in by_ns:
                try:
                    by_ns[where.ns] = {m["index"]: m for m in self.spaces[where.ns].ipr.get_links()}
                except (OSError, KeyError):
                    by_ns[where.ns] = {}
            msg = by_ns[where.ns].get(where.index)
            v = link_view(msg) if msg is not None else None
            if v is None or v["kind"] != self.seen[name]["kind"] or v["link"] != self.parent_index:
                self._apply({"do": "del", "name": name})
                del self.where[name], self.seen[name], self.groups[name]
                continue
            self._set(name, v)
        if current is None and self.ns in by_ns:  # new children beside the parent
            current = {}
            for m in by_ns[self.ns].values():
                v = link_view(m)
                if v["kind"] in ("macvlan", "macvtap") and v["link"] == self.parent_index \
                        and v["link_netnsid"] is None:
                    current[v["ifname"]] = (Where(self.ns, v["index"]), v)
        known = {(w.ns, w.index) for w in self.where.values()}
        for name, (where, v) in sorted((current or {}).items(), key=lambda kv: kv[1][1]["index"]):
            if (where.ns, where.index) not in known:
                while name in self.where:
                    name += "'"
                self._add(name, where, v)
        self._sync_groups()
        self._check_parent(pv)
        return sorted(set(self.where) ^ before)

    def _check_parent(self, pv: dict) -> None:
        """Say so (once per state) when the parent's promiscuity has a cause macvlan does not
        know (a capture without -p, another driver): its port filters then differ from the
        engine's, and multicast decisions may too. Not expressible as a scenario step."""
        real, mine = pv["promiscuity"] > 0, self.sim.engine.lower.promiscuity > 0
        if real != mine and self._promisc_said != real:
            self.notes.append(f"{self.parent} is {'' if real else 'not '}promiscuous (promiscuity "
                              f"{pv['promiscuity']}) where macvlan alone would make it "
                              f"{'' if mine else 'not '}so: multicast filters may differ from the kernel's")
        self._promisc_said = real if real != mine else None

    def event_sockets(self) -> Iterator[tuple[int, Netns]]:
        for space in self.spaces.values():
            yield space.events.fileno(), space

    # -- output ----------------------------------------------------------------------------------
    def scenario(self, *more: dict) -> dict:
        """The mirror as a scenario file: the journal, then ``more`` steps."""
        return {"description": f"mirror of {self.parent} (pymacvlan trace --backend kernel)",
                **self.head, "steps": [*self.journal, *more]}

    def state(self) -> dict:
        return self.sim.step({"do": "show"})["state"]

    def close(self) -> None:
        for space in self.spaces.values():
            space.close()
        self.spaces = {}
