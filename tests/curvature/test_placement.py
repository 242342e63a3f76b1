"""Per-parameter Hessian products equal the flat path, and the basis can live on the host.

On one device every form must give the same numbers, bit for bit, as the flat path
(one leaf for the whole parameter vector, one double backward per batch). A model spread
over devices is stood in for by splitting the parameters into two device groups on the
CPU, which exercises the same block bookkeeping (blocks that are not contiguous in the
flat layout).
"""

from __future__ import annotations

import pytest
import torch

from normscope import Subject, measures
from normscope.curvature import Hessian
from normscope.curvature.hessian import _linearization_mode, batch_loss
from normscope.curvature.placement import Placement

from tests.helpers import bn_mlp, classification_data


def _subject(bn_mode: str = "train", dtype=torch.float64) -> Subject:
    x, y = classification_data(n=26, dtype=dtype)
    return Subject(bn_mlp(dtype), (x, y), bn_mode=bn_mode, batch_size=6)


def _flat_path(subject: Subject, vs: torch.Tensor, batched: bool = False) -> torch.Tensor:
    """The flat path: one leaf for all of theta, ``sum_b w_b d(g_b . v)/d theta``, one
    double backward per vector or (``batched``) one for all of them."""
    theta = subject.theta
    total = None
    for b in subject.loss_batches():
        leaf = theta.detach().requires_grad_(True)
        with torch.enable_grad(), _linearization_mode(subject):
            g = torch.autograd.grad(batch_loss(subject, b)(leaf), leaf, create_graph=True)[0]
        if batched:
            t = torch.autograd.grad(g, leaf, vs, retain_graph=True, is_grads_batched=True)[0]
        else:
            t = torch.stack([torch.autograd.grad(g, leaf, v, retain_graph=True)[0] for v in vs])
        t = t if b.weight == 1.0 else b.weight * t
        total = t if total is None else total + t
    return total


def _two_groups(place: Placement) -> None:
    """Pretend parameters 0, 2, 4 ... live on one device and 1, 3, 5 ... on another."""
    device = place.groups[0][0]
    n = len(place.devices)
    place.groups = [(device, list(range(0, n, 2))), (device, list(range(1, n, 2)))]


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
def test_per_parameter_products_equal_the_flat_path_bit_for_bit(bn_mode):
    s = _subject(bn_mode)
    vs = torch.randn(
        3, s.num_params, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    op = Hessian(s)
    assert torch.equal(torch.stack([op.matvec(v) for v in vs]), _flat_path(s, vs))
    expected = _flat_path(s, vs, batched=True)
    assert torch.equal(op.matmat(vs), expected)
    pieces = op.product(op.placement.pieces(vs))
    assert [tuple(p.shape[1:]) for p in pieces] == [tuple(t) for t in s.layout.shapes]
    assert torch.equal(torch.cat([p.reshape(3, -1) for p in pieces], dim=1), expected)


def test_parameters_on_two_devices_give_the_same_products():
    s = _subject()
    vs = torch.randn(
        2, s.num_params, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
    op = Hessian(s)
    _two_groups(op.placement)
    assert op.placement.spread
    assert torch.equal(op.matmat(vs), _flat_path(s, vs, batched=True))
    assert torch.equal(op.matvec(vs[0]), _flat_path(s, vs[:1])[0])
    assert torch.equal(op.gradient, Hessian(s).gradient)


def test_placement_forms_round_trip_with_blocks_out_of_layout_order():
    s = _subject()
    place = Placement(s)
    _two_groups(place)
    v = torch.arange(2.0 * s.num_params, dtype=torch.float64).reshape(2, -1)
    blocks = place.blocks(place.pieces(v))
    assert [b.shape[-1] for b in blocks] == [
        sum(s.layout.numels[i] for i in idx) for _, idx in place.groups
    ]
    assert torch.equal(place.flat(blocks, "cpu"), v)
    assert torch.equal(place.flat(place.blocks(place.unblock(blocks)), "cpu"), v)


def test_the_functional_view_takes_per_parameter_tensors():
    s = _subject()
    inputs = s.first_batch().inputs
    assert torch.equal(s.output(s.params, inputs), s.output(s.theta, inputs))


def test_sharpness_with_the_basis_on_the_host_is_the_same_measurement():
    s = _subject(dtype=torch.float32)
    on_model = measures.sharpness(s, k=2, per_layer=True)
    on_host = measures.sharpness(s, k=2, per_layer=True, basis_device="cpu")
    assert on_host.value == on_model.value
    assert (on_host.details["layer_values"] == on_model.details["layer_values"]).all()
    iterations = on_host.details["iterations"]
    assert on_host.settings["basis_memory_mb"] == iterations * s.num_params * 4 / 2**20
    assert on_host.settings["basis_device"] == "cpu"
