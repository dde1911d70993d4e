"""Word error rate: how far a transcript is from the words that were said (the demo's truth scores,
and the synthetic speech's intelligibility check)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

APOSTROPHES = re.compile(r"['\u2019\u2018`]")
NOT_WORD = re.compile(r"[\W_]+")


def normalise(text: str) -> list[str]:
    """Words of text for WER: lowercase, apostrophes dropped ("don't" -> "dont"), any other punctuation a
    word break ("well-known" -> "well known"), accents kept. Numbers stay as written ("1903" is one word,
    not "nineteen oh three")."""
    text = unicodedata.normalize("NFKC", text).lower()
    return NOT_WORD.sub(" ", APOSTROPHES.sub("", text)).split()


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Levenshtein distance between two word sequences (substitutions, insertions, deletions cost 1)."""
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1]


def wer(ref: str | Sequence[str], hyp: str | Sequence[str]) -> float:
    """Word error rate of hyp against ref after `normalise`; for lists, corpus-level: total edits over total
    reference words (pairs matched by position)."""
    refs = [ref] if isinstance(ref, str) else list(ref)
    hyps = [hyp] if isinstance(hyp, str) else list(hyp)
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    pairs = [(normalise(r), normalise(h)) for r, h in zip(refs, hyps)]
    words = sum(len(r) for r, _ in pairs)
    if words == 0:
        raise ValueError("WER is undefined without reference words")
    return sum(edit_distance(r, h) for r, h in pairs) / words
