import pytest
import torch

from normscope.data import load
from normscope.data.seeding import generator
from normscope.data.teacher import teacher_forward, teacher_weights
from normscope.errors import ConfigError


@pytest.mark.parametrize("name", ["gaussian", "teacher"])
def test_classification_shapes_dtypes_and_label_range(name):
    data = load(name, n=64, dim=7, num_classes=5)
    assert data.x.shape == (64, 7) and data.x.dtype == torch.float32
    assert data.y.shape == (64,) and data.y.dtype == torch.int64
    assert data.task == "classification" and data.num_classes == 5
    assert int(data.y.min()) >= 0 and int(data.y.max()) < 5


@pytest.mark.parametrize("name", ["gaussian", "teacher"])
def test_regression_targets_are_float_matrices(name):
    data = load(name, n=30, dim=4, task="regression", output_dim=3)
    assert data.task == "regression" and data.num_classes is None
    assert data.y.shape == (30, 3) and data.y.dtype == torch.float32
    assert data.output_dim == 3


@pytest.mark.parametrize("name", ["gaussian", "teacher"])
def test_same_seed_same_data_other_seed_or_split_other_data(name):
    a, b = load(name, n=20, seed=5), load(name, n=20, seed=5)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, load(name, n=20, seed=6).x)
    assert not torch.equal(a.x, load(name, n=20, seed=5, split="test").x)


@pytest.mark.parametrize("name", ["gaussian", "teacher"])
def test_default_size_and_width(name):
    assert load(name).x.shape == (1000, 100)


def test_gaussian_inputs_have_unit_variance_and_zero_mean():
    x = load("gaussian", n=4000, dim=50).x.double()
    # Standard errors: mean 1/sqrt(2e5) ~ 2e-3, variance sqrt(2/2e5) ~ 3e-3.
    assert abs(x.mean().item()) < 0.015
    assert abs(x.var().item() - 1.0) < 0.02


@pytest.mark.parametrize("name", ["gaussian", "teacher"])
def test_input_scale_multiplies_the_same_draw(name):
    base = load(name, n=10, dim=3, task="regression")
    scaled = load(name, n=10, dim=3, task="regression", input_scale=2.5)
    torch.testing.assert_close(scaled.x, 2.5 * base.x)


def test_teacher_labels_are_argmax_of_its_regression_outputs():
    classes = load("teacher", n=200, dim=6, num_classes=4, seed=2)
    outputs = load("teacher", n=200, dim=6, task="regression", output_dim=4, seed=2)
    assert torch.equal(classes.x, outputs.x)
    assert torch.equal(classes.y, outputs.y.argmax(dim=1))


def test_teacher_is_one_network_for_train_and_test():
    layers = teacher_weights([5, 8, 8, 2], generator(3, 0))
    for split in ("train", "test"):
        data = load(
            "teacher",
            split=split,
            n=40,
            dim=5,
            width=8,
            depth=2,
            seed=3,
            task="regression",
            output_dim=2,
        )
        torch.testing.assert_close(data.y, teacher_forward(data.x, layers))


def test_teacher_is_odd_in_its_input():
    data = load("teacher", n=50, dim=4, task="regression", output_dim=3)
    layers = teacher_weights([4, 100, 100, 3], generator(0, 0))
    torch.testing.assert_close(teacher_forward(-data.x, layers), -data.y)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_teacher_gives_every_class_a_fair_share(seed):
    counts = torch.bincount(load("teacher", n=5000, seed=seed).y, minlength=10)
    assert counts.min().item() > 0.02 * 5000


@pytest.mark.parametrize(
    "options",
    [
        {"dim": 0},
        {"num_classes": 0},
        {"task": "ranking"},
        {"input_scale": -1.0},
        {"n": 2.5},
        {"output_dim": 0, "task": "regression"},
    ],
)
def test_bad_option_values_raise_config_error(options):
    with pytest.raises(ConfigError):
        load("gaussian", **options)


def test_teacher_rejects_zero_depth():
    with pytest.raises(ConfigError, match="depth"):
        load("teacher", depth=0)
