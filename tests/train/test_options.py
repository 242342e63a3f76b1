"""train()'s options are checked in one place, from Python and from a spec's [train]."""

from __future__ import annotations

import math

import pytest
import torch

from normscope import Subject
from normscope.errors import ConfigError, UnknownNameError
from normscope.testing import changes, model_state
from normscope.train import check_options, train

from tests.helpers import bn_mlp, classification_data

BAD = [
    ({"lr": -0.1}, r"lr must be a finite number > 0, got -0\.1"),
    ({"lr": 0}, r"lr must be a finite number > 0"),
    ({"lr": math.inf}, r"lr must be a finite number > 0, got inf"),
    ({"lr": "0.1"}, r"lr must be a number, got '0\.1' \(str\); write it without quotes"),
    ({"lr": True}, r"lr must be a number, got True \(bool\)"),
    ({"weight_decay": math.nan}, r"weight_decay must be a finite number >= 0, got nan"),
    ({"weight_decay": -1e-3}, r"weight_decay must be a finite number >= 0"),
    ({"momentum": 1.0}, r"momentum must be a finite number in \[0, 1\)"),
    ({"momentum": -0.5}, r"momentum must be a finite number in \[0, 1\)"),
    ({"steps": True}, r"steps must be a whole number, got True \(bool\)"),
    ({"steps": 2.5}, r"steps must be a whole number, got 2\.5"),
    ({"steps": -1}, r"steps must be >= 0, got -1"),
    ({"warmup": "3"}, r"warmup must be a whole number, got '3' \(str\)"),
    ({"seed": -2}, r"seed must be >= 0"),
    ({"wd_on": []}, r"wd_on must be 'all', 'scale_invariant', a parameter-name pattern"),
    ({"wd_on": ["fc*", 3]}, r"wd_on must be"),
    ({"optimizer": "sgd"}, r"optimizer 'sgd' needs the Subject's batch_size"),
]


@pytest.mark.parametrize(("options", "message"), BAD, ids=[str(o) for o, _ in BAD])
def test_each_bad_value_is_a_config_error_naming_option_value_and_range(options, message):
    with pytest.raises(ConfigError, match=message):
        check_options(options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"learning_rate": 0.1}, r"unknown training option 'learning_rate'.*Valid"),
        ({"weight_dacay": 0.1}, r"Did you mean 'weight_decay'\?"),
        ({"optimizer": "adam"}, r"unknown optimizer 'adam'.*gd, sgd"),
        ({"schedule": "cosin"}, r"Did you mean 'cosine'\?"),
    ],
)
def test_unknown_names_are_unknown_name_errors_with_the_valid_ones(options, message):
    with pytest.raises(UnknownNameError, match=message):
        check_options(options)


def test_valid_options_pass_including_integer_rates_and_sgd_with_a_batch_size():
    check_options(
        {"optimizer": "sgd", "lr": 1, "momentum": 0.9, "weight_decay": 0, "steps": 0},
        batch_size=8,
    )
    check_options({"wd_on": ["fc*.weight", "out.*"], "schedule": "linear_warmup", "warmup": 2})


@pytest.mark.parametrize(
    "options",
    [{"weight_decay": math.nan}, {"lr": math.nan}, {"lr": "0.1"}, {"momentum": math.inf}],
    ids=str,
)
def test_train_refuses_a_bad_value_before_touching_the_model(options):
    x, y = classification_data(n=16, dtype=torch.float64)
    s = Subject(bn_mlp(dtype=torch.float64), (x, y))
    before = model_state(s.model)
    with pytest.raises(ConfigError):
        train(s, steps=3, **options)
    assert changes(before, s.model) == []
    assert all(torch.isfinite(p).all() for p in s.model.parameters())
