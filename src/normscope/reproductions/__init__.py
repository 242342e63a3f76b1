"""Reproductions: one experiment spec per paper, shipped with the package, with the claims
it tests. ``normscope reproduce NAME|all [--quick]`` runs them, checks the claims and
writes the report.

Contract for a reproduction (what a new one must provide)
---------------------------------------------------------
1. A spec file ``src/normscope/reproductions/<name>.toml`` (package data; found by
   ``importlib.resources``, so a new file is a new reproduction). It is an ordinary
   experiment spec (``normscope.experiments.spec``) with:

   - ``name = "<name>"``, equal to the file stem (a short paper name: ``karakida2019``);
   - ``paper = "<full paper title, venue year>"`` (shown by ``reproduce --list``);
   - ``description``: what is measured, in a sentence or two;
   - ``[[measure]]``, ``[sweep]``, ``[[theory]]`` (optional), ``[[plot]]`` and
     ``[[claim]]`` tables; every claim carries ``name`` and ``paper`` (the short paper
     name), ``source`` (``paper``: the paper states it; ``theory``: derived from its
     formulas; ``finding``: measured beyond or against it, with ``contradicts = true``
     when it contradicts a reading of the paper) and ``basis`` (where the paper says it,
     the derivation, or the reading a finding goes beyond or against, in words of our
     own), and a TOML comment above its bound saying where the bound comes from;
   - ``[labels]`` (optional): words and units for the columns its plots draw that the
     report's label map does not know (its theory columns, labelled measures);
   - a ``[quick]`` table (``experiments.spec.QuickSpec``) that shrinks the run to at most
     about 2 minutes on 2 cores: ``[quick.sweep]`` replaces existing ``[sweep]`` entries,
     ``[quick.set]`` assigns existing dotted paths under subject/train/measure/theory
     (``"subject.data.n" = 50``, ``"measure.0.num_probes" = 10``). Claims and plots cannot
     be changed by ``[quick]``: quick and full runs are checked against the same claims,
     so choose claim filters that exist at both sizes.

2. Theory columns, if any, registered in ``src/normscope/experiments/theory_<name>.py``
   with ``@theory_columns.register("...")`` (auto-imported); they read the resolved run
   config (``config["subject"]["net"]["width"]`` ...).

3. Tests in ``tests/reproductions/test_<name>.py`` that parse and plan the spec at both
   sizes and check its claims are well-formed, with the helpers here::

       from normscope import reproductions
       rep = reproductions.load("karakida2019", quick=True)   # -> Reproduction
       rep.spec, rep.text, rep.experiment                      # Spec, TOML text, store name
       runs = reproductions.plan_runs("karakida2019", quick=True)  # list[RunConfig]

Running (``normscope.reproductions.runner.reproduce``) stores results in a normal results
store under the experiment name ``<name>`` (full) or ``<name>-quick`` (quick), so both
sizes can live in one store, ``normscope check`` / ``normscope report`` work on them, and a
rerun resumes (finished runs are skipped). The stored spec text is the shipped file, which
holds the claims and plots of both sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from normscope.errors import unknown_name
from normscope.experiments.plan import RunConfig, plan
from normscope.experiments.spec import Spec, parse_spec

QUICK_SUFFIX = "-quick"


@dataclass(frozen=True)
class Reproduction:
    """A shipped reproduction spec, parsed at one size.

    ``spec.name`` is the store's experiment name (``name`` or ``name + "-quick"``);
    ``text`` is the shipped TOML (stored with the results); ``source`` names it in errors.
    """

    name: str
    quick: bool
    spec: Spec
    text: str
    source: str

    @property
    def experiment(self) -> str:
        return self.spec.name

    @property
    def paper(self) -> str:
        return self.spec.paper or self.name


def _folder():
    return resources.files(__name__)


def names() -> list[str]:
    """The shipped reproductions (spec file stems), sorted."""
    return sorted(
        entry.name.removesuffix(".toml")
        for entry in _folder().iterdir()
        if entry.name.endswith(".toml") and entry.is_file()
    )


def spec_text(name: str) -> str:
    """The TOML text of reproduction ``name``; unknown names raise UnknownNameError."""
    valid = names()
    if name not in valid:
        raise unknown_name("reproduction", name, valid)
    return _folder().joinpath(f"{name}.toml").read_text(encoding="utf-8")


def paper(name: str) -> str:
    """The paper reproduction ``name`` tests (its spec's ``paper``), read without checking
    the spec (checking plans every sweep point: seconds for the largest)."""
    import tomllib

    return str(tomllib.loads(spec_text(name)).get("paper", name))


def experiment_name(name: str, quick: bool) -> str:
    """The experiment name a reproduction's results are stored under."""
    return name + QUICK_SUFFIX if quick else name


def load(name: str, *, quick: bool = False) -> Reproduction:
    """Parse and check reproduction ``name`` at its full or quick size."""
    text = spec_text(name)
    source = f"reproduction {name}" + (" (quick)" if quick else "")
    spec = parse_spec(text, source=source, quick=quick)
    if spec.name != name:
        from normscope.errors import ConfigError

        raise ConfigError(f"{source}: the spec's name is {spec.name!r}; it must be {name!r}.")
    spec = spec.model_copy(update={"name": experiment_name(name, quick)})
    return Reproduction(name=name, quick=quick, spec=spec, text=text, source=source)


def plan_runs(name: str, *, quick: bool = False) -> list[RunConfig]:
    """The planned runs of reproduction ``name`` (validates every sweep point)."""
    rep = load(name, quick=quick)
    return plan(rep.spec, source=rep.source)


__all__ = [
    "QUICK_SUFFIX",
    "Reproduction",
    "experiment_name",
    "load",
    "names",
    "paper",
    "plan_runs",
    "spec_text",
]
