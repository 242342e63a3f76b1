"""The Hugging Face Trainer callback: logged values equal direct measurements; training
unchanged."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from normscope import Subject, measures
from normscope.errors import ConfigError

from tests.integrations.observe import (
    assert_logged_equals_direct,
    assert_same_training,
    final_state,
    scalars,
    snapshot,
)

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")
from normscope.integrations.huggingface import NormscopeCallback  # noqa: E402

STEPS, EVERY = 4, 2
SHARPNESS = {"tol": 1e-4}
CONFIG = {
    "vocab_size": 32,
    "hidden_size": 8,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 16,
    "max_position_embeddings": 16,
    "num_labels": 3,
}


def model():
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(transformers.BertConfig(**CONFIG))


def data():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 32, (48, 10), generator=g)
    labels = ids[:, 0] % 3
    train = [{"input_ids": ids[i], "labels": labels[i]} for i in range(len(ids))]
    # batches as a data collator makes them, from a DataLoader: merely iterating one
    # draws from torch's global generator
    probe = DataLoader(train[:12], batch_size=6)
    return train, probe


class Observer(transformers.TrainerCallback):
    """Copies the model at every step and what training left behind at its end."""

    def __init__(self) -> None:
        self.states: dict[int, dict[str, torch.Tensor]] = {}
        self.end: dict[str, object] = {}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.states[state.global_step] = snapshot(model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.states[state.global_step] = snapshot(model)

    def on_train_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        self.end = final_state(model, optimizer)


def trainer(folder, **options):
    args = transformers.TrainingArguments(
        output_dir=str(folder),
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        report_to=["tensorboard"],
        logging_steps=1,
        save_strategy="no",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        **{"max_steps": STEPS, **options},
    )
    return transformers.Trainer(model=model(), args=args, train_dataset=data()[0])


def fit(folder, monkeypatch, callback=None, **options) -> Observer:
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(folder / "tb"))
    t = trainer(folder, **options)
    if callback is not None:
        callback.attach(t)
    observer = Observer()
    t.add_callback(observer)
    t.train()
    return observer


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("huggingface")
    callback = NormscopeCallback(
        ["loss", "sharpness"], every_n_steps=EVERY, data=data()[1], options={"sharpness": SHARPNESS}
    )
    with pytest.MonkeyPatch.context() as mp:
        measured = fit(folder / "measured", mp, callback)
        plain = fit(folder / "plain", mp)
    return folder, callback, measured, plain


def direct(state: dict[str, torch.Tensor]) -> tuple[float, float]:
    m = model()
    m.load_state_dict(state)
    s = Subject(m, data()[1], loss="cross_entropy")
    return measures.loss(s).value, measures.sharpness(s, **SHARPNESS).value


def test_tensorboard_values_equal_a_direct_measurement_at_the_same_step(runs):
    folder, _, _, plain = runs
    # the Trainer's TensorBoard callback files everything it is given under train/
    steps = list(range(0, STEPS + 1, EVERY))
    assert_logged_equals_direct(
        folder / "measured" / "tb", "train/normscope/", plain.states, direct, steps
    )


def test_training_is_bit_identical_with_and_without_the_callback(runs):
    _, _, measured, plain = runs
    assert_same_training(measured, plain)


def test_values_are_in_the_trainers_log_history_at_their_step(runs):
    _, callback, _, _ = runs
    history = {
        h["step"]: h["normscope/loss"]
        for h in callback.trainer.state.log_history
        if "normscope/loss" in h
    }
    steps, values = callback.tracker.series("loss")
    assert history == dict(zip(steps.tolist(), values.tolist(), strict=True))


def test_every_n_epochs_measures_at_each_epoch_end(tmp_path, monkeypatch):
    callback = NormscopeCallback(["loss"], every_n_epochs=1, data=data()[1])
    fit(tmp_path, monkeypatch, callback, max_steps=-1, num_train_epochs=2)
    # 48 samples in batches of 8: 6 steps an epoch
    assert sorted(scalars(tmp_path / "tb", "train/normscope/loss")) == [6, 12]


def test_a_callback_given_to_the_trainer_without_attach_says_how_to_add_it(tmp_path):
    t = trainer(tmp_path)
    t.add_callback(NormscopeCallback(["loss"], every_n_steps=1, data=data()[1]))
    with pytest.raises(ConfigError, match=r"attach\(trainer\)"):
        t.train()
