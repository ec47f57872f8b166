"""The engine's view of a child as rtnetlink reports it: ``macvlan_fill_info()`` and the whole
``ip -j -d -s link show`` object. Pure functions of the engine's state (no I/O): the sim's link
driver, the userspace daemon (inside ``dp.call``) and the replay backends all read children
through here, so a new macvlan attribute is shown in one place."""

from __future__ import annotations

from typing import Any

from ..model import MacvlanFlag, Mode, mac_str
from ..model.iproute import link_flags, operstate
from .core import Engine
from .device import MacvlanDev

#: what a veth-backed macvlan reports on this kernel for the fields macvlan does not model
OFFLOAD_DETAILS: dict[str, Any] = {"inet6_addr_gen_mode": "eui64", "num_tx_queues": 1, "num_rx_queues": 1,
                                   "gso_max_size": 65536, "gso_max_segs": 65535, "tso_max_size": 524280,
                                   "tso_max_segs": 65535, "gro_max_size": 65536}


def child_link(e: Engine, v: MacvlanDev, name: str, ifindex: int, parent: str, parent_ifindex: int,
               netnsid: int | None = None) -> dict[str, Any]:
    """One ``ip -j -d -s link show`` object for child ``v`` of engine ``e``, in iproute2's keys
    and order (the sim's links and the userspace daemon's both come from here). ``netnsid``:
    the parent's namespace id as seen from the child, when they are in different namespaces."""
    same_ns = netnsid is None
    flags = link_flags(v.up, v.carrier, v.promisc_user, v.allmulti_user)
    if same_ns and not e.lower.up:
        flags.append("M-DOWN")
    d: dict[str, Any] = {"ifindex": ifindex}
    if same_ns:
        d["link"] = parent
    else:
        d["link_index"] = parent_ifindex
    d.update({"ifname": name, "flags": flags, "mtu": v.mtu, "qdisc": "noqueue" if v.up else "noop",
              "operstate": operstate(v.up, v.carrier, same_ns), "linkmode": "DEFAULT", "group": "default",
              "txqlen": 500 if v.kind == "macvtap" else 1000, "link_type": "ether",
              "address": mac_str(v.mac), "broadcast": "ff:ff:ff:ff:ff:ff"})
    if not same_ns:
        d["link_netnsid"] = netnsid
    d.update({"promiscuity": v.promiscuity, "allmulti": v.allmulti, "min_mtu": 68,
              "max_mtu": e.lower.max_mtu,
              "linkinfo": {"info_kind": v.kind, "info_data": macvlan_fill_info(e, v)}})
    d.update(OFFLOAD_DETAILS)
    st = v.stats.as_stats64()
    rx, tx = st["rx"], st["tx"]
    d["stats64"] = {
        "rx": {"bytes": rx["bytes"], "packets": rx["packets"], "errors": rx["errors"],
               "dropped": rx["dropped"], "over_errors": 0, "multicast": rx["multicast"],
               "length_errors": 0, "crc_errors": 0, "frame_errors": 0, "fifo_errors": 0, "missed_errors": 0},
        "tx": {"bytes": tx["bytes"], "packets": tx["packets"], "errors": 0, "dropped": tx["dropped"],
               "carrier_errors": 0, "collisions": 0, "aborted_errors": 0, "fifo_errors": 0,
               "window_errors": 0, "heartbeat_errors": 0},
    }
    return d


def macvlan_fill_info(e: Engine, v: MacvlanDev) -> dict[str, Any]:
    """macvlan_fill_info(): the IFLA_MACVLAN_* attributes of child ``v`` as iproute2 prints them
    (bclim only when not the default 1). The one view of a child's macvlan settings: the sim's
    links, the userspace daemon's and the replay backends' states all come from here."""
    port = e.port
    assert port is not None, "a child always has its port"
    d: dict[str, Any] = {"mode": v.mode.name.lower()}
    if v.flags & MacvlanFlag.NOPROMISC:
        d["nopromisc"] = True
    if v.flags & MacvlanFlag.NODST:
        d["nodst"] = True
    d["bcqueuelen"] = v.bc_queue_len_req
    d["usedbcqueuelen"] = port.bc_queue_len_used
    if port.bc_cutoff != 1:
        d["bclim"] = port.bc_cutoff
    if v.mode == Mode.SOURCE:
        d["macaddr_count"] = v.macaddr_count
        if v.macaddr_count:
            d["macaddr_data"] = [mac_str(m) for m in port.source_dump(v)]
    return d
