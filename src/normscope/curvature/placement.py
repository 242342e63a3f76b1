"""Parameter-space vectors per parameter, each where its parameter lives.

A model too large for one device is spread over several (Hugging Face
``device_map="auto"``); its parameter-space vectors then cannot be one flat tensor on
one device. :class:`Placement` maps between the two forms:

- *pieces*: one tensor per selected parameter, shaped like it and on its device, with
  optional leading dimensions ``(k, *shape)`` for a batch of vectors; products are
  computed in this form;
- *blocks*: per device, the flat concatenation of that device's pieces (in layout
  order), what sums over batches and ranks work on, one tensor per device;
- *flat*: the ``(..., P)`` vector of the Subject's layout on one chosen device (the host,
  to keep an eigensolver's basis off the accelerators), what :mod:`normscope.linalg`
  takes.

On a model on one device there is one block, and flat and block are the same vector.

Example:
    >>> import torch
    >>> from normscope import Subject
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Tanh(), torch.nn.Linear(2, 2))
    >>> s = Subject(model, (torch.randn(4, 3), torch.tensor([0, 1, 0, 1])))
    >>> place = Placement(s)
    >>> v = torch.arange(float(s.num_params))
    >>> [tuple(p.shape) for p in place.pieces(v)]
    [(2, 3), (2,), (2, 2), (2,)]
    >>> bool(torch.equal(place.flat(place.blocks(place.pieces(v)), "cpu"), v))
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from normscope.subject import Subject


class Placement:
    """Where each of a Subject's selected parameters lives (module docstring)."""

    def __init__(self, subject: Subject) -> None:
        self.layout = subject.layout
        self.devices = subject.param_devices
        order: dict[torch.device, list[int]] = {}
        for i, device in enumerate(self.devices):
            order.setdefault(device, []).append(i)
        self.groups: list[tuple[torch.device, list[int]]] = list(order.items())

    def pieces(self, flat: Tensor, dtype: torch.dtype | None = None) -> list[Tensor]:
        """A flat ``(..., P)`` vector as per-parameter pieces ``(..., *shape)`` on their devices."""
        parts = self.layout.unflatten(flat).values()
        return [p.to(device=d, dtype=dtype) for p, d in zip(parts, self.devices, strict=True)]

    def blocks(self, pieces: Sequence[Tensor]) -> list[Tensor]:
        """Per device, its pieces flattened and concatenated in layout order ``(..., n_d)``."""
        lead = pieces[0].shape[: pieces[0].ndim - len(self.layout.shapes[0])]
        return [
            torch.cat([pieces[i].reshape(*lead, -1) for i in idx], dim=-1) for _, idx in self.groups
        ]

    def unblock(self, blocks: Sequence[Tensor]) -> list[Tensor]:
        """Per-device blocks back into per-parameter pieces ``(..., *shape)``."""
        out: list[Tensor | None] = [None] * len(self.devices)
        for block, (_, idx) in zip(blocks, self.groups, strict=True):
            lead = block.shape[:-1]
            parts = torch.split(block, [self.layout.numels[i] for i in idx], dim=-1)
            for i, part in zip(idx, parts, strict=True):
                out[i] = part.reshape(*lead, *self.layout.shapes[i])
        return out

    def flat(self, blocks: Sequence[Tensor], device: torch.device | str) -> Tensor:
        """Blocks gathered into one flat ``(..., P)`` vector on ``device``."""
        if len(blocks) == 1:
            return blocks[0].to(device)
        lead = blocks[0].shape[:-1]
        out = blocks[0].new_empty(*lead, self.layout.size, device=device)
        offsets, numels = self.layout.offsets, self.layout.numels
        for block, (_, idx) in zip(blocks, self.groups, strict=True):
            start = 0
            for i in idx:
                out[..., offsets[i] : offsets[i] + numels[i]] = block[
                    ..., start : start + numels[i]
                ]
                start += numels[i]
        return out

    @property
    def spread(self) -> bool:
        """Whether the parameters live on more than one device."""
        return len(self.groups) > 1
