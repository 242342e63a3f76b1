"""A measurement across two gloo processes equals the one-process measurement.

Two ranks are spawned per task; each holds a shard of the batches (batches of 6, 6, 6,
6 and 2 samples: two on rank 0, three on rank 1, so the weights differ across ranks).
Every sharded measure, on every path, must give on both ranks bit-identical numbers, and
the one-process numbers to 1e-10 relative in float64 and 1e-5 in float32, with batch norm
in train mode (per-batch statistics) and in eval mode.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from normscope import Subject, measures
from normscope.curvature import dense_hessian
from normscope.distributed import shard, shard_bounds
from normscope.errors import ConfigError

from tests.distributed.cases import (
    BATCH,
    CASES,
    data,
    measure_all,
    measurements,
    model,
    relative_difference,
    without_counted_terms,
)
from tests.distributed.workers import spawn

TOLERANCE = {"float64": 1e-10, "float32": 1e-5}
LABELS = [*measurements("float64"), "loss_gradient"]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Each task's results on rank 0 and rank 1 (one spawn per task, shared by the tests)."""
    cache: dict[str, list[dict]] = {}

    def run(task: str) -> list[dict]:
        if task not in cache:
            cache[task] = spawn(task, tmp_path_factory.mktemp(task))
        return cache[task]

    return run


@pytest.fixture(scope="module")
def one_process():
    """The same measurements in this process, on all the data."""
    out = {}
    for dtype, bn_mode in CASES:
        s = Subject(model(dtype), data(dtype), bn_mode=bn_mode, batch_size=BATCH)
        out[f"{dtype}-{bn_mode}"] = measure_all(s, dtype)
    return out


def _compare(found: dict, expected: dict, tol: float) -> list[str]:
    bad = []
    for key, values in expected.items():
        gap = relative_difference(found[key], values)
        if key == "residuals":  # rounding-sized after convergence: judged on the eigenvalues
            gap = relative_difference(found[key], values, scale=expected["eigenvalues"])
        if not gap <= tol:
            bad.append(f"{key}: relative difference {gap:.2e}")
    return bad


@pytest.mark.timeout(900)
@pytest.mark.parametrize("case", [f"{d}-{bn}" for d, bn in CASES])
def test_every_sharded_measure_equals_one_process(two_ranks, one_process, case):
    rank0, rank1 = two_ranks("measure_cases")
    assert rank0[case] == rank1[case]  # replicated solvers: bit-identical on every rank
    tol = TOLERANCE[case.split("-")[0]]
    bad = {
        label: problems
        for label in LABELS
        if (problems := _compare(rank0[case][label], one_process[case][label], tol))
    }
    assert not bad, bad
    assert rank0[f"{case}-settings"] == {"num_samples": "26", "num_batches": "5"}


@pytest.mark.timeout(900)
def test_streamed_batches_per_rank_equal_one_process_over_the_same_batches(two_ranks, one_process):
    rank0, rank1 = two_ranks("streamed_case")
    assert rank0 == rank1
    x, y = data("float64")
    batches = [(x[i : i + BATCH], y[i : i + BATCH]) for i in range(0, len(x), BATCH)]
    expected = measure_all(Subject(model("float64"), batches, bn_mode="train"), "float64")
    bad = {
        label: problems
        for label in LABELS
        if (problems := _compare(rank0[label], expected[label], 1e-10))
    }
    assert not bad, bad


@pytest.mark.timeout(900)
def test_a_shard_without_counted_terms_takes_part_in_every_sum(two_ranks):
    rank0, rank1 = two_ranks("shard_without_counted_terms")
    assert rank0 == rank1
    s = Subject(model("float64"), without_counted_terms(), batch_size=BATCH)
    expected = measure_all(s, "float64")
    bad = {
        label: problems
        for label in LABELS
        if (problems := _compare(rank0[label], expected[label], 1e-10))
    }
    assert not bad, bad


