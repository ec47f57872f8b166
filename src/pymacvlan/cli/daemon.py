"""`pymacvlan daemon`: run the userspace datapath as a service (foreground, systemd-friendly)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ._report import error_line, plural

ORDER = 40


def _daemon(args) -> int:
    if args.action == "install-unit":
        return _install_unit(args)
    if args.action == "stop":
        return _stop(args)
    if args.action == "wait":
        return _wait(args)
    from ..daemon.server import DaemonConfig, run
    from ..model import KernelError

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="pymacvlan daemon: %(levelname)s: %(message)s")
    if os.geteuid() != 0:
        print("pymacvlan daemon: EPERM: needs root (CAP_NET_ADMIN, CAP_NET_RAW for the parent's AF_PACKET "
              "socket and TAPs; CAP_SYS_ADMIN for namespaces) (run it as root, e.g. from the systemd unit)",
              file=sys.stderr)
        return 1
    if not os.path.exists("/dev/net/tun"):
        print("pymacvlan daemon: ENODEV: /dev/net/tun is missing (load the tun module: modprobe tun)",
              file=sys.stderr)
        return 1
    cfg = DaemonConfig(args.socket, args.state, args.netns, args.shield, args.endpoint_dir, fastpath=args.fastpath,
                       metrics=args.metrics)
    try:
        if args.metrics:
            from ..daemon.metrics import parse_listen

            parse_listen(args.metrics)
        return run(cfg)
    except (KernelError, OSError) as e:
        print(error_line("daemon", e), file=sys.stderr)
        return 1


def _daemon_args(args) -> list[str]:
    """The daemon options given on this command line, for the unit's ExecStart."""
    from ..daemon.codec import DEFAULT_SOCKET, DEFAULT_STATE

    out = []
    for opt, value, default in (("--socket", args.socket, DEFAULT_SOCKET), ("--state", args.state, DEFAULT_STATE),
                                ("--netns", args.netns, None), ("--endpoint-dir", args.endpoint_dir, None),
                                ("--metrics", args.metrics, None)):
        if value != default:
            out += [opt, value]
    return out + ["--shield"] * args.shield + ["--no-fastpath"] * (not args.fastpath) + ["--verbose"] * args.verbose


def _install_unit(args) -> int:
    import errno

    from ..daemon.unit import install, render

    if args.print:
        sys.stdout.write(render(_daemon_args(args)))
        return 0
    try:
        path = install(args.unit_dir, _daemon_args(args))
    except OSError as e:
        print(f"pymacvlan daemon install-unit: {errno.errorcode.get(e.errno or 0, 'EIO')}: cannot write "
              f"{args.unit_dir}: {e.strerror} (run as root, or give --unit-dir DIR, or --print)", file=sys.stderr)
        return 1
    print(f"wrote {path}; start it with: systemctl enable --now {path.name}")
    return 0


def _client_socket(args) -> str:
    """`daemon stop` and `daemon wait` are clients: --socket, else $PYMACVLAN_SOCKET (as for
    `link`, `stats`, `trace`), else the default."""
    from ..daemon.codec import DEFAULT_SOCKET, socket_path

    return socket_path(None if args.socket == DEFAULT_SOCKET else args.socket)


def _stop(args) -> int:
    from ..daemon.client import Client
    from ..model import KernelError

    path = _client_socket(args)
    try:
        pid = Client(path).hello()["pid"]
        Client(path).stop(remove=args.remove)
    except KernelError as e:
        print(f"pymacvlan daemon stop: {e}", file=sys.stderr)
        return 1
    for _ in range(300):  # it answered, then cleans up: wait until it is gone
        if not os.path.exists(f"/proc/{pid}") or _zombie(pid):
            break
        __import__("time").sleep(0.1)
    print(f"stopped the daemon (pid {pid}); " + ("its children were deleted" if args.remove else
          "its children stay, carrier off, until the next start (`daemon stop --remove` deletes them)"))
    return 0


