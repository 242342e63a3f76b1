"""Read a results store back as exact text, for bit-for-bit comparisons of two stores."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

# A sweep of 12 runs, each about 0.2 s, with measures that draw random
# vectors (Lanczos and Hutch++ probes): enough to be caught mid-sweep and to show
# whether seeding makes numbers reproducible.
SWEEP = """\
name = "reliable"
[subject]
net = {arch = "mlp", width = 32, depth = 3, norm = "batch"}
data = {name = "gaussian", n = 64, dim = 16, num_classes = 4}
loss = "cross_entropy"
[[measure]]
name = "fisher_spectrum"
k = 3
[[measure]]
name = "hessian_trace"
[[measure]]
name = "gradient_norms"
[sweep]
"subject.net.width" = [32, 48]
seeds = [0, 1, 2, 3, 4, 5]
"""
SWEEP_RUNS = 12


def connect_readonly(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=30)


def stored_rows(db: Path) -> list[tuple]:
    """Every stored measurement as exact text (floats as hex), timings left out.

    SQLite REAL keeps a float64 exactly and JSON writes floats with ``repr``, so two
    stores hold bit-identical numbers exactly when these lists are equal.
    """
    conn = connect_readonly(db)
    try:
        rows = conn.execute(
            "SELECT r.hash, r.status, r.config, m.step, m.name, m.measure, m.value, m.details, "
            "m.settings, m.notes FROM runs r JOIN measurements m "
            "ON m.experiment = r.experiment AND m.run = r.hash ORDER BY r.hash, m.step, m.name"
        ).fetchall()
    finally:
        conn.close()
    return [(*r[:6], None if r[6] is None else float(r[6]).hex(), *r[7:]) for r in rows]


def run_counts(db: Path) -> dict[str, int]:
    """Stored runs by status."""
    conn = connect_readonly(db)
    try:
        return dict(conn.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall())
    finally:
        conn.close()


def config_of(row: tuple) -> dict:
    return json.loads(row[2])
