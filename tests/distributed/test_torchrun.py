"""``torchrun --nproc-per-node 2 -m normscope measure ...``: two gloo processes, rank 0 prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MEASURE = [
    "measure",
    "sharpness",
    "--norm",
    "batch",
    "--data-option",  # torchrun's parser would take --n for an abbreviation of its own options
    "n=48",
    "--batch-size",
    "16",
    "--dtype",
    "float64",
    "--option",
    "tol=1e-10",
]


def _run(*args: str, processes: int | None) -> subprocess.CompletedProcess:
    launch = [sys.executable, "-m", "normscope"]
    if processes is not None:
        launch = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={processes}",
            "-m",
            "normscope",
        ]
    return subprocess.run(
        [*launch, *args],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "300", "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=400,
    )


def _value(stdout: str) -> str:
    found = re.findall(r"^sharpness = (\S+)$", stdout, flags=re.MULTILINE)
    assert len(found) == 1, stdout  # one rank prints
    return found[0]


@pytest.mark.timeout(900)
def test_torchrun_measures_across_two_processes_and_rank_zero_prints_once():
    two = _run(*MEASURE, processes=2)
    assert two.returncode == 0, two.stderr[-3000:]
    one = _run(*MEASURE, processes=None)
    assert one.returncode == 0, one.stderr[-3000:]
    assert _value(two.stdout) == _value(one.stdout)
    assert re.search(r"world_size\s+2", two.stdout) and re.search(r"backend\s+gloo", two.stdout)
    assert re.search(r"num_samples\s+48", two.stdout)


@pytest.mark.timeout(900)
def test_torchrun_refuses_an_unsharded_measure_with_one_line():
    done = _run("measure", "input_lipschitz", "--norm", "batch", "--batch-size", "64", processes=2)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr[-3000:]
    assert "measure 'input_lipschitz' is not sharded across processes" in errors[0]
    assert "Traceback" not in done.stderr.split("error:")[0]
