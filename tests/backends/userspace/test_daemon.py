"""`pymacvlan daemon` and the userspace link driver.

Unit part (any user): the wire format, the trace filter, the atomic state file, sd_notify,
the control socket's errors and a driver with no daemon. Live part (root, this run's pmv
namespaces): the daemon as a real subprocess (``pymacvlan daemon --netns P``) driven over
its socket: children added, changed, shown, pinged, traced; SIGTERM keeps every TAP and
releases the parent; a restart brings the children back from the state file.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pymacvlan.daemon.codec import decode, encode
from pymacvlan.daemon.server import Daemon, DaemonConfig, sd_notify
from pymacvlan.daemon.state import write_atomic
from pymacvlan.daemon.trace import TraceFilter
from pymacvlan.links import LinkChange, LinkRequest, TraceRequest, get_driver
from pymacvlan.links.userspace import Connection, Driver
from pymacvlan.model import KernelError, MacaddrMode, MacvlanFlag, Mode
from tests.ci import in_ci, live_marks

from .netlab import Lab, live_unavailable, ping, sh

_REASON = live_unavailable()
live = live_marks(_REASON)

MAC_A = "02:00:00:00:00:0a"
MAC_B = "02:00:00:00:00:0b"
STATION = "10.78.0.100"


# -- wire format ------------------------------------------------------------------------------------
def test_link_request_round_trips_through_json() -> None:
    req = LinkRequest("eth1", "m0", "macvlan", Mode.SOURCE, bytes.fromhex("02000000000a"), 1400,
                      MacvlanFlag.NODST, MacaddrMode.SET, [bytes.fromhex("02000000000b")], 20, 3, "ns1")
    wire = json.loads(json.dumps(encode(req)))
    assert wire["address"] == "02:00:00:00:00:0a" and wire["mode"] == 16 and wire["macaddrs"] == ["02:00:00:00:00:0b"]
    assert decode(LinkRequest, wire) == req
    ch = LinkChange(up=True, mtu=1200, mode=Mode.BRIDGE)
    assert encode(ch) == {"up": True, "mtu": 1200, "mode": 4}
    assert decode(LinkChange, encode(ch)) == ch


@pytest.mark.parametrize("bad, word", [({"parent": "p", "name": "n", "colour": 1}, "colour"),
                                       ({"parent": "p", "name": "n", "address": "zz"}, "address"),
                                       ({"parent": "p", "name": "n", "mode": 3}, "mode"),
                                       ({"name": "n"}, "parent")])
def test_decode_refuses_bad_requests_with_einval(bad: dict, word: str) -> None:
    with pytest.raises(KernelError) as e:
        decode(LinkRequest, bad)
    assert e.value.errno_name == "EINVAL" and word in e.value.message


def test_trace_filter_matches_mac_and_ethertype_behind_a_vlan_tag() -> None:
    a, b = bytes.fromhex("02000000000a"), bytes.fromhex("02000000000b")
    plain = b + a + b"\x88\xb5" + bytes(50)
    tagged = b + a + b"\x81\x00\x00\x0b\x08\x06" + bytes(50)
    f = TraceFilter.from_request({"mac": "02:00:00:00:00:0a", "ethertype": "0x0806"})
    assert not f.pre(plain) and f.pre(tagged)
    assert TraceFilter.from_request({"ethertype": "88b5"}).pre(plain)
    assert not TraceFilter.from_request({"mac": "02:00:00:00:00:0c"}).pre(plain)
    with pytest.raises(KernelError):
        TraceFilter.from_request({"mac": "nope"})


def test_state_file_is_replaced_atomically(tmp_path: Path) -> None:
    p = tmp_path / "sub" / "state.json"
    write_atomic(str(p), '{"a": 1}\n')
    write_atomic(str(p), '{"a": 2}\n')
    assert json.loads(p.read_text()) == {"a": 2}
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert [x.name for x in p.parent.iterdir()] == ["state.json"]  # no temporary left


def test_sd_notify_sends_to_notify_socket(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sd_notify("READY=1") is False
    path = str(tmp_path / "notify")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert sd_notify("READY=1") is True
        assert s.recv(100) == b"READY=1"
    finally:
        s.close()


# -- the control socket without a parent ------------------------------------------------------------------
@pytest.fixture
def daemon(tmp_path: Path):
    d = Daemon(DaemonConfig(str(tmp_path / "run" / "c.sock"), str(tmp_path / "state.json")))
    d.start()
    t = threading.Thread(target=d.serve_forever, daemon=True)
    t.start()
    yield d
    d.stop()
    t.join(10)
    assert not t.is_alive()


def test_driver_without_daemon_says_to_start_one(tmp_path: Path) -> None:
    drv = get_driver("userspace", socket_path=str(tmp_path / "none.sock"))
    with pytest.raises(KernelError) as e:
        drv.show()
    assert e.value.errno_name == "ECONNREFUSED"
    assert "pymacvlan daemon" in e.value.advice


def test_control_socket_is_0600_and_answers_errors_per_request(daemon: Daemon) -> None:
    path = daemon.cfg.socket
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    drv = Driver(path)
    assert drv.show() == []
    with pytest.raises(KernelError) as e:
        drv.delete("nope")
    assert e.value.errno_name == "ENODEV" and "nope" in e.value.message
    with pytest.raises(KernelError) as e:
        drv.add(LinkRequest("pmvnosuchdev0", "m0", mode=Mode.BRIDGE))
    assert e.value.errno_name == "ENODEV" and "pmvnosuchdev0" in e.value.message
    with Connection(path) as c:  # one connection survives bad lines and keeps answering
        c.send({"op": "frobnicate"})
        assert c.recv()["errno"] == "EOPNOTSUPP"
        c.sock.sendall(b"{not json\n")
        assert c.recv()["errno"] == "EINVAL"
        assert c.call({"op": "hello"})["pid"] == os.getpid()
    assert drv.stats() == {"backend": "userspace", "daemon": {"trace_subscribers": 0}, "parents": {}}


def test_a_second_daemon_on_the_same_socket_is_refused(daemon: Daemon) -> None:
    other = Daemon(DaemonConfig(daemon.cfg.socket, daemon.cfg.state + "2"))
    with pytest.raises(KernelError) as e:
        other.start()
    assert e.value.errno_name == "EADDRINUSE"
    assert Driver(daemon.cfg.socket).show() == []  # the first one still serves


@pytest.mark.live
@pytest.mark.skipif(os.geteuid() != 0 and not in_ci(), reason="needs root to connect as another uid")
def test_peers_other_than_root_or_the_daemon_user_get_eperm() -> None:
    import shutil
    import tempfile

    top = tempfile.mkdtemp(prefix="pmvd")  # pytest's tmp_path is 0700: nobody could not reach it
    d = None
    try:
        os.chmod(top, 0o755)
        d = Daemon(DaemonConfig(f"{top}/c.sock", f"{top}/state.json")).start()
        t = threading.Thread(target=d.serve_forever, daemon=True)
        t.start()
        os.chmod(d.cfg.socket, 0o666)  # let the socket's mode through to test SO_PEERCRED itself
        code = ("import os, socket, sys; os.setgid(65534); os.setuid(65534); s = socket.socket(socket.AF_UNIX); "
                f"s.connect({d.cfg.socket!r}); "
                "sys.stdout.write(s.makefile().readline())")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
        reply = json.loads(out.stdout or "null")
        assert reply and reply["ok"] is False and reply["errno"] == "EPERM", (out.stdout, out.stderr)
        assert d.counters["peer_refused"] == 1
        d.stop()
        t.join(10)
    finally:
        shutil.rmtree(top, ignore_errors=True)


# -- live: the daemon as a subprocess -----------------------------------------------------------------------
class DaemonProc:
    """``pymacvlan daemon --netns P`` in a subprocess; stopped by its PID."""

    def __init__(self, tmp: Path, parent_ns: str, notify: str | None = None, extra: tuple[str, ...] = ()) -> None:
        #: further daemon options (e.g. --fastpath)
        self.extra = list(extra)
        self.socket = str(tmp / "run" / "control.sock")
        self.state = str(tmp / "lib" / "state.json")
        self.parent_ns = parent_ns
        self.notify = notify
        self.proc: subprocess.Popen | None = None
        self.log = tmp / "daemon.log"

    def start(self) -> DaemonProc:
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        if self.notify:
            env["NOTIFY_SOCKET"] = self.notify
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pymacvlan.cli.main", "daemon", "--socket", self.socket,
             "--state", self.state, "--netns", self.parent_ns, *self.extra], env=env,
            stdout=subprocess.DEVNULL, stderr=open(self.log, "ab"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with Connection(self.socket, 2) as c:
                    c.call({"op": "hello"})
                return self
            except KernelError:
                assert self.proc.poll() is None, self.log.read_text()
                time.sleep(0.05)
        raise AssertionError("the daemon did not come up: " + self.log.read_text())

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc is None:
            return 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError("the daemon ignored " + signal.Signals(sig).name) from None
        finally:
            self.proc = None


def _setup(lab: Lab) -> tuple[str, str, str]:
    P, W = lab.ns("P"), lab.ns("W")
    parent, wire = lab.ifname("p"), lab.ifname("w")
    lab.veth(parent, P, wire, W)
    sh("ip", "-n", W, "addr", "add", f"{STATION}/24", "dev", wire)
    return P, W, parent


def _wait(pred, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def _link_in(ns: str, name: str) -> str:
    return sh("ip", "-n", ns, "-o", "link", "show", name, check=False).stdout


@pytest.mark.live
@pytest.mark.skipif(_REASON is not None and not in_ci(), reason=str(_REASON))
def test_daemon_children_live_stop_and_come_back(lab: Lab, tmp_path: Path) -> None:
    P, W, parent = _setup(lab)
    A, B = lab.ns("A"), lab.ns("B")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    d = DaemonProc(tmp_path, P, notify=str(tmp_path / "notify")).start()
    try:
        r, _, _ = select.select([notify], [], [], 5)
        assert r and notify.recv(200).startswith(b"READY=1")
        drv = Driver(d.socket)
        drv.add(LinkRequest(parent, "eth0", mode=Mode.BRIDGE, address=bytes.fromhex(MAC_A.replace(":", "")), netns=A))
        drv.add(LinkRequest(parent, "eth0", mode=Mode.BRIDGE, netns=B))
        with pytest.raises(KernelError) as e:  # same name, same namespace
            drv.add(LinkRequest(parent, "eth0", netns=A))
        assert e.value.errno_name == "EEXIST"
        with pytest.raises(KernelError) as e:  # eth0 is ambiguous without a namespace
            drv.set("eth0", LinkChange(up=True))
        assert "netns" in e.value.advice
        drv.set("eth0", LinkChange(up=True), netns=A)
        drv.set("eth0", LinkChange(up=True, mtu=1400), netns=B)
        for ns, ip in ((A, "10.78.0.1"), (B, "10.78.0.2")):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        assert "mtu 1400" in _link_in(B, "eth0")  # the TAP follows the daemon's MTU
        assert ping(W, "10.78.0.1") == 3
        assert ping(A, "10.78.0.2") == 3
        links = {(x["netns"], x["ifname"]): x for x in drv.show()}
        a = links[(A, "eth0")]
        assert a["address"] == MAC_A and a["link"] == parent and a["linkinfo"]["info_kind"] == "macvlan"
        assert a["linkinfo"]["info_data"]["mode"] == "bridge" and "UP" in a["flags"] and a["operstate"] == "UP"
        assert a["stats64"]["rx"]["packets"] >= 3
        assert links[(B, "eth0")]["mtu"] == 1400
        mac_b = links[(B, "eth0")]["address"]
        st = drv.stats()["parents"][parent]
        assert set(st["children"]) == {f"{A}/eth0", f"{B}/eth0"} and "engine_drops" in st
        # bridge → private: ARP between the children no longer gets through
        drv.set("eth0", LinkChange(mode=Mode.PRIVATE), netns=A)
        drv.set("eth0", LinkChange(mode=Mode.PRIVATE), netns=B)
        sh("ip", "-n", A, "neigh", "flush", "dev", "eth0")
        tx_a = drv.stats()["parents"][parent]["children"][f"{A}/eth0"]["tx"]["packets"]
        assert ping(A, "10.78.0.2", count=2, timeout=1.0) == 0
        # evidence, not silence: A's ARP requests did reach the datapath, which kept them from B
        assert drv.stats()["parents"][parent]["children"][f"{A}/eth0"]["tx"]["packets"] > tx_a
        drv.set("eth0", LinkChange(mode=Mode.BRIDGE), netns=B)
        drv.set("eth0", LinkChange(mode=Mode.BRIDGE), netns=A)
        sh("ip", "-n", A, "neigh", "flush", "dev", "eth0")
        assert ping(A, "10.78.0.2") == 3  # positive control: the same path, back in bridge mode

        assert d.stop() == 0
        r, _, _ = select.select([notify], [], [], 5)
        assert r and notify.recv(200).startswith(b"STOPPING=1")
        # clean exit: the TAPs stay (carrier off, addresses kept), parent no longer promiscuous,
        # socket removed, state kept
        for ns, ip in ((A, "10.78.0.1"), (B, "10.78.0.2")):
            assert "NO-CARRIER" in _link_in(ns, "eth0")
            assert f"{ip}/24" in sh("ip", "-n", ns, "-o", "addr", "show", "dev", "eth0").stdout
        assert "promiscuity 0" in sh("ip", "-d", "-n", P, "link", "show", parent).stdout
        assert not os.path.exists(d.socket)
        saved = {(x["netns"], x["name"]): x for x in json.loads(Path(d.state).read_text())["links"]}
        assert saved[(A, "eth0")]["address"] == MAC_A and saved[(B, "eth0")]["mtu"] == 1400
        ifindex_a = saved[(A, "eth0")]["ifindex"]

        d.start()
        assert _wait(lambda: "NO-CARRIER" not in _link_in(A, "eth0"))
        again = {(x["netns"], x["ifname"]): x for x in Driver(d.socket).show()}
        assert again[(A, "eth0")]["address"] == MAC_A and again[(B, "eth0")]["address"] == mac_b
        assert again[(A, "eth0")]["ifindex"] == ifindex_a  # the same device, adopted
        assert again[(B, "eth0")]["mtu"] == 1400 and again[(A, "eth0")]["linkinfo"]["info_data"]["mode"] == "bridge"
        assert ping(A, "10.78.0.2") == 3  # the addresses were never lost
        Driver(d.socket).delete("eth0", netns=B)
        assert _link_in(B, "eth0") == ""
        assert [x["netns"] for x in Driver(d.socket).show()] == [A]
    finally:
        d.stop()
        notify.close()


@pytest.mark.live
@pytest.mark.skipif(_REASON is not None and not in_ci(), reason=str(_REASON))
def test_daemon_traces_matching_frames(lab: Lab, tmp_path: Path) -> None:
    P, W, parent = _setup(lab)
    A = lab.ns("A")
    d = DaemonProc(tmp_path, P).start()
    try:
        drv = Driver(d.socket)
        drv.add(LinkRequest(parent, "eth0", mode=Mode.BRIDGE, address=bytes.fromhex(MAC_A.replace(":", "")), netns=A))
        drv.set("eth0", LinkChange(up=True), netns=A)
        sh("ip", "-n", A, "addr", "add", "10.78.0.1/24", "dev", "eth0")
        with pytest.raises(KernelError) as e:
            drv.trace(TraceRequest(child="nosuch"))  # refused at once, before any item
        assert e.value.errno_name == "ENODEV"
        events: list[dict] = []
        it = drv.trace(TraceRequest(ethertype="0x0806", child="eth0"))  # ARP the child sends or is offered

        def collect() -> None:
            for ev in it:
                if "trace" not in ev:  # the banner, not a frame
                    continue
                events.append(ev)
                if len(events) >= 2:
                    return

        t = threading.Thread(target=collect, daemon=True)
        t.start()
        # the subscription is installed before the first frame: the daemon says so
        assert _wait(lambda: drv.stats()["daemon"]["trace_subscribers"] == 1)
        assert ping(W, "10.78.0.1") == 3
        t.join(5)
        assert len(events) >= 2, events
        req = next(ev for ev in events if ev["from"] == "wire")
        assert req["ethertype"] == "0x0806" and req["dst"] == "ff:ff:ff:ff:ff:ff"
        mine = next(x for x in req["trace"] if x["device"] == f"{A}/eth0")
        assert mine["received"] == 1 and mine["rules"]
        reply = next(ev for ev in events if ev["from"] == f"{A}/eth0")
        assert "@wire" in reply["delivered"] and reply["src"] == MAC_A
        it.close()
        # with nobody tracing, the datapath is back on its fast path
        assert _wait(lambda: drv.stats()["daemon"]["trace_subscribers"] == 0)
    finally:
        d.stop()


@pytest.mark.live
@pytest.mark.skipif(_REASON is not None and not in_ci(), reason=str(_REASON))
def test_link_cli_adds_a_userspace_child(lab: Lab, tmp_path: Path) -> None:
    """The issue's own command line, through the `link` CLI and this driver."""
    P, W, parent = _setup(lab)
    d = DaemonProc(tmp_path, P).start()
    env = dict(os.environ, PYMACVLAN_SOCKET=d.socket)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pymacvlan.cli.main", *args], env=env,
                              capture_output=True, text=True, timeout=60)
    try:
        out = cli("link", "add", "link", parent, "name", "m0", "type", "macvlan", "mode", "bridge",
                  "--backend", "userspace")
        assert out.returncode == 0, out.stderr
        assert "m0" in _link_in(P, "m0")  # no netns given: where the parents are (--netns P)
        shown = json.loads(cli("link", "-j", "-d", "show", "m0", "--backend", "userspace").stdout)
        assert shown[0]["ifname"] == "m0" and shown[0]["linkinfo"]["info_data"]["mode"] == "bridge"
        for view in ([], ["-d"], ["-s"], ["-d", "-s"], ["-br"]):  # the text views too
            out = cli(*view, "link", "show", "--backend", "userspace")
            assert out.returncode == 0 and "Traceback" not in out.stderr, (view, out.stderr)
            assert out.stdout.split(":", 2)[1].strip().startswith("m0@") or out.stdout.startswith("m0@"), out.stdout
        assert "macvlan mode bridge" in cli("-d", "link", "show", "m0", "--backend", "userspace").stdout
        out = cli("link", "add", "link", parent, "name", "m0", "type", "macvlan", "--backend", "userspace")
        assert out.returncode != 0 and "exists" in out.stderr
        assert "Traceback" not in out.stderr
        out = cli("link", "del", "m0", "--backend", "userspace")
        assert out.returncode == 0, out.stderr
    finally:
        d.stop()
    out = cli("link", "show", "--backend", "userspace")
    assert out.returncode != 0 and "pymacvlan daemon" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.live
