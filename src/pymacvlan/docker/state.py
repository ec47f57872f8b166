"""What the plugin remembers, on disk: Docker does not send CreateNetwork again after its own
restart, nor after the plugin's, so networks and endpoints must outlive the process.

One JSON file, written whole to a temporary file and renamed over the old one (a crash leaves
the old or the new file, never half of one), mode 0600.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

DEFAULT_STATE = "/var/lib/pymacvlan/docker-plugin.json"
VERSION = 1


@dataclass
class Endpoint:
    network: str
    address: str = ""  # 10.1.2.3/24 as Docker's IPAM gave it
    address6: str = ""
    mac: str = ""
    link: str = ""  # the name the child had in the plugin's namespace before Docker moved it
    identity: str = ""  # stable_mac: the container's name, when it could be told

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Network:
    config: dict[str, Any]
    gateway: str = ""  # 10.1.2.1 (no prefix)
    gateway6: str = ""
    pools: list[str] = field(default_factory=list)
    #: links the plugin made for this network (a VLAN parent, an internal network's isolated veth)
    made: list[str] = field(default_factory=list)
    name: str = ""  # Docker's network name, when known (stable_mac)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class State:
    path: str | None
    networks: dict[str, Network] = field(default_factory=dict)
    endpoints: dict[str, Endpoint] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | None) -> State:
        st = cls(path)
        if path is None or not os.path.exists(path):
            return st
        with open(path) as f:
            data = json.load(f)
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise ValueError(f"{path}: not a pymacvlan docker-plugin state file (version {VERSION})")
        for nid, n in (data.get("networks") or {}).items():
            st.networks[nid] = Network(**{k: v for k, v in n.items() if k in Network.__dataclass_fields__})
        for eid, e in (data.get("endpoints") or {}).items():
            st.endpoints[eid] = Endpoint(**{k: v for k, v in e.items() if k in Endpoint.__dataclass_fields__})
        return st

    def save(self) -> None:
        if self.path is None:
            return
        d = os.path.dirname(self.path) or "."
        os.makedirs(d, mode=0o700, exist_ok=True)
        tmp = f"{self.path}.{os.getpid()}.tmp"
        data = {"version": VERSION,
                "networks": {k: v.as_dict() for k, v in self.networks.items()},
                "endpoints": {k: v.as_dict() for k, v in self.endpoints.items()}}
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
