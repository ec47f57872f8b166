"""A client of the daemon's control socket (what `pymacvlan link/stats/trace --backend
userspace` use); it shares :mod:`.codec` with the server and never imports it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..model import KernelError
from ..model.link import LinkChange, LinkRequest
from .codec import LineReader, dump_line, encode, load_line, socket_path

__all__ = ["Client", "Connection", "socket_path"]


class Connection:
    """One connection to the daemon: request/reply lines, or a stream of trace events."""

    def __init__(self, path: str, timeout: float | None = 60.0) -> None:
        import socket

        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            self.sock.close()
            raise KernelError("ECONNREFUSED", f"no pymacvlan daemon is listening on {path}",
                              "start one as root with `pymacvlan daemon`, or point --socket / "
                              "$PYMACVLAN_SOCKET at the one running") from None
        except PermissionError:
            self.sock.close()
            raise KernelError("EACCES", f"not allowed to connect to {path}",
                              "the control socket is root-only (mode 0600): run as root") from None
        self._reader = LineReader()
        self._lines: list[bytes] = []
        self._next_id = 1

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def send(self, obj: dict) -> None:
        try:
            self.sock.sendall(dump_line(obj))
        except OSError as e:
            raise KernelError("ECONNRESET", f"the daemon on {self.path} went away: {e}",
                              "check its log (journalctl -u pymacvlan, or its stderr)") from None

    def recv(self) -> dict | None:
        """The next line as an object; None when the daemon closed the connection."""
        while not self._lines:
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise KernelError("ETIMEDOUT", f"the daemon on {self.path} did not answer",
                                  "it may be stuck; check its log") from None
            except OSError as e:
                raise KernelError("ECONNRESET", f"the daemon on {self.path} went away: {e}") from None
            if not chunk:
                return None
            self._lines += self._reader.feed(chunk)
        return load_line(self._lines.pop(0))

    def call(self, obj: dict) -> dict:
        """Send one request (numbered: the daemon's reply, errors included, carries the id)
        and return its reply; a refusal raises the daemon's KernelError."""
        obj = {**obj, "id": self._next_id}
        self._next_id += 1
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


class Client:
    """The daemon's operations as methods, one connection per call (trace: one per stream)."""

    def __init__(self, path: str | None = None, timeout: float | None = 60.0) -> None:
        self.path = socket_path(path)
        self.timeout = timeout

    def call(self, obj: dict) -> dict:
        with Connection(self.path, self.timeout) as c:
            return c.call(obj)

    def hello(self) -> dict:
        return self.call({"op": "hello"})

    def stop(self, remove: bool = False) -> None:
        """Stop the daemon: its children stay (carrier off) unless ``remove``."""
        self.call({"op": "stop", "remove": remove})

    def link_add(self, req: LinkRequest) -> dict:
        return self.call({"op": "link.add", "req": encode(req)})["link"]

    def link_set(self, name: str, change: LinkChange, netns: str | None = None) -> None:
        self.call({"op": "link.set", "name": name, "change": encode(change), "netns": netns})

    def link_del(self, name: str, netns: str | None = None) -> None:
        self.call({"op": "link.del", "name": name, "netns": netns})

    def link_show(self, name: str | None = None, kind: str | None = None, netns: str | None = None) -> list[dict]:
        return self.call({"op": "link.show", "name": name, "kind": kind, "netns": netns})["links"]

    def stats(self, name: str | None = None, netns: str | None = None) -> dict:
        reply = self.call({"op": "stats", "name": name, "netns": netns})
        return {"daemon": reply.get("daemon", {}), "parents": reply.get("parents", {})}

    def trace(self, mac: str | None = None, ethertype: str | int | None = None,
              child: str | None = None) -> Iterator[dict]:
        """Explained frames matching the filter, as the daemon sees them, until closed."""
        c = Connection(self.path, None)
        try:
            c.call({"op": "trace", "mac": mac, "ethertype": ethertype, "child": child})
            while True:
                ev = c.recv()
                if ev is None:
                    return
                yield ev
        finally:
            c.close()
