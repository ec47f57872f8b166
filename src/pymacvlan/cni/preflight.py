"""Preflight of ADD: the doctor's checks of the master, before anything is made.

The facts are those ``pymacvlan doctor`` reads, for the master only and over the netlink
socket the plugin already has (``gather`` runs ``ip``, too slow for every pod): kind, port of
a bridge/bond, Wi-Fi, driver, its children here, DMI vendor and the CPU's hypervisor flag.
:func:`pymacvlan.doctor.check_parent` judges them: what breaks for sure (Wi-Fi master, master
enslaved to a bridge or bond, ipvlan on it) fails ADD with the doctor's advice in ``details``;
what may break (a hypervisor dropping unknown MACs) is a warning on stderr.
"""

from __future__ import annotations

import sys
from typing import Any

from .spec import config_error

#: Findings that make ADD fail for sure, whatever their severity in `pymacvlan doctor`.
FATAL = ("wifi-parent", "rx-handler-busy", "macvlan-and-ipvlan")


def facts(master: dict[str, Any], name: str, netns: str | None):
    from .. import doctor
    from ..links.kernel import _info_kind, _mode
    from ..netns import in_netns
    from .netns import _ipr

    with in_netns(netns):
        ipr = _ipr()
    try:
        kids = [m for m in ipr.get_links() if m.get_attr("IFLA_LINK") == master["index"]
                and m["index"] != master["index"]]
        master_name = None
        if master.get("master"):
            up = ipr.get_links(master["master"])
            master_name = up[0].get_attr("IFLA_IFNAME") if up else str(master["master"])
    finally:
        ipr.close()
    f = doctor.Facts(netns=netns)
    p = doctor.Iface(name=name, ifindex=master["index"], kind=master["kind"] or "", master=master_name,
                     up=bool(master["flags"] & 1), mac=master["mac"] or "")
    if netns is None:
        p.driver, p.wireless = doctor._driver_and_wireless(None, [name]).get(name, ("", False))
    f.ifaces = [p] + [doctor.Iface(name=k.get_attr("IFLA_IFNAME"), ifindex=k["index"], kind=_info_kind(k) or "",
                                   link=master["index"], up=bool(k["flags"] & 1),
                                   mode=str(_mode(k) or "")) for k in kids]
    f.dmi_vendor = doctor._read("/sys/class/dmi/id/sys_vendor")
    f.cpu_hypervisor = " hypervisor" in doctor._read("/proc/cpuinfo").split("\nflags", 1)[-1].split("\n", 1)[0] + " "
    return f, p


def judge(f, p) -> tuple[Any, list]:
    """The doctor's findings for master ``p``: the one that fails ADD (or None), the warnings."""
    from .. import doctor

    fatal, warnings = None, []
    for x in doctor.check_parent(f, p):
        if fatal is None and x.code in FATAL and (x.severity == "error" or x.code == "macvlan-and-ipvlan"):
            fatal = x
        elif x.severity == "warning" and x.code not in FATAL:
            warnings.append(x)
    return fatal, warnings


def preflight(n: Any, master: dict[str, Any], netns: str | None) -> None:
    fatal, warnings = judge(*facts(master, n.master, netns))
    if fatal is not None:
        raise config_error("master", fatal.saw, fatal.fix)
    for x in warnings:
        sys.stderr.write(f"pymacvlan-cni: warning: {x.code} ({x.subject}): {x.saw}; {x.fix}\n")
