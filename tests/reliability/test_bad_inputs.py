"""Every input a user can get wrong gives a NormscopeError whose message says what was
wrong and how to fix it; the CLI prints it without a traceback and exits 2."""

from __future__ import annotations

import math
import sqlite3

import pytest
import torch
from torch import nn

from normscope.data import Dataset
from normscope.errors import (
    DataError,
    ModelError,
    NormscopeError,
    ShapeError,
    UnknownNameError,
)
from normscope.experiments import Store, parse_spec, run_experiment
from normscope.subject import Subject

from .conftest import TINY, run_cli

NET = 'net = {arch = "mlp", width = 6, depth = 2, norm = "batch"}'


def edit(old: str, new: str) -> str:
    assert old in TINY
    return TINY.replace(old, new)


# (id, spec text, words the message must contain: the problem and the fix)
BAD_SPECS = [
    ("malformed_toml", edit('name = "tiny"', 'name = "tiny'), ["not valid TOML", "Fix the TOML"]),
    (
        "unknown_top_field",
        edit('name = "tiny"', 'nmae = "tiny"'),
        ["'nmae'", "Did you mean 'name'"],
    ),
    ("unknown_subject_field", edit('loss = "mse"', 'los = "mse"'), ["Did you mean 'loss'"]),
    ("unknown_net_field", edit("width = 6", "widht = 6"), ["'widht'", "Did you mean 'width'"]),
    (
        "unknown_activation",
        edit('norm = "batch"}', 'norm = "batch", activation = "rleu"}'),
        ["'rleu'", "Did you mean 'relu'"],
    ),
    ("unknown_measure", edit('name = "loss"', 'name = "sharpnes"'), ["Did you mean 'sharpness'"]),
    (
        "unknown_measure_option",
        edit('name = "loss"', 'name = "sharpness"\nkk = 2'),
        ["no option 'kk'", "Did you mean 'k'"],
    ),
    (
        "unknown_data_set",
        edit('name = "gaussian"', 'name = "gausian"'),
        ["Did you mean 'gaussian'"],
    ),
    (
        "unknown_sweep_key",
        edit('"subject.net.width" =', '"subject.net.widht" ='),
        ["Did you mean 'subject.net.width'"],
    ),
    ("wrong_type_width", edit("width = 6", 'width = "six"'), ["width", "'six'"]),
    ("wrong_type_depth", edit("depth = 2", "depth = 2.5"), ["depth", "2.5"]),
    (
        "wrong_type_bn_mode",
        edit('loss = "mse"', 'loss = "mse"\nbn_mode = 3'),
        ["subject.bn_mode", "'train' or 'eval'"],
    ),
    ("wrong_type_measure", edit('name = "loss"', 'name = ["loss"]'), ["measure[0].name"]),
    ("wrong_type_seeds", edit("seeds = [0, 1]", 'seeds = "0"'), ["sweep.seeds"]),
    ("empty_sweep_axis", edit("[4, 8]", "[]"), ["non-empty list"]),
    ("empty_seeds", edit("seeds = [0, 1]", "seeds = []"), ["at least one seed"]),
    ("sweep_axis_not_a_list", edit("[4, 8]", "4"), ["non-empty list"]),
    ("no_measure", TINY.replace('[[measure]]\nname = "loss"\n', ""), ["add a [[measure]]"]),
    ("missing_subject", TINY.split("[subject]")[0], ["'subject' is missing", "add it"]),
    (
        "nan_weight_scale",
        edit('norm = "batch"}', 'norm = "batch", weight_scale = nan}'),
        ["weight_scale", "finite", "nan"],
    ),
    (
        "inf_sigma_w",
        edit('norm = "batch"}', 'norm = "batch", sigma_w = inf}'),
        ["sigma_w", "finite", "inf"],
    ),
    (
        "toml_date_option",
        edit('name = "loss"', 'name = "sharpness"\nseed = 1979-05-27'),
        ["measure[0].seed", "date", "quote"],
    ),
    (
        "toml_time_in_train",
        TINY.split("[sweep]")[0] + "[train]\nsteps = 07:32:00\n",
        ["train.steps", "time", "quote"],
    ),
]


