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
from typing import Any

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


#: each record field and the JSON types it may hold (None: the field is optional)
_FIELDS: dict[str, tuple[type, ...]] = {
    "name": (str,), "parent": (str,), "kind": (str,), "netns": (str, type(None)), "mode": (int,),
    "address": (str, type(None)), "mtu": (int, type(None)), "flags": (int,), "macaddrs": (list,),
    "bcqueuelen": (int, type(None)), "bclim": (int, type(None)), "up": (bool,), "promisc": (bool,),
    "allmulticast": (bool,), "endpoint": (str, type(None)), "endpoint_kind": (str, type(None)),
    "endpoint_user": (str, type(None)), "endpoint_group": (str, type(None)), "endpoint_mode": (int, type(None)),
    "ifindex": (int, type(None)), "tx_dropped": (int,),
}
_REQUIRED = ("name", "parent")


def check_record(d: object) -> LinkRecord:
    """One record, type-checked field by field and as the request it becomes (mode, MACs,
    flags, names): ValueError naming what is wrong. Unknown fields (a newer format's) are
    ignored."""
    if not isinstance(d, dict):
        raise ValueError(f"a record must be an object, not {type(d).__name__}")
    for key in _REQUIRED:
        if key not in d:
            raise ValueError(f"no {key!r}")
    kw: dict[str, Any] = {}
    for key, types in _FIELDS.items():
        if key not in d:
            continue
        v = d[key]
        if not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
            raise ValueError(f"{key!r} is {type(v).__name__} {v!r:.40}, not {' or '.join(t.__name__ for t in types)}")
        kw[key] = v
    if not all(isinstance(m, str) for m in kw.get("macaddrs", [])):
        raise ValueError("'macaddrs' must be a list of MAC strings")
    rec = LinkRecord(**kw)
    if rec.kind not in ("macvlan", "macvtap"):
        raise ValueError(f"kind {rec.kind!r} is neither macvlan nor macvtap")
    if not rec.name or len(rec.name.encode()) > 15 or "/" in rec.name or not rec.parent:
        raise ValueError(f"name {rec.name!r} or parent {rec.parent!r} is not an interface name")
    try:
        rec.request()
        rec.change()
    except (ValueError, TypeError, OverflowError) as e:
        raise ValueError(f"not a valid link: {e}") from None
    return rec


def parse(text: str, bad: list[tuple[object, str]] | None = None) -> tuple[list[LinkRecord], int]:
    """The records of one state file's text and its format version; :class:`StateError` if it
    is not a complete, intact state file. Records that do not check (:func:`check_record`) are
    appended to ``bad`` with the reason (None: any bad record makes the file a StateError)."""
    try:
        data = json.loads(text)
    except ValueError as e:
        raise StateError(f"not JSON ({e}): torn or corrupt") from None
    except RecursionError:
        raise StateError("nested too deeply: corrupt") from None
    if not isinstance(data, dict) or not isinstance(data.get("links"), list):
        raise StateError("no list of links in it")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise StateError(f"unknown format version {version!r}")
    if version > STATE_VERSION:
        raise StateTooNew(f"format version {version} is newer than this pymacvlan reads ({STATE_VERSION})")
    if version >= 2 and data.get("sha256") != _digest(version, data["links"]):
        raise StateError("checksum mismatch: torn or corrupt")
    return _records(data["links"], bad), version


def _records(links: list, bad: list[tuple[object, str]] | None) -> list[LinkRecord]:
    out = []
    seen: set[str] = set()
    for d in links:
        try:
            rec = check_record(d)
            if rec.key in seen:
                raise ValueError(f"a second record for {rec.key}")
        except ValueError as e:
            if bad is None:
                raise StateError(f"bad link record ({e})") from None
            bad.append((d, str(e)))
            continue
        seen.add(rec.key)
        out.append(rec)
    return out


def _set_aside(path: Path, bad: list[tuple[object, str]]) -> Path:
    """The bad records, each with its reason, in ``NAME.bad`` (replacing an older one)."""
    target = path.with_name(path.name + ".bad")
    write_atomic(str(target), json.dumps({"bad_records": [{"reason": r, "record": d} for d, r in bad]},
                                         indent=1, default=repr) + "\n")
    return target


