"""No untrusted file is ever unpickled or evaluated; the HTML report shows every string a
spec, a model or the store holds as text; user code is imported only from the file the
user names."""

from __future__ import annotations

import ast
import importlib
import io
import sys
import tokenize
from html.parser import HTMLParser
from pathlib import Path

import pytest

from normscope.experiments import Store, parse_spec, run_experiment
from normscope.report import build_report

SRC = Path(__file__).parents[2] / "src" / "normscope"
SOURCES = sorted(SRC.rglob("*.py"))

FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve", "marshal"}
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}
# Package-internal module discovery (own subpackages by name) and the audit loader of
# the one file the user names are the only dynamic imports allowed.
IMPORT_MODULE_FILES = {
    # lazy attributes: module names from fixed tables in the file, never from input
    "__init__.py",
    "auditing/__init__.py",
    "measures/__init__.py",
    "experiments/training.py",
    "experiments/theory_columns.py",
}
FILE_LOADER_FILES = {"auditing/factory.py", "audit/factory.py"}


def code_only(path: Path) -> str:
    """The file's code without comments and string literals (docstrings may name pickle)."""
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    return " ".join(t.string for t in tokens if t.type not in (tokenize.COMMENT, tokenize.STRING))


def calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Name):
        return node.id
    return "?"


def keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


def test_the_source_tree_is_scanned():
    assert len(SOURCES) > 50 and (SRC / "experiments" / "store.py") in SOURCES


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_pickle_eval_or_unsafe_loader_in_source(path):
    rel = str(path.relative_to(SRC))
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert not {a.name.split(".")[0] for a in node.names} & FORBIDDEN_MODULES, rel
        if isinstance(node, ast.ImportFrom):
            assert (node.module or "").split(".")[0] not in FORBIDDEN_MODULES, rel
    for call in calls(tree):
        name = dotted(call.func)
        where = f"{rel}:{call.lineno}"
        assert not (isinstance(call.func, ast.Name) and call.func.id in FORBIDDEN_CALLS), where
        if name == "torch.load":
            flag = keyword(call, "weights_only")
            assert isinstance(flag, ast.Constant) and flag.value is True, where
        if name.endswith(".load") and name.split(".")[0] in ("np", "numpy"):
            flag = keyword(call, "allow_pickle")
            assert flag is None or (isinstance(flag, ast.Constant) and flag.value is False), where
        if name.split(".")[0] == "yaml":
            assert name in ("yaml.safe_load", "yaml.safe_dump", "yaml.dump"), where
        if name.endswith(("read_pickle", "joblib.load")):
            pytest.fail(f"{where}: {name} unpickles")
        if name.endswith("import_module"):
            assert rel in IMPORT_MODULE_FILES, where
        if name.endswith(("exec_module", "spec_from_file_location")):
            assert rel in FILE_LOADER_FILES, where
    text = code_only(path)
    assert "pickle" not in text.replace("allow_pickle = False", "").replace(
        "allow_pickle=False", ""
    ), rel


def test_the_scan_catches_what_it_forbids(tmp_path):
    """The checks above fail on code that does the forbidden things."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import pickle\nimport torch\nx = torch.load(f)\ny = eval(s)\n"
        "import numpy as np\nz = np.load(f, allow_pickle=True)\n"
    )
    tree = ast.parse(bad.read_text())
    names = [dotted(c.func) for c in calls(tree)]
    assert "torch.load" in names and "eval" in names and "np.load" in names
    assert (
        keyword(next(c for c in calls(tree) if dotted(c.func) == "torch.load"), "weights_only")
        is None
    )
    assert "pickle" in code_only(bad)


# ---------------------------------------------------------------- the HTML report
EVIL = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(2)>"
HOSTILE = f"""\
name = "../../{EVIL}"
description = "about {IMG} & {EVIL}"
paper = "paper {EVIL}"
[subject]
net = {{arch = "mlp", width = 6, depth = 2, norm = "batch"}}
data = {{name = "gaussian", n = 24, dim = 5, num_classes = 3}}
loss = "mse"
[[measure]]
name = "loss"
label = "loss {IMG}"
[sweep]
"subject.net.width" = [4, 8]
"subject.data.task" = ["classification", "{EVIL}"]

