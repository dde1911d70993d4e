"""`mixc compile` end to end on the synthetic generators, through the real console script.

The workspace: the demo's web pages (`mixc.demo.pages.write_pages`: 40 .html files and a WARC, with
a duplicate, a JSON response and a "not found" page to set aside), a Krist generator asking the
`openai` backend, i.e. the tiny OpenAI-compatible server of tests/llm_server.py started on
127.0.0.1 in this process, with the rewrite prompt in `prompts/p.txt`, and a Quest generator on
the `extractive` backend (the tiny model never answers the filter prompt with yes or no). The
audio tokenizer trains on Quest's chunks only, so a Krist edit leaves Quest's whole stream alone.

What is checked: one spec gives the same shard bytes with 1 or 2 workers; a compile SIGKILLed
during the LLM stage and then during TTS resumes from the replies and the audio already stored and
ends in the uninterrupted bytes; each kind of edit rebuilds only what it touches (read from the
report's stage table and the stages' stats.json); report.md's synthetic speech section; and the
lineage of every chunk in the shards back to a page and a character span of its main text.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from streaming import StreamingDataset

from mixc import ir
from mixc.demo.pages import write_pages
from mixc.planfile import Lock, TrainingPlan
from mixc.stages.tts import draw_voice
from tests.llm_server import SERVED_NAME, Faults, TinyOpenAIServer, tiny_model, tiny_server
from tests.mixc.build.test_compile import shard_hashes

__all__ = ["tiny_model", "tiny_server"]  # pytest fixtures, used by name below

MIXC = str(Path(sys.executable).with_name("mixc"))
# One OpenMP thread per compile process: torch's default (one per core) turns resemblyzer's LSTM in the
# TTS voice report from 0.05 s into 3-7 s per voice on a 2-core machine that is busy with anything else.
COMPILE_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
SEED = 3
PROMPT = "tell me about {page}\n"  # the tiny model learnt to answer "tell me about ...": short English replies
KRIST_ITEMS = 8
KRIST_VOICES = ("flite:awb", "espeak:en-gb-scotland", "piper:joe")  # piper: slow enough to kill TTS half way
QUEST_VOICES = ("flite:slt", "flite:rms")
KRIST_STREAM = {"extract:pages", "rewrite:krist", "tts:krist", "encode:krist", "interleave:krist", "pack:krist",
                "shards:krist"}
QUEST_STREAM = {"extract:pages", "mine:quest", "answer:quest", "tts:quest", "train_audio_tokenizer:audio",
                "encode:quest", "interleave:quest", "pack:quest", "shards:quest"}
LINEAGE = re.compile(r"^(?P<page>.+)#chars=(?P<start>\d+)-(?P<end>\d+)$")

SPEC = """\
seed = {seed}
source pages : html {{
  files = ["data/pages/*.html", "data/pages/*.warc.gz"]
}}
generator krist : krist {{
  pages  = pages
  prompt = "prompts/p.txt"
  llm {{
    backend    = openai
    model      = "{model}"
    base_url   = "{base_url}"
    max_tokens = 40
    batch      = {llm_batch}{llm_extra}
  }}
  output {{ max_chars = 300  max_items = {krist_items} }}
  tts {{ voices = [{krist_voices}] }}
}}
generator quest : quest {{
  pages = pages
  output {{ max_items = 6 }}
  tts {{ voices = [{quest_voices}] }}{quest_extra}
}}
tokenizer text : tiktoken {{}}
tokenizer audio : kmeans {{
  codebook = 32
  train_on = [quest]
}}
pack {{ seq_len = 128 }}
mixture {{
  {krist_share}% krist
  {quest_share}% quest
}}
budget {{ steps = 4 }}
train {{ batch = 2 }}
"""


def spec_text(base_url: str, krist_voices: tuple[str, ...] = KRIST_VOICES, quest_extra: str = "",
              krist_share: int = 60, llm_batch: int = 1, llm_extra: str = "") -> str:
    """The base spec, or one edit of it (`quest_extra`, `llm_extra`: lines added to those blocks)."""
    return SPEC.format(seed=SEED, model=SERVED_NAME, base_url=base_url, llm_batch=llm_batch, llm_extra=llm_extra,
                       krist_items=KRIST_ITEMS,
                       krist_voices=", ".join(f'"{v}"' for v in krist_voices),
                       quest_voices=", ".join(f'"{v}"' for v in QUEST_VOICES),
                       quest_extra=f"\n  {quest_extra}" if quest_extra else "",
                       krist_share=krist_share, quest_share=100 - krist_share)


# ----------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class Compiled:
    """One finished `mixc compile`: where it ran and what it wrote."""
    root: Path
    cache: Path
    out: Path
    stderr: str

    @property
    def lock(self) -> Lock:
        return Lock.read(self.out / "mix.lock")

    def artifact(self, sid: str) -> Path:
        """The cache folder of stage `sid` as this compile used it."""
        return self.cache / sid.split(":")[0] / self.lock.stage_keys[sid]

    def stats(self, sid: str) -> dict:
        return json.loads((self.artifact(sid) / "stats.json").read_text())

    def report(self) -> str:
        return (self.out / "report.md").read_text()

    def built(self) -> set[str]:
        """The stages built (the rest came from the cache), as report.md and the compile's log both say."""
        reported = {sid for sid, how in stage_table(self.report()).items() if how == "built"}
        logged = set(re.findall(r"\] (\S+): built in ", self.stderr))
        assert reported == logged, (reported, logged)
        return reported


