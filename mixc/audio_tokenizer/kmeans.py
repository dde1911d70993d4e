"""The weightless baseline: k-means over normalised log-mel frames stacked 8 at a time (80 ms, so
also 12.5 Hz), with the same interface as the FSQ tokenizer. Its "reconstruction" is the code's
centroid, which makes its recon_l1 directly comparable with the FSQ decoder's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import MiniBatchKMeans
from threadpoolctl import threadpool_limits

from mixc.audio_tokenizer.base import CODE_DTYPE, AudioTokenizer, Clip, usage_metrics
from mixc.audio_tokenizer.checkpoint import CheckpointError, require, write_checkpoint
from mixc.audio_tokenizer.features import (
    FRAME_RATE,
    FRAMES_PER_TOKEN,
    HOP,
    N_FFT,
    N_MELS,
    SAMPLE_RATE,
    MelStats,
    check_frame_rate,
    log_mel,
    normalized_mels,
)
from mixc.errors import DataError

TOKEN_DIM = FRAMES_PER_TOKEN * N_MELS  # one 80 ms token: 8 stacked mel frames
NO_AUDIO_HINT = "the audio tokenizer trains on the filtered utterances: relax the sources' filters or add audio"
KMEANS_BATCH = 2048  # MiniBatchKMeans batch (rows); sklearn's default 1024 converges slower
KMEANS_INIT = 1  # random initialisations (k-means++ cost 3x the time for no gain on speech frames)
KMEANS_MAX_ITER = 30  # passes over the data at most (early stopping usually ends it sooner)
ENCODE_CHUNK = 8192  # tokens per nearest-centroid matmul


def stacked_tokens(mel: torch.Tensor) -> torch.Tensor:
    """(T, N_MELS) frames, T a multiple of 8 -> (T / 8, 8 * N_MELS) token vectors."""
    return mel.reshape(-1, TOKEN_DIM)


class KMeansTokenizer(AudioTokenizer):
    """Nearest-centroid codes of stacked normalised log-mel frames."""

    kind = "kmeans"

    def __init__(self, centroids: torch.Tensor, stats: MelStats):
        if centroids.ndim != 2 or centroids.shape[1] != TOKEN_DIM:
            raise ValueError(f"k-means centroids must be (codebook, {TOKEN_DIM}), got {tuple(centroids.shape)}")
        self.centroids = centroids.float().contiguous()
        self.stats = stats
        self.codebook_size = len(centroids)
        self._centroid_norms = (self.centroids ** 2).sum(dim=1)

    def _nearest(self, tokens: torch.Tensor) -> torch.Tensor:
        """Index of the nearest centroid (squared Euclidean) of each row of (N, TOKEN_DIM)."""
        out = [(self._centroid_norms - 2 * chunk @ self.centroids.T).argmin(dim=1)
               for chunk in tokens.split(ENCODE_CHUNK)]
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)

    def _codes(self, mels: list[torch.Tensor]) -> tuple[list[np.ndarray], torch.Tensor, torch.Tensor]:
        """(codes per clip, all token vectors, all codes) of normalised mels."""
        tokens = torch.cat([stacked_tokens(m) for m in mels]) if mels else torch.zeros(0, TOKEN_DIM)
        flat = self._nearest(tokens)
        sizes = [len(m) // FRAMES_PER_TOKEN for m in mels]
        return [c.numpy().astype(CODE_DTYPE) for c in flat.split(sizes)], tokens, flat

    def encode(self, wavs: list[np.ndarray]) -> list[np.ndarray]:
        with torch.inference_mode():
            return self._codes(normalized_mels(wavs, self.stats))[0]

    def evaluate(self, clips: list[Clip]) -> dict[str, float]:
        """recon_l1: |token - its centroid| on normalised log-mel, against predicting the mean (zero)."""
        with torch.inference_mode():
            codes, tokens, flat = self._codes(normalized_mels([c.wav for c in clips], self.stats))
            values = max(tokens.numel(), 1)
            metrics = {"recon_l1": float((tokens - self.centroids[flat]).abs().sum()) / values,
                       "recon_mean_baseline": float(tokens.abs().sum()) / values}
        metrics["recon_vs_mean"] = metrics["recon_l1"] / max(metrics["recon_mean_baseline"], 1e-12)
        return metrics | usage_metrics(codes, self.codebook_size, sum(c.seconds for c in clips))

    def save(self, folder: Path) -> None:
        config = {"kind": self.kind, "codebook_size": self.codebook_size, "frame_rate": FRAME_RATE,
                  "sample_rate": SAMPLE_RATE, "mel": {"n_mels": N_MELS, "n_fft": N_FFT, "hop": HOP,
                                                      "frames_per_token": FRAMES_PER_TOKEN},
                  "mel_mean": list(self.stats.mean), "mel_std": list(self.stats.std)}
        write_checkpoint(folder, config, {"centroids": self.centroids})

    @classmethod
    def from_checkpoint(cls, config: dict, state: dict[str, torch.Tensor], folder: Path) -> KMeansTokenizer:
        require(config, folder, "mel_mean", "mel_std")
        if "centroids" not in state:
            raise CheckpointError(f"audio tokenizer checkpoint {folder} holds no k-means centroids")
        return cls(state["centroids"], MelStats(tuple(config["mel_mean"]), tuple(config["mel_std"])))


def train_kmeans(codebook: int, clips: Sequence[Clip], seed: int,
                 frame_rate: float = 12.5) -> tuple[KMeansTokenizer, dict[str, float]]:
    """Fits `codebook` clusters (MiniBatchKMeans, random_state=seed: deterministic for the same
    data and thread count) to the clips' 80 ms tokens; returns the tokenizer and `evaluate` on the
    training clips plus `train_seconds`. sklearn's OpenMP pool is limited to torch's thread count,
    so one setting governs both (by default OpenMP takes every core, which on a shared machine is
    several times slower)."""
    check_frame_rate(frame_rate)
    if codebook < 2:
        raise ValueError(f"k-means codebook must be >= 2, got {codebook}")
    started = time.perf_counter()
    raw = [log_mel(c.wav) for c in clips if len(c.wav)]
    if not raw:
        raise DataError("cannot fit k-means without audio: every clip is empty", NO_AUDIO_HINT)
    stats = MelStats.fit(raw)
    tokens = torch.cat([stacked_tokens(stats.normalize(m)) for m in raw]).numpy()
    if len(tokens) < codebook:
        raise DataError(f"k-means with {codebook} clusters needs at least {codebook} tokens "
                        f"({codebook / FRAME_RATE:.0f} s of audio); the clips give {len(tokens)}",
                        "lower the tokenizer's `codebook`, or give it more audio (`sample`, more sources)")
    kmeans = MiniBatchKMeans(n_clusters=codebook, random_state=seed, batch_size=KMEANS_BATCH, init="random",
                             n_init=KMEANS_INIT, max_iter=KMEANS_MAX_ITER)
    with threadpool_limits(torch.get_num_threads()):
        fit = kmeans.fit(tokens)
    tokenizer = KMeansTokenizer(torch.from_numpy(fit.cluster_centers_.astype(np.float32)), stats)
    metrics = tokenizer.evaluate(list(clips))
    return tokenizer, metrics | {"train_seconds": time.perf_counter() - started}
