"""The generators' LLM stages (rewrite, mine, answer) with the offline extractive backend, on the demo's
pages: parts and lineage, per-request caching, every reason an output is dropped, prompt files, and
which `llm { }` fields enter the key (sampling) and which never do (settings)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixc.demo.pages import write_pages
from mixc.stages import graph
from mixc.stages.base import StageError
from mixc.stages.generate import (
    LLM_KIND,
    Answered,
    GeneratedTexts,
    MineStage,
    drop_reason,
    page_parts,
    render,
    request_seed,
)
from mixc.stages.pages import Pages
from mixc.stages.store import ItemStore
from tests.mixc.stages.helpers import run_stage, spec_of

SPEC = """
seed = 4
source pages : html {{ files = ["data/pages/*.html", "data/pages/*.warc.gz"] }}
generator krist : krist {{
  pages = pages
  output {{ max_chars = 500  max_items = 6 }}
  {krist}
}}
generator quest : quest {{
  pages = pages
  output {{ max_items = 12 }}
}}
mixture {{
  50% krist
  50% quest
}}
budget {{ steps = 1 }}
"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, Path, ItemStore]:
    """A workspace with the demo pages, extracted once: (root, the extract artifact, the item store)."""
    root = tmp_path_factory.mktemp("gen")
    write_pages(root / "data")
    store = ItemStore(root / "items")
    out, _ = run_stage(root, spec_of(root, SPEC.format(krist="")), "extract:pages", {}, items=store)
    return root, out, store


def test_page_parts_cover_the_text_at_paragraph_ends_within_the_limit():
    text = "\n\n".join(f"Paragraph {i} " + "word " * (20 + 4 * i) for i in range(8))
    parts = page_parts(text, 300)
    assert all(end - start <= 300 for start, end in parts)
    assert [p for s, e in parts for p in text[s:e].split("\n\n")] == text.split("\n\n")  # whole paragraphs, in order
    assert all(text[e:e + 2] in ("\n\n", "") for _, e in parts)


def test_a_paragraph_longer_than_the_limit_is_cut_at_sentence_ends():
    text = " ".join(f"Sentence number {i} says something short." for i in range(40))
    parts = page_parts(text, 200)
    assert all(end - start <= 200 for start, end in parts) and len(parts) > 1
    assert all(text[s:e].rstrip().endswith(".") for s, e in parts)


def test_render_fills_only_the_named_placeholders():
    assert render('Page: {page} as JSON {"a": 1} {other}', {"page": "P"}) == 'Page: P as JSON {"a": 1} {other}'


def test_request_seeds_depend_on_the_item_not_on_its_neighbours():
    a = request_seed(4, "rewrite:krist", "rewrite:page#chars=0-10")
    assert a == request_seed(4, "rewrite:krist", "rewrite:page#chars=0-10")
    assert a != request_seed(4, "rewrite:krist", "rewrite:page#chars=10-20") != request_seed(5, "rewrite:krist",
                                                                                           "rewrite:page#chars=10-20")
    assert 0 <= a < 2 ** 31


PAGE = "The capital of Norway is Oslo. Oslo lies at the end of the Oslofjord, in the south east of the country."


@pytest.mark.parametrize("text, finish, page, reason", [
    ("Oslo is the capital.", "length", None, "hit max_tokens"),
    ("   ", "stop", None, "empty"),
    ("I'm sorry, but I cannot help with that request.", "stop", None, "refusal"),
    ("Oslo. " * 100, "stop", None, "too long"),
    ("La capitale de la Norvège est Oslo, une ville située au fond du fjord, au sud-est du pays.", "stop", None,
     "not en"),
    ("The answer is Canberra, the capital of Australia, built as a planned city.", "stop", PAGE,
     "answer not grounded in the page"),
    ("The page says that the capital of Norway is Oslo.", "stop", PAGE, None),
])
def test_every_reason_an_output_is_dropped(text, finish, page, reason):
    assert drop_reason(Answered(text, finish, 10, 10), "en", 200, page) == reason


def test_rewrite_keeps_lineage_and_caches_each_request(demo):
    root, pages, store = demo
    spec = spec_of(root, SPEC.format(krist=""))
    out, stats = run_stage(root, spec, "rewrite:krist", {"extract:pages": pages}, items=store)
    texts = GeneratedTexts.read(out).to_dicts()
    assert stats.items_in == 6 and len(texts) + sum(stats.dropped.values()) == 6 and texts
    by_id = {p.id: p for p in Pages.read(pages)}
    for row in texts:
        page = by_id[row["page"]]
        assert row["id"] == f"{page.id}#chars={row['start']}-{row['end']}" and 0 <= row["start"] < row["end"]
        assert row["end"] <= len(page.text) and row["tokens_out"] > 0 and "http" not in row["text"]
    assert stats.counts["requests_cached"] == 0 and len(list((store.root / LLM_KIND).rglob("*.json"))) >= 6
    again, stats2 = run_stage(root, spec, "rewrite:krist", {"extract:pages": pages}, "again", items=store)
    assert stats2.counts["requests_cached"] == stats2.counts["requests"] == 6
    assert GeneratedTexts.read(again).equals(GeneratedTexts.read(out))


def test_quest_mines_filters_and_answers_from_the_page(demo):
    root, pages, store = demo
    spec = spec_of(root, SPEC.format(krist=""))
    mined, mstats = run_stage(root, spec, "mine:quest", {"extract:pages": pages}, items=store)
    questions = MineStage.questions(mined).to_dicts()
    texts = {p.page: p.text for p in Pages.read(pages)}
    assert mstats.items_out == len(questions) > 12
    assert all(texts[q["page"]][q["start"]:q["end"]] == q["question"] and q["question"].endswith("?")
               for q in questions)
    out, stats = run_stage(root, spec, "answer:quest", {"extract:pages": pages, "mine:quest": mined}, items=store)
    answers = GeneratedTexts.read(out).to_dicts()
    assert stats.items_in == 12 and answers and len(answers) + sum(stats.dropped.values()) == 12
    for row in answers:
        assert row["text"].startswith(row["question"]) and row["text"].count("?") >= 1


def test_a_prompt_without_its_placeholder_is_an_error_at_the_prompt_field(demo):
    root, pages, store = demo
    (root / "bad.txt").write_text("Rewrite this page for speech.\n")
    spec = spec_of(root, SPEC.format(krist='prompt = "bad.txt"\n  llm { backend = extractive }'))
    with pytest.raises(StageError) as err:
        run_stage(root, spec, "rewrite:krist", {"extract:pages": pages}, "bad", items=store)
    assert "{page}" in err.value.message and err.value.field == ".prompt"


def test_settings_never_enter_the_key_but_sampling_does(tmp_path):
    (tmp_path / "p.txt").write_text("Say {page}\n")
    base = 'llm { backend = openai  model = "m"  base_url = "http://127.0.0.1:1/v1" }'
    keys = {}
    for name, llm in {"base": base,
                      "settings": 'llm { backend = openai  model = "m"  base_url = "http://10.0.0.1:8000/v1"  '
                                  'batch = 32  timeout = 5s  retries = 1  api_key_env = "K" }',
                      "sampling": base.replace("}", " temperature = 0.2 }")}.items():
        spec = spec_of(tmp_path, SPEC.format(krist=llm + '\n  tts { pause = 0.3s  device = cuda }'))
        keys[name] = graph(spec)["rewrite:krist"].key, graph(spec)["tts:krist"].key
    assert keys["settings"] == keys["base"]
    assert keys["sampling"][0] != keys["base"][0]
