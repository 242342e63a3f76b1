"""One battery every registered measure passes (scikit-learn's common-checks idea)."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

import normscope
from normscope import measures
from normscope.testing import changes, model_state

from tests import zoo
from tests.helpers import bn_mlp, classification_data


def _subject(dtype, bn_mode="train"):
    x, y = classification_data(dtype=dtype)
    return normscope.Subject(bn_mlp(dtype), (x, y), loss="cross_entropy", bn_mode=bn_mode)


def _run(name, subject, **extra):
    info = measures.info(name)
    return info.fn(subject, **{**info.quick, **extra})


def test_registry_is_not_empty_and_names_are_sorted():
    assert "loss" in measures.names()
    assert measures.names() == sorted(measures.names())


@pytest.mark.parametrize("name", measures.names())
def test_options_are_keyword_only_with_defaults(name):
    params = list(inspect.signature(measures.get(name)).parameters.values())
    assert params[0].kind in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD)
    for p in params[1:]:
        assert p.kind == p.KEYWORD_ONLY, f"{name}: option {p.name} must be keyword-only"
        assert p.default is not p.empty, f"{name}: option {p.name} needs a default"


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
@pytest.mark.parametrize("name", measures.names())
def test_measure_leaves_model_untouched(name, bn_mode):
    s = _subject(torch.float32, bn_mode)
    s.model.train()
    s.model[0].weight.grad = torch.ones_like(s.model[0].weight)
    before = model_state(s.model)
    _run(name, s)
    assert changes(before, s.model) == []


@pytest.mark.parametrize("name", measures.names())
def test_measure_is_deterministic_under_a_seed(name):
    a = _run(name, _subject(torch.float64))
    b = _run(name, _subject(torch.float64))
    assert a.value == b.value or (math.isnan(a.value) and math.isnan(b.value))


@pytest.mark.parametrize("name", measures.names())
def test_measure_records_settings_and_cost_in_float64(name):
    m = _run(name, _subject(torch.float64))
    assert m.name == name
    assert isinstance(m.value, float)
    assert math.isfinite(m.value) or m.notes, "a non-finite value must come with a note"
    assert m.settings["bn_mode"] == "train"
    assert m.settings["dtype"] == "float64"
    assert m.cost["seconds"] >= 0
    assert len(m.cost) >= 2, "cost must count the products it used"


# Per-layer options run one Lanczos per module: on the zoo's transformers (dozens of
# modules) they would dominate the suite, and they are checked on the MLP above.
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
