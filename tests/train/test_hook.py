"""The [train] table of a spec runs through normscope.train.run_training end to end."""

from __future__ import annotations

import pytest
import torch

from normscope.errors import UnknownNameError
from normscope.experiments import Store, parse_spec, run_experiment
from normscope.results import load
from normscope.train import train

SPEC = """
name = "trained"

[subject]
net = { arch = "mlp", width = 8, depth = 2, norm = "batch", seed = 0 }
data = { name = "gaussian", n = 32, dim = 5, num_classes = 3 }
loss = "mse"
dtype = "float64"

[train]
lr = 0.1
steps = 6
weight_decay = 0.01

[[measure]]
name = "loss"
every = 2

[[measure]]
name = "loss"
label = "final_loss"
at = "end"
"""


def test_spec_with_train_tracks_measures_and_stores_them(tmp_path):
    spec = parse_spec(SPEC, source="t.toml")
    with Store(tmp_path / "r.db") as store:
        summary = run_experiment(spec, store, spec_toml=SPEC, quiet=True, workers=0)
    assert (summary.ok, summary.failed) == (1, 0)
    frame = load(tmp_path / "r.db")
    tracked = frame[frame["name"] == "loss"].sort_values("step")
    assert list(tracked["step"]) == [0, 2, 4, 6]
    assert tracked["value"].iloc[-1] < tracked["value"].iloc[0]
    final = frame[frame["name"] == "final_loss"]
    assert list(final["step"]) == [6]
    assert final["value"].iloc[0] == pytest.approx(tracked["value"].iloc[-1], rel=1e-12)


def test_unknown_train_option_is_refused_when_the_spec_is_parsed():
    text = SPEC.replace("weight_decay = 0.01", "weight_decay = 0.01\nnesterov = true")
    with pytest.raises(UnknownNameError, match=r"t\.toml: train: .*'nesterov'.*momentum"):
        parse_spec(text, source="t.toml")


DIGITS = """
name = "split"

[subject]
net = { arch = "mlp", width = 8, depth = 1, seed = 0 }
data = { name = "digits", n = 64, seed = 0 }
dtype = "float64"

[train]
lr = 0.5
steps = 4

[[measure]]
name = "loss"
label = "train_loss"

[[measure]]
name = "loss"
label = "test_loss"
split = "test"

[[measure]]
name = "loss"
label = "tracked_test_loss"
split = "test"
every = 2
"""


def test_measures_on_another_split_use_that_split(tmp_path):
    from normscope import Subject, data, nets

    spec = parse_spec(DIGITS, source="t.toml")
    with Store(tmp_path / "r.db") as store:
        summary = run_experiment(spec, store, spec_toml=DIGITS, quiet=True, workers=0)
    assert summary.ok == 1
    frame = load(tmp_path / "r.db").set_index(["name", "step"])["value"]
    test = data.load("digits", split="test", n=64, seed=0).to(torch.float64)
    model = nets.mlp(input_shape=(64,), output_dim=10, width=8, depth=1, seed=0, dtype="float64")
    train(Subject(model, data.load("digits", n=64, seed=0).to(torch.float64)), lr=0.5, steps=4)
    expected = Subject(model, test).loss().item()
    assert frame[("test_loss", 4)] == pytest.approx(expected, rel=1e-12)
    assert frame[("tracked_test_loss", 4)] == pytest.approx(expected, rel=1e-12)
    assert frame[("train_loss", 4)] != pytest.approx(expected, rel=1e-3)
