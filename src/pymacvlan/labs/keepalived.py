"""`pymacvlan lab keepalived`: keepalived's virtual MAC (seed article 003) with Debian's real
keepalived, in throwaway pmv namespaces, every step checked.

The world: a switch (a Linux bridge in a namespace), two routers and a station on it. Each
router runs keepalived with ``use_vmac``: keepalived itself makes ``vrrp.51@lan0``, a
private-mode macvlan with the VRRP MAC 00:00:5e:00:01:33, and moves the VIP to it on the
master. The lab shows

* the VMAC child as pymacvlan's kernel view sees it, and the sysctls keepalived 2.2.7 sets
  (arp_ignore and arp_filter on the parent; arp_ignore, rp_filter=0 and accept_local on the
  VMAC; *not* arp_announce);
* the article's pitfalls where keepalived's settings are undone: arp_ignore=0 on the parent
  (the parent answers ARP for the VIP with its own MAC) and strict rp_filter on the backup (it
  drops the master's adverts and takes the VIP too: split brain), each found by `pymacvlan
  doctor` and fixed by its printed commands run as printed;
* the ARP pitfall: the station learns the VIP on the router's own NIC MAC, with arp_announce=0
  and with the article's arp_announce=1 alike (the VIP is in the parent's subnet, so the
  parent's ARP requests keep it as their sender address); `pymacvlan doctor` finds it and its
  printed command (arp_announce=2 on the parent) run literally fixes it;
* failover, measured: keepalived on the master ended by PID, then the master's link cut; the
  VIP moves, the station's pings go on, and the station's neighbour entry stays the VRRP MAC;
  `pymacvlan trace --backend kernel --verify` watches the VRRP MAC on the backup meanwhile and
  must agree with the kernel on every frame.

keepalived runs in the foreground with its own config, pid files and console log
(``-n -l -D -G -P -f CONF -p PID -r VRRP_PID``) and is ended by its PID, also on failure.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..netlab import Lab, _checksum, leftovers, sh
from ..netns import in_netns

VRID = 51
VMAC = f"00:00:5e:00:01:{VRID:02x}"
VIP = "10.77.0.100"
NET = "10.77.0"
#: the one backend this lab runs on: keepalived makes its kernel macvlan (VMAC) itself
BACKEND = "kernel"
DESCRIPTION = ("keepalived's virtual MAC (seed article 003) with Debian's real keepalived: two routers with "
               "use_vmac, a station and a switch in namespaces. keepalived makes the private-mode macvlan "
               f"vrrp.{VRID}@lan0 with the VRRP MAC {VMAC} itself; the lab shows it, the article's ARP flux and "
               "rp_filter pitfalls, the ARP pitfall that leaves the station with the router's own MAC for the VIP "
               "(arp_announce=1 does not help), doctor's fixes run as printed, "
               "and a measured failover with trace --verify running alongside.")
NOTE = ("keepalived 2.2.7 sets arp_ignore=1 and arp_filter=1 on the parent and arp_ignore=1, rp_filter=0, "
        "accept_local=1 on the VMAC, but not arp_announce. With arp_announce 0 or 1 the parent's own ARP "
        "requests carry the VIP (it is in the parent's subnet) and teach the LAN the router's NIC MAC; "
        "arp_announce=2 on the parent is what makes the LAN learn the VRRP MAC, so failover needs no re-learning.")


def keepalived_conf(name: str, priority: int, advert: int = 1) -> str:
    return f"""global_defs {{
  router_id {name}
  vrrp_garp_master_delay 0
}}
vrrp_instance VI_1 {{
  state BACKUP
  interface lan0
  use_vmac
  virtual_router_id {VRID}
  priority {priority}
  advert_int {advert}
  virtual_ipaddress {{
    {VIP}/24
  }}
}}
"""


@dataclass
class Step:
    text: str
    comment: str = ""
    got: str = ""
    ok: bool | None = None  # None: not a checked step


@dataclass
class Outcome:
    steps: list[Step] = field(default_factory=list)
    failover: dict[str, float] = field(default_factory=dict)  # what -> seconds without replies

    @property
    def failed(self) -> list[Step]:
        return [s for s in self.steps if s.ok is False]

    @property
    def checked(self) -> int:
        return sum(s.ok is not None for s in self.steps)


def unavailable() -> str | None:
    """Why the lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "not root: the lab builds namespaces and runs keepalived (CAP_NET_ADMIN)"
    for tool in ("keepalived", "ip", "bridge"):
        if shutil.which(tool) is None:
            return f"no {tool} (apt-get install keepalived iproute2)"
    return None


