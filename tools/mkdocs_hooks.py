"""MkDocs hooks for the documentation site (mkdocs.yml ``hooks:``).

- Every ``docs/guides/*.md`` page not named in ``nav`` joins "How-to guides", so a front end's
  guide page appears as soon as it lands, without an edit to mkdocs.yml.
- ``<!-- cli-reference -->`` becomes the command reference generated from the parser
  (:func:`pymacvlan.cli._reference.markdown`).
- ``<!-- graph: NAME.svg SOURCE -->`` becomes the command that draws the figure and the figure
  itself, drawn now by ``pymacvlan show SOURCE --graph NAME.svg`` (SOURCE: a scenario or a TOML
  setup, relative to the repository) and added to the site next to the page.
- Every page's YAML front matter may carry ``run:`` (what the guide runner needs,
  reference/running-the-guides.md); MkDocs itself ignores it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GRAPH = re.compile(r"<!-- graph: (?P<name>[\w.-]+\.svg) (?P<source>\S+)(?P<hash> --hash)? -->")


def _title(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return path.stem


def on_config(config, **kwargs):
    listed: set[str] = set()

    def walk(items):
        for item in items or []:
            if isinstance(item, str):
                listed.add(item)
            elif isinstance(item, dict):
                for v in item.values():
                    walk(v) if isinstance(v, list) else listed.add(v)

    walk(config["nav"])
    guides = Path(config["docs_dir"]) / "guides"
    for section in config["nav"]:
        if isinstance(section, dict) and "How-to guides" in section:
            for page in sorted(guides.glob("*.md")):
                rel = f"guides/{page.name}"
                if rel not in listed:
                    section["How-to guides"].append({_title(page): rel})
    return config


def _draw(source: str, extra: tuple[str, ...] = ()) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryDirectory(prefix="pmv-docs-") as tmp:
        out = Path(tmp) / "figure.svg"
        r = subprocess.run([sys.executable, "-m", "pymacvlan", "show", str(ROOT / source), *extra, "--graph", str(out)],
                           capture_output=True, text=True, env=env, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"pymacvlan show {source} --graph: {r.stderr.strip()}")
        return out.read_text()


def on_files(files, config, **kwargs):
    from mkdocs.structure.files import File

    for f in list(files.documentation_pages()):
        text = Path(f.abs_src_path).read_text()
        for m in GRAPH.finditer(text):
            where = Path(f.src_uri).parent / m["name"]
            extra = ("--hash",) if m["hash"] else ()
            files.append(File.generated(config, where.as_posix(), content=_draw(m["source"], extra)))
    return files


def on_page_markdown(markdown, page, config, files, **kwargs):
    if "<!-- cli-reference -->" in markdown:
        sys.path.insert(0, str(ROOT / "src"))
        from pymacvlan.cli._reference import markdown as reference

        markdown = markdown.replace("<!-- cli-reference -->", reference())

    def figure(m: re.Match) -> str:
        return (f"```console\n$ pymacvlan show {m['source']}{m['hash'] or ''} --graph {m['name']}\n```\n\n"
                f"![drawn by pymacvlan show {m['source']}]({m['name']})\n")

    return GRAPH.sub(figure, markdown)
