"""Packing: a token stream -> fixed `seq_len` sequences, in bounded memory.

Documents are concatenated with EOS after each and cut every `seq_len` tokens; a document may span
sequences. Nothing is padded except the final remainder, which `pack.remainder` drops or pads (PAD
is never a target). Each sequence keeps its loss mask, its segment starts (`boundaries`: always 0,
for the first, possibly continued, document, then every document that starts inside it) and the
ids of every document it holds (`lineage`); for a stream with lineage units (speech: chunks), the
ids of every unit it holds instead.

Artifact (`PackWriter` writes it, `PackedSequences.open` reads it): `seqs.u32` (n x seq_len),
`mask.u8` (n x seq_len), `boundaries.npy` + `boundaries_idx.npy`, `lineage.npy` + `lineage_idx.npy`
(flat values + n+1 starts), `pack.json` (seq_len, sequences), `vocab.json`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mixc.plan.vocab import TextVocab
from mixc.stages.base import Context, Stage, Stats
from mixc.stages.tokenizer import VocabFile
from mixc.stages.tokens import TokenStream

SEQS, MASK, META = "seqs.u32", "mask.u8", "pack.json"

CHUNK_TOKENS = 1 << 22


@dataclass
class _Carry:
    """Tokens not yet in a full sequence, with the documents they belong to."""
    tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint32))
    mask: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    starts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # may be < 0: a continued doc
    docs: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    unit_starts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # lineage units, likewise
    unit_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def _running(starts: np.ndarray, ids: np.ndarray, used: int) -> tuple[np.ndarray, np.ndarray]:
    """The segments (starts, ids) from the one running at `used` on, shifted to start there."""
    keep = max(int(np.searchsorted(starts, used, side="right")) - 1, 0)
    return starts[keep:] - used, ids[keep:]


class PackWriter:
    def __init__(self, folder: Path, seq_len: int, vocab_from: Path):
        self.folder, self.seq_len = folder, seq_len
        VocabFile.carry(vocab_from, folder)
        self.seqs = open(folder / SEQS, "wb")  # noqa: SIM115 - open until close()
        self.mask = open(folder / MASK, "wb")  # noqa: SIM115 - open until close()
        # per write: the flat values of its sequences, and each sequence's number of values
        self.bounds: list[tuple[np.ndarray, np.ndarray]] = []
        self.lineage: list[tuple[np.ndarray, np.ndarray]] = []
        self.count = 0

    def write(self, tokens: np.ndarray, mask: np.ndarray, starts: np.ndarray, docs: np.ndarray,
              units: tuple[np.ndarray, np.ndarray] | None = None) -> int:
        """Writes every full sequence of `tokens`; returns how many tokens it consumed.

        Sequence i covers [lo, hi) = [i * seq_len, (i + 1) * seq_len). Its boundaries are 0 and then
        every start with lo < start < hi, less lo; its lineage every document (or unit, when `units`
        gives their starts and ids) with start < hi and end > lo (a segment ends where the next
        starts). Starts are sorted, so both are index ranges.
        """
        n = len(tokens) // self.seq_len
        if n == 0:
            return 0
        self.seqs.write(np.ascontiguousarray(tokens[: n * self.seq_len], dtype=np.uint32).data)
        self.mask.write(np.ascontiguousarray(mask[: n * self.seq_len], dtype=np.uint8).data)
        ends = np.append(starts[1:], np.iinfo(np.int64).max)
        lo = np.arange(n, dtype=np.int64) * self.seq_len
        hi = lo + self.seq_len
        below_hi = np.searchsorted(starts, hi, side="left")  # starts[:below_hi] < hi
        inner = np.searchsorted(starts, lo, side="right")  # starts[inner:] > lo
        alive = np.searchsorted(ends, lo, side="right")  # ends[alive:] > lo
        values, counts = _ranges(inner, below_hi, starts, lo, lead_zero=True)
        self.bounds.append((values.astype(np.int32), counts))
        if units is not None:
            starts, docs = units
            ends = np.append(starts[1:], np.iinfo(np.int64).max)
            below_hi = np.searchsorted(starts, hi, side="left")
            alive = np.searchsorted(ends, lo, side="right")
        self.lineage.append(_ranges(alive, below_hi, docs))
        self.count += n
        return n * self.seq_len

    def close(self) -> None:
        self.seqs.close()
        self.mask.close()
        for name, parts, dtype in (("boundaries", self.bounds, np.int32), ("lineage", self.lineage, np.int64)):
            flat = np.concatenate([v for v, _ in parts]).astype(dtype) if self.count else np.zeros(0, dtype)
            idx = np.zeros(self.count + 1, np.int64)
            if self.count:
                np.cumsum(np.concatenate([c for _, c in parts]), out=idx[1:])
            np.save(self.folder / f"{name}.npy", flat)
            np.save(self.folder / f"{name}_idx.npy", idx)
        (self.folder / META).write_text(json.dumps({"seq_len": self.seq_len, "sequences": self.count}) + "\n")


def read_rows(path: Path, dtype, width: int, lo: int, hi: int) -> np.ndarray:
    """Rows lo..hi-1 of a (n x width) file, with plain file reads: pages touched through a memory map
    stay in this process's RSS, which would then grow with the corpus."""
    size = np.dtype(dtype).itemsize * width
    return np.fromfile(path, dtype, (hi - lo) * width, offset=lo * size).reshape(-1, width)


