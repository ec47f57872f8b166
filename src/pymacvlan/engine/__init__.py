"""The sans-IO macvlan engine (see :class:`pymacvlan.engine.core.Engine`)."""

from .core import Engine
from .device import STACK_GROUPS, Counters, Lower, MacvlanDev
from .hashes import mac_hash, mc_hash
from .trace import PARENT, WIRE, Trace

__all__ = ["Engine", "Counters", "Lower", "MacvlanDev", "STACK_GROUPS", "mac_hash", "mc_hash",
           "PARENT", "WIRE", "Trace"]
