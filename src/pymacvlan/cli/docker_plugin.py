"""`pymacvlan docker-plugin`: the Docker network driver on a Unix socket (foreground)."""

from __future__ import annotations

import logging
import sys

from ._report import os_error_line

ORDER = 46


def _run(args) -> int:
    from .._signals import sigterm_raises
    from ..daemon.server import sd_notify
    from ..docker.driver import DriverConfig, NetworkDriver, Plugin
    from ..docker.server import Server, socket_for

    if args.action == "install-unit":
        from ..docker.unit import install

        extra = [a for a in sys.argv[sys.argv.index("docker-plugin") + 1:sys.argv.index("install-unit")]] \
            if "docker-plugin" in sys.argv and "install-unit" in sys.argv else []
        extra = [a for i, a in enumerate(extra) if a != "--name" and (i == 0 or extra[i - 1] != "--name")]
        try:
            unit = install(args.unit_dir, args.name, extra)
        except OSError as e:
            print(os_error_line("docker-plugin install-unit", e, "run as root, or pick a --unit-dir you can write"),
                  file=sys.stderr)
            return 1
        print(f"installed {unit}", file=sys.stderr)
        return 0
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="pymacvlan docker-plugin: %(levelname)s %(message)s")
    logging.getLogger("pymacvlan.docker").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    path = str(args.socket or socket_for(args.name))
    try:
        drv = NetworkDriver(DriverConfig(state=args.state, docker_host=args.docker_host))
    except (OSError, ValueError) as e:
        print(f"pymacvlan docker-plugin: EINVAL: cannot read the state file {args.state}: {e} "
              "(move it away to start empty)", file=sys.stderr)
        return 1
    try:
        srv = Server(path, Plugin([drv.part()]))
    except OSError as e:
        print(os_error_line("docker-plugin", e, f"another plugin listens on {path}, or the directory is not "
                            "writable (--socket PATH)"), file=sys.stderr)
        return 1
    logging.getLogger("pymacvlan.docker").info("listening on %s (driver name %s, state %s)", path, args.name,
                                               args.state)
    sd_notify("READY=1")
    try:
        with sigterm_raises():
            srv.serve_forever(poll_interval=3600)  # shutdown comes as SystemExit from the handler
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        srv.server_close()
        try:
            import os

            os.unlink(path)
        except OSError:
            pass
    return 0


def register(sub) -> None:
    from ..docker.state import DEFAULT_STATE

    d = sub.add_parser("docker-plugin", help="the Docker network driver: docker network create -d pymacvlan",
                       description="A Docker (remote, legacy socket) network driver: a drop-in for the built-in "
                       "macvlan driver (parent, parent=IF.VID, macvlan_mode, --internal, Docker's IPAM) with mtu, "
                       "host_access, stable_mac, backend=userspace, bclim, nopromisc and source mode on top. "
                       "Start it before dockerd (install-unit: Before=docker.service).")
    d.add_argument("--name", default="pymacvlan", help="the driver's name for -d (default pymacvlan)")
    d.add_argument("--socket", help="the socket (default /run/docker/plugins/NAME.sock, where dockerd looks)")
    d.add_argument("--state", default=DEFAULT_STATE, help=f"state file (default {DEFAULT_STATE})")
    d.add_argument("--docker-host", default="unix:///run/docker.sock",
                   help="dockerd's API, to name the container for stable_mac (default unix:///run/docker.sock)")
    d.add_argument("-v", "--verbose", action="store_true", help="log every call")
    d.set_defaults(func=_run, action=None)
    acts = d.add_subparsers(dest="action", metavar="[install-unit]", help="without one: run in the foreground")
    u = acts.add_parser("install-unit", help="write pymacvlan-docker.service (Before=docker.service) running the "
                        "plugin with the options given before install-unit")
    u.add_argument("--unit-dir", default="/etc/systemd/system", help="where to write it (default /etc/systemd/system)")
