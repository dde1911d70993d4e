"""Grids: a spec file's `grid` block declares ablations as axes of named points; every combination
of one point per axis is a spec (the file's own spec with the points' overrides merged over it, in
axis order, exactly as an extending spec's items are merged over its base's).

    grid {
      axis granularity {
        fine { }
        coarse { source web { chunk = coarse { max = 60s } } }
      }
      axis sampling {
        deterministic { }
        stochastic { interleave { sampling = stochastic(p=0.5) } }
      }
    }

A point of the grid is named by its axes' point names joined with "-" (`coarse-stochastic`) and
addressed as `FILE@POINT` wherever a spec path is taken (`mixc check`, `fmt --resolved`, `diff`,
`plan`, `compile`). The file alone is its base: the spec without the grid's overrides.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

from mixc.lang.diagnostics import Diagnostic, error
from mixc.lang.syntax import Block, BodyItem, head_span

GRID, AXIS = "grid", "axis"
POINT_AT = "@"  # FILE@POINT
JOIN = "-"


@dataclass(frozen=True)
class GridPoint:
    name: str
    overrides: tuple[tuple[BodyItem, ...], ...]  # each chosen point's items, in axis order


def split_point(path: str) -> tuple[str, str | None]:
    """`FILE@POINT` -> (FILE, POINT); a path that exists as written is a file, whatever it holds."""
    if POINT_AT in os.path.basename(path) and not os.path.exists(path):
        file, point = path.rsplit(POINT_AT, 1)
        return file, point
    return path, None


def take_grid(items: list[BodyItem]) -> tuple[list[BodyItem], list[Block]]:
    """The items other than `grid` blocks, and the `grid` blocks."""
    grids = [i for i in items if isinstance(i, Block) and i.name.value == GRID]
    return [i for i in items if not (isinstance(i, Block) and i.name.value == GRID)], grids


def axes(grid: Block) -> tuple[list[tuple[str, list[Block]]], list[Diagnostic]]:
    """The grid's axes, each with its points, and what is wrong with its shape."""
    diags: list[Diagnostic] = []
    out: list[tuple[str, list[Block]]] = []
    shape = "a grid holds `axis NAME { POINT { overrides } ... }` blocks"
    for item in grid.items:
        if not (isinstance(item, Block) and item.name.value == AXIS and item.label and not item.kind):
            diags.append(error("grid.shape", "only `axis NAME { ... }` blocks belong in a grid", head_span(item),
                               shape))
            continue
        points = []
        for point in item.items:
            if not (isinstance(point, Block) and point.label is None and point.kind is None):
                diags.append(error("grid.shape", f"axis '{item.label.value}' holds points: `NAME {{ overrides }}`",
                                   head_span(point), "an empty point `NAME { }` is the base's value"))
                continue
            points.append(point)
        if not item.items:
            diags.append(error("grid.empty", f"axis '{item.label.value}' has no points", item.header,
                               "give it at least one `NAME { overrides }`"))
        diags += _duplicates([p.name for p in points], "point")
        out.append((item.label.value, points))
    diags += _duplicates([b.label for b in grid.items if isinstance(b, Block) and b.name.value == AXIS and b.label],
                         "axis")
    if not out and not diags:
        diags.append(error("grid.empty", "the grid has no axes", grid.header, shape))
    return out, diags


def points(grid_axes: list[tuple[str, list[Block]]]) -> list[GridPoint]:
    """Every combination of one point per axis, the first axis varying slowest."""
    combos = itertools.product(*[pts for _, pts in grid_axes])
    return [GridPoint(JOIN.join(p.name.value for p in combo), tuple(p.items for p in combo)) for combo in combos]


def _duplicates(names: list, what: str) -> list[Diagnostic]:
    seen: dict[str, object] = {}
    out = []
    for name in names:
        if name.value in seen:
            out.append(error("name.duplicate", f"duplicate {what} '{name.value}'", name.span,
                             f"give every {what} of the grid its own name"))
        seen.setdefault(name.value, name)
    return out
