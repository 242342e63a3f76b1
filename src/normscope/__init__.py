"""normscope: measure what normalization layers do to neural networks."""

from importlib.metadata import PackageNotFoundError, version

from normscope.errors import NormscopeError
from normscope.measurement import Measurement
from normscope.subject import Subject

try:
    __version__ = version("normscope")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

__all__ = ["Measurement", "NormscopeError", "Subject", "__version__"]