def stage_table(report: str) -> dict[str, str]:
    """report.md's `## Stages` table: stage id -> "built" or "cache"."""
    section = report.split("## Stages", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): cells[1].strip() for cells in rows[1:]}


def make_workspace(root: Path, pages: Path, spec: str, prompts: dict[str, str] | None = None) -> Path:
    """A workspace root with the pages, the prompt files (name -> text; default: the base's) and `spec.mix`."""
    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    shutil.copytree(pages, root / "data" / "pages")
    (root / "prompts").mkdir()
    for name, text in (prompts or {"p.txt": PROMPT}).items():
        (root / "prompts" / name).write_text(text)
    (root / "spec.mix").write_text(spec)
    return root


def compile_cmd(cache: Path, workers: int = 1, out: str = "out") -> list[str]:
    return [MIXC, "compile", "spec.mix", "--out", out, "--cache-dir", str(cache), "--workers", str(workers),
            "--no-progress"]


def run_compile(root: Path, cache: Path, workers: int = 1, out: str = "out") -> Compiled:
    done = subprocess.run(compile_cmd(cache, workers, out), cwd=root, capture_output=True, text=True,
                          env=COMPILE_ENV)
    assert done.returncode == 0, done.stdout + done.stderr
    return Compiled(root, cache, root / out, done.stderr)


def stored(cache: Path, kind: str) -> int:
    """How many items of `kind` the cache's item store holds (one file per LLM reply, per voiced item)."""
    return len(list((cache / "items" / kind).glob("*/*.json")))


def kill_when(cmd: list[str], cwd: Path, ready: Callable[[], bool], timeout: float = 180) -> None:
    """Starts a compile and SIGKILLs it as soon as `ready()` holds."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=COMPILE_ENV)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and not ready():
            assert time.monotonic() < deadline, f"the compile did not get there in {timeout:.0f} s"
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the compile ended ({proc.returncode}) before it could be killed"


def complete_artifacts(cache: Path) -> set[str]:
    return {f"{p.parent.name}/{p.name}" for p in cache.glob("*/*")
            if p.parent.name not in ("tmp", "locks", "items")}


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def server(tiny_server: TinyOpenAIServer) -> Iterator[TinyOpenAIServer]:
    tiny_server.reset()
    yield tiny_server
    tiny_server.reset()


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The demo pages, once: (their folder, write_pages' counts)."""
    data = tmp_path_factory.mktemp("demo")
    counts = write_pages(data)
    return data / "pages", counts


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, server: TinyOpenAIServer, pages: tuple[Path, dict]) -> Compiled:
    """The base spec compiled from scratch with one worker."""
    root = tmp_path_factory.mktemp("base")
    make_workspace(root / "ws", pages[0], spec_text(server.base_url))
    server.reset()
    compiled = run_compile(root / "ws", root / "cache")
    assert server.traffic.requests == KRIST_ITEMS
    return compiled


def compile_edit(base: Compiled, folder: Path, spec: str, prompts: dict[str, str] | None = None) -> Compiled:
    """Compiles an edit of the base workspace in `folder` with a copy of the base's cache (so edits
    never see each other's work)."""
    shutil.copytree(base.cache, folder / "cache")
    make_workspace(folder / "ws", base.root / "data" / "pages", spec, prompts)
    return run_compile(folder / "ws", folder / "cache")


