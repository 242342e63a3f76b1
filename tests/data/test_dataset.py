import pytest
import torch

from normscope.data import Dataset
from normscope.errors import ConfigError, DataError


def _data(n: int = 10) -> Dataset:
    gen = torch.Generator().manual_seed(0)
    return Dataset(torch.randn(n, 3, generator=gen), torch.arange(n) % 4, num_classes=4)


def test_labels_outside_num_classes_raise_data_error():
    with pytest.raises(DataError, match="labels must lie in"):
        Dataset(torch.zeros(3, 2), torch.tensor([0, 1, 5]), num_classes=3)


def test_negative_labels_raise_data_error():
    with pytest.raises(DataError):
        Dataset(torch.zeros(2, 2), torch.tensor([-1, 0]), num_classes=2)


def test_float_labels_for_classification_raise_data_error():
    with pytest.raises(DataError, match="regression"):
        Dataset(torch.zeros(2, 2), torch.tensor([0.0, 1.0]))


def test_empty_data_raises_data_error():
    with pytest.raises(DataError, match="empty"):
        Dataset(torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64), num_classes=2)


def test_inputs_and_targets_of_different_length_raise_data_error():
    with pytest.raises(DataError, match="one target per input"):
        Dataset(torch.zeros(3, 2), torch.tensor([0, 1]))


def test_output_width_inferred_from_labels_when_num_classes_not_given():
    data = Dataset(torch.zeros(3, 2), torch.tensor([0, 2, 1]))
    assert data.num_classes is None  # labels need not cover every class
    assert data.output_dim == 3


def test_batch_is_the_same_for_the_same_seed_and_differs_across_seeds():
    data = _data(50)
    a, b, c = data.batch(10, seed=3), data.batch(10, seed=3), data.batch(10, seed=4)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, c.x)


def test_batch_draws_distinct_samples_of_the_set():
    data = _data(20)
    rows = {tuple(row.tolist()) for row in data.batch(20, seed=1).x}
    assert rows == {tuple(row.tolist()) for row in data.x}


def test_batch_larger_than_the_set_raises_config_error():
    with pytest.raises(ConfigError):
        _data(5).batch(6)


def test_split_partitions_the_samples():
    data = _data(20)
    train, test = data.split(0.25, seed=2)
    assert len(train) == 15 and len(test) == 5
    together = torch.cat([train.x, test.x])
    assert sorted(map(tuple, together.tolist())) == sorted(map(tuple, data.x.tolist()))


def test_to_float64_keeps_integer_labels():
    data = _data().to(torch.float64)
    assert data.x.dtype == torch.float64 and data.y.dtype == torch.int64
