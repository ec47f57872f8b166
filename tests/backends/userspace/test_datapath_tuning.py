"""The datapath's latency and scheduling options (busy polling, nice) on real TAPs.

They change when the loop sleeps and how the scheduler treats it, never what it decides:
traffic must cross exactly as without them, the counters must add up, and the loop must
still stop and run its housekeeping while it spins. How long stopping takes and what an
idle loop costs in CPU are figures, measured in bench/datapath_tuning.py, not asserted here.
"""

from __future__ import annotations

import threading
import time

from pymacvlan.backends.userspace import Datapath, DatapathConfig, ParentConfig
from tests.ci import live_marks

from .netlab import Lab, live_unavailable, ping, sh, tcp_transfer

_REASON = live_unavailable()
pytestmark = live_marks(_REASON)
#: these tests tune the loop that carries frames through Python: no fast path
PYTHON_PATH = {"children": "tap", "fastpath": False}

MAC_A, MAC_B = bytes.fromhex("02000000001a"), bytes.fromhex("02000000001b")


def _thread_nice(tid: int) -> int:
    with open(f"/proc/self/task/{tid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[16])  # field 19: nice


def test_busy_poll_and_nice_change_scheduling_not_decisions(lab: Lab) -> None:
    P, W = lab.ns("P"), lab.ns("W")
    parent, wire = lab.ifname("p"), lab.ifname("w")
    lab.veth(parent, P, wire, W)
    sh("ip", "-n", W, "addr", "add", "10.79.0.100/24", "dev", wire)
    # a positive nice needs no privilege and cannot starve anything else on the machine
    own = _thread_nice(threading.get_native_id())
    dp = Datapath(DatapathConfig(ParentConfig(parent, P), busy_poll_us=2000, nice=own + 5, **PYTHON_PATH)).start()
    try:
        assert _thread_nice(dp._thread.native_id) == own + 5
        assert _thread_nice(threading.get_native_id()) == own  # only the loop's thread moved
        names = {}
        for role, mac, ip in (("A", MAC_A, "10.79.0.1"), ("B", MAC_B, "10.79.0.2")):
            ns = lab.ns(role)
            dp.add_macvlan(role.lower(), "bridge", netns=ns, ifname="eth0", mac=mac)
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            names[role] = ns
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not all(
                dp.call(lambda n=n: dp.engine.child(n).up) for n in "ab"):
            time.sleep(0.01)
        assert ping(names["A"], "10.79.0.2", count=5) == 5
        assert ping(names["A"], "10.79.0.100", count=5) == 5
        n, _ = tcp_transfer(names["B"], "10.79.0.2", names["A"], 8 << 20)
        assert n == 8 << 20
        st = dp.stats()
        a, b = st["children"]["a"], st["children"]["b"]
        # everything a sent to b is what b received (bridge mode: local, never the wire)
        assert a["tx"]["packets"] >= b["rx"]["packets"] > 0
        assert not st["datapath"].get("nice_refused")
        assert not any(k.startswith("handler_error") for k in st["datapath"]), st["datapath"]
        thread = dp._thread
    finally:
        dp.close()
    assert not thread.is_alive(), "a spinning loop must still stop (close joins it)"


def test_busy_poll_spins_only_after_traffic(lab: Lab) -> None:
    """An idle datapath sleeps in epoll_wait whatever busy_poll_us says (no CPU burnt)."""
    P, W = lab.ns("P"), lab.ns("W")
    parent, wire = lab.ifname("p"), lab.ifname("w")
    lab.veth(parent, P, wire, W)
    dp = Datapath(DatapathConfig(ParentConfig(parent, P), busy_poll_us=50_000, **PYTHON_PATH)).start()
    try:
        tid = dp._thread.native_id
        # the default priority, like a softirq's edge over tasks: nice -5 (root may set it)
        assert _thread_nice(tid) == DatapathConfig.nice == -5 or dp.counters["nice_refused"] == 1

        def asleep_in_epoll() -> bool:
            with open(f"/proc/self/task/{tid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            with open(f"/proc/self/task/{tid}/wchan") as f:
                wchan = f.read()
            return state == "S" and "epoll" in wchan

        # no traffic at all: the loop is found asleep in epoll_wait, not polling with timeout 0
        # (a spinning loop is never there; a housekeeping pass may be caught once in a while)
        samples = []
        for _ in range(20):
            samples.append(asleep_in_epoll())
            time.sleep(0.01)
        assert sum(samples) >= 17, f"the loop was awake in {20 - sum(samples)} of 20 looks without traffic"
    finally:
        dp.close()


def test_a_stuck_rx_ring_head_is_resynced(lab: Lab) -> None:
    """The reader's head on a free slot while the kernel fills the next ones (seen once under
    a 64-byte flood): the datapath must notice, skip to the frames and count it, instead of
    spinning on a readable socket forever."""
    P, W, A = lab.ns("P"), lab.ns("W"), lab.ns("A")
    parent, wire = lab.ifname("p"), lab.ifname("w")
    lab.veth(parent, P, wire, W)
    sh("ip", "-n", W, "addr", "add", "10.79.0.100/24", "dev", wire)
    dp = Datapath(DatapathConfig(ParentConfig(parent, P), **PYTHON_PATH)).start()
    try:
        dp.add_macvlan("a", "bridge", netns=A, ifname="eth0", mac=MAC_A)
        sh("ip", "-n", A, "addr", "add", "10.79.0.1/24", "dev", "eth0")
        sh("ip", "-n", A, "link", "set", "eth0", "up")
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not dp.call(lambda: dp.engine.child("a").up):
            time.sleep(0.01)
        assert ping(W, "10.79.0.1", count=3) == 3

        def desync() -> None:  # the head one slot behind: a slot already read and freed
            p = dp.parent
            p._rx_head = (p._rx_head - 1) % p.rx_nr

        dp.call(desync)
        got = ping(W, "10.79.0.1", count=5, timeout=5.0)
        st = dp.stats()
        assert got >= 4, (
            st["datapath"],
            dp.parent._rx_head,
            dp.parent._stuck_since,
            time.monotonic(),
            [dp.parent._mm[i * dp.parent.slot] for i in range(10)],
        )
        assert st["parent"]["drops"].get("rx_ring_resync") == 1, st["parent"]["drops"]
    finally:
        dp.close()
