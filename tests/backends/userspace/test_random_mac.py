"""Random MACs are random: two datapaths started alike hand out different child MACs.

Every daemon used to draw child MACs from the same seeded generator, so two hosts on one
LAN handed out the same MACs in the same order. The TAPs' own addresses are read back from
the kernel, so the test sees what a neighbour on the wire would see.
"""

from __future__ import annotations

import json

from pymacvlan.backends.userspace import Datapath, DatapathConfig, ParentConfig
from tests.ci import live_marks

from .netlab import Lab, live_unavailable, sh

pytestmark = live_marks(live_unavailable())


def test_two_datapaths_started_alike_draw_different_macs(lab: Lab) -> None:
    P, W = lab.ns("P"), lab.ns("W")
    macs: list[list[str]] = []
    dps = []
    try:
        for i in range(2):  # two hosts: same parent name pattern, same children, same order
            parent, wire = lab.ifname(f"p{i}"), lab.ifname(f"w{i}")
            lab.veth(parent, P, wire, W)
            dp = Datapath(DatapathConfig(ParentConfig(parent, P))).start()
            dps.append(dp)
            got = []
            for n in range(3):
                ns = lab.ns(f"c{i}{n}")
                dp.add_macvlan(f"c{n}", "bridge", netns=ns, ifname="eth0")
                link = json.loads(sh("ip", "-n", ns, "-j", "link", "show", "eth0").stdout)[0]
                got.append(link["address"])
            macs.append(got)
    finally:
        for dp in dps:
            dp.close()
    assert set(macs[0]).isdisjoint(macs[1]), macs
    for mac in macs[0] + macs[1]:
        first = int(mac.split(":")[0], 16)
        assert first & 0x03 == 0x02, f"{mac} is not a locally administered unicast MAC"