@pytest.mark.skipif(_REASON is not None and not in_ci(), reason=str(_REASON))
def test_bad_requests_are_refused_at_once_and_leave_nothing(lab: Lab, tmp_path: Path) -> None:
    """The issue's two userspace-only mistakes: a 16-byte name hung the client for 60 s (the
    daemon's ValueError went unanswered); `link add ... address SIBLING up` made a child with
    another, random MAC and exit 0, where sim and kernel refuse and leave no link."""
    P, W, parent = _setup(lab)
    A, B = lab.ns("A"), lab.ns("B")
    d = DaemonProc(tmp_path, P).start()
    env = dict(os.environ, PYMACVLAN_SOCKET=d.socket)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pymacvlan.cli.main", "--backend", "userspace", *args],
                              env=env, capture_output=True, text=True, timeout=60)
    try:
        drv = Driver(d.socket, timeout=10)
        with pytest.raises(KernelError) as e:
            drv.add(LinkRequest(parent, "a" * 16, netns=A))
        assert e.value.errno_name == "EINVAL" and "not a valid ifname" in e.value.message
        out = cli("link", "add", "link", parent, "name", "eth0", "netns", A, "type", "macvlan", "mode", "bridge",
                  "address", MAC_A, "up")
        assert out.returncode == 0, out.stderr
        out = cli("link", "add", "link", parent, "name", "eth0", "netns", B, "type", "macvlan", "mode", "bridge",
                  "address", MAC_A, "up")
        assert out.returncode == 2 and out.stderr.startswith("RTNETLINK answers: Address already in use"), out.stderr
        assert _link_in(B, "eth0") == ""  # no TAP left in B
        assert [(x["netns"], x["address"]) for x in drv.show()] == [(A, MAC_A)]
        assert d.proc is not None and d.proc.poll() is None
    finally:
        d.stop()


