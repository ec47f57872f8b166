"""A DHCP lab: a "host" namespace whose parent ``pmvM`` is a veth to a "wire" namespace, DHCP
servers started by the tests (dnsmasq, ISC dhcpd) with their own config and lease files
under a temp dir, the pymacvlan daemon in the host namespace, pods as namespaces of their own.
Every process is started here and ended here by its PID, also when a test fails.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .. import ci

SRC = str(Path(__file__).resolve().parents[2] / "src")
WIRE_IP = "10.77.0.1"


def live_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("/usr/sbin/dnsmasq", "/usr/lib/cni/dhcp", "/usr/lib/cni/macvlan"):
        if not os.path.exists(tool):
            return f"{tool} is missing (.ci/run installs dnsmasq and containernetworking-plugins)"
    return None


def ip(*args: str, check: bool = True) -> str:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def ip_json(*args: str):
    return json.loads(ip("-j", *args) or "[]")


def _end(p: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


@dataclass
class Server:
    """A DHCP server process in the wire namespace (or the host's), its lease file and log."""

    kind: str
    proc: subprocess.Popen
    leasefile: Path
    logfile: Path

    def leases(self) -> str:
        try:
            return self.leasefile.read_text()
        except FileNotFoundError:
            return ""

    def log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        _end(self.proc)


@dataclass
class Lab:
    prefix: str
    host: str
    wire: str
    tmp: Path
    master: str = "pmvM"
    namespaces: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen] = field(default_factory=list)
    daemon: subprocess.Popen | None = None

    @property
    def socket(self) -> str:
        return str(self.tmp / "control.sock")

    @property
    def state(self) -> str:
        return str(self.tmp / "state.json")

    # -- servers -----------------------------------------------------------------------------------
    def dnsmasq(self, first: str = "10.77.0.50", last: str = "10.77.0.150", *, ns: str | None = None,
                dev: str | None = "pmvW", extra: tuple[str, ...] = (), tag: str = "d") -> Server:
        """dnsmasq serving ``dev`` (None: every interface, as a host's server often does)."""
        d = self.tmp / f"dnsmasq-{tag}"
        d.mkdir(exist_ok=True)
        leasefile, logfile = d / "leases", d / "log"
        cmd = ["nsenter", f"--net=/run/netns/{ns or self.wire}", "dnsmasq", "--keep-in-foreground",
               "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--port=0",
               *([f"--interface={dev}", "--bind-interfaces"] if dev else []),
               f"--dhcp-range={first},{last},255.255.255.0,2m", f"--dhcp-leasefile={leasefile}",
               f"--pid-file={d / 'pid'}", "--dhcp-authoritative", "--no-ping", "--log-dhcp",
               f"--log-facility={logfile}", f"--dhcp-option=option:router,{WIRE_IP}",
               f"--dhcp-option=option:dns-server,{WIRE_IP}", "--dhcp-option=option:domain-name,pmv.test",
               "--dhcp-option=121,10.78.0.0/24,10.77.0.254", "--dhcp-option=26,1400", *extra]
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.procs.append(p)
        _wait_for(lambda: "DHCP, IP range" in (logfile.read_text() if logfile.exists() else "") or p.poll() is not None,
                  "dnsmasq to start")
        if p.poll() is not None:
            raise RuntimeError(f"dnsmasq exited: {p.stderr.read().decode() if p.stderr else ''}")
        return Server("dnsmasq", p, leasefile, logfile)

    def dhcpd(self, first: str = "10.77.0.160", last: str = "10.77.0.200") -> Server:
        d = self.tmp / "dhcpd"
        d.mkdir(exist_ok=True)
        conf, leasefile, logfile = d / "dhcpd.conf", d / "leases", d / "log"
        conf.write_text(f"""
default-lease-time 600; max-lease-time 600; authoritative; ping-check false;
subnet 10.77.0.0 netmask 255.255.255.0 {{
  range {first} {last}; option routers {WIRE_IP}; option domain-name-servers {WIRE_IP};
  option domain-name "pmv.test";
}}
""")
        leasefile.touch()
        log = open(logfile, "wb")
        p = subprocess.Popen(["nsenter", f"--net=/run/netns/{self.wire}", "dhcpd", "-4", "-f", "-d", "-cf", str(conf),
                              "-lf", str(leasefile), "-pf", str(d / "pid"), "pmvW"], stdout=log, stderr=log)
        log.close()
        self.procs.append(p)
        _wait_for(lambda: b"Server starting service" in logfile.read_bytes() or p.poll() is not None,
                  "dhcpd to start")
        if p.poll() is not None:
            raise RuntimeError(f"dhcpd exited: {logfile.read_text()[-2000:]}")
        return Server("dhcpd", p, leasefile, logfile)

    # -- the pymacvlan daemon --------------------------------------------------------------------
    def start_daemon(self) -> subprocess.Popen:
        from pymacvlan.model import KernelError

        assert self.daemon is None or self.daemon.poll() is not None
        log = open(self.tmp / "daemon.log", "ab")
        env = dict(os.environ, PYTHONPATH=SRC)
        p = subprocess.Popen(["nsenter", f"--net=/run/netns/{self.host}", sys.executable, "-m", "pymacvlan",
                              "daemon", "--socket", self.socket, "--state", self.state, "-v"],
                             stdout=log, stderr=log, env=env)
        log.close()
        self.daemon = p
        self.procs.append(p)

        def up() -> bool:
            if p.poll() is not None:
                raise RuntimeError(f"the daemon exited: {self.daemon_log()[-2000:]}")
            try:
                from pymacvlan.daemon.client import Client

                Client(self.socket, timeout=2).hello()
                return True
            except KernelError:
                return False

        _wait_for(up, "the daemon's socket")
        return p

    def stop_daemon(self) -> None:
        if self.daemon is not None:
            _end(self.daemon)
            self.daemon = None

    def daemon_log(self) -> str:
        p = self.tmp / "daemon.log"
        return p.read_text(errors="replace") if p.exists() else ""

    # -- pods --------------------------------------------------------------------------------------
    def pod(self, tag: str) -> str:
        name = f"{self.prefix}{tag}"
        ip("netns", "add", name)
        self.namespaces.append(name)
        return name

    def drop_pod(self, name: str) -> None:
        ip("netns", "del", name, check=False)
        if name in self.namespaces:
            self.namespaces.remove(name)

    def kernel_child(self, pod: str, mac: str | None = None, ifname: str = "eth0", mode: str = "bridge") -> str:
        """A kernel macvlan of the parent, moved into ``pod`` as ``ifname`` and up; its MAC."""
        tmp = f"pmvk{secrets.token_hex(4)}"
        args = ["-n", self.host, "link", "add", "link", self.master, "name", tmp]
        if mac:
            args += ["address", mac]
        ip(*args, "type", "macvlan", "mode", mode)
        ip("-n", self.host, "link", "set", tmp, "netns", pod)
        ip("-n", pod, "link", "set", tmp, "name", ifname)
        ip("-n", pod, "link", "set", ifname, "up")
        return ip_json("-n", pod, "link", "show", ifname)[0]["address"]

    def cni(self, plugin: str, command: str, conf: dict, netns: str | None, container_id: str,
            ifname: str = "eth0", args: str = "", path: str | None = None) -> tuple[int, dict | None, str]:
        """Run a CNI plugin in the host namespace as a runtime does; (rc, stdout JSON, stderr)."""
        bindir = self.tmp / "bin"
        e = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": SRC, "CNI_COMMAND": command,
             "CNI_CONTAINERID": container_id, "CNI_IFNAME": ifname, "CNI_PATH": path or f"{bindir}:/usr/lib/cni"}
        if netns:
            e["CNI_NETNS"] = f"/run/netns/{netns}"
        if args:
            e["CNI_ARGS"] = args
        exe = plugin if plugin.startswith("/") else str(bindir / plugin)
        r = subprocess.run(["nsenter", f"--net=/run/netns/{self.host}", exe], input=json.dumps(conf).encode(),
                           env=e, capture_output=True, timeout=120)
        out = r.stdout.decode().strip()
        return r.returncode, (json.loads(out) if out else None), r.stderr.decode()

    def ref_dhcp_daemon(self) -> str:
        """The reference plugin's `dhcp daemon` on a private socket, in the host namespace."""
        sock = str(self.tmp / "ref-dhcp.sock")
        log = open(self.tmp / "ref-dhcp.log", "ab")
        p = subprocess.Popen(["nsenter", f"--net=/run/netns/{self.host}", "/usr/lib/cni/dhcp", "daemon",
                              "-socketpath", sock, "-timeout", "10s"], stdout=log, stderr=log)
        log.close()
        self.procs.append(p)
        _wait_for(lambda: os.path.exists(sock) or p.poll() is not None, "the reference dhcp daemon")
        return sock


