"""Endpoint logic without root: QEMU stream framing (partial reads and writes, garbage,
runts), the 500-frame reader queue, GSO segmentation on delivery, dgram peers, fd handover.

A fake reactor stands in for the datapath's epoll loop; clients are plain Unix sockets.
"""

from __future__ import annotations

import os
import socket
import struct
import time

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from pymacvlan.backends.userspace.endpoints import (
    EPOLLIN,
    EPOLLOUT,
    READER_QUEUE_LEN,
    DgramEndpoint,
    StreamEndpoint,
    recv_fd,
    send_fd,
)
from pymacvlan.backends.userspace.gso import csum_add
from pymacvlan.backends.userspace.syscalls import VNET_HDR, ZERO_VNET_HDR


class FakeReactor:
    def __init__(self) -> None:
        self.handlers: dict[int, object] = {}
        self.writing: set[int] = set()

    def watch(self, fd, handler, write=False, kind="fd"):
        self.handlers[fd] = handler

    def want_write(self, fd, on):
        (self.writing.add if on else self.writing.discard)(fd)

    def unwatch(self, fd):
        self.handlers.pop(fd, None)
        self.writing.discard(fd)

    def pump(self, rounds: int = 5) -> None:
        import select
        for _ in range(rounds):
            fds = list(self.handlers)
            if not fds:
                return
            r, w, _ = select.select(fds, [f for f in self.writing if f in self.handlers], [], 0.05)
            for fd in set(r) | set(w):
                h = self.handlers.get(fd)
                if h is not None:
                    h((EPOLLIN if fd in r else 0) | (EPOLLOUT if fd in w else 0))


FRAME = bytes(Ether(dst="02:00:00:00:00:0b", src="02:00:00:00:00:0a", type=0x88B5) / Raw(b"z" * 50))


@pytest.fixture
def stream(tmp_path):
    got: list[bytes] = []
    ep = StreamEndpoint("t", str(tmp_path / "s.sock"), sndbuf=16384)
    r = FakeReactor()
    ep.attach(r, lambda e, buf: got.append(buf))
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(ep.path)
    r.pump()
    assert ep.connected
    yield ep, r, c, got
    c.close()
    ep.close()
    assert not os.path.exists(ep.path)


def test_stream_reassembles_frames_split_anywhere(stream) -> None:
    ep, r, c, got = stream
    data = b"".join(struct.pack("!I", len(FRAME)) + FRAME for _ in range(3))
    for i in range(0, len(data), 5):  # 5-byte pieces: lengths and frames both split
        c.send(data[i:i + 5])
        r.pump(1)
    r.pump()
    assert got == [ZERO_VNET_HDR + FRAME] * 3


def test_stream_runt_is_counted_and_skipped(stream) -> None:
    ep, r, c, got = stream
    c.send(struct.pack("!I", 5) + b"short" + struct.pack("!I", len(FRAME)) + FRAME)
    r.pump()
    assert got == [ZERO_VNET_HDR + FRAME]
    assert ep.counters["tx_runt"] == 1


def test_stream_garbage_length_disconnects_the_client(stream) -> None:
    ep, r, c, got = stream
    c.send(struct.pack("!I", 0x7FFFFFFF) + b"junk")
    r.pump()
    assert not ep.connected and ep.counters["bad_length_disconnect"] == 1
    c2 = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # the endpoint still accepts
    c2.connect(ep.path)
    r.pump()
    assert ep.connected
    c2.close()


def test_stream_delivery_framing_and_the_500_frame_queue(stream) -> None:
    ep, r, c, got = stream
    for _ in range(3000):  # the client reads nothing: socket buffer, then queue, then drops
        ep.deliver(ZERO_VNET_HDR + FRAME)
    assert len(ep.queue) == READER_QUEUE_LEN
    assert ep.counters["rx_queue_full"] > 0
    c.setblocking(False)
    buf = b""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            buf += c.recv(1 << 20)
        except BlockingIOError:
            r.pump(1)
            if not ep.queue and not ep._wpending:
                try:
                    buf += c.recv(1 << 20)
                except BlockingIOError:
                    break
    frames = []
    while len(buf) >= 4:
        n = struct.unpack_from("!I", buf)[0]
        frames.append(buf[4:4 + n])
        buf = buf[4 + n:]
    assert buf == b"" and all(f == FRAME for f in frames)
    assert len(frames) + ep.counters["rx_queue_full"] == 3000


