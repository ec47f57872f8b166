"""`pymacvlan --backend kernel link ...`: the kernel's own macvlan/macvtap over rtnetlink.

Requests are the ones iproute2 sends (one RTM_NEWLINK per `link add`; `link set` sends the
changelink part, then address, MTU and flags, the order the kernel applies them in anyway);
``show`` turns RTM_NEWLINK dumps into exactly the dicts ``ip -j -d -s -s link show`` prints
(iproute2 6.1's keys and order; ``bclim`` as iproute2 6.4+ prints it). Refusals become
KernelError with the kernel's errno and advice computed from the namespace's links (which
device holds a MAC, what the parent's MTU is ...). ``netns=`` makes every request inside that
named network namespace (``pymacvlan -n NS``, like ``ip -n NS``).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ..backends.kernel import nl  # registers the full macvlan attribute tables
from ..model import KernelError, MacaddrMode, Mode, mac_str
from ..model.link import LinkChange, LinkRequest, check_endpoint, validate_change, validate_request
from ..netns import NETNS_DIR, in_netns
from .base import BaseDriver, TraceRequest

IFF_UP, IFF_PROMISC, IFF_ALLMULTI = nl.IFF_UP, nl.IFF_PROMISC, nl.IFF_ALLMULTI
_LINK_TYPES = {1: "ether", 772: "loopback", 65534: "none"}
_ADDR_GEN = {0: "eui64", 1: "none", 2: "stable_secret", 3: "random"}
_MODE_NAMES = {int(m): m.name.lower() for m in Mode}


def _kernel_error(exc: NetlinkError | OSError, advice: str = "") -> KernelError:
    code = (exc.code if isinstance(exc, NetlinkError) else exc.errno) or 0
    if code == errno.EPERM and not advice:
        advice = "EPERM: the kernel backend needs root (CAP_NET_ADMIN in the namespace it works in)"
    return KernelError(nl.errno_name(code), os.strerror(code), advice)


class Driver(BaseDriver):
    """LinkDriver over the kernel. Needs CAP_NET_ADMIN (root) in the namespace it works in."""

    backend = "kernel"
    kernel_links = True  # a CNI DEL proves the device (namespace, ifindex, kind, MAC) before deleting it

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns

    # -- sockets -----------------------------------------------------------------------------
    @contextmanager
    def _ipr(self, netns: str | None = None):
        ns = netns if netns is not None else self.netns
        if ns is None:
            ipr = IPRoute()
        else:
            if not os.path.exists(os.path.join(NETNS_DIR, ns)):
                raise KernelError("ENOENT", f'Cannot open network namespace "{ns}": No such file or directory',
                                  f"create it first (ip netns add {ns}) or check `ip netns list`")
            with in_netns(ns):
                ipr = IPRoute()
        try:
            yield ipr
        finally:
            ipr.close()

    @staticmethod
    def _index(ipr: IPRoute, name: str) -> int:
        found = ipr.link_lookup(ifname=name)
        if not found:
            raise KernelError("ENODEV", f'Cannot find device "{name}"',
                              "see `pymacvlan --backend kernel link show` for the links here")
        return found[0]

    # -- LinkDriver --------------------------------------------------------------------------------
    def add(self, req: LinkRequest) -> None:
        validate_request(req)
        check_endpoint(req, "kernel")
        with self._ipr() as ipr:
            kw: dict[str, Any] = {"ifname": req.name, "kind": req.kind}
            if req.parent:
                kw["link"] = self._index(ipr, req.parent)
            if req.address is not None:
                kw["address"] = mac_str(req.address)
            if req.mtu is not None:
                kw["mtu"] = req.mtu
            if req.netns is not None:
                if not os.path.exists(os.path.join(NETNS_DIR, req.netns)):
                    raise KernelError(
                        "ENOENT",
                        f'Cannot open network namespace "{req.netns}": No such file or directory',
                        f"create it first (ip netns add {req.netns})",
                    )
                kw["net_ns_fd"] = req.netns
            kw.update(_macvlan_data(req.kind, req.mode, req.flags, req.macaddr_mode, req.macaddrs,
                                    req.bcqueuelen, req.bclim))
            if req.up:  # IFF_UP in the same RTM_NEWLINK: the kernel unregisters a link that cannot open
                kw["state"] = "up"
            try:
                ipr.link("add", **kw)
            except NetlinkError as e:
                raise _kernel_error(e, self._advice_add(ipr, req, e.code)) from None

    def set(self, name: str, change: LinkChange, netns: str | None = None) -> None:
        ch = change
        validate_change(ch)
        with self._ipr(netns) as ipr:
            index = self._index(ipr, name)
            data = _macvlan_data(ch.kind or "macvlan", ch.mode, ch.flags, ch.macaddr_mode, ch.macaddrs,
                                 ch.bcqueuelen, ch.bclim)
            try:
                if ch.kind is not None or data:
                    kind = ch.kind or self._kind(ipr, index)
                    data = _macvlan_data(kind, ch.mode, ch.flags, ch.macaddr_mode, ch.macaddrs,
                                         ch.bcqueuelen, ch.bclim)
                    ipr.link("set", index=index, kind=kind, **data)
                req: dict[str, Any] = {}
                if ch.address is not None:
                    req["address"] = mac_str(ch.address)
                if ch.mtu is not None:
                    req["mtu"] = ch.mtu
                flags = change_mask = 0
                for value, bit in ((ch.up, IFF_UP), (ch.promisc, IFF_PROMISC), (ch.allmulticast, IFF_ALLMULTI)):
                    if value is not None:
                        change_mask |= bit
                        flags |= bit if value else 0
                if change_mask:
                    req.update(flags=flags, change=change_mask)
                if req:
                    ipr.link("set", index=index, **req)
            except NetlinkError as e:
                raise _kernel_error(e, self._advice_set(ipr, name, index, ch, e.code)) from None

    def delete(self, name: str, netns: str | None = None) -> None:
        with self._ipr(netns) as ipr:
            index = self._index(ipr, name)
            try:
                ipr.link("del", index=index)
            except NetlinkError as e:
                raise _kernel_error(e) from None

    def show(self, name: str | None = None, kind: str | None = None, netns: str | None = None) -> list[dict]:
        with self._ipr(netns) as ipr:
            if name is not None and not ipr.link_lookup(ifname=name):
                raise KernelError("ENODEV", f'Device "{name}" does not exist.')
            msgs = list(ipr.get_links())
            links = links_as_iproute(msgs, ipr)
        if name is not None:
            links = [d for d in links if d["ifname"] == name]
        if kind is not None:
            links = [d for d in links if d.get("linkinfo", {}).get("info_kind") == kind]
        return links

    # -- host access -------------------------------------------------------------------------------
    def host_access(self, name: str, parent: str, routes: list[str]) -> list[str]:
        """:func:`.hostnet.give_host_access` in the driver's namespace."""
        from .hostnet import give_host_access

        with self._ipr() as ipr:
            return give_host_access(ipr, name, parent, routes)

    def probe(self, parent: str | None = None) -> None:
        """ENODEV when ``parent`` is not here (an add on it would fail for sure)."""
        if parent is None:
            return
        with self._ipr() as ipr:
            self._index(ipr, parent)

    # -- stats, trace, events ----------------------------------------------------------------------
    def stats(self, name: str | None = None) -> dict:
        """stats64 of the kernel's macvlan/macvtap links in the driver's namespace."""
        from ..backends.kernel.nl import link_state

        with self._ipr() as ipr:
            msgs = list(ipr.get_links())
        names = {m["index"]: m.get_attr("IFLA_IFNAME") for m in msgs}
        parents: dict = {}
        for m in msgs:
            ifname = m.get_attr("IFLA_IFNAME")
            st = link_state(m)
            if "linkinfo" not in st or name not in (None, ifname):
                continue
            link = m.get_attr("IFLA_LINK")
            pname = names.get(link, f"if{link}") if m.get_attr("IFLA_LINK_NETNSID") is None else f"if{link}"
            row = {**st.get("stats64", {}), "mode": st["linkinfo"]["info_data"]["mode"],
                   "kind": st["linkinfo"]["info_kind"], "up": "UP" in st["flags"]}
            parents.setdefault(pname, {"children": {}})["children"][ifname] = row
        if name and not parents:
            raise KernelError("ENODEV", f'Cannot find device "{name}"',
                              "it must be a macvlan or macvtap" + (f" in namespace {self.netns}" if self.netns else ""))
        return {"backend": self.backend, "parents": parents}

    def trace(self, req: TraceRequest) -> Iterator[dict]:
        """The host's own macvlan: the engine's mirror of it explains each frame (read-only)."""
        from ..backends.kernel import unavailable_reason
        from ..backends.kernel.livetrace import KernelTracer
        from ..daemon.trace import TraceFilter

        flt = TraceFilter.from_request({"mac": req.mac, "ethertype": req.ethertype, "child": req.child})
        if os.geteuid() != 0:
            raise KernelError("EPERM", unavailable_reason() or "tracing needs root", "run it as root")
        ns = self.netns or "/proc/self/ns/net"
        if self.netns and not os.path.exists(ns if ns.startswith("/") else f"{NETNS_DIR}/{ns}"):
            raise KernelError("ENOENT", f"no network namespace named {self.netns!r}", "see `ip netns list`")
        tracer = KernelTracer(ns, [req.at] if req.at else None, req.wire, req.verify, accept=flt.pre)
        tracer.start()
        return self._trace_events(tracer, flt, req.verify)

    @staticmethod
    def _trace_events(tracer: Any, flt: Any, verify: bool) -> Iterator[dict]:
        try:
            parents = ", ".join(w.mirror.parent for w in tracer.watches)
            yield {"info": f"tracing {parents}" + (" (verifying)" if verify else "") + " (Ctrl-C to stop)"}
            for ev in tracer.events():
                for note in tracer.notes:
                    yield {"note": f"mirror: {note}"}
                tracer.notes.clear()
                if flt.concerns_event(ev):
                    yield ev
        finally:
            tracer.close()

    def events(self) -> Iterator[dict]:
        """RTM_NEWLINK/RTM_DELLINK of the driver's namespace as ``{"event": "link", "op", "link"}``
        (the link in ``ip -j -d link show``'s keys), until closed."""
        with self._ipr() as ipr:
            ipr.bind()
            while True:
                for m in ipr.get():
                    if m.get("event") not in ("RTM_NEWLINK", "RTM_DELLINK"):
                        continue
                    op = "del" if m["event"] == "RTM_DELLINK" else "new"
                    yield {"event": "link", "op": op, "link": links_as_iproute([m])[0]}

    # -- advice ------------------------------------------------------------------------------------
    @staticmethod
    def _kind(ipr: IPRoute, index: int) -> str:
        info = ipr.get_links(index)[0].get_attr("IFLA_LINKINFO")
        return (info.get_attr("IFLA_INFO_KIND") if info is not None else None) or "macvlan"

    def _holder(self, ipr: IPRoute, mac: bytes, skip: int | None = None) -> str | None:
        want = mac_str(mac)
        for m in ipr.get_links():
            if m["index"] != skip and m.get_attr("IFLA_ADDRESS") == want:
                return f"{m.get_attr('IFLA_IFNAME')} (ifindex {m['index']})"
        return None

    def _advice_add(self, ipr: IPRoute, req: LinkRequest, code: int) -> str:
        import errno as E
        if code == E.EEXIST:
            return f"a link named {req.name} already exists; pick another name or delete it first"
        if code == E.EINVAL:
            if not req.parent:
                return "a macvlan needs a parent: say `link PARENT`"
            parent = ipr.get_links(self._index(ipr, req.parent))[0]
            if req.mtu is not None and req.mtu > (parent.get_attr("IFLA_MTU") or 0):
                return f"a child's MTU can be at most its parent's ({req.parent} has {parent.get_attr('IFLA_MTU')})"
            if req.macaddr_mode is not None and req.mode != Mode.SOURCE:
                return "a macaddr list needs mode source"
            if req.mode == Mode.PASSTHRU:
                return f"passthru must be the only child of {req.parent}; delete its other children first"
            kids = [m for m in ipr.get_links() if m.get_attr("IFLA_LINK") == parent["index"]
                    and _info_kind(m) in ("macvlan", "macvtap") and _mode(m) == Mode.PASSTHRU]
            if kids:
                return f"{req.parent} has a passthru child ({kids[0].get_attr('IFLA_IFNAME')}), which must be alone"
        if code == E.EADDRNOTAVAIL:
            return "use a unicast address (lowest bit of the first byte clear), not all zeros"
        if code == E.EADDRINUSE and req.address is not None:
            # `add ... address MAC up`: macvlan_open() found the MAC on the port (issue 25: the same
            # mistake as add, then set up, got the owner named; this one only "in use")
            holder = self._holder(ipr, req.address)
            if holder is None and req.parent:
                p = ipr.get_links(self._index(ipr, req.parent))[0]
                if p.get_attr("IFLA_ADDRESS") == mac_str(req.address):
                    holder = f"the parent {req.parent} itself"
            who = (f"{mac_str(req.address)} is already in use by {holder}" if holder else
                   f"{mac_str(req.address)} is in use on {req.parent or 'the parent'} (by a child in another "
                   "namespace)")
            return f"{who}; give {req.name} another address (address ...) or bring the other down"
        return ""

    def _advice_set(self, ipr: IPRoute, name: str, index: int, ch: LinkChange, code: int) -> str:
        import errno as E
        if code == E.EADDRINUSE:
            msg = ipr.get_links(index)[0]
            mac = ch.address or bytes.fromhex(msg.get_attr("IFLA_ADDRESS").replace(":", ""))
            holder = self._holder(ipr, mac, skip=index)
            who = (
                f"{mac_str(mac)} is already in use by {holder}" if holder else f"{mac_str(mac)} is in use on the parent"
            )
            return f"{who}; give {name} another address (link set {name} address ...) or bring the other down"
        if code == E.EOPNOTSUPP and ch.kind is not None:
            return f"{name} is a {self._kind(ipr, index)}, not a {ch.kind}; say `type {self._kind(ipr, index)}`"
        if code == E.EINVAL:
            if ch.mode is not None:
                return "passthru can be neither entered nor left; delete and re-create the child"
            if ch.macaddr_mode is not None:
                return f"macaddr needs mode source (link set {name} type macvlan mode source)"
            if ch.mtu is not None:
                return "a child's MTU can be at most its parent's"
        if code == E.EADDRNOTAVAIL:
            return "use a unicast address (lowest bit of the first byte clear), not all zeros"
        return ""