@pytest.fixture
def edit(base: Compiled, tmp_path: Path) -> Callable[..., Compiled]:
    """`edit(spec, prompts)`: `compile_edit` in this test's folder."""
    return lambda spec, prompts=None: compile_edit(base, tmp_path, spec, prompts)


@pytest.fixture(scope="module")
def coarse_quest(base: Compiled, server: TinyOpenAIServer, tmp_path_factory: pytest.TempPathFactory) -> Compiled:
    """The base with Quest's chunks coarse."""
    server.reset()
    edited = compile_edit(base, tmp_path_factory.mktemp("coarse"),
                          spec_text(server.base_url, quest_extra="chunk coarse { max = 30s }"))
    assert server.traffic.requests == 0
    return edited


# ----------------------------------------------------------------------------- determinism


def test_one_and_two_workers_give_the_same_bytes(base, server, tmp_path):
    root = make_workspace(tmp_path / "ws", base.root / "data" / "pages", spec_text(server.base_url))
    two = run_compile(root, tmp_path / "cache", workers=2)
    assert two.built() == set(stage_table(two.report()))  # really rebuilt, in another cache
    assert shard_hashes(two.out) == shard_hashes(base.out)
    assert two.lock.shards == base.lock.shards
    assert two.lock.stage_keys == base.lock.stage_keys


# ----------------------------------------------------------------------------- killed and resumed


@dataclass(frozen=True)
class Resumed:
    """A compile SIGKILLed during the LLM stage, rerun and SIGKILLed during TTS, then rerun to the end."""
    replies_at_kill: int  # LLM replies stored when the first compile died
    complete_after_llm_kill: set[str]
    requests_on_rerun: int  # what the server was asked by the second compile
    rewrite_stats: dict  # the rewrite artifact the second compile built
    voiced_at_kill: int  # TTS items stored when the second compile died
    complete_after_tts_kill: set[str]
    final: Compiled


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory, server: TinyOpenAIServer, base: Compiled) -> Resumed:
    root = make_workspace(tmp_path_factory.mktemp("killed") / "ws", base.root / "data" / "pages",
                          spec_text(server.base_url))
    cache = root.parent / "cache"
    server.reset(Faults(hold_s=0.5))  # one request in flight (batch = 1), each answered after 0.5 s
    kill_when(compile_cmd(cache), root, lambda: stored(cache, "llm") >= 1)
    replies, after_llm = stored(cache, "llm"), complete_artifacts(cache)
    server.reset()
    kill_when(compile_cmd(cache), root, lambda: stored(cache, "tts") >= 1)
    requests = server.traffic.requests
    voiced, after_tts = stored(cache, "tts"), complete_artifacts(cache)
    rewrite = next(cache.glob("rewrite/*"))
    final = run_compile(root, cache)
    return Resumed(replies, after_llm, requests, json.loads((rewrite / "stats.json").read_text()), voiced, after_tts,
                   final)


def test_killed_during_the_llm_stage_resumes_from_the_stored_replies(resumed, base):
    assert 0 < resumed.replies_at_kill < KRIST_ITEMS, "the kill did not land inside the rewrite stage"
    assert resumed.complete_after_llm_kill == {f"extract/{base.lock.stage_keys['extract:pages']}"}
    counts = resumed.rewrite_stats["counts"]
    assert counts["requests"] == KRIST_ITEMS and counts["requests_cached"] == resumed.replies_at_kill
    assert resumed.requests_on_rerun == KRIST_ITEMS - resumed.replies_at_kill  # only the missing ones were asked
    assert shard_hashes(resumed.final.out) == shard_hashes(base.out)
    assert resumed.final.lock == base.lock


def test_killed_during_tts_resumes_from_the_stored_audio(resumed, base):
    assert 0 < resumed.voiced_at_kill < KRIST_ITEMS, "the kill did not land inside the tts stage"
    assert not any(a.startswith("tts/") for a in resumed.complete_after_tts_kill)
    assert any(a.startswith("rewrite/") for a in resumed.complete_after_tts_kill)
    tts = resumed.final.stats("tts:krist")
    assert resumed.voiced_at_kill <= tts["counts"]["items_cached"] < tts["items_in"] == KRIST_ITEMS
    assert not list((resumed.final.cache / "tmp").glob("*")), "the rerun cleans up the killed builds"
    assert shard_hashes(resumed.final.out) == shard_hashes(base.out)
    assert resumed.final.lock.shards == base.lock.shards


# ----------------------------------------------------------------------------- what each edit rebuilds


