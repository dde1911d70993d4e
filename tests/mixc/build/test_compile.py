"""`mixc compile` end to end on a small text workspace: outputs, cache reuse, determinism, errors."""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from streaming import StreamingDataset

from mixc.build.compile import allocate
from mixc.lang.diagnostics import SpecError
from mixc.planfile import Lock, TrainingPlan
from tests.mixc.workspace import TWO_SOURCES, workspace


def spec_text(vocab: str = "400", news: int = 70, books: int = 30) -> str:
    return TWO_SOURCES.format(vocab=vocab, news=news, books=books)


def shard_hashes(out: Path) -> dict[str, str]:
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((out / "streams").rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    ws = workspace(tmp_path_factory.mktemp("ws"))
    result = ws.compile(ws.spec(spec_text()))
    return ws, result


def built(result) -> set[str]:
    return {sid for sid, r in result.runs.items() if not r.hit}


def test_outputs_validate_and_agree(compiled):
    ws, result = compiled
    out = result.out
    plan = TrainingPlan.read(out / "plan.json")
    lock = Lock.read(out / "mix.lock")
    assert plan.epoch_samples == 20 * 4
    assert sum(s.choose for s in plan.streams) == plan.epoch_samples
    assert {s.name: s.choose for s in plan.streams} == {"news": 56, "books": 24}
    assert plan.vocab.size == 400 and plan.vocab.dtype == "uint16"
    assert (out / plan.vocab.tokenizer).exists()
    assert {s.path for s in lock.shards} == set(shard_hashes(out))
    assert lock.tokens == {s.name: s.tokens for s in plan.streams}
    assert set(lock.sources) == {"news", "books"}
    report = (out / "report.md").read_text()
    assert "| news | 70.00% | 70.00% |" in report and "duplicate" in report


def test_streams_read_back_with_streaming(compiled, tmp_path):
    _, result = compiled
    plan = result.plan
    news = next(s for s in plan.streams if s.name == "news")
    local = tmp_path / "news"  # streaming decompresses shards beside the originals: read a copy
    shutil.copytree(result.out / news.path, local)
    ds = StreamingDataset(local=str(local), shuffle=False, batch_size=1)
    assert ds.num_samples == news.samples
    sample = ds[0]
    assert sample["tokens"].dtype == np.uint16 and sample["tokens"].shape == (plan.seq_len,)
    assert sample["loss_mask"].all()
    assert sample["boundaries"][0] == 0 and len(sample["lineage"]) >= 1
    eos_at = np.flatnonzero(sample["tokens"] == plan.vocab.eos)
    assert set(sample["boundaries"][1:]) == set(eos_at + 1) - {plan.seq_len}


def test_unchanged_spec_is_all_cache_hits(compiled):
    ws, _ = compiled
    again = ws.compile(ws.spec(spec_text()), out="again")
    assert built(again) == set()
    assert shard_hashes(again.out) == shard_hashes(compiled[1].out)


def test_ratio_change_rebuilds_no_stage(compiled):
    ws, _ = compiled
    result = ws.compile(ws.spec(spec_text(news=50, books=50), "ratio.mix"), out="ratio")
    assert built(result) == set()
    assert {s.name: s.choose for s in result.plan.streams} == {"news": 40, "books": 40}


def test_tokenizer_change_rebuilds_from_tokenizer_down_not_ingestion(compiled):
    ws, _ = compiled
    result = ws.compile(ws.spec(spec_text(vocab="300"), "vocab.mix"), out="vocab")
    assert built(result) == {"train_bpe:text", "tokenize:news", "tokenize:books", "pack:news", "pack:books",
                             "shards:news", "shards:books"}


def test_edited_input_file_rebuilds_only_its_source(compiled):
    ws, _ = compiled
    book = ws.root / "data" / "books" / "book0.txt"
    original = book.read_text()
    try:
        book.write_text(original + " A new closing sentence.")
        result = ws.compile(ws.spec(spec_text()), out="edited")
        assert "read:news" not in built(result) and "read:books" in built(result)
    finally:
        book.write_text(original)


def test_compile_is_byte_identical_from_scratch(compiled, tmp_path):
    ws = workspace(tmp_path / "other-place", cache=tmp_path / "fresh-cache")
    result = ws.compile(ws.spec(spec_text()))
    assert built(result) == set(result.runs)  # really rebuilt, in another folder
    assert shard_hashes(result.out) == shard_hashes(compiled[1].out)
    assert Lock.read(result.out / "mix.lock").stage_keys == Lock.read(compiled[1].out / "mix.lock").stage_keys


def test_parallel_tokenization_gives_the_same_bytes(compiled, tmp_path):
    ws = workspace(tmp_path / "par", cache=tmp_path / "par-cache")
    result = ws.compile(ws.spec(spec_text()), workers=2)
    assert shard_hashes(result.out) == shard_hashes(compiled[1].out)


def test_budget_over_repeat_cap_is_a_located_error(compiled):
    ws, _ = compiled
    text = spec_text().replace('files = "data/books/*.txt"', 'files = "data/books/*.txt"\n  max_repeats = 0.01')
    spec = ws.spec(text, "capped.mix")
    with pytest.raises(SpecError) as info:
        ws.compile(spec, out="capped")
    diag = info.value.diagnostics[0]
    assert diag.code == "budget.infeasible" and "books" in diag.message
    assert diag.span.file.endswith("capped.mix") and diag.span.line == 8


def test_allocate_is_exact_and_proportional():
    counts = allocate({"a": 0.59 * 0.4, "b": 0.06 * 0.4, "c": 0.35 * 0.4, "t": 0.6}, 512 * 200_000)
    assert sum(counts.values()) == 512 * 200_000
    assert abs(counts["b"] - 0.024 * 512 * 200_000) <= 1
    assert allocate({"x": 1 / 3, "y": 1 / 3, "z": 1 / 3}, 10) == {"x": 4, "y": 3, "z": 3}


def test_plan_json_schema_rejects_unknown_fields(compiled):
    data = json.loads((compiled[1].out / "plan.json").read_text())
    data["streams"][0]["surprise"] = 1
    with pytest.raises(ValueError):
        TrainingPlan.model_validate(data)
    assert data["schema"] == "mixc.plan/1"


def test_plan_previews_cache_hits_before_compiling(compiled):
    from mixc.build.execute import Executor
    from mixc.lang.lower import load
    from mixc.stages import graph

    ws, _ = compiled

    def preview(text: str, name: str) -> set[str]:
        low = load(ws.spec(text, name))
        status = Executor(low.ir, low.root, ws.cache).preview(graph(low.ir))
        return {sid for sid, hit in status.items() if not hit}

    assert preview(spec_text(), "same.mix") == set()
    assert preview(spec_text(news=50, books=50), "ratio-preview.mix") == set()
    assert preview(spec_text(vocab="350"), "vocab-preview.mix") == {
        "train_bpe:text", "tokenize:news", "tokenize:books", "pack:news", "pack:books", "shards:news", "shards:books"}
