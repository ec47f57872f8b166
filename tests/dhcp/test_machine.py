"""The sans-IO client through every RFC 2131 state, with a fake server and a fake clock."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv4Network

import pytest

from pymacvlan.dhcp import packet as P
from pymacvlan.dhcp.identity import Identity, hostname_for
from pymacvlan.dhcp.machine import Client, Config, Event, Lease, Send, State

from .fakeserver import CHADDR, SERVER, SERVER_MAC, reply, roundtrip

IDENT = Identity("net1", "pod/default/web-0/eth0", "eth0", "web-0")


def make(**kw) -> Client:
    return Client(Config(CHADDR, IDENT.client_id, hostname="web-0", **kw), random.Random(1))


def sends(out) -> list[Send]:
    return [o for o in out if isinstance(o, Send)]


def events(out) -> list[Event]:
    return [o for o in out if isinstance(o, Event)]


def bind(c: Client, now: float = 1000.0, **kw) -> Lease:
    out = c.start(now)
    (d,) = sends(out)
    assert roundtrip(d.msg).msg_type == P.DISCOVER
    out = c.receive(roundtrip(reply(d.msg, P.OFFER, **kw)), now + 0.1, SERVER_MAC)
    (r,) = sends(out)
    assert r.msg.msg_type == P.REQUEST and r.msg.options[P.OPT_SERVER_ID] == SERVER.packed
    out = c.receive(roundtrip(reply(r.msg, P.ACK, **kw)), now + 0.2, SERVER_MAC)
    (ev,) = events(out)
    assert ev.kind == "bound" and c.state is State.BOUND
    assert ev.lease is not None
    return ev.lease


def test_identity_is_rfc4361_and_stable():
    a = Identity("net1", "pod/default/web-0/eth0", "eth0")
    b = Identity("net1", "pod/default/web-0/eth0", "eth0")
    assert a.client_id == b.client_id
    assert a.client_id[0] == 0xFF and a.client_id[5:7] == b"\x00\x04" and len(a.client_id) == 1 + 4 + 2 + 16
    assert Identity("net2", "pod/default/web-0/eth0", "eth0").client_id != a.client_id
    assert Identity("net1", "pod/default/web-0/eth1", "eth1").client_id != a.client_id
    assert hostname_for("pod/default/Web_0/eth0") == "web-0"
    assert hostname_for("ctr/0123456789abcdef0123/eth0") == "0123456789ab"


def test_discover_request_ack_bound_with_options():
    c = make()
    lease = bind(c, extra={P.OPT_MTU: (1400).to_bytes(2, "big"),
                           P.OPT_CLASSLESS_ROUTES: bytes([24, 10, 78, 0, 10, 77, 0, 254, 0, 10, 77, 0, 1])})
    assert lease.interface == "10.77.0.50/24" and lease.routers == [IPv4Address("10.77.0.1")]
    assert lease.mtu == 1400 and lease.domain == "lan.example" and lease.dns == [IPv4Address("10.77.0.53")]
    assert lease.routes == [(IPv4Network("10.78.0.0/24"), IPv4Address("10.77.0.254")),
                            (IPv4Network("0.0.0.0/0"), IPv4Address("10.77.0.1"))]
    assert lease.t1 == pytest.approx(1000.2 + 300) and lease.t2 == pytest.approx(1000.2 + 525)
    res = lease.cni_result()
    assert res["ips"] == [{"address": "10.77.0.50/24", "gateway": "10.77.0.1"}]
    assert {"dst": "10.78.0.0/24", "gw": "10.77.0.254"} in res["routes"]
    assert res["dns"] == {"nameservers": ["10.77.0.53"], "domain": "lan.example"}
    assert c.deadline() == lease.t1


def test_client_id_and_hostname_on_the_wire():
    c = make()
    (d,) = sends(c.start(0.0))
    m = roundtrip(d.msg)
    assert m.options[P.OPT_CLIENT_ID] == IDENT.client_id and m.options[P.OPT_HOSTNAME] == b"web-0"
    assert m.chaddr == CHADDR and m.flags & P.FLAG_BROADCAST


def test_retransmits_with_backoff_then_fails_bounded():
    c = make(timeout=10.0)
    c.start(0.0)
    times = []
    now = 0.0
    while c.state is State.SELECTING:
        now = c.deadline()
        out = c.tick(now)
        if sends(out):
            times.append(now)
    assert c.state is State.FAILED and now == pytest.approx(10.0)
    (ev,) = events(out)
    assert ev.kind == "failed" and "no lease after 10 s" in ev.detail
    gaps = [b - a for a, b in zip([0.0] + times, times, strict=False)]
    assert gaps[1] > gaps[0] * 1.1  # backoff grows
    assert c.deadline() is None


def test_renew_at_t1_rebind_at_t2_expire():
    c = make()
    lease = bind(c)
    out = c.tick(lease.t1)
    (s,) = sends(out)
    assert c.state is State.RENEWING and s.dst_ip == SERVER and s.dst_mac == SERVER_MAC
    assert s.msg.ciaddr == lease.address and P.OPT_SERVER_ID not in s.msg.options
    out = c.receive(roundtrip(reply(s.msg, P.ACK)), lease.t1 + 1, SERVER_MAC)
    assert [e.kind for e in events(out)] == ["renewed"] and c.state is State.BOUND
    lease2 = c.lease
    assert lease2 is not None and lease2.t1 > lease.t1
    c.tick(lease2.t1)
    out = c.tick(lease2.t2)
    (s,) = sends(out)
    assert c.state is State.REBINDING and s.dst_ip == P.BROADCAST_IP
    out = c.tick(lease2.expires)
    assert [e.kind for e in events(out)] == ["expired"] and c.state is State.SELECTING
    assert c.deadline() is not None  # keeps looking for a lease


def test_nak_on_renew_goes_to_init_with_an_event():
    c = make()
    lease = bind(c)
    (s,) = sends(c.tick(lease.t1))
    out = c.receive(roundtrip(reply(s.msg, P.NAK)), lease.t1 + 1, SERVER_MAC)
    (ev,) = events(out)
    assert ev.kind == "nak" and ev.lease == lease and "renewing" in ev.detail
    (d,) = sends(out)
    assert d.msg.msg_type == P.DISCOVER and c.state is State.SELECTING and c.lease is None


def test_release_unicasts_to_the_server():
    c = make()
    lease = bind(c)
    out = c.release(1100.0)
    (s,) = sends(out)
    assert s.msg.msg_type == P.RELEASE and s.msg.ciaddr == lease.address and s.dst_ip == SERVER
    assert [e.kind for e in events(out)] == ["released"] and c.state is State.RELEASED and c.deadline() is None


def test_resume_valid_lease_sends_nothing_and_expired_one_does_init_reboot():
    c = make()
    lease = bind(c)
    again = Client(Config(CHADDR, IDENT.client_id), random.Random(2), lease=Lease.from_dict(lease.to_dict()))
    assert again.start(lease.t1 - 1) == [] and again.state is State.BOUND
    past_t1 = Client(Config(CHADDR, IDENT.client_id), random.Random(2), lease=Lease.from_dict(lease.to_dict()))
    (s,) = sends(past_t1.start(lease.t1 + 1))
    assert past_t1.state is State.RENEWING and s.msg.ciaddr == lease.address
    old = Client(Config(CHADDR, IDENT.client_id), random.Random(3), lease=Lease.from_dict(lease.to_dict()))
    (s,) = sends(old.start(lease.expires + 5))
    assert old.state is State.INIT_REBOOT and s.msg.msg_type == P.REQUEST
    assert s.msg.options[P.OPT_REQUESTED_IP] == lease.address.packed and P.OPT_SERVER_ID not in s.msg.options
    out = old.receive(roundtrip(reply(s.msg, P.ACK)), lease.expires + 6, SERVER_MAC)
    assert [e.kind for e in events(out)] == ["bound"]
    # a server without a record stays silent: after reboot_tries, DISCOVER
    silent = Client(Config(CHADDR, IDENT.client_id), random.Random(3), lease=Lease.from_dict(lease.to_dict()))
    silent.start(lease.expires + 5)
    for _ in range(3):
        out = silent.tick(silent.deadline())
    assert silent.state is State.SELECTING


@pytest.mark.parametrize("bad, reason", [
    (dict(yiaddr="10.77.0.255"), "bad_address"),
    (dict(yiaddr="10.77.0.0"), "bad_address"),
    (dict(yiaddr="224.0.0.5"), "bad_address"),
    (dict(yiaddr="127.0.0.2", router=None), "bad_address"),
    (dict(router="10.99.0.1"), "router_off_subnet"),
    (dict(mask=b"\xff\x00\xff\x00"), "option1_range"),
    (dict(lease=3), "option51_range"),
    (dict(extra={P.OPT_MTU: b"\x00\x10"}), "option26_range"),
    (dict(extra={P.OPT_MTU: b"\x05"}), "option26_length"),
    (dict(extra={P.OPT_ROUTER: b"\x0a\x4d\x00"}), "option3_length"),
    (dict(extra={P.OPT_CLASSLESS_ROUTES: bytes([33, 1, 2, 3, 4, 5, 6, 7, 8])}), "option121_range"),
    (dict(extra={P.OPT_CLASSLESS_ROUTES: bytes([24, 10, 78])}), "option121_length"),
    (dict(extra={P.OPT_CLIENT_ID: b"\x01other"}), "foreign_client_id"),
])
def test_hostile_offers_are_counted_and_ignored(bad, reason):
    c = make()
    (d,) = sends(c.start(0.0))
    out = c.receive(roundtrip(reply(d.msg, P.OFFER, **bad)), 0.1, SERVER_MAC)
    assert out == [] and c.state is State.SELECTING and c.ignored[reason] == 1


def test_foreign_xid_chaddr_and_configured_subnet():
    c = make(subnet=IPv4Network("10.77.0.0/25"))
    (d,) = sends(c.start(0.0))
    m = reply(d.msg, P.OFFER)
    m.xid ^= 1
    assert c.receive(m, 0.1) == [] and c.ignored["foreign_xid"] == 1
    m = reply(d.msg, P.OFFER)
    m.chaddr = bytes(6)
    assert c.receive(m, 0.1) == [] and c.ignored["foreign_chaddr"] == 1
    assert c.receive(reply(d.msg, P.OFFER, yiaddr="10.77.0.200"), 0.1) == [] and c.ignored["outside_subnet"] == 1
    assert c.receive(reply(d.msg, P.ACK), 0.1) == [] and c.ignored["unexpected_ack"] == 1
    out = c.receive(reply(d.msg, P.OFFER, mask=b"\xff\xff\xff\x80"), 0.2)
    assert sends(out) and c.state is State.REQUESTING
