import numpy as np
import pandas as pd
import pytest

from normscope.errors import ConfigError
from normscope.experiments.spec import PlotSpec
from normscope.report.figures import draw, png_bytes


def table():
    rows = [
        {
            "experiment": "e",
            "run": f"{w}-{s}-{n}",
            "status": "ok",
            "step": 0,
            "width": w,
            "seed": s,
            "norm": n,
            "loss": w * (1 + s) * (2 if n == "none" else 1),
        }
        for w in (4, 8, 16)
        for s in (0, 1)
        for n in ("none", "batch")
    ]
    return pd.DataFrame(rows)


def test_line_plot_draws_the_mean_over_seeds_per_color_and_facet():
    fig = draw(PlotSpec(x="width", y="loss", color="norm", facet="seed"), table())
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 2
    lines = axes[0].get_lines()
    assert len(lines) == 2
    ys = {tuple(line.get_ydata()) for line in lines}
    assert ys == {(8.0, 16.0, 32.0), (4.0, 8.0, 16.0)}
    png_bytes(fig)


def test_line_plot_averages_runs_with_equal_x():
    fig = draw(PlotSpec(x="width", y="loss", filter={"norm": "batch"}), table())
    (line,) = fig.axes[0].get_lines()
    np.testing.assert_allclose(line.get_ydata(), [6.0, 12.0, 24.0])
    png_bytes(fig)


def test_missing_column_is_a_config_error_with_suggestion():
    with pytest.raises(ConfigError, match="did you mean 'loss'"):
        draw(PlotSpec(x="width", y="los"), table())


def test_filter_that_matches_nothing_is_a_config_error():
    with pytest.raises(ConfigError, match="no finished runs"):
        draw(PlotSpec(x="width", y="loss", filter={"norm": "layer"}), table())


def test_axes_legends_and_panels_name_columns_in_words():
    frame = table().rename(columns={"width": "subject.net.width", "norm": "subject.net.norm"})
    frame["theory.loss"] = frame["loss"] / 2
    plot = PlotSpec(
        x="subject.net.width",
        y=["loss", "theory.loss"],
        color="subject.net.norm",
        facet="seed",
    )
    fig = draw(plot, frame, {"theory.loss": "half the loss, predicted", "seed": "seed s"})
    ax = fig.axes[0]
    assert ax.get_xlabel() == "width M"
    assert ax.get_ylabel() == "train loss"
    assert ax.get_title() == "seed s: 0"
    legend = {t.get_text() for t in ax.get_legend().get_texts()}
    assert "train loss, normalization: batch" in legend
    assert "half the loss, predicted, normalization: none" in legend
    png_bytes(fig)


def test_ylabel_names_an_axis_of_several_quantities_and_theory_lines_have_no_points():
    frame = table()
    frame["theory.loss"] = 1.0
    fig = draw(PlotSpec(x="width", y=["loss", "theory.loss"], ylabel="loss, any kind"), frame)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "loss, any kind"
    dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 1
    assert len(ax.collections) == 1  # the measured line's single runs only
    png_bytes(fig)
