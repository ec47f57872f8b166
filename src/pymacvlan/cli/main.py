"""`pymacvlan`: a thin shell over the Python API. User mistakes get one clear line and a
non-zero exit, never a traceback.

Each command lives in its own module of this package with ``register(subparsers)`` and an
``ORDER`` (its place in ``--help``); this file only finds and dispatches them.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import __path__ as _cli_path


def _command_modules() -> list:
    mods = []
    for info in pkgutil.iter_modules(_cli_path):
        if info.name.startswith("_") or info.name == "main":
            continue
        mod = importlib.import_module(f"{__package__}.{info.name}")
        if hasattr(mod, "register"):
            mods.append(mod)
    return sorted(mods, key=lambda m: (getattr(m, "ORDER", 100), m.__name__))


#: the global options (declared once, with link's: cli/link.py add_global_options) → the
#: flag as typed and the dest of a command's own option with the same meaning (None: link only)
GLOBALS = {"pmv_backend": ("--backend", "backend"), "pmv_socket": ("--socket", "socket"),
           "pmv_netns": ("-n", "netns"), "pmv_json": ("-j", "json"), "pmv_pretty": ("-p", "pretty"),
           "pmv_state": ("--state", "state"), "pmv_details": ("-d", None), "pmv_stats": ("-s", None),
           "pmv_brief": ("-br", None)}


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``pymacvlan CMD: EINVAL: what (see `pymacvlan CMD --help`)``,
    not a usage block and then the error. Subparsers are made of this class too
    (``add_subparsers`` uses the parent's class), so every command gets it."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: EINVAL: {message} (see `{self.prog} --help`)\n")


class GlobalOptionError(Exception):
    """A global option the chosen command cannot honour: one line, exit 2."""


def _chosen(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[argparse.ArgumentParser]:
    """The parsers of the command as given (a command and, e.g. for `daemon stop`, its action)."""
    out: list[argparse.ArgumentParser] = []
    p = parser
    while True:
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or getattr(args, subs[0].dest, None) is None:
            return out
        p = subs[0].choices[getattr(args, subs[0].dest)]
        out.append(p)


def honour_globals(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Give each global option to the command's own option of the same meaning, or refuse it
    (GlobalOptionError) where the command has none: never silently ignored. `link` reads them
    itself (iproute2's grammar)."""
    if args.command == "link":
        return
    chain = _chosen(parser, args)
    actions = {a.dest: a for p in chain for a in p._actions}
    for gdest, (flag, local) in GLOBALS.items():
        value = getattr(args, gdest, None)
        if value in (None, False, 0):
            continue
        action = actions.get(local) if local is not None else None
        if action is None:
            usable = sorted(f for g, (f, loc) in GLOBALS.items() if loc in actions)
            raise GlobalOptionError(f"pymacvlan {args.command}: EINVAL: {flag} does not apply to this command"
                                    + (f" (it takes {', '.join(usable)})" if usable else ""))
        assert local is not None  # an action was found under it
        if action.choices is not None and value not in action.choices:
            raise GlobalOptionError(f"pymacvlan {args.command}: EINVAL: {flag} {value} is not possible here "
                                    f"(choose from {', '.join(map(str, action.choices))})")
        if isinstance(action, argparse._AppendAction):
            value = [value] + [v for v in (getattr(args, local, None) or []) if v != value]
        else:
            mine = getattr(args, local, None)
            if mine not in (None, False, action.default) and mine != value:
                raise GlobalOptionError(f"pymacvlan {args.command}: EINVAL: {flag} given twice, as {value} and {mine}")
        setattr(args, local, value)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # named after the command they were given to, not the top-level parser
        where = " ".join(["pymacvlan", *(p.prog.split()[-1] for p in _chosen(parser, args))])
        print(f"{where}: EINVAL: unrecognized arguments: {' '.join(extra)} (see `{where} --help`)", file=sys.stderr)
        raise SystemExit(2)
    try:
        honour_globals(parser, args)
    except GlobalOptionError as e:
        print(e, file=sys.stderr)
        raise SystemExit(2) from None
    return args


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    p = Parser(prog="pymacvlan", description="Linux macvlan and macvtap, in Python.")
    p.add_argument("--version", action="version", version=f"pymacvlan {__version__}",
                   help="print the version and exit")
    sub = p.add_subparsers(dest="command", required=True)
    for mod in _command_modules():
        mod.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from ..model.errors import KernelError

    args = parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("pymacvlan: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except (KernelError, OSError) as e:  # never a traceback (EPERM without root says so)
        from ._report import error_line

        print(error_line(args.command, e), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
