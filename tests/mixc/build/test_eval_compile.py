"""Eval sets at compile time on a text workspace: held-out sequences of every stream, and dropping
training documents that overlap a question set (`eval.decontaminate`)."""

import json

import pytest

from mixc.planfile import Lock
from mixc.stages.contamination import DROP_REASON, Overlaps
from mixc.stages.pack import PackedSequences
from tests.mixc.workspace import TWO_SOURCES, workspace

QUESTION = "Which river flows through the capital city of the northern coast and into the sea?"
EVAL = """
eval {{
  every = 5
  heldout = 10%
  heldout_sequences = {sequences}
  {decontaminate}
  set qa : mc {{
    files = "data/qa.jsonl"
    choices = 2
  }}
}}
"""


def spec_text(sequences: int = 8, decontaminate: str = "") -> str:
    base = TWO_SOURCES.format(vocab="400", news=70, books=30)
    return base + EVAL.format(sequences=sequences, decontaminate=decontaminate)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    ws = workspace(tmp_path_factory.mktemp("ws"))
    (ws.root / "data" / "news" / "part9.jsonl").write_text(
        json.dumps({"text": f"A quiz from the archive. {QUESTION} The salt river, of course."}) + "\n")
    (ws.root / "data" / "qa.jsonl").write_text(
        json.dumps({"question": QUESTION, "choices": ["The salt river", "The iron river"], "answer": 0}) + "\n")
    return ws, ws.compile(ws.spec(spec_text()))


def lineage(run) -> set[int]:
    packed = PackedSequences.open(run.path)
    return {int(d) for i in range(packed.count) for d in packed.lineage_of(i)}


def test_every_stream_has_held_out_sequences_never_trained_on(compiled):
    ws, result = compiled
    plan = result.plan
    held = {s.name: s for s in plan.eval.sets if s.name.startswith("heldout/")}
    assert set(held) == {"heldout/news", "heldout/books"} and plan.eval.every == 5
    locked = {f.path for f in Lock.read(ws.root / "out" / "mix.lock").shards}
    for name, evalset in held.items():
        stream = name.removeprefix("heldout/")
        items = [json.loads(line) for line in (ws.root / "out" / evalset.path).read_text().splitlines()]
        assert evalset.kind == "lm" and 1 <= len(items) == evalset.items <= 8 and evalset.path in locked
        assert all(len(i["tokens"]) == len(i["mask"]) == 64 for i in items)
        pack = result.runs[f"pack:{stream}"]
        held_docs = {d for i in items for d in i["lineage"]}
        assert held_docs and not held_docs & lineage(pack)  # no held-out document in a training sequence
        assert pack.stats.counts["heldout_documents"] >= 1


def test_fewer_held_out_sequences_rebuild_only_the_held_out_sets(compiled):
    ws, _ = compiled
    result = ws.compile(ws.spec(spec_text(sequences=2), "fewer.mix"), out="fewer")
    assert {sid for sid, r in result.runs.items() if not r.hit} == {"eval_heldout:news", "eval_heldout:books"}
    assert all(s.items <= 2 for s in result.plan.eval.sets if s.name.startswith("heldout/"))


def test_contamination_is_reported_and_dropped_only_when_asked(compiled):
    ws, result = compiled
    assert result.runs["contamination:qa"].stats.items_out == 1  # found: the quiz document
    assert DROP_REASON not in result.runs["tokenize:news"].stats.dropped
    clean = ws.compile(ws.spec(spec_text(decontaminate="decontaminate = 13"), "clean.mix"), out="clean")
    tokenize = clean.runs["tokenize:news"]
    assert tokenize.stats.dropped == {DROP_REASON: 1} and not clean.runs["tokenize:books"].stats.dropped
    _, overlaps = Overlaps.read(clean.runs["contamination:qa"].path)
    quiz = {int(u) for u in overlaps.filter(overlaps["stage"] == "dedup:news")["unit"].to_list()}
    assert len(quiz) == 1 and not quiz & lineage(clean.runs["pack:news"])
