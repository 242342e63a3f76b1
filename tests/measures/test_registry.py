"""The registry: one callable per measure, declared option checks, capabilities, notes."""

from __future__ import annotations

import math

import pytest
from torch import nn

import normscope
from normscope import Subject, measures
from normscope.errors import (
    ConfigError,
    DataError,
    NonFiniteError,
    UnknownNameError,
)
from normscope.measurement import Measurement
from normscope.measures import registry
from normscope.measures.constraints import Flag, Integer, Optional, Vectors
from normscope.testing import battery_subjects


@pytest.fixture(scope="module")
def s():
    return battery_subjects()["bn_train_float64"]


@pytest.fixture
def scratch(monkeypatch):
    """A copy of the registry for test-only measures."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


# ----------------------------------------------------------------------------- one callable
@pytest.mark.parametrize("name", measures.names())
def test_register_returns_what_the_package_exports_and_get_returns(name):
    import importlib

    info = measures.info(name)
    module = importlib.import_module(info.fn.__module__)
    assert getattr(module, name) is info.fn is measures.get(name) is getattr(measures, name)
    assert getattr(normscope.measures, name) is info.fn


def test_a_direct_import_reports_overflow_as_inf_with_a_note(scratch, s):
    @registry.register("test_overflow", family="test")
    def overflowing(subject) -> Measurement:
        raise NonFiniteError("the forward pass overflowed float64")

    m = overflowing(s)
    assert m.value == math.inf and "reported as inf" in m.notes[0]
    assert m.settings["bn_mode"] == "train"


# ----------------------------------------------------------------------------- option checks
ISSUE_CASES = [
    ("adaptive_sharpness", {"steps": -1}, "steps=-1", "an integer >= 0"),
    ("adaptive_sharpness", {"kind": "average", "num_probes": 0}, "num_probes=0", ">= 1"),
    ("adaptive_sharpness", {"kind": "average", "num_samples": 0}, "num_probes=0", ">= 1"),
    ("adaptive_sharpness", {"rho": 0}, "rho=0", "> 0"),
    ("adaptive_sharpness", {"rho": -0.5}, "rho=-0.5", "> 0"),
    ("landscape", {"span": 0}, "span=0", "> 0"),
    ("isometry_gap", {"eps": -1e-3}, "eps=-0.001", ">= 0"),
    ("input_lipschitz", {"ascent_steps": -2}, "ascent_steps=-2", ">= 0"),
    ("sharpness", {"k": True}, "k=True", "an integer"),
    ("sharpness", {"tol": math.nan}, "tol=nan", "finite"),
    ("fisher_trace", {"num_probes": 1}, "num_probes=1", ">= 2"),
    ("landscape", {"dims": 3}, "dims=3", "in [1, 2]"),
]


@pytest.mark.parametrize(("name", "options", "shown", "allowed"), ISSUE_CASES)
def test_invalid_value_names_measure_option_value_and_what_is_allowed(
    s, name, options, shown, allowed
):
    with pytest.raises(ConfigError) as caught:
        measures.get(name)(s, **options)
    text = str(caught.value)
    assert f"measure {name!r}" in text and shown in text and allowed in text, text


def test_unknown_option_lists_the_valid_ones_closest_first(s):
    with pytest.raises(UnknownNameError) as caught:
        measures.sharpness(s, whcih="smallest")
    text = str(caught.value)
    assert "no option 'whcih'. Did you mean 'which'?" in text
    assert text.index("Valid options: which,") > 0


@pytest.mark.parametrize(
    ("name", "options", "suggestion"),
    [
        ("fisher_spectrum", {"kind": "Tru"}, "'true'"),
        ("adaptive_sharpness", {"kind": "worts"}, "'worst'"),
        ("landscape", {"directions": "Hessian"}, "'hessian'"),
        ("isometry_gap", {"centering": "projct"}, "'project'"),
        ("hessian_trace", {"method": "hutch++"}, "'hutchpp'"),
        ("sharpness", {"which": "min"}, None),
    ],
)
def test_a_value_chosen_from_a_list_says_did_you_mean(s, name, options, suggestion):
    with pytest.raises(UnknownNameError) as caught:
        measures.get(name)(s, **options)
    text = str(caught.value)
    assert f"measure {name!r}" in text and "Valid values of" in text
    if suggestion:
        assert f"Did you mean {suggestion}?" in text, text


def test_check_options_is_what_specs_use_and_it_applies_renames():
    options, notes = measures.check_options("hessian_trace", {"num_matvecs": 8})
    assert options == {"num_probes": 8} and "num_probes" in notes[0]
    with pytest.raises(UnknownNameError, match="unknown measure 'sharpnes'"):
        measures.check_options("sharpnes", {})


def test_a_measure_takes_a_subject_not_a_model(s):
    with pytest.raises(ConfigError, match=r"takes a normscope.Subject, got Sequential"):
        measures.loss(s.model)


def test_a_measure_that_needs_labels_refuses_data_without_them():
    labelled = battery_subjects()["bn_train_float64"]
    x = labelled.first_batch().inputs
    unlabelled = Subject(labelled.model, (x, None))
    with pytest.raises(DataError, match="needs labels"):
        measures.sharpness(unlabelled)
    assert not measures.info("isometry_gap").needs_labels


# ----------------------------------------------------------------------------- declarations
def _options_fn(subject, *, k: int = 1, init_vectors=None, return_vectors: bool = False):
    return Measurement("x", 0.0)


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"options": {"k": Integer(low=1)}}, "differ from the signature"),
        (
            {
                "options": {
                    "k": Integer(low=1),
                    "init_vectors": Optional(Vectors()),
                    "return_vectors": Flag(),
                }
            },
            "warm_start=False",
        ),
        (
            {
                "warm_start": True,
                "takes_lr": True,
                "options": {
                    "k": Integer(low=1),
                    "init_vectors": Optional(Vectors()),
                    "return_vectors": Flag(),
                },
            },
            "takes_lr=True",
        ),
        (
            {
                "warm_start": True,
                "options": {
                    "k": Integer(low=2),
                    "init_vectors": Optional(Vectors()),
                    "return_vectors": Flag(),
                },
            },
            "default or quick value k=1",
        ),
    ],
)
def test_declarations_are_checked_against_the_signature(scratch, kwargs, problem):
    with pytest.raises(TypeError, match=problem):
        registry.register("test_declared", family="test", **kwargs)(_options_fn)


def test_options_must_be_keyword_only_with_defaults(scratch):
    def positional(subject, k=1):
        return Measurement("x", 0.0)

    with pytest.raises(TypeError, match="keyword-only with defaults"):
        registry.register("test_positional", family="test", options={"k": Integer()})(positional)


# ----------------------------------------------------------------------------- notes
def _fresh_running_stats(subject):
    for module in subject.model.modules():
        if isinstance(module, nn.BatchNorm1d):
            module.reset_running_stats()
    return subject


@pytest.mark.parametrize("name", measures.names())
def test_every_measure_notes_eval_mode_batch_norm_never_updated(name):
    subject = _fresh_running_stats(battery_subjects()["bn_eval_float64"])
    m = measures.get(name)(subject, **measures.info(name).quick)
    assert any("running statistics never updated" in n and "layers 1" in n for n in m.notes)


def test_no_running_stats_note_when_trained_or_in_train_mode():
    trained = battery_subjects()["bn_eval_float64"]
    assert not any("never updated" in n for n in measures.loss(trained).notes)
    train_mode = _fresh_running_stats(battery_subjects()["bn_train_float64"])
    assert not any("never updated" in n for n in measures.loss(train_mode).notes)
