"""The demo's web pages: deterministic and small, and through the real extract stage they give the
expected pages, keep every FAQ question with its answer, and lose the clutter around the article."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixc.demo.pages import COOKIES, FOOTER, faq, profiles, write_pages
from mixc.stages.pages import Pages
from tests.mixc.stages.helpers import run_stage, spec_of

SPEC = """
source pages : html {
  files = ["pages/*.html", "pages/*.warc.gz"]
}
generator quest : quest { pages = pages }
mixture { 100% quest }
budget { steps = 1 }
"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("demo")
    return root, write_pages(root)


@pytest.fixture(scope="module")
def extracted(demo):
    root, _ = demo
    out, stats = run_stage(root, spec_of(root, SPEC), "extract:pages", {})
    return Pages.read(out), stats


def test_pages_are_deterministic_and_small(demo, tmp_path):
    root, counts = demo
    write_pages(tmp_path)
    names = sorted(p.name for p in (root / "pages").iterdir())
    assert len(names) == counts["html_pages"] + 2 and "crawl.warc.gz" in names and "not-found.html" in names
    for name in names:
        assert (tmp_path / "pages" / name).read_bytes() == (root / "pages" / name).read_bytes(), name
    assert counts["bytes"] < 2_000_000


def test_extraction_keeps_the_expected_pages(demo, extracted):
    _, counts = demo
    pages, stats = extracted
    assert len(pages) == counts["expected_pages"] == 50
    assert stats.dropped == {"duplicate text": counts["duplicates"], "not html": counts["not_html"],
                             "too short": counts["too_short"]}
    assert sum(p.url is not None for p in pages) == counts["warc_pages"]
    assert all(p.title for p in pages)


def test_faq_questions_and_answers_survive_extraction(extracted):
    pages, _ = extracted
    by_title = {p.title: p.text for p in pages}
    asked = 0
    for country in profiles():
        text = by_title[country.name]
        for question, answer in faq(country):
            assert question[0].isupper() and question.endswith("?")
            assert f"{question}\n\n{answer}" in text, (country.name, question)
            asked += 1
    assert asked >= 3 * len(profiles())


def test_clutter_does_not_survive_extraction(extracted):
    pages, _ = extracted
    clutter = (COOKIES[:40], "Accept all", FOOTER[:30], "About us", "Related countries", "Quick facts",
               "Advertisement", "dataLayer", "Largest cities")
    for page in pages:
        assert not [c for c in clutter if c in page.text], page.id
