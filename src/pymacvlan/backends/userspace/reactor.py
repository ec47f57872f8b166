"""The datapath's reactor: one thread, one epoll loop, and a way in for other threads.

:class:`Reactor` knows nothing of macvlan. It watches file descriptors (:meth:`~Reactor.watch`),
runs one pass per wake-up (every ready handler, then :meth:`~Reactor._end_of_pass`), polls
without sleeping for a short while after a pass that moved frames (``busy_poll_us``), runs
:meth:`~Reactor._housekeeping` once per period, and runs functions other threads hand it
between passes (:meth:`~Reactor.call`, woken by an eventfd), so whatever the handlers touch
is only ever touched by this one thread.

It also owns what epoll reports about a failed descriptor: an error or a hang-up is
reported whatever was asked for, level-triggered, for as long as it lasts, so an fd nobody
clears would wake the loop on every pass forever (issue 20: a veth child's ring socket bound
while its device was down, 100% of a core while idle). :meth:`~Reactor._fd_failed` reads and
clears the socket's error, counts it by the fd's kind and errno, logs the first of each, and
parks an fd whose failure does not clear until the next housekeeping pass re-arms it.
"""

from __future__ import annotations

import concurrent.futures
import errno
import logging
import os
import select
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Self

log = logging.getLogger("pymacvlan.datapath")

__all__ = ["Reactor", "FAILED", "PARK_AFTER", "STALL_WAIT_MAX"]

EPOLLIN, EPOLLOUT = select.EPOLLIN, select.EPOLLOUT
#: what epoll reports whatever was asked for: an error pending on the socket, or a hang-up
FAILED = select.EPOLLERR | select.EPOLLHUP
#: an fd whose error or hang-up neither reading SO_ERROR nor its handler cleared, this many
#: times within one housekeeping period, is parked (taken out of epoll) until the next
#: housekeeping pass re-arms it: level-triggered epoll would otherwise report it on every pass
PARK_AFTER = 3
#: longest wait between re-kicks of a stalled tx ring (doubling from 200 µs while nothing else
#: happens): a receiver that stopped reading must not keep the loop awake 5,000 times a second
STALL_WAIT_MAX = 0.05


def _so_error(fd: int) -> int:
    """SO_ERROR of ``fd`` (reading it clears the socket's pending error); 0 for a non-socket."""
    try:
        s = socket.socket(fileno=fd)
    except OSError:  # ENOTSOCK: a TAP, an eventfd
        return 0
    try:
        return s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    except OSError:
        return 0
    finally:
        s.detach()


