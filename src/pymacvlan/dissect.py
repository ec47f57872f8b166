"""One line about what a frame carries, as ``tcpdump -e`` prints it (ARP, IPv4, IPv6 and its
neighbour discovery, VLAN tags), for ``pymacvlan trace``'s header line: a reader of a trace
wants to see "Request who-has 10.9.0.100 tell 10.9.0.1", not only "ethertype 0x0806".

Pure functions over bytes (no sockets), tolerant of anything: a frame too short or malformed
for its ethertype gets the ethertype alone, never an exception.
"""

from __future__ import annotations

import ipaddress
import struct

ETHERTYPES = {0x0800: "IPv4", 0x0806: "ARP", 0x86DD: "IPv6", 0x8100: "802.1Q", 0x88A8: "802.1Q-QinQ",
              0x8035: "Reverse ARP", 0x88CC: "LLDP", 0x8809: "Slow Protocols", 0x8808: "MPCP"}
_ICMP = {0: "echo reply", 8: "echo request", 3: "unreachable", 11: "time exceeded"}
_ICMP6 = {128: "echo request", 129: "echo reply", 133: "router solicitation", 134: "router advertisement",
          135: "neighbor solicitation", 136: "neighbor advertisement", 143: "multicast listener report v2"}
_IPPROTO = {1: "ICMP", 2: "IGMP", 6: "TCP", 17: "UDP", 58: "ICMP6"}


def ethertype_text(et: int) -> str:
    """tcpdump's ``ethertype ARP (0x0806)``; an unknown one is ``ethertype Unknown (0x88b5)``."""
    return f"ethertype {ETHERTYPES.get(et, 'Unknown')} (0x{et:04x})"


def _mac(b: bytes) -> str:
    return b.hex(":")


def arp(payload: bytes) -> str | None:
    """``Request who-has 10.0.0.2 tell 10.0.0.1, length 28`` / ``Reply 10.0.0.2 is-at MAC, length 28``."""
    if len(payload) < 28:
        return None
    htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", payload[:8])
    if (htype, ptype, hlen, plen) != (1, 0x0800, 6, 4):
        return None
    sha, spa, tha, tpa = payload[8:14], payload[14:18], payload[18:24], payload[24:28]
    s, t = str(ipaddress.IPv4Address(spa)), str(ipaddress.IPv4Address(tpa))
    if op == 1:
        if s == t:
            return f"Request who-has {t} tell {s} (gratuitous), length 28"
        return f"Request who-has {t}" + (f" ({_mac(tha)})" if any(tha) else "") + f" tell {s}, length 28"
    if op == 2:
        return f"Reply {s} is-at {_mac(sha)}, length 28"
    return f"ARP opcode {op} {s} > {t}, length 28"


def ipv4(payload: bytes) -> str | None:
    if len(payload) < 20 or payload[0] >> 4 != 4:
        return None
    ihl = (payload[0] & 0x0F) * 4
    total = struct.unpack("!H", payload[2:4])[0]
    proto = payload[9]
    src, dst = ipaddress.IPv4Address(payload[12:16]), ipaddress.IPv4Address(payload[16:20])
    body = payload[ihl:total] if total >= ihl else b""
    if proto == 1 and len(body) >= 8:
        kind = _ICMP.get(body[0], f"type {body[0]}")
        if body[0] in (0, 8):
            ident, seq = struct.unpack("!HH", body[4:8])
            return f"{src} > {dst}: ICMP {kind}, id {ident}, seq {seq}, length {len(body)}"
        return f"{src} > {dst}: ICMP {kind}, length {len(body)}"
    if proto in (6, 17) and len(body) >= 4:
        sport, dport = struct.unpack("!HH", body[:4])
        data = max(0, len(body) - (8 if proto == 17 else 20))
        return f"{src}.{sport} > {dst}.{dport}: {_IPPROTO[proto]}, length {data}"
    return f"{src} > {dst}: {_IPPROTO.get(proto, f'ip-proto-{proto}')}, length {len(body)}"


def ipv6(payload: bytes) -> str | None:
    if len(payload) < 40 or payload[0] >> 4 != 6:
        return None
    plen, nxt = struct.unpack("!HB", payload[4:7])
    src, dst = ipaddress.IPv6Address(payload[8:24]), ipaddress.IPv6Address(payload[24:40])
    body = payload[40:40 + plen]
    if nxt == 58 and len(body) >= 4:
        t = body[0]
        kind = _ICMP6.get(t, f"type {t}")
        if t == 135 and len(body) >= 24:
            return f"{src} > {dst}: ICMP6, {kind}, who has {ipaddress.IPv6Address(body[8:24])}, length {len(body)}"
        if t == 136 and len(body) >= 24:
            return f"{src} > {dst}: ICMP6, {kind}, tgt is {ipaddress.IPv6Address(body[8:24])}, length {len(body)}"
        return f"{src} > {dst}: ICMP6, {kind}, length {len(body)}"
    return f"{src} > {dst}: {_IPPROTO.get(nxt, f'ip-proto-{nxt}')}, length {len(body)}"


def summary(frame: bytes) -> tuple[str, str | None]:
    """(``ethertype NAME (0xXXXX)``, what the frame carries or None), VLAN tags unwrapped."""
    if len(frame) < 14:
        return "truncated", None
    et = int.from_bytes(frame[12:14], "big")
    head = ethertype_text(et)
    rest = frame[14:]
    inner = ""
    while et in (0x8100, 0x88A8) and len(rest) >= 4:
        tci, et = struct.unpack("!HH", rest[:4])
        inner += f"vlan {tci & 0x0FFF}, p {tci >> 13}, {ethertype_text(et)}, "
        rest = rest[4:]
    what = {0x0806: arp, 0x0800: ipv4, 0x86DD: ipv6}.get(et)
    try:
        text = what(rest) if what else None
    except (ValueError, struct.error, KeyError):
        text = None
    if inner:
        return head, inner + (text or "").rstrip(", ") if text else inner.rstrip(", ")
    return head, text
