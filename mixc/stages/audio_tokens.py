"""Audio tokens: train (or load) the audio tokenizer, then encode every chunk into codes.

- `train_audio_tokenizer`: the spec's `fsq` (Conformer + FSQ, trained with reconstruction and CTC
  losses) or `kmeans` tokenizer, trained on the filtered utterances of the `train_on` audio sources
  and the TTS calls of `train_on` generators (every audio source by default, else every
  generator mixed; in a fixed order, at most `sample` seconds), then frozen. One utterance
  in ten (at most `EVAL_CLIPS`) is held out to measure reconstruction, CTC, code usage and tokens per
  second for the report. Granularity does not reach it: fine and coarse chunks share one tokenizer.
- `load_audio_tokenizer`: a tokenizer folder that `save` wrote, from the spec's `path`.
- `encode`: each chunk's audio slice -> codes at 12.5 Hz, a recording at a time, memoised per
  recording (item key: the tokenizer's digest, the audio, the chunk spans).

Artifacts: the tokenizer stages write `tokenizer/`, `metrics.json` and `audio_vocab.json`
(`AudioVocab`: codebook size, frame rate, kind, for stages that do not load the model); `encode`
writes `AudioCodes`: `codes.u32` (flat codes), `offsets.npy` (n_chunks + 1), `chunks.parquet` (the
chunk table's lineage columns) and `codes.json` (codebook size, frame rate, seconds, codes).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl

from mixc import ir
from mixc.audio import SAMPLE_RATE
from mixc.hashing import tree_digest
from mixc.stages.base import Context, Declared, Stage, StageError, Stats
from mixc.stages.chunk import ChunkManifest
from mixc.stages.items import ItemStage, audio_path, item_key, load_wav
from mixc.stages.store import ItemStore
from mixc.stages.transcripts import UtteranceTable
from mixc.stages.tts import SpokenCalls

TOKENIZER = "tokenizer"
EVAL_EVERY = 10
EVAL_CLIPS = 64
CODES_SUFFIX = ".npz"


@dataclass(frozen=True)
class AudioVocab:
    """`audio_vocab.json`: what a tokenizer stage's codes are, without loading the model."""
    codebook_size: int
    frame_rate: float
    kind: str

    FILE: ClassVar[str] = "audio_vocab.json"

    def write(self, folder: Path) -> None:
        (folder / self.FILE).write_text(json.dumps(asdict(self), sort_keys=True) + "\n")

    @classmethod
    def read(cls, folder: Path) -> AudioVocab:
        return cls(**json.loads((folder / cls.FILE).read_text()))

    @classmethod
    def of(cls, tokenizer) -> AudioVocab:
        return cls(tokenizer.codebook_size, tokenizer.frame_rate, tokenizer.kind)


@dataclass(frozen=True)
class AudioCodes:
    """The encode artifact, read: the chunk table, every chunk's codes back to back, and where each
    chunk's codes start."""
    chunks: pl.DataFrame
    codes: np.ndarray
    offsets: np.ndarray
    codebook_size: int

    CODES: ClassVar[str] = "codes.u32"
    OFFSETS: ClassVar[str] = "offsets.npy"
    META: ClassVar[str] = "codes.json"

    @classmethod
    def write(cls, folder: Path, chunks: pl.DataFrame, parts: Iterable[tuple[np.ndarray, np.ndarray]],
              meta: dict) -> int:
        """Writes the chunk table and each recording's (codes, chunk offsets), streamed in order;
        returns the number of codes."""
        offsets, total = [0], 0
        with open(folder / cls.CODES, "wb") as out:
            for codes, starts in parts:
                out.write(codes.astype(np.uint32).tobytes())
                offsets += list(total + starts[1:])
                total += len(codes)
        np.save(folder / cls.OFFSETS, np.asarray(offsets, np.int64))
        ChunkManifest.write(folder, chunks.select(ChunkManifest.LINEAGE_COLUMNS))
        (folder / cls.META).write_text(json.dumps({**meta, "codes": total}, sort_keys=True) + "\n")
        return total

    @classmethod
    def open(cls, folder: Path) -> AudioCodes:
        meta = json.loads((folder / cls.META).read_text())
        path = folder / cls.CODES
        codes = np.fromfile(path, dtype=np.uint32) if path.stat().st_size else np.zeros(0, np.uint32)
        return cls(ChunkManifest.read(folder), codes, np.load(folder / cls.OFFSETS), meta["codebook_size"])

    @classmethod
    def texts_and_lengths(cls, folder: Path) -> tuple[pl.Series, np.ndarray]:
        """Each chunk's transcript and number of codes, without reading the codes."""
        return ChunkManifest.read(folder, ["text"])["text"], np.diff(np.load(folder / cls.OFFSETS))


