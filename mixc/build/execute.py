"""Plan -> stage runs: each stage's cache key, cache hits, locked and atomic builds, per-stage stats.

A run's key hashes the plan's key for the stage (kind, version, the IR values it reads), the
fingerprint of anything outside the spec it reads (input file contents) and its inputs' run keys; so
an edited data file rebuilds exactly what depends on it, and nothing else ever does.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from mixc.backends import MissingWeights
from mixc.build.cache import Cache
from mixc.ir import Spec
from mixc.plan.dag import Stage
from mixc.stages import REGISTRY
from mixc.stages.base import Context, Progress, StageError, StageRun, Stats, no_progress


@dataclass(frozen=True)
class Run:
    stage: Stage
    key: str
    hit: bool
    path: Path
    stats: Stats
    fingerprint: str  # digest of the outside inputs it read ("" when none)
    details: dict  # those inputs: content ids, model revisions, draws (see each stage's `fingerprint`)


class StageFailed(Exception):
    """A stage raised StageError, or a backend's weights are missing: the spec can fix it."""

    def __init__(self, stage: Stage, message: str, hint: str | None, field: tuple[str, ...]):
        super().__init__(f"{stage.id}: {message}")
        self.stage, self.message, self.hint, self.field = stage, message, hint, field


# where a stage's missing weights were chosen in the spec, below its subject's block
WEIGHTS_FIELD = {"diarize": ("diarize", "model"), "asr": ("asr", "model"), "vad": ("vad",),
                 "load_audio_tokenizer": ("path",)}


class MissingStages(Exception):
    """Stages the plan needs that this build of mixc cannot run."""

    def __init__(self, stages: list[Stage]):
        super().__init__(", ".join(s.id for s in stages))
        self.stages = stages


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:20]


def run_key(stage: Stage, fingerprint: dict, input_keys: list[str] | None) -> str:
    """The cache key of a stage run; `input_keys` None for a stage keyed by its inputs' content
    (its fingerprint covers them), whose plan key then counts without its inputs' either."""
    if input_keys is None:
        return _digest({"stage": stage.params_key, "fingerprint": fingerprint, "by_content": True})
    return _digest({"stage": stage.key, "fingerprint": fingerprint, "inputs": input_keys})


class Executor:
    def __init__(self, spec: Spec, root: Path, cache: Cache, workers: int = 1, progress: Progress = no_progress):
        self.spec, self.root, self.cache, self.workers, self.progress = spec, root, cache, workers, progress

    def run(self, dag: dict[str, Stage], on_done=None) -> dict[str, Run]:
        """Every stage of `dag` (topologically ordered), from the cache when its key is there."""
        missing = [s for s in dag.values() if s.kind not in REGISTRY]
        if missing:
            raise MissingStages(missing)
        runs: dict[str, Run] = {}
        for sid, stage in dag.items():
            runs[sid] = self._one(stage, runs)
            if on_done is not None:
                on_done(runs[sid])
        return runs

    def preview(self, dag: dict[str, Stage]) -> dict[str, bool]:
        """Which stages a compile would take from the cache (True) and which it would build, without
        building anything. A stage whose inputs must be built is built too; so is one whose outside
        inputs cannot be read yet."""
        known: dict[str, Run] = {}
        for stage in dag.values():
            if stage.kind not in REGISTRY or any(i not in known for i in stage.inputs):
                continue
            try:
                _, ctx, key = self._keyed(stage, known)
            except (OSError, ValueError, StageError, MissingWeights):
                continue
            if self.cache.has(stage.kind, key):
                path = self.cache.path(stage.kind, key)
                known[stage.id] = Run(stage, key, True, path, Stats.read(path), "", ctx.fingerprint)
        return {sid: sid in known for sid in dag}

    def _keyed(self, stage: Stage, runs: dict[str, Run]) -> tuple[StageRun, Context, str]:
        """The stage's implementation, its context (with its fingerprint) and its run key."""
        impl = REGISTRY[stage.kind]()
        ctx = Context(self.spec, stage, {i: runs[i].path for i in stage.inputs}, Path(), self.root, self.workers,
                      self.progress, self.cache.items, self.cache.digests)
        ctx.fingerprint = impl.fingerprint(ctx)
        key = run_key(stage, ctx.fingerprint, None if impl.keyed_by_content else [runs[i].key for i in stage.inputs])
        return impl, ctx, key

    def _one(self, stage: Stage, runs: dict[str, Run]) -> Run:
        """One stage from the cache, or built; errors the spec can fix become StageFailed."""
        try:
            return self._build(stage, runs)
        except StageError as exc:
            raise StageFailed(stage, str(exc), exc.hint, exc.field) from None
        except MissingWeights as exc:  # its first sentence says what is missing, the rest how to get it
            what, _, how = str(exc).partition(". ")
            raise StageFailed(stage, what, how or None, WEIGHTS_FIELD.get(stage.kind, ())) from None

    def _build(self, stage: Stage, runs: dict[str, Run]) -> Run:
        impl, ctx, key = self._keyed(stage, runs)
        fingerprint = ctx.fingerprint
        digest = _digest(fingerprint) if fingerprint else ""
        final = self.cache.path(stage.kind, key)
        if self.cache.has(stage.kind, key):
            return Run(stage, key, True, final, Stats.read(final), digest, fingerprint)
        with self.cache.lock(stage.kind, key):
            if self.cache.has(stage.kind, key):  # another compile built it while we waited
                return Run(stage, key, True, final, Stats.read(final), digest, fingerprint)
            ctx.out = self.cache.scratch(stage.kind, key)
            stats = impl(ctx)
            self.cache.commit(stage.kind, key, ctx.out)
        return Run(stage, key, False, final, stats, digest, fingerprint)
