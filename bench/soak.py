"""Soak: the daemon under mixed traffic and churn for N minutes; its RSS and open fds must stay
flat and nothing may be left behind after it stops.

- the daemon runs as in production (`pymacvlan daemon --shield`, a subprocess) over a veth parent;
- traffic: a ping (every 20 ms) and a paced TCP stream between two bridge children, for the whole run;
- churn: children added and deleted several times a second (macvlan TAPs in namespaces of a
  pool, and macvtap endpoints), the parent's carrier flapped (its veth peer down/up) every few
  seconds, and now and then a child's namespace deleted under it (the daemon must notice);
- sampled every few seconds: the daemon's RSS and open fds (which follow the number of
  children); growth is measured between two quiet points with only the two traffic children
  left (churn paused, its children deleted): the end of the warm-up (a fifth of the run) and
  the end. It must stay at or under 5%;
- after `pymacvlan daemon stop --remove`: no TAP in any namespace, no membership on the parent
  (promiscuity 0, no extra unicast/multicast addresses), no tc filter, and the daemon gone
  (so its eBPF map and program, held only by its fds, are freed).

    sudo PYTHONPATH=src python3 bench/soak.py --minutes 10 [--out bench/soak.json]

Exit status 0 when every check holds. Everything lives in throwaway pmv* namespaces.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pymacvlan.daemon.client import Client  # noqa: E402
from pymacvlan.model import KernelError, LinkChange, LinkRequest, Mode  # noqa: E402
from pymacvlan.netlab import Lab, PacedStream, Pinger, sh  # noqa: E402


def _proc(pid: int) -> tuple[int, int]:
    """(RSS in kB, open fds) of a process."""
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def _growth(quiet: list[dict], key: str) -> float:
    """Relative growth of ``key`` from the first quiet point (after the warm-up) to the last."""
    return (quiet[-1][key] - quiet[0][key]) / quiet[0][key]


def soak(minutes: float, rate: float = 8.0, sample_every: float = 5.0, log=print) -> dict:
    seconds = minutes * 60
    lab = Lab()
    tmp = tempfile.mkdtemp(prefix="pmvsoak")
    proc = None
    try:
        P, W, A, B = (lab.ns(r) for r in ("P", "W", "A", "B"))
        parent, wire = lab.ifname("p"), lab.ifname("w")
        lab.veth(parent, P, wire, W)
        sock = f"{tmp}/control.sock"
        filters_before = _parent_filters(P, parent)
        proc = subprocess.Popen([sys.executable, "-m", "pymacvlan.cli.main", "daemon", "--shield", "--socket", sock,
                                 "--state", f"{tmp}/state.json", "--netns", P],
                                stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/daemon.log", "ab"))
        cl = Client(sock, timeout=30)
        deadline = time.monotonic() + 20
        while True:
            try:
                cl.hello()
                break
            except KernelError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the daemon did not come up: " + Path(f"{tmp}/daemon.log").read_text()) from None
                time.sleep(0.05)
        for ns, ip in ((A, "10.76.0.1"), (B, "10.76.0.2")):
            cl.link_add(LinkRequest(parent, "eth0", mode=Mode.BRIDGE, netns=ns))
            cl.link_set("eth0", LinkChange(up=True), ns)
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        pinger = Pinger(A, "10.76.0.2", interval=0.02).start()
        stream = PacedStream(B, "10.76.0.2", A, port=5501).start()
        pool = [lab.ns(f"c{i}") for i in range(6)]
        live: dict[str, str | None] = {}  # child name -> its namespace (None: a macvtap)
        rng = random.Random(0)
        counts = {"added": 0, "deleted": 0, "ns_deleted": 0, "carrier_flaps": 0, "refused": 0}
        samples: list[dict] = []
        quiet: list[dict] = []

        def quiesce(label: str) -> None:
            """Churn's children deleted, the daemon given time to settle: a comparable point."""
            for name, ns in list(live.items()):
                try:
                    cl.link_del("eth0" if ns else name, ns)
                except KernelError:
                    pass  # its namespace went meanwhile: the daemon forgot it already
                live.pop(name)
                counts["deleted"] += 1
            time.sleep(3.0)
            rss, fds = _proc(proc.pid)
            quiet.append({"at": label, "t": round(time.monotonic() - t0, 1), "rss_kb": rss, "fds": fds})
            log(f"quiet point ({label}): rss {rss} kB, fds {fds}")

        t0 = time.monotonic()
        warm_at = t0 + seconds / 5
        next_sample = next_flap = next_nsdel = t0
        n = 0
        while (now := time.monotonic()) < t0 + seconds:
            if proc.poll() is not None:
                raise RuntimeError("the daemon died: " + Path(f"{tmp}/daemon.log").read_text()[-2000:])
            if warm_at and now >= warm_at:
                quiesce("after warm-up")
                warm_at = 0.0
                continue
            if now >= next_sample:
                rss, fds = _proc(proc.pid)
                samples.append({"t": round(now - t0, 1), "rss_kb": rss, "fds": fds, "children": len(live) + 2,
                                "ping_loss": round(pinger.loss, 4)})
                log(f"{now - t0:6.0f} s  rss {rss} kB  fds {fds}  children {len(live) + 2}  "
                    f"churn {counts}  ping {pinger.answered}/{pinger.sent}")
                next_sample = now + sample_every
            if now >= next_flap:  # the parent loses and regains its carrier
                sh("ip", "-n", W, "link", "set", wire, "down")
                time.sleep(0.05)
                sh("ip", "-n", W, "link", "set", wire, "up")
                counts["carrier_flaps"] += 1
                next_flap = now + 3.0
            if now >= next_nsdel and any(ns for ns in live.values()):  # a namespace deleted under its child
                name = rng.choice([k for k, ns in live.items() if ns])
                ns = live.pop(name)
                lab.drop(ns)
                pool[pool.index(ns)] = lab.ns(f"c{pool.index(ns)}x{counts['ns_deleted']}"[-6:])
                counts["ns_deleted"] += 1
                next_nsdel = now + 7.0
            free = [ns for ns in pool if ns not in live.values()]
            try:
                if live and (rng.random() < 0.5 or (not free and len(live) > 8)):
                    name = rng.choice(list(live))
                    cl.link_del("eth0" if live[name] else name, live[name])
                    live.pop(name)
                    counts["deleted"] += 1
                elif free and rng.random() < 0.75:
                    ns = rng.choice(free)
                    cl.link_add(LinkRequest(parent, "eth0", mode=rng.choice([Mode.BRIDGE, Mode.VEPA, Mode.PRIVATE]),
                                            netns=ns))
                    cl.link_set("eth0", LinkChange(up=True), ns)
                    live[f"{ns}/eth0"] = ns
                    counts["added"] += 1
                else:
                    n += 1
                    name = f"t{n}"
                    cl.link_add(LinkRequest(parent, name, kind="macvtap", mode=Mode.BRIDGE))
                    live[name] = None
                    counts["added"] += 1
            except KernelError as e:
                counts["refused"] += 1
                if counts["refused"] < 20:
                    log(f"refused: {e}")
                # a child whose namespace was just deleted is forgotten by the daemon on its own
                live = {k: v for k, v in live.items() if v is None or v in pool}
            time.sleep(1.0 / rate)
        quiesce("end")
        pinger.stop()
        stream.stop()
        result = {
            "minutes": minutes, "churn": counts, "samples": samples, "quiet": quiet,
            "rss_growth": round(_growth(quiet, "rss_kb"), 4), "fds_growth": round(_growth(quiet, "fds"), 4),
            "ping": {"sent": pinger.sent, "answered": pinger.answered, "loss": round(pinger.loss, 4)},
            "stream": {"sent": stream.sent, "received": stream.received, "max_gap_s": round(stream.max_gap, 3),
                       "error": stream.error},
        }
        stats = cl.stats()
        result["daemon_counters"] = stats["daemon"]
        r = subprocess.run([sys.executable, "-m", "pymacvlan.cli.main", "daemon", "stop", "--remove", "--socket", sock],
                           capture_output=True, text=True, timeout=60)
        result["stop"] = r.returncode
        proc.wait(30)
        proc = None
        result["left_behind"] = _left_behind(lab, P, parent, W, wire, filters_before)
        return result
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        lab.close()
        subprocess.run(["rm", "-rf", tmp], check=False)


