"""The Ray backend (Ray is a test dependency: the Makefile installs the ``ray`` extra, so
these tests run in CI rather than skipping). Every test that starts Ray has a time
limit, and the ones that start their own instance run it in a subprocess."""

import ipaddress
import json
import os
import subprocess
import sys
import textwrap

import pytest
import ray

from normscope.errors import ConfigError
from normscope.experiments import Store, parse_spec, ray_runner, run_experiment
from normscope.results import load

from .conftest import TINY
from tests.reliability.conftest import normscope_command

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RAY_ENV = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def python(code: str, timeout: float, **env: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (its own Ray state), with a time limit."""
    clean = {k: v for k, v in os.environ.items() if k not in RAY_ENV}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env={**clean, "PYTHONPATH": ROOT, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.timeout(300)
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
    assert ray.is_initialized()  # an instance the caller started is left running


@pytest.mark.timeout(400)
def test_without_address_a_private_instance_ignores_ray_address_and_cluster_file(tmp_path):
    """$RAY_ADDRESS and Ray's current-cluster file both point at a dead address; the run
    neither follows them nor hangs."""
    shared_tmp = tmp_path / "tmp"
    (shared_tmp / "ray").mkdir(parents=True)
    (shared_tmp / "ray" / "ray_current_cluster").write_text("127.0.0.1:1")
    (tmp_path / "spec.toml").write_text(TINY)
    done = subprocess.run(
        [
            *normscope_command(),
            "run",
            str(tmp_path / "spec.toml"),
            "--db",
            str(tmp_path / "r.db"),
            "--backend",
            "ray",
            "-q",
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": ROOT,
            "RAY_ADDRESS": "127.0.0.1:1",
            "TMPDIR": str(shared_tmp),
            "COLUMNS": "300",
        },
        capture_output=True,
        text=True,
        timeout=360,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "4 finished, 0 failed" in done.stdout
    assert (shared_tmp / "ray" / "ray_current_cluster").read_text() == "127.0.0.1:1"


INSPECT_LOCAL_INSTANCE = """
import json, os, subprocess, sys
import ray
from normscope.experiments import parse_spec, plan
from normscope.experiments.ray_runner import iter_ray
from tests.experiments.conftest import TINY
from tests.experiments.sockets import descendants, listening

def auth_mode(run_hash, config):
    return os.environ.get("RAY_AUTH_MODE")

results = iter_ray(plan(parse_spec(TINY))[:1], fn=auth_mode)
mode = next(results)  # Ray runs until the generator is finished
addresses = listening(descendants(os.getpid()))
gcs = ray.get_runtime_context().gcs_address
session = ray._private.worker._global_node.get_session_dir_path()
private = os.path.dirname(os.path.dirname(session))
private_mode = oct(os.stat(private).st_mode & 0o777)
intruder = subprocess.run(
    [sys.executable, "-c", f"import ray; ray.init(address={gcs!r}, log_to_driver=False)"],
    env={**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64},
    capture_output=True, text=True, timeout=120,
)
list(results)
results.close()
print(json.dumps({"mode": mode, "addresses": [str(a) for a in addresses],
                  "private": private_mode,
                  "removed": not os.path.exists(private),
                  "intruder": intruder.returncode, "err": intruder.stderr}))
"""


@pytest.mark.timeout(400)
def test_a_local_instance_listens_on_loopback_only_and_refuses_a_wrong_token():
    done = python(INSPECT_LOCAL_INSTANCE, timeout=360)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["mode"] == "token"
    assert seen["private"] == "0o700" and seen["removed"]  # session files: private, then gone
    addresses = [ipaddress.ip_address(a) for a in seen["addresses"]]
    assert len(addresses) >= 3 and all(a.is_loopback for a in addresses), addresses
    assert seen["intruder"] != 0 and "AuthenticationError" in seen["err"], seen["err"][-2000:]


@pytest.mark.timeout(300)
def test_joining_an_address_that_never_answers_gives_up_after_the_timeout():
    code = """
    import socket, time
    from normscope.errors import ConfigError
    from normscope.experiments import parse_spec, plan, ray_runner
    from tests.experiments.conftest import TINY

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections, never speaks Ray's protocol
    ray_runner.START_TIMEOUT_S = 5
    started = time.monotonic()
    try:
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        list(ray_runner.iter_ray(plan(parse_spec(TINY)), address=address))
    except ConfigError as err:
        print(f"{time.monotonic() - started:.1f}", err)
    """
    done = python(code, timeout=240, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="1" * 64)
    seconds, _, message = done.stdout.strip().partition(" ")
    assert "within 5 s" in message, done.stdout + done.stderr[-2000:]
    assert float(seconds) < 60


def test_auto_address_is_refused():
    with pytest.raises(ConfigError, match="current-cluster file"):
        ray_runner._target("auto")


def test_joining_a_cluster_needs_token_authentication(monkeypatch):
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    with pytest.raises(ConfigError, match="RAY_AUTH_MODE=token"):
        ray_runner._target("10.1.2.3:6379")
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    assert ray_runner._target("10.1.2.3:6379") == "10.1.2.3:6379"
    assert ray_runner._target(None) == ray_runner._target("local") == "local"


def test_ray_without_token_authentication_is_refused(monkeypatch):
    monkeypatch.setattr(ray, "__version__", "2.51.9")
    with pytest.raises(ConfigError, match=r"Ray >= 2\.52"):
        ray_runner._ray()
