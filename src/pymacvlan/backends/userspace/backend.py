"""The userspace backend of ``pymacvlan replay``: the scenario runs on the userspace datapath.

The world is the kernel backend's (:mod:`..kernel.topology`): namespace P holds the parent, one
end of a veth pair; W holds the other end, bare or the only port of a hairpin bridge, where
stations inject. No kernel macvlan is created: a :class:`~.datapath.Datapath` on the parent
(AF_PACKET rings, the eBPF shield on) is the macvlan driver, and its children are its own
real devices, each in a namespace of its own:

- a **macvlan** child is the datapath's TAP, named as the scenario names it; frames are
  injected and captured on it exactly as on a kernel macvlan (packet sockets);
- a **macvtap** child is a TAP-fd endpoint (``-netdev tap,fd=N``): the backend connects to its
  handover socket and holds the fd as a VM would. It writes injected frames there, and reads
  (discards) what arrives after each step unless the scenario attached a ``reader`` that
  never reads, in which case tun's 500-frame queue fills as macvtap's ring does. What the
  child received is captured where the datapath hands frames to the endpoint's TAP (outgoing,
  before tun queues or drops them), minus tun's drops.

Control steps go through the datapath's control plane (engine first, then the devices);
parent steps change the real veth, which the datapath follows through rtnetlink, as it
would under a daemon. After every control step the backend settles linkwatch and waits until
the datapath has followed (:meth:`Datapath.sync`). After every frame it captures as the
kernel backend does (probe rounds, :mod:`..kernel.capture`), each round starting once the
datapath finished a loop pass after everything it was handed (:meth:`Datapath.settled`);
the run, datapath thread included, is on one CPU.

What cannot be the kernel's output is never made up: each result names, under
``"inherent"``, the differences of docs/userspace-differences.md that apply to it, and
:mod:`pymacvlan.scenario.compare` tolerates exactly those.
"""

from __future__ import annotations

import errno
import os
import platform
import shutil
import socket
import tempfile
from dataclasses import dataclass
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from ...model import KernelError, PacketType, flags_from_names, parse_mac
from ...model.link import apply_change
from ...scenario.schema import step_change
from ..kernel import KernelBackend
from ..kernel import unsupported_reason as kernel_unsupported_reason
from ..kernel.capture import ETH_P_ALL, Capture, _packet_socket, ipv4_fragment_key
from ..kernel.capture import Tap as CaptureTap
from ..kernel.nl import error_result, link_state
from ..kernel.steps import StepDispatcher
from ..kernel.topology import Topology, valid_ifname
from ..sim import child_state
from ._sys import ZERO_VNET_HDR
from .datapath import Datapath, DatapathConfig
from .endpoints import TapFdEndpoint, recv_fd
from .parent import ParentConfig

__all__ = ["UserspaceBackend", "unavailable_reason", "unsupported_reason", "INHERENT", "VARIANTS"]

#: ``get_backend("userspace-NAME")``: the datapath's ways of carrying child frames
#: (``userspace`` itself is the default: the eBPF fast path with veth children wherever it loads)
VARIANTS: dict[str, dict[str, Any]] = {"python": {"children": "tap", "fastpath": False},
                                       "veth": {"children": "veth", "fastpath": False},
                                       "fast": {"children": "veth", "fastpath": True}}

