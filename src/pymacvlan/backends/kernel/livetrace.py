"""`trace --backend kernel`: the kernel's own macvlan, explained frame by frame.

For each parent a :class:`.mirror.Mirror` keeps the engine in the kernel's state. Packet
sockets watch the frames (read-only: no promiscuous mode, nothing sent):

- an ETH_P_ALL socket on the parent sees what arrives from the wire *before* macvlan's
  rx_handler (ptype_all taps run first), and, as PACKET_OUTGOING, what the parent sends;
- an ETH_P_ALL socket on each child, in the child's namespace, sees what the child transmits
  (PACKET_OUTGOING, before macvlan_start_xmit) and what it receives.

Frames are explained in the order the kernel handled them, a cause before its effects (a
station's ARP request before the replies it caused), whichever socket they were read from:
every tap asks for the kernel's timestamp of each frame (SO_TIMESTAMPNS: stamped when the
device received it, or when dev_queue_xmit_nit() copied it to the taps on its way out), and
each pass merges the frames of all taps by that timestamp. At an equal timestamp a frame a
device sent comes before one a device received.

A child's frame can come back into the parent (a bridge-mode child's unicast to a bridge
sibling goes through dev_forward_skb; a hairpin wire reflects what leaves): the parent's tap
sees it as incoming. Such an echo of a frame a child just sent is part of that child's
event, not a new frame from the wire. Causality makes this safe: each pass reads the
netlink listeners, then the parent's tap, then the children's (an echo in the parent's queue
was caused by a frame already in its child's queue), and the merge puts the cause first.

The trace ends, with a one-line reason (:class:`SourceGone`), when what it watches goes away:
the parent is deleted, or the namespace it was given by name is deleted.

``verify``: every child's incoming frames (and the parent's outgoing copies, ``@wire``) are
matched to the open event with the same bytes; an event closes once its frame has been quiet
for ``quiet`` seconds (floods go through macvlan's bc workqueue, reflections through a
bridge), then ``observed`` and ``agrees`` are added. The comparison is conformance's
(:func:`~pymacvlan.scenario.compare.diff_results`): children whose receipt hinged on their
salted multicast filter are not compared. The parent's own stack (``@parent``) is not
observable without changing the host and is never compared.
"""

from __future__ import annotations

import os
import select
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ...model import KernelError, PacketType
from ...scenario.compare import diff_results
from ..sim import frame_event
from .capture import ETH_P_ALL, Tap, _packet_socket, ipv4_datagram_key, ipv4_fragment_key
from .mirror import Mirror

OUTGOING = PacketType.OUTGOING
_PKTTYPES = {t.value: t.name for t in PacketType}
#: how long a child's frame may come back into the parent as an echo of it
ECHO_WINDOW = 0.5
#: a child gone from the mirror was probably moved to another namespace: look again this soon
RESCAN_AFTER_MOVE = 0.3


class SourceGone(KernelError):
    """What the trace watched is gone (its namespace deleted): the trace ends with this reason."""


def _ns_identity(ns: str) -> tuple[int, int] | None:
    """(st_dev, st_ino) of a namespace given by name (/run/netns/NAME); None for a /proc path."""
    if ns.startswith("/"):
        return None
    try:
        st = os.stat(f"/run/netns/{ns}")
    except OSError:
        return None
    return st.st_dev, st.st_ino


@dataclass
class Open:
    """An explained frame waiting for the kernel's receipts (``verify``)."""

    mirror: Mirror
    event: dict
    frame: bytes
    step: dict
    result: dict
    children: list[str]
    seen: dict[str, list[dict]] = field(default_factory=dict)
    last: float = 0.0
    start: float = 0.0

    def expected(self, where: str) -> int:
        """How many copies the engine says ``where`` (@wire or a child) receives."""
        obs = self.result.get("observed") or {}
        return len(obs.get("wire", []) if where == "@wire" else obs.get("children", {}).get(where, []))

    def matches(self, data: bytes) -> bool:
        if data == self.frame:
            return True
        key = ipv4_fragment_key(self.frame)
        return key is not None and ipv4_datagram_key(data) == key


@dataclass
class Watch:
    """The taps of one mirror: the parent's and each child's."""

    mirror: Mirror
    parent: Tap | None = None
    children: dict[str, Tap] = field(default_factory=dict)
    echoes: deque = field(default_factory=deque)  # (frame, until)

    def open_taps(self) -> None:
        m = self.mirror
        if self.parent is None:
            self.parent = Tap("@parent", m.parent, _packet_socket(m.ns, m.parent, ETH_P_ALL), outgoing=True)
            self.parent.stamp()
        for name in list(self.children):
            if name not in m.where:
                self.children.pop(name).sock.close()
        for name, where in m.where.items():
            if name not in self.children:
                ifname = m.seen[name]["ifname"]
                try:
                    tap = Tap(name, ifname, _packet_socket(where.ns, ifname, ETH_P_ALL), outgoing=True)
                    tap.stamp()
                    self.children[name] = tap
                except OSError as e:
                    m.notes.append(f"cannot watch {name}: {e}")

    def close(self) -> None:
        for tap in [self.parent, *self.children.values()]:
            if tap is not None:
                tap.sock.close()
        self.parent, self.children = None, {}


