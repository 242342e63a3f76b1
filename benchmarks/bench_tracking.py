"""Warm-started vs cold-started Lanczos inside the Tracker, on an edge-of-stability run.

Full-batch GD (MSE, 256 digits, 64-64 tanh MLP, lr 0.3) tracked every 10 steps with the
``sharpness`` measure; the same run twice, once warm-starting Lanczos from the previous
top eigenvector, once from a random vector. Reports Hessian-vector products per tracked
step, the agreement of the two sharpness series, and the time tracking adds to training.

    python benchmarks/bench_tracking.py --out benchmarks/results/tracking.md
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from normscope import Subject, data, nets
from normscope.train import Tracker, train


def run(warm: bool, steps: int, tol: float) -> dict[str, float]:
    d = data.load("digits", n=256, seed=0)
    model = nets.mlp(
        input_shape=d.input_shape, output_dim=10, width=64, depth=2, activation="tanh", seed=0
    )
    s = Subject(model, d, loss="mse")
    tracker = Tracker(
        ["sharpness"],
        every=10,
        options={"sharpness": {"tol": tol}},
        warm_start=warm,
        track_weight_norms=False,
    )
    start = time.perf_counter()
    train(s, lr=0.3, steps=steps, tracker=tracker)
    total = time.perf_counter() - start
    _, hvps = tracker.series("sharpness.cost.hvp")
    _, sharp = tracker.series("sharpness")
    return {
        "hvp_mean": float(hvps[1:].mean()),  # step 0 is a cold start in both runs
        "hvp_first": float(hvps[0]),
        "sharpness": sharp,
        "tracking_share": tracker.seconds / total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warm, cold = run(True, args.steps, args.tol), run(False, args.steps, args.tol)
    diff = np.max(np.abs(warm["sharpness"] - cold["sharpness"]) / cold["sharpness"])
    lines = [
        "# Tracker: warm-started vs cold-started Lanczos",
        "",
        f"Command: `python benchmarks/bench_tracking.py --steps {args.steps} --tol {args.tol}`",
        "",
        "| start | HVPs per tracked step | tracking share of run time |",
        "|---|---|---|",
        f"| cold | {cold['hvp_mean']:.1f} | {cold['tracking_share']:.0%} |",
        f"| warm | {warm['hvp_mean']:.1f} | {warm['tracking_share']:.0%} |",
        "",
        f"Ratio cold / warm HVPs: **{cold['hvp_mean'] / warm['hvp_mean']:.2f}x**; largest "
        f"relative difference between the two sharpness series: {diff:.1e} "
        f"(tolerance {args.tol}).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
