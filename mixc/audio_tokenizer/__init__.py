"""Audio tokenizers: 16 kHz speech -> integer codes at exactly 12.5 Hz (80 ms per token).

- `train_fsq`: a Conformer encoder with 8x downsampling and finite scalar quantization, trained
  with log-mel reconstruction and character CTC losses (the paper's step 6), then frozen;
- `train_kmeans`: the weightless baseline, k-means over 8 stacked log-mel frames;
- `load_tokenizer`: either one back from the folder its `save` wrote;
- `evaluate`: reconstruction against predicting the mean, CTC, code usage and tokens per second.

A clip of n samples gives `num_codes(n) = ceil(n / 1280)` codes.
"""

from __future__ import annotations

from collections.abc import Sequence

from mixc.audio_tokenizer.base import AudioTokenizer, Clip
from mixc.audio_tokenizer.checkpoint import CheckpointError
from mixc.audio_tokenizer.features import FRAME_RATE, SAMPLE_RATE, SAMPLES_PER_TOKEN, num_codes
from mixc.audio_tokenizer.kmeans import KMeansTokenizer, train_kmeans
from mixc.audio_tokenizer.loading import load_tokenizer
from mixc.audio_tokenizer.model import PRESETS, FSQTokenizer
from mixc.audio_tokenizer.train import train_fsq


def evaluate(tok: AudioTokenizer, clips: Sequence[Clip]) -> dict[str, float]:
    """Quality of `tok` on `clips`: recon_l1, recon_mean_baseline and recon_vs_mean (normalised
    log-mel; FSQ: decoder output, k-means: centroid), ctc and cer (FSQ, clips with text only),
    usage_perplexity, usage_share, tokens_per_second (12.5) and audio_seconds."""
    return tok.evaluate(list(clips))


__all__ = ["FRAME_RATE", "PRESETS", "SAMPLE_RATE", "SAMPLES_PER_TOKEN", "AudioTokenizer", "CheckpointError", "Clip",
           "FSQTokenizer", "KMeansTokenizer", "evaluate", "load_tokenizer", "num_codes", "train_fsq", "train_kmeans"]