def test_prompt_edit_rebuilds_the_rewrite_not_extraction_nor_quest(edit, base, server):
    server.reset()
    edited = edit(spec_text(server.base_url), {"p.txt": "tell me about {page} please.\n"})
    assert edited.built() == KRIST_STREAM - {"extract:pages"}
    rewrite = edited.stats("rewrite:krist")["counts"]
    assert rewrite["requests"] == KRIST_ITEMS and rewrite["requests_cached"] == 0
    assert server.traffic.requests == KRIST_ITEMS  # every prompt's text changed: every request asked again
    assert edited.lock.stage_keys["extract:pages"] == base.lock.stage_keys["extract:pages"]
    assert all(edited.lock.stage_keys[sid] == base.lock.stage_keys[sid] for sid in QUEST_STREAM)


def test_extractive_prompt_edit_asks_nothing_again_and_keeps_extraction(edit, base, server):
    prompts = {"p.txt": PROMPT, "filter.txt": "Does the page answer {question}? Say yes or no.\n\n{page}\n"}
    edited = edit(spec_text(server.base_url, quest_extra='filter_prompt = "prompts/filter.txt"'), prompts)
    built = edited.built()
    assert "answer:quest" in built and not built & {"extract:pages", "mine:quest", "rewrite:krist", "tts:krist"}
    answer = edited.stats("answer:quest")["counts"]
    assert answer["requests"] > 0 and answer["requests_cached"] == answer["requests"]  # extractive reads no prompt
    assert edited.stats("tts:quest")["counts"]["items_cached"] == base.stats("tts:quest")["items_in"]
    assert shard_hashes(edited.out) == shard_hashes(base.out)


def test_voices_edit_rebuilds_tts_and_after_and_reuses_unchanged_draws(edit, base, server):
    new_pool = KRIST_VOICES[:2] + ("flite:kal",)  # piper:joe's items get flite:kal, the others keep their voice
    texts = pl.read_parquet(base.artifact("rewrite:krist") / "texts.parquet")
    before, after = (ir.Tts(voices=pool).pool() for pool in (KRIST_VOICES, new_pool))
    voiced = {(draw_voice(SEED, "krist", i, before), text) for i, text in zip(texts["id"], texts["text"])}
    kept = sum((draw_voice(SEED, "krist", i, after), text) in voiced for i, text in zip(texts["id"], texts["text"]))
    assert 0 < kept < len(texts), "the edit should keep some draws and change others"
    server.reset()
    edited = edit(spec_text(server.base_url, krist_voices=new_pool))
    assert edited.built() == KRIST_STREAM - {"extract:pages", "rewrite:krist"}
    assert server.traffic.requests == 0
    tts = edited.stats("tts:krist")
    assert tts["items_in"] == len(texts) and tts["counts"]["items_cached"] == kept
    speakers = set(pl.read_parquet(edited.artifact("tts:krist") / "chunks.parquet")["speaker"])
    assert "flite:kal" in speakers and "piper:joe" not in speakers


def test_granularity_edit_regroups_stored_audio(coarse_quest, base):
    built = coarse_quest.built()
    assert "tts:quest" in built
    assert not built & {"extract:pages", "rewrite:krist", "mine:quest", "answer:quest", "tts:krist"}
    tts = coarse_quest.stats("tts:quest")
    assert tts["items_in"] > 0 and tts["counts"]["items_cached"] == tts["items_in"]
    fine = base.stats("tts:quest")["counts"]["chunks"]
    assert tts["counts"]["chunks"] < fine  # each answer's sentences merged into fewer chunks
    assert "| quest | 50 of 53 |" in coarse_quest.report() and "| coarse |" in coarse_quest.report()


def test_granularity_edit_does_not_retrain_the_audio_tokenizer(coarse_quest):
    """The tokenizer trains on a generator's TTS calls, not its chunks: regrouping reuses it, and the
    other generator's stream re-encodes nothing (its encode stage reassembles stored codes)."""
    assert "train_audio_tokenizer:audio" not in coarse_quest.built()
    encode = coarse_quest.stats("encode:krist")
    assert encode["counts"]["recordings_cached"] == encode["counts"]["recordings"] > 0


def test_ratio_edit_rebuilds_no_stage(edit, base, server):
    edited = edit(spec_text(server.base_url, krist_share=50))
    assert edited.built() == set()
    plan = TrainingPlan.read(edited.out / "plan.json")
    assert {s.name: s.choose for s in plan.streams} == {"krist": 4, "quest": 4}
    assert edited.lock.stage_keys == base.lock.stage_keys