def test_stream_gets_gso_frames_segmented(stream) -> None:
    ep, r, c, got = stream
    payload = bytes(range(256)) * 40
    frame = bytearray(bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP() / Raw(payload)))
    struct.pack_into("!H", frame, 50, csum_add(frame[26:34], 6 + len(frame) - 34))
    hdr = VNET_HDR.pack(1, 1, 54, 1448, 34, 16)
    ep.deliver(hdr + bytes(frame))
    r.pump()
    c.settimeout(1)
    data = c.recv(1 << 20)
    sizes = []
    while data:
        n = struct.unpack_from("!I", data)[0]
        sizes.append(n)
        data = data[4 + n:]
    assert sizes == [54 + 1448] * 7 + [54 + len(payload) - 7 * 1448]


def test_no_reader_counts(tmp_path) -> None:
    ep = StreamEndpoint("t", str(tmp_path / "s.sock"))
    ep.attach(FakeReactor(), lambda e, b: None)
    ep.deliver(ZERO_VNET_HDR + FRAME)
    assert ep.counters["rx_no_reader"] == 1
    ep.close()


def test_stream_refuses_a_second_client_and_replaces_a_gone_one(stream, caplog) -> None:
    ep, r, c, got = stream
    second = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    second.connect(ep.path)
    r.pump()
    second.settimeout(2)
    assert second.recv(16) == b""  # closed by the endpoint: refused
    assert ep.counters["client_refused"] == 1 and ep.counters["clients"] == 1
    assert "refused" in caplog.text
    c.send(struct.pack("!I", len(FRAME)) + FRAME)  # the first client still works
    r.pump()
    assert got == [ZERO_VNET_HDR + FRAME]
    c.close()  # gone, but its EOF not read yet: a new client replaces it
    third = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    third.connect(ep.path)
    ep._on_listen(EPOLLIN)
    assert ep.counters["client_replaced"] == 1 and ep.counters["clients"] == 2 and ep.connected
    third.close()
    second.close()


def test_stream_refuses_a_live_listener_path(tmp_path) -> None:
    ep = StreamEndpoint("t", str(tmp_path / "s.sock"))
    with pytest.raises(FileExistsError):
        StreamEndpoint("u", str(tmp_path / "s.sock"))
    ep.close()
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError):
        StreamEndpoint("u", str(tmp_path / "file"))


def test_dgram_learns_its_peer_and_forgets_a_vanished_one(tmp_path) -> None:
    got: list[bytes] = []
    ep = DgramEndpoint("t", str(tmp_path / "d.sock"))
    r = FakeReactor()
    ep.attach(r, lambda e, buf: got.append(buf))
    c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    c.bind(str(tmp_path / "q.sock"))
    c.sendto(FRAME, ep.path)
    c.sendto(b"tiny", ep.path)
    r.pump()
    assert got == [ZERO_VNET_HDR + FRAME] and ep.counters["tx_runt"] == 1
    ep.deliver(ZERO_VNET_HDR + FRAME)
    c.settimeout(1)
    assert c.recv(2048) == FRAME
    c.close()
    os.unlink(str(tmp_path / "q.sock"))
    ep.deliver(ZERO_VNET_HDR + FRAME)  # the peer is gone: counted, forgotten, no exception
    assert ep.peer is None
    ep.close()


def test_fd_handover_roundtrip() -> None:
    a, b = socket.socketpair()
    r, w = os.pipe()
    try:
        send_fd(a, w)
        fd, msg = recv_fd(b)
        assert msg == b"F"
        os.write(fd, b"hello")
        assert os.read(r, 5) == b"hello"
        os.close(fd)
    finally:
        for x in (r, w):
            os.close(x)
        a.close()
        b.close()
