"""The userspace link driver: a client of the ``pymacvlan daemon`` control socket.

The daemon owns the datapath (AF_PACKET parent, TAP children, macvtap endpoints); this
driver only sends it JSON-line requests (see :mod:`pymacvlan.backends.userspace.daemon`).
The socket is ``--socket``/``socket_path``, else ``$PYMACVLAN_SOCKET``, else
``/run/pymacvlan/control.sock``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from typing import Any, Iterator

from ..model import KernelError
from . import LinkChange, LinkRequest

DEFAULT_SOCKET = "/run/pymacvlan/control.sock"


def socket_path(path: str | None = None) -> str:
    return path or os.environ.get("PYMACVLAN_SOCKET") or DEFAULT_SOCKET


class Connection:
    """One connection to the daemon: request/reply lines, or a stream of trace events."""

    def __init__(self, path: str, timeout: float | None = 60.0) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            self.sock.close()
            raise KernelError("ECONNREFUSED", f"no pymacvlan daemon is listening on {path}",
                              "start one as root with `pymacvlan daemon` (or point --socket / "
                              "$PYMACVLAN_SOCKET at the one running)") from None
        except PermissionError:
            self.sock.close()
            raise KernelError("EACCES", f"not allowed to connect to {path}",
                              "the control socket is root-only (mode 0600): run as root") from None
        self._buf = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def send(self, obj: dict) -> None:
        try:
            self.sock.sendall(json.dumps(obj).encode() + b"\n")
        except OSError as e:
            raise KernelError("ECONNRESET", f"the daemon on {self.path} went away: {e}",
                              "check its log (journalctl -u pymacvlan, or its stderr)") from None

    def recv(self) -> dict | None:
        """The next line as an object; None when the daemon closed the connection."""
        while b"\n" not in self._buf:
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise KernelError("ETIMEDOUT", f"the daemon on {self.path} did not answer",
                                  "it may be stuck; check its log") from None
            except OSError as e:
                raise KernelError("ECONNRESET", f"the daemon on {self.path} went away: {e}") from None
            if not chunk:
                return None
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return json.loads(line)

    def call(self, obj: dict) -> dict:
        try:
            self.send(obj)
        except KernelError:
            reply = self.recv()  # a refusal (EPERM) is sent before the daemon hangs up
            if reply is None:
                raise
        else:
            reply = self.recv()
        if reply is None:
            raise KernelError("ECONNRESET", f"the daemon on {self.path} closed the connection",
                              "check its log")
        if not reply.get("ok"):
            raise KernelError(reply.get("errno", "EIO"), reply.get("message", "refused"), reply.get("advice", ""))
        return reply


class Driver:
    """:class:`~pymacvlan.links.LinkDriver` over the daemon's control socket."""

    backend = "userspace"

    def __init__(self, socket_path: str | None = None, timeout: float = 60.0, netns: str | None = None,
                 **_kw: Any) -> None:
        self.socket_path = globals()["socket_path"](socket_path)
        self.timeout = timeout
        #: `pymacvlan -n NS link ...`: the namespace this driver works in (children's, here)
        self.netns = netns

    def _call(self, obj: dict) -> dict:
        with Connection(self.socket_path, self.timeout) as c:
            return c.call(obj)

    def add(self, req: LinkRequest) -> None:
        from ..backends.userspace.daemon import encode

        if req.netns is None and self.netns is not None:
            req = dataclasses.replace(req, netns=self.netns)
        self._call({"op": "link.add", "req": encode(req)})

    def set(self, name: str, change: LinkChange, netns: str | None = None) -> None:
        from ..backends.userspace.daemon import encode

        self._call({"op": "link.set", "name": name, "change": encode(change),
                    "netns": netns or self.netns})

    def delete(self, name: str, netns: str | None = None) -> None:
        self._call({"op": "link.del", "name": name, "netns": netns or self.netns})

    def show(self, name: str | None = None, kind: str | None = None, netns: str | None = None) -> list[dict]:
        return self._call({"op": "link.show", "name": name, "kind": kind,
                           "netns": netns or self.netns})["links"]

    def stats(self, name: str | None = None, netns: str | None = None) -> dict:
        """Datapath counters, engine drops by reason and per-child stats64, per parent."""
        reply = self._call({"op": "stats", "name": name, "netns": netns or self.netns})
        return {"daemon": reply.get("daemon", {}), "parents": reply.get("parents", {})}

    def trace(self, mac: str | None = None, ethertype: str | int | None = None,
              child: str | None = None) -> Iterator[dict]:
        """Explained frames matching the filter, as the daemon sees them, until closed."""
        c = Connection(self.socket_path, None)
        try:
            c.call({"op": "trace", "mac": mac, "ethertype": ethertype, "child": child})
            while True:
                ev = c.recv()
                if ev is None:
                    return
                yield ev
        finally:
            c.close()
