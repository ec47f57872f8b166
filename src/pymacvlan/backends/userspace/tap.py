"""TAP devices: the netdev a macvlan child is in userspace.

A child is a TAP opened on /dev/net/tun with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR, created
(open() and TUNSETIFF both inside the target namespace, since the tun file takes the
namespace current at open()) with the name the user asked for.

- Persistence (``persist=True``, the daemon): TUNSETPERSIST keeps the device when the fd
  closes, so a restart or a crash of the daemon keeps the child's addresses, routes and
  neighbours; the kernel turns its carrier off while no fd is attached (__tun_detach), and
  frames its stack sends then are dropped and counted by the TAP (tx_dropped). The next
  daemon re-attaches (``adopt=IFINDEX``: the device must still have that name *and* index
  in that namespace, so a stranger's device of the same name is never taken over).
  :meth:`Tap.close` with ``remove=True`` clears the flag first: the device vanishes.
  Without persistence the TAP disappears with the fd, so a crash leaves nothing behind.

- TUNSETVNETHDRSZ 10: the same virtio_net_hdr as PACKET_VNET_HDR on the parent, so buffers
  pass between them unchanged.
- TUNSETOFFLOAD CSUM|TSO4|TSO6|TSO_ECN|USO4|USO6: the child's stack may hand us partial
  checksums and 64 KB GSO frames, which go to the parent (or another TAP) as they are.
- MAC by SIOCSIFHWADDR on the tun fd, MTU by SIOCSIFMTU in the namespace.
- Carrier by TUNSETCARRIER: the TAP starts with IFF_NO_CARRIER and then copies the parent's
  carrier, as netif_stacked_transfer_operstate() does for a macvlan.
- The fd is non-blocking: one read() returns one frame, EAGAIN when the queue is empty.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from dataclasses import dataclass

from ._sys import (
    ARPHRD_ETHER,
    IFF_NO_CARRIER,
    IFF_NO_PI,
    IFF_TAP,
    IFF_TUN_EXCL,
    IFF_UP,
    IFF_VNET_HDR,
    SIOCSIFHWADDR,
    TUN_DEV,
    TUN_OFFLOADS_ALL,
    TUNSETCARRIER,
    TUNSETIFF,
    TUNSETOFFLOAD,
    TUNSETPERSIST,
    TUNSETSNDBUF,
    TUNSETVNETHDRSZ,
    VNET_HDR_LEN,
    NetdevCtl,
    ifreq,
    in_netns,
    netns_inode,
)

__all__ = ["Tap", "TapConfig"]


@dataclass
class TapConfig:
    name: str
    netns: str | None = None
    mac: bytes | None = None
    mtu: int | None = None
    vnet_hdr: bool = True
    offloads: int = TUN_OFFLOADS_ALL
    #: bring the TAP administratively up right away (children normally wait for the user)
    up: bool = False
    carrier: bool = False
    sndbuf: int | None = None
    #: outlive the fd (TUNSETPERSIST): the daemon's children survive its restarts
    persist: bool = False
    #: re-attach to the persistent TAP of this name that has this ifindex (a restart)
    adopt: int | None = None
    #: the fd is handed to a client (a tapfd macvtap): on adoption the client may still hold
    #: the TAP's only queue, and the device is then adopted without an fd (``held_elsewhere``)
    shared: bool = False


class ChildNetdev:
    """What a macvlan child's netdev (a TAP, a veth pair's inner end) answers alike: the device
    named ``self.name`` in ``self.netns``, reached through ``self.ctl``."""

    name: str
    netns: str | None
    netns_ino: int | None
    ctl: NetdevCtl

    def mac(self) -> bytes:
        return self.ctl.get_mac(self.name)

    def set_admin_up(self, up: bool) -> None:
        if up:
            self.ctl.set_flags(self.name, set_bits=IFF_UP)
        else:
            self.ctl.set_flags(self.name, clear_bits=IFF_UP)

    def flags(self) -> int:
        return self.ctl.get_flags(self.name)

    def netns_still_named(self) -> bool:
        """The namespace the device was created in is still reachable under its name.

        A TAP fd holds a reference on its namespace, so ``ip netns del`` only removes the
        name: the namespace (and the TAP in it) lives on until we close the fd. The datapath
        checks this to let such a namespace die instead of keeping it alive forever.
        """
        if self.netns is None:
            return True
        return netns_inode(self.netns) == self.netns_ino


class Tap(ChildNetdev):
    """One TAP device and its fd."""

    def __init__(self, cfg: TapConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.netns = cfg.netns
        self.netns_ino = netns_inode(cfg.netns)
        self.vnet_hdr = cfg.vnet_hdr
        self.ctl = NetdevCtl(cfg.netns)
        fd = -1
        try:
            where = f" in namespace {cfg.netns}" if cfg.netns else ""
            found = self.ctl.ifindex(cfg.name)
            if cfg.adopt is not None and found != cfg.adopt:
                raise OSError(errno.ENODEV if found is None else errno.EEXIST,
                              f"{cfg.name}{where} is no longer the TAP with ifindex {cfg.adopt}"
                              + ("" if found is None else f" (ifindex {found} has the name now)"))
            if cfg.adopt is None and found is not None:
                # TUNSETIFF would attach to an existing persistent TAP: never take over a device
                raise OSError(errno.EEXIST, f"a device named {cfg.name!r} already exists{where}")
            with in_netns(cfg.netns):
                fd = os.open(TUN_DEV, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
                flags = IFF_TAP | IFF_NO_PI | IFF_NO_CARRIER | (IFF_VNET_HDR if cfg.vnet_hdr else 0)
                # a new TAP must be new (EBUSY if the name appeared meanwhile); an adopted one
                # must be a TAP (EINVAL for any other kind of device)
                req = ifreq(cfg.name, struct.pack("H", flags | (0 if cfg.adopt is not None else IFF_TUN_EXCL)))
                try:
                    fcntl.ioctl(fd, TUNSETIFF, req)
                except OSError as e:
                    if not (e.errno == errno.EBUSY and cfg.adopt is not None and cfg.shared):
                        raise
                    # a macvtap's TAP whose fd a VM still holds (its only queue): adopt the
                    # device without an fd; the datapath reaches it through its netdev
                    os.close(fd)
                    fd = -1
            self.fd = fd
            self.held_elsewhere = fd < 0
            if fd < 0:
                self.ifindex = self.ctl.ifindex(self.name)
                self.carrier = True  # the holder's queue keeps it on
                return
            got = bytes(req[:16]).split(b"\0", 1)[0].decode()
            self.name = got
            if cfg.persist:
                fcntl.ioctl(fd, TUNSETPERSIST, 1)
            if cfg.vnet_hdr:
                fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
                fcntl.ioctl(fd, TUNSETOFFLOAD, cfg.offloads)
            if cfg.sndbuf:
                fcntl.ioctl(fd, TUNSETSNDBUF, struct.pack("i", cfg.sndbuf))
            if cfg.mac is not None and (cfg.adopt is None or self.mac() != cfg.mac):
                self.set_mac(cfg.mac)  # (an address change flushes the neighbours: not on adoption)
            if cfg.mtu is not None:
                self.ctl.set_mtu(self.name, cfg.mtu)
            self.ifindex = self.ctl.ifindex(self.name)
            self.carrier = False
            if cfg.carrier:
                self.set_carrier(True)
            if cfg.up:
                self.set_admin_up(True)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            self.ctl.close()
            raise

    def fileno(self) -> int:
        return self.fd

    # -- configuration -------------------------------------------------------------------------
    def set_mac(self, mac: bytes) -> None:
        fcntl.ioctl(self.fd, SIOCSIFHWADDR, ifreq(self.name, struct.pack("H", ARPHRD_ETHER) + mac))

    def set_mtu(self, mtu: int) -> None:
        self.ctl.set_mtu(self.name, mtu)

    def set_carrier(self, on: bool) -> None:
        """TUNSETCARRIER: the child's LOWER_UP follows the parent's carrier."""
        if self.fd < 0:  # held elsewhere: the holder's attached queue decides
            return
        fcntl.ioctl(self.fd, TUNSETCARRIER, struct.pack("i", 1 if on else 0))
        self.carrier = on

    def close(self, remove: bool = True) -> None:
        """Close the fd; ``remove`` also deletes a persistent TAP (else it stays, carrier off)."""
        if self.fd >= 0:
            if remove and self.cfg.persist:
                try:
                    fcntl.ioctl(self.fd, TUNSETPERSIST, 0)
                except OSError:
                    pass  # already gone with its namespace
            os.close(self.fd)
            self.fd = -1
        self.ctl.close()
