import csv
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest

import normscope
import normscope.data
from normscope.experiments import Store, parse_spec, plan, run_experiment, theory_columns
from normscope.experiments.execute import execute_run
from normscope.experiments.runner import iter_local
from normscope.experiments.store import PlanConflictError
from normscope.measurement import Measurement
from normscope.measures import register
from normscope.results import load, wide

from .conftest import TINY


@theory_columns.register("test_half_width")
def _half_width(config, *, scale=0.5):
    return {"half_width": scale * config["subject"]["net"]["width"]}


def run(text, db, **kw):
    spec = parse_spec(text, source="t.toml")
    with Store(db) as store:
        return run_experiment(spec, store, spec_toml=text, quiet=True, **kw)


def test_inline_sweep_stores_every_run_and_auto_sizes_the_net(tmp_path):
    summary = run(TINY, tmp_path / "r.db", workers=0)
    assert (summary.planned, summary.ok, summary.failed) == (4, 4, 0)
    frame = load(tmp_path / "r.db")
    assert len(frame) == 4 and set(frame["name"]) == {"loss"}
    data = normscope.data.load("gaussian", n=24, dim=5, num_classes=3)
    assert set(frame["subject.net.input_shape"]) == {data.input_shape}
    assert set(frame["subject.net.output_dim"]) == {data.output_dim}
    assert frame["value"].notna().all() and (frame["value"] > 0).all()


def test_failed_run_is_recorded_and_the_sweep_goes_on(tmp_path):
    text = TINY.replace("seeds = [0, 1]", '"subject.data.task" = ["classification", "validation"]')
    summary = run(text, tmp_path / "r.db", workers=0)
    assert (summary.ok, summary.failed) == (2, 2)
    with Store(tmp_path / "r.db", readonly=True) as store:
        failed = [r for r in store.runs("tiny") if r["status"] == "failed"]
    assert all("ConfigError" in r["error"] and "validation" in r["error"] for r in failed)
    assert all("Traceback" in r["traceback"] for r in failed)


def test_rerun_skips_done_runs_and_retry_failed_redoes_failures(tmp_path):
    text = TINY.replace("seeds = [0, 1]", '"subject.data.task" = ["classification", "validation"]')
    run(text, tmp_path / "r.db", workers=0)
    again = run(text, tmp_path / "r.db", workers=0)
    assert (again.skipped, again.ok, again.failed) == (4, 0, 0)
    retry = run(text, tmp_path / "r.db", workers=0, retry_failed=True)
    assert (retry.skipped, retry.ok, retry.failed) == (2, 0, 2)


def test_changed_spec_under_a_stored_name_is_refused_and_hides_nothing(tmp_path):
    db = tmp_path / "r.db"
    run(TINY, db, workers=0)
    changed = TINY.replace("[4, 8]", "[8, 12]")
    with pytest.raises(PlanConflictError, match=r'2 stored run.*name = "tiny-2"'):
        run(changed, db, workers=0)
    assert sorted(load(db)["subject.net.width"]) == [4, 4, 8, 8]
    with Store(db, readonly=True) as store:
        assert "[4, 8]" in store.spec_toml("tiny")
    renamed = run(changed.replace('name = "tiny"', 'name = "tiny-2"'), db, workers=0)
    assert renamed.ok == 4
    frame = load(db)
    assert frame.groupby("experiment")["subject.net.width"].apply(sorted).to_dict() == {
        "tiny": [4, 4, 8, 8],
        "tiny-2": [8, 8, 12, 12],
    }


def test_a_spec_that_adds_sweep_values_extends_the_stored_runs(tmp_path):
    db = tmp_path / "r.db"
    run(TINY, db, workers=0)
    summary = run(TINY.replace("[4, 8]", "[4, 8, 12]"), db, workers=0)
    assert (summary.planned, summary.skipped, summary.ok) == (6, 4, 2)
    assert sorted(set(load(db)["subject.net.width"])) == [4, 8, 12]


def test_runs_of_another_normscope_version_are_not_hidden(tmp_path, monkeypatch):
    db = tmp_path / "r.db"
    run(TINY, db, workers=0)
    monkeypatch.setattr(normscope, "__version__", "99.0.0")
    with pytest.raises(PlanConflictError, match=r"made by normscope .* this is 99\.0\.0"):
        run(TINY, db, workers=0)
    assert len(load(db)) == 4


