"""What front ends call to get a DHCP lease for a child: the CNI IPAM plugin, the Docker
plugin's IpamDriver, the netavark plugin. The daemon holds the lease (renews it, releases it,
keeps it across its own restarts); this module only asks.

>>> lease = acquire("docker/NET/EP", "eth0", "02:42:0a:00:00:05", network="lan",
...                 identity="ctr/web/eth0")                                # doctest: +SKIP
>>> lease["address"], lease["gateway"]                                      # doctest: +SKIP
('192.168.1.57/24', '192.168.1.1')
>>> release("docker/NET/EP")                                                # doctest: +SKIP

Errors are :class:`~pymacvlan.model.KernelError` with one line and a hint: ETIMEDOUT (no
server answered within ``timeout``), EHOSTUNREACH (the only server is on the parent's own
host: use hostAccess), ECONNREFUSED (no daemon), EINVAL (a bad argument).
"""

from __future__ import annotations

from typing import Any

from ..model import KernelError
from .identity import Identity, hostname_for


def _client(socket: str | None, timeout: float | None):
    from ..daemon.client import Client

    return Client(socket, timeout=timeout)


def acquire(key: str, parent: str, mac: str, *, network: str, identity: str, ifname: str = "eth0",
            hostname: str = "", timeout: float = 30.0, subnet: str | None = None, netns: str | None = None,
            host_access: bool = False, socket: str | None = None) -> dict[str, Any]:
    """Block until the daemon holds a bound lease for ``key`` and return it.

    ``key`` names the attachment (release uses it); ``identity`` is the stable string a
    re-created container keeps (the client identifier and hostname derive from it, as
    stableMac's MAC does); ``mac`` is the child's real MAC, ``parent`` its parent where the
    daemon runs. ``host_access``: the child reaches the host's stack (a DHCP server on the host):
    frames then go through the child itself, in ``netns`` as ``ifname``.
    """
    ident = Identity(network, identity, ifname, hostname_for(identity, hostname))
    lease = {"key": key, "parent": parent, "mac": mac, "client_id": ident.client_id.hex(),
             "hostname": ident.hostname, "timeout": timeout, "subnet": subnet, "netns": netns,
             "ifname": ifname, "via": "child" if host_access else "parent"}
    reply = _client(socket, timeout + 15.0).call({"op": "dhcp.acquire", "lease": lease})
    got = reply.get("lease")
    if not isinstance(got, dict) or "address" not in got:
        raise KernelError("EPROTO", f"the daemon answered dhcp.acquire without a lease: {reply!r}")
    return got


def release(key: str, socket: str | None = None) -> bool:
    """Release ``key``'s lease (RELEASE to the server); False when the daemon held none."""
    return bool(_client(socket, 15.0).call({"op": "dhcp.release", "key": key}).get("released"))


def renew(key: str, socket: str | None = None) -> bool:
    """Renew ``key``'s lease now rather than at T1; False when it holds no bound lease."""
    return bool(_client(socket, 15.0).call({"op": "dhcp.renew", "key": key}).get("renewing"))


def show(key: str | None = None, socket: str | None = None) -> list[dict[str, Any]]:
    """The daemon's leases (one, with ``key``), each with its ``state``."""
    leases = _client(socket, 15.0).call({"op": "dhcp.show", "key": key}).get("leases", [])
    return leases if isinstance(leases, list) else []


def events(since: int = 0, socket: str | None = None) -> list[dict[str, Any]]:
    """Lease events after ``since`` (bound, renewed, changed, nak, expired, failed, released)."""
    evs = _client(socket, 15.0).call({"op": "dhcp.events", "since": since}).get("events", [])
    return evs if isinstance(evs, list) else []
