"""pymacvlan: Linux macvlan and macvtap, re-implemented in Python.

One sans-IO model (:mod:`pymacvlan.engine`) of how drivers/net/macvlan.c decides where a frame
goes, driven by three backends: ``sim`` (in-process), ``userspace`` (AF_PACKET parent, TAP
children) and ``kernel`` (the kernel's own macvlan over netlink, the oracle).
"""

__version__ = "0.1.0"
