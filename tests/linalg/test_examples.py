"""The runnable examples at the end of every linalg docstring must run and print what
they claim."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["lanczos", "power", "hutchinson", "hutchpp", "xtrace", "slq"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_example_runs(name):
    module = importlib.import_module(f"normscope.linalg.{name}")
    outcome = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert outcome.attempted > 0
    assert outcome.failed == 0
