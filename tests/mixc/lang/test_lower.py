"""Lowering: golden IR for every example spec, extends semantics, hashing, paths."""

import json
import shutil
from pathlib import Path

import pytest

from mixc.ir import CoarseChunks, FineChunks, Stochastic
from mixc.lang.lower import load
from tests.conftest import GOLDEN, REPO, UPDATE

SPECS = sorted(str(p.relative_to(REPO)) for p in (REPO / "specs").rglob("*.mix"))


@pytest.mark.parametrize("spec", SPECS)
def test_golden_ir(spec: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    low = load(spec)
    assert low.ok, [d.message for d in low.diagnostics]
    golden = GOLDEN / "ir" / (spec.removeprefix("specs/").replace("/", "__").replace(".mix", ".json"))
    got = json.dumps(low.ir.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"
    if UPDATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(got)
    assert got == golden.read_text()


def test_hash_ignores_comments_and_layout(tmp_path: Path) -> None:
    (tmp_path / "a.mix").write_text('source t : text { files = "x/*.txt" }\n'
                                    'mixture { 100% t }\nbudget { tokens = 1M }\n')
    (tmp_path / "b.mix").write_text('# same thing\nbudget {\n  tokens = 1_000_000  # a million\n}\n\n'
                                    'mixture {\n  100% t\n}\nsource t : text {\n  files = ["x/*.txt"]\n}\n')
    assert load(tmp_path / "a.mix").ir.content_hash() == load(tmp_path / "b.mix").ir.content_hash()


def test_hash_changes_with_meaning(tmp_path: Path) -> None:
    (tmp_path / "a.mix").write_text('source t : text { files = "x/*.txt" }\n'
                                    'mixture { 100% t }\nbudget { tokens = 1M }\n')
    (tmp_path / "b.mix").write_text('source t : text { files = "x/*.txt" }\n'
                                    'mixture { 100% t }\nbudget { tokens = 2M }\n')
    assert load(tmp_path / "a.mix").ir.content_hash() != load(tmp_path / "b.mix").ir.content_hash()


def test_extends_variant_block_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    base = load("specs/spelangy.mix").ir
    coarse = load("specs/ablations/coarse.mix").ir
    assert isinstance(base.sources["web"].chunk, FineChunks)
    assert coarse.sources["web"].chunk == CoarseChunks(max=60.0)
    assert coarse.sources["web"].asr == base.sources["web"].asr  # merged, not replaced
    assert coarse.sources["web"].files == base.sources["web"].files  # same workspace-relative paths


def test_extends_fields_override_and_mixture_replaces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    ablation = load("specs/ablations/mix_web.mix").ir
    speech = next(m for m in ablation.mixture.members if m.name == "speech")
    assert [m.name for m in speech.members] == ["web"]
    stochastic = load("specs/ablations/stochastic.mix").ir
    assert stochastic.interleave.sampling == Stochastic(p=0.5)
    assert stochastic.interleave.loss == "text_only"  # kept from the base


def test_paths_are_workspace_relative_and_move_with_the_tree(tmp_path: Path) -> None:
    for name in ("one", "two"):
        root = tmp_path / name
        (root / "specs").mkdir(parents=True)
        (root / "mixc.toml").write_text("")
        (root / "specs" / "s.mix").write_text('source t : text { files = "../data/*.txt" }\nmixture { 100% t }\n'
                                              'budget { tokens = 1M }\n')
    a, b = (load(tmp_path / n / "specs" / "s.mix") for n in ("one", "two"))
    assert a.ir.sources["t"].files == ("data/*.txt",)
    assert a.ir.content_hash() == b.ir.content_hash()


def test_defaults_are_explicit_in_ir(tmp_path: Path) -> None:
    (tmp_path / "s.mix").write_text('source t : text { files = "x" }\nmixture { 100% t }\nbudget { tokens = 1M }\n')
    ir = load(tmp_path / "s.mix").ir
    dumped = ir.model_dump()
    assert dumped["train"]["optimizer"]["lr"] == 3e-4
    assert dumped["pack"]["seq_len"] == 2048


def test_missing_spec_is_a_diagnostic_not_an_exception(tmp_path: Path) -> None:
    low = load(tmp_path / "nope.mix")
    assert low.ir is None and low.diagnostics[0].code == "spec.missing"


def test_lowering_is_deterministic_across_copies(tmp_path: Path) -> None:
    shutil.copytree(REPO / "specs", tmp_path / "specs")
    (tmp_path / "pyproject.toml").write_text("")
    a = load(REPO / "specs" / "spelangy.mix").ir
    b = load(tmp_path / "specs" / "spelangy.mix").ir
    assert a.canonical_json() == b.canonical_json()
