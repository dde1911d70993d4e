import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from mixc.planfile import ModelPlan, TrainingPlan
from runtime.composer_model import SpeechLMComposer
from runtime.model import PRESETS, BackboneError, BackboneLM, SpeechLM, build_model, flops_per_token, model_config


def test_tiny_forward_gives_logits_over_the_joint_vocabulary(plan_path: Path) -> None:
    plan = TrainingPlan.read(plan_path)
    model = build_model(plan)
    tokens = torch.randint(0, plan.vocab.size, (2, 16))
    assert model(tokens).shape == (2, 16, plan.vocab.size)
    assert sum(p.numel() for p in model.parameters()) == model_config(plan).num_params()


def test_attention_is_causal() -> None:
    torch.manual_seed(0)
    model = SpeechLM(replace(PRESETS["tiny"], vocab_size=50))
    tokens = torch.randint(0, 50, (1, 12))
    changed = tokens.clone()
    changed[0, 8] = (tokens[0, 8] + 1) % 50
    before, after = model(tokens), model(changed)
    assert torch.equal(before[0, :8], after[0, :8])
    assert not torch.allclose(before[0, 8:], after[0, 8:])


@pytest.mark.parametrize(("preset", "vocab", "low", "high"), [
    ("tiny", 300, 0.8e6, 1.0e6),
    ("125m", 32_768, 110e6, 140e6),
    ("1b", 160_000, 1.4e9, 1.7e9),
    ("3b", 160_000, 3.7e9, 3.9e9),  # the paper's 3.8B SpeechLM
])
def test_preset_sizes_without_allocating(preset: str, vocab: int, low: float, high: float) -> None:
    cfg = replace(PRESETS[preset], vocab_size=vocab)
    with torch.device("meta"):
        model = SpeechLM(cfg)
    counted = sum(p.numel() for p in model.parameters())
    assert counted == cfg.num_params()
    assert low <= counted <= high


@pytest.mark.parametrize("preset", ["125m", "1b", "3b"])
def test_every_preset_trains_a_packed_16k_batch_on_the_meta_device(preset: str) -> None:
    """A forward and backward pass of each large preset at the paper's 16,384 tokens with document
    attention, on the meta device: every shape and op of the step, no memory (numbers: a GPU's job)."""
    with torch.device("meta"):
        model = SpeechLM(replace(PRESETS[preset], vocab_size=160_000))
        ids = torch.zeros(1, 16_384, dtype=torch.long)
    logits = model(ids, doc_ids=ids, positions=ids)
    logits.float().logsumexp(-1).mean().backward()
    assert logits.shape == (1, 16_384, 160_000)
    assert all(p.grad is not None and p.grad.shape == p.shape for p in model.parameters())


def test_3b_blocks_are_the_papers_backbone_size() -> None:
    cfg = PRESETS["3b"]
    blocks = cfg.num_params(embedding=False) - cfg.vocab_size * cfg.d_model  # without the output head too
    assert 2.7e9 < blocks < 2.9e9


def test_flops_per_token_is_6n_plus_attention() -> None:
    cfg = replace(PRESETS["tiny"], vocab_size=300)
    model = SpeechLM(cfg)
    n = sum(p.numel() for p in model.parameters()) - model.embed.weight.numel()
    expected = 6 * n + 12 * cfg.n_layers * cfg.d_model * 64
    assert flops_per_token(model, 64) == flops_per_token(cfg, 64) == expected
    assert flops_per_token(SpeechLMComposer(model, pad_id=0), 64) == expected


@pytest.fixture
def tiny_llama(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=64)
    LlamaForCausalLM(cfg).save_pretrained(tmp_path / "llama")
    return tmp_path / "llama"


def backbone_plan(plan_path: Path, backbone: Path) -> TrainingPlan:
    plan = TrainingPlan.read(plan_path)
    return plan.model_copy(update={"model": ModelPlan(preset="tiny", backbone=str(backbone))})


def test_backbone_grows_its_vocabulary_with_xavier_rows(plan_path: Path, tiny_llama: Path) -> None:
    original = LlamaForCausalLM.from_pretrained(tiny_llama)
    model = build_model(backbone_plan(plan_path, tiny_llama))
    assert isinstance(model, BackboneLM)
    for old, new in [(original.get_input_embeddings().weight, model.hf.get_input_embeddings().weight),
                     (original.get_output_embeddings().weight, model.hf.get_output_embeddings().weight)]:
        assert new.shape == (300, 32)
        assert torch.equal(new[:100], old)  # pretrained rows untouched
        fresh = new[100:].detach()
        assert fresh.abs().min() > 0
        xavier_std = math.sqrt(2.0 / (200 + 32))
        assert 0.8 * xavier_std < fresh.std().item() < 1.2 * xavier_std
    assert not torch.equal(model.hf.get_input_embeddings().weight[100:], model.hf.get_output_embeddings().weight[100:])


def test_backbone_trains_through_the_composer_wrapper(plan_path: Path, tiny_llama: Path) -> None:
    model = SpeechLMComposer(build_model(backbone_plan(plan_path, tiny_llama)), pad_id=299)
    batch = {"tokens": torch.randint(0, 300, (2, 16)), "loss_mask": torch.ones(2, 16, dtype=torch.uint8)}
    loss = model.loss(model(batch), batch)
    loss.backward()
    assert torch.isfinite(loss)
    assert model.model.hf.get_input_embeddings().weight.grad[100:].abs().sum() > 0  # audio rows learn
    assert flops_per_token(model, 64) > 6 * 32 * 300


def test_backbone_errors_name_the_path_and_what_is_missing(plan_path: Path, tmp_path: Path) -> None:
    with pytest.raises(BackboneError, match=r"nowhere: the directory does not exist"):
        build_model(backbone_plan(plan_path, tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackboneError, match=r"empty: config.json is missing"):
        build_model(backbone_plan(plan_path, tmp_path / "empty"))
    (tmp_path / "empty" / "config.json").write_text("{}")
    with pytest.raises(BackboneError, match=r"empty: no weights file"):
        build_model(backbone_plan(plan_path, tmp_path / "empty"))
