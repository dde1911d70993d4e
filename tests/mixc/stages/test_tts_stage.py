"""The tts stage: texts -> TTS calls -> chunks with exact times and known text, one voice drawn per
item, audio memoised per item so that a granularity edit regroups stored audio."""

from __future__ import annotations

from collections import Counter

import numpy as np
import polars as pl

from mixc import ir
from mixc.audio import SAMPLE_RATE
from mixc.stages.chunk import ChunkManifest
from mixc.stages.generate import GeneratedTexts
from mixc.stages.items import audio_path, load_wav
from mixc.stages.store import ItemStore
from mixc.stages.tts import CALL_CHARS, Spoken, TtsStage, calls, draw_voice, group
from tests.mixc.stages.helpers import run_stage, spec_of

SPEC = """
seed = 9
source pages : html {{ files = "none/*.html" }}
generator krist : krist {{
  pages = pages
  tts {{ voices = ["flite:awb", "flite:slt", "espeak:en-gb-scotland"] }}
  {chunk}
}}
mixture {{ 100% krist }}
budget {{ steps = 1 }}
"""
TEXTS = [
    "Norway lies in northern Europe. Its capital is Oslo. The coast is long and cut by fjords.",
    "Kenya is in East Africa. Nairobi is its capital and largest city.",
    "What is the capital of Chile?\n\nThe page says that the capital of Chile is Santiago; so that is the answer.",
    "Iceland is an island. It has many volcanoes. Reykjavik is the capital.",
]


def texts_artifact(folder):
    folder.mkdir()
    GeneratedTexts.write(folder, [{"id": f"p{i}.html#chars=0-{len(t)}", "page": f"p{i}.html", "url": None,
                                   "start": 0, "end": len(t), "question": None, "text": t, "tokens_in": 1,
                                   "tokens_out": 1} for i, t in enumerate(TEXTS)])
    return folder


def test_calls_are_sentences_and_a_long_one_is_cut_at_commas():
    assert calls("One sentence here. Another one!\n\nA third?") == ["One sentence here.", "Another one!", "A third?"]
    long = ", ".join(f"clause number {i} of a very long list" for i in range(30)) + "."
    pieces = calls(long)
    assert len(pieces) > 1 and all(len(p) <= CALL_CHARS for p in pieces) and " ".join(pieces) == long


def test_group_fine_joins_short_calls_and_coarse_merges_up_to_max():
    spoken = [Spoken(0.0, 0.6, "Yes."), Spoken(0.9, 4.0, "It is Oslo."), Spoken(4.3, 9.0, "It lies in the south."),
              Spoken(9.3, 9.8, "Right.")]
    fine = group(spoken, ir.FineChunks(min=1.0, max=20.0))
    assert [c.text for c in fine] == ["Yes. It is Oslo.", "It lies in the south. Right."]
    assert (fine[0].start, fine[-1].end) == (0.0, 9.8)
    coarse = group(spoken, ir.CoarseChunks(max=5.0))
    assert [(c.start, c.end) for c in coarse] == [(0.0, 4.0), (4.3, 9.0), (9.3, 9.8)]


def test_voice_draws_are_deterministic_per_item_and_cover_the_pool():
    pool = ir.Tts(voices=("flite:awb", "flite:slt", "piper:joe")).pool()
    draws = [draw_voice(3, "krist", f"item{i}", pool) for i in range(300)]
    assert draws == [draw_voice(3, "krist", f"item{i}", pool) for i in range(300)]
    assert all(n > 60 for n in Counter(v.id for v in draws).values())
    assert draws != [draw_voice(4, "krist", f"item{i}", pool) for i in range(300)]


def test_tts_writes_chunks_with_exact_times_and_regroups_stored_audio(tmp_path):
    store = ItemStore(tmp_path / "items")
    inputs = {"rewrite:krist": texts_artifact(tmp_path / "texts")}
    out, stats = run_stage(tmp_path, spec_of(tmp_path, SPEC.format(chunk="chunk fine { min = 0s }")), "tts:krist",
                           inputs, items=store)
    chunks = ChunkManifest.read(out)
    assert stats.items_in == stats.items_out == 4 and stats.counts["items_cached"] == 0
    assert chunks["doc"].n_unique() == 4 and set(chunks["speaker"]) <= {"flite:awb", "flite:slt",
                                                                          "espeak:en-gb-scotland"}
    assert chunks.filter(pl.col("doc") == 0)["text"].to_list() == ["Norway lies in northern Europe.",
                                                                   "Its capital is Oslo.",
                                                                   "The coast is long and cut by fjords."]
    for (audio,), rows in chunks.group_by("audio"):
        seconds = len(load_wav(audio_path(store, audio))) / SAMPLE_RATE
        starts, ends = rows["start"].to_numpy(), rows["end"].to_numpy()
        assert np.all(starts < ends) and np.all(starts[1:] >= ends[:-1]) and ends.max() <= seconds + 1e-3
    assert chunks["path"].to_list()[0] == f"p0.html#chars=0-{len(TEXTS[0])}"
    report = TtsStage.voices(out)
    assert sum(v["items"] for v in report["voices"]) == 4 and all(0 <= v["wer"] <= 1 for v in report["voices"])

    coarse, again = run_stage(tmp_path, spec_of(tmp_path, SPEC.format(chunk="chunk coarse { max = 60s }")),
                              "tts:krist", inputs, "coarse", items=store)
    assert again.counts["items_cached"] == 4  # granularity regroups the stored audio
    regrouped = ChunkManifest.read(coarse)
    assert regrouped.group_by("doc").len()["len"].max() == 1  # each item one coarse chunk
    assert regrouped["text"].to_list()[0] == " ".join(chunks.filter(pl.col("doc") == 0)["text"].to_list())
