"""The guide runner: every ```sh block of a docs/ page, run as pasted, in a world of its own.

A page's blocks are one ``bash -e`` script (the first failing command fails the page), run as
root with the repository as working directory, in a fresh network namespace (``pmvg…``, only
``lo``) and a private mount table (``unshare --mount``) with empty tmpfs mounts over /run, /tmp
and the state directories, so nothing a guide does reaches the host, and everything it made
vanishes with the mount table. What a page needs is declared in its YAML front matter
(docs/reference/running-the-guides.md)::

    ---
    run:
      needs: [root, /dev/net/tun, qemu-system-x86_64]
      prepare: pymacvlan vm-guest build
      timeout: 400
    ---
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
DEFAULT_TIMEOUT = 120.0
#: emptied for the page (tmpfs) when they exist on the host; /run and /tmp always
PRIVATE_DIRS = ("/var/lib/pymacvlan", "/etc/systemd/system", "/etc/cni/net.d", "/opt/cni/bin", "/var/lib/cni")
_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)


@dataclass
class Page:
    path: Path
    blocks: list[str]
    needs: list[str] = field(default_factory=lambda: ["root"])
    prepare: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    skip: str | None = None

    @property
    def name(self) -> str:
        return self.path.relative_to(DOCS).as_posix()

    @property
    def script(self) -> str:
        return "\n".join(self.blocks)


def front_matter(text: str) -> dict:
    """The YAML between a leading ``---`` line and the next one ({} without)."""
    if not text.startswith("---\n"):
        return {}
    end = text.find("\n---\n", 4)
    if end < 0:
        raise ValueError("front matter opened with --- and never closed")
    import yaml

    return yaml.safe_load(text[4:end]) or {}


def sh_blocks(text: str) -> list[str]:
    """The bodies of the ```sh fences, in order (indented fences inside lists included)."""
    return [textwrap.dedent(m["body"]) for m in _FENCE.finditer(text) if m["lang"].strip() == "sh"]


def load(path: Path) -> Page:
    text = path.read_text()
    run = (front_matter(text).get("run") or {})
    if not isinstance(run, dict):
        raise ValueError(f"{path}: `run:` in the front matter is a mapping (needs, prepare, timeout, skip)")
    unknown = set(run) - {"needs", "prepare", "timeout", "skip"}
    if unknown:
        raise ValueError(f"{path}: unknown `run:` keys {sorted(unknown)} (needs, prepare, timeout, skip)")
    return Page(path, sh_blocks(text), list(run.get("needs", ["root"])), run.get("prepare"),
                float(run.get("timeout", DEFAULT_TIMEOUT)), run.get("skip"))


def pages() -> list[Page]:
    """Every docs page with at least one ```sh block."""
    out = [load(p) for p in sorted(DOCS.rglob("*.md"))]
    return [p for p in out if p.blocks]


def missing(page: Page) -> list[str]:
    """The page's needs this host does not meet."""
    out = []
    for need in page.needs:
        if need == "root":
            if os.geteuid() != 0:
                out.append("root")
        elif need.startswith("/"):
            if not os.path.exists(need):
                out.append(need)
        elif shutil.which(need) is None:
            out.append(need)
    if page.needs and os.geteuid() == 0 and shutil.which("unshare") is None:
        out.append("unshare")
    return out


def _heredoc(path: str, text: str) -> str:
    tag = "PMV_GUIDE_" + secrets.token_hex(8)
    return f"cat > {path} <<'{tag}'\n{text}\n{tag}\n"


def wrapper(page: Page, ns: str) -> str:
    """The script run in the private mount table: the mounts, the shims, the namespace, the page."""
    py = sys.executable
    shims = {
        "pymacvlan": f'#!/bin/sh\nexec {py} -m pymacvlan "$@"\n',
        "pymacvlan-cni": f'#!/bin/sh\nexec {py} -c "import sys; from pymacvlan.cni.skel import main; '
                         f'sys.exit(main())" "$@"\n',
    }
    if shutil.which("ping") is None and shutil.which("busybox"):
        shims["ping"] = '#!/bin/sh\nexec busybox ping "$@"\n'
    lines = ["set -e",
             # the checkout may itself live under a directory emptied below (a CI clone in /tmp):
             # hold it open first, and bind it back at its own path once the tmpfs mounts hide it
             # (--no-canonicalize: mount must not resolve /proc/self/fd/9 to the now-empty path)
             f"exec 9<{ROOT}",
             "mount -t tmpfs pmvguide /run",
             "mount -t tmpfs pmvguide /tmp",
             *(f"if [ -d {d} ]; then mount -t tmpfs pmvguide {d}; fi" for d in PRIVATE_DIRS),
             f"if [ ! -e {ROOT}/pyproject.toml ]; then mkdir -p {ROOT} && "
             f"mount --no-canonicalize --bind /proc/self/fd/9 {ROOT}; fi",
             "exec 9<&-",
             "mkdir -p /run/netns /run/pmv-guide/bin /run/pmv-guide/home"]
    for name, text in shims.items():
        lines += [_heredoc(f"/run/pmv-guide/bin/{name}", text), f"chmod 755 /run/pmv-guide/bin/{name}"]
    lines += [_heredoc("/run/pmv-guide/page.sh", page.script),
              "export HOME=/run/pmv-guide/home PATH=/run/pmv-guide/bin:$PATH",
              # the repository as the working directory, but what a page writes there (an SVG, a
              # state file) goes to a tmpfs layer over it: the checkout stays as it was
              "mkdir -p /run/pmv-guide/ov/upper /run/pmv-guide/ov/work",
              f"mount -t overlay pmvguide -o lowerdir={ROOT},upperdir=/run/pmv-guide/ov/upper,"
              f"workdir=/run/pmv-guide/ov/work {ROOT} || echo 'pmv-guide: no overlay over the checkout; "
              "what the page writes there stays' >&2",
              f"cd {ROOT}"]
    if page.prepare:
        lines += ["echo '+++ prepare (outside the page namespace)' >&2", page.prepare]
    lines += [f"ip netns add {ns}", f"ip -n {ns} link set lo up",
              f"exec ip netns exec {ns} bash -e -x /run/pmv-guide/page.sh"]
    return "\n".join(lines) + "\n"


@dataclass
class Outcome:
    returncode: int | None  # None: timed out
    stdout: str
    stderr: str


def run(page: Page) -> Outcome:
    """Run the page; every process it started is ended (its process group) before this returns."""
    ns = "pmvg" + secrets.token_hex(4)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"),
                                                                      os.environ.get("PYTHONPATH")]))}
    env.pop("PYMACVLAN_SOCKET", None)
    env.pop("PMV_SIM_STATE", None)
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "bash", "-c", wrapper(page, ns)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=page.timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        code = None
        _end_group(proc.pid)
        out, err = proc.communicate()
    _end_group(proc.pid)
    return Outcome(code, out, err)


def _end_group(pgid: int) -> None:
    """SIGTERM to what the page left running (a daemon started with &), then SIGKILL."""
    import time

    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        for _ in range(50):
            time.sleep(0.1)
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
