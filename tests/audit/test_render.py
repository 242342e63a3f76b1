import base64
import re

from rich.console import Console

from normscope.auditing import audit
from normscope.auditing.render import layer_order, print_result

from tests.audit.models import bn_mlp, gaussian_data, plain_mlp, seeded

DATA = gaussian_data()
EVIL = "<script>alert('x')</script>"


def test_layer_order_keeps_each_variant_order_and_leaves_gaps():
    assert layer_order([["0", "1", "3"], ["0", "3"]]) == ["0", "1", "3"]
    assert layer_order([["0", "3"], ["0", "1", "3"]]) == ["0", "1", "3"]
    assert layer_order([["a", "c"], ["b", "c"], ["c", "d"]]) == ["b", "a", "c", "d"]


def test_html_escapes_names_and_embeds_both_per_layer_figures(tmp_path):
    result = audit(
        seeded(bn_mlp),
        DATA,
        measures=["loss", "gradient_norms", "isometry_gap"],
        variants=["as_given", "no_norm"],
        name=EVIL,
    )
    page = result.write_html(tmp_path / "a.html").read_text()
    assert EVIL not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 2
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert "gradient norm" in page and "isometry gap per layer" in page
    assert "as_given/eval" in page


def test_html_of_a_model_without_normalization_says_so(tmp_path):
    result = audit(seeded(plain_mlp), DATA, measures=["loss"])
    page = result.write_html(tmp_path / "a.html").read_text()
    assert "No normalization layers found; variants that need them were skipped." in page
    assert "not measured for any variant" in page


def test_terminal_output_lists_variants_skips_and_notes():
    result = audit(seeded(bn_mlp), DATA, measures=["loss"], name="[bold]x[/bold]")
    console = Console(record=True, width=200)
    print_result(result, console)
    text = console.export_text()
    for label in ("as_given/train", "as_given/eval", "no_norm", "bn_to_layer", "bn_to_rms"):
        assert label in text
    assert "skipped bn_to_group" in text
    assert "audit of [bold]x[/bold]" in text
    assert "note: default options on all 64 samples" in text


def _printed(result, width):
    console = Console(record=True, width=width)
    print_result(result, console)
    return console.export_text()


def test_terminal_table_splits_its_measures_to_fit_and_never_cuts_a_variant_name():
    measures = ["loss", "gradient_norms", "isometry_gap", "sample_gradient_norms"]
    result = audit(seeded(bn_mlp), DATA, measures=measures)
    wide, narrow, tiny = (_printed(result, w) for w in (200, 60, 30))
    assert wide.count("│ as_given/train ") == 1
    assert narrow.count("│ as_given/train ") >= 2 and "(continued)" in narrow
    assert "as_given/train\n  loss: " in tiny  # too narrow for a table: one block per variant
    for text, width in ((wide, 200), (narrow, 60), (tiny, 30)):
        assert "…" not in text and max(map(len, text.splitlines())) <= width
        assert all(text.count(m) >= 1 for m in measures)
