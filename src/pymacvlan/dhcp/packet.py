"""DHCPv4 messages (RFC 2131/2132) and their Ethernet/IPv4/UDP framing: a small strict codec.

Why not a library: the PyPI candidates (dhcppython 0.1.4 of 2021, dhcplib 0.1.1 of 2018,
pydhcplib, dhcpkit which is DHCPv6 only) are unmaintained and lenient (they accept truncated
options or mis-sized fixed fields and hand the caller whatever came), and scapy is far too big
for the daemon and decodes hostile input without complaint. What a client needs is small: the
fixed header, options as TLVs, and the dozen options it reads, each checked for its exact size
and range. scapy is used in the tests as an independent encoder/decoder to cross-check this one.

:func:`decode` raises :class:`BadPacket` with a short reason (the counter's name) for anything
out of spec; it never raises anything else (the fuzz test holds it to that). Options repeated
in one message are concatenated (RFC 3396); option overload (52) is refused rather than
half-supported.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

MAGIC = b"\x63\x82\x53\x63"
BOOTREQUEST, BOOTREPLY = 1, 2
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)
TYPE_NAMES = {DISCOVER: "DISCOVER", OFFER: "OFFER", REQUEST: "REQUEST", DECLINE: "DECLINE", ACK: "ACK",
              NAK: "NAK", RELEASE: "RELEASE", INFORM: "INFORM"}

# options
PAD, END = 0, 255
OPT_SUBNET, OPT_ROUTER, OPT_DNS, OPT_HOSTNAME, OPT_DOMAIN = 1, 3, 6, 12, 15
OPT_MTU, OPT_BROADCAST = 26, 28
OPT_REQUESTED_IP, OPT_LEASE_TIME, OPT_OVERLOAD, OPT_MSG_TYPE, OPT_SERVER_ID = 50, 51, 52, 53, 54
OPT_PARAM_LIST, OPT_MESSAGE, OPT_MAX_SIZE, OPT_T1, OPT_T2, OPT_CLIENT_ID = 55, 56, 57, 58, 59, 61
OPT_CLASSLESS_ROUTES = 121

FLAG_BROADCAST = 0x8000
CLIENT_PORT, SERVER_PORT = 68, 67
HEADER_LEN = 236  # up to chaddr+sname+file, without the cookie
MIN_LEN = HEADER_LEN + 4
ZERO = IPv4Address(0)
BROADCAST_IP = IPv4Address("255.255.255.255")
BROADCAST_MAC = b"\xff" * 6


class BadPacket(ValueError):
    """A message or frame out of spec; ``reason`` is a short counter name."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass
class Message:
    """One DHCP message; ``options`` in insertion order, values as raw bytes."""

    op: int
    xid: int
    chaddr: bytes
    options: dict[int, bytes] = field(default_factory=dict)
    secs: int = 0
    flags: int = 0
    ciaddr: IPv4Address = ZERO
    yiaddr: IPv4Address = ZERO
    siaddr: IPv4Address = ZERO
    giaddr: IPv4Address = ZERO
    hops: int = 0

    @property
    def msg_type(self) -> int | None:
        v = self.options.get(OPT_MSG_TYPE)
        return v[0] if v is not None and len(v) == 1 else None

    def ip_option(self, code: int) -> IPv4Address | None:
        v = self.options.get(code)
        if v is None:
            return None
        if len(v) != 4:
            raise BadPacket(f"option{code}_length", f"{len(v)} bytes, expected 4")
        return IPv4Address(v)

    def u32_option(self, code: int) -> int | None:
        v = self.options.get(code)
        if v is None:
            return None
        if len(v) != 4:
            raise BadPacket(f"option{code}_length", f"{len(v)} bytes, expected 4")
        return int.from_bytes(v, "big")


def encode(m: Message) -> bytes:
    """The BOOTP/DHCP payload (at least 300 bytes, as BOOTP relays expect)."""
    if len(m.chaddr) != 6:
        raise ValueError("chaddr must be 6 bytes")
    out = bytearray(struct.pack("!BBBBIHH4s4s4s4s", m.op, 1, 6, m.hops, m.xid, m.secs, m.flags,
                                m.ciaddr.packed, m.yiaddr.packed, m.siaddr.packed, m.giaddr.packed))
    out += m.chaddr + bytes(10) + bytes(64) + bytes(128) + MAGIC
    for code, value in m.options.items():
        if not 0 < code < 255:
            raise ValueError(f"option code {code}")
        for i in range(0, max(len(value), 1), 255):  # RFC 3396: long values split
            chunk = value[i:i + 255]
            out += bytes((code, len(chunk))) + chunk
    out.append(END)
    if len(out) < 300:
        out += bytes(300 - len(out))
    return bytes(out)


def decode(data: bytes) -> Message:
    """Parse and check a BOOTP/DHCP payload; :class:`BadPacket` for anything out of spec."""
    if len(data) < MIN_LEN:
        raise BadPacket("short", f"{len(data)} bytes")
    op, htype, hlen, hops, xid, secs, flags = struct.unpack_from("!BBBBIHH", data)
    if op not in (BOOTREQUEST, BOOTREPLY):
        raise BadPacket("bad_op", str(op))
    if htype != 1 or hlen != 6:
        raise BadPacket("bad_htype", f"htype {htype} hlen {hlen}")
    if data[HEADER_LEN:MIN_LEN] != MAGIC:
        raise BadPacket("bad_cookie")
    ci, yi, si, gi = (IPv4Address(data[12 + 4 * i:16 + 4 * i]) for i in range(4))
    options: dict[int, bytes] = {}
    i, n = MIN_LEN, len(data)
    ended = False
    while i < n:
        code = data[i]
        if code == PAD:
            i += 1
            continue
        if code == END:
            ended = True
            break
        if i + 1 >= n:
            raise BadPacket("option_truncated", f"option {code} has no length")
        length = data[i + 1]
        if i + 2 + length > n:
            raise BadPacket("option_truncated", f"option {code} length {length} past the end")
        options[code] = options.get(code, b"") + data[i + 2:i + 2 + length]
        i += 2 + length
    if not ended:
        raise BadPacket("options_unterminated")
    if OPT_OVERLOAD in options:
        raise BadPacket("overload_unsupported")
    return Message(op=op, xid=xid, chaddr=bytes(data[28:34]), options=options, secs=secs, flags=flags,
                   ciaddr=ci, yiaddr=yi, siaddr=si, giaddr=gi, hops=hops)


