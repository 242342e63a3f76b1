"""One battery every registered measure passes (scikit-learn's common-checks idea):
:mod:`normscope.testing`, parametrized over ``measures.names()`` and its checks."""

from __future__ import annotations

import math

import pytest

import normscope
from normscope import measures
from normscope.testing import CHECKS, changes, check_measure, invalid_options, model_state

from tests import zoo


def test_registry_is_not_empty_and_names_are_sorted():
    assert "loss" in measures.names()
    assert measures.names() == sorted(measures.names())


@pytest.mark.parametrize("check", list(CHECKS))
@pytest.mark.parametrize("name", measures.names())
def test_measure_passes_check(name, check):
    CHECKS[check](name)


def test_the_battery_tries_at_least_100_invalid_option_values():
    tried = [(n, o, v) for n in measures.names() for o, v in invalid_options(n)]
    assert len(tried) >= 100
    assert len({n for n, *_ in tried}) == len(measures.names()) - 1  # `loss` takes none


class _AnythingGoes:
    """A broken declaration: claims to refuse -1 but allows everything."""

    def allows(self, value):
        return True

    def refused(self):
        return [-1.0]


def test_check_measure_names_the_failing_check(monkeypatch):
    """A measure that lets an invalid value through fails with the check's name."""
    info = measures.info("landscape")
    options = dict(info.options) | {"span": type(info.options["span"])(1.0, _AnythingGoes())}
    monkeypatch.setattr(measures.registry, "_REGISTRY", dict(measures.registry._REGISTRY))
    measures.registry._REGISTRY["landscape"] = type(info)(**{**info.__dict__, "options": options})
    with pytest.raises(AssertionError, match=r"fails check refuses_invalid_options: .*span=-1"):
        check_measure("landscape")


# Per-layer options run one Lanczos per module: on the zoo's transformers (dozens of
# modules) they would dominate the suite, and the battery above checks them on an MLP.
ZOO_OVERRIDES = {"per_layer": False}


@pytest.mark.parametrize("name", measures.names())
@pytest.mark.parametrize("arch", sorted(zoo.ZOO))
def test_every_measure_runs_on_the_architecture_zoo(arch, name):
    model, data, options = zoo.ZOO[arch]()
    s = normscope.Subject(model, data, bn_mode="train", **options)
    info = measures.info(name)
    quick = {k: ZOO_OVERRIDES.get(k, v) for k, v in info.quick.items()}
    before = model_state(model)
    m = info.fn(s, **quick)
    assert isinstance(m.value, float)
    assert math.isfinite(m.value) or m.notes, f"{arch}: a non-finite value needs a note"
    assert changes(before, model) == []
