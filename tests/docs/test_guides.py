"""Every ```sh block of the documentation runs as pasted (tests/docs/guides.py runs them):
one test per page, in a fresh network namespace and a private mount table."""

from __future__ import annotations

import os
import textwrap

import pytest

from tests.ci import skip_or_fail

from . import guides

PAGES = guides.pages()


def _why_not(page: guides.Page) -> str | None:
    gone = guides.missing(page)
    return f"{page.name} needs {', '.join(gone)}" if gone else None


def test_blocks_and_front_matter_are_read_as_written(tmp_path):
    page = tmp_path / "p.md"
    page.write_text(textwrap.dedent("""\
        ---
        run:
          needs: [root, ip]
          timeout: 7
        ---
        # A page
        ```sh
        echo one
        ```
        ```text
        not run
        ```
        - in a list:

            ```sh
            echo two
            ```
        ```console
        $ not run either
        ```
        """))
    p = guides.load(page)
    assert p.blocks == ["echo one\n", "echo two\n"]
    assert (p.needs, p.timeout, p.prepare, p.skip) == (["root", "ip"], 7.0, None, None)


def test_an_unknown_front_matter_key_is_refused(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("---\nrun:\n  need: [root]\n---\n# x\n")
    with pytest.raises(ValueError, match="unknown `run:` keys"):
        guides.load(page)


def test_every_page_that_runs_is_found():
    names = {p.name for p in PAGES}
    assert {"guides/daemon.md", "tutorials/first-children.md", "guides/cni.md"} <= names


@pytest.mark.live
def test_the_runner_stops_at_the_first_failing_command_and_keeps_the_host_apart(tmp_path):
    skip_or_fail(None if os.geteuid() == 0 else "needs root")
    page = tmp_path / "p.md"
    page.write_text("# x\n```sh\nip netns add pmvdocsprobe\ntouch /tmp/pmv-guide-probe pmv-guide-probe\n"
                    "ip link add pmvgx type veth peer name pmvgy\nfalse\necho never-printed\n```\n")
    p = guides.load(page)
    p.path = guides.DOCS / "probe.md"
    out = guides.run(p)
    assert out.returncode not in (0, None)
    assert "never-printed" not in out.stdout
    assert "+ false" in out.stderr
    # nothing reached the host: its namespaces, its /tmp, its links
    assert not os.path.exists("/run/netns/pmvdocsprobe")
    assert not os.path.exists("/tmp/pmv-guide-probe")
    assert not os.path.exists("/sys/class/net/pmvgx")
    assert not (guides.ROOT / "pmv-guide-probe").exists()  # the checkout is under a tmpfs layer


@pytest.mark.live
@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_the_page_runs_as_pasted(page: guides.Page):
    if page.skip:
        pytest.skip(f"{page.name}: {page.skip}")
    skip_or_fail(_why_not(page))
    out = guides.run(page)
    tail = "\n".join(out.stderr.splitlines()[-60:])
    assert out.returncode is not None, f"{page.name} ran past its {page.timeout:g} s:\n{tail}\n{out.stdout[-3000:]}"
    assert out.returncode == 0, f"{page.name} failed (exit {out.returncode}):\n--- stderr (bash -x) ---\n{tail}" \
                                f"\n--- stdout ---\n{out.stdout[-3000:]}"
