"""The DHCPv4 client of RFC 2131 section 4.4, sans-IO: one :class:`Client` per lease.

No sockets, clocks, threads or randomness of its own: the caller hands it received messages
(:meth:`Client.receive`) and the time (:meth:`Client.tick`, every call takes ``now`` in seconds
of a wall clock, since leases outlive processes), and carries out what comes back: a list of
:class:`Send` (a message, where to send it) and :class:`Event` (bound, renewed, nak, expired,
failed, released). :meth:`Client.deadline` says when the next tick is due; between deadlines and
packets the client needs nothing (a daemon holding leases sleeps until the earliest T1).

States: INIT, SELECTING, REQUESTING, BOUND, RENEWING, REBINDING, INIT_REBOOT (a remembered
lease, past its T1 or not known to be current), plus FAILED (acquisition gave up after
``timeout``) and RELEASED. A reply is taken only if it is a BOOTREPLY of our transaction (xid),
for our hardware address, with our client identifier when it echoes one (RFC 6842), of a type
the state expects, from the server we chose when that matters, and with a lease that passes
:func:`check_lease`; everything else is counted in :attr:`Client.ignored` by reason and changes
nothing. Never configuring a bad address is :func:`check_lease`'s job: a unicast host address
inside the offered subnet (not its network or broadcast address), a router on that subnet,
sane times, every option the right size and in range.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from . import packet as P
from .packet import BadPacket, Message


class State(Enum):
    INIT = "init"
    SELECTING = "selecting"
    REQUESTING = "requesting"
    BOUND = "bound"
    RENEWING = "renewing"
    REBINDING = "rebinding"
    INIT_REBOOT = "init-reboot"
    FAILED = "failed"
    RELEASED = "released"


#: options the client asks for (parameter request list, option 55)
PARAMS = bytes((P.OPT_SUBNET, P.OPT_ROUTER, P.OPT_DNS, P.OPT_DOMAIN, P.OPT_MTU, P.OPT_LEASE_TIME,
                P.OPT_T1, P.OPT_T2, P.OPT_CLASSLESS_ROUTES))
INFINITE = 0xFFFFFFFF
MIN_LEASE = 10  # seconds; shorter is refused as nonsense


@dataclass
class Lease:
    """A bound lease with every option this client applies; times are absolute (wall clock)."""

    address: IPv4Address
    prefixlen: int
    server_id: IPv4Address
    lease_time: int
    acquired: float
    t1: float
    t2: float
    expires: float
    server_mac: bytes = P.BROADCAST_MAC
    routers: list[IPv4Address] = field(default_factory=list)
    dns: list[IPv4Address] = field(default_factory=list)
    domain: str = ""
    routes: list[tuple[IPv4Network, IPv4Address]] = field(default_factory=list)
    mtu: int | None = None

    @property
    def network(self) -> IPv4Network:
        return P.network_of(self.address, self.prefixlen)

    @property
    def interface(self) -> str:
        return f"{self.address}/{self.prefixlen}"

    def to_dict(self) -> dict[str, Any]:
        return {"address": self.interface, "server_id": str(self.server_id), "lease_time": self.lease_time,
                "acquired": self.acquired, "t1": self.t1, "t2": self.t2, "expires": self.expires,
                "server_mac": self.server_mac.hex(":"), "routers": [str(r) for r in self.routers],
                "dns": [str(d) for d in self.dns], "domain": self.domain,
                "routes": [[str(n), str(g)] for n, g in self.routes], "mtu": self.mtu}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Lease:
        """The inverse of :meth:`to_dict`; ValueError/TypeError/KeyError on a bad record, and the
        result passes :func:`check_lease`'s address rules again."""
        addr, _, plen = str(d["address"]).partition("/")
        lease = cls(address=IPv4Address(addr), prefixlen=int(plen), server_id=IPv4Address(d["server_id"]),
                    lease_time=int(d["lease_time"]), acquired=float(d["acquired"]), t1=float(d["t1"]),
                    t2=float(d["t2"]), expires=float(d["expires"]),
                    server_mac=bytes.fromhex(str(d.get("server_mac", "ff:ff:ff:ff:ff:ff")).replace(":", "")),
                    routers=[IPv4Address(r) for r in d.get("routers", [])],
                    dns=[IPv4Address(x) for x in d.get("dns", [])], domain=str(d.get("domain", "")),
                    routes=[(IPv4Network(n), IPv4Address(g)) for n, g in d.get("routes", [])],
                    mtu=None if d.get("mtu") is None else int(d["mtu"]))
        if len(lease.server_mac) != 6:
            raise ValueError("server_mac must be 6 bytes")
        _check_address(lease.address, lease.prefixlen, lease.routers, None)
        return lease

    def cni_result(self, cni_version: str = "1.1.0") -> dict[str, Any]:
        """An IPAM result (CNI spec): the address, the gateway, routes (classless static routes
        replace the router's default route, RFC 3442), DNS."""
        gw = str(self.routers[0]) if self.routers else None
        ip: dict[str, Any] = {"address": self.interface}
        if gw:
            ip["gateway"] = gw
        routes: list[dict[str, Any]] = []
        if self.routes:
            for net, via in self.routes:
                r: dict[str, Any] = {"dst": str(net)}
                if int(via):
                    r["gw"] = str(via)
                routes.append(r)
        elif gw:
            routes.append({"dst": "0.0.0.0/0", "gw": gw})
        dns: dict[str, Any] = {}
        if self.dns:
            dns["nameservers"] = [str(d) for d in self.dns]
        if self.domain:
            dns["domain"] = self.domain
        return {"cniVersion": cni_version, "ips": [ip], "routes": routes, "dns": dns}


