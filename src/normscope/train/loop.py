"""Full-batch GD and mini-batch SGD with weight decay, on a Subject's parameters.

The update with weight decay ``wd`` on a group ``w`` is

    w_{t+1} = (1 - lr * wd) w_t - lr * grad L(w_t)

(plain SGD with momentum when ``momentum > 0``). For a scale-invariant group
(lyu2022), ``<grad L(w), w> = 0`` makes the norm evolve exactly as
``||w_{t+1}||^2 = (1 - lr wd)^2 ||w_t||^2 + lr^2 ||grad L(w_t)||^2``.

GD evaluates the loss on all samples as one batch (batch norm with full-batch
statistics, no ghost batches) unless the Subject has a ``batch_size``; SGD draws a
fresh random mini-batch of ``batch_size`` samples each step from a seeded generator.
Training changes the model in place (parameters, and batch-norm running statistics
as in ordinary training); parameters outside the Subject's selection stay frozen.
"""

from __future__ import annotations

import copy
import fnmatch
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from normscope.data import batches as batch_io
from normscope.data.batches import TensorBatches
from normscope.errors import ConfigError, unknown_name
from normscope.subject import Subject, is_batch_norm
from normscope.train.options import check_options
from normscope.train.tracker import Tracker


@dataclass
class TrainResult:
    """What a training run did: steps taken, final loss, and why it stopped."""

    steps: int
    final_loss: float
    stopped: str = "completed"
    losses: list[float] = field(default_factory=list)


def learning_rate(lr: float, schedule: str, step: int, steps: int, warmup: int = 0) -> float:
    """The step size at ``step``: constant, cosine decay to 0, or linear warm-up then constant."""
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        return 0.5 * lr * (1 + math.cos(math.pi * step / max(steps, 1)))
    return lr * min(1.0, (step + 1) / max(warmup, 1))


def _weight_decay_names(subject: Subject, wd_on: str | Sequence[str]) -> set[str]:
    names = subject.layout.names
    if wd_on == "all":
        return set(names)
    if wd_on == "scale_invariant":
        return {n for g in subject.scale_invariant_groups() for n in g.params}
    patterns = [wd_on] if isinstance(wd_on, str) else list(wd_on)
    chosen = {n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)}
    if not chosen:
        raise unknown_name("weight-decay parameter pattern", patterns[0], names)
    return chosen


def _check_data(optimizer: str, subject: Subject) -> None:
    """What the data must allow: targets, and in-memory samples for SGD's random draws."""
    subject.require_targets("training")
    if optimizer == "sgd" and not isinstance(subject.source, TensorBatches):
        raise ConfigError(
            "optimizer 'sgd' draws random mini-batches from in-memory data, but the Subject "
            "reads a loader: train in your own loop and measure with a Tracker, or use 'gd'."
        )
    if subject.group is not None:
        raise ConfigError(
            f"train() updates one process's model, but the Subject spans "
            f"{subject.group.size} processes: train with DistributedDataParallel in your "
            "own loop and measure with a Tracker, or train a Subject without process_group."
        )


