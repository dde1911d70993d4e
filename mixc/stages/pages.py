"""Extract: an html source's web pages -> their main text, as typed page records.

Inputs (`files` globs, sorted; `format = auto` decides by suffix, after any .gz / .zst / .bz2):
- html: one page per file (.html, .htm, and any suffix auto does not know);
- warc: every `response` record of a WARC archive (.warc, .warc.gz; read with warcio) whose HTTP
  content type is HTML; its URL is the record's WARC-Target-URI;
- jsonl / parquet: one page per record: `field` holds the page's HTML (or, with `content = text`,
  its plain text), `url_field` its URL when the record has one.
A page's id is its URL when known, else its workspace-relative path, plus `#record` (the record's
index in the file) in multi-record files.

Main text: `trafilatura.bare_extraction` (the function `trafilatura.extract` wraps; its tree is what
keeps paragraph breaks) with comments, tables, images and links left out (a listener can use none
of them), no formatting marks, no document-level dedup cache (its LRU makes a page's result depend
on the pages before it), and trafilatura's default precision/recall balance, which is deterministic.
Every block of the result (paragraph, heading, list item, line break) becomes one paragraph: its
whitespace collapsed, NFC, paragraphs joined by a blank line. The title is trafilatura's
`extract_title` (the <title>, else the main heading). The language is py3langid's guess on the main
text's first 1000 characters. All three are memoised per page in the item store (kind `extract`,
keyed by these settings, the libraries' versions and the page's bytes), so a rerun or a changed glob
extracts only new pages, and a killed stage resumes; the pages to do run in batches, in `ctx.workers`
spawned processes when there are many.

Pages are taken in a fixed order (files sorted, records in file order) and each meets, in turn:
quarantine "unreadable" (a corrupt file or record: the records before the damage are kept), drop
"duplicate url" (with `dedup`: a URL met before), quarantine "not html" (binary data, JSON, plain
text when `content = html`, a non-HTML WARC response), "no main text", "too short" (< `min_chars`),
"not <language>" (py3langid gives another language a probability of 0.5 or more), drop "duplicate
text" (with `dedup`: the same main text, case and spacing aside, as a page kept before).

Artifact (`Pages`): `pages.parquet`, one row per kept page: `page` (0..n-1, in order), `id`, `url`
(null when unknown), `path`, `record`, `title` (null when none), `text` (the main text; downstream
lineage is (page id, character span in it), so it is exactly what later stages slice), `chars`,
`digest` (sha256 of `text`); and `pages.json`, counts: pages, chars, and what was dropped or set
aside, by reason.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import logging
import re
import unicodedata
import zlib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib.metadata import version
from itertools import islice
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from mixc.stages.base import Context, Pool, Stage, Stats, process_pool
from mixc.stages.items import item_key
from mixc.stages.store import ItemStore

T = TypeVar("T")
COMPRESSED = (".gz", ".zst", ".bz2")
HTML_TYPES = ("text/html", "application/xhtml+xml")
HTML_TAG = re.compile(rb"<\s*(?:!doctype\s+html|html|head|body|title|meta|p|div|article|main|section|h[1-6]|span|a|"
                      rb"ul|ol|li|table|br|script|style|link)\b", re.IGNORECASE)
SNIFF_BYTES = 1 << 16
# trafilatura's settings (they, and its version, key every memoised extraction)
SETTINGS: dict[str, Any] = {"include_comments": False, "include_tables": False, "include_images": False,
                            "include_links": False, "include_formatting": False, "deduplicate": False,
                            "with_metadata": False, "output_format": "python"}
RENDER = 1  # how the extracted tree becomes text; bump when `tree_text` changes
INLINE_TAGS = frozenset({"hi", "ref", "del", "span"})  # everything else in trafilatura's tree is a block
MEMO_KIND, MEMO_SUFFIX = "extract", ".json"
BATCH = 32  # pages per task sent to a worker process
WINDOW = 1024  # pages read ahead, extracted together, then filtered and written in order
ROW_GROUP = 1024
LANGID_CHARS = 1000  # the main text's language is told from its start (py3langid's time grows with length)
LANGID_SURE = 0.5  # set a page aside when py3langid gives another language at least this probability
POOL_MIN = 1024  # pages to extract worth starting worker processes for (a pool takes 1-3 s to start)


# ------------------------------------------------------------------------------------ reading


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of `size` items (the last one shorter), read lazily."""
    source = iter(items)
    return iter(lambda: list(islice(source, size)), [])


