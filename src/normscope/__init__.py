"""normscope: measure what normalization layers do to neural networks."""

from importlib.metadata import PackageNotFoundError, version

from normscope.errors import NormscopeError
from normscope.measurement import Measurement
from normscope.subject import Subject

try:
    __version__ = version("normscope")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

__all__ = ["Measurement", "NormscopeError", "Subject", "__version__", "audit"]


def __getattr__(name: str):
    # normscope.audit imports the experiment store and plotting; load it on first use.
    if name == "audit":
        from normscope.auditing import audit

        return audit
    raise AttributeError(f"module 'normscope' has no attribute {name!r}")
