"""Audio tokens: train (or load) the audio tokenizer, then encode every chunk into codes.

- `train_audio_tokenizer`: the spec's `fsq` (Conformer + FSQ, trained with reconstruction and CTC
  losses) or `kmeans` tokenizer, trained on the filtered utterances of the `train_on` audio sources
  (all of them by default, in a fixed order, at most `sample` seconds), then frozen. One utterance
  in ten (at most `EVAL_CLIPS`) is held out to measure reconstruction, CTC, code usage and tokens per
  second for the report. Granularity does not reach it: fine and coarse chunks share one tokenizer.
- `load_audio_tokenizer`: a tokenizer folder that `save` wrote, from the spec's `path`.
- `encode`: each chunk's audio slice -> codes at 12.5 Hz, a recording at a time, memoised per
  recording (item key: the tokenizer's digest, the audio, the chunk spans).

Artifacts: `tokenizer/` + `metrics.json` (the tokenizer stages); `codes.u32` (flat codes),
`offsets.npy` (n_chunks + 1), `chunks.parquet` (the chunk table) and `codes.json` (codebook size,
frame rate, seconds, codes) for `encode`.
"""

from __future__ import annotations

import hashlib
import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from mixc.audio import SAMPLE_RATE
from mixc.build.cache import Items
from mixc.hashing import tree_digest
from mixc.ir import CheckpointAudioTokenizer, FsqTokenizer, Spec
from mixc.stages.base import Context, StageError, StageRun, Stats
from mixc.stages.chunk import CHUNKS
from mixc.stages.items import AUDIO_KIND, AUDIO_SUFFIX, ItemStage, item_key, load_wav
from mixc.stages.transcripts import UTTERANCES

TOKENIZER = "tokenizer"
EVAL_EVERY = 10
EVAL_CLIPS = 64
CODES_SUFFIX = ".npz"
AUDIO_VOCAB = "audio_vocab.json"  # codebook size and frame rate, for stages that do not load the model
CHUNK_COLUMNS = ("chunk", "doc", "rec", "path", "index", "speaker", "start", "end", "text")


def _library_versions() -> dict:
    return {name: version(name) for name in ("torch", "vector-quantize-pytorch", "scikit-learn")}


def training_clips(ctx: Context, limit_seconds: float):
    """(train, held-out) clips from the filtered utterances of every input source, in a fixed order."""
    from mixc.audio_tokenizer import Clip

    train, held, used = [], [], 0.0
    for folder in ctx.inputs_of("filter"):
        table = pl.read_parquet(folder / UTTERANCES).sort("rec", "start")
        for (audio,), group in table.group_by("audio", maintain_order=True):
            wav = load_wav(ctx.items.path(AUDIO_KIND, audio, AUDIO_SUFFIX))
            for row in group.iter_rows(named=True):
                clip = Clip(wav[int(row["start"] * SAMPLE_RATE):int(row["end"] * SAMPLE_RATE)], row["text"])
                if len(held) < EVAL_CLIPS and (len(train) + len(held)) % EVAL_EVERY == EVAL_EVERY - 1:
                    held.append(clip)
                elif used < limit_seconds:
                    train.append(clip)
                    used += len(clip.wav) / SAMPLE_RATE
    return train, held


def _vocab(folder: Path, tokenizer) -> None:
    meta = {"codebook_size": tokenizer.codebook_size, "frame_rate": tokenizer.frame_rate, "kind": tokenizer.kind}
    (folder / AUDIO_VOCAB).write_text(json.dumps(meta, sort_keys=True) + "\n")


def read_audio_vocab(folder: Path) -> dict:
    return json.loads((folder / AUDIO_VOCAB).read_text())


