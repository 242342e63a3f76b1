"""Through the command: no output path destroys the store, and user strings reach Rich,
the terminal, matplotlib, file names and CSV cells as text (see docs/reliability.md,
"Data safety")."""

from __future__ import annotations

import csv
import os
import re
import sqlite3
import subprocess

import pytest

from normscope.experiments import Store, parse_spec, run_experiment
from normscope.experiments.frames import export_table

from .conftest import ROOT, TINY, normscope_command
from .stored import SWEEP, SWEEP_RUNS, run_counts

CLAIM = '\n[[claim]]\nname = "{name}"\ntype = "bounded"\ny = "{y}"\nbelow = 1e9\n'


def stored(db) -> list[tuple]:
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT hash, status FROM runs ORDER BY hash").fetchall()
    finally:
        conn.close()


@pytest.fixture
def db(tmp_path):
    """A store holding the 4 finished runs of TINY, as `normscope run` left it."""
    path = tmp_path / "s1.db"
    with Store(path) as store:
        run_experiment(parse_spec(TINY), store, spec_toml=TINY, workers=0, quiet=True)
    return path


# ------------------------------------------------------------- outputs and the store
@pytest.mark.parametrize(
    "args",
    [
        ("export", "{db}", "-o", "{db}"),
        ("export", "{db}", "-o", "{db}-wal"),
        ("export", "{db}", "-o", "{db}-shm", "--format", "csv"),
        ("export", "{db}", "-o", "{dir}/sub/../s1.db"),
        ("export", "{db}", "-o", "{dir}/alias.csv"),  # a symbolic link to the store
        ("report", "{db}", "-o", "{db}"),
        ("report", "{db}", "-o", "{db}-wal"),
        ("report", "{db}", "-o", "{dir}/hard.html"),  # a hard link to the store
        ("reproduce", "meterez2024", "--quick", "--db", "{db}", "--report", "{db}"),
        ("audit", "{dir}/models.py:make", "--db", "{db}", "--html", "{db}"),
    ],
    ids=lambda args: " ".join(a.replace("{", "").replace("}", "") for a in args),
)
def test_no_output_path_may_be_the_store(cli, db, tmp_path, args):
    (tmp_path / "sub").mkdir()
    (tmp_path / "alias.csv").symlink_to(db)
    os.link(db, tmp_path / "hard.html")
    (tmp_path / "models.py").write_text("raise SystemExit('the model file was run')\n")
    before = stored(db)
    code, out, err = cli(*(a.format(db=db, dir=tmp_path) for a in args))
    assert code == 2 and "is the results store" in err and "Nothing was written" in err, err
    assert "rows written" not in out and "report written" not in out
    assert stored(db) == before and len(before) == 4


def test_default_export_of_a_store_named_like_its_export_keeps_the_store(cli, db, tmp_path):
    named_csv = tmp_path / "store.csv"
    db.rename(named_csv)
    code, out, _ = cli("export", str(named_csv))
    assert code == 0 and "store.csv.csv" in out
    assert len(stored(named_csv)) == 4
    assert (tmp_path / "store.csv.csv").read_text().startswith("experiment,run,status")


