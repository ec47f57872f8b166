"""The userspace link driver: a client of the ``pymacvlan daemon`` control socket.

The daemon owns the datapath (AF_PACKET parent, TAP children, macvtap endpoints); this
driver only sends it requests through :class:`pymacvlan.daemon.client.Client` (the wire is
:mod:`pymacvlan.daemon.codec`). The socket is ``--socket``/``socket_path``, else
``$PYMACVLAN_SOCKET``, else ``/run/pymacvlan/control.sock``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from ..daemon.client import Client, Connection, socket_path
from ..daemon.codec import DEFAULT_SOCKET
from ..model.errors import KernelError
from ..model.link import LinkChange, LinkRequest
from .base import BaseDriver, TraceRequest

__all__ = ["Connection", "DEFAULT_SOCKET", "Driver", "socket_path"]


class Driver(BaseDriver):
    """:class:`~pymacvlan.links.LinkDriver` over the daemon's control socket."""

    backend = "userspace"
    vlan_parents = True  # (i21) the datapath tags and untags a VLAN parent itself
    #: a child is a TAP the daemon tracks in the namespace it made it in: a runtime that moves the
    #: device itself (Docker's remote drivers: the driver's link is moved into the container) loses it
    movable_children = False

    def __init__(self, socket: str | None = None, timeout: float = 60.0, netns: str | None = None,
                 socket_path: str | None = None) -> None:
        self.client = Client(socket or socket_path, timeout)
        self.socket_path = self.client.path
        #: `pymacvlan -n NS link ...`: the namespace this driver works in (children's, here)
        self.netns = netns

    def add(self, req: LinkRequest) -> dict:
        """The daemon's reply: name, ifindex, address, and a macvtap's endpoint."""
        if req.netns is None and self.netns is not None:
            req = dataclasses.replace(req, netns=self.netns)
        return self.client.link_add(req)

    def set(self, name: str, change: LinkChange, netns: str | None = None) -> None:
        self.client.link_set(name, change, netns or self.netns)

    def delete(self, name: str, netns: str | None = None) -> None:
        self.client.link_del(name, netns or self.netns)

    def show(self, name: str | None = None, kind: str | None = None, netns: str | None = None) -> list[dict]:
        return self.client.link_show(name, kind, netns or self.netns)

    def stats(self, name: str | None = None) -> dict:
        """Datapath counters, engine drops by reason and per-child stats64, per parent."""
        raw = self.client.stats(name, self.netns)
        parents = {}
        for pname, st in raw["parents"].items():
            children = {}
            for key, c in st["children"].items():
                row = {"rx": c["rx"], "tx": c["tx"], "ifname": c.get("ifname", key), "netns": c.get("netns"),
                       "kind": c.get("kind"), "mode": c.get("mode"), "up": c.get("up")}
                if "endpoint" in c:
                    row["endpoint"] = c["endpoint"]
                children[key] = row
            par = st.get("parent") or {}
            parents[pname] = {"children": children, "engine_drops": st.get("engine_drops", {}),
                              "datapath": st.get("datapath", {}), "lower": st.get("lower"),
                              "path": st.get("path"),
                              "parent_socket": {k: par.get(k) for k in ("drops", "rx_frames", "tx_frames",
                                                                         "kernel_drops") if k in par}}
        return {"backend": self.backend, "daemon": raw.get("daemon", {}), "parents": parents}

    def trace(self, req: TraceRequest) -> Iterator[dict]:
        """Explained frames matching the filter, as the daemon sees them, until closed."""
        from ..daemon.trace import ethertype_value

        et = f"0x{ethertype_value(req.ethertype):04x}" if req.ethertype else None
        if req.mac:
            from ..model.mac import parse_mac

            try:
                parse_mac(req.mac)
            except ValueError as e:
                raise KernelError("EINVAL", str(e)) from None
        # subscribed before the first item: a refusal (ENODEV for --child, no daemon) raises here
        c = Connection(self.client.path, None)
        try:
            c.call({"op": "trace", "mac": req.mac, "ethertype": et, "child": req.child})
        except BaseException:
            c.close()
            raise
        what = ", ".join(f"{k} {v}" for k, v in (("mac", req.mac), ("ethertype", et), ("child", req.child)) if v)
        return _events(c, what, self.client.path)

    def probe(self, parent: str | None = None) -> None:
        """The daemon answers (it opens parents itself, in its own namespace)."""
        try:
            self.client.hello()
        except KernelError as e:
            raise KernelError(e.errno_name, f"the pymacvlan daemon does not answer: {e.message}", e.advice) from None

    def host_access(self, name: str, parent: str, routes: list[str]) -> list[str]:
        """The host child ``name`` is the daemon's TAP where its parents are: give it the
        parent's addresses and the routes there (:func:`.hostnet.give_host_access`); the
        datapath switches between it and the bridge-mode children as macvlan does."""
        from pyroute2 import IPRoute

        from ..netns import in_netns
        from .hostnet import give_host_access

        where = self.client.hello().get("netns")
        with in_netns(where):
            ipr = IPRoute()
        try:
            return give_host_access(ipr, name, parent, routes)
        finally:
            ipr.close()

    def topology(self, netns: str | None = None) -> list[Any]:
        """Every child the daemon has, whatever its namespace, under its parent."""
        from ..graph import from_links

        return from_links(self.client.link_show(None, None, netns or self.netns))


def _events(c: Connection, what: str, path: str) -> Iterator[dict]:
    try:
        yield {"info": f"tracing {what or 'every frame'} (Ctrl-C to stop)"}
        while True:
            ev = c.recv()
            if ev is None:
                break
            yield ev
        # the daemon closed the stream: it stopped (or restarted); a trace that says nothing and
        # exits 0 here would read as "no frames matched"
        yield {"end": f"ECONNRESET: the daemon on {path} stopped; the trace ends (start it again and re-run "
                      "the trace)"}
    finally:
        c.close()
