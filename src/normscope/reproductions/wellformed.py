"""Checks that a reproduction's claims can be evaluated on its planned runs, before
anything runs: every claim has a name and a paper, and its filter keeps enough runs at
the chosen size. (That every column a claim or plot names will exist is checked for
every spec when it is parsed: :mod:`normscope.experiments.columns`.) Used by the
reproductions' tests."""

from __future__ import annotations

from normscope.experiments.columns import planned_frame
from normscope.experiments.frames import select
from normscope.experiments.plan import plan
from normscope.reproductions import Reproduction

FIT_TYPES = ("loglog_slope", "slope")


def problems(rep: Reproduction) -> list[str]:
    """What would keep a claim of ``rep`` from being evaluated (empty: none)."""
    frame = planned_frame(plan(rep.spec, source=rep.source), rep.experiment)
    out = []
    for claim in rep.spec.claim:
        what = f"claim {claim.name!r}"
        if not claim.name or not claim.paper:
            out.append(f"{what}: give it a `name` and a `paper`")
        if claim.source is None or not claim.basis:
            out.append(
                f"{what}: say where it comes from: `source` (paper, theory or finding) and "
                "`basis` (where the paper says it, the derivation, or the reading it goes "
                "beyond or against)"
            )
        if any(c not in frame.columns for c in claim.filter):
            continue
        kept = select(frame, claim.filter, "all")
        if kept.empty:
            out.append(f"{what}: its filter keeps no planned run")
        elif claim.type in FIT_TYPES and claim.x != "step" and kept[claim.x].nunique() < 3:
            # (a fit over training steps gets its x values from tracking, not the plan)
            out.append(f"{what}: a fit needs >= 3 x values, the filter keeps fewer")
    return out
