import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from normscope import measures
from normscope.auditing import VARIANTS, audit
from normscope.auditing import run as audit_run
from normscope.errors import ShapeError, UnknownNameError
from normscope.testing import changes, model_state

from tests.audit.models import TinyResNet, TinyTransformer, bn_mlp, gaussian_data, plain_mlp, seeded

CHEAP = ["loss", "gradient_norms", "isometry_gap"]
DATA = gaussian_data()


def _loss(result, variant):
    table = result.table
    return table[(table.variant == variant) & (table.measure == "loss")].value.item()


def _ce(model, train: bool) -> float:
    model = copy.deepcopy(model).train(train)
    with torch.no_grad():
        return float(F.cross_entropy(model(DATA.x), DATA.y))


def test_audit_leaves_the_model_untouched_bit_for_bit():
    model = seeded(bn_mlp).train()
    model(DATA.x).sum().backward()  # grads and training mode the audit must not touch
    before = model_state(model)
    audit(model, DATA, measures=CHEAP)
    assert changes(before, model) == []


def test_losses_of_variants_match_hand_built_models():
    model = seeded(bn_mlp)
    result = audit(model, DATA, measures=["loss"])
    assert [r.label for r in result.runs] == [
        "as_given/train",
        "as_given/eval",
        "no_norm",
        "bn_to_layer",
        "bn_to_rms",
    ]
    assert _loss(result, "as_given/train") == pytest.approx(_ce(model, train=True), rel=1e-5)
    assert _loss(result, "as_given/eval") == pytest.approx(_ce(model, train=False), rel=1e-5)
    lin1, lin2 = copy.deepcopy(model[0]), copy.deepcopy(model[3])
    plain = nn.Sequential(lin1, nn.ReLU(), lin2)
    assert _loss(result, "no_norm") == pytest.approx(_ce(plain, train=False), rel=1e-5)
    layer = nn.Sequential(lin1, nn.LayerNorm(12), nn.ReLU(), lin2)
    assert _loss(result, "bn_to_layer") == pytest.approx(_ce(layer, train=False), rel=1e-5)
    assert "bn_to_group" in result.skipped and "groups" in result.skipped["bn_to_group"]


def test_table_has_a_row_per_run_and_measure_and_layers_per_variant():
    result = audit(seeded(bn_mlp), DATA, measures=CHEAP, variants=["as_given", "no_norm"])
    table = result.table
    assert list(table.columns[:5]) == ["variant", "surgery", "bn_mode", "measure", "value"]
    assert len(table) == 3 * 3 and (table.status == "ok").all()
    assert set(table.bn_mode) == {"train", "eval", ""}
    layers = result.layers
    grads = layers[(layers.measure == "gradient_norms") & (layers.quantity == "norms")]
    # the batch norm's affine weight is a layer of as_given, not of no_norm
    assert set(grads[grads.variant == "as_given/train"].layer) == {"0", "1", "3"}
    assert set(grads[grads.variant == "no_norm"].layer) == {"0", "3"}
    gaps = layers[(layers.measure == "isometry_gap") & (layers.quantity == "isometry_gap")]
    assert gaps.value.map(math.isfinite).all()
    assert result.wide().shape == (3, 3)


def test_same_seed_gives_the_same_table():
    a = audit(seeded(bn_mlp), DATA, measures=["loss", "sharpness"], variants=["as_given"])
    b = audit(seeded(bn_mlp), DATA, measures=["loss", "sharpness"], variants=["as_given"])
    assert a.table.value.tolist() == b.table.value.tolist()


def test_resnet_with_batch_norm_is_audited_and_group_norm_skipped():
    data = gaussian_data(shape=(1, 6, 6))
    result = audit(seeded(TinyResNet), data, measures=CHEAP, bn_modes=["train"])
    assert [r.label for r in result.runs] == [
        "as_given/train",
        "no_norm",
        "bn_to_layer",
        "bn_to_rms",
    ]
    assert (result.table.status == "ok").all()
    assert result.norm_layers == [("bn", "batch"), ("block.bn1", "batch"), ("block.bn2", "batch")]
    assert "bn_to_group" in result.skipped


def test_layer_norm_transformer_reports_that_batch_norm_variants_were_skipped():
    result = audit(seeded(TinyTransformer), DATA, measures=[*CHEAP, "sharpness"])
    assert [(r.label, r.bn_mode) for r in result.runs] == [("as_given", ""), ("no_norm", "")]
    assert (result.table.status == "ok").all()
    assert set(result.skipped) == {"bn_to_layer", "bn_to_rms", "bn_to_group"}
    assert any("no batch norm layer found" in n for n in result.notes)


