"""Every check doctor runs: one decorated function per pitfall, with what it looks at, what it
cannot see and the test that proves its advice (see :mod:`.registry`).

A check reads :class:`~.model.Facts` only (never the host), so it can be tested with facts
built by hand. Its ``commands`` are run *literally* by the live tests (tests/doctor/): they are
the exact lines to type in the examined namespace, quoted for sh, correct for interface names
with dots, dashes and at the 15-byte limit.

Sources: ../shared/docs/landscape.md section 2, the seed articles (003: IFF_UNICAST_FLT,
keepalived's VMAC sysctls, hypervisors), issue 24's threads (containerlab#2865, incus#2596,
netavark#1008, virt-manager#676, moby#51999), and what Debian's keepalived 2.2.7 was measured
to do (labs/keepalived.py).
"""

from __future__ import annotations

import ipaddress
import re
import shlex

from .model import Facts, Finding, Iface
from .registry import check

LIVE = "tests/doctor/test_live.py::"
FACTS = "tests/doctor/test_checks.py::"

#: drivers that do not set IFF_UNICAST_FLT: every extra MAC (an up macvlan child) makes the
#: parent promiscuous (__dev_set_rx_mode). The kernel does not export priv_flags, hence a list.
NO_UNICAST_FILTER = {"veth", "tun", "dummy", "bridge", "bonding", "team", "vxlan", "geneve", "nlmon", "wireguard"}
#: of those, the ones whose promiscuity reaches hardware (their NIC ports go promiscuous too)
NO_FILTER_REACHES_NIC = {"bonding", "team"}
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
IFNAMSIZ = 15  # bytes, the terminating NUL excluded


# -- advice helpers: commands that work as printed ------------------------------------------------
def q(word: str) -> str:
    """A word for sh (interface names may hold characters sh treats specially)."""
    return shlex.quote(word)


def sysctl_w(dev: str, key: str, value: int) -> str:
    """`sysctl -w` for net.ipv4.conf.DEV.KEY that works for any interface name.

    procps reads dots as separators (``net.ipv4.conf.vrrp.51.rp_filter`` looks for
    /proc/sys/net/ipv4/conf/vrrp/51/rp_filter and fails); in a key written with dots, a slash
    stands for a dot in a name (procps swaps them), so ``net.ipv4.conf.vrrp/51.rp_filter`` is
    /proc/sys/net/ipv4/conf/vrrp.51/rp_filter (tested live with procps-ng 4.0.2)."""
    return f"sysctl -w {q(f'net.ipv4.conf.{dev.replace(chr(46), chr(47))}.{key}={value}')}"


def child_name(base: str, suffix: str) -> str:
    """A new interface's name: ``base`` cut so that base+suffix fits the kernel's 15 bytes."""
    raw = base.encode()[: IFNAMSIZ - len(suffix.encode())].decode(errors="ignore")
    return raw + suffix


def _children_text(kids: list[Iface]) -> str:
    return ", ".join(c.name + (f" in {c.netns}" if c.netns else "") for c in kids)


# -- parent checks ---------------------------------------------------------------------------------
@check("wifi-parent", "parent",
       looks_at="SIOCGIWNAME on the parent, /sys/class/net/PARENT/wireless or phy80211",
       cannot_see="whether the access point supports 4-address (WDS) mode",
       test=FACTS + "test_wifi_parent",
       not_live="no Wi-Fi device here (mac80211_hwsim is not built); the check reads one ioctl and two sysfs paths")
def wifi_parent(f: Facts, p: Iface) -> list[Finding]:
    if not p.wireless:
        return []
    return [Finding("wifi-parent", "error", p.name,
                    f"{p.name} is a Wi-Fi interface: an 802.11 station sends and receives for its own MAC only, "
                    "so the access point never delivers frames to the children's MACs",
                    "use ipvlan (mode l2 or l3: children share the parent's MAC), or a wired parent; "
                    "4-address/WDS mode works only if the access point supports it")]


@check("rx-handler-busy", "parent",
       looks_at="the parent's master (IFLA_MASTER: a bridge or bond port)",
       cannot_see="a receive handler taken by something that is not a master (an ipvlan, macsec, a team port "
                  "in another namespace)",
       test=LIVE + "test_rx_handler_busy")
