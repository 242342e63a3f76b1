"""Run an experiment: plan it, skip finished runs, execute the rest, store each result.

Runs execute in worker processes (``workers >= 1``; forkserver start with normscope
preloaded; one torch thread per run, so numbers do not depend on the worker count),
inline in this process (``workers = 0``, for debugging), or as Ray tasks
(``backend = "ray"``). Only the driver writes to the store, one transaction per
finished run.

Several drivers may run experiments on one store at once: each leases the runs it
computes (:meth:`Store.begin`), skips runs another live driver has leased, and waits for
their results, taking over any whose driver dies. No run is computed twice.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from normscope import sanitize
from normscope.errors import ConfigError
from normscope.experiments.execute import RUN_THREADS, RunResult, execute_run, versions
from normscope.experiments.leases import describe
from normscope.experiments.plan import RunConfig, plan
from normscope.experiments.spec import Spec
from normscope.experiments.store import Lease, Store
from normscope.loggers import open_logger
from normscope.terminal import counted

BACKENDS = ("local", "ray")
POLL_SECONDS = 1.0
"""How often a driver looks for results of runs another driver is computing."""


@dataclass
class Summary:
    """What a call of :func:`run_experiment` did."""

    experiment: str
    planned: int
    skipped: int = 0
    ok: int = 0
    failed: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)
    others: int = 0
    """Runs another normscope process computed and stored while this call waited for them
    (also counted in ``skipped``)."""


def crashed(run: RunConfig, reason: str) -> RunResult:
    """The result of a run whose worker died before it could report."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    return RunResult(
        hash=run.hash,
        status="failed",
        config=run.config,
        rows=[],
        started=now,
        finished=now,
        seconds=0.0,
        host="",
        versions=versions(),
        error=f"the worker running this run died: {reason}",
        traceback=None,
    )


def iter_inline(runs: list[RunConfig]) -> Iterator[RunResult]:
    """Execute runs one after another in this process."""
    for run in runs:
        yield execute_run(run.hash, run.config)


def _init_worker(threads: int) -> None:
    # Deterministic kernels for the worker's life (execute_run also sets them per run).
    import torch

    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)


def _context() -> mp.context.BaseContext:
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["torch", "normscope.measures", "normscope.experiments.execute"])
        return ctx
    return mp.get_context("spawn")


def iter_local(
    runs: list[RunConfig],
    workers: int,
    fn: Callable[[str, dict], RunResult] = execute_run,
) -> Iterator[RunResult]:
    """Execute runs as ``fn(hash, config)`` in ``workers`` processes, at most ``workers``
    in flight, so a worker that dies takes only its own runs down (they are reported
    failed and the pool is rebuilt for the rest)."""
    threads = RUN_THREADS
    ctx = _context()

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            workers, mp_context=ctx, initializer=_init_worker, initargs=(threads,)
        )

    pending = deque(runs)
    inflight: dict[Future[RunResult], RunConfig] = {}
    pool = new_pool()
    try:
        while pending or inflight:
            while pending and len(inflight) < workers:
                run = pending.popleft()
                inflight[pool.submit(fn, run.hash, run.config)] = run
            done, _ = wait(inflight, return_when=FIRST_COMPLETED)
            broken = False
            for future in done:
                run = inflight.pop(future)
                try:
                    yield future.result()
                except BrokenProcessPool as err:
                    broken = True
                    yield crashed(run, str(err) or "process pool broken")
            if broken:
                for run in inflight.values():
                    yield crashed(run, "another worker of the pool died")
                inflight.clear()
                pool.shutdown(wait=False, cancel_futures=True)
                pool = new_pool()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _executor(
    backend: str, workers: int, address: str | None
) -> Callable[[list[RunConfig]], Iterator[RunResult]]:
    if backend not in BACKENDS:
        from normscope.errors import unknown_name

        raise unknown_name("backend", backend, BACKENDS)
    if workers < 0:
        raise ConfigError(f"--workers must be >= 0 (0 runs inline), got {workers}.")
    if backend == "ray":
        from normscope.experiments.ray_runner import iter_ray

        return lambda runs: iter_ray(runs, address=address)
    if address is not None:
        raise ConfigError("--address applies only to --backend ray.")
    if workers == 0:
        return iter_inline
    return lambda runs: iter_local(runs, workers)


