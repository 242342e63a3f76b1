import sys
import textwrap

import pytest
import typer
from typer.testing import CliRunner

from normscope.auditing.command import load_data, parse_shape, register
from normscope.auditing.factory import load_model
from normscope.errors import ConfigError, ModelError, ShapeError
from normscope.experiments.store import Store

MODELS = textwrap.dedent(
    """
    import torch
    from torch import nn

    def make_mlp():
        gen = torch.random.fork_rng()
        with gen:
            torch.manual_seed(0)
            return nn.Sequential(nn.Linear(64, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 10))

    def make_cnn():
        with torch.random.fork_rng():
            torch.manual_seed(0)
            return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(),
                                 nn.Flatten(), nn.Linear(72, 10))

    def broken():
        raise ValueError("no weights here")

    def not_a_model():
        return 3

    class Pair(nn.Module):
        def __init__(self, kind):
            super().__init__()
            self.kind = kind
            self.net = nn.Sequential(nn.Linear(5, 6), nn.LayerNorm(6), nn.Tanh(), nn.Linear(6, 3))

        def forward(self, x):
            out = self.net(x)
            if self.kind == "dict":
                return {"logits": out}
            if self.kind == "tuple":
                return out, out.detach()
            return "nothing to measure"

    def _loader():
        gen = torch.Generator().manual_seed(0)
        x, y = torch.randn(12, 5, generator=gen), torch.arange(12) % 3
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=6)

    def with_loader():
        torch.manual_seed(0)
        return Pair("tuple"), _loader()

    def dict_model():
        torch.manual_seed(0)
        return Pair("dict"), _loader()

    def unusable():
        return Pair("string"), _loader()
    """
)


@pytest.fixture
def models(tmp_path):
    path = tmp_path / "user_models.py"
    path.write_text(MODELS)
    return path


@pytest.fixture
def app():
    app = typer.Typer()
    register(app)

    @app.callback()
    def root() -> None:
        """A root, so that ``audit`` is a subcommand as in the normscope app."""

    return app


def _invoke(app, *args):
    return CliRunner().invoke(app, ["audit", *map(str, args)])


def test_audit_command_prints_stores_and_writes_html(app, models, tmp_path):
    db, html = tmp_path / "r.db", tmp_path / "a.html"
    result = _invoke(
        app,
        f"{models}:make_mlp",
        "--data",
        "digits",
        "--n",
        64,
        "--measures",
        "loss,gradient_norms",
        "--variants",
        "as_given,no_norm",
        "--db",
        db,
        "--html",
        html,
    )
    assert result.exit_code == 0, result.output
    assert "as_given/train" in result.output and "no_norm" in result.output
    assert "stored as audit:make_mlp" in result.output
    with Store(db, readonly=True) as store:
        assert store.experiments() == ["audit:make_mlp"]
        assert len(store.measurements()) == 3 * 2
    assert "Audit of make_mlp" in html.read_text()


