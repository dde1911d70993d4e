"""What `mixc plan` shows before any compute: the stage graph and, per mixture leaf, its share of the
budget, the data found for it, the tokens it must supply and the passes that takes against its cap."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from mixc import ir
from mixc.plan import budget
from mixc.plan.dag import StageGraph
from mixc.plan.sizes import SourceSize

LEAF_SCHEMA = {"leaf": pl.String, "name": pl.String, "kind": pl.String, "share": pl.Float64, "files": pl.Int64,
               "hours": pl.Float64, "est_tokens": pl.Float64, "cap": pl.Float64}


def leaf_table(spec: ir.Spec, sizes: dict[str, SourceSize] | None) -> pl.DataFrame:
    shares = budget.leaf_shares(spec.mixture)
    groups = budget.leaf_groups(spec.mixture)
    total = budget.total_tokens(spec)
    rows = []
    for name in sorted(shares):
        size = (sizes or {}).get(name)
        block = spec.sources.get(name) or spec.generators.get(name)
        rows.append({
            "leaf": "/".join(groups.get(name, ()) + (name,)), "name": name, "kind": block.kind if block else "?",
            "share": shares[name], "files": size.files if size else None,
            "hours": (size.seconds / 3600) if size and size.seconds is not None else None,
            "est_tokens": size.tokens if size and size.tokens else None, "cap": budget.repeat_cap(spec, name),
        })
    df = pl.DataFrame(rows, schema=LEAF_SCHEMA)
    needed = pl.col("share") * (float(total) if total is not None else None)
    return df.with_columns(needed.alias("needed_tokens")).with_columns(
        (pl.col("needed_tokens") / pl.col("est_tokens")).alias("repeats"),
    ).with_columns(
        pl.when(pl.col("repeats").is_null()).then(None)
        .when(pl.col("cap").is_null()).then(True)
        .otherwise(pl.col("repeats") <= pl.col("cap")).alias("feasible"),
    )


@dataclass
class PlanOverview:
    spec: ir.Spec
    graph: StageGraph
    table: pl.DataFrame
    total_tokens: int | None
    steps: int | None

    def feasible(self) -> bool | None:
        values = self.table["feasible"].to_list()
        if any(v is False for v in values):
            return False
        return None if any(v is None for v in values) else True


def overview(spec: ir.Spec, graph: StageGraph, sizes: dict[str, SourceSize] | None = None) -> PlanOverview:
    return PlanOverview(spec, graph, leaf_table(spec, sizes), budget.total_tokens(spec), budget.total_steps(spec))
