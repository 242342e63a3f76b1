"""Hessian eigenvalues, trace and density: normscope against public peers, same model and data.

Peers: PyHessian (power iteration, Hutchinson, SLQ), curvlinops-for-pytorch (Hessian
operator + scipy ``eigsh``, Hutch++, Papyan's spectrum), hessian-eigenthings (Lanczos,
Hutch++, SLQ). PyHessian forces ``model.eval()``, so every library sees batch norm with
running statistics. Random inputs (standard normal) and random labels; float32; one
thread.

Eigenvalues are compared by the time each library needs to REACH a relative eigenvalue
error of at most ``TARGET`` against a tight reference (normscope Lanczos in float64 with
residual tolerance 1e-8, cross-checked against curvlinops + ``eigsh``): each library's
effort knob (its tolerance; the step count for hessian-eigenthings, which has no
stopping rule) is tightened (1, 0.5, 0.2 per decade) until the error is reached or a run
exceeds ``CAP_PRODUCTS`` products or ``CAP_SECONDS`` seconds. The first setting that
reaches the error is then timed (median of ``repeats`` runs after the sweep run, which
is the warm-up). A second table gives every library at its tolerance ``1e-3``.

Run:  .venv/bin/python benchmarks/bench_hessian.py   (writes benchmarks/results/hessian.md)
"""

from __future__ import annotations

import argparse
import copy
import importlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.func import grad, vjp

from normscope import Subject
from normscope.curvature import Hessian
from normscope.curvature.hessian import batch_loss
from normscope.measures.sharpness import hessian_density, hessian_trace, sharpness

RESULTS = Path(__file__).parent / "results" / "hessian.md"
TARGET = 1e-3
DEFAULT_TOL = 1e-3
CAP_PRODUCTS = {1: 200, 5: 300}
CAP_SECONDS = 30.0
TOLS = tuple(m * 10.0**-e for e in range(3, 8) for m in (10, 5, 2))
STEPS = (4, 6, 8, 11, 16, 23, 32, 45, 64, 90, 128, 181, 256, 362)
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


# ---------------------------------------------------------------- product counting
class CapReached(Exception):
    pass


class Counter:
    """Counts a peer's products; raises CapReached past the product or time cap."""

    def __init__(self) -> None:
        self.n, self.cap, self.start = 0, None, 0.0

    def reset(self, cap: int | None = None) -> None:
        self.n, self.cap, self.start = 0, cap, time.perf_counter()

    def wrap(self, fn: Callable, per_call: Callable = lambda *a: 1) -> Callable:
        def counted(*args, **kwargs):
            if self.cap is not None and (
                self.n >= self.cap or time.perf_counter() - self.start > CAP_SECONDS
            ):
                raise CapReached(self.n)
            self.n += per_call(*args)
            return fn(*args, **kwargs)

        return counted


@dataclass
class Solver:
    """``solve(k, effort) -> (eigenvalues, products)``, efforts from loose to tight."""

    name: str
    solve: Callable[[int, float], tuple[np.ndarray, int]]
    efforts: tuple
    default: float
    knob: str


def descending(values) -> np.ndarray:
    return np.sort(np.asarray(values, dtype=float))[::-1]


def normscope_solver(model, x, y) -> Solver:
    def solve(k, tol):
        s = Subject(model, (x, y), bn_mode="eval")
        m = sharpness(s, k=k, tol=tol, max_iter=CAP_PRODUCTS[k])
        return descending(m.details["eigenvalues"]), int(m.cost["hvp"])

    return Solver("normscope", solve, TOLS, DEFAULT_TOL, "tol (Ritz residual)")


def pyhessian_solver(model, x, y, counter: Counter) -> Solver:
    ph = importlib.import_module("pyhessian.hessian")  # the package shadows it with a class
    ph.hessian_vector_product = counter.wrap(ph.hessian_vector_product)

    def solve(k, tol):
        torch.manual_seed(0)  # PyHessian draws its start vectors from the global generator
        counter.reset(CAP_PRODUCTS[k])
        try:
            h = ph.hessian(model, nn.CrossEntropyLoss(), data=(x, y), cuda=False)
            values = h.eigenvalues(top_n=k, tol=tol, maxIter=CAP_PRODUCTS[k])[0]
        finally:
            model.zero_grad(set_to_none=True)  # PyHessian leaves create_graph grads behind
        return descending(values), counter.n

    return Solver("PyHessian", solve, TOLS, DEFAULT_TOL, "tol (power iteration)")


