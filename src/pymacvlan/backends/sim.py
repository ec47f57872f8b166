"""The sim backend: a deterministic in-process parent, wire, stations and children.

The wire is a veth whose far end is bare ("plain") or the only port of a Linux bridge
with hairpin on ("hairpin"), like the kernel backend's, so both backends can be diffed.
"""

from __future__ import annotations

from collections import deque

from ..engine import PARENT, WIRE, Engine, Trace
from ..engine.device import Lower, MacvlanDev
from ..model import KernelError, flag_names, frame_max, mac_str, parse_mac
from ..model.iproute import link_flags, operstate
from ..model.link import apply_change
from ..scenario.schema import load_scenario, step_change, step_request

SIM_KERNEL = {"6.18": "6.18 (modelled)", "net-next": "net-next 2026 (modelled, b52363f706e5)"}


def bridge_reflects(frame: bytes) -> bool:
    """Would a Linux bridge port with hairpin on send this frame back?

    Never 01:80:c2:00:00:01..0f (link-local, pause included; :00 is forwarded while STP is
    off, as on the kernel backend's bridge); never a frame whose source MAC is multicast or
    zero (br_handle_frame drops it)."""
    dst, src = frame[:6], frame[6:12]
    if dst[:5] == b"\x01\x80\xc2\x00\x00" and 0x01 <= dst[5] <= 0x0F:
        return False
    return not (src[0] & 1) and src != b"\x00" * 6


def frame_fits(frame: bytes, mtu: int) -> bool:
    """packet_snd()'s check: MTU + header, plus 4 when the frame carries an 802.1Q tag."""
    extra = 4 if frame[12:14] == b"\x81\x00" else 0
    return len(frame) <= mtu + 14 + extra


class SimBackend:
    name = "sim"
    explains = True  # its runs can carry the engine's trace of every frame

    def __init__(self, trace: bool = False) -> None:
        self.trace = trace

    def run(self, scenario) -> dict:
        sc = load_scenario(scenario)
        sim = Simulation(sc, trace=self.trace)
        return {"backend": "sim", "kernel": SIM_KERNEL[sc["kernel_rules"]],
                "results": [sim.step(s) for s in sc["steps"]]}


class Simulation:
    """Runs validated steps against one :class:`Engine`."""

    def __init__(self, sc: dict, trace: bool = False) -> None:
        p = sc["parent"]
        self.engine = Engine("parent", parse_mac(p["mac"]) if p["mac"] else None, p["mtu"],
                             seed=sc.get("seed", 0), unicast_filter=p.get("unicast_filter", False),
                             bridge_mc_to_bridge=sc.get("kernel_rules") == "net-next")
        self.hairpin = sc["wire"] == "hairpin"
        self.trace = trace

    # -- dispatch -------------------------------------------------------------------------------
    def step(self, st: dict) -> dict:
        try:
            handler = getattr(self, "_do_" + st["do"])
            return handler(st)
        except KernelError as e:
            return e.as_result()

    def _do_add(self, st: dict) -> dict:
        self.engine.newlink(step_request(st))
        return {"ok": True}

    def _do_set(self, st: dict) -> dict:
        """One `ip link set` request (:func:`apply_change`), then the macvtap reader."""
        e, name = self.engine, st["name"]
        e.child(name)
        apply_change(e, name, step_change(st))
        if "reader" in st:
            (e.attach_reader if st["reader"] else e.detach_reader)(name)
        return {"ok": True}

    def _do_join(self, st: dict) -> dict:
        self.engine.join(st["name"], parse_mac(st["group"]))
        return {"ok": True}

    def _do_leave(self, st: dict) -> dict:
        self.engine.leave(st["name"], parse_mac(st["group"]))
        return {"ok": True}

    def _do_parent(self, st: dict) -> dict:
        e = self.engine
        if "mac" in st:
            e.set_parent_mac(parse_mac(st["mac"]))
        if "mtu" in st:
            e.set_parent_mtu(st["mtu"])
        if "up" in st:
            e.set_parent_up(st["up"])
        if "carrier" in st:
            e.set_wire_carrier(st["carrier"])
        return {"ok": True}

    def _do_del(self, st: dict) -> dict:
        if st["name"] == "@parent":
            self.engine.delete_parent()
        else:
            self.engine.delete(st["name"])
        return {"ok": True}

    # -- frames ---------------------------------------------------------------------------------
    def _do_inject(self, st: dict) -> dict:
        e = self.engine
        frame = bytes.fromhex(st["frame"])
        at = st["at"]
        # a GSO super-frame (seen on a live host's packet sockets): exempt from the MTU checks
        gso = bool(st.get("gso"))
        tr = Trace() if self.trace else None
        obs = Observation(e)
        pending: deque[bytes] = deque()
        if at == "wire":
            lower = e.lower
            if lower.carrier and len(frame) > frame_max(lower.mtu) and not gso:
                # veth: the parent refuses it (is_skb_forwardable) and the sender hears so
                raise KernelError("ENOBUFS", f"{len(frame)} bytes exceed the parent's MTU {lower.mtu} + 18: "
                                  "dropped on arrival", "the station must send smaller frames")
            if tr is not None:
                tr.hop("frame arrives at the parent from the wire")
            self._arrive(frame, obs, pending, tr)
        elif at == "parent":
            lower = e.lower
            if lower.deleted:
                raise KernelError("ENODEV", "the parent was deleted")
            if not lower.up:
                raise KernelError("ENETDOWN", f"the parent {lower.name} is down", "bring it up first")
            if not frame_fits(frame, lower.mtu):
                raise KernelError("EMSGSIZE", f"{len(frame)} bytes exceed the parent's MTU {lower.mtu} + 14")
            if tr is not None:
                tr.hop("the parent's own stack transmits (macvlan never sees it: PACKET_LOOPBACK)")
            self._record(e.parent_xmit(frame), obs, pending, tr)
        else:
            vlan = e.child(at[6:])
            if not vlan.up:
                raise KernelError("ENETDOWN", f"{vlan.name} is down", f"bring it up first (link set {vlan.name} up)")
            if not gso and not frame_fits(frame, vlan.mtu):
                raise KernelError("EMSGSIZE", f"{len(frame)} bytes exceed {vlan.name}'s MTU {vlan.mtu} + 14")
            self._record(e.xmit(vlan, frame, tr, gso), obs, pending, tr)
        while True:
            while pending:
                f = pending.popleft()
                if tr is not None:
                    tr.hop("the hairpin switch reflects it back into the parent")
                self._record(e.receive(f, tr), obs, pending, tr)
            if not e.bc_pending:
                break
            self._record(e.process_bc_queue(tr), obs, pending, tr)
        result = {"ok": True, "observed": obs.as_dict()}
        if tr is not None:
            names = [WIRE, PARENT] + list(e.children)
            result["trace"] = tr.summary(names, "not reached: the frame never came its way")
            result["path"] = tr.path()
            if tr.salted:
                result["salted"] = sorted(tr.salted)
        return result

    def _arrive(self, frame: bytes, obs: Observation, pending: deque, tr) -> None:
        """A frame reaches the parent from the wire (veth: the parent must be up). Received
        here, not queued with the reflections, so the trace does not call it one."""
        lower = self.engine.lower
        if lower.deleted or not lower.carrier:
            if tr is not None:
                tr.note(PARENT, False, "never arrives: the parent is down or has no carrier")
            return
        self._record(self.engine.receive(frame, tr), obs, pending, tr)

    def _record(self, deliveries, obs: Observation, pending: deque, tr) -> None:
        for target, pkttype, frame in deliveries:
            if target is WIRE:
                obs.wire.append(frame)
                if self.hairpin and bridge_reflects(frame):
                    pending.append(frame)
                elif self.hairpin and tr is not None:
                    tr.hop(
                        "the bridge does not reflect this frame (link-local 01:80:c2:00:00:0x, or an invalid source "
                        "MAC)"
                    )
            elif isinstance(target, Lower):
                obs.parent.append((pkttype, frame))
            else:
                obs.children[target.name].append((pkttype, frame))

    # -- state -------------------------------------------------------------------------------------
    def _do_show(self, st: dict) -> dict:
        return {"ok": True, "state": state(self.engine)}


