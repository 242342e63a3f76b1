"""Start-up time of the ``normscope`` command, against importing torch in the same run.

Each command is started ``--repeats`` times in a fresh process, the commands interleaved
(so that load on a shared machine hits them alike); the table reports medians, and the
ratios the targets are stated in: ``normscope --version`` and ``--help`` against a bare
``python -c pass`` (they load no torch, so they are close to it), ``normscope list``
against ``python -c "import torch"`` (it imports the measures, hence torch).

    python benchmarks/bench_cli.py            # prints the table, writes results/cli.md
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
NORMSCOPE = shutil.which("normscope", path=str(Path(sys.executable).parent)) or "normscope"

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    'python -c "import torch"': [sys.executable, "-c", "import torch"],
    "normscope --version": [NORMSCOPE, "--version"],
    "normscope --help": [NORMSCOPE, "--help"],
    "normscope list": [NORMSCOPE, "list"],
}
TARGETS = [
    # (command, baseline, largest ratio allowed)
    ("normscope list", 'python -c "import torch"', 1.5),
]
ABSOLUTE = [("normscope --version", 0.5), ("normscope --help", 0.5)]


def _seconds(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - start


def measure(repeats: int) -> dict[str, float]:
    """Median wall seconds of each command, interleaved over ``repeats`` rounds."""
    for argv in COMMANDS.values():  # warm the file cache once
        _seconds(argv)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(repeats):
        for name, argv in COMMANDS.items():
            times[name].append(_seconds(argv))
    return {name: statistics.median(values) for name, values in times.items()}


def table(medians: dict[str, float], repeats: int) -> str:
    base = medians["python -c pass"]
    torch = medians['python -c "import torch"']
    lines = [
        "## CLI start-up (bench_cli.py)",
        "",
        f"Median wall time of {repeats} fresh processes per command, interleaved; "
        "2 CPU cores shared with other jobs.",
        "",
        "| command | median (s) | × `python -c pass` | × `import torch` |",
        "|---|---|---|---|",
    ]
    for name, seconds in medians.items():
        lines.append(f"| `{name}` | {seconds:.2f} | {seconds / base:.1f} | {seconds / torch:.2f} |")
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    for name, baseline, limit in TARGETS:
        ratio = medians[name] / medians[baseline]
        met = "yes" if ratio <= limit else "NO"
        lines.append(f"| `{name}` ≤ {limit}× `{baseline}` | {ratio:.2f}× | {met} |")
    for name, limit in ABSOLUTE:
        seconds = medians[name]
        lines.append(
            f"| `{name}` ≤ {limit} s, no torch | {seconds:.2f} s | "
            f"{'yes' if seconds <= limit else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "cli.md")
    args = parser.parse_args()
    text = table(measure(args.repeats), args.repeats)
    print(text)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