@pytest.mark.timeout(900)
def test_dense_hessian_from_the_gradient_summed_over_ranks_is_the_one_process_hessian(two_ranks):
    """Finite differences of the autograd gradient through ``Subject.loss``, whose backward
    pass sums the parameter gradient over the ranks: the ground truth itself runs sharded."""
    rank0, rank1 = two_ranks("dense_hessian_case")
    found = torch.tensor(rank0["hessian"], dtype=torch.float64)
    assert rank0 == rank1
    expected = dense_hessian(Subject(model("float64"), data("float64"), batch_size=BATCH))
    assert torch.allclose(found, expected, rtol=0, atol=1e-8 * float(expected.abs().max()))


@pytest.mark.timeout(900)
def test_what_cannot_be_sharded_is_refused_on_every_rank(two_ranks):
    rank0, rank1 = two_ranks("refusals")
    for rank in (rank0, rank1):
        assert rank["unsharded"].startswith("ConfigError: measure 'input_lipschitz' is not sharded")
        assert "would see only this rank's batches" in rank["unsharded"]
        assert rank["spherical"].startswith("ConfigError: measure 'spherical_sharpness' is not")
        assert rank["full_batch_statistics"].startswith("ConfigError: the model normalizes")
        assert "full-batch statistics are not synchronized" in rank["full_batch_statistics"]
        assert rank["other_parameters"].startswith(
            "DistributedError: the ranks disagree on parameter values"
        )
        assert rank["other_bn_mode"].startswith("DistributedError: the ranks disagree on bn_mode")
        assert rank["second_derivative"].startswith("RuntimeError")  # never a local value
        assert rank["train"].startswith("ConfigError: train() updates one process's model")
    assert rank1["nan_on_one_rank"].startswith(
        "DataError: data 'tensors in 3 batches of 6' has NaN or inf"
    )
    assert rank0["nan_on_one_rank"].startswith("DistributedError: rank 1 of 2 failed: DataError")
    # the group still works after every refusal
    full = Subject(model("float64"), data("float64"), batch_size=BATCH)
    expected = measures.sharpness(full, tol=1e-8).value
    assert rank0["after_errors"] == rank1["after_errors"]
    assert abs(rank0["after_errors"] - expected) <= 1e-10 * expected


@pytest.mark.timeout(900)
def test_without_batch_statistics_one_batch_per_rank_is_the_full_batch(two_ranks):
    rank0, rank1 = two_ranks("refusals")
    full = Subject(model("float64"), data("float64"), bn_mode="eval")
    expected = measures.sharpness(full, tol=1e-10).value
    assert rank0["one_batch_per_rank_eval"] == rank1["one_batch_per_rank_eval"]
    assert abs(rank0["one_batch_per_rank_eval"] - expected) <= 1e-10 * expected


# ----------------------------------------------------------------------------- shards
def test_shards_are_contiguous_whole_batches_covering_the_data_once():
    for n, batch, world in [(26, 6, 2), (4096, 512, 2), (100, 7, 3), (10, None, 4)]:
        parts = [shard_bounds(n, batch, q, world) for q in range(world)]
        assert parts[0].start == 0 and parts[-1].stop == n
        assert all(a.stop == b.start for a, b in itertools.pairwise(parts))
        if batch:
            assert all(p.start % batch == 0 for p in parts)
            sizes = [-(-(p.stop - p.start) // batch) for p in parts]
            assert max(sizes) - min(sizes) <= 1


def test_more_processes_than_batches_is_refused():
    with pytest.raises(ConfigError, match="cannot shard 2 batches of 6 over 3 processes"):
        shard_bounds(12, 6, 0, 3)


def test_shard_without_a_group_gives_the_data_back():
    pair = data("float64")
    assert shard(pair, None, batch_size=BATCH) is pair


def test_a_process_group_needs_torch_distributed_initialized():
    with pytest.raises(ConfigError, match=r"torch\.distributed is not initialized"):
        Subject(model("float64"), data("float64"), process_group=object())
