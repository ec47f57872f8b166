"""iproute2's way of naming link state, shared by every backend's `show`."""

from __future__ import annotations


def operstate(up: bool, carrier: bool, lower_in_netns: bool = False) -> str:
    """rfc2863 operstate. Without carrier the kernel says LOWERLAYERDOWN only when it finds
    the lower device in the device's own namespace; a child in a namespace of its own (a
    container's, or each child of the kernel backend) and a veth whose peer lives elsewhere
    say DOWN, as a NIC does."""
    if not up:
        return "DOWN"
    if carrier:
        return "UP"
    return "LOWERLAYERDOWN" if lower_in_netns else "DOWN"


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
