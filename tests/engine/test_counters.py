"""Spec §7: per-child counters."""

from .conftest import BCAST, STATION, build, flood_all, frame, mac


def test_unicast_rx_counts_the_whole_frame(four):
    f = frame(mac(0x0A), STATION, bytes(100))
    four.receive(f)
    st = four.children["A"].stats
    assert (st.rx_packets, st.rx_bytes, st.multicast) == (1, len(f), 0)


def test_flood_counts_multicast_including_broadcast(four):
    f = frame(BCAST, STATION)
    flood_all(four, four.receive(f))
    st = four.children["B"].stats
    assert (st.rx_packets, st.rx_bytes, st.multicast) == (1, len(f), 1)


def test_tx_counts_the_whole_frame():
    e = build("vepa")
    f = frame(mac(0x77), mac(0x0A), bytes(60))
    e.xmit(e.children["A"], f)
    st = e.children["A"].stats
    assert (st.tx_packets, st.tx_bytes) == (1, len(f))


def test_stats64_reports_rx_dropped_as_errors_plus_core_drops():
    e = build("bridge", "bridge")
    e.set_mtu("B", 100)
    e.xmit(e.children["A"], frame(BCAST, mac(0x0A), bytes(200)))
    rx = e.children["B"].stats.as_stats64()["rx"]
    assert (rx["errors"], rx["dropped"]) == (1, 2)
