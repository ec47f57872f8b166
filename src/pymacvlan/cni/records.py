"""Attachment records: what ADD made, so DEL, GC and hostAccess touch only that.

One file per attachment under ``stateDir/NETWORK/CONTAINERID-IFNAME.json``: the container ID,
interface, namespace path, backend, master, addresses, the config it was made with, and the
child's identity (:class:`pymacvlan.identity.DeviceIdentity`: the namespace's nsfs inode, the
ifindex, kind and MAC, read through a socket bound in the pod's namespace right after ADD).

A namespace path is not an identity (``/proc/PID/ns/net`` names another namespace once the PID
is reused), nor is an interface name: GC and DEL delete a child only when the device found
there has the recorded identity (:func:`delete_child`). Records are type-checked when read; a
record that does not check is reported and left alone (never acted on).
"""

from __future__ import annotations

import errno
import json
import os
import sys
from dataclasses import dataclass
from typing import Any

from .. import identity

#: 2: with the child's identity (records of format 1 have none: GC deletes no link for them)
FORMAT = 2
NSFS_MAGIC = 0x6E736673


def log(msg: str) -> None:
    sys.stderr.write(f"pymacvlan-cni: {msg}\n")


@dataclass
class Record:
    container_id: str
    ifname: str
    netns: str
    backend: str
    master: str
    addresses: list[str]
    config: str
    identity: identity.DeviceIdentity | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "containerID": self.container_id, "ifname": self.ifname, "netns": self.netns,
                "backend": self.backend, "master": self.master, "addresses": self.addresses,
                "config": self.config, "identity": self.identity.to_dict() if self.identity else None}

    @classmethod
    def from_dict(cls, d: Any) -> Record:
        """Type-checked: ValueError naming the first field that is wrong."""
        if not isinstance(d, dict):
            raise ValueError("a record must be a JSON object")
        for key in ("containerID", "ifname", "netns", "backend", "master", "config"):
            if not isinstance(d.get(key, ""), str):
                raise ValueError(f"{key} must be a string")
        addrs = d.get("addresses", [])
        if not isinstance(addrs, list) or not all(isinstance(a, str) for a in addrs):
            raise ValueError("addresses must be a list of strings")
        if not d.get("containerID") or not d.get("ifname"):
            raise ValueError("containerID and ifname are required")
        ident = d.get("identity")
        return cls(d["containerID"], d["ifname"], d.get("netns", ""), d.get("backend", "kernel") or "kernel",
                   d.get("master", ""), list(addrs), d.get("config", ""),
                   identity.DeviceIdentity.from_dict(ident) if ident is not None else None)


def record_dir(state_dir: str, network: str) -> str:
    return os.path.join(state_dir, network)


def record_path(state_dir: str, network: str, container_id: str, ifname: str) -> str:
    return os.path.join(record_dir(state_dir, network), f"{container_id}-{ifname}.json")


def write(state_dir: str, network: str, rec: Record) -> None:
    """Atomically (a temporary file made with O_EXCL|O_NOFOLLOW, then renamed)."""
    d = record_dir(state_dir, network)
    os.makedirs(d, mode=0o700, exist_ok=True)
    path = record_path(state_dir, network, rec.container_id, rec.ifname)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(rec.to_dict(), f)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read(state_dir: str, network: str, container_id: str, ifname: str) -> Record | None:
    """The record of one attachment; None when there is none or it does not check (said once)."""
    path = record_path(state_dir, network, container_id, ifname)
    try:
        return _load(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        log(f"ignoring attachment record {os.path.basename(path)}: {e}")
        return None


def _load(path: str) -> Record:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        raw = f.read(1 << 20)
    try:
        return Record.from_dict(json.loads(raw))
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8: {e.reason}") from None


def read_all(state_dir: str, network: str) -> list[Record]:
    out = []
    d = record_dir(state_dir, network)
    try:
        names = sorted(os.listdir(d))
    except (FileNotFoundError, NotADirectoryError):
        return []
    for name in names:
        if name.endswith(".json"):
            try:
                out.append(_load(os.path.join(d, name)))
            except (OSError, ValueError) as e:
                log(f"ignoring attachment record {name}: {e}")
    return out


def drop(state_dir: str, network: str, container_id: str, ifname: str) -> None:
    try:
        os.unlink(record_path(state_dir, network, container_id, ifname))
    except FileNotFoundError:
        pass


# -- the child, by identity -------------------------------------------------------------------------------
def is_netns(path: str) -> bool:
    """The path is a network namespace file (nsfs, as ns.GetNS requires)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return _nstype(fd) == 0x40000000  # CLONE_NEWNET
    except OSError:  # ENOTTY: not an nsfs file
        return False
    finally:
        os.close(fd)


def _nstype(fd: int) -> int:
    """NS_GET_NSTYPE: only nsfs files answer it."""
    import fcntl

    return fcntl.ioctl(fd, 0xB703)


def child_identity(ifname: str, netns: str) -> identity.DeviceIdentity:
    """The child as its namespace sees it, read through a socket bound there."""
    from ..netns import in_netns

    with in_netns(netns):
        ipr = identity.open_ipr(None)
    try:
        return identity.read(ipr, ifname=ifname)
    finally:
        ipr.close()


def delete_child(ifname: str, netns: str, expect: identity.DeviceIdentity | None,
                 kinds: tuple[str, ...] = ("macvlan",)) -> bool:
    """Delete the child ``ifname`` in ``netns`` only if it is provably the one ADD made.

    With a recorded identity: the namespace's inode, the ifindex, kind and MAC must match (a
    reused PID's namespace, a renamed or replaced device: nothing is deleted, and said so).
    Without one (a record of format 1, or none): only a device of one of ``kinds`` in a
    namespace other than the plugin's own. Returns whether something was deleted; False also
    when it (or the namespace) is already gone."""
    if not netns or not os.path.exists(netns):
        return False
    if not is_netns(netns):
        raise identity.IdentityError(errno.EINVAL, f"{netns!r} is not a network namespace file: not deleting "
                                     f"{ifname!r} there")
    from ..netns import in_netns

    with in_netns(netns):
        ipr = identity.open_ipr(None)
    try:
        ns = identity.socket_netns(ipr)
        if expect is not None:
            if ns != expect.netns:
                log(f"not deleting {ifname} in {netns}: that path is another namespace now (inode {ns}, "
                    f"recorded {expect.netns})")
                return False
            try:
                identity.check(ipr, expect, "delete")
            except identity.IdentityError as e:
                if e.errno == errno.ENODEV:
                    return False
                log(str(e))
                return False
            ipr.link("del", index=expect.ifindex)
            return True
        if ns == identity.netns_ino("/proc/self/ns/net"):
            log(f"not deleting {ifname}: {netns} is the plugin's own (host) namespace and no record says "
                "pymacvlan made it")
            return False
        try:
            have = identity.read(ipr, ifname=ifname)
        except identity.IdentityError:
            return False
        if have.kind not in kinds:
            log(f"not deleting {have.describe()}: a {have.kind or 'device without a kind'}, not "
                f"{' or '.join(kinds)}, and no record says pymacvlan made it")
            return False
        ipr.link("del", index=have.ifindex)
        return True
    finally:
        ipr.close()
