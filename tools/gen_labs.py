"""Writes src/pymacvlan/labs/*.json (`pymacvlan lab`): the seed articles' experiments.

The `expect` keys are filled from the sim, then read by hand against the article and the
kernel's rules; tests/test_lab.py checks every lab on the kernel backend too.
"""
import json
import socket
import struct
import sys

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from pymacvlan.backends.sim import SimBackend  # noqa: E402 (after the sys.path line above)
from pymacvlan.scenario import load_scenario  # noqa: E402


def m(s):
    return bytes.fromhex(s.replace(":", ""))


def arp(op, smac, sip, tmac, tip, dst=None):
    dst = dst or ("ff:ff:ff:ff:ff:ff" if op == 1 else tmac)
    return (
        m(dst)
        + m(smac)
        + b"\x08\x06"
        + struct.pack("!HHBBH", 1, 0x0800, 6, 4, op)
        + m(smac)
        + socket.inet_aton(sip)
        + (m(tmac) if op == 2 else bytes(6))
        + socket.inet_aton(tip)
    ).hex()


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def icmp(smac, sip, dmac, dip, typ=8, seq=1):
    payload = b"pymacvlan lab"
    ic = struct.pack("!BBHHH", typ, 0, 0, 0x77, seq) + payload
    ic = ic[:2] + struct.pack("!H", csum(ic)) + ic[4:]
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(ic), 1, 0x4000, 64, 1, 0, socket.inet_aton(sip), socket.inet_aton(dip)
    )
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return (m(dmac) + m(smac) + b"\x08\x00" + ip + ic).hex()


P = "02:00:00:00:00:01"
ST = "02:00:00:00:00:ee"
A, B, C = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"
IP = {A: "192.168.9.2", B: "192.168.9.3", C: "192.168.9.4", ST: "192.168.9.100", P: "192.168.9.1"}


def kids(mode, names):
    st = []
    for n, mac in names:
        st.append({"do": "add", "name": n, "mode": mode, "mac": mac})
    for n, _ in names:
        st.append({"do": "set", "name": n, "up": True})
    return st

def inj(at, frame, comment):
    return {"comment": comment, "do": "inject", "at": at, "frame": frame}

