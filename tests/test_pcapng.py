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
