"""One sharpness measurement across processes: 2 processes x 1 thread against 1 x 1.

Workload: the 935k-parameter batch-norm MLP of ``bench_hessian.py`` (784-512-512-512-10)
on 4096 random samples in batches of 512 (8 batches; 4 per rank), float32, the top
Hessian eigenvalue by ``measures.sharpness`` at its defaults (``k=1``, ``tol=1e-4``), in
both batch-norm modes. Each measurement runs in freshly spawned processes with one torch
thread each; the time is that of the measure call (linearization and Lanczos), the
slowest rank's under two processes, after a barrier, with process start and model
building excluded. Rounds alternate the order of the two set-ups so that a change in the
machine's load falls on both; the speed-up is the ratio of the medians (and of the
minima, the least disturbed runs). The load average is recorded with every round.

``--backend nccl`` runs the same comparison on GPUs (one per rank, the one-process
run on ``cuda:0``).

Run:  .venv/bin/python benchmarks/bench_distributed.py   (writes results/distributed.md)
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "distributed.md"
SAMPLES, BATCH = 4096, 512


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _measure(
    rank: int, world: int, backend: str, bn_mode: str, own_session: bool, port: int, out
) -> None:
    if own_session:
        os.setsid()
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch
    import torch.distributed as dist

    sys.path.insert(0, str(HERE))
    from bench_hessian import mlp
    from normscope import Subject, measures
    from normscope.distributed import shard

    torch.set_num_threads(1)
    device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    group = None
    if world > 1:
        if backend == "nccl":
            torch.cuda.set_device(device)
        dist.init_process_group(
            backend,
            init_method=f"tcp://127.0.0.1:{port}",
            rank=rank,
            world_size=world,
            timeout=timedelta(minutes=10),
        )
        group = dist.group.WORLD
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = mlp().to(device)
    x = torch.randn(SAMPLES, 784, generator=gen)
    y = torch.randint(0, 10, (SAMPLES,), generator=gen)
    s = Subject(model, shard((x, y), group, batch_size=BATCH), bn_mode=bn_mode,
                batch_size=BATCH, process_group=group)  # fmt: skip
    if group is not None:
        dist.barrier()
    if backend == "nccl":
        torch.cuda.synchronize(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    m = measures.sharpness(s)
    if backend == "nccl":
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - start, time.process_time() - cpu_start)
    if group is not None:
        found = [None] * world
        dist.all_gather_object(found, seconds)
        seconds = tuple(max(t[i] for t in found) for i in range(2))
        dist.destroy_process_group()
    if rank == 0:
        out.put((*seconds, m.value, int(m.cost["hvp"])))


def run(
    world: int, backend: str, bn_mode: str, own_session: bool
) -> tuple[float, float, float, int]:
    """``(wall seconds, CPU seconds, lambda_max, hvps)`` of one measurement on ``world``
    fresh processes (the slowest rank's times)."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    port = _free_port()
    procs = [
        ctx.Process(target=_measure, args=(r, world, backend, bn_mode, own_session, port, out))
        for r in range(world)
    ]
    for p in procs:
        p.start()
    try:
        result = out.get(timeout=1800)
    finally:
        for p in procs:
            p.join(60)
            if p.is_alive():
                p.kill()
    return result


def compare(backend: str, bn_mode: str, rounds: int, own_session: bool, loads: list) -> str:
    """One table row: 1 process against 2, ``rounds`` times, alternating the order."""
    times: dict[int, list[float]] = {1: [], 2: []}
    cpu: dict[int, list[float]] = {1: [], 2: []}
    values: dict[int, list[float]] = {1: [], 2: []}
    hvps: dict[int, int] = {}
    for i in range(rounds):
        for world in (1, 2) if i % 2 == 0 else (2, 1):
            loads.append(os.getloadavg()[0])
            seconds, cpu_seconds, value, count = run(world, backend, bn_mode, own_session)
            times[world].append(seconds)
            cpu[world].append(cpu_seconds)
            values[world].append(value)
            hvps[world] = count
            print(
                f"{bn_mode} {world} process(es), own session {own_session}: {seconds:.2f} s "
                f"wall, {cpu_seconds:.2f} s CPU, load {loads[-1]:.1f}, {value!r}",
                flush=True,
            )
    gap = max(abs(a - b) / abs(b) for a in values[2] for b in values[1])
    wall = [statistics.median(times[w]) for w in (1, 2)]
    sessions = "one per process" if own_session else "one for all"
    return (
        f"| {bn_mode} | {sessions} | {wall[0]:.1f} | {wall[1]:.1f} | {wall[0] / wall[1]:.2f}"
        f" | {min(times[1]) / min(times[2]):.2f}"
        f" | {statistics.median(cpu[1]) / statistics.median(cpu[2]):.2f}"
        f" | {values[1][0]:.7g} | {values[2][0]:.7g} | {gap:.1e} | {hvps[1]} / {hvps[2]} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", choices=("gloo", "nccl"), default="gloo")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    loads: list[float] = []
    rows = [
        compare(args.backend, bn_mode, args.rounds, own_session, loads)
        for own_session in (False, True)
        for bn_mode in ("train", "eval")
    ]
    backend = {"gloo": "gloo, CPU, 1 torch thread per process", "nccl": "NCCL, one GPU per rank"}
    text = "\n".join(
        [
            "## One measurement across processes (bench_distributed.py)",
            "",
            f"Top Hessian eigenvalue (`sharpness`, `k=1`, `tol=1e-4`) of the 935k-parameter "
            f"batch-norm MLP on {SAMPLES} samples in batches of {BATCH}, float32: 2 processes "
            f"({backend[args.backend]}) against 1 process. Median of {args.rounds} rounds "
            "(wall time of the measure call, slowest rank); wall speed-up by medians and by "
            "minima; CPU speed-up: CPU seconds of the one process over those of the busiest "
            "rank, the split of the work, what the wall time shows when each process has a "
            f"core. The {os.cpu_count()} cores were shared with other jobs (load average "
            f"{min(loads):.1f} to {max(loads):.1f}), and Linux shares the CPU between "
            "sessions (autogroups) before processes: ranks started in one session (as "
            "torchrun does) split one session's share, so their wall time cannot drop; "
            "with a session per process (as on separate machines, or cores of their own) "
            "each rank gets its own share.",
            "",
            "| bn_mode | sessions | 1 process (s) | 2 processes (s) | speed-up (median) "
            "| speed-up (min) | CPU speed-up | lambda_max, 1 process | lambda_max, 2 processes "
            "| relative difference | hvp |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"Reproduce: `.venv/bin/python benchmarks/bench_distributed.py --backend "
            f"{args.backend}`."
            + (
                " The same comparison with NCCL (`--backend nccl`, on a machine with two "
                "GPUs) is not in this table."
                if args.backend == "gloo"
                else ""
            ),
        ]
    )
    args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
