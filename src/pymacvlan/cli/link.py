"""`pymacvlan [-j] [-p] [-d] [-s] [-br] [-n NS] [--backend B] link add|set|del|show ...`.

iproute2's `ip link` grammar for macvlan/macvtap, over any backend's LinkDriver. Words may be
abbreviated where iproute2 allows it (``matches()``: ``a`` for add, ``sh`` for show, ``dev``
optional before a name). Output and errors are iproute2's (``RTNETLINK answers: File exists``),
and a KernelError's advice follows on one line starting with ``hint:``.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field

from ..links import BACKENDS, DEFAULT_BACKEND, DriverConfig, LinkChange, LinkRequest, open_driver
from ..links.format import Options, endpoint_text, render
from ..model import KernelError, MacaddrMode, MacvlanFlag, Mode, parse_mac
from ..model.link import ENDPOINT_KINDS

ORDER = 20
MODE_WORDS = ("private", "vepa", "bridge", "passthru", "source")


class UsageError(Exception):
    """A command line iproute2 would refuse before talking to the kernel: its words, its exit code."""

    def __init__(self, message: str, code: int = 1, hint: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.hint = hint


def matches(word: str, keyword: str, least: int = 1) -> bool:
    """iproute2's matches(): ``word`` is a prefix of ``keyword`` (at least ``least`` letters:
    iproute2 takes `ip link set a up` as `address up`; here short link names stay names)."""
    return least <= len(word) <= len(keyword) and keyword.startswith(word)


class Tokens:
    def __init__(self, words: list[str]) -> None:
        self.words = list(words)
        self.i = 0

    def __bool__(self) -> bool:
        return self.i < len(self.words)

    def peek(self) -> str:
        return self.words[self.i]

    def take(self) -> str:
        w = self.words[self.i]
        self.i += 1
        return w

    def next_arg(self) -> str:
        """NEXT_ARG(): the keyword's value, or iproute2's complaint."""
        if self.i >= len(self.words):
            raise UsageError('Command line is not complete. Try option "help"', 255)
        return self.take()


# -- value parsers, with iproute2's messages -------------------------------------------------------
def _mac(text: str) -> bytes:
    try:
        return parse_mac(text)
    except ValueError:
        raise UsageError(f'"{text}" is invalid lladdr.') from None


def _mtu(text: str) -> int:
    try:
        v = int(text, 0)
        if v < 0 or v > 0xFFFFFFFF:
            raise ValueError
        return v
    except ValueError:
        raise UsageError(f'Error: argument "{text}" is wrong: Invalid "mtu" value\n', 255) from None


def _on_off(key: str, text: str) -> bool:
    if text not in ("on", "off"):
        raise UsageError(f'Error: argument of "{key}" must be "on" or "off", not "{text}"')
    return text == "on"


def _mode(text: str) -> Mode:
    if text not in MODE_WORDS:
        raise UsageError('Error: argument of "mode" must be "private", "vepa", "bridge", "passthru" or '
                         f'"source", not "{text}"')
    return Mode[text.upper()]


@dataclass
class MacvlanOpts:
    """What follows ``type macvlan`` (iplink_macvlan.c macvlan_parse_opt)."""

    mode: Mode | None = None
    flags: MacvlanFlag | None = None
    macaddr_mode: MacaddrMode | None = None
    macaddrs: list[bytes] = field(default_factory=list)
    bcqueuelen: int | None = None
    bclim: int | None = None


def parse_macvlan_word(kind: str, word: str, t: Tokens, o: MacvlanOpts) -> bool:
    """Consume one macvlan option (and its values); False if ``word`` is not one."""
    if matches(word, "mode"):
        o.mode = _mode(t.next_arg())
    elif matches(word, "flag"):
        f = t.next_arg()
        if f not in ("nopromisc", "nodst", "null"):
            raise UsageError(f'Error: argument of "flag" must be "nopromisc", "nodst" or "null", not "{f}"')
        o.flags = (o.flags or MacvlanFlag(0)) | {"nopromisc": MacvlanFlag.NOPROMISC, "nodst": MacvlanFlag.NODST,
                                                 "null": MacvlanFlag(0)}[f]
    elif matches(word, "nopromisc"):
        o.flags = (o.flags or MacvlanFlag(0)) | MacvlanFlag.NOPROMISC
    elif matches(word, "macaddr"):
        op = t.next_arg()
        if op not in ("add", "del", "set", "flush"):
            raise UsageError(f'{kind}: macaddr takes add, del, set or flush, not "{op}"')
        o.macaddr_mode = MacaddrMode[op.upper()]
        if op in ("add", "del"):
            o.macaddrs = [_mac(t.next_arg())]
        elif op == "set":
            o.macaddrs = []
            while t:
                try:
                    o.macaddrs.append(parse_mac(t.peek()))
                except ValueError:
                    break
                t.take()
    elif matches(word, "bcqueuelen"):
        v = t.next_arg()
        try:
            o.bcqueuelen = int(v, 0)
            if not 0 <= o.bcqueuelen <= 0xFFFFFFFF:
                raise ValueError
        except ValueError:
            raise UsageError('Error: argument of "bcqueuelen" must be a positive integer [0-4294967295], '
                             f'not "{v}"') from None
    elif word == "bclim":
        v = t.next_arg()
        try:
            o.bclim = int(v, 0)
            if not -(2 ** 31) <= o.bclim < 2 ** 31:
                raise ValueError
        except ValueError:
            raise UsageError(f'Error: illegal value for "bclim": "{v}"') from None
    else:
        return False
    return True


def _check_flags(kind: str, o: MacvlanOpts) -> None:
    if o.flags is not None and o.flags & MacvlanFlag.NOPROMISC and o.mode != Mode.PASSTHRU:
        raise UsageError(f"{kind}: nopromisc flag only valid in passthru mode",
                         hint="add `mode passthru` to the same command (nopromisc means nothing elsewhere)")


# -- add -------------------------------------------------------------------------------------------
@dataclass
class AddCommand:
    req: LinkRequest
    up: bool = False
    host_access: bool = False
    routes: list[str] = field(default_factory=list)


def parse_add(words: list[str]) -> AddCommand:
    t = Tokens(words)
    parent = name = kind = netns = None
    address = mtu = None
    up = host = False
    routes: list[str] = []
    o = MacvlanOpts()

    def general(w: str) -> bool:
        nonlocal parent, name, netns, address, mtu, up, host
        if w == "up":
            up = True
        elif w == "down":
            up = False
        elif w == "name":
            name = t.next_arg()
        elif w == "link":
            parent = t.next_arg()
        elif matches(w, "address", 4):
            address = _mac(t.next_arg())
        elif w == "mtu":
            mtu = _mtu(t.next_arg())
        elif w == "netns":
            netns = t.next_arg()
        elif w == "host-access":
            host = True
        elif w == "route" and host:
            routes.append(t.next_arg())
        else:
            return False
        return True

    ep: dict = {}

    def endpoint_word(w: str) -> bool:
        if w == "endpoint":
            v = t.next_arg()
            if v not in ENDPOINT_KINDS:
                raise UsageError(f'Error: argument of "endpoint" must be "stream", "dgram" or "tapfd", not "{v}"')
            ep["endpoint"] = v
        elif w in ("endpoint-user", "endpoint-group"):
            ep[w.replace("-", "_")] = t.next_arg()
        elif w == "endpoint-mode":
            v = t.next_arg()
            try:
                ep["endpoint_mode"] = int(v, 8)
                if not 0 <= ep["endpoint_mode"] <= 0o7777:
                    raise ValueError
            except ValueError:
                raise UsageError(
                    f'Error: argument of "endpoint-mode" must be octal permission bits like 0660, not "{v}"'
                ) from None
        else:
            return False
        return True

    while t:
        w = t.take()
        if kind is not None:
            if parse_macvlan_word(kind, w, t, o) or general(w) or (kind == "macvtap" and endpoint_word(w)):
                continue
            if matches(w, "help"):
                raise UsageError(USAGE, 255)
            raise UsageError(f'{kind}: unknown option "{w}"?')
        if w == "type":
            kind = t.next_arg()
            if kind not in ("macvlan", "macvtap"):
                raise UsageError("Error: Unknown device type.", 2,
                                 hint=f"pymacvlan makes macvlan and macvtap links, not {kind}")
        elif general(w):
            continue
        else:
            name = _device(w, t, name)
    if kind is None:
        raise UsageError('Not enough information: "type" argument is required')
    _check_flags(kind, o)
    if host:
        if o.mode not in (None, Mode.BRIDGE):
            raise UsageError("host-access needs mode bridge",
                             hint="the host's child must be in bridge mode to reach bridge-mode siblings locally")
        o.mode = Mode.BRIDGE
        up = True
    req = LinkRequest(parent=parent or "", name=name or "", kind=kind, mode=o.mode, address=address, mtu=mtu,
                      flags=o.flags, macaddr_mode=o.macaddr_mode, macaddrs=o.macaddrs,
                      bcqueuelen=o.bcqueuelen, bclim=o.bclim, netns=netns, **ep)
    return AddCommand(req, up, host, routes)


#: iproute2's options, which go before the object (`ip -d link show`), never after it
_OPTION_WORDS = {"-d", "-details", "-j", "-json", "-p", "-pretty", "-s", "-stats", "-statistics", "-br", "-brief",
                 "-n", "-netns", "--backend", "--socket", "--state"}


def _device(w: str, t: Tokens, name: str | None) -> str:
    """`dev NAME` or a bare NAME, accepted once; anything after it is garbage, as ip says.
    An option given after the object gets ip's words and a hint where it goes (issue 25:
    `link show -d` said only `Device "-d" does not exist.`)."""
    if w in _OPTION_WORDS or (w.startswith("-") and w.split("=", 1)[0] in _OPTION_WORDS):
        raise UsageError(f'Device "{w}" does not exist.', 1,
                         hint=f"{w} is an option: options go before the object, as with ip: "
                              f"pymacvlan {w.split('=', 1)[0]} link ...")
    if w == "dev":
        w = t.next_arg()
    if name is not None:
        raise UsageError(f'Error: either "dev" is duplicate, or "{w}" is a garbage.', 255)
    return w


# -- set -------------------------------------------------------------------------------------------
def parse_set(words: list[str]) -> tuple[str, LinkChange]:
    t = Tokens(words)
    name = None
    ch = LinkChange()
    o = MacvlanOpts()
    while t:
        w = t.take()
        if ch.kind is not None and parse_macvlan_word(ch.kind, w, t, o):
            continue
        if w == "up":
            ch.up = True
        elif w == "down":
            ch.up = False
        elif matches(w, "address", 4):
            ch.address = _mac(t.next_arg())
        elif w == "mtu":
            ch.mtu = _mtu(t.next_arg())
        elif matches(w, "allmulticast", 5):
            ch.allmulticast = _on_off("allmulticast", t.next_arg())
        elif matches(w, "promisc", 4):
            ch.promisc = _on_off("promisc", t.next_arg())
        elif w == "type":
            ch.kind = t.next_arg()
            if ch.kind not in ("macvlan", "macvtap"):
                raise UsageError("Error: Unknown device type.", 2,
                                 hint=f"pymacvlan changes macvlan and macvtap links, not {ch.kind}")
        elif w in ("name", "netns", "master", "nomaster", "txqueuelen", "qlen", "alias", "group"):
            raise UsageError(f'pymacvlan link set: "{w}" is not supported here', 255,
                             hint="supported: up, down, address, mtu, allmulticast, promisc, type macvlan|macvtap ...")
        elif matches(w, "help"):
            raise UsageError(USAGE, 255)
        elif ch.kind is not None:
            raise UsageError(f'{ch.kind}: unknown option "{w}"?')
        else:
            name = _device(w, t, name)
    if name is None:
        raise UsageError('Not enough of information: "dev" argument is required.', 255)
    if ch.kind is not None:
        _check_flags(ch.kind, o)
    ch.mode, ch.flags, ch.macaddr_mode, ch.macaddrs = o.mode, o.flags, o.macaddr_mode, o.macaddrs
    ch.bcqueuelen, ch.bclim = o.bcqueuelen, o.bclim
    return name, ch


def parse_name_only(words: list[str], verb: str) -> tuple[str | None, str | None, bool]:
    """`del [dev] NAME [type K]` and `show [dev] NAME [type K] [up]`: (name, kind, only_up)."""
    t = Tokens(words)
    name = kind = None
    only_up = False
    while t:
        w = t.take()
        if w == "type":
            kind = t.next_arg()
        elif w == "up" and verb == "show":
            only_up = True
        else:
            name = _device(w, t, name)
    return name, kind, only_up


USAGE = """Usage: pymacvlan [-j] [-p] [-d] [-s] [-br] [-n NS] [--backend sim|kernel|userspace] link COMMAND
  link add link PARENT name NAME type { macvlan | macvtap } [ mode { private | vepa | bridge | passthru | source } ]
           [ address MAC ] [ mtu N ] [ flag { nopromisc | nodst | null } ] [ bcqueuelen N ] [ bclim N ]
           [ macaddr { { add | del } MAC | set [ MAC ... ] | flush } ] [ netns NS ] [ up ]
           [ host-access [ route PREFIX ]... ]
           macvtap, userspace backend: [ endpoint { stream | dgram | tapfd } ]
           [ endpoint-user USER ] [ endpoint-group GROUP ] [ endpoint-mode 0660 ]
  link set [dev] NAME [ up | down ] [ address MAC ] [ mtu N ] [ allmulticast on|off ] [ promisc on|off ]
           [ type { macvlan | macvtap } MACVLAN-OPTIONS ]
  link del [dev] NAME
  link show [ [dev] NAME ] [ type { macvlan | macvtap } ] [ up ]"""


# -- global options --------------------------------------------------------------------------------
GLOBAL_FLAGS = {
    "-j": "json", "-json": "json", "-p": "pretty", "-pretty": "pretty", "-d": "details", "-details": "details",
    "-s": "stats", "-stats": "stats", "-statistics": "stats", "-br": "brief", "-brief": "brief",
}


def add_global_options(container) -> None:
    """iproute2's options before the object (``pymacvlan -j -d link show``), on the main parser.

    ``container`` is the group the subcommands live in; it adds to the main parser's own
    option table. Options some other command already put there are left alone."""
    taken = getattr(container, "_option_string_actions", {})

    def add(*names, **kw):
        names = [n for n in names if n not in taken]
        if names:
            container.add_argument(*names, **kw)

    add("-j", "-json", dest="pmv_json", action="store_true", help="JSON output (link: iproute2's keys)")
    add("-p", "-pretty", dest="pmv_pretty", action="store_true", help="indented JSON")
    add("-d", "-details", dest="pmv_details", action="store_true", help="link: details (macvlan mode ...)")
    add("-s", "-stats", "-statistics", dest="pmv_stats", action="count", default=0, help="link: counters")
    add("-br", "-brief", dest="pmv_brief", action="store_true", help="link: one line per link")
    add("-n", "-netns", dest="pmv_netns", metavar="NS", help="work inside network namespace NS")
    add("--backend", dest="pmv_backend", choices=list(BACKENDS), help="sim (default), kernel or userspace")
    add("--socket", dest="pmv_socket", metavar="PATH",
        help="userspace: the daemon's control socket (default $PYMACVLAN_SOCKET or /run/pymacvlan/control.sock)")
    add("--state", dest="pmv_state", metavar="FILE",
        help="sim backend: state file (default $PMV_SIM_STATE or $XDG_STATE_HOME/pymacvlan/sim.json)")


@dataclass
class Globals:
    opts: Options = field(default_factory=Options)
    backend: str = DEFAULT_BACKEND
    netns: str | None = None
    state: str | None = None
    socket: str | None = None


def split_globals(args, words: list[str]) -> tuple[Globals, list[str]]:
    """Globals from the main parser, then those given after `link` (before the verb, or
    ``--backend``/``--state`` anywhere); returns the rest."""
    g = Globals(Options(json=bool(getattr(args, "pmv_json", False)), pretty=bool(getattr(args, "pmv_pretty", False)),
                        details=bool(getattr(args, "pmv_details", False)), stats=getattr(args, "pmv_stats", 0) or 0,
                        brief=bool(getattr(args, "pmv_brief", False))),
                getattr(args, "pmv_backend", None) or DEFAULT_BACKEND, getattr(args, "pmv_netns", None),
                getattr(args, "pmv_state", None), getattr(args, "pmv_socket", None))
    rest: list[str] = []
    t = Tokens(words)
    leading = True
    while t:
        w = t.take()
        if w in ("--help", "-h"):
            return g, ["help"]
        if w.startswith(("--backend", "--state", "--socket")):
            key, eq, val = w.partition("=")
            if key not in ("--backend", "--state", "--socket"):
                raise UsageError(f'Option "{w}" is unknown, try "pymacvlan link help".', 255)
            val = val if eq else t.next_arg()
            if key == "--backend":
                if val not in BACKENDS:
                    raise UsageError(
                        f"pymacvlan link: EINVAL: unknown backend {val!r} (--backend takes {', '.join(BACKENDS)})", 2
                    )
                g.backend = val
            elif key == "--socket":
                g.socket = val
            else:
                g.state = val
            continue
        if leading and w.startswith("-") and w not in ("-",):
            if w in GLOBAL_FLAGS:
                attr = GLOBAL_FLAGS[w]
                if attr == "stats":
                    g.opts.stats += 1
                else:
                    setattr(g.opts, attr, True)
                continue
            if w in ("-n", "-netns"):
                g.netns = t.next_arg()
                continue
            raise UsageError(f'Option "{w}" is unknown, try "pymacvlan link help".', 255)
        leading = False
        rest.append(w)
    if g.opts.pretty:
        g.opts.json = g.opts.json or False
    return g, rest


def make_driver(g: Globals):
    """The driver of ``g.backend`` (an option it does not take is a usage error)."""
    try:
        return open_driver(DriverConfig(g.backend, g.netns, g.state, g.socket))
    except KernelError as e:
        if e.errno_name != "EINVAL":
            raise
        raise UsageError(f"pymacvlan link: {e.message}", 2, hint=e.advice) from None
    except ImportError as e:
        raise UsageError(f"pymacvlan: the {g.backend} backend is not available here: {e}", 2) from None


# -- errors ----------------------------------------------------------------------------------------
def kernel_error_lines(e: KernelError, verb: str) -> tuple[list[str], int]:
    """iproute2's words for a refused request, then the advice."""
    msg = e.message
    if msg.startswith(("Cannot find device", "Device ", "Cannot open network namespace", "Error: argument",
                       "Invalid netns name")):
        lines, code = [msg], 1 if e.errno_name == "ENODEV" else 255
    else:
        lines, code = [f"RTNETLINK answers: {os.strerror(e.errno)}"], 2
        if msg and msg != os.strerror(e.errno):
            lines.append(f"hint: {msg}" + (f"; {e.advice}" if e.advice else ""))
            return lines, code
    if e.advice:
        lines.append(f"hint: {e.advice}")
    return lines, code


