"""Small builders shared by the engine tests: a parent 02:..:01, station 0a:..:ee."""

from __future__ import annotations

import pytest

from pymacvlan.engine import Engine
from pymacvlan.model import Mode, PacketType

LM = bytes.fromhex("020000000001")
STATION = bytes.fromhex("0a00000000ee")
BCAST = b"\xff" * 6


def mac(i: int) -> bytes:
    return bytes([2, 0, 0, 0, 0, i])


def frame(dst: bytes, src: bytes, payload: bytes = b"pmv-test", ethertype: int = 0x88B5) -> bytes:
    return dst + src + ethertype.to_bytes(2, "big") + payload


def build(*modes: str | Mode, up: bool = True, **kw) -> Engine:
    """Children A, B, C... with MACs 02:..:0a, 0b, ... in the given modes."""
    e = Engine("eth0", LM, **kw)
    for i, m in enumerate(modes):
        name = chr(ord("A") + i)
        e.add(name, mode=Mode[m.upper()] if isinstance(m, str) else m, mac=mac(0x0A + i))
        if up:
            e.set_up(name, True)
    return e


def flood_all(e: Engine, deliveries: list) -> list:
    """The deliveries of a step, the deferred queue drained as bc_work would."""
    return deliveries + e.process_bc_queue()


def names(deliveries) -> dict[str, PacketType]:
    out = {}
    for target, pkttype, _ in deliveries:
        key = getattr(target, "name", target)
        key = "L" if key == "eth0" else key
        out[key] = pkttype
    return out


@pytest.fixture
def four():
    """Spec §11 topology: A private, B vepa, C bridge, D source (empty list), all up."""
    return build("private", "vepa", "bridge", "source")