class Pinger:
    """The station pings the VIP every ``interval`` from a thread and records each reply's time,
    and samples its neighbour entry for the VIP (every MAC it held during the run)."""

    def __init__(self, ns: str, dst: str, interval: float = 0.02) -> None:
        self.ns, self.dst, self.interval = ns, dst, interval
        self.sent: dict[int, float] = {}
        self.replies: list[float] = []
        self.macs: set[str] = set()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._ping, daemon=True),
                         threading.Thread(target=self._neigh, daemon=True)]

    def __enter__(self) -> Pinger:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)

    def _ping(self) -> None:
        with in_netns(self.ns):
            s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        ident, seq = os.getpid() & 0xFFFF, 0
        try:
            while not self._stop.is_set():
                hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq & 0xFFFF)
                payload = b"pmv-keepalived" + bytes(42)
                s.sendto(struct.pack("!BBHHH", 8, 0, _checksum(hdr + payload), ident, seq & 0xFFFF) + payload,
                         (self.dst, 0))
                self.sent[seq & 0xFFFF] = time.monotonic()
                seq += 1
                end = time.monotonic() + self.interval
                while (left := end - time.monotonic()) > 0 and select.select([s], [], [], left)[0]:
                    data, addr = s.recvfrom(2048)
                    ihl = (data[0] & 0x0F) * 4
                    typ, _c, _k, rid, _rseq = struct.unpack_from("!BBHHH", data, ihl)
                    if typ == 0 and rid == ident and addr[0] == self.dst:
                        self.replies.append(time.monotonic())
        finally:
            s.close()

    def _neigh(self) -> None:
        while not self._stop.wait(0.1):
            mac = neigh_mac(self.ns, self.dst)
            if mac:
                self.macs.add(mac)

    def gap_after(self, t0: float) -> float:
        """The longest time without a reply from ``t0`` on (the failover's cost)."""
        times = [t0] + [t for t in self.replies if t >= t0]
        return max((b - a for a, b in zip(times, times[1:], strict=False)), default=float("inf"))


def neigh_mac(ns: str, ip: str) -> str | None:
    out = sh("ip", "-n", ns, "neigh", "show", ip).stdout.split()
    return out[out.index("lladdr") + 1] if "lladdr" in out else None


def mac_of(ns: str, dev: str) -> str:
    return json.loads(sh("ip", "-n", ns, "-j", "link", "show", dev).stdout)[0]["address"]


def has_vip(ns: str) -> bool:
    return f"{VIP}/" in sh("ip", "-n", ns, "-o", "-4", "addr", "show", "dev", f"vrrp.{VRID}", check=False).stdout