def page_id(path: str, record: int, url: str | None, multi: bool = True) -> str:
    """A page's URL when known, else where it is: its file, plus `#record` in a multi-record file."""
    return url or (f"{path}#{record}" if multi else path)


@dataclass(frozen=True)
class RawPage:
    """One page as read, before extraction: HTML (or plain text) bytes and where it came from."""
    path: str
    record: int
    url: str | None
    body: bytes
    html: bool  # False: the body is plain text (content = text)
    multi: bool  # read from a multi-record file (WARC, jsonl, parquet)

    @property
    def id(self) -> str:
        return page_id(self.path, self.record, self.url, self.multi)


@dataclass(frozen=True)
class Rejected:
    """An input set aside while reading: a damaged file or record, or a non-HTML response."""
    item: str
    reason: str
    kind: str


@dataclass(frozen=True)
class Source:
    """How the stage reads its files (the html source's declared fields)."""
    format: str
    field: str
    html: bool  # content = html
    url_field: str

    @classmethod
    def of(cls, ctx: Context) -> Source:
        return cls(ctx.read(".format"), ctx.read(".field"), ctx.read(".content") == "html", ctx.read(".url_field"))


def page_format(path: Path, declared: str) -> str:
    if declared != "auto":
        return declared
    name = path.name.lower()
    for suffix in COMPRESSED:
        name = name.removesuffix(suffix)
    if name.endswith(".warc"):
        return "warc"
    if name.endswith((".jsonl", ".json")):
        return "jsonl"
    return "parquet" if name.endswith(".parquet") else "html"


def open_binary(path: Path) -> io.BufferedIOBase:
    """The file's bytes, decompressed when its suffix says so."""
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    if path.suffix == ".bz2":
        return bz2.open(path, "rb")
    if path.suffix == ".zst":
        import zstandard
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True))
    return open(path, "rb")


def read_errors() -> tuple[type[BaseException], ...]:
    """What a damaged gzip / bz2 / zstd / WARC / JSON / parquet file raises while it is read."""
    import zstandard
    from warcio.exceptions import ArchiveLoadFailed
    return (OSError, EOFError, ValueError, zlib.error, zstandard.ZstdError, ArchiveLoadFailed, pa.ArrowException)


def _html_file(path: Path, rel: str) -> Iterator[RawPage]:
    with open_binary(path) as handle:
        yield RawPage(rel, 0, None, handle.read(), True, False)


def _warc_pages(path: Path, rel: str) -> Iterator[RawPage | Rejected]:
    from warcio.archiveiterator import ArchiveIterator
    # warcio reads .warc.gz itself, one gzip member per record: the records before a damaged one are kept
    with open(path, "rb") if path.suffix == ".gz" else open_binary(path) as handle:
        index = -1
        for index, record in enumerate(ArchiveIterator(handle)):
            if record.format != "warc":  # warcio reads what is not WARC as the older ARC format
                raise ValueError(f"record {index} is not a WARC record")
            if record.rec_type != "response":
                continue
            url = record.rec_headers.get_header("WARC-Target-URI") or None
            ctype = record.http_headers.get_header("Content-Type", "") if record.http_headers else ""
            mime = ctype.split(";")[0].strip().lower()
            if mime and mime not in HTML_TYPES:
                yield Rejected(page_id(rel, index, url), f"content type {mime}", "not html")
                continue
            yield RawPage(rel, index, url, record.content_stream().read(), True, True)
        if index < 0:
            raise ValueError("no WARC records in the file")