def _library_versions() -> dict:
    return {name: version(name) for name in ("torch", "vector-quantize-pytorch", "scikit-learn")}


CLIP_COLUMNS = ["rec", "audio", "start", "end", "text"]


def clip_tables(ctx: Context) -> list[pl.DataFrame]:
    """What the tokenizer trains on, per input: a web-audio source's filtered utterances, a
    generator's TTS calls (audio item, span, text; never its chunks, so granularity does not reach
    the tokenizer), in a fixed order."""
    tables = [UtteranceTable.read(f, CLIP_COLUMNS) for f in ctx.inputs_of("filter")]
    return tables + [SpokenCalls.read(f, CLIP_COLUMNS) for f in ctx.inputs_of("tts")]


def training_clips(ctx: Context, limit_seconds: float):
    """(train, held-out) clips from the filtered utterances (or synthetic chunks) of every input, in a
    fixed order."""
    from mixc.audio_tokenizer import Clip

    assert ctx.items is not None, "the audio tokenizer reads the ingested audio items"
    train: list[Clip] = []
    held: list[Clip] = []
    used = 0.0
    for table in clip_tables(ctx):
        table = table.sort("rec", "start")
        for (audio,), group in table.group_by("audio", maintain_order=True):
            wav = load_wav(audio_path(ctx.items, audio))
            for row in group.iter_rows(named=True):
                clip = Clip(wav[int(row["start"] * SAMPLE_RATE):int(row["end"] * SAMPLE_RATE)], row["text"])
                if len(held) < EVAL_CLIPS and (len(train) + len(held)) % EVAL_EVERY == EVAL_EVERY - 1:
                    held.append(clip)
                elif used < limit_seconds:
                    train.append(clip)
                    used += len(clip.wav) / SAMPLE_RATE
    return train, held


