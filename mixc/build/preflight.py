"""What can be known before building, and reported as located errors: the checks `mixc check` runs
on top of the language's, and `mixc compile` runs before its first stage, so the two agree.

- the budget against the data found (with sizes estimated from file metadata): a leaf whose needed
  passes exceed its `max_repeats` makes the budget infeasible;
- model weights a stage needs that are not on this machine (found, never read), and TTS voices that
  cannot be used here (an espeak voice espeak-ng lacks, flite not installed).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from mixc import ir
from mixc.build.execute import StageFailed, declared, error_field
from mixc.errors import MissingWeights
from mixc.lang.check import check_file
from mixc.lang.diagnostics import Diagnostic, Severity, error, sort_key
from mixc.lang.grid import POINT_AT, split_point
from mixc.lang.lower import Lowered
from mixc.plan import budget
from mixc.plan.dag import StageGraph, subject_block
from mixc.plan.sizes import SourceSize, estimate
from mixc.stages import REGISTRY, graph
from mixc.stages.base import StageError


def stage_error(low: Lowered, exc: StageFailed) -> Diagnostic:
    """A failed stage's message, at the spec field that decided it (else its subject's block)."""
    where = low.span(exc.field) or low.span(subject_block(low.spec, exc.node.subject))
    return error(f"stage.{exc.node.kind}", exc.message, where, exc.hint)


def preflight(low: Lowered, stages: StageGraph) -> list[Diagnostic]:
    """What a compile would refuse before building anything: model weights or voices that are not
    on this machine (found, not read). `mixc check` runs it too, so the two agree."""
    diags: list[Diagnostic] = []
    for node in stages.values():
        if REGISTRY[node.kind].weights:
            try:
                REGISTRY[node.kind].locate_weights(declared(low.spec, node), low.root)
            except (MissingWeights, StageError) as exc:
                diags.append(stage_error(low, StageFailed(node, exc, error_field(low.spec, node, exc))))
    return diags


def feasibility(low: Lowered, sizes: dict[str, SourceSize]) -> Iterator[Diagnostic]:
    """With sizes known, a leaf whose needed repeats exceed its cap makes the budget infeasible."""
    spec = low.spec
    available = {n: s.tokens for n, s in sizes.items() if s.tokens}
    for name, needed in budget.repeats_needed(spec, available).items():
        cap = budget.repeat_cap(spec, name)
        if needed is None or cap is None or cap <= 0 or needed <= cap:
            continue
        yield error("budget.infeasible",
                    f"the budget needs {needed:.1f} passes over '{name}' but max_repeats is {cap:g}",
                    low.span(subject_block(spec, name) + ("max_repeats",)) or low.span(("mixture",)),
                    f"'{name}' holds ~{available[name]:,.0f} tokens; lower the budget or its share, "
                    "raise the cap, or add data")


def needs_sizes(spec: ir.Spec) -> bool:
    """Sizes are worth scanning only when some leaf has a repeat cap."""
    return any(budget.repeat_cap(spec, n) is not None for n in budget.leaf_shares(spec.mixture))


def check_spec(path: str, with_sizes: bool = True) -> tuple[Lowered, list[Diagnostic]]:
    """Everything `mixc check` reports: the language's checks and, on a spec they find no error in,
    the budget against the data found (when a repeat cap makes it matter) and the preflight. A file
    with a grid is checked at every point too; what only a point has carries a note naming it."""
    low, diags = _check_one(path, with_sizes)
    where: dict[Diagnostic, list[str]] = {}  # what only points have -> the points that have it
    for name in low.grid_points if split_point(path)[1] is None else ():
        for d in _check_one(f"{path}{POINT_AT}{name}", with_sizes)[1]:
            if d not in diags:
                where.setdefault(d, []).append(name)
    for d, names in where.items():
        shown = ", ".join(f"{path}{POINT_AT}{n}" for n in names)
        diags.append(replace(d, notes=d.notes + ((f"at grid point{'s' * (len(names) > 1)} {shown}", None),)))
    return low, sorted(diags, key=sort_key)


def _check_one(path: str, with_sizes: bool) -> tuple[Lowered, list[Diagnostic]]:
    low, diags = check_file(path)
    if low.ok and not any(d.severity is Severity.ERROR for d in diags):
        spec = low.spec
        if with_sizes and needs_sizes(spec):
            diags += feasibility(low, estimate(spec, low.root))
        diags += preflight(low, graph(spec))
    return low, diags
