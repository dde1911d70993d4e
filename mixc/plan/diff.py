"""Spec diff: typed edits between two IRs, the factor each edit changes, the stages it invalidates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mixc import ir
from mixc.ir import IrPath
from mixc.plan.dag import StageGraph, downstream, readers

MISSING = object()


@dataclass(frozen=True)
class Edit:
    op: str  # change | add | remove
    path: IrPath
    old: Any
    new: Any
    factor: str
    invalidates: tuple[str, ...]

    def to_json(self) -> dict:
        return {"op": self.op, "path": ".".join(self.path), "old": None if self.old is MISSING else self.old,
                "new": None if self.new is MISSING else self.new, "factor": self.factor,
                "invalidates": list(self.invalidates)}


def _mixture_tree(group: ir.MixGroup) -> dict:
    out: dict[str, Any] = {}
    for m in group.members:
        out[m.name] = {"share": m.share} if isinstance(m, ir.MixLeaf) else {"share": m.share, **_mixture_tree(m)}
    return out


def _plain(spec: ir.Spec) -> dict:
    data = spec.model_dump(mode="json")
    data["mixture"] = _mixture_tree(spec.mixture)
    return data


def _walk(a: Any, b: Any, path: IrPath, out: list[tuple[str, IrPath, Any, Any]]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        if _variant_changed(a, b):
            out.append(("change", path, a, b))
            return
        for key in list(a) + [k for k in b if k not in a]:
            if key not in b:
                out.append(("remove", path + (key,), a[key], MISSING))
            elif key not in a:
                out.append(("add", path + (key,), MISSING, b[key]))
            else:
                _walk(a[key], b[key], path + (key,), out)
    elif a != b:
        out.append(("change", path, a, b))


def _variant_changed(a: dict, b: dict) -> bool:
    """Two variant blocks of different kinds (fine vs coarse chunks) are one edit, not many."""
    return any(k in a and k in b and a[k] != b[k] for k in ("kind", "granularity", "mode"))


FACTORS: tuple[tuple[IrPath, str], ...] = (
    (("chunk",), "chunk granularity"),
    (("vad",), "VAD"),
    (("diarize",), "diarization"),
    (("asr",), "ASR"),
    (("filters", "language"), "language filter"),
    (("filters",), "transcript filters"),
    (("max_repeats",), "repeat caps"),
    (("tts",), "TTS voices"),
    (("llm",), "generator LLM"),
)
TOP_FACTORS = {
    "tokenizers": "tokenizer", "pack": "sequence packing", "shards": "shard format", "mixture": "mixture ratios",
    "budget": "token budget", "seed": "seed", "eval": "evaluation", "version": "IR version",
}
TRAIN_FACTORS = {"model": "model", "optimizer": "optimization", "schedule": "optimization"}
INTERLEAVE_FACTORS = {"sampling": "modality sampling", "loss": "loss masking", "markers": "modality markers"}


def factor(path: IrPath) -> str:
    """The experimental factor an edit belongs to; one ablation should change one factor."""
    head = path[0]
    if head in ("sources", "generators"):
        rest = path[2:]
        for prefix, name in FACTORS:
            if rest[:len(prefix)] == prefix:
                return name
        return "data sources" if head == "sources" else "synthetic generators"
    if head == "interleave":
        return INTERLEAVE_FACTORS.get(path[1] if len(path) > 1 else "", "interleaving")
    if head == "train":
        return TRAIN_FACTORS.get(path[1] if len(path) > 1 else "", "training setup")
    if head == "tokenizers" and len(path) > 1:
        return f"{path[1]} tokenizer"
    return TOP_FACTORS.get(head, head)


def _invalidated(graph: StageGraph, path: IrPath) -> set[str]:
    if path[0] == "mixture":
        return set()
    if path[0] in ("sources", "generators") and len(path) == 2:  # a whole source added or removed
        return {sid for sid, st in graph.items() if st.subject == path[1]}
    return downstream(graph, readers(graph, path))


@dataclass
class SpecDiff:
    edits: list[Edit]
    rebuilt: list[str]  # stages whose keys differ, in B's order
    added: list[str]  # stages only B has
    removed: list[str]  # stages only A has

    @property
    def factors(self) -> list[str]:
        return list(dict.fromkeys(e.factor for e in self.edits))

    def to_json(self) -> dict:
        return {"factors": self.factors, "edits": [e.to_json() for e in self.edits], "rebuilt": self.rebuilt,
                "added": self.added, "removed": self.removed, "plan_only": not (self.rebuilt or self.added)}


def diff(a: ir.Spec, b: ir.Spec, dag_a: StageGraph, dag_b: StageGraph) -> SpecDiff:
    """Typed edits from `a` to `b`, each with its factor and the stages it invalidates in either
    spec's stage graph (`mixc.stages.graph`)."""
    raw: list[tuple[str, IrPath, Any, Any]] = []
    _walk(_plain(a), _plain(b), (), raw)
    edits = []
    for op, path, old, new in raw:
        hit = _invalidated(dag_a, path) | _invalidated(dag_b, path)
        order = [s for s in dag_b if s in hit] + [s for s in dag_a if s in hit and s not in dag_b]
        edits.append(Edit(op, path, old, new, factor(path), tuple(order)))
    rebuilt = [s for s in dag_b if s in dag_a and dag_a[s].key != dag_b[s].key]
    return SpecDiff(edits, rebuilt, [s for s in dag_b if s not in dag_a], [s for s in dag_a if s not in dag_b])
