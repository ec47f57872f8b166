"""Global options, walked from the parser itself: every command × every global option is
either honoured (the command's own option gets the value) or refused in one line, exit 2 —
never silently ignored. A new command is covered without anyone listing it here."""

from __future__ import annotations

import argparse

import pytest

from pymacvlan.cli.main import GLOBALS, build_parser, main, parse_args

VALUES = {"--backend": ["sim", "kernel", "userspace"], "--socket": ["/tmp/pmv-test.sock"], "-n": ["pmvns"],
          "--state": ["/tmp/pmv-state.json"], "-j": [None], "-p": [None], "-d": [None], "-s": [None],
          "-br": [None]}


def _commands() -> dict[str, argparse.ArgumentParser]:
    p = build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _placeholders(p: argparse.ArgumentParser) -> list[str]:
    """A value for each required positional, so the parser gets as far as the options."""
    return ["x" for a in p._actions if not a.option_strings and a.required
            and not isinstance(a, argparse._SubParsersAction) and a.nargs != argparse.REMAINDER]


CASES = [(cmd, flag, value) for cmd in _commands() for flag in VALUES for value in VALUES[flag]]


def test_every_global_option_is_in_the_table() -> None:
    declared = {a.dest for a in build_parser()._actions if a.dest.startswith("pmv_")}
    assert declared == set(GLOBALS)
    assert {flag for flag, _ in GLOBALS.values()} == set(VALUES)


@pytest.mark.parametrize("cmd, flag, value", CASES, ids=[f"{c}-{f}-{v}" for c, f, v in CASES])
def test_a_global_option_is_honoured_or_refused_in_one_line(cmd: str, flag: str, value: str | None, capsys) -> None:
    sub = _commands()[cmd]
    argv = [flag] + ([value] if value is not None else []) + [cmd] + _placeholders(sub)
    try:
        args = parse_args(argv)
    except SystemExit as e:
        err = capsys.readouterr().err
        assert e.code == 2 and len(err.strip().splitlines()) == 1, err
        assert err.startswith(f"pymacvlan {cmd}: EINVAL: {flag}"), err
        return
    dest, local = next((g, loc) for g, (f, loc) in GLOBALS.items() if f == flag)
    if cmd == "link":  # iproute2's grammar: link reads the globals itself
        assert getattr(args, dest) not in (None, False, 0)
        return
    got = getattr(args, local)
    want = True if value is None else value
    assert got == want or (isinstance(got, list) and got[0] == want), (cmd, flag, got)


@pytest.mark.parametrize("cmd", sorted(_commands()))
def test_every_command_has_help_that_works(cmd: str, capsys) -> None:
    sub = _commands()[cmd]
    helpless = [a.option_strings or [a.dest] for a in sub._actions
                if not a.help and not isinstance(a, argparse._HelpAction)]
    assert not helpless, f"{cmd}: options without help text: {helpless}"
    try:
        code = main([cmd, "--help"])
    except SystemExit as e:
        code = e.code
    assert code in (0, None), capsys.readouterr().err
    assert capsys.readouterr().out.strip()


def test_every_global_option_has_help() -> None:
    assert all(a.help for a in build_parser()._actions if a.dest.startswith("pmv_"))
