"""TTS: a generator's texts -> speech chunks with known text, one voice per item.

Each item (a Krist part, or a Quest question with its answer) is split into sentences (a sentence
longer than `CALL_CHARS` is cut further at commas or semicolons); each piece is one TTS call. The
item's voice is drawn from the pool by a hash of (spec seed, generator, item id): deterministic,
and independent of the other items. The calls are joined with `pause` seconds of silence into one
16 kHz recording, stored in the item store beside the ingested web audio (so `encode` reads both
alike), with each call's exact span; both are memoised per item, keyed by the voice's revision,
the pause and the texts, never by the granularity: a `chunk` edit regroups stored audio.

Granularity: `fine` keeps each call as a chunk, joining one shorter than `min` to the next (a call
longer than `max` stays whole: it is counted as `chunks_over_max`); `coarse` merges consecutive
calls while the chunk stays within `max`.

Artifact: `calls.parquet` (`SpokenCalls`: every TTS call's span and text, what the audio tokenizer
trains on) and a chunk table (`ChunkManifest`, as web audio's `chunk` stage writes) with `rec` = the
item's key, `path` = its lineage (`page id#chars=start-end`), `speaker` = the voice id, and the
known text (no ASR); plus `voices.json`: per voice drawn, its items, chunks and seconds, the word
error rate of the default ASR (faster-whisper tiny.en) on a sample of its chunks, and the cosine
between voices' speaker embeddings (how distinct the drawn voices sound).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl

from mixc import ir
from mixc.audio import SAMPLE_RATE, Interval, Turn
from mixc.errors import MissingWeights, SetupError
from mixc.stages.base import Context, Declared, StageError, Stats
from mixc.stages.chunk import SCHEMA, ChunkManifest, chunk_stats
from mixc.stages.generate import GeneratedTexts
from mixc.stages.items import (
    ItemStage,
    audio_path,
    item_key,
    load_wav,
    put_audio,
    read_records,
)
from mixc.stages.store import ItemStore

CALL_CHARS = 300  # a longer sentence is cut at commas or semicolons into calls of about this size
WER_SAMPLE = 3  # chunks per voice that the default ASR transcribes for the intelligibility check
EMBED_SECONDS = 8.0  # audio per voice for its speaker embedding


@dataclass(frozen=True)
class Spoken(Interval):
    """One TTS call's span in its item's recording, and the text it says."""
    text: str


def draw_voice(seed: int, generator: str, item: str, pool: tuple[ir.Voice, ...]) -> ir.Voice:
    digest = hashlib.sha256(f"{seed}\x00{generator}\x00{item}".encode()).digest()
    return pool[int.from_bytes(digest[:8], "big") % len(pool)]


def calls(text: str) -> list[str]:
    """The text as TTS calls: sentences, a long one cut at commas or semicolons."""
    from mixc.backends.extractive import sentence_spans

    out: list[str] = []
    for start, end in sentence_spans(text):
        sentence = " ".join(text[start:end].split())
        if not sentence:
            continue
        if len(sentence) <= CALL_CHARS:
            out.append(sentence)
            continue
        piece = ""
        for clause in re.split(r"(?<=[,;])\s+", sentence):
            if piece and len(piece) + len(clause) + 1 > CALL_CHARS:
                out.append(piece)
                piece = clause
            else:
                piece = f"{piece} {clause}".strip()
        out.append(piece)
    return out


def group(spoken: list[Spoken], cfg: ir.FineChunks | ir.CoarseChunks) -> list[Spoken]:
    """Calls -> chunks at the spec's granularity (see the module docstring)."""
    def join(a: Spoken, b: Spoken) -> Spoken:
        return Spoken(a.start, b.end, f"{a.text} {b.text}")

    def joins(last: Spoken, piece: Spoken) -> bool:
        if isinstance(cfg, ir.FineChunks):
            return last.duration < cfg.min
        return piece.end - last.start <= cfg.max

    out: list[Spoken] = []
    for piece in spoken:
        if out and joins(out[-1], piece):
            out[-1] = join(out[-1], piece)
        else:
            out.append(piece)
    if isinstance(cfg, ir.FineChunks) and len(out) > 1 and out[-1].duration < cfg.min:
        last = out.pop()
        out[-1] = join(out[-1], last)
    return out


class Voices:
    """The pool's synthesizers in one process, each loaded on first use."""

    def __init__(self, cfg: ir.Tts, root: Path, threads: int):
        self.cfg, self.root, self.threads = cfg, root, threads
        self.loaded: dict[str, Any] = {}

    def speak(self, voice: ir.Voice, text: str) -> np.ndarray:
        from mixc.backends import tts

        if voice.id not in self.loaded:
            self.loaded[voice.id] = tts.load(voice, self.cfg, self.root, self.threads)
        return self.loaded[voice.id].speak(text)


