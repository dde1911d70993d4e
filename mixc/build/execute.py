"""Stage graph -> stage runs: each stage's cache key, cache hits, locked and atomic builds, per-stage stats.

A run's key hashes the plan's key for the stage (kind, version, the IR values it declares), the
fingerprint of anything outside the spec it reads (input file contents, model revisions) and its
inputs' run keys; so an edited data file rebuilds exactly what depends on it, and nothing else ever
does. The stage itself sees only the IR values it declared (`Declared`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mixc import ir
from mixc.build.cache import Cache
from mixc.errors import SPEC, MissingWeights, MixcError
from mixc.hashing import json_digest
from mixc.ir import IrPath
from mixc.plan.dag import StageGraph, StageNode, resolve, subject_block
from mixc.stages import REGISTRY
from mixc.stages.base import Context, Declared, Pool, Progress, Stage, StageError, Stats, no_progress


@dataclass(frozen=True)
class StageRun:
    """A stage executed (or found in the cache) under its run key."""
    node: StageNode
    key: str
    hit: bool
    path: Path
    stats: Stats
    fingerprint: str  # digest of the outside inputs it read ("" when none)
    details: dict  # those inputs: content ids, model revisions, draws (see each stage's `fingerprint`)


class StageFailed(MixcError):
    """A stage failed for a reason the user can fix: `field` is the IR path it is reported at."""

    exit_code = SPEC

    def __init__(self, node: StageNode, error: MixcError, field: IrPath):
        super().__init__(error.message, error.hint)
        self.node, self.field = node, field


def _digest(value: object) -> str:
    return json_digest(value, 20)


def run_key(node: StageNode, fingerprint: dict, input_keys: list[str] | None) -> str:
    """The cache key of a stage run; `input_keys` None for a stage keyed by its inputs' content
    (its fingerprint covers them), whose plan key then counts without its inputs' either."""
    if input_keys is None:
        return _digest({"stage": node.params_key, "fingerprint": fingerprint, "by_content": True})
    return _digest({"stage": node.key, "fingerprint": fingerprint, "inputs": input_keys})


def declared(spec: ir.Spec, node: StageNode) -> Declared:
    """What a stage may read of the spec: its declared values (keyed) and settings (not keyed),
    resolved for its subject."""
    stage = REGISTRY[node.kind]
    return Declared.of(spec, node, stage.declared_reads(spec) + stage.settings)


def error_field(spec: ir.Spec, node: StageNode, error: MixcError) -> IrPath:
    """Where in the spec a stage's failure is reported: the field the error names, else the field
    naming the stage's weights (missing weights), else the stage's subject's block."""
    where = error.field if isinstance(error, StageError) else \
        REGISTRY[node.kind].weights if isinstance(error, MissingWeights) else None
    return resolve(where, spec, node.subject) if where else subject_block(spec, node.subject)


# Called before a stage is built (run None; never for a cache hit) and after every stage (its run),
# with the stage's number and how many there are: the CLI's progress lines.
OnStage = Callable[[StageNode, "StageRun | None", int, int], None]
# A stage's per-item workers and whether its items always go to them (the Ray executor's actors,
# placed where the stage's resources are); None: local processes (`process_pool`).
Pools = Callable[[StageNode], tuple[Pool, bool]]


@dataclass
class Executor:
    spec: ir.Spec
    root: Path
    cache: Cache
    workers: int = 1
    progress: Progress = no_progress
    on_stage: OnStage | None = None
    pools: Pools | None = None
    _stages: dict[str, Stage] = field(default_factory=dict)

    def run(self, graph: StageGraph) -> dict[str, StageRun]:
        """Every stage of `graph` (topologically ordered), from the cache when its key is there."""
        runs: dict[str, StageRun] = {}
        for number, (sid, node) in enumerate(graph.items(), 1):
            runs[sid] = self._one(node, runs, (number, len(graph)))
            if self.on_stage:
                self.on_stage(node, runs[sid], number, len(graph))
        return runs

    def preview(self, graph: StageGraph) -> dict[str, bool]:
        """Which stages a compile would take from the cache (True) and which it would build, without
        building anything. A stage whose inputs must be built is built too; so is one whose outside
        inputs cannot be read yet."""
        known: dict[str, StageRun] = {}
        for node in graph.values():
            if any(i not in known for i in node.inputs):
                continue
            try:
                _, ctx, key = self._keyed(node, known)
            except (OSError, ValueError, MixcError):
                continue
            if self.cache.has(node.kind, key):
                path = self.cache.path(node.kind, key)
                known[node.id] = StageRun(node, key, True, path, Stats.read(path), "", ctx.fingerprint)
        return {sid: sid in known for sid in graph}

    def _stage(self, kind: str) -> Stage:
        if kind not in self._stages:
            self._stages[kind] = REGISTRY[kind]()
        return self._stages[kind]

    def _keyed(self, node: StageNode, runs: dict[str, StageRun],
               fingerprint: dict | None = None) -> tuple[Stage, Context, str]:
        """The stage's implementation, its context (with its fingerprint: `fingerprint` when the
        caller already has it, else the stage's) and its run key."""
        stage = self._stage(node.kind)
        ctx = Context(node, declared(self.spec, node), {i: runs[i].path for i in node.inputs}, Path(), self.root,
                      self.workers, self.progress, self.cache.items, self.cache.digests)
        if self.pools is not None:
            ctx.pool, ctx.remote_items = self.pools(node)
        ctx.fingerprint = stage.fingerprint(ctx, self.spec) if fingerprint is None else fingerprint
        key = run_key(node, ctx.fingerprint, None if stage.keyed_by_content else [runs[i].key for i in node.inputs])
        return stage, ctx, key

    def _one(self, node: StageNode, runs: dict[str, StageRun], position: tuple[int, int]) -> StageRun:
        """One stage from the cache, or built; an error the user can fix becomes StageFailed."""
        try:
            return self._build(node, runs, position)
        except MixcError as exc:
            raise StageFailed(node, exc, error_field(self.spec, node, exc)) from None

    def _hit(self, node: StageNode, key: str, fingerprint: dict) -> StageRun:
        final = self.cache.path(node.kind, key)
        return StageRun(node, key, True, final, Stats.read(final), _digest(fingerprint) if fingerprint else "",
                        fingerprint)

    def _build(self, node: StageNode, runs: dict[str, StageRun], position: tuple[int, int],
               fingerprint: dict | None = None) -> StageRun:
        stage, ctx, key = self._keyed(node, runs, fingerprint)
        fingerprint = ctx.fingerprint
        if self.cache.has(node.kind, key):
            return self._hit(node, key, fingerprint)
        with self.cache.lock(node.kind, key):
            if self.cache.has(node.kind, key):  # another compile built it while we waited
                return self._hit(node, key, fingerprint)
            if self.on_stage:
                self.on_stage(node, None, *position)
            ctx.out = self.cache.scratch(node.kind, key)
            stats = stage(ctx)
            self.cache.commit(node.kind, key, ctx.out)
        return StageRun(node, key, False, self.cache.path(node.kind, key), stats,
                        _digest(fingerprint) if fingerprint else "", fingerprint)
