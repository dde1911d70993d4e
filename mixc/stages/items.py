"""Stages that map recordings one at a time (ingest, VAD, diarization, ASR), memoised per recording.

Every such stage's artifact is `recordings.parquet`, one row per usable recording: `rec` (its content
id), `path` (workspace-relative, where it was first seen), `duration` (seconds), `audio` (the item key
of its decoded 16 kHz FLAC), `item` (the item key of this stage's result for it), plus the stage's
summary columns; and `items.json`, which says which item kind and suffix `item` points at.

A recording's item key hashes the stage's parameters, its backend's model revision and the
recording's upstream item key, so a result is found again whatever file the audio came from, and a
killed stage resumes from the recordings it finished. Recordings without a stored result run in
`ctx.workers` processes (spawned; each loads the backend once).
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing import get_context
from pathlib import Path
from typing import Any, ClassVar

import polars as pl

from mixc.build.cache import Items
from mixc.ir import Spec
from mixc.stages.base import Context, StageRun, Stats

RECORDINGS = "recordings.parquet"
ITEMS = "items.json"
AUDIO_KIND, AUDIO_SUFFIX = "ingest", ".flac"


def item_key(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


def threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


EMPTY = {"rec": pl.String, "path": pl.String, "duration": pl.Float64, "audio": pl.String, "item": pl.String}


def write_recordings(folder: Path, rows: list[dict], kind: str, suffix: str) -> None:
    frame = pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame(schema=EMPTY)
    frame.write_parquet(folder / RECORDINGS)
    (folder / ITEMS).write_text(json.dumps({"kind": kind, "suffix": suffix}) + "\n")


def read_recordings(folder: Path) -> list[dict]:
    return pl.read_parquet(folder / RECORDINGS).to_dicts()


def item_file(items: Items, folder: Path, key: str) -> Path:
    """The stored result `key` of the stage whose artifact is `folder`."""
    meta = json.loads((folder / ITEMS).read_text())
    return items.path(meta["kind"], key, meta["suffix"])


def audio_file(items: Items, row: dict) -> Path:
    return items.path(AUDIO_KIND, row["audio"], AUDIO_SUFFIX)


def load_wav(path: Path):
    import soundfile
    wav, _ = soundfile.read(str(path), dtype="float32")
    return wav


# ------------------------------------------------------------------------- process pool


_worker: dict[str, Any] = {}


def _init(kind: str, spec_json: str, subject: str, threads: int, items_root: str, load_args: tuple) -> None:
    """Worker set-up. The model loads on the first task, not here: an error raised in a pool's
    initializer kills the worker and the pool starts another, forever; from a task it reaches us."""
    from mixc.stages import REGISTRY
    _worker.clear()
    _worker.update(stage=REGISTRY[kind](), items=Items(Path(items_root)),
                   load=(Spec.model_validate_json(spec_json), subject, threads, *load_args))


def _task(task: tuple) -> None:
    if "model" not in _worker:
        _worker["model"] = _worker["stage"].load(*_worker["load"])
    _worker["stage"].build(_worker["model"], _worker["items"], *task)


@contextmanager
def _runner(ctx: Context, stage: "ItemStage", todo: int) -> Iterator[Callable[[list[tuple]], Iterator[None]]]:
    """Runs tasks in this process (one worker, or one task) or in a spawned pool, yielding per task."""
    workers = min(ctx.workers, todo)
    args = (stage.kind, ctx.spec.model_dump_json(), ctx.stage.subject, threads_per_worker(workers),
            str(ctx.items.root), stage.load_args(ctx))
    if workers <= 1:
        if todo:
            _init(*args)
        yield lambda tasks: (_task(t) for t in tasks)
        _worker.clear()
        return
    with get_context("spawn").Pool(workers, _init, args) as pool:
        yield lambda tasks: pool.imap(_task, tasks)


# ------------------------------------------------------------------------------ the base


class ItemStage(StageRun):
    """A stage whose work is per recording: `build` makes one item; `run` decides which are missing."""
    suffix: ClassVar[str] = ".json"

    def revision(self, spec: Spec, subject: str) -> str:
        """The backend's exact weights (enters every key); '' for a stage without a model."""
        return ""

    def fingerprint(self, ctx: Context) -> dict:
        revision = self.revision(ctx.spec, ctx.stage.subject)
        return {"model": revision} if revision else {}

    def load_args(self, ctx: Context) -> tuple:
        """What `load` needs beyond the spec (picklable: it travels to worker processes)."""
        return ()

    def load(self, spec: Spec, subject: str, threads: int, *args: Any) -> Any:
        """The backend, loaded once per process that builds items."""
        return None

    @abstractmethod
    def build(self, model: Any, items: Items, *task: Any) -> None:
        """Makes one item (in a worker process when there are several)."""

    def build_all(self, ctx: Context, todo: list[tuple]) -> None:
        with _runner(ctx, self, len(todo)) as run:
            for _ in ctx.progress(run(todo), f"{self.kind} {ctx.stage.subject}", len(todo)):
                pass


class RecordingStage(ItemStage):
    """Maps each recording's audio and upstream result to a result of its own (VAD, diarization, ASR);
    the base finds stored results, computes the rest, and writes the manifest."""
    drop_reason: ClassVar[str] = ""

    @abstractmethod
    def compute(self, model: Any, wav, upstream: Any) -> Any:
        """One recording's result (JSON-serialisable) from its 16 kHz audio and its upstream result."""

    @abstractmethod
    def summary(self, result: Any) -> dict:
        """Columns for the manifest row (summed into the stats' counts) from a stored result."""

    def keep(self, result: Any) -> bool:
        """False drops the recording from this stage on (counted under `drop_reason`)."""
        return True

    def build(self, model: Any, items: Items, row: dict, upstream_path: str, key: str) -> None:
        upstream = json.loads(Path(upstream_path).read_text())
        self.store(items, key, self.compute(model, load_wav(audio_file(items, row)), upstream))

    def store(self, items: Items, key: str, result: Any) -> None:
        items.put(self.kind, key, self.suffix, lambda tmp: tmp.write_text(json.dumps(result) + "\n"))

    def run(self, ctx: Context, stats: Stats) -> None:
        source = ctx.inputs[ctx.stage.inputs[0]]
        rows = read_recordings(source)
        base = item_key(ctx.stage.params_key, ctx.fingerprint.get("model", ""))
        keys = [item_key(base, row["item"]) for row in rows]
        todo = [(row, str(item_file(ctx.items, source, row["item"])), key)
                for row, key in zip(rows, keys) if not ctx.items.has(self.kind, key, self.suffix)]
        stats.counts["recordings_cached"] = len(rows) - len(todo)
        self.build_all(ctx, todo)
        out = []
        for row, key in zip(rows, keys):
            result = json.loads(ctx.items.path(self.kind, key, self.suffix).read_text())
            stats.items_in += 1
            summary = self.summary(result)
            for name, value in summary.items():
                stats.counts[name] = round(stats.counts.get(name, 0) + value, 3)
            if not self.keep(result):
                stats.drop(self.drop_reason)
                continue
            out.append({**{k: row[k] for k in ("rec", "path", "duration", "audio")}, "item": key, **summary})
        stats.items_out = len(out)
        write_recordings(ctx.out, out, self.kind, self.suffix)
