"""`pymacvlan doctor`: the pitfalls macvlan users keep hitting, checked on this machine.

Two halves, so every check is testable without special hardware:

* :func:`gather` reads facts, read-only: ``ip -j -d link`` / ``ip -j addr`` of one namespace,
  the macvlan/ipvlan children of its links that live in other named namespaces, the
  driver (ETHTOOL_GDRVINFO) and Wi-Fi-ness (SIOCGIWNAME; /sys/class/net/X/wireless or
  phy80211) of each link, the ARP/rp_filter sysctls, DMI vendor and the CPU's
  hypervisor flag. It never changes anything.
* :func:`diagnose` turns :class:`Facts` into :class:`Finding` s (what was seen, what to do,
  how bad). Unit tests build ``Facts`` by hand.

Sources of the pitfalls: ../shared/docs/landscape.md section 2 and the seed articles (003:
IFF_UNICAST_FLT and promiscuous mode, arp_ignore/rp_filter for keepalived VMACs, ESXi).
"""

from __future__ import annotations

import ctypes
import fcntl
import ipaddress
import json
import os
import socket
import struct
import subprocess
from dataclasses import asdict, dataclass, field

from .cli._report import plural

SEVERITIES = ("info", "warning", "error")
CHILD_KINDS = ("macvlan", "macvtap", "ipvlan", "ipvtap")

#: drivers that do not set IFF_UNICAST_FLT: every extra MAC (an up macvlan child) makes the
#: parent promiscuous (__dev_set_rx_mode). The kernel does not export priv_flags, hence a list.
NO_UNICAST_FILTER = {"veth", "tun", "dummy", "bridge", "bonding", "team", "vxlan", "geneve", "nlmon", "wireguard"}
#: unicast address filter sizes (receive address registers, the primary MAC included) of NICs
#: whose drivers say so in their headers; above that the driver turns promiscuous.
FILTER_SIZE = {"e1000": 15, "e1000e": 15, "igb": 16, "igc": 16, "ixgbe": 128, "ixgbevf": 3}
#: drivers of virtual NICs: frames leave through a hypervisor's switch, which may drop MACs it
#: did not assign.
VIRTUAL_NIC_DRIVERS = {"virtio_net": "KVM/QEMU (virtio)", "ena": "AWS EC2 (ENA)", "hv_netvsc": "Hyper-V / Azure",
                       "vmxnet3": "VMware", "gve": "Google Cloud (gVNIC)", "xen-netfront": "Xen"}
HYPERVISOR_VENDORS = {"vmware": "VMware", "microsoft corporation": "Hyper-V / Azure", "innotek gmbh": "VirtualBox",
                      "oracle corporation": "VirtualBox", "qemu": "KVM/QEMU (virtio)", "amazon ec2": "AWS EC2",
                      "google": "Google Cloud", "xen": "Xen", "red hat": "KVM/QEMU (virtio)", "nutanix": "Nutanix AHV"}
HYPERVISOR_FIX = {
    "VMware": "on the port group / vSwitch set Promiscuous mode, MAC address changes and Forged transmits "
              "to Accept (or use MAC learning on a distributed switch)",
    "Hyper-V / Azure": "Hyper-V: enable MAC address spoofing on the VM's network adapter "
                       "(Set-VMNetworkAdapter -MacAddressSpoofing On); Azure drops unknown MACs: use ipvlan",
    "VirtualBox": "set the adapter's promiscuous mode to Allow All (VBoxManage modifyvm VM --nicpromisc1 allow-all)",
    "AWS EC2": "EC2 delivers only the ENI's own MAC: use ipvlan (L2 or L3) with secondary private IPs instead",
    "AWS EC2 (ENA)": "EC2 delivers only the ENI's own MAC: use ipvlan (L2 or L3) with secondary private IPs instead",
    "Google Cloud": "GCE delivers only the NIC's own MAC: use ipvlan, alias IP ranges or routes instead",
    "KVM/QEMU (virtio)": "the host side decides: a Linux bridge or macvtap passes any MAC; libvirt's nwfilter "
                         "(clean-traffic) and OpenStack port security drop them (allow the children's MACs, e.g. "
                         "allowed_address_pairs); public clouds on KVM usually drop them: use ipvlan",
    "Google Cloud (gVNIC)": "GCE delivers only the NIC's own MAC: use ipvlan, alias IP ranges or routes instead",
}