def wait_for(cond: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return cond()


def conf_values(ns: str, dev: str) -> dict[str, int]:
    keys = ("arp_ignore", "arp_announce", "arp_filter", "rp_filter", "accept_local")
    out = sh("ip", "netns", "exec", ns, "sh", "-c",
             " ".join(f"cat /proc/sys/net/ipv4/conf/{dev}/{k};" for k in keys)).stdout.split()
    return dict(zip(keys, map(int, out), strict=True))


def pymacvlan(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pymacvlan", *args], capture_output=True, text=True, timeout=60)


class Keepalived:
    """One keepalived in a namespace, foreground, its own files; ended by PID."""

    def __init__(self, ns: str, name: str, priority: int, workdir: str) -> None:
        self.ns, self.name, self.dir = ns, name, workdir
        self.conf = os.path.join(workdir, f"{name}.conf")
        self.log = os.path.join(workdir, f"{name}.log")
        with open(self.conf, "w") as fh:
            fh.write(keepalived_conf(name, priority))
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, "keepalived", "-n", "-l", "-D", "-G", "-P", "-f", self.conf,
                 "-p", os.path.join(self.dir, f"{self.name}.pid"),
                 "-r", os.path.join(self.dir, f"{self.name}.vrrp.pid")],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        """SIGTERM to the PID we started (keepalived ends its VRRP child, removes its VMAC)."""
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
            try:  # its VRRP child, by the PID it wrote
                with open(os.path.join(self.dir, f"{self.name}.vrrp.pid")) as fh:
                    os.kill(int(fh.read().strip()), signal.SIGKILL)
            except (OSError, ValueError):
                pass

    def tail(self, n: int = 8) -> str:
        try:
            with open(self.log) as fh:
                return "".join(fh.readlines()[-n:])
        except OSError:
            return ""


def run(report: Callable[[Step], None] = lambda s: None) -> Outcome:
    """Build the world, run every step, report each as it ends, tear everything down."""
    out = Outcome()

    def step(text: str, comment: str, got: str = "", ok: bool | None = None) -> bool:
        s = Step(text, comment, got, ok)
        out.steps.append(s)
        report(s)
        return ok is not False

    lab = Lab()
    work = tempfile.mkdtemp(prefix="pmv-keepalived-")
    routers: list[Keepalived] = []
    trace: subprocess.Popen | None = None
    try:
        SW, R1, R2, ST = lab.ns("sw"), lab.ns("r1"), lab.ns("r2"), lab.ns("st")
        sh("ip", "-n", SW, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", SW, "link", "set", "br0", "up")
        for i, ns in enumerate((R1, R2, ST), 1):
            lab.veth("lan0", ns, f"sw{i}", SW)
            sh("ip", "-n", SW, "link", "set", f"sw{i}", "master", "br0")
        for ns, host in ((R1, 1), (R2, 2), (ST, 50)):
            sh("ip", "-n", ns, "addr", "add", f"{NET}.{host}/24", "dev", "lan0")
        step("build: switch (bridge br0), routers r1 (10.77.0.1) and r2 (10.77.0.2), station (10.77.0.50)",
             f"namespaces {SW}, {R1}, {R2}, {ST}; every router's parent is lan0")

        routers = [Keepalived(R1, "r1", 150, work), Keepalived(R2, "r2", 100, work)]
        for k in routers:
            k.start()
        t0 = time.monotonic()
        master = wait_for(lambda: has_vip(R1), 15)
        if not step(f"keepalived -n -l -D -G -P -f r1.conf (priority 150) and r2.conf (100): use_vmac, VRID {VRID}, "
                    f"VIP {VIP}/24", "both start as BACKUP; r1 wins the election after the master-down interval",
                    f"r1 MASTER with the VIP after {time.monotonic() - t0:.1f} s" if master else
                    "no master:\n" + routers[0].tail(), master):
            return out

        r = pymacvlan("-n", R1, "--backend", "kernel", "-j", "-d", "link", "show", f"vrrp.{VRID}")
        try:
            link = json.loads(r.stdout)[0]
            data = link["linkinfo"]["info_data"]
            got = (f"{link['ifname']}@{link.get('link')} {link['linkinfo']['info_kind']} mode {data.get('mode')} "
                   f"address {link['address']}")
            ok = (link.get("link") == "lan0" and link["linkinfo"]["info_kind"] == "macvlan"
                  and data.get("mode") == "private" and link["address"] == VMAC)
        except (ValueError, KeyError, IndexError):
            got, ok = (r.stderr or r.stdout).strip(), False
        step(f"pymacvlan -n r1 --backend kernel -d link show vrrp.{VRID}",
             "the child keepalived made, through pymacvlan's kernel view: a private-mode macvlan with the VRRP MAC",
             got, ok)

        vals = {d: conf_values(R1, d) for d in ("lan0", f"vrrp.{VRID}")}
        want = {"lan0": {"arp_ignore": 1, "arp_filter": 1, "arp_announce": 0},
                f"vrrp.{VRID}": {"arp_ignore": 1, "rp_filter": 0, "accept_local": 1, "arp_announce": 0}}
        ok = all(vals[d][k] == v for d, kv in want.items() for k, v in kv.items())
        step("the sysctls keepalived set on r1", "measured on keepalived 2.2.7: arp_ignore and arp_filter on the "
             "parent, arp_ignore, rp_filter=0 and accept_local on the VMAC; arp_announce stays 0",
             "; ".join(f"{d}: " + " ".join(f"{k}={v}" for k, v in kv.items()) for d, kv in vals.items()), ok)

        nic = mac_of(R1, "lan0")

        # the article's two pitfalls, as they bite where keepalived does not set these itself
        sh("ip", "netns", "exec", R1, "sh", "-c", "echo 0 > /proc/sys/net/ipv4/conf/lan0/arp_ignore")
        answers = arp_answers(ST, "lan0", f"{NET}.50", VIP)
        step(f"article pitfall 1: arp_ignore=0 on r1's lan0; the station asks who has {VIP}",
             "ARP flux: the parent answers for the VIP too, with its own MAC (the VIP is a local address)",
             f"answered by {', '.join(sorted(answers))} (r1's lan0 is {nic})", answers == {nic, VMAC})
        cmds = doctor_commands(R1, "arp-flux")
        for c in cmds:
            sh("ip", "netns", "exec", R1, "sh", "-c", c)
        answers = arp_answers(ST, "lan0", f"{NET}.50", VIP)
        step(f"pymacvlan doctor --netns r1, its command run as printed ({'; '.join(cmds)}), ask again",
             "only the interface that holds the VIP answers", f"answered by {', '.join(sorted(answers))}",
             cmds == ["sysctl -w net.ipv4.conf.all.arp_ignore=1"] and answers == {VMAC})

        for key in ("all", f"vrrp.{VRID}"):
            sh("ip", "netns", "exec", R2, "sh", "-c", f"echo 1 > /proc/sys/net/ipv4/conf/{key}/rp_filter")
        split = wait_for(lambda: has_vip(R2), 10)
        step(f"article pitfall 2: strict rp_filter on r2 (all and vrrp.{VRID})",
             f"r1's adverts arrive on vrrp.{VRID} from 10.77.0.1, whose route is via lan0: dropped; r2 hears no "
             "master and takes the VIP too (split brain)",
             f"VIP on r2: {split}, on r1: {has_vip(R1)}", split and has_vip(R1))
        cmds = doctor_commands(R2, "rp-filter")
        for c in cmds:
            sh("ip", "netns", "exec", R2, "sh", "-c", c)
        healed = wait_for(lambda: not has_vip(R2), 10)
        step(f"pymacvlan doctor --netns r2, its commands run as printed ({'; '.join(cmds)})",
             "r2 hears r1's adverts again and steps back", f"VIP on r2: {not healed}, on r1: {has_vip(R1)}",
             bool(cmds) and healed and has_vip(R1))

        def learned() -> str | None:
            for ns in (ST, R1, R2):
                sh("ip", "-n", ns, "neigh", "flush", "all")
            if wait_for(lambda: _one_ping(ST, VIP), 3):
                time.sleep(0.2)  # the router's reply needs the station's MAC: its ARP request comes now
                _one_ping(ST, VIP)
            return neigh_mac(ST, VIP)

        mac = learned()
        step(f"station pings {VIP}; its neighbour table", "the pitfall: replies leave through r1's lan0, whose ARP "
             "request for the station carries the VIP as sender address, with lan0's own MAC",
             f"{VIP} lladdr {mac} (r1's lan0 is {nic})", mac == nic)
        for ns in (R1, R2):
            sh("ip", "netns", "exec", ns, "sh", "-c", "sysctl -qw net.ipv4.conf.all.arp_announce=1")
        mac = learned()
        step("the article's arp_announce=1 on both routers, ping again",
             "still r1's NIC MAC: with arp_announce=1 the kernel keeps the VIP as the ARP source because the VIP is "
             "in lan0's subnet", f"{VIP} lladdr {mac}", mac == nic)

        cmds = doctor_commands(R1, "arp-announce")
        step("pymacvlan doctor --netns r1", "doctor reads the same state and prints the command that fixes it",
             f"arp-announce (lan0): run: {'; '.join(cmds)}", cmds == ["sysctl -w net.ipv4.conf.lan0.arp_announce=2"])
        for ns in (R1, R2):  # the same parent name on both routers: the same printed command
            for c in cmds:
                sh("ip", "netns", "exec", ns, "sh", "-c", c)
        mac = learned()
        step(f"run doctor's command as printed on both routers ({'; '.join(cmds)}), ping again",
             "now lan0's ARP requests use 10.77.0.1, and the station learns the VIP only from the VMAC",
             f"{VIP} lladdr {mac}", mac == VMAC)
        r = pymacvlan("doctor", "--netns", R1)
        step("pymacvlan doctor --netns r1 again", "nothing left to warn about (notes only)",
             (r.stdout.strip().splitlines() or ["?"])[-1], r.returncode == 0 and "arp-announce" not in r.stdout)

        trace = subprocess.Popen([sys.executable, "-m", "pymacvlan", "trace", "--backend", "kernel", "-n", R2,
                                  "--verify", "--mac", VMAC, "-j"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, start_new_session=True)
        time.sleep(1.0)  # trace attaches its sockets before the failover
        with Pinger(ST, VIP) as pinger:
            wait_for(lambda: len(pinger.replies) >= 5, 3)
            t_stop = time.monotonic()
            routers[0].stop()
            moved = wait_for(lambda: has_vip(R2), 10)
            wait_for(lambda: bool(pinger.replies) and pinger.replies[-1] > t_stop + 0.5, 5)
            gap = pinger.gap_after(t_stop)
            out.failover["graceful"] = gap
            step("failover 1: keepalived on r1 ended by its PID (SIGTERM: it sends priority 0)",
                 "r2 takes the VIP; the station's pings (every 20 ms) go on, its entry for the VIP stays the VRRP MAC",
                 f"VIP on r2: {moved}; longest gap without a reply {gap * 1000:.0f} ms; station's MACs for the VIP: "
                 f"{', '.join(sorted(pinger.macs))}", moved and gap < 5 and pinger.macs == {VMAC})

            routers[0].start()  # r1 comes back and preempts (higher priority)
            back = wait_for(lambda: has_vip(R1) and not has_vip(R2), 15)
            wait_for(lambda: bool(pinger.replies) and pinger.replies[-1] > time.monotonic() - 0.1, 5)
            t_cut = time.monotonic()
            sh("ip", "-n", R1, "link", "set", "lan0", "down")
            moved = wait_for(lambda: has_vip(R2), 15)
            wait_for(lambda: bool(pinger.replies) and pinger.replies[-1] > t_cut + 0.5, 10)
            gap = pinger.gap_after(t_cut)
            out.failover["link cut"] = gap
            step("failover 2: r1 back (preempts), then r1's lan0 cut",
                 "no priority-0 advert this time: r2 waits the master-down interval (3 x advert_int + skew)",
                 f"r1 master again: {back}; VIP on r2: {moved}; longest gap without a reply {gap * 1000:.0f} ms; "
                 f"station's MACs for the VIP: {', '.join(sorted(pinger.macs))}",
                 back and moved and gap < 8 and pinger.macs == {VMAC})

        trace.send_signal(signal.SIGINT)
        try:
            t_out, t_err = trace.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            trace.kill()
            t_out, t_err = trace.communicate()
        trace = None
        events = [json.loads(ln) for ln in t_out.splitlines() if ln.startswith("{")]
        verified = [e for e in events if "agrees" in e]
        to_vmac = [e for e in verified if e.get("dst") == VMAC and f"vrrp.{VRID}" in e.get("observed", [])]
        ok = bool(to_vmac) and all(e["agrees"] for e in verified)
        bad = [f"{e.get('from')} {e.get('src')} > {e.get('dst')} ethertype {e.get('ethertype')}: engine "
               f"{e.get('delivered')}, kernel {e.get('observed')}" for e in verified if not e["agrees"]]
        step(f"pymacvlan trace --backend kernel -n r2 --verify --mac {VMAC} (running through both failovers)",
             "every frame to or from the VRRP MAC on r2, explained by the engine and checked against who really "
             "received it",
             f"{len(verified)} frames verified, {sum(not e['agrees'] for e in verified)} disagreements, "
             f"{len(to_vmac)} to the VMAC delivered to vrrp.{VRID}" + (f"; stderr: {t_err.strip()[-300:]}"
                                                                      if not events else "")
             + "".join(f"\ndisagrees: {b}" for b in bad[:5]), ok)
        return out
    finally:
        if trace is not None:
            trace.kill()
            trace.wait(5)
        for k in routers:
            k.stop()
        lab.close()
        shutil.rmtree(work, ignore_errors=True)
        left = leftovers(lab.tag)
        if left:
            step("teardown", "", f"left behind: {left}", False)


def doctor_commands(ns: str, code: str) -> list[str]:
    """The `run:` lines `pymacvlan doctor --netns NS` prints for finding ``code``, as printed."""
    r = pymacvlan("doctor", "--netns", ns)
    if f"] {code} (" not in r.stdout:
        return []
    block = r.stdout.split(f"] {code} (", 1)[1].split("\n[", 1)[0]
    return [ln[len("  run: "):] for ln in block.splitlines() if ln.startswith("  run: ")]


def arp_answers(ns: str, dev: str, src_ip: str, dst_ip: str, window: float = 0.5) -> set[str]:
    """Every MAC that answers one broadcast ARP request from ``dev`` within ``window``."""
    mine = bytes.fromhex(mac_of(ns, dev).replace(":", ""))
    with in_netns(ns):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
    try:
        s.bind((dev, 0x0806))
        s.send(b"\xff" * 6 + mine + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mine
               + socket.inet_aton(src_ip) + bytes(6) + socket.inet_aton(dst_ip))
        got: set[str] = set()
        end = time.monotonic() + window
        while (left := end - time.monotonic()) > 0 and select.select([s], [], [], left)[0]:
            data = s.recv(2048)
            if len(data) >= 42 and data[20:22] == b"\x00\x02" and data[28:32] == socket.inet_aton(dst_ip):
                got.add(data[22:28].hex(":"))
        return got
    finally:
        s.close()


def _one_ping(ns: str, dst: str) -> bool:
    from ..netlab import ping

    return ping(ns, dst, count=1, timeout=1.0) == 1
