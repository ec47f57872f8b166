"""The userspace daemon: the datapath as a service, controlled over a Unix socket.

- :mod:`.codec`  — the wire: JSON lines, LinkRequest/LinkChange as objects (both ends);
- :mod:`.client` — what `pymacvlan link/stats/trace --backend userspace` speak through;
- :mod:`.server` — the service (:class:`~.server.Daemon`): datapaths, control socket;
- :mod:`.state`  — the state file the children come back from;
- :mod:`.trace`  — `pymacvlan trace` subscribers and their filters;
- :mod:`.unit`   — the systemd unit and `pymacvlan daemon install-unit`.

Importing the package or the client does not import the server (nor the datapath).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Client", "Daemon", "DaemonConfig", "run"]


def __getattr__(name: str) -> Any:
    if name == "Client":
        from .client import Client
        return Client
    if name in ("Daemon", "DaemonConfig", "run"):
        from . import server
        return getattr(server, name)
    raise AttributeError(name)
