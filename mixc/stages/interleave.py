"""Interleave: each document's chunks -> one token sequence, every chunk as audio codes OR text.

A document is one recording's chunks in order, X = [(A1, T1), ..., (An, Tn)]. Chunk i is emitted as
its audio codes (ids `audio_offset + code`) or as its transcript's text tokens, never both:

- `deterministic`:    A1 T2 A3 T4 ... (strict alternation starting with audio: n-1 switches);
- `stochastic(p)`:    each chunk audio with probability p; the first always audio (`first = audio`).

Marker tokens wrap every modality span the `markers` setting names (`<audio> ... </audio>`, `<text>
... </text>`). Loss mask: `all` trains on every token; `text_only` masks audio codes and the audio
markers (they stay in the context). A text chunk that follows another chunk is tokenised with a
leading space, so text spans read as running text.

Draws: a stochastic draw is seeded by (spec seed, recording id, draw index). A source the budget
passes over k times would see one draw k times; so for stochastic sampling this stage materialises
`draws` = the passes the budget needs (estimated from code counts and transcript lengths), each
with its own seed, and a pass over the stream meets a new draw. Deterministic sampling has one draw.
The draw count enters the stage's run key (not its plan key): a ratio change re-draws a stochastic
stream only when it needs more passes than it has draws.

Artifact: a token stream (see `mixc.stages.tokens`: tokens, loss mask, document ids = recording
index) whose lineage units are chunks, plus `interleave.json`: draws, modality switches per
document, audio/text token split.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from mixc import ir
from mixc.plan import budget
from mixc.plan.vocab import Layout, layout
from mixc.stages.audio_tokens import AudioCodes
from mixc.stages.base import Context, Stage, Stats
from mixc.stages.contamination import DROP_REASON, decontaminate_reads, overlapping_units
from mixc.stages.tokenizer import VocabFile, load_codec
from mixc.stages.tokens import TokenWriter

CHARS_PER_TEXT_TOKEN = 4.0  # only for estimating how many draws the budget needs


@dataclass(frozen=True)
class Spans:
    """Ids of the marker tokens around each modality (None: no markers for it) and the code offset."""
    audio_offset: int
    audio: tuple[int, int] | None
    text: tuple[int, int] | None

    @classmethod
    def of(cls, lay: Layout) -> "Spans":
        m = lay.markers
        audio = (m["<audio>"], m["</audio>"]) if "<audio>" in m else None
        text = (m["<text>"], m["</text>"]) if "<text>" in m else None
        return cls(lay.audio_offset, audio, text)


def modalities(n: int, sampling: ir.Sampling, rng: np.random.Generator | None) -> np.ndarray:
    """Which of n chunks are audio (True) under the sampling rule (a stochastic one draws from `rng`)."""
    if isinstance(sampling, ir.Deterministic):
        return np.arange(n) % 2 == 0
    if rng is None:
        raise ValueError("stochastic sampling needs a random generator to draw from")
    audio = rng.random(n) < sampling.p
    if n and sampling.first == "audio":
        audio[0] = True
    return audio


def draw_rng(seed: int, rec: str, draw: int) -> np.random.Generator:
    return np.random.default_rng([seed, int(rec, 16), draw])


def document(codes: list[np.ndarray], texts: list[np.ndarray], audio: np.ndarray, spans: Spans,
             loss: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One document's tokens, loss mask and each chunk's start (its lineage unit)."""
    parts, masks, starts, at = [], [], [], 0
    for is_audio, chunk_codes, text in zip(audio, codes, texts):
        if is_audio:
            body, marks = chunk_codes.astype(np.int64) + spans.audio_offset, spans.audio
            weight = 0 if loss == "text_only" else 1
        else:
            body, marks, weight = text.astype(np.int64), spans.text, 1
        piece = np.concatenate([[marks[0]], body, [marks[1]]]) if marks else body
        starts.append(at)
        parts.append(piece)
        masks.append(np.full(len(piece), weight, np.uint8))
        at += len(piece)
    if not parts:
        return np.zeros(0, np.uint32), np.zeros(0, np.uint8), np.zeros(0, np.int64)
    return np.concatenate(parts).astype(np.uint32), np.concatenate(masks), np.asarray(starts, np.int64)


def switches(audio: np.ndarray) -> int:
    return int(np.count_nonzero(audio[1:] != audio[:-1])) if len(audio) > 1 else 0


def needed_draws(spec: ir.Spec, name: str, code_counts: np.ndarray, text_chars: np.ndarray) -> int:
    """How many distinct draws the budget's passes over a stochastic stream need."""
    sampling = spec.interleave.sampling
    total = budget.total_tokens(spec)
    if total is None or not len(code_counts) or not isinstance(sampling, ir.Stochastic):
        return 1
    per_draw = float(np.sum(sampling.p * code_counts + (1 - sampling.p) * text_chars / CHARS_PER_TEXT_TOKEN))
    needed = budget.leaf_shares(spec.mixture).get(name, 0.0) * total
    return max(1, math.ceil(needed / max(per_draw, 1.0)))


