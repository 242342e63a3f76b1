import copy
import math

import numpy as np
import pytest

from normscope import reproductions
from normscope.errors import ConfigError
from normscope.experiments import theory_columns
from normscope.experiments.execute import build_subject
from normscope.measures import get as get_measure
from normscope.reproductions.wellformed import problems

NAME = "lyu2022"


@pytest.mark.parametrize("quick", [False, True])
def test_spec_plans_and_its_claims_and_plots_are_well_formed(quick):
    rep = reproductions.load(NAME, quick=quick)
    assert problems(rep) == []
    assert {c.paper for c in rep.spec.claim} == {NAME}


def _runs(quick):
    return [r.config for r in reproductions.plan_runs(NAME, quick=quick)]


@pytest.mark.parametrize("quick", [False, True])
def test_weight_decay_runs_share_lr_and_decay_at_both_sizes(quick):
    # The claims filter on weight_decay = 0.01 and their slope bounds assume lr wd = 1e-3.
    decayed = [c for c in _runs(quick) if c["train"]["weight_decay"] > 0]
    assert {(c["train"]["lr"], c["train"]["weight_decay"]) for c in decayed} == {(0.1, 0.01)}
    assert all(c["subject"]["net"]["norm"] == "batch" for c in decayed)
    assert len({c["train"]["steps"] for c in decayed}) >= 3
    plain = [c for c in _runs(quick) if c["subject"]["net"]["norm"] == "none"]
    assert plain and all(c["train"]["weight_decay"] == 0 for c in plain)


def test_quick_weight_decay_runs_are_among_the_full_runs():
    full = {str(c) for c in _runs(False)}
    quick = [c for c in _runs(True) if c["train"]["weight_decay"] > 0]
    assert quick and all(str(c) in full for c in quick)


def test_theory_columns_are_the_edge_of_stability_thresholds():
    config = next(c for c in _runs(True) if c["train"]["weight_decay"] > 0)
    got = theory_columns.compute("edge_of_stability", config, {})
    lr, wd = config["train"]["lr"], config["train"]["weight_decay"]
    assert got["two_over_lr"] == pytest.approx(2 / lr)
    assert got["stability"] == 2.0
    assert got["norm_decay_rate"] == pytest.approx(-2 * math.log(1 - lr * wd))
    with pytest.raises(ConfigError, match="lr"):
        theory_columns.compute("edge_of_stability", {**config, "train": None}, {})


def test_norm_slope_bound_is_the_weight_decay_rate():
    # ||w_{t+1}||^2 >= (1 - lr wd)^2 ||w_t||^2: the claim's lower bound is that rate.
    config = next(c for c in _runs(True) if c["train"]["weight_decay"] > 0)
    rate = theory_columns.compute("edge_of_stability", config, {})["norm_decay_rate"]
    claim = next(c for c in reproductions.load(NAME).spec.claim if c.y.endswith("weight_norm_sq"))
    assert claim.within[0] == pytest.approx(-rate, rel=1e-3)
    assert claim.within[0] <= -rate


def test_tracked_details_the_claims_name_are_produced():
    rep = reproductions.load(NAME, quick=True)
    config = copy.deepcopy(next(c for c in _runs(True) if c["train"]["weight_decay"] > 0))
    config["subject"]["data"]["n"] = 32
    config["subject"]["net"]["width"] = 8
    subject = build_subject(config)
    lr = config["train"]["lr"]
    details = {}
    for m in rep.spec.measure:
        options = {k: v for k, v in m.options.items() if k != "every"}
        if m.name == "spherical_sharpness":
            options["lr"] = lr  # the tracker passes the step size
        result = get_measure(m.name)(subject, **options)
        details[m.stored_name] = result.details
    named = [c.y for c in rep.spec.claim]
    for p in rep.spec.plot:
        named += p.y if isinstance(p.y, list) else [p.y]
    for column in named:
        label, _, key = column.partition(".")
        if label in details and key:
            assert isinstance(details[label].get(key), float | int | np.floating), column
    stability = details["spherical_sharpness"]["stability"]
    assert stability == pytest.approx(lr * details["spherical_sharpness"]["raw_sharpness"])
