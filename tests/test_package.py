"""``import normscope`` is cheap; its subpackages are attributes loaded on first use."""

from __future__ import annotations

import subprocess
import sys

import pytest

import normscope

HEAVY = ("torch", "numpy", "pandas", "scipy", "matplotlib", "pydantic")


def _fresh(code: str) -> str:
    """Run ``code`` in a new interpreter; returns its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout.strip()


def _loaded_after(setup: str) -> list[str]:
    report = f"print('loaded:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    code = f"import sys\n{setup}\n{report}"
    last = _fresh(code).splitlines()[-1]
    return [m for m in last.removeprefix("loaded:").split(",") if m]


def test_import_normscope_loads_no_heavy_dependency():
    assert _loaded_after("import normscope") == []


@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_version_and_help_do_not_import_torch(flag):
    run = (
        "from normscope.cli import main\n"
        f"sys.argv = ['normscope', '{flag}']\n"
        "try:\n    main()\nexcept SystemExit as done:\n    assert done.code == 0, done.code"
    )
    assert _loaded_after(run) == []


@pytest.mark.parametrize("name", normscope.SUBPACKAGES)
def test_every_subpackage_is_an_attribute_after_import_normscope(name):
    out = _fresh(
        f"import sys, normscope\nassert 'normscope.{name}' not in sys.modules\n"
        f"print(normscope.{name}.__name__)"
    )
    assert out == f"normscope.{name}"


def test_measures_are_reachable_from_the_top_level_package():
    out = _fresh(
        "import normscope\n"
        "print(normscope.measures.sharpness is normscope.measures.get('sharpness'))"
    )
    assert out == "True"


def test_core_types_are_top_level_attributes():
    from normscope.measurement import Measurement
    from normscope.subject import Subject

    assert normscope.Subject is Subject and normscope.Measurement is Measurement
    assert set(normscope.__all__) <= set(dir(normscope))


def test_an_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'mesures'"):
        normscope.mesures  # noqa: B018
