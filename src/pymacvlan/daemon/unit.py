"""The systemd unit of ``pymacvlan daemon`` and the command that installs it.

``Type=notify``: the daemon sends ``READY=1`` once its control socket listens and its children
are back from the state file, so units ordered ``After=pymacvlan.service`` find them.
``Restart=on-failure``: a crash restarts it, and the children come back (their TAPs are kept).

The hardening keeps what the daemon needs and nothing else:

- ``CAP_NET_ADMIN`` (TAPs, netlink, memberships, tc), ``CAP_NET_RAW`` (the parent's AF_PACKET
  socket), ``CAP_SYS_ADMIN`` (``setns()`` into children's named namespaces: the kernel asks
  for it, there is no narrower capability), ``CAP_BPF`` (the eBPF shield, ``--shield``) and
  ``CAP_SYS_NICE`` (the loop's nice -5; without it the datapath counts ``nice_refused``);
- address families AF_UNIX (control socket, macvtap endpoints), AF_NETLINK, AF_PACKET and AF_INET
  (interface ioctls); namespaces: only ``net``; devices: only ``/dev/net/tun``;
- the file system read-only except its runtime and state directories. ``/proc/sys`` stays
  writable (``ProtectKernelTunables`` is off): macvtap endpoint TAPs turn off IPv6 and
  forwarding on themselves, per namespace.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

UNIT_NAME = "pymacvlan.service"
DEFAULT_UNIT_DIR = "/etc/systemd/system"

CAPABILITIES = ("CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_ADMIN", "CAP_BPF", "CAP_SYS_NICE")

_UNIT = """\
[Unit]
Description=pymacvlan userspace macvlan/macvtap datapath
After=network-pre.target
Before=network.target
Wants=network-pre.target

[Service]
Type=notify
NotifyAccess=main
ExecStart={exec_start}
# SIGTERM keeps every child (persistent TAPs, addresses and routes stay); the next start adopts them.
# `pymacvlan daemon stop --remove` deletes them instead.
KillMode=mixed
TimeoutStopSec=30
Restart=on-failure
RestartSec=1
RuntimeDirectory=pymacvlan
RuntimeDirectoryMode=0755
RuntimeDirectoryPreserve=yes
StateDirectory=pymacvlan
StateDirectoryMode=0700
UMask=0077

CapabilityBoundingSet={caps}
AmbientCapabilities={caps}
NoNewPrivileges=yes
DevicePolicy=closed
DeviceAllow=/dev/net/tun rw
ProtectSystem=strict
ProtectHome=read-only
PrivateTmp=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_PACKET AF_INET
RestrictNamespaces=net
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native

[Install]
WantedBy=multi-user.target
"""


def render(args: list[str] | None = None, python: str | None = None) -> str:
    """The unit text; ``args`` are extra ``pymacvlan daemon`` options for ExecStart."""
    cmd = [python or sys.executable, "-m", "pymacvlan.cli.main", "daemon", *(args or [])]
    return _UNIT.format(exec_start=" ".join(systemd_quote(a) for a in cmd), caps=" ".join(CAPABILITIES))


def systemd_quote(arg: str) -> str:
    """One ExecStart word in systemd's own quoting (systemd.service(5), "Command lines"), not a
    shell's: double-quoted, with C escapes for ``\\``, ``"`` and control characters, and the
    two expansions systemd applies inside quotes too doubled (``%%`` for specifiers, ``$$`` for
    environment variables). Plain words stay as they are (easier to read)."""
    import re

    if arg and re.fullmatch(r"[A-Za-z0-9_./:=@+-]+", arg):
        return arg
    out = []
    for c in arg:
        if c in "\\\"":
            out.append("\\" + c)
        elif c == "%":
            out.append("%%")
        elif c == "$":
            out.append("$$")
        elif c == "\n":
            out.append("\\n")
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\x{ord(c):02x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def install(unit_dir: str = DEFAULT_UNIT_DIR, args: list[str] | None = None, reload: bool = True) -> Path:
    """Write the unit (0644) and, when systemd runs this machine, ``systemctl daemon-reload``."""
    path = Path(unit_dir) / UNIT_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{UNIT_NAME}.tmp")
    tmp.write_text(render(args))
    tmp.chmod(0o644)
    tmp.replace(path)
    if reload and Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
        subprocess.run(["systemctl", "daemon-reload"], check=False)
    return path
