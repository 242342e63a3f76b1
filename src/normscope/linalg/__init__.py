"""Matrix-free linear algebra on symmetric operators given as ``v -> A v``.

Every routine takes ``matvec`` on flat tensors of dimension ``dim`` (an int, or an
example tensor giving dim, dtype and device), optionally a batched ``matmat`` on
``(k, dim)`` blocks, and a ``seed`` for its random vectors; every result records the
products it used (``num_matvecs``). Nothing here knows about neural networks.
"""

from normscope.linalg.hutchinson import TraceEstimate, hutchinson
from normscope.linalg.hutchpp import HutchppResult, hutchpp
from normscope.linalg.lanczos import LanczosResult, lanczos
from normscope.linalg.power import PowerResult, power_iteration
from normscope.linalg.slq import SLQResult, SpectralDensity, density_on_grid, slq, slq_trace
from normscope.linalg.xtrace import xtrace

__all__ = [
    "HutchppResult",
    "LanczosResult",
    "PowerResult",
    "SLQResult",
    "SpectralDensity",
    "TraceEstimate",
    "density_on_grid",
    "hutchinson",
    "hutchpp",
    "lanczos",
    "power_iteration",
    "slq",
    "slq_trace",
    "xtrace",
]