def _record_page(rel: str, index: int, value: object, url: object, src: Source) -> RawPage | Rejected:
    url = url if isinstance(url, str) and url else None
    if not isinstance(value, str):
        return Rejected(page_id(rel, index, url), f"no text in field '{src.field}'", "unreadable")
    return RawPage(rel, index, url, value.encode("utf-8", "surrogatepass"), src.html, True)


def _jsonl_pages(path: Path, rel: str, src: Source) -> Iterator[RawPage | Rejected]:
    with open_binary(path) as handle:
        lines = (line for line in handle if line.strip())
        for index, line in enumerate(lines):
            try:
                record = json.loads(line)
            except ValueError as exc:
                yield Rejected(f"{rel}#{index}", f"{type(exc).__name__}: {exc}", "unreadable")
                continue
            if not isinstance(record, dict):
                yield Rejected(f"{rel}#{index}", "the record is not a JSON object", "unreadable")
                continue
            yield _record_page(rel, index, record.get(src.field), record.get(src.url_field), src)


def _parquet_pages(path: Path, rel: str, src: Source) -> Iterator[RawPage | Rejected]:
    table = pq.ParquetFile(path, pre_buffer=False)  # bounded memory (see text.Documents.batches)
    names = table.schema_arrow.names
    if src.field not in names:
        raise ValueError(f"no column '{src.field}' (columns: {', '.join(names)})")
    columns = [src.field] + ([src.url_field] if src.url_field in names and src.url_field != src.field else [])
    index = 0
    for batch in table.iter_batches(columns=columns, batch_size=ROW_GROUP):
        values = batch.column(0).to_pylist()
        urls = batch.column(1).to_pylist() if len(columns) > 1 else [None] * len(values)
        for value, url in zip(values, urls):
            yield _record_page(rel, index, value, url, src)
            index += 1


def _file_pages(path: Path, rel: str, src: Source) -> Iterator[RawPage | Rejected]:
    fmt = page_format(path, src.format)
    if fmt == "warc":
        return _warc_pages(path, rel)
    if fmt == "jsonl":
        return _jsonl_pages(path, rel, src)
    if fmt == "parquet":
        return _parquet_pages(path, rel, src)
    return _html_file(path, rel)


def read_pages(files: list[tuple[str, Path]], src: Source) -> Iterator[RawPage | Rejected]:
    """Every page of the (name, file)s, in order; a file that breaks is set aside from the damage on."""
    errors = read_errors()
    for rel, path in files:
        try:
            yield from _file_pages(path, rel, src)
        except errors as exc:
            yield Rejected(rel, f"{type(exc).__name__}: {exc}", "unreadable")


def not_html(body: bytes) -> str | None:
    """Why bytes are not an HTML page (binary data, JSON, text without tags), or None when they are."""
    head = body[:SNIFF_BYTES]
    if b"\x00" in head:
        return "binary data"
    if head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"["):
        try:
            json.loads(body)
            return "JSON, not HTML"
        except ValueError:
            pass
    return None if HTML_TAG.search(head) else "no HTML tags"


# --------------------------------------------------------------------------------- extraction


@dataclass(frozen=True)
class Extracted:
    """What one page yields (memoised as JSON): title, main text, and the main text's language."""
    title: str | None
    text: str
    language: str | None = None  # py3langid's best guess, with its probability
    language_p: float = 0.0
    error: str | None = None  # why extraction failed on this page

    @classmethod
    def of(cls, title: str | None, text: str) -> Extracted:
        language, p = identify(text) if text else (None, 0.0)
        return cls(title, text, language, p)


