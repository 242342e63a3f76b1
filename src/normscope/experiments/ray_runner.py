"""Ray backend (``normscope[ray]``): each run is a Ray task; the driver stores results.

``address=None`` starts (or joins the already started) local Ray instance; an address
such as ``"ray://host:10001"`` or ``"auto"`` joins a cluster. Each task asks for one
CPU and runs torch with one thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from normscope.errors import ConfigError
from normscope.experiments.execute import RunResult, execute_run
from normscope.experiments.plan import RunConfig


def _ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--backend ray needs Ray: install it with `pip install 'normscope[ray]'`."
        ) from None
    return ray


def _task(run_hash: str, config: dict[str, Any]) -> RunResult:
    import torch

    torch.set_num_threads(1)
    return execute_run(run_hash, config)


def iter_ray(runs: list[RunConfig], *, address: str | None = None) -> Iterator[RunResult]:
    """Submit every run as a Ray task and yield results as they finish."""
    from normscope.experiments.runner import crashed

    ray = _ray()
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except Exception as err:  # Ray raises ConnectionError, RuntimeError, ValueError...
            raise ConfigError(f"cannot start or join Ray at {address or 'local'}: {err}.") from None
    remote = ray.remote(num_cpus=1)(_task)
    refs = {remote.remote(run.hash, run.config): run for run in runs}
    try:
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            for ref in ready:
                run = refs.pop(ref)
                try:
                    yield ray.get(ref)
                except ray.exceptions.RayError as err:
                    yield crashed(run, f"{type(err).__name__}: {err}")
    finally:
        for ref in refs:
            ray.cancel(ref, force=True)
        if started_here:
            ray.shutdown()
