"""normscope: measure what normalization layers do to neural networks.

The subpackages (``normscope.measures``, ``nets``, ``data``, ...) and the core types are
attributes of the package, each imported on first use: ``import normscope`` itself loads
neither torch nor any subpackage, so the command line starts fast.

Example:
    >>> import normscope
    >>> normscope.measures.get("sharpness") is normscope.measures.sharpness
    True
"""

import importlib
from importlib.metadata import PackageNotFoundError, version

from normscope.errors import NormscopeError

try:
    __version__ = version("normscope")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

SUBPACKAGES = (
    "auditing",
    "curvature",
    "data",
    "distributed",
    "experiments",
    "linalg",
    "measures",
    "nets",
    "report",
    "reproductions",
    "results",
    "testing",
    "theory",
    "train",
)
"""Modules reachable as ``normscope.<name>``, imported on first use."""

_OBJECTS = {
    "Measurement": "normscope.measurement",
    "Subject": "normscope.subject",
    "audit": "normscope.auditing",
}
"""Names of the top-level namespace and the module each is imported from on first use."""

__all__ = ["Measurement", "NormscopeError", "Subject", "__version__", "audit", *SUBPACKAGES]


def __getattr__(name: str):
    if name in SUBPACKAGES:
        return importlib.import_module(f"normscope.{name}")
    if name in _OBJECTS:
        return getattr(importlib.import_module(_OBJECTS[name]), name)
    raise AttributeError(f"module 'normscope' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
