"""Shards: packed sequences -> one MDS stream, written with Streaming's `MDSWriter`.

Columns: `tokens` (the narrowest unsigned dtype the joint vocabulary allows, exactly seq_len ids),
`loss_mask` (uint8, 1 = a target), `boundaries` (int32 document starts), `lineage` (int64 document ids).
Compression and shard size come from the spec's `shards` block.

Artifact: the MDS stream in `mds/`, and `stream.json` (`StreamInfo`: samples, real tokens, dtype,
seq_len), which the compile reads to size the mixture.

Each stream is its own MDS folder (its own `shards:<leaf>` stage, built in parallel); the compile
merges their indexes into `streams/index.json` (`merge_indexes`, Streaming's `merge_index`), so one
`StreamingDataset(remote=OUT/streams)` reads every part.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from mixc.plan.vocab import layout
from mixc.stages.audio_tokens import AudioVocab
from mixc.stages.base import Context, Stage, Stats
from mixc.stages.pack import PackedSequences

MDS = "mds"
INDEX = "index.json"  # Streaming's index of an MDS folder
BLOCK_TOKENS = 1 << 22  # about this many tokens of rows are read and converted at a time


def columns(dtype: str, seq_len: int) -> dict[str, str]:
    return {"tokens": f"ndarray:{dtype}:{seq_len}", "loss_mask": f"ndarray:uint8:{seq_len}",
            "boundaries": "ndarray:int32", "lineage": "ndarray:int64"}


@dataclass(frozen=True)
class StreamInfo:
    """`stream.json`: what one compiled stream holds."""
    samples: int
    tokens: int  # real (non-pad) tokens
    dtype: str
    seq_len: int

    FILE: ClassVar[str] = "stream.json"

    def write(self, folder: Path) -> None:
        (folder / self.FILE).write_text(json.dumps(asdict(self)) + "\n")

    @classmethod
    def read(cls, folder: Path) -> StreamInfo:
        return cls(**json.loads((folder / cls.FILE).read_text()))


class ShardsStage(Stage):
    kind, version, doc = "shards", 2, "MDS shards"
    reads = ("shards", "interleave.markers")

    def run(self, ctx: Context, stats: Stats) -> None:
        from streaming import MDSWriter

        packed = PackedSequences.open(ctx.inputs[ctx.node.inputs[0]])
        audio = ctx.inputs_of("train_audio_tokenizer", "load_audio_tokenizer")
        codebook = AudioVocab.read(audio[0]).codebook_size if audio else None
        dtype = layout(packed.vocab, codebook, ctx.read("interleave.markers")).dtype
        compression = ctx.read("shards.compression")
        real, rows, seq_len = 0, packed.count, packed.seq_len
        with MDSWriter(out=str(ctx.out / MDS), columns=columns(dtype, seq_len),
                       compression=None if compression == "none" else compression, size_limit=ctx.read("shards.size"),
                       progress_bar=False, exist_ok=False) as out:
            step = max(1, BLOCK_TOKENS // max(seq_len, 1))
            lo = hi = 0
            for i in ctx.progress(range(rows), f"shards {ctx.subject}", rows):
                if i >= hi:  # a block of rows at a time: one read, one dtype conversion, one PAD count
                    lo, hi = i, min(i + step, rows)
                    block = packed.tokens(lo, hi).astype(dtype)
                    block_mask = packed.masks(lo, hi)
                    real += int(np.count_nonzero(block != packed.vocab.pad))
                out.write({"tokens": block[i - lo], "loss_mask": block_mask[i - lo],
                           "boundaries": packed.boundaries_of(i), "lineage": packed.lineage_of(i)})
        stats.items_in = stats.items_out = rows
        stats.counts["tokens"] = real
        StreamInfo(rows, real, dtype, seq_len).write(ctx.out)


def merge_indexes(folder: Path, parts: Sequence[str]) -> Path:
    """Writes `folder/index.json`, the union of the MDS folders `folder/<part>` (Streaming's
    `merge_index`: each shard's basename becomes `<part>/<basename>`), in the order of `parts`, so
    the same streams always give the same bytes. Returns its path."""
    from streaming.base.util import merge_index

    (folder / INDEX).unlink(missing_ok=True)  # merge_index moves its result into place, never over a file
    root = logging.getLogger()
    quiet = logging.NullHandler()  # merge_index logs through the root logger, which would print to stderr
    root.addHandler(quiet)
    try:
        merge_index([str(folder / part / INDEX) for part in parts], str(folder), keep_local=True)
    finally:
        root.removeHandler(quiet)
    return folder / INDEX
