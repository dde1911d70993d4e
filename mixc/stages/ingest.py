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
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from mixc.audio import SAMPLE_RATE, AudioError, TooLong, decode, too_long
from mixc.build.cache import Items
from mixc.ir import AudioSource
from mixc.plan.sizes import AUDIO_SUFFIXES, expand
from mixc.stages.base import Context, StageError, Stats
from mixc.stages.items import AUDIO_KIND, AUDIO_SUFFIX, ItemStage, item_key, write_recordings

DECODE_VERSION = "decode/1"  # bump when decoding or resampling changes the stored audio
META_SUFFIX = ".json"


def manifest_rows(root: Path, source: AudioSource) -> list[tuple[Path, dict]]:
    """(audio path, metadata) for every row of the source's manifest."""
    if source.manifest is None:
        return []
    path = root / source.manifest
    suffix = path.suffix.lower()
    frame = pl.read_parquet(path) if suffix == ".parquet" else pl.read_csv(path) if suffix == ".csv" \
        else pl.read_ndjson(path)
    if "path" not in frame.columns:
        raise StageError(f"{source.manifest}: no `path` column (it has {', '.join(frame.columns)})",
                         "a manifest lists one audio file per row in a `path` column", ("manifest",))
    out = []
    for record in frame.to_dicts():
        audio = Path(str(record.pop("path")))
        out.append((audio if audio.is_absolute() else path.parent / audio, record))
    return out


def audio_inputs(root: Path, source: AudioSource) -> tuple[list[tuple[Path, dict]], int]:
    """Every input file with its metadata (globbed files first, then manifest rows, each path once),
    and how many globbed files were skipped for not having an audio suffix."""
    globbed = expand(root, source.files)
    audio = [(p, {}) for p in globbed if p.suffix.lower() in AUDIO_SUFFIXES]
    seen = {p.resolve() for p, _ in audio}
    for path, meta in manifest_rows(root, source):
        if path.resolve() not in seen:
            seen.add(path.resolve())
            audio.append((path, meta))
    return audio, len(globbed) - len([p for p in globbed if p.suffix.lower() in AUDIO_SUFFIXES])


def _kind(reason: str) -> str:
    """The drop category of a quarantine reason: its words before any colon ('truncated', 'silent')."""
    return "quarantined: " + reason.split(":")[0].split(" (")[0]


class Ingest(ItemStage):
    kind = "ingest"
    suffix = META_SUFFIX

    def fingerprint(self, ctx: Context) -> dict:
        source: AudioSource = ctx.spec.sources[ctx.stage.subject]
        files, _ = audio_inputs(ctx.root, source)
        ids = sorted(ctx.digest(p) if p.is_file() else f"missing:{p.name}" for p, _ in files)
        manifest = ctx.digest(ctx.root / source.manifest) if source.manifest else None
        return {"recordings": ids, "manifest": manifest}

    def build(self, model: Any, items: Items, path: str, key: str, max_seconds: float) -> None:
        """Decodes one file into the audio item `key` (FLAC) and its meta (or failure) item."""
        import soundfile
        try:
            wav, head = decode(Path(path), max_seconds)
        except TooLong as exc:  # kept as a length, judged against the limit of each run
            meta = {"too_long": exc.seconds}
        except AudioError as exc:
            meta = {"error": str(exc)}
        else:
            items.put(AUDIO_KIND, key, AUDIO_SUFFIX,
                      lambda tmp: soundfile.write(str(tmp), wav, SAMPLE_RATE, format="FLAC", subtype="PCM_16"))
            meta = {"duration": len(wav) / SAMPLE_RATE, "source_rate": head.rate, "channels": head.channels,
                    "format": head.format}
        items.put(self.kind, key, self.suffix, lambda tmp: tmp.write_text(json.dumps(meta) + "\n"))

    def run(self, ctx: Context, stats: Stats) -> None:
        source: AudioSource = ctx.spec.sources[ctx.stage.subject]
        limit = source.max_file_duration
        files, skipped = audio_inputs(ctx.root, source)
        stats.counts["files"] = len(files)
        stats.drop("not an audio file", skipped)
        candidates = _candidates(ctx, stats, files)
        todo = [(str(c.path), c.key, limit) for c in candidates if self._needs_decoding(ctx, c.key, limit)]
        stats.counts["recordings_cached"] = len(candidates) - len(todo)
        self.build_all(ctx, todo)
        rows = []
        for c in candidates:
            stored = json.loads(ctx.items.path(self.kind, c.key, self.suffix).read_text())
            seconds = stored.get("duration", stored.get("too_long", 0.0))
            reason = stored.get("error") or (too_long(seconds, limit) if seconds > limit else None)
            if reason:
                stats.quarantine(c.rel, reason, _kind(reason))
                continue
            rows.append({"rec": c.rec, "path": c.rel, "duration": seconds, "audio": c.key, "item": c.key,
                         "source_rate": stored["source_rate"], "channels": stored["channels"],
                         "format": stored["format"],
                         "meta": json.dumps(c.meta, sort_keys=True, default=str) if c.meta else None})
        stats.items_in = len(files)
        stats.items_out = len(rows)
        stats.counts["seconds"] = round(sum(r["duration"] for r in rows), 3)
        write_recordings(ctx.out, rows, self.kind, self.suffix)

    def _needs_decoding(self, ctx: Context, key: str, limit: float) -> bool:
        """Not stored yet, or once left out as too long for a limit this run raises."""
        path = ctx.items.path(self.kind, key, self.suffix)
        if not path.is_file():
            return True
        return json.loads(path.read_text()).get("too_long", float("inf")) <= limit


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
        rel = os.path.relpath(path, ctx.root)
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
