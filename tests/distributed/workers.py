"""What each of the two gloo processes does (started by :func:`spawn`).

Every rank writes what it measured, and the messages of the errors it was meant to
raise, to ``rank<r>.json``; the tests compare the ranks with each other and with one
process.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

WORLD = 2
TIMEOUT_S = 240


def spawn(task: str, folder: Path, timeout: float = TIMEOUT_S) -> list[dict]:
    """Run ``task`` on two spawned gloo ranks; returns each rank's results.

    Processes still running after ``timeout`` seconds are killed (by their own pid).
    """
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_main, args=(task, rank, str(folder)), daemon=True)
        for rank in range(WORLD)
    ]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join(timeout)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(10)
    codes = [p.exitcode for p in procs]
    if codes != [0] * WORLD:
        logs = "\n".join(
            (folder / f"rank{r}.log").read_text()[-3000:]
            for r in range(WORLD)
            if (folder / f"rank{r}.log").exists()
        )
        raise AssertionError(f"ranks exited with {codes}:\n{logs}")
    return [json.loads((folder / f"rank{r}.json").read_text()) for r in range(WORLD)]


def _main(task: str, rank: int, folder: str) -> None:
    import traceback

    torch.set_num_threads(1)
    out = Path(folder)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{out / 'rendezvous'}",
        rank=rank,
        world_size=WORLD,
        timeout=timedelta(seconds=TIMEOUT_S),
    )
    try:
        results = TASKS[task](dist.group.WORLD)
    except BaseException:
        (out / f"rank{rank}.log").write_text(traceback.format_exc())
        os._exit(1)
    finally:
        dist.destroy_process_group()
    (out / f"rank{rank}.json").write_text(json.dumps(results))


def _error(fn) -> str:
    """``Type: message`` of what ``fn()`` raised (``"no error"`` when it did not)."""
    try:
        fn()
    except Exception as err:
        return f"{type(err).__name__}: {err}"
    return "no error"


# ----------------------------------------------------------------------------- tasks
def measure_cases(group) -> dict:
    """Every sharded measure in each case, on in-memory shards and on streamed batches."""
    from normscope import Subject
    from normscope.distributed import shard

    from tests.distributed.cases import BATCH, CASES, data, measure_all, model

    out = {}
    for dtype, bn_mode in CASES:
        mine = shard(data(dtype), group, batch_size=BATCH)
        s = Subject(model(dtype), mine, bn_mode=bn_mode, batch_size=BATCH, process_group=group)
        out[f"{dtype}-{bn_mode}"] = measure_all(s, dtype)
        out[f"{dtype}-{bn_mode}-settings"] = {
            k: str(v) for k, v in s.describe().items() if k in ("num_samples", "num_batches")
        }
    return out


def streamed_case(group) -> dict:
    """Each rank reads its own list of batches (what a DistributedSampler loader gives)."""
    from normscope import Subject

    from tests.distributed.cases import BATCH, data, measure_all, model

    x, y = data("float64")
    batches = [(x[i : i + BATCH], y[i : i + BATCH]) for i in range(0, len(x), BATCH)]
    mine = batches[:2] if group.rank() == 0 else batches[2:]
    s = Subject(model("float64"), mine, bn_mode="train", process_group=group)
    return measure_all(s, "float64")


def shard_without_counted_terms(group) -> dict:
    """Rank 1's labels are all ignored: it adds no loss term, yet takes part in every sum."""
    from normscope import Subject
    from normscope.distributed import shard

    from tests.distributed.cases import BATCH, measure_all, model, without_counted_terms

    x, y = without_counted_terms()
    mine = shard((x, y), group, batch_size=BATCH)
    s = Subject(model("float64"), mine, batch_size=BATCH, process_group=group)
    return measure_all(s, "float64")


def dense_hessian_case(group) -> dict:
    """The dense Hessian by finite differences of the gradient summed over the ranks."""
    from normscope import Subject
    from normscope.curvature import dense_hessian
    from normscope.distributed import shard

    from tests.distributed.cases import BATCH, data, model

    mine = shard(data("float64"), group, batch_size=BATCH)
    s = Subject(model("float64"), mine, batch_size=BATCH, process_group=group)
    return {"hessian": dense_hessian(s).tolist()}


def refusals(group) -> dict:
    """The errors a Subject across processes must raise, on every rank alike."""
    from normscope import Subject, measures
    from normscope.distributed import shard
    from normscope.train import train

    from tests.distributed.cases import BATCH, data, model

    x, y = shard(data("float64"), group, batch_size=BATCH)
    s = Subject(model("float64"), (x, y), batch_size=BATCH, process_group=group)
    other = model("float64")
    if group.rank() == 1:
        with torch.no_grad():
            other[0].weight[0, 0] += 1e-3
    broken = x.clone()
    if group.rank() == 1:
        broken[0, 0] = float("nan")
    theta = s.theta.requires_grad_(True)

    def second_derivative():
        with torch.enable_grad():
            (g,) = torch.autograd.grad(s.loss(theta), theta, create_graph=True)
            torch.autograd.grad(g.sum(), theta)

    return {
        "unsharded": _error(lambda: measures.input_lipschitz(s)),
        "spherical": _error(lambda: measures.spherical_sharpness(s)),
        "full_batch_statistics": _error(
            lambda: Subject(model("float64"), shard(data("float64"), group), process_group=group)
        ),
        "one_batch_per_rank_eval": measures.sharpness(
            Subject(
                model("float64"),
                shard(data("float64"), group),
                bn_mode="eval",
                process_group=group,
            ),
            tol=1e-10,
        ).value,
        "other_parameters": _error(
            lambda: Subject(other, (x, y), batch_size=BATCH, process_group=group)
        ),
        "other_bn_mode": _error(
            lambda: Subject(
                model("float64"),
                (x, y),
                batch_size=BATCH,
                bn_mode="train" if group.rank() == 0 else "eval",
                process_group=group,
            )
        ),
        "nan_on_one_rank": _error(
            lambda: Subject(model("float64"), (broken, y), batch_size=BATCH, process_group=group)
        ),
        "second_derivative": _error(second_derivative),
        "train": _error(lambda: train(s, lr=0.1, steps=1)),
        "after_errors": measures.sharpness(s, tol=1e-8).value,
    }


TASKS = {
    "measure_cases": measure_cases,
    "streamed_case": streamed_case,
    "dense_hessian_case": dense_hessian_case,
    "shard_without_counted_terms": shard_without_counted_terms,
    "refusals": refusals,
}
