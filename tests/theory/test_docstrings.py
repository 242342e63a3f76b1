"""Every example in the theory docstrings runs and gives the printed result."""

import doctest

import pytest

from normscope.theory import gaussian, hiddenpower, karakida, meterez


@pytest.mark.parametrize("module", [gaussian, hiddenpower, karakida, meterez])
def test_docstring_examples_run(module):
    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0
