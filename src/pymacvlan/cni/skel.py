"""The CNI protocol (spec 1.1.0), as libcni's ``pkg/skel`` runs a plugin.

Order of checks is skel's, so a runtime sees the same code for the same mistake as from the
reference plugin: required environment (4), no ``CNI_COMMAND`` at all (the about text on
stderr, exit 0), the config's JSON (6) and network name (7), container ID (3/4) and interface
name (4), the config's ``cniVersion`` against ours (1), then the command. Errors are printed as
the spec's object (``code``, ``msg``, ``details``) on stdout, indented as Go's MarshalIndent
does, with exit status 1; an unexpected exception becomes code 999 (what libcni wraps a plain
Go error in) with one line on stderr, never a traceback.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from typing import Any, TextIO

from . import IMPLEMENTED_VERSION, SUPPORTED_VERSIONS
from .spec import (  # noqa: F401 (the spec's words, re-exported: skel is where callers expect them)
    ERR_DECODING,
    ERR_INCOMPATIBLE_VERSION,
    ERR_INTERNAL,
    ERR_INVALID_CONFIG,
    ERR_INVALID_ENV,
    ERR_IO,
    ERR_PLUGIN_NOT_AVAILABLE,
    ERR_PLUGIN_NOT_AVAILABLE_LIMITED,
    ERR_TRY_AGAIN_LATER,
    ERR_UNKNOWN_CONTAINER,
    ERR_UNSUPPORTED_FIELD,
    Args,
    CNIError,
    config_error,
    version_of,
    version_tuple,
)

ABOUT = "CNI pymacvlan-cni plugin (macvlan drop-in) version {version}"

#: the most a config on stdin may hold (a runtime's configs are a few KiB)
MAX_STDIN = 1 << 20

_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")
_REQUIRED: dict[str, tuple[str, ...]] = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"),
    "GC": ("CNI_PATH",),
    "STATUS": ("CNI_PATH",),
}
_ENV_ORDER = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH")
#: Commands that exist only from this spec version on (skel refuses them for older configs).
_SINCE = {"CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}


def dump(obj: Any) -> str:
    """JSON as Go's json.MarshalIndent(v, "", "    ") prints it (what the reference prints)."""
    return json.dumps(obj, indent=4, ensure_ascii=False)


def _validate_ifname(name: str) -> None:
    """utils.ValidateInterfaceName: what the kernel's dev_valid_name() accepts, as CNI words it."""
    if not name:
        raise CNIError(ERR_INVALID_ENV, "interface name is empty")
    if len(name) > 15:
        raise CNIError(ERR_INVALID_ENV, "interface name is too long",
                       "interface name should be less than 16 characters")
    if name in (".", ".."):
        raise CNIError(ERR_INVALID_ENV, "interface name is . or ..")
    if any(c in "/:" or c.isspace() for c in name):
        raise CNIError(ERR_INVALID_ENV, "interface name contains / or : or whitespace characters")


def parse(env: dict[str, str], stdin: bytes) -> Args:
    """Environment and stdin to :class:`Args`, with skel's checks in skel's order."""
    cmd = env.get("CNI_COMMAND", "")
    missing = [n for n in _ENV_ORDER
               if not env.get(n) and (n == "CNI_COMMAND" or n in _REQUIRED.get(cmd, ()))]
    if missing:
        raise CNIError(ERR_INVALID_ENV, f"required env variables [{','.join(missing)}] missing")
    a = Args(command=cmd, container_id=env.get("CNI_CONTAINERID", ""), netns=env.get("CNI_NETNS", ""),
             ifname=env.get("CNI_IFNAME", ""), args=env.get("CNI_ARGS", ""), path=env.get("CNI_PATH", ""),
             stdin=b"" if cmd == "VERSION" else stdin)
    if cmd == "VERSION":
        return a
    if len(a.stdin) > MAX_STDIN:
        raise CNIError(ERR_DECODING, f"error unmarshall network config: more than {MAX_STDIN} bytes",
                       "a network config is at most 1 MiB")
    try:
        conf = json.loads(a.stdin or b"null")
    except (ValueError, UnicodeDecodeError) as e:
        raise CNIError(ERR_DECODING, f"error unmarshall network config: {e}") from None
    except RecursionError:
        raise CNIError(ERR_DECODING, "error unmarshall network config: nested too deeply",
                       "a network config nests objects and lists a few levels deep") from None
    if not isinstance(conf, dict):
        raise CNIError(ERR_DECODING, "error unmarshall network config: the config must be a JSON object")
    a.conf = conf
    name = conf.get("name")
    if not isinstance(name, str) or not name:
        raise CNIError(ERR_INVALID_CONFIG, "missing network name", "the config needs \"name\"")
    if not _NAME_RE.match(name):
        raise CNIError(ERR_INVALID_CONFIG, "invalid characters found in network name", name)
    if cmd in ("ADD", "CHECK", "DEL"):
        if not _NAME_RE.match(a.container_id):
            raise CNIError(ERR_INVALID_ENV, "invalid characters in containerID", a.container_id)
        _validate_ifname(a.ifname)
    return a