def rx_handler_busy(f: Facts, p: Iface) -> list[Finding]:
    if not p.master:
        return []
    name = child_name(p.master, "-m0")
    return [Finding("rx-handler-busy", "error", p.name,
                    f"{p.name} is a port of {p.master}: its receive handler belongs to {p.master}, so "
                    "`ip link add ... type macvlan` on it fails with EBUSY",
                    f"put the macvlan children on {p.master} itself, not on its port",
                    [f"ip link add link {q(p.master)} name {q(name)} type macvlan mode bridge",
                     f"ip link set {q(name)} up"])]


@check("macvlan-and-ipvlan", "parent",
       looks_at="the kinds of the parent's children (here and in other named namespaces)",
       cannot_see="children in unnamed namespaces (Docker's)",
       test=FACTS + "test_macvlan_next_to_ipvlan_and_bridge_ports",
       not_live="this kernel has no ipvlan module")
def macvlan_and_ipvlan(f: Facts, p: Iface) -> list[Finding]:
    kids = f.children_of(p)
    mac_kids = [c for c in kids if c.kind in ("macvlan", "macvtap")]
    ip_kids = [c for c in kids if c.kind in ("ipvlan", "ipvtap")]
    if mac_kids and ip_kids:
        return [Finding("macvlan-and-ipvlan", "error", p.name,
                        f"{p.name} has macvlan ({_children_text(mac_kids)}) and ipvlan ({_children_text(ip_kids)}) "
                        "children",
                        "a device has one receive handler: the kernel refuses the second kind with EBUSY; "
                        "pick one per parent (another VLAN or NIC for the other)")]
    if ip_kids:
        return [Finding("macvlan-and-ipvlan", "warning", p.name,
                        f"{p.name} already carries ipvlan children ({_children_text(ip_kids)})",
                        "adding a macvlan child to it will fail with EBUSY (one receive handler per device); "
                        "use ipvlan here too, or another parent")]
    return []


def _up_filter_kids(f: Facts, p: Iface) -> list[Iface]:
    return [c for c in f.children_of(p) if c.kind in ("macvlan", "macvtap") and c.up and c.mode != "passthru"]


@check("no-unicast-filter", "parent",
       looks_at="the parent's driver (ETHTOOL_GDRVINFO) or kind against drivers known to lack IFF_UNICAST_FLT, "
                "its promiscuity count",
       cannot_see="IFF_UNICAST_FLT itself (the kernel does not export priv_flags): a driver not on the list is "
                  "assumed to filter",
       test=LIVE + "test_no_unicast_filter")
def no_unicast_filter(f: Facts, p: Iface) -> list[Finding]:
    if not (p.driver in NO_UNICAST_FILTER or p.kind in NO_UNICAST_FILTER):
        return []
    up = _up_filter_kids(f, p)
    hw = p.driver in NO_FILTER_REACHES_NIC or p.kind in NO_FILTER_REACHES_NIC
    if not hw and not f.children_of(p):
        return []  # a software device with no children is no macvlan parent (yet): nothing to say
    what = f"{p.name} (driver {p.driver or p.kind or 'unknown'})"
    now = (f"it is promiscuous now (promiscuity {p.promiscuity}) because {len(up)} child(ren) are up"
           if up and p.promiscuity else "it will turn promiscuous as soon as a non-passthru child is up")
    return [Finding("no-unicast-filter", "warning" if hw else "info", p.name,
                    f"{what} has no unicast MAC filter (no IFF_UNICAST_FLT): {now}",
                    "its ports' NICs go promiscuous with it: every frame on the wire is received and dropped in "
                    "software; prefer macvlan on a port NIC with a filter, or passthru for one child" if hw else
                    "expected for a software parent (veth, bridge, tun ...): its promiscuity costs nothing on a wire")]


@check("mac-filter-overflow", "parent",
       looks_at="the parent's driver's unicast filter size (a table from the drivers' headers) against its up "
                "children, its promiscuity",
       cannot_see="the filter size of drivers not in the table; whether a switch's port security limits MACs",
       test=FACTS + "test_more_macs_than_the_filter",
       not_live="no NIC with a unicast filter here (veth has none)")
