"""Declarative macvlan setups: a TOML file of parents and their children, and the plan that
brings a backend's links to it.

```toml
backend = "sim"                  # optional; `--backend` wins
[parents.eth0]                   # must exist on kernel/userspace; created on sim
mtu = 1500                       # optional, managed when given
[parents.eth0.children.mac0]
kind = "macvlan"                 # or macvtap (default macvlan)
mode = "bridge"                  # private | vepa | bridge | passthru | source
mac = "02:00:00:00:00:10"        # optional: random at creation otherwise
mtu = 1500
flags = ["nodst"]                # nopromisc (passthru only) | nodst
netns = "pmvlab"                 # optional: the child lives there
source = ["02:00:00:00:00:99"]   # mode source: the remote MACs
bcqueuelen = 1000
bclim = 1
up = true                        # default true
host_access = false              # the host's own bridge-mode child (see `link add ... host-access`)
```

A key that is not given is not managed (it only takes the kernel's default at creation), so
a second apply finds nothing to change. Children a parent has but the file does not name are
left alone unless ``prune`` is asked for: on a real host they may be someone else's.
"""

from __future__ import annotations

import errno
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..model import KernelError, MacaddrMode, MacvlanFlag, Mode, mac_str, parse_mac
from . import BACKENDS, LinkChange, LinkRequest

CHILD_KEYS = {"kind", "mode", "mac", "mtu", "flags", "netns", "source", "bcqueuelen", "bclim", "up", "host_access"}
PARENT_KEYS = {"mtu", "up", "children"}
TOP_KEYS = {"backend", "netns", "parents"}


class ConfigError(ValueError):
    """The file is not a valid setup: names the file and the key. ``errno_name``: EINVAL for
    what is in the file, the OS's for a file that cannot be read."""

    errno_name = "EINVAL"


@dataclass
class ChildSpec:
    name: str
    parent: str
    kind: str = "macvlan"
    mode: Mode | None = None
    mac: bytes | None = None
    mtu: int | None = None
    flags: MacvlanFlag | None = None
    netns: str | None = None
    source: list[bytes] | None = None
    bcqueuelen: int | None = None
    bclim: int | None = None
    up: bool = True
    host_access: bool = False

    def request(self) -> LinkRequest:
        return LinkRequest(parent=self.parent, name=self.name, kind=self.kind, mode=self.mode, address=self.mac,
                           mtu=self.mtu, flags=self.flags,
                           macaddr_mode=MacaddrMode.SET if self.source is not None else None,
                           macaddrs=list(self.source or []), bcqueuelen=self.bcqueuelen, bclim=self.bclim,
                           netns=self.netns)


@dataclass
class ParentSpec:
    name: str
    mtu: int | None = None
    up: bool | None = None
    children: list[ChildSpec] = field(default_factory=list)


@dataclass
class Setup:
    path: str
    parents: list[ParentSpec]
    backend: str | None = None
    netns: str | None = None

    def children(self) -> list[ChildSpec]:
        return [c for p in self.parents for c in p.children]


def load(path: str | Path) -> Setup:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        err = ConfigError(f"{path}: {e.strerror}")
        err.errno_name = errno.errorcode.get(e.errno or 0, "EIO")
        raise err from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}): TOML files are UTF-8") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a setup file") from None
    where = str(path)
    _unknown(where, data, TOP_KEYS)
    parents_data = data.get("parents")
    if not isinstance(parents_data, dict) or not parents_data:
        raise ConfigError(f"{where}: no [parents.NAME] table: name at least one parent and its children")
    setup = Setup(where, [], _opt(where, data, "backend", str), _opt(where, data, "netns", str))
    if setup.backend is not None and setup.backend not in BACKENDS:
        raise ConfigError(f"{where}: backend = {setup.backend!r}: expected sim, kernel or userspace")
    seen: dict[tuple, str] = {}
    for pname, pdata in parents_data.items():
        at = f"{where}: parents.{pname}"
        if not isinstance(pdata, dict):
            raise ConfigError(f"{at}: expected a table")
        _unknown(at, pdata, PARENT_KEYS)
        parent = ParentSpec(pname, _mtu(at, pdata), _opt(at, pdata, "up", bool))
        children = pdata.get("children") or {}
        if not isinstance(children, dict):
            raise ConfigError(f"{at}.children: expected a table of children ([parents.{pname}.children.NAME])")
        for cname, cdata in children.items():
            cat = f"{at}.children.{cname}"
            if not isinstance(cdata, dict):
                raise ConfigError(f"{cat}: expected a table")
            child = _child(cat, pname, cname, cdata)
            key = (child.netns or setup.netns, cname)
            if key in seen:
                raise ConfigError(f"{cat}: the name {cname} is also used under {seen[key]}")
            seen[key] = f"parents.{pname}"
            parent.children.append(child)
        setup.parents.append(parent)
    return setup


