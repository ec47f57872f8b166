"""Time from CNI ADD to a bound lease: pymacvlan-dhcp next to the reference ``dhcp`` IPAM.

Both run under the reference ``macvlan`` main plugin against one dnsmasq on the wire, in one
interleaved run (the order alternates every round, so neither always goes first); the figure
is the median ADD time of each and their ratio (pymacvlan / reference: below 1.00x is faster).
Then ``--children`` (default 100) kernel macvlan children lease at once from one daemon: the
time until every one is bound, and the median per lease.

    sudo python3 bench/dhcp_bench.py --rounds 15 --children 100 [--json out.json]

Runs in namespaces of its own (``pmv*``), removed at the end; run it under the live lock on a
shared machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15, help="ADDs per plugin (default 15)")
    ap.add_argument("--children", type=int, default=100, help="children leasing at once (default 100; 0: skip)")
    ap.add_argument("--json", help="write the figures here too")
    a = ap.parse_args(argv)

    import secrets

    from pymacvlan.dhcp import client
    from tests.dhcp.conftest import Lab, _end, ip, ip_json, write_launchers

    tmp = Path(tempfile.mkdtemp(prefix="pmv-dhcp-bench-"))
    prefix = "pmv" + secrets.token_hex(3)
    lab = Lab(prefix=prefix, host=prefix + "h", wire=prefix + "w", tmp=tmp)
    write_launchers(tmp / "bin")
    out: dict = {"rounds": a.rounds}
    try:
        ip("netns", "add", lab.host)
        ip("netns", "add", lab.wire)
        ip("-n", lab.host, "link", "add", lab.master, "type", "veth", "peer", "name", "pmvW", "netns", lab.wire)
        ip("-n", lab.host, "link", "set", lab.master, "up")
        ip("-n", lab.wire, "link", "set", "pmvW", "up")
        ip("-n", lab.wire, "addr", "add", "10.77.0.1/24", "dev", "pmvW")
        lab.dnsmasq("10.77.0.10", "10.77.0.250")
        lab.start_daemon()
        ref_sock = lab.ref_dhcp_daemon()
        base = {"cniVersion": "1.0.0", "name": "pmvnet", "type": "macvlan", "master": lab.master, "mode": "bridge"}
        confs = {"pymacvlan-dhcp": dict(base, ipam={"type": "pymacvlan-dhcp", "socket": lab.socket}),
                 "reference dhcp": dict(base, ipam={"type": "dhcp", "daemonSocketPath": ref_sock})}
        times: dict[str, list[float]] = {k: [] for k in confs}
        for r in range(a.rounds):
            order = list(confs) if r % 2 == 0 else list(reversed(confs))
            for who in order:
                pod = lab.pod(f"b{r}{who[0]}")
                cid = f"bench-{r}-{who[0]}"
                t0 = time.perf_counter()
                rc, res, err = lab.cni("/usr/lib/cni/macvlan", "ADD", confs[who], pod, cid)
                dt = time.perf_counter() - t0
                if rc != 0:
                    raise SystemExit(f"{who}: ADD failed: {res} {err}")
                times[who].append(dt)
                lab.cni("/usr/lib/cni/macvlan", "DEL", confs[who], pod, cid)
                lab.drop_pod(pod)
            print(f"round {r + 1}/{a.rounds}: " + ", ".join(f"{k} {v[-1] * 1000:.0f} ms" for k, v in times.items()),
                  flush=True)
        med = {k: statistics.median(v) for k, v in times.items()}
        ratio = med["pymacvlan-dhcp"] / med["reference dhcp"]
        out["add_to_bound_ms"] = {k: round(v * 1000, 1) for k, v in med.items()}
        out["ratio"] = round(ratio, 2)
        print(f"\nADD to a bound lease, median of {a.rounds} (interleaved, same dnsmasq):")
        for k, v in med.items():
            print(f"  {k:16s} {v * 1000:7.0f} ms")
        print(f"  ratio pymacvlan/reference: {ratio:.2f}x")

        if a.children:
            pod = lab.pod("many")
            macs = []
            for i in range(a.children):
                ip("-n", lab.host, "link", "add", "link", lab.master, "name", f"pmvq{i}", "type", "macvlan")
                ip("-n", lab.host, "link", "set", f"pmvq{i}", "netns", pod)
                macs.append(ip_json("-n", pod, "link", "show", f"pmvq{i}")[0]["address"])

            def one(i: int) -> float:
                t = time.perf_counter()
                client.acquire(f"many/{i}", lab.master, macs[i], network="pmvnet", identity=f"ctr/many{i}/eth0",
                               timeout=120, socket=lab.socket)
                return time.perf_counter() - t

            t0 = time.perf_counter()
            with ThreadPoolExecutor(a.children) as ex:
                each = list(ex.map(one, range(a.children)))
            total = time.perf_counter() - t0
            with ThreadPoolExecutor(20) as ex:
                list(ex.map(lambda i: client.release(f"many/{i}", socket=lab.socket), range(a.children)))
            out["children"] = {"n": a.children, "all_bound_s": round(total, 2),
                               "median_lease_ms": round(statistics.median(each) * 1000, 1)}
            print(f"\n{a.children} children leasing at once from one daemon: all bound in {total:.2f} s, "
                  f"median {statistics.median(each) * 1000:.0f} ms per lease")
    finally:
        for p in reversed(lab.procs):
            _end(p)
        for ns in [*lab.namespaces, lab.host, lab.wire]:
            ip("netns", "del", ns, check=False)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
