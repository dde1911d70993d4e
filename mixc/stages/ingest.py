"""Ingest: audio files -> 16 kHz mono recordings, each stored once by its content id.

Inputs are the source's `files` globs (files with an audio suffix) and/or its `manifest` (jsonl,
csv or parquet with a `path` column, relative to the manifest's folder; other columns are kept as
the recording's metadata).

Each file is hashed (its content id is the recording id). A file not yet stored is checked on its
header (too long files are never decoded), decoded (libsndfile; FFmpeg through PyAV for m4a and
the rest), checked (truncated, zero-length, non-finite, silent), mixed to mono and resampled with
soxr. The audio is stored as a 16-bit FLAC item keyed by the content id alone, beside a meta item
(duration, source rate, channels, format; or why the file cannot be used), so renaming, moving or
re-globbing files re-decodes and re-reads nothing; the stage's key holds the content ids, never
the paths. A file's length is judged against `max_file_duration` on every run, from its meta item:
raising the limit decodes files it once left out, lowering it leaves stored ones out.

Files that cannot be used are quarantined with their reason (stats, report.md) and never stop the
compile. A file whose bytes appear twice is ingested once (`duplicate` drop).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl

from mixc.audio import AUDIO_SUFFIXES, SAMPLE_RATE
from mixc.stages.base import Context, StageError, Stats
from mixc.stages.decode import AudioError, TooLong, decode, too_long
from mixc.stages.items import ItemStage, RecordingManifest, item_key, put_audio
from mixc.stages.store import ItemStore

DECODE_VERSION = "decode/1"  # bump when decoding or resampling changes the stored audio (or its meta item)
META_SUFFIX = ".json"


@dataclass(frozen=True)
class Decoded:
    """A file's meta item: what decoding found (its length and format), or why it cannot be used."""
    duration: float | None = None
    source_rate: int | None = None
    channels: int | None = None
    format: str | None = None
    too_long: float | None = None  # seconds: kept as a length, judged against the limit of each run
    error: str | None = None  # the quarantine reason

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, data: dict) -> Decoded:
        return cls(**data)

    def write(self, store: ItemStore, key: str) -> None:
        store.put(IngestStage.kind, key, META_SUFFIX, lambda tmp: tmp.write_text(json.dumps(self.to_json()) + "\n"))

    @classmethod
    def read(cls, store: ItemStore, key: str) -> Decoded:
        return cls.from_json(json.loads(store.path(IngestStage.kind, key, META_SUFFIX).read_text()))


def manifest_rows(root: Path, manifest: str | None) -> list[tuple[Path, dict]]:
    """(audio path, metadata) for every row of the source's manifest."""
    if manifest is None:
        return []
    path = root / manifest
    suffix = path.suffix.lower()
    frame = pl.read_parquet(path) if suffix == ".parquet" else pl.read_csv(path) if suffix == ".csv" \
        else pl.read_ndjson(path)
    if "path" not in frame.columns:
        raise StageError(f"{manifest}: no `path` column (it has {', '.join(frame.columns)})",
                         "a manifest lists one audio file per row in a `path` column", ".manifest")
    out = []
    for record in frame.to_dicts():
        audio = Path(str(record.pop("path")))
        out.append((audio if audio.is_absolute() else path.parent / audio, record))
    return out


def audio_inputs(root: Path, globbed: list[Path], manifest: str | None) -> tuple[list[tuple[Path, dict]], int]:
    """Every input file with its metadata (globbed files first, then manifest rows, each path once),
    and how many globbed files were skipped for not having an audio suffix."""
    audio: list[tuple[Path, dict]] = [(p, {}) for p in globbed if p.suffix.lower() in AUDIO_SUFFIXES]
    seen = {p.resolve() for p, _ in audio}
    for path, meta in manifest_rows(root, manifest):
        if path.resolve() not in seen:
            seen.add(path.resolve())
            audio.append((path, meta))
    return audio, len(globbed) - len([p for p in globbed if p.suffix.lower() in AUDIO_SUFFIXES])


