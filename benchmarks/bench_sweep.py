"""Sweep throughput of the experiment runners.

One sweep of 20 small runs (MLP on 256 digits, widths x norms x seeds; each run takes
the loss and the top Hessian eigenvalue) is executed inline, with 1 and 2 local worker
processes, and with Ray on 2 CPUs, each into a fresh store. Reported: wall time, runs
per minute, and overhead per run = (wall time x parallel slots - time spent inside the
runs) / runs, i.e. what scheduling, process start-up and storing cost per run.

    python benchmarks/bench_sweep.py          # prints the table, writes results/sweep.md
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from normscope.experiments import Store, parse_spec, run_experiment

SPEC = """
name = "bench_sweep"
[subject]
net = {arch = "mlp", width = 64, depth = 3, norm = "batch"}
data = {name = "digits", n = 256}
[[measure]]
name = "loss"
[[measure]]
name = "sharpness"
k = 1
tol = 1e-3
[sweep]
"subject.net.width" = [32, 64]
"subject.net.norm" = ["none", "batch"]
seeds = [0, 1, 2, 3, 4]
"""

SETTINGS = [
    ("inline (workers=0)", {"workers": 0}, 1),
    ("local, 1 worker", {"workers": 1}, 1),
    ("local, 2 workers", {"workers": 2}, 2),
    ("ray, 2 CPUs", {"backend": "ray"}, 2),
]


def _time(kwargs: dict, folder: Path) -> tuple[float, float, int]:
    spec = parse_spec(SPEC)
    if kwargs.get("backend") == "ray":
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with Store(folder / "r.db") as store:
            start = time.perf_counter()
            summary = run_experiment(spec, store, spec_toml=SPEC, quiet=True, **kwargs)
            wall = time.perf_counter() - start
            inside = sum(r["seconds"] for r in store.runs(spec.name))
    finally:
        if kwargs.get("backend") == "ray":
            ray.shutdown()
    if summary.failed:
        raise RuntimeError(f"{summary.failed} runs failed: {summary.failures[:2]}")
    return wall, inside, summary.ok


def main() -> str:
    lines = [
        "| runner | runs | wall (s) | runs / min | time in runs (s) | overhead / run (s) |",
        "|---|---|---|---|---|---|",
    ]
    for label, kwargs, slots in SETTINGS:
        with tempfile.TemporaryDirectory() as tmp:
            wall, inside, runs = _time(kwargs, Path(tmp))
        overhead = (wall * slots - inside) / runs
        lines.append(
            f"| {label} | {runs} | {wall:.1f} | {60 * runs / wall:.0f} | {inside:.1f} | "
            f"{overhead:.2f} |"
        )
    table = "\n".join(lines)
    out = Path(__file__).parent / "results" / "sweep.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        "## Sweep throughput (bench_sweep.py)\n\n20 runs: MLP (width 32/64, no norm / batch "
        "norm, 5 seeds) on 256 digits; loss and top Hessian eigenvalue per run. 2 CPU "
        "cores.\n\n" + table + "\n"
    )
    print(table)
    return table


if __name__ == "__main__":
    main()
