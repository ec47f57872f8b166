"""Stable, readable JSON for scenario files (shared by gen_scenarios.py and record_expectations.py).

A value is written on one line when it fits in WIDTH characters at its indentation; otherwise a
dict is broken into lines, packing consecutive short items together, and a list puts each item
that is an object on its own line. Same input, same bytes: keys keep their insertion order.
"""

from __future__ import annotations

import json
from pathlib import Path

WIDTH = 120
INDENT = 1


def _one(v) -> str:
    return json.dumps(v, ensure_ascii=False)


def _fmt(v, ind: int, lead: int = 0) -> str:
    """``ind``: the indentation of the line; ``lead``: characters already on it (a key)."""
    one = _one(v)
    if not isinstance(v, (dict, list)) or not v or ind + lead + len(one) <= WIDTH:
        return one
    pad = " " * (ind + INDENT)
    lines: list[str] = []
    if isinstance(v, dict):
        items = [(f"{_one(k)}: ", val) for k, val in v.items()]
        open_, close = "{", "}"
    else:
        items = [("", val) for val in v]
        open_, close = "[", "]"
    packable = ind > 0 and (isinstance(v, dict) or all(not isinstance(x, (dict, list)) for x in v))
    for i, (key, val) in enumerate(items):
        text = key + _fmt(val, ind + INDENT, len(key))
        sep = "," if i < len(items) - 1 else ""
        if (packable and lines and "\n" not in text and "\n" not in lines[-1]
                and len(lines[-1]) + 1 + len(text) + len(sep) <= WIDTH):
            lines[-1] += " " + text + sep
        else:
            lines.append(pad + text + sep)
    return open_ + "\n" + "\n".join(lines) + "\n" + " " * ind + close


def dumps(data) -> str:
    """The text of a scenario file, with a final newline."""
    return _fmt(data, 0) + "\n"


def write(path: Path | str, data) -> bool:
    """Write ``data`` to ``path`` unless the file already holds exactly that; True if written."""
    path = Path(path)
    text = dumps(data)
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return True
