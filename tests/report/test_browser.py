"""The HTML report and the audit page opened in a real browser (headless Chromium).

A page passes when the browser logs no console error, every image decodes, the tables
that carry the results have rows, and every figure is shown at a size whose text stays
legible on a laptop screen. A screenshot of each page is saved in the test's folder.

Chromium and its driver are Debian's ``chromium`` and ``chromium-driver`` packages,
whose versions always match; ``make test`` installs them where it can (apt-get, as
root). Selenium drives the browser through that driver, so no browser is downloaded.
"""

from __future__ import annotations

import shutil
import tempfile

import pytest

from normscope.auditing import audit
from normscope.experiments import Store, parse_spec, run_experiment
from normscope.report import build_report

from tests.audit.models import bn_mlp, gaussian_data, seeded
from tests.report.test_report import SPEC

webdriver = pytest.importorskip("selenium.webdriver")

LAPTOP = (1366, 768)
"""Window size (CSS pixels) of a common laptop screen."""
MIN_SCALE = 0.6
"""Smallest shown/natural size of a figure: matplotlib's 10-point text at the figures'
110 dpi is 15 pixels high, and stays at least 9 pixels (legible) at this scale."""
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    f"--window-size={LAPTOP[0]},{LAPTOP[1]}",
]


@pytest.fixture(scope="module")
def browser():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip(
            "Debian's chromium and chromium-driver packages are not installed and could "
            "not be (make test installs them with apt-get when run as root)"
        )
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    with tempfile.TemporaryDirectory() as profile:
        for flag in [*FLAGS, f"--user-data-dir={profile}"]:
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        session = webdriver.Chrome(service=Service(driver), options=options)
        try:
            yield session
        finally:
            session.quit()


FIGURES = """
return Array.from(document.images).map(img => ({
    alt: img.alt, complete: img.complete, natural: img.naturalWidth,
    shown: img.getBoundingClientRect().width, right: img.getBoundingClientRect().right}));
"""
TABLE_ROWS = """
return Array.from(document.querySelectorAll('table')).map(t => ({
    head: Array.from(t.querySelectorAll('th')).map(th => th.textContent.trim()),
    rows: t.querySelectorAll('tbody tr').length}));
"""


def open_page(browser, path, screenshot):
    """Load ``path``; return its figures and tables after checking the console."""
    browser.get(path.resolve().as_uri())
    browser.save_screenshot(str(screenshot))
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, f"console errors on {path.name}: {errors}"
    return browser.execute_script(FIGURES), browser.execute_script(TABLE_ROWS)


def check_figures(figures, width):
    assert figures, "the page shows no figure"
    for f in figures:
        assert f["complete"] and f["natural"] > 0, f"broken image {f['alt']!r}"
        assert f["shown"] >= MIN_SCALE * f["natural"], f"figure {f['alt']!r} shrunk: {f}"
        assert f["right"] <= width, f"figure {f['alt']!r} runs off a laptop screen: {f}"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser-report")
    with Store(folder / "r.db") as store:
        run_experiment(parse_spec(SPEC), store, spec_toml=SPEC, workers=0, quiet=True)
    return build_report(folder / "r.db", folder / "site" / "report.html")


def test_report_shows_its_figures_and_claims_without_console_errors(browser, report, tmp_path):
    figures, tables = open_page(browser, report, tmp_path / "report.png")
    check_figures(figures, LAPTOP[0])
    claims = [t for t in tables if "claim" in t["head"]]
    assert claims and all(t["rows"] > 0 for t in claims), f"empty claims table: {tables}"
    assert (tmp_path / "report.png").stat().st_size > 0


def test_audit_page_shows_its_figures_and_results_without_console_errors(browser, tmp_path):
    result = audit(
        seeded(bn_mlp),
        gaussian_data(),
        measures=["loss", "gradient_norms", "isometry_gap"],
        variants=["as_given", "no_norm"],
    )
    page = result.write_html(tmp_path / "audit.html")
    figures, tables = open_page(browser, page, tmp_path / "audit.png")
    check_figures(figures, LAPTOP[0])
    results = [t for t in tables if t["head"][:1] == ["variant"]]
    assert results and results[0]["rows"] >= 2, f"empty results table: {tables}"
    assert (tmp_path / "audit.png").stat().st_size > 0
