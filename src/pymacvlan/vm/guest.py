"""A tiny guest for tests and benchmarks: the Debian kernel and a busybox initramfs.

Built once from two Debian packages fetched with ``apt-get download`` (the distribution's
``linux-image-<version>-amd64`` and ``busybox-static``; nothing from anywhere else) into a
cache directory keyed by the kernel package and the init script, so every later boot only
reads two files. Debian builds virtio-net as modules, so the initramfs carries the eight
virtio modules and ``insmod``s them in dependency order.

What the guest does is a shell script given on the kernel command line (``pmv.script=``,
base64): ``/init`` brings eth0 up (DAD off, so the link-local address is usable at once),
runs the script with the helpers below, prints ``PMV-END rc=N`` and powers off. The helpers
print one ``PMV-...`` line per result on the serial console, which the host parses:

- ``pmv_dhcp``            → ``PMV-DHCP-BOUND <ip>`` or ``PMV-FAIL dhcp``
- ``pmv_ping NAME ADDR [ping options]`` → ``PMV-OK NAME`` or ``PMV-FAIL NAME`` (3 requests)
- ``pmv_ll``              → ``PMV-LL <eth0's IPv6 link-local address>``
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Guest", "build", "cmdline", "DEFAULT_CACHE", "MODULES"]

DEFAULT_CACHE = Path(os.environ.get("PMV_GUEST_CACHE", "/var/cache/pymacvlan-guest"))

#: virtio-net and what it needs, in load order (Debian: CONFIG_VIRTIO_NET=m, uncompressed .ko)
MODULES = ("drivers/virtio/virtio_ring", "drivers/virtio/virtio", "drivers/virtio/virtio_pci_modern_dev",
           "drivers/virtio/virtio_pci_legacy_dev", "drivers/virtio/virtio_pci", "net/core/failover",
           "drivers/net/net_failover", "drivers/net/virtio_net")

_DHCP_SCRIPT = r"""#!/bin/sh
case "$1" in
  bound|renew) ip addr flush dev "$interface"; ip addr add "$ip/${mask:-24}" dev "$interface"
               [ -n "$router" ] && ip route add default via ${router%% *} dev "$interface"
               echo "PMV-DHCP-BOUND $ip";;
  deconfig) ip addr flush dev "$interface";;
