"""Checks of a validated spec against the registries: measure, theory, net, data names,
measure options, sweep paths. Every error names the spec file and the field path."""

from __future__ import annotations

import difflib
import functools
import json

from normscope.errors import ConfigError, NormscopeError
from normscope.experiments import theory_columns
from normscope.experiments.columns import check_columns
from normscope.experiments.plan import plan
from normscope.experiments.spec import DataSpec, MeasureSpec, Spec, SubjectSpec
from normscope.experiments.training import training_hook

SWEEP_ROOTS = ("subject", "train")


def _context(source: str, path: str, err: NormscopeError) -> NormscopeError:
    return type(err)(f"{source}: {path}: {err}")


def check_measures(spec: Spec, source: str) -> None:
    from normscope import measures

    seen: set[str] = set()
    for i, m in enumerate(spec.measure):
        path = f"measure[{i}]"
        try:
            measures.check_options(m.name, m.options)
        except NormscopeError as err:
            raise _context(source, path, err) from None
        _check_measure_fields(spec, m, source, path)
        if m.stored_name in seen:
            raise ConfigError(
                f"{source}: {path}: measurement name {m.stored_name!r} is used twice; give "
                "one of them a distinct `label`."
            )
        seen.add(m.stored_name)


def _check_measure_fields(spec: Spec, m: MeasureSpec, source: str, path: str) -> None:
    if m.stored_name.startswith("theory."):
        raise ConfigError(f"{source}: {path}: labels starting with 'theory.' are reserved.")
    if spec.train is None and (m.at != "end" or m.every is not None):
        raise ConfigError(
            f"{source}: {path}: `at` and `every` apply only to trained runs; add a [train] "
            "table or remove them."
        )
    if m.point != "iterate" and m.every is None:
        raise ConfigError(
            f"{source}: {path}: `point = {m.point!r}` applies only to tracked measures; add "
            "`every = k` or remove `point`."
        )


def check_theory(spec: Spec, source: str) -> None:
    for i, t in enumerate(spec.theory):
        try:
            theory_columns.get(t.name)
        except NormscopeError as err:
            raise _context(source, f"theory[{i}].name", err) from None


@functools.lru_cache(maxsize=1024)
def _check_structure(net_json: str) -> None:
    """``nets.check`` once per network structure: the seed changes no structure, and a
    sweep builds the same network for every seed, in the spec check and in the plan."""
    from normscope import nets

    nets.check(json.loads(net_json))


PLACEHOLDER_SHAPES = {"resnet": (3, 8, 8)}
"""The input shape a network is checked with before its data is loaded (when the spec
does not give one): one that the architecture accepts, default (1,)."""


def check_subject(subject: SubjectSpec, source: str, prefix: str = "subject") -> None:
    """Validate the network (built on the meta device, with placeholders for the fields
    the data fills in) and the data: name, split, size, seed and option names."""
    from normscope import data
    from normscope.nets.spec import parse_spec

    if "dtype" in subject.net:
        raise ConfigError(
            f"{source}: {prefix}.net.dtype: set the floating type with subject.dtype, which "
            "applies to both network and data."
        )
    arch = subject.net.get("arch")
    shape = PLACEHOLDER_SHAPES.get(arch, (1,)) if isinstance(arch, str) else (1,)
    net = {"input_shape": shape, "output_dim": 1, **subject.net, "dtype": subject.dtype}
    try:
        parsed = parse_spec(net)
        _check_structure(parsed.model_dump_json(exclude={"seed"}))
    except NormscopeError as err:
        raise _context(source, f"{prefix}.net", err) from None
    if subject.data.name not in data.names():
        from normscope.errors import unknown_name

        err = unknown_name("data set", subject.data.name, data.names())
        raise _context(source, f"{prefix}.data.name", err) from None
    d = subject.data
    try:
        data.check(d.name, split=d.split, n=d.n, seed=d.seed, **d.options)
    except NormscopeError as err:
        raise _context(source, f"{prefix}.data", err) from None


