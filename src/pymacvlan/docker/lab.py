"""A throwaway dockerd for tests and benchmarks, never touching the host.

dockerd (Debian's docker.io 20.10) runs inside a fresh ``pmv*`` network namespace (the "host",
whose parent ``pmvP`` is a veth to a "wire" namespace holding the station ``.1``) and in a
private mount table: a tmpfs ``/run`` and the lab's own plugin directory bound at
``/run/docker/plugins`` (`ip netns exec` cannot be used: it remounts /sys and dockerd loses the
cgroup mounts). No iptables, no bridge, vfs storage, its own data/exec roots and socket; the
image is a busybox-static rootfs ``docker import``-ed (nothing is pulled). The plugin runs in
the same network namespace, outside that mount table, listening in the lab's plugin directory.

:meth:`DockerLab.close` ends everything it started by PID (containers first, then dockerd,
the plugin, and any containerd-shim left naming the lab's directory), deletes the namespaces,
the cgroups under ``--cgroup-parent`` and the directory, also after a failure.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

IMAGE = "pmv/bb:latest"
PARENT, WIRE_END = "pmvP", "pmvW"


def missing() -> str | None:
    """Why no lab can run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, dockerd)"
    for tool in ("dockerd", "docker", "containerd", "runc", "nsenter", "unshare"):
        if shutil.which(tool) is None:
            return f"{tool} is missing (apt-get install --no-install-recommends docker.io containerd runc)"
    if not (shutil.which("busybox") or os.path.exists("/bin/busybox")):
        return "busybox is missing (apt-get install busybox-static)"
    return None


