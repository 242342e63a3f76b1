"""The Ray backend against a real cluster: a head and a second node started by the test
(``ray start``), joined by address with a token, as a user points normscope at a cluster.
Runs spread over both nodes and store the numbers an inline run stores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from normscope.experiments import Store, parse_spec, run_experiment
from normscope.results import load

from .cluster import ROOT, two_node_cluster
from .conftest import TINY
from tests.reliability.conftest import normscope_command

SPREAD = """
import json
import time

import ray

from normscope.experiments import parse_spec, plan
from normscope.experiments.ray_runner import iter_ray
from tests.experiments.conftest import TINY
from tests.experiments.ray_tasks import run_on_node

ray.init(address={address!r}, log_to_driver=False)
deadline = time.monotonic() + 120
while sum(node["Alive"] for node in ray.nodes()) < 2 and time.monotonic() < deadline:
    time.sleep(0.5)
ray.shutdown()
found = [
    (node, result.hash, result.status, [row.value for row in result.rows])
    for node, result in iter_ray(plan(parse_spec(TINY)), address={address!r}, fn=run_on_node)
]
print(json.dumps(found))
"""


@pytest.fixture(scope="module")
def cluster():
    with two_node_cluster() as running:
        yield running
    # stopped by pid: no process of the cluster is left behind
    left = [
        pid for pid in os.listdir("/proc") if pid.isdigit() and str(running.folder) in _cmdline(pid)
    ]
    assert not left, f"cluster processes left running: {left}"


@pytest.fixture(scope="module")
def inline(tmp_path_factory):
    path = tmp_path_factory.mktemp("inline") / "inline.db"
    with Store(path) as store:
        run_experiment(parse_spec(TINY), store, spec_toml=TINY, workers=0, quiet=True)
    return load(path)


@pytest.mark.timeout(600)
def test_runs_spread_over_both_nodes_with_the_inline_numbers(cluster, inline):
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SPREAD.format(address=cluster.address))],
        cwd=ROOT,
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert len({node for node, *_ in found}) == 2, found  # both nodes ran runs
    assert all(status == "ok" for _, _, status, _ in found)
    expected = inline.set_index("run")["value"].to_dict()
    assert {run: values[0] for _, run, _, values in found} == expected


@pytest.mark.timeout(600)
def test_normscope_run_with_the_cluster_address_stores_the_inline_numbers(
    cluster, inline, tmp_path
):
    (tmp_path / "spec.toml").write_text(TINY)
    done = subprocess.run(
        [
            *normscope_command(),
            "run",
            str(tmp_path / "spec.toml"),
            "--db",
            str(tmp_path / "cluster.db"),
            "--backend",
            "ray",
            "--address",
            cluster.address,
            "-q",
        ],
        cwd=ROOT,
        env={**cluster.env, "COLUMNS": "300"},
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "4 finished, 0 failed" in done.stdout
    stored = load(tmp_path / "cluster.db").set_index("run")["value"].sort_index()
    assert stored.to_dict() == inline.set_index("run")["value"].to_dict()


@pytest.mark.timeout(300)
def test_the_cluster_refuses_a_driver_without_its_token(cluster):
    code = f"import ray; ray.init(address={cluster.address!r}, log_to_driver=False)"
    wrong = {**cluster.env, "RAY_AUTH_TOKEN": "0" * 64}
    done = subprocess.run(
        [sys.executable, "-c", code], env=wrong, capture_output=True, text=True, timeout=200
    )
    assert done.returncode != 0 and "AuthenticationError" in done.stderr, done.stderr[-2000:]


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""
