"""Chunk: filtered utterances -> (audio, text) chunks, at the spec's granularity.

- `fine`:   each utterance (one diarized turn) on its own, cut further at sentence ends (a word
            ending in . ! or ?) when `split = sentence`; a piece shorter than `min` joins its
            neighbour, a piece longer than `max` is cut at its widest pause between words.
- `coarse`: consecutive utterances of the same speaker merged while the pause between them is at
            most `max_gap` and the chunk stays within `max`; an utterance longer than `max` alone
            is cut like a long fine piece.

Cuts inside an utterance fall midway between the two words around them; a chunk that starts or
ends an utterance keeps the utterance's (diarized) edge. Its own stage, so a granularity change
reuses VAD, diarization and ASR.

Artifact (`ChunkManifest`) `chunks.parquet`, ordered by recording then time: chunk (a global
index), doc (the recording's index: chunks of one recording form one training document), rec, path,
audio (the 16 kHz audio item), index (in its document), speaker, start, end, text, words,
confidence; and `chunk.json` (granularity and the chunk-length statistics).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import polars as pl

from mixc import ir
from mixc.audio import Interval, Word
from mixc.stages.base import Context, Stage, Stats
from mixc.stages.transcripts import SCHEMA as UTTERANCE_SCHEMA
from mixc.stages.transcripts import UtteranceTable

SENTENCE_END = (".", "!", "?", "…")
SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "chunk": pl.Int64, "doc": pl.Int64, "rec": pl.String, "path": pl.String, "audio": pl.String,
    "index": pl.Int64, "speaker": pl.String, "start": pl.Float64, "end": pl.Float64, "text": pl.String,
    "words": UTTERANCE_SCHEMA["words"], "confidence": pl.Float64,
}


class ChunkManifest:
    """`chunks.parquet`: the chunk table. The chunk stage writes it whole; encode keeps the columns
    interleaving and lineage need beside its codes."""
    FILE: ClassVar[str] = "chunks.parquet"
    LINEAGE_COLUMNS: ClassVar[tuple[str, ...]] = ("chunk", "doc", "rec", "path", "index", "speaker", "start",
                                                  "end", "text")

    @classmethod
    def write(cls, folder: Path, table: pl.DataFrame) -> None:
        table.write_parquet(folder / cls.FILE)

    @classmethod
    def read(cls, folder: Path, columns: list[str] | None = None) -> pl.DataFrame:
        return pl.read_parquet(folder / cls.FILE, columns=columns)

    SUMMARY: ClassVar[str] = "chunk.json"

    @classmethod
    def write_summary(cls, folder: Path, granularity: str, counts: dict) -> None:
        (folder / cls.SUMMARY).write_text(json.dumps({"granularity": granularity, **counts}) + "\n")

    @classmethod
    def read_summary(cls, folder: Path) -> dict:
        """The chunk stage's granularity and chunk-length statistics."""
        return json.loads((folder / cls.SUMMARY).read_text())


@dataclass(frozen=True)
class Chunk(Interval):
    """A run of words of one speaker, with the time span its audio slice covers."""
    speaker: str
    words: tuple[Word, ...]

    @property
    def text(self) -> str:
        return " ".join(w.text.strip() for w in self.words).strip()


def _cut(piece: Chunk, at: int) -> tuple[Chunk, Chunk]:
    """Splits before word `at`, midway between word at-1 and word at."""
    left, right = piece.words[:at], piece.words[at:]
    mid = round((left[-1].end + right[0].start) / 2, 3)
    return Chunk(piece.start, mid, piece.speaker, left), Chunk(mid, piece.end, piece.speaker, right)


def sentences(piece: Chunk) -> list[Chunk]:
    """Cuts after every word that ends a sentence (but never after the last word)."""
    out: list[Chunk] = []
    rest = piece
    while True:
        ends = [i + 1 for i, w in enumerate(rest.words[:-1]) if w.text.strip().endswith(SENTENCE_END)]
        if not ends:
            return out + [rest]
        head, rest = _cut(rest, ends[0])
        out.append(head)


