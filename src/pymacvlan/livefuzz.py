"""The live frame fuzzer: random and malformed frames into a running userspace datapath.

While two children keep a ping and a TCP connection going, a sender process throws frames at
the datapath from every side it has:

- **wire**: an AF_PACKET socket on the far end of the parent's veth (with and without a
  virtio_net_hdr in front: bad and odd GSO fields);
- **tap**: an AF_PACKET socket inside a TAP child's namespace (the child's stack transmits;
  also with vnet headers);
- **stream** / **dgram**: clients of two macvtap endpoints (QEMU's ``-netdev stream`` framing,
  one frame per datagram).

Frames: runts, giants, random bytes, VLAN in VLAN (802.1ad over 802.1Q), pause frames,
multicast and broadcast, the children's and the parent's MACs as sources and destinations.

Every frame sent is accounted for (a GSO frame the kernel segments in software becomes its
segments, which the receiving device counts): refused by the kernel at send (by errno), dropped by the
kernel on its way (the packet ring, the TAP's queue: their counters; a VLAN-tagged frame
shorter than its tag, which skb_vlan_untag() frees uncounted: the sender tallies those), or read by the
datapath, which counts each read frame as a drop with a reason or as one the engine decided
(a child's tx_packets / tx_dropped for what children send). :class:`Report` holds the ledger
and :meth:`Report.unaccounted` what does not add up (empty when everything does).

Run it with ``tools/live_fuzz.py`` (root; everything in throwaway ``pmv*`` namespaces).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .netlab import Lab, PacedStream, Pinger, sh

SOURCES = ("wire", "tap", "stream", "dgram")
SOL_PACKET, PACKET_VNET_HDR = 263, 15
MAC_A, MAC_B, MAC_F, MAC_M, MAC_D = (bytes.fromhex(f"02ff00000{x}") for x in ("00a", "00b", "00f", "01a", "01d"))
PAUSE_DST = bytes.fromhex("0180c2000001")


@dataclass
class FuzzConfig:
    frames: int = 1_000_000
    #: frames a second, all sources together (the datapath must keep a ping alive meanwhile)
    rate: int = 20_000
    seed: int | None = None
    #: share of the frames per source (wire, tap, stream, dgram)
    shares: tuple[float, float, float, float] = (0.4, 0.3, 0.15, 0.15)


@dataclass
class Report:
    config: FuzzConfig
    seed: int
    seconds: float
    sent: dict[str, dict[str, int]]          # source -> attempted, accepted, refused_<ERRNO>...
    kernel: dict[str, int]                   # drops on the way, by where
    datapath: dict[str, Any]                 # deltas of the datapath's counters that matter
    ledger: dict[str, dict[str, int]]        # source -> accepted vs accounted
    ping: dict[str, float] = field(default_factory=dict)
    stream: dict[str, Any] = field(default_factory=dict)
    datapath_alive: bool = True

    def unaccounted(self) -> dict[str, int]:
        """Per source: frames delivered towards the datapath that no counter explains, or a
        delivered count the frames sent cannot explain (should be {}). The kernel may deliver
        more frames than were sent only by segmenting GSO frames in software."""
        out = {}
        for src, v in self.ledger.items():
            extra = v["delivered"] - v["accepted"]
            if v["delivered"] != v["accounted"]:
                out[src] = v["delivered"] - v["accounted"]
            elif extra < 0 or (extra > 0 and not v.get("gso_accepted")):
                out[src] = extra
        return out

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "config"}
        d["config"] = self.config.__dict__
        d["unaccounted"] = self.unaccounted()
        return d


# -- frames -------------------------------------------------------------------------------------------
def _vnet_hdr(rng: random.Random) -> bytes:
    """A virtio_net_hdr, mostly plausible, often wrong: flags, gso_type (incl. unknown types
    and the ECN bit), hdr_len, gso_size, csum_start, csum_offset."""
    gso = rng.choice([0, 0, 0, 1, 3, 4, 5, 0x80 | 1, 0x80 | 4, 7, 0x7F])
    return struct.pack("<BBHHHH", rng.choice([0, 0, 1, 2, 3, 0xFF]), gso, rng.randrange(0, 200),
                       rng.choice([0, 1, 536, 1448, 9000, 65535]), rng.randrange(0, 120), rng.choice([6, 16, 0, 255]))


def make_frame(rng: random.Random, macs: list[bytes], mtu: int = 1500) -> bytes:
    """One random or malformed Ethernet frame."""
    kind = rng.random()
    if kind < 0.08:
        return os.urandom(rng.randrange(0, 14))  # runt
    dst = rng.choice(macs + [b"\xff" * 6, bytes.fromhex("01005e000001"), bytes.fromhex("333300000001"),
                             PAUSE_DST, os.urandom(6)])
    src = rng.choice(macs + [os.urandom(6), bytes.fromhex("01005e0000fb")])
    if kind < 0.14:
        return PAUSE_DST + src + b"\x88\x08" + struct.pack("!HH", 1, rng.randrange(65536)) + bytes(42)
    if kind < 0.24:  # VLAN in VLAN: 802.1ad outer, 802.1Q inner, then IPv4 or junk
        tags = struct.pack("!HHHH", 0x88A8, rng.randrange(4096), 0x8100, rng.randrange(4096))
        return (
            dst + src + tags + rng.choice([b"\x08\x00", b"\x08\x06", os.urandom(2)]) + os.urandom(rng.randrange(0, 200))
        )
    if kind < 0.32:
        n = rng.randrange(mtu + 19, 9001)  # giant
    else:
        n = rng.randrange(14, mtu + 15)
    etype = rng.choice([b"\x08\x00", b"\x08\x06", b"\x86\xdd", b"\x81\x00", b"\x88\xb5", os.urandom(2)])
    return (dst + src + etype + os.urandom(max(0, n - 14)))[:max(n, 14)]


# -- the sender (a process of its own: the datapath keeps its core and its GIL) ----------------------------------
def _sender(plan: list[str], seed: int, rate: int, env: dict, conn) -> None:
    from .netns import in_netns

    rng = random.Random(seed)
    stats: dict[str, Counter[str]] = {s: Counter() for s in SOURCES}

    def packet_socket(ns: str, ifname: str, vnet: bool) -> socket.socket:
        with in_netns(ns):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        if vnet:
            s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        s.bind((ifname, 0))
        return s

    wire, wire_v = packet_socket(env["W"], env["wire"], False), packet_socket(env["W"], env["wire"], True)
    tap, tap_v = packet_socket(env["F"], "eth0", False), packet_socket(env["F"], "eth0", True)
    stream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stream.connect(env["stream"])
    dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dgram.bind(env["dgram_client"])
    dgram.connect(env["dgram"])
    macs = [bytes.fromhex(m) for m in env["macs"]]
    t0 = time.monotonic()
    for i, src in enumerate(plan):
        frame = make_frame(rng, macs)
        st = stats[src]
        st["attempted"] += 1
        try:
            if src in ("wire", "tap"):
                plain, vnet = (wire, wire_v) if src == "wire" else (tap, tap_v)
                vnet_used = rng.random() < 0.25
                frame_gso = False
                if vnet_used:
                    hdr = _vnet_hdr(rng)
                    frame_gso = hdr[1] != 0
                    vnet.send(hdr + frame)
                else:
                    plain.send(frame)
                if vnet_used and frame_gso:
                    st["gso_accepted"] += 1
                if src == "wire" and len(frame) < 20 and frame[12:14] in (b"\x81\x00", b"\x88\xa8"):
                    # skb_vlan_untag() on the parent frees a frame too short for its tag before
                    # any packet socket sees it, and counts it nowhere: the sender knows them
                    st["freed_by_vlan_untag"] += 1
            elif src == "stream":
                stream.sendall(struct.pack(">I", len(frame)) + frame)
            else:
                dgram.send(frame)
            st["accepted"] += 1
        except OSError as e:
            st["refused_" + (os.strerror(e.errno) if e.errno else "?").replace(" ", "_")] += 1
            if src == "dgram" and e.errno == 11:
                time.sleep(0.001)  # the endpoint's queue is full: let the datapath drain it
        if i % 256 == 255:
            ahead = (i + 1) / rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
    conn.send({s: dict(c) for s, c in stats.items()})
    conn.close()


# -- the run ----------------------------------------------------------------------------------------------
def _link_stats(ns: str, ifname: str) -> dict:
    d = json.loads(sh("ip", "-n", ns, "-j", "-s", "link", "show", ifname).stdout)[0]["stats64"]
    return {"rx_dropped": d["rx"]["dropped"], "tx_dropped": d["tx"]["dropped"],
            "rx_packets": d["rx"]["packets"], "tx_packets": d["tx"]["packets"]}


def run(cfg: FuzzConfig, progress: Callable[[str], None] | None = None) -> Report:
    """Build the world, fuzz, take it all down; the :class:`Report`."""
    from .backends.userspace import Datapath, DatapathConfig, DgramEndpoint, ParentConfig, StreamEndpoint

    say = progress or (lambda _m: None)
    seed = cfg.seed if cfg.seed is not None else random.SystemRandom().randrange(1 << 32)
    lab = Lab()
    dp = None
    tmp = f"/tmp/{lab.tag}-fuzz"
    os.makedirs(tmp, exist_ok=True)
    try:
        P, W, A, B, F = (lab.ns(r) for r in ("P", "W", "A", "B", "F"))
        parent, wire = lab.ifname("p"), lab.ifname("w")
        lab.veth(parent, P, wire, W)
        sh("ip", "-n", W, "link", "set", wire, "mtu", "9000")  # giants reach the veth, which drops them
        # the Python path: every frame must reach the engine for the differential comparison
        dp = Datapath(DatapathConfig(ParentConfig(parent, P), children="tap", fastpath=False)).start()
        for role, ns, mac, ip in (("a", A, MAC_A, "10.77.0.1"), ("b", B, MAC_B, "10.77.0.2"), ("f", F, MAC_F, None)):
            dp.add_macvlan(role, "bridge", netns=ns, ifname="eth0", mac=mac)
            if ip:
                sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
        dp.add_macvtap("m", StreamEndpoint("m", f"{tmp}/m.sock"), "bridge", mac=MAC_M)
        dp.add_macvtap("d", DgramEndpoint("d", f"{tmp}/d.sock"), "bridge", mac=MAC_D)
        deadline = time.monotonic() + 5
        while not all(dp.call(lambda n=n: dp.engine.child(n).up) for n in "abf"):
            if time.monotonic() > deadline:
                raise RuntimeError("the children never came up")
            time.sleep(0.02)
        pmac = dp.call(lambda: dp.engine.lower.mac)
        env = {"W": W, "wire": wire, "F": F, "stream": f"{tmp}/m.sock", "dgram": f"{tmp}/d.sock",
               "dgram_client": f"{tmp}/d-client.sock",
               "macs": [m.hex() for m in (MAC_A, MAC_B, MAC_F, MAC_M, MAC_D, pmac)]}
        rng = random.Random(seed)
        plan = rng.choices(SOURCES, weights=cfg.shares, k=cfg.frames)
        pinger = Pinger(A, "10.77.0.2", interval=0.02).start()
        stream = PacedStream(B, "10.77.0.2", A, port=5401).start()
        time.sleep(0.3)
        before = _snapshot(dp, P, parent, W, wire, F)
        ctx = multiprocessing.get_context("fork")
        rx, tx = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_sender, args=(plan, seed, cfg.rate, env, tx), daemon=True)
        t0 = time.monotonic()
        proc.start()
        tx.close()
        sent = None
        while sent is None:
            if rx.poll(5):
                sent = rx.recv()
            elif not proc.is_alive():
                raise RuntimeError(f"the sender died (exit code {proc.exitcode})")
            else:
                st = dp.stats()
                say(f"{time.monotonic() - t0:5.0f} s: parent read {st['parent']['rx_frames']}, "
                    f"ping {pinger.answered}/{pinger.sent}")
        proc.join(10)
        seconds = time.monotonic() - t0
        time.sleep(1.0)  # let the datapath drain what is queued
        alive = dp._thread is not None and dp._thread.is_alive()
        after = _snapshot(dp, P, parent, W, wire, F)
        pinger.stop()
        stream.stop()
        return _report(cfg, seed, seconds, sent, before, after, pinger, stream, alive)
    finally:
        if dp is not None:
            dp.close()
        lab.close()
        for name in ("m.sock", "d.sock", "d-client.sock"):
            try:
                os.unlink(f"{tmp}/{name}")
            except FileNotFoundError:
                pass
        try:
            os.rmdir(tmp)
        except OSError:
            pass


def _snapshot(dp, P: str, parent: str, W: str, wire: str, F: str) -> dict:
    st = dp.stats()
    ch = st["children"]

    def tx(name: str) -> int:
        return ch[name]["tx"]["packets"] + ch[name]["tx"]["dropped"]

    return {"dp": dict(st["datapath"]), "engine": dict(st["engine_drops"]), "parent": dict(st["parent"]),
            "tx": {n: tx(n) for n in ch}, "ep": {n: ch[n]["endpoint"]["counters"] for n in ("m", "d")},
            "veth_w": _link_stats(W, wire), "veth_p": _link_stats(P, parent), "tap_f": _link_stats(F, "eth0"),
            "softnet": _softnet_drops()}


def _softnet_drops() -> int:
    """Frames the kernel dropped for a full per-CPU backlog (netdev_max_backlog), all CPUs."""
    with open("/proc/net/softnet_stat") as f:
        return sum(int(line.split()[1], 16) for line in f)


def _d(after: dict, before: dict, key: str) -> int:
    return after.get(key, 0) - before.get(key, 0)


def _report(cfg, seed, seconds, sent, b, a, pinger, stream, alive) -> Report:
    dp = {k: _d(a["dp"], b["dp"], k) for k in set(a["dp"]) | set(b["dp"]) if _d(a["dp"], b["dp"], k)}
    kernel = {"veth_xmit_drops": _d(a["veth_w"], b["veth_w"], "tx_dropped"),
              "parent_stack_rx_dropped": _d(a["veth_p"], b["veth_p"], "rx_dropped"),
              "backlog_drops": a["softnet"] - b["softnet"],
              "parent_ring_drops": _d(a["parent"], b["parent"], "kernel_drops"),
              "tap_queue_drops": _d(a["tap_f"], b["tap_f"], "tx_dropped")}
    ep = {n: {k: _d(a["ep"][n], b["ep"][n], k) for k in set(a["ep"][n]) | set(b["ep"][n])} for n in ("m", "d")}
    read_parent = _d(a["parent"], b["parent"], "rx_frames")
    ledger = {
        # frames that arrived on the parent (the veth counts each; a GSO frame the kernel had
        # to segment in software arrives as its segments): read by the datapath, dropped by
        # the ring, or freed by skb_vlan_untag() first
        "wire": {"accepted": sent["wire"].get("accepted", 0), "gso_accepted": sent["wire"].get("gso_accepted", 0),
                 "delivered": _d(a["veth_p"], b["veth_p"], "rx_packets"),
                 "accounted": read_parent + kernel["parent_ring_drops"] + sent["wire"].get("freed_by_vlan_untag", 0)},
        # frames child f's stack sent into its TAP (the TAP counts each it hands to its reader,
        # and each its full queue drops): read by the datapath as a runt, a bad vnet header,
        # or one transmit of child f (tx_packets or tx_dropped) per segment of a GSO multicast
        "tap": {"accepted": sent["tap"].get("accepted", 0), "gso_accepted": sent["tap"].get("gso_accepted", 0),
                "delivered": _d(a["tap_f"], b["tap_f"], "tx_packets") + kernel["tap_queue_drops"],
                "accounted": kernel["tap_queue_drops"] + a["tx"]["f"] - b["tx"]["f"]
                + dp.get("tx_runt", 0) + dp.get("tx_bad_vnet_hdr", 0) - dp.get("tx_gso_segments_added", 0)},
        "stream": {"accepted": sent["stream"].get("accepted", 0),
                   "accounted": ep["m"].get("tx_runt", 0) + ep["m"].get("tx_frames", 0)},
        "dgram": {"accepted": sent["dgram"].get("accepted", 0),
                  "accounted": ep["d"].get("tx_runt", 0) + ep["d"].get("tx_frames", 0)},
    }
    for src in ("stream", "dgram"):
        ledger[src]["delivered"] = ledger[src]["accepted"]
    # the endpoints' frames handed on are each one transmit of their child
    for n, src in (("m", "stream"), ("d", "dgram")):
        ledger[src]["handed_on"] = ep[n].get("tx_frames", 0)
        ledger[src]["transmits"] = a["tx"][n] - b["tx"][n]
    datapath = {
        "counters": dp,
        "engine_drops": {k: _d(a["engine"], b["engine"], k) for k in a["engine"] if _d(a["engine"], b["engine"], k)},
        "parent_read": read_parent,
        "endpoints": ep,
        "handler_errors": {k: v for k, v in dp.items() if k.startswith(("handler_error", "housekeeping_error"))},
    }
    return Report(cfg, seed, seconds, sent, kernel, datapath, ledger,
                  ping={"sent": pinger.sent, "answered": pinger.answered, "loss": round(pinger.loss, 5)},
                  stream={"sent": stream.sent, "received": stream.received, "max_gap_s": round(stream.max_gap, 3),
                          "error": stream.error},
                  datapath_alive=alive)