@lru_cache(maxsize=1)
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def identify(text: str) -> tuple[str, float]:
    """The language of a text's start, and how sure py3langid is of it (rounded: the last bits of
    its sums vary between CPUs)."""
    language, p = _identifier().classify(text[:LANGID_CHARS])
    return str(language), round(float(p), 4)


def paragraphs(text: str) -> str:
    """Lines -> paragraphs: NFC, whitespace collapsed in each, empty ones gone, joined by blank lines."""
    lines = (" ".join(line.split()) for line in unicodedata.normalize("NFC", text).split("\n"))
    return "\n\n".join(line for line in lines if line)


def tree_text(body: Any) -> str:
    """trafilatura's result tree -> text: every block element its own paragraph."""
    from lxml import etree
    parts: list[str] = []
    for event, element in etree.iterwalk(body, events=("start", "end")):
        block = element.tag not in INLINE_TAGS
        if event == "start":
            parts.append("\n" if block else "")
            parts.append(element.text or "")
        else:
            parts.append("\n" if block else "")
            if element is not body:
                parts.append(element.tail or "")
    return paragraphs("".join(parts))


def plain_text(body: bytes) -> str:
    """A text record's paragraphs (blank-line separated in the input; single line breaks are spaces)."""
    text = body.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")
    return paragraphs("\n".join(" ".join(block.split()) for block in re.split(r"\n\s*\n", text)))


def extract_page(body: bytes) -> Extracted:
    """The title, main text and language of one HTML page."""
    import trafilatura
    from lxml import etree
    from trafilatura.metadata import extract_title
    from trafilatura.settings import Document
    from trafilatura.utils import load_html
    try:
        tree = load_html(body)
        if tree is None:
            return Extracted(None, "", error="the HTML does not parse")
        title = extract_title(tree)
        document = trafilatura.bare_extraction(tree, **SETTINGS)
    except (ValueError, TypeError, RecursionError, etree.LxmlError) as exc:
        return Extracted(None, "", error=f"{type(exc).__name__}: {exc}")
    text = tree_text(document.body) if isinstance(document, Document) and document.body is not None else ""
    return Extracted.of(paragraphs(title or "") or None, text)


@lru_cache(maxsize=1)
def memo_params() -> str:
    """What every memoised extraction depends on besides the page: settings, rendering, libraries."""
    return json.dumps({"settings": SETTINGS, "render": RENDER, "langid_chars": LANGID_CHARS,
                       "trafilatura": version("trafilatura"), "py3langid": version("py3langid")}, sort_keys=True)


def memo_key(body: bytes) -> str:
    return item_key(memo_params(), hashlib.sha256(body).hexdigest())


def _memo_put(store: ItemStore, key: str, found: Extracted) -> None:
    payload = json.dumps(asdict(found), ensure_ascii=False, sort_keys=True) + "\n"
    store.put(MEMO_KIND, key, MEMO_SUFFIX, lambda tmp: tmp.write_text(payload, encoding="utf-8"))


def _memo_get(store: ItemStore, key: str) -> Extracted:
    return Extracted(**json.loads(store.path(MEMO_KIND, key, MEMO_SUFFIX).read_text(encoding="utf-8")))


_worker: dict[str, ItemStore | None] = {}


def _init_worker(items_root: str | None) -> None:
    """A process that extracts: trafilatura quiet (it logs every page it gives up on; the stats say
    which and why), and the memo it writes each page into."""
    logging.getLogger("trafilatura").setLevel(logging.CRITICAL)
    _worker["store"] = ItemStore(Path(items_root)) if items_root else None


def extract_batch(batch: list[tuple[str, bytes]]) -> list[Extracted]:
    """Extracts (memo key, page) pairs, memoising each as it is done, so a killed stage keeps them."""
    store, out = _worker["store"], []
    for key, body in batch:
        out.append(extract_page(body))
        if store is not None:
            _memo_put(store, key, out[-1])
    return out


