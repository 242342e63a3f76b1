"""The loss and accuracy of a Subject: the cheapest measures, tracked during training."""

from __future__ import annotations

import torch

from normscope.losses import CrossEntropy
from normscope.measurement import CostMeter, Measurement
from normscope.measures.registry import register
from normscope.subject import Subject


def _are_labels(out: torch.Tensor, targets: torch.Tensor) -> bool:
    """Integer targets with one label per row of classes on the output's last dimension."""
    return not targets.is_floating_point() and tuple(targets.shape) == tuple(out.shape[:-1])


def _counted(subject: Subject, targets: torch.Tensor) -> torch.Tensor:
    loss = subject.loss_fn
    if isinstance(loss, CrossEntropy):
        return targets != loss.ignore_index
    return torch.ones_like(targets, dtype=torch.bool)


def _over_ranks(subject: Subject, total: torch.Tensor, correct: float, counted: int, labels: bool):
    """The loss, correct and counted labels summed over every rank's batches."""
    summed = subject.group.sum_numbers([float(total), correct, counted, float(not labels)])
    value = torch.tensor(summed[0], dtype=total.dtype)
    return value, summed[1], int(summed[2]), summed[3] == 0


@register("loss", family="loss", sharded=True)
def loss(subject: Subject) -> Measurement:
    """Empirical risk ``L(theta)``, the mean loss over all counted terms; accuracy in details.

    Accuracy (targets that are class labels, under cross-entropy or mse with one-hot
    targets) is the fraction of counted labels (samples, or tokens) whose largest output
    is the label, evaluated in the Subject's batch-norm mode.
    """
    meter = CostMeter()
    correct, total = 0.0, torch.zeros((), dtype=subject.work_dtype)
    theta = subject.theta
    labels, counted_terms = True, 0
    with torch.no_grad(), subject.modes():
        for b in subject.loss_batches():
            out = subject.output(theta, b.inputs)
            meter.add("forward")
            total = total + b.weight * subject.loss_of(out, b.targets).to(total.dtype)
            scores = subject.loss_fn.classes_last(out, b.targets)
            labels = labels and _are_labels(scores, b.targets)
            if labels:
                counted = _counted(subject, b.targets)
                correct += float(((scores.argmax(dim=-1) == b.targets) & counted).sum())
                counted_terms += int(counted.sum())
    if subject.group is not None:
        total, correct, counted_terms, labels = _over_ranks(
            subject, total, correct, counted_terms, labels
        )
    details = {}
    if labels and counted_terms:
        details["accuracy"] = correct / counted_terms
    notes = []
    if not torch.isfinite(total):
        notes.append(f"loss is {float(total)}: the network's outputs overflowed (NaN or inf)")
    return Measurement("loss", float(total), details, meter.cost(), {}, notes)