def curvlinops_solver(model, x, y, counter: Counter) -> Solver:
    from curvlinops import HessianLinearOperator
    from scipy.sparse.linalg import LinearOperator, eigsh

    def solve(k, tol):
        counter.reset(CAP_PRODUCTS[k])
        h = HessianLinearOperator(
            model, nn.CrossEntropyLoss(), list(model.parameters()), [(x, y)],
            check_deterministic=False,
        )  # fmt: skip
        sp = h.to_scipy()
        op = LinearOperator(sp.shape, matvec=counter.wrap(sp.matvec), dtype=sp.dtype)
        values = eigsh(op, k=k, which="LA", tol=tol, return_eigenvectors=False)
        return descending(values), counter.n

    return Solver("curvlinops + eigsh", solve, TOLS, DEFAULT_TOL, "tol (ARPACK)")


def eigenthings_solver(model, x, y, counter: Counter) -> Solver:
    """Its Lanczos runs a fixed number of steps (``tol`` is only reported), so the knob is
    the step count; full reorthogonalization is forced on (its default drops it past 50)."""
    import hessian_eigenthings as he

    def solve(k, steps):
        counter.reset(None)
        op = he.HessianOperator(model, [(x, y)], he.supervised_loss(nn.CrossEntropyLoss()))
        op.matvec = counter.wrap(op.matvec)
        steps = None if steps is None else max(int(steps), k)
        res = he.lanczos(
            op, k=k, tol=DEFAULT_TOL, which="LA", seed=0, max_iter=steps, reorthogonalize=True
        )
        return descending(res.eigenvalues.detach().numpy()), counter.n

    return Solver("hessian-eigenthings", solve, STEPS, None, "Lanczos steps")


# ---------------------------------------------------------------- time to accuracy
def relative_error(values, ref) -> float:
    values = np.asarray(values, dtype=float)
    ref = np.asarray(ref, dtype=float)[: len(values)]
    return float(np.max(np.abs(values - ref) / np.abs(ref)))


