"""Functions Ray workers run in the cluster tests (importable there: PYTHONPATH is the repo)."""

from __future__ import annotations


def run_on_node(run_hash: str, config: dict):
    """``(node id, result)``: the run as the Ray backend runs it, and where it ran."""
    import ray
    import torch

    from normscope.experiments.execute import execute_run

    torch.set_num_threads(1)
    return ray.get_runtime_context().get_node_id(), execute_run(run_hash, config)
