"""veth children: a macvlan child as a veth pair with PACKET_MMAP rings on the datapath's end.

A TAP child costs one ``read()`` per frame it sends and one ``write()`` per frame it gets
(bench/RESULTS.md: the TAP system calls, not Python, bound small frames). A veth child is
instead a pair:

- the **inner end**, named as the user asked, in the child's namespace, with the child's MAC
  and MTU: what the user sees and configures (``ip link set eth0 up`` etc., followed by the
  datapath's link monitor exactly as for a TAP);
- the **outer end** (``pmv`` + 10 hex of the child's name), in the *parent's* namespace, which
  the datapath reads and writes with the same AF_PACKET socket as the parent's
  (:class:`~.parent.Parent`: TPACKET_V2 rx and tx rings, vnet headers so GSO frames cross
  whole). Frames the child sends arrive there in the rx ring (no system call per frame);
  frames for the child go into the tx ring, one ``send()`` per loop pass.

The outer end sitting next to the parent is what lets the eBPF fast path (:mod:`.fastpath`)
forward in the kernel: ``bpf_redirect_peer`` from a tc ingress hook in that namespace into
the outer end delivers straight into the inner end's namespace.

Carrier: a veth has carrier when both ends are up, so the inner end's carrier (the parent's,
as netif_stacked_transfer_operstate copies it for a macvlan) is the outer end's admin state.
The outer end has IPv6 disabled and no address: its own stack never speaks, and what the child
sends reaches it as PACKET_OTHERHOST (dropped by IPv4/IPv6/ARP, or by the fast path's tc
program). Unlike a TAP, the pair outlives the process: :meth:`close` deletes it; after a crash
the next start finds the outer name taken (EEXIST) — a daemon may re-adopt it instead (the pair
carries no state the datapath does not rebuild from the engine).

Known difference from a TAP child: a non-GSO frame longer than the inner end's MTU written by
the slow path is dropped by veth (is_skb_forwardable); kernel macvlan delivers it. The fast
path (bpf_redirect_peer) has no such check.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import socket
from dataclasses import dataclass

from ... import identity
from ...model import frame_max
from ._sys import IFF_NOARP, IFF_UP, NetdevCtl, in_netns, netns_inode, netns_path, write_sysctl
from .parent import Parent, ParentConfig
from .tap import ChildNetdev

__all__ = ["VethChild", "VethConfig", "outer_name"]

log = logging.getLogger(__name__)


def outer_name(name: str, parent_netns: str | None, parent: str | None = None) -> str:
    """The outer end's name: stable per (child, parent device, parent namespace), so a restart
    finds it, and two datapaths on two parents of one namespace never pick the same one.
    (``parent=None``: the name before the parent took part, for adopting such a pair.)"""
    key = f"{parent_netns}/{name}" if parent is None else f"{parent_netns}/{parent}/{name}"
    return "pmv" + hashlib.sha1(key.encode()).hexdigest()[:10]


@dataclass
class VethConfig:
    name: str
    netns: str | None = None
    #: the namespace of the parent (where the outer end lives)
    parent_netns: str | None = None
    mac: bytes | None = None
    mtu: int | None = None
    #: the outer end's MTU (at least the largest MTU the child may take: the parent's)
    outer_mtu: int | None = None
    carrier: bool = False
    #: the key the outer name is derived from (the child's name in the engine)
    key: str | None = None
    #: the parent device, which the outer name is derived from too
    parent: str | None = None
    rx_frames: int = 1024
    tx_frames: int = 512
    #: re-attach the pair a previous datapath left (close(remove=False)): the inner end must
    #: still have this name *and* this ifindex, the outer end its name (else ENODEV)
    adopt: int | None = None


class VethChild(ChildNetdev):
    """One veth pair and the ring socket on its outer end. Same interface as :class:`~.tap.Tap`
    where the datapath uses it (MAC, MTU, flags, carrier, namespace checks). (A veth does not
    pin its namespace: when the namespace dies the pair goes with it.)"""

    kind = "veth"

    def __init__(self, cfg: VethConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.netns = cfg.netns
        self.parent_netns = cfg.parent_netns
        self.netns_ino = netns_inode(cfg.netns)
        self.outer = outer_name(cfg.key or cfg.name, cfg.parent_netns, cfg.parent)
        self.ctl = NetdevCtl(cfg.netns)
        self.outer_ctl = NetdevCtl(cfg.parent_netns)
        self.ring: Parent | None = None
        self.carrier = False
        #: the outer end as made or adopted (pymacvlan.identity): deleted only while it still is
        self.outer_ident: identity.DeviceIdentity | None = None
        created = False
        try:
            found = self.ctl.ifindex(cfg.name)
            if cfg.adopt is not None:
                outer_idx = self.outer_ctl.ifindex(self.outer)
                if outer_idx is None and cfg.parent is not None:  # made before the parent was in the name
                    legacy = outer_name(cfg.key or cfg.name, cfg.parent_netns)
                    outer_idx = self.outer_ctl.ifindex(legacy)
                    if outer_idx is not None:
                        self.outer = legacy
                if found != cfg.adopt or outer_idx is None:
                    raise OSError(errno.ENODEV, f"{cfg.name} is no longer the veth child with ifindex {cfg.adopt}")
                self.outer_ifindex: int = outer_idx
                with identity.ipr_in(cfg.parent_netns) as ipr:
                    self.outer_ident = identity.read(ipr, ifindex=outer_idx)
                if self.outer_ident.kind != "veth":
                    raise OSError(errno.ENODEV, f"{self.outer} is a {self.outer_ident.kind or 'device'}, not our veth")
            else:
                self._create(found)
                created = True
            write_sysctl(cfg.parent_netns, f"net/ipv6/conf/{self.outer}/disable_ipv6", "1")
            # the parent namespace's stack must never answer a child through its outer end: ARP
            # would reply for any of the namespace's addresses (arp_ignore 0), which a macvlan
            # child never reaches (the parent's stack is not on a child's path)
            write_sysctl(cfg.parent_netns, f"net/ipv4/conf/{self.outer}/arp_ignore", "8")
            self.outer_ctl.set_flags(self.outer, set_bits=IFF_NOARP)
            if cfg.outer_mtu:
                self.outer_ctl.set_mtu(self.outer, cfg.outer_mtu)
            idx = self.ctl.ifindex(cfg.name)
            if idx is None:  # pragma: no cover - created just above
                raise OSError(errno.ENODEV, f"veth end {cfg.name!r} vanished")
            self.ifindex: int = idx
            if cfg.mac is not None and (cfg.adopt is None or self.mac() != cfg.mac):
                self.set_mac(cfg.mac)
            if cfg.mtu is not None:
                self.set_mtu(cfg.mtu)
            self.ring = Parent(ParentConfig(self.outer, cfg.parent_netns, rx_frames=cfg.rx_frames,
                                            tx_frames=cfg.tx_frames, rcvbuf=8 << 20, sndbuf=32 << 20))
            self.fd = self.ring.fd
            self._clear_ring_error()  # bound while the outer end is down: ENETDOWN, expected
            if cfg.carrier:
                self.set_carrier(True)
        except BaseException:
            if self.ring is not None:
                self.ring.close()
            if created:
                self._delete_pair()
            self.ctl.close()
            self.outer_ctl.close()
            raise

    def _create(self, found: int | None) -> None:
        from pyroute2 import IPRoute
        cfg = self.cfg
        if found is not None:
            raise OSError(errno.EEXIST, f"a device named {cfg.name!r} already exists"
                          + (f" in namespace {cfg.netns}" if cfg.netns else ""))
        if self.outer_ctl.ifindex(self.outer) is not None:
            raise OSError(errno.EEXIST, f"the veth end {self.outer!r} already exists (left by a previous run? "
                          f"`ip link del {self.outer}` removes it and the child's inner end)")
        with in_netns(cfg.parent_netns):
            ipr = IPRoute()
        try:
            peer: dict = {"ifname": cfg.name}
            nsfd = -1
            if cfg.netns != cfg.parent_netns:
                nsfd = os.open(netns_path(cfg.netns) if cfg.netns else "/proc/thread-self/ns/net", os.O_RDONLY)
                peer["net_ns_fd"] = nsfd
            try:
                ipr.link("add", ifname=self.outer, kind="veth", peer=peer)
            finally:
                if nsfd >= 0:
                    os.close(nsfd)
            self.outer_ifindex = ipr.link_lookup(ifname=self.outer)[0]
            self.outer_ident = identity.read(ipr, ifindex=self.outer_ifindex)
        finally:
            ipr.close()

    def fileno(self) -> int:
        return self.fd

    # -- configuration (the inner end) -----------------------------------------------------------
    def set_mac(self, mac: bytes) -> None:
        self.ctl.set_mac(self.name, mac)

    def set_mtu(self, mtu: int) -> None:
        if mtu > self.outer_ctl.get_mtu(self.outer):  # the outer end takes what the inner sends
            self.outer_ctl.set_mtu(self.outer, mtu)
            if self.ring is not None:  # the ring's oversize check follows the device
                self.ring.mtu, self.ring.frame_max = mtu, frame_max(mtu)
        self.ctl.set_mtu(self.name, mtu)

    def set_carrier(self, on: bool) -> None:
        """The inner end's carrier is the outer end's admin state."""
        if on:
            self.outer_ctl.set_flags(self.outer, set_bits=IFF_UP)
        else:
            self.outer_ctl.set_flags(self.outer, clear_bits=IFF_UP)
            self._clear_ring_error()  # our own doing: not a failure for the loop to report
        self.carrier = on

    def _clear_ring_error(self) -> None:
        """A packet socket on a device that is (or goes) down holds ENETDOWN in sk_err until
        it is read, and polls EPOLLERR meanwhile (the kernel re-attaches it by itself when the
        device comes up). The rings never recv(), so read it here when we took the device
        down ourselves; anyone else's doing is the loop's to count (reactor.Reactor._fd_failed)."""
        if self.ring is not None:
            self.ring.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)

    # -- teardown ----------------------------------------------------------------------------------
    def _delete_pair(self) -> None:
        """Delete the pair through its outer end, once proven to be the one we made or adopted
        (namespace inode, ifindex, kind, MAC: never by name alone)."""
        want = self.outer_ident
        if want is None:
            return
        try:
            ipr = identity.open_ipr(self.parent_netns, want.netns)
        except OSError:  # the namespace is gone (and the pair with it), or is another one now
            return
        try:
            identity.check(ipr, want, "delete")
            ipr.link("del", index=want.ifindex)
        except identity.IdentityError as e:
            if e.errno != errno.ENODEV:
                log.warning("%s", e)
        except Exception:  # already gone with its namespace
            pass
        finally:
            ipr.close()

    def close(self, remove: bool = True) -> None:
        """Release the ring socket and delete the pair; ``remove=False`` leaves the pair
        (carrier off: the outer end down) for whoever comes next."""
        if self.ring is not None:
            self.ring.close()
            self.ring = None
        self.fd = -1
        if remove:
            self._delete_pair()
        else:
            try:
                self.set_carrier(False)
            except OSError:
                pass
        self.ctl.close()
        self.outer_ctl.close()
