"""The Subject takes the models, data and losses people train, and gets the right numbers.

Every case is checked against a value computed another way: finite differences of the
autograd gradient, a dense Jacobian, a plain forward pass, or the same data fed as
tensors.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from normscope import Subject, measures
from normscope.curvature import Hessian, dense_hessian, hessian_vector_fd
from normscope.errors import ConfigError, DataError, ModelError, ShapeError, UnknownNameError

from tests import zoo
from tests.helpers import bn_mlp, classification_data


def _unit_directions(dim: int, k: int, seed: int = 0) -> torch.Tensor:
    v = torch.randn(k, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return v / v.norm(dim=1, keepdim=True)


# ----------------------------------------------------------------- transformers, exact
@pytest.mark.parametrize("batch_size", [None, 2])
def test_gpt2_hessian_matches_finite_differences_with_ignored_labels(batch_size):
    model, data, _ = zoo.gpt2(torch.float64)
    s = Subject(model, data, batch_size=batch_size)
    assert s.num_terms == 4 * 5  # the last label of every sequence is -100
    op = Hessian(s)
    for v in _unit_directions(s.num_params, 3):
        want = hessian_vector_fd(s, v)
        assert torch.allclose(op.matvec(v), want, rtol=1e-6, atol=1e-8 * float(want.abs().max()))


def test_gpt2_dense_hessian_block_matches_finite_differences():
    model, data, _ = zoo.gpt2(torch.float64)
    s = Subject(model, data, batch_size=2, params=["transformer.h.1.ln_2.*", "*.c_proj.bias"])
    want = dense_hessian(s)
    assert torch.allclose(want, want.T, atol=1e-8)
    assert torch.allclose(Hessian(s).dense(), want, atol=1e-7)


def test_gpt2_loss_is_the_mean_over_every_counted_token_across_batches():
    model, (inputs, labels), _ = zoo.gpt2(torch.float64)
    labels = labels.clone()
    labels[0, :3] = -100  # batches now count different numbers of tokens
    s = Subject(model, (inputs, labels), batch_size=2)
    logits = model.eval()(**inputs).logits
    want = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
    assert float(s.loss()) == pytest.approx(float(want), rel=1e-12)
    assert s.describe()["num_terms"] == int((labels != -100).sum())


def test_token_ids_are_never_cast_and_lipschitz_is_taken_at_the_token_embedding():
    model, data, _ = zoo.gpt2(torch.float64)
    s = Subject(model, data)
    assert s.first_batch().inputs["input_ids"].dtype == torch.long
    m = measures.input_lipschitz(s)
    assert m.details["wrt"] == "output of module 'transformer.wte'"
    assert m.details["upper_status"] == "unavailable" and m.value > 0
    with pytest.raises(UnknownNameError, match="wrt"):
        measures.input_lipschitz(s, wrt="transformer.nope")


def test_dataloader_gives_the_same_numbers_as_tensors_bit_for_bit():
    x, y = classification_data(n=16, dtype=torch.float64)
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    a = Subject(bn_mlp(torch.float64), (x, y), batch_size=4)
    b = Subject(bn_mlp(torch.float64), loader)
    assert b.num_batches == 4 and b.source.streamed
    for name, options in [
        ("loss", {}),
        ("sharpness", {"k": 2}),
        ("hessian_trace", {"num_probes": 12}),
        ("fisher_spectrum", {}),
        ("gradient_norms", {}),
        ("input_lipschitz", {}),
        ("param_lipschitz", {"per_layer": False}),
    ]:
        fn = measures.get(name)
        assert fn(a, **options).value == fn(b, **options).value, name


def test_a_list_of_batches_is_read_as_batches_not_as_one_pair():
    x, y = classification_data(n=12, dtype=torch.float64)
    batches = [(x[:6], y[:6]), (x[6:], y[6:])]
    s = Subject(bn_mlp(torch.float64), batches)
    assert s.num_batches == 2 and s.num_samples == 12
    assert float(s.loss()) == float(Subject(bn_mlp(torch.float64), (x, y), batch_size=6).loss())


def test_mappings_with_labels_are_batches_hugging_face_style():
    model, (inputs, labels), _ = zoo.gpt2(torch.float64)
    batches = [
        {**{k: v[i : i + 2] for k, v in inputs.items()}, "labels": labels[i : i + 2]}
        for i in (0, 2)
    ]
    a = Subject(model, batches)
    b = Subject(model, (inputs, labels), batch_size=2)
    assert float(a.loss()) == float(b.loss())


# ----------------------------------------------------------------- outputs
class _Wrapped(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.net = bn_mlp(torch.float64)

    def forward(self, x):
        out = self.net(x)
        if self.kind == "tuple":
            return out, out.detach().abs()
        if self.kind == "dict":
            return {"logits": out, "aux": out.sum()}
        if self.kind == "object":
            return SimpleNamespace(logits=out, hidden=None)
        if self.kind == "nested":
            return {"scores": {"main": out}}
        return "not an output"


@pytest.mark.parametrize("kind", ["tuple", "dict", "object"])
def test_tuple_dict_and_logits_outputs_measure_like_the_plain_model(kind):
    x, y = classification_data(dtype=torch.float64)
    plain = Subject(bn_mlp(torch.float64), (x, y))
    wrapped = Subject(_Wrapped(kind), (x, y))
    assert measures.sharpness(wrapped).value == pytest.approx(measures.sharpness(plain).value)
    assert measures.fisher_spectrum(wrapped).value == pytest.approx(
        measures.fisher_spectrum(plain).value
    )


def test_output_fn_picks_an_output_normscope_cannot_read_itself():
    x, y = classification_data(dtype=torch.float64)
    with pytest.raises(ShapeError, match=r"'scores'.*output_fn"):
        Subject(_Wrapped("nested"), (x, y))
    s = Subject(_Wrapped("nested"), (x, y), output_fn=lambda out: out["scores"]["main"])
    assert float(s.loss()) == float(Subject(bn_mlp(torch.float64), (x, y)).loss())
    assert s.describe()["output_fn"].endswith("<lambda>")
    with pytest.raises(ShapeError, match="returned a str"):
        Subject(_Wrapped("string"), (x, y))


# ----------------------------------------------------------------- losses
def test_callable_loss_gives_the_named_loss_numbers():
    x, y = classification_data(dtype=torch.float64)
    named = Subject(bn_mlp(torch.float64), (x, y))
    own = Subject(bn_mlp(torch.float64), (x, y), loss=lambda out, t: F.cross_entropy(out, t))
    assert own.describe()["loss"].startswith("callable:")
    for name in ("loss", "sharpness", "gradient_norms", "sample_gradient_norms"):
        fn = measures.get(name)
        assert fn(own).value == pytest.approx(fn(named).value, rel=1e-10), name
    ggn = measures.fisher_spectrum(own, kind="ggn").value
    assert ggn == pytest.approx(measures.fisher_spectrum(named).value, rel=1e-10)
    with pytest.raises(ConfigError, match="likelihood"):
        measures.fisher_spectrum(own, kind="true")


def test_callable_losses_that_cannot_be_differentiated_are_refused():
    x, y = classification_data(dtype=torch.float64)
    with pytest.raises(ConfigError, match="scalar"):
        Subject(
            bn_mlp(torch.float64), (x, y), loss=lambda o, t: F.cross_entropy(o, t, reduction="none")
        )
    with pytest.raises(ConfigError, match="does not depend"):
        Subject(bn_mlp(torch.float64), (x, y), loss=lambda o, t: F.cross_entropy(o.detach(), t))


def test_mse_targets_must_match_the_outputs_and_never_broadcast():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1)).double()
    x = torch.randn(6, 3, dtype=torch.float64)
    t = torch.randn(6, dtype=torch.float64)
    want = 0.5 * (model(x)[:, 0] - t).pow(2).mean()
    for targets in (t, t[:, None]):
        s = Subject(model, (x, targets), loss="mse")
        assert float(s.loss()) == pytest.approx(float(want), rel=1e-12)
    with pytest.raises(ShapeError, match=r"\(6, 1, 1\).*never broadcasts"):
        Subject(model, (x, t[:, None, None]), loss="mse")


def test_classes_come_from_the_model_so_a_missing_class_is_fine():
    x, _ = classification_data(n=12, classes=10, dtype=torch.float64)
    y = torch.arange(12) % 9  # class 9 never appears
    s = Subject(bn_mlp(torch.float64, classes=10), (x, y))
    assert s.num_outputs == 10
    assert measures.fisher_spectrum(s).details["gram_size"] == 12 * 10
    y[0] = 10
    with pytest.raises(DataError, match="model outputs 10 classes"):
        Subject(bn_mlp(torch.float64, classes=10), (x, y))


# ----------------------------------------------------------------- batch statistics
def test_batch_norm_without_running_stats_in_eval_mode_couples_the_samples():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(3, 5), nn.BatchNorm1d(5, track_running_stats=False), nn.Tanh(), nn.Linear(5, 2)
    ).double()
    model.eval()
    x = torch.randn(6, 3, dtype=torch.float64)
    s = Subject(model, (x, torch.arange(6) % 2), bn_mode="eval")
    assert s.samples_coupled
    whole = torch.autograd.functional.jacobian(lambda z: model(z), x).reshape(12, 18)
    m = measures.input_lipschitz(s, tol=1e-10)
    assert m.details["jacobian"] == "whole_batch"
    assert m.value == pytest.approx(float(torch.linalg.matrix_norm(whole, ord=2)), rel=1e-8)


class _CentresTheBatch(nn.Module):
    """Subtracts the batch mean without declaring it: found by the forward-pass check."""

    def forward(self, x):
        return x - x.mean(dim=0, keepdim=True)


def test_coupling_no_module_declares_is_found_by_a_forward_pass():
    model = nn.Sequential(nn.Linear(4, 5), _CentresTheBatch(), nn.Tanh(), nn.Linear(5, 3))
    x, y = classification_data(n=8, d_in=4)
    assert Subject(model, (x, y)).samples_coupled
    plain = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
    assert not Subject(plain, (x, y)).samples_coupled


@pytest.mark.parametrize("how", ["batch_size", "loader"])
def test_a_batch_of_one_sample_under_batch_statistics_is_a_config_error(how):
    x, y = classification_data(n=9)
    data = (x, y) if how == "batch_size" else DataLoader(TensorDataset(x, y), batch_size=4)
    with pytest.raises(ConfigError, match=r"batch 2 .* one sample.*drop_last=True"):
        Subject(bn_mlp(), data, batch_size=4 if how == "batch_size" else None)
    Subject(bn_mlp(), data, batch_size=4 if how == "batch_size" else None, bn_mode="eval")


# ----------------------------------------------------------------- data sources
def test_loaders_that_change_between_passes_are_refused():
    x, y = classification_data(n=8)
    with pytest.raises(DataError, match="shuffle=False"):
        Subject(bn_mlp(), DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True))
    with pytest.raises(DataError, match="one-pass iterator"):
        Subject(bn_mlp(), iter([(x, y)]))

    class Augmented:
        def __iter__(self):
            yield x + 0.01 * torch.randn_like(x), y

    s = Subject(bn_mlp(), Augmented())
    with pytest.raises(DataError, match="differs from the first pass"):
        s.loss()


def test_unlabelled_data_runs_the_label_free_measures():
    x, _ = classification_data()
    s = Subject(bn_mlp(), (x, None))
    assert not s.labelled
    assert math.isfinite(measures.input_lipschitz(s).value)
    assert measures.isometry_gap(s, eps=1e-3).value > 0
    with pytest.raises(DataError, match="needs labels or targets"):
        measures.sharpness(s)


def test_selecting_a_frozen_parameter_says_it_is_frozen():
    model = bn_mlp()
    model[0].weight.requires_grad_(False)
    with pytest.raises(ModelError, match=r"frozen.*requires_grad_"):
        Subject(model, classification_data(), params="0.weight")


# ----------------------------------------------------------------- precision
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_models_run_trace_and_fisher_near_float32(dtype):
    x, y = classification_data(n=16)
    half = Subject(bn_mlp(dtype), (x, y))
    full = Subject(bn_mlp(torch.float32), (x, y))
    tolerance = 0.1 if dtype == torch.bfloat16 else 0.02
    fisher = measures.fisher_spectrum(half)
    assert fisher.value == pytest.approx(measures.fisher_spectrum(full).value, rel=tolerance)
    top = measures.sharpness(half, tol=1e-3).value
    assert top == pytest.approx(measures.sharpness(full, tol=1e-3).value, rel=tolerance)
    trace = measures.hessian_trace(half, num_probes=30)
    assert math.isfinite(trace.value) and half.work_dtype == torch.float32


def test_large_per_sample_jacobians_use_the_block_diagonal_norm(monkeypatch):
    from normscope.measures import lipschitz

    model, data, _ = zoo.gpt2(torch.float64)
    s = Subject(model, data)
    exact = measures.input_lipschitz(s, tol=1e-10)
    assert exact.details["jacobian"] == "per_sample"
    monkeypatch.setattr(lipschitz, "MAX_EXACT_PRODUCTS", 8)
    lanczos = measures.input_lipschitz(s, tol=1e-10)
    assert lanczos.details["jacobian"] == "block_diagonal"
    assert lanczos.value == pytest.approx(exact.value, rel=1e-8)


def test_tracker_measures_a_hugging_face_model_on_probe_batches_in_a_plain_loop():
    from normscope.train import Tracker

    model, (inputs, labels), _ = zoo.gpt2(torch.float32)
    probe = [({k: v[i : i + 2] for k, v in inputs.items()}, labels[i : i + 2]) for i in (0, 2)]
    tracker = Tracker(
        ["loss", "sharpness"],
        every=2,
        data=probe,
        bn_mode="eval",
        options={"sharpness": {"tol": 1e-3}},
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    direct = {}
    for step in range(3):
        if tracker.due(step):
            tracker.step(model, step)
            direct[step] = measures.loss(Subject(model, probe, bn_mode="eval")).value
        model.train()
        out = model(**inputs).logits
        F.cross_entropy(out.reshape(-1, out.shape[-1]), labels.reshape(-1)).backward()
        opt.step()
        opt.zero_grad()
    steps, values = tracker.series("sharpness")
    assert list(steps) == [0, 2] and all(math.isfinite(v) for v in values)
    assert list(tracker.series("loss")[1]) == [direct[0], direct[2]]
    assert direct[2] < direct[0]


# ----------------------------------------------------------------- odd inputs, by kind
def _mlp(d_in: int = 10, classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(d_in, 8), nn.Tanh(), nn.Linear(8, classes))


def test_two_tensors_in_a_list_are_ambiguous_and_a_tuple_is_a_pair():
    x, y = torch.randn(4, 3), torch.randn(4, 3)
    model = nn.Linear(3, 3)
    with pytest.raises(DataError, match="list of two tensors"):
        Subject(model, [x, y], loss="mse")
    assert Subject(model, (x, y), loss="mse").labelled
    unlabelled = Subject(model, [(x,), (y,)], loss="mse")
    assert unlabelled.num_batches == 2 and not unlabelled.labelled
    with pytest.raises(DataError, match="tuple of 3 tensors"):
        Subject(model, (x, y, y), loss="mse")


def test_targets_may_be_a_list_of_labels_and_batches_may_name_them_label():
    x, y = classification_data(n=6, d_in=10)
    want = float(Subject(_mlp(), (x, y)).loss())
    assert float(Subject(_mlp(), (x, y.tolist())).loss()) == want
    batches = [{"x": x[:3], "label": y[:3]}, {"x": x[3:], "label": y[3:]}]

    class Keyword(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = _mlp()

        def forward(self, x):
            return self.net(x)

    assert float(Subject(Keyword(), batches).loss()) == pytest.approx(want)


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8])
def test_integer_labels_of_any_width_give_the_int64_numbers(dtype):
    x, y = classification_data(n=8, d_in=10)
    want = measures.sharpness(Subject(_mlp(), (x, y))).value
    assert measures.sharpness(Subject(_mlp(), (x, y.to(dtype)))).value == want


def test_classes_in_dimension_1_follow_pytorch_and_an_ambiguous_shape_is_refused():
    torch.manual_seed(0)
    tagger = nn.Conv1d(4, 6, 3, padding=1)
    x = torch.randn(5, 4, 7)
    y = torch.randint(0, 6, (5, 7))
    s = Subject(tagger, (x, y))  # (n, C=6, L=7) with labels (n, 7): classes in dim 1
    assert float(s.loss()) == pytest.approx(float(F.cross_entropy(tagger(x), y)), rel=1e-6)
    assert s.num_outputs == 6 and measures.loss(s).details["accuracy"] >= 0
    square = torch.randn(5, 4, 6)
    with pytest.raises(ShapeError, match="class_dim=1"):
        Subject(tagger, (square, torch.randint(0, 6, (5, 6))))
    s = Subject(tagger, (square, torch.randint(0, 6, (5, 6))), class_dim=1)
    labels = s.first_batch().targets
    want = F.cross_entropy(tagger(square), labels)
    assert float(s.loss()) == pytest.approx(float(want), rel=1e-6)


def test_class_dim_1_fisher_equals_the_dense_ggn():
    from normscope.curvature import FisherFactor, dense_ggn

    torch.manual_seed(0)
    tagger = nn.Conv1d(3, 4, 3, padding=1).double()
    x = torch.randn(3, 3, 5, dtype=torch.float64)
    y = torch.randint(0, 4, (3, 5))
    y[0, 0] = -100
    s = Subject(tagger, (x, y))
    factor = FisherFactor(s, "ggn")
    a = factor.transpose_apply(torch.eye(factor.num_rows, dtype=torch.float64))
    assert torch.allclose(a.T @ a, dense_ggn(s), atol=1e-12)


def test_a_detached_output_is_refused_not_measured_as_zero():
    class Detached(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = _mlp()

        def forward(self, x):
            return self.net(x).detach()

    x, y = classification_data(n=8, d_in=10)
    with pytest.raises(ConfigError, match="does not depend on the measured parameters"):
        Subject(Detached(), (x, y))
    with pytest.raises(ConfigError, match="does not depend"):
        Subject(_mlp(), (x, y), output_fn=lambda out: out.detach())


def test_a_module_registered_twice_is_measured_and_left_as_it_was():
    from normscope.testing import changes, model_state

    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = self.a
            self.out = nn.Linear(4, 3)

        def forward(self, x):
            return self.out(torch.tanh(self.b(torch.tanh(self.a(x)))))

    torch.manual_seed(0)
    model = Shared().double()
    x, y = classification_data(n=8, d_in=4, dtype=torch.float64)
    before = model_state(model)
    s = Subject(model, (x, y))
    op = Hessian(s)
    for v in _unit_directions(s.num_params, 2):
        assert torch.allclose(op.matvec(v), hessian_vector_fd(s, v), atol=1e-8)
    assert changes(before, model) == []
    assert isinstance(model.a.weight, nn.Parameter) and model.b.weight is model.a.weight


def test_meta_device_models_and_empty_selections_are_refused():
    x, y = classification_data(n=8, d_in=10)
    with pytest.raises(ModelError, match="meta device"):
        Subject(_mlp().to("meta"), (x, y))
    with pytest.raises(ConfigError, match="params is empty"):
        Subject(_mlp(), (x, y), params=[])


def test_every_batch_layout_is_checked_against_the_model_when_the_subject_is_built():
    x, y = classification_data(n=16, d_in=10)
    with pytest.raises(ShapeError, match="batch 1"):
        Subject(_mlp(), [(x[:8], y[:8]), (x[8:, :5], y[8:])])
    with pytest.raises(ShapeError, match="labels"):
        Subject(_mlp(), [(x[:8], y[:8]), (x[8:], y[8:, None])])
    with pytest.raises(ShapeError, match="integer inputs"):
        Subject(_mlp(), [(x[:8], y[:8]), (x[8:].long(), y[8:])])


def test_user_callables_that_fail_are_config_errors():
    x, y = classification_data(n=8, d_in=10)
    with pytest.raises(ConfigError, match="ZeroDivisionError"):
        Subject(_mlp(), (x, y), loss=lambda o, t: 1 / 0)
    with pytest.raises(ConfigError, match="loss_fn\\(output, target\\)"):
        Subject(_mlp(), (x, y), loss=lambda o: o.sum())
    with pytest.raises(ConfigError, match="output_fn raised IndexError"):
        Subject(_mlp(), (x, y), output_fn=lambda out: out["logits"])
    with pytest.raises(ConfigError, match="batch_size"):
        Subject(_mlp(), (x, y), batch_size=1.5)


def test_failures_are_explained_by_their_cause_not_by_shapes():
    x, y = classification_data(n=8, d_in=10)
    bn = nn.Sequential(nn.Linear(10, 4), nn.BatchNorm1d(4), nn.Linear(4, 3))
    with pytest.raises(ConfigError, match=r"one sample.*bn_mode='eval'"):
        Subject(bn, (x[:1], y[:1]))
    with pytest.raises(ShapeError, match="integer inputs"):
        Subject(_mlp(), (x.long(), y))

    class ReturnsLoss(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = _mlp()

        def forward(self, x):
            out = self.net(x)
            return out.pow(2).mean(), out

    with pytest.raises(ShapeError, match="scalar"):
        Subject(ReturnsLoss(), (x, y))


def test_buffers_a_forward_pass_writes_are_restored():
    class Counting(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = _mlp()
            self.register_buffer("calls", torch.zeros((), dtype=torch.long))

        def forward(self, x):
            self.calls += 1
            return self.net(x)

    model = Counting()
    x, y = classification_data(n=8, d_in=10)
    s = Subject(model, (x, y))
    measures.sharpness(s)
    assert int(model.calls) == 0


def test_bfloat16_loss_differences_below_rounding_are_noted():
    x, y = classification_data(n=16, d_in=10)
    m = measures.adaptive_sharpness(Subject(_mlp().bfloat16(), (x, y)), rho=1e-3)
    assert any("rounding of the loss in bfloat16" in n for n in m.notes)
    full = measures.adaptive_sharpness(Subject(_mlp().double(), (x.double(), y)), rho=0.05)
    assert not any("rounding of the loss" in n for n in full.notes)


def test_lipschitz_at_the_first_called_embedding():
    class TwoEmbeddings(nn.Module):
        def __init__(self):
            super().__init__()
            self.unused = nn.Embedding(10, 4)
            self.tokens = nn.Embedding(10, 4)
            self.head = nn.Linear(4, 3)

        def forward(self, ids):
            return self.head(self.tokens(ids).mean(dim=1))

    torch.manual_seed(0)
    ids = torch.randint(0, 10, (6, 5))
    s = Subject(TwoEmbeddings(), (ids, torch.arange(6) % 3), params="head.*")
    m = measures.input_lipschitz(s)
    assert m.details["wrt"] == "output of module 'tokens'"
