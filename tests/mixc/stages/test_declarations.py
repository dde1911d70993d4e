"""Every stage is declared once, on its class; what it reads of the spec is what it declared; and
what it writes is pinned per version: a golden digest of every stage's output on a small fixture
(tests/golden/stages.json) fails when a stage's output changes while its version did not.

A stage is blamed only when none of the stages upstream of it changed: a downstream output moves
with its inputs, and its key already follows them. The digest is of the content, at the precision
that means something: floats rounded to 4 decimals
(ASR probabilities and trained weights vary in their last bits between CPUs), torch checkpoints by
their tensors (torch.save writes a random serialization id), cache keys left out (they name where
an upstream result is stored, which moves with the upstream's version). Regenerate after a reviewed
change with MIXC_UPDATE_GOLDEN=1.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mixc.build.execute import declared
from mixc.demo.audio import write_corpus
from mixc.demo.pages import write_pages
from mixc.demo.qa import write_qa
from mixc.plan.dag import SUBJECT
from mixc.stages import REGISTRY, graph
from mixc.stages.base import Declared, UndeclaredRead
from mixc.stages.items import RecordingManifest
from tests.conftest import GOLDEN, UPDATE
from tests.mixc.workspace import workspace

STAGES = GOLDEN / "stages.json"
KEY_COLUMNS = ("item",)  # cache addresses, not content
TRAINED = """
seed = 11
source news : text {
  files = "data/news/*.jsonl"
  dedup = true
}
source web : audio {
  files = "data/web/*.flac"
  chunk fine { max = 12s }
}
tokenizer text : bpe { vocab = 400 }
tokenizer audio : kmeans { codebook = 32 }
interleave {
  sampling = stochastic(0.5)
  loss = text_only
}
pack { seq_len = 64 }
mixture {
  50% web
  50% news
}
budget { steps = 10 }
train { batch = 4 }
"""
LOADED = """
seed = 11
source books : text { files = "data/books/*.txt" }
source web : audio { files = "data/web/*.flac" }
source pages : html { files = ["data/pages/*.html", "data/pages/*.warc.gz"] }
generator krist : krist {
  pages = pages
  output { max_chars = 400  max_items = 3 }
  tts { voices = ["flite:awb", "espeak:en-gb"] }
}
generator quest : quest {
  pages = pages
  output { max_items = 4 }
  tts { voices = ["flite:slt"] }
  chunk coarse { max = 20s }
}
tokenizer text : tiktoken {}
tokenizer audio : checkpoint { path = "checkpoint" }
pack { seq_len = 64  remainder = pad }
shards { compression = none }
mixture {
  40% web
  40% books
  10% krist
  10% quest
}
budget { steps = 4 }
train { batch = 2 }
eval {
  heldout = 10%
  heldout_sequences = 4
  set qa : sqa {
    files = "data/eval/factbook_qa.jsonl"
    limit = 12
  }
  set coverage : topics {
    sample = 50
  }
  set heldout : lm {
    files = "data/heldout/*.txt"
  }
}
"""


def rounded(value):
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items() if k not in KEY_COLUMNS}
    if isinstance(value, list | tuple):
        return [rounded(v) for v in value]
    return value


def array_bytes(array: np.ndarray) -> bytes:
    array = np.asarray(array)
    return (np.round(array, 4) if array.dtype.kind == "f" else array).tobytes() + str(array.dtype).encode()


def file_content(path: Path) -> bytes:
    """A file as the digest sees it (see the module docstring)."""
    suffix = path.suffix
    if suffix == ".json":
        return json.dumps(rounded(json.loads(path.read_text())), sort_keys=True).encode()
    if suffix == ".parquet":
        return json.dumps(rounded(pl.read_parquet(path).to_dicts()), sort_keys=True, default=str).encode()
    if suffix == ".npy":
        return array_bytes(np.load(path))
    if suffix == ".npz":
        with np.load(path) as arrays:
            return b"".join(name.encode() + array_bytes(arrays[name]) for name in sorted(arrays.files))
    if suffix == ".pt":
        import torch
        state = torch.load(path, map_location="cpu", weights_only=True)
        return b"".join(name.encode() + array_bytes(t.numpy()) for name, t in sorted(state.items()))
    return path.read_bytes()


def artifact_digest(folder: Path, items) -> str:
    """The content of a stage's artifact, and of the per-recording items it points at."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "stats.json"):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + file_content(path) + b"\0")
    if (folder / RecordingManifest.FILE).exists():
        manifest = RecordingManifest.read(folder)
        for row in manifest.rows:
            digest.update(file_content(manifest.item_path(items, row)))
    return digest.hexdigest()[:16]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> tuple[dict[str, str], dict[str, set[str]]]:
    """Every stage kind run on the fixture: kind -> digest of all its runs' outputs, and
    kind -> the kinds upstream of it."""
    root = tmp_path_factory.mktemp("golden")
    ws = workspace(root / "ws", root / "cache")
    write_corpus(ws.root / "data" / "web", 2, seed=7, speakers=(2, 3), n_turns=5)
    write_pages(ws.root / "data")
    write_qa(ws.root / "data")
    (ws.root / "data" / "heldout").mkdir()
    (ws.root / "data" / "heldout" / "a.txt").write_text("The Nile flows north through eleven countries. " * 30)
    trained = ws.compile(ws.spec(TRAINED, "trained.mix"), out="trained")
    shutil.copytree(trained.runs["train_audio_tokenizer:audio"].path / "tokenizer", ws.root / "checkpoint")
    loaded = ws.compile(ws.spec(LOADED, "loaded.mix"), out="loaded")
    runs = {**trained.runs, **{f"{sid}@loaded": run for sid, run in loaded.runs.items()}}
    by_kind: dict[str, list[str]] = {}
    upstream: dict[str, set[str]] = {}
    for sid, run in sorted(runs.items()):
        by_kind.setdefault(run.node.kind, []).append(f"{sid}={artifact_digest(run.path, ws.cache.items)}")
    for graph_runs in (trained.runs, loaded.runs):  # topological: inputs first
        for run in graph_runs.values():
            above = upstream.setdefault(run.node.kind, set())
            for sid in run.node.inputs:
                above |= {graph_runs[sid].node.kind} | upstream.get(graph_runs[sid].node.kind, set())
    digests = {kind: hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16] for kind, parts in by_kind.items()}
    return digests, upstream


