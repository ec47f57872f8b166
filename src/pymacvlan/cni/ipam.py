"""Delegation to the IPAM plugin named in ``ipam.type`` (libcni's pkg/invoke).

The plugin is looked up in ``CNI_PATH``, executed with our environment and ``CNI_COMMAND``
set to the command, and given our stdin unchanged. Its result is read in whatever version it
speaks and made current. Its error object is passed on with its code and details, its message
prefixed with the plugin's name (``host-local: ...``): a refusal from the IPAM plugin must not
read as pymacvlan-cni's own.

A plugin older than the configuration (Debian's host-local 1.1.1 speaks CNI up to 1.0.0 and
refuses a 1.1.0 configuration with code 1) is asked for its versions (``VERSION``) and called
again at the highest version both support for ADD, DEL and CHECK; its result is converted as
any other, so old IPAM plugins work with 1.1.0 configurations. (libcni does not do this; the
spec lets a plugin delegate at any version it and its delegate share.)
"""

from __future__ import annotations

import json
import os
import subprocess

from .spec import ERR_INTERNAL, Args, CNIError, config_error


def check_name(plugin: object) -> str:
    """``ipam.type`` must be a plain plugin name (what invoke.FindInPath looks up in CNI_PATH):
    never a path, on every command (DEL, STATUS and GC too: they run it as root)."""
    if not isinstance(plugin, str):
        raise config_error("ipam.type", f"must be a string, not {plugin!r}", "host-local, static or dhcp")
    if (not plugin or "/" in plugin or "\0" in plugin or plugin in (".", "..") or len(plugin) > 255
            or any(c.isspace() for c in plugin)):
        raise config_error("ipam.type", f"invalid plugin name: {plugin!r}",
                           "a plugin's file name found in CNI_PATH, such as host-local")
    return plugin


def find(plugin: str, paths: list[str]) -> str:
    """invoke.FindInPath; a missing plugin is a config mistake (code 7 naming ``ipam.type``)."""
    check_name(plugin)
    if not paths:
        raise CNIError(4, "no paths provided", "set CNI_PATH to the directories holding the plugins")
    for d in paths:
        p = os.path.join(d, plugin)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    raise config_error("ipam.type", f"failed to find plugin {plugin!r} in path [{' '.join(paths)}]",
                       "install the IPAM plugin there or name one that is (host-local, static, dhcp)")


#: the commands delegated at a version the plugin supports (GC and STATUS exist only in 1.1.0)
NEGOTIATED = ("ADD", "DEL", "CHECK")


def _vkey(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in v.split("."))
    except ValueError:
        return (0,)


def versions(a: Args, plugin: str) -> list[str]:
    """The CNI versions ``plugin`` speaks (its VERSION answer; [] when it gives none)."""
    try:
        r = _run(a, "VERSION", plugin, json.dumps({"cniVersion": a.cni_version}).encode(), None)
    except CNIError:
        return []
    sup = r.get("supportedVersions") if isinstance(r, dict) else None
    return [v for v in sup if isinstance(v, str)] if isinstance(sup, list) else []


def common_version(want: str, supported: list[str], command: str) -> str | None:
    """The highest version ``supported`` that is not above ``want`` (CHECK: at least 0.4.0)."""
    floor = (0, 4, 0) if command == "CHECK" else (0,)
    ok = [v for v in supported if floor <= _vkey(v) <= _vkey(want)]
    return max(ok, key=_vkey) if ok else None


def execute(a: Args, command: str, plugin: str, stdin: bytes | None = None,
            env: dict[str, str] | None = None) -> dict | None:
    """Run ``plugin`` for ``command``; its parsed stdout (None when it printed nothing).
    A refusal of the configuration's version (code 1) is retried at a common version."""
    data = a.stdin if stdin is None else stdin
    try:
        return _run(a, command, plugin, data, env)
    except CNIError as e:
        if e.code != 1 or command not in NEGOTIATED:
            raise
        supported = versions(a, plugin)
        if not supported or a.cni_version in supported:
            raise
        best = common_version(a.cni_version, supported, command)
        if best is None:
            raise CNIError(1, f"{plugin}: incompatible CNI versions: the configuration is {a.cni_version}, the "
                           f"IPAM plugin speaks {', '.join(supported)}",
                           f"use an IPAM plugin that speaks {a.cni_version}, or a configuration of a version "
                           "it speaks") from None
        try:
            conf = json.loads(data)
        except ValueError:
            raise e from None
        conf["cniVersion"] = best
        return _run(a, command, plugin, json.dumps(conf).encode(), env)


def _run(a: Args, command: str, plugin: str, data: bytes, env: dict[str, str] | None) -> dict | None:
    path = find(plugin, a.paths)
    full = dict(os.environ)
    full.update(env or {})
    full["CNI_COMMAND"] = command
    try:
        p = subprocess.run([path], input=data, env=full, capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CNIError(ERR_INTERNAL, f"failed to run IPAM plugin {plugin!r}: {e}") from None
    if p.stderr:
        os.write(2, p.stderr)
    out = p.stdout.strip()
    if p.returncode != 0:
        if not out:
            msg = p.stderr.decode(errors="replace").strip()
            raise CNIError(ERR_INTERNAL, f"{plugin}: netplugin failed: {msg!r}" if msg else
                           f"{plugin}: netplugin failed with no error message")
        try:
            obj = json.loads(out)
            err = CNIError(int(obj["code"]), f"{plugin}: {obj.get('msg', '')}", str(obj.get("details") or ""))
        except (ValueError, KeyError, TypeError):
            raise CNIError(ERR_INTERNAL, f"{plugin}: netplugin failed: {out.decode(errors='replace')!r}") from None
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