class Extractor:
    """Extracts the pages not in the memo: here, or in `workers` processes from the first window with
    POOL_MIN pages to do to the stage's end."""

    def __init__(self, workers: int, store: ItemStore | None, stack: ExitStack, pool: Pool = process_pool):
        self.workers, self.store, self.stack, self.pools = workers, store, stack, pool
        self.root = str(store.root) if store is not None else None
        self.pool: Any = None
        self.extracted = self.cached = 0
        _init_worker(self.root)

    def _map(self, batches: list[list[tuple[str, bytes]]]) -> Iterator[list[Extracted]]:
        if self.pool is None and self.workers > 1 and sum(map(len, batches)) >= POOL_MIN:
            self.pool = self.stack.enter_context(self.pools(self.workers, _init_worker, (self.root,)))
        return self.pool.map(extract_batch, batches) if self.pool is not None else map(extract_batch, batches)

    def extract(self, pages: dict[str, bytes]) -> dict[str, Extracted]:
        """Memo key -> extraction, for every given page: from the memo, else extracted."""
        store = self.store
        found = {k: _memo_get(store, k) for k in pages if store is not None and store.has(MEMO_KIND, k, MEMO_SUFFIX)}
        todo = [(key, body) for key, body in pages.items() if key not in found]
        self.cached += len(found)
        self.extracted += len(todo)
        batches = [todo[i:i + BATCH] for i in range(0, len(todo), BATCH)]
        for batch, results in zip(batches, self._map(batches)):
            found.update((key, result) for (key, _), result in zip(batch, results))
        return found


# ----------------------------------------------------------------------------------- artifact


@dataclass(frozen=True)
class Page:
    """One kept page of the extract stage's artifact."""
    page: int
    id: str
    url: str | None
    path: str
    record: int
    title: str | None
    text: str
    chars: int
    digest: str


SCHEMA = pa.schema([("page", pa.int64()), ("id", pa.string()), ("url", pa.string()), ("path", pa.string()),
                    ("record", pa.int64()), ("title", pa.string()), ("text", pa.string()), ("chars", pa.int64()),
                    ("digest", pa.string())])


class Pages:
    """The extract stage's artifact: `pages.parquet` (one row per kept page) and `pages.json` (counts)."""
    FILE: ClassVar[str] = "pages.parquet"
    SUMMARY: ClassVar[str] = "pages.json"

    @classmethod
    def write(cls, folder: Path, rows: Iterable[Page], dropped: Mapping[str, int] | None = None) -> dict[str, Any]:
        """Writes the rows (streamed, in row groups) and the summary; returns the summary. `dropped`
        (pages set aside, by reason) is read once every row is written, so counts that a generator of
        rows keeps as it goes are complete."""
        pages = chars = with_url = with_title = 0
        with pq.ParquetWriter(folder / cls.FILE, SCHEMA, compression="zstd") as writer:
            for group in chunked(rows, ROW_GROUP):
                writer.write_table(pa.Table.from_pylist([asdict(p) for p in group], schema=SCHEMA))
                pages += len(group)
                chars += sum(p.chars for p in group)
                with_url += sum(p.url is not None for p in group)
                with_title += sum(p.title is not None for p in group)
        summary = {"pages": pages, "chars": chars, "with_url": with_url, "with_title": with_title,
                   "dropped": dict(sorted((dropped or {}).items()))}
        (folder / cls.SUMMARY).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        return summary

    @classmethod
    def read(cls, folder: Path) -> list[Page]:
        return [Page(**row) for row in pq.read_table(folder / cls.FILE).to_pylist()]

    @classmethod
    def summary(cls, folder: Path) -> dict[str, Any]:
        return json.loads((folder / cls.SUMMARY).read_text())


# -------------------------------------------------------------------------------------- stage


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def dedup_key(text: str) -> bytes:
    return hashlib.blake2b(" ".join(text.casefold().split()).encode("utf-8"), digest_size=16).digest()


