"""Just enough of the Docker Engine API to tell which container an endpoint is for.

dockerd 20.10 sends a network driver no container identity at all: CreateEndpoint carries the
network and endpoint IDs, the IPAM address and the MAC asked for; Join adds the sandbox key
(a path in dockerd's own mount table) and the port maps. What does identify the container is
dockerd's API: while a container is being connected, its list entry (``GET /containers/json``,
answered from a snapshot, so it does not wait for the container's lock that dockerd holds
during start) is not running and has the network in ``NetworkSettings.Networks`` with no
``EndpointID`` yet. Exactly one such container (and, with ``--ip``, with that address) is the
one; several at once (parallel starts) cannot be told apart and give no answer.
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse
from typing import Any

API = "v1.41"  # dockerd 20.10's; newer daemons answer it too


class ApiError(Exception):
    pass


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.path)
        self.sock = s


class Client:
    def __init__(self, host: str, timeout: float = 5.0) -> None:
        if host.startswith("unix://"):
            host = host[len("unix://"):]
        self.path = host
        self.timeout = timeout

    def get(self, url: str) -> Any:
        conn = _UnixConnection(self.path, self.timeout)
        try:
            conn.request("GET", f"/{API}{url}")
            r = conn.getresponse()
            body = r.read()
        except OSError as e:
            raise ApiError(f"{self.path}: {e}") from None
        finally:
            conn.close()
        if r.status != 200:
            raise ApiError(f"GET {url}: HTTP {r.status}: {body[:200]!r}")
        try:
            return json.loads(body)
        except ValueError:
            raise ApiError(f"GET {url}: not JSON") from None

    def network_name(self, nid: str) -> str:
        name = self.get(f"/networks/{urllib.parse.quote(nid)}").get("Name")
        if not isinstance(name, str) or not name:
            raise ApiError(f"network {nid[:12]} has no name")
        return name

    def connecting_container(self, network: str, address: str) -> str | None:
        return pick_connecting(self.get("/containers/json?all=1"), network, address)


def pick_connecting(containers: list[dict[str, Any]], network: str, address: str) -> str | None:
    """The name of the one container being connected to ``network`` (see the module's doc)."""
    ip = address.split("/")[0]
    found = []
    for c in containers if isinstance(containers, list) else []:
        if c.get("State") == "running":
            continue
        nets = (c.get("NetworkSettings") or {}).get("Networks") or {}
        n = nets.get(network)
        if not isinstance(n, dict) or n.get("EndpointID"):
            continue
        fixed = ((n.get("IPAMConfig") or {}).get("IPv4Address") or "")
        if fixed and fixed != ip:
            continue
        names = c.get("Names") or []
        if names:
            found.append(str(names[0]).lstrip("/"))
    return found[0] if len(found) == 1 else None