@dataclass(frozen=True)
class Send:
    """Transmit ``msg`` from the client's MAC: to ``dst_ip`` at ``dst_mac`` from ``src_ip``."""

    msg: Message
    dst_ip: IPv4Address = P.BROADCAST_IP
    dst_mac: bytes = P.BROADCAST_MAC
    src_ip: IPv4Address = P.ZERO


@dataclass(frozen=True)
class Event:
    """What the runtime must hear: ``kind`` is bound, renewed, changed, nak, expired, failed,
    released; ``lease`` is the lease it concerns (None for failed/expired/nak); ``detail`` says why."""

    kind: str
    lease: Lease | None = None
    detail: str = ""


Output = Send | Event


@dataclass
class Config:
    chaddr: bytes
    client_id: bytes
    hostname: str = ""
    #: seconds from start() until an acquisition that got no lease gives up (FAILED)
    timeout: float = 30.0
    #: the first retransmission delay; doubles up to max_retransmit (randomised by +-25 %)
    retransmit: float = 1.0
    max_retransmit: float = 16.0
    #: requests sent in REQUESTING before going back to discovering
    request_tries: int = 4
    #: requests sent in INIT-REBOOT before discovering (a server with no record stays silent)
    reboot_tries: int = 2
    #: an address the offer must fall in (the network's configured subnet), or None
    subnet: IPv4Network | None = None
    #: an address to ask for in DISCOVER (the last one this identity had)
    requested: IPv4Address | None = None


def _check_address(addr: IPv4Address, plen: int, routers: list[IPv4Address], subnet: IPv4Network | None) -> None:
    net = P.network_of(addr, plen)
    if (addr.is_multicast or addr.is_loopback or addr.is_unspecified or addr == P.BROADCAST_IP
            or addr.is_link_local or addr.is_reserved or int(addr) >> 24 == 0):
        raise BadPacket("bad_address", f"{addr} is not a unicast host address")
    if addr in (net.network_address, net.broadcast_address):
        raise BadPacket("bad_address", f"{addr} is the network or broadcast address of {net}")
    for r in routers:
        if r not in net or r in (net.network_address, net.broadcast_address) or r == addr:
            raise BadPacket("router_off_subnet", f"router {r} is not a host on {net}")
    if subnet is not None and (addr not in subnet or not net.subnet_of(subnet)):
        raise BadPacket("outside_subnet", f"{addr}/{plen} is outside the configured subnet {subnet}")