@dataclass
class PageFilters:
    """The per-page checks after reading, in the stage's order, with what they have seen so far."""
    min_chars: int
    language: str | None
    dedup: bool
    urls: set[str] = field(default_factory=set)
    texts: set[bytes] = field(default_factory=set)

    def admit(self, raw: RawPage, stats: Stats) -> bool:
        """The checks before extraction: repeated URL, bytes that are not HTML."""
        if self.dedup and raw.url is not None:
            if raw.url in self.urls:
                stats.drop("duplicate url")
                return False
            self.urls.add(raw.url)
        if raw.html and (why := not_html(raw.body)):
            stats.quarantine(raw.id, why, "not html")
            return False
        return True

    def keep(self, raw: RawPage, found: Extracted, stats: Stats) -> bool:
        """The checks on the main text: present, long enough, in the language, not seen before."""
        if not found.text:
            stats.quarantine(raw.id, found.error or "trafilatura found no main text", "no main text")
            return False
        if len(found.text) < self.min_chars:
            stats.quarantine(raw.id, f"{len(found.text)} characters of main text (min_chars = {self.min_chars})",
                             "too short")
            return False
        if self.language and found.language != self.language and found.language_p >= LANGID_SURE:
            stats.quarantine(raw.id, f"the main text is in '{found.language}' (p = {found.language_p:.2f})",
                             f"not {self.language}")
            return False
        if self.dedup:
            key = dedup_key(found.text)
            if key in self.texts:
                stats.drop("duplicate text")
                return False
            self.texts.add(key)
        return True


class ExtractStage(Stage):
    kind, version, doc = "extract", 1, "page main text"
    reads = (".files", ".format", ".field", ".content", ".url_field", ".language", ".min_chars", ".dedup")

    def fingerprint(self, ctx: Context, spec) -> dict:
        files = {name: ctx.digest(p) for name, p in ctx.source_files()}
        return {"files": files, "trafilatura": version("trafilatura"), "warcio": version("warcio"),
                "langid": f"py3langid=={version('py3langid')}"}

    def run(self, ctx: Context, stats: Stats) -> None:
        files = ctx.source_files()
        filters = PageFilters(ctx.read(".min_chars"), ctx.read(".language"), ctx.read(".dedup"))
        stream = ctx.progress(read_pages(files, Source.of(ctx)), f"extract {ctx.subject}", None)
        with ExitStack() as stack:
            extractor = Extractor(ctx.workers, ctx.items, stack, ctx.worker_pool)
            rows = self._pages(chunked(stream, WINDOW), filters, extractor, stats)
            summary = Pages.write(ctx.out, rows, stats.dropped)
        stats.items_out = summary["pages"]
        stats.counts.update(files=len(files), chars=summary["chars"], pages_extracted=extractor.extracted,
                            pages_cached=extractor.cached, processes=extractor.workers if extractor.pool else 1)

    @staticmethod
    def _pages(windows: Iterator[list[RawPage | Rejected]], filters: PageFilters, extractor: Extractor,
               stats: Stats) -> Iterator[Page]:
        """The kept pages, numbered in order, a window of pages at a time."""
        number = 0
        for window in windows:
            admitted: list[RawPage] = []
            for item in window:
                stats.items_in += 1  # a page, or a file or record set aside: in = out + dropped
                if isinstance(item, Rejected):
                    stats.quarantine(item.item, item.reason, item.kind)
                elif filters.admit(item, stats):
                    admitted.append(item)
            pending = [(raw, memo_key(raw.body) if raw.html else None) for raw in admitted]
            found = extractor.extract({key: raw.body for raw, key in pending if key is not None})
            for raw, key in pending:
                result = found[key] if key is not None else Extracted.of(None, plain_text(raw.body))
                if filters.keep(raw, result, stats):
                    yield Page(number, raw.id, raw.url, raw.path, raw.record, result.title, result.text,
                               len(result.text), text_digest(result.text))
                    number += 1
