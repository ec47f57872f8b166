"""The daemon's Prometheus metrics: HOST:PORT parsing (any user), an empty daemon scraped
over HTTP (any user), and a live one (root, pmv namespaces) whose per-child counters must be
the ones `pymacvlan stats` reports after real traffic."""

from __future__ import annotations

import socket
import threading
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pymacvlan.daemon.metrics import parse_listen
from pymacvlan.daemon.server import Daemon, DaemonConfig
from pymacvlan.links import LinkChange, LinkRequest
from pymacvlan.links.userspace import Driver
from pymacvlan.model import KernelError, Mode
from pymacvlan.netlab import Lab, leftovers, live_unavailable, ping, sh
from tests.ci import live_marks


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(listen: str) -> dict[tuple[str, tuple], float]:
    """Every sample: (name, sorted labels) → value."""
    with urllib.request.urlopen(f"http://{listen}/metrics", timeout=10) as r:
        assert r.status == 200
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


@pytest.mark.parametrize("text, want", [("127.0.0.1:9466", ("127.0.0.1", 9466)), ("[::1]:80", ("::1", 80))])
def test_listen_addresses(text: str, want: tuple) -> None:
    assert parse_listen(text) == want


@pytest.mark.parametrize("text", ["9466", "localhost:9466", "127.0.0.1:0", "127.0.0.1:70000", "127.0.0.1:x"])
def test_bad_listen_addresses_are_einval_naming_the_form(text: str) -> None:
    with pytest.raises(KernelError) as e:
        parse_listen(text)
    assert e.value.errno_name == "EINVAL" and "127.0.0.1:9466" in e.value.advice


def _serve(cfg: DaemonConfig):
    d = Daemon(cfg).start()
    t = threading.Thread(target=d.serve_forever, daemon=True)
    t.start()
    return d, t


def test_an_empty_daemon_serves_its_own_counters_and_a_taken_port_is_eaddrinuse(tmp_path: Path) -> None:
    listen = f"127.0.0.1:{free_port()}"
    d, t = _serve(DaemonConfig(str(tmp_path / "c.sock"), str(tmp_path / "s.json"), metrics=listen))
    try:
        got = scrape(listen)
        assert got[("pymacvlan_trace_subscribers", ())] == 0
        assert not [k for k in got if k[0].startswith("pymacvlan_child_")]
        with pytest.raises(KernelError) as e:  # a second daemon on the same metrics port
            Daemon(DaemonConfig(str(tmp_path / "c2.sock"), str(tmp_path / "s2.json"), metrics=listen)).start()
        assert e.value.errno_name == "EADDRINUSE" and "--metrics" in e.value.advice
        assert not (tmp_path / "c2.sock").exists()  # nothing half made
    finally:
        d.stop()
        t.join(10)
    with pytest.raises(OSError):  # stopped with the daemon
        urllib.request.urlopen(f"http://{listen}/metrics", timeout=2)


_REASON = live_unavailable()


LIVE = live_marks(_REASON)


@LIVE[0]
@LIVE[1]
def test_child_counters_are_the_ones_stats_reports(tmp_path: Path) -> None:
    lab = Lab()
    try:
        P, W, A = lab.ns("P"), lab.ns("W"), lab.ns("A")
        parent, wire = lab.ifname("p"), lab.ifname("w")
        lab.veth(parent, P, wire, W)
        sh("ip", "-n", W, "addr", "add", "10.79.0.100/24", "dev", wire)
        listen = f"127.0.0.1:{free_port()}"
        d, t = _serve(DaemonConfig(str(tmp_path / "c.sock"), str(tmp_path / "s.json"), netns=P, metrics=listen))
        try:
            drv = Driver(d.cfg.socket)
            drv.add(LinkRequest(parent, "eth0", mode=Mode.BRIDGE, address=bytes.fromhex("02000000000a"), netns=A))
            drv.set("eth0", LinkChange(up=True), netns=A)
            sh("ip", "-n", A, "addr", "add", "10.79.0.1/24", "dev", "eth0")
            assert ping(W, "10.79.0.1", count=3) == 3
            st = drv.stats()
            got = scrape(listen)  # after: counters only grow
            (pname, pst), = st["parents"].items()
            (key, c), = pst["children"].items()
            labels = tuple(sorted({"parent": pname, "child": key, "ifname": "eth0", "mode": "bridge",
                                   "kind": "macvlan"}.items()))
            for way in ("rx", "tx"):
                for name in ("packets", "bytes", "dropped"):
                    assert got[(f"pymacvlan_child_{way}_{name}_total", labels)] >= c[way][name]
                    assert name == "dropped" or c[way][name] > 0
            assert got[("pymacvlan_child_up", labels)] == 1
            fast = pst["path"]["active"] == "fast"  # the default daemon: wherever the fast path loads
            assert got[("pymacvlan_path_fast", (("parent", pname),))] == int(fast)
            # the fast path forwards the pings in the kernel: the parent's socket saw the ARP request at least
            assert got[("pymacvlan_parent_socket_rx_frames_total", (("parent", pname),))] >= (1 if fast else 3)
        finally:
            d.stop()
            t.join(10)
    finally:
        lab.close()
        assert not leftovers(lab.tag)