def test_model_without_normalization_says_so_instead_of_failing():
    result = audit(seeded(plain_mlp), DATA, measures=CHEAP)
    assert "no normalization layers found; variants that need them were skipped" in result.notes
    assert [r.label for r in result.runs] == ["as_given"]
    assert set(result.skipped) == set(VARIANTS) - {"as_given"}


def test_explicit_unknown_measure_is_an_error():
    with pytest.raises(UnknownNameError, match="sharpness"):
        audit(seeded(plain_mlp), DATA, measures=["sharpnes"])


def test_unregistered_default_measures_are_skipped_with_a_note(monkeypatch):
    monkeypatch.setattr(audit_run, "DEFAULT_MEASURES", ("loss", "not_yet_written"))
    result = audit(seeded(plain_mlp), DATA)
    assert result.measures == ["loss"]
    assert "default measures not available here, skipped: not_yet_written" in result.notes


def test_a_failing_measure_is_reported_and_the_others_are_taken(monkeypatch):
    real = audit_run._take

    def take(name, subject, options, seed):
        if name == "gradient_norms" and subject.bn_mode == "eval":
            raise RuntimeError("no double backward here")
        return real(name, subject, options, seed)

    monkeypatch.setattr(audit_run, "_take", take)
    result = audit(seeded(bn_mlp), DATA, measures=CHEAP, variants=["as_given"])
    failed = result.table[result.table.status == "failed"]
    assert failed[["variant", "measure"]].values.tolist() == [["as_given/eval", "gradient_norms"]]
    assert "no double backward here" in failed.notes.item()
    assert math.isnan(failed.value.item())


def test_budget_picks_cheaper_settings_and_says_so():
    result = audit(seeded(bn_mlp), DATA, budget_seconds=3.0, variants=["as_given"])
    assert any(n.startswith("calibration on 16 samples of as_given/train") for n in result.notes)
    chose = next(n for n in result.notes if n.startswith("budget 3 s: chose"))
    assert result.settings["tier"] in ("default", "cheap")
    assert f"{result.settings['n']} of 64" in chose or "all 64" in chose
    assert result.measures[0] == "loss"
    assert set(result.measures) | set(result.settings["dropped"]) == {
        m for m in audit_run.DEFAULT_MEASURES if m in measures.names()
    }
    assert result.seconds < 30


def test_data_that_does_not_fit_the_model_is_a_shape_error():
    with pytest.raises(ShapeError):
        audit(seeded(plain_mlp), gaussian_data(shape=(5,)), measures=["loss"])


def test_every_default_measure_runs_on_every_variant_of_a_batch_norm_model():
    result = audit(seeded(bn_mlp), DATA)
    expected = [m for m in audit_run.DEFAULT_MEASURES if m in measures.names()]
    assert result.measures == expected
    assert (result.table.status == "ok").all(), result.table[result.table.status != "ok"]
    details = result.details.set_index(["variant", "measure", "key"]).value
    for run in result.runs:
        if "input_lipschitz" in expected:
            lower = details[(run.label, "input_lipschitz", "lower_bound")]
            assert lower <= details[(run.label, "input_lipschitz", "upper_bound")] * (1 + 1e-6)
    per_layer = result.layers.groupby(["measure", "quantity"]).variant.nunique()
    assert per_layer[("gradient_norms", "norms")] == len(result.runs)
    assert per_layer[("isometry_gap", "isometry_gap")] == len(result.runs)


def test_after_the_deadline_only_the_loss_is_taken_for_every_variant():
    from normscope.auditing.budget import plan_for
    from normscope.auditing.data import Sample
    from normscope.auditing.variants import build_variants, runs_of

    runs = runs_of(build_variants(seeded(bn_mlp), VARIANTS, DATA.x[:4]), ["train"])
    plan = plan_for("default", len(DATA), CHEAP)
    sample = Sample(DATA, None, len(DATA))
    records = audit_run._measure_runs(runs, sample, "cross_entropy", plan, CHEAP, 0, 0.0, None)
    for record in records:
        assert list(record.measurements) == ["loss"]
        assert set(record.skipped) == {"gradient_norms", "isometry_gap"}