@dataclass
class Iface:
    name: str
    ifindex: int = 0
    kind: str = ""  # linkinfo.info_kind: "" for hardware, veth, macvlan, ipvlan, bridge, ...
    driver: str = ""  # ETHTOOL_GDRVINFO (veth, virtio_net, ixgbe, ...)
    link: int | None = None  # parent's ifindex (children)
    link_netns: str | None = None  # the parent's namespace when it is elsewhere (children)
    mode: str = ""  # macvlan/ipvlan mode
    up: bool = False
    promiscuity: int = 0
    master: str | None = None  # bridge/bond this link is a port of
    ipv4: list[str] = field(default_factory=list)  # "10.0.0.5/24"
    wireless: bool = False
    netns: str | None = None  # where it lives (None: the namespace examined)
    mac: str = ""


@dataclass
class Facts:
    netns: str | None = None
    ifaces: list[Iface] = field(default_factory=list)
    #: children of links of this namespace that live in other (named) namespaces
    remote_children: list[Iface] = field(default_factory=list)
    #: "all", "default" and per-interface net.ipv4.conf values (arp_ignore, arp_announce, rp_filter, ...)
    sysctl: dict[str, dict[str, int]] = field(default_factory=dict)
    dmi_vendor: str = ""
    dmi_product: str = ""
    cpu_hypervisor: bool = False

    def get(self, name: str) -> Iface | None:
        return next((i for i in self.ifaces if i.name == name), None)

    def children_of(self, parent: Iface) -> list[Iface]:
        local = [i for i in self.ifaces if i.kind in CHILD_KINDS and i.link == parent.ifindex and i.link_netns is None]
        return local + [i for i in self.remote_children if i.link == parent.ifindex]


@dataclass
class Finding:
    code: str
    severity: str  # info | warning | error
    subject: str  # the interface (or namespace) it is about
    saw: str
    fix: str

    def as_dict(self) -> dict:
        return asdict(self)


# -- checks ------------------------------------------------------------------------------------------
def _eff(f: Facts, dev: str, key: str) -> int | None:
    """The value the kernel applies: the larger of conf/all and conf/DEV (arp_ignore, arp_announce, rp_filter)."""
    vals = [f.sysctl.get(k, {}).get(key) for k in ("all", dev)]
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    return max(vals)


