"""Voice activity detection: silero-vad's ONNX model (shipped inside the package), on the CPU."""

from __future__ import annotations

from importlib.metadata import version

import numpy as np

from mixc import ir
from mixc.audio import SAMPLE_RATE, Region


def locate(cfg: ir.Vad) -> None:
    """silero's weights ship inside its package: nothing can be missing."""


def model_revision(cfg: ir.Vad) -> str:
    return f"silero-vad=={version('silero-vad')}:onnx"


class SileroVad:
    def __init__(self, cfg: ir.Vad, threads: int = 1):
        import torch
        from silero_vad import load_silero_vad

        torch.set_num_threads(threads)
        self.cfg = cfg
        self.model = load_silero_vad(onnx=True)

    def regions(self, wav: np.ndarray) -> list[Region]:
        """Speech regions of 16 kHz mono audio, in seconds, sorted and disjoint."""
        import torch
        from silero_vad import get_speech_timestamps

        if len(wav) < SAMPLE_RATE // 10:
            return []
        cfg = self.cfg
        stamps = get_speech_timestamps(
            torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)), self.model, threshold=cfg.threshold,
            sampling_rate=SAMPLE_RATE, min_speech_duration_ms=round(cfg.min_speech * 1000),
            min_silence_duration_ms=round(cfg.min_silence * 1000), speech_pad_ms=round(cfg.pad * 1000))
        self.model.reset_states()
        return [Region(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in stamps]


def load(cfg: ir.Vad, threads: int = 1) -> SileroVad:
    return SileroVad(cfg, threads)
