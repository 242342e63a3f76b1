"""The user documentation in docs/ matches the code: measures, spec example, examples, links."""

from __future__ import annotations

import ast
import inspect
import re
import typing
from pathlib import Path

import pytest

from normscope import measures
from normscope.experiments import parse_spec, plan
from normscope.experiments.claims_spec import ClaimSpec

ROOT = Path(__file__).parents[1]
DOCS = ROOT / "docs"
LINKED_PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
EXECUTED_PAGES = [
    "index.md",
    "training.md",
    "own-models.md",
    "lightning.md",
    "huggingface.md",
    "loggers.md",
]

FENCE = re.compile(r"^```.*?^```", flags=re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def blocks(page: Path, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", page.read_text(), flags=re.S | re.M)


def prose(page: Path) -> str:
    """The page without fenced code blocks and inline code, where links cannot live."""
    return INLINE_CODE.sub("", FENCE.sub("", page.read_text()))


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lowercase, punctuation dropped, spaces to '-'."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {github_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("name", measures.names())
def test_every_registered_measure_has_a_section_in_measures_page(name):
    headings = re.findall(r"^#{2,3} `([a-z_0-9]+)`\s*$", (DOCS / "measures.md").read_text(), re.M)
    assert name in headings


def measure_section(name: str) -> str:
    text = (DOCS / "measures.md").read_text()
    start = text.index(f"### `{name}`")
    end = re.search(r"^##", text[start + 4 :], flags=re.M)
    return text[start : start + 4 + end.start()] if end else text[start:]


@pytest.mark.parametrize("name", measures.names())
def test_measures_page_states_every_option_with_its_default(name):
    section = measure_section(name)
    params = inspect.signature(measures.get(name)).parameters.values()
    for p in (p for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY):
        stated = re.search(rf"`{p.name}=([^`]+)`", section)
        assert stated, f"option {p.name!r} of {name} is not documented as `{p.name}=...`"
        assert ast.literal_eval(stated.group(1)) == p.default, (name, p.name)


def test_measures_page_documents_no_measure_that_is_not_registered():
    headings = re.findall(r"^### `([a-z_0-9]+)`\s*$", (DOCS / "measures.md").read_text(), re.M)
    assert sorted(headings) == measures.names()


def test_experiments_page_example_spec_parses_and_plans_at_both_sizes():
    page = DOCS / "experiments.md"
    (text,) = blocks(page, "toml")
    spec = parse_spec(text, source="docs/experiments.md")
    quick = parse_spec(text, source="docs/experiments.md", quick=True)
    stated = int(re.search(r"This spec plans (\d+) runs", page.read_text()).group(1))
    assert len(plan(spec)) == stated
    assert 0 < len(plan(quick)) < stated


def test_experiments_page_example_spec_shows_every_claim_type():
    (text,) = blocks(DOCS / "experiments.md", "toml")
    spec = parse_spec(text)
    (union,) = typing.get_args(ClaimSpec)[:1]
    types = {typing.get_args(cls.model_fields["type"].annotation)[0] for cls in union.__args__}
    assert {c.type for c in spec.claim} == types


@pytest.mark.parametrize("page", EXECUTED_PAGES)
def test_python_examples_run_in_order(page, capsys):
    path = DOCS / page
    found = blocks(path, "python")
    assert found, f"{page} has no python example"
    namespace: dict[str, object] = {}
    for block in found:
        exec(compile(block, str(path), "exec"), namespace)
    assert capsys.readouterr().out


@pytest.mark.parametrize("page", LINKED_PAGES, ids=lambda p: p.name)
def test_relative_links_point_to_existing_files_and_headings(page):
    broken = []
    for target in LINK.findall(prose(page)):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        if not path.exists() or (path.suffix == ".md" and anchor and anchor not in anchors(path)):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)} links to missing targets: {broken}"


def _cli_commands():
    import typer

    from normscope.cli import app

    return typer.main.get_command(app).commands


def test_cli_page_documents_every_command_and_option():
    text = (DOCS / "cli.md").read_text()
    headings = re.findall(r"^## `normscope (\w+)", text, flags=re.M)
    assert sorted(headings) == sorted(_cli_commands())
    for name, command in _cli_commands().items():
        start = text.index(f"## `normscope {name}")
        section = text[start : text.find("\n## ", start + 1)]
        for param in command.params:
            for opt in (o for o in param.opts if o.startswith("-")):
                assert f"`{opt}" in section, f"cli.md: {name} does not document {opt}"


def test_cli_page_states_the_exit_codes_main_uses():
    import inspect

    from normscope import cli

    table = re.findall(r"^\| (\d+) \|", (DOCS / "cli.md").read_text(), flags=re.M)
    used = set(re.findall(r"(?:sys\.exit|typer\.Exit)\((\d+)\)", inspect.getsource(cli)))
    assert used <= set(table) and {"0", "1", "2"} <= set(table)


def test_every_command_takes_the_store_as_db():
    for name, command in _cli_commands().items():
        if name in ("list", "measure"):
            continue
        assert any("--db" in p.opts for p in command.params), name
