"""What doctor knows about a namespace (:class:`Facts`) and what it concludes (:class:`Finding`).

Facts are plain data so every check can be tested with facts built by hand (no Wi-Fi card,
NIC filter or hypervisor needed), and gathered for real by :mod:`.gather`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

SEVERITIES = ("info", "warning", "error")
CHILD_KINDS = ("macvlan", "macvtap", "ipvlan", "ipvtap")


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
    #: LOWER_UP as the kernel reports it (None: not known, e.g. the CNI preflight's facts)
    carrier: bool | None = None
    #: IFF_ALLMULTI set (macvtap children: the guest's multicast reaches it whatever its filter)
    allmulti: bool = False
    #: the multicast MACs on its filter (`ip maddr`), read for macvtap children only
    maddr: list[str] = field(default_factory=list)
    #: a veth's other end, when it lives in a named namespace: (namespace or None, ifname)
    peer: tuple[str | None, str] | None = None
    #: a child's parent when it lives in another named namespace: (namespace, ifname)
    parent_ref: tuple[str, str] | None = None


@dataclass
class Route:
    """An IPv4 default route of the main table."""
    dev: str
    gateway: str | None = None
    metric: int = 0

    def spec(self) -> str:
        """The route as `ip route del` takes it (every key, so exactly this route goes)."""
        via = f" via {self.gateway}" if self.gateway else ""
        return f"default{via} dev {self.dev} metric {self.metric}"


@dataclass
class Listener:
    """A UDP socket on port 67 (a DHCP server) in the examined namespace."""
    local: str  # "0.0.0.0" or an address
    dev: str | None = None  # bound to this device (SO_BINDTODEVICE), if any
    process: str = ""


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
    default_routes: list[Route] = field(default_factory=list)
    dhcp_servers: list[Listener] = field(default_factory=list)
    #: MACs each bridge learned (not its ports' own): bridge -> [(mac, port)]
    fdb: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    #: 802.1Q: "loaded" (or built in), "module" (8021q.ko exists, not loaded), "absent"; "" unknown
    vlan_support: str = ""
    #: the interface the user named that does not exist (doctor eth0.100 before it is made)
    asked: str | None = None

    def get(self, name: str) -> Iface | None:
        return next((i for i in self.ifaces if i.name == name), None)

    def children_of(self, parent: Iface) -> list[Iface]:
        local = [i for i in self.ifaces if i.kind in CHILD_KINDS and i.link == parent.ifindex and i.link_netns is None]
        return local + [i for i in self.remote_children if i.link == parent.ifindex]

    def sysctl_of(self, dev: str, key: str) -> int | None:
        """The value the kernel applies: the larger of conf/all and conf/DEV (arp_ignore,
        arp_announce, rp_filter all combine this way)."""
        vals = [self.sysctl.get(k, {}).get(key) for k in ("all", dev)]
        known = [v for v in vals if v is not None]
        return max(known) if known else None


@dataclass
class Finding:
    code: str
    severity: str  # info | warning | error
    subject: str  # the interface (or namespace) it is about
    saw: str
    fix: str  # what to do, in words
    #: the exact commands to run in the examined namespace (each one shell line), or none when
    #: the fix is not a command on this host (another NIC, a hypervisor setting)
    commands: list[str] = field(default_factory=list)
    #: what this check cannot see, so the reader knows where its certainty ends
    cannot_see: str = ""

    def as_dict(self) -> dict:
        return asdict(self)
