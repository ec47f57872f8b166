"""The old private name of :mod:`.syscalls`, kept for the modules of this package that still say it."""

from .syscalls import *  # noqa: F403
from .syscalls import _libc  # noqa: F401
