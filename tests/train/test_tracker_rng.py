"""Tracking never changes the training it watches: no global random stream moves."""

from torch.utils.data import DataLoader, TensorDataset

from normscope import data, nets
from normscope.train import Tracker

from tests.integrations.observe import assert_bit_identical, rng_states


def test_tracker_step_leaves_every_global_random_stream_as_it_was():
    d = data.load("digits", n=64, seed=0)
    model = nets.mlp(input_shape=d.input_shape, output_dim=10, width=8, depth=2, seed=0)
    probe = DataLoader(TensorDataset(d.x, d.y), batch_size=32)  # iterating draws from torch
    tracker = Tracker(["loss", "sharpness"], every=1, data=probe)
    before = rng_states()
    tracker.step(model, 0)
    assert_bit_identical(rng_states(), before, "rng")
