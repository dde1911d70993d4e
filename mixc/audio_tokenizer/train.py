"""Training the FSQ tokenizer: AdamW on random crops, loss = recon L1 + w * CTC, a fixed step count.

The CTC weight ramps up from zero. Early on the CTC head cannot recognise anything, and its best
move is to predict the character prior everywhere, which rewards latents that do not vary; at full
weight from step 0 this collapsed the tiny model onto a single FSQ code. Measured on ~10 min of
flite speech (tiny preset): w = 0.2 from step 0 left one code in use after 150 steps (perplexity 1),
w = 0.2 with the ramp 14, w = 0.05 with the ramp 229 (no CTC at all: 272); after 600 steps
w = 0.05 with the ramp reached recon L1 0.28, perplexity 485, and a CTC head that starts to read
(CER 0.71).

Determinism: given the same clips, seed, device and torch thread count, training on CPU gives
bit-identical weights and codes. Initialisation and dropout use torch's RNG seeded inside a forked
RNG state (the caller's RNG is untouched), batches and crops come from numpy's Generator(seed),
and deterministic algorithms are switched on for the run (restored after). On CUDA the run is
seeded the same way but not bit-exact (the CUDA CTC backward has no deterministic kernel).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from mixc.audio_tokenizer.alphabet import text_to_ids
from mixc.audio_tokenizer.base import Clip
from mixc.audio_tokenizer.features import FRAMES_PER_TOKEN, N_MELS, MelStats, check_frame_rate, log_mel, pad_batch
from mixc.audio_tokenizer.model import FSQModel, FSQTokenizer, Preset, check_levels, ctc_sum, get_preset, recon_l1_sum
from mixc.errors import DataError

Progress = Callable[[int, int, dict[str, float]], None]  # (step, steps, running losses)
MEL_FRAMES_PER_SECOND = 100
WARMUP_STEPS = 50  # linear warmup (at most a tenth of the run), then cosine decay
MIN_LR_FACTOR = 0.1  # the cosine ends at this fraction of the peak learning rate
BETAS = (0.9, 0.98)
GRAD_CLIP = 1.0
PROGRESS_CALLS = 20  # progress is called about this many times per run
CTC_RAMP_SHARE = 0.3  # the CTC weight ramps linearly from 0 over this share of the steps
TAIL_SHARE = 0.25  # train_* losses average the last quarter of steps


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Runs the block with torch seeded and (on CPU) deterministic algorithms, restoring both after."""
    previous = torch.are_deterministic_algorithms_enabled()
    cuda = [torch.cuda.current_device() if device.index is None else device.index] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(device.type == "cpu")
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(previous)


def crop_frames(preset: Preset) -> int:
    """The training crop in mel frames, a whole number of tokens."""
    return int(preset.crop_seconds * MEL_FRAMES_PER_SECOND) // FRAMES_PER_TOKEN * FRAMES_PER_TOKEN


def _crop_batches(lengths: list[int], preset: Preset,
                  rng: np.random.Generator) -> Iterator[list[tuple[int, int, bool]]]:
    """Endless batches of (clip, start frame, keep CTC): clips in reshuffled epochs; a clip longer
    than the crop gets a random token-aligned crop and no CTC term (its transcript no longer fits)."""
    crop = crop_frames(preset)
    stream: list[int] = []
    while True:
        while len(stream) < preset.batch_size:
            stream.extend(rng.permutation(len(lengths)).tolist())
        batch, stream = stream[: preset.batch_size], stream[preset.batch_size:]
        items = []
        for i in batch:
            slack = (lengths[i] - crop) // FRAMES_PER_TOKEN
            start = int(rng.integers(0, slack + 1)) * FRAMES_PER_TOKEN if slack > 0 else 0
            items.append((i, start, slack <= 0))
        yield items


