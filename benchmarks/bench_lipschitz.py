"""Input-Lipschitz lower bound against a per-sample loop of autograd Jacobians (hiddenpower2025).

The 784-512-512-512-10 ReLU MLP (``nets.mlp``, with and without batch norm, eval mode so
that samples are independent) over 512 Gaussian inputs. normscope's ``input_lipschitz``
gets every per-sample Jacobian from C = 10 whole-batch vector-Jacobian products; the
reference calls ``torch.autograd.functional.jacobian`` once per sample and takes the
spectral norm of each (10 x 784) Jacobian. Reports wall times, their ratio, and the
agreement of the maximum and of every per-sample norm. Also times the whole-batch path
(batch norm in train mode: Lanczos on dF/dX of the whole batch), which has no per-sample
reference. Writes a Markdown table.

    python benchmarks/bench_lipschitz.py --out benchmarks/results/lipschitz.md
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from normscope import Subject, nets
from normscope.curvature.input_jacobian import InputJacobian
from normscope.measures.lipschitz import input_lipschitz

COMMAND = "python benchmarks/bench_lipschitz.py --out benchmarks/results/lipschitz.md"


def make_subject(norm: str, bn_mode: str, samples: int, dtype: torch.dtype, seed: int):
    model = nets.mlp(
        input_shape=(784,), output_dim=10, width=512, depth=3, norm=norm, seed=seed
    ).to(dtype)
    gen = torch.Generator().manual_seed(1000 + seed)
    x = torch.randn(samples, 784, generator=gen, dtype=torch.float64).to(dtype)
    y = torch.randint(0, 10, (samples,), generator=gen)
    return Subject(model, (x, y), bn_mode=bn_mode)


def reference_norms(subject: Subject) -> torch.Tensor:
    """Per-sample spectral norms from one autograd Jacobian per sample."""
    theta = subject.theta
    out = []
    with subject.modes():
        for xi in subject.first_batch().inputs:
            jac = torch.autograd.functional.jacobian(
                lambda z: subject.output(theta, z.unsqueeze(0))[0], xi
            )
            out.append(torch.linalg.matrix_norm(jac.to(torch.float64), ord=2))
    return torch.stack(out)


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def compare(norm: str, dtype: torch.dtype, samples: int, seed: int) -> dict:
    s = make_subject(norm, "eval", samples, dtype, seed)
    measured, t_measure = timed(lambda: input_lipschitz(s))
    per_sample, t_rows = timed(
        lambda: torch.linalg.matrix_norm(
            InputJacobian(s, s.first_batch().inputs).per_sample().to(torch.float64), ord=2
        )
    )
    ref, t_ref = timed(lambda: reference_norms(s))
    return {
        "norm": norm,
        "dtype": str(dtype).removeprefix("torch."),
        "lower": measured.details["lower_bound"],
        "upper": measured.details["upper_bound"],
        "status": measured.details["upper_status"],
        "ref_max": float(ref.max()),
        "max_rel_err": abs(measured.value - float(ref.max())) / float(ref.max()),
        "per_sample_rel_err": float(((per_sample - ref).abs() / ref).max()),
        "t_measure": t_measure,
        "t_rows": t_rows,
        "t_ref": t_ref,
    }


def whole_batch(samples: int, seed: int) -> dict:
    s = make_subject("batch", "train", samples, torch.float32, seed)
    m, t = timed(lambda: input_lipschitz(s, tol=1e-4))
    return {"lower": m.value, "upper": m.details["upper_bound"], "seconds": t, "cost": m.cost}


def _products(cost: dict) -> str:
    return ", ".join(f"{k} {int(v)}" for k, v in cost.items() if k != "seconds")


def render(rows: list[dict], train: dict, samples: int) -> str:
    lines = [
        "# Input-Lipschitz lower bound: normscope vs per-sample autograd Jacobians",
        "",
        f"Command: `{COMMAND}`",
        "",
        f"784-512-512-512-10 ReLU MLP (`nets.mlp`, Gaussian init, seed 0), {samples} Gaussian "
        "inputs, eval mode (samples independent). `input_lipschitz` = the whole measure "
        "(lower bound from C = 10 whole-batch vjps + SVD, and the per-layer upper bound); "
        "`rows` = the per-sample Jacobians alone (InputJacobian.per_sample + SVD); reference = "
        "`torch.autograd.functional.jacobian` per sample + spectral norm. Rel. errors are "
        "against the reference; per-sample = worst sample.",
        "",
        "| norm | dtype | lower bound | upper bound (status) | reference max | max rel. err "
        "| per-sample rel. err | input_lipschitz s | rows s | reference s | ref / input_lipschitz "
        "| ref / rows |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['norm']} | {r['dtype']} | {r['lower']:.6g} | {r['upper']:.4g} ({r['status']}) "
            f"| {r['ref_max']:.6g} | {r['max_rel_err']:.1e} | {r['per_sample_rel_err']:.1e} "
            f"| {r['t_measure']:.2f} | {r['t_rows']:.2f} | {r['t_ref']:.2f} "
            f"| {r['t_ref'] / r['t_measure']:.1f}x | {r['t_ref'] / r['t_rows']:.1f}x |"
        )
    lines += [
        "",
        "Whole-batch path (batch norm in train mode, float32, tol 1e-4): Lanczos on dF/dX of "
        f"the {samples}-sample batch. No per-sample reference exists for this coupled map.",
        f"lower bound {train['lower']:.6g}, upper bound {train['upper']:.4g} (local), "
        f"{train['seconds']:.2f} s, products {_products(train['cost'])}.",
        "",
        f"Machine: {platform.machine()}, {platform.system()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s). Wall times are single runs after a warm-up; "
        "on a machine shared with other jobs they vary between runs.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/lipschitz.md")
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    compare("none", torch.float32, 8, args.seed)  # warm-up: lazy imports and first calls
    rows = [
        compare(norm, dtype, args.samples, args.seed)
        for norm in ("none", "batch")
        for dtype in (torch.float32, torch.float64)
    ]
    text = render(rows, whole_batch(args.samples, args.seed), args.samples)
    with open(args.out, "w") as handle:
        handle.write(text)
    print(text)


if __name__ == "__main__":
    main()