def run(argv: list[str], check: bool = True, timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: rc {r.returncode}: {r.stderr.strip() or r.stdout.strip()}")
    return r


class DockerLab:
    def __init__(self, subnet: str = "10.83.0") -> None:
        self.id = secrets.token_hex(3)
        self.host, self.wire = f"pmv{self.id}h", f"pmv{self.id}w"
        self.dir = Path(f"/tmp/pmvdk{self.id}")
        self.sock = self.dir / "docker.sock"
        self.plugins = self.dir / "plugins"
        self.state = self.dir / "plugin-state.json"
        self.subnet = subnet  # the wire's /24: station .1
        self.station = f"{subnet}.1"
        self.dockerd: subprocess.Popen | None = None
        self.plugin: subprocess.Popen | None = None
        self.env = dict(os.environ, DOCKER_HOST=f"unix://{self.sock}")
        self.env.pop("DOCKER_CONTEXT", None)

    # -- setup ----------------------------------------------------------------------------------------
    def open(self) -> DockerLab:
        for d in ("plugins", "data", "exec", "bb/bin"):
            (self.dir / d).mkdir(parents=True, exist_ok=True)
        (self.dir / "daemon.json").write_text(json.dumps({"deprecated-key-path": str(self.dir / "key.json")}))
        run(["ip", "netns", "add", self.host])
        run(["ip", "netns", "add", self.wire])
        run(["ip", "-n", self.host, "link", "set", "lo", "up"])
        run(["ip", "-n", self.host, "link", "add", PARENT, "type", "veth", "peer", "name", WIRE_END,
             "netns", self.wire])
        run(["ip", "-n", self.host, "link", "set", PARENT, "up"])
        run(["ip", "-n", self.wire, "link", "set", WIRE_END, "up"])
        run(["ip", "-n", self.wire, "link", "set", "lo", "up"])
        run(["ip", "-n", self.wire, "addr", "add", f"{self.station}/24", "dev", WIRE_END])
        bb = shutil.which("busybox") or "/bin/busybox"
        shutil.copy(bb, self.dir / "bb/bin/busybox")
        for c in ("sh", "ip", "ping", "sleep", "cat", "ls", "hostname"):
            os.symlink("busybox", self.dir / "bb/bin" / c)
        run(["tar", "-C", str(self.dir / "bb"), "-cf", str(self.dir / "bb.tar"), "."])
        self.start_dockerd()
        self.docker("import", str(self.dir / "bb.tar"), IMAGE)
        return self

    def start_dockerd(self) -> None:
        d = self.dir
        script = (f"mount -n -t tmpfs pmv /run && mkdir -p /run/docker/plugins && "
                  f"mount -n --bind {self.plugins} /run/docker/plugins && "
                  f"exec dockerd --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false "
                  f"--bridge=none --storage-driver=vfs --cgroup-parent=/pmvdk{self.id} "
                  f"--config-file={d}/daemon.json --data-root={d}/data --exec-root={d}/exec "
                  f"--pidfile={d}/docker.pid -H unix://{self.sock}")
        log = open(d / "dockerd.log", "ab")
        self.dockerd = subprocess.Popen(["nsenter", f"--net=/run/netns/{self.host}", "unshare", "-m",
                                         "--propagation", "private", "sh", "-c", script],
                                        stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.dockerd.poll() is not None:
                raise RuntimeError(f"dockerd ended ({self.dockerd.returncode}): {self.log()[-2000:]}")
            if run(["docker", "version"], check=False, env=self.env, timeout=10).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("dockerd did not answer within 60 s")

    def stop_dockerd(self) -> None:
        p, self.dockerd = self.dockerd, None
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)

    def restart_dockerd(self) -> None:
        self.stop_dockerd()
        self.start_dockerd()

    def start_plugin(self, name: str = "pymacvlan", *extra: str) -> None:
        sock = self.plugins / f"{name}.sock"
        log = open(self.dir / "plugin.log", "ab")
        env = dict(os.environ)
        src = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.plugin = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.host}", sys.executable, "-m", "pymacvlan", "docker-plugin",
             "--name", name, "--socket", str(sock), "--state", str(self.state), "--docker-host",
             f"unix://{self.sock}", "-v", *extra], stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.plugin.poll() is not None:
                raise RuntimeError(f"the plugin ended ({self.plugin.returncode}): {self.plugin_log()[-2000:]}")
            if sock.exists():
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(str(sock))
                    return
                except OSError:
                    pass
                finally:
                    s.close()
            time.sleep(0.05)
        raise RuntimeError("the plugin did not listen within 30 s")

    def stop_plugin(self, sig: int = signal.SIGTERM) -> None:
        p, self.plugin = self.plugin, None
        if p is not None and p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)

    # -- use ------------------------------------------------------------------------------------------
    def docker(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        return run(["docker", *args], check=check, env=self.env, timeout=timeout)

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """dockerd's API at v1.41 (the 28.x client refuses `--mac-address` with `--network` on it)."""
        import http.client

        class Conn(http.client.HTTPConnection):
            def connect(s) -> None:  # noqa: N805
                s.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.sock.settimeout(60)
                s.sock.connect(str(self.sock))

        c = Conn("localhost", timeout=60)
        try:
            data = json.dumps(body).encode() if body is not None else None
            c.request(method, f"/v1.41{path}", body=data, headers={"Content-Type": "application/json"})
            r = c.getresponse()
            raw = r.read()
            return r.status, (json.loads(raw) if raw.strip() else None)
        finally:
            c.close()

    def pid(self, container: str) -> int:
        return int(self.docker("inspect", "-f", "{{.State.Pid}}", container).stdout.strip())

    def in_container(self, container: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        """A host tool (iproute2 ...) in the container's network namespace."""
        return run(["nsenter", "-t", str(self.pid(container)), "-n", *argv], check=check)

    def ip_host(self, *args: str) -> Any:
        out = run(["ip", "-n", self.host, "-j", *args]).stdout
        return json.loads(out or "[]")

    def ping(self, container: str, target: str) -> bool:
        return self.docker("exec", container, "ping", "-c", "1", "-W", "2", target, check=False).returncode == 0

    def log(self) -> str:
        try:
            return (self.dir / "dockerd.log").read_text(errors="replace")
        except OSError:
            return ""

    def plugin_log(self) -> str:
        try:
            return (self.dir / "plugin.log").read_text(errors="replace")
        except OSError:
            return ""

    # -- teardown -------------------------------------------------------------------------------------
    def close(self) -> None:
        errors: list[str] = []
        if self.dockerd is not None and self.dockerd.poll() is None:
            ids = self.docker("ps", "-aq", check=False, timeout=60).stdout.split()
            if ids:
                self.docker("rm", "-f", *ids, check=False, timeout=120)
        for step in (self.stop_dockerd, self.stop_plugin, self._end_leftover_processes):
            try:
                step()
            except Exception as e:  # keep tearing down
                errors.append(f"{step.__name__}: {e}")
        for ns in (self.host, self.wire):
            if os.path.exists(f"/run/netns/{ns}"):
                r = run(["ip", "netns", "del", ns], check=False)
                if r.returncode:
                    errors.append(f"netns del {ns}: {r.stderr.strip()}")
        for cg in Path("/sys/fs/cgroup").glob(f"*/pmvdk{self.id}"):
            for d in sorted((p for p in cg.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [cg]:
                try:
                    d.rmdir()
                except OSError:
                    pass
        shutil.rmtree(self.dir, ignore_errors=True)
        if errors:
            raise RuntimeError("; ".join(errors))

    def _end_leftover_processes(self) -> None:
        """containerd-shims (and anything else) whose command line names the lab's directory."""
        me = str(self.dir)
        for pid_dir in Path("/proc").iterdir():
            if not pid_dir.name.isdigit():
                continue
            try:
                cmd = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if me in cmd and int(pid_dir.name) != os.getpid():
                try:
                    os.kill(int(pid_dir.name), signal.SIGKILL)
                except OSError:
                    pass

    def __enter__(self) -> DockerLab:
        try:
            return self.open()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: Any) -> None:
        self.close()
