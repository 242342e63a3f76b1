import random

import numpy as np
import pytest
import torch

from normscope.data import load
from normscope.data import mnist1d as source
from normscope.errors import ConfigError


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("NORMSCOPE_CACHE", str(folder))
    return folder


def test_generation_leaves_global_random_states_unchanged():
    np.random.seed(123)
    random.seed(7)
    np_before, py_before = np.random.get_state(), random.getstate()
    source.generate(20)
    np_after, py_after = np.random.get_state(), random.getstate()
    assert np_before[0] == np_after[0] and np_before[2:] == np_after[2:]
    np.testing.assert_array_equal(np_before[1], np_after[1])
    assert py_before == py_after


def test_state_is_restored_when_the_generator_fails():
    np.random.seed(5)
    expected = np.random.get_state()[1].copy()
    with pytest.raises(RuntimeError), source.preserved_global_rng():
        np.random.seed(99)
        raise RuntimeError("generator failed")
    np.testing.assert_array_equal(np.random.get_state()[1], expected)


def test_small_generation_shapes_dtypes_and_classes():
    train, test = load("mnist1d", num_samples=50), load("mnist1d", split="test", num_samples=50)
    assert train.x.shape == (40, 40) and test.x.shape == (10, 40)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    assert train.num_classes == 10 and int(train.y.max()) <= 9
    every = load("mnist1d", split="all", num_samples=50)
    assert torch.equal(every.x, torch.cat([train.x, test.x]))


def test_second_load_reads_the_npz_cache_without_generating(cache, monkeypatch):
    first = load("mnist1d", num_samples=30)
    assert [p.suffix for p in cache.iterdir()] == [".npz"]

    def fail(num_samples):
        raise AssertionError("generated although cached")

    monkeypatch.setattr(source, "generate", fail)
    second = load("mnist1d", num_samples=30)
    assert torch.equal(first.x, second.x) and torch.equal(first.y, second.y)


def test_cached_arrays_equal_a_fresh_generation():
    cached = load("mnist1d", split="all", num_samples=30)
    fresh = source.generate(30)
    np.testing.assert_allclose(
        cached.x.numpy(), np.concatenate([fresh["x"], fresh["x_test"]]), rtol=1e-6
    )


def test_corrupt_cache_file_is_regenerated(cache):
    expected = load("mnist1d", num_samples=20)
    path = source.cache_path(20)
    path.write_bytes(b"not a zip archive")
    again = load("mnist1d", num_samples=20)
    assert torch.equal(expected.x, again.x)
    with np.load(path, allow_pickle=False) as npz:
        assert set(npz.files) == {"x", "y", "x_test", "y_test"}


def test_default_generation_is_the_published_4000_1000_split():
    train, test = load("mnist1d"), load("mnist1d", split="test")
    assert len(train) == 4000 and len(test) == 1000
    assert torch.bincount(train.y, minlength=10).min() > 300
    every = torch.cat([train.x, test.x]).double()
    # The generator centres the whole set and scales it to unit standard deviation.
    assert abs(every.mean().item()) < 1e-6 and abs(every.std().item() - 1.0) < 1e-3


@pytest.mark.parametrize("num_samples", [0, 5, 25])
def test_num_samples_must_be_a_positive_multiple_of_ten(num_samples):
    with pytest.raises(ConfigError, match="num_samples"):
        load("mnist1d", num_samples=num_samples)
