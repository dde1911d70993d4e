"""mixc.storage against a real S3-compatible server (moto, the `s3_server` fixture) and a real GCS
API server (gcp-storage-emulator, `gcs_server`): listing, globbing, transfers, the ETag / MD5 a
resumed upload compares, and errors a user can act on."""

from __future__ import annotations

import pytest

from mixc import storage
from mixc.storage import MissingObject, StorageError


def test_is_remote():
    assert storage.is_remote("s3://bucket/x") and storage.is_remote("gs://b/y")
    assert not storage.is_remote("build/out") and not storage.is_remote("/abs/path")
    assert not storage.is_remote("file:///tmp/x")


def test_round_trip_listing_and_glob(store, tmp_path):
    src = tmp_path / "a.txt"
    src.write_bytes(b"hello")
    storage.upload(src, f"{store.url}/data/a.txt")
    store.put("data/sub/b.jsonl", b"{}\n")
    store.put("data/sub/c.txt", b"c")
    assert set(storage.listing(f"{store.url}/data")) == {"a.txt", "sub/b.jsonl", "sub/c.txt"}
    assert storage.glob(f"{store.url}/data/**/*.txt") == [f"{store.url}/data/a.txt", f"{store.url}/data/sub/c.txt"]
    assert storage.glob(f"{store.url}/data/sub") == [f"{store.url}/data/sub/b.jsonl", f"{store.url}/data/sub/c.txt"]
    assert storage.glob(f"{store.url}/data/none*") == []
    got = storage.download(f"{store.url}/data/a.txt", tmp_path / "copy" / "a.txt")
    assert got.read_bytes() == b"hello"
    assert storage.read_bytes(f"{store.url}/data/sub/c.txt") == b"c"
    assert storage.info(f"{store.url}/data/a.txt").size == 5
    storage.remove(f"{store.url}/data/sub/c.txt")
    assert not storage.exists(f"{store.url}/data/sub/c.txt")


@pytest.mark.parametrize("size", [0, 5, storage.MULTIPART + 3])
def test_etag_matches_what_s3_reports(s3, tmp_path, size):
    """The ETag computed locally is the one S3 gives an upload through boto3's upload_file (what
    Streaming's uploader calls), multipart uploads included."""
    import boto3
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(256)) * (size // 256) + b"x" * (size % 256))
    client = boto3.client("s3", endpoint_url=s3.server.endpoint)
    client.upload_file(str(path), s3.url.removeprefix("s3://"), "f.bin")
    entry = storage.listing(s3.url)["f.bin"]
    assert entry.size == size and entry.etag == storage.etag(path)
    assert storage.same_bytes(path, entry)
    path.write_bytes(path.read_bytes()[:-1] + b"y") if size else None
    assert storage.same_bytes(path, entry) == (size == 0)


@pytest.mark.parametrize("size", [0, 5, storage.MULTIPART + 3])
def test_md5_matches_what_gcs_reports(gcs, tmp_path, size):
    """A GCS object's md5Hash is the MD5 of its bytes, however it was uploaded (Streaming's uploader
    calls google-cloud-storage's upload_from_filename, resumable from 8 MiB)."""
    from streaming.base.storage.upload import CloudUploader
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(256)) * (size // 256) + b"x" * (size % 256))
    CloudUploader.get(out=(str(tmp_path), gcs.url), keep_local=True, exist_ok=True).upload_file("f.bin")
    entry = storage.listing(gcs.url)["f.bin"]
    assert entry.size == size and entry.md5 == storage.md5(path)
    assert storage.same_bytes(path, entry)
    path.write_bytes(path.read_bytes()[:-1] + b"y") if size else None
    assert storage.same_bytes(path, entry) == (size == 0)


def test_missing_bucket_is_a_clear_error(store):
    scheme = store.url.partition(":")[0]
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist") as info:
        storage.listing(f"{scheme}://no-such-bucket/x")
    assert "create it" in (info.value.hint or "")
    with pytest.raises(StorageError, match="does not exist") as info:
        storage.check_bucket(f"{scheme}://no-such-bucket/x")
    assert ("gcloud storage buckets create" if scheme == "gs" else "aws s3 mb") in (info.value.hint or "")


def test_missing_object_is_a_data_error(store, tmp_path):
    with pytest.raises(MissingObject, match="does not exist"):
        storage.download(f"{store.url}/nothing.txt", tmp_path / "x")
    assert not list(tmp_path.iterdir()) or not (tmp_path / "x").exists()


def test_unreachable_endpoint_is_a_clear_error(s3, monkeypatch):
    from tests.s3 import free_port
    monkeypatch.setenv("S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(StorageError, match="does not answer") as info:
        storage.listing(f"{s3.url}/x")
    assert "S3_ENDPOINT_URL" in (info.value.hint or "")


def test_missing_credentials_are_a_clear_error(s3, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(StorageError, match="no credentials") as info:
        storage.listing(f"{s3.url}/x")
    assert "AWS_ACCESS_KEY_ID" in (info.value.hint or "")


def test_unreachable_gcs_emulator_is_a_clear_error(gcs, monkeypatch):
    from tests.s3 import free_port
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(StorageError, match="does not answer") as info:
        storage.listing(f"{gcs.url}/x")
    assert "STORAGE_EMULATOR_HOST" in (info.value.hint or "")


def test_missing_google_credentials_are_a_clear_error(gcs, monkeypatch, tmp_path):
    """Streaming's GCS uploader (and downloader) need Application Default Credentials, even for an
    emulator, where gcsfs goes anonymous."""
    from mixc.build.publish import publish
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "none.json"))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "plan.json").write_text("{}")
    with pytest.raises(StorageError, match="no credentials") as info:
        publish(tmp_path / "out", f"{gcs.url}/x")
    assert "GOOGLE_APPLICATION_CREDENTIALS" in (info.value.hint or "")


def test_a_gcs_url_is_refused_with_the_gs_form():
    with pytest.raises(storage.StorageError) as caught:
        storage.exists("gcs://bucket/x")
    assert "gs://BUCKET/PATH" in caught.value.message
