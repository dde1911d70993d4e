"""Scores of the web-audio pipeline against known truth: DER, WER, boundary recall, speaker counts.

Pure functions of their inputs, used by tests and benchmarks. Turns are any objects with `.start`,
`.end` (seconds) and `.speaker` (`mixc.audio.Turn`, `mixc.demo.audio.TrueTurn`, `Utterance`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from mixc.wer import edit_distance, normalise, wer

__all__ = ["edit_distance", "normalise", "wer", "der", "boundary_recall", "speaker_changes",
           "speaker_count_correct"]

COLLAR_S = 0.25  # +-0.25 s around each reference boundary is not scored (the NIST md-eval convention)
BOUNDARY_TOLERANCE_S = 0.3


class TurnLike(Protocol):
    start: float
    end: float
    speaker: str


def _annotation(turns: Sequence[TurnLike]):
    from pyannote.core import Annotation, Segment

    annotation = Annotation()
    for i, turn in enumerate(turns):
        annotation[Segment(turn.start, turn.end), i] = turn.speaker
    return annotation


def der(truth_turns: Sequence[TurnLike], hyp_turns: Sequence[TurnLike], collar: float = COLLAR_S,
        uem: tuple[float, float] | None = None) -> float:
    """Diarization error rate: (missed + false alarm + confused speech) / reference speech, with pyannote.metrics.

    Hypothesis labels are mapped to reference labels optimally (Hungarian), so names need not match.
    `collar` is per side: nothing within +-collar seconds of a reference turn's start or end is scored
    (pyannote's own `collar` is the total width, so it gets 2 * collar). Overlapping speech is scored.
    `uem` (start, end) limits scoring to that span; by default, from the first to the last turn of either.
    """
    from pyannote.core import Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    if not truth_turns:
        raise ValueError("DER is undefined without reference turns")
    if uem is None:
        both = [*truth_turns, *hyp_turns]
        uem = (min(t.start for t in both), max(t.end for t in both))
    metric = DiarizationErrorRate(collar=2 * collar, skip_overlap=False)
    return float(metric(_annotation(truth_turns), _annotation(hyp_turns), uem=Timeline([Segment(*uem)])))


def speaker_changes(turns: Sequence[TurnLike]) -> list[tuple[float, float]]:
    """Where the speaker changes: for each pair of consecutive turns (by start) with different speakers, the gap
    (end of the earlier turn, start of the later), as (min, max) so that overlapping turns give a valid span.

    A boundary placed anywhere in the gap is right (VAD and chunkers differ in where they cut silence), which a
    single time such as the gap's midpoint cannot express when gaps are wider than twice the tolerance."""
    ordered = sorted(turns, key=lambda t: (t.start, t.end))
    return [(min(a.end, b.start), max(a.end, b.start))
            for a, b in zip(ordered, ordered[1:]) if a.speaker != b.speaker]


def boundary_recall(true_changes: Sequence[float | tuple[float, float]], predicted_boundaries: Sequence[float],
                    tolerance: float = BOUNDARY_TOLERANCE_S) -> float:
    """Share of true boundaries matched by a predicted boundary, each predicted boundary matching at most one.

    A true boundary is a time or a (start, end) span (as from `speaker_changes`); a prediction matches it when
    it lies within [start - tolerance, end + tolerance]. Windows are taken by increasing end, each taking the
    earliest free prediction inside it, which gives a maximum matching. No true boundaries: 1.0."""
    spans = [(c, c) if isinstance(c, (int, float)) else c for c in true_changes]
    if not spans:
        return 1.0
    predicted = sorted(predicted_boundaries)
    used = [False] * len(predicted)
    for lo, hi in sorted(spans, key=lambda span: span[1]):
        for k, p in enumerate(predicted):
            if not used[k] and lo - tolerance <= p <= hi + tolerance:
                used[k] = True
                break
    return sum(used) / len(spans)


def speaker_count_correct(truth: Sequence[TurnLike], hyp: Sequence[TurnLike]) -> bool:
    """Whether the hypothesis has as many distinct speakers as the truth."""
    return len({t.speaker for t in truth}) == len({t.speaker for t in hyp})