def test_the_fixture_runs_every_stage(outputs):
    assert set(outputs[0]) == set(REGISTRY)


def test_a_stage_output_changes_only_with_its_version(outputs):
    digests, upstream = outputs
    current = {kind: {"version": REGISTRY[kind].version, "digest": digest} for kind, digest in sorted(digests.items())}
    if UPDATE:
        STAGES.write_text(json.dumps(current, indent=2) + "\n")
    golden = json.loads(STAGES.read_text())
    moved = {kind for kind, now in current.items() if golden.get(kind) != now}
    problems = []
    for kind, now in current.items():
        was = golden.get(kind)
        if was is None:
            problems.append(f"{kind}: no golden digest yet; record it with MIXC_UPDATE_GOLDEN=1")
        elif was["version"] == now["version"] and was["digest"] != now["digest"] and not upstream[kind] & moved:
            problems.append(f"{kind}: its output changed but its version is still {now['version']}: bump "
                            f"`version` on its class (or, if only the fixture or a pinned package changed, "
                            f"regenerate with MIXC_UPDATE_GOLDEN=1)")
        elif was["version"] != now["version"]:
            problems.append(f"{kind}: version {now['version']}, golden file records {was['version']}: "
                            "regenerate with MIXC_UPDATE_GOLDEN=1 and commit it")
    assert not problems, "\n".join(problems)


def test_every_stage_declares_itself():
    for kind, cls in REGISTRY.items():
        assert cls.kind == kind and isinstance(cls.version, int) and cls.version >= 1
        assert cls.doc and "\n" not in cls.doc, kind
        for read in cls.reads + cls.settings:
            assert read and not read.endswith("."), (kind, read)
        if cls.weights:  # the field naming the weights is one of the declared values
            assert any(cls.weights == r or cls.weights.startswith(r + ".") for r in cls.reads + cls.settings), kind


def test_a_stage_reads_only_what_it_declared(tmp_path):
    (tmp_path / "pyproject.toml").write_text("")
    from mixc.lang.lower import load
    (tmp_path / "s.mix").write_text(TRAINED)
    spec = load(tmp_path / "s.mix").ir
    node = graph(spec)["vad:web"]
    config = declared(spec, node)
    assert config.get(".vad").threshold == 0.5 and config.get(".vad.threshold") == 0.5
    for undeclared in (".asr", "pack", "seed", "sources"):
        with pytest.raises(UndeclaredRead, match="add it to the stage's `reads`"):
            config.get(undeclared)
    # the declared values are all a stage's key holds: the planner resolves the same reads
    assert node.reads == (("sources", "web", "vad"),)
    assert SUBJECT == "."


def test_reads_that_depend_on_the_spec_are_declared_too(tmp_path):
    """Interleaving reads the seed only when sampling draws from it: a deterministic stream's key and
    config hold no seed, a stochastic one's do."""
    from mixc.lang.lower import load
    (tmp_path / "pyproject.toml").write_text("")
    for sampling, reads_seed in (("deterministic", False), ("stochastic(0.5)", True)):
        (tmp_path / "s.mix").write_text(TRAINED.replace("stochastic(0.5)", sampling))
        spec = load(tmp_path / "s.mix").ir
        node = graph(spec)["interleave:web"]
        config: Declared = declared(spec, node)
        assert (("seed",) in node.reads) == reads_seed == ("seed" in config.values)
