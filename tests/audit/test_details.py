import numpy as np

from normscope.auditing.details import layer_values, scalar_details
from normscope.measurement import Measurement


def _m(**details):
    return Measurement("m", 1.0, details)


def test_layer_names_label_every_array_of_their_length_without_layer_prefix():
    m = _m(layer_names=["a", "b"], norms=np.array([1.0, 2.0]), log_norms=[0.0, 0.7], slope=0.5)
    assert layer_values(m) == [
        ("norms", 0, "a", 1.0),
        ("norms", 1, "b", 2.0),
        ("log_norms", 0, "a", 0.0),
        ("log_norms", 1, "b", 0.7),
    ]


def test_prefixed_arrays_only_when_a_prefix_is_shared():
    # an unrelated array of the same length (top-k overlaps) is not a per-layer value
    m = _m(
        layer_names=["a", "b"],
        layer_shares=np.array([0.3, 0.7]),
        mean_gradient_overlap=np.array([0.9, 0.1]),
    )
    assert [q for q, *_ in layer_values(m)] == ["layer_shares", "layer_shares"]


def test_group_names_label_group_arrays():
    m = _m(group_names=["g"], group_grad_norms=np.array([3.0]), group_jacobian_norms=[4.0])
    assert layer_values(m) == [
        ("group_grad_norms", 0, "g", 3.0),
        ("group_jacobian_norms", 0, "g", 4.0),
    ]


def test_arrays_of_another_length_and_text_lists_are_not_layer_values():
    m = _m(
        layer_names=["a", "b"],
        eigenvalues=np.array([3.0, 2.0, 1.0]),
        layer_kinds=["linear", "relu"],
        upper_status="local",
    )
    assert layer_values(m) == []


def test_scalar_details_keep_numbers_and_drop_text_bools_and_arrays():
    m = _m(lower=1.5, count=3, flag=True, status="ok", values=np.ones(2), big=np.float64(2.0))
    assert scalar_details(m) == {"lower": 1.5, "count": 3.0, "big": 2.0}