def mac_filter_overflow(f: Facts, p: Iface) -> list[Finding]:
    if p.driver in NO_UNICAST_FILTER or p.kind in NO_UNICAST_FILTER:
        return []
    up = _up_filter_kids(f, p)
    size = FILTER_SIZE.get(p.driver)
    if size is not None and len(up) + 1 > size:
        return [Finding("mac-filter-overflow", "warning", p.name,
                        f"{len(up)} children up plus {p.name}'s own MAC = {len(up) + 1} unicast addresses; "
                        f"{p.driver} filters {size}: the NIC has gone promiscuous",
                        "fewer children per port, a NIC with a larger filter, or ipvlan (one MAC); a switch with "
                        "port security may also block the extra MACs")]
    passthru = any(c.mode == "passthru" for c in f.children_of(p))
    if up and p.promiscuity > 0 and not passthru:
        return [Finding("mac-filter-overflow", "info", p.name,
                        f"{p.name} is promiscuous (promiscuity {p.promiscuity}) with {len(up)} children up",
                        "either its unicast filter overflowed, its driver has none, or something else (a capture, "
                        "a bridge) set it; harmless but costs CPU on a busy LAN")]
    return []


@check("hypervisor-drops-macs", "parent",
       looks_at="DMI vendor, the CPU's hypervisor flag, the parent's driver (virtio_net, vmxnet3, ena ...)",
       cannot_see="the virtual switch's policy itself (MAC spoofing, forged transmits, port security): only that "
                  "one is in the path",
       test=FACTS + "test_hypervisor_or_cloud",
       not_live="no hypervisor switch in the path here (veth parents)")
def hypervisor_drops_macs(f: Facts, p: Iface) -> list[Finding]:
    if p.kind not in ("", "vlan"):  # hardware (or a VLAN on it): frames meet a vswitch
        return []
    hv = VIRTUAL_NIC_DRIVERS.get(p.driver)
    vendor = next((v for k, v in HYPERVISOR_VENDORS.items() if f.dmi_vendor.lower().startswith(k)), None)
    who = vendor or hv or ("a hypervisor" if f.cpu_hypervisor or p.driver in VIRTUAL_NIC_DRIVERS else None)
    if not who:
        return []
    seen = [s for s in (f"DMI vendor {f.dmi_vendor!r}" if f.dmi_vendor else "",
                        "CPU hypervisor flag" if f.cpu_hypervisor else "",
                        f"driver {p.driver}" if p.driver else "") if s]
    return [Finding("hypervisor-drops-macs", "warning", p.name,
                    f"{p.name} is a virtual NIC under {who} ({', '.join(seen)}): virtual switches and clouds "
                    "usually drop frames from and to MACs they did not assign",
                    HYPERVISOR_FIX.get(who, "allow MAC spoofing / forged transmits / promiscuous mode on the "
                                            "virtual switch port, or use ipvlan (one MAC)"))]


@check("parent-down", "parent", also=("parent-no-carrier",),
       looks_at="the parent's UP flag and LOWER_UP (carrier); for a veth, its peer in a named namespace",
       cannot_see="the far end of a cable or switch port (only that there is no carrier)",
       test=LIVE + "test_parent_down_and_no_carrier")
def parent_down(f: Facts, p: Iface) -> list[Finding]:
    kids = [c for c in f.children_of(p) if c.kind in ("macvlan", "macvtap")]
    holding = f" ({_children_text(kids)} go with it: their operstate is LOWERLAYERDOWN)" if kids else ""
    if not p.up:
        return [Finding("parent-down", "error", p.name,
                        f"{p.name} is administratively down{holding}: children neither send nor receive, "
                        "whatever their own state",
                        f"bring {p.name} up", [f"ip link set {q(p.name)} up"])]
    if p.carrier is False:
        cmds: list[str] = []
        if p.peer is not None:
            ns, name = p.peer
            cmds = [f"ip {'-n ' + q(ns) + ' ' if ns else ''}link set {q(name)} up"]
            other = f"its veth peer {name}" + (f" in namespace {ns}" if ns else "") + " is down"
        else:
            other = "the cable, the switch port or the other end is down"
        return [Finding("parent-no-carrier", "error", p.name,
                        f"{p.name} is up but has no carrier (NO-CARRIER){holding}: {other}",
                        "bring the other end up" if cmds else
                        "check the cable and the switch port (ethtool PARENT shows the link state)", cmds)]
    return []


@check("host-cannot-reach-children", "parent", also=("host-access",),
       looks_at="the parent's IPv4 addresses, its macvlan children here and in named namespaces, a host-side "
                "child with an address",
       cannot_see="children in unnamed namespaces (Docker's); a hairpin (VEPA) switch that would bring frames back",
       test=LIVE + "test_host_cannot_reach_children")