class InterleaveStage(Stage):
    kind, version, doc = "interleave", 2, "one modality per chunk, markers, loss mask"
    reads = ("interleave",)

    @classmethod
    def declared_reads(cls, spec: ir.Spec) -> tuple[str, ...]:
        """Stochastic sampling draws from the seed; deterministic sampling reads none."""
        seed = ("seed",) if isinstance(spec.interleave.sampling, ir.Stochastic) else ()
        return cls.reads + seed + decontaminate_reads(spec)

    def fingerprint(self, ctx: Context, spec: ir.Spec) -> dict:
        """The number of draws: 1 for deterministic sampling (every draw is the same)."""
        if not isinstance(spec.interleave.sampling, ir.Stochastic):
            return {"draws": 1}
        texts, code_counts = AudioCodes.texts_and_lengths(ctx.input_of("encode"))
        return {"draws": needed_draws(spec, ctx.subject, code_counts,
                                      texts.str.len_chars().to_numpy().astype(np.float64))}

    def run(self, ctx: Context, stats: Stats) -> None:
        tokenizer = ctx.inputs_of("train_bpe", "load_text_tokenizer")[0]
        encoded = AudioCodes.open(ctx.input_of("encode"))
        chunks, codes, offsets = encoded.chunks, encoded.codes, encoded.offsets
        cfg: ir.Interleave = ctx.read("interleave")
        spans = Spans.of(layout(VocabFile.read(tokenizer), encoded.codebook_size, cfg.markers))
        draws = ctx.fingerprint["draws"]
        texts = self._texts(tokenizer, chunks)
        writer = TokenWriter(ctx.out, vocab_from=tokenizer, with_mask=True, with_units=True)
        counted = {"switches": 0, "chunks": 0, "audio_tokens": 0, "text_tokens": 0}
        groups = self._kept(ctx, stats, list(chunks.with_row_index("row").group_by("doc", maintain_order=True)))
        seed = ctx.read("seed") if isinstance(cfg.sampling, ir.Stochastic) else 0
        for draw in range(draws):
            for (doc,), group in ctx.progress(groups, f"interleave {ctx.subject}", len(groups)):
                rows = group["row"].to_list()
                audio = modalities(len(rows), cfg.sampling, draw_rng(seed, group["rec"][0], draw))
                doc_codes = [codes[offsets[r]:offsets[r + 1]] for r in rows]
                tokens, mask, starts = document(doc_codes, [texts[r] for r in rows], audio, spans, cfg.loss)
                writer.add(int(doc), tokens, mask, units=(starts, group["chunk"].to_numpy()))
                self._count(counted, audio, doc_codes, [texts[r] for r in rows])
        writer.close()
        docs = len(groups) * draws
        stats.items_in, stats.items_out = len(chunks), docs
        stats.counts.update(counted, draws=draws, documents=docs, tokens=int(writer.offsets[-1]),
                            switches_per_document=round(counted["switches"] / max(docs, 1), 3),
                            chunks_per_document=round(counted["chunks"] / max(docs, 1), 3))
        (ctx.out / "interleave.json").write_text(json.dumps(stats.counts, indent=2, sort_keys=True) + "\n")
    @staticmethod
    def _kept(ctx: Context, stats: Stats, groups: list) -> list:
        """The documents (recording or generated item: `rec` or `path` of its chunks) that overlap no
        eval set, when the spec decontaminates."""
        units = overlapping_units(ctx)
        recs, items = units.get("chunk", set()), units.get("rewrite", set()) | units.get("answer", set())
        kept = [(k, g) for k, g in groups if g["rec"][0] not in recs and g["path"][0] not in items]
        stats.drop(DROP_REASON, len(groups) - len(kept))
        return kept

    @staticmethod
    def _texts(tokenizer, chunks: pl.DataFrame) -> list[np.ndarray]:
        codec = load_codec(tokenizer)
        texts = [(" " + t if i else t) for t, i in zip(chunks["text"].to_list(), chunks["index"].to_list())]
        return [np.asarray(ids, np.uint32) for ids in codec.encode_batch(texts)] if texts else []

    @staticmethod
    def _count(counted: dict, audio: np.ndarray, codes: list[np.ndarray], texts: list[np.ndarray]) -> None:
        counted["switches"] += switches(audio)
        counted["chunks"] += len(audio)
        counted["audio_tokens"] += int(sum(len(c) for c, a in zip(codes, audio) if a))
        counted["text_tokens"] += int(sum(len(t) for t, a in zip(texts, audio) if not a))
