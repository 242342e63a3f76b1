"""The runnable examples in the curvature operators' docstrings must run as claimed."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["hessian", "ggn", "empirical_fisher"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_example_runs(name):
    module = importlib.import_module(f"normscope.curvature.{name}")
    outcome = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert outcome.attempted > 0
    assert outcome.failed == 0