esac
"""

_INIT = r"""#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev 2>/dev/null
mount -t tmpfs tmp /tmp
echo "PMV-INIT uptime=$(cut -d' ' -f1 /proc/uptime)"
for m in @MODULES@; do insmod /lib/modules/$m.ko 2>/dev/null; done
i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
ip link set lo up
echo 0 > /proc/sys/net/ipv6/conf/eth0/accept_dad
echo 0 > /proc/sys/net/ipv6/conf/eth0/router_solicitations
ip link set eth0 up
echo "PMV-LINK $(cat /sys/class/net/eth0/address) $(cat /sys/class/net/eth0/operstate)"
pmv_dhcp() {
  udhcpc -i eth0 -n -q -t 6 -T 2 -s /usr/share/udhcpc/default.script 2>/dev/null || echo "PMV-FAIL dhcp"
}
pmv_ping() {
  n=$1; shift
  if ping -c 3 -W 3 "$@" >/tmp/ping.out 2>&1; then echo "PMV-OK $n"; else echo "PMV-FAIL $n"; cat /tmp/ping.out; fi
}
pmv_ll() {
  echo "PMV-LL $(ip -6 addr show dev eth0 scope link | sed -n 's/.*inet6 \([^/]*\).*/\1/p' | head -n1)"
}
sed -n 's/.*pmv.script=\([^ ]*\).*/\1/p' /proc/cmdline | base64 -d > /tmp/script
. /tmp/script
echo "PMV-END rc=$?"
poweroff -f
"""


@dataclass(frozen=True)
class Guest:
    """A built guest: what ``-kernel`` and ``-initrd`` take."""

    kernel: Path
    initrd: Path
    kernel_package: str


def cmdline(script: str, extra: str = "") -> str:
    """The kernel command line that runs ``script`` (a panic ends QEMU: -no-reboot + panic=-1)."""
    line = f"console=ttyS0 loglevel=3 panic=-1 pmv.script={base64.b64encode(script.encode()).decode()}"
    if len(line) + len(extra) >= 2000:  # x86 COMMAND_LINE_SIZE is 2048
        raise ValueError("the guest script is too long for the kernel command line (2048 bytes)")
    return f"{line} {extra}".strip()


def _kernel_package() -> str:
    """The package linux-image-amd64 depends on now (e.g. linux-image-6.1.0-57-amd64)."""
    pkg = os.environ.get("PMV_GUEST_KERNEL_PKG")
    if pkg:
        return pkg
    out = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    for line in out.splitlines():
        dep = line.strip().removeprefix("Depends:").strip()
        if line.strip().startswith("Depends:") and dep.startswith("linux-image-"):
            return dep
    raise RuntimeError("apt-cache knows no linux-image-amd64 dependency: run `apt-get update`")


def _init_script() -> str:
    return _INIT.replace("@MODULES@", " ".join(m.rsplit("/", 1)[1] for m in MODULES))


def build(cache: Path | str | None = None) -> Guest:
    """The cached guest, built first if missing (a few seconds; ~75 MB of downloads)."""
    pkg = _kernel_package()
    key = hashlib.sha256((pkg + _init_script() + _DHCP_SCRIPT).encode()).hexdigest()[:12]
    root = Path(cache or DEFAULT_CACHE)
    out = root / f"{pkg}-{key}"
    guest = Guest(out / "vmlinuz", out / "initramfs.cpio.gz", pkg)
    if guest.initrd.exists():
        return guest
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test runs build it once
        if not guest.initrd.exists():
            _build_into(out, pkg)
    return guest


def _build_into(out: Path, pkg: str) -> None:
    with tempfile.TemporaryDirectory(prefix="pmv-guest-") as tmp:
        work = Path(tmp)
        subprocess.run(["apt-get", "download", pkg, "busybox-static"], cwd=work, check=True,
                       capture_output=True, timeout=600)
        for deb in work.glob("*.deb"):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "x")], check=True, timeout=300)
        x = work / "x"
        kver = pkg.removeprefix("linux-image-")
        ir = work / "ir"
        for d in ("bin", "proc", "sys", "dev", "tmp", "lib/modules", "usr/share/udhcpc"):
            (ir / d).mkdir(parents=True, exist_ok=True)
        shutil.copy2(x / "bin/busybox", ir / "bin/busybox")
        os.symlink("busybox", ir / "bin/sh")  # without it: "Failed to execute /init (error -2)"
        for m in MODULES:
            shutil.copy2(x / f"lib/modules/{kver}/kernel/{m}.ko", ir / "lib/modules")
        for path, text in (("init", _init_script()), ("usr/share/udhcpc/default.script", _DHCP_SCRIPT)):
            (ir / path).write_text(text)
            (ir / path).chmod(0o755)
        names = subprocess.run(["find", "."], cwd=ir, capture_output=True, check=True, timeout=60).stdout
        cpio = subprocess.run([str(ir / "bin/busybox"), "cpio", "-o", "-H", "newc"], cwd=ir, input=names,
                              capture_output=True, check=True, timeout=120).stdout
        staging = Path(tempfile.mkdtemp(prefix=".build-", dir=out.parent))
        gz = subprocess.run(["gzip", "-1"], input=cpio, capture_output=True, check=True, timeout=120).stdout
        (staging / "initramfs.cpio.gz").write_bytes(gz)
        shutil.copy2(x / f"boot/vmlinuz-{kver}", staging / "vmlinuz")
        staging.chmod(0o755)  # an unprivileged QEMU reads it too
        os.rename(staging, out)  # complete or absent