def host_cannot_reach_children(f: Facts, p: Iface) -> list[Finding]:
    mac_kids = [c for c in f.children_of(p) if c.kind in ("macvlan", "macvtap")]
    if not (p.ipv4 and mac_kids):
        return []
    host = [c for c in mac_kids if c.netns is None and c.link_netns is None and c.ipv4 and c.up]
    if host:
        return [Finding("host-access", "info", p.name,
                        f"{p.name}'s stack reaches its children through {host[0].name} ({', '.join(host[0].ipv4)}), "
                        "a macvlan child of its own", "nothing to do")]
    kid_ips = [ip for c in mac_kids for ip in c.ipv4]
    net = str(ipaddress.ip_interface(p.ipv4[0]).network)
    name = child_name(p.name, "-host")
    return [Finding("host-cannot-reach-children", "warning", p.name,
                    f"{p.name} has {', '.join(p.ipv4)} and {len(mac_kids)} macvlan children"
                    + (f" ({', '.join(kid_ips)})" if kid_ips else "")
                    + ": macvlan never passes frames between children and their parent's own stack, so this "
                      "host cannot reach them (nor they it) without a hairpin switch",
                    f"give the host a bridge-mode macvlan child of its own: pymacvlan's host-access copies "
                    f"{p.name}'s addresses to it as /32 and routes {net} (in two halves) through it; by hand: "
                    f"ip link add {name} link {p.name} type macvlan mode bridge, the addresses as /32, routes to "
                    "the children's range; children in private or vepa mode also need a hairpin switch",
                    [f"pymacvlan --backend kernel link add link {q(p.name)} name {q(name)} type macvlan mode bridge "
                     "host-access up"])]


@check("dhcp-unreachable", "parent",
       looks_at="UDP port 67 sockets in the parent's namespace (ss), the parent's IPv4 addresses, its macvlan "
                "children",
       cannot_see="a DHCP server elsewhere on the LAN (children reach that one); whether the server accepts "
                  "requests on another interface (dnsmasq does in its default wildcard mode)",
       test=LIVE + "test_dhcp_unreachable")
def dhcp_unreachable(f: Facts, p: Iface) -> list[Finding]:
    servers = [s for s in f.dhcp_servers if s.dev in (None, p.name)]
    kids = [c for c in f.children_of(p) if c.kind in ("macvlan", "macvtap")]
    host = [c for c in kids if c.netns is None and c.link_netns is None and c.up]
    if not (servers and p.ipv4 and kids) or any(ipaddress.ip_interface(a).network.prefixlen < 32
                                                for c in host for a in c.ipv4):
        return []
    name = child_name(p.name, "-dh")
    cmds = [f"ip link add link {q(p.name)} name {q(name)} type macvlan mode bridge"]
    cmds += [f"ip addr del {a} dev {q(p.name)}" for a in p.ipv4]
    cmds += [f"ip addr add {a} dev {q(name)}" for a in p.ipv4]
    cmds += [f"ip link set {q(name)} up"]
    cmds += [f"ip route replace default via {r.gateway} dev {q(name)} metric {r.metric}"
             for r in f.default_routes if r.dev == p.name and r.gateway]
    who = ", ".join(f"{s.process or 'a process'} on {s.local}:67" + (f" (bound to {s.dev})" if s.dev else "")
                    for s in servers)
    bound = any(s.dev for s in servers)
    return [Finding("dhcp-unreachable", "warning", p.name,
                    f"a DHCP server listens on {p.name}'s own stack ({who}) and {p.name} has macvlan children "
                    f"({_children_text(kids)}): their DISCOVERs reach the wire but never the parent's stack, so "
                    "they get no lease from it",
                    f"move {p.name}'s addresses (and default route) to a bridge-mode macvlan child {name} with the "
                    "same prefix: the server then hears the children through it, and the host reaches them too "
                    "(run this from a console: the host's address moves)"
                    + (f"; the server is bound to {p.name}: restart it on {name}" if bound else ""), cmds)]


# -- VLAN parents --------------------------------------------------------------------------------
VLAN_NAME = re.compile(r"^(?P<base>.+)\.(?P<vid>\d{1,4})$")


@check("no-8021q", "parent", also=("vlan-parent-missing",),
       looks_at="a parent named IF.VID that does not exist, IF, /proc/net/vlan and /sys/module/8021q, the 8021q "
                "module file",
       cannot_see="a kernel built with 802.1Q but without /proc/net/vlan (CONFIG_PROC_FS off)",
       test=LIVE + "test_vlan_parent_without_8021q")
