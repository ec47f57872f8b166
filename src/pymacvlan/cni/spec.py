"""What the CNI spec itself defines, for every module of the plugin: the error codes and the
error object, the arguments a command gets, versions. Below :mod:`.skel` (the protocol driver)
and :mod:`.plugin` (the commands), so neither imports the other's world to say an error."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Codes of the spec (SPEC.md "Error"), named as libcni names them.
ERR_INCOMPATIBLE_VERSION = 1
ERR_UNSUPPORTED_FIELD = 2
ERR_UNKNOWN_CONTAINER = 3
ERR_INVALID_ENV = 4
ERR_IO = 5
ERR_DECODING = 6
ERR_INVALID_CONFIG = 7
ERR_TRY_AGAIN_LATER = 11
ERR_PLUGIN_NOT_AVAILABLE = 50
ERR_PLUGIN_NOT_AVAILABLE_LIMITED = 51
ERR_INTERNAL = 999


class CNIError(Exception):
    """The spec's error object; ``code`` is one of the spec's (or ≥100, ours)."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code, self.msg, self.details = code, msg, details

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out


def config_error(key: str, msg: str, allowed: str = "") -> CNIError:
    """Code 7 naming the key (``ipam.type``, ``mtu`` ...) and, when known, what is allowed."""
    return CNIError(ERR_INVALID_CONFIG, f"{key}: {msg}", allowed)


@dataclass
class Args:
    """What skel hands a command: the environment and the raw config (``CmdArgs``)."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: str = ""
    path: str = ""
    stdin: bytes = b""
    conf: dict[str, Any] = field(default_factory=dict)

    @property
    def cni_version(self) -> str:
        return version_of(self.conf)

    @property
    def paths(self) -> list[str]:
        return [p for p in self.path.split(":") if p]


def version_of(conf: dict[str, Any]) -> str:
    """A config without ``cniVersion`` is 0.1.0 (libcni's ConfigDecoder)."""
    v = conf.get("cniVersion")
    return v if isinstance(v, str) and v else "0.1.0"


def version_tuple(v: str) -> tuple[int, int, int]:
    try:
        parts = [int(p) for p in v.split(".")]
    except ValueError:
        raise CNIError(ERR_DECODING, f"invalid version {v!r}: the format must be major.minor.patch") from None
    if len(parts) != 3 or any(p < 0 for p in parts):
        raise CNIError(ERR_DECODING, f"invalid version {v!r}: the format must be major.minor.patch")
    return parts[0], parts[1], parts[2]
