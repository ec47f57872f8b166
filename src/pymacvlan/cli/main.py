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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pymacvlan", description="Linux macvlan and macvtap, in Python.")
    sub = p.add_subparsers(dest="command", required=True)
    for mod in _command_modules():
        mod.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("pymacvlan: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
