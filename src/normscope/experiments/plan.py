"""``plan(spec)``: the resolved grid of runs, each with a stable hash for resume."""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from dataclasses import dataclass
from typing import Any

import normscope
from normscope.errors import ConfigError, NormscopeError
from normscope.experiments.spec import Spec, SubjectSpec


@dataclass(frozen=True)
class RunConfig:
    """One run of an experiment: its resolved config and the hash that identifies it.

    The hash is the SHA-256 (first 16 hex digits) of the canonical JSON of ``config``
    and the normscope version, so rerunning an unchanged spec finds its finished runs.
    """

    experiment: str
    index: int
    config: dict[str, Any]
    hash: str


def base_config(spec: Spec) -> dict[str, Any]:
    """The config shared by every run, before sweep substitution."""
    return {
        "subject": spec.subject.model_dump(mode="json"),
        "train": copy.deepcopy(spec.train),
        "measures": [
            {
                "label": m.stored_name,
                "name": m.name,
                "options": m.options,
                "at": m.at,
                "every": m.every,
                **({"split": m.split} if m.split is not None else {}),
                **({"point": m.point} if m.point != "iterate" else {}),
            }
            for m in spec.measure
        ],
        "theory": [{"name": t.name, "options": t.options} for t in spec.theory],
    }


def run_hash(config: dict[str, Any]) -> str:
    """Stable hash of a resolved config and the normscope version."""
    text = json.dumps(
        {"config": config, "normscope": normscope.__version__},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _factors(spec: Spec) -> list[list[dict[str, Any]]]:
    """Each factor is a list of alternative assignments {dotted path: value}."""
    sweep = spec.sweep
    if sweep is None:
        return []
    zipped = {key for group in sweep.zip for key in group}
    factors = [
        [
            dict(zip(group, values, strict=True))
            for values in zip(*(sweep.axes[k] for k in group), strict=True)
        ]
        for group in sweep.zip
    ]
    factors += [
        [{key: v} for v in values] for key, values in sweep.axes.items() if key not in zipped
    ]
    if sweep.seeds is not None:
        factors.append([{"subject.net.seed": s, "subject.data.seed": s} for s in sweep.seeds])
    return factors


def _assign(config: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node = config
    for depth, part in enumerate(parts[:-1], start=1):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            inside = ".".join(parts[:depth])
            raise ConfigError(
                f"sweep.{path!r}: {inside!r} is a value ({node!r}), not a table, so it has no "
                f"field {parts[depth]!r}; sweep {inside!r} itself."
            )
    node[parts[-1]] = value


def _resolve(spec: Spec, assignment: dict[str, Any], source: str) -> dict[str, Any]:
    from pydantic import ValidationError

    from normscope.experiments.checks import check_subject
    from normscope.experiments.errors import describe_validation_error
    from normscope.experiments.training import check_training

    config = base_config(spec)
    for path, value in assignment.items():
        _assign(config, path, copy.deepcopy(value))
    where = ", ".join(f"{k}={v!r}" for k, v in assignment.items()) or "base"
    try:
        subject = SubjectSpec.model_validate(config["subject"])
    except ValidationError as err:
        raise ConfigError(
            f"sweep point {where}: " + describe_validation_error(err, SubjectSpec, source)
        ) from None
    at = f"{source} (sweep point {where})" if assignment else source
    check_subject(subject, at)
    if config["train"] is not None:
        try:
            check_training(config["train"], subject.batch_size)
        except NormscopeError as err:
            raise type(err)(f"{at}: train: {err}") from None
    config["subject"] = subject.model_dump(mode="json")
    return config


def plan(spec: Spec, *, source: str = "<spec>") -> list[RunConfig]:
    """The runs of ``spec``: the Cartesian product of the sweep axes (zip groups vary
    together, ``seeds`` innermost), each resolved, validated and hashed."""
    points = itertools.product(*_factors(spec))
    runs = []
    seen: set[str] = set()
    for index, combo in enumerate(points):
        assignment = {k: v for part in combo for k, v in part.items()}
        config = _resolve(spec, assignment, source)
        digest = run_hash(config)
        if digest in seen:
            raise ConfigError(
                f"{source}: sweep point {assignment} repeats an earlier run; remove the "
                "duplicate value from [sweep]."
            )
        seen.add(digest)
        runs.append(RunConfig(spec.name, index, config, digest))
    return runs
