"""Token streams: the artifact between a tokenizing stage (tokenize, interleave) and packing.

`tokens.u32` holds every document's ids back to back (uint32, native order), `offsets.npy` the
n+1 document starts, `doc_ids.npy` each document's id (its lineage), optional `mask.u8` one loss
weight per token (absent: every token is trained on), optional `units.npy` + `unit_ids.npy` the
starts and ids of lineage units finer than documents (speech: chunks), and `vocab.json` the text
vocabulary. `TokenWriter` writes one; `TokenStream.open` reads it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mixc.plan.vocab import TextVocab
from mixc.stages.base import Context, Stage, Stats
from mixc.stages.contamination import DROP_REASON, decontaminate_reads, overlapping_units
from mixc.stages.text import Documents
from mixc.stages.tokenizer import Codec, VocabFile, load_codec

TOKENS, OFFSETS, DOC_IDS, MASK, UNITS, UNIT_IDS = "tokens.u32", "offsets.npy", "doc_ids.npy", "mask.u8", \
    "units.npy", "unit_ids.npy"


class TokenWriter:
    """Appends documents to a token stream without holding their tokens in memory."""

    def __init__(self, folder: Path, vocab_from: Path, with_mask: bool = False, with_units: bool = False):
        self.folder = folder
        self.vocab = VocabFile.carry(vocab_from, folder)
        self.tokens = open(folder / TOKENS, "wb")  # noqa: SIM115 - open until close()
        self.mask = open(folder / MASK, "wb") if with_mask else None  # noqa: SIM115 - open until close()
        self.offsets = [0]
        self.doc_ids: list[int] = []
        self.units: list[np.ndarray] | None = [] if with_units else None
        self.unit_ids: list[np.ndarray] = []

    def add(self, doc_id: int, ids: np.ndarray, mask: np.ndarray | None = None,
            units: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """One document: its ids, its loss mask, and its lineage units (starts within it, ids)."""
        if self.units is not None and units is not None:
            self.units.append(units[0] + self.offsets[-1])
            self.unit_ids.append(units[1])
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
        if self.units is not None:
            for name, parts in ((UNITS, self.units), (UNIT_IDS, self.unit_ids)):
                np.save(self.folder / name, np.concatenate(parts) if parts else np.zeros(0, np.int64))


@dataclass(frozen=True)
class TokenStream:
    tokens: np.ndarray  # memory-mapped
    offsets: np.ndarray
    doc_ids: np.ndarray
    mask: np.ndarray | None
    vocab: TextVocab
    units: np.ndarray | None = None  # lineage units' starts, when finer than documents
    unit_ids: np.ndarray | None = None

    @classmethod
    def open(cls, folder: Path) -> TokenStream:
        def mapped(name: str, dtype) -> np.ndarray:
            path = folder / name
            return np.memmap(path, dtype=dtype, mode="r") if path.stat().st_size else np.zeros(0, dtype)
        mask = mapped(MASK, np.uint8) if (folder / MASK).exists() else None
        units = (np.load(folder / UNITS), np.load(folder / UNIT_IDS)) if (folder / UNITS).exists() else (None, None)
        return cls(mapped(TOKENS, np.uint32), np.load(folder / OFFSETS), np.load(folder / DOC_IDS), mask,
                   VocabFile.read(folder), *units)


_codec: Codec | None = None  # this process's tokenizer, loaded by _init_worker


def _init_worker(folder: str) -> None:
    global _codec
    _codec = load_codec(Path(folder))


def _encode(item: tuple[list[int], list[str]]) -> tuple[list[int], list[np.ndarray]]:
    ids, texts = item
    if _codec is None:
        raise RuntimeError("_init_worker loads the tokenizer before _encode runs")
    return ids, [np.asarray(x, dtype=np.uint32) for x in _codec.encode_batch(texts)]


def _batches(folder: Path, size: int, drop: AbstractSet[int] = frozenset()) -> Iterator[tuple[list[int], list[str]]]:
    """The documents in batches of `size`, less the ids in `drop`."""
    for batch in Documents.batches(folder):
        ids, texts = batch.column(0).to_pylist(), batch.column(1).to_pylist()
        if drop:
            kept = [i for i, d in enumerate(ids) if d not in drop]
            ids, texts = [ids[i] for i in kept], [texts[i] for i in kept]
        for i in range(0, len(ids), size):
            yield ids[i:i + size], texts[i:i + size]


def _windows(items: Iterator, size: int) -> Iterator[list]:
    """Bounded read-ahead: mapping the whole iterator at once would pull the corpus into memory."""
    while window := list(itertools.islice(items, size)):
        yield window


class TokenizeStage(Stage):
    """Encodes documents with the text tokenizer, in `workers` processes, keeping document order."""
    kind, version, doc = "tokenize", 2, "text tokens"
    batch_docs = 256

    @classmethod
    def declared_reads(cls, spec) -> tuple[str, ...]:
        return cls.reads + decontaminate_reads(spec)

    def run(self, ctx: Context, stats: Stats) -> None:
        docs = (ctx.inputs_of("dedup") or ctx.inputs_of("read"))[0]
        tokenizer = ctx.inputs_of("train_bpe", "load_text_tokenizer")[0]
        drop = {int(u) for kind, units in overlapping_units(ctx).items() for u in units if kind in ("read", "dedup")}
        writer = TokenWriter(ctx.out, vocab_from=tokenizer)
        total = Documents.count(docs)
        progress = ctx.progress(range(total), f"tokenize {ctx.subject}", total)
        with self._encoder(ctx, tokenizer) as encode:
            for window in _windows(_batches(docs, self.batch_docs, drop), 4 * ctx.workers):
                for ids, arrays in encode(window):
                    for doc_id, array in zip(ids, arrays):
                        writer.add(doc_id, array)
                        next(progress, None)
        writer.close()
        stats.items_in, stats.items_out = total, len(writer.doc_ids)
        stats.drop(DROP_REASON, total - len(writer.doc_ids))
        stats.counts["tokens"] = writer.offsets[-1]

    @staticmethod
    @contextmanager
    def _encoder(ctx: Context, tokenizer: Path) -> Iterator[Callable]:
        if ctx.workers <= 1:
            _init_worker(str(tokenizer))
            yield lambda window: map(_encode, window)
            return
        with ctx.worker_pool(ctx.workers, _init_worker, (str(tokenizer),)) as pool:
            yield lambda window: pool.map(_encode, window)