def _macvlan_data(kind: str, mode, flags, macaddr_mode, macaddrs, bcqueuelen, bclim) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if mode is not None:
        data["mode"] = int(mode)
    if flags is not None:
        data["flags"] = int(flags)
    if macaddr_mode is not None:
        data["macaddr_mode"] = int(macaddr_mode)
        if macaddr_mode in (MacaddrMode.ADD, MacaddrMode.DEL):
            data["macaddr"] = mac_str(macaddrs[0])
        elif macaddr_mode == MacaddrMode.SET:
            data["macaddr_data"] = {"attrs": [("IFLA_MACVLAN_MACADDR", mac_str(m)) for m in macaddrs]}
    if bcqueuelen is not None:
        data["bc_queue_len"] = bcqueuelen
    if bclim is not None:
        data["bc_cutoff"] = bclim
    return nl.linkinfo_data(kind, **data)


def _info_kind(m) -> str | None:
    info = m.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info is not None else None


def _mode(m) -> int | None:
    info = m.get_attr("IFLA_LINKINFO")
    kind = _info_kind(m)
    data = info.get_attr("IFLA_INFO_DATA") if info is not None else None
    return data.get_attr(f"IFLA_{kind.upper()}_MODE") if data is not None and kind else None


# -- RTM_NEWLINK → ip -j -d -s -s ---------------------------------------------------------------------
def netns_names(ipr: IPRoute) -> dict[int, str]:
    """nsid → name for the named namespaces this one has an id for (iproute2's link-netns)."""
    out: dict[int, str] = {}
    try:
        names = os.listdir(NETNS_DIR)
    except OSError:
        return out
    for name in names:
        try:
            fd = os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY)
        except OSError:
            continue
        try:
            r = ipr.get_netnsid(fd=fd)
            if r and r.get("nsid") is not None and r["nsid"] >= 0:
                out.setdefault(r["nsid"], name)
        except (NetlinkError, OSError):
            pass
        finally:
            os.close(fd)
    return out


