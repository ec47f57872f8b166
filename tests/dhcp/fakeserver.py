"""A sans-IO DHCP server good enough to drive the client in unit tests and the fuzz."""

from __future__ import annotations

from ipaddress import IPv4Address

from pymacvlan.dhcp import packet as P
from pymacvlan.dhcp.packet import Message

SERVER = IPv4Address("10.77.0.1")
SERVER_MAC = bytes.fromhex("02aabbccdd01")
CHADDR = bytes.fromhex("02112233445a")


def reply(req: Message, mtype: int, yiaddr: str = "10.77.0.50", lease: int = 600, mask: bytes = b"\xff\xff\xff\x00",
          router: str | None = "10.77.0.1", extra: dict[int, bytes] | None = None, server: IPv4Address = SERVER,
          echo_client_id: bool = True) -> Message:
    opts: dict[int, bytes] = {P.OPT_MSG_TYPE: bytes((mtype,)), P.OPT_SERVER_ID: server.packed}
    if mtype != P.NAK:
        opts[P.OPT_LEASE_TIME] = lease.to_bytes(4, "big")
        opts[P.OPT_SUBNET] = mask
        if router:
            opts[P.OPT_ROUTER] = IPv4Address(router).packed
        opts[P.OPT_DNS] = IPv4Address("10.77.0.53").packed
        opts[P.OPT_DOMAIN] = b"lan.example"
    if echo_client_id and P.OPT_CLIENT_ID in req.options:
        opts[P.OPT_CLIENT_ID] = req.options[P.OPT_CLIENT_ID]
    opts.update(extra or {})
    return Message(op=P.BOOTREPLY, xid=req.xid, chaddr=req.chaddr, options=opts,
                   yiaddr=IPv4Address(yiaddr) if mtype != P.NAK else P.ZERO)


def roundtrip(m: Message) -> Message:
    return P.decode(P.encode(m))
