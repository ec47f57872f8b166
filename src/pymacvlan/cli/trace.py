"""`pymacvlan trace`: why a frame went where it went.

* ``--backend userspace``: live, from the running daemon: every frame matching the filter
  (``--mac``, ``--ethertype``, ``--child``) with, for each device that could have had it,
  whether it did and the kernel rule that decided (the engine's :class:`Trace`).
* ``--backend sim``: one injected frame (``--frame HEX`` or ``--dst/--src/--ethertype``)
  against the sim links of `pymacvlan link --backend sim` (or a scenario file's setup,
  ``--scenario``), explained the same way. Nothing is changed by it.
* ``--backend kernel``: live, the host's own macvlan: the engine mirrors the parents'
  children from netlink and explains what packet sockets see arrive and leave
  (:mod:`pymacvlan.backends.kernel.livetrace`); ``--verify`` checks it against who really
  received each frame. Read-only.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ..model import KernelError, parse_mac
from ._report import error_line

ORDER = 32
STATION_MAC = "02:00:00:00:00:ee"


# -- output ------------------------------------------------------------------------------------
def format_event(ev: dict) -> str:
    """One explained frame as text: a header, the journey, then device by device."""
    from ..dissect import summary

    src = ev.get("from", "?")
    et_text, what = summary(bytes.fromhex(ev["frame"])) if ev.get("frame") else (f"ethertype {ev['ethertype']}", None)
    head = (f"{ev['src']} > {ev['dst']}, {et_text}, length {ev['len']}: " + (f"{what}; " if what else "")
            + f"from {src}" + (f" on {ev['parent']}" if ev.get("parent") else ""))
    lines = [head]
    lines += [f"    {h}" for h in ev.get("path", [])]
    width = max([len(t["device"]) for t in ev.get("trace", [])] + [6])
    for t in ev.get("trace", []):
        got = "got it" if t["received"] else "no"
        if t["received"] > 1:
            got = f"got it x{t['received']}"
        rules = t["rules"]
        lines.append(f"  {t['device']:<{width}}  {got:<9} {rules[0]}")
        lines += [f"  {'':<{width}}  {'':<9} {r}" for r in rules[1:]]
    lines.append("  delivered to: " + (", ".join(ev.get("delivered", [])) or "nobody"))
    if ev.get("salted"):
        lines.append("  left to chance: " + ", ".join(ev["salted"]) + " (a group it did not join hit its "
                     "salted multicast filter: the kernel's answer is random by design)")
    if "observed" in ev:
        seen = ", ".join(ev["observed"]) or "nobody"
        lines.append(f"  observed:     {seen} " + ("(agrees; @parent is not observed)" if ev["agrees"] else
                                                  "<<< DISAGREES WITH THE ENGINE >>>"))
    bad = ev.get("disagreement")
    if bad:
        lines.append("  !!! the kernel did not do what the engine says:")
        lines += [f"  !!! {d}" for diff in bad["differences"] for d in diff.splitlines()]
        lines.append("  !!! mirror state: " + json.dumps(bad["mirror"]))
        lines.append("  !!! as a scenario (pymacvlan replay --backend kernel FILE): " + json.dumps(bad["scenario"]))
    return "\n".join(lines)


def _print(ev: dict, args) -> None:
    as_json = args.json
    pcap = getattr(args, "pcap_writer", None)
    if pcap is not None:  # written (and flushed) before it is printed: whoever saw the line finds it in the file
        pcap.add(
            bytes.fromhex(ev["frame"]), ev.get("time") or time.time(), format_event(ev), ev.get("parent") or "trace"
        )
    print(json.dumps(ev) if as_json else format_event(ev) + "\n", flush=True)
    if as_json and ev.get("disagreement"):
        print(f"pymacvlan trace: DISAGREEMENT on a frame from {ev['from']} ({ev['src']} > {ev['dst']}): "
              f"engine {ev['delivered']}, kernel {ev['observed']}; the object carries the scenario",
              file=sys.stderr, flush=True)


# -- frames given on the command line --------------------------------------------------------------
def _ethertype(text: str) -> int:
    try:
        v = int(text, 16) if text.lower().startswith("0x") or len(text) == 4 else int(text)
    except ValueError:
        raise KernelError("EINVAL", f"{text!r} is not an ethertype", "give it in hex, like 0x0806 or 88b5") from None
    if not 0 <= v <= 0xFFFF:
        raise KernelError("EINVAL", f"ethertype {text} is out of range", "it is 16 bits")
    return v


def build_frame(args, default_src: bytes) -> bytes:
    """--frame HEX, or dst/src/ethertype (+ zero payload to the 60-byte minimum)."""
    if args.frame:
        try:
            frame = bytes.fromhex(args.frame.replace(":", "").replace(" ", ""))
        except ValueError:
            raise KernelError(
                "EINVAL", "--frame is not hex", "give the frame's bytes in hex, from the destination MAC on"
            ) from None
        if len(frame) < 14:
            raise KernelError("EINVAL", f"a {len(frame)}-byte frame has no Ethernet header", "at least 14 bytes")
        return frame
    if not args.dst:
        raise KernelError("EINVAL", "which frame?", "give --frame HEX or at least --dst MAC (and --src, --ethertype)")
    try:
        dst = parse_mac(args.dst)
        src = parse_mac(args.src) if args.src else default_src
    except ValueError as e:
        raise KernelError("EINVAL", str(e)) from None
    et = _ethertype(args.ethertype or "0x88b5")
    frame = dst + src + et.to_bytes(2, "big")
    return frame + bytes(max(0, 60 - len(frame)))


# -- sim --------------------------------------------------------------------------------------------
def _sim_engines(args) -> tuple[dict, str]:
    """Engines by parent name, and the wire: from a scenario's setup or the sim link state."""
    from ._sim import sim_engines

    engines, wire = sim_engines(args.scenario, args.state, setup_only=True)
    return engines, wire or args.wire


