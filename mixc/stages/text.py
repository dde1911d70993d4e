"""Text sources: read documents (jsonl / parquet / txt, optionally .gz / .zst), normalise, dedup.

Artifact (`Documents`) `docs.parquet`: one row per document with `doc_id` (its position in the source, the id
sequences carry as lineage), `file` (workspace-relative), `row` (record number in the file), `text`.
Normalisation: Unicode NFC, CRLF -> LF, trailing whitespace stripped; empty documents are dropped.
A file that cannot be read or parsed is quarantined (named with its reason in the stats), not fatal.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mixc.stages.base import Context, Stage, Stats

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


class DocWriter:
    def __init__(self, folder: Path):
        self.writer = pq.ParquetWriter(folder / Documents.FILE, SCHEMA, compression="zstd")
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


class Documents:
    """The documents artifact of `read` and `dedup`: written by `DocWriter`, read in batches."""
    FILE = "docs.parquet"

    @classmethod
    def batches(cls, folder: Path, columns: tuple[str, ...] = ("doc_id", "text")) -> Iterator[pa.RecordBatch]:
        """docs.parquet in batches, in bounded memory. With pyarrow's default pre_buffer=True,
        iter_batches keeps every column chunk it has read buffered until the file is done, so memory
        would grow with the corpus (by docs.parquet's size); unbuffered reads give the same batches."""
        reader = pq.ParquetFile(folder / cls.FILE, pre_buffer=False)
        yield from reader.iter_batches(columns=list(columns), batch_size=BATCH)

    @classmethod
    def count(cls, folder: Path) -> int:
        return pq.ParquetFile(folder / cls.FILE).metadata.num_rows


class ReadStage(Stage):
    kind, version, doc = "read", 2, "documents"
    reads = (".files", ".format", ".field")

    def fingerprint(self, ctx: Context, spec) -> dict:
        return {name: ctx.digest(p) for name, p in ctx.source_files()}

    def run(self, ctx: Context, stats: Stats) -> None:
        declared, field = ctx.read(".format"), ctx.read(".field")
        writer = DocWriter(ctx.out)
        files = ctx.source_files()
        for rel, path in ctx.progress(files, f"read {ctx.subject}", len(files)):
            try:
                records = list(_records(path, file_format(path, declared), field))
            except (OSError, UnicodeDecodeError, ValueError, pa.ArrowException) as exc:
                stats.quarantine(rel, f"{type(exc).__name__}: {exc}")
                continue
            for row, raw in enumerate(records):
                stats.items_in += 1
                if raw is None:
                    stats.drop(f"no field '{field}'")
                    continue
                text = normalise(raw)
                if not text:
                    stats.drop("empty")
                    continue
                writer.add(rel, row, text)
        writer.close()
        stats.items_out = writer.count
        stats.counts["files"] = len(files)


class DedupStage(Stage):
    """Keeps the first of exact duplicates (after normalisation), by a 128-bit digest of the text."""
    kind, version, doc = "dedup", 2, "exact-duplicate removal"
    reads = (".dedup",)

    def run(self, ctx: Context, stats: Stats) -> None:
        seen: set[bytes] = set()
        out = pq.ParquetWriter(ctx.out / Documents.FILE, SCHEMA, compression="zstd")
        for batch in Documents.batches(ctx.input_of("read"), tuple(SCHEMA.names)):
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
