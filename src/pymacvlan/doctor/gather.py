"""Facts about one namespace, read-only: ``ip -j`` (links, addresses, default routes, bridge
FDBs, multicast lists, the namespaces' ids), ETHTOOL_GDRVINFO and SIOCGIWNAME, /proc/sys
(ARP and rp_filter sysctls), ``ss`` (who listens on UDP 67), /proc/net/vlan and the 8021q
module, DMI and the CPU's hypervisor flag. Nothing here changes anything.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import platform
import socket
import struct
import subprocess

from .model import CHILD_KINDS, Facts, Iface, Listener, Route

SIOCETHTOOL = 0x8946
SIOCGIWNAME = 0x8B01
ETHTOOL_GDRVINFO = 0x00000003


def _ip_json(netns: str | None, *args: str) -> list[dict]:
    cmd = ["ip"] + (["-n", netns] if netns else []) + ["-j", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=15)
    if r.returncode != 0:
        raise OSError(r.stderr.strip() or f"{' '.join(cmd)} failed")
    return json.loads(r.stdout or "[]")


def _driver_and_wireless(netns: str | None, names: list[str]) -> dict[str, tuple[str, bool]]:
    if netns is None:  # `pymacvlan-cni` asks for its own namespace: spare it the datapath's imports
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    else:
        from ..netns import in_netns

        with in_netns(netns):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out = {}
    try:
        for name in names:
            drv = ""
            info = ctypes.create_string_buffer(196)
            struct.pack_into("I", info, 0, ETHTOOL_GDRVINFO)
            ifr = bytearray(struct.pack("16sP", name.encode(), ctypes.addressof(info)))
            try:
                fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifr)
                drv = info.raw[4:36].split(b"\0")[0].decode()
            except OSError:
                pass
            wifi = False
            try:
                fcntl.ioctl(s.fileno(), SIOCGIWNAME, bytearray(struct.pack("16s16x", name.encode())))
                wifi = True
            except OSError:
                pass
            if netns is None and (os.path.exists(f"/sys/class/net/{name}/wireless")
                                  or os.path.exists(f"/sys/class/net/{name}/phy80211")):
                wifi = True
            out[name] = (drv, wifi)
    finally:
        s.close()
    return out


def _iface(link: dict, addrs: dict[str, list[str]], netns: str | None = None) -> Iface:
    info = link.get("linkinfo", {})
    return Iface(name=link["ifname"], ifindex=link["ifindex"], kind=info.get("info_kind", ""),
                 link=link.get("link_index") if "link_index" in link else _link_index(link),
                 mode=str(info.get("info_data", {}).get("mode", "")),
                 up="UP" in link.get("flags", []), promiscuity=link.get("promiscuity", 0),
                 master=link.get("master"), ipv4=addrs.get(link["ifname"], []), netns=netns,
                 mac=link.get("address", ""),
                 carrier=None if link.get("link_type") == "loopback" else "LOWER_UP" in link.get("flags", []),
                 allmulti="ALLMULTI" in link.get("flags", []))


def _link_index(link: dict) -> int | None:
    # `ip -j` gives the parent as "link": NAME (same namespace) or "link_index" (another one)
    return link.get("_link_ifindex")


def _sysctls(netns: str | None, names: list[str]) -> dict[str, dict[str, int]]:
    from ..netns import in_netns

    out: dict[str, dict[str, int]] = {}
    for dev in ["all", "default", *names]:
        vals = {}
        for key in ("arp_ignore", "arp_announce", "arp_filter", "rp_filter", "accept_local"):
            with in_netns(netns):
                try:
                    fd = os.open(f"/proc/sys/net/ipv4/conf/{dev}/{key}", os.O_RDONLY)
                except OSError:
                    continue
            try:
                vals[key] = int(os.read(fd, 64).decode().strip())
            finally:
                os.close(fd)
        if vals:
            out[dev] = vals
    return out


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _links(netns: str | None) -> tuple[list[dict], dict[str, list[str]]]:
    links = _ip_json(netns, "-d", "link", "show")
    by_name = {ln["ifname"]: ln["ifindex"] for ln in links}
    for ln in links:
        if "link" in ln and "link_netnsid" not in ln:
            ln["_link_ifindex"] = by_name.get(ln["link"])
    addrs: dict[str, list[str]] = {}
    for a in _ip_json(netns, "addr", "show"):
        addrs[a["ifname"]] = [f"{i['local']}/{i['prefixlen']}" for i in a.get("addr_info", [])
                              if i.get("family") == "inet"]
    return links, addrs


def gather(netns: str | None = None) -> Facts:
    """Facts about one namespace (None: this process's), read-only."""
    links, addrs = _links(netns)
    f = Facts(netns=netns)
    f.ifaces = [_iface(ln, addrs) for ln in links]
    ids = _nsids(netns)
    for i, ln in zip(f.ifaces, links, strict=False):
        if "link_netnsid" in ln:
            other = ids.get(ln["link_netnsid"])
            i.link_netns = other or f"nsid {ln['link_netnsid']}"
            far = _name_of(other, ln.get("link_index")) if other else None
            if far is not None and other is not None and i.kind in CHILD_KINDS:
                i.parent_ref = (other, far)
            elif far is not None and i.kind == "veth":
                i.peer = (other, far)
        elif i.kind == "veth" and ln.get("link"):
            i.peer = (None, ln["link"])
    dw = _driver_and_wireless(netns, [i.name for i in f.ifaces])
    for i in f.ifaces:
        i.driver, i.wireless = dw.get(i.name, ("", False))
    f.remote_children = _remote_children(netns)
    f.sysctl = _sysctls(netns, [i.name for i in f.ifaces if i.ipv4])
    f.default_routes = [Route(r.get("dev", ""), r.get("gateway"), int(r.get("metric", 0)))
                        for r in _ip_json(netns, "-4", "route", "show", "default")]
    f.dhcp_servers = _udp67(netns)
    for i in f.ifaces:
        if i.kind == "macvtap":
            i.maddr = _maddr(netns, i.name)
    bridges = {i.master for i in f.ifaces if i.kind in ("macvlan", "macvtap") and i.master}
    f.fdb = {b: _learned(netns, b) for b in sorted(b for b in bridges if b)}
    f.vlan_support = _vlan_support(netns)
    f.dmi_vendor = _read("/sys/class/dmi/id/sys_vendor")
    f.dmi_product = _read("/sys/class/dmi/id/product_name")
    f.cpu_hypervisor = " hypervisor" in _read("/proc/cpuinfo").split("\nflags", 1)[-1].split("\n", 1)[0] + " "
    return f


def _remote_children(netns: str | None) -> list[Iface]:
    """macvlan/ipvlan children in other named namespaces whose parent lives in ``netns``
    (matched through each namespace's ``ip netns list-id``, so equal ifindexes elsewhere
    do not confuse it). Unnamed namespaces (docker's) cannot be seen this way."""
    out: list[Iface] = []
    try:
        names = sorted(os.listdir("/run/netns"))
    except OSError:
        return out
    me = os.stat(f"/run/netns/{netns}" if netns else "/proc/self/ns/net").st_ino
    for other in names:
        if other == netns:
            continue
        try:
            ids = _ip_json(other, "netns", "list-id")
            links = [ln for ln in _ip_json(other, "-d", "link", "show")
                     if ln.get("linkinfo", {}).get("info_kind") in CHILD_KINDS and "link_netnsid" in ln]
            if not links:
                continue
            addrs = {a["ifname"]: [f"{i['local']}/{i['prefixlen']}" for i in a.get("addr_info", [])
                                   if i.get("family") == "inet"] for a in _ip_json(other, "addr", "show")}
        except (OSError, ValueError, subprocess.SubprocessError):
            continue
        mine = set()
        for e in ids:
            nm = e.get("name")
            try:
                if nm and os.stat(f"/run/netns/{nm}").st_ino == me:
                    mine.add(e["nsid"])
            except OSError:
                pass
        unnamed = [e["nsid"] for e in ids if not e.get("name")]
        if netns is None and not mine and len(unnamed) == 1:  # the initial namespace has no name
            mine.add(unnamed[0])
        for ln in links:
            if ln["link_netnsid"] in mine:
                c = _iface(ln, addrs, netns=other)
                c.link = ln.get("link_index")
                out.append(c)
    return out




def _nsids(netns: str | None) -> dict[int, str]:
    """The names of the namespaces this one knows by id (``ip netns list-id``)."""
    try:
        return {e["nsid"]: e["name"] for e in _ip_json(netns, "netns", "list-id") if e.get("name")}
    except (OSError, ValueError, subprocess.SubprocessError):
        return {}


def _name_of(netns: str, ifindex: int | None) -> str | None:
    if ifindex is None:
        return None
    try:
        return next((ln["ifname"] for ln in _ip_json(netns, "link", "show") if ln["ifindex"] == ifindex), None)
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def _in(netns: str | None, *cmd: str) -> str:
    full = (["ip", "netns", "exec", netns] if netns else []) + list(cmd)
    try:
        r = subprocess.run(full, capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.SubprocessError):
        return ""
    return r.stdout if r.returncode == 0 else ""


def _udp67(netns: str | None) -> list[Listener]:
    """UDP sockets on port 67 (DHCP servers) and their processes, from ss."""
    out = []
    for line in _in(netns, "ss", "-H", "-u", "-l", "-n", "-p", "-4", "sport = :67").splitlines():
        cols = line.split()
        if len(cols) < 5:
            continue
        local = cols[3].rsplit(":", 1)[0]
        addr, _, dev = local.partition("%")
        proc = line.split('(("', 1)[1].split('"', 1)[0] if '(("' in line else ""
        out.append(Listener(addr.replace("*", "0.0.0.0"), dev or None, proc))
    return out


def _maddr(netns: str | None, dev: str) -> list[str]:
    try:
        rows = _ip_json(netns, "maddr", "show", "dev", dev)
    except (OSError, ValueError, subprocess.SubprocessError):
        return []
    return [m["address"] for r in rows for m in r.get("maddr", []) if m.get("family") == "link"]


def _learned(netns: str | None, bridge: str) -> list[tuple[str, str]]:
    """MACs ``bridge`` learned on its ports (not the ports' own, not multicast)."""
    cmd = ["bridge"] + (["-n", netns] if netns else []) + ["-j", "fdb", "show", "br", bridge]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=15)
        rows = json.loads(r.stdout or "[]") if r.returncode == 0 else []
    except (OSError, ValueError, subprocess.SubprocessError):
        return []
    out = []
    for e in rows:
        mac = e.get("mac", "")
        if (e.get("state") in ("permanent", "static") or "self" in e.get("flags", []) or not mac
                or int(mac.split(":")[0], 16) & 1 or not e.get("ifname")):
            continue
        out.append((mac, e["ifname"]))
    return out


def _vlan_support(netns: str | None) -> str:
    """'loaded' (8021q loaded or built in), 'module' (on disk, not loaded) or 'absent'."""
    if os.path.isdir("/sys/module/8021q") or (netns is None and os.path.isdir("/proc/net/vlan")):
        return "loaded"
    mods = f"/lib/modules/{platform.release()}"
    if "8021q.ko" in _read(f"{mods}/modules.builtin"):
        return "loaded"
    if "8021q.ko" in _read(f"{mods}/modules.dep"):
        return "module"
    return "absent"
