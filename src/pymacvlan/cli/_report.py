"""The CLI's shared words: counts with their plural, an OSError as one line, the sim note."""

from __future__ import annotations

import errno

from ..model.errors import KernelError
from ..words import plural  # noqa: F401 (re-exported for the commands)


def os_error_line(cmd: str, e: OSError, hint: str = "") -> str:
    """``pymacvlan CMD: ENOENT: /x: No such file or directory (hint)``: the errno's name, the
    path and the reason on one line, not Python's ``[Errno 2] ...``."""
    name = errno.errorcode.get(e.errno, "") if e.errno else ""
    where = e.filename if e.filename is not None else ""
    what = f"{where}: {e.strerror}" if where and e.strerror else (e.strerror or str(e))
    return f"pymacvlan {cmd}: " + (f"{name}: " if name else "") + what + (f" ({hint})" if hint else "")


ROOT_HINT = "run it as root: network namespaces, links and packet sockets need CAP_NET_ADMIN"


def error_line(cmd: str, e: Exception) -> str:
    """One line for a refused command: a KernelError already reads ``ENAME: what (advice)``,
    an OSError gets its errno's name, a bad file (ScenarioError, ConfigError) its ``errno_name``
    (EINVAL unless said); the command's prefix once, never twice."""
    if isinstance(e, OSError):
        return os_error_line(cmd, e, ROOT_HINT if isinstance(e, PermissionError) else "")
    if isinstance(e, KernelError):
        return f"pymacvlan {cmd}: {e}"
    return f"pymacvlan {cmd}: {getattr(e, 'errno_name', 'EINVAL')}: {e}"
