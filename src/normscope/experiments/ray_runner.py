"""Ray backend (``normscope[ray]``): each run is a Ray task; the driver stores results.

Where the runs go:

- ``address=None`` (or ``"local"``): a fresh local Ray instance, started for this call
  and stopped after it. It never joins another cluster: ``$RAY_ADDRESS`` and Ray's
  current-cluster file in the shared temp folder are ignored. Every port it opens is
  bound to 127.0.0.1, every connection to it must carry a random token made for this
  call (Ray's token authentication, Ray >= 2.52), and its session files (logs, sockets)
  live in a private temporary folder that is removed afterwards.
- ``address="host:port"`` or ``"ray://host:port"``: joins that cluster. This requires
  ``RAY_AUTH_MODE=token`` and the cluster's token in normscope's environment
  (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``); ``"auto"`` is
  refused, since it reads the world-writable current-cluster file.
- Ray already initialized in this process (the caller ran ``ray.init``): that instance
  is used as it is.

Starting or joining must finish within :data:`START_TIMEOUT_S`. All Ray calls happen in
one session thread, so a cluster that never answers cannot hang the caller. Each task
asks for one CPU and runs torch with one thread.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import queue
import re
import secrets
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any

from normscope.errors import ConfigError
from normscope.experiments.execute import RunResult, execute_run
from normscope.experiments.plan import RunConfig

MIN_RAY = (2, 52)
"""The first Ray with token authentication."""
START_TIMEOUT_S = 120.0
"""Longest wait for a local Ray instance to start or a cluster to be joined."""
_LOCAL_ENV = {
    "RAY_AUTH_MODE": "token",
    # Ray's switch for a machine-local instance (its default on macOS and Windows): the
    # node address becomes 127.0.0.1, and Ray binds its servers to the node address.
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
}
_DONE = object()
_MAX_SOCKET_PATH = 107
_SOCKET_DEPTH = 92  # "/nsray-xxxxxxxx/r/session_<date>_<time>_<pid>/sockets/plasma_store"


def _ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--backend ray needs Ray: install it with `pip install 'normscope[ray]'`."
        ) from None
    found = tuple(int(part) for part in re.findall(r"\d+", ray.__version__)[:2])
    if found < MIN_RAY:
        raise ConfigError(
            f"--backend ray needs Ray >= {'.'.join(map(str, MIN_RAY))}, which has token "
            f"authentication; this is Ray {ray.__version__}. Upgrade it with "
            "`pip install --upgrade 'normscope[ray]'`."
        )
    return ray


def _task(run_hash: str, config: dict[str, Any]) -> RunResult:
    import torch

    torch.set_num_threads(1)
    return execute_run(run_hash, config)


def _target(address: str | None) -> str:
    """What ``ray.init`` gets: ``"local"`` or a cluster address that may be joined."""
    if address in (None, "local"):
        return "local"
    if address == "auto":
        raise ConfigError(
            "--address auto makes Ray read its current-cluster file in the shared temp "
            "folder, which any local user can write; give the cluster's address "
            "(host:port or ray://host:port), or no --address for a private local instance."
        )
    if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        raise ConfigError(
            f"joining the Ray cluster at {address} needs token authentication: start the "
            "cluster with RAY_AUTH_MODE=token, and run normscope with RAY_AUTH_MODE=token "
            "and the cluster's token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or "
            "~/.ray/auth_token)."
        )
    return address


def _reload_auth_settings() -> None:
    # Ray caches the authentication mode and token when it is imported or first used;
    # make it read the environment again (what ray.init does when it turns tokens on).
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


@contextlib.contextmanager
def _local_settings(ray) -> Iterator[None]:
    """Environment and Ray settings for a private, loopback-only, token-protected local
    instance; everything is restored afterwards."""
    from ray._private import ray_constants

    names = (*_LOCAL_ENV, "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
    saved = {name: os.environ.get(name) for name in names}
    saved_cluster = ray_constants.ENABLE_RAY_CLUSTER
    os.environ.update(_LOCAL_ENV)
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
    ray_constants.ENABLE_RAY_CLUSTER = False
    _reload_auth_settings()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        ray_constants.ENABLE_RAY_CLUSTER = saved_cluster
        _reload_auth_settings()


def _check_started(ray, local: bool) -> None:
    """Refuse an instance without token authentication, or a local one reachable from
    other machines."""
    from ray._raylet import AuthenticationMode, get_authentication_mode

    if get_authentication_mode() != AuthenticationMode.TOKEN:
        raise ConfigError("Ray runs without token authentication; normscope will not use it.")
    if local:
        nodes = {node["NodeManagerAddress"] for node in ray.nodes()}
        if not all(ipaddress.ip_address(a).is_loopback for a in nodes):
            raise ConfigError(
                f"the local Ray instance listens on {', '.join(sorted(nodes))}, not on "
                "127.0.0.1 only; normscope will not use it."
            )


def _session_folder() -> dict[str, str]:
    """Where the private session folder goes: the temp folder, unless its path is too
    long for the Unix sockets Ray puts about 92 characters below it (107 at most)."""
    base = tempfile.gettempdir()
    if len(base) > _MAX_SOCKET_PATH - _SOCKET_DEPTH and os.path.isdir("/tmp"):
        base = "/tmp"
    return {"prefix": "nsray-", "dir": base}


class _Session(threading.Thread):
    """Starts or joins Ray, runs the tasks and, once :attr:`stop` is set, stops Ray, all
    in one thread (Ray ties the processes it starts to the thread that starts them).
    Results go to :attr:`results`, followed by ``_DONE``."""

    def __init__(
        self, ray, target: str | None, runs: list[RunConfig], fn: Callable[..., RunResult]
    ) -> None:
        super().__init__(name="normscope-ray", daemon=True)
        self.ray, self.target, self.runs, self.fn = ray, target, runs, fn
        self.results: queue.Queue = queue.Queue()
        self.ready, self.stop = threading.Event(), threading.Event()
        self.start_error: BaseException | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        with contextlib.ExitStack() as stack:
            try:
                self._start(stack)
            except BaseException as err:
                self.start_error = err
            self.ready.set()
            if self.start_error is None:
                try:
                    self._collect()
                except BaseException as err:
                    self.error = err
            self.results.put(_DONE)
            self.stop.wait()  # Ray stays up until the caller is done with the results

    def _start(self, stack: contextlib.ExitStack) -> None:
        ray = self.ray
        if self.target is None:
            return
        options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
        if self.target == "local":
            stack.enter_context(_local_settings(ray))
            private = stack.enter_context(tempfile.TemporaryDirectory(**_session_folder()))
            # Ray makes its temp folder world-writable; inside a 0700 folder no other
            # user can reach it.
            folder = os.path.join(private, "r")
            options.update(address="local", include_dashboard=False, _temp_dir=folder)
        else:
            _reload_auth_settings()
            options.update(address=self.target)
        stack.callback(ray.shutdown)
        ray.init(**options)
        _check_started(ray, local=self.target == "local")

    def _collect(self) -> None:
        from normscope.experiments.runner import crashed

        ray = self.ray
        remote = ray.remote(num_cpus=1)(self.fn)
        refs = {remote.remote(run.hash, run.config): run for run in self.runs}
        try:
            while refs and not self.stop.is_set():
                ready, _ = ray.wait(list(refs), num_returns=1, timeout=0.5)
                for ref in ready:
                    run = refs.pop(ref)
                    try:
                        self.results.put(ray.get(ref))
                    except ray.exceptions.RayError as err:
                        self.results.put(crashed(run, f"{type(err).__name__}: {err}"))
        finally:
            for ref in refs:
                ray.cancel(ref, force=True)


def iter_ray(
    runs: list[RunConfig],
    *,
    address: str | None = None,
    fn: Callable[[str, dict[str, Any]], RunResult] = _task,
) -> Iterator[RunResult]:
    """Submit every run as a Ray task ``fn(hash, config)`` and yield results as they
    finish (see the module docstring for where they run).

    Raises :class:`~normscope.errors.ConfigError` when Ray is missing or older than
    :data:`MIN_RAY`, for ``address="auto"``, for a cluster address without
    ``RAY_AUTH_MODE=token``, and when Ray does not start or join within
    :data:`START_TIMEOUT_S` or starts without token authentication or bound beyond
    127.0.0.1.
    """
    ray = _ray()
    target = None if ray.is_initialized() else _target(address)
    session = _Session(ray, target, runs, fn)
    session.start()
    where = "a local Ray instance" if target in (None, "local") else f"Ray at {address}"
    if not session.ready.wait(START_TIMEOUT_S):
        session.stop.set()
        raise ConfigError(
            f"could not start or join {where} within {START_TIMEOUT_S:.0f} s; check that "
            "the cluster runs and the address is right (or run without --address)."
        )
    try:
        while (item := session.results.get()) is not _DONE:
            yield item
        if session.start_error is not None:
            err = session.start_error
            if isinstance(err, ConfigError):
                raise err
            raise ConfigError(f"cannot start or join {where}: {type(err).__name__}: {err}")
        if session.error is not None:
            raise session.error
    finally:
        session.stop.set()
        session.join(timeout=60)
