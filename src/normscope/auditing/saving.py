"""Store an audit in the results store: one experiment, one run per variant and mode.

The experiment is named ``audit:<model name>``; its spec is a valid normscope spec TOML
(net ``arch = "audit"``) so that ``normscope report`` and ``normscope export`` read it
like any other experiment. Each run's config names its variant in ``subject.net.variant``
and its batch-norm mode in ``subject.bn_mode``; a variant that could not be built is a
run with status ``skipped`` and the reason as its error. Saving the same audit again
replaces its runs; an audit of the same model name with other settings (data, measures,
variants) is stored beside it as ``audit:<model name>-2`` (``-3``, ...), so no stored
audit is hidden.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import platform
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from normscope.auditing.result import AuditResult, RunRecord
from normscope.experiments.execute import RunResult, jsonable, to_row, versions
from normscope.experiments.store import PlanConflictError, Store


def experiment_name(result: AuditResult) -> str:
    return f"audit:{result.name}"


def _subject(result: AuditResult, variant: str, bn_mode: str) -> dict[str, Any]:
    s = result.settings
    return {
        "net": {"arch": "audit", "model": result.name, "variant": variant},
        "data": {"name": s["data"], "n": s["n"], "seed": s["seed"]},
        "loss": s["loss"],
        "bn_mode": bn_mode,
        "batch_size": None,
        "params": None,
        "dtype": s["dtype"],
    }


def _config(result: AuditResult, label: str, variant: str, bn_mode: str) -> dict[str, Any]:
    s = result.settings
    return jsonable(
        {
            "subject": _subject(result, variant, bn_mode),
            "train": None,
            "measures": [
                {"name": m, "label": m, "options": s["options"][m], "at": "end", "every": None}
                for m in s["measures"]
            ],
            "theory": [],
            "audit": {"label": label, "tier": s["tier"], "budget_seconds": s["budget_seconds"]},
        }
    )


def _hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return (
            repr(value)
            if math.isfinite(value)
            else ("nan" if value != value else ("inf" if value > 0 else "-inf"))
        )
    if isinstance(value, dict):
        items = (
            f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items() if v is not None
        )
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value if v is not None) + "]"
    # JSON string escapes are valid TOML basic-string escapes
    return json.dumps(str(value))


def spec_toml(result: AuditResult, name: str | None = None) -> str:
    """A normscope spec (TOML) describing the audit, stored as experiment ``name``
    (default :func:`experiment_name`); ``parse_spec`` reads it back."""
    s = result.settings
    subject = _subject(result, "as_given", "train")
    description = (
        f"normscope audit of {result.name}: variants {', '.join(s['variants'])}; "
        + " ".join(result.notes)
    )
    lines = [
        f"name = {_toml_value(name or experiment_name(result))}",
        f"description = {_toml_value(description)}",
        "[subject]",
        f"net = {_toml_value({'arch': 'audit', 'model': result.name})}",
        f"data = {_toml_value(subject['data'])}",
        f"loss = {_toml_value(subject['loss'])}",
        f"dtype = {_toml_value(subject['dtype'])}",
    ]
    for name in s["measures"]:
        lines += ["[[measure]]", f"name = {_toml_value(name)}"]
        lines += [
            f"{json.dumps(k)} = {_toml_value(v)}"
            for k, v in s["options"][name].items()
            if v is not None
        ]
    return "\n".join(lines) + "\n"


def _host() -> str:
    return platform.node() or sys.platform


def _run_result(result: AuditResult, run: RunRecord, config: dict[str, Any]) -> RunResult:
    finished = datetime.now(UTC)
    started = finished - timedelta(seconds=run.seconds)
    error = "; ".join(f"{m} failed: {e}" for m, e in run.failed.items()) or None
    return RunResult(
        hash=_hash(config),
        status="failed" if error else "ok",
        config=config,
        rows=[to_row(0, name, m) for name, m in run.measurements.items()],
        started=started.isoformat(timespec="seconds"),
        finished=finished.isoformat(timespec="seconds"),
        seconds=run.seconds,
        host=_host(),
        versions=versions(),
        error=error,
    )


def _skipped_result(config: dict[str, Any], reason: str) -> RunResult:
    now = datetime.now(UTC).isoformat(timespec="seconds")
    return RunResult(
        hash=_hash(config),
        status="skipped",
        config=config,
        rows=[],
        started=now,
        finished=now,
        seconds=0.0,
        host=_host(),
        versions=versions(),
        error=reason,
    )


def save(result: AuditResult, db: str | Path) -> str:
    """Write ``result`` to the store at ``db``; returns the experiment name (see the
    module docstring for the ``-2`` suffix)."""
    results = []
    for run in result.runs:
        config = _config(result, run.label, run.surgery, run.bn_mode)
        results.append(_run_result(result, run, config))
    for variant, reason in result.skipped.items():
        results.append(_skipped_result(_config(result, variant, variant, ""), reason))
    base = experiment_name(result)
    with Store(db) as store:
        for number in itertools.count(1):
            name = base if number == 1 else f"{base}-{number}"
            try:
                store.record_experiment(
                    name,
                    spec_toml(result, name),
                    {"audit": jsonable(result.settings)},
                    "normscope audit",
                    [(r.hash, r.config) for r in results],
                )
                break
            except PlanConflictError:
                continue
        for r in results:
            store.write_run(name, r)
    return name
