"""The daemon's DHCP leases: the I/O around :mod:`.machine`.

One :class:`DhcpService` per daemon holds a lease per child (keyed by the front end's
attachment key), one thread, and one packet socket per parent in use. A child's frames go out
the **parent** with the child's MAC as their source, and come back on the same socket: a
packet socket bound with ``ETH_P_ALL`` sees a received frame in ``__netif_receive_skb_core``'s
``ptype_all`` pass, before macvlan's ``rx_handler`` hands it to the child, so replies to the
child's MAC (unicast or broadcast) are read there whether the child is a kernel macvlan in a
pod's namespace (that namespace never needs entering) or a userspace child of this daemon
(tests/dhcp/test_live.py proves both on this kernel). A classic BPF filter keeps the socket to
IPv4 UDP datagrams to port 68, so a busy parent costs the daemon nothing.

What goes out the parent never reaches the parent's own stack, nor a bridge-mode sibling: a
DHCP server on the host is unreachable that way, as it is for the child itself. With
``host_access`` the lease uses the **child** instead (``via: child``: a packet socket on the
child in its namespace): its frames then take macvlan's own path, through the hostAccess
child (``pmvha…``, bridge mode) to the host's stack, and the host's replies come back the same
way. When no lease comes and a DHCP server listens on the parent's host (a UDP socket on port
67 in the parent's namespace), the failure says so and names hostAccess as the fix.

Leases are saved (atomically) to a file next to the daemon's state file after every change
and resumed at start: a lease before its T1 is simply held again (no packet), one past T1
renews, an expired one goes through INIT-REBOOT. Releasing the lease sends RELEASE. Events
(bound, renewed, changed, nak, expired, failed, released) are logged and kept in a ring the
control socket serves (``dhcp.events``).
"""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import os
import random
import selectors
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from ..model import KernelError
from . import packet as P
from .machine import Client, Config, Event, Lease, Output, Send, State

log = logging.getLogger("pymacvlan.dhcp")

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SO_ATTACH_FILTER = 26
#: the events the control socket keeps for ``dhcp.events``
EVENT_RING = 1000

# cBPF: IPv4, UDP, not a fragment, destination port 68
_FILTER = [
    (0x28, 0, 0, 12), (0x15, 0, 8, 0x0800), (0x30, 0, 0, 23), (0x15, 0, 6, 17), (0x28, 0, 0, 20),
    (0x45, 4, 0, 0x1FFF), (0xB1, 0, 0, 14), (0x48, 0, 0, 16), (0x15, 0, 1, 68), (0x06, 0, 0, 0x40000),
    (0x06, 0, 0, 0),
]


def _attach_filter(sock: socket.socket) -> None:
    prog = b"".join(struct.pack("HBBI", *ins) for ins in _FILTER)
    buf = ctypes.create_string_buffer(prog)
    fprog = struct.pack("HL", len(_FILTER), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def open_port(ifname: str, netns: str | None) -> socket.socket:
    """A packet socket on ``ifname`` in ``netns`` (a name or a path), filtered to DHCP replies."""
    from ..netns import in_netns

    with in_netns(netns):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.htons(ETH_P_ALL))
    try:
        _attach_filter(s)
        s.bind((ifname, ETH_P_ALL))
        s.setblocking(False)
        while True:  # frames queued before the filter was attached (and a pending ENETDOWN)
            try:
                s.recv(65536)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno != errno.ENETDOWN:
                    raise
    except OSError:
        s.close()
        raise
    return s


def local_dhcp_server(netns: str | None) -> bool:
    """A UDP socket bound to port 67 in ``netns``: a DHCP server on the parent's own host."""
    from ..backends.userspace.syscalls import read_proc_net

    try:
        text = read_proc_net(netns, "udp")
    except OSError:
        return False
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) > 2 and parts[1].endswith(":0043"):
            return True
    return False


