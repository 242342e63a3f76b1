"""Named measures. Each returns a :class:`~normscope.measurement.Measurement`.

Every module of this package is imported here, so a measure registers itself by
living in a file of ``normscope/measures/``.
"""

import importlib
import pkgutil

from normscope.measures.registry import (
    MeasureInfo,
    check_options,
    fresh_running_stats,
    get,
    info,
    names,
    register,
)

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in ("registry", "constraints"):
        importlib.import_module(f"{__name__}.{_module.name}")

# normscope.measures.sharpness(...) etc.: every registered function is an attribute of
# the package. A module of the same name (measures/sharpness.py) stays importable by its
# full path; the package attribute is the function, which is what users call.
globals().update({_name: get(_name) for _name in names()})

__all__ = [
    "MeasureInfo",
    "check_options",
    "fresh_running_stats",
    "get",
    "info",
    "names",
    "register",
    *names(),
]
