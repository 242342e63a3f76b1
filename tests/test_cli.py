import sys
import textwrap

import pytest

from tests.experiments.conftest import TINY


@pytest.fixture
def spec(tmp_path):
    def write(text=TINY):
        path = tmp_path / "spec.toml"
        path.write_text(textwrap.dedent(text))
        return str(path)

    return write


def test_run_then_rerun_resumes(cli, spec, tmp_path):
    db = str(tmp_path / "r.db")
    code, out, _ = cli("run", spec(), "--db", db, "--workers", "0", "--quiet")
    assert code == 0 and "4 finished" in out
    code, out, _ = cli("run", spec(), "--db", db, "--workers", "0", "--quiet")
    assert code == 0 and "4 already stored, 0 finished" in out


def test_run_with_failed_runs_exits_1_and_says_how_to_retry(cli, spec, tmp_path):
    text = TINY.replace("seeds = [0, 1]", '"subject.data.task" = ["classification", "bogus"]')
    code, out, err = cli("run", spec(text), "--db", str(tmp_path / "r.db"), "-w", "0", "-q")
    assert code == 1 and "2 failed" in out and "--retry-failed" in err


def test_bad_spec_exits_2_with_message_and_no_traceback(cli, spec, tmp_path):
    code, _, err = cli("run", spec(TINY.replace('"loss"', '"los"')), "--db", str(tmp_path / "r.db"))
    assert code == 2 and "Did you mean 'loss'" in err and "Traceback" not in err
    assert not (tmp_path / "r.db").exists()


def test_run_into_a_non_store_file_exits_2_and_keeps_the_file(cli, spec, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    code, _, err = cli("run", spec(), "--db", str(notes), "-w", "0", "-q")
    assert code == 2 and "not an SQLite file" in err and notes.read_text() == "keep me"


def test_address_needs_the_ray_backend(cli, spec, tmp_path):
    code, _, err = cli("run", spec(), "--db", str(tmp_path / "r.db"), "--address", "auto")
    assert code == 2 and "--backend ray" in err


def test_check_exits_1_on_a_failing_claim_and_0_when_all_pass(cli, spec, tmp_path):
    db = str(tmp_path / "r.db")
    passing = TINY + '\n[[claim]]\ntype = "bounded"\ny = "loss"\nbelow = 1e9\n'
    cli("run", spec(passing), "--db", db, "-w", "0", "-q")
    code, out, _ = cli("check", db)
    assert code == 0 and "1 of 1 claims pass" in out
    failing = passing + '\n[[claim]]\ntype = "bounded"\ny = "loss"\nbelow = 0\n'
    cli("run", spec(failing), "--db", db, "-w", "0", "-q")
    code, out, _ = cli("check", db, "--experiment", "tiny")
    assert code == 1 and "FAIL" in out and "1 of 2 claims pass" in out


def test_check_shows_each_claims_source_beside_its_verdict(cli, spec, tmp_path):
    db = str(tmp_path / "r.db")
    claims = (
        '\n[[claim]]\ntype = "bounded"\ny = "loss"\nbelow = 1e9\nsource = "theory"\n'
        '\n[[claim]]\ntype = "bounded"\ny = "loss"\nbelow = 1e9\nsource = "finding"\n'
        "contradicts = true\n"
    )
    cli("run", spec(TINY + claims), "--db", db, "-w", "0", "-q")
    code, out, _ = cli("check", db)
    assert code == 0 and "source" in out and "theory" in out
    assert "against the" in out  # "finding against the paper", however the table wraps it


def test_check_of_a_missing_store_exits_2(cli, tmp_path):
    code, _, err = cli("check", str(tmp_path / "none.db"))
    assert code == 2 and "does not exist" in err


def test_report_and_export_write_files(cli, spec, tmp_path, monkeypatch):
    db = str(tmp_path / "r.db")
    cli("run", spec(), "--db", db, "-w", "0", "-q")
    code, _, _ = cli("report", db, "-o", str(tmp_path / "site" / "r.html"))
    assert code == 0 and (tmp_path / "site" / "r.html").stat().st_size > 0
    code, out, _ = cli("export", db, "-o", str(tmp_path / "r.csv"))
    assert code == 0 and "4 rows" in out and (tmp_path / "r.csv").exists()
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    code, _, err = cli("export", db, "--format", "parquet")
    assert code == 2 and "pip install pyarrow" in err


def test_measure_prints_value_details_cost_and_settings(cli):
    code, out, _ = cli(
        "measure",
        "loss",
        "--data",
        "gaussian",
        "--n",
        "16",
        "--width",
        "8",
        "--norm",
        "layer",
        "--data-option",
        "dim=4",
        "--data-option",
        "num_classes=3",
    )
    assert code == 0
    for word in ("loss =", "accuracy", "seconds", "bn_mode", "num_samples"):
        assert word in out


def test_measure_with_unknown_name_exits_2_with_suggestion(cli):
    code, _, err = cli("measure", "los", "--data", "gaussian", "--n", "8")
    assert code == 2 and "Did you mean 'loss'" in err


def test_measure_option_must_be_key_value(cli):
    code, _, err = cli("measure", "loss", "--option", "novalue")
    assert code == 2 and "key=value" in err


def test_list_still_lists_measures(cli):
    code, out, _ = cli("list", "measures")
    assert code == 0 and "loss" in out


def test_measure_shows_layer_names_and_per_layer_dicts(cli):
    code, out, _ = cli(
        "measure",
        "gradient_norms",
        "--data",
        "gaussian",
        "--n",
        "16",
        "--width",
        "8",
        "--norm",
        "batch",
        "--data-option",
        "dim=4",
        "--data-option",
        "num_classes=3",
    )
    assert code == 0 and "gradient_norms =" in out
