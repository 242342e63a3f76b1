"""Property: any spec, valid or not, gives a run plan whose configs the store can keep, or
a NormscopeError; never another exception."""

from __future__ import annotations

import copy
import datetime
import itertools
import json
import math
import tomllib
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from normscope.errors import NormscopeError
from normscope.experiments.plan import plan, run_hash
from normscope.experiments.spec import parse_spec, spec_from_dict

from .conftest import TINY

BASE = tomllib.loads(TINY)

# Names that are valid somewhere, so that mutations often reach the deeper checks.
WORDS = [
    "loss",
    "sharpness",
    "fisher_spectrum",
    "mlp",
    "cnn",
    "batch",
    "layer",
    "none",
    "gaussian",
    "digits",
    "teacher",
    "mse",
    "cross_entropy",
    "train",
    "eval",
    "float32",
    "float64",
    "relu",
    "all",
    "output",
    "end",
    "both",
    "init",
    "subject.net.width",
    "subject.net.depth",
    "subject.data.n",
    "subject.loss",
    "train.lr",
    "train.lr.x",
    "subject.net.width.x",
    "bounded",
    "zz",
    "",
    "*.weight",
    "theory.x",
]
KEYS = [
    "name",
    "net",
    "data",
    "n",
    "width",
    "depth",
    "norm",
    "arch",
    "k",
    "label",
    "every",
    "at",
    "seeds",
    "zip",
    "type",
    "y",
    "x",
    "below",
    "lr",
    "steps",
    "dim",
    "num_classes",
]

scalars = st.one_of(
    st.sampled_from(WORDS),
    st.text(max_size=6),
    st.integers(-3, 12),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.dates(),
    st.times(),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)

PATHS = [
    ("name",),
    ("description",),
    ("paper",),
    ("subject",),
    ("subject", "net"),
    ("subject", "net", "width"),
    ("subject", "net", "depth"),
    ("subject", "net", "norm"),
    ("subject", "net", "arch"),
    ("subject", "net", "placement"),
    ("subject", "net", "weight_scale"),
    ("subject", "net", "num_norm"),
    ("subject", "data"),
    ("subject", "data", "name"),
    ("subject", "data", "n"),
    ("subject", "data", "dim"),
    ("subject", "data", "split"),
    ("subject", "loss"),
    ("subject", "bn_mode"),
    ("subject", "batch_size"),
    ("subject", "params"),
    ("subject", "dtype"),
    ("measure",),
    ("measure", 0),
    ("measure", 0, "name"),
    ("measure", 0, "label"),
    ("measure", 0, "k"),
    ("measure", 0, "at"),
    ("measure", 0, "every"),
    ("measure", 1),
    ("sweep",),
    ("sweep", "seeds"),
    ("sweep", "zip"),
    ("sweep", "subject.net.width"),
    ("sweep", "subject.net.depth"),
    ("sweep", "subject.data.n"),
    ("sweep", "train.lr"),
    ("sweep", "train.lr.x"),
    ("sweep", "subject.net.width.x"),
    ("train",),
    ("train", "lr"),
    ("theory",),
    ("claim",),
    ("plot",),
    ("extra",),
]


def _set(raw: dict[str, Any], path: tuple, value: Any, delete: bool) -> None:
    node: Any = raw
    for part, nxt in itertools.pairwise(path):
        if isinstance(node, list):
            part = min(part, len(node) - 1) if isinstance(part, int) and node else part
            if not node or not isinstance(part, int):
                return
            if not isinstance(node[part], dict | list):
                node[part] = {} if isinstance(nxt, str) else []
            node = node[part]
        else:
            if not isinstance(node.get(part), dict | list):
                node[part] = [{}] if isinstance(nxt, int) else {}
            node = node[part]
    last = path[-1]
    if isinstance(node, dict) and isinstance(last, str):
        if delete:
            node.pop(last, None)
        else:
            node[last] = value
    elif isinstance(node, list) and isinstance(last, int):
        if delete and node:
            node.pop(min(last, len(node) - 1))
        elif last < len(node):
            node[last] = value
        else:
            node.append(value)


# (where, new value, whether to delete the field instead): deletions one time in three
mutation = st.tuples(st.sampled_from(PATHS), values, st.sampled_from([False, False, True]))


@st.composite
def spec_dicts(draw) -> dict[str, Any]:
    raw = copy.deepcopy(BASE)
    for path, value, delete in draw(st.lists(mutation, min_size=1, max_size=3)):
        _set(raw, path, value, delete)
    return raw


def check_plan(make) -> None:
    """``make()`` gives a Spec; planning it either works, with configs the store can keep
    and stable hashes, or raises a NormscopeError."""
    try:
        runs = plan(make(), source="prop.toml")
    except NormscopeError as err:
        assert str(err).strip()
        return
    assert runs
    for run in runs:
        text = json.dumps(run.config, sort_keys=True)
        assert run_hash(json.loads(text)) == run.hash or _has_nan(run.config)


def _has_nan(value: Any) -> bool:
    """NaN != NaN, so a config holding NaN cannot round-trip to an equal hash input."""
    if isinstance(value, dict):
        return any(_has_nan(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_nan(v) for v in value)
    return isinstance(value, float) and math.isnan(value)


PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(spec_dicts())
@example({**BASE, "train": {"lr": 0.1}, "sweep": {"train.lr.x": [1]}})
@example({**BASE, "measure": [{"name": "sharpness", "seed": datetime.date(1979, 5, 27)}]})
def test_any_spec_dict_plans_or_raises_a_normscope_error(raw):
    check_plan(lambda: spec_from_dict(raw, source="prop.toml"))


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    return value.isoformat()


def toml_text(raw: dict[str, Any]) -> str:
    return "\n".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in raw.items()) + "\n"


def test_toml_writer_round_trips_the_base_spec():
    assert tomllib.loads(toml_text(BASE)) == BASE


@PROPERTY
@given(spec_dicts())
def test_any_spec_text_plans_or_raises_a_normscope_error(raw):
    check_plan(lambda: parse_spec(toml_text(raw), source="prop.toml"))


edits = st.lists(
    st.tuples(st.integers(0, len(TINY)), st.integers(0, 3), st.text(max_size=3)),
    min_size=1,
    max_size=3,
)


@PROPERTY
@given(edits)
def test_a_damaged_spec_file_plans_or_raises_a_normscope_error(changes):
    text = TINY
    for at, cut, insert in changes:
        at = min(at, len(text))
        text = text[:at] + insert + text[at + cut :]
    check_plan(lambda: parse_spec(text, source="prop.toml"))