class Reactor:
    """The loop. Subclasses fill in the hooks (:meth:`_end_of_pass`, :meth:`_housekeeping`,
    :meth:`_tx_stalled`, :meth:`_before_commands`, :meth:`_after_commands`)."""

    def __init__(self, *, busy_poll_us: int = 200, housekeeping: float = 1.0, nice: int | None = None) -> None:
        self.counters: Counter[str] = Counter()
        self._busy_poll_us = busy_poll_us
        self._hk_period = housekeeping
        self._nice = nice
        self._handlers: dict[int, Callable[[int], None]] = {}
        self._events: dict[int, int] = {}
        #: what each watched fd is ("parent", "veth", "tap", "endpoint", "netlink", "wake"), for
        #: the error counters and the one log line per kind of failure
        self._kinds: dict[int, str] = {}
        #: fds whose error or hang-up was not cleared, and how often since the last housekeeping
        self._failing: Counter[int] = Counter()
        #: parked fds (see PARK_AFTER) and the events to re-arm them with
        self._parked: dict[int, int] = {}
        #: the failure keys already logged (each is logged once, then only counted)
        self._logged: set[str] = set()
        self.ep = select.epoll()
        self._cmds: list[tuple[Callable, tuple, dict, concurrent.futures.Future]] = []
        self._cmd_lock = threading.Lock()
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._thread: threading.Thread | None = None
        self._loop_ident: int | None = None
        self._stop = False
        self._next_hk = time.monotonic() + housekeeping

    # -- watching ---------------------------------------------------------------------------
    def watch(self, fd: int, handler: Callable[[int], None], write: bool = False, kind: str = "fd") -> None:
        """Call ``handler(events)`` when ``fd`` is readable (or writable). An error or hang-up
        is handled here as well (see :meth:`_fd_failed`); ``kind`` names the fd in its counters."""
        ev = EPOLLIN | (EPOLLOUT if write else 0)
        self._handlers[fd] = handler
        self._events[fd] = ev
        self._kinds[fd] = kind
        self.ep.register(fd, ev)

    def want_write(self, fd: int, on: bool) -> None:
        ev = self._events.get(fd)
        if ev is None:
            return
        new = (ev | EPOLLOUT) if on else (ev & ~EPOLLOUT)
        if new != ev:
            self._events[fd] = new
            if fd in self._parked:
                self._parked[fd] = new  # re-armed with it at the next housekeeping
            else:
                self.ep.modify(fd, new)

    def unwatch(self, fd: int) -> None:
        if self._handlers.pop(fd, None) is not None:
            self._events.pop(fd, None)
            self._kinds.pop(fd, None)
            self._failing.pop(fd, None)
            if self._parked.pop(fd, None) is not None:
                return  # not registered while parked
            try:
                self.ep.unregister(fd)
            except (OSError, ValueError):
                pass

    def _fd_failed(self, fd: int, events: int) -> None:
        """``fd`` polled with EPOLLERR or EPOLLHUP (its handler has run). epoll reports both
        whatever was asked for, level-triggered, for as long as they last: a packet socket
        bound to a device that is down (a veth child's outer end before its carrier, or set
        down by anyone) holds ENETDOWN in sk_err, which only a recv() or SO_ERROR clears, and
        the rings never recv(), so the loop would wake for it forever. So: read SO_ERROR
        (that clears it; the kernel re-attaches the socket itself when the device comes up),
        count it by kind and errno, log the first of each, and park an fd whose failure does
        not clear (a TAP whose device is gone, a peer that hung up) until the next
        housekeeping, which re-arms it."""
        if fd not in self._handlers:
            return  # the handler let it go
        kind = self._kinds.get(fd, "fd")
        err = _so_error(fd)
        if err:
            key = f"fd_error_{kind}_{errno.errorcode.get(err, err)}"
        elif events & select.EPOLLHUP:
            key = f"fd_hangup_{kind}"
        else:
            key = f"fd_error_{kind}"
        self.counters[key] += 1
        if key not in self._logged:
            self._logged.add(key)
            log.warning("%s fd %d reported %s%s: handled and counted as %s (further ones are only counted)",
                        kind, fd, "a hang-up" if events & select.EPOLLHUP else "an error",
                        f" ({os.strerror(err)})" if err else "", key)
        if err:
            return  # cleared: the next poll does not report it again
        self._failing[fd] += 1
        if self._failing[fd] >= PARK_AFTER:
            self._park(fd)

    def _park(self, fd: int) -> None:
        try:
            self.ep.unregister(fd)
        except (OSError, ValueError):
            pass
        self._parked[fd] = self._events.get(fd, EPOLLIN)
        self.counters[f"fd_parked_{self._kinds.get(fd, 'fd')}"] += 1

    def _rearm_parked(self) -> None:
        """Housekeeping: parked fds go back into epoll (a failure that lasts parks them again)."""
        self._failing.clear()
        parked, self._parked = self._parked, {}
        for fd, ev in parked.items():
            if fd in self._handlers:
                try:
                    self.ep.register(fd, ev)
                except OSError:
                    self.counters["fd_rearm_error"] += 1

    # -- the loop ----------------------------------------------------------------------------------
    def start(self) -> Self:
        """Run the loop in a daemon thread; :meth:`close` stops and joins it."""
        ready = threading.Event()

        def main() -> None:
            self._loop_ident = threading.get_ident()
            ready.set()
            self.run()

        self._thread = threading.Thread(target=main, name="pymacvlan-datapath", daemon=True)
        self._thread.start()
        ready.wait()
        return self

    def run(self) -> None:
        self._loop_ident = threading.get_ident()
        if self._nice is not None:
            try:  # per thread on Linux: only the loop's priority changes
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self._nice)
            except OSError:
                self.counters["nice_refused"] += 1
        poll = self.ep.poll
        handlers = self._handlers
        hk = self._hk_period
        counters = self.counters
        monotonic = time.monotonic
        spin = self._busy_poll_us / 1e6
        spin_until = 0.0
        stall_wait = 0.0002
        while not self._stop:
            now = monotonic()
            if now < spin_until:
                timeout = 0.0
            else:
                timeout = max(0.0, self._next_hk - now)
                if self._tx_stalled():
                    timeout = min(timeout, stall_wait)  # re-kick the tx ring soon (see Parent.flush)
            try:
                events = poll(timeout)
            except InterruptedError:  # pragma: no cover - PEP 475 retries
                continue
            if not events:
                if now < spin_until and not self._tx_stalled():
                    continue  # spinning and nothing to flush; housekeeping waits for the next sleep
                if timeout:
                    stall_wait = min(stall_wait * 2, STALL_WAIT_MAX)  # still stalled, nothing moved
            else:
                stall_wait = 0.0002
                if spin:
                    spin_until = monotonic() + spin
            for fd, ev in events:
                h = handlers.get(fd)
                if h is not None:
                    try:
                        h(ev)
                    except Exception as e:  # a bug or an unexpected errno must not stop the datapath
                        counters[f"handler_error_{type(e).__name__}"] += 1
                    if ev & FAILED:
                        self._fd_failed(fd, ev)
            self._end_of_pass()
            now = monotonic()
            if now >= self._next_hk:
                self._next_hk = now + hk
                try:
                    self._housekeeping()
                except Exception as e:
                    counters[f"housekeeping_error_{type(e).__name__}"] += 1

    def _tx_stalled(self) -> bool:
        """Hook: a transmit queue waits for a re-kick (the loop wakes soon instead of sleeping)."""
        return False

    def _end_of_pass(self) -> None:
        """Hook: after every pass's handlers (flush what the pass queued)."""

    def _housekeeping(self) -> None:
        """Hook: once per housekeeping period."""
        self._rearm_parked()

    def _before_commands(self) -> None:
        """Hook: before a batch of :meth:`call` functions runs."""

    def _after_commands(self) -> None:
        """Hook: after a batch of :meth:`call` functions ran."""

    # -- other threads ----------------------------------------------------------------------------
    def call(self, fn: Callable, *args: Any, **kw: Any) -> Any:
        """Run ``fn`` on the loop thread (now, if that is us or no loop runs) and return its result."""
        if self._thread is None or threading.get_ident() == self._loop_ident or not self._thread.is_alive():
            return fn(*args, **kw)
        fut: concurrent.futures.Future = concurrent.futures.Future()
        with self._cmd_lock:
            self._cmds.append((fn, args, kw, fut))
        os.eventfd_write(self._wake, 1)
        return fut.result(timeout=30)

    def _on_wake(self, events: int) -> None:
        try:
            os.eventfd_read(self._wake)
        except BlockingIOError:
            pass
        with self._cmd_lock:
            cmds, self._cmds = self._cmds, []
        self._before_commands()
        for fn, args, kw, fut in cmds:
            try:
                fut.set_result(fn(*args, **kw))
            except BaseException as e:
                fut.set_exception(e)
        self._after_commands()

    def _request_stop(self) -> None:
        self._stop = True

    def _close_reactor(self) -> None:
        if self._wake >= 0:
            os.close(self._wake)
            self._wake = -1
        self.ep.close()