def links_as_iproute(msgs: list, ipr: IPRoute | None = None) -> list[dict]:
    names = {m["index"]: m.get_attr("IFLA_IFNAME") for m in msgs}
    flags = {m["index"]: m["flags"] for m in msgs}
    nsnames: dict[int, str] | None = None
    out = []
    for m in msgs:
        d = link_as_iproute(m, names, flags)
        if "link_netnsid" in d and ipr is not None:
            if nsnames is None:
                nsnames = netns_names(ipr)
            if d["link_netnsid"] in nsnames:
                d["link_netns"] = nsnames[d["link_netnsid"]]  # text only (JSON has the id)
        out.append(d)
    return sorted(out, key=lambda d: d["ifindex"])


def link_as_iproute(m, names: dict[int, str], flags_by_index: dict[int, int]) -> dict:
    """print_linkinfo() of iproute2 6.1 in JSON form, every -d and -s -s key included."""
    a = m.get_attr
    d: dict[str, Any] = {"ifindex": m["index"]}
    iflink, nsid = a("IFLA_LINK"), a("IFLA_LINK_NETNSID")
    mdown = False
    if iflink is not None:
        if iflink == 0:
            d["link"] = None
        elif nsid is not None:
            d["link_index"] = iflink
        else:
            d["link"] = names.get(iflink, f"if{iflink}")
            mdown = not flags_by_index.get(iflink, 0) & IFF_UP
    d["ifname"] = a("IFLA_IFNAME")
    d["flags"] = nl.print_flags(m["flags"]) + (["M-DOWN"] if mdown else [])
    d["mtu"] = a("IFLA_MTU")
    if a("IFLA_QDISC") is not None:
        d["qdisc"] = a("IFLA_QDISC")
    if a("IFLA_MASTER"):
        d["master"] = names.get(a("IFLA_MASTER"), f"if{a('IFLA_MASTER')}")
    d["operstate"] = nl._operstate(a("IFLA_OPERSTATE"))
    d["linkmode"] = "DORMANT" if a("IFLA_LINKMODE") == 1 else "DEFAULT"
    group = a("IFLA_GROUP")
    d["group"] = "default" if not group else str(group)
    if a("IFLA_TXQLEN") is not None:
        d["txqlen"] = a("IFLA_TXQLEN")
    d["link_type"] = _LINK_TYPES.get(m["ifi_type"], str(m["ifi_type"]))
    if a("IFLA_ADDRESS") is not None:
        d["address"] = a("IFLA_ADDRESS")
    if a("IFLA_BROADCAST") is not None:
        d["broadcast"] = a("IFLA_BROADCAST")
    if nsid is not None:
        d["link_netnsid"] = nsid
    for key, attr in (("promiscuity", "IFLA_PROMISCUITY"), ("allmulti", "IFLA_ALLMULTI"),
                      ("min_mtu", "IFLA_MIN_MTU"), ("max_mtu", "IFLA_MAX_MTU")):
        if a(attr) is not None:
            d[key] = a(attr)
    info = a("IFLA_LINKINFO")
    if info is not None and info.get_attr("IFLA_INFO_KIND"):
        kind = info.get_attr("IFLA_INFO_KIND")
        d["linkinfo"] = {"info_kind": kind}
        data = info.get_attr("IFLA_INFO_DATA")
        if kind in ("macvlan", "macvtap") and data is not None:
            d["linkinfo"]["info_data"] = macvlan_info(kind, data)
    gen = _addr_gen_mode(a("IFLA_AF_SPEC"))
    if gen is not None:
        d["inet6_addr_gen_mode"] = gen
    for key, attr in (("num_tx_queues", "IFLA_NUM_TX_QUEUES"), ("num_rx_queues", "IFLA_NUM_RX_QUEUES"),
                      ("gso_max_size", "IFLA_GSO_MAX_SIZE"), ("gso_max_segs", "IFLA_GSO_MAX_SEGS"),
                      ("tso_max_size", "IFLA_TSO_MAX_SIZE"), ("tso_max_segs", "IFLA_TSO_MAX_SEGS"),
                      ("gro_max_size", "IFLA_GRO_MAX_SIZE"), ("parentbus", "IFLA_PARENT_DEV_BUS_NAME"),
                      ("parentdev", "IFLA_PARENT_DEV_NAME")):
        if a(attr) is not None:
            d[key] = a(attr)
    st = a("IFLA_STATS64")
    if st is not None:
        rx = {"bytes": st["rx_bytes"], "packets": st["rx_packets"], "errors": st["rx_errors"],
              "dropped": st["rx_dropped"], "over_errors": st["rx_over_errors"], "multicast": st["multicast"]}
        if st["rx_compressed"]:
            rx["compressed"] = st["rx_compressed"]
        rx.update(length_errors=st["rx_length_errors"], crc_errors=st["rx_crc_errors"],
                  frame_errors=st["rx_frame_errors"], fifo_errors=st["rx_fifo_errors"],
                  missed_errors=st["rx_missed_errors"])
        tx = {"bytes": st["tx_bytes"], "packets": st["tx_packets"], "errors": st["tx_errors"],
              "dropped": st["tx_dropped"], "carrier_errors": st["tx_carrier_errors"], "collisions": st["collisions"]}
        if st["tx_compressed"]:
            tx["compressed"] = st["tx_compressed"]
        tx.update(aborted_errors=st["tx_aborted_errors"], fifo_errors=st["tx_fifo_errors"],
                  window_errors=st["tx_window_errors"], heartbeat_errors=st["tx_heartbeat_errors"])
        if a("IFLA_CARRIER_CHANGES") is not None:
            tx["carrier_changes"] = a("IFLA_CARRIER_CHANGES")
        d["stats64"] = {"rx": rx, "tx": tx}
    return d