def _trace_sim(args) -> int:
    from ..backends.sim import Simulation, frame_event

    engines, wire = _sim_engines(args)
    if not engines:
        raise KernelError("ENODEV", "no sim links to trace through",
                          "add some first (pymacvlan link add ... --backend sim) or give --scenario FILE")
    if args.parent:
        if args.parent not in engines:
            raise KernelError("ENODEV", f'Cannot find device "{args.parent}"',
                              f"sim parents: {', '.join(engines)}")
        pname = args.parent
    elif (args.at or "wire") not in ("wire", "parent"):
        hits = [n for n, e in engines.items() if args.at in e.children]
        if not hits:
            raise KernelError("ENODEV", f'Cannot find device "{args.at}"',
                              "--at takes wire, parent or a child's name")
        pname = hits[0]
    elif len(engines) == 1:
        pname = next(iter(engines))
    else:
        raise KernelError("EINVAL", f"several sim parents ({', '.join(engines)})", "say which with --parent")
    engine = engines[pname]
    if args.child and args.child not in engine.children:  # a filter naming nothing filters nothing
        raise KernelError("ENODEV", f'Cannot find device "{args.child}"',
                          f"--child takes a child of {pname}: {', '.join(engine.children) or 'it has none'}")
    args.at = args.at or "wire"
    if args.at == "wire":
        default_src = parse_mac(STATION_MAC)
    elif args.at == "parent":
        default_src = engine.lower.mac
    else:
        default_src = engine.child(args.at).mac
    frame = build_frame(args, default_src)
    # the scenario runner's injection, on this engine (nothing is saved)
    sim = Simulation.__new__(Simulation)
    sim.engine, sim.hairpin, sim.trace = engine, wire == "hairpin", True
    at = args.at if args.at in ("wire", "parent") else f"child:{args.at}"
    res = sim.step({"do": "inject", "at": at, "frame": frame.hex()})
    if not res.get("ok"):
        raise KernelError(res["errno"], res["message"], res.get("advice", ""))
    ev = frame_event(pname, args.at, frame, res, wire)
    if args.child and not _concerns(_filter(args), ev):
        print(f"note: the frame does not concern {args.child} (it neither sent, got, nor was considered for it)",
              file=sys.stderr)
        return 0
    _print(ev, args)
    return 0


# -- userspace --------------------------------------------------------------------------------------
def _trace_userspace(args) -> int:
    from ..links.userspace import Driver

    _live_only(args)
    et = f"0x{_ethertype(args.ethertype):04x}" if args.ethertype else None
    if args.mac:
        try:
            parse_mac(args.mac)
        except ValueError as e:
            raise KernelError("EINVAL", str(e)) from None
    drv = Driver(args.socket)
    events = drv.trace(mac=args.mac, ethertype=et, child=args.child)
    try:
        if not args.json:
            what = ", ".join(f"{k} {v}" for k, v in (("mac", args.mac), ("ethertype", et), ("child", args.child)) if v)
            print(f"tracing {what or 'every frame'} (Ctrl-C to stop)", file=sys.stderr, flush=True)
        if not _stream(events, args):
            # the daemon closed the stream: it stopped (or restarted); a trace that says nothing
            # and exits 0 here reads as "no frames matched"
            print(f"pymacvlan trace: ECONNRESET: the daemon on {drv.client.path} stopped; the trace ends "
                  "(start it again and re-run the trace)", file=sys.stderr, flush=True)
            return 1
    finally:
        events.close()
    return 0


def _live_only(args) -> None:
    if args.frame or args.dst or args.scenario:
        raise KernelError("EINVAL", f"on the {args.backend} backend trace watches real frames",
                          "drop --frame/--dst/--scenario and send traffic; or use --backend sim to inject one")


def _stream(events, args, keep=lambda ev: True, before=lambda: None) -> bool:
    """Print live events until --count of them went out (True), or the source ends (False)."""
    n = 0
    for ev in events:
        before()
        if not keep(ev):
            continue
        _print(ev, args)
        n += 1
        if args.count and n >= args.count:
            return True
    return False


