"""A spec is validated whole when it is parsed: every sweep point's network, data name
and training options, and every column its claims and plots name, before anything runs."""

from __future__ import annotations

import pytest

from normscope.errors import ConfigError, NormscopeError, UnknownNameError
from normscope.experiments import theory_columns
from normscope.experiments.spec import parse_spec

from .conftest import TINY

TRAINED = TINY + "\n[train]\nsteps = 3\nlr = 0.1\n"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("lr = -0.1", r"x\.toml.*: train: lr must be a finite number > 0, got -0\.1"),
        ('lr = "0.1"', r"x\.toml.*: train: lr must be a number, got '0\.1' \(str\)"),
        ("lr = nan", r"lr must be a finite number > 0, got nan"),
        ("lr = true", r"lr must be a number, got True \(bool\)"),
    ],
)
def test_bad_learning_rate_is_refused_at_parse_time(line, message):
    with pytest.raises(ConfigError, match=message):
        parse_spec(TRAINED.replace("lr = 0.1", line), source="x.toml")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("weight_decay = nan", r"weight_decay must be a finite number >= 0, got nan"),
        ("warmup = 2.5", r"warmup must be a whole number"),
        ('optimizer = "sgd"', r"optimizer 'sgd' needs the Subject's batch_size"),
        ("weight_decy = 0.1", r"unknown training option 'weight_decy'.*'weight_decay'"),
    ],
)
def test_every_training_option_is_checked_at_parse_time(line, message):
    with pytest.raises(NormscopeError, match=message):
        parse_spec(TRAINED + line + "\n", source="x.toml")


def test_a_bad_swept_training_value_names_its_sweep_point():
    bad = TRAINED.replace("seeds = [0, 1]", '"train.lr" = [0.1, -0.1]')
    with pytest.raises(ConfigError, match=r"sweep point .*train\.lr=-0\.1.*: train: lr must be"):
        parse_spec(bad, source="x.toml")


def test_placement_index_beyond_the_depth_is_refused_at_parse_time():
    bad = TINY.replace('norm = "batch"}', 'norm = "batch", placement = [0, 5]}')
    with pytest.raises(ConfigError, match=r"subject\.net.*indices \[5\] are out of range"):
        parse_spec(bad, source="x.toml")


def test_a_sweep_point_whose_depth_drops_below_the_placement_is_refused():
    bad = (
        TINY.replace('norm = "batch"}', 'norm = "batch", placement = [2]}')
        .replace("depth = 2", "depth = 3")
        .replace("seeds = [0, 1]", '"subject.net.depth" = [3, 2]')
    )
    with pytest.raises(ConfigError, match=r"sweep point .*subject\.net\.depth=2.*out of range"):
        parse_spec(bad, source="x.toml")


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("width = 6", "width = true"),
        ("depth = 2", "depth = false"),
        ('"subject.net.width" = [4, 8]', '"subject.net.width" = [4, true]'),
        ("n = 24", "n = true"),
        ("seeds = [0, 1]", "seeds = [true]"),
    ],
)
def test_booleans_are_not_accepted_as_integers(old, new):
    with pytest.raises(ConfigError, match="true/false is not a number"):
        parse_spec(TINY.replace(old, new), source="x.toml")


def test_booleans_still_set_boolean_fields():
    spec = parse_spec(TINY.replace('norm = "batch"}', 'norm = "batch", bias = false}'))
    assert spec.subject.net["bias"] is False


CLAIM = '\n[[claim]]\ntype = "bounded"\ny = "{y}"\nbelow = 10.0\n'


@pytest.mark.parametrize(
    ("y", "hint"),
    [
        ("los", "Did you mean 'loss'?"),
        ("subject.net.widht", "Did you mean 'subject.net.width'?"),
        ("los.mean", "Did you mean 'loss.mean'?"),
    ],
)
def test_a_column_typo_in_a_claim_is_refused_with_the_closest_column(y, hint):
    with pytest.raises(UnknownNameError) as err:
        parse_spec(TINY + CLAIM.format(y=y), source="x.toml")
    text = str(err.value)
    assert f"x.toml: claim[0].y: no column {y!r}" in text and hint in text


def test_column_typos_in_plots_claim_filters_and_x_are_refused():
    plot = '\n[[plot]]\nx = "subject.net.width"\ny = ["loss", "loss_"]\n'
    with pytest.raises(UnknownNameError, match=r"plot\[0\]\.y\[1\]: no column 'loss_'"):
        parse_spec(TINY + plot, source="x.toml")
    claim = CLAIM.format(y="loss") + 'filter = {"subject.net.nrom" = "batch"}\n'
    with pytest.raises(UnknownNameError, match=r"claim\[0\]\.filter\.subject\.net\.nrom.*'subject"):
        parse_spec(TINY + claim, source="x.toml")
    fit = '\n[[claim]]\ntype = "slope"\nx = "subject.net.wdth"\ny = "loss"\nwithin = [0, 1]\n'
    with pytest.raises(UnknownNameError, match=r"claim\[0\]\.x: .*'subject\.net\.width'"):
        parse_spec(TINY + fit, source="x.toml")


def test_columns_that_will_exist_are_accepted():
    ok = [
        CLAIM.format(y="loss"),
        CLAIM.format(y="loss.any_detail"),  # details are known only once a measure ran
        CLAIM.format(y="subject.net.input_shape"),  # filled in from the data by each run
        '\n[[plot]]\nx = "step"\ny = "loss"\ncolor = "subject.net.width"\n',
    ]
    spec = parse_spec(TINY + "".join(ok), source="x.toml")
    assert len(spec.claim) == 3 and len(spec.plot) == 1


@pytest.fixture
def half_width(monkeypatch):
    from normscope.experiments.theory_columns import _REGISTRY

    monkeypatch.setitem(_REGISTRY, "test_spec_half_width", lambda c: {"half_width": 1.0})
    theory_columns.names()


def test_theory_columns_are_computed_to_check_the_names_claims_use(half_width):
    theory = '\n[[theory]]\nname = "test_spec_half_width"\n'
    close = '\n[[claim]]\ntype = "close"\ny = "loss"\ntheory = "{t}"\nrtol = 0.5\n'
    parse_spec(TINY + theory + close.format(t="theory.half_width"), source="x.toml")
    with pytest.raises(UnknownNameError, match=r"Did you mean 'theory\.half_width'\?"):
        parse_spec(TINY + theory + close.format(t="theory.halfwidth"), source="x.toml")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "seeds = [0, 1]",
            '"subject.data.split" = ["train", "validation"]',
            "has no split 'validation'",
        ),
        ("dim = 5", "dmi = 5", "has no option 'dmi'"),
    ],
)
def test_every_sweep_point_data_split_and_option_names_are_checked(old, new, message):
    with pytest.raises(ConfigError, match=rf"subject\.data: data set 'gaussian' {message}"):
        parse_spec(TINY.replace(old, new), source="x.toml")
