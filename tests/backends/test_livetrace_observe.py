"""trace --verify's receipts: identical frames sent back to back (keepalived's burst of five
GARPs on its VMAC, seen by `pymacvlan lab keepalived`) each get their own copy, instead of the
first explanation collecting all five and the other four none (five false disagreements)."""

from __future__ import annotations

from types import SimpleNamespace

from pymacvlan.backends.kernel.livetrace import KernelTracer, Open


def test_identical_frames_in_a_burst_each_get_their_copy():
    t = KernelTracer.__new__(KernelTracer)
    t.verify, t.open = True, []
    mirror = object()
    w = SimpleNamespace(mirror=mirror)
    garp = bytes.fromhex("ffffffffffff00005e000133" "0806") + bytes(28)
    result = {"observed": {"wire": [{"hex": garp.hex()}], "children": {"b": []}}}
    t.open = [Open(mirror, {}, garp, {}, result, ["b"]) for _ in range(5)]
    for _ in range(5):
        t._observe("@wire", garp, None, w)
    assert [len(o.seen.get("@wire", [])) for o in t.open] == [1] * 5
    t._observe("@wire", garp, None, w)  # a copy nobody expected still shows, on the first
    assert len(t.open[0].seen["@wire"]) == 2
    t._observe("b", garp, 0, w)  # where the engine predicted nothing: the first, a disagreement
    assert len(t.open[0].seen["b"]) == 1
