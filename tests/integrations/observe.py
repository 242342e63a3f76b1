"""What the integration tests read back: TensorBoard scalars and the state of a run."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import numpy as np
import pytest
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


def assert_logged_equals_direct(
    folder: Path, prefix: str, states: dict[int, dict], direct, steps: list[int]
) -> None:
    """The ``loss`` and ``sharpness`` scalars logged under ``prefix`` in ``folder`` are
    at ``steps`` and equal ``direct(state)`` of the model state at the same step.

    Event files hold float32; Lanczos from a warm start and from a random one agree to
    about residual^2 / gap, far inside the sharpness tolerance.
    """
    loss, sharpness = scalars(folder, f"{prefix}loss"), scalars(folder, f"{prefix}sharpness")
    assert sorted(loss) == sorted(sharpness) == steps
    for step in steps:
        want_loss, want_sharpness = direct(states[step])
        assert loss[step] == pytest.approx(want_loss, rel=1e-6), step
        assert sharpness[step] == pytest.approx(want_sharpness, rel=1e-4), step


def assert_same_training(measured, plain) -> None:
    """Two observed runs match bit for bit at every step and at the end."""
    for step, state in plain.states.items():
        assert_bit_identical(measured.states[step], state, f"step {step}")
    assert_bit_identical(measured.end, plain.end, "end of training")


def wandb_records(path: Path) -> list:
    """The protobuf records of one ``.wandb`` file.

    A ``.wandb`` file is a LevelDB-style log: a 7-byte file header, then 32 KiB blocks of
    chunks, each with a 7-byte header (CRC, length, kind: 1 a whole record, 2 first /
    3 middle / 4 last piece of one).
    """
    import struct

    from wandb.proto import wandb_internal_pb2

    block, header = 32768, 7
    raw = path.read_bytes()
    assert raw[:4] == b":W&B", path
    pos, pieces, records = header, [], []
    while pos + header <= len(raw):
        if block - pos % block < header:  # too little left in the block: padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos : pos + header])
        if pos + header + length > len(raw):  # still being written
            break
        pieces.append(raw[pos + header : pos + header + length])
        pos += header + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(pieces))
            records.append(record)
            pieces = []
    return records


def wandb_history(folder: Path, timeout: float = 60.0) -> dict[int, dict[str, float]]:
    """``{step: {name: value}}`` of the offline W&B runs under ``folder``.

    W&B's service writes the run file in the background and may still be writing when
    ``finish()`` returns: each file is read until it holds the run's ``exit`` record.
    """
    import json
    import time

    out: dict[int, dict[str, float]] = {}
    for path in Path(folder).rglob("*.wandb"):
        deadline = time.monotonic() + timeout
        while True:
            records = wandb_records(path)
            kinds = [r.WhichOneof("record_type") for r in records]
            if "exit" in kinds or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        for record, kind in zip(records, kinds, strict=True):
            if kind != "history":
                continue
            items = {
                i.key or "/".join(i.nested_key): json.loads(i.value_json)
                for i in record.history.item
            }
            step = items.pop("_step")
            out.setdefault(step, {}).update(
                {k: v for k, v in items.items() if not k.startswith("_")}
            )
    return out
