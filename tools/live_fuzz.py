"""Live frame fuzzer: random and malformed frames into the userspace datapath from the wire,
a TAP child and two macvtap endpoint clients, while two children keep a ping and a TCP
connection going; prints the ledger (every frame accounted for) as JSON.

    sudo PYTHONPATH=src python3 tools/live_fuzz.py -n 1000000 --rate 20000 [--seed N] [--out FILE]

Exit status 0 when every frame is accounted for, the datapath never stopped, no handler
failed and ping loss stayed at or under 1%; 1 otherwise. See pymacvlan.livefuzz.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pymacvlan.livefuzz import FuzzConfig, run  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--frames", type=int, default=1_000_000)
    ap.add_argument("--rate", type=int, default=20_000, help="frames a second, all sources together")
    ap.add_argument("--seed", type=int, help="the frames' generator seed (default: random, printed)")
    ap.add_argument("--out", help="also write the report here (JSON)")
    args = ap.parse_args()
    rep = run(FuzzConfig(args.frames, args.rate, args.seed), progress=lambda m: print(m, file=sys.stderr, flush=True))
    d = rep.as_dict()
    text = json.dumps(d, indent=1, sort_keys=True)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    ok = (not d["unaccounted"] and rep.datapath_alive and not rep.datapath["handler_errors"]
          and rep.ping["loss"] <= 0.01 and rep.stream["error"] is None and rep.stream["sent"] == rep.stream["received"])
    print("live fuzz: " + ("OK" if ok else "FAILED"), file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
