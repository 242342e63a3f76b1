"""Curvature operators built from a Subject (Hessian, GGN, Fisher, Jacobian products).

Every operator is a symmetric :class:`Operator` on the Subject's flat parameter vector
(``matvec``, batched ``matmat``, ``dense``, ``restrict`` to a block) that plugs into
:mod:`normscope.linalg`; :mod:`normscope.curvature.dense` holds the dense ground truth.
"""

from normscope.curvature.blocks import group_index, parameter_blocks
from normscope.curvature.dense import (
    dense_empirical_fisher,
    dense_ggn,
    dense_hessian,
    dense_jacobian,
    dense_output_hessian,
    hessian_vector_fd,
    loss_gradient,
    sample_gradients,
)
from normscope.curvature.empirical_fisher import EmpiricalFisher
from normscope.curvature.ggn import GGN, FisherOperator
from normscope.curvature.gram import FisherFactor
from normscope.curvature.hessian import Hessian
from normscope.curvature.jacobian import OutputJacobian
from normscope.curvature.operator import Operator

__all__ = [
    "GGN",
    "EmpiricalFisher",
    "FisherFactor",
    "FisherOperator",
    "Hessian",
    "Operator",
    "OutputJacobian",
    "dense_empirical_fisher",
    "dense_ggn",
    "dense_hessian",
    "dense_jacobian",
    "dense_output_hessian",
    "group_index",
    "hessian_vector_fd",
    "loss_gradient",
    "parameter_blocks",
    "sample_gradients",
]
