"""Run every benchmark and assemble BENCHMARKS.md from their result tables.

    python benchmarks/run.py            # all benchmarks, under 15 minutes on 2 cores
    python benchmarks/run.py --only tracking sweep
    python benchmarks/run.py --assemble # only rebuild BENCHMARKS.md from benchmarks/results/

Each benchmark writes benchmarks/results/<name>.md; the speed numbers there are ratios
against public peers (or between two ways of doing the same job) measured in the same
run, never absolute targets. A full run also writes benchmarks/results/run.md with the
wall time of each benchmark.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "results"
# The Fisher sweep stops at width 512 with 4 seeds so that the whole run fits in 15
# minutes; `bench_fisher.py` alone runs the full sweep (widths to 1024, 6 seeds).
BENCHMARKS = {
    "hessian": ["bench_hessian.py"],
    "fisher": [
        "bench_fisher.py",
        *("--widths", "64", "128", "256", "512", "--seeds", "4"),
        *("--out", str(RESULTS / "fisher.md")),
    ],
    "lipschitz": ["bench_lipschitz.py", "--out", str(RESULTS / "lipschitz.md")],
    "tracking": ["bench_tracking.py", "--out", str(RESULTS / "tracking.md")],
    "sweep": ["bench_sweep.py"],
    "distributed": ["bench_distributed.py", "--out", str(RESULTS / "distributed.md")],
    "cli": ["bench_cli.py"],
    "transformer": ["bench_transformer.py", "--size", "small"],
}
# recorded by hand: the full-size GPT-2 run takes about an hour on 2 cores
EXTRA = ["transformer-full"]
HEADER = """# Benchmarks

Speed and accuracy of normscope side by side with public peers, each table measured in
one run on the same model, data and tolerance. Rebuild with `make bench` (installs the
peers with `--no-deps`, runs `benchmarks/run.py`; its time is in the first table).
Machine: 2 x86_64 cores, torch 2.13.0+cpu, shared with other jobs while the tables were
measured.

How the ratios are measured: every ratio in a table comes from runs in the same process
and the same minutes, so that load from other jobs on the machine hits both sides
alike; runs of different libraries are interleaved (one seed of each in turn) where
their times are compared, and product counts, which do not depend on the load, are
given beside every time. Absolute seconds vary by up to 2x between runs of this file.
"""


def assemble() -> None:
    parts = [HEADER]
    for name in ["run", *BENCHMARKS, *EXTRA]:
        path = RESULTS / f"{name}.md"
        if path.exists():
            text = path.read_text().strip()
            parts.append(
                "\n".join(
                    "#" + line if line.startswith("#") else line for line in text.splitlines()
                )
            )
    (HERE.parent / "BENCHMARKS.md").write_text("\n\n".join(parts) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS))
    parser.add_argument("--assemble", action="store_true", help="only rebuild BENCHMARKS.md")
    args = parser.parse_args()
    if not args.assemble:
        times = {name: run(name) for name in args.only or BENCHMARKS}
        if not args.only:
            write_times(times)
    assemble()


def run(name: str) -> tuple[float, float]:
    """Run one benchmark; its wall time and the CPU time of its process."""
    script, *rest = BENCHMARKS[name]
    print(f"== {name}", flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, str(HERE / script), *rest], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return time.perf_counter() - start, cpu


def write_times(times: dict[str, tuple[float, float]]) -> None:
    """results/run.md: wall and CPU seconds per benchmark. On a machine shared with other
    jobs the wall time stretches with their load; the CPU time does not, and it bounds the
    wall time on two cores of its own from above (most benchmarks use one thread)."""
    rows = [f"| {name} | {wall:.0f} | {cpu:.0f} |" for name, (wall, cpu) in times.items()]
    wall = sum(t[0] for t in times.values())
    cpu = sum(t[1] for t in times.values())
    (RESULTS / "run.md").write_text(
        "# Time of the last `make bench`\n\n"
        "| benchmark | wall (s) | CPU (s) |\n|---|---|---|\n"
        + "\n".join(rows)
        + f"\n| **total** | **{wall:.0f}** | **{cpu:.0f}** |\n\n"
        f"5-minute load average at the end: {os.getloadavg()[1]:.2f} on 2 cores. Wall "
        "time stretches with other jobs' load; CPU time does not, and it bounds from above "
        "the wall time on two cores of its own (one thread per benchmark, except two in "
        "the Fisher sweep and the runner benchmark).\n"
    )


if __name__ == "__main__":
    main()
