"""Every usage error of every command, through the installed console script: exit 2, one
line on stderr, no traceback, whichever layer raised it (the parser, normscope).

The walk is built per command and kind of mistake; a command added to the app without
cases here fails :func:`test_every_command_is_walked`.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from normscope.cli import app

from tests.reliability.conftest import ROOT, normscope_command

SPEC = (
    'name = "x"\n[subject]\nnet = {arch = "mlp"}\ndata = {name = "digits", n = 16}\n'
    '[[measure]]\nname = "loss"\n'
)
BAD_SPEC = SPEC.replace('{arch = "mlp"}', '{arch = "mlp", width = "six"}')
STORE = "{tmp}/nope.db"
MODEL = "{tmp}/nope.py:make"

# (command, kind of mistake, argv with {tmp} for the test's folder, words the line must hold)
CASES = [
    # the root
    ("root", "unknown command", ["lst"], ["No such command 'lst'", "Did you mean 'list'"]),
    ("root", "unknown option", ["--bogus"], ["No such option: --bogus"]),
    # list
    ("list", "unknown choice", ["list", "measure"], ["Did you mean 'measures'"]),
    ("list", "unknown option", ["list", "--bogus"], ["No such option: --bogus"]),
    ("list", "extra argument", ["list", "nets", "norms"], ["unexpected extra argument"]),
    # run
    ("run", "missing argument", ["run"], ["Missing argument 'spec'"]),
    ("run", "unknown option", ["run", "{tmp}/spec.toml", "--bogus"], ["No such option"]),
    ("run", "not an integer", ["run", "{tmp}/spec.toml", "-w", "x"], ["--workers", "integer"]),
    ("run", "missing value", ["run", "{tmp}/spec.toml", "--db"], ["requires an argument"]),
    ("run", "unknown choice", ["run", "{tmp}/spec.toml", "--backend", "rey"], ["'ray'"]),
    ("run", "no such file", ["run", "{tmp}/none.toml"], ["does not exist"]),
    ("run", "bad spec value", ["run", "{tmp}/bad.toml"], ["width", "'six'"]),
    (
        "run",
        "unknown logger",
        ["run", "{tmp}/spec.toml", "--log", "tensorbord:{tmp}/tb"],
        ["Did you mean 'tensorboard'"],
    ),
    ("run", "logger without a folder", ["run", "{tmp}/spec.toml", "--log", "csv"], ["KIND:FOLDER"]),
    # measure
    ("measure", "missing argument", ["measure"], ["Missing argument 'name'"]),
    ("measure", "unknown name", ["measure", "sharpnes"], ["Did you mean 'sharpness'"]),
    ("measure", "not an integer", ["measure", "loss", "--width", "wide"], ["--width"]),
    ("measure", "unknown option", ["measure", "loss", "--bogus"], ["No such option"]),
    (
        "measure",
        "unknown measure option",
        ["measure", "sharpness", "-o", "kk=1"],
        ["has no option 'kk'", "Did you mean 'k'"],
    ),
    (
        "measure",
        "option value out of range",
        ["measure", "adaptive_sharpness", "-o", "rho=0"],
        ["rho=0", "must be a finite number > 0"],
    ),
    (
        "measure",
        "option value of the wrong type",
        ["measure", "sharpness", "-o", 'k="2"'],
        ["k='2'", "an integer >= 1"],
    ),
    (
        "measure",
        "option value not among the choices",
        ["measure", "fisher_spectrum", "-o", "kind=Tru"],
        ["kind='Tru'", "Did you mean 'true'"],
    ),
    ("measure", "malformed pair", ["measure", "loss", "-o", "k"], ["key=value"]),
    ("measure", "unknown loss", ["measure", "loss", "--loss", "mes"], ["Did you mean 'mse'"]),
    ("measure", "bad network field", ["measure", "loss", "--depth", "0"], ["depth"]),
    # check, report, export
    ("check", "unknown option", ["check", STORE, "--bogus"], ["No such option: --bogus"]),
    ("check", "no such store", ["check", STORE], ["does not exist"]),
    ("check", "extra argument", ["check", STORE, "more"], ["unexpected extra argument"]),
    ("report", "no such store", ["report", STORE], ["does not exist"]),
    ("report", "unknown option", ["report", STORE, "--bogus"], ["No such option"]),
    ("export", "no such store", ["export", STORE], ["does not exist"]),
    ("export", "unknown choice", ["export", STORE, "-f", "xls"], ["unknown export format"]),
    ("export", "unknown option", ["export", STORE, "--bogus"], ["No such option"]),
    ("export", "missing value", ["export", STORE, "--output"], ["requires an argument"]),
    # reproduce
    ("reproduce", "unknown name", ["reproduce", "lyu"], ["Did you mean 'lyu2022'"]),
    ("reproduce", "not an integer", ["reproduce", "lyu2022", "-w", "x"], ["--workers", "integer"]),
    ("reproduce", "unknown option", ["reproduce", "--fast"], ["No such option: --fast"]),
    # audit
    ("audit", "missing argument", ["audit"], ["Missing argument 'model'"]),
    ("audit", "not an integer", ["audit", MODEL, "--n", "many"], ["--n", "integer"]),
    ("audit", "bad model reference", ["audit", "model.py"], ["path/to/file.py:function"]),
    ("audit", "no such model file", ["audit", MODEL], ["nope.py"]),
    ("audit", "unknown option", ["audit", MODEL, "--bogus"], ["No such option"]),
]


def _run(argv, cwd):
    env = {**os.environ, "COLUMNS": "80", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [*normscope_command(), *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def _registered() -> set[str]:
    return {c.name or c.callback.__name__ for c in app.registered_commands}


def test_every_command_is_walked():
    assert {command for command, *_ in CASES} - {"root"} == _registered()


def test_the_walk_covers_every_kind_of_mistake_for_the_commands():
    kinds = {kind for _, kind, *_ in CASES}
    assert {"unknown option", "missing argument", "not an integer", "unknown choice"} <= kinds
    for command in _registered():
        assert any(c == command and k == "unknown option" for c, k, *_ in CASES), command


@pytest.mark.parametrize(
    ("command", "kind", "argv", "words"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES]
)
def test_usage_error_exits_2_with_one_line_and_no_traceback(tmp_path, command, kind, argv, words):
    (tmp_path / "spec.toml").write_text(SPEC)
    (tmp_path / "bad.toml").write_text(BAD_SPEC)
    done = _run([a.replace("{tmp}", str(tmp_path)) for a in argv], tmp_path)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, (command, kind, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout, (command, kind)
    assert len(lines) == 1 and lines[0].startswith("error: "), (command, kind, lines)
    for word in words:
        assert word in lines[0], (command, kind, word, lines[0])
    assert not (tmp_path / "results").exists(), "a usage error must not create a store"