#: The named differences a result may carry under "inherent" (docs/userspace-differences.md).
INHERENT = {
    "parent_memberships": "the parent's promiscuity and allmulti count the datapath's packet-socket "
                          "memberships (one of each at most), not every child's reference",
    "macvtap_reader": "a macvtap's reader is its endpoint: it has no stack of its own that would drop "
                      "protocols without a handler (rx_dropped)",
    "macvtap_write": "frames a macvtap sends are written by its reader (the VM's path): the kernel "
                     "backend sends them from the macvtap's own stack, whose ENETDOWN/EMSGSIZE checks "
                     "a reader's write does not have",
    "parent_unshielded": "without the eBPF shield the parent's stack also sees what macvlan consumes",
    "pkttype_by_device": "a child's receipts carry the pkt_type its own device gives them (eth_type_trans "
                         "against its MAC): a TAP cannot be handed macvlan's (HOST for any unicast to a "
                         "passthru child, the parent's classification for source-mode copies)",
    "parent_defrag": "the parent's stack gets IPv4 multicast fragments as they arrive: only the datapath's "
                     "copies are reassembled, by the engine",
    "tap_no_carrier": "a TAP without carrier drops what its stack sends at its own (noop) qdisc, before "
                      "the datapath sees it, and counts nothing: the kernel's macvlan counts tx_dropped",
    "veth_rx_mtu": "a veth child drops a non-GSO frame longer than its MTU + 18 that the Python path writes "
                   "to it (is_skb_forwardable); macvlan delivers it",
}
#: a TapFd TAP must never be what limits a frame to the VM: macvlan does not check rx sizes
_ENDPOINT_TAP_MTU = 65521  # tun max_mtu: 65535 - ETH_HLEN
_PKTTYPE_NAME = {t.value: t.name for t in PacketType}


def unavailable_reason() -> str | None:
    """Why this machine cannot run the userspace backend, or None when it can."""
    if os.geteuid() != 0:
        return "the userspace backend needs root (network namespaces, TAP devices, AF_PACKET)"
    if not os.path.exists("/dev/net/tun"):
        return "this machine has no /dev/net/tun (TAP children)"
    if not os.path.exists("/proc/self/ns/net"):
        return "this kernel has no network namespaces"
    return None


def unsupported_reason(scenario: dict) -> str | None:
    """Why this backend cannot run ``scenario`` faithfully, or None. Its world is the kernel
    backend's (a veth parent, this machine's kernel), so it cannot run what that cannot."""
    return kernel_unsupported_reason(scenario)


class ReadbackMismatch(RuntimeError):
    """The engine's bookkeeping says one thing, the real device counted another."""


def readback_tap_counters(name: str, engine: dict, tap: Any) -> None:
    """The engine's counters of a TAP child against the TAP's own, read back from the kernel.

    What the engine delivered to the child, the datapath wrote to the TAP: tun counts each
    write it accepted as received. What the child sent, tun counted as transmitted when the
    datapath read it, and the engine either sent it on or dropped it (counted). A difference
    means the I/O layer did not carry out the engine's decisions (a lost write, a frame read
    and forgotten): raise instead of reporting bookkeeping as observation.
    """
    rx, tx = engine["rx"]["packets"], engine["tx"]["packets"] + engine["tx"]["dropped"]
    if (tap["rx_packets"], tap["tx_packets"]) != (rx, tx):
        raise ReadbackMismatch(
            f"child {name}: the engine counts {rx} frames delivered and {tx} taken from it, its TAP "
            f"counted {tap['rx_packets']} received and {tap['tx_packets']} sent")


def eth_pkttype(frame: bytes, mac: bytes) -> str:
    """eth_type_trans(): how a device with address ``mac`` classifies ``frame``."""
    dst = frame[:6]
    if dst[0] & 1:
        return "BROADCAST" if dst == b"\xff" * 6 else "MULTICAST"
    return "HOST" if dst == mac else "OTHERHOST"


@dataclass
class _Child:
    name: str
    kind: str  # macvlan | macvtap
    ns: str
    ifname: str  # the TAP (macvlan) or the endpoint's TAP (macvtap)
    ifindex: int
    fd: int | None = None  # macvtap: the handed-over TAP fd the backend holds as the VM
    stalled: bool = False  # macvtap: a reader that never reads (scenario "reader": true)


class EndpointTap(CaptureTap):
    """What a macvtap endpoint's reader is handed: frames the datapath transmits on the
    endpoint's TAP (PACKET_OUTGOING there), classified as the reader's stack would."""

    mac_of: Any = None  # () -> the child's current MAC

    def read(self) -> list[tuple[bytes, int]]:
        frames: list[tuple[bytes, int]] = []
        while True:
            try:
                data, _anc, _flags, addr = self.sock.recvmsg(1 << 16, 64)
            except BlockingIOError:
                return frames
            except OSError:
                return frames
            if addr[2] != PacketType.OUTGOING or addr[0] != self.ifname:
                continue
            kind = eth_pkttype(data, self.mac_of())
            frames.append((data, PacketType[kind].value))


