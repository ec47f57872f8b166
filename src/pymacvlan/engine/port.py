"""struct macvlan_port: the per-parent state macvlan.c keeps.

The MAC table is a dict for O(1) lookups plus, per entry, the bucket and hash-insertion
sequence that give the kernel's flood visiting order (bucket 0..255, most recently hashed
first within a bucket). The flood order is cached and rebuilt only when the table changes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from itertools import count

from ..model import BROADCAST
from .device import DEFAULT_BC_QUEUE_LEN, Lower, MacvlanDev
from .hashes import ALL_ONES, mac_hash, mc_hash


class Port:
    """One port per lower device, created with its first child and freed with its last."""

    def __init__(self, lower: Lower) -> None:
        self.lower = lower
        #: vlan_hash: up children by current MAC
        self.vlan_hash: dict[bytes, MacvlanDev] = {}
        self._hash_pos: dict[MacvlanDev, tuple[int, int]] = {}
        self._flood_order: tuple[MacvlanDev, ...] | None = ()
        #: vlan_source_hash: remote MAC -> [(child, seq)], most recently added first
        self.source_hash: dict[bytes, list[tuple[MacvlanDev, int]]] = {}
        #: vlans: every child in creation order, whatever its state
        self.vlans: list[MacvlanDev] = []
        self.passthru = False
        self.addr_change = False
        self.perm_addr = lower.mac
        self.bc_queue: deque[tuple[bytes, MacvlanDev | None]] = deque()
        self.bc_queue_len_used = DEFAULT_BC_QUEUE_LEN
        self.bc_cutoff = 1
        self.mc_filter = 0
        self.bc_filter = 0
        self._seq = count(1)

    # -- vlan_hash ------------------------------------------------------------------
    def hash_add(self, vlan: MacvlanDev) -> None:
        self.vlan_hash[vlan.mac] = vlan
        self._hash_pos[vlan] = (mac_hash(vlan.mac), -next(self._seq))
        self._flood_order = None

    def hash_del(self, vlan: MacvlanDev) -> None:
        if self.vlan_hash.get(vlan.mac) is vlan:
            del self.vlan_hash[vlan.mac]
        self._hash_pos.pop(vlan, None)
        self._flood_order = None

    def hash_change_addr(self, vlan: MacvlanDev, mac: bytes) -> None:
        self.hash_del(vlan)
        vlan.mac = mac
        self.hash_add(vlan)

    def flood_order(self) -> tuple[MacvlanDev, ...]:
        """hash_for_each_rcu() order over vlan_hash."""
        order = self._flood_order
        if order is None:
            pos = self._hash_pos
            order = self._flood_order = tuple(sorted(pos, key=pos.__getitem__))
        return order

    def addr_busy(self, mac: bytes) -> bool:
        """macvlan_addr_busy(): L's address (outside passthru) or an up child's."""
        if not self.passthru and not self.addr_change and mac == self.lower.mac:
            return True
        return mac in self.vlan_hash

    # -- vlan_source_hash -------------------------------------------------------------
    def source_add(self, vlan: MacvlanDev, mac: bytes) -> None:
        entries = self.source_hash.setdefault(mac, [])
        if any(v is vlan for v, _ in entries):
            return
        entries.insert(0, (vlan, next(self._seq)))
        vlan.macaddr_count += 1

    def source_del(self, vlan: MacvlanDev, mac: bytes) -> None:
        entries = self.source_hash.get(mac)
        if not entries:
            return
        kept = [e for e in entries if e[0] is not vlan]
        if len(kept) != len(entries):
            vlan.macaddr_count -= 1
        if kept:
            self.source_hash[mac] = kept
        else:
            del self.source_hash[mac]

    def source_flush(self, vlan: MacvlanDev) -> None:
        for mac in [m for m, es in self.source_hash.items() if any(v is vlan for v, _ in es)]:
            self.source_del(vlan, mac)
        vlan.macaddr_count = 0

    def source_dump(self, vlan: MacvlanDev) -> list[bytes]:
        """IFLA_MACVLAN_MACADDR_DATA order: bucket 0..255, newest first inside a bucket."""
        found = [(mac_hash(m), -seq, m) for m, es in self.source_hash.items()
                 for v, seq in es if v is vlan]
        return [m for _, _, m in sorted(found)]

    # -- broadcast queue ---------------------------------------------------------------
    def update_bc_queue_len(self) -> None:
        """update_port_bc_queue_len(): the largest request among all children."""
        self.bc_queue_len_used = max((v.bc_queue_len_req for v in self.vlans), default=0)

    # -- filters -------------------------------------------------------------------------
    def compute_port_filters(self) -> None:
        """The port halves of macvlan_set_mac_lists(): mc_filter (cutoff 0) and bc_filter."""
        self.mc_filter = self._lower_filter(0)
        self.recompute_bc_filter()

    def recompute_bc_filter(self) -> None:
        self.bc_filter = 0 if self.bc_cutoff < 0 else self._lower_filter(self.bc_cutoff)

    def _lower_filter(self, cutoff: int) -> int:
        lower = self.lower
        if lower.promiscuity > 0 or lower.allmulti > 0:
            return ALL_ONES
        bits = 1 << mc_hash(0, BROADCAST)
        for addr, synced in lower.mc_synced.items():
            if synced > cutoff:
                bits |= 1 << mc_hash(0, addr)
        return bits


def compute_child_filter(vlan: MacvlanDev, leaving: Iterable[bytes] = ()) -> int:
    """The child half of macvlan_set_mac_lists(): its groups and broadcast, salted.
    ``leaving``: groups still synced into the parent, hence still on the child's list."""
    if vlan.promisc_user or vlan.allmulti_user:
        return ALL_ONES
    salt = vlan.salt
    bits = 1 << mc_hash(salt, BROADCAST)
    for addr in set(vlan.mc_list()) | set(leaving):
        bits |= 1 << mc_hash(salt, addr)
    return bits
