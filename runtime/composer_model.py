"""The SpeechLM as a Composer model: masked next-token cross entropy over the joint vocabulary.

A batch is `{"tokens": int64 [B, T], "loss_mask": [B, T], "doc_ids": int64 [B, T], "positions": int64 [B, T]}`
as `runtime.data.collate` builds it; the model uses the last two under document attention (a batch
without them is one document per sequence). Position
t predicts tokens[t+1], and counts only when loss_mask[t+1] is 1: the mask marks which tokens are
training TARGETS (all of them, or text only for the paper's "understanding only" loss), so a masked
audio span is still read as context. The pad id is never a target, whatever the mask says.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from composer.metrics.nlp import LanguageCrossEntropy, LanguagePerplexity
from composer.models import ComposerModel
from torch import Tensor, nn
from torchmetrics import Metric

IGNORE = -100  # the ignore_index of torch's cross entropy and Composer's language metrics


def next_token_targets(tokens: Tensor, loss_mask: Tensor, pad_id: int) -> Tensor:
    """targets[b, t] = tokens[b, t+1] where that token is a training target, else IGNORE.

    Kept at the full length T (last column IGNORE) so logits need no slicing copy.
    """
    following = tokens[:, 1:]
    keep = loss_mask[:, 1:].bool() & (following != pad_id)
    targets = torch.full_like(tokens, IGNORE)
    targets[:, :-1] = torch.where(keep, following, IGNORE)
    return targets


def masked_next_token_loss(logits: Tensor, tokens: Tensor, loss_mask: Tensor, pad_id: int) -> Tensor:
    """Mean cross entropy over the target positions (fp32); 0 when a micro batch has none."""
    targets = next_token_targets(tokens, loss_mask, pad_id).reshape(-1)
    total = F.cross_entropy(logits.reshape(targets.numel(), -1).float(), targets, ignore_index=IGNORE,
                            reduction="sum")
    return total / (targets != IGNORE).sum().clamp_min(1)


def batch_token_counts(batch: dict[str, Tensor], pad_id: int) -> dict[str, int]:
    """Tokens a batch holds ("total", for throughput) and trains on ("loss_generating"), so Composer
    can weight micro batches by their targets: the step's loss is then the mean over every target
    token of the global batch, however it is split over devices and micro batches."""
    targets = next_token_targets(batch["tokens"], batch["loss_mask"], pad_id)
    return {"total": batch["tokens"].numel(), "loss_generating": int((targets != IGNORE).sum())}


class SpeechLMComposer(ComposerModel):
    """Wraps any tokens -> logits module (`runtime.model.SpeechLM` or a `BackboneLM`)."""

    def __init__(self, model: nn.Module, pad_id: int) -> None:
        super().__init__()
        self.model = model
        self.pad_id = pad_id
        self.eval_metrics: dict[str, Metric] = {"LanguageCrossEntropy": LanguageCrossEntropy(),
                                                "LanguagePerplexity": LanguagePerplexity()}

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return self.model(batch["tokens"], doc_ids=batch.get("doc_ids"), positions=batch.get("positions"))

    def loss(self, outputs: Tensor, batch: dict[str, Tensor], *args: Any, **kwargs: Any) -> Tensor:
        return masked_next_token_loss(outputs, batch["tokens"], batch["loss_mask"], self.pad_id)

    def eval_forward(self, batch: dict[str, Tensor], outputs: Tensor | None = None) -> Tensor:
        return outputs if outputs is not None else self.forward(batch)

    def get_metrics(self, is_train: bool = False) -> dict[str, Metric]:
        """Cross entropy and perplexity on evaluation data. None while training: the training loss is
        already the token-weighted cross entropy of each global batch (logged every step), and a
        metric would run a second full-vocabulary cross entropy over every micro batch."""
        return {} if is_train else self.eval_metrics

    def update_metric(self, batch: dict[str, Tensor], outputs: Tensor, metric: Metric) -> None:
        metric.update(outputs, next_token_targets(batch["tokens"], batch["loss_mask"], self.pad_id))