# -- typed options -----------------------------------------------------------------------------------
def ip_list(v: bytes, code: int) -> list[IPv4Address]:
    if not v or len(v) % 4:
        raise BadPacket(f"option{code}_length", f"{len(v)} bytes, expected a multiple of 4")
    return [IPv4Address(v[i:i + 4]) for i in range(0, len(v), 4)]


def prefix_of_mask(v: bytes) -> int:
    if len(v) != 4:
        raise BadPacket("option1_length", f"{len(v)} bytes, expected 4")
    m = int.from_bytes(v, "big")
    plen = bin(m).count("1")
    if m != ((0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF) or not 1 <= plen <= 30:
        raise BadPacket("option1_range", f"mask {IPv4Address(m)} is not a usable netmask")
    return plen


def classless_routes(v: bytes) -> list[tuple[IPv4Network, IPv4Address]]:
    """RFC 3442: (descriptor width, significant octets, router) repeated."""
    out = []
    i = 0
    while i < len(v):
        width = v[i]
        if width > 32:
            raise BadPacket("option121_range", f"prefix length {width}")
        sig = (width + 7) // 8
        if i + 1 + sig + 4 > len(v):
            raise BadPacket("option121_length", "a route runs past the option's end")
        dst = v[i + 1:i + 1 + sig] + bytes(4 - sig)
        try:
            net = IPv4Network((IPv4Address(dst), width))
        except ValueError:
            raise BadPacket("option121_range", f"{IPv4Address(dst)}/{width} has host bits set") from None
        out.append((net, IPv4Address(v[i + 1 + sig:i + 5 + sig])))
        i += 1 + sig + 4
    if not out:
        raise BadPacket("option121_length", "empty")
    return out


def text_option(v: bytes, code: int) -> str:
    v = v.rstrip(b"\0")
    if not v or any(c < 0x21 or c > 0x7E for c in v.replace(b" ", b"")):
        raise BadPacket(f"option{code}_range", "not printable ASCII")
    return v.decode("ascii")


# -- framing -----------------------------------------------------------------------------------------
def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def frame(payload: bytes, src_mac: bytes, dst_mac: bytes, src_ip: IPv4Address, dst_ip: IPv4Address,
          sport: int = CLIENT_PORT, dport: int = SERVER_PORT, ip_id: int = 0) -> bytes:
    """Ethernet + IPv4 (TTL 64, DF off) + UDP with both checksums."""
    ulen = 8 + len(payload)
    pseudo = src_ip.packed + dst_ip.packed + struct.pack("!BBH", 0, 17, ulen)
    udp = struct.pack("!HHHH", sport, dport, ulen, 0) + payload
    ucs = _csum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", ucs) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0x10, 20 + ulen, ip_id & 0xFFFF, 0, 64, 17, 0, src_ip.packed, dst_ip.packed)
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    return dst_mac + src_mac + b"\x08\x00" + ip + udp


@dataclass(frozen=True)
class Frame:
    """A UDP datagram to the client port, as it came off the wire."""

    src_mac: bytes
    dst_mac: bytes
    src_ip: IPv4Address
    dst_ip: IPv4Address
    payload: bytes


def unframe(data: bytes) -> Frame:
    """Ethernet/IPv4/UDP to port 68, strictly (header checksum, lengths, no fragments). The UDP
    checksum is not checked: a veth hands packet sockets frames whose checksum is left to offload."""
    if len(data) < 14 + 20 + 8:
        raise BadPacket("frame_short")
    if data[12:14] != b"\x08\x00":
        raise BadPacket("not_ipv4")
    vihl = data[14]
    ihl = (vihl & 0xF) * 4
    if vihl >> 4 != 4 or ihl < 20 or len(data) < 14 + ihl + 8:
        raise BadPacket("bad_ip_header")
    ip = data[14:14 + ihl]
    total = struct.unpack_from("!H", ip, 2)[0]
    if total < ihl + 8 or 14 + total > len(data):
        raise BadPacket("bad_ip_length")
    if struct.unpack_from("!H", ip, 6)[0] & 0x3FFF:
        raise BadPacket("ip_fragment")
    if ip[9] != 17:
        raise BadPacket("not_udp")
    if _csum(ip) != 0:
        raise BadPacket("bad_ip_checksum")
    udp = data[14 + ihl:14 + total]
    sport, dport, ulen = struct.unpack_from("!HHH", udp)
    if dport != CLIENT_PORT:
        raise BadPacket("not_client_port")
    if ulen < 8 or ulen > len(udp):
        raise BadPacket("bad_udp_length")
    del sport
    return Frame(bytes(data[6:12]), bytes(data[0:6]), IPv4Address(ip[12:16]), IPv4Address(ip[16:20]),
                 bytes(udp[8:ulen]))


def network_of(address: IPv4Address, prefixlen: int) -> IPv4Network:
    return ipaddress.IPv4Network((address, prefixlen), strict=False)