@dataclass(frozen=True)
class PackedSequences:
    """The pack artifact, read: rows of tokens and masks in blocks, each row's boundaries and lineage."""
    folder: Path
    seq_len: int
    count: int
    vocab: TextVocab
    bounds: np.ndarray
    bounds_idx: np.ndarray
    lineage: np.ndarray
    lineage_idx: np.ndarray

    @classmethod
    def open(cls, folder: Path) -> PackedSequences:
        meta = json.loads((folder / META).read_text())
        return cls(folder, meta["seq_len"], meta["sequences"], VocabFile.read(folder),
                   np.load(folder / "boundaries.npy"), np.load(folder / "boundaries_idx.npy"),
                   np.load(folder / "lineage.npy"), np.load(folder / "lineage_idx.npy"))

    def tokens(self, lo: int, hi: int) -> np.ndarray:
        return read_rows(self.folder / SEQS, np.uint32, self.seq_len, lo, hi)

    def masks(self, lo: int, hi: int) -> np.ndarray:
        return read_rows(self.folder / MASK, np.uint8, self.seq_len, lo, hi)

    def boundaries_of(self, row: int) -> np.ndarray:
        return self.bounds[self.bounds_idx[row]:self.bounds_idx[row + 1]]

    def lineage_of(self, row: int) -> np.ndarray:
        return self.lineage[self.lineage_idx[row]:self.lineage_idx[row + 1]]


def _ranges(first: np.ndarray, stop: np.ndarray, values: np.ndarray, lo: np.ndarray | None = None,
            lead_zero: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """values[first[i]:stop[i]] (less lo[i], after a 0 when lead_zero) for every i, back to back; and
    each one's length."""
    lengths = np.maximum(stop - first, 0)
    extra = 1 if lead_zero else 0
    counts = lengths + extra
    total = int(counts.sum())
    seq = np.repeat(np.arange(len(first)), counts)
    offset = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)  # place within its row
    index = np.repeat(first, counts) + offset - extra
    if lead_zero:
        head = offset == 0
        index[head] = 0  # any valid index; overwritten below
    out = values[index] if len(values) else np.zeros(total, values.dtype)
    if lo is not None:
        out = out - lo[seq]
    if lead_zero:
        out[head] = 0
    return out, counts


