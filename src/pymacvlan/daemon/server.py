"""`pymacvlan daemon`: the userspace datapath as a service, controlled over a Unix socket.

Foreground and systemd-friendly: logs go to stderr, ``READY=1`` / ``STOPPING=1`` reach
systemd through ``$NOTIFY_SOCKET`` (Type=notify).

Stopping keeps the children. SIGTERM, SIGINT, SIGKILL or a crash: every child's TAP stays
(TUNSETPERSIST) with its addresses, routes and permanent neighbours; while no daemon runs its
carrier is off (the kernel's doing, as when a NIC loses its link) and what its stack sends is
dropped and counted by the TAP. The next start re-attaches each TAP by name *and* ifindex in
its namespace, reads its state back from the device, counts those drops (``detached_tx_dropped``)
and turns the carrier on; macvtap endpoints come back on the same paths (kind, owner and mode
kept): a ``dgram`` QEMU carries on by itself (it sends to the path), a ``stream`` QEMU needs its
``reconnect=N`` (QEMU 8.0+), a ``tapfd`` QEMU keeps its fd: the TAP is persistent and adopted
back through its netdev while QEMU still holds its only queue. Every membership on every parent
is released while stopped. ``pymacvlan daemon stop --remove`` (op ``stop`` with ``remove``)
deletes every child instead, as ``ip link del`` of each would; ``link del`` deletes one.

One :class:`~.datapath.Datapath` (its own thread) per parent, made when the first child of
that parent is added and closed with its last child. Parents are looked up in the
daemon's own network namespace (run it with ``ip netns exec NS`` for another) unless
``--netns`` names one.

The control socket (default ``/run/pymacvlan/control.sock``, mode 0600) speaks JSON lines:
one request object per line, one reply per line. Peers are checked with SO_PEERCRED: only
root or the daemon's own uid; anyone else gets ``EPERM`` and is disconnected.

===============  ========================================================================
``op``           request keys → reply
===============  ========================================================================
``hello``        → ``{"ok": true, "version": 1, "pid": ..., "state_warning": ...}``
``stop``         ``remove`` (bool) → ``{"ok": true}``, then the daemon stops (removing
                 every child first with ``remove``)
``link.add``     ``req``: a :class:`~pymacvlan.model.LinkRequest` (:func:`.codec.encode`)
``link.set``     ``name``, ``change`` (a LinkChange), ``netns``
``link.del``     ``name``, ``netns``
``link.show``    ``name``, ``kind``, ``netns`` → ``links``: ip -j -d -s link show dicts
``stats``        ``name`` (optional) → ``parents``: per parent the datapath counters,
                 engine drops by reason and per-child stats64
``trace``        ``mac``, ``ethertype``, ``child`` → ``{"ok": true}``, then one
                 ``{"event": "frame", ...}`` line per matching frame until the peer closes
===============  ========================================================================

Hostile or broken clients cost the daemon nothing: a line that is not a JSON object gets
``EINVAL`` and the connection stays; a line over 1 MiB gets ``EMSGSIZE`` and is cut off; an
unfinished request line (a half-open peer) gets ``ETIMEDOUT`` after ``request_timeout``, an
idle connection after ``idle_timeout``; beyond ``max_clients`` connections a new one gets
``EBUSY``; replies are never waited for: a peer that does not read has at most
``max_output`` bytes queued and is cut off beyond that or after ``request_timeout`` without
progress (``slow_reader_dropped``). Every case is counted (``stats``'s ``daemon`` section).

Errors are ``{"ok": false, "errno": NAME, "message": ..., "advice": ...}``
(:meth:`KernelError.as_result`). A child's key is its name plus its namespace, as in the
kernel, so every child can be ``eth0`` in a namespace of its own.

State: after every change the children (name, namespace, ifindex, MAC, mode, flags, MTU,
source list, up/promisc/allmulticast) are written atomically to the state file (default
``/var/lib/pymacvlan/state.json``, see :mod:`.state`: checksummed, last good copy kept); on
start they are adopted (or re-created, if their TAP is gone: after a reboot) from it. A
child that cannot come back (its parent or namespace is gone, its name taken by another
device) is logged and kept in the file, so a later start retries it.
"""


from __future__ import annotations

import dataclasses
import errno
import logging
import os
import selectors
import signal
import socket
import stat
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..model import KernelError, MacaddrMode, Mode, mac_str
from ..model.link import LinkChange, LinkRequest, apply_change, check_endpoint, validate_request
from . import state
from .codec import (
    DEFAULT_SOCKET,
    DEFAULT_STATE,
    MAX_REQUEST,
    PROTOCOL_VERSION,
    LineReader,
    decode,
    dump_line,
    load_line,
)
from .state import LinkRecord, child_key
from .trace import FrameTracer, TraceFilter

log = logging.getLogger("pymacvlan.daemon")

#: a trace subscriber that cannot keep up loses events (counted) rather than stall the datapath
TRACE_SNDBUF = 1 << 20


