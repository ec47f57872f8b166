"""iproute2's way of naming link state, shared by every backend's `show`."""

from __future__ import annotations


def operstate(up: bool, carrier: bool) -> str:
    """rfc2863 operstate of a stacked device (veth or macvlan: iflink != ifindex)."""
    if not up:
        return "DOWN"
    return "UP" if carrier else "LOWERLAYERDOWN"


def link_flags(up: bool, carrier: bool, promisc: bool = False, allmulti: bool = False) -> list[str]:
    """print_link_flags() of iproute2, without M-DOWN; PROMISC/ALLMULTI are the user's flags."""
    flags = ["NO-CARRIER"] if up and not carrier else []
    flags += ["BROADCAST", "MULTICAST"]
    if allmulti:
        flags.append("ALLMULTI")
    if promisc:
        flags.append("PROMISC")
    if up:
        flags.append("UP")
        if carrier:
            flags.append("LOWER_UP")
    return flags
