import math

import pytest

from normscope import measures
from normscope.auditing.budget import (
    AUDIT_OPTIONS,
    CHEAP_MAX_ITER,
    MIN_SAMPLES,
    choose_plan,
    describe,
    options_for,
    predict,
)

NAMES = ["loss", "sharpness", "gradient_norms"]
CHEAP = {"loss": 0.01, "sharpness": 1.0, "gradient_norms": 0.1}  # seconds on m samples
DEFAULT = {"loss": 0.01, "sharpness": 4.0, "gradient_norms": 0.1}


def _plan(seconds, default=DEFAULT, exponent=1.0, n=64, runs=2):
    return choose_plan(
        NAMES,
        default_costs=default,
        cheap_costs=CHEAP,
        m=16,
        n=n,
        runs=runs,
        seconds=seconds,
        exponent=exponent,
    )


def test_predict_scales_with_runs_and_samples():
    assert predict({"a": 1.0, "b": 2.0}, 16, 64, 3, 1.0) == pytest.approx(3 * 3.0 * 4)
    assert predict({"a": 1.0}, 16, 32, 1, 2.0) == pytest.approx(4.0)


def test_enough_time_keeps_default_options_on_all_samples():
    # default: 2 runs * 4.11 s * (64/16) = 32.9 s
    plan = _plan(40.0)
    assert (plan.tier, plan.n, plan.measures) == ("default", 64, tuple(NAMES))
    assert plan.predicted_seconds == pytest.approx(2 * 4.11 * 4)


def test_less_time_takes_cheap_options_then_fewer_samples():
    # cheap on 64: 2 * 1.11 * 4 = 8.88 s; on 32: 4.44 s; on 16: 2.22 s
    assert (_plan(10.0).tier, _plan(10.0).n) == ("cheap", 64)
    assert (_plan(5.0).tier, _plan(5.0).n) == ("cheap", 32)
    assert (_plan(3.0).tier, _plan(3.0).n) == ("cheap", MIN_SAMPLES)


def test_uncalibrated_default_tier_is_never_chosen():
    assert _plan(1000.0, default=None).tier == "cheap"


def test_faster_growth_with_samples_subsamples_more():
    # cheap on 64 with exponent 2: 2 * 1.11 * 16 = 35.5 s; on 32: 8.88 s
    assert _plan(10.0, exponent=2.0).n == 32


def test_tiny_budget_drops_the_most_expensive_measures_but_keeps_loss():
    # on 16 samples: all 2.22 s, without sharpness 0.22 s, loss alone 0.02 s
    plan = _plan(1.0)
    assert (plan.n, plan.measures, plan.dropped) == (16, ("loss", "gradient_norms"), ("sharpness",))
    plan = _plan(0.05)
    assert plan.measures == ("loss",) and plan.dropped == ("sharpness", "gradient_norms")
    plan = _plan(0.001)
    assert plan.measures == ("loss",)
    assert "more than the 0.001 s left" in plan.notes[0]


def test_the_last_measure_left_is_never_dropped():
    plan = choose_plan(
        ["sharpness", "gradient_norms"],
        default_costs=None,
        cheap_costs=CHEAP,
        m=16,
        n=64,
        runs=2,
        seconds=0.0,
        exponent=1.0,
    )
    assert plan.measures == ("gradient_norms",) and plan.dropped == ("sharpness",)


def test_measures_not_timed_in_calibration_are_dropped_first():
    costs = {"loss": 0.01, "sharpness": math.inf, "gradient_norms": 0.1}
    plan = choose_plan(
        NAMES, default_costs=None, cheap_costs=costs, m=16, n=64, runs=1, seconds=10.0, exponent=1.0
    )
    assert (plan.n, plan.measures, plan.dropped) == (16, ("loss", "gradient_norms"), ("sharpness",))


def test_small_data_is_not_subsampled_below_its_size():
    plan = _plan(0.5, n=8)
    assert plan.n == 8


def test_cheap_options_add_quick_options_and_cap_lanczos_steps():
    assert options_for("sharpness", "default") == AUDIT_OPTIONS.get("sharpness", {})
    cheap = options_for("sharpness", "cheap")
    assert cheap["max_iter"] == CHEAP_MAX_ITER
    assert measures.info("sharpness").quick.items() <= cheap.items()
    assert "max_iter" not in options_for("loss", "cheap")


def test_notes_say_what_the_budget_chose():
    notes = describe(_plan(1.0), total=64, runs=2, budget=1.0)
    assert "16 of 64 samples" in notes[0] and "cheap options" in notes[0]
    assert notes[1] == "dropped to fit the budget: sharpness"
    assert notes[2].startswith("options: loss: defaults; gradient_norms:")
    assert describe(_plan(40.0), 64, 2, None)[0].startswith("default options on all 64")