def check_version(a: Args) -> None:
    """VersionReconciler.Check, plus skel's CHECK/GC/STATUS minimum config versions."""
    v = a.conf.get("cniVersion", "0.1.0")
    if not isinstance(v, str):
        raise CNIError(ERR_DECODING, "cniVersion: must be a string like \"1.0.0\"")
    v = v or "0.1.0"
    since = _SINCE.get(a.command)
    if since and version_tuple(v) < version_tuple(since):
        raise CNIError(ERR_INCOMPATIBLE_VERSION, f"config version does not allow {a.command}",
                       f"{a.command} needs cniVersion {since} or later")
    if v not in SUPPORTED_VERSIONS:
        supported = " ".join(f'"{s}"' for s in SUPPORTED_VERSIONS)
        raise CNIError(ERR_INCOMPATIBLE_VERSION, "incompatible CNI versions",
                       f'config is "{v}", plugin supports [{supported}]')


def version_info() -> dict[str, Any]:
    return {"cniVersion": IMPLEMENTED_VERSION, "supportedVersions": list(SUPPORTED_VERSIONS)}


def run(env: dict[str, str], stdin: bytes, out: TextIO, err: TextIO,
        commands: Callable[[str], Callable[[Args], Any]] | None = None) -> int:
    """One invocation; returns the exit status. ``commands`` maps a command to its function
    (tests inject fakes; by default :func:`pymacvlan.cni.plugin.command`)."""
    from .. import __version__

    try:
        a = parse(env, stdin)
    except CNIError as e:
        if e.code == ERR_INVALID_ENV and not env.get("CNI_COMMAND"):
            err.write(ABOUT.format(version=__version__) + "\n")
            err.write(f"CNI protocol versions supported: {', '.join(SUPPORTED_VERSIONS)}\n")
            return 0
        out.write(dump(e.as_dict()))
        return 1
    try:
        if a.command == "VERSION":
            out.write(json.dumps(version_info(), separators=(",", ":")))
            return 0
        if a.command not in _REQUIRED:
            raise CNIError(ERR_INVALID_ENV, f"unknown CNI_COMMAND: {a.command}")
        check_version(a)
        if commands is None:
            from .plugin import command as default_commands

            commands = default_commands
        result = commands(a.command)(a)
        if result is not None:
            out.write(dump(result))
        return 0
    except CNIError as e:
        out.write(dump(e.as_dict()))
        return 1
    except RecursionError:  # a config nested deeper than its reader recurses
        out.write(dump(CNIError(ERR_DECODING, "error unmarshall network config: nested too deeply").as_dict()))
        return 1
    except Exception as e:  # never a traceback: the runtime shows stdout, the log gets one line
        err.write(f"pymacvlan-cni: {a.command}: internal error: {type(e).__name__}: {e}\n")
        out.write(dump(CNIError(ERR_INTERNAL, f"{type(e).__name__}: {e}").as_dict()))
        return 1


def main() -> int:
    """Console-script entry point (`pymacvlan-cni`)."""
    stdin = b""
    if os.environ.get("CNI_COMMAND", "") != "VERSION":
        try:
            stdin = sys.stdin.buffer.read(MAX_STDIN + 1)  # bounded: more is refused by parse (code 6)
        except OSError as e:
            sys.stdout.write(dump(CNIError(ERR_IO, f"error reading from stdin: {e}").as_dict()))
            return 1
    if os.environ.get("CNI_COMMAND") in _REQUIRED:
        from .netns import lite_pyroute2

        lite_pyroute2()
    rc = run(dict(os.environ), stdin, sys.stdout, sys.stderr)
    sys.stdout.flush()
    return rc