# -- kernel -----------------------------------------------------------------------------------------
def _trace_kernel(args) -> int:
    """The host's own macvlan: the engine's mirror of it explains each frame (read-only)."""
    from ..backends.kernel import unavailable_reason
    from ..backends.kernel.livetrace import KernelTracer

    _live_only(args)
    flt = _filter(args)
    if os.geteuid() != 0:
        raise KernelError("EPERM", unavailable_reason() or "tracing needs root", "run it as root")
    ns = args.netns or "/proc/self/ns/net"
    if args.netns and not os.path.exists(ns if ns.startswith("/") else f"/run/netns/{ns}"):
        raise KernelError("ENOENT", f"no network namespace named {args.netns!r}", "see `ip netns list`")
    tracer = KernelTracer(ns, [args.at] if args.at else None, args.wire, args.verify, accept=flt.pre)
    tracer.start()

    def notes() -> None:
        for note in tracer.notes:
            print(f"pymacvlan trace: mirror: {note}", file=sys.stderr, flush=True)
        tracer.notes.clear()

    try:
        parents = ", ".join(w.mirror.parent for w in tracer.watches)
        print(f"tracing {parents}" + (" (verifying)" if args.verify else "") + " (Ctrl-C to stop)",
              file=sys.stderr, flush=True)
        _stream(tracer.events(), args, lambda ev: _concerns(flt, ev), notes)
    finally:
        tracer.close()
    return 0


def _filter(args):
    from ..daemon.trace import TraceFilter

    return TraceFilter.from_request({"mac": args.mac, "ethertype": args.ethertype, "child": args.child})


def _concerns(flt, ev: dict) -> bool:
    """--child: frames the child sends, gets, or was considered for."""
    considered = {t["device"] for t in ev["trace"] if t["received"] or not t["rules"][0].startswith("not reached")}
    return flt.concerns(ev["from"], ev["delivered"], considered)


@contextmanager
def _pcap(args) -> Iterator[None]:
    """--pcap FILE: every printed frame also goes to a pcapng file, its explanation as the
    packet comment (Wireshark shows it; tshark -T fields -e frame.comment prints it)."""
    if not args.pcap:
        yield
        return
    from ..pcapng import PcapngWriter

    try:
        f = open(args.pcap, "wb")
    except OSError as e:
        name = errno.errorcode.get(e.errno or 0, "EIO")
        raise KernelError(name, f"cannot write {args.pcap}: {e.strerror}", "give a writable path to --pcap") from None
    with f:
        args.pcap_writer = PcapngWriter(f)
        yield


def _trace(args) -> int:
    try:
        with _pcap(args):
            if args.backend == "userspace":
                return _trace_userspace(args)
            if args.backend == "sim":
                return _trace_sim(args)
            return _trace_kernel(args)
    except KernelError as e:
        print(error_line("trace", e), file=sys.stderr)
        return 2 if e.errno_name == "EINVAL" else 1


def register(sub) -> None:
    t = sub.add_parser("trace", help="explain where frames go and why (live on kernel and userspace, injected on sim)",
                       description="Explain macvlan's decisions frame by frame: for every device that could "
                       "have had the frame, whether it did and which kernel rule decided.")
    t.add_argument("--backend", choices=["sim", "userspace", "kernel"], default="sim",
                   help="sim (default: an injected frame), userspace or kernel (live frames)")
    flt = t.add_argument_group("filter (kernel, userspace; --ethertype also builds the sim frame)")
    flt.add_argument("--mac", help="frames from or to this MAC")
    flt.add_argument("--ethertype", help="frames of this ethertype (hex: 0x0806), also behind a VLAN tag")
    flt.add_argument("--child", help="frames a child sends or is offered")
    flt.add_argument("--count", type=int, default=0, help="stop after N frames (default: until Ctrl-C)")
    flt.add_argument(
        "--socket", help="the daemon's control socket (default $PYMACVLAN_SOCKET or /run/pymacvlan/control.sock)"
    )
    live = t.add_argument_group("the host's own macvlan (kernel)")
    live.add_argument("-n", "--netns", help="the parent's namespace (default: this one)")
    live.add_argument("--verify", action="store_true",
                      help="also watch who really received each frame: adds observed and agrees")
    inj = t.add_argument_group("injected frame (sim)")
    inj.add_argument("--at", help="sim: where it enters: wire (default), parent or a child's name; "
                     "kernel: which parent (default: every parent with children)")
    inj.add_argument("--frame", help="the whole frame in hex (from the destination MAC on)")
    inj.add_argument("--dst", help="destination MAC")
    inj.add_argument("--src", help="source MAC (default: the sender's own)")
    inj.add_argument("--parent", help="which sim parent (when there are several)")
    inj.add_argument("--wire", choices=["plain", "hairpin"], default="plain",
                     help="what is on the other end of the parent (default plain; kernel too)")
    inj.add_argument("--scenario", help="take the setup (not the frames) from this scenario file instead")
    inj.add_argument("--state", help="the sim link state file (default as `link --backend sim`)")
    t.add_argument("-j", "--json", action="store_true", help="one JSON object per frame")
    t.add_argument("--pcap", metavar="FILE", help="also write the frames to a pcapng file, each with its "
                   "explanation as the packet comment (any backend)")
    t.set_defaults(func=_trace)
