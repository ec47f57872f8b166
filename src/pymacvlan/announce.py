"""Announce an interface's addresses after it came up: gratuitous ARP and unsolicited NA.

A container redeployed with the same IP but a new MAC is unreachable from stations that
still hold the old MAC in their neighbour tables until those entries expire (minutes).
Docker 28 sends unsolicited ARP/NA after a container's endpoint comes up
(``com.docker.network.advertise_addr_nmsgs``: 0..3 messages, default 3,
``advertise_addr_ms``: 100..2000 ms apart, default 1000; moby libnetwork/internal/l2disco);
podman's netavark does not (containers/netavark#1114). Receivers update an entry they already
have: Linux takes a gratuitous ARP request (sender IP == target IP) as an override
(arp_process(): ``is_garp``) and an NA with the Override flag (ndisc_recv_na()), and creates
no new entries for either by default (arp_accept=0, accept_untracked_na=0).

Two halves: :func:`garp` / :func:`unsolicited_na` / :func:`frames` build the frames and
nothing else (sans-IO: tests and other front ends use them as they are); :func:`send` and
:func:`announce` put them on an interface through an AF_PACKET socket opened in the
interface's namespace. :func:`announce` sends the first round before it returns, so a caller
can rely on one announcement having left; the rest, ``interval_ms`` apart, go from a detached
child process that ends by itself (at most ``(count-1)*interval_ms``, or as soon as the
interface is gone, when sendto() fails) and holds no file descriptor of its parent's
(stdout/stderr go to /dev/null: a runtime reading the plugin's output until EOF is not held).

Shared: the netavark plugin uses it after setup; the Docker plugin can call
``announce(ifname, mac, ips, count, interval_ms, netns)`` the same way.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import time
from collections.abc import Iterable, Sequence

ETH_P_ARP, ETH_P_IPV6 = 0x0806, 0x86DD
BROADCAST = b"\xff" * 6
ALL_NODES_MAC = b"\x33\x33\x00\x00\x00\x01"
ALL_NODES = ipaddress.IPv6Address("ff02::1")
ICMPV6_NA = 136
NA_OVERRIDE = 0x20000000
ND_OPT_TARGET_LLADDR = 2

IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def garp(mac: bytes, ip: ipaddress.IPv4Address) -> bytes:
    """A gratuitous ARP request, broadcast: "``ip`` is at ``mac``" (sender IP == target IP,
    target MAC zero, as the kernel's arp_notify sends it)."""
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, ip.packed, b"\0" * 6, ip.packed)
    return BROADCAST + mac + struct.pack("!H", ETH_P_ARP) + arp


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def unsolicited_na(mac: bytes, ip: ipaddress.IPv6Address) -> bytes:
    """An unsolicited Neighbour Advertisement to all nodes (RFC 4861 7.2.6): Override set,
    Solicited clear, the target link-layer address option carrying ``mac``; hop limit 255
    (receivers drop NDP with any other)."""
    body = struct.pack("!BBHI16s", ICMPV6_NA, 0, 0, NA_OVERRIDE, ip.packed) + \
        struct.pack("!BB6s", ND_OPT_TARGET_LLADDR, 1, mac)
    pseudo = ip.packed + ALL_NODES.packed + struct.pack("!I3xB", len(body), 58)
    csum = _checksum(pseudo + body)
    body = body[:2] + struct.pack("!H", csum) + body[4:]
    ip6 = struct.pack("!IHBB16s16s", 6 << 28, len(body), 58, 255, ip.packed, ALL_NODES.packed)
    return ALL_NODES_MAC + mac + struct.pack("!H", ETH_P_IPV6) + ip6 + body


def frames(mac: bytes, ips: Iterable[IP]) -> list[bytes]:
    """One announcement round: a GARP per IPv4 address, an unsolicited NA per IPv6 one."""
    out = []
    for ip in ips:
        out.append(garp(mac, ip) if isinstance(ip, ipaddress.IPv4Address) else unsolicited_na(mac, ip))
    return out


def open_socket(ifname: str, netns: str | None = None) -> socket.socket:
    """An AF_PACKET socket bound to ``ifname`` in ``netns`` (a name or a path; None: here).
    The socket stays in that namespace after the call."""
    def make() -> socket.socket:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            s.bind((ifname, 0))
        except OSError:
            s.close()
            raise
        return s

    if netns is None:
        return make()
    from .backends.kernel.topology import in_netns

    with in_netns(netns):
        return make()


def send(sock: socket.socket, round_: Sequence[bytes]) -> None:
    for f in round_:
        sock.send(f)


def announce(ifname: str, mac: bytes, ips: Sequence[IP], count: int = 3, interval_ms: int = 1000,
             netns: str | None = None, background: bool = True) -> int:
    """Send ``count`` rounds ``interval_ms`` apart; the first before returning, the others
    from a detached child (``background``) or inline (a daemon calling this from a thread of
    its own passes ``background=False``). Returns the child's PID (0: none)."""
    if count <= 0 or not ips:
        return 0
    round_ = frames(mac, ips)
    sock = open_socket(ifname, netns)
    pid = -1
    try:
        send(sock, round_)
        if count > 1 and not background:
            for _ in range(count - 1):
                time.sleep(interval_ms / 1000)
                send(sock, round_)
        elif count > 1:
            pid = os.fork()
    finally:
        if pid != 0:
            sock.close()
    if pid != 0:
        return max(pid, 0)
    # the child: no stdio of the parent's, a session of its own; it ends by itself
    try:
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        for _ in range(count - 1):
            time.sleep(interval_ms / 1000)
            send(sock, round_)
    except BaseException:  # the interface is gone (ENXIO/ENODEV): stop announcing
        pass
    finally:
        os._exit(0)