def check_lease(m: Message, now: float, server_mac: bytes, subnet: IPv4Network | None) -> Lease:
    """The lease an OFFER/ACK carries, or BadPacket: every option this client uses is checked
    for size and range, and the address must be one a host may configure."""
    o = m.options
    if P.OPT_SUBNET not in o:
        raise BadPacket("no_subnet_mask")
    plen = P.prefix_of_mask(o[P.OPT_SUBNET])
    server = m.ip_option(P.OPT_SERVER_ID)
    if server is None:
        raise BadPacket("no_server_id")
    if server.is_unspecified or server.is_multicast or server == P.BROADCAST_IP:
        raise BadPacket("option54_range", str(server))
    lease_time = m.u32_option(P.OPT_LEASE_TIME)
    if lease_time is None:
        raise BadPacket("no_lease_time")
    if lease_time < MIN_LEASE:
        raise BadPacket("option51_range", f"{lease_time} s")
    routers = P.ip_list(o[P.OPT_ROUTER], P.OPT_ROUTER) if P.OPT_ROUTER in o else []
    dns = P.ip_list(o[P.OPT_DNS], P.OPT_DNS) if P.OPT_DNS in o else []
    for d in dns:
        if d.is_unspecified or d.is_multicast or d == P.BROADCAST_IP:
            raise BadPacket("option6_range", str(d))
    domain = P.text_option(o[P.OPT_DOMAIN], P.OPT_DOMAIN) if P.OPT_DOMAIN in o else ""
    if len(domain) > 253:
        raise BadPacket("option15_range", "longer than 253")
    mtu = None
    if P.OPT_MTU in o:
        if len(o[P.OPT_MTU]) != 2:
            raise BadPacket("option26_length", f"{len(o[P.OPT_MTU])} bytes, expected 2")
        mtu = int.from_bytes(o[P.OPT_MTU], "big")
        if not 576 <= mtu <= 65535:  # RFC 2132: at least 68; below 576 no host works
            raise BadPacket("option26_range", str(mtu))
    routes = P.classless_routes(o[P.OPT_CLASSLESS_ROUTES]) if P.OPT_CLASSLESS_ROUTES in o else []
    addr = m.yiaddr
    _check_address(addr, plen, routers, subnet)
    net = P.network_of(addr, plen)
    for dst, via in routes:
        if int(via) and (via not in net or via == addr):
            raise BadPacket("option121_range", f"route {dst} via {via} is not on {net}")
    t1_opt, t2_opt = m.u32_option(P.OPT_T1), m.u32_option(P.OPT_T2)
    if lease_time == INFINITE:
        t1 = t2 = expires = float("inf")
    else:
        t1s = t1_opt if t1_opt is not None else lease_time * 0.5
        t2s = t2_opt if t2_opt is not None else lease_time * 0.875
        if not 0 < t1s <= t2s <= lease_time:  # RFC 2131 4.4.5: inconsistent times: use the defaults
            t1s, t2s = lease_time * 0.5, lease_time * 0.875
        t1, t2, expires = now + t1s, now + t2s, now + lease_time
    return Lease(address=addr, prefixlen=plen, server_id=server, lease_time=lease_time, acquired=now,
                 t1=t1, t2=t2, expires=expires, server_mac=server_mac, routers=routers, dns=dns, domain=domain,
                 routes=routes, mtu=mtu)


