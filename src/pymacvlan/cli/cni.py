"""`pymacvlan cni install [--dir DIR] [--name NAME]`: the CNI plugin where runtimes look."""

from __future__ import annotations

import sys

from ._report import os_error_line

ORDER = 45


def _install(args) -> int:
    from ..cni.install import install, sample_text

    try:
        path = install(args.dir, args.name, force=args.force)
    except (OSError, ValueError) as e:
        if not isinstance(e, OSError):
            print(f"pymacvlan cni install: EINVAL: {e}", file=sys.stderr)
            return 1
        hint = ("run as root, or pick a --dir you can write" if isinstance(e, PermissionError) else
                "it cannot be created there; pick another --dir" if isinstance(e, FileNotFoundError) else
                "")
        print(os_error_line("cni install", e, hint), file=sys.stderr)
        return 1
    print(f"installed {path}", file=sys.stderr)
    print("a conflist using it (e.g. /etc/cni/net.d/50-pmvnet.conflist; set \"master\"):", file=sys.stderr)
    print(sample_text(plugin=args.name, master=args.master))
    return 0


def _usage(_args) -> int:
    print("pymacvlan cni: which action? `pymacvlan cni install [--dir DIR]`", file=sys.stderr)
    return 2


def register(sub) -> None:
    c = sub.add_parser("cni", help="the CNI plugin pymacvlan-cni (podman, Kubernetes/Multus, containerd, CRI-O)",
                       description="pymacvlan-cni is a drop-in for the reference macvlan CNI plugin (same keys, "
                                   "results and errors) with userspace backend, source mode, hostAccess, stableMac, "
                                   "preflight and GC on top.")
    c.set_defaults(func=_usage)
    s = c.add_subparsers(dest="cni_command", metavar="ACTION", help="install")
    i = s.add_parser("install", help="write the plugin into a CNI plugin directory and print a sample conflist")
    i.add_argument("--dir", default="/opt/cni/bin", help="the plugin directory (default /opt/cni/bin)")
    i.add_argument("--name", default="pymacvlan-cni",
                   help="the file name, i.e. the config's \"type\" (default pymacvlan-cni; \"macvlan\" replaces "
                        "the reference plugin for existing configs, with --force)")
    i.add_argument("--force", action="store_true", help="replace a file of that name that is not ours")
    i.add_argument("--master", default="eth1", help="the master named in the sample conflist (default eth1)")
    i.set_defaults(func=_install)
