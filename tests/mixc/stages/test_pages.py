"""The extract stage on real files: HTML (plain and compressed), WARC archives written with warcio,
jsonl and parquet with HTML or text fields; every reason a page is set aside; the per-page memo;
the same bytes with one or two worker processes; the Pages artifact's reader."""

from __future__ import annotations

import bz2
import gzip
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from mixc.build.execute import declared
from mixc.stages import REGISTRY, graph
from mixc.stages import pages as pages_stage
from mixc.stages.base import Context, Stats
from mixc.stages.pages import Page, Pages, text_digest
from mixc.stages.store import ItemStore
from tests.mixc.stages.helpers import run_stage, spec_of

SPEC = """
source pages : html {{
  files = "d/*"
  {extra}
}}
generator krist : krist {{ pages = pages }}
mixture {{ 100% krist }}
budget {{ steps = 1 }}
"""
TOPICS = ("rivers", "mountains", "forests", "deserts", "islands", "lakes", "glaciers", "volcanoes", "canyons",
          "wetlands", "valleys", "plateaus", "reefs", "caves", "dunes", "fjords")


def article(topic: str, n: int = 0) -> tuple[str, str]:
    """(a web page about a topic, with menu, cookie notice and footer around it; the text it should yield)."""
    paragraphs = [f"The {topic} of the northern region have shaped the lives of the people who live near them "
                  f"for many centuries, and travellers still come to see them every summer (note {n}).",
                  f"Scientists who study the {topic} measure how they change from year to year, and they publish "
                  "what they find so that schools and libraries can share it with everyone."]
    body = "".join(f"<p>{p}</p>\n" for p in paragraphs)
    page = (f"<!DOCTYPE html><html lang='en'><head><title>About {topic}</title><script>track();</script></head>"
            "<body><nav><ul><li><a href='/'>Home</a></li><li><a href='/shop'>Shop</a></li></ul></nav>"
            "<div class='cookie-banner'>This site uses cookies. Accept all?</div>"
            f"<main><article><h1>The {topic} of the north</h1>\n{body}</article></main>"
            "<footer><p>Copyright 2024 Example Media. All rights reserved.</p></footer></body></html>")
    return page, "\n\n".join([f"The {topic} of the north", *paragraphs])


def warc(records: list[tuple[str, str, bytes]]) -> bytes:
    """A gzipped WARC of HTTP responses (url, content type, body)."""
    buffer = io.BytesIO()
    writer = WARCWriter(buffer, gzip=True)
    for url, ctype, body in records:
        http = StatusAndHeaders("200 OK", [("Content-Type", ctype)], protocol="HTTP/1.1")
        writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=http))
    return buffer.getvalue()


def run(tmp_path: Path, extra: str = "", name: str | None = None, items: ItemStore | None = None,
        workers: int = 1) -> tuple[list[Page], Stats, Path]:
    spec = spec_of(tmp_path, SPEC.format(extra=extra))
    if workers == 1:
        out, stats = run_stage(tmp_path, spec, "extract:pages", {}, name=name, items=items)
    else:  # as run_stage does, with worker processes
        node = graph(spec)["extract:pages"]
        out = tmp_path / (name or "extract")
        out.mkdir()
        stage = REGISTRY[node.kind]()
        ctx = Context(node, declared(spec, node), {}, out, tmp_path, workers=workers, items=items)
        ctx.fingerprint = stage.fingerprint(ctx, spec)
        stats = stage(ctx)
    return Pages.read(out), stats, out


def folder(tmp_path: Path) -> Path:
    d = tmp_path / "d"
    d.mkdir(parents=True)
    return d


def test_html_files_compressed_or_not_and_warc_responses(tmp_path):
    d = folder(tmp_path)
    pages = [article(t) for t in TOPICS[:7]]
    (d / "a.html").write_text(pages[0][0])
    (d / "b.htm.gz").write_bytes(gzip.compress(pages[1][0].encode()))
    (d / "c.html.zst").write_bytes(zstandard.ZstdCompressor().compress(pages[2][0].encode()))
    (d / "d.html.bz2").write_bytes(bz2.compress(pages[3][0].encode()))
    (d / "e.warc.gz").write_bytes(warc([("https://x.org/4", "text/html; charset=utf-8", pages[4][0].encode()),
                                        ("https://x.org/5", "application/xhtml+xml", pages[5][0].encode())]))
    got, stats, out = run(tmp_path)
    assert [p.text for p in got] == [p[1] for p in pages[:6]]
    assert [(p.id, p.url, p.path, p.record) for p in got] == [
        ("d/a.html", None, "d/a.html", 0), ("d/b.htm.gz", None, "d/b.htm.gz", 0),
        ("d/c.html.zst", None, "d/c.html.zst", 0), ("d/d.html.bz2", None, "d/d.html.bz2", 0),
        ("https://x.org/4", "https://x.org/4", "d/e.warc.gz", 0),
        ("https://x.org/5", "https://x.org/5", "d/e.warc.gz", 1)]
    assert [p.page for p in got] == list(range(6))
    assert got[0].title == "The rivers of the north" and got[0].chars == len(got[0].text)  # the one <h1>
    assert got[0].digest == text_digest(got[0].text)
    assert all("cookies" not in p.text and "Copyright" not in p.text and "Shop" not in p.text for p in got)
    assert stats.items_in == stats.items_out == 6 and stats.counts["files"] == 5
    assert Pages.summary(out) == {"pages": 6, "chars": sum(p.chars for p in got), "with_url": 2, "with_title": 6,
                                  "dropped": {}}