def _lr_factor(step: int, steps: int) -> float:
    """Learning-rate multiplier: linear warmup, then cosine decay to MIN_LR_FACTOR."""
    warmup = max(1, min(WARMUP_STEPS, steps // 10))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return MIN_LR_FACTOR + (1 - MIN_LR_FACTOR) * 0.5 * (1 + math.cos(math.pi * progress))


def _ctc_factor(step: int, steps: int) -> float:
    """CTC weight multiplier: 0 -> 1 over the first CTC_RAMP_SHARE of the run (see the module doc)."""
    return min(1.0, step / (CTC_RAMP_SHARE * steps))


@dataclass
class _Tail:
    """Running sums of the losses over the last TAIL_SHARE of the steps."""

    steps: int = 0
    recon: float = 0.0
    ctc: float = 0.0
    ctc_steps: int = 0

    def add(self, recon: torch.Tensor, ctc: torch.Tensor, chars: int) -> None:
        self.steps += 1
        self.recon += recon.item()
        if chars:
            self.ctc += ctc.item()
            self.ctc_steps += 1

    def metrics(self) -> dict[str, float]:
        out = {"train_recon_l1": self.recon / max(self.steps, 1)}
        return out | ({"train_ctc": self.ctc / self.ctc_steps} if self.ctc_steps else {})


def train_fsq(levels: tuple[int, ...], preset: str, steps: int, clips: Sequence[Clip], seed: int,
              frame_rate: float = 12.5, progress: Progress | None = None,
              device: str | torch.device | None = None) -> tuple[FSQTokenizer, dict[str, float]]:
    """Trains an FSQ tokenizer for exactly `steps` AdamW steps; returns it (on CPU) and metrics.

    `device`: CUDA when available, else CPU, unless given. Metrics: `train_recon_l1` and
    `train_ctc` (means over the last quarter of steps; no train_ctc without transcripts),
    `train_seconds` (the whole call), `step_seconds`, `parameters` (all) and `encoder_parameters`
    (what encoding uses), and `evaluate` on the training clips.
    """
    check_frame_rate(frame_rate)
    levels = check_levels(levels)
    config = get_preset(preset)
    if steps < 1:
        raise ValueError(f"audio tokenizer steps must be >= 1, got {steps}")
    clips = [c for c in clips if len(c.wav)]
    if not clips:
        raise DataError("cannot train an audio tokenizer without audio: every clip is empty",
                        "it trains on the filtered utterances: relax the sources' filters or add audio")
    started = time.perf_counter()
    device = torch.device(device) if device is not None else default_device()
    raw = [log_mel(c.wav) for c in clips]
    stats = MelStats.fit(raw)
    mels = [stats.normalize(m) for m in raw]
    targets = [text_to_ids(c.text) for c in clips]
    batches = _crop_batches([len(m) for m in mels], config, np.random.default_rng(seed))
    crop, tail, tail_start = crop_frames(config), _Tail(), steps - max(1, int(steps * TAIL_SHARE))
    with seeded(seed, device):
        model = FSQModel(config, levels).to(device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=BETAS, weight_decay=config.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, steps))
        loop_start = time.perf_counter()
        for step in range(steps):
            items = next(batches)
            mel, mask = (t.to(device) for t in pad_batch([mels[i][s: s + crop] for i, s, _ in items]))
            out = model(mel, mask)
            recon = recon_l1_sum(out, mel, mask) / (mask.sum() * N_MELS)
            ctc, chars = ctc_sum(out, [targets[i] if keep else [] for i, _, keep in items])
            ctc = ctc / max(chars, 1)
            loss = recon + config.ctc_weight * _ctc_factor(step, steps) * ctc
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
            optimizer.step()
            schedule.step()
            if step >= tail_start:
                tail.add(recon, ctc, chars)
            if progress and (step + 1) % max(1, steps // PROGRESS_CALLS) == 0:
                progress(step + 1, steps, {"loss": loss.item(), "recon_l1": recon.item(), "ctc": ctc.item()})
        step_seconds = (time.perf_counter() - loop_start) / steps
        tokenizer = FSQTokenizer(model.eval(), preset, config, levels, stats)
        metrics = tokenizer.evaluate(clips)
    tokenizer.to("cpu")
    return tokenizer, metrics | tail.metrics() | {
        "steps": float(steps), "step_seconds": step_seconds,
        "parameters": float(sum(p.numel() for p in model.parameters())),
        "encoder_parameters": float(tokenizer.encoder_parameters()),
        "train_seconds": time.perf_counter() - started}
