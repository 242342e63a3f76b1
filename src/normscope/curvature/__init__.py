"""Curvature operators built from a Subject (Hessian, GGN, Fisher, Jacobian products)."""

from normscope.curvature.jacobian import OutputJacobian
from normscope.curvature.operator import Operator

__all__ = ["Operator", "OutputJacobian"]
