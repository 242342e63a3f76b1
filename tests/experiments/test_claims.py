import math

import numpy as np
import pandas as pd
import pytest
from pydantic import TypeAdapter

from normscope.experiments.claims import evaluate
from normscope.experiments.claims_spec import ClaimSpec

claim = TypeAdapter(ClaimSpec).validate_python


def frame(x, y, **extra):
    n = len(x)
    return pd.DataFrame(
        {
            "experiment": "e",
            "run": [f"r{i}" for i in range(n)],
            "status": "ok",
            "step": 0,
            "x": x,
            "y": y,
            **extra,
        }
    )


def test_loglog_slope_of_a_power_law_is_its_exponent():
    x = np.array([8.0, 16, 32, 64])
    result = evaluate(
        claim({"type": "loglog_slope", "x": "x", "y": "y", "within": [-0.55, -0.45]}),
        frame(x, 3 * x**-0.5),
    )
    assert result.passed and result.measured == pytest.approx(-0.5)
    assert result.r2 == pytest.approx(1.0) and result.n == 4


def test_loglog_slope_outside_range_fails_with_measured_value():
    x = np.array([8.0, 16, 32, 64])
    result = evaluate(
        claim({"type": "loglog_slope", "x": "x", "y": "y", "within": [0, 1]}), frame(x, x**-2)
    )
    assert not result.passed and result.measured == pytest.approx(-2.0)


def test_slope_of_log_y_recovers_exponential_rate():
    k = np.array([0.0, 1, 2, 3, 4])
    result = evaluate(
        claim({"type": "slope", "x": "x", "y": "y", "logy": True, "within": [-0.8, -0.6]}),
        frame(k, 5 * np.exp(-0.7 * k)),
    )
    assert result.passed and result.measured == pytest.approx(-0.7)


def test_slope_r2_reflects_noise():
    rng = np.random.default_rng(0)
    x = np.arange(20.0)
    y = 2 * x + rng.normal(0, 5, 20)
    result = evaluate(claim({"type": "slope", "x": "x", "y": "y", "within": [0, 5]}), frame(x, y))
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (slope * x + intercept)
    assert result.r2 == pytest.approx(1 - (resid**2).sum() / ((y - y.mean()) ** 2).sum())
    assert 0 < result.r2 < 1


def test_too_few_points_is_a_fail_with_reason_not_an_exception():
    result = evaluate(
        claim({"type": "loglog_slope", "x": "x", "y": "y", "within": [0, 1]}),
        frame([1.0, 2.0], [1.0, 2.0]),
    )
    assert not result.passed and "too few points" in result.message and result.n == 2


def test_non_positive_values_are_dropped_from_log_fits_and_said_so():
    result = evaluate(
        claim({"type": "loglog_slope", "x": "x", "y": "y", "within": [0.9, 1.1]}),
        frame([1.0, 2, 4, 8], [1.0, 2, -4, -1]),
    )
    assert not result.passed and "too few points" in result.message
    ok = evaluate(
        claim({"type": "loglog_slope", "x": "x", "y": "y", "within": [0.9, 1.1]}),
        frame([1.0, 2, 4, 8, 16], [1.0, 2, 4, 8, 0]),
    )
    assert ok.passed and "1 point(s) dropped" in ok.message


def test_ratio_of_group_means():
    t = frame([0] * 4, [4.0, 6.0, 1.0, 1.5], norm=["none", "none", "batch", "batch"])
    spec = {"type": "ratio", "y": "y", "by": "norm", "a": "none", "b": "batch", "above": 3}
    result = evaluate(claim(spec), t)
    assert result.passed and result.measured == pytest.approx(5.0 / 1.25) and result.n == 4
    assert not evaluate(claim({**spec, "above": None, "below": 2}), t).passed


def test_ratio_with_an_empty_group_fails():
    t = frame([0, 0], [1.0, 2.0], norm=["none", "none"])
    result = evaluate(
        claim({"type": "ratio", "y": "y", "by": "norm", "a": "none", "b": "batch", "below": 1}), t
    )
    assert not result.passed and "'batch'" in result.message


def test_monotone_uses_means_per_x_and_tolerance():
    t = frame([1, 1, 2, 2, 3], [1.0, 3.0, 2.5, 3.5, 2.9])
    spec = {"type": "monotone", "x": "x", "y": "y", "direction": "increasing"}
    strict = evaluate(claim(spec), t)
    assert not strict.passed and strict.measured == pytest.approx((2.9 - 3.0) / 3.0)
    assert evaluate(claim({**spec, "tolerance": 0.05}), t).passed


def test_bounded_checks_the_max_over_the_sweep():
    t = frame([1, 2, 3], [0.5, 2.0, 1.0])
    assert evaluate(claim({"type": "bounded", "y": "y", "below": 2.5}), t).passed
    result = evaluate(claim({"type": "bounded", "y": "y", "below": 1.5}), t)
    assert not result.passed and result.measured == 2.0


