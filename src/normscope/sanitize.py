r"""One sanitizing step per sink for text that users control.

Experiment names, labels, claim names, descriptions, config values, error messages and
model layer names come from spec files, stores and model code that may have been written
by someone else. Each place that *interprets* text gets its own function here, and every
user string passes through it on the way there:

=================  ===========================================  ======================
sink               what it would otherwise do                   function
=================  ===========================================  ======================
terminal           run control sequences (``ESC ] 8`` links,    :func:`terminal`
                   ``ESC [2K`` line erase, bidi overrides)
Rich               read ``[bold]``, ``[link=...]`` as markup    :func:`rich_markup`
                   (and crash on unbalanced tags)               (plus ``emoji=False``
                                                                consoles: :func:`console`)
matplotlib         read text between two ``$`` as math text     :func:`literal_figure_text`
                   (and crash on bad TeX), or all text as TeX
                   with ``text.usetex``
file names         write outside the folder, collide, exceed    :func:`file_stem`
                   the file-name length limit
CSV cells          run as spreadsheet formulas (``=HYPERLINK``) :func:`csv_cell`
=================  ===========================================  ======================

HTML has its own escaping (``html.escape``) where pages are built.

Example::

    >>> terminal("ok\x1b[2K")
    'ok\\x1b[2K'
    >>> rich_markup("x [/bold]")
    'x \\[/bold]'
    >>> csv_cell("=HYPERLINK(1)"), csv_cell("-1.5")
    ("'=HYPERLINK(1)", '-1.5')
    >>> file_stem("ok_name"), file_stem("a/b")
    ('ok_name', 'a_b-c14cddc0')
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

# C0 controls except tab and newline, DEL, C1 controls (0x9b is a one-byte CSI), and the
# Unicode bidirectional controls that reorder what a terminal shows.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
MAX_STEM = 64
"""Longest file stem :func:`file_stem` returns: far below the 255-byte name limit of
common file systems, leaving room for the prefixes and suffixes callers add."""


def terminal(text: str) -> str:
    """``text`` with every control character shown as its escape (``\\x1b``, ``\\u202e``).

    The terminal then prints what the string holds instead of obeying it: no hyperlinks,
    no erased lines, no reordered text. Tab and newline stay.
    """
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def rich_markup(text: object) -> str:
    """``str(text)`` ready to embed in a Rich markup string: control characters escaped
    (:func:`terminal`) and every ``[`` that could open a tag escaped, so it prints as
    written and never raises ``MarkupError``."""
    from rich.markup import escape

    return escape(terminal(str(text)))


def console(*, stderr: bool = False) -> Console:
    """A Rich console that does not turn ``:name:`` in printed text into emoji."""
    from rich.console import Console

    return Console(stderr=stderr, emoji=False)


@contextlib.contextmanager
def literal_figure_text() -> Iterator[None]:
    """Within this block, matplotlib draws every text it creates as written: no math
    text between ``$`` signs (which raises on bad TeX such as ``$\\frac{1}{ vs $``) and
    no TeX even when the user's matplotlibrc turns ``text.usetex`` on.

    Matplotlib reads both settings when a text is created, so figures must be built
    inside the block (saving them may happen later)."""
    import matplotlib

    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
        yield


def file_stem(text: str, max_len: int = MAX_STEM) -> str:
    """A non-empty file-name stem made from ``text``: only ``A-Z a-z 0-9 _ . -``, no
    leading dot, at most ``max_len`` characters.

    When anything had to change, the first 8 hex digits of the SHA-256 of ``text`` are
    appended, so that two different texts (``"a/b"``, ``"a?b"``) never share a stem.
    """
    slug = _UNSAFE_IN_NAME.sub("_", text).strip("._")
    if slug and slug == text and len(slug) <= max_len:
        return slug
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    head = slug[: max_len - len(digest) - 1].rstrip("._")
    return f"{head}-{digest}" if head else digest


def csv_cell(value: Any) -> Any:
    """A CSV cell that spreadsheets show as text: a string starting with ``=``, ``+``,
    ``-``, ``@``, tab or carriage return gets a leading ``'`` (the OWASP rule for CSV
    injection) unless it is a plain number; other values are returned unchanged."""
    formula = isinstance(value, str) and value.startswith(_FORMULA_START)
    return "'" + value if formula and not _NUMBER.fullmatch(value) else value
