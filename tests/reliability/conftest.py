"""Shared pieces of the reliability tests: a tiny valid spec, and ways to call the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.experiments.conftest import TINY  # valid and cheap: 4 runs of `loss`

ROOT = Path(__file__).parents[2]
NORMSCOPE = Path(sys.executable).parent / "normscope"


def normscope_command() -> list[str]:
    """The console script installed beside the running Python (whichever venv runs the
    tests), or the module when there is no script."""
    if NORMSCOPE.exists():
        return [str(NORMSCOPE)]
    return [sys.executable, "-m", "normscope.cli"]


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """``normscope ARGS`` in a fresh process (wide terminal, so messages are not wrapped)."""
    env = {**os.environ, "COLUMNS": "400", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [*normscope_command(), *args],
        cwd=cwd or ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def write_spec(tmp_path: Path):
    def write(text: str = TINY, name: str = "spec.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture
def unwritable_dir(tmp_path: Path) -> Path:
    """A folder path where nothing can be created, whoever runs the tests.

    For a normal user a folder without write permission does it. Root ignores
    permission bits, so there the path lies under a regular file, which no user can
    create entries in. Either way the fixture proves the folder refuses a write.
    """
    if os.geteuid() != 0:
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(0o555)
        target = folder / "results"
    else:
        blocker = tmp_path / "a-file"
        blocker.write_text("not a folder")
        target = blocker / "results"
    with pytest.raises(OSError):
        target.mkdir(parents=True)
        (target / "probe").write_text("x")
    yield target
    if os.geteuid() != 0:
        (tmp_path / "locked").chmod(0o755)


@pytest.fixture(scope="session")
def reference_rows(tmp_path_factory):
    """The stored rows of :data:`stored.SWEEP` run inline and never interrupted."""
    from normscope.experiments import Store, parse_spec, run_experiment

    from .stored import SWEEP, SWEEP_RUNS, stored_rows

    db = tmp_path_factory.mktemp("reference") / "r.db"
    with Store(db) as store:
        summary = run_experiment(parse_spec(SWEEP), store, spec_toml=SWEEP, workers=0, quiet=True)
    assert summary.ok == SWEEP_RUNS
    return stored_rows(db)