class SpokenCalls:
    """`calls.parquet`: every TTS call of a tts artifact (rec, audio, start, end, text, speaker), before
    grouping into chunks: what the audio tokenizer trains on, whatever the granularity."""
    FILE: ClassVar[str] = "calls.parquet"

    @classmethod
    def write(cls, folder: Path, rows: list[dict]) -> None:
        schema = {"rec": pl.String, "audio": pl.String, "start": pl.Float64, "end": pl.Float64, "text": pl.String,
                  "speaker": pl.String}
        pl.DataFrame(rows, schema=schema).write_parquet(folder / cls.FILE)

    @classmethod
    def read(cls, folder: Path, columns: list[str] | None = None) -> pl.DataFrame:
        return pl.read_parquet(folder / cls.FILE, columns=columns)


class TtsStage(ItemStage):
    kind, version, doc = "tts", 2, "synthetic speech, one voice drawn per item"
    items_per_worker = 4
    reads = (".tts.backend", ".tts.voices", ".tts.noise_scale", ".tts.noise_w_scale", ".tts.pause", ".chunk", "seed")
    settings = (".tts",)
    weights = ".tts.model"
    suffix = ".json"
    VOICES: ClassVar[str] = "voices.json"

    @classmethod
    def locate_weights(cls, config: Declared, root: Path) -> None:
        """Every voice of the pool is usable here. What a voice lacks is reported at `voices` (an
        unknown espeak voice, flite not installed, a piper voice's files), except kokoro's weights,
        which `model` names."""
        from mixc.backends import tts
        cfg: ir.Tts = config.get(".tts")
        for voice in cfg.pool():
            try:
                tts.locate_voice(voice, cfg, root)
            except SetupError as exc:
                if isinstance(exc, MissingWeights) and voice.backend == "kokoro":
                    raise
                raise StageError(exc.message, exc.hint, field=".tts.voices") from exc

    def fingerprint(self, ctx: Context, spec) -> dict:
        from mixc.backends import tts

        cfg: ir.Tts = ctx.read(".tts")
        return {"voices": {v.id: tts.revision(v, cfg, ctx.root) for v in cfg.pool()}}

    def load_args(self, ctx: Context) -> tuple:
        return (str(ctx.root),)

    def load(self, config: Declared, threads: int, *args: Any) -> Voices:
        return Voices(config.get(".tts"), Path(args[0]), threads)

    def build(self, model: Voices, items: ItemStore, key: str, voice: str, texts: list[str], pause: float) -> None:
        spoken: list[Spoken] = []
        parts: list[np.ndarray] = []
        at = 0
        gap = np.zeros(round(pause * SAMPLE_RATE), np.float32)
        for text in texts:
            wav = np.asarray(model.speak(ir.Voice.parse(voice, ""), text), np.float32)
            if not len(wav):
                continue
            if parts:
                parts.append(gap)
                at += len(gap)
            spoken.append(Spoken(round(at / SAMPLE_RATE, 4), round((at + len(wav)) / SAMPLE_RATE, 4), text))
            parts.append(wav)
            at += len(wav)
        audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        put_audio(items, key, audio)
        items.put(self.kind, key, self.suffix,
                  lambda tmp: tmp.write_text(json.dumps([s.to_json() for s in spoken]) + "\n"))

    def run(self, ctx: Context, stats: Stats) -> None:
        cfg: ir.Tts = ctx.read(".tts")
        store = self.item_store(ctx)
        texts = GeneratedTexts.read(_texts_input(ctx))
        pool, revisions = cfg.pool(), ctx.fingerprint["voices"]
        items = []
        for row in texts.iter_rows(named=True):
            voice = draw_voice(ctx.read("seed"), ctx.subject, row["id"], pool)
            said = calls(row["text"])
            key = item_key("tts", revisions[voice.id], str(cfg.pause), json.dumps(said))
            items.append((row, voice, key, said))
        todo = [(key, voice.id, said, cfg.pause) for _, voice, key, said in items
                if not store.has(self.kind, key, self.suffix)]
        stats.items_in = len(items)
        stats.counts["items_cached"] = len(items) - len(todo)
        self.build_all(ctx, todo)
        rows = self._chunks(ctx, stats, store, items)
        SpokenCalls.write(ctx.out, [{"rec": key, "audio": key, "start": s.start, "end": s.end, "text": s.text,
                                     "speaker": voice.id} for _, voice, key, _ in items
                                    for s in read_records(store.path(self.kind, key, self.suffix), Spoken)])
        stats.items_out = len({r["doc"] for r in rows})
        stats.counts.update(chunk_stats([r["end"] - r["start"] for r in rows]))
        ChunkManifest.write(ctx.out, pl.DataFrame(rows, schema=SCHEMA))
        chunking = ctx.read(".chunk")
        ChunkManifest.write_summary(ctx.out, chunking.granularity, stats.counts)
        report = voice_report(ctx, rows)
        (ctx.out / self.VOICES).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        for v in report["voices"]:
            stats.counts[f"wer {v['voice']}"] = v["wer"] if v["wer"] is not None else -1.0

    def _chunks(self, ctx: Context, stats: Stats, store: ItemStore, items: list) -> list[dict]:
        chunking = ctx.read(".chunk")
        rows: list[dict] = []
        for row, voice, key, _ in items:
            spoken = read_records(store.path(self.kind, key, self.suffix), Spoken)
            if not spoken:
                stats.drop("no audio")
                continue
            doc = len({r["doc"] for r in rows})
            for index, piece in enumerate(group(spoken, chunking)):
                if isinstance(chunking, ir.FineChunks) and piece.duration > chunking.max:
                    stats.counts["chunks_over_max"] = stats.counts.get("chunks_over_max", 0) + 1
                rows.append({"chunk": len(rows), "doc": doc, "rec": key, "path": row["id"], "audio": key,
                             "index": index, "speaker": voice.id, "start": piece.start, "end": piece.end,
                             "text": piece.text, "words": [], "confidence": 1.0})
        return rows

    @staticmethod
    def voices(folder: Path) -> dict:
        """The voices.json of a tts artifact."""
        return json.loads((folder / TtsStage.VOICES).read_text())