def frame_event(parent: str, origin: str, frame: bytes, res: dict, wire: str) -> dict:
    """One explained frame as `pymacvlan trace` prints it, from an inject step's result
    (with trace): who got it (``delivered``), the journey and each device's rules."""
    obs = res["observed"]
    delivered = sorted([n for n, v in obs["children"].items() if v] + ([PARENT] if obs["parent"] else [])
                       + ([WIRE] if obs["wire"] else []))
    ev = {"event": "frame", "parent": parent, "from": origin, "dst": frame[0:6].hex(":"),
          "src": frame[6:12].hex(":"), "ethertype": f"0x{int.from_bytes(frame[12:14], 'big'):04x}",
          "len": len(frame), "delivered": delivered, "path": res["path"], "trace": res["trace"],
          "wire": wire, "frame": frame.hex()}
    if res.get("salted"):
        ev["salted"] = res["salted"]
    return ev


class Observation:
    def __init__(self, engine: Engine) -> None:
        self.wire: list[bytes] = []
        self.parent: list = []
        self.children: dict[str, list] = {n: [] for n in engine.children}

    def as_dict(self) -> dict:
        def f(items):
            return sorted(({"pkttype": p.name, "hex": fr.hex()} for p, fr in items),
                          key=lambda d: (d["hex"], d["pkttype"]))
        return {"wire": sorted(({"hex": fr.hex()} for fr in self.wire), key=lambda d: d["hex"]),
                "parent": f(self.parent),
                "children": {n: f(v) for n, v in self.children.items()}}


def state(engine: Engine) -> dict:
    lower = engine.lower
    parent = None
    if not lower.deleted:
        parent = {"address": mac_str(lower.mac), "mtu": lower.mtu,
                  "operstate": operstate(lower.up, lower.carrier),
                  "flags": link_flags(lower.up, lower.carrier, lower.promisc_user, lower.allmulti_user),
                  "promiscuity": lower.promiscuity, "allmulti": lower.allmulti}
    return {"parent": parent, "children": {n: child_state(engine, v) for n, v in engine.children.items()}}


def child_state(engine: Engine, v: MacvlanDev) -> dict:
    """A replayed child's state: the engine's one view (macvlan_fill_info), flags as names."""
    from ..engine.fill_info import macvlan_fill_info

    fill = macvlan_fill_info(engine, v)
    info = {"mode": fill["mode"], "flags": flag_names(v.flags)}
    info.update({k: val for k, val in fill.items() if k not in ("mode", "nopromisc", "nodst")})
    return {"address": mac_str(v.mac), "mtu": v.mtu, "operstate": operstate(v.up, v.carrier),
            "flags": link_flags(v.up, v.carrier, v.promisc_user, v.allmulti_user),
            "promiscuity": v.promiscuity, "allmulti": v.allmulti,
            "linkinfo": {"info_kind": v.kind, "info_data": info},
            "stats64": v.stats.as_stats64()}
