"""Several drivers on one store: no run is computed twice, no stored run is hidden, and
runs left by a driver that died are taken over."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from normscope.errors import StoreError
from normscope.experiments import Store, parse_spec, plan, run_experiment
from normscope.experiments import runner as runner_module
from normscope.experiments.execute import execute_run
from normscope.experiments.leases import HOST, alive, new_owner
from normscope.experiments.store import PlanConflictError
from normscope.results import load

from .conftest import TINY


class GatedExecution:
    """Stands in for inline execution: every run waits for ``go`` before it computes,
    and every computation is counted."""

    def __init__(self):
        self.go = threading.Event()
        self.computed: list[str] = []

    def __call__(self, runs):
        for run in runs:
            assert self.go.wait(60), "the test never opened the gate"
            self.computed.append(run.hash)
            yield execute_run(run.hash, run.config)


@pytest.fixture
def gate(monkeypatch):
    gated = GatedExecution()
    monkeypatch.setattr(runner_module, "iter_inline", gated)
    monkeypatch.setattr(runner_module, "POLL_SECONDS", 0.05)
    yield gated
    gated.go.set()


def start_driver(text: str, db, outcome: dict, key: str) -> threading.Thread:
    """``run_experiment`` of ``text`` in a thread with its own store connection."""

    def target():
        try:
            with Store(db) as store:
                outcome[key] = run_experiment(
                    parse_spec(text), store, spec_toml=text, workers=0, quiet=True
                )
        except Exception as err:  # handed to the test thread
            outcome[key] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def leased(store: Store) -> int:
    return store._query("SELECT count(*) FROM leases")[0][0]


def wait_for_leases(db, n: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with Store(db, readonly=True) as store:
                if leased(store) == n:
                    return
        except StoreError:  # not created yet, or being created
            pass
        time.sleep(0.02)
    raise AssertionError(f"the first driver never leased {n} runs")


def test_a_second_driver_of_the_same_spec_waits_instead_of_computing_again(tmp_path, gate):
    db, outcome = tmp_path / "r.db", {}
    first = start_driver(TINY, db, outcome, "first")
    wait_for_leases(db, 4)
    second = start_driver(TINY, db, outcome, "second")
    time.sleep(0.3)  # the second driver has found every run leased and is waiting
    assert "second" not in outcome
    gate.go.set()
    first.join(60)
    second.join(60)
    assert (outcome["first"].ok, outcome["first"].others) == (4, 0)
    assert (outcome["second"].ok, outcome["second"].others, outcome["second"].skipped) == (0, 4, 4)
    assert len(gate.computed) == len(set(gate.computed)) == 4
    assert len(load(db)) == 4


def test_a_different_spec_under_a_running_name_is_refused(tmp_path, gate):
    db, outcome = tmp_path / "r.db", {}
    first = start_driver(TINY, db, outcome, "first")
    wait_for_leases(db, 4)
    other = TINY.replace("[4, 8]", "[16, 32]")
    with Store(db) as store, pytest.raises(PlanConflictError, match="another normscope process"):
        run_experiment(parse_spec(other), store, spec_toml=other, workers=0, quiet=True)
    gate.go.set()
    first.join(60)
    assert outcome["first"].ok == 4
    assert sorted(load(db)["subject.net.width"]) == [4, 4, 8, 8]


def test_a_wider_spec_under_a_running_name_shares_the_runs(tmp_path, gate):
    db, outcome = tmp_path / "r.db", {}
    first = start_driver(TINY, db, outcome, "first")
    wait_for_leases(db, 4)
    wider = TINY.replace("[4, 8]", "[4, 8, 12]")
    second = start_driver(wider, db, outcome, "second")
    wait_for_leases(db, 6)
    gate.go.set()
    first.join(60)
    second.join(60)
    assert outcome["first"].ok == 4
    assert (outcome["second"].ok, outcome["second"].others) == (2, 4)
    assert len(gate.computed) == len(set(gate.computed)) == 6
    assert sorted(set(load(db)["subject.net.width"])) == [4, 8, 12]


def dead_owner() -> str:
    """The owner token of a process that has exited."""
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    owner = f"{HOST}:{int(child.stdout)}:1:dead"
    assert not alive(owner)
    return owner


@pytest.mark.parametrize("owner", ["dead", "other host"])
def test_runs_leased_by_a_driver_that_is_gone_are_taken_over(tmp_path, owner):
    token = dead_owner() if owner == "dead" else "elsewhere.example:1:1:abcd"
    db = tmp_path / "r.db"
    hashes = [r.hash for r in plan(parse_spec(TINY))]
    with Store(db) as store:
        store._write(
            lambda conn: conn.executemany(
                "INSERT INTO leases VALUES ('tiny', ?, ?, 't')", [(h, token) for h in hashes]
            )
        )
        summary = run_experiment(parse_spec(TINY), store, spec_toml=TINY, workers=0, quiet=True)
        assert leased(store) == 0
    assert (summary.ok, summary.others) == (4, 0)


def test_a_live_process_owner_is_alive_and_a_fresh_token_is_unique():
    mine = new_owner()
    assert alive(mine) and new_owner() != mine
    assert not alive("garbage")