@pytest.mark.parametrize(
    ("text", "words"), [c[1:] for c in BAD_SPECS], ids=[c[0] for c in BAD_SPECS]
)
def test_bad_spec_exits_2_with_a_fix_it_message_and_stores_nothing(
    cli, write_spec, tmp_path, text, words
):
    db = tmp_path / "r.db"
    code, _, err = cli("run", str(write_spec(text)), "--db", str(db), "-w", "0", "-q")
    flat = " ".join(err.split())
    assert code == 2, err
    assert "Traceback" not in err and flat.startswith("error:")
    for word in words:
        assert word in flat, (word, flat)
    assert not db.exists()


def test_missing_spec_file_says_to_give_a_spec_path(cli, tmp_path):
    code, _, err = cli("run", str(tmp_path / "nope.toml"), "--db", str(tmp_path / "r.db"))
    assert code == 2 and "does not exist" in err and "TOML spec" in err


MEASURE = [
    "measure",
    "loss",
    "--data",
    "gaussian",
    "--n",
    "8",
    "--width",
    "4",
    "--data-option",
    "dim=4",
    "--data-option",
    "num_classes=3",
]

BAD_MEASURES = [
    (
        "input_shape_mismatch",
        ["--net-option", "input_shape=[7]"],
        ["cannot take inputs of shape (4,)", "Reshape the data or change the model"],
    ),
    (
        "output_shape_mismatch",
        ["--net-option", "output_dim=2"],
        ["outputs shape (", "needs (N, 3)", "produce 3 values"],
    ),
    (
        "non_finite_data_scale",
        ["--data-option", "input_scale=nan"],
        ["input_scale must be a positive number", "nan"],
    ),
    ("unknown_data_option", ["--data-option", "dimm=4"], ["no option 'dimm'", "valid options"]),
    ("unknown_loss", ["--loss", "mes"], ["Did you mean 'mse'"]),
    (
        "cross_entropy_on_regression",
        ["--data-option", "task=regression"],
        ["needs integer class labels", "use loss='mse'"],
    ),
    ("batch_size_too_large", ["--batch-size", "9"], ["batch_size must lie in [1, 8]"]),
]


@pytest.mark.parametrize(
    ("extra", "words"), [c[1:] for c in BAD_MEASURES], ids=[c[0] for c in BAD_MEASURES]
)
def test_bad_measure_call_exits_2_with_a_fix_it_message(cli, extra, words):
    code, _, err = cli(*MEASURE, *extra)
    flat = " ".join(err.split())
    assert code == 2, err
    assert "Traceback" not in err
    for word in words:
        assert word in flat, (word, flat)


# ---------------------------------------------------------------- stores and folders
def foreign_sqlite(path):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE mine (x)")
    conn.execute("INSERT INTO mine VALUES (1)")
    conn.commit()
    conn.close()
    return path


def corrupt_sqlite(path):
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    return path


def text_file(path):
    path.write_text("my notes")
    return path


def folder(path):
    path.mkdir()
    return path


STORES = [
    ("foreign_sqlite", foreign_sqlite, "not a normscope results store"),
    ("corrupt_sqlite", corrupt_sqlite, "corrupt"),
    ("text_file", text_file, "not an SQLite file"),
    ("folder", folder, "is a folder"),
]


