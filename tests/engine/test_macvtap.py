"""Spec §8 (the parts the engine models): the macvtap reader ring."""

import pytest

from pymacvlan.model import KernelError, Mode

from .conftest import STATION, build, frame, mac


def test_no_reader_frames_go_to_the_stack_then_to_the_ring():
    e = build()
    e.add("T", "macvtap", mode=Mode.BRIDGE, mac=mac(0x30))
    e.set_up("T", True)
    f = frame(mac(0x30), STATION)
    assert [d[0].name for d in e.receive(f)] == ["T"]
    e.attach_reader("T")
    e.receive(f)
    assert e.tap_read("T") == f
    assert e.tap_read("T") is None


def test_ring_of_500_drops_with_rx_errors():
    e = build()
    e.add("T", "macvtap", mode=Mode.VEPA, mac=mac(0x30))
    e.set_up("T", True)
    e.attach_reader("T")
    for i in range(501):
        e.receive(frame(mac(0x30), STATION, i.to_bytes(4, "big")))
    st = e.children["T"].stats
    assert (st.rx_packets, st.rx_errors, len(e.children["T"].tap)) == (501, 1, 500)


def test_reader_only_on_macvtap():
    e = build("vepa")
    with pytest.raises(KernelError):
        e.attach_reader("A")