class UserspaceSteps(StepDispatcher):
    """Scenario steps on the datapath (control) and on real devices (frames, the parent)."""

    def __init__(self, topo: Topology, capture: Capture, dp: Datapath, sockdir: str) -> None:
        super().__init__(topo, capture)
        self.dp = dp
        self.sockdir = sockdir
        self.children: dict[str, _Child] = {}

    def run(self, step: dict[str, Any]) -> dict[str, Any]:
        self.capture.drain()  # a late copy of an earlier frame fails here (see StepDispatcher)
        self.serial += 1
        try:
            result = getattr(self, f"do_{step['do']}")(step)
        except KernelError as exc:
            result = exc.as_result()
        except NetlinkError as exc:
            result = error_result(exc)
        if step["do"] not in ("inject", "show"):
            self.settle()
        return result

    def settle(self) -> None:
        """linkwatch applied (see Topology.settle), and the datapath caught up with it."""
        self.topo.settle()
        if self.topo.parent_index is not None:
            self.dp.sync()

    def _child(self, name: str) -> _Child:  # type: ignore[override]
        try:
            return self.children[name]
        except KeyError:
            raise KernelError("ENODEV", f"no device {name!r}") from None

    # ---------------------------------------------------------------- control steps

    def do_add(self, step: dict[str, Any]) -> dict[str, Any]:
        name, kind = step["name"], step.get("type", "macvlan")
        if name in self.children:
            raise KernelError("EEXIST", f"{name!r} exists")
        if self.topo.parent_index is None:
            raise KernelError("ENODEV", "the parent was deleted")
        kw: dict[str, Any] = {
            "mac": parse_mac(step["mac"]) if "mac" in step else None, "mtu": step.get("mtu"),
            "flags": int(flags_from_names(step.get("flags", []))),
            "macaddr": [parse_mac(m) for m in step["macaddr"]] if "macaddr" in step else None,
            "bcqueuelen": step.get("bcqueuelen"), "bclim": step.get("bclim"),
        }
        ns = self.topo.add_netns()
        ifname = name if valid_ifname(name) and not name.startswith(self.topo.prefix) else ns
        try:
            if kind == "macvlan":
                info = self.dp.add_macvlan(name, step.get("mode") or "vepa", netns=ns, ifname=ifname, up=False, **kw)
                child = _Child(name, kind, ns, info["ifname"], info["ifindex"])
                self.capture.open_child(name, ns, child.ifname)
            else:
                child = self._add_macvtap(name, step.get("mode") or "vepa", ns, ifname, kw)
        except BaseException:
            if name in self.dp.engine.children and name not in self.children:
                self.dp.delete(name)
            self.topo.drop_netns(ns)
            raise
        self.children[name] = child
        return {"ok": True}

    def _add_macvtap(self, name: str, mode: str, ns: str, ifname: str, kw: dict) -> _Child:
        path = os.path.join(self.sockdir, f"{len(os.listdir(self.sockdir))}.sock")
        ep = TapFdEndpoint(name, ifname, path, netns=ns, mtu=_ENDPOINT_TAP_MTU)
        try:
            # the kernel's macvtap stands compared here: its groups only, not endpoint_allmulti
            self.dp.add_macvtap(name, ep, mode, up=False, allmulticast=False, **kw)
        except BaseException:
            ep.close()
            raise
        child = _Child(name, "macvtap", ns, ep.tap.name, ep.tap.ifindex or 0)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:  # as QEMU gets it
            s.settimeout(10)
            s.connect(path)
            child.fd, _ = recv_fd(s)
        os.set_blocking(child.fd, False)
        tap = EndpointTap(name, child.ifname, _packet_socket(ns, child.ifname, ETH_P_ALL))
        tap.mac_of = lambda: self.dp.engine.children[name].mac
        self.capture.taps.append(tap)
        return child

    def do_set(self, step: dict[str, Any]) -> dict[str, Any]:
        """One `ip link set` request (:func:`apply_change` on the datapath), then the reader."""
        name = step["name"]
        child = self._child(name)
        apply_change(self.dp, name, step_change(step))
        if "reader" in step:
            if child.kind != "macvtap":
                raise KernelError("EOPNOTSUPP", f"{name} is a macvlan: only a macvtap has a reader")
            if not step["reader"]:
                self._drain_reader(child)  # closing /dev/tapN frees its ring
            child.stalled = bool(step["reader"])
        return {"ok": True}

    def do_join(self, step: dict[str, Any]) -> dict[str, Any]:
        self._child(step["name"])
        self.dp.join(step["name"], parse_mac(step["group"]))
        return {"ok": True}

    def do_leave(self, step: dict[str, Any]) -> dict[str, Any]:
        self._child(step["name"])
        self.dp.leave(step["name"], parse_mac(step["group"]))
        return {"ok": True}

    def do_del(self, step: dict[str, Any]) -> dict[str, Any]:
        name = step["name"]
        if name == "@parent":
            self._parent_index()
            self.dp.delete_parent()  # NETDEV_UNREGISTER: the children go with it
            for child in list(self.children.values()):
                self._forget(child)
            self.topo.del_parent()
            self.capture.close("parent")
            self.capture.close("wire")
        else:
            child = self._child(name)
            self.dp.delete(name)
            self._forget(child)
        return {"ok": True}

    def _forget(self, child: _Child) -> None:
        self.capture.close(child.name)
        if child.fd is not None:
            os.close(child.fd)
            child.fd = None
        self.children.pop(child.name, None)
        self.topo.drop_netns(child.ns)

    def _drain_reader(self, child: _Child) -> None:
        while child.fd is not None:
            try:
                os.read(child.fd, 1 << 17)
            except (BlockingIOError, OSError):
                return

    # ---------------------------------------------------------------- frames and state

    def do_inject(self, step: dict[str, Any]) -> dict[str, Any]:
        frame = bytes.fromhex(step["frame"])
        at: str = step["at"]
        child = None
        if at == "wire":
            if not self.topo.wire_up():
                return self._observed({})
        elif at == "parent":
            self._parent_index()
        else:
            child = self._child(at.removeprefix("child:"))
            at = child.name
        if len(frame) < 14:
            return error_result(OSError(errno.EINVAL, "a frame needs a 14-byte Ethernet header"))
        stalled = {c.name: self._tx_dropped(c) for c in self.children.values() if c.stalled}
        try:
            if child is not None and child.kind == "macvtap":
                assert child.fd is not None, "a macvtap child holds its TAP fd"
                os.write(child.fd, ZERO_VNET_HDR + frame)
            else:
                self.capture.send(at, frame)
        except OSError as exc:
            return error_result(exc)
        seen = self.capture.collect(frame, self.label(step))
        for c in self.children.values():
            if c.stalled:  # tun's queue was full: the reader never got these
                del seen.get(c.name, [])[:self._tx_dropped(c) - stalled.get(c.name, 0)]
            else:
                self._drain_reader(c)
        result = self._observed(seen)
        inherent: dict[str, list[str]] = {}
        if self.children:
            inherent["pkttype_by_device"] = list(self.children)
        if child is not None and child.kind == "macvtap":
            inherent["macvtap_write"] = [child.name]
        if self.dp.shield is None:
            inherent["parent_unshielded"] = ["@parent"]
        if frame[0] & 1 and ipv4_fragment_key(frame) is not None:
            inherent["parent_defrag"] = ["@parent"]
        if self.dp.children_kind == "veth":
            mtus = self.dp.call(lambda: {n: v.mtu for n, v in self.dp.engine.children.items()})
            small = [n for n, c in self.children.items() if c.kind == "macvlan" and len(frame) > mtus[n] + 18]
            if small:
                inherent["veth_rx_mtu"] = small
        if child is not None and child.kind == "macvlan" and not self.dp.engine.lower.carrier:
            inherent["tap_no_carrier"] = [child.name]
        if inherent:
            result["inherent"] = inherent
        return result

    def _tx_dropped(self, child: _Child) -> int:
        return self.topo.dump(child.ns, child.ifindex).get_attr("IFLA_STATS64")["tx_dropped"]

    def _observed(self, seen: dict[str, list[dict]]) -> dict[str, Any]:
        return {"ok": True, "observed": {
            "wire": seen.get("wire", []),
            "parent": seen.get("parent", []),
            "children": {name: seen.get(name, []) for name in self.children},
        }}

    def do_show(self, step: dict[str, Any]) -> dict[str, Any]:
        """Devices as `ip -j -d link` shows them: the parent and the TAPs from netlink; what
        only macvlan knows (linkinfo, counters) and macvtaps (no netdev here) from the
        datapath, read on its loop thread."""
        topo, dp = self.topo, self.dp
        parent = None
        if topo.parent_index is not None:
            parent = link_state(topo.dump(topo.ns_parent, topo.parent_index))
        engine = dp.engine
        snapshot = dp.call(lambda: {n: child_state(engine, v) for n, v in engine.children.items()})
        children: dict[str, Any] = {}
        for name, child in self.children.items():
            st = snapshot[name]
            if child.kind == "macvlan":
                msg = topo.dump(child.ns, child.ifindex)
                dev = link_state(msg)
                st.update({k: dev[k] for k in ("address", "mtu", "operstate", "flags", "promiscuity", "allmulti")})
                if dp.children_kind != "veth":
                    readback_tap_counters(name, st["stats64"], msg.get_attr("IFLA_STATS64"))
            elif child.stalled or self._tx_dropped(child):
                lost = self._tx_dropped(child)  # tun's full queue: tap_handle_frame's rx_errors
                st["stats64"]["rx"]["errors"] += lost
                st["stats64"]["rx"]["dropped"] += lost
            children[name] = st
        result: dict[str, Any] = {"ok": True, "state": {"parent": parent, "children": children}}
        inherent: dict[str, list[str]] = {}
        if parent is not None:
            inherent["parent_memberships"] = ["@parent"]
        macvtaps = [n for n, c in self.children.items() if c.kind == "macvtap"]
        if macvtaps:
            inherent["macvtap_reader"] = macvtaps
        if inherent:
            result["inherent"] = inherent
        return result


