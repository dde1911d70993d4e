"""A Composer callback that records what a run trained on, for the resume and multi-process tests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from composer import Callback
from composer.core import State
from composer.loggers import Logger


def row_hash(row: torch.Tensor) -> str:
    return hashlib.sha1(row.cpu().numpy().tobytes()).hexdigest()


class BatchRecorder(Callback):
    """Per step, the hashes of the sequences this process trained on; at the end, the final weights
    (unsharded models only) and, when `out` is given, a JSON file with the hashes and the last loss."""

    def __init__(self, out: Path | None = None) -> None:
        self.out = out
        self.batches: list[list[str]] = []
        self.weights: dict[str, torch.Tensor] = {}

    def after_dataloader(self, state: State, logger: Logger) -> None:
        self.batches.append([row_hash(row) for row in state.batch["tokens"]])

    def fit_end(self, state: State, logger: Logger) -> None:
        if self.out is None:
            self.weights = {k: v.detach().cpu().clone() for k, v in state.model.state_dict().items()}
        else:
            self.out.write_text(json.dumps({"batches": self.batches,
                                            "loss": state.total_loss_dict.get("loss/train/total")}))
