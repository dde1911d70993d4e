"""Document attention (`train.attention = document`): a packed sequence computes exactly what each of
its documents would alone, unpacked; `causal` attends across them."""

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

import runtime.model
from mixc.errors import DataError
from mixc.planfile import ModelPlan, TrainingPlan
from runtime.composer_model import SpeechLMComposer
from runtime.data import build_dataset, build_loader, collate, documents, release
from runtime.model import (
    PRESETS,
    BackboneLM,
    SpeechLM,
    build_model,
    document_block_mask,
    document_mask,
    document_positions,
)
from runtime.train import train

VOCAB = 50
LENGTHS = (7, 12, 9)  # three documents packed into one sequence of 28 tokens


def packed_batch(lengths: tuple[int, ...] = LENGTHS) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """tokens [1, T], and doc_ids / positions as the loader builds them from the boundaries."""
    torch.manual_seed(1)
    tokens = torch.randint(0, VOCAB, (1, sum(lengths)))
    boundaries = np.cumsum([0, *lengths[:-1]]).astype(np.int32)
    doc_ids, positions = documents(boundaries, sum(lengths))
    return tokens, torch.from_numpy(doc_ids)[None], torch.from_numpy(positions)[None]


def per_document(model: torch.nn.Module, tokens: torch.Tensor, lengths: tuple[int, ...] = LENGTHS) -> torch.Tensor:
    """Each document run alone, unpacked, the logits concatenated back in packed order."""
    pieces, start = [], 0
    for n in lengths:
        pieces.append(model(tokens[:, start:start + n]))
        start += n
    return torch.cat(pieces, dim=1)


@pytest.fixture
def speech_lm() -> SpeechLM:
    torch.manual_seed(0)
    return SpeechLM(replace(PRESETS["tiny"], vocab_size=VOCAB, n_kv_heads=2), attention="document").eval()


def test_packed_documents_match_each_document_alone(speech_lm: SpeechLM) -> None:
    tokens, doc_ids, positions = packed_batch()
    with torch.no_grad():
        packed = speech_lm(tokens, doc_ids=doc_ids, positions=positions)
        alone = per_document(speech_lm, tokens)
    torch.testing.assert_close(packed, alone, atol=1e-5, rtol=1e-5)


def test_positions_default_to_restarting_at_each_document(speech_lm: SpeechLM) -> None:
    tokens, doc_ids, positions = packed_batch()
    assert torch.equal(document_positions(doc_ids), positions)
    with torch.no_grad():
        assert torch.equal(speech_lm(tokens, doc_ids=doc_ids), speech_lm(tokens, doc_ids=doc_ids, positions=positions))


