"""Hessian eigenvalues, trace and density: normscope against public peers, same model and data.

Peers: PyHessian (power iteration, Hutchinson, SLQ), curvlinops-for-pytorch (Hessian
operator + scipy ``eigsh``, Hutch++, Papyan's spectrum), hessian-eigenthings (Lanczos,
Hutch++, SLQ). Every method gets the same model, data and tolerance; the table reports
time and Hessian-vector products relative to PyHessian and the relative error of the
eigenvalues against a tight normscope Lanczos reference (tol 1e-7). PyHessian forces
``model.eval()``, so the comparison uses batch norm with running statistics; normscope's
batch-statistics (train-mode) Hessian is timed too. Random inputs (standard normal) and
random labels; float32; one thread.

Run:  .venv/bin/python benchmarks/bench_hessian.py   (writes benchmarks/results/hessian.md)
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.func import grad, jvp, vjp, vmap

from normscope import Subject
from normscope.curvature import Hessian
from normscope.curvature.hessian import batch_loss
from normscope.measures.sharpness import hessian_density, hessian_trace, sharpness

RESULTS = Path(__file__).parent / "results" / "hessian.md"
TOL = 1e-3
# normscope's tol bounds the Ritz residual r; the eigenvalue error is about r^2 / gap, so a
# residual tolerance of sqrt(TOL) targets an eigenvalue error of TOL (the error column
# shows what each library achieved)
RESIDUAL_TOL = TOL**0.5
TRACE_PRODUCTS = 60
DENSITY_STEPS = 64


def mlp() -> nn.Module:
    layers, width = [], 784
    for _ in range(3):
        layers += [nn.Linear(width, 512), nn.BatchNorm1d(512), nn.ReLU()]
        width = 512
    return nn.Sequential(*layers, nn.Linear(512, 10))


def cnn() -> nn.Module:
    def block(cin, cout, stride):
        return [nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(
        *block(3, 16, 1),
        *block(16, 32, 2),
        *block(32, 32, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )


def workload(name: str):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    if name == "mlp":
        model, x = mlp(), torch.randn(512, 784, generator=gen)
    else:
        model, x = cnn(), torch.randn(256, 3, 32, 32, generator=gen)
    model.train()
    with torch.no_grad():  # a few batches in train mode give non-trivial running statistics
        for _ in range(3):
            model(x)
    y = torch.randint(0, 10, (len(x),), generator=gen)
    return model.eval(), x, y


def run_tasks(tasks: dict[str, Callable], counter: Counter) -> dict[str, tuple]:
    """Run each task, timing it and counting products; a failing task records its error."""
    rows = {}
    for name, fn in tasks.items():
        counter.n = 0
        try:
            out, t = timed(fn)
        except Exception as err:  # a peer's failure is a result to report, not a crash
            rows[name] = f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"
            continue
        rows[name] = (out, t, counter.n)
    return rows


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def wrap(self, fn: Callable, per_call: Callable = lambda *a: 1) -> Callable:
        def counted(*args, **kwargs):
            self.n += per_call(*args)
            return fn(*args, **kwargs)

        return counted


def timed(fn: Callable):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


# ---------------------------------------------------------------- normscope
def run_normscope(model, x, y, bn_mode="eval"):
    s = Subject(model, (x, y), bn_mode=bn_mode)
    rows = {}
    m, t = timed(lambda: sharpness(s, k=1, tol=RESIDUAL_TOL))
    rows["top-1"] = (m.details["eigenvalues"][:1], t, m.cost["hvp"])
    m, t = timed(lambda: sharpness(s, k=5, tol=RESIDUAL_TOL))
    rows["top-5"] = (m.details["eigenvalues"], t, m.cost["hvp"])
    m, t = timed(lambda: hessian_trace(s, num_matvecs=TRACE_PRODUCTS))
    rows["trace"] = (m.value, t, m.cost["hvp"])
    m, t = timed(lambda: hessian_density(s, num_probes=1, num_steps=DENSITY_STEPS))
    rows["density"] = (m.value, t, m.cost["hvp"])
    return rows


# ---------------------------------------------------------------- PyHessian
def run_pyhessian(model, x, y):
    ph = importlib.import_module("pyhessian.hessian")  # the package shadows it with a class

    counter = Counter()
    original = ph.hessian_vector_product
    ph.hessian_vector_product = counter.wrap(original)
    try:

        def task(fn):
            return lambda: fn(ph.hessian(model, nn.CrossEntropyLoss(), data=(x, y), cuda=False))

        def top(k):
            return lambda h: np.sort(np.array(h.eigenvalues(top_n=k, tol=TOL)[0]))[::-1]

        tasks = {
            "top-1": task(top(1)),
            "top-5": task(top(5)),
            "trace": task(lambda h: float(np.mean(h.trace(maxIter=TRACE_PRODUCTS, tol=TOL)))),
            "density": task(lambda h: max(h.density(iter=DENSITY_STEPS, n_v=1)[0][0])),
        }
        return run_tasks(tasks, counter)
    finally:
        ph.hessian_vector_product = original
        model.zero_grad(set_to_none=True)


# ---------------------------------------------------------------- curvlinops + scipy
def run_curvlinops(model, x, y):
    from curvlinops import HessianLinearOperator, hutchpp_trace, lanczos_approximate_spectrum
    from scipy.sparse.linalg import LinearOperator, eigsh

    counter = Counter()

    def operator():
        h = HessianLinearOperator(
            model,
            nn.CrossEntropyLoss(),
            list(model.parameters()),
            [(x, y)],
            check_deterministic=False,
        )
        h._matmat = counter.wrap(h._matmat, lambda xs: xs[0].shape[-1])
        return h

    def top(k):
        h = operator()
        sp = h.to_scipy()
        op = LinearOperator(sp.shape, matvec=sp.matvec, dtype=sp.dtype)
        return np.sort(eigsh(op, k=k, which="LA", tol=TOL, return_eigenvectors=False))[::-1]

    tasks = {
        "top-1": lambda: top(1),
        "top-5": lambda: top(5),
        "trace": lambda: float(hutchpp_trace(operator(), TRACE_PRODUCTS)),
        "density": lambda: float(
            lanczos_approximate_spectrum(operator(), ncv=DENSITY_STEPS)[0].max()
        ),
    }
    return run_tasks(tasks, counter)


# ---------------------------------------------------------------- hessian-eigenthings
def run_eigenthings(model, x, y, steps: dict[str, int]):
    """Its Lanczos runs a fixed number of steps (default ``2 k``; ``tol`` is only reported),
    so it is given the number of products normscope needed for the same task."""
    import hessian_eigenthings as he

    counter = Counter()
    model.eval()

    def operator():
        op = he.HessianOperator(model, [(x, y)], he.supervised_loss(nn.CrossEntropyLoss()))
        op.matvec = counter.wrap(op.matvec)
        return op

    def top(k, task):
        res = he.lanczos(operator(), k=k, tol=TOL, which="LA", seed=0, max_iter=steps[task])
        return np.sort(res.eigenvalues.detach().numpy())[::-1]

    tasks = {
        "top-1": lambda: top(1, "top-1"),
        "top-5": lambda: top(5, "top-5"),
        "trace": lambda: float(he.trace(operator(), num_matvecs=TRACE_PRODUCTS, seed=0).estimate),
        "density": lambda: float(
            he.spectral_density(
                operator(), num_runs=1, lanczos_steps=DENSITY_STEPS, seed=0
            ).raw_eigenvalues.max()
        ),
    }
    return run_tasks(tasks, counter)


# ---------------------------------------------------------------- product variants
def product_costs(model, x, y, bn_mode, repeats=7) -> dict[str, float]:
    """Median time of one product of each kind, relative to one gradient (forward+backward)."""
    s = Subject(model, (x, y), bn_mode=bn_mode)
    theta, b = s.theta, s.batches()[0]
    f = batch_loss(s, b)
    gen = torch.Generator().manual_seed(0)
    vs = torch.randn(8, theta.numel(), generator=gen)
    with s.modes():
        t0 = theta.clone().requires_grad_(True)
        loss = f(t0)
        _, pullback = vjp(grad(f), theta)
        batched = vmap(pullback)
        g = torch.autograd.grad(f(t0), t0, create_graph=True)[0]
        h = Hessian(s)
        fns = {
            "gradient (forward+backward)": (lambda: torch.autograd.grad(f(t0), t0), 1),
            "backward only (retained graph)": (
                lambda: torch.autograd.grad(loss, t0, retain_graph=True),
                1,
            ),
            "normscope Hessian.matvec (cached vjp-of-grad)": (lambda: h.matvec(vs[0]), 1),
            "vjp-of-grad, vmapped over 8 vectors": (lambda: batched(vs), 8),
            "jvp-of-grad (forward-over-reverse)": (lambda: jvp(grad(f), (theta,), (vs[0],)), 1),
            "autograd double backward (create_graph)": (
                lambda: torch.autograd.grad(g, t0, vs[0], retain_graph=True),
                1,
            ),
        }
        times = {k: [] for k in fns}
        for _ in range(repeats):
            for k, (fn, per) in fns.items():
                start = time.perf_counter()
                fn()
                times[k].append((time.perf_counter() - start) / per)
    base = statistics.median(times["gradient (forward+backward)"])
    return {k: statistics.median(v) / base for k, v in times.items()}


def reference(model, x, y):
    m = sharpness(Subject(model, (x, y), bn_mode="eval"), k=5, tol=1e-7)
    return m.details["eigenvalues"], m.cost["hvp"]


def relative_error(value, ref) -> str:
    value = np.atleast_1d(np.asarray(value, dtype=float))
    ref = np.asarray(ref, dtype=float)[: len(value)]
    return f"{np.max(np.abs(value - ref) / np.abs(ref)):.1e}"


def run(name: str, lines: list[str]) -> None:
    model, x, y = workload(name)
    params = sum(p.numel() for p in model.parameters())
    ref, ref_hvps = reference(model, x, y)
    results = {"normscope": run_normscope(model, x, y)}
    steps = {task: int(row[2]) for task, row in results["normscope"].items()}
    results["PyHessian"] = run_pyhessian(model, x, y)
    results["curvlinops + eigsh"] = run_curvlinops(model, x, y)
    results["hessian-eigenthings"] = run_eigenthings(model, x, y, steps)
    results["normscope, batch statistics"] = run_normscope(model, x, y, bn_mode="train")
    lines += [
        f"## {name}: {params} parameters, {len(x)} samples",
        "",
        f"Reference top eigenvalues (eval mode, Lanczos tol 1e-7, {ref_hvps:.0f} "
        f"products): {', '.join(f'{v:.6g}' for v in ref)}",
        "",
        "| task | library | time / PyHessian's | products | rel. error (eigen) | value |",
        "|---|---|---|---|---|---|",
    ]
    base = results["PyHessian"]
    for task in ("top-1", "top-5", "trace", "density"):
        for peer, rows in results.items():
            if isinstance(rows[task], str):
                lines.append(f"| {task} | {peer} | failed | - | - | {rows[task]} |")
                continue
            value, seconds, products = rows[task]
            ok = not isinstance(base[task], str)
            ratio = f"{seconds / base[task][1]:.2f}" if ok else f"({seconds:.1f} s)"
            err = relative_error(value, ref) if task.startswith("top") else "-"
            if peer.endswith("batch statistics"):
                err = "(other function)"
            shown = ", ".join(f"{v:.5g}" for v in np.atleast_1d(value))
            lines.append(f"| {task} | {peer} | {ratio} | {products:.0f} | {err} | {shown} |")
    for bn_mode in ("eval", "train"):
        costs = product_costs(model, x, y, bn_mode)
        lines += [
            "",
            f"Product cost relative to one gradient, bn_mode={bn_mode}:",
            "",
            "| product | time / gradient |",
            "|---|---|",
        ]
        lines += [f"| {k} | {v:.2f} |" for k, v in costs.items()]
    lines.append("")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=["mlp", "cnn"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    lines = [
        "# Hessian benchmark: normscope vs PyHessian, curvlinops, hessian-eigenthings",
        "",
        "Reproduce: `.venv/bin/python benchmarks/bench_hessian.py` (one thread, float32;",
        "peers installed with `pip install --no-deps`, see the Makefile). Times are",
        "ratios to PyHessian's time on the same task (lower is faster). Eigenvalue tolerance "
        f"{TOL} for every eigen-solver (normscope: residual tolerance {RESIDUAL_TOL:.3g},",
        "which bounds the eigenvalue error by about its square);",
        f"trace with {TRACE_PRODUCTS} products (PyHessian:",
        f"at most {TRACE_PRODUCTS}, stops early at tol {TOL}); density with "
        f"{DENSITY_STEPS} Lanczos steps, one probe; density value = largest node.",
        "",
    ]
    for name in args.workloads:
        run(name, lines)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
