"""Compiling web audio end to end on generated conversations with the real default backends:
outputs and lineage, which stages each ablation rebuilds, byte-identical rebuilds with 1 or 2
workers, and a compile killed during ASR that resumes from the recordings it finished."""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from streaming import StreamingDataset

from mixc.build.execute import Executor
from mixc.demo.audio import write_corpus
from mixc.lang.lower import load
from mixc.stages import graph
from tests.mixc.workspace import workspace

SPEC = """
seed = 9
source web : audio {{
  files = "data/web/*.flac"
  chunk {chunk}
}}
source news : text {{
  files = "data/news/*.jsonl"
}}
tokenizer text : bpe {{ vocab = 400 }}
tokenizer audio : kmeans {{ codebook = 32 }}
interleave {{
  sampling = {sampling}
  loss     = {loss}
}}
pack {{ seq_len = 64 }}
mixture {{
  {speech}% web
  {text}% news
}}
budget {{ steps = 20 }}
train {{ batch = 4 }}
"""
FRONT = {"ingest:web", "vad:web", "diarize:web", "asr:web", "filter:web", "train_audio_tokenizer:audio"}


def spec_text(chunk="fine { max = 12s }", sampling="deterministic", loss="text_only", speech=40) -> str:
    return SPEC.format(chunk=chunk, sampling=sampling, loss=loss, speech=speech, text=100 - speech)


def make_workspace(root: Path, cache: Path):
    ws = workspace(root, cache)
    write_corpus(root / "data" / "web", 3, seed=4, speakers=(2, 3), n_turns=6)
    return ws


def shard_hashes(out: Path) -> dict[str, str]:
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((out / "streams").rglob("*")) if p.is_file()}


def built(result) -> set[str]:
    return {sid for sid, r in result.runs.items() if not r.hit}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio")
    ws = make_workspace(root / "ws", root / "cache")
    return ws, ws.compile(ws.spec(spec_text()))


def test_outputs_report_and_lineage_back_to_recordings(compiled, tmp_path):
    ws, result = compiled
    plan = result.plan
    web = next(s for s in plan.streams if s.name == "web")
    assert web.samples > 0 and plan.vocab.audio_size == 32 and "<audio>" in plan.vocab.markers
    report = (result.out / "report.md").read_text()
    assert "## Web audio" in report and "| web | 3 of 3 |" in report and "## Interleaving" in report
    chunk = result.runs["chunk:web"]
    assert chunk.stats.counts["chunks"] > 0 and chunk.stats.counts["chunk_seconds_mean"] > 1.0
    chunks = pl.read_parquet(chunk.path / "chunks.parquet")
    local = tmp_path / "web"  # streaming decompresses beside the shards: read a copy
    shutil.copytree(result.out / web.path, local)
    ds = StreamingDataset(local=str(local), shuffle=False, batch_size=1)
    audio_lo, audio_hi = plan.vocab.audio_offset, plan.vocab.audio_offset + plan.vocab.audio_size
    for i in range(ds.num_samples):
        sample = ds[i]
        tokens, mask = sample["tokens"], sample["loss_mask"]
        is_audio = (tokens >= audio_lo) & (tokens < audio_hi)
        assert not mask[is_audio].any()  # text_only: audio codes are never targets
        for chunk_id in sample["lineage"]:  # every chunk traces back to a recording and a time span
            row = chunks.filter(pl.col("chunk") == int(chunk_id)).row(0, named=True)
            assert (ws.root / row["path"]).exists() and 0 <= row["start"] < row["end"]


def test_granularity_change_rebuilds_chunking_and_after_only(compiled):
    ws, fine = compiled
    coarse = ws.compile(ws.spec(spec_text(chunk="coarse { max = 60s }"), "coarse.mix"), out="coarse")
    assert built(coarse) == {"chunk:web", "encode:web", "interleave:web", "pack:web", "shards:web"}
    mean = {name: r.runs["chunk:web"].stats.counts["chunk_seconds_mean"] for name, r in (("fine", fine),
                                                                                        ("coarse", coarse))}
    assert mean["fine"] < mean["coarse"]


