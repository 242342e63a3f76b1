"""Theory columns: named functions of a run's resolved config that return predictions.

A theory-column function takes the resolved run config (the dict stored with the run:
``config["subject"]["net"]["width"]`` ...) and keyword options from its ``[[theory]]``
table, and returns ``{column: value}``; each value is stored as a measurement named
``theory.<column>``, to be compared with measured columns (``close`` claims, plots).

Register one with::

    from normscope.experiments import theory_columns

    @theory_columns.register("my_prediction")
    def my_prediction(config, *, scale=1.0):
        return {"lambda_max": scale * config["subject"]["net"]["width"]}

Every module ``normscope/experiments/theory_*.py`` is imported on first use, so a
module there registers its functions by existing.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from typing import Any

from normscope.errors import ConfigError, unknown_name

TheoryFn = Callable[..., Mapping[str, float]]

_REGISTRY: dict[str, TheoryFn] = {}
_loaded = False


def register(name: str) -> Callable[[TheoryFn], TheoryFn]:
    """Decorator adding ``fn(config, **options) -> {column: value}`` under ``name``."""

    def add(fn: TheoryFn) -> TheoryFn:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"theory column function {name!r} is registered twice")
        _REGISTRY[name] = fn
        return fn

    return add


def _load_modules() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    import normscope.experiments as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name.startswith("theory_") and module.name != "theory_columns":
            importlib.import_module(f"{package.__name__}.{module.name}")


def names() -> list[str]:
    """All registered theory-column function names, sorted."""
    _load_modules()
    return sorted(_REGISTRY)


def get(name: str) -> TheoryFn:
    """The function registered as ``name``."""
    _load_modules()
    if name not in _REGISTRY:
        raise unknown_name("theory column function", name, _REGISTRY)
    return _REGISTRY[name]


def compute(name: str, config: dict[str, Any], options: dict[str, Any]) -> dict[str, float]:
    """Call ``name`` on ``config``; the columns come back as floats."""
    out = get(name)(config, **options)
    if not isinstance(out, Mapping):
        raise ConfigError(
            f"theory column function {name!r} returned {type(out).__name__}; it must return "
            "a dict {column: value}."
        )
    return {str(k): float(v) for k, v in out.items()}