def test_two_worker_processes_give_the_same_numbers_as_inline(tmp_path):
    run(TINY, tmp_path / "a.db", workers=0)
    summary = run(TINY, tmp_path / "b.db", workers=2)
    assert summary.ok == 4
    a = load(tmp_path / "a.db").set_index("run")["value"].sort_index()
    b = load(tmp_path / "b.db").set_index("run")["value"].sort_index()
    assert list(a.index) == list(b.index) and (a == b).all()


def crash_on_width_8(run_hash, config):
    if config["subject"]["net"]["width"] == 8:
        os._exit(3)
    return execute_run(run_hash, config)


def test_a_dying_worker_fails_only_its_own_runs():
    runs = plan(parse_spec(TINY))
    results = {r.hash: r for r in iter_local(runs, 1, fn=crash_on_width_8)}
    by_width = {r.config["subject"]["net"]["width"]: results[r.hash].status for r in runs}
    assert by_width == {4: "ok", 8: "failed"}
    assert all("died" in results[r.hash].error for r in runs if results[r.hash].status != "ok")


def test_theory_columns_are_stored_and_broadcast_to_every_step(tmp_path):
    text = TINY + '\n[[theory]]\nname = "test_half_width"\nscale = 0.25\n'
    run(text, tmp_path / "r.db", workers=0)
    table = wide(load(tmp_path / "r.db"))
    assert (table["theory.half_width"] == 0.25 * table["subject.net.width"]).all()


def fake_training_module(calls):
    def run_training(subject, train_config, tracked, on_record):
        calls.append((train_config, [t.label for t in tracked]))
        with __import__("torch").no_grad():
            for p in subject.model.parameters():
                p.mul_(0.5)
        for step in range(0, train_config["steps"] + 1, tracked[0].every):
            on_record(step, tracked[0].label, tracked[0].fn(subject, **tracked[0].options))
        return train_config["steps"]

    def check_options(train_config, *, batch_size):
        calls.append(("checked", dict(train_config), batch_size))

    return types.SimpleNamespace(run_training=run_training, check_options=check_options)


def test_training_hook_gets_config_and_tracked_measures(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "normscope.train", fake_training_module(calls))
    text = TINY.split("[sweep]")[0] + textwrap.dedent("""
        at = "both"
        [[measure]]
        name = "loss"
        label = "tracked_loss"
        every = 2
        [train]
        steps = 4
        lr = 0.1
    """)
    run(text, tmp_path / "r.db", workers=0)
    assert calls[0] == ("checked", {"steps": 4, "lr": 0.1}, None)
    assert calls[-1] == ({"steps": 4, "lr": 0.1}, ["tracked_loss"])
    frame = load(tmp_path / "r.db")
    steps = {(n, s) for n, s in zip(frame["name"], frame["step"], strict=True)}
    assert steps == {
        ("loss", 0),
        ("loss", 4),
        ("tracked_loss", 0),
        ("tracked_loss", 2),
        ("tracked_loss", 4),
    }
    loss = frame[frame["name"] == "loss"].set_index("step")["value"]
    assert loss[0] != loss[4]


def slow(subject):
    """Sleeps, then reports the sample count (a test-only measure)."""
    time.sleep(0.25)
    return Measurement("test_slow", subject.num_samples, {"x": [1.0, 2.0]})


@pytest.fixture
def slow_measure(monkeypatch):
    """``test_slow`` registered for one test only (a copy of the registry is patched in,
    so the measure never leaks into tests that iterate over every measure)."""
    from normscope.measures import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    register("test_slow", family="test")(slow)


SLOW_DRIVER = """
import sys
from normscope.measures import register
from normscope.experiments import Store, parse_spec, run_experiment
from tests.experiments.test_runner import slow

register("test_slow", family="test")(slow)

text = open(sys.argv[1]).read()
with Store(sys.argv[2]) as store:
    run_experiment(parse_spec(text), store, spec_toml=text, workers=0, quiet=True)
"""