def test_causal_attention_crosses_documents(speech_lm: SpeechLM) -> None:
    tokens, doc_ids, positions = packed_batch()
    causal = SpeechLM(speech_lm.cfg, attention="causal").eval()
    causal.load_state_dict(speech_lm.state_dict())
    with torch.no_grad():
        by_document = speech_lm(tokens, doc_ids=doc_ids, positions=positions)
        across = causal(tokens, doc_ids=doc_ids, positions=positions)
        assert torch.equal(across, causal(tokens))  # causal ignores the documents: today's behaviour
    first = LENGTHS[0]
    torch.testing.assert_close(across[:, :first], by_document[:, :first], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(across[:, first:], by_document[:, first:], atol=1e-3)


def test_without_documents_attention_is_plain_causal(speech_lm: SpeechLM) -> None:
    tokens, _, _ = packed_batch()
    one = torch.zeros_like(tokens)
    with torch.no_grad():
        torch.testing.assert_close(speech_lm(tokens, doc_ids=one), speech_lm(tokens), atol=1e-5, rtol=1e-5)


def test_document_mask_is_same_document_and_causal() -> None:
    mask = document_mask(torch.tensor([[0, 0, 1, 1, 1]]))[0, 0]
    expected = torch.tensor([[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 1, 1, 0], [0, 0, 1, 1, 1]])
    assert torch.equal(mask, expected.bool())


def test_the_flex_attention_block_mask_computes_the_same_attention(speech_lm: SpeechLM,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU path (FlexAttention under a block mask) against the CPU path (a boolean mask) and each
    document alone; forward only, as FlexAttention has no backward pass on CPU. Two sequences of
    other packings, 160 tokens: two 128-token tiles, one of them partly masked."""
    lengths = ((50, 70, 40), (100, 60))
    torch.manual_seed(2)
    tokens = torch.randint(0, VOCAB, (2, 160))
    batch = [documents(np.cumsum([0, *n[:-1]]).astype(np.int32), 160) for n in lengths]
    doc_ids = torch.from_numpy(np.stack([d for d, _ in batch]))
    with torch.no_grad():
        sdpa = speech_lm(tokens, doc_ids=doc_ids)
        monkeypatch.setattr(runtime.model, "use_flex", lambda device: True)
        flexed = speech_lm(tokens, doc_ids=doc_ids)
        alone = torch.cat([per_document(speech_lm, tokens[i:i + 1], n) for i, n in enumerate(lengths)])
    torch.testing.assert_close(flexed, sdpa, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(flexed, alone, atol=1e-5, rtol=1e-5)
    mask = document_block_mask(doc_ids)
    dense = mask.to_dense()  # [B, 1, tiles, tiles]: which 128 x 128 tiles are computed at all
    assert dense.shape == (2, 1, 2, 2) and not dense[:, :, 0, 1].any()  # no tile above the diagonal


def test_the_compiled_flex_attention_gives_what_the_eager_one_does() -> None:
    """The compiled `flex_attention` GPUs run (inductor's CPU template here, Triton's there), under a
    document block mask, with grouped-query heads; forward, as on CPU there is no backward."""
    torch.manual_seed(3)
    doc_ids = torch.tensor([[0] * 50 + [1] * 70 + [2] * 40, [0] * 100 + [1] * 60])
    q, k, v = torch.randn(2, 4, 160, 16), torch.randn(2, 2, 160, 16), torch.randn(2, 2, 160, 16)
    mask = document_block_mask(doc_ids)
    compiled = runtime.model._compiled_flex()(q, k, v, block_mask=mask, enable_gqa=True)
    torch.testing.assert_close(compiled, runtime.model.flex(q, k, v, mask, gqa=True), atol=1e-5, rtol=1e-5)


def test_collate_builds_document_ids_and_positions_from_boundaries() -> None:
    tokens = np.arange(10, dtype=np.uint16)
    mask = np.ones(10, dtype=np.uint8)
    batch = collate([{"tokens": tokens, "loss_mask": mask, "boundaries": np.array([0, 3, 7], np.int32)},
                     {"tokens": tokens, "loss_mask": mask, "boundaries": np.array([0], np.int32)},
                     {"tokens": tokens, "loss_mask": mask}])  # no boundaries: one document
    assert batch["doc_ids"].dtype == torch.int64 and batch["positions"].dtype == torch.int64
    assert batch["doc_ids"].tolist() == [[0, 0, 0, 1, 1, 1, 1, 2, 2, 2], [0] * 10, [0] * 10]
    assert batch["positions"].tolist() == [[0, 1, 2, 0, 1, 2, 3, 0, 1, 2], list(range(10)), list(range(10))]


def test_boundaries_outside_the_sequence_are_a_data_error() -> None:
    with pytest.raises(DataError, match="boundaries"):
        documents(np.array([0, 12], np.int32), 10)


def test_loader_batches_follow_the_shards_boundaries(plan_path: Path) -> None:
    plan = TrainingPlan.read(plan_path)
    dataset = build_dataset(plan, plan_path.parent, device_batch_size=4)
    try:
        batch = next(iter(build_loader(dataset, 4)))
    finally:
        release(dataset)
    for doc_ids, positions in zip(batch["doc_ids"], batch["positions"]):
        starts = torch.nonzero(positions == 0)[:, 0]
        assert 2 <= len(starts) <= 3 and starts[0] == 0  # the fixture packs 2-3 documents per sequence
        assert torch.equal(torch.unique(doc_ids), torch.arange(len(starts)))
        assert torch.equal(doc_ids[starts], torch.arange(len(starts)))


def test_backbone_takes_the_document_mask_and_positions(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64)
    hf = LlamaForCausalLM._from_config(cfg, attn_implementation="sdpa").eval()
    model = BackboneLM(hf, attention="document")
    tokens, doc_ids, positions = packed_batch()
    with torch.no_grad():
        packed = model(tokens, doc_ids=doc_ids, positions=positions)
        alone = per_document(model, tokens)
    torch.testing.assert_close(packed, alone, atol=1e-5, rtol=1e-5)


def test_the_plan_chooses_the_attention(plan_path: Path) -> None:
    plan = TrainingPlan.read(plan_path)
    assert plan.model.attention == "document"  # the default, also for a plan.json without the field
    causal = plan.model_copy(update={"model": ModelPlan(preset="tiny", attention="causal")})
    model = build_model(causal)
    assert isinstance(model, SpeechLM) and model.attention == "causal"


def test_composer_wrapper_passes_the_documents(speech_lm: SpeechLM) -> None:
    tokens, doc_ids, positions = packed_batch()
    wrapped = SpeechLMComposer(speech_lm, pad_id=VOCAB - 1)
    batch = {"tokens": tokens, "loss_mask": torch.ones_like(tokens), "doc_ids": doc_ids, "positions": positions}
    with torch.no_grad():
        assert torch.equal(wrapped(batch), speech_lm(tokens, doc_ids=doc_ids, positions=positions))


@pytest.mark.parametrize("attention", ["causal", "document"])
def test_training_runs_with_either_attention(plan_factory: Callable[..., Path], tmp_path: Path,
                                             attention: str) -> None:
    path = plan_factory()
    plan = TrainingPlan.read(path)
    plan.model_copy(update={"model": ModelPlan(preset="tiny", attention=attention)}).dump(path)
    result = train(path, run_dir=tmp_path / "run", max_duration="3ba", device="cpu")
    assert result.step == 3 and result.loss is not None and np.isfinite(result.loss)
