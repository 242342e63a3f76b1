"""Sharpness of the loss: top Hessian eigenvalues, Hessian trace, Hessian spectral density.

All three act on the Hessian of the Subject's empirical risk
``L(theta) = (1/N) sum_i l(f(theta; x_i), y_i)`` through Hessian-vector products
(:class:`~normscope.curvature.Hessian`); with batch norm in train mode that is the
Hessian of the batch-statistics function that gradient descent trains (each mini-batch
with its own statistics when ``batch_size`` is set). The edge of stability
(cohen2021) is ``lambda_max(H) = 2 / lr`` for gradient descent with step ``lr``.
"""

from __future__ import annotations

import numpy as np
import torch

from normscope.curvature import Hessian, parameter_blocks
from normscope.linalg import (
    density_on_grid,
    hutchinson,
    hutchpp,
    lanczos,
    slq,
    slq_trace,
    xtrace,
)
from normscope.linalg.lanczos import default_max_iter
from normscope.measurement import CostMeter, Measurement
from normscope.measures.constraints import (
    COUNT,
    POSITIVE,
    SEED,
    TOL,
    Choice,
    Flag,
    Integer,
    Optional,
    Vectors,
)
from normscope.measures.registry import register
from normscope.subject import Subject

# below this many random probes a sample standard deviation is off by 25 % or more
FEW_PROBES = 10
TRACE_METHODS = ("hutchinson", "xtrace", "hutchpp")


def as_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def _as_start(init_vectors, subject: Subject) -> torch.Tensor | None:
    if init_vectors is None:
        return None
    return torch.as_tensor(
        np.asarray(init_vectors), dtype=subject.work_dtype, device=subject.device
    )


WHICH = ("largest", "smallest", "both")
BASIS_DEVICES = ("model", "cpu")
_LANCZOS_WHICH = {"largest": "largest", "smallest": "smallest", "both": "both_ends"}


@register(
    "sharpness",
    family="sharpness",
    paper="cohen2021 (edge of stability); lyu2022",
    warm_start=True,
    sharded=True,
    quick={"k": 2, "tol": 1e-3, "per_layer": True},
    options={
        "k": COUNT,
        "which": Choice(WHICH),
        "tol": TOL,
        "max_iter": Optional(COUNT),
        "init_vectors": Optional(Vectors()),
        "return_vectors": Flag(),
        "per_layer": Flag(),
        "basis_device": Choice(BASIS_DEVICES),
        "seed": SEED,
    },
)
def sharpness(
    subject: Subject,
    *,
    k: int = 1,
    which: str = "largest",
    tol: float = 1e-4,
    max_iter: int | None = None,
    init_vectors: np.ndarray | torch.Tensor | None = None,
    return_vectors: bool = False,
    per_layer: bool = False,
    basis_device: str = "model",
    seed: int = 0,
) -> Measurement:
    """``lambda_max(H)``, the largest Hessian eigenvalue of ``L`` (and the top ``k``), by Lanczos.

    Lanczos with partial reorthogonalization (:func:`normscope.linalg.lanczos`) stops when
    every wanted Ritz pair has residual ``||H v - lambda v|| <= tol |lambda|``; the
    eigenvalue error is then about ``residual^2 / gap``, far below ``tol`` (``tol=1e-4``
    gives ~1e-8 relative on separated eigenvalues).

    ``which="smallest"`` asks for the most negative end instead: ``lambda_min(H) < 0``
    means ``theta`` is a saddle, not a minimum, and ``|lambda_min| / lambda_max`` says how
    far from convex the loss is there (ghorbani2019). ``"both"`` takes both ends from the
    same Krylov space, ``2 k`` pairs for the products of about one run.

    Options:
        k: number of eigenvalues at each wanted end; ``details["eigenvalues"]`` holds them
            in descending order with their ``residuals`` (``2 k`` of them for ``"both"``).
        which: ``"largest"`` (value ``lambda_max``), ``"smallest"`` (value
            ``lambda_min``) or ``"both"`` (value ``lambda_max``, with ``lambda_min`` in
            ``details["lambda_min"]``).
        tol: relative residual tolerance of each wanted pair.
        max_iter: cap on Lanczos steps (default: linalg's, ``max(100, 10 k)``).
        init_vectors: ``(j, P)`` warm start (e.g. previous calls' eigenvectors during
            training): a Rayleigh-Ritz step on them (``j`` products) picks the start, which
            cuts the products needed when the Hessian changed little.
        return_vectors: put the unit eigenvectors (rows, in the order of
            ``details["eigenvalues"]``) in ``details["eigenvectors"]``.
        per_layer: also the wanted end (``lambda_max``, or ``lambda_min`` for
            ``"smallest"``) of each diagonal block ``H_ll`` (the parameters of one
            module, all others fixed), in ``details["layer_names"]`` /
            ``details["layer_values"]``. The blocks share one linearization of the loss,
            so no extra forward pass is made per layer.
        basis_device: where Lanczos keeps its basis (``max_iter`` vectors of ``P``
            numbers): ``"model"`` (the model's device) or ``"cpu"`` (host memory, for a
            model whose accelerator has no room for it; each product then moves one
            vector there and back). Products run where the parameters are either way.
            ``settings["basis_memory_mb"]`` states the memory the basis took.
        seed: seeds the random start vector.

    Example:
        >>> import torch
        >>> from normscope import Subject, measures
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(),
        ...                             torch.nn.Linear(4, 2)).double()
        >>> s = Subject(model, (torch.randn(20, 3).double(), torch.randint(0, 2, (20,))))
        >>> m = measures.sharpness(s, which="both", tol=1e-8)
        >>> m.details["lambda_min"] < 0 < m.value  # a random net sits at a saddle
        True
    """
    meter = CostMeter()
    op = Hessian(subject, meter, vector_device="cpu" if basis_device == "cpu" else None)
    wanted = 2 * k if which == "both" else k
    meter.expect(max_iter or default_max_iter(op.dim, wanted))
    result = lanczos(
        op.matvec,
        op.dim,
        k=wanted,
        which=_LANCZOS_WHICH[which],
        tol=tol,
        max_iter=max_iter,
        v0=_as_start(init_vectors, subject),
        seed=seed,
        dtype=op.dtype,
        device=op.device,
    )
    order = torch.argsort(result.eigenvalues, descending=True)
    eigenvalues = result.eigenvalues[order]
    details = {
        "eigenvalues": as_numpy(eigenvalues),
        "residuals": as_numpy(result.residuals[order]),
        "converged": result.converged,
        "iterations": result.iterations,
    }
    if which == "both":
        details["lambda_min"] = float(eigenvalues[-1])
    notes = [] if result.converged else [f"Lanczos stopped at max_iter before tol={tol}"]
    if return_vectors:
        details["eigenvectors"] = as_numpy(result.eigenvectors[order])
    if per_layer:
        end = "smallest" if which == "smallest" else "largest"
        details.update(_per_layer(subject, op, end, tol, max_iter, seed))
    value = float(eigenvalues[-1] if which == "smallest" else eigenvalues[0])
    settings = {"basis_memory_mb": _basis_megabytes(result.iterations, op)}
    return Measurement("sharpness", value, details, meter.cost(), settings, notes)