def test_sigkill_mid_sweep_loses_only_runs_in_flight_and_resume_completes(tmp_path, slow_measure):
    spec = tmp_path / "s.toml"
    spec.write_text(
        TINY.replace('name = "loss"', 'name = "test_slow"').replace(
            "seeds = [0, 1]", "seeds = [0, 1, 2, 3]"
        )
    )
    driver = tmp_path / "driver.py"
    driver.write_text(SLOW_DRIVER)
    db = tmp_path / "r.db"
    root = Path(__file__).parents[2]
    proc = subprocess.Popen(
        [sys.executable, str(driver), str(spec), str(db)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    deadline = time.time() + 60
    done = 0
    while time.time() < deadline and done < 2:
        time.sleep(0.1)
        if db.exists():
            try:
                with sqlite3.connect(db) as conn:
                    done = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
            except sqlite3.OperationalError:
                continue  # the driver is still creating the schema, or holds the lock
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 2 <= done < 8
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
    rows = conn.execute("SELECT count(*) FROM measurements").fetchone()[0]
    conn.close()
    assert rows == stored
    text = spec.read_text()
    with Store(db) as store:
        resumed = run_experiment(parse_spec(text), store, spec_toml=text, workers=0, quiet=True)
    assert resumed.skipped == stored and resumed.ok == 8 - stored
    frame = load(db)
    assert len(frame) == 8 and frame["run"].is_unique


@pytest.mark.parametrize("workers", [-1])
def test_negative_workers_is_a_config_error(tmp_path, workers):
    from normscope.errors import ConfigError

    with pytest.raises(ConfigError, match="--workers"):
        run(TINY, tmp_path / "r.db", workers=workers)


CNN_ON_DIGITS = """
name = "cnn"
[subject]
net = {arch = "cnn", width = 2, depth = 1}
data = {name = "digits", n = 16}
[[measure]]
name = "loss"
[sweep]
"subject.data.flatten" = [true, false]
"""


def test_a_conv_net_on_flattened_images_says_so_in_every_measurement_of_the_run(tmp_path):
    run(CNN_ON_DIGITS, tmp_path / "r.db", workers=0)
    frame = load(tmp_path / "r.db").set_index("subject.data.flatten")
    (flat,) = frame.loc[True, "notes"]
    assert flat.startswith("arch 'cnn' on digits images flattened to shape (64,): a 1-D CNN")
    assert "flatten = false" in flat
    assert not any(n.startswith("arch") for n in frame.loc[False, "notes"])


@pytest.mark.parametrize(
    ("arch", "data", "noted"),
    [
        ("transformer", {"name": "digits"}, True),
        ("mlp", {"name": "digits"}, False),
        ("cnn", {"name": "mnist1d"}, False),  # a 1-D signal: a 1-D CNN is what is wanted
        ("cnn", {"name": "gaussian", "dim": 5}, False),
    ],
)
def test_only_image_architectures_on_flattened_images_get_the_note(arch, data, noted):
    from normscope.experiments.execute import run_notes

    config = {
        "subject": {
            "net": {"arch": arch, "input_shape": [64]},
            "data": {"n": 8, "split": "train", "seed": 0, **data},
        }
    }
    assert bool(run_notes(config)) is noted


def test_log_to_writes_every_stored_row_of_every_run_to_csv_and_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    from tests.integrations.observe import scalars

    text = TINY.split("[sweep]")[0] + textwrap.dedent("""
        [[measure]]
        name = "loss"
        label = "tracked_loss"
        every = 2
        [train]
        steps = 4
        lr = 0.1
        [sweep]
        seeds = [0, 1]
    """)
    run(text, tmp_path / "r.db", workers=0, log_to=[("csv", tmp_path), ("tensorboard", tmp_path)])
    frame = load(tmp_path / "r.db")
    assert set(frame["step"]) == {0, 2, 4}
    for run_hash, rows in frame.groupby("run"):
        stored = {
            (int(s), n): v
            for s, n, v in zip(rows["step"], rows["name"], rows["value"], strict=True)
        }
        with (tmp_path / "tiny" / f"{run_hash}.csv").open() as f:
            logged = {(int(r["step"]), r["name"]): float(r["value"]) for r in csv.DictReader(f)}
        assert logged == stored
        tracked = scalars(tmp_path / "tiny" / run_hash, "tracked_loss")
        want = {s: v for (s, n), v in stored.items() if n == "tracked_loss"}
        assert tracked == pytest.approx(want, rel=1e-6)
