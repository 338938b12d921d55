"""The documentation cannot drift from the code.

- docs/configuration.md has one row for every `Settings` field, with the flags the commands
  really take (and only those) and the real default.
- Every relative link in README.md and docs/*.md resolves to a file, and a `#anchor` to a heading
  of that file (GitHub's heading ids).
- Every `QA_*` variable the pages name is a setting or is read somewhere in the repository.

Fast: no model loads; the command lines are read from their parsers.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
from dataclasses import MISSING, fields
from pathlib import Path

import pytest

from qa.config import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CONFIGURATION = DOCS / "configuration.md"


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


# ----------------------------------------------------------------------------- the settings table


def settings_rows(text: str) -> dict[str, list[str]]:
    """`QA_NAME` -> the cells of its row in the table under "## All settings"."""
    section = text.partition("\n## All settings\n")[2].partition("\n## ")[0]
    rows = {}
    for line in section.splitlines():
        match = re.match(r"\|\s*`(QA_[A-Z0-9_]+)`\s*\|", line)
        if match:
            rows[match.group(1)] = [cell.strip() for cell in line.strip().strip("|").split("|")]
    return rows


def documented_flags(cell: str) -> dict[str, set[str]]:
    """`--flag` (cmd, cmd) mentions in a flag cell -> the commands named for each."""
    return {flag: {c.strip() for c in commands.split(",") if c.strip()}
            for flag, commands in re.findall(r"`(--[a-z0-9-]+)`(?:\s*\(([^)]*)\))?", cell)}


def cli_flags() -> dict[str, set[str]]:
    """Every long option of `qa index|ask|serve|eval` and `app.py` -> the commands that take it."""
    import typer.main

    from qa.cli import app
    from qa.evaluation.cli import build_parser
    from qa.web import main as app_main

    found: dict[str, set[str]] = {}

    def add(flag: str, command: str) -> None:
        if flag.startswith("--") and flag != "--help":
            found.setdefault(flag, set()).add(command)

    for name, command in typer.main.get_command(app).commands.items():  # hand-over tools have no options
        for param in command.params:
            for flag in [*param.opts, *getattr(param, "secondary_opts", [])]:
                add(flag, name)
    for action in build_parser()._actions:
        if action.help != argparse.SUPPRESS:
            for flag in action.option_strings:
                add(flag, "eval")
    usage = io.StringIO()
    with contextlib.redirect_stdout(usage), pytest.raises(SystemExit):
        app_main(["--help"])  # what `python app.py --help` prints
    for flag in re.findall(r"(--[a-z0-9-]+)", usage.getvalue()):
        add(flag, "app.py")
    return found


def documented_default(value: object) -> str | None:
    """How a concrete default is written in the table, or None for a default that is a rule
    (an empty string, or the negative threshold meaning "the saved one, else the reader's")."""
    if value == "" or (isinstance(value, float) and value < 0):
        return None
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def test_every_setting_is_documented_once_with_its_variable() -> None:
    rows = settings_rows(CONFIGURATION.read_text(encoding="utf-8"))
    variables = {f"QA_{f.name.upper()}" for f in fields(Settings)}
    assert sorted(variables - set(rows)) == [], "settings missing from docs/configuration.md"
    assert sorted(set(rows) - variables) == [], "docs/configuration.md documents settings that do not exist"


def test_each_documented_flag_is_taken_by_exactly_the_commands_named() -> None:
    rows = settings_rows(CONFIGURATION.read_text(encoding="utf-8"))
    cli = cli_flags()
    assert {"--corpus-dir", "--threshold", "--ray", "--port"} <= set(cli)  # the parsers were read
    wrong = []
    for f in fields(Settings):
        variable, own = f"QA_{f.name.upper()}", "--" + f.name.replace("_", "-")
        if variable not in rows:
            continue  # a missing row fails test_every_setting_is_documented_once_with_its_variable
        mentioned = documented_flags(rows[variable][1])
        if own in cli and own not in mentioned:
            wrong.append(f"{variable}: {own} ({', '.join(sorted(cli[own]))}) is not documented")
        for flag, commands in mentioned.items():
            if commands != cli.get(flag, set()):
                wrong.append(f"{variable}: {flag} documented for {sorted(commands)}, "
                             f"taken by {sorted(cli.get(flag, set()))}")
    assert wrong == []


def test_each_concrete_default_is_the_one_in_qa_config() -> None:
    rows = settings_rows(CONFIGURATION.read_text(encoding="utf-8"))
    wrong = []
    for f in fields(Settings):
        assert f.default is not MISSING
        expected = documented_default(f.default)
        cell = rows.get(f"QA_{f.name.upper()}", ["", "", ""])[2]
        if expected is not None and cell and f"`{expected}`" not in cell:
            wrong.append(f"QA_{f.name.upper()}: default `{expected}` not in {cell!r}")
    assert wrong == []


# ----------------------------------------------------------------------------- links and anchors


def _prose(text: str) -> str:
    """The text without fenced code blocks and inline code, where brackets are not links."""
    text = re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def heading_anchors(text: str) -> set[str]:
    """The ids GitHub gives the headings of a Markdown file (duplicates get -1, -2, ...)."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    without_code = re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", text, flags=re.S | re.M)
    for match in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", without_code, flags=re.M):
        heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", match.group(1))  # a link keeps its words
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def relative_links(text: str) -> list[str]:
    """Targets of inline links, images and link definitions that are not URLs."""
    prose = _prose(text)
    targets = re.findall(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", prose)
    targets += re.findall(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", prose, flags=re.M)
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, flags=re.I)]


