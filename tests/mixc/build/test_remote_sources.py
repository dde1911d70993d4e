"""Text sources read from object storage (a real S3-compatible server, moto, and a real GCS API server,
gcp-storage-emulator): `files` globs that are s3:// or gs:// URLs are listed with fsspec and read
from a local mirror; the documents and the content digests that key the stage are those of the same
bytes on local disk, named by their URLs. (Audio sources: tests/mixc/stages/test_ingest.py, which
also checks that lowering keeps a URL verbatim.)"""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from mixc.lang.check import check_files
from mixc.lang.lower import load
from mixc.stages.base import StageError
from mixc.stages.store import ItemStore
from mixc.storage import MissingObject
from tests.mixc.build.test_compile import spec_text
from tests.mixc.stages.helpers import run_stage
from tests.mixc.workspace import workspace


def with_files(spec, source: str, files: tuple[str, ...]):
    sources = dict(spec.sources)
    sources[source] = sources[source].model_copy(update={"files": files})
    return spec.model_copy(update={"sources": sources})


@pytest.fixture
def ws(tmp_path):
    w = workspace(tmp_path / "ws")
    w.spec(spec_text())
    return w


def read(ws, spec, name: str):
    out, stats = run_stage(ws.root, spec, "read:news", {}, name, items=ItemStore(ws.root / "cache" / "items"))
    return pq.read_table(out / "docs.parquet").to_pylist(), stats


def test_remote_source_reads_the_same_documents(ws, store):
    files = sorted((ws.root / "data" / "news").glob("*.jsonl"))
    for f in files:
        store.put(f"corpus/news/{f.name}", f.read_bytes())
    spec = load(ws.root / "spec.mix").ir
    local_docs, _ = read(ws, spec, "local")
    remote = with_files(spec, "news", (f"{store.url}/corpus/news/*.jsonl",))
    remote_docs, stats = read(ws, remote, "remote")
    assert [(d["row"], d["text"]) for d in remote_docs] == [(d["row"], d["text"]) for d in local_docs]
    assert {d["file"] for d in remote_docs} == {f"{store.url}/corpus/news/{f.name}" for f in files}
    assert stats.counts["files"] == len(files)
    mirrored = sorted((ws.root / "cache" / "sources" / store.url.partition(":")[0]).rglob("*.jsonl"))
    assert [m.read_bytes() for m in mirrored] == [f.read_bytes() for f in files]


def test_a_changed_object_is_fetched_again(ws, store):
    store.put("c/a.jsonl", b'{"text": "one two three"}\n')
    spec = with_files(load(ws.root / "spec.mix").ir, "news", (f"{store.url}/c/*.jsonl",))
    first, _ = read(ws, spec, "first")
    store.put("c/a.jsonl", b'{"text": "four five six"}\n')
    second, _ = read(ws, spec, "second")
    assert [d["text"] for d in first] == ["one two three"]
    assert [d["text"] for d in second] == ["four five six"]


def test_a_missing_object_is_a_clear_error(ws, s3):
    spec = with_files(load(ws.root / "spec.mix").ir, "news", (f"{s3.url}/nothing.jsonl",))
    with pytest.raises((MissingObject, StageError), match="does not exist"):
        read(ws, spec, "missing")


def test_check_defers_remote_files(tmp_path):
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "s.mix").write_text(spec_text().replace('"data/news/*.jsonl"', '"s3://bucket/news/*.jsonl"'))
    low = load(tmp_path / "s.mix")
    assert not [d.message for d in check_files(low) if "news" in d.message or "s3" in d.message]
