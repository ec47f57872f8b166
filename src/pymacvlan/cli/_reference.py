"""The command reference, generated from the parser itself (docs/reference/cli.md is filled in
from :func:`markdown` when the site is built: tools/mkdocs_hooks.py), so it can never drift
from what ``pymacvlan CMD --help`` says."""

from __future__ import annotations

import argparse


def _subparsers(p: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser, str]]:
    out = []
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            helps = {c.dest: c.help or "" for c in a._choices_actions}
            seen: set[int] = set()
            for name, sub in a.choices.items():
                if id(sub) in seen:  # an alias
                    continue
                seen.add(id(sub))
                out.append((name, sub, helps.get(name, "")))
    return out


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _option_rows(p: argparse.ArgumentParser) -> list[str]:
    rows = []
    for a in p._actions:
        if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)) or a.help == argparse.SUPPRESS:
            continue
        if a.option_strings:
            flag = ", ".join(a.option_strings)
            if a.nargs != 0 and a.choices is None:
                flag += " " + (a.metavar if isinstance(a.metavar, str) else a.dest.upper())
            elif a.nargs != 0:
                flag += " {" + ",".join(map(str, a.choices or ())) + "}"
        else:
            flag = a.metavar if isinstance(a.metavar, str) else a.dest
        what = a.help or ""
        if "%(default)" in what or "%(prog)" in what:
            what = what % {"default": a.default, "prog": p.prog}
        if a.choices is not None and not a.option_strings:
            what += f" (one of: {', '.join(map(str, a.choices))})"
        if a.default not in (None, False, argparse.SUPPRESS, [], 0) and "default" not in what:
            what += f" (default: {a.default})"
        rows.append(f"| `{_cell(flag)}` | {_cell(what)} |")
    return rows


def _section(name: str, p: argparse.ArgumentParser, summary: str, level: int) -> list[str]:
    lines = [f"{'#' * level} `{p.prog}`", ""]
    if summary:
        lines += [_cell(summary)[:1].upper() + _cell(summary)[1:] + ".", ""]
    if p.description and _cell(p.description) != _cell(summary):
        lines += [_cell(p.description), ""]
    usage = " ".join(p.format_usage().split())
    lines += ["```text", usage.removeprefix("usage: "), "```", ""]
    rows = _option_rows(p)
    if rows:
        lines += ["| option | what it does |", "|---|---|", *rows, ""]
    for sub_name, sub, sub_help in _subparsers(p):
        lines += _section(sub_name, sub, sub_help, min(level + 1, 4))
    return lines


def markdown() -> str:
    """Every command and option of ``pymacvlan``, as Markdown (headings level 2 and below)."""
    from .main import build_parser

    parser = build_parser()
    lines = ["## Global options", "", "Given before the command; `link` reads them as `ip` does, every "
             "other command takes them for its own option of the same meaning or refuses them.", "",
             "```text", " ".join(parser.format_usage().split()).removeprefix("usage: "), "```", "",
             "| option | what it does |", "|---|---|", *_option_rows(parser), ""]
    for name, sub, summary in _subparsers(parser):
        lines += _section(name, sub, summary, 2)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