def no_8021q(f: Facts, p: Iface) -> list[Finding]:
    """Only for the parent the user asked for when it does not exist (diagnose passes a stand-in)."""
    m = VLAN_NAME.match(p.name)
    if f.asked != p.name or m is None or f.get(m["base"]) is None or not 0 < int(m["vid"]) < 4095:
        return []
    base, vid = m["base"], int(m["vid"])
    make = [f"ip link add link {q(base)} name {q(p.name)} type vlan id {vid}", f"ip link set {q(p.name)} up"]
    if f.vlan_support == "absent":
        return [Finding("no-8021q", "error", p.name,
                        f"{p.name} does not exist and this kernel has no 802.1Q (no 8021q module loaded or on disk): "
                        f"`ip link add link {base} name {p.name} type vlan id {vid}` fails (Unknown device type), "
                        f"and so does a Docker/CNI parent {p.name}, which makes that VLAN first",
                        "use a kernel with CONFIG_VLAN_8021Q (the distribution's full kernel or its modules-extra "
                        f"package), or macvlan on {base} untagged with the switch port in VLAN {vid} (access mode)")]
    cmds = (["modprobe 8021q"] if f.vlan_support == "module" else []) + make
    return [Finding("vlan-parent-missing", "warning", p.name,
                    f"{p.name} does not exist yet (802.1Q is "
                    f"{'available as a module, not loaded' if f.vlan_support == 'module' else 'loaded'})",
                    f"make the VLAN interface on {base} first", cmds)]


# -- namespace checks ------------------------------------------------------------------------------
def _with_ipv4(f: Facts) -> list[Iface]:
    return [i for i in f.ifaces if i.ipv4 and i.name != "lo" and i.kind != "loopback"]


def _where(f: Facts) -> str:
    return f"namespace {f.netns}" if f.netns else "this namespace"


@check("arp-flux", "namespace",
       looks_at="macvlan children with IPv4 addresses next to their parent or siblings in one namespace, "
                "arp_ignore of all and of each",
       cannot_see="what the LAN has learned; arp_filter/ARP tables in nftables that could mask it",
       test=LIVE + "test_arp_flux")
def arp_flux(f: Facts) -> list[Finding]:
    pairs = _same_wire(f)
    if not pairs:
        return []
    on_wire = sorted({n for pair in pairs for n in pair})
    bad = [n for n in on_wire if (f.sysctl_of(n, "arp_ignore") or 0) < 1]
    if not bad:
        return []
    where = _where(f)
    return [Finding("arp-flux", "warning", where,
                    f"{len(on_wire)} interfaces on one wire hold different IPv4 addresses in {where} "
                    f"({', '.join(on_wire)}: a macvlan child with its parent or siblings); arp_ignore is 0 on "
                    f"{', '.join(bad)}: each of them answers ARP for the others' addresses with its own MAC "
                    "(ARP flux), so peers learn the wrong MAC",
                    "answer ARP only on the interface that holds the address (arp_ignore=1)",
                    [sysctl_w("all", "arp_ignore", 1)])]


def _same_wire(f: Facts) -> list[tuple[str, str]]:
    """Pairs of interfaces here that receive the same broadcasts (a macvlan child and its parent,
    two children of one parent) and hold different IPv4 addresses (host-access copies of the
    parent's address are the same host answering for itself: no flux)."""
    ips = {i.name: {ipaddress.ip_interface(a).ip for a in i.ipv4} for i in _with_ipv4(f)}
    kids = [i for i in f.ifaces if i.kind in ("macvlan", "macvtap") and i.name in ips]
    out = []
    for c in kids:
        peers = [i for i in f.ifaces if i.name in ips and i is not c
                 and ((c.link_netns is None and i.ifindex == c.link)
                      or (i.kind in ("macvlan", "macvtap") and i.link == c.link and i.link_netns == c.link_netns))]
        out += [(c.name, o.name) for o in peers if ips[c.name] - ips[o.name] and ips[o.name] - ips[c.name]]
    return out


@check("arp-announce", "namespace",
       looks_at="macvlan children's IPv4 addresses inside another interface's subnet (keepalived's VIP on "
                "vrrp.N), arp_announce of all and of that interface",
       cannot_see="which source address the kernel will pick for a given request (it depends on the packet that "
                  "triggered it); what the LAN's neighbour tables hold now",
       test=LIVE + "test_arp_announce")
