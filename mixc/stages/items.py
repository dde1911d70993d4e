"""Stages that map recordings one at a time (ingest, VAD, diarization, ASR, encode), memoised per
recording.

Every recording stage's artifact is a `RecordingManifest`: `recordings.parquet`, one row per usable
recording: `rec` (its content id), `path` (workspace-relative, where it was first seen), `duration`
(seconds), `audio` (the item key of its decoded 16 kHz FLAC), `item` (the item key of this stage's
result for it), plus the stage's summary columns; and `items.json`, which says which item kind and
suffix `item` points at. An item is a JSON list of the stage's typed records (`Region`, `Turn`,
`Utterance`).

A recording's item key hashes the stage's parameters, its backend's model revision and the
recording's upstream item key, so a result is found again whatever file the audio came from, and a
killed stage resumes from the recordings it finished. Recordings without a stored result run in
`ctx.workers` processes (spawned; each loads the backend once), or Ray actors under the Ray executor
(`ctx.pool`; there, always in the pool, which holds the stage's declared resources).
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl

from mixc.audio import Interval
from mixc.stages.base import Context, Declared, Stage, Stats
from mixc.stages.store import ItemStore

AUDIO_KIND, AUDIO_SUFFIX = "ingest", ".flac"


def item_key(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


def threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def audio_path(store: ItemStore, audio: str) -> Path:
    """The decoded 16 kHz FLAC that ingest stored under the item key `audio`."""
    return store.path(AUDIO_KIND, audio, AUDIO_SUFFIX)


def put_audio(store: ItemStore, key: str, samples: np.ndarray) -> None:
    """Store 16 kHz mono samples as FLAC (16-bit) under the item key: the audio every speech stage reads."""
    import soundfile

    from mixc.audio import SAMPLE_RATE
    store.put(AUDIO_KIND, key, AUDIO_SUFFIX,
              lambda tmp: soundfile.write(str(tmp), samples, SAMPLE_RATE, format="FLAC", subtype="PCM_16"))


def load_wav(path: Path) -> np.ndarray:
    import soundfile
    wav, _ = soundfile.read(str(path), dtype="float32")
    return wav


def write_records(store: ItemStore, kind: str, key: str, suffix: str, records: Sequence[Interval]) -> None:
    store.put(kind, key, suffix, lambda tmp: tmp.write_text(json.dumps([r.to_json() for r in records]) + "\n"))


def read_records(path: Path, record: type[Interval]) -> list[Any]:
    return [record.from_json(r) for r in json.loads(path.read_text())]


# ----------------------------------------------------------------------------- the manifest

BASE_COLUMNS = {"rec": pl.String, "path": pl.String, "duration": pl.Float64, "audio": pl.String, "item": pl.String}


@dataclass(frozen=True)
class RecordingManifest:
    """The artifact of a recording stage: its usable recordings, and where their items are."""
    rows: list[dict]
    kind: str  # the item kind and suffix `item` keys point at
    suffix: str

    FILE: ClassVar[str] = "recordings.parquet"
    ITEMS: ClassVar[str] = "items.json"

    def write(self, folder: Path) -> None:
        frame = pl.DataFrame(self.rows, infer_schema_length=None) if self.rows else pl.DataFrame(schema=BASE_COLUMNS)
        frame.write_parquet(folder / self.FILE)
        (folder / self.ITEMS).write_text(json.dumps({"kind": self.kind, "suffix": self.suffix}) + "\n")

    @classmethod
    def read(cls, folder: Path) -> RecordingManifest:
        meta = json.loads((folder / cls.ITEMS).read_text())
        return cls(pl.read_parquet(folder / cls.FILE).to_dicts(), meta["kind"], meta["suffix"])

    def item_path(self, store: ItemStore, row: dict) -> Path:
        """The stored result of this stage for one of its rows."""
        return store.path(self.kind, row["item"], self.suffix)


# ------------------------------------------------------------------------- process pool


_worker: dict[str, Any] = {}


def _init(kind: str, config: Declared, threads: int, items_root: str, load_args: tuple) -> None:
    """Worker set-up. The model loads on the first task, not here: an error raised in an initializer
    breaks the whole pool without its message; raised from a task, it reaches us as itself."""
    from mixc.stages import REGISTRY
    _worker.clear()
    _worker.update(stage=REGISTRY[kind](), items=ItemStore(Path(items_root)), load=(config, threads, *load_args))


def _task(task: tuple) -> None:
    if "model" not in _worker:
        _worker["model"] = _worker["stage"].load(*_worker["load"])
    _worker["stage"].build(_worker["model"], _worker["items"], *task)


def _in_this_process(tasks: list[tuple]) -> Iterator[None]:
    """Runs the tasks here, one at a time, yielding after each (as a pool's map does)."""
    for task in tasks:
        _task(task)
        yield


@contextmanager
def _runner(ctx: Context, stage: ItemStage, todo: int) -> Iterator[Callable[[list[tuple]], Iterator[None]]]:
    """Runs tasks in this process (one worker, or one task) or in a spawned pool, yielding per task."""
    workers = min(ctx.workers, todo // stage.items_per_worker)
    if ctx.remote_items and todo:
        workers = max(1, workers)
    assert ctx.items is not None, "item stages run with the cache's item store"
    args = (stage.kind, ctx.config, threads_per_worker(workers), str(ctx.items.root), stage.load_args(ctx))
    if workers <= 1 and not (ctx.remote_items and todo):
        if todo:
            _init(*args)
        yield _in_this_process
        _worker.clear()
        return
    with ctx.worker_pool(workers, _init, args) as pool:
        yield lambda tasks: pool.map(_task, tasks)


# ------------------------------------------------------------------------------ the bases


class ItemStage(Stage):
    """A stage whose work is per recording: `build` makes one item; `run` decides which are missing.
    A pool of workers starts only for at least `items_per_worker` items per worker: spawning a
    process and loading its model costs seconds, more than a few cheap items take."""
    suffix: ClassVar[str] = ".json"
    items_per_worker: ClassVar[int] = 1

    def load_args(self, ctx: Context) -> tuple:
        """What `load` needs beyond the declared config (picklable: it travels to worker processes)."""
        return ()

    def load(self, config: Declared, threads: int, *args: Any) -> Any:
        """The backend, loaded once per process that builds items."""
        return None

    @abstractmethod
    def build(self, model: Any, items: ItemStore, *task: Any) -> None:
        """Makes one item (in a worker process when there are several)."""

    def build_all(self, ctx: Context, todo: list[tuple]) -> None:
        with _runner(ctx, self, len(todo)) as run:
            for _ in ctx.progress(run(todo), f"{self.kind} {ctx.subject}", len(todo)):
                pass

    def item_store(self, ctx: Context) -> ItemStore:
        assert ctx.items is not None, "item stages run with the cache's item store"
        return ctx.items


class RecordingStage(ItemStage):
    """Maps each recording's audio and upstream records to records of its own (VAD, diarization,
    ASR); the base finds stored results, computes the rest, and writes the manifest."""
    record: ClassVar[type[Interval]]  # what its items hold
    upstream: ClassVar[type[Interval] | None] = None  # what its input's items hold (None: unused)
    drop_reason: ClassVar[str] = ""

    def revision(self, config: Declared) -> str:
        """The backend's exact weights (enters every key); '' for a stage without a model."""
        return ""

    def fingerprint(self, ctx: Context, spec) -> dict:
        revision = self.revision(ctx.config)
        return {"model": revision} if revision else {}

    @abstractmethod
    def compute(self, model: Any, wav: np.ndarray, upstream: list[Any]) -> list[Any]:
        """One recording's records from its 16 kHz audio and its upstream records."""

    @abstractmethod
    def summary(self, records: list[Any]) -> dict:
        """Columns for the manifest row (summed into the stats' counts) from stored records."""

    def keep(self, records: list[Any]) -> bool:
        """False drops the recording from this stage on (counted under `drop_reason`)."""
        return bool(records)

    def build(self, model: Any, items: ItemStore, audio: str, upstream_path: str, key: str) -> None:
        upstream = read_records(Path(upstream_path), self.upstream) if self.upstream else []
        write_records(items, self.kind, key, self.suffix, self.compute(model, load_wav(audio_path(items, audio)),
                                                                       upstream))

    def run(self, ctx: Context, stats: Stats) -> None:
        store = self.item_store(ctx)
        source = RecordingManifest.read(ctx.inputs[ctx.node.inputs[0]])
        base = item_key(ctx.node.params_key, ctx.fingerprint.get("model", ""))
        keys = [item_key(base, row["item"]) for row in source.rows]
        todo = [(row["audio"], str(source.item_path(store, row)), key)
                for row, key in zip(source.rows, keys) if not store.has(self.kind, key, self.suffix)]
        stats.counts["recordings_cached"] = len(source.rows) - len(todo)
        self.build_all(ctx, todo)
        out = []
        for row, key in zip(source.rows, keys):
            records = read_records(store.path(self.kind, key, self.suffix), self.record)
            stats.items_in += 1
            summary = self.summary(records)
            for name, value in summary.items():
                stats.counts[name] = round(stats.counts.get(name, 0) + value, 3)
            if not self.keep(records):
                stats.drop(self.drop_reason)
                continue
            out.append({**{k: row[k] for k in ("rec", "path", "duration", "audio")}, "item": key, **summary})
        stats.items_out = len(out)
        RecordingManifest(out, self.kind, self.suffix).write(ctx.out)
