"""Thin wrappers over the Linux calls the userspace datapath needs, with ctypes and struct
(public: the daemon, the test labs and the benchmarks use them too; namespaces are
:mod:`pymacvlan.netns`'s, re-exported here).

Everything here is control-path code (creation, configuration); nothing is called per frame.
Values come from the uapi headers: ``linux/if_packet.h``, ``linux/if_tun.h``,
``linux/sockios.h``, ``linux/if.h``, ``linux/virtio_net.h``.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket
import struct

_libc = ctypes.CDLL(None, use_errno=True)

# -- namespaces -------------------------------------------------------------------------
from ...netns import NETNS_DIR, in_netns, netns_inode, netns_path  # noqa: E402, F401 (re-exported)

IFNAMSIZ = 16

# -- AF_PACKET (linux/if_packet.h) ------------------------------------------------------------
ETH_P_ALL = 0x0003
from ...model.constants import ETH_P_8021Q  # noqa: E402, F401 (re-exported for parent.py)

ETH_P_8021AD = 0x88A8
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_DROP_MEMBERSHIP = 2
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_COPY_THRESH = 7
PACKET_AUXDATA = 8
PACKET_VERSION = 10
PACKET_RESERVE = 12
PACKET_TX_RING = 13
PACKET_LOSS = 14
PACKET_VNET_HDR = 15
PACKET_QDISC_BYPASS = 20
PACKET_IGNORE_OUTGOING = 23
PACKET_MR_MULTICAST = 0
PACKET_MR_PROMISC = 1
PACKET_MR_ALLMULTI = 2
PACKET_MR_UNICAST = 3
TPACKET_V2 = 1
TPACKET_V3 = 2
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_COPY = 2
TP_STATUS_LOSING = 4
TP_STATUS_CSUMNOTREADY = 8
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40
TP_STATUS_AVAILABLE = 0
TP_STATUS_SEND_REQUEST = 1
TP_STATUS_SENDING = 2
TP_STATUS_WRONG_FORMAT = 4
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
PACKET_OUTGOING = 4

# -- TUN/TAP (linux/if_tun.h) ------------------------------------------------------------------
TUN_DEV = "/dev/net/tun"
IFF_TAP = 0x0002
IFF_NO_CARRIER = 0x0040
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
IFF_TUN_EXCL = 0x8000
TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
TUNSETOFFLOAD = 0x400454D0
TUNGETIFF = 0x800454D2
TUNSETSNDBUF = 0x400454D4
TUNSETVNETHDRSZ = 0x400454D8
TUNSETCARRIER = 0x400454E2
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08
TUN_F_UFO = 0x10
TUN_F_USO4 = 0x20
TUN_F_USO6 = 0x40
#: what the datapath accepts from its TAPs: checksum offload, TCP and UDP segmentation
TUN_OFFLOADS_ALL = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN | TUN_F_USO4 | TUN_F_USO6

# -- netdevice ioctls (linux/sockios.h, linux/if.h) ----------------------------------------------
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCGIFMTU = 0x8921
SIOCSIFMTU = 0x8922
SIOCSIFHWADDR = 0x8924
SIOCGIFHWADDR = 0x8927
SIOCGIFINDEX = 0x8933
IFF_UP = 0x1
IFF_BROADCAST = 0x2
IFF_RUNNING = 0x40
IFF_NOARP = 0x80
IFF_PROMISC = 0x100
IFF_ALLMULTI = 0x200
IFF_MULTICAST = 0x1000
IFF_LOWER_UP = 0x10000
ARPHRD_ETHER = 1

# -- virtio_net_hdr (linux/virtio_net.h), little-endian on this host -------------------------------
VNET_HDR_LEN = 10
VNET_HDR = struct.Struct("<BBHHHH")
ZERO_VNET_HDR = bytes(VNET_HDR_LEN)
VIRTIO_NET_HDR_F_NEEDS_CSUM = 1
VIRTIO_NET_HDR_F_DATA_VALID = 2
VIRTIO_NET_HDR_GSO_NONE = 0
VIRTIO_NET_HDR_GSO_TCPV4 = 1
VIRTIO_NET_HDR_GSO_UDP = 3
VIRTIO_NET_HDR_GSO_TCPV6 = 4
VIRTIO_NET_HDR_GSO_UDP_L4 = 5
VIRTIO_NET_HDR_GSO_ECN = 0x80


def raise_errno(what: str) -> None:
    err = ctypes.get_errno()
    raise OSError(err, f"{what}: {os.strerror(err)}")


def ifreq(name: str, payload: bytes = b"") -> bytearray:
    """struct ifreq: 16-byte name, then a 24-byte union."""
    raw = name.encode()
    if not 0 < len(raw) < IFNAMSIZ:
        raise ValueError(f"interface name {name!r} must be 1..15 bytes")
    buf = bytearray(40)
    buf[: len(raw)] = raw
    buf[16: 16 + len(payload)] = payload
    return buf


class NetdevCtl:
    """netdevice(7) ioctls on one namespace, through a datagram socket made inside it."""

    def __init__(self, netns: str | None = None) -> None:
        with in_netns(netns):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.netns = netns

    def close(self) -> None:
        self.sock.close()

    def _ioctl(self, req: int, buf: bytearray) -> bytearray:
        fcntl.ioctl(self.sock.fileno(), req, buf)
        return buf

    def ifindex(self, name: str) -> int | None:
        try:
            return struct.unpack_from("i", self._ioctl(SIOCGIFINDEX, ifreq(name)), 16)[0]
        except OSError as e:
            if e.errno == errno.ENODEV:
                return None
            raise

    def get_flags(self, name: str) -> int:
        return struct.unpack_from("H", self._ioctl(SIOCGIFFLAGS, ifreq(name)), 16)[0]

    def set_flags(self, name: str, set_bits: int = 0, clear_bits: int = 0) -> None:
        flags = (self.get_flags(name) | set_bits) & ~clear_bits
        self._ioctl(SIOCSIFFLAGS, ifreq(name, struct.pack("H", flags & 0xFFFF)))

    def get_mtu(self, name: str) -> int:
        return struct.unpack_from("i", self._ioctl(SIOCGIFMTU, ifreq(name)), 16)[0]

    def set_mtu(self, name: str, mtu: int) -> None:
        self._ioctl(SIOCSIFMTU, ifreq(name, struct.pack("i", mtu)))

    def get_mac(self, name: str) -> bytes:
        return bytes(self._ioctl(SIOCGIFHWADDR, ifreq(name))[18:24])

    def set_mac(self, name: str, mac: bytes) -> None:
        self._ioctl(SIOCSIFHWADDR, ifreq(name, struct.pack("H", ARPHRD_ETHER) + mac))


def write_sysctl(netns: str | None, path: str, value: str) -> bool:
    """Write /proc/sys/... as seen from ``netns``; False if it does not exist there.

    /proc/sys/net is per network namespace and resolved at open() time by the opening
    thread, which is why the open happens inside :func:`in_netns`.
    """
    with in_netns(netns):
        try:
            fd = os.open("/proc/sys/" + path, os.O_WRONLY)
        except FileNotFoundError:
            return False
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)
    return True


def read_proc_net(netns: str | None, name: str) -> str:
    """/proc/thread-self/net/NAME of ``netns`` (e.g. dev_mcast)."""
    with in_netns(netns):
        fd = os.open(f"/proc/thread-self/net/{name}", os.O_RDONLY)
    try:
        chunks = []
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            chunks.append(b)
    finally:
        os.close(fd)
    return b"".join(chunks).decode()


def mac_bytes(mac: str | bytes) -> bytes:
    if isinstance(mac, bytes):
        if len(mac) != 6:
            raise ValueError("a MAC address has 6 bytes")
        return mac
    parts = mac.split(":")
    if len(parts) != 6:
        raise ValueError(f"bad MAC address {mac!r}")
    return bytes(int(p, 16) for p in parts)
