"""The installed `normscope` command as a new user meets it: output redirected (not a
terminal), 80 columns wide. One store convention, errors that teach, output that fits."""

from __future__ import annotations

import textwrap

import pytest

from tests.experiments.conftest import TINY
from tests.helpers import run_script, wider_than

SPEC = (
    TINY
    + """
[[claim]]
name = "batch norm keeps the mean squared error of every initial network below one hundred"
type = "bounded"
y = "loss"
below = 100.0
[[claim]]
name = "the loss is positive"
type = "bounded"
y = "loss"
above = 0.0
"""
)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store holding the runs of SPEC, made by `normscope run` (redirected)."""
    folder = tmp_path_factory.mktemp("script")
    (folder / "tiny.toml").write_text(SPEC)
    done = run_script("run", "tiny.toml", "--db", "tiny.db", "--workers", "0", cwd=folder)
    assert done.returncode == 0, done.stderr
    return folder, done


def test_run_redirected_reports_progress_as_plain_lines_on_stderr(store):
    _, done = store
    assert "tiny: 4 runs planned, 0 already stored, 4 finished, 0 failed" in done.stdout
    lines = done.stderr.splitlines()
    assert lines[0].endswith("] tiny: 4 runs to do")
    assert [line.split("] ")[1] for line in lines[1:]] == [
        f"tiny: {k}/4 runs done, 0 failed" for k in range(1, 5)
    ]
    assert "━" not in done.stderr and not wider_than(done.stdout)


@pytest.mark.parametrize("spelling", [["--db", "tiny.db"], ["tiny.db"]], ids=["--db", "positional"])
def test_check_takes_the_store_as_db_or_as_its_argument_and_fits_80_columns(store, spelling):
    folder, _ = store
    done = run_script("check", *spelling, cwd=folder)
    assert done.returncode == 0, done.stderr
    assert not wider_than(done.stdout) and "…" not in done.stdout
    lines = done.stdout.splitlines()
    long_name = "batch norm keeps the mean squared error of every initial network below one hundred"
    assert f"PASS {long_name}" in " ".join(done.stdout.split())  # a block per claim, whole
    assert "PASS the loss is positive" in lines and lines[-1] == "2 of 2 claims pass"


def test_export_and_report_take_the_store_as_db(store):
    folder, _ = store
    done = run_script("export", "--db", "tiny.db", "-o", "tiny.csv", cwd=folder)
    assert done.returncode == 0 and "4 rows written to tiny.csv" in done.stdout
    done = run_script("report", "--db", "tiny.db", "-o", "site/report.html", cwd=folder)
    assert done.returncode == 0 and (folder / "site" / "report.html").stat().st_size > 0


def test_two_different_stores_are_a_usage_error(store):
    folder, _ = store
    done = run_script("check", "other.db", "--db", "tiny.db", cwd=folder)
    assert done.returncode == 2 and "give the store once, as --db PATH" in " ".join(
        done.stderr.split()
    )
    assert not (folder / "other.db").exists()


@pytest.mark.parametrize("command", ["export", "check", "report"])
def test_an_unknown_experiment_exits_2_with_the_closest_name(store, command):
    folder, _ = store
    done = run_script(command, "--db", "tiny.db", "--experiment", "tin", "-o", "x.out", cwd=folder)
    if command == "check":  # check has no -o
        done = run_script(command, "--db", "tiny.db", "--experiment", "tin", cwd=folder)
    assert done.returncode == 2, done.stdout + done.stderr
    text = " ".join(done.stderr.split())
    assert text.startswith("error: unknown experiment 'tin'. Did you mean 'tiny'?")
    assert "Traceback" not in done.stderr and not (folder / "x.out").exists()


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('loss = "mse"', 'loss = "mse"\n[train]\nlr = -0.1', "lr must be a finite number > 0"),
        ('loss = "mse"', 'loss = "mse"\n[train]\nlr = "0.1"', "lr must be a number, got '0.1'"),
        ("depth = 2,", "depth = 2, placement = [3],", "placement indices [3] are out of range"),
        ("width = 6", "width = true", "true/false is not a number"),
        ('y = "loss"\nabove', 'y = "los"\nabove', "no column 'los' will exist in this"),
    ],
    ids=["negative lr", "quoted lr", "placement", "boolean width", "claim column"],
)
def test_a_bad_spec_exits_2_before_the_store_is_touched(tmp_path, old, new, message):
    assert old in SPEC
    (tmp_path / "bad.toml").write_text(textwrap.dedent(SPEC.replace(old, new, 1)))
    done = run_script("run", "bad.toml", "--db", "new.db", cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in " ".join(done.stderr.split()) and "Traceback" not in done.stderr
    assert not (tmp_path / "new.db").exists()


MODEL = """
import torch
from torch import nn

def make_model():
    torch.manual_seed(0)
    # width 16: group norm's 8 groups then hold two features each (one would be refused)
    return nn.Sequential(nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10))

def exits():
    raise SystemExit(3)
"""


def test_audit_redirected_shows_progress_and_a_table_that_fits(tmp_path):
    (tmp_path / "model.py").write_text(MODEL)
    measures = "loss,gradient_norms,isometry_gap,fisher_trace,sample_gradient_norms"
    done = run_script(
        "audit", "model.py:make_model", "--n", "16", "--measures", measures, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    progress = done.stderr.splitlines()
    assert len(progress) == 1 + 5 * 6 and progress[-1].endswith("(30/30)")
    assert "sample_gradient_norms of bn_to_group" in progress[-1]
    assert not wider_than(done.stdout) and "…" not in done.stdout
    for variant in ("as_given/train", "as_given/eval", "no_norm", "bn_to_layer", "bn_to_rms"):
        assert done.stdout.count(f"│ {variant} ") == 2  # the measures split over two tables
    assert "audit of make_model (continued)" in done.stdout


def test_audit_of_a_function_that_exits_is_one_error_line_and_status_2(tmp_path):
    (tmp_path / "model.py").write_text(MODEL)
    done = run_script("audit", "model.py:exits", "--db", "r.db", cwd=tmp_path)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: exits() in 'model.py' called sys.exit(3)")
    assert not (tmp_path / "r.db").exists()
