"""The control socket's wire: JSON lines, and LinkRequest / LinkChange as JSON objects.

One module for both ends (:mod:`.server` and :mod:`.client`), so what one writes the other
reads; it imports neither.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
from collections.abc import Callable
from typing import Any, TypeVar

from ..model import KernelError, MacaddrMode, MacvlanFlag, Mode, mac_str, parse_mac
from ..model.link import LinkChange, LinkRequest

PROTOCOL_VERSION = 1
DEFAULT_SOCKET = "/run/pymacvlan/control.sock"
DEFAULT_STATE = "/var/lib/pymacvlan/state.json"
#: a request line longer than this is refused (EMSGSIZE) and its peer dropped
MAX_REQUEST = 1 << 20


def socket_path(path: str | None = None) -> str:
    """The control socket: ``path`` (``--socket``), else ``$PYMACVLAN_SOCKET``, else the default."""
    return path or os.environ.get("PYMACVLAN_SOCKET") or DEFAULT_SOCKET


# -- lines ---------------------------------------------------------------------------------------------
def dump_line(obj: dict) -> bytes:
    """One message: compact JSON and a newline."""
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def load_line(line: bytes) -> dict:
    """One message back; anything but a JSON object is EINVAL."""
    try:
        obj = json.loads(line)
    except ValueError as e:  # also bytes that are not UTF-8
        raise KernelError("EINVAL", f"bad request: {e}", "a request is one JSON object per line") from None
    except RecursionError:
        raise KernelError("EINVAL", "bad request: nested too deeply", "a request is one JSON object per line") from None
    if not isinstance(obj, dict):
        raise KernelError("EINVAL", "bad request: a request is a JSON object")
    return obj


class LineReader:
    """Bytes in, whole lines out; a partial line longer than ``limit`` is EMSGSIZE."""

    def __init__(self, limit: int | None = None) -> None:
        self.buf = bytearray()
        self.limit = limit

    def feed(self, data: bytes) -> list[bytes]:
        self.buf += data
        lines = []
        while True:
            i = self.buf.find(b"\n")
            if i < 0:
                break
            if self.limit is not None and i > self.limit:
                self._too_long()
            lines.append(bytes(self.buf[:i]))
            del self.buf[:i + 1]
        if self.limit is not None and len(self.buf) > self.limit:
            self._too_long()
        return lines

    def _too_long(self) -> None:
        raise KernelError("EMSGSIZE", f"request line longer than {self.limit} bytes",
                          "a request is one JSON object per line, well under the limit; the connection is closed")


# -- LinkRequest / LinkChange ----------------------------------------------------------------------------
def encode(obj: LinkRequest | LinkChange) -> dict:
    """A LinkRequest or LinkChange as JSON: MACs as text, enums as their netlink values,
    unset (None / empty) fields left out."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if v is None or (isinstance(v, list) and not v):
            continue
        if isinstance(v, (bytes, bytearray)):
            v = mac_str(bytes(v))
        elif isinstance(v, list):
            v = [mac_str(bytes(m)) if isinstance(m, (bytes, bytearray)) else m for m in v]
        elif isinstance(v, enum.Enum):
            v = int(v.value)
        out[f.name] = v
    return out


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "address": parse_mac,
    "macaddrs": lambda v: [parse_mac(m) for m in v],
    "mode": Mode,
    "flags": MacvlanFlag,
    "macaddr_mode": MacaddrMode,
}

T = TypeVar("T", LinkRequest, LinkChange)


def decode(cls: type[T], data: Any) -> T:
    """Inverse of :func:`encode`; an unknown key or a bad value is EINVAL, not a crash."""
    if not isinstance(data, dict):
        raise KernelError("EINVAL", f"expected an object for {cls.__name__}, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    kw = {}
    for k, v in data.items():
        if k not in names:
            raise KernelError("EINVAL", f"unknown {cls.__name__} field {k!r}",
                              "the client and the daemon may be different versions")
        try:
            kw[k] = _DECODERS[k](v) if k in _DECODERS and v is not None else v
        except (ValueError, TypeError) as e:
            raise KernelError("EINVAL", f"bad {k}: {e}") from None
    try:
        return cls(**kw)
    except TypeError as e:
        raise KernelError("EINVAL", str(e)) from None
