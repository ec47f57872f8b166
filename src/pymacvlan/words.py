"""Words every front end and report shares (below the CLI, so libraries can use them too)."""

from __future__ import annotations


def plural(n: int, one: str, many: str | None = None) -> str:
    """``1 step``, ``2 steps``: never ``step(s)``."""
    return f"{n} {one if n == 1 else (many or one + 's')}"
