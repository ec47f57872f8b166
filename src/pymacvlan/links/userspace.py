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
from ..model.link import LinkChange, LinkRequest

__all__ = ["Connection", "DEFAULT_SOCKET", "Driver", "socket_path"]


class Driver:
    """:class:`~pymacvlan.links.LinkDriver` over the daemon's control socket."""

    backend = "userspace"

    def __init__(self, socket_path: str | None = None, timeout: float = 60.0, netns: str | None = None,
                 **_kw: Any) -> None:
        self.client = Client(socket_path, timeout)
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

    def stats(self, name: str | None = None, netns: str | None = None) -> dict:
        """Datapath counters, engine drops by reason and per-child stats64, per parent."""
        return self.client.stats(name, netns or self.netns)

    def trace(self, mac: str | None = None, ethertype: str | int | None = None,
              child: str | None = None) -> Iterator[dict]:
        """Explained frames matching the filter, as the daemon sees them, until closed."""
        return self.client.trace(mac, ethertype, child)