@pytest.mark.parametrize("command", ["run", "check", "report", "export"])
@pytest.mark.parametrize(("make", "words"), [s[1:] for s in STORES], ids=[s[0] for s in STORES])
def test_a_file_that_is_not_a_store_exits_2_and_is_left_unchanged(
    cli, write_spec, tmp_path, command, make, words
):
    db = make(tmp_path / "x.db")
    before = db.read_bytes() if db.is_file() else None
    args = {
        "run": ["run", str(write_spec()), "--db", str(db), "-w", "0", "-q"],
        "check": ["check", str(db)],
        "report": ["report", str(db), "-o", str(tmp_path / "r.html")],
        "export": ["export", str(db), "-o", str(tmp_path / "r.csv")],
    }[command]
    code, _, err = cli(*args)
    assert code == 2 and "Traceback" not in err
    flat = " ".join(err.split())
    assert words in flat
    assert "another --db path" in flat.lower() or "give the path of a results file" in flat
    if before is not None:
        assert db.read_bytes() == before


@pytest.fixture(scope="module")
def stored_db(tmp_path_factory):
    db = tmp_path_factory.mktemp("stored") / "r.db"
    with Store(db) as store:
        run_experiment(parse_spec(TINY), store, spec_toml=TINY, workers=0, quiet=True)
    return db


def test_results_folder_that_cannot_be_written_exits_2_for_run(cli, write_spec, unwritable_dir):
    db = unwritable_dir / "r.db"
    code, _, err = cli("run", str(write_spec()), "--db", str(db), "-w", "0", "-q")
    assert code == 2 and "Traceback" not in err
    assert "cannot create the folder of results store" in " ".join(err.split())


@pytest.mark.parametrize("command", ["report", "export"])
def test_output_folder_that_cannot_be_written_exits_2(cli, stored_db, unwritable_dir, command):
    out = unwritable_dir / ("r.html" if command == "report" else "r.csv")
    code, _, err = cli(command, str(stored_db), "-o", str(out))
    flat = " ".join(err.split())
    assert code == 2 and "Traceback" not in err
    assert "cannot" in flat and str(unwritable_dir) in flat


# ---------------------------------------------------------------- the Python API
def linear(d_in=4, classes=3, dtype=torch.float32):
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(d_in, 5), nn.BatchNorm1d(5), nn.Linear(5, classes)).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return model


def data(n=8, d_in=4, classes=3):
    gen = torch.Generator().manual_seed(1)
    return torch.randn(n, d_in, generator=gen), torch.randint(0, classes, (n,), generator=gen)


def with_param(value):
    model = linear()
    with torch.no_grad():
        model[0].weight[0, 0] = value
    return model


def frozen():
    model = linear()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def with_x(value):
    x, y = data()
    x[3, 1] = value
    return x, y


def regression_targets(value):
    x, _ = data()
    y = torch.zeros(8, 3)
    y[2, 0] = value
    return Dataset(x, y, task="regression", name="targets")


