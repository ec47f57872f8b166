"""The pcapng writer of `trace --pcap`: read back by scapy and by tshark."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

from scapy.utils import PcapNgReader

from pymacvlan.pcapng import PcapngWriter


def test_frames_times_interfaces_and_comments_read_back(tmp_path: Path) -> None:
    frames = [bytes.fromhex("ffffffffffff0200000000ee0806") + bytes(46), bytes(range(61))]  # 61: padded
    path = tmp_path / "x.pcapng"
    with open(path, "wb") as f:
        w = PcapngWriter(f)
        w.add(frames[0], 1733400000.123456, "delivered to: a, b\nsecond line é", "eth0")
        w.add(frames[1], 1733400001.5, "nobody", "eth1")
    with PcapNgReader(str(path)) as r:
        got = list(r)
    assert [bytes(p) for p in got] == frames
    assert [float(p.time) for p in got] == [1733400000.123456, 1733400001.5]
    assert [p.comment for p in got] == ["delivered to: a, b\nsecond line é".encode(), b"nobody"]
    r = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.interface_name"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.split() == ["eth0", "eth1"], r.stderr


def test_every_block_is_flushed_as_written() -> None:
    buf = io.BytesIO()
    w = PcapngWriter(buf)
    size = len(buf.getvalue())
    w.add(bytes(60), 0.0, "c")
    assert len(buf.getvalue()) > size and len(buf.getvalue()) % 4 == 0


# -- live: the userspace daemon's trace into pcapng ---------------------------------------------------
from pymacvlan.netlab import live_unavailable  # noqa: E402
from tests.ci import live_marks  # noqa: E402

LIVE = live_marks(live_unavailable())


@LIVE[0]
@LIVE[1]
def test_userspace_trace_writes_pcapng_with_the_verdicts(tmp_path: Path) -> None:
    import json
    import sys
    import threading
    import time

    from pymacvlan.daemon.server import Daemon, DaemonConfig
    from pymacvlan.links import LinkChange, LinkRequest
    from pymacvlan.links.userspace import Driver
    from pymacvlan.model import Mode
    from pymacvlan.netlab import Lab, leftovers, ping, sh

    root = Path(__file__).resolve().parents[1]
    lab = Lab()
    try:
        P, W, A = lab.ns("P"), lab.ns("W"), lab.ns("A")
        parent, wire = lab.ifname("p"), lab.ifname("w")
        lab.veth(parent, P, wire, W)
        sh("ip", "-n", W, "addr", "add", "10.79.1.100/24", "dev", wire)
        d = Daemon(DaemonConfig(str(tmp_path / "c.sock"), str(tmp_path / "s.json"), netns=P)).start()
        t = threading.Thread(target=d.serve_forever, daemon=True)
        t.start()
        try:
            drv = Driver(d.cfg.socket)
            drv.add(LinkRequest(parent, "eth0", mode=Mode.BRIDGE, address=bytes.fromhex("02000000000a"), netns=A))
            drv.set("eth0", LinkChange(up=True), netns=A)
            sh("ip", "-n", A, "addr", "add", "10.79.1.1/24", "dev", "eth0")
            pcap = tmp_path / "u.pcapng"
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pymacvlan.cli.main",
                    "trace",
                    "--backend",
                    "userspace",
                    "--socket",
                    d.cfg.socket,
                    "--ethertype",
                    "0x0806",
                    "--count",
                    "2",
                    "-j",
                    "--pcap",
                    str(pcap),
                ],
                env={"PYTHONPATH": str(root / "src"), "PATH": "/usr/bin:/bin"},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                time.sleep(1.0)  # subscribed before the first frame
                ping(W, "10.79.1.1", count=1)
                out, err = proc.communicate(timeout=20)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            events = [json.loads(line) for line in out.splitlines()]
            assert len(events) == 2, err
        finally:
            d.stop(remove=True)
            t.join(10)
        r = subprocess.run(["tshark", "-r", str(pcap), "-T", "fields", "-e", "eth.src", "-e", "arp.opcode",
                            "-e", "frame.comment"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.count("delivered to: ") == 2
        assert [bytes.fromhex(ev["frame"])[6:12].hex(":") for ev in events] == \
            [ev["src"] for ev in events]
        assert "from wire on" in r.stdout and "02:00:00:00:00:0a" in r.stdout
    finally:
        lab.close()
        assert not leftovers(lab.tag)
