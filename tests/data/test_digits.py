import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from normscope.data import load


def _rows(x: torch.Tensor) -> list[tuple[float, ...]]:
    return sorted(map(tuple, x.reshape(len(x), -1).tolist()))


def test_sizes_shapes_and_classes_of_each_split():
    sizes = {"train": 1438, "test": 359, "all": 1797}  # 20 % of 1797 rounds to 359
    for split, size in sizes.items():
        data = load("digits", split=split)
        assert data.x.shape == (size, 64) and data.x.dtype == torch.float32
        assert data.y.shape == (size,) and data.y.dtype == torch.int64
        assert data.num_classes == 10


def test_unflattened_digits_are_one_channel_images():
    assert load("digits", flatten=False).x.shape == (1438, 1, 8, 8)


def test_raw_inputs_are_the_library_pixels_divided_by_16():
    data = load("digits", split="all", standardize=False)
    bunch = load_digits()
    np.testing.assert_allclose(data.x.numpy(), bunch.data / 16.0, rtol=1e-7)
    np.testing.assert_array_equal(data.y.numpy(), bunch.target)


def test_train_and_test_partition_all_images():
    train = load("digits", split="train", standardize=False, seed=4)
    test = load("digits", split="test", standardize=False, seed=4)
    every = load("digits", split="all", standardize=False)
    # Equal multisets of rows: every image lands in exactly one of the two splits.
    assert _rows(torch.cat([train.x, test.x])) == _rows(every.x)
    assert sorted(torch.cat([train.y, test.y]).tolist()) == sorted(every.y.tolist())


def test_split_is_fixed_by_seed():
    a = load("digits", split="test", seed=0)
    assert torch.equal(a.x, load("digits", split="test", seed=0).x)
    assert not torch.equal(a.x, load("digits", split="test", seed=1).x)


@pytest.mark.parametrize("split", ["train", "test"])
def test_both_splits_are_standardized_with_training_statistics(split):
    raw_train = load("digits", split="train", standardize=False, seed=3).x.double().numpy()
    raw = load("digits", split=split, standardize=False, seed=3).x.double().numpy()
    mean, std = raw_train.mean(axis=0), raw_train.std(axis=0, ddof=1)
    std[std == 0] = 1.0  # pixels blank in every training image are only centred
    expected = (raw - mean) / std
    np.testing.assert_allclose(load("digits", split=split, seed=3).x.numpy(), expected, atol=1e-5)


def test_standardized_training_pixels_have_zero_mean_and_unit_std():
    x = load("digits").x.double()
    varying = x.std(0) > 0
    torch.testing.assert_close(x.mean(0), torch.zeros(64, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(
        x.std(0)[varying], torch.ones(int(varying.sum()), dtype=torch.float64), atol=1e-5, rtol=0
    )
