"""The loss and accuracy of a Subject: the cheapest measures, tracked during training."""

from __future__ import annotations

import torch

from normscope.measurement import CostMeter, Measurement
from normscope.measures.registry import register
from normscope.subject import Subject


@register("loss", family="loss")
def loss(subject: Subject) -> Measurement:
    """Empirical risk ``L(theta) = (1/N) sum_i l(f(theta; x_i), y_i)``; accuracy in details.

    Accuracy (classification only) is the fraction of samples whose largest output is
    the label, evaluated in the Subject's batch-norm mode.
    """
    meter = CostMeter()
    correct, total = 0.0, torch.zeros((), dtype=subject.dtype)
    theta = subject.theta
    with torch.no_grad(), subject.modes():
        for b in subject.batches():
            out = subject.output(theta, b.x)
            meter.add("forward")
            total = total + b.weight * subject.loss_of(out, b.y)
            if subject.data.task == "classification":
                correct += float((out.argmax(dim=1) == b.y).sum())
    details = {}
    if subject.data.task == "classification":
        details["accuracy"] = correct / subject.num_samples
    notes = []
    if not torch.isfinite(total):
        notes.append(f"loss is {float(total)}: the network's outputs overflowed (NaN or inf)")
    return Measurement("loss", float(total), details, meter.cost(), {}, notes)
