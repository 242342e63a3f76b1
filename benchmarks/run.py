"""Run every benchmark and assemble BENCHMARKS.md from their result tables.

    python benchmarks/run.py            # all benchmarks (about an hour on 2 cores)
    python benchmarks/run.py --only tracking sweep
    python benchmarks/run.py --assemble # only rebuild BENCHMARKS.md from benchmarks/results/

Each benchmark writes benchmarks/results/<name>.md; the speed numbers there are ratios
against public peers measured in the same run, never absolute targets.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "results"
BENCHMARKS = {
    "hessian": ["bench_hessian.py"],
    "fisher": ["bench_fisher.py", "--out", str(RESULTS / "fisher.md")],
    "lipschitz": ["bench_lipschitz.py", "--out", str(RESULTS / "lipschitz.md")],
    "tracking": ["bench_tracking.py", "--out", str(RESULTS / "tracking.md")],
    "sweep": ["bench_sweep.py"],
    "distributed": ["bench_distributed.py", "--out", str(RESULTS / "distributed.md")],
    "cli": ["bench_cli.py"],
}
HEADER = """# Benchmarks

Speed and accuracy of normscope side by side with public peers, each table measured in
one run on the same model, data and tolerance. Rebuild with `make bench` (installs the
peers with `--no-deps`, runs `benchmarks/run.py`). Machine: 2 x86_64 cores, torch
2.13.0+cpu. Times are ratios; the machine was shared with other jobs while some tables
were measured, so treat single-run ratios as noisy.
"""


def assemble() -> None:
    parts = [HEADER]
    for name in BENCHMARKS:
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
        for name in args.only or BENCHMARKS:
            script, *rest = BENCHMARKS[name]
            print(f"== {name}", flush=True)
            subprocess.run([sys.executable, str(HERE / script), *rest], check=True)
    assemble()


if __name__ == "__main__":
    main()
