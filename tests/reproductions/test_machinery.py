import pytest

from normscope import reproductions
from normscope.errors import ConfigError, UnknownNameError
from normscope.experiments.spec import parse_spec

# A real, tiny reproduction: two widths of a batch-norm MLP, one claim that holds and one
# that cannot (the loss of a random net on random labels is not negative).
TINY = """
name = "tiny"
paper = "A Tiny Paper (2020)"
[subject]
net = {arch = "mlp", width = 6, depth = 1, norm = "batch"}
data = {name = "gaussian", n = 16, dim = 4, num_classes = 3}
loss = "mse"
[[measure]]
name = "loss"
[sweep]
"subject.net.width" = [4, 8, 16]
seeds = [0, 1]
[quick.sweep]
"subject.net.width" = [4, 8]
seeds = [0]
[quick.set]
"subject.data.n" = 8
[[plot]]
x = "subject.net.width"
y = "loss"
[[claim]]
name = "loss is positive"
paper = "tiny"
type = "bounded"
y = "loss"
above = 0.0
[[claim]]
name = "loss is negative"
paper = "tiny"
type = "bounded"
y = "loss"
below = 0.0
"""


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """Replace the shipped reproductions by the files written into a folder."""
    folder = tmp_path / "shipped"
    folder.mkdir()
    (folder / "tiny.toml").write_text(TINY)
    monkeypatch.setattr(reproductions, "_folder", lambda: folder)
    return folder


def test_quick_replaces_sweep_entries_and_sets_paths():
    full, quick = parse_spec(TINY), parse_spec(TINY, quick=True)
    assert full.sweep.axes["subject.net.width"] == [4, 8, 16] and full.sweep.seeds == [0, 1]
    assert full.subject.data.n == 16
    assert quick.sweep.axes["subject.net.width"] == [4, 8] and quick.sweep.seeds == [0]
    assert quick.subject.data.n == 8 and quick.quick is None
    assert quick.claim == full.claim and quick.plot == full.plot


def test_quick_sets_list_items_by_index():
    text = TINY.replace('"subject.data.n" = 8', '"subject.data.n" = 8\n"measure.0.name" = "lossy"')
    assert parse_spec(text, quick=True, check=False).measure[0].name == "lossy"


@pytest.mark.parametrize(
    ("quick", "message"),
    [
        ('[quick.set]\n"subject.data.m" = 3', "no field 'subject.data.m'"),
        ('[quick.set]\n"claim.0.above" = 3', "a path starts with subject"),
        ('[quick.set]\n"measure.3.name" = "loss"', "no field 'measure.3'"),
        ('[quick.sweep]\n"subject.net.depth" = [1]', "no entry 'subject.net.depth'"),
        ("[quick]\nsizes = 1", "unknown field 'sizes'"),
    ],
)
def test_quick_rejects_unknown_paths_even_at_full_size(quick, message):
    text = TINY.split("[quick.sweep]")[0] + "[[plot]]" + TINY.split("[[plot]]")[1] + quick
    for size in (False, True):
        with pytest.raises(ConfigError, match=message):
            parse_spec(text, quick=size)


def test_load_names_the_quick_experiment_apart(shipped):
    assert reproductions.names() == ["tiny"]
    full, quick = reproductions.load("tiny"), reproductions.load("tiny", quick=True)
    assert (full.experiment, quick.experiment) == ("tiny", "tiny-quick")
    assert len(reproductions.plan_runs("tiny")) == 6
    assert len(reproductions.plan_runs("tiny", quick=True)) == 2


def test_unknown_reproduction_lists_the_valid_ones(shipped, cli):
    with pytest.raises(UnknownNameError, match="tiny"):
        reproductions.load("tinny")
    code, _, err = cli("reproduce", "tinny", "--db", "x.db")
    assert code == 2 and "tiny" in err and "Traceback" not in err


def test_reproduce_stores_checks_reports_and_exits_0_on_a_failed_claim(shipped, cli, tmp_path):
    db, report = tmp_path / "r.db", tmp_path / "out" / "report.html"
    args = ("reproduce", "tiny", "--quick", "--db", str(db), "--report", str(report), "-w", "0")
    code, out, _ = cli(*args, "-q")
    assert code == 0
    assert "tiny-quick: 2 runs, 0 already stored, 2 finished, 0 failed" in out
    assert "loss is positive" in out and "PASS" in out and "FAIL" in out
    assert "1 of 2 claims pass" in out
    html = report.read_text()
    assert "tiny-quick" in html and "data:image/png;base64" in html
    code, out, _ = cli(*args, "-q", "--strict")
    assert code == 1 and "2 already stored, 0 finished" in out


def test_reproduce_all_runs_every_shipped_spec(shipped, cli, tmp_path):
    (shipped / "tiny2.toml").write_text(TINY.replace('name = "tiny"', 'name = "tiny2"'))
    db, report = tmp_path / "r.db", tmp_path / "report.html"
    code, out, _ = cli(
        "reproduce", "all", "--quick", "--db", str(db), "--report", str(report), "-w", "0", "-q"
    )
    assert code == 0 and "tiny-quick" in out and "tiny2-quick" in out
    assert "2 of 4 claims pass" in out
    html = report.read_text()
    assert "tiny-quick" in html and "tiny2-quick" in html


def test_reproduce_list_shows_papers(shipped, cli):
    code, out, _ = cli("reproduce", "--list")
    assert code == 0 and "tiny" in out and "A Tiny Paper (2020)" in out


def test_spec_name_must_match_its_file(shipped):
    (shipped / "other.toml").write_text(TINY)
    with pytest.raises(ConfigError, match="must be 'other'"):
        reproductions.load("other")


def test_a_shipped_claim_must_say_where_it_comes_from(shipped):
    from normscope.reproductions.wellformed import problems

    found = problems(reproductions.load("tiny"))
    assert len(found) == 2 and all("`source`" in p for p in found)
    sourced = TINY.replace(
        'paper = "tiny"\n', 'paper = "tiny"\nsource = "theory"\nbasis = "a derivation"\n'
    )
    (shipped / "tiny.toml").write_text(sourced)
    assert problems(reproductions.load("tiny")) == []


def test_reproduce_prints_each_claims_source(shipped, cli, tmp_path):
    sourced = TINY.replace('paper = "tiny"\n', 'paper = "tiny"\nsource = "theory"\n', 1)
    (shipped / "tiny.toml").write_text(sourced)
    args = ("reproduce", "tiny", "--quick", "--db", str(tmp_path / "r.db"), "-w", "0", "-q")
    code, out, _ = cli(*args, "--report", str(tmp_path / "r.html"))
    assert code == 0 and "source" in out and "theory" in out