def _addr_gen_mode(af_spec) -> str | None:
    if af_spec is None:
        return None
    for family, value in af_spec.get("attrs", []):
        if family == "AF_INET6":
            for name, v in value.get("attrs", []):
                if name == "IFLA_INET6_ADDR_GEN_MODE":
                    return _ADDR_GEN.get(v, str(v))
    return None


def macvlan_info(kind: str, data) -> dict:
    """macvlan_print_opt(): mode, nopromisc/nodst booleans, queue lengths, bclim, source list."""
    prefix = f"IFLA_{kind.upper()}_"
    attr = lambda n: data.get_attr(prefix + n)  # noqa: E731
    out: dict[str, Any] = {}
    mode = attr("MODE")
    if mode is None:
        return out
    out["mode"] = _MODE_NAMES.get(mode, "unknown")
    flags = attr("FLAGS") or 0
    if flags & 1:
        out["nopromisc"] = True
    if flags & 2:
        out["nodst"] = True
    for key, name in (("bcqueuelen", "BC_QUEUE_LEN"), ("usedbcqueuelen", "BC_QUEUE_LEN_USED"), ("bclim", "BC_CUTOFF")):
        if attr(name) is not None:
            out[key] = attr(name)
    if mode == Mode.SOURCE and attr("MACADDR_COUNT") is not None:
        out["macaddr_count"] = attr("MACADDR_COUNT")
        listed = attr("MACADDR_DATA")
        if listed is not None:
            out["macaddr_data"] = [mac for name, mac in listed["attrs"] if name.endswith("_MACADDR")]
    return out