def limit(piece: Chunk, max_seconds: float) -> list[Chunk]:
    """Cuts a piece longer than `max_seconds` at its widest pause that leaves a head within it,
    (else at the last word that fits), until every piece fits (a single word always stays whole)."""
    if piece.duration <= max_seconds or len(piece.words) < 2:
        return [piece]
    fits = [i for i in range(1, len(piece.words))
            if (piece.words[i - 1].end + piece.words[i].start) / 2 - piece.start <= max_seconds]
    candidates = fits or [1]
    at = max(candidates, key=lambda i: (piece.words[i].start - piece.words[i - 1].end, i))
    head, tail = _cut(piece, at)
    return [head] + limit(tail, max_seconds)


def merge_short(pieces: list[Chunk], min_seconds: float) -> list[Chunk]:
    """Joins each piece shorter than `min_seconds` to the following one (the last to the previous)."""
    out: list[Chunk] = []
    for piece in pieces:
        if out and out[-1].duration < min_seconds:
            prev = out.pop()
            piece = Chunk(prev.start, piece.end, piece.speaker, prev.words + piece.words)
        out.append(piece)
    if len(out) > 1 and out[-1].duration < min_seconds:
        last, prev = out.pop(), out.pop()
        out.append(Chunk(prev.start, last.end, last.speaker, prev.words + last.words))
    return out


def fine(utterances: list[Chunk], cfg: ir.FineChunks) -> list[Chunk]:
    out = []
    for utt in utterances:
        pieces = sentences(utt) if cfg.split == "sentence" else [utt]
        pieces = [p for piece in merge_short(pieces, cfg.min) for p in limit(piece, cfg.max)]
        out += pieces
    return out


def coarse(utterances: list[Chunk], cfg: ir.CoarseChunks) -> list[Chunk]:
    out: list[Chunk] = []
    for utt in utterances:
        prev = out[-1] if out else None
        if prev and prev.speaker == utt.speaker and utt.start - prev.end <= cfg.max_gap \
                and utt.end - prev.start <= cfg.max:
            out[-1] = Chunk(prev.start, utt.end, utt.speaker, prev.words + utt.words)
        else:
            out += limit(utt, cfg.max)
    return out


def chunk_stats(durations: list[float]) -> dict[str, float]:
    if not durations:
        return {"chunks": 0}
    d = np.asarray(durations)
    return {"chunks": len(d), "chunk_seconds_mean": round(float(d.mean()), 3),
            "chunk_seconds_p50": round(float(np.percentile(d, 50)), 3),
            "chunk_seconds_p95": round(float(np.percentile(d, 95)), 3)}


class ChunkStage(Stage):
    kind, version, doc = "chunk", 2, "(audio, text) chunks"
    reads = (".chunk",)

    def run(self, ctx: Context, stats: Stats) -> None:
        cfg = ctx.read(".chunk")
        utts = UtteranceTable.read(ctx.input_of("filter")).sort("rec", "start")
        rows: list[dict] = []
        for doc, ((rec,), group) in enumerate(utts.group_by("rec", maintain_order=True)):
            records = group.to_dicts()
            pieces = [Chunk(u["start"], u["end"], u["speaker"], tuple(Word.from_json(w) for w in u["words"]))
                      for u in records]
            chunks = fine(pieces, cfg) if isinstance(cfg, ir.FineChunks) else coarse(pieces, cfg)
            first = records[0]
            for index, piece in enumerate(chunks):
                probs = [w.prob for w in piece.words]
                rows.append({"chunk": len(rows), "doc": doc, "rec": rec, "path": first["path"],
                             "audio": first["audio"], "index": index, "speaker": piece.speaker,
                             "start": piece.start, "end": piece.end, "text": piece.text,
                             "words": [w.to_json() for w in piece.words],
                             "confidence": round(float(np.mean(probs)), 4) if probs else 0.0})
        stats.items_in = len(utts)
        stats.items_out = len(rows)
        stats.counts.update(chunk_stats([r["end"] - r["start"] for r in rows]))
        stats.counts["documents"] = len({r["doc"] for r in rows})
        ChunkManifest.write(ctx.out, pl.DataFrame(rows, schema=SCHEMA))
        ChunkManifest.write_summary(ctx.out, cfg.granularity, stats.counts)
