"""Activation table: derivatives agree with central differences; names are validated."""

import numpy as np
import pytest

from normscope.errors import ConfigError
from normscope.theory import activation, activation_names


@pytest.mark.parametrize("name", activation_names())
def test_derivative_matches_central_difference(name):
    phi, dphi = activation(name)
    # Points away from 0, where relu has its kink.
    u = np.array([-2.3, -0.7, -0.05, 0.05, 0.4, 1.9])
    h = 1e-6
    numeric = (phi(u + h) - phi(u - h)) / (2 * h)
    np.testing.assert_allclose(dphi(u), numeric, rtol=1e-7, atol=1e-8)


def test_callable_pair_passes_through():
    pair = (np.cos, lambda u: -np.sin(u))
    assert activation(pair) is pair


def test_unknown_activation_lists_valid_names():
    with pytest.raises(LookupError, match="relu"):
        activation("rleu")
    with pytest.raises(ConfigError):
        activation(3)