def _unknown(at: str, d: dict, allowed: set) -> None:
    bad = sorted(set(d) - allowed)
    if bad:
        raise ConfigError(f"{at}: unknown key {bad[0]!r}; expected one of {', '.join(sorted(allowed))}")


def _opt(at: str, d: dict, key: str, typ):
    v = d.get(key)
    if v is not None and (not isinstance(v, typ) or (typ is int and isinstance(v, bool))):
        raise ConfigError(f"{at}.{key}: expected {typ.__name__}, got {v!r}")
    return v


def _mtu(at: str, d: dict) -> int | None:
    v = _opt(at, d, "mtu", int)
    if v is not None and not 68 <= v <= 65535:
        raise ConfigError(f"{at}.mtu: {v} is outside 68..65535")
    return v


def _child(at: str, parent: str, name: str, d: dict) -> ChildSpec:
    _unknown(at, d, CHILD_KEYS)
    c = ChildSpec(name, parent)
    c.kind = _opt(at, d, "kind", str) or "macvlan"
    if c.kind not in ("macvlan", "macvtap"):
        raise ConfigError(f"{at}.kind: {c.kind!r}: expected macvlan or macvtap")
    mode = _opt(at, d, "mode", str)
    if mode is not None:
        if mode not in ("private", "vepa", "bridge", "passthru", "source"):
            raise ConfigError(f"{at}.mode: {mode!r}: expected private, vepa, bridge, passthru or source")
        c.mode = Mode[mode.upper()]
    try:
        if "mac" in d:
            c.mac = parse_mac(_opt(at, d, "mac", str))
        if "source" in d:
            src = _opt(at, d, "source", list)
            c.source = [parse_mac(m) for m in src]
    except ValueError as e:
        raise ConfigError(f"{at}: {e}") from None
    c.mtu = _mtu(at, d)
    flags = _opt(at, d, "flags", list)
    if flags is not None:
        c.flags = MacvlanFlag(0)
        for f in flags:
            if f not in ("nopromisc", "nodst"):
                raise ConfigError(f"{at}.flags: {f!r}: expected nopromisc or nodst")
            c.flags |= MacvlanFlag.NOPROMISC if f == "nopromisc" else MacvlanFlag.NODST
        if c.flags & MacvlanFlag.NOPROMISC and c.mode != Mode.PASSTHRU:
            raise ConfigError(f"{at}.flags: nopromisc is only valid with mode = \"passthru\"")
    if c.source is not None and c.mode != Mode.SOURCE:
        raise ConfigError(f"{at}.source: a source list needs mode = \"source\"")
    c.netns = _opt(at, d, "netns", str)
    c.bcqueuelen = _opt(at, d, "bcqueuelen", int)
    c.bclim = _opt(at, d, "bclim", int)
    up = _opt(at, d, "up", bool)
    c.up = True if up is None else up
    c.host_access = bool(_opt(at, d, "host_access", bool))
    if c.host_access:
        if c.mode not in (None, Mode.BRIDGE):
            raise ConfigError(f"{at}.host_access: the host's child must be in mode = \"bridge\"")
        c.mode, c.up = Mode.BRIDGE, True
    return c


