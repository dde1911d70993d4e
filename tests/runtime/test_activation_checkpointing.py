"""`train.activation_checkpointing`: blocks recompute their activations in the backward pass; the
loss and every gradient are those of the run that kept them, for the preset and a backbone."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from mixc.planfile import TrainingPlan
from runtime.model import PRESETS, BackboneLM, SpeechLM, build_model, checkpoint_activations
from runtime.train import train
from tests.runtime.test_document_attention import VOCAB, packed_batch


def loss_and_grads(model: torch.nn.Module) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    tokens, doc_ids, positions = packed_batch()
    model.train()
    loss = model(tokens, doc_ids=doc_ids, positions=positions).float().logsumexp(-1).mean()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def backbone() -> BackboneLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64)
    return BackboneLM(LlamaForCausalLM._from_config(cfg, attn_implementation="sdpa"))


@pytest.mark.parametrize("make", [lambda: SpeechLM(replace(PRESETS["tiny"], vocab_size=VOCAB, n_kv_heads=2)),
                                  backbone], ids=["preset", "backbone"])
def test_recomputed_blocks_give_the_same_loss_and_gradients(make: Callable[[], torch.nn.Module]) -> None:
    torch.manual_seed(0)
    kept = make()
    recomputed = copy.deepcopy(kept)
    checkpoint_activations(recomputed)
    loss, grads = loss_and_grads(kept)
    loss_again, grads_again = loss_and_grads(recomputed)
    torch.testing.assert_close(loss_again, loss)
    assert grads_again.keys() == grads.keys() and grads
    for name in grads:
        torch.testing.assert_close(grads_again[name], grads[name], atol=1e-6, rtol=1e-5, msg=name)


def test_the_preset_recomputes_only_while_training(monkeypatch: pytest.MonkeyPatch) -> None:
    model = SpeechLM(replace(PRESETS["tiny"], vocab_size=VOCAB))
    checkpoint_activations(model)
    calls: list[int] = []
    monkeypatch.setattr("runtime.model.checkpoint", lambda fn, *a, **kw: calls.append(1) or fn(*a))
    tokens, doc_ids, positions = packed_batch()
    model.train()(tokens, doc_ids=doc_ids)
    assert len(calls) == model.cfg.n_layers
    with torch.no_grad():
        model.eval()(tokens, doc_ids=doc_ids)  # scoring: nothing to recompute
    assert len(calls) == model.cfg.n_layers


def test_the_plan_turns_it_on_and_a_run_trains(plan_factory: Callable[..., Path], tmp_path: Path) -> None:
    plan = plan_factory(activation_checkpointing=True)
    assert TrainingPlan.read(plan).trainer.activation_checkpointing
    assert build_model(TrainingPlan.read(plan)).checkpointing  # type: ignore[union-attr]
    result = train(plan, run_dir=tmp_path / "run", max_duration="3ba", device="cpu")
    assert result.step == 3 and result.loss is not None
