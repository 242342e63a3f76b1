"""Run shipped reproductions: execute their runs into a results store, check their claims,
write the HTML report. A claim that fails is a result, not an error: it is returned with
its numbers like one that passes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from normscope.experiments.claims import ClaimResult, check_store
from normscope.experiments.runner import Summary, run_experiment
from normscope.experiments.store import Store
from normscope.reproductions import Reproduction, load, names

ALL = "all"


@dataclass(frozen=True)
class Outcome:
    """One reproduction after a run: what ran, and every claim's verdict."""

    reproduction: Reproduction
    summary: Summary
    claims: list[ClaimResult]

    @property
    def failed_claims(self) -> int:
        return sum(not c.passed for c in self.claims)


def select(selection: str) -> list[str]:
    """``"all"`` -> every shipped reproduction; otherwise the one name (checked)."""
    if selection == ALL:
        return names()
    load(selection)
    return [selection]


def run_one(
    rep: Reproduction,
    db: str | Path,
    *,
    workers: int = 2,
    quiet: bool = False,
    console: Console | None = None,
) -> Outcome:
    """Execute the runs of ``rep`` not yet finished in ``db`` (crashed runs are tried
    again) and check its claims there."""
    with Store(db) as store:
        summary = run_experiment(
            rep.spec,
            store,
            spec_toml=rep.text,
            source=rep.source,
            workers=workers,
            retry_failed=True,
            quiet=quiet,
            console=console,
        )
    claims = check_store(db, rep.experiment)[rep.experiment]
    return Outcome(rep, summary, claims)


def reproduce(
    selection: str,
    db: str | Path,
    *,
    quick: bool = False,
    workers: int = 2,
    quiet: bool = False,
    console: Console | None = None,
) -> list[Outcome]:
    """Run reproduction ``selection`` (a name or ``"all"``) at full or quick size.

    Every spec is parsed before the first run starts, so a broken spec stops the command
    before any time is spent.
    """
    reps = [load(name, quick=quick) for name in select(selection)]
    return [run_one(r, db, workers=workers, quiet=quiet, console=console) for r in reps]


def write_report(db: str | Path, output: str | Path, outcomes: list[Outcome]) -> Path:
    """The HTML report of ``db``: only the reproduced experiment when there is one, the
    whole store otherwise."""
    from normscope.report import build_report

    only = outcomes[0].reproduction.experiment if len(outcomes) == 1 else None
    return build_report(db, output, only)