def _parent_filters(P: str, parent: str) -> set[str]:
    """The parent's multicast and unicast address lists (what memberships add) and tc filters."""
    lines = sh("ip", "-n", P, "maddr", "show", "dev", parent).stdout.splitlines()[1:]
    lines += sh("bridge", "-n", P, "fdb", "show", "dev", parent, check=False).stdout.splitlines()
    lines += [
        "tc " + x
        for x in sh("tc", "-n", P, "filter", "show", "dev", parent, "ingress", check=False).stdout.splitlines()
    ]
    return {x.strip() for x in lines if x.strip()}


def _left_behind(lab: Lab, P: str, parent: str, W: str, wire: str, filters_before: set[str]) -> list[str]:
    """Anything of the daemon's still there: a device in any namespace but the veth pair (the
    children's TAPs are the only other devices), memberships or tc filters on the parent."""
    out = []
    for ns in lab.namespaces:
        allowed = {"lo", parent if ns == P else wire if ns == W else "lo"}
        out += [f"{ns}: {link['ifname']}" for link in json.loads(sh("ip", "-n", ns, "-j", "link", "show").stdout)
                if link["ifname"] not in allowed]
    d = json.loads(sh("ip", "-n", P, "-j", "-d", "link", "show", parent).stdout)[0]
    if d.get("promiscuity", 0) or d.get("allmulti", 0):
        out.append(f"{parent}: promiscuity {d.get('promiscuity')} allmulti {d.get('allmulti')}")
    out += [f"{parent}: {x}" for x in sorted(_parent_filters(P, parent) - filters_before)]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=8.0, help="churn operations a second (at most)")
    ap.add_argument("--out", help="write the result here (JSON)")
    args = ap.parse_args()
    res = soak(args.minutes, args.rate, log=lambda m: print(m, file=sys.stderr, flush=True))
    text = json.dumps(res, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(json.dumps({k: v for k, v in res.items() if k != "samples"}, indent=1))
    ok = (res["rss_growth"] <= 0.05 and res["fds_growth"] <= 0.05 and not res["left_behind"] and res["stop"] == 0
          and res["stream"]["error"] is None)
    print("soak: " + ("OK" if ok else "FAILED"), file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