def check_parent(f: Facts, p: Iface) -> list[Finding]:
    out: list[Finding] = []
    kids = f.children_of(p)
    mac_kids = [c for c in kids if c.kind in ("macvlan", "macvtap")]
    ip_kids = [c for c in kids if c.kind in ("ipvlan", "ipvtap")]
    up_filter = [c for c in mac_kids if c.up and c.mode != "passthru"]
    what = f"{p.name} (driver {p.driver or p.kind or 'unknown'})"

    if p.wireless:
        out.append(Finding("wifi-parent", "error", p.name,
                           f"{p.name} is a Wi-Fi interface: an 802.11 station sends and receives for its own MAC "
                           "only, so the access point never delivers frames to the children's MACs",
                           "use ipvlan (mode l2 or l3: children share the parent's MAC), or a wired parent; "
                           "4-address/WDS mode works only if the access point supports it"))
    if p.master:
        out.append(Finding("rx-handler-busy", "error", p.name,
                           f"{p.name} is a port of {p.master}: its receive handler belongs to {p.master}, so "
                           "`ip link add ... type macvlan` on it fails with EBUSY",
                           f"put the macvlan children on {p.master} itself, not on its port"))
    if mac_kids and ip_kids:
        out.append(Finding("macvlan-and-ipvlan", "error", p.name,
                           f"{p.name} has macvlan ({', '.join(c.name for c in mac_kids)}) and ipvlan "
                           f"({', '.join(c.name for c in ip_kids)}) children",
                           "a device has one receive handler: the kernel refuses the second kind with EBUSY; "
                           "pick one per parent (another VLAN or NIC for the other)"))
    elif ip_kids and not mac_kids:
        out.append(Finding("macvlan-and-ipvlan", "warning", p.name,
                           f"{p.name} already carries ipvlan children ({', '.join(c.name for c in ip_kids)})",
                           "adding a macvlan child to it will fail with EBUSY (one receive handler per device); "
                           "use ipvlan here too, or another parent"))

    no_filter = p.driver in NO_UNICAST_FILTER or p.kind in NO_UNICAST_FILTER
    if no_filter:
        now = (f"it is promiscuous now (promiscuity {p.promiscuity}) because {len(up_filter)} child(ren) are up"
               if up_filter and p.promiscuity else "it will turn promiscuous as soon as a non-passthru child is up")
        out.append(
            Finding(
                "no-unicast-filter",
                "info" if p.kind == "veth" or p.driver == "veth" else "warning",
                p.name,
                f"{what} has no unicast MAC filter (no IFF_UNICAST_FLT): {now}",
                "expected for veth and other virtual parents; on a NIC it means every frame on the wire "
                "is received and dropped in software: prefer a NIC with a filter, or passthru for one child",
            )
        )
    size = FILTER_SIZE.get(p.driver)
    if size is not None and len(up_filter) + 1 > size:
        out.append(Finding("mac-filter-overflow", "warning", p.name,
                           f"{len(up_filter)} children up plus {p.name}'s own MAC = {len(up_filter) + 1} unicast "
                           f"addresses; {p.driver} filters {size}: the NIC has gone promiscuous",
                           "fewer children per port, a NIC with a larger filter, or ipvlan (one MAC); a switch "
                           "with port security may also block the extra MACs"))
    elif not no_filter and up_filter and p.promiscuity > 0 and not any(c.mode == "passthru" for c in mac_kids):
        out.append(Finding("mac-filter-overflow", "info", p.name,
                           f"{p.name} is promiscuous (promiscuity {p.promiscuity}) with {len(up_filter)} children up",
                           "either its unicast filter overflowed, its driver has none, or something else (a "
                           "capture, a bridge) set it; harmless but costs CPU on a busy LAN"))

    if not p.kind or p.kind in ("", "vlan"):  # hardware (or a VLAN on it): frames meet a vswitch
        hv = VIRTUAL_NIC_DRIVERS.get(p.driver)
        vendor = next((v for k, v in HYPERVISOR_VENDORS.items() if f.dmi_vendor.lower().startswith(k)), None)
        who = vendor or hv or ("a hypervisor" if f.cpu_hypervisor or p.driver in VIRTUAL_NIC_DRIVERS else None)
        if who:
            seen = [s for s in (f"DMI vendor {f.dmi_vendor!r}" if f.dmi_vendor else "",
                                "CPU hypervisor flag" if f.cpu_hypervisor else "",
                                f"driver {p.driver}" if p.driver else "") if s]
            out.append(Finding("hypervisor-drops-macs", "warning", p.name,
                               f"{p.name} is a virtual NIC under {who} ({', '.join(seen)}): virtual switches and "
                               "clouds usually drop frames from and to MACs they did not assign",
                               HYPERVISOR_FIX.get(who, "allow MAC spoofing / forged transmits / promiscuous mode on "
                                                       "the virtual switch port, or use ipvlan (one MAC)")))

    if p.ipv4 and mac_kids:
        host_access = [c for c in mac_kids if c.netns is None and c.link_netns is None and c.ipv4 and c.up]
        if host_access:
            out.append(Finding("host-access", "info", p.name,
                               f"{p.name}'s stack reaches its children through {host_access[0].name} "
                               f"({', '.join(host_access[0].ipv4)}), a macvlan child of its own", "nothing to do"))
        else:
            kid_ips = [ip for c in mac_kids for ip in c.ipv4]
            net = str(ipaddress.ip_interface(p.ipv4[0]).network)
            out.append(Finding("host-cannot-reach-children", "warning", p.name,
                               f"{p.name} has {', '.join(p.ipv4)} and {len(mac_kids)} macvlan children"
                               + (f" ({', '.join(kid_ips)})" if kid_ips else "")
                               + ": macvlan never passes frames between children and their parent's own stack, "
                                 "so this host cannot reach them (nor they it) without a hairpin switch",
                               f"give the host a macvlan child of its own: `pymacvlan link add link {p.name} "
                               f"name {p.name[:10]}-host type macvlan mode bridge host-access` (or by hand: "
                               f"ip link add mac0 link {p.name} type macvlan mode bridge; ip addr add <spare "
                               f"address>/32 dev mac0; ip link set mac0 up; ip route add <children's range in "
                               f"{net}> dev mac0)"))
    return out


