import pytest

from normscope.errors import ConfigError
from normscope.experiments.plan import plan
from normscope.experiments.spec import parse_spec

from .conftest import TINY


def test_grid_is_the_product_of_axes_and_seeds_set_net_and_data_seed():
    runs = plan(parse_spec(TINY))
    points = [
        (
            r.config["subject"]["net"]["width"],
            r.config["subject"]["net"]["seed"],
            r.config["subject"]["data"]["seed"],
        )
        for r in runs
    ]
    assert points == [(4, 0, 0), (4, 1, 1), (8, 0, 0), (8, 1, 1)]


def test_zip_group_varies_its_keys_together():
    text = TINY.replace(
        "seeds = [0, 1]",
        '"subject.data.n" = [8, 16]\n"subject.net.depth" = [1, 2, 3]\n'
        'zip = [["subject.net.width", "subject.data.n"]]',
    )
    runs = plan(parse_spec(text))
    pairs = {(r.config["subject"]["net"]["width"], r.config["subject"]["data"]["n"]) for r in runs}
    assert pairs == {(4, 8), (8, 16)}
    assert len(runs) == 2 * 3


def test_hashes_are_stable_and_distinct_and_follow_the_config():
    first, second = plan(parse_spec(TINY)), plan(parse_spec(TINY))
    assert [r.hash for r in first] == [r.hash for r in second]
    assert len({r.hash for r in first}) == len(first)
    changed = plan(parse_spec(TINY.replace('loss = "mse"', 'loss = "cross_entropy"')))
    assert not {r.hash for r in changed} & {r.hash for r in first}


def test_swept_values_are_validated_at_plan_time():
    bad = TINY.replace("[4, 8]", "[4, 0]")
    with pytest.raises(ConfigError, match=r"sweep point .*subject\.net\.width=0"):
        plan(parse_spec(bad, source="x.toml"), source="x.toml")


def test_spec_without_sweep_is_one_run():
    text = TINY.split("[sweep]")[0]
    runs = plan(parse_spec(text))
    assert len(runs) == 1 and runs[0].config["subject"]["net"]["width"] == 6
