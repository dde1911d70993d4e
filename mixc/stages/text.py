"""Text sources: read documents (jsonl / parquet / txt, optionally .gz / .zst), normalise, dedup.

Artifact `docs.parquet`: one row per document with `doc_id` (its position in the source, the id
sequences carry as lineage), `file` (workspace-relative), `row` (record number in the file), `text`.
Normalisation: Unicode NFC, CRLF -> LF, trailing whitespace stripped; empty documents are dropped.
A file that cannot be read or parsed is quarantined (named with its reason in the stats), not fatal.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mixc.ir import TextSource
from mixc.plan.sizes import expand
from mixc.stages.base import Context, StageRun, Stats

DOCS = "docs.parquet"
SCHEMA = pa.schema([("doc_id", pa.int64()), ("file", pa.string()), ("row", pa.int64()), ("text", pa.string())])
BATCH = 4096


def file_format(path: Path, declared: str) -> str:
    if declared != "auto":
        return declared
    name = path.name.removesuffix(".gz").removesuffix(".zst")
    return "jsonl" if name.endswith((".jsonl", ".json")) else "parquet" if name.endswith(".parquet") else "txt"


def open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    if path.suffix == ".zst":
        import zstandard
        return io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(open(path, "rb")), encoding="utf-8")
    return open(path, encoding="utf-8")


def normalise(text: str) -> str:
    return unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n")).rstrip()


def _records(path: Path, fmt: str, field: str) -> Iterator[str | None]:
    """The raw text of every record in a file; None for a record without the field."""
    if fmt == "parquet":
        table = pq.ParquetFile(path)
        for batch in table.iter_batches(columns=[field], batch_size=BATCH):
            yield from batch.column(0).to_pylist()
        return
    with open_text(path) as handle:
        if fmt == "txt":
            yield handle.read()
            return
        for line in handle:
            if line.strip():
                value = json.loads(line).get(field)
                yield value if isinstance(value, str) else None


def source_files(ctx: Context) -> list[Path]:
    source = ctx.spec.sources[ctx.stage.subject]
    return expand(ctx.root, source.files)


class _DocWriter:
    def __init__(self, path: Path):
        self.writer = pq.ParquetWriter(path, SCHEMA, compression="zstd")
        self.rows: dict[str, list] = {name: [] for name in SCHEMA.names}
        self.count = 0

    def add(self, file: str, row: int, text: str) -> None:
        for name, value in (("doc_id", self.count), ("file", file), ("row", row), ("text", text)):
            self.rows[name].append(value)
        self.count += 1
        if len(self.rows["text"]) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if self.rows["text"]:
            self.writer.write_table(pa.table(self.rows, schema=SCHEMA))
            self.rows = {name: [] for name in SCHEMA.names}

    def close(self) -> None:
        self.flush()
        self.writer.close()


def iter_docs(folder: Path, columns: tuple[str, ...] = ("doc_id", "text")) -> Iterator[pa.RecordBatch]:
    """docs.parquet in batches, in bounded memory. With pyarrow's default pre_buffer=True,
    iter_batches keeps every column chunk it has read buffered until the file is done, so memory
    would grow with the corpus (by docs.parquet's size); unbuffered reads give the same batches."""
    reader = pq.ParquetFile(folder / DOCS, pre_buffer=False)
    yield from reader.iter_batches(columns=list(columns), batch_size=BATCH)


def count_docs(folder: Path) -> int:
    return pq.ParquetFile(folder / DOCS).metadata.num_rows


class ReadText(StageRun):
    kind = "read"

    def fingerprint(self, ctx: Context) -> dict:
        return {os.path.relpath(p, ctx.root): ctx.digest(p) for p in source_files(ctx)}

    def run(self, ctx: Context, stats: Stats) -> None:
        source: TextSource = ctx.spec.sources[ctx.stage.subject]
        writer = _DocWriter(ctx.out / DOCS)
        files = source_files(ctx)
        for path in ctx.progress(files, f"read {ctx.stage.subject}", len(files)):
            rel = os.path.relpath(path, ctx.root)
            try:
                records = list(_records(path, file_format(path, source.format), source.field))
            except (OSError, UnicodeDecodeError, ValueError, pa.ArrowException) as exc:
                stats.quarantine(rel, f"{type(exc).__name__}: {exc}")
                continue
            for row, raw in enumerate(records):
                stats.items_in += 1
                if raw is None:
                    stats.drop(f"no field '{source.field}'")
                    continue
                text = normalise(raw)
                if not text:
                    stats.drop("empty")
                    continue
                writer.add(rel, row, text)
        writer.close()
        stats.items_out = writer.count
        stats.counts["files"] = len(files)


class Dedup(StageRun):
    """Keeps the first of exact duplicates (after normalisation), by a 128-bit digest of the text."""
    kind = "dedup"

    def run(self, ctx: Context, stats: Stats) -> None:
        seen: set[bytes] = set()
        source = ctx.input_of("read")
        out = pq.ParquetWriter(ctx.out / DOCS, SCHEMA, compression="zstd")
        for batch in iter_docs(source, tuple(SCHEMA.names)):
            keep = []
            for text in batch.column("text").to_pylist():
                digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
                keep.append(digest not in seen)
                seen.add(digest)
            stats.items_in += len(keep)
            kept = batch.filter(pa.array(keep))
            stats.items_out += kept.num_rows
            stats.drop("duplicate", len(keep) - kept.num_rows)
            out.write_table(pa.Table.from_batches([kept], schema=SCHEMA))
        out.close()
