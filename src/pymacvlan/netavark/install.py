"""`pymacvlan netavark install`: the plugin where netavark looks, and the containers.conf lines.

netavark finds plugins by file name in podman's ``netavark_plugin_dirs`` (containers.conf
``[network]``; podman's defaults are /usr/local/libexec/netavark, /usr/libexec/netavark,
/usr/local/lib/netavark and /usr/lib/netavark); the file name is the network's driver
(``podman network create -d pymacvlan``). The names of netavark's built-in drivers (bridge,
macvlan, ipvlan) are refused: netavark would never call a plugin of that name. The launcher
is the CNI plugin's (:func:`pymacvlan.cni.install.launcher_text`) with this plugin's module.
"""

from __future__ import annotations

import errno
import os

MARK = "# pymacvlan-netavark launcher, written by `pymacvlan netavark install`"
DEFAULT_DIR = "/usr/local/libexec/netavark"
DEFAULT_NAME = "pymacvlan"
BUILTIN = ("bridge", "macvlan", "ipvlan")


def install(directory: str = DEFAULT_DIR, name: str = DEFAULT_NAME, force: bool = False) -> str:
    """Write the launcher as ``directory/name`` (atomically); a file there that is not ours
    is replaced only with ``force``."""
    from ..cni.install import launcher_text

    if "/" in name or name in ("", ".", ".."):
        raise ValueError(f"--name {name!r}: a plugin name is a file name (it is the network's driver)")
    if name in BUILTIN:
        raise ValueError(f"--name {name!r}: netavark's built-in driver of that name always wins; pick another name")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    if os.path.exists(path) and not force:
        with open(path, "rb") as f:
            head = f.read(4096)
        if MARK.encode() not in head:
            raise FileExistsError(errno.EEXIST, f"{path} exists and is not a pymacvlan-netavark launcher; pass "
                                  "--force to replace it")
    tmp = path + ".pmvtmp"
    with open(tmp, "w") as f:
        f.write(launcher_text(module="pymacvlan.netavark.plugin", mark=MARK))
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)
    return path


def containers_conf(directory: str = DEFAULT_DIR) -> str:
    """The lines that make podman 5 use it (netavark is podman 5's only network backend)."""
    return f'[network]\nnetwork_backend = "netavark"\nnetavark_plugin_dirs = ["{directory}"]\n'


def example(name: str = DEFAULT_NAME, parent: str = "eth1") -> str:
    return (f"podman network create -d {name} -o parent={parent} -o mode=bridge --subnet 192.168.50.0/24 "
            f"--gateway 192.168.50.1 pmvnet")
