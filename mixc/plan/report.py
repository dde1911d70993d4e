"""Rendering plans and diffs for people (aligned text) and for tools (JSON)."""

from __future__ import annotations

from typing import Any

from mixc.lang.units import format_count
from mixc.plan.diff import MISSING, SpecDiff
from mixc.plan.overview import PlanOverview


def _tokens(x: float | None) -> str:
    return "-" if x is None else format_count(int(round(x))) if x >= 1000 else f"{x:.0f}"


def _table(headers: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        padded = (c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
        return "  ".join(padded).rstrip()

    return [line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows]


def _feasible(value: Any, est: Any) -> str:
    if value is None:
        return "unknown (no data found)" if not est else "unknown"
    return "yes" if value else "NO"


def plan_text(path: str, plan: PlanOverview, cached: dict[str, bool] | None = None) -> str:
    spec = plan.spec
    out = [f"plan: {path}  (ir {spec.content_hash()})", ""]
    if plan.total_tokens is not None and plan.steps is not None:  # both or neither: the budget sets them
        out.append(f"budget: {format_count(plan.total_tokens)} tokens = {format_count(plan.steps)} steps x "
                   f"{spec.train.batch} sequences x {spec.pack.seq_len} tokens")
    rows = []
    for r in plan.table.iter_rows(named=True):
        rows.append([
            r["leaf"], r["kind"], f"{r['share'] * 100:.1f}%", "-" if r["files"] is None else str(r["files"]),
            "-" if r["hours"] is None else f"{r['hours']:.2f}", _tokens(r["est_tokens"]), _tokens(r["needed_tokens"]),
            "-" if r["repeats"] is None else f"{r['repeats']:.2f}", "-" if r["cap"] is None else f"{r['cap']:g}",
            _feasible(r["feasible"], r["est_tokens"]),
        ])
    out += [""] + _table(["leaf", "kind", "share", "files", "hours", "est. tokens", "needed", "repeats", "cap",
                          "feasible"], rows, {2, 3, 4, 5, 6, 7, 8})
    verdict = plan.feasible()
    out += ["", "feasible: " + {True: "yes", False: "NO: a leaf needs more repeats than its cap allows",
                                None: "unknown until every leaf has data"}[verdict]]
    header = f"stages ({len(plan.graph)})"
    if cached is not None:
        hits = sum(cached.values())
        header += f": {hits} in the cache, {len(plan.graph) - hits} to build"
    out += ["", header + ":"]
    width = max((len(s) for s in plan.graph), default=0)
    for sid, stage in plan.graph.items():
        inputs = f"  <- {', '.join(stage.inputs)}" if stage.inputs else ""
        state = "" if cached is None else ("cached  " if cached[sid] else "build   ")
        out.append(f"  {stage.key[:12]:<12}  {state}{sid.ljust(width)}  {stage.doc}{inputs}")
    return "\n".join(out)


def plan_json(path: str, plan: PlanOverview, cached: dict[str, bool] | None = None) -> dict:
    return {
        "spec": path, "ir_hash": plan.spec.content_hash(), "total_tokens": plan.total_tokens, "steps": plan.steps,
        "feasible": plan.feasible(), "leaves": plan.table.to_dicts(),
        "stages": [{"id": s.id, "kind": s.kind, "key": s.key, "inputs": list(s.inputs),
                    "reads": [".".join(r) for r in s.reads],
                    **({"cached": cached[s.id]} if cached is not None else {})} for s in plan.graph.values()],
    }


def _show(value: Any, path: tuple[str, ...]) -> str:
    if value is MISSING:
        return "(absent)"
    if path and path[-1] == "share" and isinstance(value, float):
        return f"{value * 100:g}%"
    if isinstance(value, dict) and set(value) == {"share"}:
        return _show(value["share"], ("share",))
    if isinstance(value, dict):
        head = next((value[k] for k in ("kind", "granularity", "mode") if k in value), None)
        body = ", ".join(f"{k}={_show(v, path + (k,))}" for k, v in value.items()
                         if k not in ("kind", "granularity", "mode"))
        return f"{head} {{{body}}}" if head else f"{{{body}}}"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v, path) for v in value) + "]"
    if value is None:
        return "none"
    return str(value)


def diff_text(a: str, b: str, result: SpecDiff) -> str:
    out = [f"{a} -> {b}"]
    if not result.edits:
        return "\n".join(out + ["no semantic changes (same IR)"])
    factors = result.factors
    out.append(f"{len(factors)} factor{'s' * (len(factors) != 1)}: {', '.join(factors)}")
    if len(factors) > 1:
        out.append(f"warning: this diff changes {len(factors)} factors; an ablation should change one")
    out.append("")
    for edit in result.edits:
        mark = {"change": "~", "add": "+", "remove": "-"}[edit.op]
        path = ".".join(edit.path)
        if edit.op == "change":
            out.append(f"{mark} {path}: {_show(edit.old, edit.path)} -> {_show(edit.new, edit.path)}")
        else:
            out.append(f"{mark} {path}: {_show(edit.new if edit.op == 'add' else edit.old, edit.path)}")
        out.append(f"    factor: {edit.factor}")
        out.append("    invalidates: " + (", ".join(edit.invalidates) if edit.invalidates else "no stage (plan only)"))
    out.append("")
    rebuild = result.rebuilt + result.added
    if rebuild:
        out.append(f"rebuild: {len(rebuild)} stage{'s' * (len(rebuild) != 1)}: {', '.join(rebuild)}")
    else:
        out.append("rebuild: nothing (plan only)")
    if result.removed:
        out.append(f"no longer built: {', '.join(result.removed)}")
    return "\n".join(out)

