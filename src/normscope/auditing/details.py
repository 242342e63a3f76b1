"""Read per-layer values and scalar details out of a Measurement's ``details``.

Measures report per-layer values as a list of names (``layer_names``, ``group_names``...)
beside numeric arrays of the same length (``norms``, ``isometry_gap``,
``group_grad_norms``...). A name list labels the arrays of its length whose key shares
its prefix (``group_names`` with ``group_grad_norms``); ``layer_names`` labels every
array of its length when no array shares its ``layer_`` prefix.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from normscope.measurement import Measurement


def _name_lists(details: dict[str, Any]) -> dict[str, list[str]]:
    return {
        key: [str(v) for v in value]
        for key, value in details.items()
        if key.endswith("names")
        and isinstance(value, list | tuple)
        and all(isinstance(v, str) for v in value)
    }


def _numeric_array(value: Any) -> np.ndarray | None:
    if isinstance(value, str | bytes | dict) or np.isscalar(value):
        return None
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return None
    return array if array.ndim == 1 else None


def _names_for(
    key: str, length: int, lists: dict[str, list[str]], arrays: dict[str, np.ndarray]
) -> list[str] | None:
    """The name list that labels array ``key``, if any.

    A name list whose key prefix some array shares (``layer_names`` beside
    ``layer_shares``) labels only the arrays with that prefix, so that an unrelated array
    of the same length (top-k eigenvector overlaps) is not taken for per-layer values.
    """
    for names_key, names in lists.items():
        if len(names) != length:
            continue
        prefix = names_key[: -len("names")]
        prefixed = prefix and any(k.startswith(prefix) for k in arrays)
        if key.startswith(prefix) if prefixed else names_key == "layer_names":
            return names
    return None


def layer_values(m: Measurement) -> list[tuple[str, int, str, float]]:
    """``(quantity, index, layer, value)`` for every per-layer value of ``m``."""
    lists = _name_lists(m.details)
    arrays = {
        key: array
        for key, value in m.details.items()
        if key not in lists and (array := _numeric_array(value)) is not None and array.size
    }
    out = []
    for key, array in arrays.items():
        names = _names_for(key, array.size, lists, arrays)
        if names is not None:
            out += [(key, i, names[i], float(v)) for i, v in enumerate(array)]
    return out


def scalar_details(m: Measurement) -> dict[str, float]:
    """The numeric scalar details of ``m`` (bounds, slopes, norms...)."""
    return {
        key: float(value)
        for key, value in m.details.items()
        if isinstance(value, int | float | np.number) and not isinstance(value, bool | np.bool_)
    }