def test_a_bug_in_a_handler_is_answered_at_once_with_the_request_id(daemon: Daemon, monkeypatch) -> None:
    def boom(*_a, **_k):
        raise RuntimeError("a bug")

    monkeypatch.setattr(daemon, "link_show", boom)
    with Connection(daemon.cfg.socket, 5) as c:
        c.send({"op": "link.show", "id": 41})
        reply = c.recv()
        assert reply is not None and reply["ok"] is False and reply["errno"] == "EIO" and reply["id"] == 41
        assert "request 41" in reply["message"] and "RuntimeError" in reply["message"]
        assert c.call({"op": "hello"})["ok"]  # the connection and the daemon keep serving
    assert daemon.counters["internal_error"] == 1


def test_requests_are_checked_before_the_parent_is_opened(daemon: Daemon) -> None:
    """A 16-byte name is EINVAL in iproute2's words, whatever the parent (no datapath made)."""
    with pytest.raises(KernelError) as e:
        Driver(daemon.cfg.socket, timeout=5).add(LinkRequest("nosuchparent", "b" * 16))
    assert e.value.errno_name == "EINVAL" and '"name" not a valid ifname' in e.value.message
    assert daemon.datapaths == {}


def _hello_and_status(tmp_path: Path, monkeypatch, cfg: DaemonConfig) -> tuple[dict, bytes, dict]:
    """Start a daemon (no parent needed), return its hello, its systemd notification and stats."""
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    d = Daemon(cfg).start()
    t = threading.Thread(target=d.serve_forever, daemon=True)
    t.start()
    try:
        with Connection(cfg.socket) as c:
            hello = c.call({"op": "hello"})
            stats = c.call({"op": "stats"})
        return hello, notify.recv(1000), stats
    finally:
        d.stop()
        t.join(10)
        notify.close()


