import copy
import math

import numpy as np
import pytest

from normscope import reproductions
from normscope.experiments import theory_columns
from normscope.experiments.execute import build_subject
from normscope.measures import get as get_measure
from normscope.nets.placement import evenly_spread
from normscope.reproductions.wellformed import problems
from normscope.theory.hiddenpower import typical_log_gain

NAME = "hiddenpower2025"
GAIN = 3.0


@pytest.mark.parametrize("quick", [False, True])
def test_spec_plans_and_its_claims_and_plots_are_well_formed(quick):
    rep = reproductions.load(NAME, quick=quick)
    assert problems(rep) == []
    assert {c.paper for c in rep.spec.claim} == {NAME}


def _runs(quick=True):
    return [r.config for r in reproductions.plan_runs(NAME, quick=quick)]


def _theory(config):
    return theory_columns.compute("hiddenpower_gain", config, {})


def _net(config, **changes):
    out = copy.deepcopy(config)
    out["subject"]["net"].update(changes)
    return out


def test_log_gain_telescopes_to_the_layers_after_the_last_norm():
    base = _runs()[0]
    log_g = math.log(GAIN)
    for k in range(9):
        first = _theory(_net(base, depth=8, norm="batch", placement=list(range(k))))
        assert first["num_norm_layers"] == k and first["first_k"] == 1
        # g^(depth + 1) times 1/g per normalized layer: the layers from K on, and the output.
        assert first["log_gain"] == pytest.approx((9 - k) * log_g)
        assert first["gain"] == pytest.approx(GAIN ** (9 - k))
    for k in range(1, 9):
        even = _theory(_net(base, depth=8, norm="batch", placement=list(evenly_spread(k, 8))))
        assert even["evenly_spread"] == 1 and even["num_norm_layers"] == k
        assert even["log_gain"] == pytest.approx(log_g)  # only the output layer is left
    plain = _theory(_net(base, depth=5, norm="none"))
    assert plain["num_norm_layers"] == 0 and plain["log_gain"] == pytest.approx(6 * log_g)
    num_norm = _theory(_net(base, depth=8, norm="layer", num_norm=2))
    assert num_norm["evenly_spread"] == 1 and num_norm["first_k"] == 0


def test_log_gain_halves_the_second_moment_after_relu_and_is_mean_field_for_tanh():
    base = _net(_runs()[0], depth=3, norm="none", weight_scale=2.0)
    relu = _theory(_net(base, activation="relu"))
    # four Gaussian layers of gain 2; three ReLUs halve the second moment, the output is linear
    assert relu["log_gain"] == pytest.approx(4 * math.log(2.0) + 3 * 0.5 * math.log(0.5))
    tanh = _theory(_net(base, activation="tanh"))
    assert tanh["log_gain"] == pytest.approx(typical_log_gain(3, "tanh", gain=2.0))
    assert 0 < tanh["log_gain"] < 4 * math.log(2.0)  # saturating: below the linear gain
    assert math.isnan(_theory(_net(base, init="orthogonal"))["log_gain"])
    assert math.isnan(_theory(_net(base, norm="batch", order="post"))["log_gain"])


@pytest.mark.parametrize("quick", [False, True])
def test_series_cover_depths_and_every_k_they_claim(quick):
    columns = [(c, _theory(c)) for c in _runs(quick)]
    net = lambda c: c["subject"]["net"]  # noqa: E731
    depths = {net(c)["depth"] for c, _ in columns if net(c)["norm"] == "none"}
    assert len(depths) >= 5
    for norm in ("batch", "layer"):
        ks = {
            t["num_norm_layers"]
            for c, t in columns
            if net(c)["norm"] == norm and t["first_k"] and net(c)["weight_scale"] == GAIN
        }
        assert {0, 8} <= ks and len(ks) >= 5
    evenly = {
        t["num_norm_layers"]
        for c, t in columns
        if t["evenly_spread"] and net(c)["norm"] == "batch" and net(c)["weight_scale"] == GAIN
    }
    assert len(evenly) >= 5
    for activation in ("identity", "relu", "tanh"):
        series = [c for c, _ in columns if net(c)["activation"] == activation]
        assert {net(c)["norm"] for c in series} >= {"none", "batch"}, activation
    trained = [c for c, _ in columns if c["train"]["steps"] > 0]
    assert trained and all(net(c)["weight_scale"] == 1.0 for c in trained)


