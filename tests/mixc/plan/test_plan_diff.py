"""Plan (stage keys, budget table) and diff (typed edits, factors, invalidated stages)."""

import shutil
from pathlib import Path

import pytest

from mixc.lang.lower import load
from mixc.plan import dag
from mixc.plan.diff import diff as spec_diff
from mixc.plan.overview import overview
from mixc.stages import graph
from tests.conftest import REPO

SPECS = REPO / "specs"
ABLATIONS = sorted((SPECS / "ablations").glob("*.mix"))


def ir(path: Path):
    low = load(path)
    assert low.ok, [d.message for d in low.diagnostics]
    return low.ir


def _diff(a, b):
    return spec_diff(a, b, graph(a), graph(b))


def test_keys_stable_across_checkout_locations(tmp_path):
    copy = tmp_path / "elsewhere"
    shutil.copytree(REPO / "specs", copy / "specs")
    (copy / "pyproject.toml").write_text("")  # the workspace root marker
    here = {sid: s.key for sid, s in graph(ir(SPECS / "spelangy.mix")).items()}
    there = {sid: s.key for sid, s in graph(ir(copy / "specs" / "spelangy.mix")).items()}
    assert here == there


def test_keys_ignore_comments_and_layout(tmp_path):
    (tmp_path / "pyproject.toml").write_text("")
    text = (SPECS / "demo.mix").read_text().replace("../data", "../../data")
    (tmp_path / "specs").mkdir()
    a = tmp_path / "specs" / "a.mix"
    b = tmp_path / "specs" / "b.mix"
    a.write_text(text)
    b.write_text("# a comment\n\n" + text.replace("\n", "\n\n").replace("  ", "    "))
    ka = {sid: s.key for sid, s in graph(ir(a)).items()}
    kb = {sid: s.key for sid, s in graph(ir(b)).items()}
    assert ka == kb


@pytest.mark.parametrize("ablation", ABLATIONS, ids=lambda p: p.stem)
def test_every_ablation_changes_at_most_one_factor(ablation):
    result = _diff(ir(SPECS / "spelangy.mix"), ir(ablation))
    if ablation.stem == "mix_web_quest_krist":  # the paper's full sub-mix is the base recipe itself
        assert result.edits == []
    else:
        assert len(result.factors) == 1, result.factors


def test_coarse_is_chunk_granularity_and_rebuilds_web_from_chunking_on():
    result = _diff(ir(SPECS / "spelangy.mix"), ir(SPECS / "ablations" / "coarse.mix"))
    assert result.factors == ["chunk granularity"]
    contamination = {f"contamination:{name}" for name in ir(SPECS / "spelangy.mix").eval.sets}  # reads the chunks
    web = {"chunk:web", "encode:web", "interleave:web", "pack:web", "shards:web"}
    assert set(result.rebuilt) == web | contamination
    assert not result.added and not result.removed


def test_ratio_change_is_plan_only(tmp_path):
    override = "mixture { 70% text_corpus 30% speech { 50% web 20% quest 30% krist } }"
    result = _diff(ir(SPECS / "spelangy.mix"), ir(_with(tmp_path, SPECS / "spelangy.mix", override)))
    assert result.factors == ["mixture ratios"]
    assert result.to_json()["plan_only"] is True
    assert all(e.invalidates == () for e in result.edits)


def test_dropping_a_leaf_removes_its_stages_and_keeps_the_others():
    result = _diff(ir(SPECS / "spelangy.mix"), ir(SPECS / "ablations" / "mix_web.mix"))
    assert result.factors == ["mixture ratios"]
    assert "shards:krist" in result.removed and "shards:quest" in result.removed
    assert all(sid.startswith("contamination:") for sid in result.rebuilt)  # it reads every leaf's text
    assert not result.added


def test_loss_change_rebuilds_interleaving_only_for_speech():
    result = _diff(ir(SPECS / "spelangy.mix"), ir(SPECS / "ablations" / "loss_all.mix"))
    assert result.factors == ["loss masking"]
    kinds = {sid.split(":")[0] for sid in result.rebuilt}
    assert kinds == {"interleave", "pack", "shards"}
    assert "shards:text_corpus" not in result.rebuilt


@pytest.mark.parametrize(("field", "value"), [("attention", "causal"), ("activation_checkpointing", True),
                                              ("compile_blocks", True)])
def test_attention_and_activation_checkpointing_are_training_only(field, value):
    base = ir(SPECS / "spelangy.mix")
    changed = base.model_copy(update={"train": base.train.model_copy(update={field: value})})
    assert getattr(base.train, field) != value
    assert {sid: s.key for sid, s in graph(base).items()} == {sid: s.key for sid, s in graph(changed).items()}
    assert _diff(base, changed).rebuilt == []


def _with(tmp_path: Path, base: Path, override: str) -> Path:
    (tmp_path / "pyproject.toml").write_text("")
    folder = tmp_path / "specs"
    if not folder.exists():
        shutil.copytree(SPECS, folder)
    child = folder / f"child_{abs(hash(override))}.mix"
    child.write_text(f'extends "{base.name}"\n{override}\n')
    return child


@pytest.mark.parametrize("override, touched", [
    ("source web { vad { threshold = 0.6 } }", "vad:web"),
    ("source web { asr { model = \"small.en\" } }", "asr:web"),
    ("tokenizer text : bpe { vocab = 48K }", "train_bpe:text"),
    ("pack { seq_len = 8192 }", "pack:text_corpus"),
    ("seed = 1234", "rewrite:krist"),
    ("generator quest : quest { tts { voices = [\"en-us\"] } }", "tts:quest"),
])
def test_semantic_fields_change_their_stage_keys(tmp_path, override, touched):
    base = ir(SPECS / "spelangy.mix")
    child = ir(_with(tmp_path, SPECS / "spelangy.mix", override))
    a, b = graph(base), graph(child)
    assert a[touched].key != b[touched].key
    changed = {sid for sid in a if sid in b and a[sid].key != b[sid].key}
    assert changed == dag.downstream(b, {sid for sid in changed if not (set(b[sid].inputs) & changed)})


def test_train_settings_change_no_stage():
    result = _diff(ir(SPECS / "spelangy.mix"), ir(SPECS / "ablations" / "stochastic.mix"))
    assert result.factors == ["modality sampling"]
    other = _diff(ir(SPECS / "spelangy.mix"), ir(SPECS / "spelangy.mix"))
    assert other.edits == [] and other.rebuilt == []


def test_budget_table_shares_and_needed_tokens():
    spec = ir(SPECS / "spelangy.mix")
    p = overview(spec, graph(spec))
    rows = {r["name"]: r for r in p.table.to_dicts()}
    assert rows["text_corpus"]["share"] == pytest.approx(0.60)
    assert rows["web"]["share"] == pytest.approx(0.40 * 0.59)
    assert sum(r["share"] for r in rows.values()) == pytest.approx(1.0)
    assert rows["web"]["needed_tokens"] == pytest.approx(rows["web"]["share"] * p.total_tokens)
    assert p.feasible() is None  # no data on this machine: unknown, not claimed


def test_stage_order_is_topological():
    dag = graph(ir(SPECS / "spelangy.mix"))
    seen: set[str] = set()
    for sid, stage in dag.items():
        assert set(stage.inputs) <= seen, sid
        seen.add(sid)
