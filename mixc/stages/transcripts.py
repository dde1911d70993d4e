"""Filter: the language and transcript filters over every ASR utterance, each drop under its reason.

Reasons, checked in this order (an utterance is counted once, under the first that applies):
- `empty transcript`        no letters or digits (`drop_empty`);
- `too short` / `too long`  outside [`min_duration`, `max_duration`];
- `language XX`             the ASR backend reported another language, or the text language
                            identifier (py3langid, shipped model) is sure of another one;
- `repeated n-gram loop`    an `ngram`-word sequence occurs more than `max_ngram_repeats` times
                            (Whisper's hallucination loops);
- `low confidence`          mean word probability below `min_confidence`.

Artifact (`UtteranceTable`) `utterances.parquet`, one row per kept utterance: rec, path, audio, utt
(its index in the recording), speaker, start, end, text, words (list of {start, end, text, prob}),
confidence, language.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path
from typing import ClassVar

import polars as pl

from mixc import ir
from mixc.audio import Utterance
from mixc.stages.base import Context, Stage, Stats
from mixc.stages.items import RecordingManifest, read_records

WORD = re.compile(r"[\w']+", re.UNICODE)
LANGID_OTHER_PROB = 0.5  # drop when another language is at least this likely ...
LANGID_TARGET_PROB = 0.1  # ... and the wanted one less likely than this (short texts are uncertain)
LANGID_MIN_WORDS = 4  # shorter texts are too short to identify
WORD_TYPE = pl.Struct({"start": pl.Float64, "end": pl.Float64, "text": pl.String, "prob": pl.Float64})
SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "rec": pl.String, "path": pl.String, "audio": pl.String, "utt": pl.Int64, "speaker": pl.String,
    "start": pl.Float64, "end": pl.Float64, "text": pl.String, "words": pl.List(WORD_TYPE),
    "confidence": pl.Float64, "language": pl.String,
}


def words_of(text: str) -> list[str]:
    return WORD.findall(text.lower())


def max_ngram_count(text: str, n: int) -> int:
    """How often the most frequent n-word sequence occurs (0 for texts shorter than n words)."""
    words = words_of(text)
    grams = Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    return max(grams.values(), default=0)


@lru_cache(maxsize=1)
def _identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def other_language(text: str, wanted: str) -> str | None:
    """The language the identifier is sure a text is in, when that is not `wanted`; else None."""
    if len(words_of(text)) < LANGID_MIN_WORDS:
        return None
    ranked = dict(_identifier().rank(text))
    top = max(ranked, key=ranked.__getitem__)
    if top != wanted and ranked[top] >= LANGID_OTHER_PROB and ranked.get(wanted, 0.0) < LANGID_TARGET_PROB:
        return top
    return None


class UtteranceTable:
    """The filter stage's artifact: every kept utterance, in recording order."""
    FILE: ClassVar[str] = "utterances.parquet"

    @classmethod
    def write(cls, folder: Path, rows: list[dict]) -> None:
        pl.DataFrame(rows, schema=SCHEMA).write_parquet(folder / cls.FILE)

    @classmethod
    def read(cls, folder: Path, columns: list[str] | None = None) -> pl.DataFrame:
        return pl.read_parquet(folder / cls.FILE, columns=columns)


def drop_reason(u: Utterance, cfg: ir.Filters) -> str | None:
    if cfg.drop_empty and not words_of(u.text):
        return "empty transcript"
    if u.duration < cfg.min_duration:
        return "too short"
    if u.duration > cfg.max_duration:
        return "too long"
    if u.language and u.language != cfg.language:
        return f"language {u.language}"
    if lang := other_language(u.text, cfg.language):
        return f"language {lang}"
    if max_ngram_count(u.text, cfg.ngram) > cfg.max_ngram_repeats:
        return "repeated n-gram loop"
    if u.confidence < cfg.min_confidence:
        return "low confidence"
    return None


class FilterStage(Stage):
    kind, version, doc = "filter", 2, "language and transcript filters"
    reads = (".filters",)

    def fingerprint(self, ctx: Context, spec) -> dict:
        return {"langid": f"py3langid=={version('py3langid')}"}

    def run(self, ctx: Context, stats: Stats) -> None:
        cfg: ir.Filters = ctx.read(".filters")
        asr = RecordingManifest.read(ctx.input_of("asr"))
        assert ctx.items is not None, "filter reads the ASR stage's items"
        rows = []
        for rec in asr.rows:
            for i, u in enumerate(read_records(asr.item_path(ctx.items, rec), Utterance)):
                stats.items_in += 1
                reason = drop_reason(u, cfg)
                if reason:
                    stats.drop(reason)
                    continue
                rows.append({"rec": rec["rec"], "path": rec["path"], "audio": rec["audio"], "utt": i,
                             "speaker": u.speaker, "start": u.start, "end": u.end, "text": u.text.strip(),
                             "words": [w.to_json() for w in u.words], "confidence": u.confidence,
                             "language": u.language or cfg.language})
        stats.items_out = len(rows)
        stats.counts["seconds"] = round(sum(r["end"] - r["start"] for r in rows), 3)
        UtteranceTable.write(ctx.out, rows)
