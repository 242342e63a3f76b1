"""Progress of single measurements: products done / expected, time left, --quiet."""

from __future__ import annotations

import functools
import io

import pytest
import torch

from normscope import Subject, measures, progress


def small_subject() -> Subject:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    return Subject(model, (torch.randn(32, 4), torch.randint(0, 3, (32,))))


def shown(fn, **options) -> list[str]:
    out = io.StringIO()
    with progress.reporting(out, delay=0.0, interval=0.0, **options):
        fn()
    return out.getvalue().splitlines()


def test_a_measurement_shows_products_done_of_expected_and_ends_with_its_count():
    s = small_subject()
    lines = shown(lambda: measures.hessian_trace(s, num_probes=8))
    assert lines[0].startswith("hessian_trace: 1/8 hvp products (upper bound)")
    assert lines[-2].startswith("hessian_trace: 8/8 hvp products")
    assert lines[-1].startswith("hessian_trace: 8 hvp products in ")


def test_lanczos_declares_its_step_cap_and_stops_below_it():
    s = small_subject()
    m = None

    def run():
        nonlocal m
        m = measures.sharpness(s, max_iter=30, tol=1e-3)

    lines = shown(run)
    assert "/30 hvp" in lines[0]
    assert lines[-1].startswith(f"sharpness: {int(m.cost['hvp'])} hvp products in ")


def test_time_left_is_the_mean_product_time_times_the_products_still_expected():
    t = progress.Task("x", expected=10)
    t.counts["hvp"] = 4
    t.start -= 8.0  # 8 s for 4 products: 2 s each, 6 more expected
    assert t.seconds_left() == pytest.approx(12.0, rel=0.01)
    assert "at most 12 s left" in t.line()


def test_nothing_is_shown_without_a_reporter_or_before_the_delay(capsys):
    s = small_subject()
    measures.hessian_trace(s, num_probes=8)
    out = io.StringIO()
    with progress.reporting(out, delay=3600.0):
        measures.hessian_trace(s, num_probes=8)
    assert out.getvalue() == "" and capsys.readouterr() == ("", "")


def test_a_terminal_gets_one_line_rewritten_in_place():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    out = Terminal()
    with progress.reporting(out, delay=0.0, interval=0.0):
        measures.hessian_trace(small_subject(), num_probes=4)
    text = out.getvalue()
    assert text.count("\n") == 1 and text.count("\r") == 5 and text.endswith("s\x1b[K\n")


def test_lines_can_go_to_a_function_such_as_a_spinner():
    got: list[str] = []
    shown(lambda: measures.hessian_trace(small_subject(), num_probes=4), to=got.append)
    assert len(got) == 5 and got[-1].startswith("hessian_trace: 4 hvp products in")


@pytest.mark.parametrize("quiet", [False, True])
def test_the_measure_command_shows_progress_on_stderr_unless_quiet(cli, monkeypatch, quiet):
    monkeypatch.setattr(
        "normscope.cli.progress.reporting",
        functools.partial(progress.reporting, delay=0.0, interval=0.0),
    )
    args = ["measure", "hessian_trace", "--n", "32", "--width", "8", "-o", "num_probes=4"]
    code, out, err = cli(*args, *(["--quiet"] if quiet else []))
    assert code == 0 and "hessian_trace" in out
    if quiet:
        assert err == ""
    else:
        assert "hessian_trace: 4/4 hvp products" in err
        assert "hessian_trace: 4 hvp products in" in err
