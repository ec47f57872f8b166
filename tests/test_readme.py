"""The README's mode table is the engine's output, and its commands exist."""

from pathlib import Path

from pymacvlan.reachability import readme_block

README = Path(__file__).resolve().parents[1] / "README.md"


def test_mode_table_is_generated_by_the_engine():
    text = README.read_text()
    block = text.split("<!-- mode-table:begin -->\n", 1)[1].split("\n<!-- mode-table:end -->", 1)[0]
    assert block == readme_block(), "regenerate the table with `pymacvlan modes`"


def test_main_command_example_exists():
    assert (README.parent / "examples" / "private-mode.json").exists()
