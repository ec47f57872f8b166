"""`pymacvlan daemon`: run the userspace datapath as a service (foreground, systemd-friendly)."""

from __future__ import annotations

import logging
import os
import sys

ORDER = 40


def _daemon(args) -> int:
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
    cfg = DaemonConfig(args.socket, args.state, args.netns, args.shield, args.endpoint_dir)
    try:
        return run(cfg)
    except KernelError as e:
        print(f"pymacvlan daemon: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"pymacvlan daemon: {e}", file=sys.stderr)
        return 1


def register(sub) -> None:
    from ..daemon.codec import DEFAULT_SOCKET, DEFAULT_STATE

    d = sub.add_parser("daemon", help="run the userspace datapath: children added over a control socket",
                       description="Foreground service owning the userspace datapath (one per parent). "
                       "Control it with `pymacvlan link ... --backend userspace`, `stats` and `trace`. "
                       "Logs to stderr; notifies systemd (Type=notify); SIGTERM deletes every child and "
                       "releases every parent; children come back from the state file on the next start.")
    d.add_argument("--socket", default=DEFAULT_SOCKET, help=f"control socket (default {DEFAULT_SOCKET})")
    d.add_argument("--state", default=DEFAULT_STATE, help=f"state file (default {DEFAULT_STATE})")
    d.add_argument("--netns", help="network namespace the parents are in (default: the daemon's own)")
    d.add_argument("--shield", action="store_true",
                   help="keep parents' stacks from what macvlan consumes (eBPF tc ingress filter)")
    d.add_argument("--endpoint-dir", help="where macvtap stream sockets go (default: the control socket's directory)")
    d.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    d.set_defaults(func=_daemon)
