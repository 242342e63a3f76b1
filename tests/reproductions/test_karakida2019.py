import copy

import pytest

from normscope import reproductions
from normscope.experiments import theory_columns
from normscope.reproductions.wellformed import problems
from normscope.theory.karakida import fisher_predictions, order_parameters

NAME = "karakida2019"


@pytest.mark.parametrize("quick", [False, True])
def test_spec_plans_and_its_claims_and_plots_are_well_formed(quick):
    rep = reproductions.load(NAME, quick=quick)
    assert problems(rep) == []
    assert {c.paper for c in rep.spec.claim} == {NAME}


def test_quick_size_is_a_subset_of_the_full_grid():
    full = reproductions.plan_runs(NAME)
    quick = reproductions.plan_runs(NAME, quick=True)
    widths = {r.config["subject"]["net"]["width"] for r in quick}
    assert widths < {r.config["subject"]["net"]["width"] for r in full}
    assert len(quick) == 21 and len(full) == 70
    assert all(
        r.config["subject"]["data"]["dim"] == r.config["subject"]["net"]["width"] for r in full
    )


@pytest.mark.parametrize("quick", [False, True])
def test_samples_grow_with_width_in_the_series_that_test_the_papers_condition(quick):
    # karakida2019's condition for output batch norm: T in proportion to M. Each claim on
    # it must see at least three widths at one fixed T / M, with output batch norm (and the
    # plain net at T = M for contrast); the T = 100 series must keep T fixed.
    columns = [
        (r.config, theory_columns.compute("karakida_fisher", r.config, {}))
        for r in reproductions.plan_runs(NAME, quick=quick)
    ]

    def widths(norm, placement, ratio):
        return {
            c["subject"]["net"]["width"]
            for c, t in columns
            if (c["subject"]["net"]["norm"], c["subject"]["net"]["placement"]) == (norm, placement)
            and t["t_over_m"] == ratio
        }

    assert len(widths("batch", "output", 1.0)) >= 3
    assert len(widths("batch", "output", 4.0)) >= 3
    assert len(widths("none", "all", 1.0)) >= 3
    fixed = [c for c, t in columns if c["subject"]["data"]["n"] == 100]
    assert len({c["subject"]["net"]["width"] for c in fixed}) == len(widths("none", "all", 1.0))


def _config(norm="none", placement="all", width=128):
    run = reproductions.plan_runs(NAME, quick=True)[0]
    config = copy.deepcopy(run.config)
    config["subject"]["net"].update(norm=norm, placement=placement, width=width)
    config["subject"]["data"]["dim"] = width
    return config


def test_theory_column_is_karakida_for_a_two_layer_relu_net():
    # One hidden layer, input width = M, sigma_w^2 = 2, no bias, unit input variance.
    got = theory_columns.compute("karakida_fisher", _config(width=128), {})
    order = order_parameters(2, "relu", sigma_w2=2.0, sigma_b2=0.0, q1_input=1.0)
    want = fisher_predictions(order, 128, 100, 10)
    assert got["lambda_max"] == pytest.approx(want.lambda_max, rel=1e-9)
    assert got["mean"] == pytest.approx(want.mean, rel=1e-9)
    # ReLU at sigma_w^2 = 2, unit inputs: q^0 = q^1 = 1, q~2 = 1, q~1 = 2 * 1 * E[relu'^2] = 1,
    # alpha = alpha_1 alpha_0 = 1, so kappa_1 = q~1 q^0 + q~2 q^1 = 2 and m = 2 C / M.
    assert got["mean"] == pytest.approx(2.0 * 10 / 128, rel=1e-6)


def test_theory_column_centres_the_output_for_output_batch_norm_only():
    plain = theory_columns.compute("karakida_fisher", _config(), {})
    output = theory_columns.compute("karakida_fisher", _config("batch", "output"), {})
    assert output["lambda_max"] == pytest.approx(output["bulk"])
    assert output["lambda_max"] < plain["lambda_max"] / 10
    only_ratio = {"t_over_m": 100 / 128}
    assert theory_columns.compute("karakida_fisher", _config("batch", "all"), {}) == only_ratio
    assert theory_columns.compute("karakida_fisher", _config("layer", "all"), {}) == only_ratio
