"""`pymacvlan netavark install [--dir DIR] [--name NAME]`: the netavark plugin where podman 5 looks."""

from __future__ import annotations

import sys

from ._report import os_error_line

ORDER = 46


def _install(args) -> int:
    from ..netavark.install import containers_conf, example, install

    try:
        path = install(args.dir, args.name, force=args.force)
    except (OSError, ValueError) as e:
        if not isinstance(e, OSError):
            print(f"pymacvlan netavark install: EINVAL: {e}", file=sys.stderr)
            return 1
        hint = ("run as root, or pick a --dir you can write" if isinstance(e, PermissionError) else
                "it cannot be created there; pick another --dir" if isinstance(e, FileNotFoundError) else
                "")
        print(os_error_line("netavark install", e, hint), file=sys.stderr)
        return 1
    print(f"installed {path}", file=sys.stderr)
    print("containers.conf (e.g. /etc/containers/containers.conf.d/pymacvlan.conf):", file=sys.stderr)
    print(containers_conf(args.dir), end="")
    print(f"then: {example(args.name)}", file=sys.stderr)
    return 0


def _usage(_args) -> int:
    print("pymacvlan netavark: which action? `pymacvlan netavark install [--dir DIR]`", file=sys.stderr)
    return 2


def register(sub) -> None:
    c = sub.add_parser("netavark", help="the netavark plugin pymacvlan-netavark (podman 5)",
                       description="pymacvlan-netavark is a netavark network plugin (API 1.0.0): netavark's own "
                                   "macvlan driver, option for option, with the userspace backend, hostAccess, "
                                   "stable_mac, preflight and address announcements on top.")
    c.set_defaults(func=_usage)
    s = c.add_subparsers(dest="netavark_command", metavar="ACTION", help="install")
    i = s.add_parser("install", help="write the plugin into a netavark plugin directory and print the "
                                     "containers.conf lines")
    i.add_argument("--dir", default="/usr/local/libexec/netavark",
                   help="the plugin directory (default /usr/local/libexec/netavark, one of podman's defaults)")
    i.add_argument("--name", default="pymacvlan",
                   help="the file name, i.e. the network's driver (-d NAME; default pymacvlan)")
    i.add_argument("--force", action="store_true", help="replace a file of that name that is not ours")
    i.set_defaults(func=_install)