def test_the_daemon_says_once_why_the_fast_path_cannot_load(tmp_path: Path, monkeypatch, caplog) -> None:
    """Issue 20: the fast path is the default; where eBPF cannot load, the daemon says why once
    (log, hello, stats, systemd STATUS) and runs the Python path."""
    from pymacvlan.backends.userspace import fastpath

    def refuse(self, netns=None) -> None:
        raise PermissionError(1, "bpf(BPF_PROG_LOAD) refused")

    monkeypatch.setattr(fastpath.FastPath, "__init__", refuse)
    cfg = DaemonConfig(str(tmp_path / "run" / "c.sock"), str(tmp_path / "state.json"))
    assert cfg.fastpath  # the default
    with caplog.at_level("WARNING", logger="pymacvlan.daemon"):
        hello, status, stats = _hello_and_status(tmp_path, monkeypatch, cfg)
    reason = "PermissionError: [Errno 1] bpf(BPF_PROG_LOAD) refused"
    assert hello["fastpath"] == {"on": False, "reason": reason}
    assert stats["fastpath"] == {"on": False, "reason": reason}
    assert f"STATUS=listening on {cfg.socket}, 0 children; eBPF fast path unavailable: {reason}".encode() in status
    said = [r for r in caplog.records if "fast path unavailable" in r.getMessage()]
    assert len(said) == 1 and reason in said[0].getMessage()