def _kind(reason: str) -> str:
    """The drop category of a quarantine reason: its words before any colon ('truncated', 'silent')."""
    return "quarantined: " + reason.split(":")[0].split(" (")[0]


def _inputs(ctx: Context) -> tuple[list[tuple[Path, dict]], int]:
    return audio_inputs(ctx.root, [path for _, path in ctx.source_files()], ctx.read(".manifest"))


class IngestStage(ItemStage):
    kind, version, doc = "ingest", 2, "decode, resample to 16 kHz mono, quarantine bad files"
    reads = (".files", ".manifest", ".max_file_duration")
    suffix = META_SUFFIX

    def fingerprint(self, ctx: Context, spec) -> dict:
        files, _ = _inputs(ctx)
        ids = sorted(ctx.digest(p) if p.is_file() else f"missing:{p.name}" for p, _ in files)
        manifest = ctx.read(".manifest")
        return {"recordings": ids, "manifest": ctx.digest(ctx.root / manifest) if manifest else None}

    def build(self, model: Any, items: ItemStore, path: str, key: str, max_seconds: float) -> None:
        """Decodes one file into the audio item `key` (FLAC) and its meta (or failure) item."""
        try:
            wav, head = decode(Path(path), max_seconds)
        except TooLong as exc:
            meta = Decoded(too_long=exc.seconds)
        except AudioError as exc:
            meta = Decoded(error=str(exc))
        else:
            put_audio(items, key, wav)
            meta = Decoded(len(wav) / SAMPLE_RATE, head.rate, head.channels, head.format)
        meta.write(items, key)

    def run(self, ctx: Context, stats: Stats) -> None:
        store = self.item_store(ctx)
        limit = ctx.read(".max_file_duration")
        files, skipped = _inputs(ctx)
        stats.counts["files"] = len(files)
        stats.drop("not an audio file", skipped)
        candidates = _candidates(ctx, stats, files)
        todo = [(str(c.path), c.key, limit) for c in candidates if self._needs_decoding(store, c.key, limit)]
        stats.counts["recordings_cached"] = len(candidates) - len(todo)
        self.build_all(ctx, todo)
        rows: list[dict] = []
        for c in candidates:
            stored = Decoded.read(store, c.key)
            seconds = stored.duration if stored.duration is not None else stored.too_long or 0.0
            reason = stored.error or (too_long(seconds, limit) if seconds > limit else None)
            if reason:
                stats.quarantine(c.rel, reason, _kind(reason))
                continue
            rows.append({"rec": c.rec, "path": c.rel, "duration": seconds, "audio": c.key, "item": c.key,
                         "source_rate": stored.source_rate, "channels": stored.channels, "format": stored.format,
                         "meta": json.dumps(c.meta, sort_keys=True, default=str) if c.meta else None})
        stats.items_in = len(files)
        stats.items_out = len(rows)
        stats.counts["seconds"] = round(sum(r["duration"] for r in rows), 3)
        RecordingManifest(rows, self.kind, self.suffix).write(ctx.out)

    def _needs_decoding(self, store: ItemStore, key: str, limit: float) -> bool:
        """Not stored yet, or once left out as too long for a limit this run raises."""
        if not store.has(self.kind, key, self.suffix):
            return True
        too_long = Decoded.read(store, key).too_long
        return too_long is not None and too_long <= limit


@dataclass(frozen=True)
class _Candidate:
    path: Path
    rel: str
    rec: str
    key: str
    meta: dict


def _candidates(ctx: Context, stats: Stats, files: list[tuple[Path, dict]]) -> list[_Candidate]:
    """Each distinct existing file, by content id; missing ones quarantined, repeated bytes dropped."""
    out, seen = [], set()
    for path, meta in files:
        rel = ctx.source_name(path)
        if not path.is_file():
            reason = "missing file (named by the manifest)"
            stats.quarantine(rel, reason, _kind(reason))
            continue
        rec = ctx.digest(path)  # the recording's id: its bytes' digest
        if rec in seen:
            stats.drop("duplicate")
            continue
        seen.add(rec)
        out.append(_Candidate(path, rel, rec, item_key(DECODE_VERSION, rec), meta))
    return out
