"""Named measures. Each returns a :class:`~normscope.measurement.Measurement`.

Every module of this package is imported here, so a measure registers itself by
living in a file of ``normscope/measures/``.
"""

import importlib
import pkgutil

from normscope.measures.registry import MeasureInfo, get, info, names, register

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "registry":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["MeasureInfo", "get", "info", "names", "register"]


def __getattr__(name: str):
    # normscope.measures.sharpness(...) etc.: the registered functions as attributes
    try:
        return get(name)
    except LookupError as err:
        raise AttributeError(name) from err