def test_an_export_that_fails_midway_leaves_the_previous_export(db, tmp_path, monkeypatch):
    import pandas as pd

    out = tmp_path / "s1.csv"
    export_table(db, out, "csv")
    previous = out.read_text()

    def half_then_fail(self, path, **kwargs):
        path.write_text(previous[: len(previous) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_fail)
    with pytest.raises(Exception, match="No space left"):
        export_table(db, out, "csv")
    assert out.read_text() == previous
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_the_report_counts_runs_an_older_store_left_out_of_the_plan(db, tmp_path):
    from normscope.experiments.execute import RunResult
    from normscope.report import build_report

    with Store(db) as store:
        run = store.runs("tiny")[0]
        fields = ("config", "started", "finished", "seconds", "host", "versions")
        orphan = RunResult(hash="0" * 16, status="ok", rows=[], **{k: run[k] for k in fields})
        store.write_run("tiny", orphan)  # a run outside the plan, as older versions left them
    page = build_report(db, tmp_path / "site" / "r.html").read_text()
    assert "1 stored run(s) of an earlier spec of this name are not in its current plan" in page


# ------------------------------------------------------------------ user strings
def test_markup_in_a_spec_name_is_printed_not_interpreted(cli, tmp_path):
    text = TINY.replace('name = "tiny"', 'name = "x [/bold][/bold] [link=http://evil.example]y"')
    (tmp_path / "spec.toml").write_text(text)
    code, out, err = cli(
        "run", str(tmp_path / "spec.toml"), "--db", str(tmp_path / "r.db"), "-w", "0"
    )
    assert code == 0, err
    assert "x [/bold][/bold] [link=http://evil.example]y: 4 runs planned" in out
    assert "\x1b]8;" not in out + err


def test_terminal_control_sequences_in_labels_and_claims_reach_the_terminal_escaped(cli, tmp_path):
    label = r"loss\u001b]8;;http://evil.example\u001b\\"
    claim = r"ok\u001b[2K\u009b2J :thumbs_up:"
    text = TINY.replace('name = "loss"', f'name = "loss"\nlabel = "{label}"')
    text += CLAIM.format(name=claim, y=label)
    (tmp_path / "spec.toml").write_text(text)
    db = str(tmp_path / "r.db")
    assert cli("run", str(tmp_path / "spec.toml"), "--db", db, "-w", "0", "-q")[0] == 0
    code, out, _ = cli("check", db)
    assert code == 0 and "1 of 1 claims pass" in out
    assert "\x1b" not in out and "\x9b" not in out
    assert "ok\\x1b[2K\\x9b2J :thumbs_up:" in out


def test_a_plot_title_with_bad_math_text_is_drawn_as_text(cli, tmp_path):
    title = r"price $\\frac{1}{ vs $5"
    text = TINY + f'\n[[plot]]\nx = "subject.net.width"\ny = "loss"\ntitle = "{title}"\n'
    (tmp_path / "spec.toml").write_text(text)
    db = str(tmp_path / "r.db")
    cli("run", str(tmp_path / "spec.toml"), "--db", db, "-w", "0", "-q")
    code, _, err = cli("report", db, "-o", str(tmp_path / "site" / "r.html"))
    assert code == 0, err
    page = (tmp_path / "site" / "r.html").read_text()
    assert "price $\\frac{1}{ vs $5" in page and 'class="problem"' not in page
    assert len(list((tmp_path / "site").glob("*.png"))) == 1


def test_one_figure_matplotlib_cannot_draw_is_that_figures_problem(db, tmp_path, monkeypatch):
    from normscope.report import html

    text = TINY + "".join(
        f'\n[[plot]]\nx = "subject.net.width"\ny = "loss"\ntitle = "figure {i}"\n' for i in (1, 2)
    )
    with Store(tmp_path / "two.db") as store:
        run_experiment(parse_spec(text), store, spec_toml=text, workers=0, quiet=True)
    draw = html.draw

    def fail_on_first(plot, table, labels=None):
        if plot.title == "figure 1":
            raise ValueError("cannot lay out this text")
        return draw(plot, table, labels)

    monkeypatch.setattr(html, "draw", fail_on_first)
    page = html.build_report(tmp_path / "two.db", tmp_path / "site" / "r.html").read_text()
    assert "Figure 1 (figure 1): matplotlib could not draw it (ValueError" in page
    assert "<figcaption><b>Figure 2.</b> figure 2." in page
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []


def test_formula_cells_are_defused_in_csv(cli, tmp_path):
    label = '=HYPERLINK(""http://evil.example"",""x"")'.replace('""', '\\"')
    text = TINY.replace('name = "loss"', f'name = "loss"\nlabel = "{label}"')
    (tmp_path / "spec.toml").write_text(text)
    db = str(tmp_path / "r.db")
    cli("run", str(tmp_path / "spec.toml"), "--db", db, "-w", "0", "-q")
    code, _, _ = cli("export", db, "-o", str(tmp_path / "r.csv"))
    with (tmp_path / "r.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert code == 0 and len(rows) == 4
    assert {r["name"] for r in rows} == {'\'=HYPERLINK("http://evil.example","x")'}
    assert all(float(r["value"]) > 0 for r in rows)


def test_experiment_names_become_distinct_file_names_inside_the_report_folder(tmp_path):
    from normscope.report import build_report

    plot = '\n[[plot]]\nx = "subject.net.width"\ny = "loss"\n'
    names = ["../a/b", "../a?b", "x" * 300]
    with Store(tmp_path / "r.db") as store:
        for name in names:
            text = TINY.replace('name = "tiny"', f'name = "{name}"') + plot
            run_experiment(parse_spec(text), store, spec_toml=text, workers=0, quiet=True)
    build_report(tmp_path / "r.db", tmp_path / "site" / "r.html")
    pngs = sorted((tmp_path / "site").glob("*.png"))
    assert len(pngs) == 3 and all(len(p.name) < 100 for p in pngs)
    assert {p.parent for p in tmp_path.rglob("*.png")} == {tmp_path / "site"}


# ------------------------------------------------------- concurrent `normscope run`
def start_run(spec, db) -> subprocess.Popen:
    return subprocess.Popen(
        [*normscope_command(), "run", str(spec), "--db", str(db), "-w", "0", "-q"],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "400", "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=300)
    return process.returncode, out, err


def test_two_processes_of_one_spec_compute_each_run_once(tmp_path):
    (tmp_path / "spec.toml").write_text(SWEEP)
    db = tmp_path / "r.db"
    results = [finish(p) for p in [start_run(tmp_path / "spec.toml", db) for _ in range(2)]]
    computed = 0
    for code, out, err in results:
        assert code == 0, err
        done = re.search(r"(\d+) runs planned, (\d+) already stored, (\d+) finished", out)
        assert done and int(done[1]) == SWEEP_RUNS, out
        computed += int(done[3])
    assert computed == SWEEP_RUNS
    assert run_counts(db) == {"ok": SWEEP_RUNS}


def test_two_processes_of_different_specs_under_one_name_hide_nothing(tmp_path):
    (tmp_path / "a.toml").write_text(SWEEP)
    (tmp_path / "b.toml").write_text(SWEEP.replace("[32, 48]", "[24, 40]"))
    db = tmp_path / "r.db"
    runs = [start_run(tmp_path / name, db) for name in ("a.toml", "b.toml")]
    results = [finish(p) for p in runs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, _, err in results if code == 2)
    assert 'name = "reliable-2"' in refused and "Traceback" not in refused
    with Store(db, readonly=True) as store:
        assert len(store.runs("reliable")) == run_counts(db)["ok"] == SWEEP_RUNS