labs = {}
labs["vepa-hairpin"] = {
    "name": "vepa-hairpin",
    "description": "VEPA through a hairpin switch (seed article 004, first experiment). VEPA children never talk to "
                   "each other inside the host: every frame goes out to the switch. A switch port with hairpin "
                   "(reflective relay) on sends it back, so two VEPA children on one parent reach each other, ARP "
                   "included; each frame crosses the wire twice.",
    "note": "Without the hairpin nothing comes back (run the lab vepa-plain). The article's VLAN sub-interfaces are "
            "left out: a VLAN parent changes only which frames reach this parent, not what macvlan does with them.",
    "parent": {"mac": P},
    "wire": "hairpin",
    "steps": kids("vepa", [("macvl1", A), ("macvl2", B)])
    + [
        inj(
            "child:macvl1",
            arp(1, A, IP[A], None, IP[B]),
            "macvl1 asks who has 192.168.9.3 (ARP request, broadcast): out to the switch, back through the hairpin, "
            "flooded to the children; the switch sees it once, the parent's stack gets a copy too",
        ),
        inj(
            "child:macvl2",
            arp(2, B, IP[B], A, IP[A]),
            "macvl2 answers (unicast to macvl1): it too goes to the switch and comes back",
        ),
        inj("child:macvl1", icmp(A, IP[A], B, IP[B]), "macvl1 pings macvl2: the echo request reaches macvl2 only"),
        inj("child:macvl2", icmp(B, IP[B], A, IP[A], typ=0), "and the echo reply comes back the same way"),
    ],
}
labs["vepa-plain"] = {
    "name": "vepa-plain",
    "description": "VEPA without a hairpin switch (the contrast to vepa-hairpin). The same frames as in "
                   "vepa-hairpin, but the far end of the wire does not send anything back, so VEPA children on one "
                   "parent cannot reach each other at all.",
    "note": "This is why VEPA needs an 802.1Qbg-capable (reflective relay) switch port; bridge mode does the same "
            "inside the host without one.",
    "parent": {"mac": P},
    "wire": "plain",
    "steps": kids("vepa", [("macvl1", A), ("macvl2", B)])
    + [
        inj(
            "child:macvl1",
            arp(1, A, IP[A], None, IP[B]),
            "macvl1 asks who has 192.168.9.3: the request leaves on the wire and never comes back",
        ),
        inj(
            "child:macvl1", icmp(A, IP[A], B, IP[B]), "even unicast to macvl2's MAC goes out to the wire, not to macvl2"
        ),
    ],
}
labs["private-hairpin"] = {
    "name": "private-hairpin",
    "description": "Private mode through a hairpin switch (seed article 004, second experiment). ping between two "
                   "private children fails, and it looks like isolation, but private mode only drops broadcasts that "
                   "come back from a sibling: with static neighbour entries (ip neigh add ... lladdr ... nud "
                   "permanent) unicast gets through the hairpin.",
    "note": "So private mode is not a security boundary when the switch reflects: anyone who knows a sibling's MAC "
            "can reach it. On a plain wire private children reach nothing but the LAN.",
    "parent": {"mac": P},
    "wire": "hairpin",
    "steps": kids("private", [("macvl1", A), ("macvl2", B), ("macvl3", C)])
    + [
        inj(
            "child:macvl1",
            arp(1, A, IP[A], None, IP[B]),
            "macvl1 asks who has 192.168.9.3 (broadcast): the switch reflects it, but a broadcast whose source is a "
            "private child reaches no sibling and not the parent's stack (only the sender gets its own frame back)",
        ),
        inj(
            "child:macvl1",
            icmp(A, IP[A], B, IP[B]),
            "with a static neighbour entry, macvl1 pings macvl2: the unicast comes back through the hairpin and "
            "reaches macvl2 (and only macvl2)",
        ),
        inj(
            "child:macvl2",
            icmp(B, IP[B], A, IP[A], typ=0),
            "macvl2 (with its own static entry) answers: the reply reaches macvl1",
        ),
        inj(
            "wire",
            arp(1, ST, IP[ST], None, IP[A]),
            "a station on the LAN asks for macvl1: broadcasts from outside reach every private child",
        ),
    ],
}
labs["bridge-lan"] = {
    "name": "bridge-lan",
    "description": "Bridge mode on the parent's LAN (seed article 004, third experiment). Two children with "
                   "addresses on the parent's own network. Between bridge children the parent acts as a switch "
                   "(unicast never leaves the host); their broadcasts also go out, so they share the LAN's broadcast "
                   "domain; the LAN reaches them directly; but the parent's own stack (the host) does not hear them.",
    "note": "The last step is the most common macvlan complaint: the host cannot reach its own containers. The usual "
            "fix is one more macvlan child for the host, with the host's address and routes moved to it (pymacvlan "
            "doctor explains it).",
    "parent": {"mac": P},
    "wire": "plain",
    "steps": kids("bridge", [("macvl4", A), ("macvl5", B)])
    + [
        inj(
            "child:macvl4",
            arp(1, A, IP[A], None, IP[B]),
            "macvl4 asks who has 192.168.9.3: macvl5 gets it inside the host, and it also goes out on the LAN",
        ),
        inj(
            "child:macvl4",
            icmp(A, IP[A], B, IP[B]),
            "macvl4 pings macvl5: delivered inside the host, nothing on the wire",
        ),
        inj("child:macvl4", icmp(A, IP[A], ST, IP[ST]), "macvl4 pings a LAN host: out on the wire only"),
        inj(
            "wire",
            arp(1, ST, IP[ST], None, IP[B]),
            "the LAN host asks who has 192.168.9.3: every child and the parent's stack get the broadcast",
        ),
        inj("wire", icmp(ST, IP[ST], B, IP[B]), "the LAN host pings macvl5: straight to macvl5"),
        inj(
            "child:macvl4",
            icmp(A, IP[A], P, IP[P]),
            "macvl4 pings the host itself (the parent's MAC): the frame leaves on the wire and never reaches the "
            "parent's stack",
        ),
    ],
}

for name, sc in labs.items():
    out = SimBackend().run(load_scenario(sc))
    for st, res in zip(sc["steps"], out["results"], strict=False):
        if st["do"] == "inject":
            obs = res["observed"]
            st["expect"] = {"observed": obs}
    path = ROOT / "src/pymacvlan/labs" / f"{name}.json"
    lines = ["{"]
    keys = [k for k in sc if k != "steps"]
    for k in keys:
        lines.append(f"  {json.dumps(k)}: {json.dumps(sc[k])},")
    lines.append('  "steps": [')
    lines.append(",\n".join("    " + json.dumps(s) for s in sc["steps"]))
    lines.append("  ]\n}")
    open(path, "w").write("\n".join(lines) + "\n")
    print(path)