def test_llm_settings_that_do_not_change_outputs_rebuild_nothing(edit, base, server):
    server.reset()
    edited = edit(spec_text(server.base_url, llm_batch=2, llm_extra="\n    timeout    = 60s\n    retries    = 2"))
    assert edited.built() == set() and server.traffic.requests == 0
    assert edited.lock.stage_keys == base.lock.stage_keys
    assert shard_hashes(edited.out) == shard_hashes(base.out)


# ----------------------------------------------------------------------------- report and lineage


def md_rows(text: str) -> list[list[str]]:
    """The body rows of the markdown tables in `text`, as lists of stripped cells."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| ")]
    return [r for r in rows if r[0] not in ("generator", "stream", "stage")]


def test_report_has_the_synthetic_speech_section(base, pages):
    counts = pages[1]
    report = base.report()
    section = report.split("## Synthetic speech", 1)[1].split("\n## ", 1)[0]
    generators, voices = section.split("Voices drawn", 1)
    rows = {r[0]: r for r in md_rows(generators)}
    seen = counts["expected_pages"] + counts["duplicates"] + counts["not_html"] + counts["too_short"]
    set_aside = f"{counts['duplicates']} duplicate text, {counts['not_html']} not html, {counts['too_short']} too short"
    for name, text_stage in (("krist", "rewrite:krist"), ("quest", "answer:quest")):
        row, stats = rows[name], base.stats(text_stage)
        assert row[1:3] == [f"{counts['expected_pages']} of {seen}", set_aside]
        assert row[4] == f"{stats['items_out']:,} of {stats['items_in']:,}"
        assert row[6:8] == [f"{stats['counts'][k]:,.0f}" for k in ("tokens_in", "tokens_out")]
        assert stats["counts"]["tokens_in"] > 0 and stats["counts"]["tokens_out"] > 0
    assert rows["quest"][3] == f"{counts['questions']:,}" and "filtered out" in rows["quest"][5]
    assert "| data/pages/not-found.html |" in report and "content type application/json" in report
    table = {(r[0], r[1]): r for r in md_rows(voices)}
    for name in ("krist", "quest"):  # one row per voice drawn, with its WER
        drawn = json.loads((base.artifact(f"tts:{name}") / "voices.json").read_text())["voices"]
        speakers = set(pl.read_parquet(base.artifact(f"tts:{name}") / "chunks.parquet")["speaker"])
        assert {v["voice"] for v in drawn} == speakers
        for v in drawn:
            assert v["wer"] is not None
            assert table[name, v["voice"]][5] == f"{v['wer']:.1%} ({v['wer_chunks']} chunks)"
    assert len({voice for name, voice in table if name == "krist"}) == len(KRIST_VOICES)


def stream_lineage(out: Path, stream: str, scratch: Path) -> set[int]:
    """Every lineage unit (chunk id) of a compiled stream's sequences."""
    local = scratch / stream  # streaming decompresses shards beside the originals: read a copy
    shutil.copytree(out / "streams" / stream, local)
    ds = StreamingDataset(local=str(local), shuffle=False, batch_size=1)
    units: set[int] = set()
    for i in range(ds.num_samples):
        lineage = ds[i]["lineage"]
        assert len(lineage) > 0
        units |= {int(u) for u in lineage}
    return units


def test_every_chunk_in_the_shards_traces_to_a_page_span(base, tmp_path):
    pages = {row["id"]: row["text"] for row in
             pl.read_parquet(base.artifact("extract:pages") / "pages.parquet").iter_rows(named=True)}
    for name, text_stage in (("krist", "rewrite:krist"), ("quest", "answer:quest")):
        chunks = pl.read_parquet(base.artifact(f"tts:{name}") / "chunks.parquet")
        items = {row["id"]: row for row in
                 pl.read_parquet(base.artifact(text_stage) / "texts.parquet").iter_rows(named=True)}
        units = stream_lineage(base.out, name, tmp_path)
        assert units and units <= set(chunks["chunk"])
        for row in chunks.filter(pl.col("chunk").is_in(sorted(units))).iter_rows(named=True):
            found = LINEAGE.match(row["path"])
            assert found, row["path"]
            page, start, end = found["page"], int(found["start"]), int(found["end"])
            assert page in pages and 0 <= start < end <= len(pages[page])
            item = items[row["path"]]
            assert (item["page"], item["start"], item["end"]) == (page, start, end)
            if name == "quest":  # a Quest item's span is its question, word for word
                assert pages[page][start:end] == item["question"]