def _texts_input(ctx: Context) -> Path:
    return ctx.inputs_of("rewrite", "answer")[0]


def voice_report(ctx: Context, rows: list[dict]) -> dict:
    """Per voice drawn: items, chunks, seconds, the default ASR's WER on a sample of its chunks; and
    the cosine between the voices' speaker embeddings."""
    by_voice: dict[str, list[dict]] = {}
    for r in rows:
        by_voice.setdefault(r["speaker"], []).append(r)
    assert ctx.items is not None
    recognizer = _recognizer(ctx.workers) if rows else None
    voices, embeddings = [], {}
    for voice, chunks in sorted(by_voice.items()):
        sample = chunks[:WER_SAMPLE]
        voices.append({"voice": voice, "items": len({c["doc"] for c in chunks}), "chunks": len(chunks),
                       "seconds": round(sum(c["end"] - c["start"] for c in chunks), 2),
                       "wer": _wer(recognizer, ctx.items, sample), "wer_chunks": len(sample)})
        embeddings[voice] = _embedding(ctx.items, chunks)
    names = sorted(embeddings)
    cosine = {a: {b: round(float(embeddings[a] @ embeddings[b]), 3) for b in names} for a in names}
    return {"voices": voices, "cosine": cosine}


def _recognizer(threads: int):
    from mixc.backends import asr
    return asr.load(ir.Asr(), threads)


def _wer(recognizer, items: ItemStore, sample: list[dict]) -> float | None:
    from mixc.backends.extractive import speakable
    from mixc.wer import wer

    refs, hyps = [], []
    for c in sample:
        wav = load_wav(audio_path(items, c["audio"]))[int(c["start"] * SAMPLE_RATE):int(c["end"] * SAMPLE_RATE)]
        utts = recognizer.transcribe(wav, [Turn(0.0, len(wav) / SAMPLE_RATE, "s")])
        refs.append(speakable(c["text"]))
        hyps.append(speakable(" ".join(u.text for u in utts)))
    try:
        return round(wer(refs, hyps), 4)
    except ValueError:  # no reference words
        return None


def _embedding(items: ItemStore, chunks: list[dict]) -> np.ndarray:
    from mixc.backends.tts import speaker_embedding

    parts: list[np.ndarray] = []
    for c in chunks:
        audio = load_wav(audio_path(items, c["audio"]))
        parts.append(audio[int(c["start"] * SAMPLE_RATE):int(c["end"] * SAMPLE_RATE)])
        if sum(len(p) for p in parts) >= EMBED_SECONDS * SAMPLE_RATE:
            break
    return speaker_embedding(np.concatenate(parts)[:int(EMBED_SECONDS * SAMPLE_RATE)])
