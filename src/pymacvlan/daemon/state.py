"""What the daemon remembers across restarts: one :class:`LinkRecord` per child in a JSON
state file, written atomically and fsynced (file and directory: a crash leaves the old file
or the new one, never half), with a checksum, so a file torn or corrupted anyway (a full
disk, another writer, a bad sector) is detected and the last good copy (``NAME.prev``) used."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path

from ..model import MacaddrMode, MacvlanFlag, Mode, parse_mac
from ..model.link import LinkChange, LinkRequest

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
    endpoint: str | None = None  # the macvtap's socket path
    endpoint_kind: str | None = None  # stream, dgram, tapfd
    endpoint_user: str | None = None
    endpoint_group: str | None = None
    endpoint_mode: int | None = None
    #: the TAP's ifindex: a restart re-attaches to the device with this name *and* index
    ifindex: int | None = None
    #: the TAP's kernel tx_dropped when last saved: what it drops beyond that while no daemon
    #: reads it is counted when the next one adopts it
    tx_dropped: int = 0

    @property
    def key(self) -> str:
        return child_key(self.name, self.netns)

    def request(self) -> LinkRequest:
        """The `link add` that re-creates this child."""
        return LinkRequest(self.parent, self.name, self.kind, Mode(self.mode),
                           parse_mac(self.address) if self.address else None, self.mtu,
                           MacvlanFlag(self.flags), MacaddrMode.SET if self.macaddrs else None,
                           [parse_mac(m) for m in self.macaddrs], self.bcqueuelen,
                           self.bclim if self.bclim not in (None, 1) else None, self.netns,
                           self.endpoint_kind, self.endpoint_user, self.endpoint_group, self.endpoint_mode)

    def change(self) -> LinkChange | None:
        """The `link set` that follows it (None: nothing to set). A macvtap is made
        allmulticast (endpoint_allmulti), so its flag is always said, off included."""
        allmulti = self.allmulticast if self.kind == "macvtap" else (self.allmulticast or None)
        if not (self.up or self.promisc or allmulti is not None):
            return None
        return LinkChange(up=self.up or None, promisc=self.promisc or None, allmulticast=allmulti)


#: the state file's format. 1: {"version", "links"}; 2: + "sha256" over both, and the
#: records' ``ifindex`` / ``tx_dropped`` (persistent TAPs are adopted by name and ifindex).
#: Older formats are read and written back as this one; a newer one is refused.
STATE_VERSION = 2


class StateError(Exception):
    """A state file that cannot be used (torn, corrupt, checksum mismatch, unknown format)."""


class StateTooNew(StateError):
    """Written by a newer pymacvlan: never overwritten by an older one."""


def _digest(version: int, links: list) -> str:
    body = json.dumps({"version": version, "links": links}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def parse(text: str) -> tuple[list[LinkRecord], int]:
    """The records of one state file's text and its format version; :class:`StateError` if it
    is not a complete, intact state file."""
    try:
        data = json.loads(text)
    except ValueError as e:
        raise StateError(f"not JSON ({e}): torn or corrupt") from None
    if not isinstance(data, dict) or not isinstance(data.get("links"), list):
        raise StateError("no list of links in it")
    version = data.get("version")
    if not isinstance(version, int) or version < 1:
        raise StateError(f"unknown format version {version!r}")
    if version > STATE_VERSION:
        raise StateTooNew(f"format version {version} is newer than this pymacvlan reads ({STATE_VERSION})")
    if version >= 2 and data.get("sha256") != _digest(version, data["links"]):
        raise StateError("checksum mismatch: torn or corrupt")
    try:
        return [LinkRecord(**d) for d in data["links"]], version
    except TypeError as e:
        raise StateError(f"bad link record ({e})") from None


def previous_path(path: str) -> Path:
    """Where the last good copy is kept (the file as it was before the latest save)."""
    p = Path(path)
    return p.with_name(p.name + ".prev")


def load(path: str) -> tuple[list[LinkRecord], str | None]:
    """The records to restore ([] if there is no state file) and a warning for the user.

    A torn or corrupt file (checksum) is moved aside to ``NAME.bad`` and the last good copy
    (``NAME.prev``) used instead; an older format is upgraded (written back by the next save);
    a newer format raises :class:`StateTooNew` and is left untouched.
    """
    p = Path(path)
    try:
        recs, version = parse(p.read_text())
    except FileNotFoundError:
        return [], None  # removed on purpose (or never written): nothing to resurrect
    except StateTooNew:
        raise
    except (OSError, StateError) as e:
        problem = str(e)
        if not isinstance(e, OSError):
            bad = p.with_name(p.name + ".bad")
            os.replace(p, bad)
            problem += f" (kept as {bad})"
    else:
        if version < STATE_VERSION:
            log.info("state file %s has format %d; it is upgraded to %d on the next save", p, version, STATE_VERSION)
        return recs, None
    prev = previous_path(path)
    try:
        recs, _ = parse(prev.read_text())
    except (OSError, StateError) as e:
        msg = f"state file {p}: {problem}; the last good copy {prev} cannot be used either ({e}): starting empty"
        log.error("%s", msg)
        return [], msg
    msg = f"state file {p}: {problem}; restored the last good copy {prev} ({len(recs)} children)"
    log.error("%s", msg)
    return recs, msg


def save(path: str, records: list[LinkRecord]) -> None:
    """Write the records (atomically, fsynced); the file replaced becomes the last good copy."""
    links = [dataclasses.asdict(r) for r in records]
    data = {"version": STATE_VERSION, "links": links, "sha256": _digest(STATE_VERSION, links)}
    p = Path(path)
    if p.exists():
        try:
            parse(p.read_text())
        except (OSError, StateError):
            pass  # never let a bad file become the "last good" copy
        else:
            tmp = p.with_name(f".{p.name}.{os.getpid()}.prev")
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            os.link(p, tmp)  # the same inode: no copy, no window without a good file
            os.replace(tmp, previous_path(path))
    write_atomic(path, json.dumps(data, indent=1) + "\n")


def write_atomic(path: str, text: str) -> None:
    """Write via a temporary file in the same directory, fsync, rename: never a torn file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        try:
            os.write(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, p)
    except BaseException:  # never a temporary file left behind (e.g. the path is a directory)
        tmp.unlink(missing_ok=True)
        raise
    try:
        dfd = os.open(p.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
