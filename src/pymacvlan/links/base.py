"""The ops table every backend fills: the verbs the front ends call, and the refusal for a verb
a backend cannot do.

As macvlan.c fills ``rtnl_link_ops``/``net_device_ops`` and the core never asks which driver it
has, a front end (the CLI, ``apply``, the CNI plugin, the Docker/netavark/DHCP front ends) gets a
driver from :func:`pymacvlan.links.open_driver` and calls these verbs; it never compares backend
names. A verb a backend cannot do raises one line, ``EOPNOTSUPP`` naming the backend
(:func:`unsupported`), never a traceback and never a silent no-op.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..model.errors import KernelError
from ..model.link import LinkChange, LinkRequest

__all__ = ["BaseDriver", "TraceRequest", "unsupported"]


def unsupported(backend: str, verb: str, advice: str = "") -> KernelError:
    """The one-line refusal of a verb a backend does not implement."""
    return KernelError("EOPNOTSUPP", f"the {backend} backend has no {verb}",
                       advice or "see `pymacvlan --help` for which backend does what")


@dataclass
class TraceRequest:
    """`pymacvlan trace ...`: which frames to explain. Live backends (kernel, userspace) watch
    real frames matching the filter; the sim injects one frame (``frame`` or dst/src/ethertype)
    at ``at`` and explains it."""

    mac: str | None = None
    ethertype: str | None = None  # as given: "0x0806", "88b5", "2054"
    child: str | None = None
    at: str | None = None  # sim: wire (default), parent or a child; kernel: which parent
    frame: bytes | None = None  # sim: the whole frame
    dst: bytes | None = None  # sim: build a frame to dst (src, ethertype)
    src: bytes | None = None
    parent: str | None = None  # sim: which parent, when there are several
    wire: str = "plain"  # plain | hairpin
    verify: bool = False  # kernel: also watch who really received each frame


class BaseDriver:
    """The verbs, each refusing until a backend's driver implements it.

    Capabilities (attributes, not names) tell a front end what to expect without asking which
    backend it has:

    * ``owns_parents``: the driver makes parents itself (sim): ``down`` removes them too;
    * ``host_stack``: links are real netdevs in real namespaces (a CNI runtime can use them);
    * ``injects``: ``trace`` explains a frame it injects rather than watching live ones;
    * ``vlan_parents``: it takes a parent ``IF.VID`` itself, without an 8021q device.
    """

    backend = "?"
    owns_parents = False
    host_stack = True
    injects = False
    vlan_parents = False  # takes a parent ``IF.VID`` itself (no 8021q device needed)
    kernel_links = False  # its children are kernel links a front end must prove (identity) before deleting

    # -- links (rtnl_link_ops) ------------------------------------------------------------------
    def add(self, req: LinkRequest) -> dict | None:
        """`ip link add`: one request, ``req.up`` included (a link that cannot come up is removed
        again). Returns what the backend knows of the new link (name, ifindex, address,
        endpoint) or None."""
        raise unsupported(self.backend, "link add")

    def add_parent(self, name: str, netns: str | None = None) -> None:
        """Declare a parent (``owns_parents`` backends only: the sim's `link add NAME type veth`)."""
        raise unsupported(self.backend, "parent of its own", "make the parent with ip (a veth, a NIC)")

    def set(self, name: str, change: LinkChange, netns: str | None = None) -> None:
        raise unsupported(self.backend, "link set")

    def delete(self, name: str, netns: str | None = None) -> None:
        raise unsupported(self.backend, "link del")

    def show(self, name: str | None = None, kind: str | None = None, netns: str | None = None) -> list[dict]:
        """``ip -j -d -s link show`` objects, iproute2's keys."""
        raise unsupported(self.backend, "link show")

    # -- everything else the front ends need ----------------------------------------------------
    def stats(self, name: str | None = None) -> dict:
        """``{"backend", "parents": {parent: {"children": {name: stats64 + mode/kind/up}, ...}}}``."""
        raise unsupported(self.backend, "stats")

    def trace(self, req: TraceRequest) -> Iterator[dict]:
        """Explained frames (``pymacvlan.daemon.trace`` events). Items with only ``info`` or
        ``note`` are lines for the user (a banner, the mirror's remarks), not frames."""
        raise unsupported(self.backend, "trace")

    def host_access(self, name: str, parent: str, routes: list[str]) -> list[str]:
        """Make bridge-mode child ``name`` the host's way to its macvlan children (addresses,
        routes); lines saying what was done."""
        raise unsupported(self.backend, "host access", "the host-access child needs a real host stack")

    def probe(self, parent: str | None = None) -> None:
        """Raise (one line) when an ``add`` on ``parent`` would fail for sure: the backend does
        not answer, the parent does not exist (None: only the backend). CNI's STATUS."""
        raise unsupported(self.backend, "probe")

    def topology(self, netns: str | None = None) -> list[Any]:
        """``pymacvlan.graph.Parent`` objects for ``show --graph``: parents, children, modes."""
        from ..graph import from_links

        return from_links(self.show(netns=netns))

    def events(self) -> Iterator[dict]:
        """Link changes as they happen (``ip monitor link``)."""
        raise unsupported(self.backend, "events")

    def notice(self) -> str | None:
        """A line a front end says once after a change (the sim: where its state lives)."""
        return None

    def close(self) -> None:
        """Release what the driver holds (sockets); drivers hold nothing between verbs today."""
