import math

from normscope.auditing import audit
from normscope.auditing.saving import spec_toml
from normscope.experiments.frames import load
from normscope.experiments.spec import parse_spec
from normscope.experiments.store import Store

from tests.audit.models import bn_mlp, gaussian_data, seeded

DATA = gaussian_data()


def _result(name='bn "mlp" <1>'):
    return audit(seeded(bn_mlp), DATA, measures=["loss", "gradient_norms"], name=name)


def test_saved_rows_are_the_result_table(tmp_path):
    result = _result()
    db = tmp_path / "r.db"
    assert result.save(db) == 'audit:bn "mlp" <1>'
    with Store(db, readonly=True) as store:
        runs = store.runs('audit:bn "mlp" <1>')
        stored = {(r["run"], r["measure"]): r["value"] for r in store.measurements()}
    by_label = {r["config"]["audit"]["label"]: r for r in runs}
    assert set(by_label) == {
        "as_given/train",
        "as_given/eval",
        "no_norm",
        "bn_to_layer",
        "bn_to_rms",
        "bn_to_group",
    }
    assert by_label["bn_to_group"]["status"] == "skipped"
    assert by_label["bn_to_group"]["error"] == result.skipped["bn_to_group"]
    assert by_label["no_norm"]["config"]["subject"]["net"]["variant"] == "no_norm"
    for row in result.table.itertuples():
        value = stored[(by_label[row.variant]["hash"], row.measure)]
        assert value == row.value or (math.isnan(value) and math.isnan(row.value))


def test_saving_again_replaces_the_runs(tmp_path):
    db = tmp_path / "r.db"
    result = _result()
    result.save(db)
    result.save(db)
    frame = load(db)
    assert len(frame) == len(result.table)
    assert set(frame["subject.net.variant"]) == {"as_given", "no_norm", "bn_to_layer", "bn_to_rms"}


def test_stored_spec_is_a_valid_normscope_spec():
    result = _result()
    spec = parse_spec(spec_toml(result), check=False)
    assert spec.name == 'audit:bn "mlp" <1>'
    assert [m.name for m in spec.measure] == ["loss", "gradient_norms"]
    assert spec.subject.data.n == 64 and spec.subject.net["arch"] == "audit"
