"""The systemd unit of ``pymacvlan docker-plugin``.

Legacy (socket-file) plugins must be listening before dockerd starts: dockerd looks a driver
up when a network that uses it comes back, and gives up after its retries. So the unit is
``Before=docker.service`` and ``WantedBy=docker.service``, and ``Type=notify`` tells systemd
"ready" only once the socket listens. ``Restart=always``: containers keep their networking
while the plugin is down (their links are the kernel's), and the restarted plugin reads its
state file.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

UNIT_NAME = "pymacvlan-docker.service"
DEFAULT_UNIT_DIR = "/etc/systemd/system"

_UNIT = """\
[Unit]
Description=pymacvlan Docker network driver (docker network create -d {name})
Documentation=https://github.com/pymacvlan/pymacvlan/blob/main/docs/guides/docker.md
Before=docker.service
After=network-pre.target pymacvlan.service
Wants=network-pre.target

[Service]
Type=notify
NotifyAccess=main
ExecStart={exec_start}
Restart=always
RestartSec=1
StateDirectory=pymacvlan
StateDirectoryMode=0700
UMask=0077
CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_SYS_ADMIN
NoNewPrivileges=yes
ProtectHome=read-only
RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET AF_INET6

[Install]
WantedBy=docker.service
"""


def render(name: str = "pymacvlan", args: list[str] | None = None, python: str | None = None) -> str:
    cmd = [python or sys.executable, "-m", "pymacvlan.cli.main", "docker-plugin", "--name", name, *(args or [])]
    return _UNIT.format(name=name, exec_start=shlex.join(cmd))


def install(unit_dir: str = DEFAULT_UNIT_DIR, name: str = "pymacvlan", args: list[str] | None = None) -> Path:
    path = Path(unit_dir) / UNIT_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{UNIT_NAME}.tmp")
    tmp.write_text(render(name, args))
    tmp.chmod(0o644)
    tmp.replace(path)
    if Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
        subprocess.run(["systemctl", "daemon-reload"], check=False)
    return path
