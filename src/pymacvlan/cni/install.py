"""`pymacvlan cni install`: put the plugin where runtimes look, and a conflist to start from.

The plugin is a small Python launcher (the running interpreter in its ``#!`` line, this
pymacvlan's source directory first on its path), so the runtime executes the very code that
installed it. Runtimes look plugins up in ``/opt/cni/bin`` (containerd, CRI-O, Multus) or
their own directories (podman's ``cni_plugin_dirs`` include /usr/lib/cni).
"""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path

MARK = "# pymacvlan-cni launcher, written by `pymacvlan cni install`"


def launcher_text(python: str | None = None, module: str = "pymacvlan.cni.skel", mark: str = MARK) -> str:
    """The launcher: ``module``'s main() (the netavark plugin uses it with its own module and mark)."""
    import pymacvlan

    src = str(Path(pymacvlan.__file__).resolve().parents[1])
    return (f"#!{python or sys.executable}\n{mark}\nimport sys\nsys.path.insert(0, {src!r})\n"
            f"from {module} import main\nraise SystemExit(main())\n")


def install(directory: str, name: str = "pymacvlan-cni", force: bool = False) -> str:
    """Write the launcher as ``directory/name`` (atomically); refuses to replace a file that
    is not one of ours (the reference ``macvlan``, say) unless ``force``."""
    if "/" in name or name in ("", ".", ".."):
        raise ValueError(f"--name {name!r}: a plugin name is a file name (it is the config's \"type\")")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    if os.path.exists(path) and not force:
        with open(path, "rb") as f:
            head = f.read(4096)
        if MARK.encode() not in head:
            raise FileExistsError(
                errno.EEXIST, f"{path} exists and is not a pymacvlan-cni launcher; pass --force to replace it"
            )
    tmp = path + ".pmvtmp"
    with open(tmp, "w") as f:
        f.write(launcher_text())
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)
    return path


def sample_conflist(name: str = "pmvnet", plugin: str = "pymacvlan-cni", master: str = "eth1",
                    subnet: str = "192.168.50.0/24") -> dict:
    return {"cniVersion": "1.0.0", "name": name, "plugins": [{
        "type": plugin, "master": master, "mode": "bridge",
        "ipam": {"type": "host-local", "subnet": subnet, "routes": [{"dst": "0.0.0.0/0"}]}}]}


def sample_text(**kw) -> str:
    return json.dumps(sample_conflist(**kw), indent=2)
