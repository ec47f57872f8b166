"""Spec §3: receive from the parent (macvlan_handle_frame)."""

from pymacvlan.model import MacaddrMode, MacvlanFlag
from pymacvlan.model import PacketType as P

from .conftest import BCAST, LM, STATION, build, flood_all, frame, mac, names


def test_unicast_to_an_up_child_is_delivered_as_host(four):
    for name, m in (("A", mac(0x0A)), ("B", mac(0x0B)), ("C", mac(0x0C))):
        assert names(four.receive(frame(m, STATION))) == {name: P.HOST}


def test_unicast_to_a_down_child_goes_to_the_parent_as_otherhost(four):
    four.set_up("A", False)
    assert names(four.receive(frame(mac(0x0A), STATION))) == {"L": P.OTHERHOST}
    assert four.children["A"].stats.rx_packets == 0


def test_unknown_and_parent_mac(four):
    assert names(four.receive(frame(mac(0x77), STATION))) == {"L": P.OTHERHOST}
    assert names(four.receive(frame(LM, STATION))) == {"L": P.HOST}


def test_unicast_to_a_source_child_passes_to_the_parent(four):
    assert names(four.receive(frame(mac(0x0D), STATION))) == {"L": P.OTHERHOST}


def test_broadcast_from_outside(four):
    got = flood_all(four, four.receive(frame(BCAST, STATION)))
    assert names(got) == {"L": P.BROADCAST, "A": P.BROADCAST, "B": P.BROADCAST, "C": P.BROADCAST}
    for n in "ABC":
        assert four.children[n].stats.multicast == 1
    assert four.children["D"].stats.rx_packets == 0


def test_broadcast_is_deferred_by_default_and_immediate_with_bclim_minus_one(four):
    first = four.receive(frame(BCAST, STATION))
    assert names(first) == {"L": P.BROADCAST} and four.bc_pending
    four.process_bc_queue()
    four.changelink("A", bclim=-1)
    now = four.receive(frame(BCAST, STATION))
    assert not four.bc_pending
    assert set(names(now)) == {"L", "A", "B", "C"}


def test_bcqueuelen_zero_loses_every_queued_flood(four):
    for n in "ABCD":
        four.changelink(n, bcqueuelen=0)
    got = flood_all(four, four.receive(frame(BCAST, STATION)))
    assert names(got) == {"L": P.BROADCAST}
    assert four.lower.rx_dropped == 1


def test_pause_frames_are_never_flooded(four):
    pause = frame(bytes.fromhex("0180c2000001"), STATION, ethertype=0x8808)
    got = flood_all(four, four.receive(pause))
    assert names(got) == {"L": P.MULTICAST}


def test_private_source_returns_only_to_itself_with_zero_bytes():
    e = build("private", "vepa")
    got = flood_all(e, e.receive(frame(BCAST, mac(0x0A))))
    assert names(got) == {"A": P.BROADCAST}
    st = e.children["A"].stats
    assert (st.rx_packets, st.rx_bytes, st.multicast) == (1, 0, 0)


def test_source_mode_copies_and_nodst():
    e = build("source", "vepa")
    e.changelink("A", macaddr_op=MacaddrMode.ADD, macaddrs=[STATION])
    assert names(e.receive(frame(mac(0x0B), STATION))) == {"A": P.OTHERHOST, "B": P.HOST}
    assert names(e.receive(frame(LM, STATION))) == {"A": P.HOST, "L": P.HOST}
    got = flood_all(e, e.receive(frame(BCAST, STATION)))
    assert names(got) == {"A": P.BROADCAST, "B": P.BROADCAST, "L": P.BROADCAST}
    assert e.children["A"].stats.multicast == 0
    e.changelink("A", flags=int(MacvlanFlag.NODST))
    assert names(e.receive(frame(mac(0x0B), STATION))) == {"A": P.OTHERHOST}
    assert names(flood_all(e, e.receive(frame(BCAST, STATION)))) == {"A": P.BROADCAST}
    e.set_up("A", False)
    assert e.receive(frame(mac(0x0B), STATION)) == []  # a down nodst child still consumes


def test_source_child_gets_host_for_its_own_mac_only_as_a_copy():
    e = build("source")
    e.changelink("A", macaddr_op=MacaddrMode.ADD, macaddrs=[STATION])
    assert names(e.receive(frame(mac(0x0A), STATION))) == {"A": P.HOST, "L": P.OTHERHOST}


def test_passthru_takes_every_unicast_and_drops_when_down():
    e = build("passthru")
    assert e.children["A"].mac == LM
    assert names(e.receive(frame(mac(0x99), STATION))) == {"A": P.HOST}
    e.set_up("A", False)
    assert e.receive(frame(mac(0x99), STATION)) == []
    assert e.drops["rx_target_down"] == 1


def test_ipv4_multicast_fragments_are_reassembled_before_flooding():
    e = build("vepa")
    e.changelink("A", bclim=-1)
    ip = bytes.fromhex("45000000" "1234" "2000" "4011" "0000" "0a000001" "e0000001")
    payload = bytes(range(48))

    def frag(data: bytes, off: int, more: bool) -> bytes:
        hdr = bytearray(ip)
        hdr[2:4] = (20 + len(data)).to_bytes(2, "big")
        hdr[6:8] = ((0x2000 if more else 0) | off // 8).to_bytes(2, "big")
        return bytes.fromhex("01005e000001") + STATION + b"\x08\x00" + bytes(hdr) + data

    assert e.receive(frag(payload[:24], 0, True)) == []
    whole = e.receive(frag(payload[24:], 24, False))
    assert set(names(whole)) == {"A", "L"}
    assert whole[0][2].endswith(payload)