@dataclass
class LeaseRequest:
    """What a front end asks for (``dhcp.acquire``)."""

    key: str
    parent: str
    mac: str
    client_id: str  # hex
    hostname: str = ""
    timeout: float = 30.0
    subnet: str | None = None
    #: where the child lives (only ``via: child`` needs it)
    netns: str | None = None
    ifname: str | None = None
    #: "parent" (default) or "child" (hostAccess: frames through the child itself)
    via: str = "parent"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LeaseRequest:
        """Checked field by field: EINVAL naming the key."""
        def need(k: str, kind: type, optional: bool = False) -> Any:
            v = d.get(k)
            if v is None and optional:
                return None
            if not isinstance(v, kind) or isinstance(v, bool) and kind is not bool:
                raise KernelError("EINVAL", f"dhcp: {k} must be a {kind.__name__}, not {v!r}")
            return v

        r = cls(key=need("key", str), parent=need("parent", str), mac=need("mac", str),
                client_id=need("client_id", str), hostname=need("hostname", str, True) or "",
                subnet=need("subnet", str, True), netns=need("netns", str, True), ifname=need("ifname", str, True),
                via=need("via", str, True) or "parent")
        t = d.get("timeout")
        if t is not None:
            if not isinstance(t, (int, float)) or isinstance(t, bool) or not 0 < t <= 3600:
                raise KernelError("EINVAL", f"dhcp: timeout must be seconds in (0, 3600], not {t!r}")
            r.timeout = float(t)
        if not r.key or not r.parent:
            raise KernelError("EINVAL", "dhcp: key and parent must not be empty")
        try:
            mac = bytes.fromhex(r.mac.replace(":", "").replace("-", ""))
            cid = bytes.fromhex(r.client_id)
        except ValueError:
            raise KernelError("EINVAL", f"dhcp: bad mac {r.mac!r} or client_id", "hex bytes") from None
        if len(mac) != 6 or mac[0] & 1 or not any(mac):
            raise KernelError("EINVAL", f"dhcp: {r.mac} is not a unicast MAC address")
        if not 2 <= len(cid) <= 255:
            raise KernelError("EINVAL", "dhcp: client_id must be 2..255 bytes")
        if r.subnet is not None:
            try:
                IPv4Network(r.subnet)
            except ValueError:
                raise KernelError("EINVAL", f"dhcp: subnet {r.subnet!r} is not an IPv4 network") from None
        if r.via not in ("parent", "child"):
            raise KernelError("EINVAL", f"dhcp: via must be parent or child, not {r.via!r}")
        if r.via == "child" and not (r.netns and r.ifname):
            raise KernelError("EINVAL", "dhcp: via child needs netns and ifname")
        if len(r.hostname) > 63:
            raise KernelError("EINVAL", "dhcp: hostname longer than 63")
        return r

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "parent": self.parent, "mac": self.mac, "client_id": self.client_id,
                "hostname": self.hostname, "timeout": self.timeout, "subnet": self.subnet, "netns": self.netns,
                "ifname": self.ifname, "via": self.via}

    @property
    def port_key(self) -> tuple[str, str | None]:
        return (self.ifname or "", self.netns) if self.via == "child" else (self.parent, None)


@dataclass
class _Held:
    req: LeaseRequest
    machine: Client
    chaddr: bytes
    waiters: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)


