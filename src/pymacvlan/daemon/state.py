"""What the daemon remembers across restarts: one :class:`LinkRecord` per child in a JSON
state file, written atomically (a crash leaves the old file or the new one, never half)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

from ..model import MacaddrMode, MacvlanFlag, Mode, parse_mac
from ..model.link import LinkChange, LinkRequest
from .codec import PROTOCOL_VERSION

log = logging.getLogger("pymacvlan.daemon")


def child_key(name: str, netns: str | None) -> str:
    """The engine's name for a child: unique per daemon, like (netns, ifname) in the kernel."""
    return name if netns is None else f"{netns}/{name}"


@dataclasses.dataclass
class LinkRecord:
    """What the daemon keeps about one child (the state file holds a list of these)."""

    name: str
    parent: str
    kind: str = "macvlan"
    netns: str | None = None
    mode: int = int(Mode.VEPA)
    address: str | None = None
    mtu: int | None = None
    flags: int = 0
    macaddrs: list[str] = dataclasses.field(default_factory=list)
    bcqueuelen: int | None = None
    bclim: int | None = None
    up: bool = False
    promisc: bool = False
    allmulticast: bool = False
    endpoint: str | None = None

    @property
    def key(self) -> str:
        return child_key(self.name, self.netns)

    def request(self) -> LinkRequest:
        """The `link add` that re-creates this child."""
        return LinkRequest(self.parent, self.name, self.kind, Mode(self.mode),
                           parse_mac(self.address) if self.address else None, self.mtu,
                           MacvlanFlag(self.flags), MacaddrMode.SET if self.macaddrs else None,
                           [parse_mac(m) for m in self.macaddrs], self.bcqueuelen,
                           self.bclim if self.bclim not in (None, 1) else None, self.netns)

    def change(self) -> LinkChange | None:
        """The `link set` that follows it (None: nothing to set)."""
        if not (self.up or self.promisc or self.allmulticast):
            return None
        return LinkChange(up=self.up or None, promisc=self.promisc or None, allmulticast=self.allmulticast or None)


def load(path: str) -> list[LinkRecord]:
    """The records in the state file ([] if none); an unreadable file is moved aside to
    ``NAME.bad`` (logged), so the daemon starts empty rather than not at all."""
    p = Path(path)
    if not p.exists():
        return []
    try:
        data = json.loads(p.read_text())
        return [LinkRecord(**d) for d in data.get("links", [])]
    except (ValueError, TypeError, AttributeError, OSError) as e:
        bad = p.with_name(p.name + ".bad")
        log.error("state file %s unreadable (%s); moved to %s, starting empty", p, e, bad)
        os.replace(p, bad)
        return []


def save(path: str, records: list[LinkRecord]) -> None:
    data = {"version": PROTOCOL_VERSION, "links": [dataclasses.asdict(r) for r in records]}
    write_atomic(path, json.dumps(data, indent=1) + "\n")


def write_atomic(path: str, text: str) -> None:
    """Write via a temporary file in the same directory, fsync, rename: never a torn file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, p)
    try:
        dfd = os.open(p.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
