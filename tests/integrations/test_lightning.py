"""The Lightning callback: logged values equal direct measurements; training unchanged."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from normscope import Subject, measures
from normscope.errors import ConfigError

from tests.integrations.observe import (
    assert_logged_equals_direct,
    assert_same_training,
    final_state,
    scalars,
    snapshot,
)

pl = pytest.importorskip("lightning.pytorch")
TensorBoardLogger = pytest.importorskip("lightning.pytorch.loggers").TensorBoardLogger
from normscope.integrations.lightning import NormscopeCallback  # noqa: E402

STEPS, EVERY = 4, 2
SHARPNESS = {"tol": 1e-4}


class Classifier(pl.LightningModule):
    """Batch norm (running statistics), dropout (random masks) and Adam (optimizer
    state): everything a callback could disturb."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(6, 12), nn.BatchNorm1d(12), nn.Tanh(), nn.Dropout(0.2), nn.Linear(12, 3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, index):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.05)


def data():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(96, 6, generator=g), torch.randint(0, 3, (96,), generator=g)
    # the probe is a DataLoader: merely iterating one draws from torch's global generator
    probe = DataLoader(TensorDataset(x[:32], y[:32]), batch_size=16)
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True), probe


class Observer(pl.Callback):
    """Copies the model at every step and what training left behind at its end."""

    def __init__(self) -> None:
        self.states: dict[int, dict[str, torch.Tensor]] = {}
        self.end: dict[str, object] = {}

    def on_train_start(self, trainer, module):
        self.states[trainer.global_step] = snapshot(module)

    def on_train_batch_end(self, trainer, module, outputs, batch, index):
        self.states[trainer.global_step] = snapshot(module)

    def on_train_end(self, trainer, module):
        self.end = final_state(module, trainer.optimizers[0])


def fit(folder, *callbacks, **trainer_options) -> Observer:
    observer = Observer()
    loader, _ = data()
    pl.seed_everything(0, verbose=False)
    trainer_options.setdefault("max_steps", STEPS)
    trainer = pl.Trainer(
        accelerator="cpu",
        callbacks=[*callbacks, observer],
        logger=TensorBoardLogger(str(folder), name="run"),
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        deterministic=True,
        **trainer_options,
    )
    trainer.fit(Classifier(), loader)
    return observer


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lightning")
    callback = NormscopeCallback(
        ["loss", "sharpness"], every_n_steps=EVERY, data=data()[1], options={"sharpness": SHARPNESS}
    )
    measured = fit(folder / "measured", callback)
    plain = fit(folder / "plain")
    return folder, callback, measured, plain


def direct(state: dict[str, torch.Tensor]) -> tuple[float, float]:
    model = Classifier()
    model.load_state_dict(state)
    s = Subject(model, data()[1], loss="cross_entropy", bn_mode="train")
    return measures.loss(s).value, measures.sharpness(s, **SHARPNESS).value


def test_tensorboard_values_equal_a_direct_measurement_at_the_same_step(runs):
    folder, _, _, plain = runs
    steps = list(range(0, STEPS + 1, EVERY))
    assert_logged_equals_direct(folder / "measured", "normscope/", plain.states, direct, steps)


def test_training_is_bit_identical_with_and_without_the_callback(runs):
    _, _, measured, plain = runs
    assert_same_training(measured, plain)


def test_warm_start_and_cost_are_logged(runs):
    folder, callback, _, _ = runs
    hvp = scalars(folder / "measured", "normscope/sharpness.cost.hvp")
    assert set(hvp) == set(range(0, STEPS + 1, EVERY)) and min(hvp.values()) > 0
    assert callback.tracker.series("sharpness")[0].tolist() == [0, 2, 4]


def test_every_n_epochs_measures_after_the_last_step_of_each_epoch(tmp_path):
    callback = NormscopeCallback(["loss"], every_n_epochs=1, data=data()[1])
    fit(tmp_path, callback, max_epochs=2, max_steps=-1)
    # 96 samples in batches of 16: 6 steps an epoch
    assert sorted(scalars(tmp_path, "normscope/loss")) == [6, 12]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({}, "exactly one of every_n_steps"),
        ({"every_n_steps": 1, "every_n_epochs": 1}, "exactly one of every_n_steps"),
        ({"every_n_steps": 0}, "every_n_steps must be"),
        ({"every_n_steps": 1, "data": None}, "needs fixed probe data"),
        ({"every_n_steps": 1, "every": 3}, "instead of every"),
    ],
)
def test_bad_schedules_and_missing_data_are_refused(options, match):
    options = {"data": data()[1], **options}
    with pytest.raises(ConfigError, match=match):
        NormscopeCallback(["loss"], **options)
