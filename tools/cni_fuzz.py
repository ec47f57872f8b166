"""Fuzz pymacvlan-cni's entry point with hostile configs and environments (issue 19, item 3).

Every generated (command, environment, stdin) goes through :func:`pymacvlan.cni.skel.run`
in-process (the console script's code minus reading stdin), inside a pmv "host" namespace this
tool makes (with a master veth ``pmvM``) and with pod namespaces of its own, so a config that
happens to be valid really makes a child. After each one:

- exit status 0 or 1, nothing that looks like a traceback on stderr;
- status 1: stdout is the spec's error object (integer ``code``, string ``msg``); a stdin
  that is not a JSON object is code 6 (or an environment error, 4, which skel checks first);
- nothing left behind: the host's and pods' links as before, no IPAM reservation, no
  attachment record, and the canary IPAM "plugin" (a path in ``ipam.type``) never ran.

A successful ADD is followed by its DEL, which must succeed. Run as root::

    PYTHONPATH=src python3 tools/cni_fuzz.py --examples 100000
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter

COMMANDS = ["ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION", "", "BOGUS"]
KEYS = ["cniVersion", "name", "type", "master", "mode", "mtu", "mac", "linkInContainer", "bcqueuelen", "ipam",
        "dns", "runtimeConfig", "macaddr", "nodst", "nopromisc", "bclim", "backend", "socket", "hostAccess",
        "stableMac", "stateDir", "prevResult", "cni.dev/valid-attachments", "args"]


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


class World:
    """The host namespace (entered by this thread for the whole run) and the pods."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.host, self.wire = f"pmv{tag}fh", f"pmv{tag}fw"
        self.pods = [f"pmv{tag}f{i}" for i in range(2)]
        self.tmp = tempfile.mkdtemp(prefix="pmv-cnifuzz-")
        for ns in (self.host, self.wire, *self.pods):
            _sh("ip", "netns", "add", ns)
        _sh("ip", "-n", self.host, "link", "add", "pmvM", "type", "veth", "peer", "name", "pmvW", "netns", self.wire)
        _sh("ip", "-n", self.host, "link", "set", "pmvM", "up")
        self.bin = os.path.join(self.tmp, "bin")
        os.makedirs(self.bin)
        for p in ("host-local", "static"):
            if os.path.exists(f"/usr/lib/cni/{p}"):
                os.symlink(f"/usr/lib/cni/{p}", os.path.join(self.bin, p))
        self.canary_hit = os.path.join(self.tmp, "CANARY-RAN")
        self.canary = os.path.join(self.tmp, "canary")
        with open(self.canary, "w") as f:
            f.write(f"#!/bin/sh\ntouch {self.canary_hit}\n")
        os.chmod(self.canary, 0o755)
        self.state = os.path.join(self.tmp, "state")
        self.data = os.path.join(self.tmp, "ipam")

    def links(self) -> dict[str, list[str]]:
        from pyroute2 import IPRoute

        from pymacvlan.backends.userspace._sys import in_netns

        out = {}
        for ns in (self.host, *self.pods):
            with in_netns(ns):
                ipr = IPRoute()
            try:
                out[ns] = sorted(m.get_attr("IFLA_IFNAME") for m in ipr.get_links())
            finally:
                ipr.close()
        return out

    def files(self) -> list[str]:
        found = []
        for d in (self.state, self.data):
            for root, _dirs, names in os.walk(d):
                found += [os.path.join(root, n) for n in names if not n.endswith(".lock") and n != "last_reserved_ip.0"]
        return found

    def close(self) -> None:
        for ns in (self.host, self.wire, *self.pods):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(self.tmp, ignore_errors=True)