class KernelTracer:
    """Explains the frames of the kernel's macvlan parents in namespace ``ns``.

    ``parents``: which (None: every device with a macvlan/macvtap child). ``accept(frame)``
    is the cheap filter run before the engine sees a frame.
    """

    def __init__(self, ns: str, parents: list[str] | None = None, wire: str = "plain", verify: bool = False,
                 accept: Callable[[bytes], bool] = lambda f: True, quiet: float = 0.05, cap: float = 1.0,
                 poll_groups: float = 0.5, rescan: float = 10.0) -> None:
        self.ns, self.wire, self.verify, self.accept = ns, wire, verify, accept
        self.quiet, self.cap, self.poll_groups, self.rescan = quiet, cap, poll_groups, rescan
        self.names = parents
        self.ns_identity = _ns_identity(ns)
        self.watches: list[Watch] = []
        self.open: list[Open] = []
        self.notes: list[str] = []

    # -- setup ------------------------------------------------------------------------------------
    def start(self) -> None:
        names = self.names or self._parents_with_children()
        if not names:
            raise KernelError("ENODEV", "no macvlan or macvtap children here to trace",
                              "name the parent with --at, or give its namespace with -n")
        try:
            for name in names:
                m = Mirror(self.ns, name, self.wire)
                m.build()
                w = Watch(m)
                self.watches.append(w)
                w.open_taps()
        except BaseException:
            self.close()
            raise

    def _parents_with_children(self) -> list[str]:
        from pyroute2 import IPRoute

        from ...netns import in_netns
        from .mirror import children_of

        spaces: dict = {}
        try:
            lowers = {v["link"] for _w, v in children_of(self.ns, None, spaces)}
        finally:
            for space in spaces.values():
                space.close()
        with in_netns(self.ns):
            ipr = IPRoute()
        try:
            names = {m["index"]: m.get_attr("IFLA_IFNAME") for m in ipr.get_links()}
        finally:
            ipr.close()
        return [names[i] for i in sorted(lowers) if i in names]

    def close(self) -> None:
        for w in self.watches:
            w.close()
            w.mirror.close()
        self.watches = []

    # -- the loop -----------------------------------------------------------------------------------
    def events(self) -> Iterator[dict]:
        """Explained frames, forever (the caller stops iterating)."""
        next_groups = time.monotonic() + self.poll_groups
        next_scan = time.monotonic() + self.rescan
        while True:
            now = time.monotonic()
            timeout = min(next_groups, next_scan) - now
            if self.open:
                timeout = min(timeout, min(min(o.last + self.quiet, o.start + self.cap) for o in self.open) - now)
            fds = [fd for w in self.watches for fd, _ in w.mirror.event_sockets()]
            fds += [t.sock.fileno() for w in self.watches for t in [w.parent, *w.children.values()] if t]
            select.select(fds, [], [], max(0.0, timeout))
            now = time.monotonic()
            scan = now >= next_scan
            if scan:
                next_scan = now + self.rescan
            for w in self.watches:
                dirty = [space.drain() for _fd, space in w.mirror.event_sockets()]
                if any(dirty) or scan or now >= next_groups:
                    if self._sync(w, scan):
                        # a child left the parent's namespace: look for it where it went, soon
                        next_scan = min(next_scan, now + RESCAN_AFTER_MOVE)
            if now >= next_groups:
                next_groups = now + self.poll_groups
                self._check_namespace()
            for w in self.watches:
                yield from self._frames(w)
            yield from self._close_quiet()

    def _check_namespace(self) -> None:
        """A namespace given by name that is deleted (or replaced) ends the trace: our sockets
        keep the old one alive, so nothing else would ever say so."""
        if self.ns_identity is not None and _ns_identity(self.ns) != self.ns_identity:
            raise SourceGone("ENOENT", f"the network namespace {self.ns} was deleted; the trace ends",
                             "trace again once it exists: pymacvlan trace --backend kernel -n NAME")

    def _sync(self, w: Watch, rescan: bool) -> bool:
        """Bring the mirror up to date; True when a child disappeared from it."""
        m = w.mirror
        before = set(m.where)
        try:
            if m.sync(rescan):
                w.open_taps()
        except KernelError:
            raise
        except Exception as e:  # a mirror that went wrong is rebuilt, not trusted
            self._check_namespace()  # unless its namespace is gone: then the trace ends, saying so
            m.notes.append(f"rebuilding the mirror after {type(e).__name__}: {e}")
            m.build()
            w.close()
            w.open_taps()
        self.notes += m.notes
        m.notes.clear()
        return bool(before - set(m.where))

    def _frames(self, w: Watch) -> Iterator[dict]:
        """One pass over the taps, read parent first (see the module doc), explained in the
        order the kernel stamped the frames: a cause before its effects."""
        got: list[tuple[int, int, int, str, bytes, int]] = []
        fallback = time.time_ns()  # a frame without a stamp keeps its reading order
        taps = ([("@parent", w.parent)] if w.parent else []) + list(w.children.items())
        for name, tap in taps:
            for ts, data, pkttype in tap.read_stamped():
                got.append((ts or fallback, 0 if pkttype == OUTGOING else 1, len(got), name, data, pkttype))
        got.sort()
        now = time.monotonic()
        while w.echoes and w.echoes[0][1] < now:
            w.echoes.popleft()
        for ts, _sent, _i, name, data, pkttype in got:
            if name == "@parent":
                if pkttype == OUTGOING:
                    self._observe("@wire", data, None, w)
                elif not any(data == e for e, _ in w.echoes):
                    yield from self._explain(w, "wire", "wire", data, ts)
            elif pkttype == OUTGOING:
                w.echoes.append((data, now + ECHO_WINDOW))
                yield from self._explain(w, f"child:{name}", name, data, ts)
            else:
                self._observe(name, data, pkttype, w)

    def _explain(self, w: Watch, at: str, origin: str, frame: bytes, stamp: int = 0) -> Iterator[dict]:
        if len(frame) < 14 or not self.accept(frame):
            return
        m = w.mirror
        step: dict = {"do": "inject", "at": at, "frame": frame.hex()}
        if at == "wire" and len(frame) > m.sim.engine.lower.mtu + 18 or \
                at != "wire" and len(frame) > m.sim.engine.children[origin].mtu + 18:
            step["gso"] = True  # GRO/GSO super-frames go through whole
        m.sim.trace = True
        res = m.sim.step(step)
        if not res.get("ok"):  # the mirror lags (a child the kernel has up is down here)
            self._sync(w, False)
            res = m.sim.step(step)
        if not res.get("ok"):
            self.notes.append(f"cannot explain a frame from {origin}: {res.get('errno')} {res.get('message')}")
            return
        ev = frame_event(m.parent, origin, frame, res, self.wire)
        ev["time"] = stamp / 1e9 if stamp else time.time()  # when the kernel handled it
        if not self.verify:
            yield ev
            return
        now = time.monotonic()
        self.open.append(Open(m, ev, frame, step, res, list(m.sim.engine.children), last=now, start=now))

    def _observe(self, where: str, data: bytes, pkttype: int | None, w: Watch) -> None:
        if not self.verify:
            return
        # identical frames sent back to back (keepalived's burst of five GARPs) are each open: a copy
        # goes to the first one still short of the copies the engine predicted there, not all to the first
        cands = [o for o in self.open if o.mirror is w.mirror and o.matches(data)]
        if not cands:
            return
        o = next((o for o in cands if len(o.seen.get(where, [])) < o.expected(where)), cands[0])
        entry = {"hex": data.hex()} if pkttype is None else \
            {"pkttype": _PKTTYPES.get(pkttype, str(pkttype)), "hex": data.hex()}
        o.seen.setdefault(where, []).append(entry)
        o.last = time.monotonic()

    def _close_quiet(self) -> Iterator[dict]:
        now = time.monotonic()
        keep = []
        for o in self.open:
            if now < min(o.last + self.quiet, o.start + self.cap):
                keep.append(o)
            else:
                yield self._verdict(o)
        self.open = keep

    def _verdict(self, o: Open) -> dict:
        """``observed`` and ``agrees``, and on a disagreement what it takes to reproduce it."""
        engine: dict = {"ok": True, "observed": {**o.result["observed"], "parent": []}}
        if o.result.get("salted"):
            engine["salted"] = o.result["salted"]
        kernel: dict = {"ok": True, "observed": {"wire": o.seen.get("@wire", []), "parent": [],
                                           "children": {n: o.seen.get(n, []) for n in o.children}}}
        diffs = diff_results([o.step], {"backend": "engine", "results": [engine]},
                             {"backend": "kernel", "results": [kernel]})
        ev = o.event
        ev["observed"] = sorted(n for n, v in o.seen.items() if v)
        ev["agrees"] = not diffs
        if diffs:
            step = {k: v for k, v in o.step.items() if k != "gso"}
            step["expect"] = {"observed": {"wire": kernel["observed"]["wire"],
                                           "children": kernel["observed"]["children"]}}
            ev["disagreement"] = {"differences": diffs, "mirror": o.mirror.state(),
                                  "scenario": o.mirror.scenario(step)}
        return ev