def train(
    subject: Subject,
    *,
    optimizer: str = "gd",
    lr: float = 0.1,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    wd_on: str | Sequence[str] = "all",
    steps: int = 100,
    schedule: str = "constant",
    warmup: int = 0,
    seed: int = 0,
    tracker: Tracker | Sequence[Tracker] | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train the Subject's parameters in place with GD or SGD (+ weight decay).

    Args:
        optimizer: ``"gd"`` (full batch, or the Subject's fixed mini-batches accumulated)
            or ``"sgd"`` (a random mini-batch of the Subject's ``batch_size`` per step).
        wd_on: which parameters get weight decay: ``"all"``, ``"scale_invariant"`` (the
            groups ``Subject.scale_invariant_groups`` finds; lyu2022's setting), or
            name patterns.
        tracker: a :class:`Tracker` (or several, each with its own ``every``), called
            before step 0, every ``tracker.every`` steps, and after the last step; a
            tracker with ``point="midpoint"`` measures at the midpoint of the tracked
            iterate and the next one (the update is tried and undone first).
        on_step: called as ``on_step(step, loss)`` after every step (progress bars).

    Training stops early, with ``stopped="diverged"``, when the loss becomes non-finite.
    Every option is checked (:func:`normscope.train.options.check_options`) before the
    model is touched: a wrong type or an out-of-range value (a negative or NaN ``lr`` or
    ``weight_decay``) raises :class:`~normscope.errors.ConfigError`.
    """
    check_options(
        {
            "optimizer": optimizer,
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "wd_on": wd_on,
            "steps": steps,
            "schedule": schedule,
            "warmup": warmup,
            "seed": seed,
        },
        batch_size=subject.batch_size,
    )
    _check_data(optimizer, subject)
    trackers = [] if tracker is None else [tracker] if isinstance(tracker, Tracker) else tracker
    model = subject.model
    named = dict(model.named_parameters())
    decay = _weight_decay_names(subject, wd_on)
    groups = [
        {
            "params": [named[n] for n in subject.layout.names if n in decay],
            "weight_decay": weight_decay,
        },
        {"params": [named[n] for n in subject.layout.names if n not in decay], "weight_decay": 0.0},
    ]
    opt = torch.optim.SGD(
        [g for g in groups if g["params"]], lr=lr, momentum=momentum, weight_decay=0.0
    )
    generator = torch.Generator().manual_seed(seed)
    frozen = [p for n, p in named.items() if n not in set(subject.layout.names) and p.requires_grad]
    result = TrainResult(steps=0, final_loss=float("nan"))
    modes = [(m, m.training) for m in model.modules()]
    for p in frozen:
        p.requires_grad_(False)
    try:
        for step in range(steps):
            step_lr = learning_rate(lr, schedule, step, steps, warmup)
            for g in opt.param_groups:
                g["lr"] = step_lr
            for t in trackers:
                if t.due(step):
                    _track(t, subject, step, step_lr, opt, optimizer, generator)
            loss = _gradient_step(subject, opt, optimizer, generator)
            result.steps, result.final_loss = step + 1, loss
            result.losses.append(loss)
            if on_step is not None:
                on_step(step, loss)
            if not math.isfinite(loss):
                result.stopped = "diverged"
                break
        if result.stopped == "completed":
            final_lr = learning_rate(lr, schedule, steps, steps, warmup)
            for g in opt.param_groups:
                g["lr"] = final_lr
            for t in trackers:
                _track(t, subject, result.steps, final_lr, opt, optimizer, generator)
    finally:
        for p in frozen:
            p.requires_grad_(True)
        for m, training in modes:
            m.training = training
        opt.zero_grad(set_to_none=True)
    return result


def _track(
    tracker: Tracker,
    subject: Subject,
    step: int,
    lr: float,
    opt: torch.optim.Optimizer,
    optimizer: str,
    generator: torch.Generator,
) -> None:
    """Run ``tracker`` at ``step``: at the iterate, or at the midpoint of it and the next."""
    if tracker.point == "midpoint":
        with _at_midpoint(subject, opt, optimizer, generator):
            tracker.step(subject, step, lr=lr)
    else:
        tracker.step(subject, step, lr=lr)


@contextmanager
def _at_midpoint(
    subject: Subject, opt: torch.optim.Optimizer, optimizer: str, generator: torch.Generator
) -> Iterator[None]:
    """Move the trained parameters to ``(theta_t + theta_{t+1}) / 2`` for the duration.

    ``theta_{t+1}`` is the update training is about to make (a trial step with the
    optimizer's current state and step size); afterwards parameters, buffers (batch-norm
    running statistics), optimizer state and the mini-batch generator are restored, so
    training goes on exactly as without the measurement.
    """
    params = [p for g in opt.param_groups for p in g["params"]]
    model = subject.model
    saved = [p.detach().clone() for p in params]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    opt_state = copy.deepcopy(opt.state_dict())
    generator_state = generator.get_state()
    try:
        _gradient_step(subject, opt, optimizer, generator)
        with torch.no_grad():
            for p, before in zip(params, saved, strict=True):
                p.add_(before).mul_(0.5)
            for b, before in buffers:
                b.copy_(before)
        opt.zero_grad(set_to_none=True)
        yield
    finally:
        with torch.no_grad():
            for p, before in zip(params, saved, strict=True):
                p.copy_(before)
            for b, before in buffers:
                b.copy_(before)
        opt.load_state_dict(opt_state)
        generator.set_state(generator_state)
        opt.zero_grad(set_to_none=True)


def _gradient_step(
    subject: Subject, opt: torch.optim.Optimizer, optimizer: str, generator: torch.Generator
) -> float:
    """One update; returns the loss before it."""
    model = subject.model
    for m in model.modules():
        # Batch norm follows the Subject's mode (train: batch statistics, running stats
        # updated as in ordinary training); every other module runs in eval mode so that
        # the gradient is the one of the loss the measures see.
        m.training = subject.bn_mode == "train" and is_batch_norm(m)
    opt.zero_grad(set_to_none=True)
    if optimizer == "sgd":
        source = subject.source
        idx = torch.randperm(subject.num_samples, generator=generator)[: subject.batch_size]
        inputs = batch_io.move(
            batch_io.select_inputs(source.inputs, idx), subject.device, subject.dtype
        )
        targets = source.targets[idx].to(subject.device)
        loss = subject.loss_of(subject.forward(inputs), targets)
        loss.backward()
        value = float(loss.detach())
    else:
        value = 0.0
        for b in subject.loss_batches():
            loss = b.weight * subject.loss_of(subject.forward(b.inputs), b.targets)
            loss.backward()
            value += float(loss.detach())
    opt.step()
    return value