def test_jsonl_and_parquet_records_with_html_or_text(tmp_path):
    d = folder(tmp_path)
    pages = [article(t) for t in TOPICS[:4]]
    (d / "a.jsonl").write_text(json.dumps({"html": pages[0][0], "url": "https://y.org/0"}) + "\n\n"
                               + json.dumps({"html": pages[1][0]}) + "\n")
    pq.write_table(pa.table({"html": [pages[2][0], pages[3][0]], "url": ["https://y.org/2", None]}), d / "b.parquet")
    got, _, _ = run(tmp_path)
    assert [p.text for p in got] == [p[1] for p in pages]
    assert [p.id for p in got] == ["https://y.org/0", "d/a.jsonl#1", "https://y.org/2", "d/b.parquet#1"]
    assert [p.record for p in got] == [0, 1, 0, 1]

    texts = folder(tmp_path / "text")
    plain = ("First paragraph of a plain text page, long enough to be kept by the stage as it is\nwrapped "
             "over two lines.\r\n\r\n  Second   paragraph, with   odd spacing, about the weather in the "
             "hills and the valleys below them in the spring.")
    (texts / "t.jsonl").write_text(json.dumps({"body": plain, "link": "https://z.org/t"}) + "\n")
    got, _, _ = run(tmp_path / "text", 'format = "jsonl"\n  field = "body"\n  url_field = "link"\n  content = text')
    assert [(p.id, p.title) for p in got] == [("https://z.org/t", None)]
    assert got[0].text == ("First paragraph of a plain text page, long enough to be kept by the stage as it is wrapped "
                           "over two lines.\n\nSecond paragraph, with odd spacing, about the weather in the hills "
                           "and the valleys below them in the spring.")


def test_every_reason_a_page_is_set_aside(tmp_path):
    d = folder(tmp_path)
    keep, again, short = article("rivers"), article("lakes"), article("caves")
    (d / "a_keep.html").write_text(keep[0])
    (d / "b_corrupt.html.gz").write_bytes(gzip.compress(keep[0].encode())[:40])
    (d / "c_png.html").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64))
    (d / "d_json.html").write_text(json.dumps({"title": "not a page", "items": [1, 2, 3]}))
    (d / "e_plain.html").write_text("Just a line of plain text, with no markup at all.\n")
    (d / "f_empty.html").write_text("<html><head><title>Empty</title><script>go();</script></head><body></body></html>")
    (d / "g_short.html").write_text(short[0].replace("<p>", "<!--", 1).replace("</p>", "-->", 1)
                                    .replace("<p>", "<!--", 1).replace("</p>", "-->", 1))
    german = ("<html><body><article><p>Die Flüsse im Norden des Landes haben das Leben der Menschen, die an ihren "
              "Ufern wohnen, seit vielen Jahrhunderten geprägt, und noch heute kommen jeden Sommer Reisende, "
              "um sie zu sehen. Forscher messen, wie sie sich von Jahr zu Jahr verändern.</p></article></body></html>")
    (d / "h_german.html").write_text(german)
    (d / "i_same_text.html").write_text(keep[0].replace("Example Media", "Another Publisher"))
    (d / "j_crawl.warc.gz").write_bytes(warc([("https://x.org/lakes", "text/html", again[0].encode()),
                                              ("https://x.org/lakes", "text/html", again[0].encode()),
                                              ("https://x.org/logo.png", "image/png", b"\x89PNG\r\n")]))
    (d / "k_broken.warc.gz").write_bytes(b"<html> saved under the wrong name </html>\n")
    (d / "l_lines.jsonl").write_text('{"html": "<html>\n{"url": 3}\n[1, 2]\n')
    got, stats, out = run(tmp_path)
    assert [p.id for p in got] == ["d/a_keep.html", "https://x.org/lakes"]
    assert stats.dropped == {"unreadable": 5, "not html": 4, "no main text": 1, "too short": 1, "not en": 1,
                             "duplicate text": 1, "duplicate url": 1}
    assert stats.items_in == stats.items_out + sum(stats.dropped.values())
    reasons = {q["item"]: q["reason"] for q in stats.quarantined}
    assert set(reasons) == {"d/b_corrupt.html.gz", "d/c_png.html", "d/d_json.html", "d/e_plain.html",
                            "d/f_empty.html", "d/g_short.html", "d/h_german.html", "https://x.org/logo.png",
                            "d/k_broken.warc.gz", "d/l_lines.jsonl#0", "d/l_lines.jsonl#1", "d/l_lines.jsonl#2"}
    assert "EOFError" in reasons["d/b_corrupt.html.gz"] or "BadGzipFile" in reasons["d/b_corrupt.html.gz"]
    assert reasons["d/c_png.html"] == "binary data" and reasons["d/d_json.html"] == "JSON, not HTML"
    assert reasons["d/e_plain.html"] == "no HTML tags" and reasons["https://x.org/logo.png"] == "content type image/png"
    assert "min_chars = 200" in reasons["d/g_short.html"] and "in 'de'" in reasons["d/h_german.html"]
    assert reasons["d/k_broken.warc.gz"] == "ValueError: record 0 is not a WARC record"
    assert "JSONDecodeError" in reasons["d/l_lines.jsonl#0"] and "field 'html'" in reasons["d/l_lines.jsonl#1"]
    assert Pages.summary(out)["dropped"] == stats.dropped

    again_out = run(tmp_path, "language = none\n  min_chars = 20\n  dedup = false", name="lenient")[0]
    assert [p.id for p in again_out] == ["d/a_keep.html", "d/g_short.html", "d/h_german.html", "d/i_same_text.html",
                                         "https://x.org/lakes", "https://x.org/lakes"]