def test_close_compares_to_a_theory_column():
    t = frame([1, 2], [1.0, 2.1], **{"theory.y": [1.0, 2.0]})
    assert evaluate(
        claim({"type": "close", "y": "y", "theory": "theory.y", "rtol": 0.06}), t
    ).passed
    result = evaluate(claim({"type": "close", "y": "y", "theory": "theory.y", "rtol": 0.01}), t)
    assert not result.passed and result.measured == pytest.approx(0.05)


def test_missing_column_fails_with_suggestion():
    result = evaluate(claim({"type": "bounded", "y": "yy", "below": 1}), frame([1], [0.0]))
    assert not result.passed and "did you mean 'y'" in result.message


def test_filter_and_failed_runs_are_respected():
    t = frame([1, 2, 3], [1.0, 100.0, 2.0], norm=["none", "batch", "none"])
    t.loc[2, "status"] = "failed"
    result = evaluate(
        claim(
            {"type": "bounded", "y": "y", "below": 5, "filter": {"norm": "none"}, "min_points": 1}
        ),
        t,
    )
    assert result.passed and result.n == 1


def test_claims_use_the_last_step_of_each_run_by_default():
    t = pd.DataFrame(
        {
            "experiment": "e",
            "run": ["a", "a", "b", "b"],
            "status": "ok",
            "step": [0, 10, 0, 10],
            "y": [100.0, 1.0, 100.0, 2.0],
        }
    )
    assert evaluate(claim({"type": "bounded", "y": "y", "below": 3}), t).n == 2
    first = evaluate(claim({"type": "bounded", "y": "y", "below": 3, "step": "first"}), t)
    assert not first.passed and math.isclose(first.measured, 100.0)


def test_claims_over_all_steps_in_a_window_fit_a_training_curve():
    steps = np.arange(0, 100, 10)
    t = pd.DataFrame(
        {
            "experiment": "e",
            "run": "a",
            "status": "ok",
            "step": steps,
            "y": np.where(steps < 40, 50.0, np.exp(-0.01 * steps)),
        }
    )
    spec = {"type": "slope", "x": "step", "y": "y", "logy": True, "step": "all"}
    late = evaluate(claim({**spec, "min_step": 40, "within": [-0.0101, -0.0099]}), t)
    assert late.passed and late.n == 6
    whole = evaluate(claim({**spec, "within": [-0.0101, -0.0099]}), t)
    assert not whole.passed and whole.n == 10
    early = evaluate(claim({**spec, "max_step": 30, "within": [-1e-9, 1e-9]}), t)
    assert early.passed and early.n == 4


def test_monotone_deviation_from_a_theory_column_uses_the_distance():
    # y above and below its theory value: the distance |y - theory| grows with x even
    # though y itself does not.
    t = frame([1, 2, 3], [2.1, 1.7, 2.5], **{"theory.y": [2.0, 2.0, 2.0]})
    spec = {"type": "monotone", "x": "x", "y": "y", "direction": "increasing"}
    assert not evaluate(claim(spec), t).passed
    result = evaluate(claim({**spec, "deviation_from": "theory.y"}), t)
    assert result.passed and "|y - theory.y|" in result.message
    assert "0.1, 0.3, 0.5" in result.message
    missing = evaluate(claim({**spec, "deviation_from": "theory.z"}), t)
    assert not missing.passed and "theory.z" in missing.message


def test_results_carry_the_claims_source_and_basis():
    base = {"type": "bounded", "y": "y", "below": 1}
    t = frame([1], [0.0])
    paper = evaluate(claim({**base, "source": "paper", "basis": "Theorem 1"}), t)
    assert (paper.source, paper.basis, paper.source_label) == ("paper", "Theorem 1", "paper")
    against = evaluate(
        claim({**base, "source": "finding", "contradicts": True, "basis": "reading"}), t
    )
    assert against.source_label == "finding against the paper" and against.contradicts
    failed = evaluate(claim({**base, "y": "nope", "source": "theory"}), t)
    assert not failed.passed and failed.source_label == "theory"
    assert evaluate(claim(base), t).source_label == ""


def test_contradicts_needs_a_finding():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="finding"):
        claim({"type": "bounded", "y": "y", "below": 1, "source": "paper", "contradicts": True})
    with pytest.raises(ValidationError, match="source"):
        claim({"type": "bounded", "y": "y", "below": 1, "source": "hearsay"})


def test_a_list_inside_a_filter_list_matches_a_list_valued_column():
    t = frame([1, 2, 3], [1.0, 2.0, 5.0], width=[64, 64, (128, 32)])
    spec = {"type": "bounded", "y": "y", "below": 10}
    only = evaluate(claim({**spec, "filter": {"width": [[128, 32]]}}), t)
    assert only.n == 1 and only.measured == 5.0
    assert evaluate(claim({**spec, "filter": {"width": [128, 32]}}), t).n == 0
    assert evaluate(claim({**spec, "filter": {"width": [64, [128, 32]]}}), t).n == 3