class DhcpService:
    """Leases for the daemon's children (and for any macvlan whose parent it can open)."""

    def __init__(self, path: str | None, netns: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.netns = netns  # where the parents live
        self.clock = clock
        self.rng = random.Random()
        self.leases: dict[str, _Held] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENT_RING)
        self._seq = 0
        self.counters: dict[str, int] = {}
        self._ports: dict[tuple[str, str | None], socket.socket] = {}
        self._lock = threading.RLock()
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- life cycle ---------------------------------------------------------------------------------
    def restore(self) -> int:
        """Resume the saved leases; returns how many. A valid lease sends nothing."""
        if not self.path or not os.path.exists(self.path):
            return 0
        try:
            with open(self.path) as f:
                data = json.load(f)
            records = data["leases"] if isinstance(data, dict) else None
            if not isinstance(records, list):
                raise ValueError("no leases list")
        except (OSError, ValueError, KeyError) as e:
            log.warning("dhcp: cannot read %s (%s): starting without leases", self.path, e)
            return 0
        n = 0
        now = self.clock()
        with self._lock:
            for rec in records:
                try:
                    req = LeaseRequest.from_dict(rec["request"])
                    lease = Lease.from_dict(rec["lease"])
                except (KernelError, ValueError, TypeError, KeyError) as e:
                    log.warning("dhcp: dropping a bad lease record: %s", e)
                    continue
                try:
                    held = self._new(req, lease)
                    self._run(held, held.machine.start(now))
                    n += 1
                    log.info("dhcp: %s: resumed %s (%s)", req.key, lease.interface, held.machine.state.value)
                except (KernelError, OSError) as e:
                    log.warning("dhcp: %s: cannot resume on %s: %s", req.key, req.parent, e)
            self._save()
        return n

    def close(self) -> None:
        """Stop the thread and close the sockets; leases stay saved (and valid) for the next start."""
        with self._lock:
            self._closed = True
            self._save()
        self._wake()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            for s in self._ports.values():
                s.close()
            self._ports.clear()
            self._sel.close()
            self._wake_r.close()
            self._wake_w.close()

    # -- requests (any thread) ----------------------------------------------------------------------
    def acquire(self, raw: dict[str, Any], done: Callable[[dict[str, Any]], None]) -> None:
        """Start (or join) the acquisition for ``raw["key"]``; ``done`` gets the reply, from the
        DHCP thread, once bound or failed (at once when the key already holds a lease)."""
        req = LeaseRequest.from_dict(raw)
        with self._lock:
            held = self.leases.get(req.key)
            if held is not None and held.req.mac.lower() == req.mac.lower() and held.req.client_id == req.client_id:
                if held.machine.state in (State.BOUND, State.RENEWING, State.REBINDING) and held.machine.lease:
                    done({"ok": True, "lease": self._view(held)})
                    return
                if held.machine.state not in (State.FAILED, State.RELEASED):
                    held.waiters.append(done)
                    return
            if held is not None:
                self._forget(held, release=held.machine.state in (State.BOUND, State.RENEWING, State.REBINDING))
            requested = None
            for other in list(self.leases.values()):  # a re-created pod: its identity's lease moves here
                if other.req.client_id == req.client_id and other.req.parent == req.parent:
                    old = other.machine.lease
                    requested = old.address if old else None
                    log.info("dhcp: %s takes over %s's identity%s", req.key, other.req.key,
                             f" ({old.interface})" if old else "")
                    self._forget(other, release=False)
            held = self._new(req, None)
            held.machine.cfg.requested = requested
            held.waiters.append(done)
            if not self._reachable(req):
                log.warning("dhcp: %s: a DHCP server listens on the parent's host; children cannot reach the "
                            "parent's own stack through macvlan (use hostAccess)", req.key)
            self._run(held, held.machine.start(self.clock()))
        self._wake()

    def release(self, key: str) -> bool:
        """RELEASE and forget ``key``'s lease; False when there was none."""
        with self._lock:
            held = self.leases.get(key)
            if held is None:
                return False
            self._forget(held, release=True)
            self._save()
        return True

    def renew(self, key: str) -> bool:
        """Renew ``key``'s lease now (RENEWING); False when it holds no bound lease."""
        with self._lock:
            held = self.leases.get(key)
            if held is None:
                return False
            out = held.machine.renew(self.clock())
            self._run(held, out)
        self._wake()
        return bool(out)

    def show(self, key: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [self._view(h) for k, h in sorted(self.leases.items()) if key is None or k == key]

    def events_since(self, seq: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e["seq"] > seq]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            ignored: dict[str, int] = dict(self.counters)
            for h in self.leases.values():
                for k, v in h.machine.ignored.items():
                    ignored["ignored_" + k] = ignored.get("ignored_" + k, 0) + v
            return {"leases": len(self.leases), "ports": len(self._ports), **ignored}

    # -- internals ----------------------------------------------------------------------------------
    def _reachable(self, req: LeaseRequest) -> bool:
        return req.via == "child" or not local_dhcp_server(self.netns)

    def _new(self, req: LeaseRequest, lease: Lease | None) -> _Held:
        chaddr = bytes.fromhex(req.mac.replace(":", "").replace("-", ""))
        cfg = Config(chaddr, bytes.fromhex(req.client_id), hostname=req.hostname, timeout=req.timeout,
                     subnet=IPv4Network(req.subnet) if req.subnet else None)
        held = _Held(req, Client(cfg, random.Random(self.rng.getrandbits(64)), lease), chaddr)
        self._port(req)
        self.leases[req.key] = held
        self._ensure_thread()
        return held

    def _port(self, req: LeaseRequest) -> socket.socket:
        pk = req.port_key
        s = self._ports.get(pk)
        if s is None:
            netns = req.netns if req.via == "child" else self.netns
            try:
                s = open_port(pk[0], netns)
            except OSError as e:
                import errno as _errno

                name = _errno.errorcode.get(e.errno or 0, "EIO")
                raise KernelError("ENODEV" if e.errno == _errno.ENODEV else name,
                                  f"dhcp: cannot open a packet socket on {pk[0]}" + (f" in {netns}" if netns else "")
                                  + f": {e.strerror or e}",
                                  "the parent must exist where the daemon looks for parents (--netns)") from None
            self._ports[pk] = s
            self._sel.register(s, selectors.EVENT_READ, pk)
        return s

    def _release_port_if_unused(self, pk: tuple[str, str | None]) -> None:
        if any(h.req.port_key == pk for h in self.leases.values()):
            return
        s = self._ports.pop(pk, None)
        if s is not None:
            try:
                self._sel.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()

    def _forget(self, held: _Held, release: bool) -> None:
        out: list[Output] = (held.machine.release(self.clock()) if release
                             else [Event("released", held.machine.lease, "forgotten")])
        if not release:
            out = [o for o in out if not isinstance(o, Send)]
        self._run(held, out)
        for w in held.waiters:
            w(KernelError("ECANCELED", f"dhcp: the lease {held.req.key} was released while being acquired").as_result())
        held.waiters.clear()
        self.leases.pop(held.req.key, None)
        self._release_port_if_unused(held.req.port_key)

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="pymacvlan-dhcp", daemon=True)
            self._thread.start()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _loop(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                deadlines = [d for h in self.leases.values() if (d := h.machine.deadline()) is not None]
            timeout = None if not deadlines else max(0.0, min(deadlines) - self.clock())
            try:
                ready = self._sel.select(timeout)
            except (OSError, ValueError):
                return  # closed under us
            with self._lock:
                if self._closed:
                    return
                for key, _ev in ready:
                    if key.data is None:
                        try:
                            while self._wake_r.recv(4096):
                                pass
                        except BlockingIOError:
                            pass
                        continue
                    self._read(key.fileobj, key.data)  # type: ignore[arg-type]
                now = self.clock()
                for held in list(self.leases.values()):
                    d = held.machine.deadline()
                    if d is not None and d <= now:
                        self._run(held, held.machine.tick(now))

    def _read(self, sock: socket.socket, pk: tuple[str, str | None]) -> None:
        for _ in range(256):
            try:
                data, addr = sock.recvfrom(65536)
            except BlockingIOError:
                return
            except OSError as e:
                log.warning("dhcp: reading %s: %s", pk[0], e)
                return
            if addr[2] == PACKET_OUTGOING:
                continue
            try:
                f = P.unframe(data)
                m = P.decode(f.payload)
            except P.BadPacket as e:
                self._count("bad_" + e.reason)
                continue
            now = self.clock()
            matched = False
            for held in list(self.leases.values()):
                if held.req.port_key == pk and held.chaddr == m.chaddr:
                    matched = True
                    self._run(held, held.machine.receive(m, now, f.src_mac))
            if not matched:
                self._count("not_ours")

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def _run(self, held: _Held, outputs: list[Output]) -> None:
        for o in outputs:
            if isinstance(o, Send):
                self._send(held, o)
            else:
                self._event(held, o)

    def _send(self, held: _Held, s: Send) -> None:
        sock = self._ports.get(held.req.port_key)
        if sock is None:
            return
        data = P.frame(P.encode(s.msg), held.chaddr, s.dst_mac, s.src_ip, s.dst_ip,
                       ip_id=self.rng.getrandbits(16))
        try:
            sock.send(data)
            self._count("sent")
        except OSError as e:
            self._count("send_error")
            log.warning("dhcp: %s: sending on %s: %s", held.req.key, held.req.port_key[0], e)

    def _event(self, held: _Held, ev: Event) -> None:
        self._seq += 1
        rec: dict[str, Any] = {"seq": self._seq, "time": self.clock(), "key": held.req.key, "kind": ev.kind,
                               "detail": ev.detail}
        if ev.lease is not None:
            rec["address"] = ev.lease.interface
        self.events.append(rec)
        lvl = logging.WARNING if ev.kind in ("nak", "expired", "failed") else logging.INFO
        log.log(lvl, "dhcp: %s: %s%s%s", held.req.key, ev.kind, f" {rec['address']}" if "address" in rec else "",
                f" ({ev.detail})" if ev.detail else "")
        if ev.kind in ("bound", "renewed", "changed"):
            for w in held.waiters:
                w({"ok": True, "lease": self._view(held)})
            held.waiters.clear()
        elif ev.kind == "failed":
            err = self._failure(held, ev)
            for w in held.waiters:
                w(err.as_result())
            held.waiters.clear()
            if self.leases.get(held.req.key) is held:  # nothing left behind
                self.leases.pop(held.req.key)
                self._release_port_if_unused(held.req.port_key)
        if ev.kind != "released":
            self._save()

    def _failure(self, held: _Held, ev: Event) -> KernelError:
        req = held.req
        if not self._reachable(req):
            return KernelError("EHOSTUNREACH", f"dhcp: no lease for {req.mac} on {req.parent}: {ev.detail}; a DHCP "
                               "server listens on the parent's own host, which macvlan children cannot reach",
                               "set \"hostAccess\": true (the host then reaches its children and they it), or "
                               "serve DHCP from another machine on the wire")
        return KernelError("ETIMEDOUT", f"dhcp: no lease for {req.mac} on {req.parent}: {ev.detail}",
                           "is a DHCP server on the parent's network, and is the parent up? raise the timeout "
                           "(ipam \"timeout\") for a slow server")

    def _view(self, held: _Held) -> dict[str, Any]:
        m = held.machine
        v: dict[str, Any] = {"key": held.req.key, "state": m.state.value, "parent": held.req.parent,
                             "mac": held.req.mac, "client_id": held.req.client_id, "hostname": held.req.hostname,
                             "via": held.req.via, "ignored": dict(m.ignored)}
        lease = m.lease
        if lease is not None:
            res = lease.cni_result()
            v.update({"address": lease.interface, "gateway": str(lease.routers[0]) if lease.routers else None,
                      "routes": res["routes"], "dns": res["dns"], "mtu": lease.mtu, "server_id": str(lease.server_id),
                      "expires": lease.expires if lease.expires != float("inf") else None,
                      "t1": lease.t1 if lease.t1 != float("inf") else None, "cni": res})
        return v

    def _save(self) -> None:
        if not self.path:
            return
        recs = [{"request": h.req.to_dict(), "lease": h.machine.lease.to_dict()}
                for h in self.leases.values() if h.machine.lease is not None]
        tmp = f"{self.path}.tmp"
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({"version": 1, "leases": recs}, f, default=_inf)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as e:
            log.error("dhcp: cannot save leases to %s: %s", self.path, e)


def _inf(o: object) -> Any:
    raise TypeError(f"not JSON: {o!r}")


__all__ = ["DhcpService", "LeaseRequest", "local_dhcp_server", "open_port", "IPv4Address"]
