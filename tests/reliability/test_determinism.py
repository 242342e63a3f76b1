"""The same spec and seed store bit-identical numbers: run after run, inline or in one or
two worker processes, whatever the global random state was before."""

from __future__ import annotations

import pytest
import torch

from normscope.experiments import Store, parse_spec, plan, run_experiment
from normscope.experiments.execute import execute_run
from normscope.measurement import Measurement
from normscope.measures import register

from .stored import SWEEP, SWEEP_RUNS, stored_rows


@pytest.mark.parametrize("workers", [1, 2])
def test_worker_processes_store_the_same_bits_as_an_inline_run(tmp_path, reference_rows, workers):
    db = tmp_path / "r.db"
    with Store(db) as store:
        summary = run_experiment(
            parse_spec(SWEEP), store, spec_toml=SWEEP, workers=workers, quiet=True
        )
    assert summary.ok == SWEEP_RUNS
    rows = stored_rows(db)
    assert len(rows) == 3 * SWEEP_RUNS
    assert rows == reference_rows


def global_draw(subject):
    """Draws from torch's global generator (a test-only measure)."""
    return Measurement("test_global_draw", float(torch.randn(())), {}, {"seconds": 0.0})


@pytest.fixture
def global_draw_measure(monkeypatch):
    from normscope.measures import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    register("test_global_draw", family="test")(global_draw)


ONE_RUN = SWEEP.split("[sweep]")[0] + '[[measure]]\nname = "test_global_draw"\n'


def test_a_run_does_not_depend_on_the_global_random_state(global_draw_measure):
    run = plan(parse_spec(ONE_RUN))[0]
    results = []
    for seed in (0, 12345):
        torch.manual_seed(seed)
        results.append(execute_run(run.hash, run.config))
    first, second = ([(r.name, r.value, r.details) for r in res.rows] for res in results)
    assert results[0].status == "ok" and first == second
    other = plan(parse_spec(ONE_RUN.replace("width = 32", "width = 33")))[0]
    draws = {r.name: r.value for r in execute_run(other.hash, other.config).rows}
    assert draws["test_global_draw"] != dict((r[0], r[1]) for r in first)["test_global_draw"]


def test_a_run_leaves_the_callers_random_state_and_determinism_flag_as_they_were(
    global_draw_measure,
):
    run = plan(parse_spec(ONE_RUN))[0]
    torch.manual_seed(7)
    state = torch.get_rng_state()
    before = torch.are_deterministic_algorithms_enabled()
    execute_run(run.hash, run.config)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.are_deterministic_algorithms_enabled() == before
