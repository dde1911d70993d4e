"""Log-mel features at 100 frames/s and the exact 12.5 Hz token grid.

A clip of n samples is zero-padded at the end to a whole number of tokens (1280 samples = 80 ms =
8 mel frames), so it yields exactly `num_codes(n) = ceil(n / 1280)` codes: a clip of s seconds
(s a multiple of 0.08) gives 12.5 * s codes. Mel frames are computed per clip (never across a
batch) so a clip's features do not depend on what it is batched with.

Normalisation is global: a per-mel-bin mean and standard deviation computed over the training
audio and saved with the tokenizer, so a code means the same thing in every clip (per-utterance
normalisation would shift codes with each recording's loudness and channel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torchaudio.transforms import MelSpectrogram

SAMPLE_RATE = 16_000
HOP = 160  # 10 ms: 100 mel frames per second
N_FFT = 400  # 25 ms window
N_MELS = 80
FRAMES_PER_TOKEN = 8  # the encoder downsamples 2 x 2 x 2
SAMPLES_PER_TOKEN = HOP * FRAMES_PER_TOKEN  # 1280
FRAME_RATE = SAMPLE_RATE / SAMPLES_PER_TOKEN  # 12.5 Hz, 80 ms per token
LOG_FLOOR = 1e-6  # added to mel power before the log: digital silence maps to a finite value
STD_FLOOR = 1e-3  # keeps a constant mel bin from dividing by zero


def check_frame_rate(frame_rate: float) -> None:
    """Rejects any token rate but 12.5 Hz: the features and the 8x encoder fix it."""
    if not math.isclose(frame_rate, FRAME_RATE):
        raise ValueError(
            f"audio tokenizer frame_rate must be {FRAME_RATE} Hz "
            f"({SAMPLE_RATE} Hz / ({HOP}-sample hop * {FRAMES_PER_TOKEN}x downsampling)); got {frame_rate}")


def num_codes(num_samples: int) -> int:
    """Codes for a clip of `num_samples` 16 kHz samples: ceil(n / 1280) (0 for an empty clip)."""
    return -(-num_samples // SAMPLES_PER_TOKEN)


def check_wav(wav: np.ndarray) -> np.ndarray:
    """A 1-D float32 view of `wav`; raises on anything that is not mono audio."""
    arr = np.asarray(wav)
    if arr.ndim != 1:
        raise ValueError(f"expected 16 kHz mono audio as a 1-D array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"expected float audio in [-1, 1], got dtype {arr.dtype}")
    return arr.astype(np.float32, copy=False)


@lru_cache(maxsize=1)
def _mel_transform() -> MelSpectrogram:
    return MelSpectrogram(sample_rate=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS,
                          center=True, power=2.0)


def log_mel(wav: np.ndarray) -> torch.Tensor:
    """(8 * num_codes(len(wav)), N_MELS) float32 log-mel frames of one clip, unnormalised.

    The clip is padded with zeros to a multiple of 1280 samples; the centred STFT gives one frame
    more than samples / 160, and the last is dropped so frame i is centred on sample 160 * i.
    """
    arr = check_wav(wav)
    padded = num_codes(len(arr)) * SAMPLES_PER_TOKEN
    if padded == 0:
        return torch.zeros(0, N_MELS)
    audio = torch.zeros(padded)
    audio[: len(arr)] = torch.from_numpy(arr)
    with torch.no_grad():
        mel = _mel_transform()(audio)[:, : padded // HOP]
    return torch.log(mel + LOG_FLOOR).T.contiguous()


@dataclass(frozen=True)
class MelStats:
    """Per-mel-bin mean and std of log-mel frames, fixed at train time and saved with the model."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def fit(cls, mels: list[torch.Tensor]) -> MelStats:
        frames = torch.cat(mels).double()
        if len(frames) == 0:
            raise ValueError("cannot compute mel statistics: the training clips hold no audio")
        std = frames.std(dim=0, unbiased=False).clamp(min=STD_FLOOR)
        return cls(tuple(frames.mean(dim=0).tolist()), tuple(std.tolist()))

    def normalize(self, mel: torch.Tensor) -> torch.Tensor:
        return (mel - torch.tensor(self.mean, dtype=mel.dtype)) / torch.tensor(self.std, dtype=mel.dtype)


def normalized_mels(wavs: list[np.ndarray], stats: MelStats) -> list[torch.Tensor]:
    """Each clip's normalised log-mel frames, as `log_mel` then `stats.normalize`."""
    return [stats.normalize(log_mel(w)) for w in wavs]


def pad_batch(mels: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded (B, T, N_MELS) frames and a (B, T) bool mask of real frames."""
    longest = max(len(m) for m in mels)
    batch = torch.zeros(len(mels), longest, N_MELS)
    mask = torch.zeros(len(mels), longest, dtype=torch.bool)
    for i, mel in enumerate(mels):
        batch[i, : len(mel)] = mel
        mask[i, : len(mel)] = True
    return batch, mask


def length_batches(lengths: list[int], max_frames: int) -> list[list[int]]:
    """Indices grouped into batches, longest clips first, each costing at most `max_frames` padded
    frames (batch size * longest clip; a clip longer than the budget gets a batch of its own).
    The order is a pure function of `lengths`, so batching is reproducible."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    for i in order:
        if batches and lengths[batches[-1][0]] * (len(batches[-1]) + 1) <= max_frames:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches
