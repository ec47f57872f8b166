"""A minimal pcapng writer: Ethernet frames with a comment each (`trace --pcap`).

pcapng (draft-ietf-opsawg-pcapng): a Section Header Block, one Interface Description Block
per interface (here: per parent, created on first use), then one Enhanced Packet Block per
frame carrying ``opt_comment`` (option 1), which Wireshark shows as the packet comment and
tshark prints as ``frame.comment``. Every block is flushed, so a trace stopped with Ctrl-C
leaves a file that opens. Written by hand: scapy (a test-only dependency here) is the only
well-kept library that writes pcapng, and it cannot attach comments to packets.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

SHB, IDB, EPB = 0x0A0D0D0A, 0x00000001, 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D
LINKTYPE_ETHERNET = 1
OPT_ENDOFOPT, OPT_COMMENT, IF_NAME = 0, 1, 2


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def _options(*opts: tuple[int, bytes]) -> bytes:
    out = b"".join(struct.pack("<HH", code, len(value)) + _pad(value) for code, value in opts)
    return out + struct.pack("<HH", OPT_ENDOFOPT, 0) if out else b""


def _block(kind: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", kind, length) + body + struct.pack("<I", length)


class PcapngWriter:
    """Writes to an open binary file; :meth:`add` one frame at a time."""

    def __init__(self, f: BinaryIO, application: str = "pymacvlan trace") -> None:
        self.f = f
        self.interfaces: dict[str, int] = {}
        shb = struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1) + _options((4, application.encode()))  # shb_userappl
        self._write(_block(SHB, shb))

    def _write(self, data: bytes) -> None:
        self.f.write(data)
        self.f.flush()

    def _interface(self, name: str) -> int:
        if name not in self.interfaces:
            body = struct.pack("<HHI", LINKTYPE_ETHERNET, 0, 0) + _options((IF_NAME, name.encode()))
            self._write(_block(IDB, body))
            self.interfaces[name] = len(self.interfaces)
        return self.interfaces[name]

    def add(self, frame: bytes, when: float, comment: str, interface: str = "trace") -> None:
        """One frame seen at ``when`` (seconds since the epoch, microsecond resolution)."""
        iface = self._interface(interface)
        usec = int(round(when * 1_000_000))
        body = struct.pack("<IIIII", iface, usec >> 32, usec & 0xFFFFFFFF, len(frame), len(frame))
        body += _pad(frame) + _options((OPT_COMMENT, comment.encode()))
        self._write(_block(EPB, body))