def arp_announce(f: Facts) -> list[Finding]:
    out: list[Finding] = []
    kids = [i for i in _with_ipv4(f) if i.kind in ("macvlan", "macvtap")]
    for o in _with_ipv4(f):
        if (f.sysctl_of(o.name, "arp_announce") or 0) >= 2:
            continue
        nets = [ipaddress.ip_interface(a).network for a in o.ipv4]
        mine = {ipaddress.ip_interface(a).ip for a in o.ipv4}
        inside = [(c.name, a) for c in kids if c is not o for a in c.ipv4
                  if any(ipaddress.ip_interface(a).ip in n for n in nets) and ipaddress.ip_interface(a).ip not in mine]
        if not inside:
            continue
        val = f.sysctl_of(o.name, "arp_announce") or 0
        out.append(Finding("arp-announce", "warning", o.name,
                           f"{', '.join(f'{a} on {c}' for c, a in inside)} is inside {o.name}'s subnet "
                           f"({', '.join(o.ipv4)}) and arp_announce is {val} on {o.name}: when a reply from that "
                           f"address leaves through {o.name}, {o.name}'s ARP request carries it as the sender "
                           f"address with {o.name}'s own MAC, and the LAN learns it on the wrong MAC (for "
                           "keepalived: the VIP on the router's NIC instead of the VRRP MAC; arp_announce=1 keeps "
                           "it too, because the address is in that subnet)",
                           f"make {o.name}'s ARP requests use its own address (arp_announce=2); keepalived 2.2.7 "
                           "sets arp_ignore and arp_filter on the parent but not arp_announce",
                           [sysctl_w(o.name, "arp_announce", 2)]))
    return out


@check("rp-filter", "namespace",
       looks_at="rp_filter of all and of each macvlan child with an address (the kernel applies the larger)",
       cannot_see="whether traffic really arrives asymmetrically (routes elsewhere); nftables fib rules",
       test=LIVE + "test_rp_filter")
def rp_filter(f: Facts) -> list[Finding]:
    kids = [i for i in _with_ipv4(f) if i.kind in ("macvlan", "macvtap")]
    if not kids or len(_with_ipv4(f)) < 2:
        return []
    bad = [i.name for i in kids if f.sysctl_of(i.name, "rp_filter") == 1]
    if not bad:
        return []
    strict_all = f.sysctl.get("all", {}).get("rp_filter") == 1
    cmds = [sysctl_w(n, "rp_filter", 0) for n in bad if f.sysctl.get(n, {}).get("rp_filter") == 1]
    if strict_all:
        cmds.append(sysctl_w("all", "rp_filter", 2))
    return [Finding("rp-filter", "warning", _where(f),
                    f"strict rp_filter (1) applies to {', '.join(bad)}: a packet arriving on a child whose source "
                    "is routed via another interface is dropped (keepalived VRRP adverts, a VIP's traffic, "
                    "asymmetric replies)",
                    "turn strict rp_filter off on the children; the kernel applies the larger of all and the "
                    "interface, so all goes to 2 (loose) when it is 1" if strict_all else
                    "turn strict rp_filter off on the children", cmds)]


@check("foreign-source-mac", "namespace",
       looks_at="macvlan/macvtap children that are bridge ports, the MACs the bridge learned on its other ports",
       cannot_see="a guest using a macvtap with a MAC of its own choosing (only traffic shows it); whether "
                  "the parent has other children (passthru needs it alone)",
       test=LIVE + "test_foreign_source_mac")
def foreign_source_mac(f: Facts) -> list[Finding]:
    out: list[Finding] = []
    own = {i.mac.lower() for i in f.ifaces}
    for c in f.ifaces:
        if c.kind not in ("macvlan", "macvtap") or c.mode == "passthru" or not c.master:
            continue
        foreign = [(m, port) for m, port in f.fdb.get(c.master, []) if port != c.name and m.lower() not in own]
        if not foreign:
            continue
        parent, pns = _parent_of(f, c)
        cmds: list[str] = []
        if parent:
            on = f"ip -n {q(pns)} " if pns else "ip "
            cmds = [f"ip link del {q(c.name)}",
                    f"{on}link add link {q(parent)} name {q(c.name)} type {c.kind} mode passthru"]
            if pns:
                cmds.append(f"{on}link set {q(c.name)} netns {q(f.netns) if f.netns else '$$'}")
            cmds += [f"ip link set {q(c.name)} master {q(c.master)}", f"ip link set {q(c.name)} up"]
        macs = ", ".join(f"{m} (behind {port})" for m, port in foreign)
        out.append(Finding("foreign-source-mac", "warning", c.name,
                           f"{c.name} is a port of bridge {c.master}, which sends through it frames from {macs}: "
                           f"a {c.kind} child receives only frames for its own MAC ({c.mac}), so the replies to "
                           "those MACs never come back (a VM or nested container behind the child)",
                           "make the child passthru (it takes every frame of its parent; one child per parent), or "
                           "give the VM/container the child itself instead of a bridge behind it", cmds))
    return out