def _check_sweep_key(key: str, source: str) -> None:
    from normscope.nets.spec import NetSpec

    parts = key.split(".")
    if parts[0] not in SWEEP_ROOTS or len(parts) < 2:
        raise ConfigError(
            f"{source}: sweep.{key!r}: a sweep key is a dotted field path starting with "
            f"{' or '.join(SWEEP_ROOTS)}, e.g. 'subject.net.width'."
        )
    if parts[0] == "train":
        return
    tables = {"net": list(NetSpec.model_fields), "data": None}
    valid = list(SubjectSpec.model_fields)
    field = parts[1]
    if (
        field not in valid
        or (field in tables and len(parts) != 3)
        or (field not in tables and len(parts) != 2)
    ):
        full = [f"subject.{f}" for f in valid if f not in tables]
        full += [f"subject.net.{f}" for f in NetSpec.model_fields]
        full += [f"subject.data.{f}" for f in DataSpec.model_fields]
        close = difflib.get_close_matches(key, full, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{source}: sweep.{key!r}: no such field.{hint}")
    if field == "net" and parts[2] not in tables["net"]:
        close = difflib.get_close_matches(parts[2], tables["net"], n=1)
        hint = f" Did you mean 'subject.net.{close[0]}'?" if close else ""
        raise ConfigError(f"{source}: sweep.{key!r}: networks have no field {parts[2]!r}.{hint}")


def check_sweep(spec: Spec, source: str) -> None:
    sweep = spec.sweep
    if sweep is None:
        return
    for key, values in sweep.axes.items():
        _check_sweep_key(key, source)
        if not isinstance(values, list) or not values:
            raise ConfigError(
                f"{source}: sweep.{key!r}: give a non-empty list of values, e.g. [1, 2]."
            )
        if spec.train is None and key.startswith("train."):
            raise ConfigError(f"{source}: sweep.{key!r}: the spec has no [train] table.")
    if sweep.seeds is not None:
        clash = {"subject.net.seed", "subject.data.seed"} & set(sweep.axes)
        if clash:
            raise ConfigError(
                f"{source}: sweep: `seeds` sets {', '.join(sorted(clash))}; do not sweep "
                "it separately."
            )
        if not sweep.seeds:
            raise ConfigError(f"{source}: sweep.seeds: give at least one seed.")
    _check_zip(spec, source)


def _check_zip(spec: Spec, source: str) -> None:
    assert spec.sweep is not None
    used: set[str] = set()
    for i, group in enumerate(spec.sweep.zip):
        if not group:
            # an empty group would zip to no values at all and plan zero runs
            raise ConfigError(
                f"{source}: sweep.zip[{i}] is empty; list the keys that vary together, or "
                "remove the group."
            )
        for key in group:
            if key not in spec.sweep.axes:
                raise ConfigError(
                    f"{source}: sweep.zip[{i}]: {key!r} is not a sweep key; list it in "
                    "[sweep] with its values."
                )
            if key in used:
                raise ConfigError(f"{source}: sweep.zip[{i}]: {key!r} is in two zip groups.")
            used.add(key)
        lengths = {len(spec.sweep.axes[key]) for key in group}
        if len(lengths) > 1:
            raise ConfigError(
                f"{source}: sweep.zip[{i}]: zipped keys need lists of equal length, got "
                f"lengths {sorted(lengths)}."
            )


def check_spec(spec: Spec, source: str) -> None:
    """Every check a spec must pass before anything runs: names against the registries,
    measure options, sweep paths, then the whole plan (every sweep point's network, data
    name and training options) and every column its claims and plots name."""
    if not spec.measure and not spec.theory:
        raise ConfigError(f"{source}: the spec takes no measurement; add a [[measure]] table.")
    check_measures(spec, source)
    check_theory(spec, source)
    check_subject(spec.subject, source)
    check_sweep(spec, source)
    if spec.train is not None:
        try:
            training_hook()
        except NormscopeError as err:
            raise _context(source, "train", err) from None
    check_columns(spec, plan(spec, source=source), source)
