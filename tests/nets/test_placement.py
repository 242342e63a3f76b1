"""Placement resolution: which hidden layers a spec normalizes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from normscope.errors import ConfigError
from normscope.nets.placement import evenly_spread, resolve_sites
from normscope.nets.spec import NetSpec


@given(st.integers(1, 40).flatmap(lambda n: st.tuples(st.integers(1, n), st.just(n))))
def test_evenly_spread_gives_k_distinct_layers_ending_at_the_last(k_and_n):
    k, n = k_and_n
    sites = evenly_spread(k, n)
    assert len(set(sites)) == k
    assert sites[-1] == n - 1
    gaps = [b - a for a, b in zip((-1, *sites), sites, strict=False)]
    assert max(gaps) - min(gaps) <= 1


def test_evenly_spread_rejects_more_norms_than_layers():
    with pytest.raises(ConfigError, match="num_norm=5"):
        evenly_spread(5, 4)


def _spec(**fields) -> NetSpec:
    return NetSpec(arch="mlp", input_shape=(3,), output_dim=2, norm="batch", **fields)


@pytest.mark.parametrize(
    ("placement", "hidden", "output"),
    [
        ("all", (0, 1, 2, 3, 4), False),
        ("hidden", (0, 1, 2, 3), False),
        ("last", (4,), False),
        ("output", (), True),
        ("none", (), False),
        ([3, 1], (1, 3), False),
        ({"every": 2}, (1, 3), False),
        ({"every": 5}, (4,), False),
    ],
    ids=str,
)
def test_named_and_explicit_placements(placement, hidden, output):
    sites = resolve_sites(_spec(placement=placement, depth=5), 5)
    assert sites.hidden == hidden
    assert sites.output is output


def test_norm_none_places_nothing_whatever_the_placement():
    spec = NetSpec(arch="mlp", input_shape=(3,), output_dim=2, placement="all")
    assert resolve_sites(spec, 3).hidden == ()


def test_num_norm_zero_places_nothing():
    assert resolve_sites(_spec(num_norm=0, depth=3), 3).hidden == ()
