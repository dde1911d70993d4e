"""Training progress a person can read: loss, learning rate, tokens/s and MFU every `log_every` steps,
printed and appended to `run_dir/metrics.jsonl` (one JSON object per logged step: the loss curve).

MFU = achieved model FLOP/s / peak FLOP/s of the devices, with the model FLOPs from
`runtime.model.flops_per_token`. Peaks are the dense bf16 tensor-core figures of the data sheets; on
CPU, or in fp32 (no tensor-core peak to compare with), MFU is null.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import dist

# dense bf16 peak FLOP/s by device-name fragment, most specific first
PEAK_BF16_FLOPS: dict[str, float] = {"H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12, "A100": 312e12}
MIXED_PRECISIONS = ("amp_bf16", "amp_fp16")


def peak_flops(device: str, precision: str) -> float | None:
    """Per-device peak for MFU, or None where there is no meaningful one (CPU, fp32, unknown GPU)."""
    if device != "gpu" or precision not in MIXED_PRECISIONS:
        return None
    name = torch.cuda.get_device_name()
    return next((peak for fragment, peak in PEAK_BF16_FLOPS.items() if fragment in name), None)


def keep_steps_up_to(path: Path, step: int) -> None:
    """Drop logged rows past `step`: after resuming from a checkpoint those steps are trained again,
    and the curve must not hold them twice."""
    if not path.exists():
        return
    rows = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    path.write_text("".join(row + "\n" for row in rows))


def last_logged_loss(path: Path) -> float | None:
    """The loss of the last logged step, for a rerun that finds its run already complete."""
    if not path.exists():
        return None
    losses = [row["loss"] for row in map(json.loads, path.read_text().splitlines()) if "loss" in row]
    return losses[-1] if losses else None


class MetricsLog(Callback):
    """Logs every `every` batches and at the end of training; only global rank 0 prints and writes."""

    def __init__(self, path: Path, every: int, flops_per_token: float, peak: float | None) -> None:
        self.path, self.every, self.flops_per_token, self.peak = path, every, flops_per_token, peak
        self._lr = 0.0
        self._time = 0.0
        self._tokens = 0
        self._logged = -1

    def fit_start(self, state: State, logger: Logger) -> None:
        self._time, self._tokens = time.perf_counter(), int(state.timestamp.token)
        if dist.get_global_rank() == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            keep_steps_up_to(self.path, int(state.timestamp.batch))

    def batch_start(self, state: State, logger: Logger) -> None:
        self._lr = state.optimizers[0].param_groups[0]["lr"]  # the rate this step uses

    def batch_end(self, state: State, logger: Logger) -> None:
        if int(state.timestamp.batch) % self.every == 0:
            self._log(state, logger)

    def fit_end(self, state: State, logger: Logger) -> None:
        if int(state.timestamp.batch) != self._logged and state.total_loss_dict:
            self._log(state, logger)

    def _log(self, state: State, logger: Logger) -> None:
        now, tokens, step = time.perf_counter(), int(state.timestamp.token), int(state.timestamp.batch)
        tokens_per_sec = (tokens - self._tokens) / max(now - self._time, 1e-9)
        mfu = tokens_per_sec * self.flops_per_token / (self.peak * dist.get_world_size()) if self.peak else None
        loss = state.total_loss_dict.get("loss/train/total")
        row = {"step": step, "loss": loss, "lr": self._lr, "tokens_per_sec": tokens_per_sec, "mfu": mfu}
        logger.log_metrics({"throughput/tokens_per_sec": tokens_per_sec, "lr": self._lr}
                           | ({"throughput/mfu": mfu} if mfu is not None else {}))
        if dist.get_global_rank() == 0:
            with self.path.open("a") as f:
                f.write(json.dumps(row) + "\n")
            shown = "-" if loss is None else f"{loss:.4f} (ppl {math.exp(min(loss, 50.0)):.1f})"
            print(f"[mixc train] step {step} | loss {shown} | lr {self._lr:.2e} | "
                  f"{tokens_per_sec:,.0f} tok/s | mfu {'-' if mfu is None else f'{mfu:.1%}'}", flush=True)
        self._time, self._tokens, self._logged = now, tokens, step
