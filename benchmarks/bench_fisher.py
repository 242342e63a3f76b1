"""Fisher spectrum of wide random nets across widths and normalizations (karakida2019).

Sweeps width M x {none, output batch norm, hidden batch norm, layer norm} on
ReLU MLPs (no biases, weights N(0, 2 / fan_in), T Gaussian inputs x ~ N(0, I_M), C
outputs, squared-loss Fisher, batch norm in train mode), times ``fisher_spectrum``,
fits the log-log slope of lambda_max against width per normalization, compares with
``normscope.theory.karakida``, calibrates the finite-width scatter over seeds, compares
the exact and Lanczos paths, and checks against nngeometry's dense FIM and BackPACK's
per-sample gradients where they run. Writes a Markdown table.

    python benchmarks/bench_fisher.py --out benchmarks/results/fisher.md
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from normscope import Subject
from normscope.measures.fisher import fisher_spectrum, fisher_trace, sample_gradient_norms
from normscope.theory.karakida import fisher_predictions, order_parameters

NORMS = ("none", "output_bn", "hidden_bn", "layer_norm")
NOTES = (
    "Notes: times are wall clock on 2 cores shared with other jobs, so they scatter; the "
    "Jacobian-product counts are the stable cost. nngeometry's dense FIM (P x P) is only "
    "feasible for small P and cannot take a BatchNorm1d without affine parameters (its "
    "layer collection reads the missing weight). BackPACK's BatchGrad treats the samples "
    "of a batch-norm layer in train mode as independent, so its per-sample gradients are "
    "not the sample-loss gradients of the whole-batch function that sample_gradient_norms "
    "(and the empirical Fisher) use; those are checked against autograd, one sample at a "
    "time, in tests/measures/test_fisher.py.",
)


def make_net(width: int, depth: int, norm: str, outputs: int, seed: int) -> nn.Module:
    """``depth`` weight layers: (Linear [-> norm] -> ReLU) x (depth - 1), Linear [-> BN]."""
    gen = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    for _ in range(depth - 1):
        layers.append(_gaussian_linear(width, width, gen))
        if norm == "hidden_bn":
            layers.append(nn.BatchNorm1d(width, affine=False))
        elif norm == "layer_norm":
            layers.append(nn.LayerNorm(width, elementwise_affine=False))
        layers.append(nn.ReLU())
    layers.append(_gaussian_linear(width, outputs, gen))
    if norm == "output_bn":
        layers.append(nn.BatchNorm1d(outputs, affine=False))
    return nn.Sequential(*layers).double()


def _gaussian_linear(fan_in: int, fan_out: int, gen: torch.Generator) -> nn.Linear:
    layer = nn.Linear(fan_in, fan_out, bias=False)
    with torch.no_grad():
        layer.weight.normal_(0.0, math.sqrt(2.0 / fan_in), generator=gen)
    return layer


def make_subject(width, depth, norm, samples, outputs, seed) -> tuple[Subject, torch.Tensor]:
    gen = torch.Generator().manual_seed(1000 + seed)
    x = torch.randn(samples, width, generator=gen, dtype=torch.float64)
    y = torch.randn(samples, outputs, generator=gen, dtype=torch.float64)
    net = make_net(width, depth, norm, outputs, seed)
    return Subject(net, (x, y), loss="mse", bn_mode="train"), x


def predictions(width, depth, norm, samples, outputs, x):
    order = order_parameters(depth, "relu", 2.0, 0.0, q1_input=float(x.pow(2).mean()))
    pred = fisher_predictions(
        order, width, samples, outputs, output_mean_subtracted=norm == "output_bn"
    )
    return order, pred


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def sweep(widths, depth, samples, outputs) -> list[dict]:
    rows = []
    for norm in NORMS:
        for width in widths:
            s, x = make_subject(width, depth, norm, samples, outputs, seed=0)
            m, seconds = timed(
                lambda s=s: fisher_spectrum(
                    s, kind="ntk", k=outputs, max_gram_size=samples * outputs // 2
                )
            )
            order, pred = predictions(width, depth, norm, samples, outputs, x)
            scaled_mean = m.details["trace"] / (order.alpha * width**2)
            rows.append(
                {
                    "norm": norm,
                    "width": width,
                    "P": s.num_params,
                    "seconds": seconds,
                    "lambda_max": m.value,
                    "theory_lambda_max": pred.lambda_max,
                    "mean_ratio": scaled_mean / pred.mean,
                    "overlap": float(m.details["mean_gradient_overlap"][0]),
                    "products": m.cost.get("jvp", 0) + m.cost.get("vjp", 0),
                }
            )
            print(rows[-1], flush=True)
    return rows


def slope(rows, norm) -> float:
    pts = [(r["width"], r["lambda_max"]) for r in rows if r["norm"] == norm]
    w, lam = np.array(pts).T
    return float(np.polyfit(np.log(w), np.log(lam), 1)[0])


def calibrate(widths, depth, samples, outputs, seeds) -> list[dict]:
    """Scatter of the theory ratios over seeds (plain nets, exact trace)."""
    rows = []
    for width in widths:
        lam, mean = [], []
        for seed in range(seeds):
            s, x = make_subject(width, depth, "none", samples, outputs, seed)
            order, pred = predictions(width, depth, "none", samples, outputs, x)
            m = fisher_spectrum(s, kind="ntk", k=outputs, max_gram_size=samples * outputs // 2)
            trace = fisher_trace(s, kind="ntk").details["trace"]
            lam.append(m.value / pred.lambda_max)
            mean.append(trace / (order.alpha * width**2) / pred.mean)
        rows.append(
            {
                "width": width,
                "lam_mean": np.mean(lam),
                "lam_std": np.std(lam),
                "m_mean": np.mean(mean),
                "m_std": np.std(mean),
            }
        )
        print(rows[-1], flush=True)
    return rows


def paths(width, depth, samples, outputs) -> list[dict]:
    """Exact dense eigendecomposition of the Gram (chunked build) against Lanczos."""
    s, _ = make_subject(width, depth, "none", samples, outputs, seed=0)
    out = []
    for label, opts in (
        ("exact (Gram built, eigh)", {}),
        ("lanczos top-C + deflated Hutchinson", {"max_gram_size": samples * outputs // 2}),
    ):
        m, seconds = timed(lambda opts=opts: fisher_spectrum(s, kind="ntk", k=outputs, **opts))
        out.append(
            {
                "path": f"{label}: {m.settings['path']}",
                "seconds": seconds,
                "lambda_max": m.value,
                "mean": m.details["mean"],
                "products": m.cost.get("jvp", 0) + m.cost.get("vjp", 0),
            }
        )
        print(out[-1], flush=True)
    return out


def peers(width, depth, samples, outputs) -> list[str]:
    """nngeometry's dense FIM and BackPACK's per-sample gradients, where they run."""
    lines = []
    for norm in ("none", "hidden_bn"):
        s, x = make_subject(width, depth, norm, samples, outputs, seed=0)
        ours, t_ours = timed(lambda s=s: fisher_spectrum(s, kind="ntk", k=outputs))
        norms = sample_gradient_norms(s).details["norms"]
        lines.append(_nngeometry_line(s, x, norm, ours, t_ours, outputs))
        lines.append(_backpack_line(s, x, norm, norms))
    return lines


def _nngeometry_line(s, x, norm, ours, t_ours, outputs) -> str:
    try:
        from nngeometry.metrics import FIM
        from nngeometry.object import PMatDense

        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(x, torch.zeros(len(x), outputs, dtype=x.dtype)),
            batch_size=len(x),
        )
        model = copy.deepcopy(s.model).train()

        def run():
            fim = FIM(model, loader, PMatDense, variant="regression")
            return torch.linalg.eigvalsh(fim.to_torch()).flip(0)

        values, seconds = timed(run)
        ratio = float(values[0]) / ours.value
        return (
            f"| nngeometry 0.4 PMatDense FIM | {norm} | {seconds:.2f} s (ours {t_ours:.2f} s) | "
            f"lambda_max {float(values[0]):.6g} vs ours {ours.value:.6g} (ratio {ratio:.6f}) |"
        )
    except Exception as err:  # record why a peer cannot run, never abort the benchmark
        return f"| nngeometry 0.4 | {norm} | did not run | {type(err).__name__}: {err} |"


def _backpack_line(s, x, norm, ours: np.ndarray) -> str:
    try:
        from backpack import backpack, extend
        from backpack.extensions import BatchGrad

        model = extend(copy.deepcopy(s.model).train())
        loss_fn = extend(nn.MSELoss(reduction="sum"))
        y = s.first_batch().targets

        def run():
            model.zero_grad()
            loss = 0.5 * loss_fn(model(x), y)
            with backpack(BatchGrad()):
                loss.backward()
            return torch.cat(
                [p.grad_batch.reshape(len(x), -1) for p in model.parameters()], dim=1
            ).norm(dim=1)

        norms, seconds = timed(run)
        err = float(np.max(np.abs(norms.detach().numpy() - ours)))
        return (
            f"| BackPACK 1.7.1 BatchGrad | {norm} | {seconds:.2f} s | per-sample gradient "
            f"norms max abs difference from sample_gradient_norms {err:.3g} |"
        )
    except Exception as err:
        msg = str(err).splitlines()[0][:160]
        return f"| BackPACK 1.7.1 | {norm} | did not run | {type(err).__name__}: {msg} |"


def write(path, args, rows, calib, path_rows, peer_lines) -> None:
    lines = [
        "# Fisher spectrum benchmark (karakida2019)",
        "",
        f"Command: `python benchmarks/bench_fisher.py {args.cmd}`",
        "",
        f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s), float64. Nets: ReLU MLP, {args.depth} weight "
        f"layers, no biases, weights N(0, 2/fan_in); T = {args.samples} Gaussian inputs "
        f"x ~ N(0, I_M), C = {args.outputs}; squared-loss Fisher (kind 'ntk'); batch norm in "
        "train mode, no affine parameters; `fisher_spectrum(k=C)` on the Lanczos path "
        "(Gram size T C > max_gram_size = T C / 2).",
        "",
        "mean ratio = (tr F / (alpha M^2)) / m_theory (theory's P = alpha M^2 counts hidden "
        "weights only); output_bn theory = karakida's mean-subtracted prediction "
        "(`output_mean_subtracted=True`), which leaves out the division by the batch "
        "standard deviation; hidden_bn and layer_norm are compared with the plain-net "
        "prediction only for reference.",
        "",
        "| norm | M | P | seconds | Jacobian products | lambda_max | theory lambda_max | "
        "ratio | mean ratio | top overlap |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['norm']} | {r['width']} | {r['P']} | {r['seconds']:.2f} | "
            f"{r['products']:.0f} | {r['lambda_max']:.5g} | {r['theory_lambda_max']:.5g} | "
            f"{r['lambda_max'] / r['theory_lambda_max']:.3f} | {r['mean_ratio']:.3f} | "
            f"{r['overlap']:.3f} |"
        )
    total = sum(r["seconds"] for r in rows)
    lines += ["", f"Sweep total: {total:.1f} s.", "", "| norm | slope of log lambda_max vs log M |"]
    lines += ["|---|---|"] + [f"| {n} | {slope(rows, n):.3f} |" for n in NORMS]
    lines += [
        "",
        f"## Finite-width scatter (plain nets, {args.seeds} seeds, exact trace)",
        "",
        "| M | lambda_max / theory (mean, std) | tr F / (alpha M^2 m_theory) (mean, std) |",
        "|---|---|---|",
    ]
    lines += [
        f"| {c['width']} | {c['lam_mean']:.3f} ± {c['lam_std']:.3f} | "
        f"{c['m_mean']:.3f} ± {c['m_std']:.3f} |"
        for c in calib
    ]
    lines += [
        "",
        f"## Paths (plain net, M = {args.path_width})",
        "",
        "| path | seconds | Jacobian products | lambda_max | m |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {p['path']} | {p['seconds']:.2f} | {p['products']:.0f} | {p['lambda_max']:.10g} | "
        f"{p['mean']:.6g} |"
        for p in path_rows
    ]
    lines += [
        "",
        f"## Peers (M = {args.peer_width}, T = {args.samples}, C = {args.outputs})",
        "",
        "| peer | norm | time | result |",
        "|---|---|---|---|",
        *peer_lines,
        "",
        *NOTES,
        "",
    ]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--outputs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--calibration-widths", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--path-width", type=int, default=256)
    parser.add_argument("--peer-width", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/fisher.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.cmd = (
        " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items()
            if k != "out"
        )
        + f" --out {args.out}"
    )
    fisher_spectrum(make_subject(8, args.depth, "none", 8, 2, 0)[0], kind="ntk")  # warm-up
    rows = sweep(args.widths, args.depth, args.samples, args.outputs)
    calib = calibrate(args.calibration_widths, args.depth, args.samples, args.outputs, args.seeds)
    path_rows = paths(args.path_width, args.depth, args.samples, args.outputs)
    peer_lines = peers(args.peer_width, args.depth, args.samples, args.outputs)
    write(args.out, args, rows, calib, path_rows, peer_lines)


if __name__ == "__main__":
    main()