def report(e: Exception) -> int:
    if isinstance(e, UsageError):
        print(str(e).rstrip("\n") if not str(e).endswith("\n\n") else str(e), file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return e.code
    assert isinstance(e, KernelError)
    lines, code = kernel_error_lines(e, "")
    print("\n".join(lines), file=sys.stderr)
    return code


# -- the command -----------------------------------------------------------------------------------
def free_name(driver, kind: str) -> str:
    """The kernel's ``macvlan%d`` for an unnamed link."""
    taken = {d["ifname"] for d in driver.show()}
    i = 0
    while f"{kind}{i}" in taken:
        i += 1
    return f"{kind}{i}"


def run_link(g: Globals, words: list[str], out=None) -> int:
    out = out or sys.stdout
    verb = words[0] if words else "show"
    rest = words[1:]
    if matches(verb, "help"):
        print(USAGE, file=out)
        return 0
    if not (matches(verb, "add") or matches(verb, "set") or matches(verb, "change") or matches(verb, "delete")
            or matches(verb, "show") or matches(verb, "lst") or matches(verb, "list")):
        raise UsageError(f'Command "{verb}" is unknown, try "pymacvlan link help".', 255)
    if matches(verb, "add") and rest[-2:] == ["type", "veth"] and len(rest) in (3, 4) and rest[0] != "link":
        # the sim's way to declare a parent, in iproute2's words: `link add [name] NAME type veth`
        name = rest[1] if rest[0] == "name" and len(rest) == 4 else rest[0] if len(rest) == 3 else None
        driver = make_driver(g)
        if name is None or not driver.owns_parents:  # only a backend that makes its own parents
            raise UsageError("Error: Unknown device type.", 2,
                             hint="pymacvlan makes macvlan and macvtap links (and, on the sim, declares parents: "
                                  "`pymacvlan link add name NAME type veth`); make a veth with ip on this backend")
        driver.add_parent(name)
        _said_simulated(g, driver)
        return 0
    if matches(verb, "add"):
        cmd = parse_add(rest)
        driver = make_driver(g)
        if not cmd.req.name:
            cmd.req.name = free_name(driver, cmd.req.kind)
        cmd.req.up = cmd.up  # one request: a link that cannot come up is not left behind
        added = driver.add(cmd.req)
        if isinstance(added, dict) and added.get("endpoint"):  # where the VM attaches
            print(f"{cmd.req.name}: {endpoint_text(added['endpoint'])}", file=out)
        if cmd.host_access:
            if not driver.host_stack:
                print(f"host-access: the {g.backend} backend has no host stack; {cmd.req.name} was created "
                      "in bridge mode and up, without addresses or routes", file=sys.stderr)
            else:
                for line in driver.host_access(cmd.req.name, cmd.req.parent, cmd.routes) or ():
                    print(line, file=out)
        _said_simulated(g, driver)
        return 0
    if matches(verb, "set") or matches(verb, "change"):
        name, ch = parse_set(rest)
        driver = make_driver(g)
        driver.set(name, ch)
        _said_simulated(g, driver)
        return 0
    if matches(verb, "delete"):
        victim, kind, _ = parse_name_only(rest, "del")
        if victim is None:
            raise UsageError('Not enough of information: "dev" argument is required.', 255)
        driver = make_driver(g)
        if kind is not None:
            driver.show(victim, None)  # not found: the kernel's words
            if not driver.show(victim, kind):
                raise KernelError("EOPNOTSUPP", f"{victim} is not a {kind}")
        driver.delete(victim)
        _said_simulated(g, driver)
        return 0
    which, kind, only_up = parse_name_only(rest, "show")
    links = make_driver(g).show(which, kind)
    if only_up:
        links = [d for d in links if "UP" in d["flags"]]
    text = render(links, g.opts)
    if text or g.opts.json:
        print(text, file=out)
    return 0


def _said_simulated(g: Globals, driver) -> None:
    note = driver.notice()
    if note:
        print(note, file=sys.stderr)


def _link(args) -> int:
    try:
        g, words = split_globals(args, args.words)
        return run_link(g, words)
    except (UsageError, KernelError) as e:
        return report(e)
    except PermissionError as e:
        from ._report import error_line

        print(error_line("link", e), file=sys.stderr)
        return 2


def register(sub) -> None:
    add_global_options(sub.container)
    p = sub.add_parser("link", help="ip-link compatible: add/set/del/show macvlan and macvtap links",
                       description=USAGE, add_help=False, prefix_chars="\x00",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("words", nargs=argparse.REMAINDER, help="iproute2-style words (see `pymacvlan link help`)")
    p.set_defaults(func=_link)
