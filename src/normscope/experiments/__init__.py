"""Experiments: TOML spec -> validated Spec -> grid of runs -> runners -> Store; claims
checked from stored data. Measures are reached only through their registry."""

from normscope.experiments import theory_columns
from normscope.experiments.claims import ClaimResult, evaluate, evaluate_all
from normscope.experiments.plan import RunConfig, plan
from normscope.experiments.runner import Summary, run_experiment
from normscope.experiments.spec import Spec, load_spec, parse_spec
from normscope.experiments.store import DEFAULT_PATH, Store

__all__ = [
    "DEFAULT_PATH",
    "ClaimResult",
    "RunConfig",
    "Spec",
    "Store",
    "Summary",
    "evaluate",
    "evaluate_all",
    "load_spec",
    "parse_spec",
    "plan",
    "run_experiment",
    "theory_columns",
]
