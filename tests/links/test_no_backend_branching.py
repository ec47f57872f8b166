"""Issue 18: no module outside ``links/`` and ``backends/`` asks which backend it has.

As macvlan.c's core never asks which driver fills ``rtnl_link_ops``, a front end gets a driver
from :func:`pymacvlan.links.open_driver` and calls its verbs. This scan fails on any comparison
(``==``, ``!=``, ``in``, ``not in``, ``match``) against a backend's name, and on any literal list
of backend names (a private copy of the registry) outside those two packages.
"""

from __future__ import annotations

import ast
from pathlib import Path

from pymacvlan.links import BACKENDS

SRC = Path(__file__).resolve().parents[2] / "src" / "pymacvlan"
ALLOWED = ("links", "backends")
#: being moved onto the driver (issue 18 item 3); this list only shrinks
NOT_YET: set[str] = set()


def _names(node: ast.AST) -> set[str]:
    """Backend names a constant, or a tuple/list/set of constants, spells."""
    if isinstance(node, ast.Constant) and node.value in BACKENDS:
        return {node.value}
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return {e.value for e in node.elts if isinstance(e, ast.Constant) and e.value in BACKENDS}
    return set()


def offences(tree: ast.AST) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for side in [node.left, *node.comparators]:
                if _names(side):
                    out.append((node.lineno, f"compares with {sorted(_names(side))}"))
        elif isinstance(node, ast.MatchValue) and _names(node.value):
            out.append((node.lineno, "matches a backend name"))
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)) and len(_names(node)) >= 2:
            out.append((node.lineno, f"lists backends {sorted(_names(node))} (use pymacvlan.links.BACKENDS)"))
    return out


def test_the_scan_can_fail() -> None:
    assert offences(ast.parse('if backend == "userspace": pass'))
    assert offences(ast.parse('x = backend in ("kernel", "sim")'))
    assert offences(ast.parse('p.add_argument("--backend", choices=["sim", "kernel", "userspace"])'))
    assert not offences(ast.parse('x = mode == "bridge"'))


def test_no_module_outside_links_and_backends_names_a_backend() -> None:
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel.parts[0] in ALLOWED or str(rel) in NOT_YET:
            continue
        for line, what in offences(ast.parse(path.read_text(), str(path))):
            bad.append(f"{rel}:{line}: {what}")
    assert not bad, "front ends must call the driver, not ask which backend:\n" + "\n".join(bad)
