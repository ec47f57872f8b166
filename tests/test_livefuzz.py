"""The live frame fuzzer, briefly (20,000 frames): the full million is tools/live_fuzz.py.

Random and malformed frames from the wire, a TAP child and two macvtap endpoint clients,
while two children keep a ping and a TCP connection going: the datapath never stops, no
handler fails, every frame sent is accounted for, ping loss stays at or under 1%.
"""

from __future__ import annotations

from pymacvlan.livefuzz import FuzzConfig, run
from pymacvlan.netlab import live_unavailable
from tests.ci import live_marks

pytestmark = live_marks(live_unavailable())


def test_live_fuzz_accounts_for_every_frame_and_keeps_forwarding() -> None:
    rep = run(FuzzConfig(frames=20_000, rate=10_000))
    d = rep.as_dict()
    print(f"\nlive fuzz (seed {rep.seed}): {rep.sent} ping {rep.ping} stream {rep.stream}")
    assert rep.datapath_alive
    assert d["unaccounted"] == {}, rep.ledger
    assert rep.datapath["handler_errors"] == {}
    assert sum(v.get("attempted", 0) for v in rep.sent.values()) == 20_000
    for src in ("wire", "tap", "stream", "dgram"):
        assert rep.ledger[src]["accepted"] > 0, (src, rep.sent)
    for src in ("stream", "dgram"):  # every frame an endpoint handed on is one transmit of its child
        assert rep.ledger[src]["handed_on"] == rep.ledger[src]["transmits"], rep.ledger[src]
    assert rep.ping["sent"] > 0 and rep.ping["loss"] <= 0.01
    assert rep.stream["error"] is None and rep.stream["sent"] == rep.stream["received"] > 0
