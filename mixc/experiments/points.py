"""The points of an experiment: the base spec first, then each ablation file, or each point of the
base's grid; every one lowered, checked, and diffed against the base."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from mixc.build.preflight import check_spec
from mixc.errors import USAGE, MixcError
from mixc.lang.diagnostics import Diagnostic, Severity
from mixc.lang.grid import POINT_AT, split_point
from mixc.lang.lower import Lowered, load
from mixc.plan.diff import MISSING, SpecDiff, diff
from mixc.stages import graph

BASE = "base"


@dataclass(frozen=True)
class Point:
    name: str  # "base", an ablation file's stem, a grid point's name
    ref: str  # what loads it: a spec path or FILE@POINT
    low: Lowered
    change: SpecDiff | None  # against the base; None for the base

    @property
    def ir_hash(self) -> str:
        return self.low.spec.content_hash()

    def params(self) -> dict[str, str]:
        """The spec diff against the base as flat parameters (MLflow's): IR path -> new value."""
        if self.change is None:
            return {}
        return {".".join(e.path): "(removed)" if e.new is MISSING else _short(json.dumps(e.new, sort_keys=True))
                for e in self.change.edits}

    def summary(self) -> str:
        """The diff in one line: `pack.seq_len=1024, interleave.sampling.mode=stochastic`."""
        if self.change is None:
            return "the base"
        return ", ".join(f"{k}={v}" for k, v in self.params().items()) or "no change"


class PointsError(MixcError):
    """The experiment's specs do not make a set of points: located diagnostics (printed as a spec
    error, status 1), or no point at all (a usage error)."""

    exit_code = USAGE

    def __init__(self, message: str, hint: str | None = None, diagnostics: list[Diagnostic] | None = None,
                 texts=None):
        super().__init__(message, hint)
        self.diagnostics, self.texts = diagnostics or [], texts


def _short(text: str, width: int = 250) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def _name(ref: str, taken: set[str]) -> str:
    """A grid point's name, or an ablation file's stem; made unique among the points."""
    file, point = split_point(ref)
    stem = point or re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(file).stem)
    name, k = stem, 2
    while name in taken:
        name, k = f"{stem}-{k}", k + 1
    return name


def resolve(specs: tuple[str, ...], with_sizes: bool = True) -> list[Point]:
    """BASE [ABLATION...]: the base and each ablation file; a lone spec with a grid: the base and
    every grid point. A point whose IR is the base's is the base (not run twice). Raises
    PointsError with every error of every point, located."""
    base_low, diags = check_spec(specs[0], with_sizes)
    refs = list(specs[1:]) or [f"{specs[0]}{POINT_AT}{n}" for n in base_low.grid_points]
    if not refs:
        raise PointsError(f"{specs[0]} has no grid and no ablation was given",
                          "pass ablation specs after the base (`mixc ablate BASE.mix A.mix B.mix`), or declare a "
                          "`grid { axis NAME { POINT { ... } } }` in it")
    lowered: list[tuple[str, Lowered]] = []
    for ref in refs:
        if specs[1:]:
            low, more = check_spec(ref, with_sizes)
            diags += [d for d in more if d not in diags]
        else:  # a grid point: checking the base checked every point
            low = load(ref)
        lowered.append((ref, low))
    if any(d.severity is Severity.ERROR for d in diags) or not base_low.ok or not all(low.ok for _, low in lowered):
        raise PointsError("the experiment's specs have errors", None, diags, base_low.texts)
    base_graph = graph(base_low.spec)
    points = [Point(BASE, specs[0], base_low, None)]
    taken = {BASE}
    for ref, low in lowered:
        if low.spec.content_hash() == base_low.spec.content_hash():
            continue
        name = _name(ref, taken)
        taken.add(name)
        points.append(Point(name, ref, low, diff(base_low.spec, low.spec, base_graph, graph(low.spec))))
    return points
