"""The network config: the reference macvlan plugin's keys, key for key, and ours.

Reference keys (plugins/main/macvlan NetConf): ``master``, ``mode`` (``""``/bridge, private,
vepa, passthru), ``mtu``, ``mac``, ``linkInContainer``, ``bcqueuelen``, ``ipam``, ``dns``,
``runtimeConfig.mac``; the MAC also comes from ``CNI_ARGS`` ``MAC=`` (``runtimeConfig.mac``
wins). Ours: ``mode: source`` with ``macaddr``, ``nodst``, ``nopromisc``, ``bclim``,
``backend`` (kernel, userspace) with ``socket``, ``hostAccess``, ``stableMac``, ``stateDir``.

Everything that can be checked without the kernel is checked here, before anything is made,
as code 7 naming the key and what it accepts (the reference answers a type mismatch with
999 "failed to load netconf: json: cannot unmarshal ..."). JSON ``null`` is the key's zero
value, as Go's decoder makes it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from ..links import HOST_BACKENDS, takes_option
from ..model.link import LinkRequest
from .spec import ERR_INVALID_ENV, CNIError, config_error

MODES = ("bridge", "private", "vepa", "passthru", "source")
BACKENDS = HOST_BACKENDS  # a pod needs a real netdev: the backends with a host stack
DEFAULT_STATE_DIR = "/run/pymacvlan/cni"


@dataclass
class NetConf:
    name: str
    cni_version: str
    master: str = ""
    mode: str = "bridge"
    mtu: int = 0
    mac: str = ""
    link_in_container: bool = False
    bcqueuelen: int = 0
    ipam: dict[str, Any] = field(default_factory=dict)
    dns: dict[str, Any] = field(default_factory=dict)
    # ours
    macaddr: list[str] = field(default_factory=list)
    nodst: bool = False
    nopromisc: bool = False
    bclim: int | None = None
    backend: str = "kernel"
    socket: str = ""
    host_access: bool = False
    stable_mac: bool = False
    state_dir: str = DEFAULT_STATE_DIR

    @property
    def ipam_type(self) -> str:
        return self.ipam.get("type") or ""

    def link_request(self, ifname: str, netns: str | None) -> LinkRequest:
        """The one translation of a NetConf into the driver's request: the child ``ifname``
        made in ``netns`` (None: where the driver works, i.e. linkInContainer's pod namespace),
        checked completely (:func:`validate_request`) before anything is touched."""
        from ..model import KernelError, MacaddrMode, MacvlanFlag, Mode
        from ..model.link import validate_request
        from ..model.mac import parse_mac

        flags = (MacvlanFlag.NODST if self.nodst else MacvlanFlag(0)) | \
            (MacvlanFlag.NOPROMISC if self.nopromisc else MacvlanFlag(0))
        req = LinkRequest(parent=self.master, name=ifname, kind="macvlan", mode=Mode[self.mode.upper()],
                          address=parse_mac(self.mac) if self.mac else None, mtu=self.mtu or None,
                          flags=flags or None, macaddr_mode=MacaddrMode.SET if self.macaddr else None,
                          macaddrs=[parse_mac(m) for m in self.macaddr], bcqueuelen=self.bcqueuelen or None,
                          bclim=self.bclim, netns=netns)
        try:
            validate_request(req)
        except KernelError as e:
            raise config_error("master" if "link" in e.message else "args", f"{e.errno_name}: {e.message}",
                               e.advice) from None
        return req


def _get(conf: dict, key: str, kind: type, what: str, label: str | None = None) -> Any:
    v = conf.get(key)
    if v is None:
        return kind()
    ok = isinstance(v, kind) and not (kind is int and isinstance(v, bool))
    if not ok:
        raise config_error(label or key, f"must be {what}, not {type(v).__name__} {v!r}")
    return v


def normalize_mac(text: str, key: str) -> str:
    """net.ParseMAC for Ethernet: six hex bytes, ``:`` or ``-`` separated; lower case out."""
    from ..model.mac import mac_str, parse_mac

    try:
        return mac_str(parse_mac(text.replace("-", ":")))
    except ValueError:
        raise config_error(key, f"invalid MAC address {text!r}",
                           "six hex bytes like 02:00:00:00:00:0a") from None


def parse_cni_args(text: str) -> dict[str, str]:
    """types.LoadArgs into MacEnvArgs: ``K=V;K=V``; an unknown key is an error unless
    ``IgnoreUnknown`` is true (every runtime sets it)."""
    if not text:
        return {}
    known = {"IgnoreUnknown", "MAC"}
    out: dict[str, str] = {}
    unknown: list[str] = []
    for pair in text.split(";"):
        kv = pair.split("=")
        if len(kv) != 2:
            raise CNIError(ERR_INVALID_ENV, f"CNI_ARGS: invalid pair {pair!r}", "pairs are KEY=VALUE separated by ;")
        (unknown if kv[0] not in known else []).append(pair)
        out[kv[0]] = kv[1]
    ignore = out.get("IgnoreUnknown", "false").lower()
    if ignore not in ("1", "true", "0", "false"):
        raise CNIError(ERR_INVALID_ENV, f"CNI_ARGS: IgnoreUnknown={out['IgnoreUnknown']!r} is not a boolean",
                       "1, true, 0 or false")
    if unknown and ignore in ("0", "false"):
        raise CNIError(ERR_INVALID_ENV, f"CNI_ARGS: unknown args {unknown}", "add IgnoreUnknown=1 to CNI_ARGS")
    return out


def stable_mac(network: str, identity: str) -> str:
    """A locally administered unicast MAC from the network name and the pod's identity, so a
    restarted pod comes back with its MAC (and its DHCP lease)."""
    h = bytearray(hashlib.sha256(f"{network}\0{identity}".encode()).digest()[:6])
    h[0] = (h[0] & 0xFE) | 0x02
    return ":".join(f"{b:02x}" for b in h)


def attachment_identity(env: dict[str, str], container_id: str, ifname: str) -> str:
    """What stableMac (and the DHCP client identifier, :mod:`pymacvlan.dhcp.identity`) hash:
    the pod by namespace and name when the runtime says (Kubernetes' ``K8S_POD_*`` CNI_ARGS),
    else the container; with the interface name."""
    pod = (env.get("K8S_POD_NAMESPACE"), env.get("K8S_POD_NAME"))
    return f"pod/{pod[0]}/{pod[1]}/{ifname}" if all(pod) else f"ctr/{container_id}/{ifname}"


def load(conf: dict, cni_args: str = "", container_id: str = "", ifname: str = "") -> NetConf:
    """The config as ADD/CHECK read it (DEL reads only what it needs: :func:`load_for_del`)."""
    n = NetConf(name=conf["name"], cni_version=conf.get("cniVersion") or "0.1.0")
    n.master = _get(conf, "master", str, "a string (the parent interface's name)")
    mode = _get(conf, "mode", str, "a string")
    if mode not in ("",) + MODES:
        raise config_error(
            "mode", f"unknown macvlan mode: {mode!r}", "bridge (default), private, vepa, passthru or source"
        )
    n.mode = mode or "bridge"
    n.mtu = _get(conf, "mtu", int, "an integer")  # the range needs the master: netns.master_mtu
    n.mac = _get(conf, "mac", str, "a string")
    n.link_in_container = _get(conf, "linkInContainer", bool, "true or false")
    n.bcqueuelen = _get(conf, "bcqueuelen", int, "an integer")
    if not 0 <= n.bcqueuelen < 2**32:
        raise config_error("bcqueuelen", f"{n.bcqueuelen} is out of range", "0 .. 4294967295 (0: the kernel's default)")
    n.ipam = _get(conf, "ipam", dict, "an object like {\"type\": \"host-local\", ...}")
    ipam_type = n.ipam.get("type")
    if ipam_type is not None and not isinstance(ipam_type, str):
        raise config_error("ipam.type", f"must be a string, not {ipam_type!r}", "host-local, static or dhcp")
    if ipam_type:
        from .ipam import check_name

        check_name(ipam_type)
    n.dns = _get(conf, "dns", dict, "an object (nameservers, domain, search, options)")
    rc = _get(conf, "runtimeConfig", dict, "an object")
    rc_mac = rc.get("mac")
    if rc_mac is not None and not isinstance(rc_mac, str):
        raise config_error("runtimeConfig.mac", f"must be a string, not {rc_mac!r}")
    # ours
    n.macaddr = _get(conf, "macaddr", list, "a list of MAC addresses")
    if n.macaddr and n.mode != "source":
        raise config_error("macaddr", "is only for mode source", "drop macaddr or say \"mode\": \"source\"")
    n.macaddr = [normalize_mac(m, "macaddr") if isinstance(m, str) else normalize_mac(repr(m), "macaddr")
                 for m in n.macaddr]
    n.nodst = _get(conf, "nodst", bool, "true or false")
    if n.nodst and n.mode != "source":
        raise config_error(
            "nodst", "is only for mode source (MACVLAN_FLAG_NODST)", 'drop nodst or say "mode": "source"'
        )
    n.nopromisc = _get(conf, "nopromisc", bool, "true or false")
    if n.nopromisc and n.mode != "passthru":
        raise config_error("nopromisc", "is only for mode passthru (MACVLAN_FLAG_NOPROMISC)",
                           "drop nopromisc or say \"mode\": \"passthru\"")
    if conf.get("bclim") is not None:
        n.bclim = _get(conf, "bclim", int, "an integer (IFLA_MACVLAN_BC_CUTOFF)")
        if not -2**31 <= n.bclim < 2**31:
            raise config_error("bclim", f"{n.bclim} is out of range", "a 32-bit signed integer")
    n.backend = _get(conf, "backend", str, "a string") or "kernel"
    if n.backend not in BACKENDS:
        raise config_error("backend", f"unknown backend {n.backend!r}",
                           f"{BACKENDS[0]} (default) or " + " or ".join(BACKENDS[1:]))
    n.socket = _get(conf, "socket", str, "a string (the pymacvlan daemon's control socket)")
    if n.socket and not takes_option(n.backend, "socket"):
        owner = " or ".join(b for b in BACKENDS if takes_option(b, "socket"))
        raise config_error("socket", f"is only for \"backend\": \"{owner}\"")
    n.host_access = _get(conf, "hostAccess", bool, "true or false")
    if n.host_access and n.mode != "bridge":
        raise config_error("hostAccess", f"needs mode bridge (the host's child and the pods talk over the "
                           f"master in bridge mode), not {n.mode}")
    if n.host_access and n.link_in_container:
        raise config_error("hostAccess", "cannot be used with linkInContainer")
    n.stable_mac = _get(conf, "stableMac", bool, "true or false")
    n.state_dir = _get(conf, "stateDir", str, "a directory path") or DEFAULT_STATE_DIR
    # The MAC: config, then CNI_ARGS MAC=, then runtimeConfig.mac (the reference's order);
    # stableMac only when none of them names one.
    env = parse_cni_args(cni_args)
    mac_key = "mac"
    if env.get("MAC"):
        n.mac, mac_key = env["MAC"], "CNI_ARGS MAC"
    if rc_mac:
        n.mac, mac_key = rc_mac, "runtimeConfig.mac"
    if n.mac:
        n.mac = normalize_mac(n.mac, mac_key)
    elif n.stable_mac:
        n.mac = stable_mac(n.name, attachment_identity(env, container_id, ifname))
    return n


def load_for_del(conf: dict) -> NetConf:
    """DEL must work with what it is given (possibly a config that no longer loads for ADD):
    it needs only ``ipam``, ``backend``/``socket``, ``hostAccess``, ``master`` and ``stateDir``."""
    n = NetConf(name=conf["name"], cni_version=conf.get("cniVersion") or "0.1.0")
    ipam = conf.get("ipam")
    n.ipam = ipam if isinstance(ipam, dict) else {}
    if not isinstance(n.ipam.get("type", ""), str):
        raise config_error("ipam.type", f"must be a string, not {n.ipam['type']!r}")
    if n.ipam.get("type"):
        from .ipam import check_name

        check_name(n.ipam["type"])
    for attr, key, kind in (("backend", "backend", str), ("socket", "socket", str), ("master", "master", str),
                            ("host_access", "hostAccess", bool), ("state_dir", "stateDir", str),
                            ("link_in_container", "linkInContainer", bool)):
        v = conf.get(key)
        if isinstance(v, kind) and v:
            setattr(n, attr, v)
    return n