def _finish(ctx: Context, stats: Stats, tokenizer, held: list, train: list) -> None:
    """Saves the tokenizer and measures it on the held-out clips (on the training clips when there
    are too few to hold any out: `held_out` says which)."""
    from mixc.audio_tokenizer import evaluate

    tokenizer.save(ctx.out / TOKENIZER)
    AudioVocab.of(tokenizer).write(ctx.out)
    clips = held or train[:EVAL_CLIPS]
    metrics = {k: round(float(v), 5) for k, v in evaluate(tokenizer, clips).items()}
    metrics.update(eval_clips=len(clips), held_out=int(bool(held)))
    (ctx.out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    stats.counts.update(metrics, codebook_size=tokenizer.codebook_size)


class TrainAudioTokenizerStage(Stage):
    """Keyed by the content of its training clips (audio item, span, transcript), not by its inputs'
    run keys: re-globbing or moving the audio reuses a trained tokenizer."""
    kind, version, doc = "train_audio_tokenizer", 2, "a trained audio tokenizer"
    reads = ("tokenizers.audio", "seed")
    keyed_by_content = True

    def fingerprint(self, ctx: Context, spec) -> dict:
        digest = hashlib.sha256()
        for table in clip_tables(ctx):
            digest.update(table.select("audio", "start", "end", "text").sort("audio", "start").write_csv().encode())
        return {**_library_versions(), "clips": digest.hexdigest()[:32]}

    def run(self, ctx: Context, stats: Stats) -> None:
        from mixc.audio_tokenizer import AudioTokenizer, train_fsq, train_kmeans

        cfg = ctx.read("tokenizers.audio")
        train, held = training_clips(ctx, cfg.sample)
        stats.items_in = len(train) + len(held)
        stats.items_out = len(train)
        stats.counts["train_seconds"] = round(sum(len(c.wav) for c in train) / SAMPLE_RATE, 3)
        if not train:
            raise StageError("the audio tokenizer has no speech to train on: every utterance was dropped upstream",
                             "see report.md's utterance drops; relax the sources' filters or add audio")
        tokenizer: AudioTokenizer
        if isinstance(cfg, ir.FsqTokenizer):
            tokenizer, _ = train_fsq(cfg.levels, cfg.preset, cfg.steps, train, ctx.read("seed"), cfg.frame_rate)
        else:
            tokenizer, _ = train_kmeans(cfg.codebook, train, ctx.read("seed"), cfg.frame_rate)
        _finish(ctx, stats, tokenizer, held, train)


class LoadAudioTokenizerStage(Stage):
    kind, version, doc = "load_audio_tokenizer", 2, "an audio tokenizer"
    reads, weights = ("tokenizers.audio",), "tokenizers.audio.path"

    def fingerprint(self, ctx: Context, spec) -> dict:
        return {"checkpoint": tree_digest(ctx.root / ctx.read("tokenizers.audio.path"))}

    def run(self, ctx: Context, stats: Stats) -> None:
        from mixc.audio_tokenizer import load_tokenizer

        tokenizer = load_tokenizer(ctx.root / ctx.read("tokenizers.audio.path"))
        tokenizer.save(ctx.out / TOKENIZER)
        AudioVocab.of(tokenizer).write(ctx.out)
        (ctx.out / "metrics.json").write_text("{}\n")
        stats.counts["codebook_size"] = tokenizer.codebook_size


class EncodeStage(ItemStage):
    kind, version, doc = "encode", 2, "audio codes per chunk"
    suffix = CODES_SUFFIX
    items_per_worker = 8  # a recording encodes in well under a second; a worker takes seconds to load torch

    def fingerprint(self, ctx: Context, spec) -> dict:
        return {"tokenizer": tree_digest(self._tokenizer(ctx))}

    @staticmethod
    def _tokenizer(ctx: Context) -> Path:
        return ctx.inputs_of("train_audio_tokenizer", "load_audio_tokenizer")[0] / TOKENIZER

    def load_args(self, ctx: Context) -> tuple:
        return (str(self._tokenizer(ctx)),)

    def load(self, config: Declared, threads: int, *args: Any) -> Any:
        import torch

        from mixc.audio_tokenizer import load_tokenizer

        torch.set_num_threads(threads)
        return load_tokenizer(Path(args[0]))

    def build(self, model: Any, items: ItemStore, audio: str, spans: list[tuple[float, float]], key: str) -> None:
        wav = load_wav(audio_path(items, audio))
        codes = model.encode([wav[int(s * SAMPLE_RATE):int(e * SAMPLE_RATE)] for s, e in spans])
        flat = np.concatenate(codes).astype(np.uint32) if codes else np.zeros(0, np.uint32)
        offsets = np.concatenate([[0], np.cumsum([len(c) for c in codes])]).astype(np.int64)

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as handle:
                np.savez(handle, codes=flat, offsets=offsets)
        items.put(self.kind, key, self.suffix, write)

    def run(self, ctx: Context, stats: Stats) -> None:
        store = self.item_store(ctx)
        chunks = ChunkManifest.read(ctx.inputs_of("chunk", "tts")[0])
        base = item_key(ctx.node.params_key, ctx.fingerprint["tokenizer"])
        tasks = []
        for (audio,), group in chunks.group_by("audio", maintain_order=True):
            spans = list(zip(group["start"].to_list(), group["end"].to_list()))
            tasks.append((audio, spans, item_key(base, audio, json.dumps(spans))))
        todo = [t for t in tasks if not store.has(self.kind, t[2], self.suffix)]
        stats.counts.update(recordings=len(tasks), recordings_cached=len(tasks) - len(todo))
        self.build_all(ctx, todo)
        parts = (self._stored(store, key) for _, _, key in tasks)
        vocab = AudioVocab.read(self._tokenizer(ctx).parent)
        seconds = round(float((chunks["end"] - chunks["start"]).sum()) if len(chunks) else 0.0, 3)
        total = AudioCodes.write(ctx.out, chunks, parts, {"codebook_size": vocab.codebook_size,
                                                          "frame_rate": vocab.frame_rate, "seconds": seconds})
        stats.items_in = stats.items_out = len(chunks)
        stats.counts.update(codes=total, seconds=seconds,
                            codes_per_second=round(total / seconds, 3) if seconds else 0.0)

    def _stored(self, store: ItemStore, key: str) -> tuple[np.ndarray, np.ndarray]:
        with np.load(store.path(self.kind, key, self.suffix)) as stored:
            return stored["codes"], stored["offsets"]