def _finish(ctx: Context, stats: Stats, tokenizer, held: list, train: list) -> None:
    """Saves the tokenizer and measures it on the held-out clips (on the training clips when there
    are too few to hold any out: `held_out` says which)."""
    from mixc.audio_tokenizer import evaluate

    tokenizer.save(ctx.out / TOKENIZER)
    _vocab(ctx.out, tokenizer)
    clips = held or train[:EVAL_CLIPS]
    metrics = {k: round(float(v), 5) for k, v in evaluate(tokenizer, clips).items()}
    metrics.update(eval_clips=len(clips), held_out=int(bool(held)))
    (ctx.out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    stats.counts.update(metrics, codebook_size=tokenizer.codebook_size)


class TrainAudioTokenizer(StageRun):
    """Keyed by the content of its training clips (audio item, span, transcript), not by its inputs'
    run keys: re-globbing or moving the audio reuses a trained tokenizer."""
    kind = "train_audio_tokenizer"
    keyed_by_content = True

    def fingerprint(self, ctx: Context) -> dict:
        digest = hashlib.sha256()
        for folder in ctx.inputs_of("filter"):
            table = pl.read_parquet(folder / UTTERANCES, columns=["audio", "start", "end", "text"]).sort("audio", "start")
            digest.update(table.write_csv().encode())
        return {**_library_versions(), "clips": digest.hexdigest()[:32]}

    def run(self, ctx: Context, stats: Stats) -> None:
        from mixc.audio_tokenizer import train_fsq, train_kmeans

        cfg = ctx.spec.tokenizers.audio
        train, held = training_clips(ctx, cfg.sample)
        stats.items_in = len(train) + len(held)
        stats.items_out = len(train)
        stats.counts["train_seconds"] = round(sum(len(c.wav) for c in train) / SAMPLE_RATE, 3)
        if not train:
            raise StageError("the audio tokenizer has no speech to train on: every utterance was dropped upstream",
                             "see report.md's utterance drops; relax the sources' filters or add audio")
        if isinstance(cfg, FsqTokenizer):
            tokenizer, _ = train_fsq(cfg.levels, cfg.preset, cfg.steps, train, ctx.spec.seed, cfg.frame_rate)
        else:
            tokenizer, _ = train_kmeans(cfg.codebook, train, ctx.spec.seed, cfg.frame_rate)
        _finish(ctx, stats, tokenizer, held, train)


class LoadAudioTokenizer(StageRun):
    kind = "load_audio_tokenizer"

    def fingerprint(self, ctx: Context) -> dict:
        cfg: CheckpointAudioTokenizer = ctx.spec.tokenizers.audio
        return {"checkpoint": tree_digest(ctx.root / cfg.path)}

    def run(self, ctx: Context, stats: Stats) -> None:
        from mixc.audio_tokenizer import load_tokenizer

        cfg: CheckpointAudioTokenizer = ctx.spec.tokenizers.audio
        tokenizer = load_tokenizer(ctx.root / cfg.path)
        tokenizer.save(ctx.out / TOKENIZER)
        _vocab(ctx.out, tokenizer)
        (ctx.out / "metrics.json").write_text("{}\n")
        stats.counts["codebook_size"] = tokenizer.codebook_size


class Encode(ItemStage):
    kind = "encode"
    suffix = CODES_SUFFIX

    def fingerprint(self, ctx: Context) -> dict:
        return {"tokenizer": tree_digest(self._tokenizer(ctx))}

    @staticmethod
    def _tokenizer(ctx: Context) -> Path:
        return ctx.inputs_of("train_audio_tokenizer", "load_audio_tokenizer")[0] / TOKENIZER

    def load_args(self, ctx: Context) -> tuple:
        return (str(self._tokenizer(ctx)),)

    def load(self, spec: Spec, subject: str, threads: int, *args: Any) -> Any:
        import torch
        from mixc.audio_tokenizer import load_tokenizer

        torch.set_num_threads(threads)
        return load_tokenizer(Path(args[0]))

    def build(self, model: Any, items: Items, audio: str, spans: list[tuple[float, float]], key: str) -> None:
        wav = load_wav(items.path(AUDIO_KIND, audio, AUDIO_SUFFIX))
        codes = model.encode([wav[int(s * SAMPLE_RATE):int(e * SAMPLE_RATE)] for s, e in spans])
        flat = np.concatenate(codes).astype(np.uint32) if codes else np.zeros(0, np.uint32)
        offsets = np.concatenate([[0], np.cumsum([len(c) for c in codes])]).astype(np.int64)

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as handle:
                np.savez(handle, codes=flat, offsets=offsets)
        items.put(self.kind, key, self.suffix, write)

    def run(self, ctx: Context, stats: Stats) -> None:
        chunks = pl.read_parquet(ctx.input_of("chunk") / CHUNKS)
        base = item_key(ctx.stage.params_key, ctx.fingerprint["tokenizer"])
        tasks = []
        for (audio,), group in chunks.group_by("audio", maintain_order=True):
            spans = list(zip(group["start"].to_list(), group["end"].to_list()))
            tasks.append((audio, spans, item_key(base, audio, json.dumps(spans))))
        todo = [t for t in tasks if not ctx.items.has(self.kind, t[2], self.suffix)]
        stats.counts["recordings_cached"] = len(tasks) - len(todo)
        self.build_all(ctx, todo)
        self._write(ctx, stats, chunks, tasks)

    def _write(self, ctx: Context, stats: Stats, chunks: pl.DataFrame, tasks: list[tuple]) -> None:
        offsets, total = [0], 0
        with open(ctx.out / "codes.u32", "wb") as out:
            for _, _, key in tasks:
                with np.load(ctx.items.path(self.kind, key, self.suffix)) as stored:
                    out.write(stored["codes"].astype(np.uint32).tobytes())
                    offsets += list(total + stored["offsets"][1:])
                    total += len(stored["codes"])
        np.save(ctx.out / "offsets.npy", np.asarray(offsets, np.int64))
        chunks.select(CHUNK_COLUMNS).write_parquet(ctx.out / "chunks.parquet")
        tokenizer = read_audio_vocab(self._tokenizer(ctx).parent)
        seconds = float((chunks["end"] - chunks["start"]).sum()) if len(chunks) else 0.0
        meta = {"codebook_size": tokenizer["codebook_size"], "frame_rate": tokenizer.get("frame_rate", 12.5),
                "seconds": round(seconds, 3), "codes": total}
        (ctx.out / "codes.json").write_text(json.dumps(meta, sort_keys=True) + "\n")
        stats.items_in = stats.items_out = len(chunks)
        stats.counts.update(codes=total, seconds=round(seconds, 3),
                            codes_per_second=round(total / seconds, 3) if seconds else 0.0)
