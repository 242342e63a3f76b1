"""Parameter subsets as index sets into the flat vector: per module (layer) or per tensor.

The whole selection is set on the Subject (``params=None`` for all trainable parameters,
a glob such as ``"layers.3.*"`` for one module, ``"*.weight"`` for a kind of tensor).
Within it, :func:`parameter_blocks` splits the flat vector into the diagonal blocks that
per-layer measures restrict an operator to (:meth:`Operator.restrict`): ``H_ll`` is the
Hessian of the loss with respect to layer ``l``'s parameters, all others held fixed.
"""

from __future__ import annotations

from typing import Literal

import torch

from normscope.errors import unknown_name
from normscope.subject import Subject

BlockKind = Literal["module", "tensor"]


def parameter_blocks(subject: Subject, by: BlockKind = "module") -> dict[str, torch.Tensor]:
    """Name -> indices (int64) of each block in the Subject's flat parameter vector.

    ``by="module"``: the parameters of each owning module (``Subject.param_groups``, e.g.
    a linear layer's weight and bias together); ``by="tensor"``: one block per tensor.
    """
    if by == "module":
        groups = {g.name or "<root>": g.params for g in subject.param_groups()}
    elif by == "tensor":
        groups = {n: (n,) for n in subject.layout.names}
    else:
        raise unknown_name("block kind", by, ("module", "tensor"))
    return {name: group_index(subject, names) for name, names in groups.items()}


def group_index(subject: Subject, names: tuple[str, ...]) -> torch.Tensor:
    """Indices of the named parameter tensors in the flat vector."""
    layout = subject.layout
    return torch.cat([torch.arange(layout.slice(n).start, layout.slice(n).stop) for n in names])
