"""Scorers on a causal LM's logits, with lm-evaluation-harness's conventions.

A model here is any callable from token ids `[B, T]` (int64) to logits `[B, T, V]`: the SpeechLM, or
a Hugging Face causal LM wrapped by `hf_logits`. Everything is computed in float64 from the model's
float32 log-softmax, one item at a time (its choices in one batch, right-padded), so an item's numbers
do not depend on which other items are scored with it, nor on how many processes share the work.

- `continuation_logprobs`: the log-likelihood of each continuation after a context, and whether it
  is the greedy continuation (lm-eval's `loglikelihood` request: context and continuation are token
  lists; the context's last token predicts the continuation's first).
- `token_logprobs`: each token's log-likelihood after the ones before it (held-out perplexity).
- `multiple_choice`: a cloze multiple-choice item's `acc` (argmax of the summed log-likelihood) and
  `acc_norm` (argmax of the log-likelihood divided by the choice's length in characters; as in
  lm-eval, the choice's own text, without the leading space it is scored with).
- `gap`: the modality gap of one item: divergences between the next-token distributions after the
  spoken and after the written question, over the gold answer's positions (see docs/evaluation.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

Logits = Callable[[Tensor], Tensor]  # token ids [B, T] -> logits [B, T, V]


@dataclass(frozen=True)
class Scored:
    """One continuation: its summed log-likelihood and whether greedy decoding would produce it."""
    loglik: float
    greedy: bool


def _padded(rows: Sequence[Sequence[int]], pad: int) -> Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([list(r) + [pad] * (width - len(r)) for r in rows], dtype=torch.long)


@torch.no_grad()
def _logprobs(model: Logits, rows: Sequence[Sequence[int]], device: torch.device | str) -> Tensor:
    """log-softmax of the model over right-padded rows, float64 [B, T, V] (padding never reaches
    an earlier position of a causal model)."""
    logits = model(_padded(rows, 0).to(device))
    return torch.log_softmax(logits.float(), dim=-1).double().cpu()


def continuation_logprobs(model: Logits, context: Sequence[int], continuations: Sequence[Sequence[int]],
                          device: torch.device | str = "cpu") -> list[Scored]:
    """Each continuation's log-likelihood given `context` (one forward pass for all of them)."""
    if not context or any(not c for c in continuations):
        raise ValueError("a context and every continuation need at least one token")
    rows = [list(context) + list(c) for c in continuations]
    logp = _logprobs(model, rows, device)
    out = []
    for i, cont in enumerate(continuations):
        positions = torch.arange(len(context) - 1, len(context) - 1 + len(cont))
        target = torch.tensor(list(cont), dtype=torch.long)
        picked = logp[i, positions].gather(-1, target[:, None])[:, 0]
        greedy = bool(torch.equal(logp[i, positions].argmax(-1), target))
        out.append(Scored(float(picked.sum()), greedy))
    return out


def token_logprobs(model: Logits, tokens: Sequence[int], device: torch.device | str = "cpu") -> Tensor:
    """The log-likelihood of each token after the ones before it: float64 [T-1], for tokens[1:]
    (gathered where the model runs, so a long window never moves a [T, V] tensor)."""
    if len(tokens) < 2:
        raise ValueError("a window needs at least two tokens")
    ids = torch.tensor([list(tokens)], dtype=torch.long, device=device)
    logp = torch.log_softmax(model(ids).float(), dim=-1)[0, :-1]
    return logp.gather(-1, ids[0, 1:, None])[:, 0].double().cpu()


@dataclass(frozen=True)
class ChoiceResult:
    logliks: tuple[float, ...]
    acc: float
    acc_norm: float


def multiple_choice(scored: Sequence[Scored], choice_chars: Sequence[int], answer: int) -> ChoiceResult:
    """lm-eval's multiple_choice metrics for one item: first argmax wins ties, as numpy's does."""
    logliks = [s.loglik for s in scored]
    best = max(range(len(logliks)), key=lambda i: (logliks[i], -i))
    normed = [ll / chars for ll, chars in zip(logliks, choice_chars)]
    best_norm = max(range(len(normed)), key=lambda i: (normed[i], -i))
    return ChoiceResult(tuple(logliks), float(best == answer), float(best_norm == answer))


@dataclass(frozen=True)
class Gap:
    """Mean divergences over the gold answer's positions (nats). `spoken_written` is the paper's
    reverse KL, KL(P_spoken || P_written); `text_*` renormalise both distributions over the text
    vocabulary (ids below `text_size`) first."""
    spoken_written: float
    written_spoken: float
    js: float
    text_spoken_written: float
    text_written_spoken: float
    text_js: float


def _divergences(p_log: Tensor, q_log: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per position: KL(p||q), KL(q||p), JS(p, q), from log-probabilities [N, V] (float64)."""
    p, q = p_log.exp(), q_log.exp()
    m_log = torch.logaddexp(p_log, q_log) - torch.log(torch.tensor(2.0, dtype=torch.float64))
    kl_pq = (p * (p_log - q_log)).sum(-1)
    kl_qp = (q * (q_log - p_log)).sum(-1)
    js = 0.5 * (p * (p_log - m_log)).sum(-1) + 0.5 * (q * (q_log - m_log)).sum(-1)
    return kl_pq, kl_qp, js


def gap(model: Logits, spoken: Sequence[int], written: Sequence[int], answer: Sequence[int], text_size: int,
        device: torch.device | str = "cpu") -> Gap:
    """The modality gap of one item: the next-token distributions at each of the answer's positions
    (the one predicting answer[0], then each after a gold answer token), after the spoken context
    and after the written one."""
    if not answer:
        raise ValueError("the gold answer needs at least one token")
    logp = _logprobs(model, [list(spoken) + list(answer), list(written) + list(answer)], device)
    n = len(answer)
    s = logp[0, len(spoken) - 1:len(spoken) - 1 + n]
    w = logp[1, len(written) - 1:len(written) - 1 + n]
    full = [t.mean().item() for t in _divergences(s, w)]
    s_text = s[:, :text_size] - torch.logsumexp(s[:, :text_size], -1, keepdim=True)
    w_text = w[:, :text_size] - torch.logsumexp(w[:, :text_size], -1, keepdim=True)
    text = [t.mean().item() for t in _divergences(s_text, w_text)]
    return Gap(full[0], full[1], full[2], text[0], text[1], text[2])


def hf_logits(model: torch.nn.Module) -> Logits:
    """A Hugging Face causal LM as a `Logits` callable."""
    return lambda ids: model(input_ids=ids).logits