def previous_path(path: str) -> Path:
    """Where the last good copy is kept (the file as it was before the latest save)."""
    p = Path(path)
    return p.with_name(p.name + ".prev")


def load(path: str) -> tuple[list[LinkRecord], str | None]:
    """The records to restore ([] if there is no state file) and a warning for the user.

    Never raises for what is in the file (the daemon always starts):

    - a record that does not check is set aside in ``NAME.bad`` with its reason, the others
      are restored (and the warning says so);
    - a torn or corrupt file (not JSON, checksum) is moved aside to ``NAME.bad`` and the last
      good copy (``NAME.prev``) used instead;
    - format 1 has no checksum: its records are type-checked, and it is rewritten as the
      current format at once (with one);
    - a newer format is kept as it is in ``NAME.newer`` and the records this version
      understands (type-checked) are restored.
    """
    p = Path(path)
    bad: list[tuple[object, str]] = []
    problem = ""
    try:
        recs, version = parse(_read(p), bad)
    except FileNotFoundError:
        return [], None  # removed on purpose (or never written): nothing to resurrect
    except StateTooNew as e:
        return _load_newer(p, str(e))
    except (OSError, StateError, UnicodeDecodeError) as e:
        problem = str(e) if not isinstance(e, UnicodeDecodeError) else f"not UTF-8 ({e.reason}): corrupt"
        if not isinstance(e, OSError):
            badp = p.with_name(p.name + ".bad")
            os.replace(p, badp)
            problem += f" (kept as {badp})"
    else:
        notes = []
        if bad:
            where = _set_aside(p, bad)
            notes.append(f"{_plural(len(bad), 'bad record')} set aside in {where} ({bad[0][1]}); "
                         f"{len(recs)} restored")
        if version < STATE_VERSION:
            log.info("state file %s has format %d (no checksum): records type-checked, rewritten as format %d",
                     p, version, STATE_VERSION)
        if bad or version < STATE_VERSION:
            save(path, recs)
        if notes:
            msg = f"state file {p}: " + "; ".join(notes)
            log.error("%s", msg)
            return recs, msg
        return recs, None
    prev = previous_path(path)
    try:
        recs, _ = parse(_read(prev), bad)
    except (OSError, StateError, UnicodeDecodeError) as e:
        msg = f"state file {p}: {problem}; the last good copy {prev} cannot be used either ({e}): starting empty"
        log.error("%s", msg)
        return [], msg
    msg = f"state file {p}: {problem}; restored the last good copy {prev} ({len(recs)} children)"
    log.error("%s", msg)
    return recs, msg


def _plural(n: int, one: str) -> str:
    return f"{n} {one if n == 1 else one + 's'}"


def _read(p: Path) -> str:
    """The file's text (refusing a symlink: the state file is ours, not a pointer elsewhere)."""
    fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        return f.read().decode()


def _load_newer(p: Path, why: str) -> tuple[list[LinkRecord], str | None]:
    """A newer pymacvlan's file: kept whole in ``NAME.newer``; what this version understands restored."""
    keep = p.with_name(p.name + ".newer")
    if not keep.exists():
        os.link(p, keep)
    bad: list[tuple[object, str]] = []
    try:
        data = json.loads(_read(p))
        recs = _records(data["links"], bad) if isinstance(data, dict) and isinstance(data.get("links"), list) else []
    except (ValueError, RecursionError, OSError):
        recs = []
    msg = (f"state file {p}: {why}; kept as {keep}; restored what this version understands: "
           f"{_plural(len(recs), 'record')}"
           + (f", {len(bad)} not" if bad else ""))
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
        except (OSError, StateError, UnicodeDecodeError):
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
    tmp.unlink(missing_ok=True)  # a crashed run of the same PID: a name, never followed
    # O_EXCL|O_NOFOLLOW: never write through a symlink or into a file someone placed there
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
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
