"""ip_check_defrag() for the multicast receive path (IP_DEFRAG_MACVLAN).

macvlan reassembles IPv4 multicast fragments before flooding them, so every child gets
whole datagrams. While a datagram is incomplete its fragments are consumed (nobody,
the parent included, sees them). No clock: the kernel's 30 s expiry is left to callers.
"""

from __future__ import annotations

import struct


def _ipv4_checksum(header: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


class Defragmenter:
    def __init__(self) -> None:
        self.queues: dict[bytes, list[tuple[int, bytes, bool, bytes]]] = {}

    @staticmethod
    def is_fragment(frame: bytes) -> bool:
        if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[14] >> 4 != 4:
            return False
        return bool(struct.unpack_from("!H", frame, 20)[0] & 0x3FFF)

    def add(self, frame: bytes) -> bytes | None:
        """Take a fragment; return the reassembled frame once complete, else None."""
        ihl = (frame[14] & 0x0F) * 4
        total_len = struct.unpack_from("!H", frame, 16)[0]
        frag = struct.unpack_from("!H", frame, 20)[0]
        key = frame[26:34] + frame[18:20] + frame[23:24]
        payload = frame[14 + ihl:14 + total_len]
        q = self.queues.setdefault(key, [])
        q.append(((frag & 0x1FFF) * 8, payload, bool(frag & 0x2000), frame))
        last = [off + len(p) for off, p, mf, _ in q if not mf]
        if not last:
            return None
        end = last[0]
        data = bytearray(end)
        covered = bytearray(end)
        first = None
        for off, p, _, f in sorted(q, key=lambda e: e[0]):
            if off == 0:
                first = f
            chunk = p[: max(0, end - off)]
            data[off:off + len(chunk)] = chunk
            covered[off:off + len(chunk)] = b"\x01" * len(chunk)
        if first is None or 0 in covered:
            return None
        del self.queues[key]
        fihl = (first[14] & 0x0F) * 4
        hdr = bytearray(first[14:14 + fihl])
        struct.pack_into("!HHH", hdr, 2, fihl + end, struct.unpack_from("!H", hdr, 4)[0], 0)
        hdr[10:12] = b"\x00\x00"
        hdr[10:12] = struct.pack("!H", _ipv4_checksum(bytes(hdr)))
        return frame[:14] + bytes(hdr) + bytes(data)
