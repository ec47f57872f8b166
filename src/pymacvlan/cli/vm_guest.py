"""`pymacvlan vm-guest build`: a first guest for a VM on a macvtap port, in one command.

The same tiny guest the project's VM tests boot (:mod:`pymacvlan.vm.guest`): the Debian
kernel and a busybox initramfs, fetched with ``apt-get download`` and cached. Its ``/init``
brings eth0 up and runs a shell script from the kernel command line; the default one asks for
a DHCP lease and then gives a shell on the serial console (``-nographic``).
"""

from __future__ import annotations

import shlex
import sys

ORDER = 26

DEFAULT_SCRIPT = "pmv_dhcp; ip -br addr show dev eth0; exec sh"


def _build(args) -> int:
    from ..vm.guest import build, cmdline

    try:
        guest = build(args.cache)
        append = cmdline(args.script)
    except (OSError, RuntimeError, ValueError) as e:
        print(f"pymacvlan vm-guest build: {type(e).__name__}: {e} (it needs apt-get with package lists: "
              "apt-get update)", file=sys.stderr)
        return 1
    except __import__("subprocess").CalledProcessError as e:
        err = (e.stderr or b"").decode(errors="replace").strip().splitlines()
        print(f"pymacvlan vm-guest build: `{shlex.join(map(str, e.cmd))}` failed: {err[-1] if err else e} "
              "(it needs apt-get with package lists: apt-get update)", file=sys.stderr)
        return 1
    qemu = ["-kernel", str(guest.kernel), "-initrd", str(guest.initrd), "-append", append]
    if args.args:
        print(shlex.join(qemu))
        return 0
    if args.json:
        import json

        print(json.dumps({"kernel": str(guest.kernel), "initrd": str(guest.initrd),
                          "kernel_package": guest.kernel_package, "append": append, "qemu_args": qemu}))
        return 0
    print(f"kernel  {guest.kernel}\ninitrd  {guest.initrd}\n# QEMU arguments (add the netdev from "
          f"`pymacvlan vm-args NAME`):\n{shlex.join(['-m', '256M', '-nographic', '-no-reboot', *qemu])}")
    return 0


def _usage(args) -> int:
    print("pymacvlan vm-guest: EINVAL: which action? (`pymacvlan vm-guest build` builds the guest; "
          "see `pymacvlan vm-guest --help`)", file=sys.stderr)
    return 2


def register(sub) -> None:
    p = sub.add_parser("vm-guest", help="build a tiny guest (Debian kernel + busybox) to try a VM on a macvtap",
                       description="The guest the VM tests boot: the distribution's kernel and busybox-static "
                       "(apt-get download; ~75 MB once), an initramfs with the virtio modules, cached by kernel "
                       "package. Prints the QEMU arguments that boot it.")
    p.set_defaults(func=_usage)
    acts = p.add_subparsers(dest="action", metavar="build", help="build: the guest and its QEMU arguments")
    b = acts.add_parser("build", help="build (or find in the cache) the guest and print its QEMU arguments",
                        description="Build the guest once (a few seconds after the download) and print "
                        "-kernel/-initrd/-append for qemu-system-x86_64.")
    b.add_argument("--cache", help="cache directory (default $PMV_GUEST_CACHE or /var/cache/pymacvlan-guest)")
    b.add_argument("--script", default=DEFAULT_SCRIPT,
                   help="what the guest runs after eth0 is up (helpers pmv_dhcp, pmv_ping NAME ADDR, pmv_ll; "
                        f"default: {DEFAULT_SCRIPT!r})")
    b.add_argument("--args", action="store_true",
                   help="print only the QEMU arguments, quoted for a shell "
                        "(for `eval \"qemu-system-x86_64 ... $(...)\"`)")
    b.add_argument("-j", "--json", action="store_true", help="JSON output")
    b.set_defaults(func=_build)
