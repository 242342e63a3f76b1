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
def test_weight_decay_runs_halve_lr_wd_at_the_same_lr_wd_steps(quick):
    # The limit lr wd -> 0 is approached at lr wd = 1e-3, 5e-4, 2.5e-4, each run covering
    # the same span lr wd * steps of the paper's time scale (so the claims compare the
    # runs' last steps at equal time), plus one net whose two groups differ in norm.
    decayed = [c for c in _runs(quick) if c["train"]["weight_decay"] > 0]
    assert all(c["subject"]["net"]["norm"] == "batch" for c in decayed)
    square = [c for c in decayed if c["subject"]["net"]["width"] == 64]
    lr_wd = sorted({c["train"]["lr"] * c["train"]["weight_decay"] for c in square})
    assert lr_wd == pytest.approx([2.5e-4, 5e-4, 1e-3])
    spans = {
        round(c["train"]["lr"] * c["train"]["weight_decay"] * c["train"]["steps"], 9)
        for c in decayed
    }
    assert len(spans) == 1
    assert any(c["subject"]["net"]["width"] == [128, 32] for c in decayed)
    plain = [c for c in _runs(quick) if c["subject"]["net"]["norm"] == "none"]
    assert plain and all(c["train"]["weight_decay"] == 0 for c in plain)


@pytest.mark.parametrize("quick", [False, True])
def test_step_windows_of_the_claims_start_after_the_edge_of_stability(quick):
    # min_step is lr wd t = 0.6 of the run a claim filters on (the product crosses 2 at
    # lr wd t = 0.4), and that window holds at least three tracked steps.
    runs = _runs(quick)
    for claim in reproductions.load(NAME, quick=quick).spec.claim:
        if claim.min_step is None:
            continue
        (run,) = [
            c
            for c in runs
            if c["train"]["weight_decay"] == claim.filter["train.weight_decay"]
            and c["subject"]["net"]["width"] == 64
        ][:1]
        lr_wd = run["train"]["lr"] * run["train"]["weight_decay"]
        assert claim.min_step * lr_wd == pytest.approx(0.6), claim.name
        every = {m["every"] for m in run["measures"]}
        assert (run["train"]["steps"] - claim.min_step) / max(every) >= 2, claim.name


def test_theory_columns_are_the_edge_of_stability_thresholds():
    config = next(c for c in _runs(True) if c["train"]["weight_decay"] > 0)
    got = theory_columns.compute("edge_of_stability", config, {})
    lr, wd = config["train"]["lr"], config["train"]["weight_decay"]
    assert got["two_over_lr"] == pytest.approx(2 / lr)
    assert got["stability"] == 2.0
    assert got["norm_decay_rate"] == pytest.approx(-2 * math.log(1 - lr * wd))
    assert got["lr_wd"] == pytest.approx(lr * wd)
    with pytest.raises(ConfigError, match="lr"):
        theory_columns.compute("edge_of_stability", {**config, "train": None}, {})


def test_norm_slope_bound_is_the_weight_decay_rate():
    # ||w_{t+1}||^2 >= (1 - lr wd)^2 ||w_t||^2: the claim's lower bound is that rate.
    claim = next(c for c in reproductions.load(NAME).spec.claim if c.y.endswith("weight_norm_sq"))
    config = next(
        c for c in _runs(True) if c["train"]["weight_decay"] == claim.filter["train.weight_decay"]
    )
    rate = theory_columns.compute("edge_of_stability", config, {})["norm_decay_rate"]
    assert claim.within[0] == pytest.approx(-rate, rel=1e-3)
    assert claim.within[0] <= -rate


def test_every_tracked_measure_is_taken_at_the_iterate_and_at_the_midpoint():
    measures = reproductions.load(NAME).spec.measure
    points = {(m.name, m.point) for m in measures if m.every is not None}
    for name in ("sharpness", "spherical_sharpness"):
        assert {(name, "iterate"), (name, "midpoint")} <= points


def test_tracked_details_the_claims_name_are_produced():
    rep = reproductions.load(NAME, quick=True)
    config = copy.deepcopy(next(c for c in _runs(True) if c["train"]["weight_decay"] > 0))
    config["subject"]["data"]["n"] = 32
    lr = config["train"]["lr"]
    details = {}
    config["subject"]["net"]["width"] = [8, 4]  # two groups: per-group columns exist
    subject = build_subject(config)
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
