import base64
from html.parser import HTMLParser

import pytest

from normscope.errors import StoreError
from normscope.experiments import Store, parse_spec, run_experiment
from normscope.report import build_report

from tests.experiments.conftest import TINY

EVIL = "<script>alert(1)</script>"
SPEC = (
    TINY.replace('name = "tiny"', f'name = "tiny {EVIL}"')
    .replace('description = "tiny sweep"', f'description = "about {EVIL}"')
    .replace("seeds = [0, 1]", 'seeds = [0, 1]\n"subject.data.task" = ["classification", "bogus"]')
    + """
[[plot]]
x = "subject.net.width"
y = "loss"
color = "subject.net.seed"
logx = true
title = "loss <b>by</b> width"
caption = "what to see: <i>nothing</i>"

[[plot]]
x = "subject.net.width"
y = "loss.no_such_column"

[[claim]]
type = "bounded"
y = "loss"
below = 1e6
source = "paper"
basis = "Section <2>"

[[claim]]
type = "loglog_slope"
x = "subject.net.width"
y = "loss"
within = [100, 200]
source = "finding"
contradicts = true
basis = "against a reading"
"""
)


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.images, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    with Store(folder / "r.db") as store:
        run_experiment(parse_spec(SPEC), store, spec_toml=SPEC, workers=0, quiet=True)
    out = build_report(folder / "r.db", folder / "site" / "report.html")
    page = Page()
    page.feed(out.read_text())
    return out, page


def test_page_has_no_script_and_shows_spec_strings_as_text(report):
    out, page = report
    assert "script" not in page.tags
    text = "".join(page.text)
    assert f"tiny {EVIL}" in text and f"about {EVIL}" in text
    assert "<script>" not in out.read_text()


def test_figures_are_embedded_pngs_and_written_beside_the_page(report):
    out, page = report
    assert len(page.images) == 1
    png = base64.b64decode(page.images[0].removeprefix("data:image/png;base64,"))
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    files = sorted(out.parent.glob("*.png"))
    assert len(files) == 1 and files[0].read_bytes() == png


def test_a_figure_that_cannot_be_drawn_is_explained_not_fatal(report):
    text = "".join(report[1].text)
    assert "plot column 'loss.no_such_column' is not in the results" in text


def test_claims_table_and_failed_runs_are_shown(report):
    text = "".join(report[1].text)
    assert "PASS" in text and "FAIL" in text
    assert "Failed runs" in text and "bogus" in text and "Traceback" in text
    assert "Runs: 8 planned, 4 finished, 4 failed, 0 not run." in text


def test_unknown_experiment_is_an_error_with_the_valid_names(report, tmp_path):
    from normscope.errors import UnknownNameError

    db = report[0].parent.parent / "r.db"
    with pytest.raises(UnknownNameError, match="tiny"):
        build_report(db, tmp_path / "x.html", experiment="nope")


def test_report_of_a_non_store_file_is_a_store_error(tmp_path):
    bad = tmp_path / "x.db"
    bad.write_text("hello")
    with pytest.raises(StoreError):
        build_report(bad, tmp_path / "r.html")


def test_claims_come_first_with_their_source_and_basis(report):
    out, page = report
    text = "".join(page.text)
    html = out.read_text()
    assert text.index("Claims at a glance") < text.index("Figures")
    assert "1 of 2 claims pass" in text
    assert "finding against the paper" in text and "Section <2>" in text
    assert html.index('class="against"') < html.index("<h3>Figures</h3>")


def test_figures_have_their_caption(report):
    text = "".join(report[1].text)
    assert "Figure 1." in text and "what to see: <i>nothing</i>" in text
