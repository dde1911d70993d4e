"""`mixc compile --out s3://... | gs://...`: the output folder uploaded through Streaming's uploader
to a real S3-compatible server (moto) and a real GCS API server (gcp-storage-emulator), plan.json
last; an interrupted upload resumes with only what is missing; the streams' merged index lets one
StreamingDataset read every part."""

from __future__ import annotations

import json

import numpy as np
import pytest
from streaming import StreamingDataset
from streaming.base.storage.upload import GCSUploader, S3Uploader

from mixc.build.publish import publish, staging
from mixc.planfile import Lock
from tests.mixc.build.test_compile import spec_text
from tests.mixc.workspace import workspace


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    ws = workspace(tmp_path_factory.mktemp("ws"))
    return ws, ws.compile(ws.spec(spec_text()))


def local_files(folder) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_merged_index_lists_every_stream(compiled):
    _, result = compiled
    out = result.out
    merged = json.loads((out / "streams" / "index.json").read_text())
    expected = []
    for stream in result.plan.streams:
        part = json.loads((out / stream.path / "index.json").read_text())["shards"]
        expected += [f"{stream.name}/{s['zip_data']['basename'] if s.get('zip_data') else s['raw_data']['basename']}"
                     for s in part]
    listed = [s["zip_data"]["basename"] if s.get("zip_data") else s["raw_data"]["basename"] for s in merged["shards"]]
    assert listed == expected
    assert "streams/index.json" in {s.path for s in Lock.read(out / "mix.lock").shards}


def test_merged_index_is_deterministic(compiled):
    ws, result = compiled
    again = ws.compile(ws.spec(spec_text()), out="again")
    assert (again.out / "streams" / "index.json").read_bytes() == (result.out / "streams" / "index.json").read_bytes()


def test_publish_mirrors_the_folder_plan_last(compiled, store):
    _, result = compiled
    url = f"{store.url}/builds/two"
    order = []
    done = publish(result.out, url, order.append)
    assert order[-1] == "plan.json" and len(order) == len(local_files(result.out))
    assert store.keys("builds/two") == local_files(result.out)
    again = publish(result.out, url)
    assert again.uploaded == ["plan.json"] and len(again.kept) == len(done.uploaded) - 1


def test_streaming_reads_every_sample_through_the_merged_index(compiled, store, tmp_path):
    _, result = compiled
    url = f"{store.url}/merged"
    publish(result.out, url)
    ds = StreamingDataset(remote=f"{url}/streams", local=str(tmp_path / "cache"), shuffle=False, batch_size=1)
    assert ds.num_samples == sum(s.samples for s in result.plan.streams)
    lineage = {int(ds[i]["lineage"][0]) for i in range(ds.num_samples)}
    assert len(lineage) > 1
    sample = ds[ds.num_samples - 1]
    assert sample["tokens"].dtype == np.uint16


def test_interrupted_upload_resumes_with_what_is_missing(compiled, store, monkeypatch):
    _, result = compiled
    url = f"{store.url}/interrupted"
    files = local_files(result.out)
    uploader = S3Uploader if store.url.startswith("s3://") else GCSUploader
    real = uploader.upload_file
    calls = []

    def flaky(self, filename):
        if len(calls) == 3:
            raise ConnectionResetError("the network went away")
        calls.append(filename)
        real(self, filename)

    monkeypatch.setattr(uploader, "upload_file", flaky)
    with pytest.raises(ConnectionResetError):
        publish(result.out, url)
    partial = store.keys("interrupted")
    assert len(partial) == 3 and "plan.json" not in partial  # incomplete: no plan.json
    monkeypatch.setattr(uploader, "upload_file", real)
    done = publish(result.out, url)
    assert len(done.uploaded) == len(files) - 3 and sorted(done.kept) == sorted(partial)
    assert store.keys("interrupted") == files


def test_a_changed_file_is_sent_again_and_stale_ones_removed(compiled, store, tmp_path):
    import shutil
    _, result = compiled
    url = f"{store.url}/changed"
    publish(result.out, url)
    copy = tmp_path / "copy"
    shutil.copytree(result.out, copy)
    (copy / "report.md").write_text((copy / "report.md").read_text().replace("a", "b"))
    stale = next(p for p in (copy / "streams").rglob("*.mds*"))
    stale.unlink()
    done = publish(copy, url)
    assert "report.md" in done.uploaded and done.removed == [stale.relative_to(copy).as_posix()]
    assert store.keys("changed") == local_files(copy)


def test_staging_folder_is_per_url(compiled):
    ws, _ = compiled
    assert staging(ws.cache, "s3://a/b") == staging(ws.cache, "s3://a/b/")
    assert staging(ws.cache, "s3://a/b") != staging(ws.cache, "s3://a/c")