def _wait(args) -> int:
    """Until the daemon on --socket answers (and, with --trace, a trace is subscribed), for at most
    --timeout seconds: what a script needs after starting the daemon (or a trace) with ``&``."""
    import time

    from ..daemon.client import Client
    from ..model import KernelError

    deadline = time.monotonic() + args.timeout
    last: Exception | None = None
    while True:
        try:
            client = Client(_client_socket(args), timeout=5.0)
            pid = client.hello()["pid"]
            subs = client.stats()["daemon"].get("trace_subscribers", 0) if args.trace else 0
            if not args.trace or subs:
                print(f"the daemon on {client.path} answers (pid {pid})"
                      + (f", {plural(subs, 'trace')} subscribed" if args.trace else ""))
                return 0
            last = KernelError("ETIMEDOUT", f"the daemon on {client.path} answers but no trace is subscribed")
        except KernelError as e:
            last = e
        if time.monotonic() >= deadline:
            print(f"pymacvlan daemon wait: ETIMEDOUT: {args.timeout:g} s and still: {last} "
                  "(did the daemon exit? see its messages on stderr)", file=sys.stderr)
            return 1
        time.sleep(0.1)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def register(sub) -> None:
    from ..daemon.codec import DEFAULT_SOCKET, DEFAULT_STATE

    d = sub.add_parser("daemon", help="run the userspace datapath: children added over a control socket",
                       description="Foreground service owning the userspace datapath (one per parent). "
                       "Control it with `pymacvlan link ... --backend userspace`, `stats` and `trace`. "
                       "Logs to stderr; notifies systemd (Type=notify); SIGTERM releases every parent and keeps every "
                       "child (persistent TAPs, carrier off) for the next start to adopt; `daemon stop --remove` "
                       "deletes them.")
    d.add_argument("--socket", default=DEFAULT_SOCKET, help=f"control socket (default {DEFAULT_SOCKET})")
    d.add_argument("--state", default=DEFAULT_STATE, help=f"state file (default {DEFAULT_STATE})")
    d.add_argument("--netns", help="network namespace the parents are in (default: the daemon's own)")
    d.add_argument("--shield", action="store_true",
                   help="keep parents' stacks from what macvlan consumes (eBPF tc ingress filter)")
    d.add_argument("--no-fastpath", dest="fastpath", action="store_false",
                   help="run every frame through the Python path (TAP children). By default known unicast is "
                        "forwarded in the kernel (eBPF) with veth children wherever eBPF can load; where it cannot, "
                        "the daemon says why once (log, `hello`, `stats`, systemd STATUS) and runs the Python path")
    d.add_argument("--fastpath", dest="fastpath", action="store_true",
                   help="the default (kept for older command lines and units)")
    d.add_argument("--endpoint-dir", help="where macvtap stream sockets go (default: the control socket's directory)")
    d.add_argument("--metrics", metavar="HOST:PORT",
                   help="serve Prometheus metrics there (e.g. 127.0.0.1:9466): per-child counters, drops by "
                   "reason, fast/slow path, endpoint queues")
    d.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    d.set_defaults(func=_daemon, action=None)
    acts = d.add_subparsers(dest="action", metavar="[install-unit | stop | wait]",
                            help="without one: run the daemon in the foreground")
    u = acts.add_parser("install-unit", help="write the systemd unit (Type=notify) running the daemon with "
                        "the options given before install-unit",
                        description="Write pymacvlan.service (Type=notify, Restart=on-failure, hardened to the "
                        "capabilities the daemon uses) with ExecStart running this Python and the daemon options "
                        "given before `install-unit`, then `systemctl daemon-reload` when systemd runs here.")
    u.add_argument("--unit-dir", default="/etc/systemd/system", help="where to write it (default /etc/systemd/system)")
    u.add_argument("--print", action="store_true", help="print the unit instead of writing it")
    st = acts.add_parser("stop", help="stop the running daemon (its children stay unless --remove)",
                         description="Ask the daemon on --socket to stop. Its children stay (persistent TAPs "
                         "keep their addresses and routes, carrier off) and come back on the next start; "
                         "--remove deletes every child first, as `ip link del` of each would.")
    st.add_argument("--remove", action="store_true", help="delete every child instead of keeping it")
    st.add_argument("--socket", default=argparse.SUPPRESS, help="the daemon's control socket (as for the daemon)")
    w = acts.add_parser("wait", help="wait until the daemon answers (after starting it with &), at most --timeout s",
                        description="Poll the daemon on --socket until it answers, for at most --timeout seconds "
                        "(exit 1 then): a script that starts `pymacvlan daemon ... &` runs this before its next "
                        "command. With --trace, also wait until a trace started with & is subscribed.")
    w.add_argument("--timeout", type=float, default=30.0, help="give up after this many seconds (default 30)")
    w.add_argument("--trace", action="store_true", help="also wait until at least one trace is subscribed")
    w.add_argument("--socket", default=argparse.SUPPRESS, help="the daemon's control socket (as for the daemon)")
