"""A minimal rtnetlink link monitor: the datapath follows what happens to its devices.

One socket per namespace, subscribed to RTMGRP_LINK (and address groups, which is when a
child's multicast list tends to change). It reports, per RTM_NEWLINK/RTM_DELLINK: ifindex,
name, flags, MAC and MTU. The parent's events give carrier (IFF_LOWER_UP), admin state,
MTU and MAC changes, deletion and re-creation; a TAP child's events give what a user did
with ``ip link set`` inside its namespace (up/down, address, mtu, promisc, allmulticast),
which is how a kernel macvlan child learns it too (ndo_open, ndo_set_mac_address, ...).

Parsing is struct-only; this socket is read only when the kernel has something to say.
"""

from __future__ import annotations

import errno
import socket
import struct
from dataclasses import dataclass

from ._sys import in_netns

__all__ = ["LinkEvent", "LinkMonitor"]

NETLINK_ROUTE = 0
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV6_IFADDR = 0x100
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR = 20, 21
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_STATS64, IFLA_PROMISCUITY = 1, 3, 4, 23, 30
_NLH = struct.Struct("IHHII")
_IFI = struct.Struct("BxHiII")
_IFA = struct.Struct("BBBBi")
_RTA = struct.Struct("HH")


@dataclass(frozen=True, slots=True)
class LinkEvent:
    """One link or address notification. ``kind`` is "new", "del" or "addr"."""

    kind: str
    ifindex: int
    name: str = ""
    flags: int = 0
    mac: bytes = b""
    mtu: int = 0
    promiscuity: int = -1
    #: rtnl_link_stats64.tx_dropped: a TAP with no reader attached drops (and counts) here
    tx_dropped: int = 0


def _attrs(data: bytes, off: int, end: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    while off + 4 <= end:
        length, typ = _RTA.unpack_from(data, off)
        if length < 4:
            break
        out[typ & 0x3FFF] = data[off + 4: off + length]
        off += (length + 3) & ~3
    return out


def parse(data: bytes) -> list[LinkEvent]:
    events: list[LinkEvent] = []
    off = 0
    while off + _NLH.size <= len(data):
        length, typ, _flags, _seq, _pid = _NLH.unpack_from(data, off)
        if length < _NLH.size:
            break
        body = off + _NLH.size
        end = off + length
        if typ in (RTM_NEWLINK, RTM_DELLINK) and end - body >= _IFI.size:
            _fam, _type, index, flags, _change = _IFI.unpack_from(data, body)
            a = _attrs(data, body + _IFI.size, end)
            name = a.get(IFLA_IFNAME, b"").split(b"\0", 1)[0].decode(errors="replace")
            mtu = struct.unpack("I", a[IFLA_MTU][:4])[0] if IFLA_MTU in a else 0
            promisc = struct.unpack("I", a[IFLA_PROMISCUITY][:4])[0] if IFLA_PROMISCUITY in a else -1
            st = a.get(IFLA_STATS64, b"")
            tx_dropped = struct.unpack_from("Q", st, 56)[0] if len(st) >= 64 else 0
            events.append(LinkEvent("new" if typ == RTM_NEWLINK else "del", index, name, flags,
                                    a.get(IFLA_ADDRESS, b""), mtu, promisc, tx_dropped))
        elif typ in (RTM_NEWADDR, RTM_DELADDR) and end - body >= _IFA.size:
            index = _IFA.unpack_from(data, body)[4]
            events.append(LinkEvent("addr", index))
        off += (length + 3) & ~3
    return events


class LinkMonitor:
    """An rtnetlink socket in one namespace; :meth:`read` returns what happened since."""

    def __init__(self, netns: str | None) -> None:
        self.netns = netns
        with in_netns(netns):
            s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
                              NETLINK_ROUTE)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            s.bind((0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
        except BaseException:
            s.close()
            raise
        self.sock = s
        self.fd = s.fileno()
        self.overruns = 0
        #: events were lost (ENOBUFS) since the owner last looked: it must read the state again
        self.lost = False
        self.errors = 0

    def read(self) -> list[LinkEvent]:
        out: list[LinkEvent] = []
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return out
            except OSError as e:
                if e.errno == errno.ENOBUFS:  # the receive buffer overflowed: events were lost
                    self.overruns += 1
                    self.lost = True
                    continue  # recv() returned the error and cleared it: the queue is readable again
                self.errors += 1  # anything else: what was read so far, and stop
                return out
            out.extend(parse(data))

    def query(self, ifindex: int) -> LinkEvent | None:
        """RTM_GETLINK for one device, answered on a private socket (never mixes with events)."""
        with in_netns(self.netns):
            s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        try:
            s.settimeout(1.0)
            msg = _IFI.pack(socket.AF_UNSPEC, 0, ifindex, 0, 0)
            s.send(_NLH.pack(_NLH.size + len(msg), RTM_GETLINK, NLM_F_REQUEST, 1, 0) + msg)
            data = s.recv(65536)
        except OSError:
            return None
        finally:
            s.close()
        evs = [e for e in parse(data) if e.kind == "new"]
        return evs[0] if evs else None

    def close(self) -> None:
        self.sock.close()
