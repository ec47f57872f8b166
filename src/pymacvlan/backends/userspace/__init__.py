"""The userspace datapath: real frames through the pymacvlan engine.

- :mod:`.parent` — the parent as one AF_PACKET socket (TPACKET rings, vnet headers,
  memberships, VLAN tags in userspace);
- :mod:`.tap` — macvlan children as TAP devices, created in the namespace asked for;
- :mod:`.endpoints` — macvtap children as QEMU stream/dgram sockets or a TAP fd handed over;
- :mod:`.gso` — software segmentation and checksums for endpoints without vnet headers;
- :mod:`.datapath` — the epoll loop tying them to :class:`~pymacvlan.engine.Engine`;
- :mod:`.shield` — an eBPF tc ingress filter keeping the parent's stack from what macvlan
  consumes;
- :mod:`.backend` — ``pymacvlan replay --backend userspace`` (:class:`UserspaceBackend`).

Needs root (CAP_NET_ADMIN, CAP_NET_RAW; CAP_SYS_ADMIN for namespaces and the shield).
"""

from __future__ import annotations

from .datapath import Datapath, DatapathConfig
from .endpoints import DgramEndpoint, StreamEndpoint, TapFdEndpoint
from .parent import Parent, ParentConfig
from .tap import Tap, TapConfig

__all__ = ["Datapath", "DatapathConfig", "DgramEndpoint", "StreamEndpoint", "TapFdEndpoint",
           "Parent", "ParentConfig", "Tap", "TapConfig", "UserspaceBackend"]


def __getattr__(name: str):
    # the replay backend pulls in the kernel backend's topology (pyroute2): only on demand
    if name == "UserspaceBackend":
        from .backend import UserspaceBackend
        return UserspaceBackend
    raise AttributeError(name)