def test_extractions_are_memoised_per_page(tmp_path):
    d = folder(tmp_path)
    for topic in TOPICS[:3]:
        (d / f"{topic}.html").write_text(article(topic)[0])
    items = ItemStore(tmp_path / "items")
    first, stats, out = run(tmp_path, items=items)
    assert stats.counts["pages_extracted"] == 3 and stats.counts["pages_cached"] == 0
    second, stats, again = run(tmp_path, items=items, name="again")
    assert stats.counts["pages_extracted"] == 0 and stats.counts["pages_cached"] == 3
    assert second == first and (out / Pages.FILE).read_bytes() == (again / Pages.FILE).read_bytes()
    (d / "more.html").write_text(article(TOPICS[3])[0])  # the glob now matches one more page
    third, stats, _ = run(tmp_path, items=items, name="third")
    assert stats.counts["pages_extracted"] == 1 and stats.counts["pages_cached"] == 3 and len(third) == 4


def test_one_or_two_workers_write_the_same_bytes(tmp_path, monkeypatch):
    monkeypatch.setattr(pages_stage, "POOL_MIN", 64)  # start the pool for fewer pages than in real runs
    d = folder(tmp_path)
    records = [json.dumps({"html": article(TOPICS[i % len(TOPICS)], i)[0], "url": f"https://w.org/{i}"})
               for i in range(100)]  # several batches of 32, shared by the two workers
    (d / "many.jsonl").write_text("\n".join(records) + "\n")
    one, _, out_one = run(tmp_path, name="one")
    two, stats, out_two = run(tmp_path, name="two", workers=2, items=ItemStore(tmp_path / "items"))
    assert len(one) == 100 and stats.counts["pages_extracted"] == 100 and stats.counts["processes"] == 2
    assert len(list((tmp_path / "items" / "extract").rglob("*.json"))) == 100  # memoised by the workers
    for name in (Pages.FILE, Pages.SUMMARY):
        assert (out_one / name).read_bytes() == (out_two / name).read_bytes()


def test_pages_reader_round_trip(tmp_path):
    rows = [Page(0, "https://a.org/", "https://a.org/", "d/a.warc.gz", 3, "A", "One.\n\nTwo é.", 11,
                 text_digest("One.\n\nTwo é.")),
            Page(1, "d/b.html", None, "d/b.html", 0, None, "Three.", 6, text_digest("Three."))]
    summary = Pages.write(tmp_path, iter(rows), {"too short": 2})
    assert Pages.read(tmp_path) == rows
    assert summary == Pages.summary(tmp_path) == {"pages": 2, "chars": 17, "with_url": 1, "with_title": 1,
                                                  "dropped": {"too short": 2}}
    empty = tmp_path / "empty"
    empty.mkdir()
    Pages.write(empty, [])
    assert Pages.read(empty) == [] and Pages.summary(empty)["pages"] == 0
