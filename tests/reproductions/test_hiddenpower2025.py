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


def test_log_gain_halves_the_second_moment_after_relu_and_is_nan_for_tanh():
    base = _net(_runs()[0], depth=3, norm="none", weight_scale=2.0)
    relu = _theory(_net(base, activation="relu"))
    assert relu["log_gain"] == pytest.approx(4 * math.log(2.0 / math.sqrt(2.0)))
    assert math.isnan(_theory(_net(base, activation="tanh"))["log_gain"])


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
    trained = [c for c, _ in columns if c["train"]["steps"] > 0]
    assert trained and all(net(c)["weight_scale"] == 1.0 for c in trained)


def test_slope_brackets_are_the_gaussian_layer_gains():
    # Typical-vector gain g less one per-layer standard deviation sqrt(1/(2n)) ~ 0.1 at
    # n = 64, and the Marchenko-Pastur edge 2 g of a square Gaussian layer.
    low, high = math.log(GAIN) - 0.1, math.log(2 * GAIN)
    assert math.sqrt(1 / (2 * 64)) < 0.1
    fits = [c for c in reproductions.load(NAME).spec.claim if c.type == "slope"]
    for claim in fits:
        if (
            claim.x in ("subject.net.depth", "theory.num_norm_layers")
            and claim.filter.get("subject.net.weight_scale") == GAIN
        ):
            bracket = (low, high) if claim.x == "subject.net.depth" else (-high, -low)
            assert claim.within == pytest.approx(bracket, abs=1e-3), claim.name
    gain_fit = next(c for c in fits if c.x == "theory.log_gain")
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
