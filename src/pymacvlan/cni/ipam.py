"""Delegation to the IPAM plugin named in ``ipam.type`` (libcni's pkg/invoke).

The plugin is looked up in ``CNI_PATH``, executed with our environment and ``CNI_COMMAND``
set to the command, and given our stdin unchanged. Its error object is passed on as it came
(code and all); its result is read in whatever version it speaks and made current.
"""

from __future__ import annotations

import json
import os
import subprocess

from .skel import ERR_INTERNAL, Args, CNIError, config_error


def find(plugin: str, paths: list[str]) -> str:
    """invoke.FindInPath; a missing plugin is a config mistake (code 7 naming ``ipam.type``)."""
    if not paths:
        raise CNIError(4, "no paths provided", "set CNI_PATH to the directories holding the plugins")
    for d in paths:
        p = os.path.join(d, plugin)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    raise config_error("ipam.type", f"failed to find plugin {plugin!r} in path [{' '.join(paths)}]",
                       "install the IPAM plugin there or name one that is (host-local, static, dhcp)")


def execute(a: Args, command: str, plugin: str, stdin: bytes | None = None,
            env: dict[str, str] | None = None) -> dict | None:
    """Run ``plugin`` for ``command``; its parsed stdout (None when it printed nothing)."""
    path = find(plugin, a.paths)
    full = dict(os.environ)
    full.update(env or {})
    full["CNI_COMMAND"] = command
    try:
        p = subprocess.run([path], input=a.stdin if stdin is None else stdin, env=full,
                           capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CNIError(ERR_INTERNAL, f"failed to run IPAM plugin {plugin!r}: {e}") from None
    if p.stderr:
        os.write(2, p.stderr)
    out = p.stdout.strip()
    if p.returncode != 0:
        if not out:
            msg = p.stderr.decode(errors="replace").strip()
            raise CNIError(ERR_INTERNAL, f"netplugin failed: {msg!r}" if msg else
                           "netplugin failed with no error message")
        try:
            obj = json.loads(out)
            err = CNIError(int(obj["code"]), str(obj.get("msg", "")), str(obj.get("details") or ""))
        except (ValueError, KeyError, TypeError):
            raise CNIError(ERR_INTERNAL, f"netplugin failed: {out.decode(errors='replace')!r}") from None
        raise err
    if not out:
        return None
    try:
        return json.loads(out)
    except ValueError as e:
        raise CNIError(6, f"IPAM plugin {plugin!r} printed a result that is not JSON: {e}") from None


def add(a: Args, plugin: str) -> dict:
    from .result import to_current

    r = execute(a, "ADD", plugin)
    if not isinstance(r, dict):
        raise CNIError(ERR_INTERNAL, f"IPAM plugin {plugin!r} printed no result")
    cur = to_current(r)
    if not cur["ips"]:
        raise CNIError(ERR_INTERNAL, "IPAM plugin returned missing IP config")
    return cur
