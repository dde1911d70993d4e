"""The FSQ tokenizer: Conformer encoder (8x downsampling to 12.5 Hz), finite scalar quantization,
and two heads used only in training: a decoder that upsamples back to 100 Hz and reconstructs the
normalised log-mel, and a CTC head that predicts the transcript's characters.

At 12.5 Hz a token is shorter-lived than a spoken character (read speech runs ~15 characters/s),
so the CTC head emits CTC_UPSAMPLE labels per token (50 Hz); a one-label-per-token head could not
align most transcripts at all.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from vector_quantize_pytorch import FSQ

from mixc.audio_tokenizer.alphabet import (
    ALPHABET,
    BLANK,
    VOCAB_SIZE,
    edit_distance,
    ids_to_text,
    normalize_text,
    text_to_ids,
)
from mixc.audio_tokenizer.base import CODE_DTYPE, AudioTokenizer, Clip, usage_metrics
from mixc.audio_tokenizer.checkpoint import CheckpointError, require, write_checkpoint
from mixc.audio_tokenizer.conformer import Conformer, Downsample, Upsample, masked
from mixc.audio_tokenizer.features import (
    FRAME_RATE,
    FRAMES_PER_TOKEN,
    HOP,
    N_FFT,
    N_MELS,
    SAMPLE_RATE,
    MelStats,
    length_batches,
    normalized_mels,
    pad_batch,
)

CTC_UPSAMPLE = 4  # CTC labels per token: 50 Hz
ENCODE_BATCH_FRAMES = 16_000  # padded mel frames per inference batch (160 s of audio)


@dataclass(frozen=True)
class Preset:
    """Model size and training hyper-parameters of one named preset."""

    dim: int
    heads: int
    ffn: int
    kernel: int  # depthwise conv kernel, in 12.5 Hz tokens
    encoder_layers: int
    decoder_layers: int
    dropout: float
    batch_size: int
    crop_seconds: float  # longer clips are randomly cropped to this (and lose their CTC term)
    lr: float
    weight_decay: float
    ctc_weight: float  # loss = recon L1 + ctc_weight * CTC (nats per character)


PRESETS = {
    # trains on 2 CPU cores in about a minute for 600 steps (see benchmarks/audio_tokenizer_speed.py)
    "tiny": Preset(dim=96, heads=4, ffn=192, kernel=7, encoder_layers=2, decoder_layers=1, dropout=0.0,
                   batch_size=8, crop_seconds=6.0, lr=2e-3, weight_decay=0.01, ctc_weight=0.05),
    # a GPU-sized model (~35M parameters)
    "base": Preset(dim=384, heads=6, ffn=1536, kernel=15, encoder_layers=6, decoder_layers=4, dropout=0.1,
                   batch_size=32, crop_seconds=12.0, lr=5e-4, weight_decay=0.01, ctc_weight=0.1),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown audio tokenizer preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]


def check_levels(levels: tuple[int, ...]) -> tuple[int, ...]:
    """FSQ levels as a tuple; each must be >= 3 (level 2 needs FSQ's symmetric mode, not used here)."""
    levels = tuple(int(v) for v in levels)
    if not levels or any(v < 3 for v in levels):
        raise ValueError(f"FSQ levels must be a non-empty list of integers >= 3, got {list(levels)}")
    return levels


@dataclass
class Output:
    """One forward pass: reconstruction at 100 Hz, CTC log-probs at 50 Hz, codes at 12.5 Hz."""

    recon: torch.Tensor  # (B, T, N_MELS)
    ctc_log_probs: torch.Tensor  # (B, CTC_UPSAMPLE * T / 8, VOCAB_SIZE)
    codes: torch.Tensor  # (B, T / 8) int
    token_mask: torch.Tensor  # (B, T / 8) bool


class FSQModel(nn.Module):
    """Downsample -> Conformer -> FSQ (project to len(levels) dims, round) -> decoder / CTC heads."""

    def __init__(self, preset: Preset, levels: tuple[int, ...]):
        super().__init__()
        p = preset
        self.downsample = Downsample(N_MELS, p.dim)
        self.encoder = Conformer(p.dim, p.encoder_layers, p.heads, p.ffn, p.kernel, p.dropout)
        self.fsq = FSQ(levels=list(levels), dim=p.dim)
        self.decoder = Conformer(p.dim, p.decoder_layers, p.heads, p.ffn, p.kernel, p.dropout)
        self.upsample = Upsample(p.dim, N_MELS)
        self.ctc_head = nn.Sequential(nn.Linear(p.dim, p.dim), nn.GELU(), nn.Linear(p.dim, CTC_UPSAMPLE * VOCAB_SIZE))

    def quantize(self, mel: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(quantized latents (B, T/8, dim), codes (B, T/8), token mask) of normalised mel (B, T, N_MELS)."""
        h, token_mask = self.downsample(mel, mask)
        h = self.encoder(h, token_mask)
        quantized, codes = self.fsq(h)
        return masked(quantized, token_mask), codes, token_mask

    def forward(self, mel: torch.Tensor, mask: torch.Tensor) -> Output:
        quantized, codes, token_mask = self.quantize(mel, mask)
        recon, _ = self.upsample(self.decoder(quantized, token_mask), token_mask)
        b, t, _ = quantized.shape
        logits = self.ctc_head(quantized).reshape(b, t * CTC_UPSAMPLE, VOCAB_SIZE)
        return Output(recon, logits.log_softmax(-1), codes, token_mask)


def recon_l1_sum(out: Output, mel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum over real frames and mel bins of |reconstruction - target| (normalised log-mel)."""
    return ((out.recon - mel).abs() * mask.unsqueeze(-1)).sum()


def ctc_sum(out: Output, targets: list[list[int]]) -> tuple[torch.Tensor, int]:
    """(summed CTC negative log-likelihood, characters) over the batch items with a transcript.

    A transcript too long for its clip (more than 50 characters per second) has infinite loss and
    counts as zero, as `zero_infinity` does.
    """
    keep = [i for i, t in enumerate(targets) if t]
    if not keep:
        return out.recon.new_zeros(()), 0
    log_probs = out.ctc_log_probs[keep].transpose(0, 1)  # (T, B', V)
    device = log_probs.device
    input_lengths = out.token_mask[keep].sum(dim=1) * CTC_UPSAMPLE
    target_lengths = torch.tensor([len(targets[i]) for i in keep], device=device)
    flat = torch.tensor([c for i in keep for c in targets[i]], dtype=torch.long, device=device)
    loss = nn.functional.ctc_loss(log_probs, flat, input_lengths, target_lengths, blank=BLANK,
                                  reduction="sum", zero_infinity=True)
    return loss, int(target_lengths.sum())


def greedy_transcripts(out: Output) -> list[str]:
    """Greedy CTC decoding of each batch item (over its real frames only)."""
    best = out.ctc_log_probs.argmax(-1).cpu()
    lengths = (out.token_mask.sum(dim=1) * CTC_UPSAMPLE).cpu()
    return [ids_to_text(best[i, : int(n)].tolist()) for i, n in enumerate(lengths)]


def _row_codes(codes: torch.Tensor, token_mask: torch.Tensor, row: int) -> np.ndarray:
    """One batch row's codes without its padding, as int32 numpy."""
    return codes[row, : int(token_mask[row].sum())].cpu().numpy().astype(CODE_DTYPE)


class FSQTokenizer(AudioTokenizer):
    """A trained FSQModel with its mel statistics; encodes on `device` (CPU unless moved with `to`)."""

    kind = "fsq"

    def __init__(self, model: FSQModel, preset_name: str, preset: Preset, levels: tuple[int, ...], stats: MelStats):
        self.model = model.eval()
        self.preset_name = preset_name
        self.preset = preset
        self.levels = check_levels(levels)
        self.stats = stats
        self.codebook_size = math.prod(self.levels)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> FSQTokenizer:
        self.model.to(device)
        return self

    def encoder_parameters(self) -> int:
        """Parameters used to encode (downsampler, encoder, FSQ projection); training heads excluded."""
        used = (self.model.downsample, self.model.encoder, self.model.fsq.project_in)
        return sum(p.numel() for m in used for p in m.parameters())

    def _batches(self, mels: list[torch.Tensor]) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
        """(clip indices, padded mels, mask) on the model's device, for every non-empty clip."""
        nonempty = [i for i, m in enumerate(mels) if len(m)]
        for batch in length_batches([len(mels[i]) for i in nonempty], ENCODE_BATCH_FRAMES):
            items = [nonempty[j] for j in batch]
            mel, mask = pad_batch([mels[i] for i in items])
            yield items, mel.to(self.device), mask.to(self.device)

    def encode(self, wavs: list[np.ndarray]) -> list[np.ndarray]:
        mels = normalized_mels(wavs, self.stats)
        codes = [np.zeros(0, CODE_DTYPE)] * len(mels)
        with torch.inference_mode():
            for items, mel, mask in self._batches(mels):
                _, batch_codes, token_mask = self.model.quantize(mel, mask)
                for row, i in enumerate(items):
                    codes[i] = _row_codes(batch_codes, token_mask, row)
        return codes

    def evaluate(self, clips: list[Clip]) -> dict[str, float]:
        """Reconstruction L1 (normalised log-mel) against predicting the global mean (i.e. zero),
        CTC nats per character and greedy character error rate, and code usage."""
        mels = normalized_mels([c.wav for c in clips], self.stats)
        texts = [normalize_text(c.text) for c in clips]
        codes = [np.zeros(0, CODE_DTYPE)] * len(clips)
        recon = baseline = values = ctc = chars = edits = 0.0
        with torch.inference_mode():
            for items, mel, mask in self._batches(mels):
                out = self.model(mel, mask)
                recon += float(recon_l1_sum(out, mel, mask))
                baseline += float((mel.abs() * mask.unsqueeze(-1)).sum())
                values += float(mask.sum()) * N_MELS
                loss, n = ctc_sum(out, [text_to_ids(texts[i]) for i in items])
                ctc, chars = ctc + float(loss), chars + n
                for row, (i, hyp) in enumerate(zip(items, greedy_transcripts(out))):
                    codes[i] = _row_codes(out.codes, out.token_mask, row)
                    edits += edit_distance(hyp, texts[i]) if texts[i] else 0
        metrics = {"recon_l1": recon / max(values, 1.0), "recon_mean_baseline": baseline / max(values, 1.0)}
        metrics["recon_vs_mean"] = metrics["recon_l1"] / max(metrics["recon_mean_baseline"], 1e-12)
        if chars:
            metrics |= {"ctc": ctc / chars, "cer": edits / chars}
        return metrics | usage_metrics(codes, self.codebook_size, sum(c.seconds for c in clips))

    def config(self) -> dict:
        return {"kind": self.kind, "preset": self.preset_name, "preset_config": asdict(self.preset),
                "levels": list(self.levels), "codebook_size": self.codebook_size, "frame_rate": FRAME_RATE,
                "sample_rate": SAMPLE_RATE, "mel": {"n_mels": N_MELS, "n_fft": N_FFT, "hop": HOP,
                                                    "frames_per_token": FRAMES_PER_TOKEN},
                "mel_mean": list(self.stats.mean), "mel_std": list(self.stats.std),
                "alphabet": ALPHABET, "ctc_upsample": CTC_UPSAMPLE}

    def save(self, folder: Path) -> None:
        write_checkpoint(folder, self.config(), self.model.state_dict())

    @classmethod
    def from_checkpoint(cls, config: dict, state: dict[str, torch.Tensor], folder: Path) -> FSQTokenizer:
        """The tokenizer a `save` wrote; the architecture comes from the saved preset_config, so a
        checkpoint outlives later changes to PRESETS."""
        require(config, folder, "preset", "preset_config", "levels", "mel_mean", "mel_std")
        levels = check_levels(tuple(config["levels"]))
        try:
            preset = Preset(**config["preset_config"])
            model = FSQModel(preset, levels)
            model.load_state_dict(state)
        except (TypeError, RuntimeError) as exc:
            raise CheckpointError(f"audio tokenizer checkpoint {folder} does not match its preset_config "
                                  f"and levels {list(levels)}: {exc}") from exc
        stats = MelStats(tuple(config["mel_mean"]), tuple(config["mel_std"]))
        return cls(model, config["preset"], preset, levels, stats)