def test_no_fastpath_is_said_as_such(tmp_path: Path, monkeypatch) -> None:
    cfg = DaemonConfig(str(tmp_path / "run" / "c.sock"), str(tmp_path / "state.json"), fastpath=False)
    hello, status, _ = _hello_and_status(tmp_path, monkeypatch, cfg)
    assert hello["fastpath"] == {"on": False, "reason": "off (--no-fastpath)"}
    assert b"eBPF fast path off: off (--no-fastpath)" in status


def test_the_daemon_cli_defaults_to_the_fast_path() -> None:
    from pymacvlan.cli.main import build_parser

    p = build_parser()
    assert p.parse_args(["daemon"]).fastpath is True
    assert p.parse_args(["daemon", "--no-fastpath"]).fastpath is False
    assert p.parse_args(["daemon", "--fastpath"]).fastpath is True  # older command lines and units


def test_a_pending_record_leaves_when_its_child_is_deleted(tmp_path: Path) -> None:
    """Issue 18: a child the daemon could not restore (its parent is missing) stays a pending
    record; `link del` of it drops the record, so it does not come back at the next start."""
    from pymacvlan.daemon import state as statefile
    from pymacvlan.daemon.state import LinkRecord

    path = str(tmp_path / "state.json")
    statefile.save(path, [LinkRecord("m0", "pmvnosuchdev0", address=MAC_A),
                          LinkRecord("m1", "pmvnosuchdev0", address=MAC_B)])

    def start() -> Daemon:
        d = Daemon(DaemonConfig(str(tmp_path / "run" / "c.sock"), path))
        d.start()
        return d

    d = start()
    try:
        assert [r.name for r in d.pending] == ["m0", "m1"]
        d.link_del("m0")
        with pytest.raises(KernelError) as e:
            d.link_del("m0")
        assert e.value.errno_name == "ENODEV"
    finally:
        d.shutdown()
    d = start()
    try:
        assert [r.name for r in d.pending] == ["m1"]
    finally:
        d.shutdown()
