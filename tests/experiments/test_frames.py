import math

import pytest

from normscope.errors import ConfigError, StoreError
from normscope.experiments import Store, parse_spec, run_experiment
from normscope.results import export_table, flatten, load, wide

from .conftest import TINY


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("frames") / "r.db"
    with Store(path) as store:
        run_experiment(parse_spec(TINY), store, spec_toml=TINY, workers=0, quiet=True)
    return path


def test_flatten_makes_dotted_columns_and_tuples():
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": None}) == {"a.b": 1, "a.c": (1, 2), "d": None}


def test_tidy_frame_has_one_row_per_measurement_with_config_columns(db):
    frame = load(db, "tiny")
    assert len(frame) == 4
    for column in (
        "experiment",
        "run",
        "status",
        "step",
        "name",
        "value",
        "subject.net.width",
        "subject.data.seed",
        "subject.loss",
    ):
        assert column in frame.columns
    assert set(frame["status"]) == {"ok"}
    assert isinstance(frame["details"].iloc[0], dict)


def test_wide_frame_has_measurements_and_scalar_details_as_columns(db):
    table = wide(load(db))
    assert len(table) == 4
    assert {"loss", "loss.accuracy"} <= set(table.columns)
    assert table["loss.accuracy"].between(0, 1).all()


def test_csv_export_round_trips_values(db, tmp_path):
    import pandas as pd

    n = export_table(db, tmp_path / "out.csv", "csv")
    back = pd.read_csv(tmp_path / "out.csv")
    assert n == len(back) == 4
    assert all(
        math.isclose(a, b)
        for a, b in zip(sorted(back["value"]), sorted(load(db)["value"]), strict=True)
    )


def test_parquet_without_pyarrow_says_to_install_it(db, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ConfigError, match="pip install pyarrow"):
        export_table(db, tmp_path / "out.parquet", "parquet")


def test_loading_a_missing_store_is_a_store_error(tmp_path):
    with pytest.raises(StoreError):
        load(tmp_path / "missing.db")


@pytest.mark.parametrize("call", ["load", "export_table", "check_store", "build_report"])
def test_an_unknown_experiment_is_an_error_with_the_closest_name(db, tmp_path, call):
    from normscope.errors import UnknownNameError
    from normscope.experiments.claims import check_store
    from normscope.report import build_report

    calls = {
        "load": lambda: load(db, "tin"),
        "export_table": lambda: export_table(db, tmp_path / "x.csv", "csv", "tin"),
        "check_store": lambda: check_store(db, "tin"),
        "build_report": lambda: build_report(db, tmp_path / "r.html", "tin"),
    }
    with pytest.raises(UnknownNameError, match=r"unknown experiment 'tin'.*Did you mean 'tiny'"):
        calls[call]()
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "r.html").exists()


def test_an_empty_store_says_it_holds_no_experiments(tmp_path):
    from normscope.errors import UnknownNameError

    Store(tmp_path / "empty.db").close()
    with pytest.raises(UnknownNameError, match="holds no experiments yet; run `normscope run"):
        load(tmp_path / "empty.db", "tiny")
