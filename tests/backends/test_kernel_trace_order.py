"""Live: `pymacvlan trace --backend kernel` prints frames in the order the kernel handled them
(a station's ARP request before the replies it caused, whichever socket each was read from),
ARP lines as tcpdump prints them, and ends with a one-line reason and exit 1 when the
namespace it watches is deleted. Needs root; under CI=true these run instead of skipping."""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pymacvlan.backends.kernel import unavailable_reason
from pymacvlan.backends.kernel.topology import in_netns
from tests.ci import live_marks

pytestmark = live_marks(unavailable_reason())

SRC = str(Path(__file__).resolve().parents[2] / "src")
STATION = bytes.fromhex("020000000099")
CHILD_IP = "10.77.9.1"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def host():
    """P: the parent (a veth), W: the station on its far end, A: a bridge child with an address."""
    tag = secrets.token_hex(3)
    names = {k: f"pmv{tag}{k}" for k in "PWA"}
    try:
        for n in names.values():
            ip("netns", "add", n)
        p, w, a = names["P"], names["W"], names["A"]
        ip("-n", p, "link", "add", f"pmv{tag}p", "type", "veth", "peer", "name", f"pmv{tag}w", "netns", w)
        ip("-n", p, "link", "set", f"pmv{tag}p", "up")
        ip("-n", w, "link", "set", f"pmv{tag}w", "up")
        ip("-n", p, "link", "add", "link", f"pmv{tag}p", "name", f"pmv{tag}a", "address", "02:00:00:00:00:0a",
           "type", "macvlan", "mode", "bridge")
        ip("-n", p, "link", "set", f"pmv{tag}a", "netns", a)
        ip("-n", a, "addr", "add", f"{CHILD_IP}/24", "dev", f"pmv{tag}a")
        ip("-n", a, "link", "set", f"pmv{tag}a", "up")
        yield {**names, "wire_if": f"pmv{tag}w"}
    finally:
        for n in names.values():
            subprocess.run(["ip", "netns", "del", n], capture_output=True, timeout=30)


def arp_request(sender_ip: str) -> bytes:
    return (b"\xff" * 6 + STATION + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + STATION
            + ipaddress.IPv4Address(sender_ip).packed + bytes(6) + ipaddress.IPv4Address(CHILD_IP).packed
            + bytes(18))


def start_trace(ns: str, *extra: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "pymacvlan.cli.main", "trace", "--backend", "kernel", "-n", ns,
                             *extra], env={**os.environ, "PYTHONPATH": SRC}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    assert line.startswith("tracing "), line + proc.stderr.read()
    return proc


def stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.communicate(timeout=10)[1]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[1]


def test_a_stations_arp_requests_come_before_the_replies_they_caused(host):
    proc = start_trace(host["P"], "-j", "--ethertype", "0x0806")
    try:
        senders = [f"10.77.9.{100 + i}" for i in range(6)]
        with in_netns(host["W"]):
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        # the trace is stopped while the kernel handles the requests and the child answers them,
        # so its taps hold causes and effects at once: reading order alone would print the
        # child's replies (read from its tap) and the station's requests (the parent's) apart
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            with sock:
                sock.bind((host["wire_if"], 0))
                for s in senders:
                    sock.send(arp_request(s))
            time.sleep(0.5)  # not a timed assertion: lets the frames pile up in the taps
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        events: list[dict] = []
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 20
        while len(events) < 2 * len(senders) and time.monotonic() < deadline:
            # until every frame is in, or nothing came for 3 s (the kernel may leave a request
            # unanswered: only what was printed is judged, and at least half must be answered)
            if not sel.select(min(3.0, max(0.0, deadline - time.monotonic()))):
                break
            line = proc.stdout.readline()
            assert line, "the trace ended: " + stop(proc)
            events.append(json.loads(line))
    finally:
        err = stop(proc)
    seen = []
    for ev in events:
        f = bytes.fromhex(ev["frame"])
        op = struct.unpack("!H", f[20:22])[0]
        spa, tpa = str(ipaddress.IPv4Address(f[28:32])), str(ipaddress.IPv4Address(f[38:42]))
        seen.append(("request", spa) if op == 1 else ("reply", tpa))
        assert ev["from"] == ("wire" if op == 1 else f"pmv{host['P'][3:9]}a"), ev["from"]
    replies = [ip for kind, ip in seen if kind == "reply"]
    assert len(replies) * 2 >= len(senders), (seen, err)
    for s in replies:
        assert ("request", s) in seen, f"a reply to {s} without its request: {seen}"
        req, rep = seen.index(("request", s)), seen.index(("reply", s))
        assert req < rep, f"the reply to {s} was printed before its request: {seen}"
        assert events[req]["time"] <= events[rep]["time"]
    assert [ev["time"] for ev in events] == sorted(ev["time"] for ev in events), "printed out of kernel order"


def test_arp_lines_read_as_tcpdump_prints_them(host):
    proc = start_trace(host["P"], "--ethertype", "0x0806", "--count", "2")
    try:
        with in_netns(host["W"]):
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        with sock:
            sock.bind((host["wire_if"], 0))
            sock.send(arp_request("10.77.9.200"))
        out, err = proc.communicate(timeout=20)
    finally:
        stop(proc)
    heads = [line for line in out.splitlines() if " > " in line and not line.startswith(" ")]
    assert heads[0].startswith("02:00:00:00:00:99 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 60: "
                               f"Request who-has {CHILD_IP} tell 10.77.9.200, length 28; from wire on "), out
    assert heads[1].startswith("02:00:00:00:00:0a > 02:00:00:00:00:99, ethertype ARP (0x0806), length 42: "
                               f"Reply {CHILD_IP} is-at 02:00:00:00:00:0a, length 28; from "), out


def test_the_trace_ends_with_a_reason_and_exit_1_when_its_namespace_is_deleted(host):
    proc = start_trace(host["P"])
    subprocess.run(["ip", "netns", "del", host["P"]], check=True, timeout=30)
    try:
        _out, err = proc.communicate(timeout=15)
    finally:
        stop(proc)
    assert proc.returncode == 1, err
    last = err.strip().splitlines()[-1]
    assert f"the network namespace {host['P']} was deleted; the trace ends" in last, err
    assert "Traceback" not in err
