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

from mixc import ir
from mixc.plan.vocab import TextVocab
from mixc.stages.base import Context, Stage, Stats
from mixc.stages.tokenizer import VocabFile
from mixc.stages.tokens import TokenStream

SEQS, MASK, META, HELDOUT = "seqs.u32", "mask.u8", "pack.json", "heldout"

CHUNK_TOKENS = 1 << 22


@dataclass
class _Segment:
    """Tokens with the documents they belong to: what is fed to a sequence writer, and what is carried
    until a sequence is full."""
    tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint32))
    mask: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    starts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # may be < 0: a continued doc
    docs: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    unit_starts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # lineage units, likewise
    unit_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def select(self, chosen: np.ndarray) -> _Segment:
        """The chosen documents (a boolean per document) with their units, back to back."""
        lengths = np.diff(np.append(self.starts, len(self.tokens)))
        kept = lengths * chosen
        moved = np.cumsum(kept) - kept  # each chosen document's new start
        unit_doc = np.searchsorted(self.starts, self.unit_starts, side="right") - 1
        keep = chosen[unit_doc]
        unit_doc = unit_doc[keep]
        take = np.repeat(chosen, lengths)
        return _Segment(self.tokens[take], self.mask[take], moved[chosen], self.docs[chosen],
                        self.unit_starts[keep] - self.starts[unit_doc] + moved[unit_doc], self.unit_ids[keep])


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


def _segment(stream: TokenStream, a: int, b: int, eos: int) -> _Segment:
    """Documents a..b-1 with EOS after each, with their ids and, for a stream that has them, their
    lineage units at their positions once EOS follows each document."""
    base = stream.offsets[a]
    tokens = _read(stream.tokens, base, stream.offsets[b])
    mask = _read(stream.mask, base, stream.offsets[b]) if stream.mask is not None \
        else np.ones(len(tokens), np.uint8)
    ends = stream.offsets[a + 1: b + 1] - base
    starts = stream.offsets[a:b] - base + np.arange(b - a)
    segment = _Segment(np.insert(tokens, ends, eos), np.insert(mask, ends, 1), starts, stream.doc_ids[a:b])
    if stream.units is not None and stream.unit_ids is not None:  # a stream has both or neither
        lo, hi = np.searchsorted(stream.units, [stream.offsets[a], stream.offsets[b]], side="left")
        if b == len(stream.offsets) - 1:
            hi = len(stream.units)
        at = stream.units[lo:hi]
        doc = np.searchsorted(stream.offsets, at, side="right") - 1  # the document each unit is in
        segment.unit_starts, segment.unit_ids = at - base + (doc - a), stream.unit_ids[lo:hi]
    return segment


class _Lane:
    """A sequence writer and the tokens it carries until the next sequence is full."""

    def __init__(self, writer: PackWriter, units: bool):
        self.writer, self.units, self.carry = writer, units, _Segment()

    def feed(self, seg: _Segment) -> None:
        carry, shift = self.carry, len(self.carry.tokens)
        tokens = np.concatenate([carry.tokens, seg.tokens])
        mask = np.concatenate([carry.mask, seg.mask])
        starts = np.concatenate([carry.starts, seg.starts + shift])
        docs = np.concatenate([carry.docs, seg.docs])
        units = (np.concatenate([carry.unit_starts, seg.unit_starts + shift]),
                 np.concatenate([carry.unit_ids, seg.unit_ids])) if self.units else None
        used = self.writer.write(tokens, mask, starts, docs, units)
        self.carry = _Segment(tokens[used:], mask[used:], *_running(starts, docs, used),
                              *(_running(*units, used) if units else ()))

    def finish(self, remainder: str, pad: int) -> dict[str, int]:
        """Drops or pads the tokens left over, closes the writer; the counts of what it did."""
        left, carry = len(self.carry.tokens), self.carry
        if left and remainder == "pad":
            fill = self.writer.seq_len - left
            units = (carry.unit_starts, carry.unit_ids) if len(carry.unit_ids) else None
            self.writer.write(np.concatenate([carry.tokens, np.full(fill, pad, np.uint32)]),
                              np.concatenate([carry.mask, np.zeros(fill, np.uint8)]), carry.starts, carry.docs, units)
        self.writer.close()
        if not left:
            return {}
        return {"pad_tokens": self.writer.seq_len - left} if remainder == "pad" else {"dropped_tokens": left}


def held_out(doc_ids: np.ndarray, share: float, seed: int, stream: str) -> np.ndarray:
    """Which documents are held out of training: each document id draws a uniform number from a
    generator seeded by (seed, stream), and those below `share` are held out; at least one (the
    lowest draw) when the stream has two documents or more. Every pass (draw) over a document shares
    its id, so all of them are held out together."""
    if not len(doc_ids):
        return np.zeros(0, bool)
    uniform = np.random.default_rng([seed, *stream.encode()]).random(int(doc_ids.max()) + 1)[doc_ids]
    held = uniform < share
    if not held.any() and len(np.unique(doc_ids)) > 1:
        held = doc_ids == doc_ids[np.argmin(uniform)]
    return held


class PackStage(Stage):
    """With `eval.heldout`, the held-out documents are packed the same way into `heldout/` (their
    remainder padded, so every held-out token is scored) and never reach the training sequences."""
    kind, version, doc = "pack", 3, "fixed-length sequences"
    reads = ("pack",)

    @classmethod
    def declared_reads(cls, spec: ir.Spec) -> tuple[str, ...]:
        return cls.reads + (("eval.heldout", "seed") if spec.eval.heldout else ())

    def run(self, ctx: Context, stats: Stats) -> None:
        source = ctx.inputs[ctx.node.inputs[0]]
        stream = TokenStream.open(source)
        eos, pad = stream.vocab.eos, stream.vocab.pad
        seq_len, units = ctx.read("pack.seq_len"), stream.units is not None
        train = _Lane(PackWriter(ctx.out, seq_len, vocab_from=source), units)
        share = ctx.read("eval.heldout") if ctx.declares("eval.heldout") else 0.0
        held, heldout = None, None
        if share:
            held = held_out(stream.doc_ids, share, ctx.read("seed"), ctx.subject)
            (ctx.out / HELDOUT).mkdir()
            heldout = _Lane(PackWriter(ctx.out / HELDOUT, seq_len, vocab_from=source), units)
        ranges = _doc_ranges(stream.offsets)
        for a, b in ctx.progress(ranges, f"pack {ctx.subject}", len(ranges)):
            seg = _segment(stream, a, b, eos)
            if held is None or heldout is None or not held[a:b].any():
                train.feed(seg)
                continue
            train.feed(seg.select(~held[a:b]))
            heldout.feed(seg.select(held[a:b]))
        counts = train.finish(ctx.read("pack.remainder"), pad)
        stats.drop("remainder tokens", counts.get("dropped_tokens", 0))
        stats.counts.update(counts)
        if held is not None and heldout is not None:
            heldout.finish("pad", pad)
            stats.counts.update(heldout_documents=int(held.sum()), heldout_sequences=heldout.writer.count)
        stats.items_in = len(stream.doc_ids)
        stats.items_out = train.writer.count
        stats.counts["tokens"] = int(stream.offsets[-1]) + len(stream.doc_ids)