class UserspaceBackend(KernelBackend):
    """Replays a validated, normalized scenario on the userspace datapath: the kernel
    backend's world and captures, with a :class:`Datapath` instead of kernel macvlans."""

    name = "userspace"

    def __init__(self, cap: float = 5.0, shield: bool = True, **datapath: Any) -> None:
        super().__init__(cap=cap)
        self.shield = shield
        #: further DatapathConfig fields (children="tap", fastpath=False: see VARIANTS)
        self.datapath = datapath
        self._dp: Datapath | None = None
        self.fastpath_wanted = False
        self.fastpath_active = False
        self.fastpath_error: str | None = None
        self._steps: UserspaceSteps | None = None
        self._sockdir: str | None = None

    def unavailable(self) -> str | None:
        return unavailable_reason()

    def unsupported(self, scenario: dict) -> str | None:
        return unsupported_reason(scenario)

    def replay(self, topo: Topology, capture: Capture, steps: list[dict]) -> list[dict]:
        self._sockdir = tempfile.mkdtemp(prefix="pmv")
        self._dp = Datapath(DatapathConfig(ParentConfig(topo.parent_ifname, netns=topo.ns_parent),
                                           shield=self.shield, **self.datapath)).start()
        # what carried this run's frames (the conformance suite asserts the fast path where it
        # was asked for: a load failure must not pass as the Python path silently)
        self.fastpath_wanted = self._dp.cfg.fastpath
        self.fastpath_error = self._dp.fastpath_error
        self.fastpath_active = self._dp.fastpath is not None
        self._steps = UserspaceSteps(topo, capture, self._dp, self._sockdir)
        capture.barrier = self._dp.settled  # every probe round: the datapath did what it was handed
        return [self._steps.run(step) for step in steps]

    def release(self) -> None:
        if self._steps is not None:
            for child in self._steps.children.values():
                if child.fd is not None:
                    os.close(child.fd)
        if self._dp is not None:
            self._dp.close()  # its TAPs and sockets pin their namespaces
        if self._sockdir is not None:
            shutil.rmtree(self._sockdir, ignore_errors=True)
        self._dp = self._steps = self._sockdir = None

    def kernel_label(self) -> str:
        return f"{platform.release()} (userspace datapath)"
