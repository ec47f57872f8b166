"""`pymacvlan vm-args NAME` and `pymacvlan vm-exec NAME -- qemu-system-x86_64 ...`: a VM on a macvtap.

``vm-args`` prints the QEMU ``-netdev``/``-device`` arguments for the child (its MAC
included), as libvirt writes them (:func:`pymacvlan.vm.qemu.netdev_args`). ``vm-exec`` runs
QEMU with them; for a TAP fd (userspace ``endpoint tapfd``: received over SCM_RIGHTS from
the daemon's handover socket; kernel backend: ``/dev/tapN`` opened, no udev needed) it passes
the fd as ``fd=N``. Backend and namespace come from the global options, as for ``link``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import socket
import sys

from ..links import BACKENDS, DEFAULT_BACKEND
from ..model import KernelError
from .link import Globals, UsageError, make_driver, report

ORDER = 25


def attachment(g, name: str) -> tuple[str, dict]:
    """(MAC, endpoint) of macvtap ``name``: the daemon's endpoint, or the kernel's /dev/tapN."""
    links = make_driver(g).show(name, None)
    if not links:
        raise KernelError("ENODEV", f'Device "{name}" does not exist.')
    d = links[0]
    kind = (d.get("linkinfo") or {}).get("info_kind")
    if kind != "macvtap":
        raise KernelError("EOPNOTSUPP", f"{name} is a {kind or 'device'}, not a macvtap: a VM attaches to a macvtap",
                          "add one: pymacvlan link add link PARENT name NAME type macvtap mode bridge")
    ep = d.get("endpoint")
    if ep is None:  # the kernel's (and the sim's) macvtap: its character device
        ep = {"kind": "tap", "path": f"/dev/tap{d['ifindex']}", "ifindex": d["ifindex"]}
    return d["address"], ep


def _args(mac: str, ep: dict, args, fd: int | None) -> list[str]:
    from ..vm.qemu import netdev_args

    path = ep["path"]
    return netdev_args(ep["kind"], mac, path=path, fd=fd, reconnect=args.reconnect, netdev_id=args.id,
                       qemu_path=args.qemu_path or (path[:-5] + ".qemu.sock" if path.endswith(".sock") else None))


def _vm_args(args) -> int:
    try:
        g = _globals(args)
        mac, ep = attachment(g, args.name)
        fd = 3 if ep["kind"] in ("tapfd", "tap") else None
        argv = _args(mac, ep, args, fd)
        if args.libvirt:
            if fd is not None:
                raise KernelError("EOPNOTSUPP", f"{args.name}'s endpoint is a TAP fd: libvirt cannot be handed one "
                                  "through <qemu:commandline>",
                                  "libvirt makes a kernel macvtap itself: <interface type='direct'><source "
                                  "dev='PARENT' mode='bridge'/></interface>" if ep["kind"] == "tap" else
                                  "use endpoint stream or dgram for libvirt, or vm-exec for a TAP fd")
            print(libvirt_xml(argv))
            return 0
        print(shlex.join(argv))
        if ep["kind"] == "tapfd":
            print(f"# fd 3 is the TAP's: `pymacvlan{_glob(g)} vm-exec {args.name} -- qemu-system-x86_64 ...` "
                  f"receives it from {ep['path']} and passes it", file=sys.stderr)
        elif ep["kind"] == "tap":
            print(f"# fd 3 is {ep['path']} opened read-write (3<>{ep['path']}), or let "
                  f"`pymacvlan{_glob(g)} vm-exec {args.name} -- qemu-system-x86_64 ...` open it", file=sys.stderr)
        return 0
    except (UsageError, KernelError) as e:
        return report(e)


def libvirt_xml(argv: list[str]) -> str:
    """The same arguments as libvirt's ``<qemu:commandline>`` (the domain element needs
    ``xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'``)."""
    from xml.sax.saxutils import quoteattr

    return "\n".join(["<qemu:commandline>", *(f"  <qemu:arg value={quoteattr(a)}/>" for a in argv),
                      "</qemu:commandline>"])


def _glob(g) -> str:
    return (f" --backend {g.backend}" if g.backend != DEFAULT_BACKEND else "") + (f" -n {g.netns}" if g.netns else "")


def _vm_exec(args) -> int:
    qemu = list(args.qemu)
    if qemu and qemu[0] == "--":
        qemu = qemu[1:]
    try:
        if not qemu:
            raise UsageError("vm-exec: no QEMU command line after --", 2,
                             hint="pymacvlan vm-exec NAME -- qemu-system-x86_64 -m 512 -kernel ... ")
        g = _globals(args)
        mac, ep = attachment(g, args.name)
        fd = None
        if ep["kind"] == "tapfd":
            from ..backends.userspace.endpoints import recv_fd

            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(10)
                s.connect(ep["path"])
                fd = recv_fd(s)[0]
        elif ep["kind"] == "tap":
            from ..backends.kernel.topology import open_macvtap

            fd = open_macvtap(g.netns, ep["ifindex"])
            os.set_blocking(fd, True)
        if fd is not None:
            os.set_inheritable(fd, True)
        argv = qemu + _args(mac, ep, args, fd)
        os.execvp(argv[0], argv)
    except (UsageError, KernelError) as e:
        return report(e)
    except OSError as e:
        print(f"pymacvlan vm-exec: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    return 1  # not reached


def _globals(args) -> Globals:
    """The backend, namespace, socket and sim state as `link` takes them (global or local)."""
    return Globals(backend=args.backend or DEFAULT_BACKEND, netns=args.netns, state=args.state, socket=args.socket)


def _common(p) -> None:
    p.add_argument("name", help="the macvtap child")
    p.add_argument("--backend", choices=BACKENDS, help="whose macvtap (default sim)")
    p.add_argument("-n", "--netns", help="the namespace the macvtap is in (kernel backend)")
    p.add_argument("--socket", help="the daemon's control socket (userspace)")
    p.add_argument("--state", help="the sim link state file (sim)")
    p.add_argument("--id", default="net0", help="the -netdev id (default net0)")
    p.add_argument("--reconnect", type=int, metavar="S",
                   help="stream: QEMU reconnects after S seconds if the daemon restarts (QEMU 8.0 or later)")
    p.add_argument("--qemu-path", metavar="PATH", help="dgram: the socket QEMU binds (default NAME.qemu.sock "
                   "next to the endpoint)")


def register(sub) -> None:
    p = sub.add_parser("vm-args", help="print the QEMU -netdev/-device arguments for a macvtap child",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.add_argument("--libvirt", action="store_true", help="as libvirt's <qemu:commandline> XML")
    p.set_defaults(func=_vm_args)
    p = sub.add_parser("vm-exec", help="run QEMU on a macvtap child (passes a TAP fd as fd=N)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.add_argument("qemu", nargs=argparse.REMAINDER, help="-- and the QEMU command line")
    p.set_defaults(func=_vm_exec)
