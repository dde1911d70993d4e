"""The tokenizer interface shared by the FSQ model and the k-means baseline, and code-usage metrics."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mixc.audio_tokenizer.features import FRAME_RATE, SAMPLE_RATE

CODE_DTYPE = np.int32


@dataclass(frozen=True)
class Clip:
    """One training or evaluation chunk: 16 kHz mono float32 audio and its transcript.

    An empty `text` is allowed; such a clip adds no CTC term.
    """

    wav: np.ndarray
    text: str = ""

    @property
    def seconds(self) -> float:
        return len(self.wav) / SAMPLE_RATE


class AudioTokenizer(ABC):
    """16 kHz mono audio -> integer codes in [0, codebook_size) at exactly 12.5 per second.

    A clip of n samples gives `features.num_codes(n) = ceil(n / 1280)` codes.
    """

    kind: str  # "fsq" | "kmeans": the config.json `kind` that load_tokenizer dispatches on
    frame_rate: float = FRAME_RATE
    codebook_size: int

    @abstractmethod
    def encode(self, wavs: list[np.ndarray]) -> list[np.ndarray]:
        """One int32 code array per clip, in input order; batched internally."""

    @abstractmethod
    def save(self, folder: Path) -> None:
        """Writes config.json and tokenizer.pt into `folder` (created if missing)."""

    @abstractmethod
    def evaluate(self, clips: list[Clip]) -> dict[str, float]:
        """Quality figures on `clips` (see the module-level `evaluate`)."""


def usage_metrics(codes: list[np.ndarray], codebook_size: int, seconds: float) -> dict[str, float]:
    """How the codebook is used: perplexity of the code histogram (exp of its entropy, at most
    codebook_size), the share of codes seen at least once, and codes per second of audio."""
    flat = np.concatenate(codes) if codes else np.zeros(0, CODE_DTYPE)
    counts = np.bincount(flat, minlength=codebook_size).astype(np.float64)
    total = counts.sum()
    probs = counts[counts > 0] / max(total, 1.0)
    entropy = float(-(probs * np.log(probs)).sum())
    return {"usage_perplexity": math.exp(entropy) if total else 0.0,
            "usage_share": float((counts > 0).sum() / codebook_size),
            "tokens_per_second": float(total / seconds) if seconds else 0.0,
            "audio_seconds": float(seconds)}