# (id, call, error type, words)
API_CASES = [
    (
        "labels_out_of_range",
        lambda: Dataset(data()[0], torch.tensor([0, 1, 2, 5, 0, 1, 2, 0]), num_classes=3),
        DataError,
        ["lie in [0, 5]", "num_classes=3", "must lie in [0, 2]"],
    ),
    (
        "negative_label",
        lambda: Dataset(data()[0], torch.tensor([0, 1, 2, -1, 0, 1, 2, 0]), num_classes=3),
        DataError,
        ["[-1, 2]", "must lie in [0, 2]"],
    ),
    (
        "labels_exceed_model_outputs",
        lambda: Subject(linear(classes=3), Dataset(*data(classes=3), num_classes=4)),
        ShapeError,
        ["needs (N, 4)", "produce 4 values"],
    ),
    ("nan_input", lambda: Subject(linear(), with_x(math.nan)), DataError, ["NaN or inf inputs"]),
    ("inf_input", lambda: Subject(linear(), with_x(math.inf)), DataError, ["NaN or inf inputs"]),
    (
        "nan_target",
        lambda: Subject(linear(), regression_targets(math.nan), loss="mse"),
        DataError,
        ["NaN or inf targets", "'targets'"],
    ),
    (
        "inf_target",
        lambda: Subject(linear(), regression_targets(-math.inf), loss="mse"),
        DataError,
        ["NaN or inf targets"],
    ),
    (
        "nan_weight",
        lambda: Subject(with_param(math.nan), data()),
        ModelError,
        ["'0.weight'", "finite weights"],
    ),
    (
        "inf_weight",
        lambda: Subject(with_param(math.inf), data()),
        ModelError,
        ["'0.weight'", "finite weights"],
    ),
    (
        "no_trainable_parameters",
        lambda: Subject(frozen(), data()),
        ModelError,
        ["no trainable parameters", "requires_grad=True"],
    ),
    (
        "model_without_parameters",
        lambda: Subject(nn.Flatten(), data()),
        ModelError,
        ["no trainable parameters"],
    ),
    (
        "parameter_pattern_matches_nothing",
        lambda: Subject(linear(), data(), params="*.wieght"),
        UnknownNameError,
        ["'*.wieght'", "Did you mean"],
    ),
    (
        "input_shape_mismatch",
        lambda: Subject(linear(d_in=5), data()),
        ShapeError,
        ["cannot take inputs of shape (4,)"],
    ),
    (
        "unlabelled_data",
        lambda: Subject(linear(), Dataset(data()[0], None, task="regression")).loss(),
        DataError,
        ["needs targets", "give (inputs, targets)"],
    ),
    (
        "float_labels_for_classification",
        lambda: Dataset(data()[0], torch.zeros(8), task="classification"),
        DataError,
        ["1-D integer tensor", "task='regression'"],
    ),
    (
        "empty_data",
        lambda: Dataset(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)),
        DataError,
        ["is empty", "at least one sample"],
    ),
    ("not_a_module", lambda: Subject(lambda x: x, data()), ModelError, ["torch.nn.Module"]),
    (
        "mixed_dtypes",
        lambda: Subject(nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 3).double()), data()),
        ModelError,
        ["mixes parameter dtypes", "model.double()"],
    ),
    (
        "unknown_bn_mode",
        lambda: Subject(linear(), data(), bn_mode="training"),
        UnknownNameError,
        ["Did you mean 'train'"],
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "words"), [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES]
)
def test_bad_model_or_data_raises_its_normscope_error_with_a_fix(call, error, words):
    with pytest.raises(error) as caught:
        call()
    assert isinstance(caught.value, NormscopeError)
    for word in words:
        assert word in str(caught.value), (word, str(caught.value))


def test_measures_that_need_labels_are_refused_on_unlabelled_data():
    """A Subject takes unlabelled data; a label-hungry measure refuses it with a DataError
    (never runs silently) and every label-free measure runs."""
    from normscope import measures

    needing = [n for n in measures.names() if measures.info(n).needs_labels]
    assert "sharpness" in needing and "fisher_spectrum" in needing
    s = Subject(linear(), Dataset(data()[0], None, task="regression"))
    for name in measures.names():
        info = measures.info(name)
        if info.needs_labels:
            with pytest.raises(DataError, match="needs labels or targets"):
                info.fn(s, **info.quick)
        else:
            assert isinstance(info.fn(s, **info.quick).value, float)


# ---------------------------------------------------------------- a real process
PROCESS_CASES = [
    (
        "malformed_toml",
        lambda tmp: ["run", str(_spec(tmp, 'name = "x')), "--db", str(tmp / "r.db")],
        "not valid TOML",
    ),
    (
        "shape_mismatch",
        lambda tmp: [*MEASURE, "--net-option", "input_shape=[7]"],
        "cannot take inputs of shape",
    ),
    (
        "foreign_store",
        lambda tmp: ["check", str(foreign_sqlite(tmp / "f.db"))],
        "not a normscope results store",
    ),
]


def _spec(tmp, text):
    path = tmp / "bad.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("make_args", "words"), [c[1:] for c in PROCESS_CASES], ids=[c[0] for c in PROCESS_CASES]
)
def test_installed_command_exits_2_without_traceback(tmp_path, make_args, words):
    done = run_cli(*make_args(tmp_path), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    assert words in " ".join(done.stderr.split())