def _wait_for(cond, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:g} s for {what}")
        time.sleep(0.05)


def write_launchers(bindir: Path) -> None:
    """`pymacvlan-dhcp` and `pymacvlan-cni` as runtimes find them: executables in a plugin dir."""
    bindir.mkdir(exist_ok=True)
    for name, mod in (("pymacvlan-dhcp", "pymacvlan.dhcp.cni"), ("pymacvlan-cni", "pymacvlan.cni.skel")):
        p = bindir / name
        p.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {SRC!r})\n"
                     f"from {mod} import main\nraise SystemExit(main())\n")
        p.chmod(0o755)


@pytest.fixture
def lab(tmp_path):
    ci.skip_or_fail(live_reason())
    prefix = "pmv" + secrets.token_hex(3)
    lab = Lab(prefix=prefix, host=prefix + "h", wire=prefix + "w", tmp=tmp_path)
    write_launchers(tmp_path / "bin")
    try:
        ip("netns", "add", lab.host)
        ip("netns", "add", lab.wire)
        ip("-n", lab.host, "link", "set", "lo", "up")
        ip("-n", lab.wire, "link", "set", "lo", "up")
        ip("-n", lab.host, "link", "add", lab.master, "type", "veth", "peer", "name", "pmvW", "netns", lab.wire)
        ip("-n", lab.host, "link", "set", lab.master, "up")
        ip("-n", lab.wire, "link", "set", "pmvW", "up")
        ip("-n", lab.wire, "addr", "add", f"{WIRE_IP}/24", "dev", "pmvW")
        yield lab
    finally:
        for p in reversed(lab.procs):
            _end(p)
        for ns in [*lab.namespaces, lab.host, lab.wire]:
            ip("netns", "del", ns, check=False)
        shutil.rmtree(tmp_path, ignore_errors=True)