def run_experiment(
    spec: Spec,
    store: Store,
    *,
    spec_toml: str = "",
    source: str = "<spec>",
    workers: int = 1,
    backend: str = "local",
    address: str | None = None,
    retry_failed: bool = False,
    quiet: bool = False,
    console: Console | None = None,
    log_to: Sequence[tuple[str, str | Path]] = (),
) -> Summary:
    """Execute the runs of ``spec`` not yet in ``store`` and store each as it finishes.

    Runs stored as ``ok`` are skipped; runs stored as ``failed`` are skipped too unless
    ``retry_failed``. Runs another live normscope process is computing are not computed
    again: this call waits for their results (see :attr:`Summary.others`). Returns counts
    and the failures of this call. Progress goes to ``console`` (default: stderr): a bar
    on a terminal, one plain line per finished run when it is a file or a pipe, nothing
    when ``quiet``.

    ``log_to`` lists ``(kind, folder)`` pairs (:func:`normscope.loggers.open_logger`):
    every run this call computes is also written there as it is stored, as run
    ``<experiment>/<run hash>``, each measurement at its training step.

    Raises :class:`~normscope.experiments.store.PlanConflictError` before running
    anything when ``spec`` plans other runs than those stored under its name.
    """
    execute = _executor(backend, workers, address)
    runs = plan(spec, source=source)
    by_hash = {r.hash: r for r in runs}
    skip = {"ok"} if retry_failed else {"ok", "failed"}
    lease = store.begin(
        spec.name,
        spec_toml,
        spec.model_dump(mode="json"),
        source,
        [(r.hash, r.config) for r in runs],
        skip=skip,
    )
    console = console or sanitize.console(stderr=True)
    total = len(lease.mine) + len(lease.elsewhere)
    summary = Summary(spec.name, len(runs), skipped=len(runs) - total)
    t0 = time.perf_counter()
    try:
        with counted(console, spec.name, total, quiet=quiet or not total) as advance:
            todo = list(lease.mine)
            while todo or lease.elsewhere:
                for result in execute([by_hash[h] for h in todo]) if todo else ():
                    store.write_run(spec.name, result)
                    log_run(log_to, spec.name, result)
                    if result.status == "ok":
                        summary.ok += 1
                    else:
                        summary.failed += 1
                        summary.failures.append((result.hash, result.error or "unknown error"))
                    advance(summary.failed)
                others = summary.others
                todo = _wait_for_others(store, lease, skip, summary, console)
                if summary.others > others:
                    advance(summary.failed, summary.others - others)
    finally:
        store.release(lease)
    summary.seconds = time.perf_counter() - t0
    return summary


def log_run(log_to: Sequence[tuple[str, str | Path]], experiment: str, result: RunResult) -> None:
    """Write a finished run's measurements, step by step, to each ``(kind, folder)``."""
    by_step: dict[int, dict[str, float]] = {}
    for row in result.rows:
        by_step.setdefault(row.step, {})[row.name] = row.value
    for kind, folder in log_to:
        run = f"{sanitize.file_stem(experiment)}/{result.hash}"
        with open_logger(kind, folder, run=run) as logger:
            for step in sorted(by_step):
                logger.log_metrics(by_step[step], step)


def _wait_for_others(
    store: Store, lease: Lease, skip: set[str], summary: Summary, console: Console
) -> list[str]:
    """Wait until every run in ``lease.elsewhere`` is stored by its process, or until
    some are left by a process that died; returns the runs taken over (to compute)."""
    if lease.elsewhere:
        who = ", ".join(sorted({describe(o) for o in lease.elsewhere.values()}))
        console.print(
            f"{len(lease.elsewhere)} run(s) of {sanitize.rich_markup(lease.experiment)} are "
            f"being computed by another normscope process ({sanitize.rich_markup(who)}); "
            "waiting for their results instead of computing them again"
        )
    while lease.elsewhere:
        time.sleep(POLL_SECONDS)
        waiting = len(lease.elsewhere)
        taken = store.renew(lease, skip=skip)
        done = waiting - len(lease.elsewhere) - len(taken)
        summary.others += done
        summary.skipped += done
        if taken:
            console.print(
                f"{len(taken)} run(s) were left by a process that stopped; computing them here"
            )
            return taken
    return []