# -- systemd ---------------------------------------------------------------------------------------------
def sd_notify(state: str) -> bool:
    """sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET (False if unset)."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr[0] == "@":
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(state.encode(), addr)
        return True
    except OSError as e:
        log.warning("sd_notify(%s) failed: %s", state, e)
        return False


def peer_uid(conn: socket.socket) -> int:
    _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    return uid


def _oserror(e: OSError, what: str, advice: str = "") -> KernelError:
    name = errno.errorcode.get(e.errno or 0, "EIO")
    return KernelError(name, f"{what}: {e.strerror or e}", advice)


# -- the daemon --------------------------------------------------------------------------------------------
@dataclass
class DaemonConfig:
    socket: str = DEFAULT_SOCKET
    state: str = DEFAULT_STATE
    #: namespace the parents live in (None: the daemon's own)
    netns: str | None = None
    #: the eBPF tc filter keeping parents' stacks from what macvlan consumes
    shield: bool = False
    #: where macvtap children's QEMU stream sockets go (default: next to the control socket)
    endpoint_dir: str | None = None
    #: seconds a connection may sit without a request (trace subscribers excepted)
    idle_timeout: float = 300.0
    #: seconds a started request line may take to finish, and queued replies to drain
    request_timeout: float = 10.0
    #: control connections at once (a new one beyond gets EBUSY)
    max_clients: int = 256
    #: reply bytes queued for a peer that does not read, before it is cut off
    max_output: int = 4 << 20
    #: the eBPF fast path, with veth children (DatapathConfig.fastpath), wherever it can load (the
    #: default); False (``--no-fastpath``): the Python path with TAP children
    fastpath: bool = True
    #: HOST:PORT to serve Prometheus metrics on (None: no metrics); see .metrics
    metrics: str | None = None


@dataclass
class _Peer:
    """One control connection: its partial request, its queued replies, its clock."""

    reader: LineReader
    last: float  # the last byte in or out
    out: bytearray = dataclasses.field(default_factory=bytearray)
    partial_since: float | None = None  # an unfinished request line began
    stalled_since: float | None = None  # replies queued that the peer does not read


class Daemon:
    """The service: datapaths per parent, the control socket, the state file."""

    def __init__(self, cfg: DaemonConfig) -> None:
        self.cfg = cfg
        self.datapaths: dict[str, Any] = {}
        self.links: dict[str, LinkRecord] = {}
        #: children from the state file that could not come back yet
        self.pending: list[LinkRecord] = []
        #: what the user must know about the state file (a corrupt one was replaced), or None
        self.state_warning: str | None = None
        #: stop() from the control socket with remove=True: children are deleted, not kept
        self._remove_on_stop = False
        self._next_reconcile = 0.0
        self.sel = selectors.DefaultSelector()
        self.listener: socket.socket | None = None
        self._peers: dict[socket.socket, _Peer] = {}
        self._subs: dict[socket.socket, TraceFilter] = {}
        self._sub_lock = threading.Lock()
        self.counters: Counter[str] = Counter()
        self._stop = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._lock = threading.RLock()
        self.metrics: Any = None  # the metrics.MetricsServer while serving
        #: the DHCP leases (pymacvlan.dhcp.service.DhcpService), made at start
        self.dhcp: Any = None
        #: replies produced off the control thread (dhcp.acquire), sent by _on_wake
        self._deferred: list[tuple[socket.socket, dict]] = []
        self._deferred_lock = threading.Lock()
        #: whether the eBPF fast path can load here, and why not (see _probe_fastpath)
        self.fastpath_status: dict[str, Any] = {"on": False, "reason": "not probed yet"}

    # -- life cycle -------------------------------------------------------------------------------
    def _probe_fastpath(self) -> dict[str, Any]:
        """Whether the eBPF fast path can load here (the programs and maps, no attachment yet):
        said once, in the log, ``hello``, ``stats`` and systemd's STATUS."""
        if not self.cfg.fastpath:
            return {"on": False, "reason": "off (--no-fastpath)"}
        from ..backends.userspace.fastpath import FastPath

        try:
            FastPath(self.cfg.netns).close()
        except Exception as e:  # no CAP_BPF, a verifier refusal, no bpf() at all
            reason = f"{type(e).__name__}: {e}"
            log.warning("eBPF fast path unavailable, the Python path (TAP children) carries every frame: %s", reason)
            return {"on": False, "reason": reason}
        return {"on": True, "reason": None}

    def _fastpath_line(self) -> str:
        fp = self.fastpath_status
        if fp["on"]:
            return "eBPF fast path on"
        return f"eBPF fast path {'off' if not self.cfg.fastpath else 'unavailable'}: {fp['reason']}"

    def start(self) -> Daemon:
        """Bind the control socket, restore the children, tell systemd we are ready."""
        self.fastpath_status = self._probe_fastpath()
        path = Path(self.cfg.socket)
        st = Path(self.cfg.state)
        if st.is_dir():  # checked before anything is made (issue 25: it said "starting empty", then died)
            raise KernelError("EISDIR", f"--state {st} is a directory",
                              f"give the state file, e.g. --state {st / 'state.json'}")
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            if not stat.S_ISSOCK(path.lstat().st_mode):  # never delete what is not a (stale) socket
                raise KernelError("ENOTSOCK", f"--socket {path} exists and is not a socket",
                                  "give a path for the control socket, or move that file away")
            if _socket_alive(str(path)):
                raise KernelError("EADDRINUSE", f"another daemon is listening on {path}",
                                  "stop it first, or use --socket for a second one")
            path.unlink()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)
        try:
            s.bind(str(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        s.listen(socket.SOMAXCONN)  # beyond max_clients a peer is told EBUSY, not left hanging
        s.setblocking(False)
        self.listener = s
        self.sel.register(s, selectors.EVENT_READ, self._accept)
        self.sel.register(self._wake_r, selectors.EVENT_READ, self._on_wake)
        if self.cfg.metrics:
            from .metrics import MetricsServer

            try:
                self.metrics = MetricsServer(self, self.cfg.metrics)
            except KernelError:
                self._close_listener()
                raise
        try:
            self._restore()
            self._start_dhcp()
        except BaseException as e:  # a daemon that cannot start leaves no socket behind
            self._close_listener()
            if self.metrics is not None:
                self.metrics.close()
            if isinstance(e, state.StateTooNew):
                raise KernelError("EPROTO", f"state file {self.cfg.state}: {e}", "run the newer pymacvlan that "
                                  "wrote it, or move the file away to start empty") from None
            raise
        log.info("listening on %s (state %s), %d child(ren) restored, %d pending",
                 path, self.cfg.state, len(self.links), len(self.pending))
        status = f"listening on {path}, {len(self.links)} children; {self._fastpath_line()}"
        if self.state_warning:
            status += f"; {self.state_warning}"
        sd_notify(f"READY=1\nSTATUS={status}")
        return self

    def serve_forever(self) -> None:
        """The control loop; SIGTERM/SIGINT (when run in the main thread) end it."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._on_signal)
            signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        try:
            while not self._stop:
                for key, _ev in self.sel.select(timeout=0.5):
                    try:
                        key.data(key.fileobj)
                    except Exception:  # a bad client or a bug must not end the daemon
                        log.exception("control socket handler failed")
                        self.counters["control_error"] += 1
                now = time.monotonic()
                self._reap(now)
                if now >= self._next_reconcile:
                    self._next_reconcile = now + 2.0
                    self._forget_vanished()
        finally:
            if threading.current_thread() is threading.main_thread():
                signal.set_wakeup_fd(-1)
            self.shutdown()

    def stop(self, remove: bool = False) -> None:
        """Ask :meth:`serve_forever` to return (any thread); ``remove``: delete every child."""
        self._remove_on_stop = self._remove_on_stop or remove
        self._stop = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _on_signal(self, signum: int, _frame) -> None:
        log.info("%s: shutting down", signal.Signals(signum).name)
        self._stop = True

    def _on_wake(self, sock: socket.socket) -> None:
        try:
            while sock.recv(4096):
                pass
        except BlockingIOError:
            pass
        with self._deferred_lock:
            ready, self._deferred = self._deferred, []
        for conn, reply in ready:
            if conn in self._peers:
                self._reply(conn, reply)

    def _defer(self, conn: socket.socket, req_id: Any) -> Any:
        """A callback (any thread) that sends one reply to ``conn`` later, through the wake socket."""
        def done(reply: dict) -> None:
            if req_id is not None:
                reply = {**reply, "id": req_id}
            with self._deferred_lock:
                self._deferred.append((conn, reply))
            try:
                self._wake_w.send(b"d")
            except OSError:
                pass
        return done

    # -- DHCP leases (pymacvlan.dhcp.service) -------------------------------------------------------
    def _start_dhcp(self) -> None:
        from ..dhcp.service import DhcpService

        self.dhcp = DhcpService(f"{self.cfg.state}.dhcp.json", netns=self.cfg.netns)
        n = self.dhcp.restore()
        if n:
            log.info("dhcp: %d lease(s) resumed", n)

    def _dhcp_op(self, conn: socket.socket, op: str, req: dict) -> dict | None:
        """dhcp.acquire (deferred reply), dhcp.release, dhcp.show, dhcp.events."""
        if self.dhcp is None:
            raise KernelError("EAGAIN", "the daemon's DHCP service is not running", "try again")
        if op == "dhcp.acquire":
            self.dhcp.acquire(req.get("lease") or {}, self._defer(conn, req.get("id")))
            return None
        if op == "dhcp.release":
            key = req.get("key")
            if not isinstance(key, str) or not key:
                raise KernelError("EINVAL", "dhcp.release: key must be a non-empty string")
            return {"ok": True, "released": self.dhcp.release(key)}
        if op == "dhcp.renew":
            key = req.get("key")
            if not isinstance(key, str) or not key:
                raise KernelError("EINVAL", "dhcp.renew: key must be a non-empty string")
            return {"ok": True, "renewing": self.dhcp.renew(key)}
        if op == "dhcp.show":
            return {"ok": True, "leases": self.dhcp.show(req.get("key")), "stats": self.dhcp.stats()}
        if op == "dhcp.events":
            since = req.get("since", 0)
            if not isinstance(since, int) or isinstance(since, bool):
                raise KernelError("EINVAL", "dhcp.events: since must be an integer (an event's seq)")
            return {"ok": True, "events": self.dhcp.events_since(since)}
        raise KernelError("EOPNOTSUPP", f"unknown op {op!r}", "expected dhcp.acquire, dhcp.release, dhcp.renew, "
                          "dhcp.show or dhcp.events")

    def shutdown(self, remove: bool | None = None) -> None:
        """Save the state, release every parent, remove the socket. The children's TAPs stay
        (carrier off) for the next start, unless ``remove`` (default: what :meth:`stop` asked)."""
        remove = self._remove_on_stop if remove is None else remove
        sd_notify("STOPPING=1")
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None
        with self._lock:
            if self.listener is None:
                return
            for conn in list(self._peers):
                self._drop(conn)
            self._close_listener()
            if self.dhcp is not None:
                if remove:
                    for lease in self.dhcp.show():
                        self.dhcp.release(lease["key"])
                self.dhcp.close()  # the leases stay saved, and valid, for the next start
                self.dhcp = None
            if remove:
                for rec in list(self.links.values()):
                    try:
                        self.link_del(rec.name, rec.netns)
                    except Exception:
                        log.exception("deleting %s", rec.key)
                self.pending.clear()
            try:
                self._save()
            except OSError as e:
                log.error("cannot write the state file %s: %s", self.cfg.state, e)
            for name, dp in list(self.datapaths.items()):
                try:
                    dp.close(keep_children=True)
                except Exception:
                    log.exception("closing the datapath on %s", name)
            kept = len(self.links)
            self.datapaths.clear()
            self.links.clear()
            self._wake_r.close()
            self._wake_w.close()
            self.sel.close()
        if remove:
            log.info("stopped: every child deleted, every membership released")
        else:
            log.info("stopped: %d child(ren) kept (carrier off until the next start), every membership released", kept)

    def _close_listener(self) -> None:
        if self.listener is None:
            return
        try:
            self.sel.unregister(self.listener)
        except (KeyError, ValueError):
            pass
        self.listener.close()
        self.listener = None
        try:
            os.unlink(self.cfg.socket)
        except FileNotFoundError:
            pass

    # -- control socket ------------------------------------------------------------------------
    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except BlockingIOError:
                return
            conn.setblocking(False)
            uid = peer_uid(conn)
            if uid not in (0, os.getuid()):
                self.counters["peer_refused"] += 1
                log.warning("refused a control connection from uid %d", uid)
                self._say_and_close(conn, KernelError("EPERM", f"uid {uid} may not control pymacvlan",
                                                      "the control socket is for root (or the daemon's own user)"))
                continue
            if len(self._peers) >= self.cfg.max_clients:
                self.counters["client_refused_busy"] += 1
                self._say_and_close(conn, KernelError(
                    "EBUSY", f"too many control connections ({self.cfg.max_clients})",
                    "close idle ones, or try again"))
                continue
            self._peers[conn] = _Peer(LineReader(MAX_REQUEST), time.monotonic())
            self.sel.register(conn, selectors.EVENT_READ, self._on_conn)

    def _on_conn(self, conn: socket.socket) -> None:
        peer = self._peers.get(conn)
        if peer is None:
            return
        if peer.out:
            self._flush(conn, peer)
            if conn not in self._peers:
                return
        try:
            data = conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        now = time.monotonic()
        peer.last = now
        try:
            lines = peer.reader.feed(data)
        except KernelError as e:
            self.counters["request_too_long"] += 1
            log.warning("control peer cut off: %s", e.message)
            self._drop(conn, e)
            return
        peer.partial_since = (peer.partial_since or now) if peer.reader.buf else None
        for line in lines:
            if conn in self._subs:
                continue  # a subscriber only ever closes
            reply = self._request(conn, line)
            if reply is not None:
                self._reply(conn, reply)
            if conn not in self._peers:
                return  # cut off (it does not read its replies)

    def _reply(self, conn: socket.socket, obj: dict) -> None:
        """Queue one reply and send what the socket takes now; never wait for the peer."""
        peer = self._peers.get(conn)
        if peer is None:
            return
        peer.out += dump_line(obj)
        if len(peer.out) > self.cfg.max_output:
            self._slow_reader(conn, f"more than {self.cfg.max_output} bytes of replies unread")
            return
        self._flush(conn, peer)

    def _flush(self, conn: socket.socket, peer: _Peer) -> None:
        try:
            n = conn.send(peer.out)
        except BlockingIOError:
            n = 0
        except OSError:
            self._drop(conn)
            return
        del peer.out[:n]
        if n:
            peer.last = time.monotonic()
        if peer.out:
            if n or peer.stalled_since is None:  # the clock runs while nothing moves
                peer.stalled_since = time.monotonic()
            self.sel.modify(conn, selectors.EVENT_READ | selectors.EVENT_WRITE, self._on_conn)
        elif peer.stalled_since is not None:
            peer.stalled_since = None
            self.sel.modify(conn, selectors.EVENT_READ, self._on_conn)

    def _slow_reader(self, conn: socket.socket, why: str) -> None:
        self.counters["slow_reader_dropped"] += 1
        log.warning("control peer cut off: %s", why)
        self._drop(conn)

    def _reap(self, now: float) -> None:
        """Close what waits too long: idle peers, unfinished requests, unread replies."""
        cfg = self.cfg
        for conn, peer in list(self._peers.items()):
            if conn in self._subs:
                continue  # a trace subscriber is quiet by design; its events never wait
            if peer.stalled_since is not None and now - peer.stalled_since > cfg.request_timeout:
                self._slow_reader(conn, f"replies unread for {cfg.request_timeout:g} s")
            elif peer.partial_since is not None and now - peer.partial_since > cfg.request_timeout:
                self.counters["request_timeout"] += 1
                self._drop(conn, KernelError("ETIMEDOUT", f"request line unfinished after {cfg.request_timeout:g} s",
                                             "end every request with a newline"))
            elif now - peer.last > cfg.idle_timeout:
                self.counters["idle_closed"] += 1
                self._drop(conn, KernelError("ETIMEDOUT", f"idle for {cfg.idle_timeout:g} s",
                                             "connect again when there is something to ask"))

    def _forget_vanished(self) -> None:
        """Children the datapath let go on its own (their namespace was deleted, or their TAP
        with `ip link del` inside it) are forgotten here too, as the kernel forgets a macvlan
        whose namespace goes; a parent left without children is released."""
        with self._lock:
            for pname, dp in list(self.datapaths.items()):
                alive = dp.call(lambda dp=dp: set(dp.engine.children))
                gone = [r for r in self.links.values() if r.parent == pname and r.key not in alive]
                for rec in gone:
                    del self.links[rec.key]
                    self.counters["children_vanished"] += 1
                    log.info("%s vanished (its namespace or device was deleted): forgotten", rec.key)
                if gone:
                    self._release_parent_if_unused(pname)
                    self._save()

    @staticmethod
    def _say_and_close(conn: socket.socket, err: KernelError) -> None:
        """A last error line, if the socket takes it now, then close."""
        try:
            conn.send(dump_line(err.as_result()), socket.MSG_DONTWAIT)
        except OSError:
            pass
        conn.close()

    def _drop(self, conn: socket.socket, last_word: KernelError | None = None) -> None:
        self._peers.pop(conn, None)
        with self._sub_lock:
            had = self._subs.pop(conn, None) is not None
        if had:
            self._update_tracers()
        try:
            self.sel.unregister(conn)
        except (KeyError, ValueError):
            pass
        if last_word is not None:
            self._say_and_close(conn, last_word)
        else:
            conn.close()

    def _request(self, conn: socket.socket, line: bytes) -> dict | None:
        """One request's reply, always (with the request's ``id`` when it had one): a bug
        while handling it is an EIO reply naming the request, never silence."""
        try:
            req = load_line(line)
        except KernelError as e:
            return e.as_result()
        reply = self._handle(conn, req)
        if reply is not None and "id" in req:
            reply["id"] = req["id"]
        return reply

    def _handle(self, conn: socket.socket, req: dict) -> dict | None:
        op = req.get("op")
        try:
            handler = OPS.get(op) if isinstance(op, str) else None
            if handler is None:
                return KernelError("EOPNOTSUPP", f"unknown op {op!r}", "expected " + ", ".join(OPS)).as_result()
            with self._lock:
                return handler(self, conn, req)
        except KernelError as e:
            return e.as_result()
        except OSError as e:
            return _oserror(e, str(op)).as_result()
        except Exception as e:  # a bug: say so to the client at once, keep serving
            self.counters["internal_error"] += 1
            log.exception("request %s (%s) failed", req.get("id", "?"), op)
            return KernelError(
                "EIO",
                f"internal error in the daemon handling request {req.get('id', '?')} ({op}): {type(e).__name__}: {e}",
                "a bug: the daemon's log has the traceback; please report it",
            ).as_result()

    # -- links ---------------------------------------------------------------------------------
    def _find(self, name: str, netns: str | None) -> LinkRecord:
        rec = self.links.get(child_key(name, netns))
        if rec is None and netns is None:
            hits = [r for r in self.links.values() if r.name == name]
            if len(hits) == 1:
                rec = hits[0]
            elif len(hits) > 1:
                raise KernelError("ENODEV", f"{name} exists in several namespaces",
                                  "say which: " + ", ".join(f"netns {r.netns}" for r in hits))
        if rec is None:
            raise KernelError("ENODEV", f'Cannot find device "{name}"',
                              "pymacvlan link show --backend userspace lists the daemon's children")
        return rec

    def _datapath(self, parent: str):
        dp = self.datapaths.get(parent)
        if dp is not None:
            return dp
        from ..backends.userspace.datapath import Datapath, DatapathConfig
        from ..backends.userspace.parent import ParentConfig

        try:
            # where the probe failed, the Python path with TAP children at once (said once, at start)
            on = self.cfg.fastpath and self.fastpath_status["on"]
            fast: dict[str, Any] = {} if on else {"children": "tap", "fastpath": False}
            dp = Datapath(DatapathConfig(ParentConfig(parent, self.cfg.netns), shield=self.cfg.shield, persist=True,
                                         **fast))
            if not on:
                dp.fastpath_error = self.fastpath_status["reason"]
        except OSError as e:
            if e.errno == errno.ENODEV:
                raise KernelError("ENODEV", f'Cannot find device "{parent}"',
                                  "the parent must exist" + (f" in namespace {self.cfg.netns}" if self.cfg.netns
                                                             else " in the daemon's namespace")) from None
            raise _oserror(e, f"cannot open parent {parent}") from None
        dp.start()
        self.datapaths[parent] = dp
        self._update_tracers()
        log.info("parent %s attached", parent)
        return dp

    def _release_parent_if_unused(self, parent: str) -> None:
        if any(r.parent == parent for r in self.links.values()):
            return
        dp = self.datapaths.pop(parent, None)
        if dp is not None:
            dp.close()
            log.info("parent %s released (no children left)", parent)

    def link_add(self, req: LinkRequest, save: bool = True, adopt: LinkRecord | None = None) -> dict:
        """``adopt``: the record of a child a previous daemon left (its TAP is re-attached)."""
        validate_request(req)
        check_endpoint(req, "userspace", sockets=True)
        key = child_key(req.name, req.netns)
        if key in self.links:
            raise KernelError("EEXIST", f"a device named {req.name!r} already exists"
                              + (f" in namespace {req.netns}" if req.netns else ""))
        if req.kind == "macvtap" and req.netns is not None:
            raise KernelError("EOPNOTSUPP", "a userspace macvtap is a socket, not a netdev: it has no namespace",
                              "drop netns; QEMU connects to the socket path `link show` prints")
        fresh = req.parent not in self.datapaths
        dp = self._datapath(req.parent)
        kw: dict[str, Any] = {}
        if req.macaddrs or req.macaddr_mode in (MacaddrMode.SET, MacaddrMode.ADD):
            kw["macaddr"] = list(req.macaddrs)
        if req.bcqueuelen is not None:
            kw["bcqueuelen"] = req.bcqueuelen
        if req.bclim is not None:
            kw["bclim"] = req.bclim
        try:
            if req.kind == "macvlan":
                # without a namespace the TAP goes where the parents are (--netns), as if the
                # daemon ran there
                tap_ns = req.netns if req.netns is not None else self.cfg.netns
                info = dp.add_macvlan(key, req.mode, mac=req.address, mtu=req.mtu, netns=tap_ns,
                                      ifname=req.name, flags=int(req.flags or 0),
                                      adopt=adopt.ifindex if adopt is not None else None,
                                      tx_dropped_seen=adopt.tx_dropped if adopt is not None else 0, **kw)
                endpoint = None
            else:
                ep = self._endpoint(key, req, adopt.ifindex if adopt is not None else None)
                endpoint = ep_path(ep)
                try:
                    info = dp.add_macvtap(key, ep, req.mode, mac=req.address,
                                          mtu=req.mtu, flags=int(req.flags or 0), up=False, **kw)
                except BaseException:
                    ep.close()
                    raise
        except OSError as e:
            if fresh:
                self._release_parent_if_unused(req.parent)
            if e.errno == errno.EEXIST:
                raise KernelError("EEXIST", f"a device named {req.name!r} already exists"
                                  + (f" in namespace {req.netns}" if req.netns else ""),
                                  "pick another name, or delete that device first") from None
            if e.errno == errno.ENOENT and req.netns:
                raise KernelError("ENOENT", f"no network namespace named {req.netns!r}",
                                  f"create it first (ip netns add {req.netns})") from None
            raise _oserror(e, f"cannot create {req.name}") from None
        except KernelError:
            if fresh:
                self._release_parent_if_unused(req.parent)
            raise
        if req.up:
            try:
                dp.set_up(key, True)
            except (KernelError, OSError):  # rtnl_newlink(): a link that cannot come up goes again
                dp.delete(key)
                if fresh:
                    self._release_parent_if_unused(req.parent)
                raise
        mode, mac, flags = dp.call(_child_settings, dp, key)  # read on the datapath's thread
        self.links[key] = LinkRecord(req.name, req.parent, req.kind, req.netns, mode, mac_str(mac),
                                     req.mtu, flags, [mac_str(m) for m in req.macaddrs],
                                     req.bcqueuelen, req.bclim, endpoint=endpoint, ifindex=info.get("ifindex"),
                                     endpoint_kind=req.endpoint or "stream" if req.kind == "macvtap" else None,
                                     endpoint_user=req.endpoint_user, endpoint_group=req.endpoint_group,
                                     endpoint_mode=req.endpoint_mode)
        log.info("added %s %s on %s (%s, %s)%s", req.kind, req.name, req.parent, Mode(mode).name.lower(),
                 mac_str(mac), f" in {req.netns}" if req.netns else "")
        self.pending = [r for r in self.pending if r.key != key]  # a new child supersedes its old record
        if save:
            self._save()
        rec = self.links[key]
        return {"name": req.name, "ifindex": info.get("ifindex"), "address": mac_str(mac),
                "endpoint": dp.call(_endpoint_view, dp, rec)}

    def _endpoint(self, key: str, req: LinkRequest, adopt: int | None = None):
        """The macvtap's endpoint (``req.endpoint``, stream by default) at
        ``<endpoint dir>/<name>.sock``, owned and moded as asked, before any is made.
        A tapfd's TAP is persistent, so the VM holding it keeps it across a daemon restart;
        ``adopt`` (its ifindex) takes it back then, even while the VM still holds it."""
        from ..backends.userspace.endpoints import DgramEndpoint, StreamEndpoint, TapFdEndpoint

        uid, gid = _owner(req.endpoint_user, req.endpoint_group)
        path = str(Path(self.cfg.endpoint_dir or Path(self.cfg.socket).parent) / f"{req.name}.sock")
        kind = req.endpoint or "stream"
        if kind == "stream":
            ep: Any = StreamEndpoint(key, path)
        elif kind == "dgram":
            ep = DgramEndpoint(key, path)
        else:  # tapfd: the TAP is a netdev named like the child, where the parents are
            ep = TapFdEndpoint(key, req.name, path, netns=self.cfg.netns, mtu=req.mtu, persist=True, adopt=adopt)
        try:
            if uid != -1 or gid != -1:
                os.chown(path, uid, gid)
            if req.endpoint_mode is not None:
                os.chmod(path, req.endpoint_mode)
        except OSError as e:
            ep.close()
            raise _oserror(e, f"cannot give {path} its owner or mode") from None
        return ep

    def link_set(self, name: str, change: LinkChange, netns: str | None = None) -> None:
        rec = self._find(name, netns)
        if change.kind is not None and change.kind != rec.kind:
            raise KernelError("EOPNOTSUPP", f"{name} is a {rec.kind}, not a {change.kind}",
                              f"say `type {rec.kind}`")
        dp = self.datapaths[rec.parent]
        try:
            dp.call(apply_change, dp, rec.key, change)
        finally:
            self._snapshot(rec)
            self._save()

    def link_del(self, name: str, netns: str | None = None) -> None:
        try:
            rec = self._find(name, netns)
        except KernelError:
            # a child that could not be restored (its parent was missing ...) is only a record:
            # deleting it drops the record, or it would come back at every start
            gone = [r for r in self.pending if r.name == name and (netns is None or r.netns == netns)]
            if not gone:
                raise
            self.pending = [r for r in self.pending if r not in gone]
            log.info("dropped the pending record%s of %s", "s" if len(gone) > 1 else "", name)
            self._save()
            return
        dp = self.datapaths.get(rec.parent)
        if dp is not None:
            dp.delete(rec.key)
        del self.links[rec.key]
        log.info("deleted %s", rec.key)
        self._release_parent_if_unused(rec.parent)
        self._save()

    def link_show(self, name: str | None = None, kind: str | None = None, netns: str | None = None) -> list[dict]:
        out = []
        if name is not None:
            recs = [self._find(name, netns)]
        else:
            recs = [r for r in self.links.values() if netns is None or r.netns == netns]
        for rec in recs:
            if kind is not None and rec.kind != kind:
                continue
            dp = self.datapaths.get(rec.parent)
            if dp is None:
                continue
            d = dp.call(_show_one, dp, rec)
            if d is not None:
                out.append(d)
        return out

    # -- stats ------------------------------------------------------------------------------------
    def stats(self, name: str | None = None, netns: str | None = None) -> dict:
        """Per parent: datapath counters, engine drops by reason, the parent socket's counters
        and per-child stats64 (with the macvtap endpoint's own counters)."""
        want = self._find(name, netns).key if name else None
        parents = {}
        for pname, dp in self.datapaths.items():
            st = dp.stats()
            children = {}
            for key, c in st["children"].items():
                rec = self.links.get(key)
                if want is not None and key != want:
                    continue
                c = dict(c)
                if rec is not None:
                    c["ifname"], c["netns"], c["kind"] = rec.name, rec.netns, rec.kind
                children[key] = c
            if want is not None and not children:
                continue
            st["children"] = children
            parents[pname] = st
        with self._sub_lock:
            subs = len(self._subs)
        return {"daemon": {**self.counters, "trace_subscribers": subs}, "fastpath": self.fastpath_status,
                "parents": parents}

    # -- trace ------------------------------------------------------------------------------------
    def subscribe(self, conn: socket.socket, flt: TraceFilter, request_id: Any = None) -> None:
        if flt.child is not None and not any(flt.child in (r.name, r.key) for r in self.links.values()):
            raise KernelError("ENODEV", f'Cannot find device "{flt.child}"',
                              "trace --child takes the name of one of the daemon's children")
        self._reply(conn, {"ok": True, "parents": sorted(self.datapaths),
                           **({"id": request_id} if request_id is not None else {})})
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, TRACE_SNDBUF)
        with self._sub_lock:
            self._subs[conn] = flt
        self._update_tracers()

    def _update_tracers(self) -> None:
        with self._sub_lock:
            subs = list(self._subs.items())
        for pname, dp in self.datapaths.items():
            if not subs:
                dp.set_observer(None)
                continue
            flts = []
            for _conn, f in subs:
                if f.child is not None:  # the engine knows the child by its key
                    rec = next((r for r in self.links.values() if f.child in (r.name, r.key)), None)
                    f = dataclasses.replace(f, child=rec.key if rec is not None else f.child)
                flts.append(f)
            dp.set_observer(FrameTracer(pname, flts, self._emit, dp.engine))

    def _emit(self, event: dict) -> None:
        """On a datapath thread: send to every subscriber; never block (drop and count)."""
        data = dump_line(event)
        with self._sub_lock:
            subs = list(self._subs)
        for conn in subs:
            try:
                conn.send(data, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                self.counters["trace_events_dropped"] += 1
            except OSError:
                self.counters["trace_send_error"] += 1

    # -- state file ---------------------------------------------------------------------------------
    def _snapshot(self, rec: LinkRecord) -> None:
        """Copy the child's live state (which the user may also change inside its namespace)."""
        dp = self.datapaths.get(rec.parent)
        if dp is None:
            return

        def read() -> None:
            vlan = dp.engine.children.get(rec.key)
            if vlan is None:
                return
            rec.mode, rec.flags, rec.address, rec.mtu = int(vlan.mode), int(vlan.flags), mac_str(vlan.mac), vlan.mtu
            rec.up, rec.promisc, rec.allmulticast = vlan.up, vlan.promisc_user, vlan.allmulti_user
            port = dp.engine.port
            rec.macaddrs = ([mac_str(m) for m in port.source_dump(vlan)]
                            if port is not None and vlan.mode == Mode.SOURCE else [])
            if port is not None:
                rec.bcqueuelen = vlan.bc_queue_len_req
                rec.bclim = port.bc_cutoff
            if rec.key in dp.taps:
                rec.tx_dropped = dp.tap_tx_dropped(rec.key)

        dp.call(read)

    def _save(self) -> None:
        live = [k for k in list(self.links)]
        for key in live:
            rec = self.links.get(key)
            if rec is not None:
                try:
                    self._snapshot(rec)
                except Exception:
                    log.exception("reading %s for the state file", key)
        state.save(self.cfg.state, list(self.links.values()) + self.pending)

    def _restore(self) -> None:
        # in the file's order: a passthru child comes back first (alone), source lists after
        # their parent's port exists
        records, self.state_warning = state.load(self.cfg.state)
        for rec in records:
            try:
                adopt = rec if (rec.kind == "macvlan" or rec.endpoint_kind == "tapfd") and rec.ifindex is not None \
                    else None
                try:
                    self.link_add(rec.request(), save=False, adopt=adopt)
                except KernelError as e:
                    if adopt is None or e.errno_name != "ENODEV" or not _tap_gone(rec):
                        raise
                    log.info("%s: its TAP is gone (a reboot?): creating it anew", rec.key)
                    self.link_add(rec.request(), save=False)
                    adopt = None
                change = rec.change()
                # an adopted macvlan TAP brought its own state; a macvtap's is the record's
                if change is not None and (adopt is None or rec.kind == "macvtap"):
                    self.link_set(rec.name, change, rec.netns)
            except (KernelError, OSError) as e:
                log.warning("cannot restore %s on %s: %s (kept in the state file)", rec.key, rec.parent, e)
                self.pending.append(rec)
        self._save()


# -- requests: one handler per op, dispatched from OPS (as macvlan's ops tables: one entry per verb) --
def _op_hello(d: Daemon, conn: socket.socket, req: dict) -> dict | None:
    return {"ok": True, "version": PROTOCOL_VERSION, "pid": os.getpid(),
            "state_warning": d.state_warning, "fastpath": d.fastpath_status, "netns": d.cfg.netns}


def _op_stop(d: Daemon, conn: socket.socket, req: dict) -> dict | None:
    d.stop(remove=bool(req.get("remove")))
    return {"ok": True}


def _op_link_add(d: Daemon, conn: socket.socket, req: dict) -> dict | None:
    return {"ok": True, "link": d.link_add(decode(LinkRequest, req.get("req")))}


def _op_link_set(d: Daemon, conn: socket.socket, req: dict) -> dict | None:
    d.link_set(req.get("name", ""), decode(LinkChange, req.get("change", {})), req.get("netns"))
    return {"ok": True}


def _op_link_del(d: Daemon, conn: socket.socket, req: dict) -> dict | None:
    d.link_del(req.get("name", ""), req.get("netns"))
    return {"ok": True}


def _op_link_show(d: Daemon, conn: socket.socket, req: dict) -> dict | None:
    return {"ok": True, "links": d.link_show(req.get("name"), req.get("kind"), req.get("netns"))}


def _op_stats(d: Daemon, conn: socket.socket, req: dict) -> dict | None:
    return {"ok": True, **d.stats(req.get("name"), req.get("netns"))}


def _op_dhcp(d: Daemon, conn: socket.socket, req: dict) -> dict | None:
    return d._dhcp_op(conn, req["op"], req)


def _op_trace(d: Daemon, conn: socket.socket, req: dict) -> dict | None:
    d.subscribe(conn, TraceFilter.from_request(req), req.get("id"))
    return None  # subscribe() answered before the first event


#: the control protocol's ops and their handlers
OPS: dict[str, Callable[[Daemon, socket.socket, dict], dict | None]] = {
    "hello": _op_hello, "stop": _op_stop, "link.add": _op_link_add, "link.set": _op_link_set,
    "link.del": _op_link_del, "link.show": _op_link_show, "stats": _op_stats, "trace": _op_trace,
    # the DHCP service's ops (i22): one handler for them
    **{op: _op_dhcp for op in ("dhcp.acquire", "dhcp.release", "dhcp.renew", "dhcp.show", "dhcp.events")},
}


def _endpoint_view(dp, rec: LinkRecord) -> dict | None:
    """What `link show` prints about a macvtap's endpoint (and vm-args reads)."""
    if rec.endpoint is None:
        return None
    ep = dp.endpoints.get(rec.key)
    view: dict[str, Any] = {"kind": rec.endpoint_kind or "stream", "path": rec.endpoint}
    if ep is not None:
        if view["kind"] == "tapfd":
            view["ifname"] = ep.tap.name
        else:
            view["connected"] = bool(ep.connected)
    try:
        st = os.stat(rec.endpoint)
        view["owner"], view["group"], view["perm"] = st.st_uid, st.st_gid, f"{st.st_mode & 0o7777:04o}"
    except OSError:
        pass
    return view


def _show_one(dp, rec: LinkRecord) -> dict | None:
    """One ``ip -j -d -s link show`` object (iproute2's keys) from the engine's state; the
    child is shown as if in the parent's namespace, its real one under ``netns``."""
    from ..engine.fill_info import child_link

    vlan = dp.engine.children.get(rec.key)
    if vlan is None:
        return None
    tap = dp.taps.get(rec.key)
    d = child_link(dp.engine, vlan, rec.name, tap.ifindex if tap is not None else 0, rec.parent,
                   dp.parent.ifindex if dp.parent is not None else 0)
    if rec.netns is not None:
        d["netns"] = rec.netns  # not an iproute2 key: where the child lives
    if rec.endpoint is not None:
        d["endpoint"] = _endpoint_view(dp, rec)  # not an iproute2 key: where QEMU connects
    return d


def _child_settings(dp: Any, key: str) -> tuple[int, bytes, int]:
    """A read-only view of child ``key``'s mode, MAC and flags; called through ``dp.call`` so the
    engine is read on its own thread, never from the control thread."""
    v = dp.engine.children[key]
    return int(v.mode), bytes(v.mac), int(v.flags)


def _tap_gone(rec: LinkRecord) -> bool:
    """No device has the record's name in its namespace any more (and the namespace exists)."""
    from ..backends.userspace.syscalls import NetdevCtl

    try:
        ctl = NetdevCtl(rec.netns)
    except OSError:
        return False  # the namespace itself is gone: nothing to create the TAP in
    try:
        return ctl.ifindex(rec.name) is None
    finally:
        ctl.close()


def ep_path(ep) -> str:
    """The socket a client uses: the stream/dgram socket, or the TAP fd's handover socket."""
    return getattr(ep, "handover_path", None) or ep.path


def _owner(user: str | None, group: str | None) -> tuple[int, int]:
    """uid and gid for os.chown (-1: unchanged) from names or numbers; EINVAL if unknown."""
    import grp
    import pwd

    def look(v: str | None, db, what: str) -> int:
        if v is None:
            return -1
        if v.isdigit():
            return int(v)
        try:
            return (db.getpwnam(v).pw_uid if db is pwd else db.getgrnam(v).gr_gid)
        except KeyError:
            raise KernelError(
                "EINVAL",
                f"no {what} named {v!r}",
                f"give endpoint-{'user' if db is pwd else 'group'} an existing name or a number",
            ) from None

    return look(user, pwd, "user"), look(group, grp, "group")


def _socket_alive(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def run(cfg: DaemonConfig) -> int:
    """`pymacvlan daemon`: start, serve until SIGTERM/SIGINT, clean up."""
    d = Daemon(cfg)
    d.start()
    d.serve_forever()
    return 0
