"""Network namespaces, for every package: where a name lives, and running a block inside one.

One helper for the whole project (it replaces the userspace datapath's, the kernel backend's and
the CNI plugin's own): a namespace is given as an ``ip netns`` name (a file under /run/netns) or
as a path (``/proc/PID/ns/net``, a runtime's ``/run/netns/cni-...``, CNI_NETNS); None means
"where this thread is". Only the calling thread moves (setns acts per thread); sockets, TAP fds
and ioctls made inside keep that namespace after the block, because the kernel binds them to the
namespace current at their creation (a netlink socket belongs to the thread and namespace that
opened it). A namespace that does not exist is never created.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["CLONE_NEWNET", "NETNS_DIR", "in_netns", "netns_inode", "netns_path", "setns"]

NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


def netns_path(netns: str) -> str:
    """A namespace given by name (``ip netns`` style) or as a path (``/proc/PID/ns/net``)."""
    return netns if netns.startswith("/") else os.path.join(NETNS_DIR, netns)


def setns(fd: int, what: str = "") -> None:
    """setns(2) into the network namespace open as ``fd`` (this thread only)."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns({what}): {os.strerror(err)}" if what else os.strerror(err))


@contextmanager
def in_netns(netns: str | None) -> Iterator[None]:
    """Run the block with this thread in ``netns`` (None: stay where we are); back home after,
    also when the block raises. FileNotFoundError when the namespace does not exist."""
    if netns is None:
        yield
        return
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(netns_path(netns), os.O_RDONLY)
        try:
            setns(target, netns)
        finally:
            os.close(target)
        try:
            yield
        finally:
            setns(home, "back")
    finally:
        os.close(home)


def netns_inode(netns: str | None) -> int | None:
    """The namespace's identity (nsfs inode), to notice a name that was deleted or re-used."""
    try:
        return os.stat(netns_path(netns) if netns else "/proc/thread-self/ns/net").st_ino
    except OSError:
        return None
