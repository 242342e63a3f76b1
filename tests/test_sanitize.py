"""One sanitizing step per sink: terminal, Rich, matplotlib, file names, CSV cells."""

import doctest
import io

import matplotlib
import pytest
from matplotlib.figure import Figure
from rich.markup import render

from normscope import sanitize


def test_docstring_examples_run():
    assert doctest.testmod(sanitize).failed == 0


@pytest.mark.parametrize(
    "text",
    [
        "\x1b]8;;http://evil.example\x1b\\click\x1b]8;;\x1b\\",  # OSC 8 hyperlink
        "\x1b[2Kgone",  # erase line
        "\x9b2J",  # C1 CSI
        "a\rb\x07\x08\x7f",
        "\u202etxt.exe",  # right-to-left override
    ],
)
def test_terminal_shows_every_control_character_as_an_escape(text):
    shown = sanitize.terminal(text)
    assert shown.isprintable() and sanitize.terminal(shown) == shown
    for char in {c for c in text if not c.isprintable()}:
        assert char.encode("unicode_escape").decode() in shown


def test_terminal_keeps_tabs_newlines_and_ordinary_unicode():
    text = "width\t= 8\nλ_max ≈ 3 — ok [x]"
    assert sanitize.terminal(text) == text


@pytest.mark.parametrize(
    "text", ["x [/bold][/bold]", "[link=http://evil.example]here[/link]", "end\\", "[bold"]
)
def test_rich_markup_prints_as_written(text):
    assert render(f"[bold]{sanitize.rich_markup(text)}[/bold]").plain == text


def test_console_does_not_turn_names_into_emoji():
    out = io.StringIO()
    console = sanitize.console()
    console.file = out
    console.print(sanitize.rich_markup(":thumbs_up: :x:"))
    assert out.getvalue().strip() == ":thumbs_up: :x:"


def test_figures_built_inside_literal_figure_text_draw_dollars_and_tex_as_text():
    title = r"price $\frac{1}{ vs $5"
    with sanitize.literal_figure_text():
        fig = Figure()
        ax = fig.add_subplot()
        ax.set_title(title)
        ax.set_xlabel("$x$")
        fig.savefig(io.BytesIO(), format="png")
    assert ax.get_title() == title
    assert matplotlib.rcParams["text.parse_math"]  # restored after the block
    fig = Figure()
    fig.add_subplot().set_title(title)
    with pytest.raises(ValueError):  # what the block prevents
        fig.savefig(io.BytesIO(), format="png")


@pytest.mark.parametrize(
    ("text", "stem"),
    [("tiny", "tiny"), ("a-b_c.1", "a-b_c.1"), ("../..", None), ("a/b", None), ("", None)],
)
def test_file_stem_is_safe_and_changes_only_what_it_must(text, stem):
    got = sanitize.file_stem(text)
    assert got == stem if stem is not None else got != text
    assert got and got.replace("-", "").replace("_", "").replace(".", "").isalnum()
    assert not got.startswith(".")


def test_file_stems_of_different_texts_differ_and_stay_short():
    texts = ["a/b", "a?b", "a b", "a_b", "x" * 300, "x" * 301, "é" * 50]
    stems = [sanitize.file_stem(t) for t in texts]
    assert len(set(stems)) == len(texts)
    assert all(len(s) <= sanitize.MAX_STEM for s in stems)


@pytest.mark.parametrize(
    ("cell", "shown"),
    [
        ('=HYPERLINK("http://evil.example","x")', '\'=HYPERLINK("http://evil.example","x")'),
        ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("-1.5e-3", "-1.5e-3"),
        ("loss", "loss"),
        (-2.0, -2.0),
        (None, None),
    ],
)
def test_csv_cell_defuses_formulas_and_leaves_numbers_and_text(cell, shown):
    assert sanitize.csv_cell(cell) == shown
