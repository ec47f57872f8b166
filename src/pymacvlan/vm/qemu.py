"""QEMU command lines for a macvtap child, and a guest run whose serial console is parsed.

:func:`netdev_args` is the one place that says how QEMU attaches to each endpoint kind, the
way libvirt writes it (``-netdev`` + ``-device virtio-net-pci`` with the child's MAC):

- ``stream``: QEMU is the client of the endpoint's Unix stream socket (``reconnect=N``, QEMU
  8.0 and later, makes it come back after a daemon restart; 7.2 has no such option);
- ``dgram``: QEMU binds its own path and sends to the endpoint's;
- ``tapfd`` / kernel ``/dev/tapN``: ``-netdev tap,fd=N`` on an fd QEMU inherits.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field

from .guest import Guest, cmdline

__all__ = ["netdev_args", "qemu_base", "GuestRun", "QEMU"]

QEMU = "qemu-system-x86_64"


def netdev_args(kind: str, mac: str, *, path: str | None = None, fd: int | None = None,
                qemu_path: str | None = None, reconnect: int | None = None, netdev_id: str = "net0") -> list[str]:
    """``-netdev``/``-device`` for one macvtap child (``kind``: stream, dgram, tapfd, tap).

    Values that come from names (socket paths carry the macvtap's name) are escaped the way
    QEMU's option parser reads them, a comma doubled: a macvtap called ``a,fd=3`` gives the path
    ``.../a,,fd=3`` and never a second option. The id and the MAC are checked instead."""
    import re

    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]{0,127}", netdev_id):
        raise ValueError(f"netdev id {netdev_id!r}: QEMU ids are a letter, then letters, digits, '-', '.', '_'")
    if not re.fullmatch(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}", mac):
        raise ValueError(f"MAC {mac!r}: six hex bytes like 02:00:00:00:00:0a")
    for v in (path, qemu_path):
        if v is not None and any(c in v for c in "\0\n"):
            raise ValueError(f"path {v!r}: no NUL or newline in a QEMU option")
    path = None if path is None else _opt(path)
    qemu_path = None if qemu_path is None else _opt(qemu_path)
    if kind == "stream":
        nd = f"stream,id={netdev_id},server=off,addr.type=unix,addr.path={path}"
        if reconnect:
            nd += f",reconnect={reconnect}"
    elif kind == "dgram":
        nd = (f"dgram,id={netdev_id},local.type=unix,local.path={qemu_path or f'{path}.qemu'},"
              f"remote.type=unix,remote.path={path}")
    elif kind in ("tapfd", "tap"):
        nd = f"tap,id={netdev_id},fd={'N' if fd is None else fd},vhost=off"
    else:
        raise ValueError(f"unknown endpoint kind {kind!r}")
    return ["-netdev", nd, "-device", f"virtio-net-pci,netdev={netdev_id},mac={mac},romfile="]


def _opt(value: str) -> str:
    """A value inside a QEMU ``-netdev``/``-device`` option: ``,`` is the separator, ``,,`` a comma."""
    return value.replace(",", ",,")


def qemu_base(guest: Guest, script: str, memory: int = 256) -> list[str]:
    """QEMU under TCG (no KVM here) booting ``guest`` to run ``script``; serial on stdout."""
    return [QEMU, "-accel", "tcg", "-cpu", "max", "-m", str(memory), "-smp", "1", "-nographic",
            "-no-reboot", "-nodefaults", "-serial", "stdio", "-bios", "/usr/share/qemu/qboot.rom",
            "-kernel", str(guest.kernel), "-initrd", str(guest.initrd), "-append", cmdline(script)]


@dataclass
class GuestRun:
    """One QEMU process; its console lines are kept and can be waited for. :meth:`close`
    ends it by its PID (also when the test failed)."""

    argv: list[str]
    pass_fds: tuple[int, ...] = ()
    netns: str | None = None
    env: dict | None = None
    lines: list[str] = field(default_factory=list)

    def start(self) -> GuestRun:
        argv = self.argv
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]  # ip execs QEMU: the PID is QEMU's
        self._q: queue.Queue[str | None] = queue.Queue()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, pass_fds=self.pass_fds, env=self.env)
        self._t = threading.Thread(target=self._pump, daemon=True)
        self._t.start()
        return self

    def _pump(self) -> None:
        assert self.proc.stdout is not None  # stdout=PIPE
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\r\n")
            self.lines.append(line)
            self._q.put(line)
        self._q.put(None)

    def drain(self) -> list[str]:
        """Forget the console lines not looked at yet (so the next :meth:`expect` sees only
        lines printed from now on); returns them."""
        out: list[str] = []
        while True:
            try:
                line = self._q.get_nowait()
            except queue.Empty:
                return out
            if line is None:  # QEMU is gone: keep saying so
                self._q.put(None)
                return out
            out.append(line)

    def expect(self, pattern: str, timeout: float = 60.0) -> re.Match:
        """The first console line (from now on) matching ``pattern``; a PMV-FAIL or
        PMV-END line, QEMU exiting or the timeout first raise with the console so far."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self._q.get(timeout=left) if left > 0 else ""
            except queue.Empty:
                line = ""
            if line is None:  # the console closed: QEMU is gone
                self._q.put(None)
                try:
                    rc = self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    rc = None
                raise AssertionError(f"QEMU exited (rc={rc}) waiting for {pattern!r}; console:\n" + self.console())
            if line == "" and time.monotonic() >= deadline:
                raise AssertionError(
                    f"no match in {timeout:.0f} s waiting for {pattern!r}; console:\n" + self.console()
                )
            m = rx.search(line)
            if m:
                return m
            if "PMV-FAIL" in line or "PMV-END" in line or "Kernel panic" in line:
                raise AssertionError(f"{line!r} before {pattern!r}; console:\n" + self.console())

    def console(self, last: int = 60) -> str:
        return "\n".join(self.lines[-last:])

    def close(self) -> None:
        p = getattr(self, "proc", None)
        if p is None or p.poll() is not None:
            return
        os.kill(p.pid, signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(10)

    def __enter__(self) -> GuestRun:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def qemu_available() -> str | None:
    """Why a guest cannot be booted here, or None."""
    if shutil.which(QEMU) is None:
        return f"no {QEMU} (apt-get install qemu-system-x86)"
    if shutil.which("apt-get") is None:
        return "no apt-get to fetch the guest's Debian kernel and busybox"
    return None