def _basis_megabytes(rows: int, op: Hessian) -> float:
    """Memory of a Krylov basis of ``rows`` vectors of the operator's size and dtype."""
    return rows * op.dim * torch.finfo(op.dtype).bits / 8 / 2**20


def _per_layer(
    subject: Subject, op: Hessian, which: str, tol: float, max_iter: int | None, seed: int
) -> dict[str, object]:
    names, values = [], []
    blocks = parameter_blocks(subject)
    op.meter.expect(sum(min(max_iter or default_max_iter(len(i)), len(i)) for i in blocks.values()))
    for name, index in blocks.items():
        block = op.restrict(index.to(op.device))
        cap = None if max_iter is None else min(max_iter, block.dim)
        res = lanczos(
            block.matvec,
            block.dim,
            k=1,
            which=which,
            tol=tol,
            max_iter=cap,
            seed=seed,
            dtype=op.dtype,
            device=op.device,
        )
        names.append(name)
        values.append(float(res.eigenvalues[0]))
    return {"layer_names": names, "layer_values": np.array(values)}


@register(
    "hessian_trace",
    family="sharpness",
    paper="hutchinson1989; epperly2024 (XTrace); meyer2021 (Hutch++)",
    sharded=True,
    quick={"num_probes": 12},
    renamed={"num_matvecs": "num_probes"},
    options={"method": Choice(TRACE_METHODS), "num_probes": Integer(low=4), "seed": SEED},
)
def hessian_trace(
    subject: Subject, *, method: str = "hutchinson", num_probes: int = 60, seed: int = 0
) -> Measurement:
    """``tr H``, estimated from ``num_probes`` Hessian-vector products, with standard error.

    ``num_probes`` counts every product, as in :func:`hessian_density` and
    ``fisher_trace`` (its old name ``num_matvecs`` is accepted for one more release); at
    least 4, what Hutch++ and XTrace need for a sketch vector and an error bar.
    ``method="hutchinson"`` (default): ``mean_i z_i^T H z_i`` over Rademacher ``z_i``
    (hutchinson1989; unbiased, error ``O(1/sqrt(m))``). ``"xtrace"``: XTrace
    (epperly2024), every test vector both sketches the top eigenspace and probes the
    rest. ``"hutchpp"``: Hutch++ (meyer2021), exact trace on a sketch of ``m/3`` vectors
    plus Hutchinson on the rest. The sketching methods win when a few eigenvalues carry
    most of ``||H||_F^2`` (small models, low-rank curvature). The default is chosen by
    ``benchmarks/bench_hessian.py``: on a 935k-parameter batch-norm MLP, on its
    4.7k-parameter sibling (against the exact trace) and on a trained tanh MLP,
    Hutchinson had the lowest error at the same products (then XTrace, then Hutch++),
    because the Hessian's mass is spread over its bulk, which a few dozen sketched
    directions cannot remove. ``details["standard_error"]`` is that of the stochastic
    part (Hutch++) or of the mean over samples.
    """
    meter = CostMeter()
    meter.expect(num_probes)
    op = Hessian(subject, meter)
    # single products, not op.matmat: a batched double backward costs more per vector than
    # one product on the benchmark MLP and CNN (benchmarks/results/hessian.md)
    common = {"seed": seed, "dtype": op.dtype, "device": op.device}
    if method == "hutchpp":
        est = hutchpp(op.matvec, op.dim, num_matvecs=num_probes, **common)
        details = {"sketch_trace": est.sketch_trace, "sketch_size": est.sketch_size}
    elif method == "xtrace":
        est = xtrace(op.matvec, op.dim, num_matvecs=num_probes, **common)
        details = {}
    else:
        est = hutchinson(op.matvec, op.dim, num_probes=num_probes, **common)
        details = {}
    details |= {"standard_error": est.standard_error, "num_stochastic_probes": est.num_probes}
    notes = []
    if est.num_probes < FEW_PROBES:
        notes.append(
            f"the standard error rests on {est.num_probes} random probes and is itself "
            f"uncertain: use num_probes >= {3 * FEW_PROBES} with method={method!r} for an error "
            "bar to rely on"
        )
    return Measurement("hessian_trace", est.estimate, details, meter.cost(), {}, notes)


