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
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ..links import BACKENDS, DEFAULT_BACKEND
from ..links.base import TraceRequest
from ..model import KernelError, parse_mac
from ._report import error_line

ORDER = 32


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


# -- the request -------------------------------------------------------------------------------------
def _ethertype(text: str) -> int:
    from ..daemon.trace import ethertype_value

    return ethertype_value(text)


def trace_request(args) -> TraceRequest:
    """The command line as one :class:`TraceRequest`, checked before any backend is asked."""
    frame = dst = src = None
    if args.frame:
        try:
            frame = bytes.fromhex(args.frame.replace(":", "").replace(" ", ""))
        except ValueError:
            raise KernelError(
                "EINVAL", "--frame is not hex", "give the frame's bytes in hex, from the destination MAC on"
            ) from None
    try:
        dst = parse_mac(args.dst) if args.dst else None
        src = parse_mac(args.src) if args.src else None
        if args.mac:
            parse_mac(args.mac)
    except ValueError as e:
        raise KernelError("EINVAL", str(e)) from None
    if args.ethertype:
        _ethertype(args.ethertype)
    return TraceRequest(mac=args.mac, ethertype=args.ethertype, child=args.child, at=args.at, frame=frame,
                        dst=dst, src=src, parent=args.parent, wire=args.wire, verify=args.verify)


def _stream(events, args) -> bool:
    """Print events until --count frames went out or the source is done (True), or it ended
    early with a reason (an ``end`` item: the daemon stopped ...), said on stderr (False).
    Lines for the user (``info``, ``note``) go to stderr, so -j output stays clean."""
    n = 0
    for ev in events:
        if "event" not in ev and "trace" not in ev:
            if "end" in ev:
                print(f"pymacvlan trace: {ev['end']}", file=sys.stderr, flush=True)
                return False
            if "note" in ev:
                print(f"pymacvlan trace: {ev['note']}", file=sys.stderr, flush=True)
            else:  # on stderr, so -j output stays clean (a caller may wait for "tracing ...")
                print(ev.get("info", ""), file=sys.stderr, flush=True)
            continue
        _print(ev, args)
        n += 1
        if args.count and n >= args.count:
            return True
    return True


def _run(args) -> int:
    from ..links import DriverConfig, open_driver

    req = trace_request(args)
    driver = open_driver(DriverConfig(args.backend, args.netns, args.state, args.socket, args.scenario))
    if not driver.injects and (args.frame or args.dst):
        raise KernelError("EINVAL", f"on the {args.backend} backend trace watches real frames",
                          "drop --frame/--dst/--scenario and send traffic; or use --backend sim to inject one")
    events = driver.trace(req)
    try:
        return 0 if _stream(events, args) else 1
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()


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
            return _run(args)
    except KernelError as e:
        print(error_line("trace", e), file=sys.stderr)
        return 2 if e.errno_name == "EINVAL" else 1


def register(sub) -> None:
    t = sub.add_parser("trace", help="explain where frames go and why (live on kernel and userspace, injected on sim)",
                       description="Explain macvlan's decisions frame by frame: for every device that could "
                       "have had the frame, whether it did and which kernel rule decided.")
    t.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND,
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
