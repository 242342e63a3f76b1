"""Starting a measurement across processes from torchrun's environment.

``torchrun --nproc-per-node N -m normscope measure ...`` starts ``N`` processes with
``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` set;
:func:`torchrun_group` joins them in the default process group: NCCL with one GPU per
process (``cuda:LOCAL_RANK``) when CUDA is available, gloo on CPU otherwise.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

TORCHRUN_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def launched_by_torchrun() -> bool:
    """Whether this process was started by torchrun (its environment is set)."""
    return all(name in os.environ for name in TORCHRUN_ENV)


def rank_from_env() -> int:
    """This process's rank under torchrun (0 in a process started any other way)."""
    return int(os.environ["RANK"]) if launched_by_torchrun() else 0


def backend_for(cuda_available: bool) -> str:
    """NCCL when there are GPUs to reduce on, gloo (CPU) otherwise."""
    return "nccl" if cuda_available else "gloo"


@contextlib.contextmanager
def torchrun_group() -> Iterator[tuple[Any, Any]]:
    """``(process_group, device)`` for a command started by torchrun; ``(None, None)`` else.

    Initializes the default process group (unless the program already did), picks this
    process's device (its GPU under NCCL, the CPU under gloo) and, when it initialized the
    group, destroys it on exit.
    """
    if not launched_by_torchrun():
        yield None, None
        return
    import torch
    import torch.distributed as dist

    backend = backend_for(torch.cuda.is_available() and dist.is_nccl_available())
    device = torch.device("cpu")
    if backend == "nccl":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group(backend, device_id=device if backend == "nccl" else None)
    try:
        yield dist.group.WORLD, device
    finally:
        if owned:
            dist.destroy_process_group()