def broken_links(page: Path) -> list[str]:
    problems = []
    for target in relative_links(page.read_text(encoding="utf-8")):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            problems.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in heading_anchors(resolved.read_text(encoding="utf-8")):
            problems.append(f"{page.relative_to(ROOT)}: {target} (no heading #{anchor})")
    return problems


def test_github_heading_ids() -> None:
    text = ("# Speed\n## Why hosts differ\n## Indexing on Ray (`qa index --ray`, `QA_RAY_ADDRESS`)\n"
            "## Notes\n## Notes\n```bash\n# not a heading\n```\n### Précis: A/B, [links](x.md) too\n")
    assert heading_anchors(text) == {"speed", "why-hosts-differ", "indexing-on-ray-qa-index---ray-qa_ray_address",
                                     "notes", "notes-1", "précis-ab-links-too"}


def test_the_link_check_finds_a_missing_file_and_a_missing_anchor(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## A section\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text("# Page\n[ok](other.md#a-section) [gone](nowhere.md) [bad](other.md#b-section)\n"
                    "[here](#page) [web](https://example.com/x.md) `[code](not-a-link.md)`\n"
                    "```\n[fenced](also-not.md)\n```\n![picture](pic.png)\n[ref]: missing-ref.md\n",
                    encoding="utf-8")
    global ROOT  # noqa: PLW0603 - report paths relative to the temporary folder
    saved, ROOT = ROOT, tmp_path
    try:
        problems = broken_links(page)
    finally:
        ROOT = saved
    assert problems == ["page.md: nowhere.md (no such file)", "page.md: other.md#b-section (no heading #b-section)",
                        "page.md: pic.png (no such file)", "page.md: missing-ref.md (no such file)"]


def test_the_docs_pages_exist() -> None:
    names = {page.name for page in DOCS.glob("*.md")}
    assert {"configuration.md", "readers.md", "speed.md", "scale-out.md", "evaluation.md"} <= names


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    assert broken_links(page) == []


# ----------------------------------------------------------------------------- variables named


def test_every_qa_variable_named_in_the_docs_exists() -> None:
    settings = {f"QA_{f.name.upper()}" for f in fields(Settings)}
    code = "\n".join(path.read_text(encoding="utf-8", errors="replace")
                     for folder in ("qa", "tests", "benchmarks", "scripts", ".ci")
                     for path in (ROOT / folder).rglob("*") if path.is_file() and path.suffix in ("", ".py", ".sh"))
    unknown = sorted({f"{page.name}: {name}" for page in pages()
                      for name in re.findall(r"\bQA_[A-Z0-9_]*[A-Z0-9]\b", page.read_text(encoding="utf-8"))
                      if name not in settings and not re.search(rf"\b{name}\b", code)})
    assert unknown == []
