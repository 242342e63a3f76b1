"""The Ray backend on a local two-CPU Ray instance (Ray is a test dependency: the
Makefile installs the ``ray`` extra, so this test runs in CI rather than skipping)."""

import pytest
import ray

from normscope.experiments import Store, parse_spec, run_experiment
from normscope.results import load

from .conftest import TINY


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_backend_stores_the_same_numbers_as_inline(local_ray, tmp_path):
    spec = parse_spec(TINY)
    with Store(tmp_path / "ray.db") as store:
        summary = run_experiment(spec, store, spec_toml=TINY, backend="ray", quiet=True)
    with Store(tmp_path / "inline.db") as store:
        run_experiment(spec, store, spec_toml=TINY, workers=0, quiet=True)
    assert (summary.ok, summary.failed) == (4, 0)
    a = load(tmp_path / "ray.db").set_index("run")["value"].sort_index()
    b = load(tmp_path / "inline.db").set_index("run")["value"].sort_index()
    assert list(a.index) == list(b.index) and (a == b).all()
    assert ray.is_initialized()