def median_time(fn: Callable, repeats: int, keep=statistics.median) -> tuple[object, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return (times if keep is all else keep(times)), out


@dataclass
class Row:
    solver: str
    setting: str
    seconds: float | None
    products: int
    error: float | None
    note: str = ""


def time_to_accuracy(solver: Solver, k: int, ref, repeats: int) -> Row:
    """Tighten the solver's knob until the error reaches TARGET; time that setting."""
    last = None
    for effort in solver.efforts:
        try:
            start = time.perf_counter()
            values, products = solver.solve(k, effort)
            seconds = time.perf_counter() - start
        except CapReached as cap:
            note = f"cap reached ({CAP_PRODUCTS[k]} products or {CAP_SECONDS:.0f} s)"
            setting = f"{solver.knob} {effort:g}"
            return Row(solver.name, setting, None, int(cap.args[0]), last, note)
        except Exception as err:  # a peer's failure is a result to report, not a crash
            return Row(solver.name, f"{solver.knob} {effort:g}", None, 0, last, failure(err))
        last = relative_error(values, ref)
        log(f"top-{k} {solver.name} {effort:g}: {products} products, {seconds:.1f} s, {last:.1e}")
        if last <= TARGET:
            if repeats > 1:  # the sweep run (after the warm-up) is the first of the timed runs
                more, _ = median_time(lambda e=effort: solver.solve(k, e), repeats - 1, all)
                seconds = statistics.median([seconds, *more])
            return Row(solver.name, f"{solver.knob} {effort:g}", seconds, products, last)
        if products >= CAP_PRODUCTS[k] or seconds > CAP_SECONDS:
            break
    return Row(solver.name, f"{solver.knob} {effort:g}", None, products, last,
               "not reached at the tightest setting tried")  # fmt: skip


def at_default(solver: Solver, k: int, ref, repeats: int) -> Row:
    setting = "default steps (2k)" if solver.default is None else f"tol {solver.default:g}"
    try:
        seconds, (values, products) = median_time(lambda: solver.solve(k, solver.default), repeats)
    except Exception as err:
        return Row(solver.name, setting, None, 0, None, failure(err))
    return Row(solver.name, setting, seconds, products, relative_error(values, ref))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def failure(err: Exception) -> str:
    return f"{type(err).__name__}: {str(err).splitlines()[0][:120]}"


def reference(model, x, y, k: int) -> tuple[np.ndarray, int]:
    """Top-k eigenvalues by normscope Lanczos in float64, residual tolerance 1e-8."""
    model64 = copy.deepcopy(model).double()
    m = sharpness(Subject(model64, (x.double(), y), bn_mode="eval"), k=k, tol=1e-8, max_iter=300)
    return descending(m.details["eigenvalues"]), int(m.cost["hvp"])


def eigen_table(rows_by_task: dict[str, list[Row]], title: str) -> list[str]:
    lines = [
        title,
        "",
        "| task | library | setting | time (s) | time / PyHessian's | products | rel. error "
        "| note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task, rows in rows_by_task.items():
        base = next((r.seconds for r in rows if r.solver == "PyHessian"), None)
        for r in rows:
            secs = "-" if r.seconds is None else f"{r.seconds:.2f}"
            ratio = "-" if r.seconds is None or base is None else f"{r.seconds / base:.2f}"
            err = "-" if r.error is None else f"{r.error:.1e}"
            lines.append(
                f"| {task} | {r.solver} | {r.setting} | {secs} | {ratio} | {r.products} "
                f"| {err} | {r.note} |"
            )
    return [*lines, ""]


# ---------------------------------------------------------------- trace and density
def trace_and_density(model, x, y) -> list[str]:
    """One run each after a warm-up (fixed product budgets, no accuracy target)."""
    counter = Counter()
    ph = importlib.import_module("pyhessian.hessian")
    ph.hessian_vector_product = counter.wrap(ph.hessian_vector_product)
    s = Subject(model, (x, y), bn_mode="eval")
    import hessian_eigenthings as he
    from curvlinops import HessianLinearOperator, hutchpp_trace, lanczos_approximate_spectrum

    def curv():
        h = HessianLinearOperator(
            model, nn.CrossEntropyLoss(), list(model.parameters()), [(x, y)],
            check_deterministic=False,
        )  # fmt: skip
        h._matmat = counter.wrap(h._matmat, lambda xs: xs[0].shape[-1])
        return h

    def eig():
        op = he.HessianOperator(model, [(x, y)], he.supervised_loss(nn.CrossEntropyLoss()))
        op.matvec = counter.wrap(op.matvec)
        return op

    def pyh():
        torch.manual_seed(0)
        return ph.hessian(model, nn.CrossEntropyLoss(), data=(x, y), cuda=False)

    def ns(fn):
        def run():
            m = fn()
            counter.n = int(m.cost["hvp"])
            return m.value

        return run

    tasks = {
        "trace": {
            "normscope (Hutch++)": ns(lambda: hessian_trace(s, num_probes=TRACE_PRODUCTS)),
            "PyHessian (Hutchinson, tol 1e-3)": lambda: float(
                np.mean(pyh().trace(maxIter=TRACE_PRODUCTS, tol=DEFAULT_TOL))
            ),
            "curvlinops (Hutch++)": lambda: float(hutchpp_trace(curv(), TRACE_PRODUCTS)),
            "hessian-eigenthings (Hutch++)": lambda: float(
                he.trace(eig(), num_matvecs=TRACE_PRODUCTS, seed=0).estimate
            ),
        },
        "density": {
            "normscope (SLQ)": ns(
                lambda: hessian_density(s, num_probes=1, num_steps=DENSITY_STEPS)
            ),
            "PyHessian (SLQ)": lambda: max(pyh().density(iter=DENSITY_STEPS, n_v=1)[0][0]),
            "curvlinops (Papyan)": lambda: float(
                lanczos_approximate_spectrum(curv(), ncv=DENSITY_STEPS)[0].max()
            ),
            "hessian-eigenthings (SLQ)": lambda: float(
                he.spectral_density(
                    eig(), num_runs=1, lanczos_steps=DENSITY_STEPS, seed=0
                ).raw_eigenvalues.max()
            ),
        },
    }
    lines = [
        f"Trace ({TRACE_PRODUCTS} products) and density ({DENSITY_STEPS} Lanczos steps, one "
        "probe; value = largest node), one timed run each after the eigenvalue runs:",
        "",
        "| task | library | time (s) | products | value |",
        "|---|---|---|---|---|",
    ]
    for task, fns in tasks.items():
        for name, fn in fns.items():
            counter.reset(None)
            try:
                start = time.perf_counter()
                value = fn()
                seconds = time.perf_counter() - start
            except Exception as err:
                lines.append(f"| {task} | {name} | failed | - | {failure(err)} |")
                continue
            finally:
                model.zero_grad(set_to_none=True)
            lines.append(f"| {task} | {name} | {seconds:.2f} | {counter.n} | {value:.5g} |")
    return [*lines, ""]


# ---------------------------------------------------------------- product cost
def product_costs(model, x, y, bn_mode: str, repeats: int) -> dict[str, float]:
    """Median seconds of one product of each kind (interleaved repeats after a warm-up)."""
    s = Subject(model, (x, y), bn_mode=bn_mode)
    theta, b = s.theta, s.first_batch()
    f = batch_loss(s, b)
    gen = torch.Generator().manual_seed(0)
    vs = torch.randn(8, theta.numel(), generator=gen)
    params = list(model.parameters())
    with s.modes():
        t0 = theta.clone().requires_grad_(True)
        loss = f(t0)
        h = Hessian(s)
        h.matvec(vs[0])  # the linearization is not part of a product
        _, pullback = vjp(grad(f), theta)
        ploss = nn.functional.cross_entropy(model(x), y)
        pgrad = torch.autograd.grad(ploss, params, create_graph=True)
        pv = [torch.randn_like(p) for p in params]
        fns = {
            "forward + backward (gradient)": (lambda: torch.autograd.grad(f(t0), t0), 1),
            "backward only (retained graph)": (
                lambda: torch.autograd.grad(loss, t0, retain_graph=True),
                1,
            ),
            "normscope Hessian.matvec": (lambda: h.matvec(vs[0]), 1),
            "normscope Hessian.matmat, 8 vectors (per vector)": (lambda: h.matmat(vs), 8),
            "torch.func vjp(grad) closure (normscope before)": (lambda: pullback(vs[0]), 1),
            "PyHessian's product (double backward, module)": (
                lambda: torch.autograd.grad(pgrad, params, pv, retain_graph=True),
                1,
            ),
        }
        times = {k: [] for k in fns}
        for fn, _ in fns.values():
            fn()
        for _ in range(repeats):
            for key, (fn, per) in fns.items():
                start = time.perf_counter()
                fn()
                times[key].append((time.perf_counter() - start) / per)
    return {key: statistics.median(v) for key, v in times.items()}


def cost_table(model, x, y, repeats: int) -> list[str]:
    costs = {mode: product_costs(model, x, y, mode, repeats) for mode in ("eval", "train")}
    lines = [
        f"Cost of one product (median of {repeats}, interleaved), in ms and relative to one "
        "backward pass (retained graph) and to forward + backward:",
        "",
        "| product | eval: ms | / backward | / fwd+bwd | train: ms | / backward | / fwd+bwd |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in costs["eval"]:
        cells = []
        for mode in ("eval", "train"):
            c = costs[mode]
            cells += [
                f"{1e3 * c[key]:.1f}",
                f"{c[key] / c['backward only (retained graph)']:.2f}",
                f"{c[key] / c['forward + backward (gradient)']:.2f}",
            ]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return [*lines, ""]


# ---------------------------------------------------------------- cold start
COLD = """
import sys, time, torch
torch.set_num_threads(1)
sys.path.insert(0, {here!r})
from bench_hessian import workload
model, x, y = workload({name!r})
start = time.perf_counter()
if {lib!r} == "normscope":
    from normscope import Subject
    from normscope.measures.sharpness import sharpness
    sharpness(Subject(model, (x, y), bn_mode="eval"), k=1, tol={tol!r})
else:
    import importlib
    ph = importlib.import_module("pyhessian.hessian")
    torch.manual_seed(0)
    ph.hessian(model, torch.nn.CrossEntropyLoss(), data=(x, y), cuda=False).eigenvalues(
        top_n=1, tol={tol!r})
print(time.perf_counter() - start)
"""


def cold_start(name: str, settings: dict[str, float]) -> list[str]:
    lines = [
        "First call in a fresh interpreter (imports of the library itself excluded; "
        "includes any lazy import on first use), top-1 at the setting that reached the "
        "target:",
        "",
        "| library | setting | first call (s) |",
        "|---|---|---|",
    ]
    for lib, tol in settings.items():
        code = COLD.format(here=str(Path(__file__).parent), name=name, lib=lib, tol=tol)
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=False
        )
        value = out.stdout.strip().splitlines()[-1] if out.returncode == 0 else "failed"
        shown = value if value == "failed" else f"{float(value):.2f}"
        lines.append(f"| {lib} | tol {tol:g} | {shown} |")
    return [*lines, ""]


# ---------------------------------------------------------------- driver
def run(name: str, lines: list[str], ks: tuple[int, ...], repeats: int, extras: bool) -> None:
    model, x, y = workload(name)
    params = sum(p.numel() for p in model.parameters())
    ref, ref_products = reference(model, x, y, max(ks))
    counter = Counter()
    solvers = [
        normscope_solver(model, x, y),
        pyhessian_solver(model, x, y, counter),
        curvlinops_solver(model, x, y, counter),
        eigenthings_solver(model, x, y, counter),
    ]
    for solver in solvers:  # warm-up: imports and first-use costs of every library
        solver.solve(1, solver.efforts[0])
    reached = {f"top-{k}": [time_to_accuracy(s, k, ref, repeats) for s in solvers] for k in ks}
    default = {f"top-{k}": [at_default(s, k, ref, repeats) for s in solvers] for k in ks}
    log(f"{name}: eigenvalue tables done")
    lines += [
        f"## {name}: {params} parameters, {len(x)} samples",
        "",
        f"Reference top eigenvalues (float64 Lanczos, residual tol 1e-8, {ref_products} "
        f"products): {', '.join(f'{v:.7g}' for v in ref)}",
        "",
    ]
    lines += eigen_table(
        reached,
        f"Time to reach relative eigenvalue error <= {TARGET:g} (max over the k eigenvalues; "
        f"median of {repeats} timed runs):",
    )
    lines += eigen_table(default, f"At tolerance {DEFAULT_TOL:g} (median of {repeats} runs):")
    if not extras:
        lines += cost_table(model, x, y, repeats=3)
        return
    ns_tol = next(r for r in reached["top-1"] if r.solver == "normscope").setting.split()[-1]
    ph_row = next(r for r in reached["top-1"] if r.solver == "PyHessian")
    cold = {"normscope": float(ns_tol)}
    if ph_row.seconds is not None:
        cold["PyHessian"] = float(ph_row.setting.split()[-1])
    lines += cold_start(name, cold)
    lines += trace_and_density(model, x, y)
    lines += cost_table(model, x, y, repeats=9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=["mlp", "cnn"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    load = os.getloadavg()
    start = time.perf_counter()
    lines = [
        "# Hessian benchmark: normscope vs PyHessian, curvlinops, hessian-eigenthings",
        "",
        "Reproduce: `.venv/bin/python benchmarks/bench_hessian.py` (one thread, float32;",
        "peers installed with `pip install --no-deps`, see the Makefile).",
        f"Machine: {os.cpu_count()} CPU cores, torch {torch.__version__}; load average at "
        f"start {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f} (1, 5, 15 min).",
        "",
    ]
    for name in args.workloads:
        if name == "mlp":
            run(name, lines, ks=(1, 5), repeats=3, extras=True)
        else:  # a CNN product costs ~6x an MLP one: top-1 only, one timed run, no extras
            run(name, lines, ks=(1,), repeats=1, extras=False)
    end_load = os.getloadavg()
    lines.append(
        f"Whole run: {time.perf_counter() - start:.0f} s; load average at the end "
        f"{end_load[0]:.2f}, {end_load[1]:.2f}, {end_load[2]:.2f}."
    )
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