def test_input_shape_reshapes_the_data_for_a_conv_model(app, models, tmp_path):
    result = _invoke(
        app,
        f"{models}:make_cnn",
        "--data",
        "digits",
        "--input-shape",
        "1,8,8",
        "--n",
        64,
        "--measures",
        "loss",
        "--bn-modes",
        "eval",
        "--db",
        tmp_path / "r.db",
    )
    assert result.exit_code == 0, result.output
    assert "as_given/eval" in result.output and "as_given/train" not in result.output


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("missing.py:make_mlp", "does not exist"),
        ("{models}", "is not of the form path/to/file.py:function"),
        ("{models}:make_mpl", "no function 'make_mpl'; functions defined there: Pair, broken"),
        ("{models}:broken", "broken() in"),
        ("{models}:not_a_model", "returned int, not a torch.nn.Module"),
    ],
)
def test_bad_model_references_exit_2_with_a_clear_message(app, models, tmp_path, target, message):
    result = _invoke(app, target.format(models=models), "--db", tmp_path / "r.db")
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "r.db").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--measures", "sharpnes"], "unknown measure 'sharpnes'"),
        (["--variants", "no_nrom"], "unknown audit variant 'no_nrom'"),
        (["--input-shape", "3,8,8"], "192 values per sample"),
        (["--data", "nowhere"], "neither a data set"),
    ],
)
def test_bad_options_exit_2(app, models, tmp_path, args, message):
    result = _invoke(app, f"{models}:make_mlp", "--n", 64, "--db", tmp_path / "r.db", *args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_model_file_is_imported_from_its_path_without_touching_sys_path(models):
    path_before = list(sys.path)
    model, _, name = load_model(f"{models}:make_mlp")
    assert name == "make_mlp" and model[0].in_features == 64
    assert sys.path == path_before
    assert "user_models" not in sys.modules


def test_a_file_that_fails_on_import_is_a_model_error(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("import not_a_module_anywhere\n")
    with pytest.raises(ModelError, match="ModuleNotFoundError"):
        load_model(f"{path}:make")


EXITS = {
    "on_import.py": "import sys\nsys.exit(3)\ndef make():\n    pass\n",
    "in_factory.py": "import sys\ndef make():\n    sys.exit(3)\n",
    "argparse_required.py": (
        "import argparse\np = argparse.ArgumentParser()\np.add_argument('checkpoint')\n"
        "args = p.parse_args()\ndef make():\n    pass\n"
    ),
}


@pytest.mark.parametrize("file", EXITS)
def test_a_model_file_that_exits_is_a_model_error_saying_how_to_fix_it(tmp_path, file):
    path = tmp_path / file
    path.write_text(EXITS[file])
    argv = list(sys.argv)
    with pytest.raises(ModelError, match=r"called sys\.exit\((3|2)\).*if __name__ == "):
        load_model(f"{path}:make")
    assert sys.argv == argv


def test_a_model_file_that_parses_its_arguments_gets_its_defaults(tmp_path, monkeypatch):
    path = tmp_path / "script.py"
    path.write_text(
        "import argparse, sys\nfrom torch import nn\nSEEN = list(sys.argv)\n"
        "p = argparse.ArgumentParser()\np.add_argument('--width', type=int, default=5)\n"
        "args = p.parse_args()\ndef make():\n    return nn.Linear(3, args.width)\n"
    )
    monkeypatch.setattr(sys, "argv", ["normscope", "audit", f"{path}:make", "--n", "8"])
    model, _, _ = load_model(f"{path}:make")
    assert model.out_features == 5
    assert sys.argv == ["normscope", "audit", f"{path}:make", "--n", "8"]


def test_audit_of_a_file_that_exits_exits_2_with_the_message(app, tmp_path):
    path = tmp_path / "in_factory.py"
    path.write_text(EXITS["in_factory.py"])
    result = _invoke(app, f"{path}:make", "--db", tmp_path / "r.db")
    assert result.exit_code == 2 and "sys.exit(3)" in result.output
    assert not (tmp_path / "r.db").exists()


def test_shapes_and_data_helpers_validate(tmp_path):
    assert parse_shape("1,8,8") == (1, 8, 8)
    with pytest.raises(ConfigError):
        parse_shape("1,a")
    assert load_data("gaussian", 16, 0, (2, 3)).x.shape == (16, 2, 3)
    with pytest.raises(ShapeError):
        load_data("digits", 16, 0, (5,))
    with pytest.raises(ConfigError, match="neither MNIST"):
        load_data(str(tmp_path), 16, 0, None)


@pytest.mark.parametrize("factory", ["with_loader", "dict_model"])
def test_a_factory_brings_its_own_data_and_any_output_shape(app, models, tmp_path, factory):
    db = tmp_path / "r.db"
    result = _invoke(
        app, f"{models}:{factory}", "--measures", "loss,sharpness,input_lipschitz", "--db", db
    )
    assert result.exit_code == 0, result.output
    with Store(db, readonly=True) as store:
        rows = store.measurements()
    assert {r["name"] for r in rows} >= {"loss", "sharpness", "input_lipschitz"}


def test_a_model_whose_output_cannot_be_measured_exits_2_with_one_line(app, models, tmp_path):
    result = _invoke(app, f"{models}:unusable", "--db", tmp_path / "r.db")
    assert result.exit_code == 2
    assert "no output tensor" in " ".join(result.output.split())
    assert "Traceback" not in result.output