[[plot]]
x = "subject.net.width"
y = "loss {IMG}"
title = "title {EVIL}"

[[plot]]
x = "subject.net.width"
y = "loss {IMG}.missing {IMG}"

[[claim]]
name = "claim {EVIL}"
type = "bounded"
y = "loss {IMG}"
below = 1e9

[[claim]]
name = "claim two {IMG}"
type = "bounded"
y = "loss {IMG}"
below = 0
filter = {{"subject.data.task" = "{EVIL}"}}
"""


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.handlers, self.sources, self.text = [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.handlers += [name for name, _ in attrs if name.startswith("on")]
        self.sources += [value for name, value in attrs if name in ("src", "href")]

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    with Store(folder / "r.db") as store:
        summary = run_experiment(
            parse_spec(HOSTILE), store, spec_toml=HOSTILE, workers=0, quiet=True
        )
    assert (summary.ok, summary.failed) == (2, 2)
    site = folder / "site" / "deep"
    out = build_report(folder / "r.db", site / "report.html")
    page = Page()
    page.feed(out.read_text())
    return folder, out, page


def test_report_has_no_script_no_handlers_and_only_local_links(hostile_report):
    _, out, page = hostile_report
    html = out.read_text()
    assert "script" not in page.tags and "<script" not in html
    assert page.handlers == [] and "<img src=x" not in html
    assert all(s.startswith(("data:image/png;base64,", "#")) for s in page.sources), page.sources


@pytest.mark.parametrize(
    "shown",
    [
        f"../../{EVIL}",  # experiment name
        f"about {IMG} & {EVIL}",  # description
        f"paper {EVIL}",  # paper
        f"claim {EVIL}",  # claim names
        f"claim two {IMG}",
        f"title {EVIL}",  # figure caption
        f"missing {IMG}",  # a figure's error message (a detail no run returned)
        f"got {EVIL!r}",  # a failed run's error message, quoting a config value
    ],
)
def test_report_shows_hostile_strings_as_text(hostile_report, shown):
    text = "".join(hostile_report[2].text)
    assert shown in text


def test_report_files_stay_in_the_report_folder(hostile_report):
    folder, out, _ = hostile_report
    written = [p for p in folder.rglob("*") if p.is_file()]
    for path in written:
        assert path.parent == out.parent or (
            path.parent == folder and path.name.startswith("r.db")
        ), path
    assert len(list(out.parent.glob("*.png"))) == 1


# ---------------------------------------------------------------- audit model files
def _factory_module():
    """The audit package's model loader (the package was renamed from audit to auditing)."""
    for name in ("normscope.auditing.factory", "normscope.audit.factory"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise AssertionError("the audit package has no factory module")


MODEL_FILE = "import torch\ndef make():\n    return torch.nn.Linear({n}, 1)\n"


def test_audit_loads_the_factory_from_the_named_file_not_from_sys_path(tmp_path, monkeypatch):
    load_model = _factory_module().load_model
    named, shadow = tmp_path / "named", tmp_path / "shadow"
    named.mkdir()
    shadow.mkdir()
    (named / "models.py").write_text(MODEL_FILE.format(n=3))
    (shadow / "models.py").write_text(MODEL_FILE.format(n=7))
    monkeypatch.syspath_prepend(str(shadow))
    monkeypatch.chdir(shadow)
    before = set(sys.modules)
    model, _, function = load_model(f"{named / 'models.py'}:make")
    assert function == "make" and model.in_features == 3
    assert "models" not in set(sys.modules) - before


def test_audit_never_resolves_a_module_name(tmp_path, monkeypatch):
    from normscope.errors import NormscopeError

    load_model = _factory_module().load_model
    (tmp_path / "models.py").write_text(MODEL_FILE.format(n=7))
    monkeypatch.syspath_prepend(str(tmp_path))
    for reference in ("models:make", "json:dumps", "os.path:join"):
        with pytest.raises(NormscopeError, match=r"does not exist|not of the form"):
            load_model(reference)
    assert "models" not in sys.modules
