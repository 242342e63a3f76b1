"""Loggers: TensorBoard event files, CSV and offline W&B runs hold what was logged."""

from __future__ import annotations

import csv
import math

import pytest

from normscope import data, nets
from normscope.errors import ConfigError, UnknownNameError
from normscope.loggers import (
    CSVLogger,
    Logger,
    TensorBoardLogger,
    WandbLogger,
    open_logger,
    parse_target,
)
from normscope.train import Tracker

from tests.integrations.observe import scalars, wandb_history

LOGGED = [(0, {"sharpness": 12.5, "loss": 0.25}), (5, {"sharpness": 9.0, "two_over_lr": math.inf})]


def log_all(logger: Logger) -> None:
    with logger:
        for step, metrics in LOGGED:
            logger.log_metrics(metrics, step)


def expected(name: str) -> dict[int, float]:
    return {step: m[name] for step, m in LOGGED if name in m}


def test_csv_logger_writes_one_tidy_row_per_number_and_appends(tmp_path):
    path = tmp_path / "deep" / "tracked.csv"
    log_all(CSVLogger(path))
    log_all(CSVLogger(path))  # a second run appends below the same header
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 2 * sum(len(m) for _, m in LOGGED)
    first = [(int(r["step"]), r["name"], float(r["value"])) for r in rows[:4]]
    assert first == [(s, k, v) for s, m in LOGGED for k, v in m.items()]


def test_tensorboard_logger_writes_scalars_tensorboard_reads_back(tmp_path):
    pytest.importorskip("tensorboard")
    log_all(TensorBoardLogger(tmp_path))
    for name in ("sharpness", "loss", "two_over_lr"):
        assert scalars(tmp_path, name) == expected(name)


def test_wandb_logger_in_offline_mode_writes_a_run_with_every_value(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "home"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    log_all(WandbLogger(project="normscope-test", dir=str(tmp_path), mode="offline"))
    history = wandb_history(tmp_path)
    assert history == {step: metrics for step, metrics in LOGGED}


def test_open_logger_puts_each_run_in_its_own_place(tmp_path):
    pytest.importorskip("tensorboard")
    log_all(open_logger("csv", tmp_path, run="exp/run1"))
    log_all(open_logger("tensorboard", tmp_path, run="exp/run1"))
    assert (tmp_path / "exp" / "run1.csv").exists()
    assert scalars(tmp_path / "exp" / "run1", "loss") == expected("loss")


@pytest.mark.parametrize(
    ("text", "error", "match"),
    [
        ("tensorboard", ConfigError, "KIND:FOLDER"),
        ("csv:", ConfigError, "KIND:FOLDER"),
        ("tensorbord:runs", UnknownNameError, "Did you mean 'tensorboard'"),
    ],
)
def test_parse_target_refuses_what_it_cannot_use(text, error, match):
    with pytest.raises(error, match=match):
        parse_target(text)


def test_open_logger_refuses_a_run_name_that_leaves_the_folder(tmp_path):
    with pytest.raises(ConfigError, match="relative path"):
        open_logger("csv", tmp_path, run="../elsewhere")


def test_tracker_writes_every_record_to_its_logger(tmp_path):
    d = data.load("digits", n=64, seed=0)
    model = nets.mlp(input_shape=d.input_shape, output_dim=10, width=8, depth=2, seed=0)
    tracker = Tracker(["loss"], every=1, data=d, logger=CSVLogger(tmp_path / "t.csv"))
    tracker.step(model, 0, lr=0.1)
    tracker.step(model, 3, lr=0.0)  # a schedule decayed to 0: no stability limit
    tracker.logger.close()
    rows = [
        (int(r["step"]), r["name"], float(r["value"]))
        for r in csv.DictReader((tmp_path / "t.csv").open())
    ]
    assert rows == [(r.step, r.name, r.value) for r in tracker.records]
    assert dict(zip(*tracker.series("two_over_lr"), strict=True)) == {0: 20.0, 3: math.inf}