class Client:
    """One lease's state machine. ``rng`` supplies xids and jitter (seeded in tests)."""

    def __init__(self, cfg: Config, rng: random.Random | None = None, lease: Lease | None = None) -> None:
        if len(cfg.chaddr) != 6:
            raise ValueError("chaddr must be 6 bytes")
        self.cfg = cfg
        self.rng = rng or random.Random()
        self.state = State.INIT
        self.lease: Lease | None = lease
        self.xid = 0
        self.ignored: Counter[str] = Counter()
        self._offer: Lease | None = None
        self._started = 0.0
        self._next = float("inf")  # next retransmission or timer
        self._delay = cfg.retransmit
        self._tries = 0
        self._give_up = float("inf")  # acquisition deadline (FAILED after it)

    # -- the caller's side ------------------------------------------------------------------------
    def start(self, now: float) -> list[Output]:
        """Begin: a remembered lease before its T1 is simply BOUND again (no packet: a daemon
        restart costs the server nothing); one past T1 (or expired) is confirmed by INIT-REBOOT;
        no lease: DISCOVER."""
        self._started = now
        self._give_up = now + self.cfg.timeout
        if self.lease is not None and now < self.lease.expires:
            # still valid: BOUND, renewing at once if past T1 (the address stays in use meanwhile)
            self.state = State.BOUND
            self._give_up = float("inf")
            self._next = self.lease.t1
            return self.tick(now) if now >= self.lease.t1 else []
        if self.lease is not None:
            return self._enter_init_reboot(now)
        return self._enter_init(now)

    def deadline(self) -> float | None:
        """When :meth:`tick` must next be called (None: nothing to do until a packet comes)."""
        if self.state in (State.FAILED, State.RELEASED):
            return None
        d = self._next
        if self.state in (State.SELECTING, State.REQUESTING, State.INIT_REBOOT, State.INIT):
            d = min(d, self._give_up)
        return d if d != float("inf") else None

    def tick(self, now: float) -> list[Output]:
        st = self.state
        if st in (State.FAILED, State.RELEASED):
            return []
        if st in (State.INIT, State.SELECTING, State.REQUESTING, State.INIT_REBOOT) and now >= self._give_up:
            self.state = State.FAILED
            self._next = float("inf")
            return [Event("failed", None, f"no lease after {self.cfg.timeout:g} s in {st.value}"
                          f" ({self._summary()})")]
        if now < self._next:
            return []
        if st is State.INIT:
            return self._enter_init(now)
        if st is State.SELECTING:
            return self._retransmit(now, self._discover())
        if st is State.REQUESTING:
            if self._tries >= self.cfg.request_tries:
                return self._enter_init(now)
            return self._retransmit(now, self._request_selected())
        if st is State.INIT_REBOOT:
            if self._tries >= self.cfg.reboot_tries:
                return self._enter_init(now)
            return self._retransmit(now, self._request_reboot())
        lease = self.lease
        assert lease is not None
        if now >= lease.expires:
            self.lease = None
            out: list[Output] = [Event("expired", None, f"lease of {lease.interface} expired without renewal")]
            self._give_up = float("inf")  # a lease once held is sought again until released
            return out + self._enter_init(now)
        if st is State.BOUND or (st is State.RENEWING and now < lease.t2):
            if st is State.BOUND:
                self.state = State.RENEWING
                self.xid = self._new_xid()
            return self._renew_send(now, lease, unicast=True, until=lease.t2)
        # past T2: REBINDING (broadcast)
        if st is not State.REBINDING:
            self.state = State.REBINDING
            self.xid = self._new_xid()
        return self._renew_send(now, lease, unicast=False, until=lease.expires)

    def receive(self, m: Message, now: float, src_mac: bytes = P.BROADCAST_MAC) -> list[Output]:
        """A decoded message that came for this client's MAC; hostile or stray ones are counted."""
        try:
            return self._receive(m, now, src_mac)
        except BadPacket as e:
            self.ignored[e.reason] += 1
            return []

    def renew(self, now: float) -> list[Output]:
        """Renew now instead of at T1 (an operator's or a test's request); only when BOUND."""
        if self.state is not State.BOUND or self.lease is None:
            return []
        self._next = now
        return self.tick(now)

    def release(self, now: float) -> list[Output]:
        """RELEASE the lease (unicast to its server) and stop; idempotent."""
        out: list[Output] = []
        lease = self.lease
        if lease is not None and self.state in (State.BOUND, State.RENEWING, State.REBINDING) and now < lease.expires:
            m = self._msg(P.RELEASE, self._new_xid(), ciaddr=lease.address)
            m.options[P.OPT_SERVER_ID] = lease.server_id.packed
            out.append(Send(m, lease.server_id, lease.server_mac, lease.address))
        self.state = State.RELEASED
        self._next = float("inf")
        out.append(Event("released", lease))
        self.lease = None
        return out

    # -- internals ----------------------------------------------------------------------------------
    def _summary(self) -> str:
        ign = sum(self.ignored.values())
        return f"{ign} reply(ies) ignored: {dict(self.ignored)}" if ign else "no reply"

    def _new_xid(self) -> int:
        return self.rng.getrandbits(32)

    def _jitter(self, d: float) -> float:
        return d * self.rng.uniform(0.75, 1.25)

    def _msg(self, mtype: int, xid: int, ciaddr: IPv4Address = P.ZERO) -> Message:
        opts: dict[int, bytes] = {P.OPT_MSG_TYPE: bytes((mtype,)), P.OPT_CLIENT_ID: self.cfg.client_id}
        if mtype in (P.DISCOVER, P.REQUEST):
            opts[P.OPT_PARAM_LIST] = PARAMS
            opts[P.OPT_MAX_SIZE] = (1500).to_bytes(2, "big")
            if self.cfg.hostname:
                opts[P.OPT_HOSTNAME] = self.cfg.hostname.encode()
        # broadcast flag: replies before we hold an address come to ff:ff..., which every
        # listener on the parent sees (a unicast to the child's MAC works too, see service)
        flags = P.FLAG_BROADCAST if ciaddr == P.ZERO and mtype != P.RELEASE else 0
        return Message(op=P.BOOTREQUEST, xid=xid, chaddr=self.cfg.chaddr, options=opts, flags=flags, ciaddr=ciaddr)

    def _discover(self) -> Send:
        m = self._msg(P.DISCOVER, self.xid)
        if self.cfg.requested is not None:
            m.options[P.OPT_REQUESTED_IP] = self.cfg.requested.packed
        return Send(m)

    def _request_selected(self) -> Send:
        off = self._offer
        assert off is not None
        m = self._msg(P.REQUEST, self.xid)
        m.options[P.OPT_REQUESTED_IP] = off.address.packed
        m.options[P.OPT_SERVER_ID] = off.server_id.packed
        return Send(m)

    def _request_reboot(self) -> Send:
        lease = self.lease
        assert lease is not None
        m = self._msg(P.REQUEST, self.xid)
        m.options[P.OPT_REQUESTED_IP] = lease.address.packed
        return Send(m)

    def _retransmit(self, now: float, s: Send) -> list[Output]:
        self._tries += 1
        self._next = now + self._jitter(self._delay)
        self._delay = min(self._delay * 2, self.cfg.max_retransmit)
        return [s]

    def _enter_init(self, now: float) -> list[Output]:
        self.state = State.SELECTING
        self.xid = self._new_xid()
        self._offer = None
        self._tries = 0
        self._delay = self.cfg.retransmit
        return self._retransmit(now, self._discover())

    def _enter_init_reboot(self, now: float) -> list[Output]:
        self.state = State.INIT_REBOOT
        self.xid = self._new_xid()
        self._tries = 0
        self._delay = self.cfg.retransmit
        return self._retransmit(now, self._request_reboot())

    def _renew_send(self, now: float, lease: Lease, unicast: bool, until: float) -> list[Output]:
        # RFC 2131 4.4.5: wait half the time left (down to 60 s; here down to a second for short leases)
        self._next = min(until, now + max((until - now) / 2, min(60.0, lease.lease_time / 8), 1.0))
        m = self._msg(P.REQUEST, self.xid, ciaddr=lease.address)
        if unicast:
            return [Send(m, lease.server_id, lease.server_mac, lease.address)]
        return [Send(m, P.BROADCAST_IP, P.BROADCAST_MAC, lease.address)]

    def _receive(self, m: Message, now: float, src_mac: bytes) -> list[Output]:
        if m.op != P.BOOTREPLY:
            raise BadPacket("not_reply")
        if m.chaddr != self.cfg.chaddr:
            raise BadPacket("foreign_chaddr")
        if m.xid != self.xid:
            raise BadPacket("foreign_xid")
        cid = m.options.get(P.OPT_CLIENT_ID)
        if cid is not None and cid != self.cfg.client_id:
            raise BadPacket("foreign_client_id")
        mtype = m.msg_type
        if mtype is None:
            raise BadPacket("no_message_type")
        st = self.state
        if mtype == P.OFFER:
            if st is not State.SELECTING:
                raise BadPacket("unexpected_offer")
            self._offer = check_lease(m, now, src_mac, self.cfg.subnet)
            self.state = State.REQUESTING
            self._tries = 0
            self._delay = self.cfg.retransmit
            return self._retransmit(now, self._request_selected())
        if mtype not in (P.ACK, P.NAK):
            raise BadPacket("unexpected_type")
        if st not in (State.REQUESTING, State.INIT_REBOOT, State.RENEWING, State.REBINDING):
            raise BadPacket(f"unexpected_{P.TYPE_NAMES[mtype].lower()}")
        server = m.ip_option(P.OPT_SERVER_ID)
        if st is State.REQUESTING and self._offer is not None and server != self._offer.server_id:
            raise BadPacket("foreign_server")
        if st is State.RENEWING and self.lease is not None and server is not None and server != self.lease.server_id:
            raise BadPacket("foreign_server")
        if mtype == P.NAK:
            old = self.lease
            self.lease = None
            msg = m.options.get(P.OPT_MESSAGE, b"").decode("ascii", "replace")[:200]
            out: list[Output] = []
            if st in (State.RENEWING, State.REBINDING, State.INIT_REBOOT) or old is not None:
                out.append(Event("nak", old, f"server {server} refused {st.value}" + (f": {msg}" if msg else "")))
                self._give_up = float("inf")  # a lease once held is sought again until released
            return out + self._enter_init(now)
        lease = check_lease(m, now, src_mac, self.cfg.subnet)
        if st is State.REQUESTING and self._offer is not None and lease.address != self._offer.address:
            raise BadPacket("ack_address_mismatch", f"offered {self._offer.address}, acked {lease.address}")
        if st in (State.RENEWING, State.REBINDING, State.INIT_REBOOT) and self.lease is not None \
                and lease.address != self.lease.address and st is not State.INIT_REBOOT:
            kind = "changed"
        elif st in (State.RENEWING, State.REBINDING):
            kind = "renewed"
        else:
            kind = "bound"
        self.lease = lease
        self.cfg.requested = lease.address
        self.state = State.BOUND
        self._offer = None
        self._next = lease.t1
        self._give_up = float("inf")
        return [Event(kind, lease)]
