import sys

import pytest

from normscope.errors import ConfigError, UnknownNameError
from normscope.experiments.plan import plan
from normscope.experiments.spec import load_spec, parse_spec

from .conftest import TINY


def test_tiny_spec_parses_with_auto_sized_net_fields_left_empty(write_spec):
    spec, text = load_spec(write_spec())
    assert spec.name == "tiny"
    assert "input_shape" not in spec.subject.net
    assert spec.sweep.axes == {"subject.net.width": [4, 8]}
    assert text.strip().startswith('name = "tiny"')


def test_unknown_top_level_field_names_file_path_and_closest_field(write_spec):
    path = write_spec(TINY + '\n[[mesure]]\nname = "loss"\n')
    with pytest.raises(ConfigError) as err:
        load_spec(path)
    text = str(err.value)
    assert str(path) in text and "mesure" in text and "Did you mean 'measure'?" in text


def test_unknown_subject_field_suggests_the_valid_one():
    bad = TINY.replace('loss = "mse"', 'loss = "mse"\nbn_mod = "eval"')
    with pytest.raises(ConfigError, match=r"subject\.bn_mod.*Did you mean 'bn_mode'"):
        parse_spec(bad, source="x.toml")


def test_unknown_measure_is_unknown_name_error_with_closest_name():
    bad = TINY.replace('name = "loss"', 'name = "los"')
    with pytest.raises(UnknownNameError, match=r"x\.toml: measure\[0\].*Did you mean 'loss'"):
        parse_spec(bad, source="x.toml")


def test_measure_option_not_in_its_signature_is_rejected():
    bad = TINY.replace('name = "loss"', 'name = "loss"\nk = 3')
    with pytest.raises(UnknownNameError, match="measure 'loss' has no option 'k'"):
        parse_spec(bad, source="x.toml")


def test_invalid_toml_names_the_file():
    with pytest.raises(ConfigError, match=r"x\.toml: not valid TOML"):
        parse_spec("name = ", source="x.toml")


def test_missing_spec_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_spec(tmp_path / "nope.toml")


def test_unknown_claim_type_lists_the_valid_types():
    bad = TINY + '\n[[claim]]\ntype = "slop"\nx = "a"\ny = "b"\n'
    with pytest.raises(ConfigError, match=r"claim\[0\].*loglog_slope"):
        parse_spec(bad, source="x.toml")


def test_claim_field_typo_suggests_field_of_that_claim_type():
    bad = TINY + '\n[[claim]]\ntype = "bounded"\ny = "loss"\nbelw = 3\n'
    with pytest.raises(ConfigError, match=r"claim\[0\]\.bounded\.belw.*Did you mean 'below'"):
        parse_spec(bad, source="x.toml")


def test_unknown_norm_is_reported_under_subject_net():
    bad = TINY.replace('norm = "batch"', 'norm = "batchh"')
    with pytest.raises(UnknownNameError, match=r"subject\.net.*Did you mean 'batch'"):
        parse_spec(bad, source="x.toml")


def test_unknown_data_set_is_reported_with_closest_name():
    bad = TINY.replace('name = "gaussian"', 'name = "gausian"')
    with pytest.raises(UnknownNameError, match=r"subject\.data\.name.*'gaussian'"):
        parse_spec(bad, source="x.toml")


def test_sweep_key_typo_suggests_the_field():
    bad = TINY.replace('"subject.net.width"', '"subject.net.widht"')
    with pytest.raises(ConfigError, match=r"Did you mean 'subject\.net\.width'"):
        parse_spec(bad, source="x.toml")


def test_sweep_key_outside_subject_and_train_is_rejected():
    bad = TINY.replace('"subject.net.width"', '"measure.width"')
    with pytest.raises(ConfigError, match="starting with subject or train"):
        parse_spec(bad, source="x.toml")


def test_zip_group_needs_equal_lengths():
    bad = TINY.replace(
        "seeds = [0, 1]",
        '"subject.data.n" = [8, 16, 24]\nzip = [["subject.net.width", "subject.data.n"]]',
    )
    with pytest.raises(ConfigError, match="equal length"):
        parse_spec(bad, source="x.toml")


def test_an_empty_zip_group_is_rejected_not_planned_as_zero_runs():
    bad = TINY.replace("seeds = [0, 1]", "seeds = [0, 1]\nzip = [[]]")
    with pytest.raises(ConfigError, match=r"zip\[0\] is empty"):
        parse_spec(bad, source="x.toml")


def test_at_without_train_is_rejected():
    bad = TINY.replace('name = "loss"', 'name = "loss"\nat = "both"')
    with pytest.raises(ConfigError, match=r"measure\[0\].*\[train\]"):
        parse_spec(bad, source="x.toml")


def test_train_table_without_training_module_is_a_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "normscope.train", None)
    with pytest.raises(ConfigError, match=r"x\.toml: train: .*no training module"):
        parse_spec(TINY + "\n[train]\nsteps = 3\n", source="x.toml")


def test_duplicate_measurement_names_need_a_label():
    bad = TINY + '\n[[measure]]\nname = "loss"\n'
    with pytest.raises(ConfigError, match="used twice"):
        parse_spec(bad, source="x.toml")
    spec = parse_spec(bad + 'label = "loss_again"\n', source="x.toml")
    assert [m.stored_name for m in spec.measure] == ["loss", "loss_again"]


def test_net_dtype_must_be_set_on_the_subject():
    bad = TINY.replace('norm = "batch"}', 'norm = "batch", dtype = "float64"}')
    with pytest.raises(ConfigError, match=r"subject\.dtype"):
        parse_spec(bad, source="x.toml")


def test_midpoint_tracking_needs_every():
    text = TINY.replace('name = "loss"', 'name = "loss"\npoint = "midpoint"', 1)
    with pytest.raises(ConfigError, match="point"):
        parse_spec(text + "\n[train]\nsteps = 2\n")


def test_only_midpoint_tracking_enters_the_run_config():
    """A measure at the iterate (the default) keeps the run hashes it had before the
    field existed; one at the midpoint says so in its config."""
    text = TINY + "\n[train]\nsteps = 2\n"
    plain = plan(parse_spec(text.replace('name = "loss"', 'name = "loss"\nevery = 1', 1)))
    assert "point" not in plain[0].config["measures"][0]
    mid = plan(
        parse_spec(text.replace('name = "loss"', 'name = "loss"\nevery = 1\npoint = "midpoint"', 1))
    )
    assert mid[0].config["measures"][0]["point"] == "midpoint"
    assert mid[0].hash != plain[0].hash
