import copy

import numpy as np
import pytest

from normscope import data, reproductions
from normscope.experiments import theory_columns
from normscope.reproductions.wellformed import problems

NAME = "meterez2024"


@pytest.mark.parametrize("quick", [False, True])
def test_spec_plans_and_its_claims_and_plots_are_well_formed(quick):
    rep = reproductions.load(NAME, quick=quick)
    assert problems(rep) == []
    assert {c.paper for c in rep.spec.claim} == {NAME}


def test_quick_goes_to_depth_200_and_full_to_1000():
    depths = {
        quick: sorted(
            {
                r.config["subject"]["net"]["depth"]
                for r in reproductions.plan_runs(NAME, quick=quick)
            }
        )
        for quick in (False, True)
    }
    assert depths[True][-1] == 200 and depths[False][-1] == 1000
    nets = {
        (
            r.config["subject"]["net"]["init"],
            r.config["subject"]["net"]["activation"],
            r.config["subject"]["net"]["gain_exponent"],
        )
        for r in reproductions.plan_runs(NAME, quick=True)
    }
    assert len(nets) == 6


def test_width_equals_batch_size_and_input_dimension():
    for run in reproductions.plan_runs(NAME):
        sub = run.config["subject"]
        assert sub["net"]["width"] == sub["data"]["n"] == sub["data"]["dim"]
        assert sub["net"]["norm"] == "batch_rms" and sub["bn_mode"] == "train"


def test_theory_column_is_the_isometry_gap_of_the_input_batch():
    config = copy.deepcopy(reproductions.plan_runs(NAME, quick=True)[0].config)
    got = theory_columns.compute("meterez_input_gap", config, {})
    x = data.load("gaussian", split="train", n=64, seed=0, dim=64, num_classes=10).x.double()
    eig = np.linalg.eigvalsh((x @ x.T).numpy())
    assert got["phi0"] == pytest.approx(np.log(eig.mean()) - np.log(eig).mean(), rel=1e-9)
    assert got["log_width"] == pytest.approx(np.log(64))
