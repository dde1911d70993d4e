"""The stage cache shared over object storage (`--cache-dir s3://...`, gs://), on a real S3-compatible
server (moto) and a real GCS API server (gcp-storage-emulator): a compile pushes every stage it
builds (marker last); a machine with an empty local cache pulls them all instead of building, and
compiles the same bytes."""

from __future__ import annotations

import shutil

from mixc.build.cache import Cache, open_cache
from tests.mixc.build.test_compile import shard_hashes, spec_text
from tests.mixc.workspace import workspace


def test_a_wiped_local_cache_pulls_every_stage(store, tmp_path):
    ws = workspace(tmp_path / "ws")
    url = f"{store.url}/cache"
    ws.cache = Cache(tmp_path / "local", remote=url)
    first = ws.compile(ws.spec(spec_text()))
    assert all(not r.hit for r in first.runs.values())
    stored = store.keys("cache")
    for run in first.runs.values():
        assert f"{run.node.kind}/{run.key}.done" in stored
    shutil.rmtree(tmp_path / "local")
    ws.cache = Cache(tmp_path / "local", remote=url)
    second = ws.compile(ws.spec(spec_text()), out="again")
    assert all(r.hit for r in second.runs.values()), [sid for sid, r in second.runs.items() if not r.hit]
    assert shard_hashes(second.out) == shard_hashes(first.out)
    assert (second.out / "mix.lock").read_bytes() == (first.out / "mix.lock").read_bytes()


def test_an_unfinished_push_is_not_pulled(store, tmp_path):
    """Objects without their marker (a push that died) are not an artifact: the key is built."""
    store.put("cache/read/abc/docs.parquet", b"half")
    cache = Cache(tmp_path / "local", remote=f"{store.url}/cache")
    assert not cache.has("read", "abc")


def test_a_look_does_not_pull(s3, tmp_path):
    ws = workspace(tmp_path / "ws")
    url = f"{s3.url}/cache"
    ws.cache = Cache(tmp_path / "local", remote=url)
    run = next(iter(ws.compile(ws.spec(spec_text())).runs.values()))
    shutil.rmtree(tmp_path / "local")
    look = Cache(tmp_path / "local", create=False, remote=url)
    assert look.has(run.node.kind, run.key) and not look.path(run.node.kind, run.key).exists()


def test_open_cache_takes_a_url_from_the_environment(s3, tmp_path, monkeypatch):
    monkeypatch.setenv("MIXC_CACHE", f"{s3.url}/shared/")
    cache = open_cache(None, tmp_path)
    assert cache.remote == f"{s3.url}/shared" and cache.root == tmp_path / ".mixc" / "cache"
    monkeypatch.setenv("MIXC_CACHE", str(tmp_path / "c"))
    assert open_cache(None, tmp_path).remote is None and open_cache(None, tmp_path).root == tmp_path / "c"
