"""The codec against scapy (an independent encoder/decoder), and its strictness."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from pymacvlan.dhcp import packet as P

from .fakeserver import CHADDR

scapy_all = pytest.importorskip("scapy.all")


def _msg() -> P.Message:
    return P.Message(op=P.BOOTREQUEST, xid=0x12345678, chaddr=CHADDR, flags=P.FLAG_BROADCAST,
                     options={P.OPT_MSG_TYPE: bytes((P.DISCOVER,)), P.OPT_CLIENT_ID: b"\xff" + bytes(22),
                              P.OPT_HOSTNAME: b"web-0", P.OPT_PARAM_LIST: bytes((1, 3, 6, 121))})


def test_scapy_reads_what_we_frame():
    data = P.frame(P.encode(_msg()), CHADDR, P.BROADCAST_MAC, P.ZERO, P.BROADCAST_IP)
    pkt = scapy_all.Ether(data)
    assert pkt[scapy_all.UDP].sport == 68 and pkt[scapy_all.UDP].dport == 67
    b = pkt[scapy_all.BOOTP]
    assert b.xid == 0x12345678 and b.chaddr[:6] == CHADDR and b.flags == 0x8000
    opts = dict(o for o in pkt[scapy_all.DHCP].options if isinstance(o, tuple))
    assert opts["message-type"] == 1 and opts["hostname"] == b"web-0"
    # checksums as scapy computes them
    again = scapy_all.Ether(data)
    del again[scapy_all.IP].chksum, again[scapy_all.UDP].chksum
    assert bytes(again) == data


def test_we_read_what_scapy_frames():
    s = (scapy_all.Ether(src="02:aa:bb:cc:dd:01", dst=CHADDR.hex(":")) /
         scapy_all.IP(src="10.77.0.1", dst="255.255.255.255") / scapy_all.UDP(sport=67, dport=68) /
         scapy_all.BOOTP(op=2, xid=7, yiaddr="10.77.0.50", chaddr=CHADDR) /
         scapy_all.DHCP(options=[("message-type", "offer"), ("server_id", "10.77.0.1"),
                                 ("subnet_mask", "255.255.255.0"), ("lease_time", 600), "end"]))
    f = P.unframe(bytes(s))
    assert f.src_ip == IPv4Address("10.77.0.1") and f.src_mac == bytes.fromhex("02aabbccdd01")
    m = P.decode(f.payload)
    assert m.msg_type == P.OFFER and m.yiaddr == IPv4Address("10.77.0.50") and m.u32_option(P.OPT_LEASE_TIME) == 600


def test_long_option_is_split_and_joined_rfc3396():
    m = _msg()
    m.options[P.OPT_CLASSLESS_ROUTES] = bytes(range(256)) * 2
    assert P.decode(P.encode(m)).options[P.OPT_CLASSLESS_ROUTES] == bytes(range(256)) * 2


@pytest.mark.parametrize("mutate, reason", [
    (lambda b: b[:200], "short"),
    (lambda b: b[:236] + b"XXXX" + b[240:], "bad_cookie"),
    (lambda b: bytes([3]) + b[1:], "bad_op"),
    (lambda b: b[:1] + bytes([6]) + b[2:], "bad_htype"),
    (lambda b: b[:240] + bytes([53, 1]), "option_truncated"),
    (lambda b: b[:240] + bytes([53, 1, 1]), "options_unterminated"),
    (lambda b: b[:240] + bytes([52, 1, 1, 255]), "overload_unsupported"),
])
def test_decode_is_strict(mutate, reason):
    with pytest.raises(P.BadPacket) as e:
        P.decode(mutate(P.encode(_msg())))
    assert e.value.reason == reason


def test_unframe_is_strict():
    good = P.frame(b"x" * 300, CHADDR, P.BROADCAST_MAC, IPv4Address("10.0.0.1"), P.BROADCAST_IP, sport=67, dport=68)
    assert P.unframe(good).payload == b"x" * 300
    bad_csum = bytearray(good)
    bad_csum[14 + 10] ^= 0xFF
    for data, reason in ((good[:30], "frame_short"), (bytes(bad_csum), "bad_ip_checksum"),
                         (good[:12] + b"\x86\xdd" + good[14:], "not_ipv4"),
                         (P.frame(b"x", CHADDR, CHADDR, P.ZERO, P.ZERO, dport=69), "not_client_port")):
        with pytest.raises(P.BadPacket) as e:
            P.unframe(data)
        assert e.value.reason == reason