def check_arp(f: Facts) -> list[Finding]:
    """Several children with addresses in one namespace (keepalived's use_vmac): replies must
    come from the interface that owns the address, and rp_filter must not drop VRRP."""
    with_ip = [i for i in f.ifaces if i.ipv4 and i.name != "lo" and i.kind != "loopback"]
    kids = [i for i in with_ip if i.kind in ("macvlan", "macvtap")]
    if not kids or len(with_ip) < 2:
        return []
    out = []
    where = f"namespace {f.netns}" if f.netns else "this namespace"
    names = ", ".join(i.name for i in with_ip)
    bad_ignore = [i.name for i in with_ip if (_eff(f, i.name, "arp_ignore") or 0) < 1]
    bad_announce = [i.name for i in with_ip if (_eff(f, i.name, "arp_announce") or 0) < 1]
    bad_rp = [i.name for i in kids if (_eff(f, i.name, "rp_filter") or 0) == 1]
    if bad_ignore or bad_announce:
        out.append(Finding("arp-flux", "warning", where,
                           f"{len(with_ip)} interfaces with IPv4 addresses share {where} ({names}); "
                           f"arp_ignore is 0 on {', '.join(bad_ignore) or 'none'}, arp_announce is 0 on "
                           f"{', '.join(bad_announce) or 'none'}: any of them may answer ARP for the others' "
                           "addresses with its own MAC (ARP flux), so peers learn the wrong MAC",
                           "sysctl -w net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=1 "
                           "(keepalived's use_vmac sets these on its VMACs itself)"))
    if bad_rp:
        out.append(Finding("rp-filter", "warning", where,
                           f"strict rp_filter (1) applies to {', '.join(bad_rp)}: a packet arriving on a child "
                           "whose source is routed via another interface is dropped (keepalived VRRP adverts, "
                           "asymmetric replies)",
                           "sysctl -w " + " ".join(f"net.ipv4.conf.{n}.rp_filter=0" for n in bad_rp)
                           + " (and net.ipv4.conf.all.rp_filter=0 or 2: the kernel uses the larger of all/dev)"))
    return out


def diagnose(f: Facts, parent: str | None = None) -> list[Finding]:
    """Every finding for ``parent`` (or for every parent of a child here, or every link that
    could be one) and for the namespace's ARP settings."""
    out: list[Finding] = []
    if parent is not None:
        p = f.get(parent)
        if p is None:
            raise LookupError(parent)
        parents = [p]
    else:
        idx = {c.link for c in f.ifaces if c.kind in CHILD_KINDS and c.link_netns is None}
        idx |= {c.link for c in f.remote_children}
        parents = [i for i in f.ifaces if i.ifindex in idx]
        if not parents:
            parents = [
                i for i in f.ifaces if i.up and i.name != "lo" and i.kind in ("", "veth", "bond", "bridge", "vlan")
            ]
    for p in parents:
        out += check_parent(f, p)
    out += check_arp(f)
    order = {s: n for n, s in enumerate(reversed(SEVERITIES))}
    return sorted(out, key=lambda x: order[x.severity])


def exit_status(findings: list[Finding]) -> int:
    return 1 if any(x.severity != "info" for x in findings) else 0


# -- gathering (read-only) ---------------------------------------------------------------------------
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
        from .backends.userspace._sys import in_netns

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
                 mac=link.get("address", ""))


def _link_index(link: dict) -> int | None:
    # `ip -j` gives the parent as "link": NAME (same namespace) or "link_index" (another one)
    return link.get("_link_ifindex")


def _sysctls(netns: str | None, names: list[str]) -> dict[str, dict[str, int]]:
    from .backends.userspace._sys import in_netns

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
    for i, ln in zip(f.ifaces, links, strict=False):
        if "link_netnsid" in ln:
            i.link_netns = f"nsid {ln['link_netnsid']}"
    dw = _driver_and_wireless(netns, [i.name for i in f.ifaces])
    for i in f.ifaces:
        i.driver, i.wireless = dw.get(i.name, ("", False))
    f.remote_children = _remote_children(netns)
    f.sysctl = _sysctls(netns, [i.name for i in f.ifaces if i.ipv4])
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


# -- output --------------------------------------------------------------------------------------------
def render(findings: list[Finding], checked: list[str]) -> str:
    if not findings:
        return f"checked {', '.join(checked) or 'nothing'}: no pitfalls found"
    lines = [f"checked {', '.join(checked)}:"]
    for x in findings:
        lines += [f"[{x.severity}] {x.code} ({x.subject})", f"  saw: {x.saw}", f"  do:  {x.fix}"]
    n = {s: sum(1 for x in findings if x.severity == s) for s in SEVERITIES}
    lines.append(f"{plural(n['error'], 'error')}, {plural(n['warning'], 'warning')}, {plural(n['info'], 'note')}")
    return "\n".join(lines)
