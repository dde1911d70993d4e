"""Contamination: word n-grams an eval set shares with the training text, attributed to the stage
that brought them in.

Text is normalised as lm-evaluation-harness's decontamination does: lower case, punctuation removed,
split on whitespace. An eval item's text is its question followed by its gold answer; a training
unit is a document of a text source (`read` / `dedup`), a recording's transcript (its chunks in
order, `chunk`) or a generator's item (question and answer, or rewrite: `rewrite` / `answer`). An
item is contaminated at n when one of its word n-grams occurs in a training unit, for n from
`MIN_N` (6) to `MAX_N` (13), the range the paper reports; `longest` is the longest such n. Only the
n-grams of the eval items are held in memory (a set of hashed 6-grams, then each candidate is
extended), so a scan is one pass over the training text.

With `eval.decontaminate = N`, the stages that tokenise a leaf's text (`tokenize`, `interleave`)
take the contamination stages as inputs and drop the leaf's documents listed with `longest >= N`
(`overlapping_units`), counted as "overlaps an eval set".

Artifact (`Overlaps`): `overlaps.parquet`, one row per (item, training unit) that share an n-gram
of at least MIN_N words: `item`, `question`, `stage` (the training stage id), `unit` (its id: doc id,
recording, generated item), `longest`, `ngram` (the longest shared words); `contamination.json`:
per stage, items contaminated at MIN_N and at MAX_N words.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from mixc.stages.base import Context, Stage, Stats

MIN_N, MAX_N = 6, 13
PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")
TRAINING_KINDS = ("read", "dedup", "chunk", "rewrite", "answer")


def words(text: str) -> list[str]:
    """lm-eval's decontamination normalisation: lower case, punctuation removed, whitespace split."""
    return PUNCTUATION.sub("", text.lower()).split()


class EvalNgrams:
    """The eval items' n-grams (MIN_N..MAX_N words), found in a training text by one pass."""

    def __init__(self, items: list[list[str]]):
        self.items = items
        self.starts: dict[tuple[str, ...], list[tuple[int, int]]] = {}  # 6-gram -> (item, position)
        for i, toks in enumerate(items):
            for p in range(len(toks) - MIN_N + 1):
                self.starts.setdefault(tuple(toks[p:p + MIN_N]), []).append((i, p))

    def matches(self, toks: list[str]) -> dict[int, tuple[int, str]]:
        """item -> (the longest n-gram it shares with `toks`, capped at MAX_N, and its words)."""
        found: dict[int, tuple[int, str]] = {}
        for q in range(len(toks) - MIN_N + 1):
            for i, p in self.starts.get(tuple(toks[q:q + MIN_N]), ()):
                item, n = self.items[i], MIN_N
                while n < MAX_N and p + n < len(item) and q + n < len(toks) and item[p + n] == toks[q + n]:
                    n += 1
                if n > found.get(i, (0, ""))[0]:
                    found[i] = (n, " ".join(item[p:p + n]))
        return found


def training_units(kind: str, folder: Path) -> Iterator[tuple[str, str]]:
    """(unit id, text) of a training stage's artifact."""
    if kind in ("read", "dedup"):
        from mixc.stages.text import Documents
        for batch in Documents.batches(folder):
            ids, texts = batch.column("doc_id").to_pylist(), batch.column("text").to_pylist()
            yield from ((str(d), t) for d, t in zip(ids, texts))
    elif kind == "chunk":
        from mixc.stages.chunk import ChunkManifest
        chunks = ChunkManifest.read(folder, ["rec", "index", "text"]).sort(["rec", "index"])
        for (rec,), group in chunks.group_by("rec", maintain_order=True):
            yield str(rec), " ".join(group["text"].to_list())
    else:
        from mixc.stages.generate import GeneratedTexts
        texts = GeneratedTexts.read(folder)
        for ident, question, text in zip(texts["id"].to_list(), texts["question"].to_list(), texts["text"].to_list()):
            yield ident, f"{question or ''} {text}"


class ContaminationStage(Stage):
    kind, version, doc = "contamination", 1, "eval n-grams found in the training text"

    def run(self, ctx: Context, stats: Stats) -> None:
        from mixc.stages.evalsets import EvalItems

        table = EvalItems.read(ctx.input_of("eval_items"))
        texts = [f"{q} {c[a]}" for q, c, a in zip(table["question"].to_list(), table["choices"].to_list(),
                                                  table["answer"].to_list())]
        grams = EvalNgrams([words(t) for t in texts])
        rows, per_stage = [], {}
        for sid in ctx.node.inputs:
            kind = sid.split(":", 1)[0]
            if kind not in TRAINING_KINDS:
                continue
            hit: dict[int, int] = {}
            for unit, text in training_units(kind, ctx.inputs[sid]):
                for i, (n, ngram) in grams.matches(words(text)).items():
                    rows.append({"item": table["id"][i], "question": table["question"][i], "stage": sid, "unit": unit,
                                 "longest": n, "ngram": ngram})
                    hit[i] = max(hit.get(i, 0), n)
            per_stage[sid] = {"items_at_min": len(hit), "items_at_max": sum(1 for n in hit.values() if n >= MAX_N)}
        pl.DataFrame(rows, schema={"item": pl.String, "question": pl.String, "stage": pl.String, "unit": pl.String,
                                   "longest": pl.Int64, "ngram": pl.String}).write_parquet(
            ctx.out / "overlaps.parquet", statistics=False)
        contaminated = {r["item"] for r in rows}
        summary = {"items": len(texts), "contaminated": len(contaminated), "min_n": MIN_N, "max_n": MAX_N,
                   "stages": per_stage}
        (ctx.out / "contamination.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
        stats.items_in, stats.items_out = len(texts), len(contaminated)
        stats.counts.update(contaminated=len(contaminated), overlaps=len(rows))


class Overlaps:
    """The contamination stage's artifact, read back."""

    @staticmethod
    def read(folder: Path) -> tuple[dict, pl.DataFrame]:
        return json.loads((folder / "contamination.json").read_text()), pl.read_parquet(folder / "overlaps.parquet")


DECONTAMINATE = "eval.decontaminate"
DROP_REASON = "overlaps an eval set"


def decontaminate_reads(spec) -> tuple[str, ...]:
    """What a tokenising stage declares to drop overlapping documents: nothing unless it is asked."""
    return (DECONTAMINATE,) if spec.eval.decontaminate else ()


def overlapping_units(ctx: Context) -> dict[str, set[str]]:
    """The training units of this stage's subject that share an n-gram of at least
    `eval.decontaminate` words with an eval item, by the kind of stage that holds them (`read` /
    `dedup`: document ids; `chunk`: recordings; `rewrite` / `answer`: generated item ids). Empty
    unless the stage declared the read."""
    if not ctx.declares(DECONTAMINATE):
        return {}
    found: dict[str, set[str]] = {}
    for folder in ctx.inputs_of("contamination"):
        rows = Overlaps.read(folder)[1].filter(pl.col("longest") >= ctx.read(DECONTAMINATE))
        for stage, unit in zip(rows["stage"].to_list(), rows["unit"].to_list()):
            kind, subject = stage.split(":", 1)
            if subject == ctx.subject:
                found.setdefault(kind, set()).add(unit)
    return found