@pytest.mark.parametrize("edit,rebuilt", [
    ({"sampling": "stochastic(0.5)"}, {"interleave:web", "pack:web", "shards:web"}),
    ({"loss": "all"}, {"interleave:web", "pack:web", "shards:web"}),
    ({"speech": 30}, set()),
])
def test_ablations_rebuild_exactly_what_they_touch_and_plan_says_so_first(compiled, edit, rebuilt):
    ws, _ = compiled
    name = "_".join(f"{k}-{v}" for k, v in edit.items()).replace("(", "").replace(")", "").replace(".", "") + ".mix"
    spec = ws.spec(spec_text(**edit), name)
    low = load(spec)
    preview = Executor(low.ir, low.root, ws.cache).preview(graph(low.ir))
    assert {sid for sid, hit in preview.items() if not hit} == rebuilt
    assert built(ws.compile(spec, out=name.removesuffix(".mix"))) == rebuilt


def test_rebuild_from_scratch_with_two_workers_is_byte_identical(compiled, tmp_path):
    _, first = compiled
    ws = make_workspace(tmp_path / "again", tmp_path / "cache")
    again = ws.compile(ws.spec(spec_text()), workers=2)
    assert built(again) == set(again.runs)
    assert shard_hashes(again.out) == shard_hashes(first.out)


def test_a_compile_killed_during_asr_resumes_from_finished_recordings(compiled, tmp_path):
    _, first = compiled
    ws = make_workspace(tmp_path / "killed", tmp_path / "cache")
    spec = ws.spec(spec_text())
    script = ("import sys; from pathlib import Path; from mixc.build.cache import Cache; "
              "from mixc.build.compile import compile_spec; "
              "from mixc.lang.lower import load; low = load(Path(sys.argv[1]));"
              "compile_spec(low, 'spec.mix', Path(sys.argv[2]), Cache(Path(sys.argv[3])))")
    proc = subprocess.Popen([sys.executable, "-c", script, str(spec), str(ws.root / "out"), str(ws.cache.root)],
                            cwd=ws.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    items = ws.cache.root / "items" / "asr"
    deadline = time.time() + 600
    while not list(items.rglob("*.json")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list(items.rglob("*.json")), "the compile finished or failed before ASR stored a recording"
    assert not (ws.cache.root / "asr").exists()  # the stage itself never looked complete
    resumed = ws.compile(spec)
    assert 1 <= resumed.runs["asr:web"].stats.counts["recordings_cached"] < 3
    assert shard_hashes(resumed.out) == shard_hashes(first.out)


def test_moved_files_cost_no_audio_work(compiled, tmp_path):
    ws, first = compiled
    moved = make_workspace(tmp_path / "elsewhere", ws.cache.root)  # same bytes, another folder, shared cache
    (moved.root / "data" / "web").rename(moved.root / "data" / "renamed")
    again = moved.compile(moved.spec(spec_text().replace('"data/web/*.flac"', '"data/renamed/*.flac"')))
    for sid in ("ingest:web", "vad:web", "diarize:web", "asr:web"):  # a new glob: manifests rebuilt, items reused
        run = again.runs[sid]
        assert run.hit or run.stats.counts["recordings_cached"] == 3, sid
    assert again.runs["train_audio_tokenizer:audio"].hit  # its inputs' contents did not change
    assert shard_hashes(again.out) == shard_hashes(first.out)


def test_missing_asr_weights_are_a_located_error_not_a_traceback(compiled):
    from mixc.lang.diagnostics import SpecError
    ws, _ = compiled
    text = spec_text().replace('  chunk fine { max = 12s }',
                               '  asr {\n    model = "large-v3"\n  }\n  chunk fine { max = 12s }')
    with pytest.raises(SpecError) as info:
        ws.compile(ws.spec(text, "large.mix"), out="large")
    diag = info.value.diagnostics[0]
    assert diag.code == "stage.asr" and "large-v3" in diag.message and "never downloads" in diag.hint
    assert diag.span.file.endswith("large.mix") and (diag.span.line, diag.span.col) == (6, 13)
