"""docs/first-hour.md runs as written: its Python blocks in one interpreter, its files
written, its `$ normscope ...` lines through the installed console script (redirected,
80 columns), each printing the lines the page shows under it."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from tests.helpers import run_script, wider_than

PAGE = Path(__file__).parents[1] / "docs" / "first-hour.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", flags=re.S | re.M)
FILE = re.compile(r"# file: (\S+)\n")


def _shown_in(expected: str, output: str) -> bool:
    """Whether the line ``expected`` (``...`` for any text) is in ``output``, with runs
    of whitespace (wrapped lines) counted as one space."""
    flat = " ".join(output.split())
    parts = [" ".join(p.split()) for p in expected.split("...")]
    pattern = ".*?".join(re.escape(p) for p in parts if p)
    return re.search(pattern, flat) is not None


def _commands(block: str) -> list[tuple[str, list[str]]]:
    """(command line, the output lines shown under it) for each `$` line."""
    out: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            out.append((line[2:], []))
        elif line.strip():
            out[-1][1].append(line)
    return out


def _run(command: str, shown: list[str], folder: Path) -> None:
    program, *args = shlex.split(command)
    assert program == "normscope", command
    done = run_script(*args, cwd=folder)
    output = done.stdout + done.stderr
    expected = 2 if any(line.startswith("error:") for line in shown) else 0
    assert done.returncode == expected, f"{command}\n{output}"
    assert "Traceback" not in output, output
    # an error is one line, however long (the terminal wraps it, normscope does not)
    too_wide = [line for line in wider_than(done.stderr) if not line.startswith("error:")]
    assert not wider_than(done.stdout) and not too_wide, output
    for line in shown:
        assert _shown_in(line, output), f"{command}: {line!r} not in\n{output}"


def test_first_hour_tutorial_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    kinds = []
    for kind, block in BLOCK.findall(PAGE.read_text()):
        named = FILE.match(block)
        if named:
            (tmp_path / named.group(1)).write_text(block)
        elif kind == "python":
            exec(compile(block, str(PAGE), "exec"), namespace)
        elif kind == "console":
            for command, shown in _commands(block):
                _run(command, shown, tmp_path)
        kinds.append(kind if not named else "file")
    assert kinds.count("console") >= 4 and kinds.count("file") == 2
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "(1, 8, 8)" and printed[1].startswith("Measurement(sharpness=")
    assert printed[2] == "train" and printed[3] == "8"
    assert printed[4] == "['loss', 'sharpness']" and printed[5] == "[0 5]"
    assert (tmp_path / "first.html").stat().st_size > 0
    assert (tmp_path / "karakida.html").stat().st_size > 0
