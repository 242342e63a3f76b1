"""What the integration tests read back: TensorBoard scalars and the state of a run."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import numpy as np
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def scalars(folder: Path, tag: str) -> dict[int, float]:
    """``{step: value}`` of scalar ``tag`` in the event files under ``folder``."""
    out: dict[int, float] = {}
    for events in sorted({p.parent for p in Path(folder).rglob("events.out.tfevents.*")}):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        if tag in acc.Tags()["scalars"]:
            out.update({e.step: e.value for e in acc.Scalars(tag)})
    return out


def rng_states() -> dict[str, object]:
    """Every global random stream's state."""
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers (running statistics included), copied."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def final_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, object]:
    """What a callback must not change: model state, gradients, optimizer state, modes
    and the global random streams."""
    return {
        "model": snapshot(model),
        "grads": {
            n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()
        },
        "training": [m.training for m in model.modules()],
        "optimizer": copy.deepcopy(optimizer.state_dict()),
        "rng": rng_states(),
    }


def assert_bit_identical(a: object, b: object, where: str = "") -> None:
    """Tensors equal bit for bit, everything else equal, recursively."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_bit_identical(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_bit_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def wandb_history(folder: Path) -> dict[int, dict[str, float]]:
    """``{step: {name: value}}`` of the offline W&B run files under ``folder``.

    A ``.wandb`` file is a LevelDB-style log of protobuf records: a 7-byte file header,
    then 32 KiB blocks of chunks, each with a 7-byte header (CRC, length, kind: 1 whole
    record, 2 first / 3 middle / 4 last piece of one).
    """
    import json
    import struct

    from wandb.proto import wandb_internal_pb2

    block, header = 32768, 7
    out: dict[int, dict[str, float]] = {}
    for path in Path(folder).rglob("*.wandb"):
        raw = path.read_bytes()
        assert raw[:4] == b":W&B", path
        pos, pieces = header, []
        while pos + header <= len(raw):
            if block - pos % block < header:  # too little left in the block: padding
                pos += block - pos % block
                continue
            _, length, kind = struct.unpack("<IHB", raw[pos : pos + header])
            pieces.append(raw[pos + header : pos + header + length])
            pos += header + length
            if kind in (1, 4):
                record = wandb_internal_pb2.Record()
                record.ParseFromString(b"".join(pieces))
                pieces = []
                if record.WhichOneof("record_type") == "history":
                    items = {
                        i.key or "/".join(i.nested_key): json.loads(i.value_json)
                        for i in record.history.item
                    }
                    step = items.pop("_step")
                    out.setdefault(step, {}).update(
                        {k: v for k, v in items.items() if not k.startswith("_")}
                    )
    return out