def strategies(w: World):
    from hypothesis import strategies as st

    text = st.text(max_size=20)
    scalar = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=False), text)
    anyjson = st.recursive(scalar, lambda c: st.one_of(st.lists(c, max_size=3),
                                                      st.dictionaries(text, c, max_size=3)), max_leaves=8)
    ipam_type = st.sampled_from(["host-local", "static", "", "nope", w.canary, "../" + os.path.basename(w.tmp)
                                 + "/canary", "..", ".", "host local", "host-local\0x", "/bin/true"]) | text
    ipam = st.one_of(anyjson, st.fixed_dictionaries(
        {"type": ipam_type},
        optional={"subnet": st.sampled_from(["10.77.0.0/24", "10.77.0.0/33", "x", ""]) | anyjson,
                  "dataDir": st.just(w.data), "addresses": anyjson}))
    values = {
        "cniVersion": st.sampled_from(["1.1.0", "1.0.0", "0.4.0", "0.3.1", "0.1.0", "", "2.0.0", "1.1"]) | anyjson,
        "name": st.sampled_from(["net", "n-1", "", "a/b", "../x"]) | anyjson,
        "type": st.just("pymacvlan-cni") | anyjson,
        "master": st.sampled_from(["pmvM", "eth0", "", "lo", "pmvW", "a" * 20]) | anyjson,
        "mode": st.sampled_from(["bridge", "private", "vepa", "passthru", "source", "", "x"]) | anyjson,
        "ipam": ipam,
        "stateDir": st.just(w.state) | anyjson,
        "backend": st.sampled_from(["kernel", "userspace", "x"]) | anyjson,
        "socket": st.just(os.path.join(w.tmp, "nosock")) | anyjson,
    }
    conf = st.fixed_dictionaries(
        {"stateDir": st.just(w.state)},
        optional={k: values.get(k, anyjson) for k in KEYS if k != "stateDir"})
    plausible = st.fixed_dictionaries(
        {"cniVersion": st.sampled_from(["1.0.0", "1.1.0", "0.4.0"]), "name": st.just("net"),
         "type": st.just("pymacvlan-cni"), "master": st.just("pmvM"), "stateDir": st.just(w.state)},
        optional={"mode": st.sampled_from(["bridge", "private", "vepa", "passthru", "source"]),
                  "ipam": st.fixed_dictionaries({"type": st.sampled_from(["host-local", w.canary, "../canary"]),
                                                 "subnet": st.just("10.77.0.0/24"),
                                                 "dataDir": st.just(w.data)}),
                  "mtu": st.integers(-1, 70000),
                  "mac": st.sampled_from(["02:00:00:00:00:05", "x", "01:00:00:00:00:01"]),
                  "hostAccess": st.booleans(), "stableMac": st.booleans(), "nodst": st.booleans(),
                  "cni.dev/valid-attachments": anyjson, "prevResult": anyjson})
    stdin = st.one_of(
        plausible.map(lambda c: json.dumps(c).encode()),
        plausible.map(lambda c: json.dumps(c).encode()),
        conf.map(lambda c: json.dumps(c).encode()),
        st.binary(max_size=64),
        st.integers(1, 200_000).map(lambda n: b"[" * n + b"]" * n),
        st.integers(1, 50_000).map(lambda n: b'{"name":"net","x":' + b"[" * n + b"]" * n + b"}"),
        st.sampled_from([b"", b"null", b"[]", b"\xff\xfe", b'{"name":"net"}' + b" " * (1 << 20)]),
        anyjson.map(lambda v: json.dumps(v).encode()),
    )
    netns = st.sampled_from([f"/run/netns/{p}" for p in w.pods]) | st.sampled_from([
        "", "/nonexistent", "/etc/passwd", "/proc/self/ns/uts", w.tmp, "/proc/1/ns/net", "relative"]) | text
    env = st.fixed_dictionaries({
        "CNI_COMMAND": st.sampled_from(COMMANDS[:5]) | st.sampled_from(COMMANDS) | text,
        "CNI_CONTAINERID": st.sampled_from(["ctr1", "ctr2"]) | st.sampled_from(["", "a/b", "../../x"]) | text,
        "CNI_NETNS": netns,
        "CNI_IFNAME": st.sampled_from(["eth0", "net1"]) | st.sampled_from(["", "a" * 16, "a/b", "..", "pmvM"]) | text,
        "CNI_PATH": st.sampled_from([w.bin, "", "/nonexistent", f"{w.bin}:{w.tmp}"]),
    }, optional={"CNI_ARGS": st.sampled_from(["", "IgnoreUnknown=1", "MAC=02:00:00:00:00:01", "x"]) | text})
    return env, stdin


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    from hypothesis import HealthCheck, given, seed, settings

    from pymacvlan.backends.userspace._sys import in_netns
    from pymacvlan.cni import skel

    w = World()
    counts: Counter[str] = Counter()
    t0 = time.monotonic()
    try:
        with in_netns(w.host):
            base_links = w.links()
            env_st, stdin_st = strategies(w)

            @settings(max_examples=args.examples, deadline=None, database=None, derandomize=args.seed is None,
                      suppress_health_check=list(HealthCheck))
            @given(env=env_st, stdin=stdin_st)
            def one(env: dict, stdin: bytes) -> None:
                env = {k: v for k, v in env.items() if "\0" not in v}
                out, err = io.StringIO(), io.StringIO()
                rc = skel.run(env, stdin, out, err)
                cmd = env.get("CNI_COMMAND", "")
                counts[f"{cmd if cmd in COMMANDS else 'other'} rc={rc}"] += 1
                assert rc in (0, 1), rc
                assert "Traceback" not in err.getvalue() and "Traceback" not in out.getvalue()
                if rc == 1:
                    obj = json.loads(out.getvalue())
                    assert isinstance(obj, dict) and isinstance(obj.get("code"), int)
                    assert isinstance(obj.get("msg"), str)
                    try:
                        parsed = json.loads(stdin)
                    except (ValueError, RecursionError):
                        parsed = None
                    if cmd in ("ADD", "DEL", "CHECK", "STATUS", "GC") and not isinstance(parsed, dict):
                        assert obj["code"] in (4, 6), (obj, stdin[:80])
                    counts[f"code {obj['code']}"] += 1
                if rc == 0 and cmd == "ADD":
                    counts["ADD succeeded"] += 1
                    out2, err2 = io.StringIO(), io.StringIO()
                    assert skel.run(dict(env, CNI_COMMAND="DEL"), stdin, out2, err2) == 0, out2.getvalue()
                assert not os.path.exists(w.canary_hit), "a path in ipam.type was executed"
                if cmd in ("ADD", "DEL", "GC"):
                    assert w.links() == base_links, (w.links(), env, stdin[:200])
                    assert w.files() == [], w.files()

            if args.seed is not None:
                one = seed(args.seed)(one)
            one()
    finally:
        w.close()
    n = sum(v for k, v in counts.items() if " rc=" in k)
    print(f"cni fuzz: {n} examples in {time.monotonic() - t0:.0f} s, no traceback, always the spec's JSON, "
          "nothing left behind")
    for k, v in sorted(counts.items()):
        print(f"  {k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
