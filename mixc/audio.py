"""Audio records shared by the web-audio stages, their backends and the demo, and the one audio
format they all use (16 kHz mono float32).

Times are seconds from the start of a recording. Every record is an `Interval` (start, end,
duration) with `to_json` / `from_json`, which is how stages store them as per-recording items:

- `Region`:    speech found by VAD;
- `Turn`:      a stretch of one speaker, from diarization;
- `Word`:      one recognised word with its timing and probability;
- `Utterance`: a transcribed turn (speaker, text, words, confidence, language).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Self

import numpy as np

SAMPLE_RATE = 16_000
AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aiff", ".aif", ".webm"}


@dataclass(frozen=True)
class Interval:
    """A span of a recording, in seconds; subclasses add what happens in it."""

    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass(frozen=True)
class Region(Interval):
    """Speech found by voice activity detection."""


@dataclass(frozen=True)
class Turn(Interval):
    """A stretch of one speaker."""

    speaker: str


@dataclass(frozen=True)
class Word(Interval):
    text: str
    prob: float


@dataclass(frozen=True)
class Utterance(Interval):
    speaker: str
    text: str
    words: tuple[Word, ...] = ()
    confidence: float = 1.0  # mean word probability (or the backend's own score), 0..1
    language: str = ""  # ISO 639-1 as the ASR backend reports it; "" when it does not
    extra: dict = field(default_factory=dict)  # backend details worth keeping (avg_logprob, ...)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        words = tuple(Word.from_json(w) for w in data.get("words", ()))
        return cls(**{**data, "words": words})


def to_mono_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """(frames,) or (frames, channels) float audio at any rate -> float32 mono at 16 kHz (soxr, HQ)."""
    import soxr

    mono = samples.mean(axis=1) if samples.ndim == 2 else samples
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ").astype(np.float32, copy=False)
    return mono
