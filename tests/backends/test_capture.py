"""When a capture stops listening, and what it does with frames that come later.

Unit tests: taps and probe are stand-ins fed by the test (socketpairs give poll() something to
watch), so the timing is the test's, not the kernel's. The live counterpart (a real late frame
on the kernel backend) is in test_kernel.py.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

import pytest

from pymacvlan.backends.kernel.capture import Capture, LateFrame, Tap

F1 = bytes.fromhex("020000000001" "020000000099" "88b5") + b"\x01" * 46
F2 = bytes.fromhex("020000000001" "020000000099" "88b5") + b"\x02" * 46


@dataclass
class FakeTap(Tap):
    """A tap whose queue the test fills; its socket only makes poll() wake up."""

    queue: list[bytes] = field(default_factory=list)
    peer: socket.socket | None = None

    def deliver(self, frame: bytes) -> None:
        self.queue.append(frame)
        assert self.peer is not None
        self.peer.send(b"x")

    def read(self) -> list[tuple[bytes, int]]:
        try:
            self.sock.recv(4096)
        except BlockingIOError:
            pass
        frames, self.queue = [(f, 0) for f in self.queue], []  # PACKET_HOST
        return frames


class FakeProbe:
    """A probe that comes back at once, after ``before_back`` ran (what the kernel delivers
    ahead of it), or never (``lost``)."""

    def __init__(self) -> None:
        self.rx, self.tx = socket.socketpair()
        self.rx.setblocking(False)
        self.sent = 0
        self.lost = False
        self.before_back: list = []

    def fileno(self) -> int:
        return self.rx.fileno()

    def send(self) -> bytes:
        self.sent += 1
        while self.before_back:
            self.before_back.pop(0)()
        if not self.lost:
            self.tx.send(b"p")
        return b"p"

    def arrived(self, token: bytes) -> bool:
        try:
            return bool(self.rx.recv(4096))
        except BlockingIOError:
            return False

    def close(self) -> None:
        self.rx.close()
        self.tx.close()


@pytest.fixture
def capture():
    a, b = socket.socketpair()
    a.setblocking(False)
    tap = FakeTap("A", "a", a, peer=b)
    probe = FakeProbe()
    cap = Capture(cap=2.0, taps=[tap], probe=probe)  # type: ignore[arg-type]
    yield cap, tap, probe
    cap.close()
    b.close()


def test_a_copy_that_arrives_after_its_step_is_a_late_frame_naming_step_and_device(capture):
    cap, tap, _probe = capture
    assert cap.collect(F1, "step 3 (inject at wire)") == {}
    tap.deliver(F1)  # the kernel delivers it after the capture ended
    with pytest.raises(LateFrame, match=r"step 3 \(inject at wire\).*on A \(a\)"):
        cap.drain()


def test_a_late_copy_seen_while_the_next_frame_is_captured_fails_that_collection(capture):
    cap, tap, probe = capture
    cap.collect(F1, "step 1 (inject at wire)")
    probe.before_back = [lambda: tap.deliver(F1), lambda: tap.deliver(F2)]
    with pytest.raises(LateFrame, match=r"step 1 \(inject at wire\).*on A"):
        cap.collect(F2, "step 2 (inject at wire)")


def test_what_arrives_before_the_probe_is_observed_and_nothing_is_late(capture):
    cap, tap, probe = capture
    probe.before_back = [lambda: tap.deliver(F1), lambda: tap.deliver(F1)]
    seen = cap.collect(F1, "step 1")
    assert seen == {"A": [{"pkttype": "HOST", "hex": F1.hex()}] * 2}
    cap.drain()  # nothing queued: no error
    cap.finish()


def test_a_round_that_brought_copies_is_followed_by_another(capture):
    cap, tap, probe = capture
    probe.before_back = [lambda: tap.deliver(F1)]
    cap.collect(F1, "step 1")
    # round 1 brought a copy, so two quiet rounds followed it
    assert probe.sent == 3


def test_the_wait_ends_on_the_probe_not_on_silence(capture):
    cap, _tap, probe = capture
    start = time.monotonic()
    cap.collect(F1, "step 1")
    assert probe.sent == cap.rounds
    assert cap.capped == 0
    assert time.monotonic() - start < cap.cap  # it did not sit out the cap


def test_a_probe_that_never_comes_back_ends_at_the_cap_and_is_counted(capture):
    cap, _tap, probe = capture
    cap.cap = 0.2
    probe.lost = True
    cap.collect(F1, "step 1")
    assert cap.capped == 1


def test_a_last_frame_that_comes_late_fails_finish(capture):
    cap, tap, probe = capture
    cap.collect(F1, "step 7 (inject at child:A)")
    probe.before_back = [lambda: tap.deliver(F1)]
    with pytest.raises(LateFrame, match=r"step 7"):
        cap.finish()


def test_a_capture_without_a_probe_refuses_to_guess(capture):
    cap, _tap, _probe = capture
    cap.probe = None
    with pytest.raises(RuntimeError, match="probe"):
        cap.collect(F1, "step 1")
