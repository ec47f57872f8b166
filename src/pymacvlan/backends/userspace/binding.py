"""The datapath's fast-path binding: the eBPF programs (:mod:`.fastpath`) loaded, attached to
the parent and to veth children's outer ends, their maps kept equal to the engine's answer
(rebuilt before every control operation returns), their counters folded into the engine's.
Where the programs cannot load, the datapath says so once and the Python path carries all.
"""

from __future__ import annotations

import errno
import logging
from collections import Counter
from typing import TYPE_CHECKING, Any

from ...engine import Engine
from ...engine.device import MacvlanDev
from ._sys import netns_inode
from .fastpath import EMPTY, FastChild, FastPath, fastpath_rules

if TYPE_CHECKING:
    from .hotpath import FrameObserver
    from .parent import Parent
    from .veth import VethChild

log = logging.getLogger("pymacvlan.datapath")

__all__ = ["FastPathBinding"]


class FastPathBinding:
    """The fast path's room of :class:`~.datapath.Datapath` (loop thread only)."""

    engine: Engine
    counters: Counter[str]
    parent: Parent | None
    cfg: Any
    fastpath: FastPath | None
    fastpath_error: str | None
    children_kind: str
    _fast: dict[str, FastChild]
    _observer: FrameObserver | None

    def _start_fastpath(self) -> None:
        """Load the programs and attach them to the parent; where that fails, say so once and
        stay on the Python path."""
        try:
            if self.parent is None or self.parent.vlan is not None:
                raise OSError(errno.EOPNOTSUPP, "a userspace VLAN parent needs its tag inserted in Python")
            self.fastpath = FastPath(self.cfg.parent.netns)
            self._fastpath_attach_parent()
        except Exception as e:  # no CAP_BPF, a verifier refusal, no clsact: the Python path carries all
            if self.fastpath is not None:
                self.fastpath.close()
                self.fastpath = None
            self.fastpath_error = f"{type(e).__name__}: {e}"
            self.counters["fastpath_unavailable"] += 1
            log.warning("eBPF fast path unavailable, every frame takes the Python path: %s", self.fastpath_error)

    def _fastpath_attach_parent(self) -> None:
        if self.fastpath is not None and self.parent is not None:
            self.fastpath.attach(self.parent.ifindex, self.parent.base, self.parent.sock)

    def _fastpath_add(self, name: str, dev: VethChild) -> None:
        fp = self.fastpath
        if fp is None or dev.ring is None:
            return
        slot = fp.new_slot()
        try:
            fp.attach(dev.outer_ifindex, dev.outer, dev.ring.sock)
        except Exception:  # this child stays on the Python path
            fp.free_slot(slot)
            self.counters["fastpath_child_attach_error"] += 1
            return
        # bpf_redirect_peer refuses a peer in the namespace it is called in
        peer_ok = netns_inode(dev.netns) != netns_inode(self.cfg.parent.netns)
        self._fast[name] = FastChild(dev.outer_ifindex, slot, peer_ok)

    def _fastpath_remove(self, name: str, vlan: MacvlanDev) -> None:
        fc = self._fast.pop(name, None)
        if fc is None or self.fastpath is None:
            return
        self.fastpath.fold(fc.slot, vlan.stats)
        self.fastpath.forget(fc.outer_ifindex)
        self.fastpath.free_slot(fc.slot)

    def _sync_fastpath(self) -> None:
        """The maps from the engine's port, now (before the control operation returns)."""
        fp = self.fastpath
        if fp is None:
            return
        parent = self.parent
        if self._observer is not None or parent is None:
            want = EMPTY  # a trace sees every frame; no parent, nothing to forward
        else:
            want = fastpath_rules(self.engine, parent.ifindex, parent.frame_max, self._fast)
        try:
            fp.sync(want)
        except OSError as e:  # a map full or refused: fall back to the Python path for everything
            self.counters[f"fastpath_sync_{errno.errorcode.get(e.errno or 0, e.errno)}"] += 1
            fp.sync(EMPTY)

    def _fold_fastpath(self) -> None:
        fp = self.fastpath
        if fp is None:
            return
        children = self.engine.children
        for name, fc in self._fast.items():
            vlan = children.get(name)
            if vlan is not None:
                fp.fold(fc.slot, vlan.stats)

    def _path_info(self) -> dict:
        """Which path carries frames, for ``stats``: "fast" (eBPF for known unicast, Python for
        the rest) or "python"."""
        fp = self.fastpath
        info: dict[str, Any] = {"active": "fast" if fp is not None else "python",
                                "children": self.children_kind}
        if fp is not None:
            info.update(fp.describe())
            info["fast_children"] = sorted(self._fast)
        elif self.cfg.fastpath:
            info["reason"] = self.fastpath_error
        else:
            info["reason"] = self.fastpath_error or "off (pymacvlan daemon --no-fastpath, or fastpath=False)"
        return info

