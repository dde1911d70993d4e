"""Token streams: the artifact between a tokenizing stage and packing.

`tokens.u32` holds every document's ids back to back (uint32, native order), `offsets.npy` the
n+1 document starts, `doc_ids.npy` each document's id (its lineage), optional `mask.u8` one loss
weight per token (absent: every token is trained on), and `vocab.json` the text vocabulary.
"""

from __future__ import annotations

import json
import shutil
import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from mixc.stages.base import Context, StageRun, Stats
from mixc.stages.text import count_docs, iter_docs
from mixc.stages.tokenizer import load_codec

TOKENS, OFFSETS, DOC_IDS, MASK = "tokens.u32", "offsets.npy", "doc_ids.npy", "mask.u8"


class TokenWriter:
    """Appends documents to a token stream without holding it in memory."""

    def __init__(self, folder: Path, with_mask: bool = False):
        self.folder = folder
        self.tokens = open(folder / TOKENS, "wb")
        self.mask = open(folder / MASK, "wb") if with_mask else None
        self.offsets = [0]
        self.doc_ids: list[int] = []

    def add(self, doc_id: int, ids: np.ndarray, mask: np.ndarray | None = None) -> None:
        self.tokens.write(np.asarray(ids, dtype=np.uint32).tobytes())
        if self.mask is not None:
            self.mask.write(np.asarray(mask, dtype=np.uint8).tobytes())
        self.offsets.append(self.offsets[-1] + len(ids))
        self.doc_ids.append(doc_id)

    def close(self) -> None:
        self.tokens.close()
        if self.mask is not None:
            self.mask.close()
        np.save(self.folder / OFFSETS, np.asarray(self.offsets, dtype=np.int64))
        np.save(self.folder / DOC_IDS, np.asarray(self.doc_ids, dtype=np.int64))


@dataclass(frozen=True)
class TokenStream:
    tokens: np.ndarray  # memory-mapped
    offsets: np.ndarray
    doc_ids: np.ndarray
    mask: np.ndarray | None
    vocab: dict
    units: np.ndarray | None = None  # lineage units' starts, when finer than documents
    unit_ids: np.ndarray | None = None

    @classmethod
    def open(cls, folder: Path) -> "TokenStream":
        def mapped(name: str, dtype) -> np.ndarray:
            path = folder / name
            return np.memmap(path, dtype=dtype, mode="r") if path.stat().st_size else np.zeros(0, dtype)
        mask = mapped(MASK, np.uint8) if (folder / MASK).exists() else None
        units = (np.load(folder / "units.npy"), np.load(folder / "unit_ids.npy")) if (folder / "units.npy").exists() \
            else (None, None)
        return cls(mapped(TOKENS, np.uint32), np.load(folder / OFFSETS), np.load(folder / DOC_IDS), mask,
                   json.loads((folder / "vocab.json").read_text()), *units)


_codec = None


def _init_worker(folder: str) -> None:
    global _codec
    _codec = load_codec(Path(folder))


def _encode(item: tuple[list[int], list[str]]) -> tuple[list[int], list[np.ndarray]]:
    ids, texts = item
    return ids, [np.asarray(x, dtype=np.uint32) for x in _codec.encode_batch(texts)]


def _batches(folder: Path, size: int) -> Iterator[tuple[list[int], list[str]]]:
    for batch in iter_docs(folder):
        ids, texts = batch.column(0).to_pylist(), batch.column(1).to_pylist()
        for i in range(0, len(ids), size):
            yield ids[i:i + size], texts[i:i + size]


def _windows(items: Iterator, size: int) -> Iterator[list]:
    """Bounded read-ahead: Pool.imap would pull the whole corpus into memory."""
    while window := list(itertools.islice(items, size)):
        yield window


class Tokenize(StageRun):
    """Encodes documents with the text tokenizer, in `workers` processes, keeping document order."""
    kind = "tokenize"
    batch_docs = 256

    def run(self, ctx: Context, stats: Stats) -> None:
        docs = (ctx.inputs_of("dedup") or ctx.inputs_of("read"))[0]
        tokenizer = ctx.inputs_of("train_bpe", "load_text_tokenizer")[0]
        shutil.copyfile(tokenizer / "vocab.json", ctx.out / "vocab.json")
        writer = TokenWriter(ctx.out)
        total = count_docs(docs)
        progress = ctx.progress(range(total), f"tokenize {ctx.stage.subject}", total)
        with self._encoder(ctx.workers, tokenizer) as encode:
            for window in _windows(_batches(docs, self.batch_docs), 4 * ctx.workers):
                for ids, arrays in encode(window):
                    for doc_id, array in zip(ids, arrays):
                        writer.add(doc_id, array)
                        next(progress, None)
        writer.close()
        stats.items_in = stats.items_out = total
        stats.counts["tokens"] = writer.offsets[-1]

    @staticmethod
    @contextmanager
    def _encoder(workers: int, tokenizer: Path) -> Iterator[Callable]:
        if workers <= 1:
            _init_worker(str(tokenizer))
            yield lambda window: map(_encode, window)
            return
        with get_context("spawn").Pool(workers, _init_worker, (str(tokenizer),)) as pool:
            yield lambda window: pool.map(_encode, window)