@register(
    "hessian_density",
    family="sharpness",
    paper="ghorbani2019 (SLQ spectral density)",
    sharded=True,
    quick={"num_probes": 2, "num_steps": 12, "num_points": 50},
    derives=("num_steps",),
    options={
        "num_probes": COUNT,
        "num_steps": COUNT,
        "num_points": Integer(low=2),
        "sigma": Optional(POSITIVE),
        "seed": SEED,
    },
)
def hessian_density(
    subject: Subject,
    *,
    num_probes: int = 4,
    num_steps: int = 64,
    num_points: int = 400,
    sigma: float | None = None,
    seed: int = 0,
) -> Measurement:
    """Spectral density of ``H`` by stochastic Lanczos quadrature (ghorbani2019).

    ``phi(t) = (1/P) sum_k delta(t - lambda_k)`` is approximated by ``num_probes`` Lanczos
    runs of ``num_steps`` steps from Rademacher probes; each gives Gauss quadrature
    ``nodes`` and ``weights`` (:func:`normscope.linalg.slq`), smoothed with Gaussians of
    width ``sigma`` (default 1 % of the node range) on ``num_points`` grid points.
    Value: the largest node, an estimate of ``lambda_max`` (outliers converge first).
    Details: ``nodes``/``weights`` ``(num_probes, num_steps)``, ``grid``/``density``,
    ``sigma``, and ``trace`` with ``trace_standard_error`` from the same quadrature.
    ``num_steps`` is capped at ``P``.
    """
    meter = CostMeter()
    op = Hessian(subject, meter)
    steps = min(num_steps, op.dim)
    meter.expect(num_probes * steps)
    result = slq(
        op.matvec,
        op.dim,
        num_probes=num_probes,
        num_steps=steps,
        seed=seed,
        dtype=op.dtype,
        device=op.device,
    )
    density = density_on_grid(result, sigma=sigma, num_points=num_points)
    trace = slq_trace(result, lambda t: t)
    details = {
        "nodes": as_numpy(result.nodes),
        "weights": as_numpy(result.weights),
        "grid": as_numpy(density.grid),
        "density": as_numpy(density.density),
        "sigma": density.sigma,
        "trace": trace.estimate,
        "trace_standard_error": trace.standard_error,
    }
    value = float(result.nodes[result.weights > 0].max())
    return Measurement("hessian_density", value, details, meter.cost(), {"num_steps": steps})
