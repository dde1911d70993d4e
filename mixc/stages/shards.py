"""Shards: packed sequences -> one MDS stream, written with Streaming's `MDSWriter`.

Columns: `tokens` (the narrowest unsigned dtype the joint vocabulary allows, exactly seq_len ids),
`loss_mask` (uint8, 1 = a target), `boundaries` (int32 document starts), `lineage` (int64 document ids).
Compression and shard size come from the spec's `shards` block.
"""

from __future__ import annotations

import json

import numpy as np

from mixc.stages.audio_tokens import read_audio_vocab
from mixc.stages.base import Context, StageRun, Stats
from mixc.plan.vocab import TextVocab, layout

STREAM = "mds"
BLOCK_TOKENS = 1 << 22  # about this many tokens of rows are read and converted at a time


def columns(dtype: str, seq_len: int) -> dict[str, str]:
    return {"tokens": f"ndarray:{dtype}:{seq_len}", "loss_mask": f"ndarray:uint8:{seq_len}",
            "boundaries": "ndarray:int32", "lineage": "ndarray:int64"}


def _count(path, dtype, width: int) -> int:
    return path.stat().st_size // (np.dtype(dtype).itemsize * width)


def _read_rows(path, dtype, width: int, lo: int, hi: int) -> np.ndarray:
    """Rows lo..hi-1 of a (n x width) file, with plain file reads: pages touched through a memory map
    stay in this process's RSS, which would then grow with the corpus."""
    size = np.dtype(dtype).itemsize * width
    return np.fromfile(path, dtype, (hi - lo) * width, offset=lo * size).reshape(-1, width)


class WriteShards(StageRun):
    kind = "shards"

    def run(self, ctx: Context, stats: Stats) -> None:
        from streaming import MDSWriter

        packed = ctx.inputs[ctx.stage.inputs[0]]
        seq_len = json.loads((packed / "pack.json").read_text())["seq_len"]
        text = TextVocab(**json.loads((packed / "vocab.json").read_text()))
        audio = ctx.inputs_of("train_audio_tokenizer", "load_audio_tokenizer")
        dtype = layout(ctx.spec, text, read_audio_vocab(audio[0])["codebook_size"] if audio else None).dtype
        rows = _count(packed / "seqs.u32", np.uint32, seq_len)
        bounds, bidx = np.load(packed / "boundaries.npy"), np.load(packed / "boundaries_idx.npy")
        lineage, lidx = np.load(packed / "lineage.npy"), np.load(packed / "lineage_idx.npy")
        shards = ctx.spec.shards
        compression = None if shards.compression == "none" else shards.compression
        real = 0
        with MDSWriter(out=str(ctx.out / STREAM), columns=columns(dtype, seq_len), compression=compression,
                       size_limit=shards.size, progress_bar=False, exist_ok=False) as out:
            step = max(1, BLOCK_TOKENS // max(seq_len, 1))
            lo = hi = 0
            for i in ctx.progress(range(rows), f"shards {ctx.stage.subject}", rows):
                if i >= hi:  # a block of rows at a time: one read, one dtype conversion, one PAD count
                    lo, hi = i, min(i + step, rows)
                    block = _read_rows(packed / "seqs.u32", np.uint32, seq_len, lo, hi).astype(dtype)
                    block_mask = _read_rows(packed / "mask.u8", np.uint8, seq_len, lo, hi)
                    real += int(np.count_nonzero(block != text.pad))
                out.write({"tokens": block[i - lo], "loss_mask": block_mask[i - lo],
                           "boundaries": bounds[bidx[i]:bidx[i + 1]], "lineage": lineage[lidx[i]:lidx[i + 1]]})
        stats.items_in = stats.items_out = rows
        stats.counts["tokens"] = real
        (ctx.out / "stream.json").write_text(json.dumps(
            {"samples": rows, "tokens": stats.counts["tokens"], "dtype": dtype, "seq_len": seq_len}) + "\n")