def _parent_of(f: Facts, c: Iface) -> tuple[str | None, str | None]:
    """The parent's name and namespace (None: here) of a local child, when known."""
    if c.link_netns is None:
        p = next((i for i in f.ifaces if i.ifindex == c.link), None)
        return (p.name if p else None), None
    if c.parent_ref is not None:
        return c.parent_ref[1], c.parent_ref[0]
    return None, None


STANDARD_MCAST = ("33:33:00:00:00:01", "01:00:5e:00:00:01", "33:33:00:00:00:02", "33:33:00:00:00:fb")


@check("macvtap-guest-filter", "namespace",
       looks_at="each macvtap child's ALLMULTI flag, promiscuity and multicast list (ip maddr)",
       cannot_see="the guest, its addresses and whether QEMU/libvirt programs the filter (trustGuestRxFilters): "
                  "only that nothing beyond the host's own groups is on it",
       test=LIVE + "test_macvtap_guest_filter")
def macvtap_guest_filter(f: Facts) -> list[Finding]:
    out = []
    for c in f.ifaces:
        if c.kind != "macvtap" or not c.up or c.allmulti or c.promiscuity or c.mode == "passthru":
            continue
        own_sn = "33:33:ff:" + c.mac.lower()[9:] if c.mac else ""
        extra = [m for m in c.maddr if m.lower() not in STANDARD_MCAST and m.lower() != own_sn]
        if extra:
            continue
        out.append(Finding("macvtap-guest-filter", "warning", c.name,
                           f"{c.name} (macvtap, {c.mode} mode) has no ALLMULTI and no guest multicast groups on its "
                           f"filter ({', '.join(c.maddr) or 'none'}): a virtio guest's IPv6 neighbour solicitations "
                           "(to 33:33:ff:xx:xx:xx) and any multicast it joins never reach it, so IPv6 ND is dead",
                           "let the guest's multicast through: ALLMULTI on the macvtap now; with libvirt, "
                           "<interface type='direct' trustGuestRxFilters='yes'> so QEMU programs the filter",
                           [f"ip link set {q(c.name)} allmulticast on"]))
    return out


@check("competing-default-routes", "namespace",
       looks_at="IPv4 default routes of the main table (device, gateway, metric) where one leaves through a "
                "macvlan/macvtap child",
       cannot_see="which gateway you meant: the commands keep the macvlan child's; policy routing rules and "
                  "other tables",
       test=LIVE + "test_competing_default_routes")
def competing_default_routes(f: Facts) -> list[Finding]:
    routes = f.default_routes
    kinds = {i.name: i.kind for i in f.ifaces}
    mine = [r for r in routes if kinds.get(r.dev) in ("macvlan", "macvtap")]
    if len(routes) < 2 or not mine:
        return []
    best = min(r.metric for r in routes)
    winner = next(r for r in routes if r.metric == best)
    tie = sum(1 for r in routes if r.metric == best) > 1
    others = [r for r in routes if r not in mine]
    if winner in mine and not tie and len(mine) == 1:
        return []
    listed = "; ".join(r.spec() for r in routes)
    return [Finding("competing-default-routes", "warning", _where(f),
                    f"{len(routes)} default routes ({listed}): {winner.spec()} wins"
                    + (" only by the order they were added (same metric)" if tie else "")
                    + f", so traffic for other networks leaves through {winner.dev}"
                    + ("" if winner in mine else f", not the macvlan child {mine[0].dev}"),
                    f"keep one default route: the commands keep the macvlan child's ({mine[0].spec()}); if the "
                    "other is the one you meant, delete the child's instead",
                    [f"ip route del {r.spec()}" for r in others + mine[1:]])]
