import pytest
import torch

from normscope.data import Dataset, load, names
from normscope.data.loading import train_statistics
from normscope.errors import ConfigError, UnknownNameError


def test_names_lists_every_source():
    assert names() == ["cifar10", "digits", "gaussian", "mnist", "mnist1d", "teacher"]


def test_unknown_name_lists_the_valid_names():
    with pytest.raises(UnknownNameError) as err:
        load("digitz")
    assert "Did you mean 'digits'" in str(err.value)
    assert all(name in str(err.value) for name in names())


def test_unknown_option_names_the_valid_options():
    with pytest.raises(ConfigError) as err:
        load("gaussian", dims=3)
    message = str(err.value)
    assert "'dims'" in message
    for option in ("dim", "task", "num_classes", "output_dim", "input_scale"):
        assert option in message


def test_flatten_is_an_option_only_of_image_sources():
    with pytest.raises(ConfigError, match="flatten"):
        load("gaussian", flatten=True)


def test_unknown_split_names_the_valid_splits():
    with pytest.raises(ConfigError, match="train, test"):
        load("gaussian", split="all")


@pytest.mark.parametrize("seed", [-1, 1.5, True])
def test_bad_seed_raises_config_error(seed):
    with pytest.raises(ConfigError, match="seed"):
        load("gaussian", seed=seed)


def test_root_for_a_generated_source_raises_config_error():
    with pytest.raises(ConfigError, match="mnist, cifar10"):
        load("gaussian", root=".")


def test_n_subsamples_real_data_deterministically():
    a, b = load("digits", n=50, seed=1), load("digits", n=50, seed=1)
    assert len(a) == 50 and torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    full = load("digits", seed=1)
    rows = {tuple(r.tolist()) for r in full.x}
    assert all(tuple(r.tolist()) in rows for r in a.x)
    assert not torch.equal(a.x, load("digits", n=50, seed=2).x)


def test_n_larger_than_the_split_raises_config_error():
    with pytest.raises(ConfigError, match="exceeds"):
        load("digits", split="test", n=10_000)


def test_train_statistics_per_channel_average_over_samples_and_pixels():
    x = torch.arange(2 * 3 * 2 * 2, dtype=torch.float64).reshape(2, 3, 2, 2)
    mean, std = train_statistics(x, "channel")
    assert mean.shape == std.shape == (3, 1, 1)
    for c in range(3):
        values = x[:, c].flatten()
        assert mean[c].item() == pytest.approx(values.mean().item())
        assert std[c].item() == pytest.approx(values.std().item())


def test_a_feature_constant_in_training_is_only_centred():
    train = torch.tensor([[1.0, 2.0], [3.0, 2.0], [5.0, 2.0]])
    mean, std = train_statistics(train, "feature")
    assert std.tolist() == [2.0, 1.0]
    test = Dataset(torch.tensor([[3.0, 2.5]]), None, task="regression")
    assert test.standardize(mean, std).x.tolist() == [[0.0, 0.5]]


def test_standardize_argument_overrides_the_source_default():
    raw = load("gaussian", n=200, dim=3, input_scale=4.0)
    standard = load("gaussian", n=200, dim=3, input_scale=4.0, standardize=True)
    torch.testing.assert_close(standard.x, (raw.x - raw.x.mean(0)) / raw.x.std(0))


def test_docstring_example_of_load_runs():
    import doctest

    from normscope.data import loading

    result = doctest.testmod(loading)
    assert result.attempted > 0 and result.failed == 0