# -- the plan ---------------------------------------------------------------------------------------
@dataclass
class Step:
    """One change: ``op`` is add, set, del or replace; ``text`` is its line in the plan."""

    op: str
    text: str
    name: str
    netns: str | None = None
    request: LinkRequest | None = None
    change: LinkChange | None = None
    up: bool = False
    host_access: bool = False


def _info(d: dict) -> dict:
    return d.get("linkinfo", {}).get("info_data", {}) or {}


def _describe(c: ChildSpec) -> str:
    words = [c.kind, c.mode.name.lower() if c.mode is not None else "(default mode)", f"on {c.parent}"]
    if c.mac is not None:
        words.append(f"address {mac_str(c.mac)}")
    if c.mtu is not None:
        words.append(f"mtu {c.mtu}")
    if c.flags:
        words.append("flag " + _flag_words(c.flags))
    for key in ("bcqueuelen", "bclim", "netns"):
        if getattr(c, key) is not None:
            words.append(f"{key} {getattr(c, key)}")
    if c.source:
        words.append("source " + " ".join(mac_str(m) for m in c.source))
    if c.host_access:
        words.append("host-access")
    return " ".join(words)


def plan_apply(setup: Setup, driver, prune: bool = False) -> list[Step]:
    """The steps that bring the driver's links to ``setup`` (empty when they already match)."""
    steps: list[Step] = []
    here = {d["ifname"]: d for d in driver.show()}
    shown: dict[str | None, dict[str, dict]] = {None: here}

    def links_in(ns: str | None) -> dict[str, dict]:
        if ns not in shown:
            try:
                shown[ns] = {d["ifname"]: d for d in driver.show(netns=ns)}
            except KernelError:  # a namespace that does not exist holds nothing
                shown[ns] = {}
        return shown[ns]

    for p in setup.parents:
        cur = here.get(p.name)
        if cur is None and driver.owns_parents and p.name not in getattr(driver, "builtin_parents", ()):
            # the sim: the file declares its parents (eth0 and eth1 it has already)
            steps.append(Step("parent", f"+ add {p.name} (sim parent)", p.name))
        if cur is not None:
            ch, words = LinkChange(), []
            if p.mtu is not None and cur["mtu"] != p.mtu:
                ch.mtu = p.mtu
                words.append(f"mtu {cur['mtu']} -> {p.mtu}")
            if p.up is not None and ("UP" in cur["flags"]) != p.up:
                ch.up = p.up
                words.append(f"{'down' if p.up else 'up'} -> {'up' if p.up else 'down'}")
            if words:
                steps.append(Step("set", f"~ set {p.name} " + ", ".join(words), p.name, change=ch))
        for c in p.children:
            cur = links_in(c.netns).get(c.name)
            if cur is None:
                steps.append(Step("add", f"+ add {c.name} ({_describe(c)})", c.name, c.netns, c.request(),
                                  up=c.up, host_access=c.host_access))
                continue
            why = _needs_replace(c, cur, here)
            if why:
                steps.append(Step("del", f"- del {c.name} ({why}: re-created)", c.name, c.netns))
                steps.append(Step("add", f"+ add {c.name} ({_describe(c)})", c.name, c.netns, c.request(),
                                  up=c.up, host_access=c.host_access))
                continue
            ch, words = _child_change(c, cur)
            if words:
                steps.append(Step("set", f"~ set {c.name} " + ", ".join(words), c.name, c.netns, change=ch))
        if prune and p.name in here:
            declared = {c.name for c in p.children if c.netns is None}
            for d in here.values():
                if d.get("link") == p.name and d["ifname"] not in declared and \
                        d.get("linkinfo", {}).get("info_kind") in ("macvlan", "macvtap"):
                    steps.append(Step("del", f"- del {d['ifname']} (not in {setup.path})", d["ifname"]))
    return steps