def _doc_ranges(offsets: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive document ranges of about CHUNK_TOKENS tokens each."""
    bounds = np.searchsorted(offsets, np.arange(0, offsets[-1] + CHUNK_TOKENS, CHUNK_TOKENS), side="left")
    cuts = sorted(set(int(b) for b in np.clip(bounds, 0, len(offsets) - 1)) | {0, len(offsets) - 1})
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


def _read(array: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """array[lo:hi] as an ordinary array. A memory-mapped stream is read with plain file reads: pages
    touched through the map stay in this process's RSS, which would then grow with the corpus."""
    if isinstance(array, np.memmap) and array.filename is not None and hi > lo:
        return np.fromfile(array.filename, array.dtype, int(hi - lo), offset=array.offset + int(lo) * array.itemsize)
    return np.asarray(array[lo:hi])


def _with_eos(stream: TokenStream, a: int, b: int, eos: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Documents a..b-1 with EOS after each: tokens, mask, and each document's start."""
    base = stream.offsets[a]
    tokens = _read(stream.tokens, base, stream.offsets[b])
    mask = _read(stream.mask, base, stream.offsets[b]) if stream.mask is not None \
        else np.ones(len(tokens), np.uint8)
    ends = stream.offsets[a + 1: b + 1] - base
    tokens = np.insert(tokens, ends, eos)
    mask = np.insert(mask, ends, 1)
    starts = stream.offsets[a:b] - base + np.arange(b - a)
    return tokens, mask, starts


def _units(offsets: np.ndarray, units: np.ndarray, ids: np.ndarray, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    """The lineage units (starts, ids) of documents a..b-1 at their positions once EOS follows each
    document."""
    lo, hi = np.searchsorted(units, [offsets[a], offsets[b]], side="left")
    if b == len(offsets) - 1:
        hi = len(units)
    at = units[lo:hi]
    doc = np.searchsorted(offsets, at, side="right") - 1  # the document each unit is in
    return at - offsets[a] + (doc - a), ids[lo:hi]


class PackStage(Stage):
    kind, version, doc = "pack", 2, "fixed-length sequences"
    reads = ("pack",)

    def run(self, ctx: Context, stats: Stats) -> None:
        source = ctx.inputs[ctx.node.inputs[0]]
        stream = TokenStream.open(source)
        eos, pad = stream.vocab.eos, stream.vocab.pad
        writer = PackWriter(ctx.out, ctx.read("pack.seq_len"), vocab_from=source)
        carry = _Carry()
        ranges = _doc_ranges(stream.offsets)
        for a, b in ctx.progress(ranges, f"pack {ctx.subject}", len(ranges)):
            tokens, mask, starts = _with_eos(stream, a, b, eos)
            shift = len(carry.tokens)
            tokens = np.concatenate([carry.tokens, tokens])
            mask = np.concatenate([carry.mask, mask])
            starts = np.concatenate([carry.starts, starts + shift])
            docs = np.concatenate([carry.docs, stream.doc_ids[a:b]])
            units = None
            if stream.units is not None and stream.unit_ids is not None:  # a stream has both or neither
                unit_starts, unit_ids = _units(stream.offsets, stream.units, stream.unit_ids, a, b)
                units = (np.concatenate([carry.unit_starts, unit_starts + shift]),
                         np.concatenate([carry.unit_ids, unit_ids]))
            used = writer.write(tokens, mask, starts, docs, units)
            carry = _Carry(tokens[used:], mask[used:], *_running(starts, docs, used),
                           *(_running(*units, used) if units else ()))
        self._remainder(ctx, stats, writer, carry, pad)
        writer.close()
        stats.items_in = len(stream.doc_ids)
        stats.items_out = writer.count
        stats.counts["tokens"] = int(stream.offsets[-1]) + len(stream.doc_ids)

    @staticmethod
    def _remainder(ctx: Context, stats: Stats, writer: PackWriter, carry: _Carry, pad: int) -> None:
        left = len(carry.tokens)
        if not left:
            return
        if ctx.read("pack.remainder") == "drop":
            stats.drop("remainder tokens", left)
            stats.counts["dropped_tokens"] = left
            return
        fill = writer.seq_len - left
        units = (carry.unit_starts, carry.unit_ids) if len(carry.unit_ids) else None
        writer.write(np.concatenate([carry.tokens, np.full(fill, pad, np.uint32)]),
                     np.concatenate([carry.mask, np.zeros(fill, np.uint8)]), carry.starts, carry.docs, units)
        stats.counts["pad_tokens"] = fill