def _fitted_rate(x: str, activation: str, quick: bool, **where) -> float:
    """The slope of theory.log_gain against x over the planned runs of one series."""
    points = [
        (
            c["subject"]["net"]["depth"] if x == "subject.net.depth" else t["num_norm_layers"],
            t["log_gain"],
        )
        for c, t in ((c, _theory(c)) for c in _runs(quick))
        if c["subject"]["net"]["activation"] == activation
        and c["subject"]["net"]["weight_scale"] == GAIN
        and all(
            (c["subject"]["net"]["norm"] if k == "norm" else t[k]) in v for k, v in where.items()
        )
    ]
    xs, ys = zip(*points, strict=True)
    return float(np.polyfit(xs, ys, 1)[0])


SERIES = {
    "subject.net.depth": {"norm": ["none"]},
    "first K": {"norm": ["batch"], "first_k": [1]},
    "evenly spread": {"norm": ["batch"], "evenly_spread": [1], "num_norm_layers": range(1, 9)},
}


def test_slope_brackets_come_from_the_mean_field_rates_at_both_sizes():
    # Growth at rate r: [r - 0.1, log 2g]; decrease at r < 0: [-log 2g, r + 0.1]; flat:
    # [r - 0.1, r + 0.1]. r is the slope of theory.log_gain over the planned runs, 0.1 the
    # per-layer fluctuation sqrt(1/(2n)) at n = 64, log 2g the spectral norm of a layer.
    top = math.log(2 * GAIN)
    assert math.sqrt(1 / (2 * 64)) < 0.1
    checked = 0
    for claim in reproductions.load(NAME).spec.claim:
        activation = claim.filter.get("subject.net.activation")
        if claim.filter.get("subject.net.norm") == "layer" or activation is None:
            continue
        if claim.x == "subject.net.depth":
            where = SERIES["subject.net.depth"]
        elif claim.x == "theory.num_norm_layers":
            where = SERIES["first K" if "theory.first_k" in claim.filter else "evenly spread"]
        else:
            continue
        rates = [_fitted_rate(claim.x, activation, quick, **where) for quick in (False, True)]
        low, high = claim.within
        if all(r > 0.3 for r in rates):
            assert low == pytest.approx(min(rates) - 0.1, abs=2e-3) and high == pytest.approx(
                top, abs=1e-3
            ), claim.name
        elif "falls" in claim.name:
            assert low == pytest.approx(-top, abs=1e-3) and high == pytest.approx(
                max(rates) + 0.1, abs=2e-3
            ), claim.name
        else:
            assert low == pytest.approx(min(rates) - 0.1, abs=2e-3) and high == pytest.approx(
                max(rates) + 0.1, abs=2e-3
            ), claim.name
        checked += 1
    assert checked == 18
    gain_fit = next(c for c in reproductions.load(NAME).spec.claim if c.x == "theory.log_gain")
    low, high = math.log(GAIN) - 0.1, top
    assert gain_fit.within == pytest.approx((low / math.log(GAIN), high / math.log(GAIN)), abs=0.01)


def test_measured_details_the_plots_name_are_produced():
    rep = reproductions.load(NAME, quick=True)
    config = copy.deepcopy(_runs()[0])
    config["subject"]["data"]["n"] = 16
    config["subject"]["net"].update(width=8, depth=2)
    subject = build_subject(config)
    details = {
        m.stored_name: get_measure(m.name)(subject, **m.options).details for m in rep.spec.measure
    }
    named = [c.y for c in rep.spec.claim]
    for p in rep.spec.plot:
        named += p.y if isinstance(p.y, list) else [p.y]
    for column in named:
        label, _, key = column.partition(".")
        if label in details and key:
            assert isinstance(details[label].get(key), float | int | np.floating), column