def _needs_replace(c: ChildSpec, cur: dict, here: dict) -> str:
    kind = cur.get("linkinfo", {}).get("info_kind")
    if kind not in ("macvlan", "macvtap"):
        return f"it is a {kind or 'link of another kind'}, not a {c.kind}"
    if kind != c.kind:
        return f"kind {kind} -> {c.kind}"
    parent = cur.get("link")
    if parent is None and "link_index" in cur and c.parent in here:
        parent = c.parent if here[c.parent]["ifindex"] == cur["link_index"] else f"if{cur['link_index']}"
    if parent is not None and parent != c.parent:
        return f"parent {parent} -> {c.parent}"
    mode = _info(cur).get("mode")
    if c.mode is not None and mode != c.mode.name.lower() and "passthru" in (mode, c.mode.name.lower()):
        return f"mode {mode} -> {c.mode.name.lower()} (passthru cannot be changed in place)"
    return ""


def _child_change(c: ChildSpec, cur: dict) -> tuple[LinkChange, list[str]]:
    info = _info(cur)
    ch, words = LinkChange(kind=c.kind), []
    if c.mode is not None and info.get("mode") != c.mode.name.lower():
        ch.mode = c.mode
        words.append(f"mode {info.get('mode')} -> {c.mode.name.lower()}")
    if c.flags is not None:
        have = (MacvlanFlag.NOPROMISC if info.get("nopromisc") else 0) | (MacvlanFlag.NODST if info.get("nodst") else 0)
        if int(have) != int(c.flags):
            ch.flags = c.flags
            words.append(f"flags {_flag_words(have)} -> {_flag_words(c.flags)}")
    if c.bcqueuelen is not None and info.get("bcqueuelen") != c.bcqueuelen:
        ch.bcqueuelen = c.bcqueuelen
        words.append(f"bcqueuelen {info.get('bcqueuelen')} -> {c.bcqueuelen}")
    if c.bclim is not None and info.get("bclim", 1) != c.bclim:
        ch.bclim = c.bclim
        words.append(f"bclim {info.get('bclim', 1)} -> {c.bclim}")
    if c.source is not None:
        have_src = sorted(info.get("macaddr_data", []))
        want_src = sorted(mac_str(m) for m in c.source)
        if have_src != want_src:
            ch.macaddr_mode, ch.macaddrs = MacaddrMode.SET, list(c.source)
            words.append(f"source [{' '.join(have_src)}] -> [{' '.join(want_src)}]")
    if c.mac is not None and cur.get("address") != mac_str(c.mac):
        ch.address = c.mac
        words.append(f"address {cur.get('address')} -> {mac_str(c.mac)}")
    if c.mtu is not None and cur.get("mtu") != c.mtu:
        ch.mtu = c.mtu
        words.append(f"mtu {cur.get('mtu')} -> {c.mtu}")
    is_up = "UP" in cur.get("flags", [])
    if is_up != c.up:
        ch.up = c.up
        words.append(f"{'up' if is_up else 'down'} -> {'up' if c.up else 'down'}")
    if not words:
        ch.kind = None
    return ch, words


def _flag_words(flags) -> str:
    names = [n for n, b in (("nopromisc", 1), ("nodst", 2)) if int(flags) & b]
    return ",".join(names) or "none"


def plan_down(setup: Setup, driver, remove_parents: bool) -> list[Step]:
    """Delete the file's children (and, where the backend made them, its parents)."""
    steps: list[Step] = []
    here = {d["ifname"]: d for d in driver.show()}
    for p in setup.parents:
        for c in p.children:
            try:
                present = any(d["ifname"] == c.name for d in driver.show(netns=c.netns)) if c.netns else c.name in here
            except KernelError:  # its namespace is gone, and the child with it
                present = False
            if present:
                steps.append(Step("del", f"- del {c.name}", c.name, c.netns))
        if remove_parents and p.name in here:
            steps.append(Step("del", f"- del {p.name} (sim parent)", p.name))
    return steps
